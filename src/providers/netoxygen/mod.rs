//! The `netoxygen` provider: NetOxygen's SMS gateway, spoken in XML-RPC
//! ("Passerelle SMS - Interface XML-RPC").
//!
//! # Wire format
//!
//! Every call is an XML-RPC `methodCall` POSTed as `text/xml` to the
//! endpoint itself (`url`, by default `https://sms.netoxygen.ch/api2/`);
//! the answer is a `methodResponse`, decoded by its declared charset (the
//! gateway may answer in ISO-8859-1) before it is parsed
//! ([`xmlrpc`], written for this: lenient about types and whitespace).
//!
//! - `send_message(user, pass, dest, message[, sender, date])`, as the
//!   document's "complete" Perl example sends it (the one that "handles
//!   accents correctly"): `user` and `pass` as `<string>`, `dest` and
//!   `message` as `<base64>` of their UTF-8 bytes — `dest` a single base64
//!   value for one number, an array of base64 values for several. Numbers
//!   are international digits without `+` (`41791234567`), the form the
//!   gateway's own `clean_number` returns (`'022/364 8000'` →
//!   `'41223648000'`). `sender` is the SMS's sender id; `date` the
//!   scheduled time in Europe/Zurich, `YYYY-MM-DD HH:MM:SS`. Only the
//!   parameters needed are passed (4, 5 with a sender, 6 with a date, the
//!   5th being `""` when a date goes with the default sender); `type` is
//!   never passed (default "text", no flash SMS).
//! - The answer is "un tableau de tableaux", one `[dest, status,
//!   id_or_error_code]` per number (the Perl example's `($d, $s, $i)`):
//!   status TRUE → the third element is the message id (our provider
//!   reference); FALSE → it is a code of the "Codes d'erreur" table.
//!   Entries are matched to our SMS by `dest`, else by position (see
//!   [`wire::decode_send_message`]); an SMS no entry answers for is never
//!   reported sent.
//! - `auth` (TRUE/FALSE) and `get_credits` (a number or FALSE) for
//!   [`Provider::check`]; `get_status` and `cancel_message` as methods of
//!   [`Netoxygen`].
//!
//! # Batching
//!
//! SMS of a batch sharing (text, sender id, send time) go in one
//! `send_message` with an array of numbers, at most
//! [`wire::MAX_NUMBERS_PER_CALL`] per call and each number at most once
//! per call (a repeated number goes in a later call, so that entries can be
//! matched by number without doubt). The API has no per-number-text form:
//! SMS with different texts are separate calls, made one after another,
//! never in parallel. Once a call fails with a transient error (no answer,
//! timeout, HTTP 408/425/429/5xx, an unreadable answer or entry, error 2
//! "Gateway error") or says the provider is unusable (credentials, credit),
//! the rest of the batch is not sent: its SMS get a copy of that error
//! ("not sent: an earlier request of the batch failed: …"). A permanent
//! refusal (a bad number, a refused sender) does not stop the other calls.
//! [`plan_calls`] says which calls a batch makes.
//!
//! # Code mapping
//!
//! | NetOxygen | kind | iSendPro code |
//! |---|---|---|
//! | status TRUE | sent (id = third element; none given: our reference) | 0 |
//! | error 1 OK (status FALSE) | sent (the gateway has it) | 0 |
//! | error 2 Gateway error | transient | 999 if final |
//! | error 3 Message routing error | permanent | 999 |
//! | error 4 Message format error | permanent | 999 |
//! | error 5 Invalid destination number | permanent | 7 |
//! | error 6 Invalid source number | permanent | 33 |
//! | error 7 Empty message | permanent | 999 |
//! | error 8 Max message length exceeded | permanent | 999 |
//! | error 9 Pending | sent (queued at the gateway) | 0 |
//! | error 10 Message canceled | permanent | 999 |
//! | other error code, or a non-numeric one | permanent | 999 (text kept) |
//! | `<fault>` about login/password/identifiant/authentication/unknown user | unusable | 3 |
//! | `<fault>` about credit/solde/balance | unusable | 12 |
//! | `<fault>` about the sender/expéditeur/source (e.g. "sender not authorized") | permanent | 33 |
//! | other `<fault>` ("not authorized" alone included) | permanent | 999 (fault code and text kept) |
//! | bare FALSE instead of the array | unusable | 3 |
//! | number absent from the answer | permanent | 999 |
//! | unreadable answer, unreadable entry | transient | 999 if final |
//! | HTTP 408/425/429/5xx, timeout, no connection | transient | 999 if final |
//! | HTTP 401/403 | unusable | 3 |
//! | other HTTP status | unusable | 999 |
//!
//! The password never appears in an error detail: any occurrence in what
//! the gateway answered, as given or XML-escaped (the way this adapter's
//! XML-RPC writer escapes it, or with quotes escaped too), is replaced by
//! `***`.

