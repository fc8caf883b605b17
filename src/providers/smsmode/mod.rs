//! The `smsmode` provider: sMsmode HTTP API 3.1 (document of 11 January 2018).
//!
//! # Wire format
//!
//! Every call is a `POST` under the configured `url` (by default
//! `https://api.smsmode.com/http/1.6/`). `sendSMS.do` and the status calls
//! carry `accessToken` in the form body, so the secret stays out of proxy
//! and server logs; `sendSMSBatch.do` takes it in the query string, as the
//! document's only example of that call does (no error or log line ever
//! shows a URL). Answers are plain text, `code | description | id`.
//!
//! - `sendSMS.do` (items 3 and 16), `application/x-www-form-urlencoded`:
//!   `accessToken`, `message`, `numero` (international digits without `+`,
//!   comma-separated), `emetteur` (the sender id, if any), `date_envoi`
//!   (`ddMMyyyy-HH:mm`, French time, for a scheduled send), `nbr_msg` (the
//!   segments the text needs, so sMsmode never cuts it: its default is 5),
//!   `refClient` (our reference; one per request, so the first SMS's). A text
//!   that fits GSM-7 goes as ISO-8859-15 bytes (`€` as `0xA4`, the standard
//!   Latin-9 byte; the table's `%80` alternative is not used); any other text
//!   goes as UTF-8 with `classe_msg=9`, so nothing becomes `?`. The body's
//!   `Content-Type` names its charset. `stop` is never sent: mail2sms
//!   accounts add their own STOP mention.
//! - `sendSMSBatch.do` (item 17): `accessToken`, `nbr_msg` and `date_envoi`
//!   in the query string, and a `multipart/form-data` body with a CSV file `fichier` in
//!   ISO-8859-15 with the columns `numero,message,emetteur,refClient` (a
//!   text per number).
//! - `credit.do` (item 5): the balance, a bare number (`212.5`).
//! - `compteRendu.do` (item 4) and `smsStatus.do` (item 11): per-number
//!   delivery reports and an SMS's status, as [`Smsmode::delivery_report`]
//!   and [`Smsmode::sms_status`] (not yet used by the dispatcher).
//!
//! # Batching
//!
//! A batch becomes as few requests as the API allows ([`wire::plan`]): SMS
//! sharing text, sender and date go as one `sendSMS.do`; several different
//! GSM-7 texts (same date) go as one `sendSMSBatch.do`; Unicode texts go one
//! `sendSMS.do` per distinct (text, sender), since the batch call has no
//! Unicode class. At most [`wire::MAX_NUMBERS_PER_REQUEST`] numbers per
//! request, and a number at most once per request. Requests go one after
//! the other. Once one fails with a transient error (no answer, HTTP
//! 408/425/429/5xx, an unreadable answer, code 50) or says the provider is
//! unusable (credentials, credit, code 31), the rest of the batch is not
//! sent: its SMS get [`SendError::not_attempted`] ("not sent: an earlier
//! request of the batch failed: …"). A permanent refusal of one request (code 35, say)
//! does not stop the others.
//!
//! Every SMS of an accepted request gets the request's `smsID` (or
//! `campagneID`) as its provider reference. The send answer does not list
//! numbers, so a number sMsmode drops cannot be seen at send time: it shows
//! in the delivery report (status 3998, invalid recipient, for example).
//!
//! # Codes
//!
//! | sMsmode send answer                 | kind        | iSendPro code |
//! |-------------------------------------|-------------|---------------|
//! | 0 accepted (whatever follows)       | sent        | 0             |
//! | 31 internal error                   | unusable    | 999           |
//! | 32 authentication error             | unusable    | 3             |
//! | 33 insufficient credits             | unusable    | 12            |
//! | 35 missing parameter                | permanent   | 999           |
//! | 50 temporarily unreachable          | transient   | (999)         |
//! | any other code                      | permanent   | 999           |
//! | unreadable answer (no numeric code) | transient   | (999)         |
//! | HTTP 408/425/429/5xx, timeout, connection failure | transient | (999) |
//! | HTTP 401/403                        | unusable    | 3             |
//! | other HTTP status (3xx included: redirects are not followed) | unusable | 999 |
//!
//! Code 0 is an acceptance even when the rest of the answer is odd (an id
//! with blanks, extra fields): the id is the third field, trimmed, and the
//! oddity is logged; retrying would send the SMS twice. Code 31 ("Erreur
//! interne") is not called temporary by the document and the request may
//! have been taken: rather than retrying on sMsmode (a possible double
//! send), the next provider is tried.
//!
//! The access token is blanked out of every error detail, whatever the
//! provider echoes back.

