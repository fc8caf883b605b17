//! From one received email to one decision: the single path shared by SMTP
//! and `mail2sms deliver`.
//!
//! The decision is made before the client gets an answer: the request is
//! parsed, its account and sender checked, and everything is committed to
//! the store; only then is it [`Verdict::Queued`] (SMTP `250`).

use crate::codes::Code;
use crate::config::{AccountConfig, Config, QuietHours};
use crate::logsafe::Safe;
use crate::mail::ParsedMail;
use crate::request::{self, Head, Limits};
use crate::rules::volume::{self, Volume};
use crate::smtp::{GrowError, Share};
use crate::store::{Accepted, NewMessage, NewRequest, RequestBody, Store};
use crate::{calendar, mail, rules};
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use tokio::sync::Notify;

/// Messages at least this large are parsed on the blocking pool, so a big
/// `mobiles.csv` never stalls other SMTP sessions.
const PARSE_INLINE_MAX: usize = 64 * 1024;

/// Copies of all numbers and texts that live at once while a request is
/// built and checked ([`request::Expansion::text_bytes`]): the recipients
/// as written, and as checked (`rules::prepare_text` copies each text).
const TEXT_COPIES: usize = 2;

/// More copies of the longest text ([`request::Expansion::longest_text`]):
/// the store binds and writes one text at a time (measured: one 24 MB
/// `<sms>` took about 6 × 24 MB beyond its parsing, in all).
const LONGEST_TEXT_COPIES: usize = 4;

/// Bytes of memory each recipient takes beyond its number and text while
/// its request is built, checked and stored (measured: a 100 000-line
/// `mobiles.csv` peaked at about 130 MB).
const RECIPIENT_COST: usize = 1024;

/// The one refusal for an unknown keyid and for a sender not allowed for
/// the keyid: the same bytes for both, so that a stranger cannot learn
/// whether a keyid exists (issue 8). The log tells which.
pub const NOT_AUTHORIZED: &str = "not authorized (keyid or sender)";

/// How many characters of an unknown keyid the log shows: enough to spot a
/// typo, too few to give a key away.
const KEYID_SHOWN: usize = 4;

/// What became of one email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Stored; its SMS are queued (possibly none, if every number was bad or
    /// the request was refused as a whole: etatNot says so).
    Queued {
        /// The request's id.
        request_id: i64,
        /// SMS queued.
        jobs: usize,
    },
    /// Same (account, emailId) as an earlier email: etatAck code 1, no SMS.
    Duplicate {
        /// The repeated emailId.
        email_id: String,
    },
    /// No emailId: etatAck code 2, no SMS.
    NoEmailId,
    /// Not a request we can read (`550 5.6.0`).
    Unreadable(String),
    /// Unknown keyid or sender not allowed (`550 5.7.1`, always
    /// [`NOT_AUTHORIZED`]); no reply email, since answering unauthenticated
    /// mail would be backscatter.
    Unauthorized,
    /// The store could not commit (`451 4.3.0`): the sender retries later.
    Unavailable(String),
    /// The memory budget cannot take the request now (`451 4.3.1`): the
    /// sender retries later.
    Busy(String),
}

impl Verdict {
    /// The SMTP reply: code, enhanced status, text.
    pub fn smtp_reply(&self) -> (u16, &'static str, String) {
        match self {
            Verdict::Queued { request_id, jobs } => (
                250,
                "2.0.0",
                format!("Ok: queued as {request_id} ({jobs} SMS)"),
            ),
            Verdict::Duplicate { email_id } => {
                let shown: String = email_id.chars().take(64).collect();
                (
                    250,
                    "2.0.0",
                    format!("Ok: emailId {shown} already processed, nothing sent (etatAck 1)"),
                )
            }
            Verdict::NoEmailId => (
                250,
                "2.0.0",
                "Ok: no emailId, nothing sent (etatAck 2)".to_string(),
            ),
            Verdict::Unreadable(reason) => (550, "5.6.0", reason.clone()),
            Verdict::Unauthorized => (550, "5.7.1", NOT_AUTHORIZED.to_string()),
            Verdict::Unavailable(reason) => (451, "4.3.0", reason.clone()),
            Verdict::Busy(reason) => (451, "4.3.1", reason.clone()),
        }
    }

