//! The `smsfactor` provider: smsfactor's XML API v2.2 (document dated
//! 01/12/2011).
//!
//! # Wire format
//!
//! Sending is one `POST {url}/apiV2.php` whose body is the XML flow itself
//! (`Content-Type: text/xml; charset=UTF-8`, with an XML declaration; the
//! document says the flow is POSTed and names no form variable):
//!
//! ```text
//! <?xml version="1.0" encoding="UTF-8"?>
//! <sms><authentication><username>…</username><password>…</password></authentication>
//! <message><sender>…</sender><text>…</text>[<delay>2010-09-21T21:10:00</delay>]</message>
//! <recipients><gsm gsmsmsid="REF">33601020304</gsm>…</recipients></sms>
//! ```
//!
//! (on one line; broken here for reading). Numbers go without their `+`;
//! `gsmsmsid` is our per-SMS `reference`, which is what a delivery report is
//! looked up by. `<delay>` is only sent for a scheduled send (`send_at`), as
//! Paris wall-clock time. `<isFlash>`, `<type>` and `<bookmark>` are left to
//! their defaults (not flash, `longSMS`). Every value is XML-escaped.
//! smsfactor itself turns characters outside GSM 7-bit into the nearest one
//! (`ë` → `e`); nothing is transliterated here.
//!
//! The answer is `<response><status/><message/><ticket/><credits/></response>`,
//! one status for the whole request: the ticket becomes the provider id of
//! every SMS of the request. Answers are read with a tolerant scanner
//! (`xml`), since the document's own examples are not well-formed XML.
//!
//! Delivery reports (`POST {url}/getDr.php`, [`Smsfactor::delivery_reports`])
//! take a ticket and a `gsmsmsid` and answer `<gsm number="…" gsmsmsid="…">STATUS</gsm>`
//! entries. They are not wired into the dispatcher yet.
//!
//! # Batching
//!
//! A batch (at most [`wire::MAX_RECIPIENTS`], 1000 SMS) is grouped by
//! (text, sender, `send_at`): each group is one request with one `<gsm>`
//! per SMS, groups sent one after the other, in the order of their first
//! SMS. The API has no per-number text, so SMS with different texts (mail
//! merge) go out as one request each. A number appears at most once per
//! request: a second SMS of the same group to a number already in it goes
//! in a later request (smsfactor may merge duplicates of a recipient list,
//! and that SMS would be reported sent without ever being delivered).
//! Results come back in input order.
//!
//! Once a request fails with a transient error (no answer, timeout, HTTP
//! 408/425/429/5xx, an unreadable answer) or says the account cannot send
//! (status -1, -3, HTTP 401/403/other), the rest of the batch is not sent:
//! its SMS get a copy of that error ("not sent: an earlier request of the
//! batch failed: …"). A permanent refusal of one request (status -2, -4, a
//! refused list) does not stop the others.
//!
//! Status -5 (the recipient list has an error) refuses a whole request,
//! valid numbers with it. So a refused request of several numbers is split
//! in two halves, each sent again, until the numbers at fault stand alone:
//! only they get code 7. Nothing is sent by a refused request, so the
//! halves cannot double an SMS; k bad numbers among n cost about
//! 2·k·log2(n) extra requests. That is capped per batch at
//! [`split_budget`] (2·⌈log2 n⌉ + 16) extra requests, enough to isolate one
//! or two bad numbers among 1000: past it, a refused part is not split
//! further and its numbers all get code 7, with a detail saying they were
//! refused together.
//!
//! Refused before any request: an SMS without a sender id (smsfactor
//! requires `<sender>`; the dispatcher already refuses those since
//! [`Provider::requires_sender_id`] is true) → permanent 16, and a text of
//! more than 1120 characters (the document's limit) → permanent 999.
//!
//! # Code mapping (send, document §1.3.1.1)
//!
//! | answer                               | kind      | iSendPro code |
//! |--------------------------------------|-----------|---------------|
//! | status 1 (message envoyé)            | sent      | 0 (id = ticket) |
//! | status -1 (login / mot de passe)     | unusable  | 3             |
//! | status -2 (erreur XML)               | permanent | 999           |
//! | status -3 (crédits insuffisants)     | unusable  | 12            |
//! | status -4 (date différée incorrecte) | permanent | 999           |
//! | status -5 (liste des destinataires)  | permanent | 7 (after splitting) |
//! | any other status                     | permanent | 999           |
//! | no `<status>` / not a number         | transient | 999           |
//! | HTTP 408/429/5xx, timeout, no connection | transient | 999       |
//! | HTTP 401/403                         | unusable  | 3             |
//! | other non-2xx HTTP                   | unusable  | 999           |
//! | no sender id                         | permanent | 16            |
//! | text over 1120 characters            | permanent | 999           |
//!
//! Status -2 is not retried: it means our own request was malformed, which
//! sending it again will not fix. The `<credits>` left are kept in every
//! detail and logged after each send.
//!
//! # Check
//!
//! The document has no balance call (the balance only comes back in a send's
//! answer). `mail2sms providers check` asks `getDr.php` for ticket `0`, which
//! cannot exist: status -1 means the credentials are refused (unusable, 3),
//! any other status means they were accepted.