pub mod charset;
pub mod status;
pub mod wire;

use super::ProviderError;
use super::settings::{self, ProviderSettings};
use super::{DeliveryStatus, FailureKind, OutgoingSms, Provider, SendError, http};
use crate::clock::Clock;
use async_trait::async_trait;
use serde::Deserialize;
use std::sync::Arc;
use wire::{Endpoint, PlannedRequest, SendAnswer};

/// `type = "smsmode"`: an sMsmode account.
///
/// ```toml
/// [providers.smsmode]
/// type = "smsmode"
/// url = "https://api.smsmode.com/http/1.6/"
/// access_token = "Ab1CD2efg3Hi"
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsmodeConfig {
    /// The API's base URL, which the call names (`sendSMS.do`, …) are
    /// appended to: `https://api.smsmode.com/http/1.6/` (with or without
    /// the trailing slash).
    pub url: String,
    /// The account's API key (`accessToken`), made in the sMsmode account
    /// under "Mes données personnelles > Clé d'accès API". Sent in the form
    /// body of `sendSMS.do` and the status calls, but in the query string of
    /// `sendSMSBatch.do`, as the document's example of that call does (so
    /// it may reach the provider's access logs); never shown in an error
    /// or a log line.
    pub access_token: String,
    /// How long one request may take, in milliseconds (connect, send,
    /// answer) before it counts as a transient failure. Default 10 000.
    #[serde(default = "super::http::default_timeout_ms")]
    pub timeout_ms: u64,
    /// The most HTTP requests per second sent to this provider (none: no
    /// limit), enforced by the provider's own HTTP client (`http::Client`)
    /// on every request, however many requests a batch needs. The document
    /// states no limit.
    #[serde(default)]
    pub rate_limit: Option<std::num::NonZeroU32>,
}

impl std::fmt::Debug for SmsmodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl ProviderSettings for SmsmodeConfig {
    /// A one-line description without secrets: the type, the URL, and
    /// whether the access token is set.
    fn describe(&self) -> String {
        let token = if self.access_token.is_empty() {
            "access token missing"
        } else {
            "access token set"
        };
        format!("smsmode → {} ({token})", self.url)
    }

    fn rate_limit(&self) -> Option<std::num::NonZeroU32> {
        self.rate_limit
    }

    fn validate(&self) -> Result<(), (String, String)> {
        settings::validate_http(
            &[("access_token", &self.access_token)],
            &self.url,
            self.timeout_ms,
        )
    }

    fn build(&self, name: &str, clock: &Clock) -> Result<Arc<dyn Provider>, ProviderError> {
        let provider = Smsmode::new(self).map_err(|reason| settings::http_error(name, reason))?;
        Ok(Arc::new(provider.with_clock(clock.clone())))
    }
}

/// The `smsmode` provider.
pub struct Smsmode {
    /// The configuration (base URL, access token).
    config: SmsmodeConfig,
    /// One client, with the configured timeout.
    client: http::Client,
    /// Europe/Paris, the time zone of `date_envoi`.
    paris: jiff::tz::TimeZone,
    /// What "now" is when deciding whether a `send_at` is still ahead
    /// (and so needs a `date_envoi`): the daemon's clock, settable by tests.
    clock: Clock,
}