    /// The `sysexits.h` exit code for `mail2sms deliver`.
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Queued { .. } | Verdict::Duplicate { .. } | Verdict::NoEmailId => 0,
            Verdict::Unreadable(_) => 65, // EX_DATAERR
            Verdict::Unauthorized => 77,  // EX_NOPERM
            Verdict::Unavailable(_) | Verdict::Busy(_) => 75, // EX_TEMPFAIL
        }
    }
}

/// An account as the pipeline needs it.
#[derive(Debug)]
struct Account {
    /// Its name in the config (the store's key).
    name: String,
    /// Its settings (shared with the blocking pool for big requests).
    config: Arc<AccountConfig>,
}

/// The accounts, found by keyid without a timing leak: each keyid is kept
/// as a keyed hash (std's `RandomState`, SipHash with random per-process
/// keys), and a lookup compares the hash of the given keyid with every
/// account's, without stopping at the first match (issue 8). Not `Debug`:
/// it holds the keyids.
struct Keyring {
    /// The keyed hash function.
    hasher: std::collections::hash_map::RandomState,
    /// Each account with its keyid's hash and its keyid (checked once the
    /// hash matched).
    accounts: Vec<(u64, String, Arc<Account>)>,
}

impl Keyring {
    /// The keyring of these accounts (keyids trimmed, as the pipeline
    /// trims the `<keyid>` it reads).
    fn new<'a>(accounts: impl IntoIterator<Item = (&'a String, &'a AccountConfig)>) -> Keyring {
        let hasher = std::collections::hash_map::RandomState::new();
        let accounts = accounts
            .into_iter()
            .map(|(name, a)| {
                let keyid = a.keyid.trim().to_string();
                let account = Account {
                    name: name.clone(),
                    config: Arc::new(a.clone()),
                };
                (hasher.hash_one(&keyid), keyid, Arc::new(account))
            })
            .collect();
        Keyring { hasher, accounts }
    }

    /// The account of `keyid` (trimmed).
    fn get(&self, keyid: &str) -> Option<&Arc<Account>> {
        let keyid = keyid.trim();
        let hash = self.hasher.hash_one(keyid);
        // Every entry is looked at: the time does not depend on which
        // one matches, or on how much of a hash matches.
        let found =
            self.accounts.iter().fold(
                None,
                |found, entry| if entry.0 == hash { Some(entry) } else { found },
            );
        found.filter(|entry| entry.1 == keyid).map(|entry| &entry.2)
    }
}

/// What is known of an email once its account and sender are checked.
struct Admitted {
    /// The email's account.
    account: Arc<Account>,
    /// The checked sender: the `From:` address, else the envelope's.
    sender: String,
    /// The email as parsed, attachments included.
    mail: ParsedMail,
    /// Its `<envoi>` block.
    head: Head,
    /// [`request::expansion_bound`] of the request.
    bound: request::Expansion,
}

/// Turns emails into stored requests.
pub struct Pipeline {
    /// Accounts by keyid (shared with the blocking pool for big messages).
    keyring: Arc<Keyring>,
    /// Where requests go.
    store: Arc<dyn Store>,
    /// What one email may ask for.
    limits: Limits,
    /// Wakes the dispatcher when new SMS are queued.
    dispatch_wake: Arc<Notify>,
    /// Wakes the reply sender when new replies are queued.
    replies_wake: Arc<Notify>,
    /// The accounts' sending limits (code 29).
    volume: Volume,
    /// The time rules are checked at.
    clock: crate::clock::Clock,
}