pub mod wire;
mod xml;

pub use wire::{DeliveryReport, DeliveryReports, ReportStatus};

use super::ProviderError;
use super::http;
use super::settings::{self, ProviderSettings};
use super::{DeliveryStatus, FailureKind, OutgoingSms, Provider, SendError};
use crate::clock::Clock;
use crate::codes::Code;
use async_trait::async_trait;
use serde::Deserialize;
use std::collections::HashMap;
use std::sync::Arc;
use wire::{Credentials, Message, Recipient, SendResponse};

/// `type = "smsfactor"`: the smsfactor XML API v2.2.
///
/// ```toml
/// [providers.smsfactor]
/// type = "smsfactor"
/// url = "https://secure.smsfactor.com/API/"
/// username = "compte@masociete.com"
/// password = "…"
/// ```
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsfactorConfig {
    /// The API's base URL; `apiV2.php` (send) and `getDr.php` (delivery
    /// reports) are appended to it, with or without a trailing slash here.
    /// The document's is `https://secure.smsfactor.com/API/`; it also names
    /// `http://www.smsfactor.com/` for clients without TLS, which sends the
    /// password in clear.
    pub url: String,
    /// The account's login: the email address of the smsfactor account
    /// (`<username>`).
    pub username: String,
    /// The account's password (`<password>`), sent in every request body.
    /// Never logged nor shown by `check-config`.
    pub password: String,
    /// How long one request may take, in milliseconds (connect, send,
    /// answer); past it the SMS of the request are retried later. Default
    /// 10 000.
    #[serde(default = "super::http::default_timeout_ms")]
    pub timeout_ms: u64,
    /// The most HTTP requests per second sent to smsfactor (none: no
    /// limit), enforced by the provider's own HTTP client (`http::Client`)
    /// on every request, however many requests a batch needs (one per
    /// text, plus the halves of a refused recipient list). One request
    /// carries up to 1000 numbers for one text.
    #[serde(default)]
    pub rate_limit: Option<std::num::NonZeroU32>,
}

impl std::fmt::Debug for SmsfactorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl ProviderSettings for SmsfactorConfig {
    /// A one-line description without secrets: the URL, and whether the
    /// credentials are set.
    fn describe(&self) -> String {
        let set = |v: &str| if v.is_empty() { "missing" } else { "set" };
        format!(
            "smsfactor → {} (username {}, password {})",
            self.url,
            set(&self.username),
            set(&self.password)
        )
    }

    fn rate_limit(&self) -> Option<std::num::NonZeroU32> {
        self.rate_limit
    }

    fn validate(&self) -> Result<(), (String, String)> {
        settings::validate_http(
            &[("username", &self.username), ("password", &self.password)],
            &self.url,
            self.timeout_ms,
        )
    }

    /// The adapter reads no time (its document's dates are computed from
    /// each SMS's own `send_at`), so it takes no clock.
    fn build(&self, name: &str, _clock: &Clock) -> Result<Arc<dyn Provider>, ProviderError> {
        let provider = Smsfactor::new(self).map_err(|reason| settings::http_error(name, reason))?;
        Ok(Arc::new(provider))
    }
}