pub mod wire;
pub mod xmlrpc;

pub use wire::{Cancellation, Credits, ErrorCode, MessageStatus, Progress, StatusCode};

use super::ProviderError;
use super::settings::{self, ProviderSettings};
use super::{DeliveryStatus, FailureKind, OutgoingSms, Provider, SendError, http};
use crate::clock::Clock;
use crate::codes::Code;
use crate::xml;
use async_trait::async_trait;
use serde::Deserialize;
use std::sync::Arc;

/// The gateway's endpoint, as the document gives it.
pub const DEFAULT_URL: &str = "https://sms.netoxygen.ch/api2/";

fn default_url() -> String {
    DEFAULT_URL.to_owned()
}

/// `type = "netoxygen"`: NetOxygen's XML-RPC gateway.
///
/// ```toml
/// [providers.netoxygen]
/// type = "netoxygen"
/// user = "myuser"
/// password = "mypass"
/// # url = "https://sms.netoxygen.ch/api2/"
/// # timeout_ms = 10000
/// # rate_limit = 5
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetoxygenConfig {
    /// The XML-RPC endpoint itself, every call is POSTed to it (no path is
    /// appended). Default `https://sms.netoxygen.ch/api2/`, the document's
    /// server; change it only for a test server or a proxy.
    #[serde(default = "default_url")]
    pub url: String,
    /// The gateway account's user name (`user`, the first parameter of
    /// every call).
    pub user: String,
    /// The account's password, sent as the `pass` parameter of every call.
    /// Secret: never shown by `check-config`, never in a log line or an
    /// error detail.
    pub password: String,
    /// How long one call may take, in milliseconds (connect, send, answer);
    /// a call that takes longer is retried later. Default 10 000.
    #[serde(default = "http::default_timeout_ms")]
    pub timeout_ms: u64,
    /// The most HTTP requests (XML-RPC calls) per second sent to this
    /// provider (none: no limit), enforced by the provider's own HTTP
    /// client (`http::Client`) on every call. A batch makes one
    /// `send_message` call per distinct (text, sender, time), so a batch of
    /// different texts makes several calls, each waiting for its slot.
    #[serde(default)]
    pub rate_limit: Option<std::num::NonZeroU32>,
}

impl std::fmt::Debug for NetoxygenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl ProviderSettings for NetoxygenConfig {
    /// A one-line description without secrets: the endpoint, the user, and
    /// whether a password is set.
    fn describe(&self) -> String {
        let password = if self.password.is_empty() {
            "no password"
        } else {
            "password set"
        };
        format!("netoxygen → {} (user {}, {password})", self.url, self.user)
    }

    fn rate_limit(&self) -> Option<std::num::NonZeroU32> {
        self.rate_limit
    }

    fn validate(&self) -> Result<(), (String, String)> {
        settings::validate_http(
            &[("user", &self.user), ("password", &self.password)],
            &self.url,
            self.timeout_ms,
        )
    }

    /// The adapter reads no time (its document's dates are computed from
    /// each SMS's own `send_at`), so it takes no clock.
    fn build(&self, name: &str, _clock: &Clock) -> Result<Arc<dyn Provider>, ProviderError> {
        let provider = Netoxygen::new(self).map_err(|reason| settings::http_error(name, reason))?;
        Ok(Arc::new(provider))
    }
}

/// The `netoxygen` provider.
pub struct Netoxygen {
    /// The configuration (holds the password: never printed).
    config: NetoxygenConfig,
    /// The HTTP client, with `timeout_ms`.
    client: http::Client,
}

impl Netoxygen {
    /// Builds the provider (its HTTP client).
    pub fn new(config: &NetoxygenConfig) -> Result<Self, String> {
        Ok(Netoxygen {
            config: config.clone(),
            client: http::client(config.timeout_ms, config.rate_limit)?
                .with_secrets(password_forms(&config.password)),
        })
    }

    /// POSTs one `methodCall` and returns the answer's text, decoded by its
    /// declared charset.
    async fn call(&self, body: Vec<u8>) -> Result<String, SendError> {
        let reply = http::post(&self.client, &self.config.url, "text/xml", body).await?;
        Ok(reply.text())
    }

    /// `auth(user, pass)`: whether the gateway accepts our credentials.
    pub async fn auth(&self) -> Result<bool, SendError> {
        let body = wire::encode_auth(&self.config.user, &self.config.password);
        self.call(body)
            .await
            .and_then(|text| wire::decode_auth(&text))
            .map_err(|e| self.client.scrub(e))
    }

    /// `get_credits(user, pass)`: the credits left, or
    /// [`Credits::Unavailable`] when the gateway answers FALSE.
    pub async fn get_credits(&self) -> Result<Credits, SendError> {
        let body = wire::encode_get_credits(&self.config.user, &self.config.password);
        self.call(body)
            .await
            .and_then(|text| wire::decode_get_credits(&text))
            .map_err(|e| self.client.scrub(e))
    }