impl Pipeline {
    /// A pipeline for this configuration and store.
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        dispatch_wake: Arc<Notify>,
        replies_wake: Arc<Notify>,
    ) -> Pipeline {
        Pipeline {
            keyring: Arc::new(Keyring::new(&config.accounts)),
            store,
            limits: Limits {
                max_csv_lines: config.limits.max_csv_lines,
            },
            dispatch_wake,
            replies_wake,
            clock: config.clock.clone(),
            volume: Volume::new(config.accounts.iter().map(|(name, a)| {
                (
                    name.clone(),
                    volume::Limits {
                        per_minute: a.max_per_minute,
                        per_day: a.max_per_day,
                    },
                )
            })),
        }
    }

    /// Seeds the sending-limit counters with what the store already holds
    /// (SMS queued today and in the last minute), so a restart does not
    /// reset them.
    pub async fn seed_limits(&self) -> Result<(), crate::store::StoreError> {
        if self.volume.is_empty() {
            return Ok(());
        }
        let now = self.clock.now();
        let day_start = Volume::day_start(now).as_millisecond();
        let minute_start = now.as_millisecond() - 60_000;
        let today = self.store.queued_since(day_start).await?;
        let minute: HashMap<String, u64> = self
            .store
            .queued_since(minute_start.max(day_start))
            .await?
            .into_iter()
            .collect();
        for (account, day) in today {
            let last_minute = minute.get(&account).copied().unwrap_or(0);
            self.volume.seed(&account, last_minute, day, now);
        }
        Ok(())
    }

    /// Processes one email: `envelope_from` is the SMTP `MAIL FROM` (empty
    /// for `<>`), `raw` the message as received. Its memory is not bounded:
    /// for one message at a time (`mail2sms deliver`).
    pub async fn process(&self, envelope_from: &str, raw: Vec<u8>) -> Verdict {
        self.process_within(envelope_from, raw, &mut Share::unbounded())
            .await
    }

    /// [`Pipeline::process`] within `share` of the SMTP byte budget, which
    /// already pays for parsing and grows for the request's expansion
    /// (issue 8). Nothing but the body's `<envoi>` is read before the
    /// keyid and the sender are checked.
    pub async fn process_within(
        &self,
        envelope_from: &str,
        raw: Vec<u8>,
        share: &mut Share,
    ) -> Verdict {
        let big = raw.len() >= PARSE_INLINE_MAX;
        let (keyring, limits) = (self.keyring.clone(), self.limits);
        let from = envelope_from.to_owned();
        let admitted = offload(big, move || admit(&raw, &keyring, &from, &limits)).await;
        let Admitted {
            account,
            sender,
            mail,
            head,
            bound,
        } = match admitted {
            Ok(Ok(admitted)) => admitted,
            Ok(Err(verdict)) | Err(verdict) => return verdict,
        };
        let needed = TEXT_COPIES
            .saturating_mul(bound.text_bytes)
            .saturating_add(LONGEST_TEXT_COPIES.saturating_mul(bound.longest_text))
            .saturating_add(RECIPIENT_COST.saturating_mul(bound.recipients));
        if let Err(e) = share.try_grow(needed) {
            tracing::warn!(account = %account.name, needed, error = %e, "request too large to build now");
            return match e {
                GrowError::Busy => Verdict::Busy(format!("request too large to build now: {e}")),
                GrowError::OverLimit { limit } => Verdict::Unreadable(format!(
                    "request too large: building it would take more than the {limit} bytes \
                     of smtp.max_buffered_bytes (mobiles.csv lines x message text); \
                     send fewer lines per email"
                )),
            };
        }
        let message_id = mail.message_id.clone();
        let built = offload(big, move || request::build(head, &mail, &limits)).await;
        let request = match built {
            Ok(Ok(request)) => request,
            Ok(Err(e)) => return Verdict::Unreadable(e.to_string()),
            Err(verdict) => return verdict,
        };
        let sender = sender.as_str();
        let now = self.clock.now();
        // Refusals of every recipient: a sender id that is not allowed (33),
        // or commercial traffic in quiet hours (24) for accounts that reject.
        let sender_id = rules::sender_id(&account.config, request.sender_id.as_deref());
        let refuse_all = match &sender_id {
            Err(refusal) => Some(refusal.clone()),
            Ok(_)
                if account.config.commercial
                    && account.config.quiet_hours == QuietHours::Reject
                    && calendar::is_quiet(now) =>
            {
                Some(rules::Refusal::new(
                    Code::QUIET_HOURS,
                    format!(
                        "commercial SMS in quiet hours ({} Paris time; quiet_hours = \"reject\")",
                        now.to_zoned(calendar::paris().clone())
                            .strftime("%A %Y-%m-%d %H:%M")
                    ),
                ))
            }
            Ok(_) => None,
        };
        let sender_id = sender_id.unwrap_or(None);
        let options = rules::TextOptions {
            has_sender_id: sender_id.is_some(),
            nostop: request.nostop,
            smslong: request.smslong,
        };
        let body = match request.recipients {
            Err(code) => RequestBody::Refused(code),
            Ok(recipients) => {
                let config = account.config.clone();
                let resolve = move || -> Vec<NewMessage> {
                    request::resolve(recipients, &config.region)
                        .into_iter()
                        .map(|r| {
                            let mut text = r.text;
                            let checked = match r.number {
                                Err(code) => Err(rules::Refusal::new(code, code.message())),
                                Ok(n) => (|| {
                                    if let Some(refusal) = &refuse_all {
                                        return Err(refusal.clone());
                                    }
                                    if !rules::country_allowed(&config, n.country()) {
                                        return Err(rules::Refusal::new(
                                            Code::COUNTRY_NOT_ALLOWED,
                                            format!(
                                                "destination country {} is not in the account's countries",
                                                n.country().unwrap_or("unknown")
                                            ),
                                        ));
                                    }
                                    text = rules::prepare_text(&config, &text, options)?;
                                    Ok(n.as_str().to_string())
                                })(),
                            };
                            let (number, detail) = match checked {
                                Ok(n) => (Ok(n), None),
                                Err(refusal) => (Err(refusal.code), Some(refusal.detail)),
                            };
                            NewMessage {
                                tel: r.tel,
                                number,
                                text,
                                duplicate_of: r.duplicate_of,
                                detail,
                            }
                        })
                        .collect()
                };
                // A long mobiles.csv means many number parses: off the
                // async workers, like its parsing.
                let messages = if big {
                    match tokio::task::spawn_blocking(resolve).await {
                        Ok(m) => m,
                        Err(e) => {
                            tracing::error!(error = %e, "resolving numbers failed");
                            return Verdict::Unavailable(
                                "internal error, try again later".to_string(),
                            );
                        }
                    }
                } else {
                    resolve()
                };
                RequestBody::Messages(messages)
            }
        };
        // Sending limits (29): the SMS this email would queue, in order.
        let mut body = body;
        let mut taken = 0;
        if let RequestBody::Messages(messages) = &mut body {
            let sendable: Vec<usize> = messages
                .iter()
                .enumerate()
                .filter(|(_, m)| m.number.is_ok() && m.duplicate_of.is_none())
                .map(|(i, _)| i)
                .collect();
            taken = self.volume.take(&account.name, sendable.len(), now);
            for &i in &sendable[taken..] {
                messages[i].number = Err(Code::OVERFLOW);
                messages[i].detail = Some(format!(
                    "over the account's sending limit (max_per_minute {}, max_per_day {})",
                    account
                        .config
                        .max_per_minute
                        .map_or("none".into(), |n| n.to_string()),
                    account
                        .config
                        .max_per_day
                        .map_or("none".into(), |n| n.to_string())
                ));
            }
            log_refusals(&account.name, request.email_id.as_deref(), messages);
        }
        let email_id = request.email_id.clone();
        let new = NewRequest {
            account: account.name.clone(),
            email_id: request.email_id,
            message_id,
            mail_from: sender.to_string(),
            sender_id,
            tracker: request.tracker,
            email_ack: request.email_ack,
            email_not: request.email_not,
            body,
        };
        let accepted = self.store.accept(new).await;
        let queued = match &accepted {
            Ok(Accepted::Queued { jobs, .. }) => *jobs,
            _ => 0,
        };
        self.volume
            .give_back(&account.name, taken.saturating_sub(queued));
        match accepted {
            Ok(accepted) => {
                self.replies_wake.notify_one();
                match accepted {
                    Accepted::Queued { request_id, jobs } => {
                        if jobs > 0 {
                            self.dispatch_wake.notify_one();
                        }
                        tracing::debug!(account = %account.name, request_id, jobs, "request queued");
                        Verdict::Queued { request_id, jobs }
                    }
                    Accepted::Duplicate => {
                        let email_id = email_id.unwrap_or_default();
                        tracing::info!(account = %account.name, email_id = %Safe(&email_id), "duplicate emailId");
                        Verdict::Duplicate { email_id }
                    }
                    Accepted::NoEmailId => Verdict::NoEmailId,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot store a request");
                Verdict::Unavailable("cannot store the request now, try again later".to_string())
            }
        }
    }
}