/// The `smsfactor` provider.
pub struct Smsfactor {
    /// The configuration (credentials for each request body).
    config: SmsfactorConfig,
    /// The HTTP client, with `timeout_ms`.
    client: http::Client,
    /// `{url}/apiV2.php`.
    send_url: String,
    /// `{url}/getDr.php`.
    report_url: String,
}

/// SMS of one batch that go out in the same request(s): same text, sender
/// and schedule.
struct Group<'a> {
    /// `<sender>`.
    sender: &'a str,
    /// `<text>`.
    text: &'a str,
    /// The scheduled time, if any.
    send_at: Option<i64>,
    /// Indexes into the batch, in order.
    members: Vec<usize>,
}

/// One slot per SMS of a batch, filled as answers come.
type Slots = Vec<Option<Result<String, SendError>>>;

/// What one batch's requests share as they go: whether the batch was
/// stopped, and the extra requests left for splitting refused lists.
struct Progress {
    /// Set once a request failed in a way that stops the batch (transient
    /// or unusable): the error every SMS not yet sent gets.
    stopped: Option<SendError>,
    /// Extra requests still allowed for splitting refused recipient lists.
    split_left: usize,
}

/// The most extra requests one batch of `n` SMS may make to split
/// recipient lists refused with status -5: 2·⌈log2 n⌉ + 16. Isolating one
/// bad number takes about 2·log2 n; without a cap, n bad numbers would
/// take 2n − 1 requests.
pub fn split_budget(n: usize) -> usize {
    let log2 = usize::BITS - n.max(1).saturating_sub(1).leading_zeros();
    2 * log2 as usize + 16
}

impl Smsfactor {
    /// Builds the provider (its HTTP client).
    pub fn new(config: &SmsfactorConfig) -> Result<Self, String> {
        Ok(Smsfactor {
            config: config.clone(),
            client: http::client(config.timeout_ms, config.rate_limit)?.with_secrets([
                config.password.clone(),
                crate::xml::escape(&config.password, wire::STYLE),
                crate::xml::escape(&config.password, crate::xml::Style::MARKUP),
            ]),
            send_url: http::endpoint(&config.url, wire::SEND_PATH),
            report_url: http::endpoint(&config.url, wire::REPORT_PATH),
        })
    }

