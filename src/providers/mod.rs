//! The SMS provider boundary.
//!
//! A provider takes a batch of SMS (one text to many numbers, or a text per
//! number) and answers for each one: its reference at the provider, or an
//! error classified as transient or permanent and mapped to the iSendPro code
//! that etatNot will report. The dispatcher decides what to do with that
//! (`dispatch::classify`); adapters only describe what happened.

pub mod delivery;
pub mod http;
pub mod netoxygen;
pub mod outbox;
pub mod settings;
pub mod smseco;
pub mod smsfactor;
pub mod smsmode;

use crate::clock::Clock;
use crate::codes::Code;
use async_trait::async_trait;
pub use delivery::{DeliveryState, DeliveryStatus};
use serde::{Deserialize, Serialize};
pub use settings::ProviderSettings;
use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::sync::Arc;

/// One SMS handed to a provider (serialised as the outbox writes it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OutgoingSms {
    /// Our reference for this SMS, unique across databases (store id and
    /// job id, at most 30 characters): given to providers that keep a client
    /// reference, so an interrupted send can be recognised afterwards.
    #[serde(rename = "ref")]
    pub reference: String,
    /// The job id in the store.
    #[serde(rename = "job")]
    pub job_id: i64,
    /// E.164 destination, e.g. `+33601020304`.
    pub to: String,
    /// The text.
    pub text: String,
    /// The sender id (`emetteur`), if any.
    pub sender_id: Option<String>,
    /// The account's name in the config.
    pub account: String,
    /// The request's emailId.
    pub email_id: String,
    /// The request's tracker.
    pub tracker: Option<String>,
    /// When the provider should deliver it, if later than now (a scheduled
    /// send, Unix milliseconds); `None` sends at once. Adapters pass it in
    /// their document's own date field and time zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_at: Option<i64>,
}

impl OutgoingSms {
    /// An SMS to send now, without sender id or tracker, for `account`'s
    /// request `email_id`: for tools that drive an adapter directly. The
    /// dispatcher builds its own from the store's jobs.
    pub fn new(
        reference: impl Into<String>,
        job_id: i64,
        to: impl Into<String>,
        text: impl Into<String>,
        account: impl Into<String>,
        email_id: impl Into<String>,
    ) -> OutgoingSms {
        OutgoingSms {
            reference: reference.into(),
            job_id,
            to: to.into(),
            text: text.into(),
            sender_id: None,
            account: account.into(),
            email_id: email_id.into(),
            tracker: None,
            send_at: None,
        }
    }

    /// The same SMS with this sender id.
    pub fn with_sender(mut self, sender_id: Option<&str>) -> OutgoingSms {
        self.sender_id = sender_id.map(str::to_owned);
        self
    }
}

/// An SMS for the adapters' unit tests: account `masociete`, emailId
/// `1548` (the spec's examples).
#[cfg(test)]
pub(crate) fn test_sms(
    reference: impl Into<String>,
    job_id: i64,
    to: impl Into<String>,
    text: impl Into<String>,
) -> OutgoingSms {
    OutgoingSms::new(reference, job_id, to, text, "masociete", "1548")
}

/// How a failure should be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// May work later (timeouts, 5xx, throttling): retry, then fail over.
    Transient,
    /// This SMS will never go through this way (bad number, refused text).
    Permanent,
    /// The provider itself cannot send for us now (bad credentials, no
    /// credit): move on to the next provider at once.
    ProviderUnusable,
    /// This SMS was not handed to the provider: an earlier request of the
    /// same batch failed transiently, so the adapter stopped. It follows
    /// the failed request (same retry time, or the next provider with it)
    /// without counting a try.
    NotAttempted,
}

/// A provider's refusal or failure for one SMS (or a whole batch).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{detail}")]
pub struct SendError {
    /// How to handle it.
    pub kind: FailureKind,
    /// The iSendPro code etatNot reports if this ends the SMS.
    pub code: Code,
    /// The provider's own words, for the log and the store (never secrets).
    pub detail: String,
}

impl SendError {
    /// A transient failure (code 999 if it ends up final).
    pub fn transient(detail: impl Into<String>) -> Self {
        SendError {
            kind: FailureKind::Transient,
            code: Code::INTERNAL,
            detail: detail.into(),
        }
    }

