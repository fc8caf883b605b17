//! The embedded SQLite store.
//!
//! All writes go through one writer task owning one connection. It takes every
//! operation waiting in its queue and runs them in a single transaction: one
//! fsync covers many emails (group commit), which is what lets the SMTP side
//! answer `250` only after a durable commit and still accept thousands of
//! emails a second. An operation that fails is retried alone, so one bad
//! request never makes its neighbours fail.

use super::{
    Accepted, Job, JobOutcome, Millis, NewRequest, OptOut, PendingReply, ReplyContent,
    ReplyOutcome, Store, StoreConfig, StoreError, StoreUrl,
};
use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, Row, SqlSafeStr, SqlitePool};
use std::borrow::Cow;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// A job's columns, with its request's values (stored once per request)
/// read through the request's primary key. A macro so that `concat!` can
/// build whole statements from it at compile time.
macro_rules! job_columns {
    () => {
        "id, request_id, account, number, text, received_at, attempts, provider_index,
         provider_attempts, MAX(received_at, COALESCE(held_until, received_at)) AS age_from,
         (SELECT r.sender_id FROM requests r WHERE r.id = jobs.request_id) AS sender_id,
         (SELECT r.tracker FROM requests r WHERE r.id = jobs.request_id) AS tracker,
         COALESCE((SELECT r.email_id FROM requests r WHERE r.id = jobs.request_id), '')
             AS email_id"
    };
}

mod accept;
mod alerts;
mod credits;
mod jobs;
mod purge;
mod replies;
mod writer;

use jobs::job_from_row;
pub use purge::PURGE_CHUNK;
use replies::{delivery_report, etats};
use writer::{Faults, Writer, writer_task};

/// The SQLite implementation of [`Store`].
pub struct SqliteStore {
    /// Queue to the writer task, which owns the only writing connection.
    writer: mpsc::Sender<Op>,
    /// Read-only connections (WAL lets them read while the writer writes).
    readers: SqlitePool,
    /// This database's `store_id` (see [`Store::instance_id`]).
    instance_id: String,
    /// Limits and injected faults the writer applies (fault tests).
    faults: Arc<Faults>,
}

/// One write operation and where its result goes.
struct Op {
    /// What to do; borrowed when run, so it can be run again alone.
    kind: OpKind,
    /// Who is waiting for the result.
    reply: oneshot::Sender<Result<OpResult, StoreError>>,
}

enum OpKind {
    /// Records an accepted email (boxed: a request is far larger than any
    /// other operation).
    Accept(Box<NewRequest>),
    ClaimJobs {
        now: Millis,
        limit: usize,
    },
    Record(Vec<JobOutcome>),
    ClaimReplies {
        now: Millis,
        limit: usize,
    },
    RecordReplies(Vec<(i64, ReplyOutcome)>),
    Purge {
        before: Millis,
    },
    RequeueReplies,
    /// Adds to (or, negative, takes from) an account's credit balance.
    AddCredits {
        account: String,
        amount: i64,
    },
    /// Debits each SMS's segments in order while the balance covers them.
    ReserveCredits {
        account: String,
        jobs: Vec<(i64, u32)>,
    },
    /// Puts a number on an opt-out list (`scope` '' for every account).
    OptOutAdd {
        scope: String,
        number: String,
    },
    /// Takes a number off an opt-out list (`scope` '' for every account).
    OptOutRemove {
        scope: String,
        number: String,
    },
    /// Caps the database's size (`PRAGMA max_page_count`; 0: no cap).
    MaxPageCount(u64),
}

enum OpResult {
    Accepted(Accepted),
    Jobs(Vec<Job>),
    Replies(Vec<ClaimedReply>),
    Count(u64),
    /// A credit balance after the operation.
    Balance(i64),
    /// Per SMS, whether its segments were debited.
    Reserved(Vec<bool>),
    /// Whether the operation changed anything (opt-out add or remove).
    Changed(bool),
    Done,
}

/// A reply claimed by the writer; an etatNot's lines and a failure
/// notice's report are read afterwards, outside the writer's transaction
/// (a large request has many).
struct ClaimedReply {
    reply: PendingReply,
    /// For an etatNot or a failure notice: its request, whose jobs give
    /// the lines.
    request_id: Option<i64>,
}