/// Logs the rule refusals of a request: one line per distinct reason, with
/// how many recipients it refused (a 100 000-line mobiles.csv must not log
/// 100 000 lines).
fn log_refusals(account: &str, email_id: Option<&str>, messages: &[NewMessage]) {
    let mut reasons: std::collections::BTreeMap<(u16, &str), usize> = Default::default();
    for m in messages {
        if let (Err(code), Some(detail)) = (&m.number, &m.detail) {
            *reasons.entry((code.0, detail.as_str())).or_default() += 1;
        }
    }
    for ((code, detail), count) in reasons {
        let email_id = email_id.map(Safe);
        tracing::info!(account, email_id = ?email_id, code, count, detail = %Safe(detail), "recipients refused");
    }
}

/// Runs `work` on the blocking pool when `big`, else right here; a task
/// that failed is an internal error (`451 4.3.0`).
async fn offload<T: Send + 'static>(
    big: bool,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Verdict> {
    if !big {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!(error = %e, "reading a message failed");
        Verdict::Unavailable("internal error, try again later".to_string())
    })
}

/// Reads the headers and the `<envoi>` block of `raw`, checks the keyid and
/// the sender, and only then reads the attachments (issue 8: a stranger
/// costs no attachment decoding). The error is the verdict.
fn admit(
    raw: &[u8],
    keyring: &Keyring,
    envelope_from: &str,
    limits: &Limits,
) -> Result<Admitted, Verdict> {
    let unreadable = |e: &dyn std::fmt::Display| Verdict::Unreadable(e.to_string());
    let (mut mail, mime) = mail::read(raw).map_err(|e| unreadable(&e))?;
    let head = request::head(&mail).map_err(|e| unreadable(&e))?;
    let Some(account) = keyring.get(&head.keyid) else {
        let shown: String = head.keyid.trim().chars().take(KEYID_SHOWN).collect();
        tracing::info!(keyid = %Safe(&shown), "refused: unknown keyid");
        return Err(Verdict::Unauthorized);
    };
    // The From: header is who the request claims to come from; the
    // envelope only stands in when there is none.
    let sender = mail.from.as_deref().unwrap_or(envelope_from).to_owned();
    if !rules::sender_allowed(&account.config.senders, &sender) {
        tracing::info!(account = %account.name, sender = %Safe(&sender), "refused: sender not allowed for the keyid");
        return Err(Verdict::Unauthorized);
    }
    mail.attachments = mime.attachments();
    let bound = request::expansion_bound(&head, &mail, limits);
    Ok(Admitted {
        account: account.clone(),
        sender,
        mail,
        head,
        bound,
    })
}