    /// `get_status(user, pass, ids)`: per message id (as `send` returned
    /// it), its error code and delivery status, as
    /// [`MessageStatus::delivery`] reads them. No call for no ids.
    pub async fn get_status(&self, ids: &[&str]) -> Result<Vec<DeliveryStatus>, SendError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let body = wire::encode_get_status(&self.config.user, &self.config.password, ids);
        let entries = self
            .call(body)
            .await
            .and_then(|text| wire::decode_get_status(&text, ids))
            .map_err(|e| self.client.scrub(e))?;
        Ok(entries.iter().map(MessageStatus::delivery).collect())
    }

    /// `cancel_message(user, pass, ids)`: cancels scheduled messages; per
    /// id, whether it was cancelled. No call for no ids.
    pub async fn cancel_message(&self, ids: &[&str]) -> Result<Vec<Cancellation>, SendError> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let body = wire::encode_cancel_message(&self.config.user, &self.config.password, ids);
        self.call(body)
            .await
            .and_then(|text| wire::decode_cancel_message(&text, ids))
            .map_err(|e| self.client.scrub(e))
    }

    /// One `send_message` for the SMS of `batch` at `members` (same text,
    /// sender and time; distinct numbers): one result per member.
    async fn send_call(
        &self,
        batch: &[OutgoingSms],
        members: &[usize],
    ) -> Vec<Result<String, SendError>> {
        let Some(first) = members.first().and_then(|&i| batch.get(i)) else {
            return Vec::new();
        };
        let date = match first.send_at.map(wire::zurich_date).transpose() {
            Ok(date) => date,
            Err(reason) => {
                let error = SendError::permanent(Code::INTERNAL, reason);
                return http::all_failed(members.len(), &error);
            }
        };
        let numbers: Vec<&str> = members
            .iter()
            .map(|&i| http::digits(&batch[i].to))
            .collect();
        let body = wire::encode_send_message(
            &self.config.user,
            &self.config.password,
            &numbers,
            &first.text,
            first.sender_id.as_deref(),
            date.as_deref(),
        );
        let results = match self.call(body).await {
            Ok(text) => wire::decode_send_message(&text, &numbers),
            Err(e) => http::all_failed(numbers.len(), &e),
        };
        members
            .iter()
            .zip(results)
            .map(|(&i, result)| match result {
                Ok(Some(id)) => Ok(id),
                Ok(None) => {
                    // Accepted (code 1 or 9) without an id: our reference
                    // stands in for it.
                    tracing::info!(
                        reference = %batch[i].reference,
                        "netoxygen accepted an SMS without giving its id"
                    );
                    Ok(batch[i].reference.clone())
                }
                Err(e) => Err(self.client.scrub(e)),
            })
            .collect()
    }
}

/// Splits a batch into `send_message` calls: indices of SMS sharing text,
/// sender id and send time, in order of first appearance, each number at
/// most once per call and at most `max` numbers per call.
pub fn plan_calls(batch: &[OutgoingSms], max: usize) -> Vec<Vec<usize>> {
    let max = max.max(1);
    let mut calls: Vec<Vec<usize>> = Vec::new();
    for (i, sms) in batch.iter().enumerate() {
        let fits = |call: &Vec<usize>| {
            let head = &batch[call[0]];
            call.len() < max
                && head.text == sms.text
                && head.sender_id == sms.sender_id
                && head.send_at == sms.send_at
                && call.iter().all(|&j| batch[j].to != sms.to)
        };
        match calls.iter_mut().find(|call| fits(call)) {
            Some(call) => call.push(i),
            None => calls.push(vec![i]),
        }
    }
    calls
}

#[async_trait]
impl Provider for Netoxygen {
    fn max_batch(&self) -> usize {
        wire::MAX_NUMBERS_PER_CALL
    }

    async fn send(&self, batch: &[OutgoingSms]) -> Vec<Result<String, SendError>> {
        let mut results: Vec<Option<Result<String, SendError>>> = vec![None; batch.len()];
        // Set once a call fails in a way that stops the batch (transient, or
        // the provider is unusable): the rest get a copy without being sent.
        let mut stopped: Option<SendError> = None;
        for members in plan_calls(batch, wire::MAX_NUMBERS_PER_CALL) {
            let answers = match &stopped {
                Some(error) => http::all_failed(members.len(), error),
                None => self.send_call(batch, &members).await,
            };
            for (&i, answer) in members.iter().zip(answers) {
                if let Err(e) = &answer
                    && e.kind != FailureKind::Permanent
                    && stopped.is_none()
                {
                    tracing::warn!(
                        numbers = members.len(),
                        detail = %e.detail,
                        "netoxygen: call failed; the rest of the batch is not sent"
                    );
                    stopped = Some(SendError::not_attempted(e));
                }
                results[i] = Some(answer);
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(SendError::transient("not sent to NetOxygen"))))
            .collect()
    }

