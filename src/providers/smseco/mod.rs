//! The `smseco` provider: SMSECO API v2.0 (Côte d'Ivoire), its XML form
//! (default) or its JSON form.
//!
//! # Wire format
//!
//! Every call is an HTTP `POST` of `application/x-www-form-urlencoded` with
//! one field, `XML` (or `JSON`), whose value is the UTF-8 document:
//!
//! - send (`xml/sendsms/`, or `json/sendsms/` with `format = "json"`):
//!   `<SMS><compte><login/><password/></compte><message><msgid/>
//!   <expediteur/><msg/>[<unicode>1</unicode>][<datesend>AAAA-MM-JJ
//!   HH:MM</datesend>]</message><destinataires><numero>33601020304</numero>
//!   …</destinataires></SMS>`; numbers are `indicatif+numero` without `+`;
//!   `msgid` is the reference of the request's first SMS (≤ 30 characters);
//! - per-number texts use the mail-merge (`publipostage`) form: `<msg>{t}</msg>`
//!   and `<destinataires><sms><numero/><datas><t>whole text</t></datas></sms>…`;
//! - the answer is `<REPONSE>` with `statut` > 0 (the number of valid
//!   recipients) and one `<messages><sms><smsfid/><destination/>` per valid
//!   recipient, or `statut` < 0 and `texte` for an error;
//! - `check` posts `xml/getbalance/` (`credits`, `expire`);
//!   [`Smseco::delivery_reports`] posts `xml/getdlrs/`.
//!
//! # Batching
//!
//! SMS of a batch that share a sender, a send time and GSM-7-ness (the
//! message-level fields) go in one request: one text for all uses the plain
//! `<numero>` list, different texts the mail-merge form. A request holds at
//! most [`request::MAX_PER_REQUEST`] (500) numbers and never the same number
//! twice (SMSECO silently keeps one message per number per request): a
//! second SMS to a number goes in a further request. Requests are sent one
//! after the other. Once one fails with a transient error (no answer,
//! timeout, HTTP 408/425/429/5xx, an unreadable answer) or says the account
//! cannot send (credentials, credit, unknown command), the rest of the
//! batch is not sent: its SMS get a copy of that error ("not sent: an
//! earlier request of the batch failed: …"). A permanent refusal of one
//! request (a sender not registered, say) does not stop the others.
//!
//! Each SMS's result is the `smsfid` of the `messages` entry with its
//! number. An SMS whose number SMSECO did not list was not a valid
//! recipient: permanent, code 7 (never reported sent).
//!
//! # Code mapping (`statut` < 0)
//!
//! | statut | meaning                              | kind        | code |
//! |--------|--------------------------------------|-------------|------|
//! | -1     | invalid XML (our request)            | permanent   | 999  |
//! | -2, -3 | login / password not given           | unusable    | 3    |
//! | -4     | authentication failed                | unusable    | 3    |
//! | -5     | no message                           | permanent   | 999  |
//! | -6     | not enough credits                   | unusable    | 12   |
//! | -7     | no recipient                         | permanent   | 7    |
//! | -8     | sender not registered                | permanent   | 33   |
//! | -9     | no valid recipient                   | permanent   | 7    |
//! | -10    | msgid longer than 30 characters      | permanent   | 999  |
//! | -11    | account may not send SMS             | unusable    | 3    |
//! | -12    | account not active                   | unusable    | 3    |
//! | -13    | bad time for a scheduled send        | permanent   | 999  |
//! | -14    | unknown command (wrong `url`)        | unusable    | 999  |
//! | -15    | no status available (getdlrs only)   | permanent   | 999  |
//! | other  | undocumented (`texte` kept)          | permanent   | 999  |
//!
//! An unreadable answer (no `<REPONSE>`, no numeric `statut`, bad JSON) is
//! transient; HTTP statuses and transport failures are sorted by
//! [`http::check_status`] (5xx, 408, 429, timeouts: transient; 401/403:
//! unusable 3; other: unusable 999). In `getdlrs`, -15 means "nothing new".
//!
//! # Where the document is silent
//!
//! - Time zone of `datesend`: UTC, which is Côte d'Ivoire's time all year
//!   (Africa/Abidjan); rounded up to the minute; a `send_at` less than two
//!   minutes ahead is sent at once (a past time would be statut -13).
//! - `<unicode>1</unicode>` is set when a text is not GSM-7
//!   ([`crate::gsm::is_gsm7`]); otherwise it is left out.
//! - The JSON form is posted as a form field `JSON=…` like the XML one (the
//!   cURL sample's `Content-Type: application/json` contradicts its own
//!   `JSON=` body); its date key is `datesend` (§II-2-1), not `date send`.
//! - A sender id is required (`requires_sender_id`): SMSECO sends only from
//!   registered sender names (statut -8, `getsenders`).
//! - Secrets: the password is never logged; it is masked in every detail,
//!   should SMSECO ever echo it, in every form it is sent in: as given,
//!   XML-escaped, JSON-escaped, and each of these percent-encoded (the form
//!   body), with `+` or `%20` for a space and upper- or lower-case hex.

