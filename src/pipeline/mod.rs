//! From one received email to one decision: the single path shared by SMTP
//! and `mail2sms deliver`.
//!
//! The decision is made before the client gets an answer, in named stages
//! ([`Pipeline::process_within`]): read the request (through the ingress
//! seam, [`crate::request::RequestReader`]), check who may send, admit its
//! memory, build it, apply the account's rules, apply its sending limits,
//! store it; only then is it [`Verdict::Queued`] (SMTP `250`).

mod admit;
mod checks;
mod keyring;
mod rcpt;
mod verdict;

use crate::clock::Clock;
use crate::request::alert::AlertBook;
use crate::request::{BuildContext, Envelope, Limits, Readers, Request, RequestHead};
use crate::rules::AccountConfig;
use crate::rules::volume::{self, Volume};
use crate::smtp::Share;
use crate::smtp::{SmtpUser, Unauthorized};
use crate::store::{Accepted, AlertInfo, NewRequest, RequestBody, Store};
use crate::{logsafe::Safe, rules};
use admit::{Admitted, Ingress};
use jiff::Timestamp;
use keyring::{Account, Keyring};
use std::collections::BTreeMap;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::sync::Notify;

pub use verdict::Verdict;

/// Messages at least this large are parsed on the blocking pool, so a big
/// `mobiles.csv` never stalls other SMTP sessions.
const PARSE_INLINE_MAX: usize = 64 * 1024;

/// The one refusal for an unknown keyid and for a sender not allowed for
/// the keyid: the same bytes for both, so that a stranger cannot learn
/// whether a keyid exists (issue 8). The log tells which.
pub const NOT_AUTHORIZED: &str = "not authorized (keyid or sender)";

/// How many characters of an unknown keyid the log shows: enough to spot a
/// typo, too few to give a key away.
const KEYID_SHOWN: usize = 4;

/// Turns emails into stored requests.
pub struct Pipeline {
    /// Accounts, readers and limits (shared with the blocking pool for big
    /// messages).
    ingress: Arc<Ingress>,
    /// Where requests go.
    store: Arc<dyn Store>,
    /// Wakes the dispatcher when new SMS are queued.
    dispatch_wake: Arc<Notify>,
    /// Wakes the reply sender when new replies are queued.
    replies_wake: Arc<Notify>,
    /// The accounts' sending limits (code 29).
    volume: Volume,
    /// The time rules are checked at.
    clock: crate::clock::Clock,
    /// The alert accounts (regions, groups, templates), shared with the
    /// alert reader: the RCPT check reads them, SIGHUP re-reads groups.
    alerts: Arc<AlertBook>,
    /// What a message refused as not authorized gets (`smtp.unauthorized`).
    unauthorized: Unauthorized,
    /// Messages refused as not authorized and answered `250` (discard
    /// mode): counted, since nothing else shows them but the log.
    discarded: AtomicU64,
}

/// What the pipeline is built from: the accounts, the operator's bounds on
/// a request and the clock the rules read — never the whole configuration.
#[derive(Clone, Copy)]
pub struct Setup<'a> {
    /// The accounts, by name: keyids, senders, rules, sending limits.
    pub accounts: &'a BTreeMap<String, AccountConfig>,
    /// What one email may ask for (`[limits]`).
    pub limits: Limits,
    /// The time the rules are checked at.
    pub clock: &'a Clock,
    /// `smtp.domains`: alert mail is addressed to numbers and groups there.
    pub domains: &'a [String],
    /// `smtp.users`: the account each AUTH user sends alert mail for.
    pub users: &'a BTreeMap<String, SmtpUser>,
    /// `smtp.unauthorized`: refuse (`550 5.7.1`) or discard (`250`) what
    /// is not authorized.
    pub unauthorized: Unauthorized,
}

impl Pipeline {
    /// A pipeline for this setup and store, reading the protocol's requests
    /// and alert mail ([`Readers::standard`]).
    pub fn new(
        config: Setup<'_>,
        store: Arc<dyn Store>,
        dispatch_wake: Arc<Notify>,
        replies_wake: Arc<Notify>,
    ) -> Pipeline {
        let alerts = alert_book(&config);
        let readers = Readers::standard(alerts.clone());
        let wakes = (dispatch_wake, replies_wake);
        Pipeline::assemble(config, store, wakes, readers, alerts)
    }

    /// [`Pipeline::new`] reading requests with `readers`, tried in order.
    pub fn with_readers(
        config: Setup<'_>,
        store: Arc<dyn Store>,
        dispatch_wake: Arc<Notify>,
        replies_wake: Arc<Notify>,
        readers: Readers,
    ) -> Pipeline {
        let alerts = alert_book(&config);
        let wakes = (dispatch_wake, replies_wake);
        Pipeline::assemble(config, store, wakes, readers, alerts)
    }