    async fn check(&self) -> Result<String, SendError> {
        if !self.auth().await? {
            return Err(SendError::unusable(
                Code::BAD_CREDENTIALS,
                format!(
                    "NetOxygen auth returned FALSE: user {} and its password are refused",
                    self.config.user
                ),
            ));
        }
        match self.get_credits().await? {
            Credits::Balance(balance) if balance <= 0.0 => Err(SendError::unusable(
                Code::NO_CREDIT,
                format!("credentials accepted, but no credit left (balance {balance})"),
            )),
            Credits::Balance(balance) => {
                Ok(format!("credentials accepted, balance {balance} credits"))
            }
            Credits::Unavailable => {
                Ok("credentials accepted, balance unavailable (get_credits returned FALSE)".into())
            }
        }
    }
}

/// The password in every form it may come back in: as given, as this
/// adapter's XML-RPC writer escapes it ([`xmlrpc::STYLE`]: `&`, `<`, `>`,
/// CR), and with quotes escaped too (with or without CR as `&#13;`), as
/// another writer or the gateway may; longest first, so
/// that one containing another is masked whole.
fn password_forms(password: &str) -> Vec<String> {
    if password.is_empty() {
        return Vec::new();
    }
    let mut forms = vec![
        password.to_string(),
        xml::escape(password, xmlrpc::STYLE),
        xml::escape(password, xml::Style::MARKUP),
        xml::escape(
            password,
            xml::Style {
                cr_reference: true,
                ..xml::Style::MARKUP
            },
        ),
    ];
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    forms
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms(n: u32, to: &str, text: &str) -> OutgoingSms {
        crate::providers::test_sms(format!("ref-{n}"), i64::from(n), to, text)
    }

    fn config(password: &str) -> NetoxygenConfig {
        toml::from_str(&format!("user = \"user33\"\npassword = \"{password}\"\n")).unwrap()
    }

    #[test]
    fn calls_group_one_text_and_split_the_rest() {
        let mut batch = vec![
            sms(0, "+41791234567", "a"),
            sms(1, "+41791234568", "b"),
            sms(2, "+41791234569", "a"),
            sms(3, "+41791234567", "a"), // same number again
            sms(4, "+41791234570", "a"),
            sms(5, "+41791234571", "a"),
            sms(6, "+41791234572", "a"),
        ];
        batch[5].sender_id = Some("MaSociete".into());
        batch[6].send_at = Some(1_782_909_000_000);
        assert_eq!(
            plan_calls(&batch, 100),
            vec![vec![0, 2, 4], vec![1], vec![3], vec![5], vec![6]]
        );
        assert_eq!(
            plan_calls(&batch[..5], 2),
            vec![vec![0, 2], vec![1], vec![3, 4]]
        );
        assert!(plan_calls(&[], 100).is_empty());
    }

    #[test]
    fn the_config_has_the_documents_url_by_default_and_hides_the_password() {
        let c = config("s3cret-pw");
        assert_eq!(c.url, DEFAULT_URL);
        assert_eq!(c.timeout_ms, http::DEFAULT_TIMEOUT_MS);
        let shown = format!("{} {:?}", c.describe(), c);
        assert!(!shown.contains("s3cret-pw"), "{shown}");
        assert_eq!(
            c.describe(),
            "netoxygen → https://sms.netoxygen.ch/api2/ (user user33, password set)"
        );
        assert!(
            toml::from_str::<NetoxygenConfig>("user = \"u\"\npassword = \"p\"\ntoken = \"x\"\n")
                .is_err()
        );
    }

    #[test]
    fn every_escaped_form_of_the_password_is_scrubbed() {
        let provider = Netoxygen::new(&config("a\\\"b<c&d é")).unwrap();
        assert_eq!(provider.config.password, "a\"b<c&d é");
        for form in ["a\"b<c&d é", "a\"b&lt;c&amp;d é", "a&quot;b&lt;c&amp;d é"] {
            let e = provider
                .client
                .scrub(SendError::transient(format!("echo [{form}] end")));
            assert_eq!(e.detail, "echo [***] end", "{form}");
        }
    }

    #[test]
    fn the_password_is_scrubbed_from_details() {
        let provider = Netoxygen::new(&config("p&w<1>")).unwrap();
        let e = provider.client.scrub(SendError::unusable(
            Code::BAD_CREDENTIALS,
            "fault: bad password p&w<1> (was p&amp;w&lt;1&gt;)",
        ));
        assert_eq!(e.detail, "fault: bad password *** (was ***)");
    }
}
