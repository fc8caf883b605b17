//! Durable state: accepted requests, their SMS jobs and the reply emails.
//!
//! The pipeline only talks to the [`Store`] trait, so that a PostgreSQL
//! implementation (several daemons sharing one database) can sit beside the
//! embedded SQLite one without touching the SMTP side or the dispatcher.
//!
//! Every write that the SMTP side waits on ([`Store::accept`]) is durable when
//! it returns: the `250` is only sent after it.

mod config;
mod retention;
mod sqlite;

pub use config::{StoreConfig, StoreUrl};
pub use retention::retention;
pub use sqlite::{PURGE_CHUNK, SqliteStore};

use crate::codes::{AckCode, Code};
use async_trait::async_trait;

/// Opens the backend `config.url` names, migrated and ready.
pub async fn open(config: &StoreConfig) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    match &config.url {
        StoreUrl::Sqlite(_) => Ok(std::sync::Arc::new(SqliteStore::open(config).await?)),
    }
}

/// Milliseconds since the Unix epoch: the store's clock unit.
pub type Millis = i64;

/// The current time in [`Millis`].
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as Millis)
        .unwrap_or(0)
}

/// Why the store could not do what was asked, in terms that do not depend
/// on the backend: each backend sorts its own errors into these.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database cannot do anything now (busy, locked, full, read-only,
    /// an I/O error, the connection lost): transient; every operation would
    /// fail alike, so a group commit fails as a whole. SMTP answers `451`.
    #[error("store unavailable: {0}")]
    Unavailable(String),
    /// One operation failed for a reason of its own (a constraint, a value
    /// the schema refuses): the other operations of its group are run again
    /// without it.
    #[error("store refused an operation: {0}")]
    Rejected(String),
    /// The schema could not be brought up to date.
    #[error("store migration failed: {0}")]
    Migration(String),
    /// The store's writer task is gone (the daemon is shutting down).
    #[error("store is shut down")]
    Closed,
    /// The store's directory could not be created.
    #[error("store directory {path}: {source}")]
    Directory {
        /// The directory that could not be created.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
}

impl StoreError {
    /// Whether the failure is the database's state rather than one
    /// operation's: the whole group fails, and the sender retries later.
    pub fn affects_everything(&self) -> bool {
        matches!(self, StoreError::Unavailable(_) | StoreError::Closed)
    }
}

/// An email that passed every check, ready to be recorded.
#[derive(Debug, Clone)]
pub struct NewRequest {
    /// The account's name in the config: owner of the emailId namespace.
    pub account: String,
    /// The protocol's de-duplication key; `None` means "etatAck code 2, nothing sent".
    pub email_id: Option<String>,
    /// The email's Message-ID, kept for tracing a request back to its email.
    pub message_id: Option<String>,
    /// Who sent it (From: or envelope), kept for the record.
    pub mail_from: String,
    /// `<emetteur>`: the sender id the SMS go out with.
    pub sender_id: Option<String>,
    /// `<tracker>`: the sender's own reference, passed to the provider.
    pub tracker: Option<String>,
    /// `<emailAck>`: where etatAck goes (none: no etatAck).
    pub email_ack: Option<String>,
    /// `<emailNot>`: where etatNot goes (none: no etatNot).
    pub email_not: Option<String>,
    /// The SMS to send, or the request-level code refusing them all.
    pub body: RequestBody,
    /// Set for alert mail (issue 10): its de-duplication, storm control and
    /// failure notice, which `<envoi>` requests do not have. `None`: an
    /// `<envoi>` request.
    pub alert: Option<AlertInfo>,
}

/// What the store does for an alert beyond an `<envoi>` request (issue 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertInfo {
    /// The envelope sender (`MAIL FROM`), where a failure notice goes; `""`
    /// for the null sender, which never gets one.
    pub return_path: String,
    /// Seconds the Message-ID (an MTA's retry of the same message: `250`,
    /// nothing sent) and each text sent to a number (a storm: sent once)
    /// are remembered.
    pub dedup_secs: u64,
    /// The most alert SMS one number gets per rolling hour; the rest are
    /// held back and counted. `None`: no cap.
    pub max_per_hour: Option<u32>,
    /// Whether a delivery status notification goes to `return_path` once
    /// every SMS has its outcome and one failed.
    pub failure_notice: bool,
    /// The account's `max_segments`: the note of alerts held back is fitted
    /// within it (`gsm::fit::fit`).
    pub max_segments: u32,
}

/// What a request asks for once read.
#[derive(Debug, Clone)]
pub enum RequestBody {
    /// The whole email is refused with this code (23, 34, 6): etatAck 0,
    /// etatNot with one `<etat>` holding it and an empty `<tel>`.
    Refused(Code),
    /// One entry per recipient, in the sender's order.
    Messages(Vec<NewMessage>),
}