/// The schema's migrations, embedded from `migrations/sqlite/`: version,
/// name, SQL. A new one is a new line; an applied one is never edited.
const MIGRATIONS: [(i64, &str, &str); 5] = [
    (
        1,
        "init",
        include_str!("../../../migrations/sqlite/0001_init.sql"),
    ),
    (
        2,
        "rules",
        include_str!("../../../migrations/sqlite/0002_rules.sql"),
    ),
    (
        3,
        "debits_holds",
        include_str!("../../../migrations/sqlite/0003_debits_holds.sql"),
    ),
    (
        4,
        "request_values_once",
        include_str!("../../../migrations/sqlite/0004_request_values_once.sql"),
    ),
    (
        5,
        "alerts",
        include_str!("../../../migrations/sqlite/0005_alerts.sql"),
    ),
];

/// The migrator over [`MIGRATIONS`].
fn migrator() -> Migrator {
    let migrations = MIGRATIONS
        .iter()
        .map(|&(version, name, sql)| {
            Migration::new(
                version,
                Cow::Borrowed(name),
                MigrationType::Simple,
                sql.into_sql_str(),
                false,
            )
        })
        .collect();
    Migrator {
        migrations: Cow::Owned(migrations),
        ..Migrator::DEFAULT
    }
}

impl SqliteStore {
    /// Opens (creating if needed) and migrates the database, and starts the
    /// writer task.
    ///
    /// Safe while another process has the same database open (the CLI next
    /// to a running daemon, or two daemons): WAL lets readers and one writer
    /// work side by side, `busy_timeout_ms` makes each writer wait for the
    /// other's transaction, and nothing done here touches the other's work
    /// (replies left half-sent are only put back by
    /// [`Store::requeue_interrupted_replies`], which only the daemon calls).
    pub async fn open(config: &StoreConfig) -> Result<SqliteStore, StoreError> {
        let StoreUrl::Sqlite(path) = &config.url;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: a commit survives a power cut, not only a crash.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_millis(config.busy_timeout_ms))
            .foreign_keys(true)
            // Statements are never logged: a multi-row insert is long, and
            // slow batches are logged by the writer as a count instead.
            .disable_statement_logging();
        let patience = Duration::from_millis(config.busy_timeout_ms);
        let mut conn = connect(&options, patience).await?;
        migrate(&mut conn).await?;
        sqlx::query("INSERT OR IGNORE INTO meta (key, value) VALUES ('store_id', ?)")
            .bind(format!("{:08x}", fastrand::u32(..)))
            .execute(&mut conn)
            .await?;
        let instance_id: String =
            sqlx::query_scalar("SELECT value FROM meta WHERE key = 'store_id'")
                .fetch_one(&mut conn)
                .await?;
        let readers = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options.clone().read_only(true))
            .await?;
        let faults = Arc::new(Faults::default());
        faults.install(&mut conn).await?;
        let (writer, rx) = mpsc::channel(4096);
        let task = Writer {
            conn: Some(conn),
            options,
            patience,
            faults: faults.clone(),
        };
        tokio::spawn(writer_task(task, rx, config.max_batch.max(1)));
        Ok(SqliteStore {
            writer,
            readers,
            instance_id,
            faults,
        })
    }

    /// Caps the database at `pages` pages (`None`: no cap), as a full disk
    /// would; returns the cap SQLite applied, which is never below the
    /// database's current size. For fault tests: writes that need a new
    /// page fail with SQLITE_FULL until the cap is lifted.
    #[doc(hidden)]
    pub async fn set_max_page_count(&self, pages: Option<u64>) -> Result<u64, StoreError> {
        let pages = pages.unwrap_or(0);
        self.faults.max_page_count.store(pages, Ordering::Release);
        match self.submit(OpKind::MaxPageCount(pages)).await? {
            OpResult::Count(applied) => Ok(applied),
            _ => unreachable!("max_page_count returns Count"),
        }
    }

    /// Makes the next `count` commits of the writer fail (the commit hook
    /// turns them into rollbacks), as a disk that fails at `COMMIT` would.
    /// For fault tests.
    #[doc(hidden)]
    pub fn fail_next_commits(&self, count: u32) {
        self.faults.failing_commits.store(count, Ordering::Release);
    }

    /// Stamps later accepts with `clock`'s time instead of the system
    /// clock's, so that tests can move through the alert windows
    /// (Message-ID, same text, per hour) without waiting.
    #[doc(hidden)]
    pub fn set_clock(&self, clock: crate::clock::Clock) {
        *self.faults.clock.lock().unwrap_or_else(|e| e.into_inner()) = clock;
    }

    async fn submit(&self, kind: OpKind) -> Result<OpResult, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.writer
            .send(Op { kind, reply })
            .await
            .map_err(|_| StoreError::Closed)?;
        rx.await.map_err(|_| StoreError::Closed)?
    }
}