impl Smsmode {
    /// Builds the provider: its HTTP client and the French time zone. Fails
    /// if the access token is empty.
    pub fn new(config: &SmsmodeConfig) -> Result<Self, String> {
        if config.access_token.trim().is_empty() {
            return Err("access_token is empty".into());
        }
        let paris = jiff::tz::TimeZone::get("Europe/Paris")
            .map_err(|e| format!("no Europe/Paris time zone for date_envoi: {e}"))?;
        Ok(Smsmode {
            config: config.clone(),
            client: http::client(config.timeout_ms, config.rate_limit)?.with_secrets([
                config.access_token.clone(),
                http::form_encode(&[("", config.access_token.as_bytes())])
                    .trim_start_matches('=')
                    .to_string(),
            ]),
            paris,
            clock: Clock::default(),
        })
    }

    /// The same provider, reading "now" from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// The URL of a call.
    fn url(&self, path: &str) -> String {
        http::endpoint(&self.config.url, path)
    }

    /// POSTs a form of `(name, value)` pairs (UTF-8/ASCII values) to a
    /// call, with the access token first, and returns the answer's text.
    async fn query(&self, path: &str, fields: &[(&str, &str)]) -> Result<String, SendError> {
        let mut pairs: Vec<(&str, &[u8])> =
            vec![("accessToken", self.config.access_token.as_bytes())];
        pairs.extend(fields.iter().map(|(k, v)| (*k, v.as_bytes())));
        let body = http::form_encode(&pairs).into_bytes();
        let reply = http::post(
            &self.client,
            &self.url(path),
            "application/x-www-form-urlencoded; charset=UTF-8",
            body,
        )
        .await
        .map_err(|e| self.client.scrub(e))?;
        Ok(reply.text())
    }

    /// Sends one planned request; its answer is every member's.
    async fn execute(
        &self,
        batch: &[OutgoingSms],
        request: &PlannedRequest,
    ) -> Result<String, SendError> {
        let token = &self.config.access_token;
        let encoded = match request.endpoint {
            Endpoint::SendSms => wire::encode_send_sms(token, batch, request),
            Endpoint::SendSmsBatch => {
                let csv = wire::batch_csv(batch, &request.members);
                let boundary = wire::pick_boundary(&csv, || fastrand::u64(..));
                wire::encode_send_batch(token, batch, request, &boundary)
            }
        };
        tracing::debug!(
            call = encoded.path,
            numbers = request.members.len(),
            charset = ?request.charset,
            scheduled = request.date_envoi.is_some(),
            "smsmode: sending"
        );
        let mut url = self.url(encoded.path);
        if let Some(query) = &encoded.query {
            url.push('?');
            url.push_str(query);
        }
        let reply = http::post(&self.client, &url, &encoded.content_type, encoded.body)
            .await
            .map_err(|e| self.client.scrub(e))?;
        let answer = wire::decode_send(&reply.text()).map_err(|e| self.client.scrub(e))?;
        match answer {
            SendAnswer::Accepted(id) => {
                if id.is_empty() {
                    tracing::warn!(
                        call = encoded.path,
                        "smsmode: accepted without an id; counted as sent"
                    );
                }
                Ok(id)
            }
            SendAnswer::Refused { code, description } => {
                Err(self.client.scrub(wire::send_error(code, &description)))
            }
        }
    }

    /// The account's balance in credits (`credit.do`; negative for a
    /// post-paid account).
    pub async fn balance(&self) -> Result<f64, SendError> {
        let text = self.query(wire::CREDIT_PATH, &[]).await?;
        wire::decode_credit(&text).map_err(|e| self.client.scrub(e))
    }