pub mod request;
pub mod response;

pub use response::{Balance, DeliveryReport, DlrStatus};

use super::ProviderError;
use super::settings::{self, ProviderSettings};
use super::{DeliveryStatus, FailureKind, OutgoingSms, Provider, SendError, http};
use crate::clock::Clock;
use async_trait::async_trait;
use serde::Deserialize;
use std::sync::Arc;

/// The content type of every request.
const FORM: &str = "application/x-www-form-urlencoded";

/// Which of SMSECO's two POST forms `sendsms` uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmsecoFormat {
    /// `XML=<SMS>…</SMS>` to `xml/sendsms/` (§I-1, §II-1): the default.
    #[default]
    Xml,
    /// `JSON={…}` to `json/sendsms/` (§I-3, §II-2), same fields.
    Json,
}

/// `type = "smseco"`: an SMSECO account.
///
/// ```toml
/// [providers.smseco]
/// type = "smseco"
/// url = "http://www.smseco.com/api/"
/// login = "ops@masociete.com"
/// password = "…"
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsecoConfig {
    /// The API's base URL, `http://www.smseco.com/api/`: the document's
    /// paths (`xml/sendsms/`, `xml/getbalance/`, `xml/getdlrs/`,
    /// `json/sendsms/`) are appended to it.
    pub url: String,
    /// The account's `login` (its email, mobile number or SMSECO id).
    pub login: String,
    /// The account's `password` (a secret: never logged or shown).
    pub password: String,
    /// `xml` (default) or `json`: the form `sendsms` is posted in. Balance
    /// checks and delivery reports always use the XML form.
    #[serde(default)]
    pub format: SmsecoFormat,
    /// Timeout of each HTTP request, in milliseconds (default 10 000). A
    /// request that times out is retried later, so it should exceed
    /// SMSECO's usual answer time for a full request (500 numbers).
    #[serde(default = "super::http::default_timeout_ms")]
    pub timeout_ms: u64,
    /// The most HTTP requests per second sent to this provider (none: no
    /// limit), enforced by the provider's own HTTP client (`http::Client`)
    /// on every request, however many requests a batch needs.
    #[serde(default)]
    pub rate_limit: Option<std::num::NonZeroU32>,
}

impl std::fmt::Debug for SmsecoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl ProviderSettings for SmsecoConfig {
    /// A one-line description without secrets.
    fn describe(&self) -> String {
        let format = match self.format {
            SmsecoFormat::Xml => "xml",
            SmsecoFormat::Json => "json",
        };
        format!(
            "smseco → {} ({format} form, login and password set)",
            self.url
        )
    }

    fn rate_limit(&self) -> Option<std::num::NonZeroU32> {
        self.rate_limit
    }

    fn validate(&self) -> Result<(), (String, String)> {
        settings::validate_http(
            &[("login", &self.login), ("password", &self.password)],
            &self.url,
            self.timeout_ms,
        )
    }

    fn build(&self, name: &str, clock: &Clock) -> Result<Arc<dyn Provider>, ProviderError> {
        let provider = Smseco::new(self).map_err(|reason| settings::http_error(name, reason))?;
        Ok(Arc::new(provider.with_clock(clock.clone())))
    }
}