/// One recipient of a request.
#[derive(Debug, Clone)]
pub struct NewMessage {
    /// The number as the sender wrote it: what etatNot reports in `<tel>`.
    /// For an alert, the recipient address as given (`0601020304@domain`,
    /// or the group's address): a failure notice names it in
    /// `Final-Recipient`.
    pub tel: String,
    /// The E.164 number to send to, or the code that refuses this recipient
    /// before any provider is asked.
    pub number: Result<String, Code>,
    /// The SMS text.
    pub text: String,
    /// The same number given earlier in the request (its 0-based position):
    /// no SMS of its own, reported with that one's outcome.
    pub duplicate_of: Option<usize>,
    /// Why `number` refuses this recipient, in words (kept as the job's
    /// `detail`; etatNot shows the code's annex message). `None`: the
    /// code's message.
    pub detail: Option<String>,
}

impl NewRequest {
    /// A request of `account` carrying `messages`, without Message-ID,
    /// sender id, tracker or reply addresses (set those with struct update
    /// syntax): what tools and tests record directly.
    pub fn new(
        account: &str,
        email_id: Option<&str>,
        mail_from: &str,
        messages: Vec<NewMessage>,
    ) -> NewRequest {
        NewRequest {
            account: account.to_owned(),
            email_id: email_id.map(str::to_owned),
            message_id: None,
            mail_from: mail_from.to_owned(),
            sender_id: None,
            tracker: None,
            email_ack: None,
            email_not: None,
            body: RequestBody::Messages(messages),
            alert: None,
        }
    }
}

impl NewMessage {
    /// One SMS of `text` to `number`, written by the sender as that same
    /// E.164 number, neither refused nor a repeat.
    pub fn to(number: &str, text: &str) -> NewMessage {
        NewMessage {
            tel: number.to_owned(),
            number: Ok(number.to_owned()),
            text: text.to_owned(),
            duplicate_of: None,
            detail: None,
        }
    }
}

/// What [`Store::accept`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Accepted {
    /// Recorded; `jobs` SMS are queued.
    Queued {
        /// The request's id in the store (shown in the `250` line).
        request_id: i64,
        /// How many SMS were queued for sending.
        jobs: usize,
    },
    /// Another email with the same (account, emailId) was processed before:
    /// nothing queued, etatAck code 1. For an alert: an email with the same
    /// Message-ID was accepted for the account within `dedup_secs` (an
    /// MTA's retry): nothing queued, nothing counted as held back.
    Duplicate,
    /// No emailId: nothing queued, etatAck code 2.
    NoEmailId,
}

/// One SMS claimed for sending.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job's id: also the client reference given to providers, so that
    /// an interrupted send can be recognised afterwards.
    pub id: i64,
    /// The request it belongs to.
    pub request_id: i64,
    /// The account that sent it (selects the provider list).
    pub account: String,
    /// E.164 destination.
    pub number: String,
    /// The SMS text.
    pub text: String,
    /// The request's `<emetteur>`.
    pub sender_id: Option<String>,
    /// The request's `<tracker>`.
    pub tracker: Option<String>,
    /// The request's emailId.
    pub email_id: String,
    /// When the email was accepted: bounds how long retries may go on.
    pub received_at: Millis,
    /// Send attempts so far, this one included.
    pub attempts: u32,
    /// Which entry of the account's provider list to use.
    pub provider_index: u32,
    /// Attempts on that provider, this one included: failover comes after
    /// `dispatch.max_attempts` of them.
    pub provider_attempts: u32,
    /// Where its age is counted from for `dispatch.max_age_secs`: when it
    /// was received, or the end of its last hold (quiet hours, provider put
    /// aside), whichever is later.
    pub age_from: Millis,
    /// The number was on the opt-out list (the account's or the global one)
    /// when the job was claimed: it is not sent (code 11). Read in the claim
    /// itself, so checking the list costs no extra query.
    pub opted_out: bool,
}

/// What happened to a claimed job; decided by `dispatch::classify`.
#[derive(Debug, Clone, PartialEq)]
pub enum JobOutcome {
    /// The provider took it.
    Sent {
        /// The job.
        job_id: i64,
        /// The provider's name in the config.
        provider: String,
        /// The provider's own id for the SMS.
        provider_ref: String,
    },
    /// It will not be sent: the code goes into etatNot.
    Failed {
        /// The job.
        job_id: i64,
        /// The iSendPro code reported.
        code: Code,
        /// Why, in words (kept in the store and the log).
        detail: String,
        /// The provider that refused it, if any.
        provider: Option<String>,
    },
    /// Try again later, possibly with another provider.
    Retry {
        /// The job.
        job_id: i64,
        /// When to try again.
        at: Millis,
        /// The provider list entry to use next time.
        provider_index: u32,
        /// Why the last try failed.
        detail: String,
        /// Whether the try counts and where the age limit counts from.
        kind: RetryKind,
    },
}