/// Connects the writing connection. Turning a new database file to WAL
/// needs it alone for a moment, and two processes creating the same file at
/// once may find it busy without the busy timeout being applied (SQLite's
/// deadlock avoidance); so try again, for up to `patience`.
async fn connect(
    options: &SqliteConnectOptions,
    patience: Duration,
) -> Result<SqliteConnection, StoreError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match SqliteConnection::connect_with(options).await {
            Err(error) if is_busy(&error) && tokio::time::Instant::now() < deadline => {
                tracing::debug!(%error, "database busy while opening, trying again");
                tokio::time::sleep(Duration::from_millis(fastrand::u64(5..50))).await;
            }
            result => return Ok(result?),
        }
    }
}

/// SQLite's errors sorted into the store's: the database's state (SQLITE_BUSY
/// 5, LOCKED 6, READONLY 8, IOERR 10, CORRUPT 11, FULL 13, CANTOPEN 14, a
/// failed `COMMIT` turned into a rollback, or no answer at all) is
/// [`StoreError::Unavailable`]; anything else is one operation's fault.
impl From<sqlx::Error> for StoreError {
    fn from(error: sqlx::Error) -> StoreError {
        let database_wide = match &error {
            sqlx::Error::Database(db) => {
                db.code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(|code| {
                        matches!(code & 0xff, 5 | 6 | 8 | 10 | 11 | 13 | 14)
                            || code == SQLITE_CONSTRAINT_COMMITHOOK
                    })
            }
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            _ => false,
        };
        if database_wide {
            StoreError::Unavailable(error.to_string())
        } else {
            StoreError::Rejected(error.to_string())
        }
    }
}

/// A `COMMIT` refused by the commit hook: a failed commit, for the whole group.
const SQLITE_CONSTRAINT_COMMITHOOK: i32 = 531;

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(error: sqlx::migrate::MigrateError) -> StoreError {
        StoreError::Migration(error.to_string())
    }
}

/// SQLITE_BUSY or SQLITE_LOCKED, extended codes included.
fn is_busy(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6)),
        _ => false,
    }
}

/// Brings the schema up to date. Two processes opening a database that
/// lacks a migration at the same moment both try to apply it; the one that
/// waited for the other's lock then fails ("table already exists") and,
/// looking again, finds it applied. A real fault fails every time.
async fn migrate(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    let migrator = migrator();
    let mut attempts_left = migrator.migrations.len();
    loop {
        match migrator.run(&mut *conn).await {
            Ok(()) => return Ok(()),
            Err(error) if attempts_left > 0 => {
                tracing::debug!(%error, "migration failed, looking again");
                attempts_left -= 1;
            }
            Err(error) => return Err(error.into()),
        }
    }
}

/// Which of the numbers (?1, a JSON array) are on the global list or on
/// account ?2's: one primary-key lookup per number and scope.
const OPTED_OUT_SQL: &str = "SELECT n.value FROM json_each(?1) AS n
     WHERE EXISTS (SELECT 1 FROM optouts o WHERE o.scope IN ('', ?2) AND o.number = n.value)";

/// SMS queued per account for requests received at or after ?1: jobs with
/// a number (refused numbers and repeats have none), whatever became of
/// them since. Read from the `jobs_received` index alone.
const QUEUED_SINCE_SQL: &str = "SELECT account, COUNT(*) FROM jobs
     WHERE received_at >= ?1 AND number IS NOT NULL GROUP BY account ORDER BY account";

#[async_trait]
impl Store for SqliteStore {
    async fn accept(&self, request: NewRequest) -> Result<Accepted, StoreError> {
        match self.submit(OpKind::Accept(Box::new(request))).await? {
            OpResult::Accepted(a) => Ok(a),
            _ => unreachable!("accept returns Accepted"),
        }
    }

    async fn claim_jobs(&self, now: Millis, limit: usize) -> Result<Vec<Job>, StoreError> {
        match self.submit(OpKind::ClaimJobs { now, limit }).await? {
            OpResult::Jobs(jobs) => Ok(jobs),
            _ => unreachable!("claim_jobs returns Jobs"),
        }
    }

    async fn record_outcomes(&self, outcomes: Vec<JobOutcome>) -> Result<(), StoreError> {
        self.submit(OpKind::Record(outcomes)).await.map(|_| ())
    }