/// The `smseco` provider.
pub struct Smseco {
    /// The configuration (holds the password: never printed).
    config: SmsecoConfig,
    /// The HTTP client, with the configured timeout.
    client: http::Client,
    /// What "now" is when deciding whether a `send_at` is far enough ahead
    /// to need a `datesend`: the daemon's clock, settable by tests.
    clock: Clock,
}

impl Smseco {
    /// Builds the provider (its HTTP client).
    pub fn new(config: &SmsecoConfig) -> Result<Self, String> {
        Ok(Smseco {
            config: config.clone(),
            client: http::client(config.timeout_ms, config.rate_limit)?
                .with_secrets(request::secret_forms(&config.password)),
            clock: Clock::default(),
        })
    }

    /// The same provider, reading "now" from `clock`.
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// POSTs `field=value` to `path` and returns the decoded body.
    async fn post(&self, path: &str, field: &str, value: &str) -> Result<String, SendError> {
        let url = http::endpoint(&self.config.url, path);
        let body = request::form_body(field, value).into_bytes();
        let reply = http::post(&self.client, &url, FORM, body).await?;
        Ok(reply.text())
    }

    /// Sends one planned request and reads SMSECO's answer.
    async fn send_request(
        &self,
        req: &request::SendRequest,
    ) -> Result<response::SendAnswer, SendError> {
        let (login, password) = (&self.config.login, &self.config.password);
        let text = match self.config.format {
            SmsecoFormat::Xml => {
                let xml = request::encode_xml(req, login, password);
                self.post("xml/sendsms/", "XML", &xml).await?
            }
            SmsecoFormat::Json => {
                let json = request::encode_json(req, login, password);
                self.post("json/sendsms/", "JSON", &json).await?
            }
        };
        response::decode_send(&text)
    }

    /// The account's balance (`xml/getbalance/`, §IV-1).
    pub async fn balance(&self) -> Result<Balance, SendError> {
        let xml = request::encode_balance(&self.config.login, &self.config.password);
        let text = self
            .post("xml/getbalance/", "XML", &xml)
            .await
            .map_err(|e| self.client.scrub(e))?;
        response::decode_balance(&text).map_err(|e| self.client.scrub(e))
    }

    /// Delivery reports (`xml/getdlrs/`, §III-2): of one send (`msgfid`),
    /// one SMS (`smsfid`, the id [`Provider::send`] returned), or every
    /// report not yet read. SMSECO hands each report out once: a report read
    /// here is not returned again.
    pub async fn delivery_reports(
        &self,
        msgfid: Option<&str>,
        smsfid: Option<&str>,
    ) -> Result<Vec<DeliveryStatus>, SendError> {
        let xml = request::encode_dlrs(&self.config.login, &self.config.password, msgfid, smsfid);
        let text = self
            .post("xml/getdlrs/", "XML", &xml)
            .await
            .map_err(|e| self.client.scrub(e))?;
        let reports = response::decode_dlrs(&text).map_err(|e| self.client.scrub(e))?;
        Ok(reports.iter().map(DeliveryReport::delivery).collect())
    }
}

#[async_trait]
impl Provider for Smseco {
    fn max_batch(&self) -> usize {
        request::MAX_PER_REQUEST
    }