/// How a retry counts against an SMS's tries and its age limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryKind {
    /// The provider was called: the claim's attempt counts as a try.
    Counted,
    /// The SMS was not handed to any provider this time (provider put
    /// aside, a failed batch, an unreadable opt-out list): the claim's
    /// attempt is given back, so waiting never uses up the retries. The
    /// age limit keeps counting from reception.
    Untried,
    /// A hold of the rules (commercial quiet hours): untried, and the age
    /// limit counts from its end, so a weekend's wait does not use up the
    /// time the SMS has to go through.
    Held,
}

impl RetryKind {
    /// Whether the claim's attempt is given back (the SMS was not tried).
    pub fn gives_attempt_back(self) -> bool {
        !matches!(self, RetryKind::Counted)
    }

    /// Whether the age limit counts from the end of this wait.
    pub fn moves_age(self) -> bool {
        matches!(self, RetryKind::Held)
    }
}

/// A reply email waiting to be sent.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingReply {
    /// The reply's id in the store.
    pub id: i64,
    /// A key unique to this reply, even across databases, and stable across
    /// retries: the Message-ID and the file name of `file://` replies.
    pub key: String,
    /// Where it goes.
    pub to: String,
    /// Send attempts so far, this one included.
    pub attempts: u32,
    /// What it says.
    pub content: ReplyContent,
}

/// What a reply says: stored, then rendered as it is (the one reply type).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplyContent {
    /// `etatAck`, sent to `emailAck`.
    Ack {
        /// The request's `emailId`; `None` renders as `?`.
        email_id: Option<String>,
        /// Whether the email was processed.
        code: AckCode,
    },
    /// `etatNot`, sent to `emailNot`.
    Not {
        /// The request's `emailId`; `None` renders as `?`.
        email_id: Option<String>,
        /// One outcome per recipient, in the request's order.
        etats: Vec<Etat>,
    },
    /// A delivery status notification (RFC 3464) for an alert of which an
    /// SMS failed, sent to its envelope sender (issue 10).
    Dsn(DeliveryReport),
}

/// What a failure notice reports: the alert, and each SMS of it that failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// The alert email's Message-ID, without angle brackets: the notice's
    /// `In-Reply-To`, so the sender can match it to what it sent.
    pub message_id: Option<String>,
    /// When the alert was accepted (`Arrival-Date`).
    pub received_at: Millis,
    /// How many SMS the alert was to make (sent or failed; held-back ones
    /// and repeats excluded): the "n of m" of the subject.
    pub total: usize,
    /// The SMS that failed, in the alert's order.
    pub failures: Vec<FailedSms>,
}

/// One SMS of an alert that will not be delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailedSms {
    /// The recipient as the alert gave it (a number, or an address).
    pub tel: String,
    /// The E.164 number, when the SMS got that far (`None`: the number
    /// itself was refused).
    pub number: Option<String>,
    /// The annex code of the failure.
    pub code: Code,
    /// Why, in words: the provider's answer or the rule's reason, else the
    /// code's annex message.
    pub reason: String,
}

impl ReplyContent {
    /// The `emailId` as the reply writes it: the value, or `?` when absent.
    /// A failure notice has none: `?`.
    pub fn email_id(&self) -> &str {
        match self {
            ReplyContent::Ack { email_id, .. } | ReplyContent::Not { email_id, .. } => {
                email_id.as_deref().unwrap_or("?")
            }
            ReplyContent::Dsn(_) => "?",
        }
    }

    /// The root element's name, `etatAck` or `etatNot` (also the subject's
    /// first word); `dsn` for a failure notice.
    pub fn kind(&self) -> &'static str {
        match self {
            ReplyContent::Ack { .. } => "etatAck",
            ReplyContent::Not { .. } => "etatNot",
            ReplyContent::Dsn(_) => "dsn",
        }
    }
}

/// One recipient's outcome, as reported in `etatNot`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Etat {
    /// The annex code of the outcome; its message is `Code::message()`.
    pub code: Code,
    /// The phone number as the sender wrote it, so they can match the line
    /// to their request (empty for a request refused as a whole).
    pub tel: String,
}

impl Etat {
    /// An outcome for the number written `tel`.
    pub fn new(code: Code, tel: impl Into<String>) -> Etat {
        Etat {
            code,
            tel: tel.into(),
        }
    }
}