#[async_trait::async_trait]
impl crate::smtp::Handler for Pipeline {
    async fn message(&self, envelope: &crate::smtp::Envelope, data: Vec<u8>) -> crate::smtp::Reply {
        self.message_within(envelope, data, &mut Share::unbounded())
            .await
    }

    async fn message_within(
        &self,
        envelope: &crate::smtp::Envelope,
        data: Vec<u8>,
        share: &mut Share,
    ) -> crate::smtp::Reply {
        let verdict = self.process_within(&envelope.mail_from, data, share).await;
        let (code, enhanced, text) = verdict.smtp_reply();
        crate::smtp::Reply::new(code, enhanced, text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An account with this keyid.
    fn account(keyid: &str) -> AccountConfig {
        let toml = format!("keyid = {keyid:?}\nsenders = []\nproviders = []");
        toml::from_str(&toml).expect("account")
    }

    /// Issue 8: keyids are found through their keyed hash, trimmed, and
    /// only whole: a prefix, a longer key or another case is unknown.
    #[test]
    fn keyring_finds_whole_keyids_only() {
        let accounts: std::collections::BTreeMap<String, AccountConfig> = [
            ("a".to_string(), account(" a296464ce012b8ab710a ")),
            ("b".to_string(), account("b0b0b0b0b0b0b0b0b0b0")),
        ]
        .into_iter()
        .collect();
        let keyring = Keyring::new(&accounts);
        let name = |keyid: &str| keyring.get(keyid).map(|a| a.name.clone());
        assert_eq!(name("a296464ce012b8ab710a").as_deref(), Some("a"));
        assert_eq!(name("\tb0b0b0b0b0b0b0b0b0b0 ").as_deref(), Some("b"));
        for unknown in [
            "a296464ce012b8ab710",
            "a296464ce012b8ab710a0",
            "A296464CE012B8AB710A",
            "",
        ] {
            assert_eq!(name(unknown), None, "{unknown:?}");
        }
    }
}