    async fn in_flight_jobs(&self) -> Result<Vec<Job>, StoreError> {
        let rows = sqlx::query(concat!(
            "SELECT ",
            job_columns!(),
            " FROM jobs WHERE status = 'sending' ORDER BY id"
        ))
        .fetch_all(&self.readers)
        .await?;
        Ok(rows
            .iter()
            .map(job_from_row)
            .collect::<Result<Vec<_>, _>>()?)
    }

    async fn claim_replies(
        &self,
        now: Millis,
        limit: usize,
    ) -> Result<Vec<PendingReply>, StoreError> {
        let claimed = match self.submit(OpKind::ClaimReplies { now, limit }).await? {
            OpResult::Replies(r) => r,
            _ => unreachable!("claim_replies returns Replies"),
        };
        let mut replies = Vec::with_capacity(claimed.len());
        let ids: Vec<i64> = claimed.iter().map(|c| c.reply.id).collect();
        for ClaimedReply {
            mut reply,
            request_id,
        } in claimed
        {
            if let Some(request_id) = request_id {
                let read = match &mut reply.content {
                    ReplyContent::Not { etats: lines, .. } => etats(&self.readers, request_id)
                        .await
                        .map(|read| *lines = read),
                    ReplyContent::Dsn(report) => delivery_report(&self.readers, request_id)
                        .await
                        .map(|read| *report = read),
                    ReplyContent::Ack { .. } => Ok(()),
                };
                match read {
                    Ok(()) => {}
                    Err(e) => {
                        // Give the claimed replies back rather than leave
                        // them "being sent" until the next start.
                        let back = ids
                            .iter()
                            .map(|&id| {
                                let error = e.to_string();
                                (id, ReplyOutcome::Retry { at: now, error })
                            })
                            .collect();
                        let _ = self.submit(OpKind::RecordReplies(back)).await;
                        return Err(e);
                    }
                }
            }
            replies.push(reply);
        }
        Ok(replies)
    }

    async fn record_replies(&self, outcomes: Vec<(i64, ReplyOutcome)>) -> Result<(), StoreError> {
        self.submit(OpKind::RecordReplies(outcomes))
            .await
            .map(|_| ())
    }

    async fn purge(&self, before: Millis) -> Result<u64, StoreError> {
        match self.submit(OpKind::Purge { before }).await? {
            OpResult::Count(n) => Ok(n),
            _ => unreachable!("purge returns Count"),
        }
    }

    async fn requeue_interrupted_replies(&self) -> Result<u64, StoreError> {
        match self.submit(OpKind::RequeueReplies).await? {
            OpResult::Count(n) => Ok(n),
            _ => unreachable!("requeue returns Count"),
        }
    }

    fn instance_id(&self) -> &str {
        &self.instance_id
    }