/// What happened to a reply send.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyOutcome {
    /// Delivered to the transport.
    Sent,
    /// Try again at this time.
    Retry {
        /// When.
        at: Millis,
        /// Why the last try failed.
        error: String,
    },
    /// Given up (permanent error): kept in the store with the error.
    Failed {
        /// Why.
        error: String,
    },
}

/// The durable state behind the pipeline.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Records an accepted email with its jobs and replies, atomically and
    /// durably; de-duplicates on (account, emailId).
    async fn accept(&self, request: NewRequest) -> Result<Accepted, StoreError>;

    /// Claims up to `limit` jobs due at `now`, marking them as being sent.
    async fn claim_jobs(&self, now: Millis, limit: usize) -> Result<Vec<Job>, StoreError>;

    /// Records outcomes; a request whose last job ends gets its etatNot
    /// queued. Credits debited for a send that did not end in "sent" go
    /// back to the account in the same transaction.
    async fn record_outcomes(&self, outcomes: Vec<JobOutcome>) -> Result<(), StoreError>;

    /// Jobs left "being sent" by a previous run: their outcome is unknown.
    async fn in_flight_jobs(&self) -> Result<Vec<Job>, StoreError>;

    /// Puts replies left "being sent" by a previous run back in the queue.
    /// Only the daemon that sends replies calls it, at start-up: they may
    /// have gone out already (their Message-ID is stable, so the receiving
    /// side can tell), but they are never lost.
    async fn requeue_interrupted_replies(&self) -> Result<u64, StoreError>;

    /// A short id unique to this database: with a job id, it makes the
    /// client reference given to providers, unique even if the database is
    /// ever recreated next to an old outbox file.
    fn instance_id(&self) -> &str;

    /// Claims up to `limit` replies due at `now`.
    async fn claim_replies(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<PendingReply>, StoreError>;

    /// Records what happened to replies (by id).
    async fn record_replies(&self, outcomes: Vec<(i64, ReplyOutcome)>) -> Result<(), StoreError>;

    /// Forgets requests finished before `before` (retention), at most
    /// [`PURGE_CHUNK`] at a time; returns how many. Their emailIds may then
    /// be used again.
    async fn purge(&self, before: Millis) -> Result<u64, StoreError>;

    /// Counts jobs per status (`queued`, `sending`, `sent`, `failed`), for
    /// status output and tests.
    async fn job_counts(&self) -> Result<Vec<(String, i64)>, StoreError>;

    /// An account's credit balance, in SMS segments (`None`: never set).
    async fn credit_balance(&self, account: &str) -> Result<Option<i64>, StoreError>;

    /// Adds `amount` (negative to take away) to an account's balance,
    /// starting from 0 if it has none; returns the new balance.
    async fn add_credits(&self, account: &str, amount: i64) -> Result<i64, StoreError>;

    /// Debits, in order, the segments of each job's SMS `(job id,
    /// segments)` while the balance covers them; says for each whether it
    /// was debited. Atomic: daemons sharing the database never overdraw. An
    /// account without a balance has 0. Each debit is written on its job:
    /// [`Store::record_outcomes`] gives it back, in the same transaction,
    /// for any outcome but "sent".
    async fn reserve_credits(
        &self,
        account: &str,
        jobs: &[(i64, u32)],
    ) -> Result<Vec<bool>, StoreError>;

    /// Gives segments back to an account's balance.
    async fn refund_credits(&self, account: &str, segments: u64) -> Result<(), StoreError>;

    /// Puts an E.164 number on the opt-out list of `scope` (an account's
    /// name, or `None` for every account); false if it was already there.
    async fn optout_add(&self, scope: Option<&str>, number: &str) -> Result<bool, StoreError>;

    /// Takes a number off the list of `scope`; false if it was not there.
    async fn optout_remove(&self, scope: Option<&str>, number: &str) -> Result<bool, StoreError>;

    /// Every opt-out entry, global ones first, then by account and number.
    async fn optout_list(&self) -> Result<Vec<OptOut>, StoreError>;

    /// Which of `numbers` must not receive SMS from `account`: on its own
    /// list or on the global one.
    async fn opted_out(
        &self,
        account: &str,
        numbers: &[String],
    ) -> Result<std::collections::HashSet<String>, StoreError>;

    /// SMS queued per account for requests received since `since` (seeds
    /// the sending-limit counters at start-up).
    async fn queued_since(&self, since: Millis) -> Result<Vec<(String, u64)>, StoreError>;
}

/// One entry of the opt-out list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptOut {
    /// The account it applies to; `None` for all of them.
    pub scope: Option<String>,
    /// The E.164 number.
    pub number: String,
    /// When it was added.
    pub added_at: Millis,
}