    /// The delivery report of an SMS (`compteRendu.do`): each recipient's
    /// status ([`status::RecipientStatus::delivery`]). `sms_id` is the id a send
    /// returned; SMS older than 30 days are not found.
    pub async fn delivery_report(&self, sms_id: &str) -> Result<Vec<DeliveryStatus>, SendError> {
        let text = self
            .query(status::COMPTE_RENDU_PATH, &[("smsID", sms_id)])
            .await?;
        let report = status::decode_compte_rendu(&text).map_err(|e| self.client.scrub(e))?;
        Ok(report.iter().map(|r| r.delivery(sms_id)).collect())
    }

    /// The status of an SMS (`smsStatus.do`; a campaign's status if it had
    /// several recipients; [`status::SmsStatus::delivery`]).
    pub async fn sms_status(&self, sms_id: &str) -> Result<DeliveryStatus, SendError> {
        let text = self
            .query(status::SMS_STATUS_PATH, &[("smsID", sms_id)])
            .await?;
        let status = status::decode_sms_status(&text).map_err(|e| self.client.scrub(e))?;
        Ok(status.delivery(sms_id))
    }
}

#[async_trait]
impl Provider for Smsmode {
    fn max_batch(&self) -> usize {
        wire::MAX_NUMBERS_PER_REQUEST
    }

    async fn send(&self, batch: &[OutgoingSms]) -> Vec<Result<String, SendError>> {
        let now = self.clock.now().as_millisecond();
        let mut results: Vec<Option<Result<String, SendError>>> = vec![None; batch.len()];
        // Set once a request fails in a way that stops the batch (transient
        // or unusable): the rest get a copy without being sent.
        let mut stopped: Option<SendError> = None;
        for request in wire::plan(batch, now, &self.paris) {
            let outcome = match &stopped {
                Some(error) => Err(error.clone()),
                None => {
                    let outcome = self.execute(batch, &request).await;
                    if let Err(error) = &outcome
                        && error.kind != FailureKind::Permanent
                    {
                        tracing::warn!(
                            numbers = request.members.len(),
                            detail = %error.detail,
                            "smsmode: request failed; the rest of the batch is not sent"
                        );
                        stopped = Some(SendError::not_attempted(error));
                    }
                    outcome
                }
            };
            for &i in &request.members {
                results[i] = Some(outcome.clone());
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(SendError::transient("smsmode: SMS left unsent"))))
            .collect()
    }

    async fn check(&self) -> Result<String, SendError> {
        let balance = self.balance().await?;
        Ok(format!("credentials accepted, balance {balance} credits"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(token: &str) -> SmsmodeConfig {
        toml::from_str(&format!(
            "url = \"https://api.smsmode.com/http/1.6/\"\naccess_token = \"{token}\""
        ))
        .unwrap()
    }

    #[test]
    fn config_never_shows_the_token() {
        let c = config("S3cr3tT0k3n");
        assert_eq!(c.timeout_ms, 10_000);
        assert_eq!(c.rate_limit, None);
        assert_eq!(
            c.describe(),
            "smsmode → https://api.smsmode.com/http/1.6/ (access token set)"
        );
        assert!(!format!("{c:?}").contains("S3cr3tT0k3n"));
        assert!(config("").describe().contains("access token missing"));
    }

    #[test]
    fn config_rejects_unknown_keys_and_empty_tokens() {
        let unknown: Result<SmsmodeConfig, _> =
            toml::from_str("url = \"https://x.example/\"\naccess_token = \"t\"\npassword = \"p\"");
        assert!(unknown.is_err());
        assert_eq!(
            Smsmode::new(&config(" ")).err().unwrap(),
            "access_token is empty"
        );
        assert!(Smsmode::new(&config("t")).is_ok());
    }

    #[test]
    fn errors_are_scrubbed_of_the_token() {
        let provider = Smsmode::new(&config("S3cr3tT0k3n")).unwrap();
        let e = provider.client.scrub(SendError::transient(
            "HTTP 500: bad accessToken=S3cr3tT0k3n",
        ));
        assert_eq!(e.detail, "HTTP 500: bad accessToken=***");
    }
}