    /// A permanent failure with its code.
    pub fn permanent(code: Code, detail: impl Into<String>) -> Self {
        SendError {
            kind: FailureKind::Permanent,
            code,
            detail: detail.into(),
        }
    }

    /// The provider cannot send for us now (credentials, credit): the next
    /// provider is tried at once; `code` is reported if there is none.
    pub fn unusable(code: Code, detail: impl Into<String>) -> Self {
        SendError {
            kind: FailureKind::ProviderUnusable,
            code,
            detail: detail.into(),
        }
    }

    /// The error of an SMS left unsent because `cause`, the failure of an
    /// earlier request of its batch, stopped the batch. A provider found
    /// unusable is unusable for every SMS (they all go to the next provider
    /// at once); after a transient failure the SMS is `NotAttempted` and
    /// follows what the dispatcher decides for the failed request.
    pub fn not_attempted(cause: &SendError) -> Self {
        SendError {
            kind: match cause.kind {
                FailureKind::ProviderUnusable => FailureKind::ProviderUnusable,
                _ => FailureKind::NotAttempted,
            },
            code: cause.code,
            detail: format!(
                "not sent: an earlier request of the batch failed: {}",
                cause.detail
            ),
        }
    }

    /// Whether trying again later may work.
    pub fn is_transient(&self) -> bool {
        matches!(
            self.kind,
            FailureKind::Transient | FailureKind::NotAttempted
        )
    }

    /// Whether this SMS will never go through this provider.
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }
}

/// What a provider knows of an SMS whose send was interrupted.
#[derive(Debug, Clone, PartialEq)]
pub enum Reconciled {
    /// It was sent; here is its reference.
    Sent(String),
    /// It was certainly not sent.
    NotSent,
    /// The provider cannot tell.
    Unknown,
}

/// An SMS provider.
#[async_trait]
pub trait Provider: Send + Sync + 'static {
    /// The most SMS this provider takes in one call.
    fn max_batch(&self) -> usize;

    /// Sends a batch; returns one result per SMS, in the same order.
    async fn send(&self, batch: &[OutgoingSms]) -> Vec<Result<String, SendError>>;

    /// For SMS whose send was interrupted by a crash: what happened to them.
    /// The default cannot tell.
    async fn reconcile(&self, batch: &[OutgoingSms]) -> Vec<Reconciled> {
        vec![Reconciled::Unknown; batch.len()]
    }

    /// Whether an SMS needs a sender id to be sent through this provider:
    /// without one (no `<emetteur>`, no account `default_sender_id`) it is
    /// refused with code 16 instead of being sent.
    fn requires_sender_id(&self) -> bool {
        false
    }

    /// Checks credentials and balance without sending anything, for
    /// `mail2sms providers check`; says what it found (e.g. "credentials
    /// accepted, balance 212.5 credits").
    async fn check(&self) -> Result<String, SendError> {
        Ok("nothing to check".into())
    }
}

