//! The SMS provider boundary.
//!
//! A provider takes a batch of SMS (one text to many numbers, or a text per
//! number) and answers for each one: its reference at the provider, or an
//! error classified as transient or permanent and mapped to the iSendPro code
//! that etatNot will report. The dispatcher decides what to do with that
//! (`dispatch::classify`); adapters only describe what happened.

pub mod outbox;

use crate::codes::Code;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
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
}

/// A `[providers.NAME]` table: its `type` picks the adapter.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum ProviderConfig {
    /// Appends each SMS as a JSON line to a local file.
    Outbox(outbox::OutboxConfig),
}

impl ProviderConfig {
    /// A one-line description for `check-config` (never secrets), without
    /// opening anything.
    pub fn describe(&self) -> String {
        match self {
            ProviderConfig::Outbox(c) => format!("outbox → {}", c.path.display()),
        }
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
}

/// The configured providers, by name.
pub type Providers = BTreeMap<String, Arc<dyn Provider>>;

/// Builds every configured provider.
pub fn build(configs: &BTreeMap<String, ProviderConfig>) -> Result<Providers, ProviderError> {
    let mut providers = Providers::new();
    for (name, config) in configs {
        let provider: Arc<dyn Provider> =
            match config {
                ProviderConfig::Outbox(c) => Arc::new(outbox::Outbox::open(c).map_err(
                    |source| ProviderError::Outbox {
                        name: name.clone(),
                        source,
                    },
                )?),
            };
        providers.insert(name.clone(), provider);
    }
    Ok(providers)
}