    /// The account's credentials, for a request body.
    fn credentials(&self) -> Credentials<'_> {
        Credentials {
            username: &self.config.username,
            password: &self.config.password,
        }
    }

    /// POSTs an XML body to `url` and returns the answer's text.
    async fn post(&self, url: &str, body: Vec<u8>) -> Result<String, SendError> {
        let reply = http::post(&self.client, url, wire::CONTENT_TYPE, body)
            .await
            .map_err(|e| self.client.scrub(e))?;
        Ok(reply.text())
    }

    /// One send request for `members` of `batch` (which share `message`):
    /// the decoded answer, or why there is none.
    async fn send_request(
        &self,
        message: &Message<'_>,
        members: &[usize],
        batch: &[OutgoingSms],
    ) -> Result<SendResponse, SendError> {
        let recipients: Vec<Recipient<'_>> = members
            .iter()
            .map(|&i| Recipient {
                number: http::digits(&batch[i].to),
                gsmsmsid: &batch[i].reference,
            })
            .collect();
        let body = wire::encode_send(self.credentials(), message, &recipients);
        let text = self.post(&self.send_url, body).await?;
        wire::decode_send_response(&text).map_err(|e| {
            self.client.scrub(SendError::transient(format!(
                "unreadable answer from smsfactor: {e}"
            )))
        })
    }

    /// Sends `members` (SMS of `batch` sharing `message`), splitting a
    /// request refused with status -5 until the numbers at fault stand
    /// alone (within the batch's budget), and fills their slots. Once a
    /// request fails transient or unusable, nothing more is sent and the
    /// rest get that error.
    async fn send_splitting(
        &self,
        message: &Message<'_>,
        members: &[usize],
        batch: &[OutgoingSms],
        slots: &mut Slots,
        progress: &mut Progress,
    ) {
        let mut pending: Vec<&[usize]> = vec![members];
        while let Some(part) = pending.pop() {
            if let Some(error) = &progress.stopped {
                for &i in part {
                    slots[i] = Some(Err(error.clone()));
                }
                continue;
            }
            let result = match self.send_request(message, part, batch).await {
                Ok(response) if response.status == -5 && part.len() > 1 => {
                    if progress.split_left >= 2 {
                        progress.split_left -= 2;
                        tracing::info!(
                            recipients = part.len(),
                            "smsfactor refused a recipient list (status -5); sending it again in halves"
                        );
                        let (first, second) = part.split_at(part.len() / 2);
                        pending.push(second);
                        pending.push(first);
                        continue;
                    }
                    let refused = wire::send_outcome(&response)
                        .err()
                        .unwrap_or_else(|| SendError::permanent(Code::BAD_NUMBER, ""));
                    tracing::warn!(
                        recipients = part.len(),
                        "smsfactor refused a recipient list (status -5); too many requests already made for this batch to split it further"
                    );
                    Err(self.client.scrub(SendError::permanent(
                        Code::BAD_NUMBER,
                        format!(
                            "{}; refused together in a list of {} numbers, not split further (the batch's limit of extra requests is reached): this number itself may be valid",
                            refused.detail,
                            part.len()
                        ),
                    )))
                }
                Ok(response) => {
                    let outcome = wire::send_outcome(&response).map_err(|e| self.client.scrub(e));
                    match &outcome {
                        Ok(ticket) => tracing::info!(
                            ticket = %ticket,
                            credits = response.credits.as_deref().unwrap_or("?"),
                            recipients = part.len(),
                            "smsfactor accepted the request"
                        ),
                        Err(e) => tracing::warn!(
                            recipients = part.len(),
                            detail = %e.detail,
                            "smsfactor refused the request"
                        ),
                    }
                    if response.status == 1 && response.ticket.is_none() {
                        tracing::warn!("smsfactor said sent without a ticket");
                    }
                    outcome
                }
                Err(e) => {
                    tracing::warn!(
                        recipients = part.len(),
                        detail = %e.detail,
                        "no usable answer from smsfactor"
                    );
                    Err(e)
                }
            };
            if let Err(e) = &result
                && e.kind != FailureKind::Permanent
            {
                tracing::warn!(
                    detail = %e.detail,
                    "smsfactor: request failed; the rest of the batch is not sent"
                );
                progress.stopped = Some(SendError::not_attempted(e));
            }
            for &i in part {
                slots[i] = Some(result.clone());
            }
        }
    }

    /// Asks smsfactor for the delivery reports of a send (§2): its `ticket`
    /// (the provider id a send returned) and, to narrow it to one SMS, its
    /// `gsmsmsid` (our reference). Credentials refused → unusable 3; an
    /// unreadable answer → transient; other statuses as
    /// [`wire::report_outcome`] says. Each `<gsm>` as
    /// [`wire::DeliveryReport::delivery`] reads it.
    pub async fn delivery_reports(
        &self,
        ticket: &str,
        gsmsmsid: Option<&str>,
    ) -> Result<Vec<DeliveryStatus>, SendError> {
        let body = wire::encode_report_request(self.credentials(), ticket, gsmsmsid);
        let text = self.post(&self.report_url, body).await?;
        let reports = wire::decode_delivery_reports(&text).map_err(|e| {
            self.client.scrub(SendError::transient(format!(
                "unreadable delivery-report answer from smsfactor: {e}"
            )))
        })?;
        let reports = wire::report_outcome(reports).map_err(|e| self.client.scrub(e))?;
        Ok(reports.reports.iter().map(|r| r.delivery()).collect())
    }
}

/// What `check` says when the credentials are accepted.
pub const CHECK_OK: &str = "credentials accepted (smsfactor reports the balance only after a send)";

#[async_trait]
impl Provider for Smsfactor {
    fn max_batch(&self) -> usize {
        wire::MAX_RECIPIENTS
    }