/// The provider registry: each line registers one provider type, its
/// `type = "…"` name (the variant in lower case) and its settings, which
/// implement [`ProviderSettings`]. It generates [`ProviderConfig`], the
/// `[providers.NAME]` table deserialized by its `type`, and its one match,
/// [`ProviderConfig::settings`]. A new provider is its folder and one line.
macro_rules! registry {
    ($($(#[$doc:meta])* $variant:ident($settings:ty),)+) => {
        /// A `[providers.NAME]` table: its `type` picks the adapter.
        #[derive(Debug, Clone, Deserialize)]
        #[serde(tag = "type", rename_all = "lowercase")]
        pub enum ProviderConfig {
            $($(#[$doc])* $variant($settings),)+
        }

        impl ProviderConfig {
            /// The table's settings, whatever the provider type.
            pub fn settings(&self) -> &dyn ProviderSettings {
                match self {
                    $(ProviderConfig::$variant(settings) => settings,)+
                }
            }
        }
    };
}

registry! {
    /// Appends each SMS as a JSON line to a local file.
    Outbox(outbox::OutboxConfig),
    /// sMsmode HTTP API (`sendSMS.do`).
    Smsmode(smsmode::SmsmodeConfig),
    /// smsfactor XML API v2.2 (`apiV2.php`).
    Smsfactor(smsfactor::SmsfactorConfig),
    /// SMSECO API v2.0 (`api/xml/sendsms/`).
    Smseco(smseco::SmsecoConfig),
    /// NetOxygen XML-RPC gateway (`send_message`).
    Netoxygen(netoxygen::NetoxygenConfig),
}

impl ProviderConfig {
    /// A one-line description for `check-config` (never secrets), without
    /// opening anything.
    pub fn describe(&self) -> String {
        self.settings().describe()
    }

    /// The most requests per second this provider may be sent, if limited.
    pub fn rate_limit(&self) -> Option<NonZeroU32> {
        self.settings().rate_limit()
    }

    /// The rate limit the dispatcher applies per batch (see
    /// [`ProviderSettings::batch_rate_limit`]).
    pub fn batch_rate_limit(&self) -> Option<NonZeroU32> {
        self.settings().batch_rate_limit()
    }

    /// Checks the values; the error is (key under the provider's table, reason).
    pub fn validate(&self) -> Result<(), (String, String)> {
        self.settings().validate()
    }
}

/// Errors building providers from the config.
#[derive(Debug, thiserror::Error)]
pub enum ProviderError {
    /// The outbox file cannot be opened or repaired.
    #[error("providers.{name}: {source}")]
    Outbox {
        /// The provider's name.
        name: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// An HTTP client cannot be built (TLS set-up).
    #[error("providers.{name}: {reason}")]
    Http {
        /// The provider's name.
        name: String,
        /// What failed.
        reason: String,
    },
}

/// The configured providers, by name.
pub type Providers = BTreeMap<String, Arc<dyn Provider>>;

/// Builds every configured provider, reading the system clock.
pub fn build(configs: &BTreeMap<String, ProviderConfig>) -> Result<Providers, ProviderError> {
    build_with_clock(configs, &Clock::default())
}

/// Builds every configured provider; adapters that read the time (the
/// outbox's `at_ms`, scheduled sends) read `clock`.
pub fn build_with_clock(
    configs: &BTreeMap<String, ProviderConfig>,
    clock: &Clock,
) -> Result<Providers, ProviderError> {
    configs
        .iter()
        .map(|(name, config)| Ok((name.clone(), config.settings().build(name, clock)?)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every registered type is read from its `type` name and answers
    /// through its own settings.
    #[test]
    fn each_registered_type_is_read_by_its_name() {
        let tables = [
            ("outbox", "path = \"/tmp/o\"\nrate_limit = 3"),
            (
                "smsmode",
                "url = \"http://h.test/\"\naccess_token = \"t\"\nrate_limit = 3",
            ),
            (
                "smsfactor",
                "url = \"http://h.test/\"\nusername = \"u\"\npassword = \"p\"\nrate_limit = 3",
            ),
            (
                "smseco",
                "url = \"http://h.test/\"\nlogin = \"l\"\npassword = \"p\"\nrate_limit = 3",
            ),
            (
                "netoxygen",
                "url = \"http://h.test/\"\nuser = \"u\"\npassword = \"p\"\nrate_limit = 3",
            ),
        ];
        for (kind, rest) in tables {
            let config: ProviderConfig =
                toml::from_str(&format!("type = \"{kind}\"\n{rest}")).unwrap();
            assert!(
                config.describe().starts_with(kind),
                "{kind}: {}",
                config.describe()
            );
            assert_eq!(config.rate_limit(), NonZeroU32::new(3), "{kind}");
            assert_eq!(config.validate(), Ok(()), "{kind}");
            assert_eq!(
                config.batch_rate_limit().is_some(),
                kind == "outbox",
                "{kind}"
            );
        }
    }

    #[test]
    fn an_empty_credential_is_named() {
        let config: ProviderConfig = toml::from_str(
            "type = \"smsfactor\"\nurl = \"http://h.test/\"\nusername = \"u\"\npassword = \" \"",
        )
        .unwrap();
        assert_eq!(
            config.validate(),
            Err(("password".into(), "must not be empty".into()))
        );
    }
}