    async fn send(&self, batch: &[OutgoingSms]) -> Vec<Result<String, SendError>> {
        let requests = request::plan(batch, self.clock.now().as_millisecond());
        let mut results: Vec<Option<Result<String, SendError>>> = vec![None; batch.len()];
        // Set once a request fails in a way that stops the batch (transient,
        // or the account cannot send): the rest of the batch is answered
        // the same without more requests.
        let mut stopped: Option<SendError> = None;
        for req in &requests {
            let outcome = match &stopped {
                Some(e) => http::all_failed(req.recipients.len(), e),
                None => match self.send_request(req).await {
                    Ok(answer) => response::results(req, &answer),
                    Err(e) => {
                        let e = self.client.scrub(e);
                        tracing::warn!(
                            recipients = req.recipients.len(),
                            error = %e.detail,
                            "smseco: request refused"
                        );
                        if e.kind != FailureKind::Permanent {
                            stopped = Some(SendError::not_attempted(&e));
                        }
                        http::all_failed(req.recipients.len(), &e)
                    }
                },
            };
            for (recipient, result) in req.recipients.iter().zip(outcome) {
                if let Some(slot) = results.get_mut(recipient.index) {
                    *slot = Some(result.map_err(|e| self.client.scrub(e)));
                }
            }
        }
        results
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(SendError::transient("smseco: SMS left out"))))
            .collect()
    }

    fn requires_sender_id(&self) -> bool {
        true
    }

    async fn check(&self) -> Result<String, SendError> {
        let balance = self.balance().await?;
        let expire = balance
            .expire
            .as_deref()
            .map(|d| format!(", expire {d}"))
            .unwrap_or_default();
        match balance.credits_value() {
            Some(c) if c <= 0.0 => Err(SendError::unusable(
                crate::codes::Code::NO_CREDIT,
                format!(
                    "credentials accepted, but no credit left (balance {}{expire})",
                    balance.credits
                ),
            )),
            _ => Ok(format!(
                "credentials accepted, balance {} credits{expire}",
                balance.credits
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(toml_body: &str) -> Result<SmsecoConfig, toml::de::Error> {
        toml::from_str(toml_body)
    }

    #[test]
    fn config_defaults_and_describe_hide_the_password() {
        let c = config(
            "url = \"http://www.smseco.com/api/\"\nlogin = \"me@x.ci\"\npassword = \"s3cr3t-pw\"\n",
        )
        .unwrap();
        assert_eq!(c.format, SmsecoFormat::Xml);
        assert_eq!(c.timeout_ms, http::DEFAULT_TIMEOUT_MS);
        assert_eq!(c.rate_limit, None);
        let shown = format!("{} {:?}", c.describe(), c);
        assert!(!shown.contains("s3cr3t-pw"), "{shown}");
        assert!(shown.contains("http://www.smseco.com/api/"));
        assert!(shown.contains("password set"));

        let c = config(
            "url = \"http://h/\"\nlogin = \"l\"\npassword = \"p\"\nformat = \"json\"\ntimeout_ms = 500\nrate_limit = 5\n",
        )
        .unwrap();
        assert_eq!(c.format, SmsecoFormat::Json);
        assert_eq!(c.timeout_ms, 500);
        assert!(c.describe().contains("json form"));
        assert!(
            config("url = \"u\"\nlogin = \"l\"\npassword = \"p\"\nformat = \"soap\"\n").is_err()
        );
        assert!(config("url = \"u\"\nlogin = \"l\"\npassword = \"p\"\nextra = 1\n").is_err());
    }

    #[test]
    fn scrub_masks_the_password() {
        let c = config("url = \"http://h/\"\nlogin = \"l\"\npassword = \"s3cr3t-pw\"\n").unwrap();
        let p = Smseco::new(&c).unwrap();
        let e = p.client.scrub(SendError::transient("echo: s3cr3t-pw!"));
        assert_eq!(e.detail, "echo: ***!");
    }

    #[test]
    fn scrub_masks_every_encoding_of_the_password() {
        let c = config("url = \"http://h/\"\nlogin = \"l\"\npassword = 'a\"b<c&d é'\n").unwrap();
        assert_eq!(c.password, "a\"b<c&d é");
        let p = Smseco::new(&c).unwrap();
        for form in [
            "a\"b<c&d é",
            "a&quot;b&lt;c&amp;d é",
            "a\\\"b<c&d é",
            "a%22b%3Cc%26d+%C3%A9",
            "a%22b%3cc%26d%20%c3%a9",
            "a%26quot%3Bb%26lt%3Bc%26amp%3Bd+%C3%A9",
            "a%5C%22b%3Cc%26d+%C3%A9",
        ] {
            let e = p
                .client
                .scrub(SendError::transient(format!("echo [{form}] end")));
            assert_eq!(e.detail, "echo [***] end", "{form}");
        }
    }
}