    async fn send(&self, batch: &[OutgoingSms]) -> Vec<Result<String, SendError>> {
        let mut slots: Slots = vec![None; batch.len()];
        let mut groups: Vec<Group<'_>> = Vec::new();
        // A group is (text, sender, time, round): the round is how many
        // earlier SMS of the same (text, sender, time) went to this number,
        // so that a number is never twice in one request.
        let mut index: HashMap<(&str, &str, Option<i64>, usize), usize> = HashMap::new();
        let mut seen: HashMap<(&str, &str, Option<i64>, &str), usize> = HashMap::new();
        for (i, sms) in batch.iter().enumerate() {
            let Some(sender) = sms.sender_id.as_deref().filter(|s| !s.trim().is_empty()) else {
                slots[i] = Some(Err(SendError::permanent(
                    Code::EMPTY_SENDER,
                    "smsfactor requires a sender id (<sender>) and this SMS has none",
                )));
                continue;
            };
            let chars = sms.text.chars().count();
            if chars > wire::MAX_TEXT_CHARS {
                slots[i] = Some(Err(SendError::permanent(
                    Code::INTERNAL,
                    format!(
                        "text too long for smsfactor: {chars} characters, at most {} (not sent)",
                        wire::MAX_TEXT_CHARS
                    ),
                )));
                continue;
            }
            let occurrences = seen
                .entry((
                    sms.text.as_str(),
                    sender,
                    sms.send_at,
                    http::digits(&sms.to),
                ))
                .or_insert(0);
            let round = *occurrences;
            *occurrences += 1;
            let key = (sms.text.as_str(), sender, sms.send_at, round);
            let at = *index.entry(key).or_insert_with(|| {
                groups.push(Group {
                    sender,
                    text: &sms.text,
                    send_at: sms.send_at,
                    members: Vec::new(),
                });
                groups.len() - 1
            });
            groups[at].members.push(i);
        }
        let mut progress = Progress {
            stopped: None,
            split_left: split_budget(batch.len()),
        };
        for group in &groups {
            if let Some(error) = &progress.stopped {
                for &i in &group.members {
                    slots[i] = Some(Err(error.clone()));
                }
                continue;
            }
            let delay = match group.send_at.map(wire::paris_delay).transpose() {
                Ok(delay) => delay,
                Err(reason) => {
                    let error = SendError::permanent(Code::INTERNAL, reason);
                    for &i in &group.members {
                        slots[i] = Some(Err(error.clone()));
                    }
                    continue;
                }
            };
            let message = Message {
                sender: group.sender,
                text: group.text,
                delay,
            };
            for chunk in group.members.chunks(wire::MAX_RECIPIENTS) {
                self.send_splitting(&message, chunk, batch, &mut slots, &mut progress)
                    .await;
            }
        }
        slots
            .into_iter()
            .map(|slot| {
                slot.unwrap_or_else(|| Err(SendError::transient("smsfactor: SMS left unsent")))
            })
            .collect()
    }

    fn requires_sender_id(&self) -> bool {
        true
    }