    /// The pipeline of these parts; `wakes`: the dispatcher's and the
    /// reply sender's.
    fn assemble(
        config: Setup<'_>,
        store: Arc<dyn Store>,
        (dispatch_wake, replies_wake): (Arc<Notify>, Arc<Notify>),
        readers: Readers,
        alerts: Arc<AlertBook>,
    ) -> Pipeline {
        let keyring = Keyring::new(config.accounts);
        let by_name = keyring.by_name();
        let users = config
            .users
            .iter()
            .map(|(user, u)| (user.clone(), u.account.clone()))
            .collect();
        Pipeline {
            ingress: Arc::new(Ingress {
                keyring,
                readers,
                limits: config.limits,
                by_name,
                users,
            }),
            alerts,
            unauthorized: config.unauthorized,
            discarded: AtomicU64::new(0),
            store,
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

    /// Processes one email: `envelope` says how it came, `raw` is the
    /// message as received. Its memory is not bounded: for one message at
    /// a time (`mail2sms deliver`).
    pub async fn process(&self, envelope: &Envelope, raw: Vec<u8>) -> Verdict {
        self.process_within(envelope, raw, &mut Share::unbounded())
            .await
    }

    /// [`Pipeline::process`] within `share` of the SMTP byte budget, which
    /// already pays for parsing and grows for the request's expansion
    /// (issue 8). Nothing but the request's head is read before the
    /// account and the sender are checked.
    pub async fn process_within(
        &self,
        envelope: &Envelope,
        raw: Vec<u8>,
        share: &mut Share,
    ) -> Verdict {
        let verdict = match self.stages(envelope, raw, share).await {
            Ok(verdict) | Err(verdict) => verdict,
        };
        if verdict == Verdict::Unauthorized && self.unauthorized == Unauthorized::Discard {
            let count = self.discarded.fetch_add(1, Ordering::Relaxed) + 1;
            tracing::info!(
                client = ?envelope.client,
                mail_from = %Safe(&envelope.mail_from),
                discarded = count,
                "not authorized: discarded (smtp.unauthorized = \"discard\"), answered 250"
            );
            return Verdict::Discarded;
        }
        verdict
    }

    /// How many messages were discarded as not authorized since start.
    pub fn discarded(&self) -> u64 {
        self.discarded.load(Ordering::Relaxed)
    }

    /// Re-reads the alert accounts' `groups_file`s (on SIGHUP): a bad file
    /// keeps its account's old groups. Returns the errors, one per account.
    pub fn reload_groups(&self) -> Vec<String> {
        self.alerts.reload_groups()
    }

    /// Whether some alert account reads its groups from a file.
    pub fn has_groups_files(&self) -> bool {
        self.alerts.has_groups_files()
    }

    /// The stages, in order; an early verdict ends them.
    async fn stages(
        &self,
        envelope: &Envelope,
        raw: Vec<u8>,
        share: &mut Share,
    ) -> Result<Verdict, Verdict> {
        let big = raw.len() >= PARSE_INLINE_MAX;
        let admitted = self.read_and_authorize(big, envelope, raw).await?;
        admit::reserve(share, &admitted.account, admitted.bound)?;
        let Admitted {
            account,
            sender,
            mail,
            head,
            alert,
            refusal,
            ..
        } = admitted;
        let message_id = mail.message_id.clone();
        let now = self.clock.now();
        let mut request = self.build(big, head, mail, &account.name, now).await?;
        if let Some(code) = refusal {
            request.recipients = Err(code);
        }
        let (sender_id, body) = self.apply_rules(big, &account, &mut request, now).await?;
        let alert = alert.then(|| AlertInfo {
            return_path: envelope.mail_from.clone(),
            dedup_secs: account.config.alert_dedup_secs,
            max_per_hour: account.config.alert_max_per_hour,
            failure_notice: account.config.alert_failure_notice,
            max_segments: account.config.max_segments,
        });
        let mut new = NewRequest {
            account: account.name.clone(),
            email_id: request.email_id,
            message_id,
            mail_from: sender,
            sender_id,
            tracker: request.tracker,
            email_ack: request.email_ack,
            email_not: request.email_not,
            body,
            alert,
        };
        let taken = self.apply_limits(&account, &mut new, now);
        Ok(self.store(&account, new, taken).await)
    }

    /// Reads the request's head and checks who may send (on the blocking
    /// pool when `big`).
    async fn read_and_authorize(
        &self,
        big: bool,
        envelope: &Envelope,
        raw: Vec<u8>,
    ) -> Result<Admitted, Verdict> {
        let ingress = self.ingress.clone();
        let envelope = envelope.clone();
        offload(big, "reading a message", move || {
            ingress.admit(&raw, &envelope)
        })
        .await?
    }

    /// Builds the whole request from its head (attachments, recipients)
    /// for `account`, received at `now`.
    async fn build(
        &self,
        big: bool,
        head: Box<dyn RequestHead>,
        mail: crate::mail::ParsedMail,
        account: &str,
        now: Timestamp,
    ) -> Result<Request, Verdict> {
        let limits = self.ingress.limits;
        let account = account.to_owned();
        offload(big, "reading a message", move || {
            let context = BuildContext {
                limits,
                account: &account,
                received: now,
            };
            head.build(&mail, &context)
        })
        .await?
        .map_err(|e| Verdict::Unreadable(e.to_string()))
    }

    /// The account's rules: its sender id, then each recipient's number,
    /// country and text. Takes the recipients out of `request`.
    async fn apply_rules(
        &self,
        big: bool,
        account: &Account,
        request: &mut Request,
        now: Timestamp,
    ) -> Result<(Option<String>, RequestBody), Verdict> {
        let sender_id = rules::sender_id(&account.config, request.sender_id.as_deref());
        let refuse_all = checks::refusal_of_all(&account.config, &sender_id, now);
        let sender_id = sender_id.unwrap_or(None);
        let options = rules::TextOptions {
            has_sender_id: sender_id.is_some(),
            nostop: request.nostop,
            smslong: request.smslong,
        };
        let recipients = match std::mem::replace(&mut request.recipients, Ok(Vec::new())) {
            Err(code) => return Ok((sender_id, RequestBody::Refused(code))),
            Ok(recipients) => recipients,
        };
        let config = account.config.clone();
        // A long mobiles.csv means many number parses: off the async
        // workers, like its parsing.
        let messages = offload(big, "resolving numbers", move || {
            checks::check_recipients(&config, recipients, refuse_all.as_ref(), options)
        })
        .await?;
        Ok((sender_id, RequestBody::Messages(messages)))
    }

    /// The account's sending limits (29) over the SMS `new` would queue, in
    /// order: returns how many it took.
    fn apply_limits(&self, account: &Account, new: &mut NewRequest, now: Timestamp) -> usize {
        let RequestBody::Messages(messages) = &mut new.body else {
            return 0;
        };
        let taken = self
            .volume
            .take(&account.name, checks::sendable(messages).count(), now);
        checks::refuse_over_limit(account, messages, taken);
        checks::log_refusals(&account.name, new.email_id.as_deref(), messages);
        taken
    }

    /// Commits `new` and gives back the `taken` sending limit it did not
    /// use (a duplicate, a failure).
    async fn store(&self, account: &Account, new: NewRequest, taken: usize) -> Verdict {
        let email_id = new.email_id.clone();
        // An alert's repeat is told by its Message-ID, not an emailId.
        let alert_message_id = new
            .alert
            .is_some()
            .then(|| new.message_id.clone().unwrap_or_default());
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
                self.verdict_of(account, accepted, email_id, alert_message_id)
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot store a request");
                Verdict::Unavailable("cannot store the request now, try again later".to_string())
            }
        }
    }