    async fn credit_balance(&self, account: &str) -> Result<Option<i64>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT balance FROM credits WHERE account = ?")
                .bind(account)
                .fetch_optional(&self.readers)
                .await?,
        )
    }

    /// Taking away more than the balance leaves 0: a balance is never
    /// negative (the returned balance shows what was actually taken).
    async fn add_credits(&self, account: &str, amount: i64) -> Result<i64, StoreError> {
        let account = account.to_string();
        match self.submit(OpKind::AddCredits { account, amount }).await? {
            OpResult::Balance(balance) => Ok(balance),
            _ => unreachable!("add_credits returns Balance"),
        }
    }

    /// Greedy in order: an SMS that does not fit is skipped, and a later,
    /// smaller one may still be debited. Never creates a balance.
    async fn reserve_credits(
        &self,
        account: &str,
        jobs: &[(i64, u32)],
    ) -> Result<Vec<bool>, StoreError> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let op = OpKind::ReserveCredits {
            account: account.to_string(),
            jobs: jobs.to_vec(),
        };
        match self.submit(op).await? {
            OpResult::Reserved(taken) => Ok(taken),
            _ => unreachable!("reserve_credits returns Reserved"),
        }
    }

    /// Adds the segments back, creating the balance if it is missing (it
    /// was deleted meanwhile); giving back 0 changes nothing.
    async fn refund_credits(&self, account: &str, segments: u64) -> Result<(), StoreError> {
        if segments == 0 {
            return Ok(());
        }
        let account = account.to_string();
        let amount = i64::try_from(segments).unwrap_or(i64::MAX);
        self.submit(OpKind::AddCredits { account, amount })
            .await
            .map(|_| ())
    }

    async fn optout_add(&self, scope: Option<&str>, number: &str) -> Result<bool, StoreError> {
        let op = OpKind::OptOutAdd {
            scope: scope.unwrap_or_default().to_string(),
            number: number.to_string(),
        };
        match self.submit(op).await? {
            OpResult::Changed(added) => Ok(added),
            _ => unreachable!("optout_add returns Changed"),
        }
    }

    async fn optout_remove(&self, scope: Option<&str>, number: &str) -> Result<bool, StoreError> {
        let op = OpKind::OptOutRemove {
            scope: scope.unwrap_or_default().to_string(),
            number: number.to_string(),
        };
        match self.submit(op).await? {
            OpResult::Changed(removed) => Ok(removed),
            _ => unreachable!("optout_remove returns Changed"),
        }
    }

    async fn optout_list(&self) -> Result<Vec<OptOut>, StoreError> {
        // '' (global) sorts before every account name.
        let rows =
            sqlx::query("SELECT scope, number, added_at FROM optouts ORDER BY scope, number")
                .fetch_all(&self.readers)
                .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let scope: String = row.try_get(0)?;
                Ok(OptOut {
                    scope: (!scope.is_empty()).then_some(scope),
                    number: row.try_get(1)?,
                    added_at: row.try_get(2)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    async fn opted_out(
        &self,
        account: &str,
        numbers: &[String],
    ) -> Result<HashSet<String>, StoreError> {
        if numbers.is_empty() {
            return Ok(HashSet::new());
        }
        Ok(sqlx::query_scalar(OPTED_OUT_SQL)
            .bind(serde_json::to_string(numbers).unwrap_or_default())
            .bind(account)
            .fetch_all(&self.readers)
            .await?
            .into_iter()
            .collect())
    }

    async fn queued_since(&self, since: Millis) -> Result<Vec<(String, u64)>, StoreError> {
        let rows = sqlx::query(QUEUED_SINCE_SQL)
            .bind(since)
            .fetch_all(&self.readers)
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let count: i64 = row.try_get(1)?;
                Ok((row.try_get(0)?, u64::try_from(count).unwrap_or_default()))
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }

    async fn job_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let rows = sqlx::query("SELECT status, COUNT(*) FROM jobs GROUP BY status ORDER BY status")
            .fetch_all(&self.readers)
            .await?;
        Ok(rows
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<Result<Vec<_>, sqlx::Error>>()?)
    }
}

#[cfg(test)]
mod tests {
    use super::accept::accept_all;
    use super::*;
    use crate::store::{NewMessage, now_millis};

    fn request(account: &str, email_id: Option<&str>, numbers: &[&str]) -> NewRequest {
        let messages = numbers.iter().map(|n| NewMessage::to(n, "t")).collect();
        NewRequest {
            email_ack: Some("ack@b.c".into()),
            email_not: Some("not@b.c".into()),
            ..NewRequest::new(account, email_id, "a@b.c", messages)
        }
    }

    /// The query plans of the sending-limit count and the opt-out check:
    /// the count reads the `jobs_received` index alone, not every job, and
    /// the check looks each number up by primary key.
    #[tokio::test]
    async fn rule_queries_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("db.sqlite"))
            .create_if_missing(true);
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        migrator().run(&mut conn).await.unwrap();
        let plan = |sql: &str| format!("EXPLAIN QUERY PLAN {sql}");

        let rows = sqlx::query(sqlx::AssertSqlSafe(plan(QUEUED_SINCE_SQL)))
            .bind(0i64)
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let details: Vec<String> = rows.iter().map(|r| r.get::<String, _>(3)).collect();
        assert!(
            details
                .iter()
                .any(|d| d.contains("COVERING INDEX jobs_received")),
            "{details:?}"
        );

        let rows = sqlx::query(sqlx::AssertSqlSafe(plan(OPTED_OUT_SQL)))
            .bind("[\"+33600000001\"]")
            .bind("acme")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        let details: Vec<String> = rows.iter().map(|r| r.get::<String, _>(3)).collect();
        assert!(
            details
                .iter()
                .any(|d| d.contains("USING PRIMARY KEY (scope=? AND number=?)")),
            "{details:?}"
        );
    }

    /// Migration 0005 rebuilds `requests`, `jobs` and `replies` (issue 10):
    /// on a database with data, nothing is lost (the foreign keys' cascade
    /// must not fire), the job id counter keeps its place (a purged job's
    /// id is never reused) and the cascade still works afterwards.
    #[tokio::test]
    async fn migration_5_keeps_every_row_and_the_job_counter() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("db.sqlite"))
            .create_if_missing(true)
            .foreign_keys(true);
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        let mut before = migrator();
        before.migrations = Cow::Owned(before.migrations[..4].to_vec());
        before.run(&mut conn).await.unwrap();
        let old = request("acme", Some("old"), &["+33600000001", "+33600000002"]);
        accept_all(&mut conn, &[&old], now_millis()).await.unwrap();
        sqlx::query(
            "INSERT INTO replies (kind, request_id, recipient, status, next_attempt_at, created_at)
             SELECT 'not', id, 'not@b.c', 'pending', 0, 0 FROM requests",
        )
        .execute(&mut conn)
        .await
        .unwrap();
        // The last job purged: the counter is ahead of max(id).
        sqlx::query("DELETE FROM jobs WHERE seq = 2")
            .execute(&mut conn)
            .await
            .unwrap();
        migrator().run(&mut conn).await.unwrap();

        let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
        assert_eq!(
            count("SELECT COUNT(*) FROM jobs")
                .fetch_one(&mut conn)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM replies")
                .fetch_one(&mut conn)
                .await
                .unwrap(),
            2
        );
        let fk: Vec<sqlx::sqlite::SqliteRow> = sqlx::query("PRAGMA foreign_key_check")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert!(fk.is_empty());
        let new = request("acme", Some("new"), &["+33600000003"]);
        accept_all(&mut conn, &[&new], now_millis()).await.unwrap();
        assert_eq!(
            count("SELECT MAX(id) FROM jobs")
                .fetch_one(&mut conn)
                .await
                .unwrap(),
            3,
            "job 2's id is not reused"
        );
        // The duplicate check and the cascade still work.
        let again = accept_all(&mut conn, &[&old], now_millis()).await.unwrap();
        assert_eq!(again, [Accepted::Duplicate]);
        sqlx::query("DELETE FROM requests WHERE email_id = 'old'")
            .execute(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            count("SELECT COUNT(*) FROM jobs")
                .fetch_one(&mut conn)
                .await
                .unwrap(),
            1
        );
        assert_eq!(
            count("SELECT COUNT(*) FROM replies WHERE kind = 'not'")
                .fetch_one(&mut conn)
                .await
                .unwrap(),
            0
        );
    }

    #[tokio::test]
    async fn one_group_commit_dedupes_within_itself_and_against_the_table() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("db.sqlite");
        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true);
        let mut conn = SqliteConnection::connect_with(&options).await.unwrap();
        migrator().run(&mut conn).await.unwrap();
        let earlier = request("acme", Some("seen"), &["+33600000000"]);
        accept_all(&mut conn, &[&earlier], now_millis())
            .await
            .unwrap();

        let first = request("acme", Some("x"), &["+33600000001", "+33600000002"]);
        let again = request("acme", Some("x"), &["+33600000003"]);
        let no_id = request("acme", None, &["+33600000004"]);
        let other_account = request("other", Some("x"), &["+33600000005"]);
        let seen = request("acme", Some("seen"), &["+33600000006"]);
        let results = accept_all(
            &mut conn,
            &[&first, &again, &no_id, &other_account, &seen],
            now_millis(),
        )
        .await
        .unwrap();
        assert!(
            matches!(results[0], Accepted::Queued { jobs: 2, .. }),
            "{results:?}"
        );
        assert_eq!(results[1], Accepted::Duplicate);
        assert_eq!(results[2], Accepted::NoEmailId);
        assert!(
            matches!(results[3], Accepted::Queued { jobs: 1, .. }),
            "{results:?}"
        );
        assert_eq!(results[4], Accepted::Duplicate);

        let numbers: Vec<String> = sqlx::query_scalar("SELECT number FROM jobs ORDER BY number")
            .fetch_all(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            numbers,
            [
                "+33600000000",
                "+33600000001",
                "+33600000002",
                "+33600000005"
            ]
        );
        let seqs: Vec<i64> = sqlx::query_scalar(
            "SELECT seq FROM jobs WHERE number IN ('+33600000001', '+33600000002') ORDER BY seq",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap();
        assert_eq!(seqs, [1, 2]);
        let mut acks: Vec<i64> =
            sqlx::query_scalar("SELECT ack_code FROM replies WHERE kind = 'ack'")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        acks.sort();
        // earlier: 0; then first 0, again 1, no id 2, other 0, seen 1.
        assert_eq!(acks, [0, 0, 0, 1, 1, 2]);
    }
}