    async fn check(&self) -> Result<String, SendError> {
        let body = wire::encode_report_request(self.credentials(), "0", None);
        let text = self.post(&self.report_url, body).await?;
        let reports = wire::decode_delivery_reports(&text).map_err(|e| {
            self.client.scrub(SendError::transient(format!(
                "unreadable answer from smsfactor getDr.php: {e}"
            )))
        })?;
        match reports.status {
            -1 => Err(self.client.scrub(SendError::unusable(
                Code::BAD_CREDENTIALS,
                format!(
                    "smsfactor refused the username/password (status -1: {})",
                    reports.message
                ),
            ))),
            _ => Ok(CHECK_OK.to_owned()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> SmsfactorConfig {
        SmsfactorConfig {
            url: "http://127.0.0.1:9/API".into(),
            username: "compte@masociete.com".into(),
            password: "hunter2&<".into(),
            timeout_ms: 1000,
            rate_limit: None,
        }
    }

    fn sms(i: i64, text: &str, sender: Option<&str>) -> OutgoingSms {
        crate::providers::test_sms(format!("abcd-{i}"), i, format!("+3360102030{i}"), text)
            .with_sender(sender)
    }

    #[test]
    fn describe_and_debug_hide_the_password() {
        let c = config();
        assert_eq!(
            c.describe(),
            "smsfactor → http://127.0.0.1:9/API (username set, password set)"
        );
        assert!(!format!("{c:?}").contains("hunter2"));
        let empty = SmsfactorConfig {
            password: String::new(),
            ..config()
        };
        assert!(empty.describe().ends_with("password missing)"));
    }

    #[test]
    fn config_keys_and_defaults() {
        let c: SmsfactorConfig = toml::from_str(
            "url = \"https://secure.smsfactor.com/API/\"\nusername = \"u@x.fr\"\npassword = \"p\"",
        )
        .unwrap();
        assert_eq!(c.timeout_ms, 10_000);
        assert_eq!(c.rate_limit, None);
        assert!(
            toml::from_str::<SmsfactorConfig>(
                "url = \"x\"\nusername = \"u\"\npassword = \"p\"\ntoken = \"t\""
            )
            .is_err()
        );
        let p = Smsfactor::new(&c).unwrap();
        assert_eq!(p.send_url, "https://secure.smsfactor.com/API/apiV2.php");
        assert_eq!(p.report_url, "https://secure.smsfactor.com/API/getDr.php");
        assert!(p.requires_sender_id());
        assert_eq!(p.max_batch(), 1000);
    }

    #[test]
    fn scrub_removes_raw_and_escaped_password() {
        let p = Smsfactor::new(&config()).unwrap();
        let e = p.client.scrub(SendError::unusable(
            Code::BAD_CREDENTIALS,
            "echo hunter2&< and hunter2&amp;&lt;",
        ));
        assert_eq!(e.detail, "echo *** and ***");
        assert_eq!(e.kind, FailureKind::ProviderUnusable);
    }

    #[test]
    fn the_split_budget_grows_with_log2_of_the_batch() {
        assert_eq!(split_budget(0), 16);
        assert_eq!(split_budget(1), 16);
        assert_eq!(split_budget(2), 18);
        assert_eq!(split_budget(3), 20);
        assert_eq!(split_budget(256), 32);
        assert_eq!(split_budget(257), 34);
        assert_eq!(split_budget(1000), 36);
    }

    #[tokio::test]
    async fn refusals_before_any_request() {
        // The URL points at a closed port: SMS that reached the network
        // would come back transient, not with these codes.
        let p = Smsfactor::new(&config()).unwrap();
        let long = "é".repeat(1121);
        let results = p
            .send(&[
                sms(1, "bonjour", None),
                sms(2, &long, Some("MaSociete")),
                sms(3, "bonjour", Some("  ")),
            ])
            .await;
        let codes: Vec<_> = results
            .iter()
            .map(|r| r.as_ref().map_err(|e| (e.kind, e.code)).unwrap_err())
            .collect();
        assert_eq!(
            codes,
            vec![
                (FailureKind::Permanent, Code::EMPTY_SENDER),
                (FailureKind::Permanent, Code::INTERNAL),
                (FailureKind::Permanent, Code::EMPTY_SENDER),
            ]
        );
        assert!(
            results[1]
                .as_ref()
                .unwrap_err()
                .detail
                .contains("1121 characters, at most 1120")
        );
        // 1120 characters is allowed: it reaches the (closed) network.
        let ok_len = "é".repeat(1120);
        let r = p.send(&[sms(4, &ok_len, Some("S"))]).await;
        assert!(r[0].as_ref().unwrap_err().is_transient());
    }

    #[tokio::test]
    async fn an_impossible_send_time_is_refused() {
        let p = Smsfactor::new(&config()).unwrap();
        let mut s = sms(1, "bonjour", Some("S"));
        s.send_at = Some(i64::MAX);
        let r = p.send(&[s]).await;
        let e = r[0].as_ref().unwrap_err();
        assert_eq!((e.kind, e.code), (FailureKind::Permanent, Code::INTERNAL));
    }
}