    /// The verdict of a stored request.
    fn verdict_of(
        &self,
        account: &Account,
        accepted: Accepted,
        email_id: Option<String>,
        alert_message_id: Option<String>,
    ) -> Verdict {
        match accepted {
            Accepted::Queued { request_id, jobs } => {
                if jobs > 0 {
                    self.dispatch_wake.notify_one();
                }
                tracing::debug!(account = %account.name, request_id, jobs, "request queued");
                Verdict::Queued { request_id, jobs }
            }
            Accepted::Duplicate if alert_message_id.is_some() => {
                let message_id = alert_message_id.unwrap_or_default();
                tracing::info!(account = %account.name, message_id = %Safe(&message_id), "alert already accepted (an MTA retry)");
                Verdict::AlertRetry { message_id }
            }
            Accepted::Duplicate => {
                let email_id = email_id.unwrap_or_default();
                tracing::info!(account = %account.name, email_id = %Safe(&email_id), "duplicate emailId");
                Verdict::Duplicate { email_id }
            }
            Accepted::NoEmailId => Verdict::NoEmailId,
        }
    }
}

/// The alert accounts of `config` (`alerts = true`), as the alert reader
/// and the RCPT check read them.
fn alert_book(config: &Setup<'_>) -> Arc<AlertBook> {
    let accounts = config
        .accounts
        .iter()
        .filter(|(_, a)| a.alerts)
        .map(|(name, a)| (name.clone(), a.alert_settings()));
    Arc::new(AlertBook::new(accounts, config.domains))
}

/// Runs `work` on the blocking pool when `big`, else right here; a task
/// that failed (`what` says which) is an internal error (`451 4.3.0`).
async fn offload<T: Send + 'static>(
    big: bool,
    what: &'static str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, Verdict> {
    if !big {
        return Ok(work());
    }
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        tracing::error!(error = %e, "{what} failed");
        Verdict::Unavailable("internal error, try again later".to_string())
    })
}

impl From<&crate::smtp::Envelope> for Envelope {
    fn from(smtp: &crate::smtp::Envelope) -> Envelope {
        Envelope {
            client: Some(smtp.peer.ip()),
            helo: Some(smtp.helo.clone()),
            auth_user: smtp.auth_user.clone(),
            mail_from: smtp.mail_from.clone(),
            recipients: smtp.rcpt_to.clone(),
        }
    }
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
        let verdict = self.process_within(&envelope.into(), data, share).await;
        let (code, enhanced, text) = verdict.smtp_reply();
        crate::smtp::Reply::new(code, enhanced, text)
    }

    fn recipient(
        &self,
        envelope: &crate::smtp::Envelope,
        address: &str,
    ) -> Result<(), crate::smtp::Reply> {
        self.check_recipient(envelope.auth_user.as_deref(), address)
    }
}

#[cfg(test)]
mod tests;
