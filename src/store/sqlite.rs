//! The embedded SQLite store.
//!
//! All writes go through one writer task owning one connection. It takes every
//! operation waiting in its queue and runs them in a single transaction: one
//! fsync covers many emails (group commit), which is what lets the SMTP side
//! answer `250` only after a durable commit and still accept thousands of
//! emails a second. An operation that fails is retried alone, so one bad
//! request never makes its neighbours fail.

use super::{
    Accepted, Job, JobOutcome, Millis, NewMessage, NewRequest, OptOut, PendingReply, ReplyContent,
    ReplyOutcome, RequestBody, Store, StoreError, now_millis,
};
use crate::codes::{AckCode, Code};
use async_trait::async_trait;
use serde::Deserialize;
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, SqlSafeStr, SqlitePool};
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};

/// The `[store]` table of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The SQLite database file; its directory is created if missing.
    pub path: PathBuf,
    /// How long a write waits for a lock held by another process (e.g.
    /// `mail2sms deliver` next to the daemon) before giving up with `451`.
    pub busy_timeout_ms: u64,
    /// The most operations committed in one transaction (group commit).
    pub max_batch: usize,
    /// Days a finished request (all SMS and replies settled) is kept; its
    /// emailId is refused as a duplicate for that long. 0 keeps everything
    /// forever (the spec's "an emailId is processed once").
    pub retention_days: u64,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            path: PathBuf::from("mail2sms-data/mail2sms.db"),
            busy_timeout_ms: 5_000,
            max_batch: 512,
            retention_days: 0,
        }
    }
}

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
    Accept(NewRequest),
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

/// A reply claimed by the writer; an etatNot's lines are read afterwards,
/// outside the writer's transaction (a large request has many).
struct ClaimedReply {
    reply: PendingReply,
    /// For an etatNot: its request, whose jobs give the lines.
    request_id: Option<i64>,
}

/// Migrations embedded in the binary, from `migrations/sqlite/`.
fn migrator() -> Migrator {
    let migrations = vec![
        Migration::new(
            1,
            Cow::Borrowed("init"),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0001_init.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            2,
            Cow::Borrowed("rules"),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0002_rules.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            3,
            Cow::Borrowed("debits_holds"),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0003_debits_holds.sql").into_sql_str(),
            false,
        ),
        Migration::new(
            4,
            Cow::Borrowed("request_values_once"),
            MigrationType::Simple,
            include_str!("../../migrations/sqlite/0004_request_values_once.sql").into_sql_str(),
            false,
        ),
    ];
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
        if let Some(dir) = config.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Directory {
                path: dir.display().to_string(),
                source,
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(&config.path)
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

/// Runs queued operations in group-committed transactions until every
/// sender is gone.
async fn writer_task(mut writer: Writer, mut rx: mpsc::Receiver<Op>, max_batch: usize) {
    let mut batch = Vec::with_capacity(max_batch);
    while rx.recv_many(&mut batch, max_batch).await > 0 {
        let started = std::time::Instant::now();
        let ops = batch.len();
        writer.run(&mut batch).await;
        let took = started.elapsed();
        if took >= SLOW_BATCH {
            tracing::warn!(ops, took_ms = took.as_millis() as u64, "slow group commit");
        }
    }
}

/// A group commit slower than this is logged (as a count and a duration:
/// statements are never logged, they may be megabytes long).
const SLOW_BATCH: Duration = Duration::from_secs(1);

/// The writer task's state: its connection, and how to make a new one.
///
/// Every failure inside a transaction, `COMMIT` included, ends with an
/// explicit `ROLLBACK` and a check that the connection is out of any
/// transaction; a connection that cannot be brought back is dropped and a
/// fresh one opened before the next batch. Transactions are plain
/// `BEGIN IMMEDIATE` / `COMMIT` / `ROLLBACK` statements, not sqlx's
/// `Transaction`: sqlx counts nesting depth and only lowers it when
/// `COMMIT` or `ROLLBACK` succeed, so after a `COMMIT` that failed (disk
/// full) and that SQLite had already rolled back, every later transaction
/// became a `SAVEPOINT` inside one that never ended, and accepted mail
/// never reached the file (issue 8).
struct Writer {
    /// The writing connection; `None` after one was dropped as unusable,
    /// until a new one is opened.
    conn: Option<SqliteConnection>,
    /// How to open a new connection (the same file and pragmas).
    options: SqliteConnectOptions,
    /// How long opening may retry while the database is busy.
    patience: Duration,
    /// Limits and injected faults, shared with [`SqliteStore`].
    faults: Arc<Faults>,
}

/// Knobs the fault tests turn on a running store: they make the database
/// full or a `COMMIT` fail at a chosen moment, the way a full disk does.
#[derive(Debug, Default)]
struct Faults {
    /// `PRAGMA max_page_count` of the writing connection (0: SQLite's
    /// default); re-applied to every new connection.
    max_page_count: AtomicU64,
    /// How many of the next commits the commit hook turns into rollbacks.
    failing_commits: AtomicU32,
}

/// Why a group of operations failed, and so how far the failure reaches.
enum BatchError {
    /// The database's state (busy, full, read-only, I/O) or the transaction
    /// itself (`BEGIN`, `COMMIT`): every operation of the group would fail
    /// again the same way; they all get the error.
    Database(StoreError),
    /// One operation's statement failed for a reason of its own: the
    /// others are run again, each alone.
    Operation(StoreError),
}

impl Writer {
    /// Runs a group of operations in one transaction and answers each.
    async fn run(&mut self, batch: &mut Vec<Op>) {
        match self.transaction(batch).await {
            Ok(results) => {
                for (op, result) in batch.drain(..).zip(results) {
                    let _ = op.reply.send(Ok(result));
                }
            }
            Err(BatchError::Operation(error)) if batch.len() > 1 => {
                tracing::warn!(%error, ops = batch.len(), "group commit failed, retrying each alone");
                for op in batch.drain(..) {
                    let result = match self.transaction(std::slice::from_ref(&op)).await {
                        Ok(mut results) => Ok(results.remove(0)),
                        Err(BatchError::Database(e) | BatchError::Operation(e)) => Err(e),
                    };
                    let _ = op.reply.send(result);
                }
            }
            Err(BatchError::Database(error) | BatchError::Operation(error)) => {
                // Nothing of the group was committed: every operation gets
                // the error (SMTP says 451), none is reported as done.
                tracing::error!(%error, ops = batch.len(), "store write failed");
                let message = error.to_string();
                for op in batch.drain(..) {
                    let _ = op.reply.send(Err(StoreError::Unavailable(message.clone())));
                }
            }
        }
    }

    /// One transaction over `ops`; on any failure it is rolled back and the
    /// connection made clean (or dropped) before this returns.
    async fn transaction(&mut self, ops: &[Op]) -> Result<Vec<OpResult>, BatchError> {
        let conn = self.connection().await.map_err(BatchError::Database)?;
        if let Err(error) = sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await {
            self.recover().await;
            return Err(BatchError::Database(error.into()));
        }
        let result = match run_ops(conn, ops).await {
            Ok(results) => match sqlx::raw_sql("COMMIT").execute(&mut *conn).await {
                Ok(_) => return Ok(results),
                Err(error) => BatchError::Database(error.into()),
            },
            Err(error) if affects_everything(&error) => BatchError::Database(error),
            Err(error) => BatchError::Operation(error),
        };
        self.recover().await;
        Err(result)
    }

    /// The writing connection, opening a new one if the last was dropped.
    async fn connection(&mut self) -> Result<&mut SqliteConnection, StoreError> {
        if self.conn.is_none() {
            let mut conn = connect(&self.options, self.patience).await?;
            self.faults.install(&mut conn).await?;
            tracing::info!("store: new writing connection opened");
            self.conn = Some(conn);
        }
        Ok(self.conn.as_mut().expect("connection just set"))
    }

    /// After a failed transaction: rolls it back and checks that the
    /// connection is in no transaction at all; otherwise drops it. SQLite
    /// may already have rolled back (a failed `COMMIT` on a full disk), so
    /// the `ROLLBACK` itself may fail: only the check counts.
    async fn recover(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let _ = sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await;
        if let Err(error) = is_clean(conn).await {
            tracing::warn!(%error, "store: writing connection left in a transaction; replacing it");
            if let Some(conn) = self.conn.take() {
                // Closing a connection rolls back what it still holds.
                let _ = conn.close().await;
            }
        }
    }
}

/// Whether a connection is outside any transaction: a plain `BEGIN` (which
/// takes no lock) succeeds only then.
async fn is_clean(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::raw_sql("BEGIN").execute(&mut *conn).await?;
    sqlx::raw_sql("ROLLBACK").execute(&mut *conn).await?;
    Ok(())
}

impl Faults {
    /// Applies the size cap and the commit hook to a new connection.
    async fn install(self: &Arc<Self>, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        self.apply_max_page_count(conn).await?;
        let faults = self.clone();
        conn.lock_handle().await?.set_commit_hook(move || {
            faults
                .failing_commits
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_err()
        });
        Ok(())
    }

    /// Sets `PRAGMA max_page_count` from [`Faults::max_page_count`];
    /// returns the cap SQLite applied (never below the database's size).
    async fn apply_max_page_count(&self, conn: &mut SqliteConnection) -> Result<u64, StoreError> {
        let pages = match self.max_page_count.load(Ordering::Acquire) {
            0 => UNLIMITED_PAGES,
            n => n,
        };
        let applied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "PRAGMA max_page_count = {pages}"
        )))
        .fetch_one(&mut *conn)
        .await?;
        Ok(applied as u64)
    }
}

/// The largest `max_page_count` SQLite takes: no cap.
const UNLIMITED_PAGES: u64 = 0xffff_fffe;

/// Whether an error is the database's state rather than one operation's
/// fault: SQLITE_BUSY (5), LOCKED (6), READONLY (8), IOERR (10), CORRUPT
/// (11), FULL (13), CANTOPEN (14), or no answer from the database at all.
fn affects_everything(error: &StoreError) -> bool {
    match error {
        StoreError::Database(sqlx::Error::Database(db)) => db
            .code()
            .and_then(|c| c.parse::<i32>().ok())
            .is_some_and(|code| matches!(code & 0xff, 5 | 6 | 8 | 10 | 11 | 13 | 14)),
        StoreError::Database(
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed,
        ) => true,
        StoreError::Database(_) => false,
        StoreError::Closed | StoreError::Unavailable(_) => true,
        StoreError::Migration(_) | StoreError::Directory { .. } => false,
    }
}

/// Runs the operations of one transaction (already begun on `conn`).
async fn run_ops(conn: &mut SqliteConnection, ops: &[Op]) -> Result<Vec<OpResult>, StoreError> {
    let mut results: Vec<Option<OpResult>> = ops.iter().map(|_| None).collect();
    // Every accepted email of the group in a few statements.
    let (positions, requests): (Vec<usize>, Vec<&NewRequest>) = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match &op.kind {
            OpKind::Accept(r) => Some((i, r)),
            _ => None,
        })
        .unzip();
    if !requests.is_empty() {
        for (i, accepted) in positions
            .into_iter()
            .zip(accept_all(&mut *conn, &requests).await?)
        {
            results[i] = Some(OpResult::Accepted(accepted));
        }
    }
    for (op, result) in ops.iter().zip(results.iter_mut()) {
        if result.is_none() {
            *result = Some(apply(&mut *conn, &op.kind).await?);
        }
    }
    Ok(results.into_iter().flatten().collect())
}

async fn apply(conn: &mut SqliteConnection, kind: &OpKind) -> Result<OpResult, StoreError> {
    Ok(match kind {
        OpKind::Accept(request) => OpResult::Accepted(
            accept_all(conn, &[request])
                .await?
                .pop()
                .unwrap_or(Accepted::Duplicate),
        ),
        OpKind::ClaimJobs { now, limit } => OpResult::Jobs(claim_jobs(conn, *now, *limit).await?),
        OpKind::Record(outcomes) => {
            record_outcomes(conn, outcomes).await?;
            OpResult::Done
        }
        OpKind::ClaimReplies { now, limit } => {
            OpResult::Replies(claim_replies(conn, *now, *limit).await?)
        }
        OpKind::RecordReplies(outcomes) => {
            record_replies(conn, outcomes).await?;
            OpResult::Done
        }
        OpKind::Purge { before } => OpResult::Count(purge(conn, *before).await?),
        OpKind::RequeueReplies => OpResult::Count(
            sqlx::query("UPDATE replies SET status = 'pending' WHERE status = 'sending'")
                .execute(&mut *conn)
                .await?
                .rows_affected(),
        ),
        OpKind::AddCredits { account, amount } => {
            OpResult::Balance(add_credits(conn, account, *amount).await?)
        }
        OpKind::ReserveCredits { account, jobs } => {
            OpResult::Reserved(reserve_credits(conn, account, jobs).await?)
        }
        OpKind::OptOutAdd { scope, number } => OpResult::Changed(
            sqlx::query(
                "INSERT INTO optouts (scope, number, added_at) VALUES (?, ?, ?)
                 ON CONFLICT (scope, number) DO NOTHING",
            )
            .bind(scope)
            .bind(number)
            .bind(now_millis())
            .execute(&mut *conn)
            .await?
            .rows_affected()
                > 0,
        ),
        OpKind::MaxPageCount(pages) => {
            let faults = Faults {
                max_page_count: AtomicU64::new(*pages),
                ..Faults::default()
            };
            OpResult::Count(faults.apply_max_page_count(conn).await?)
        }
        OpKind::OptOutRemove { scope, number } => OpResult::Changed(
            sqlx::query("DELETE FROM optouts WHERE scope = ? AND number = ?")
                .bind(scope)
                .bind(number)
                .execute(&mut *conn)
                .await?
                .rows_affected()
                > 0,
        ),
    })
}

/// Adds `amount` to an account's balance, creating it from 0 if missing, and
/// returns the new balance. The balance never goes below 0 (taking away
/// more than there is leaves 0) nor above `i64::MAX` (saturates instead of
/// overflowing into a float).
async fn add_credits(
    conn: &mut SqliteConnection,
    account: &str,
    amount: i64,
) -> Result<i64, StoreError> {
    Ok(sqlx::query_scalar(
        "INSERT INTO credits (account, balance, updated_at) VALUES (?1, MAX(?2, 0), ?3)
         ON CONFLICT (account) DO UPDATE SET
             balance = CASE WHEN ?2 > 0 AND balance > 9223372036854775807 - ?2
                            THEN 9223372036854775807
                            ELSE MAX(balance + ?2, 0) END,
             updated_at = ?3
         RETURNING balance",
    )
    .bind(account)
    .bind(amount)
    .bind(now_millis())
    .fetch_one(&mut *conn)
    .await?)
}

/// Debits an account's balance for SMS of `segments` each, greedily in
/// order: an SMS that does not fit is skipped and a later, smaller one may
/// still be debited. Returns, per SMS, whether it was debited.
///
/// Every statement is a conditional `UPDATE`, so that a balance changed by
/// another process can never be overdrawn. The first one is a write: from it
/// until the commit this transaction holds the database's write lock, so the
/// balance read in between is the one the last `UPDATE` applies to.
async fn reserve_credits(
    conn: &mut SqliteConnection,
    account: &str,
    jobs: &[(i64, u32)],
) -> Result<Vec<bool>, StoreError> {
    let segments: Vec<u32> = jobs.iter().map(|&(_, s)| s).collect();
    let taken = debit_credits(conn, account, &segments).await?;
    // Each debit is written on its job in the same transaction: the outcome
    // that ends the send gives it back unless the SMS was sent.
    let debits: Vec<serde_json::Value> = jobs
        .iter()
        .zip(&taken)
        .filter(|(_, ok)| **ok)
        .map(|(&(id, s), _)| serde_json::json!([id, s]))
        .collect();
    if !debits.is_empty() {
        sqlx::query(
            "UPDATE jobs SET debited = o.value ->> 1
             FROM json_each(?1) AS o WHERE jobs.id = o.value ->> 0",
        )
        .bind(serde_json::Value::Array(debits).to_string())
        .execute(&mut *conn)
        .await?;
    }
    Ok(taken)
}

/// Debits, greedily in order, the segments that the balance covers.
async fn debit_credits(
    conn: &mut SqliteConnection,
    account: &str,
    segments: &[u32],
) -> Result<Vec<bool>, StoreError> {
    const DEBIT: &str = "UPDATE credits SET balance = balance - ?1, updated_at = ?3
                         WHERE account = ?2 AND balance >= ?1 RETURNING balance";
    let now = now_millis();
    let total: i64 = segments.iter().map(|&s| i64::from(s)).sum();
    // Usually everything fits: one statement.
    let debited: Option<i64> = sqlx::query_scalar(DEBIT)
        .bind(total)
        .bind(account)
        .bind(now)
        .fetch_optional(&mut *conn)
        .await?;
    if debited.is_some() {
        return Ok(vec![true; segments.len()]);
    }
    let balance: i64 = sqlx::query_scalar("SELECT balance FROM credits WHERE account = ?")
        .bind(account)
        .fetch_optional(&mut *conn)
        .await?
        .unwrap_or(0);
    let mut left = balance;
    let taken: Vec<bool> = segments
        .iter()
        .map(|&s| {
            let fits = i64::from(s) <= left;
            if fits {
                left -= i64::from(s);
            }
            fits
        })
        .collect();
    let debit = balance - left;
    if debit > 0 {
        let debited: Option<i64> = sqlx::query_scalar(DEBIT)
            .bind(debit)
            .bind(account)
            .bind(now)
            .fetch_optional(&mut *conn)
            .await?;
        if debited.is_none() {
            // Cannot happen while the write lock is held; never guess.
            return Err(StoreError::Unavailable(format!(
                "credit balance of {account} changed during a reservation"
            )));
        }
    }
    Ok(taken)
}

async fn insert_not(
    conn: &mut SqliteConnection,
    request_id: i64,
    to: &str,
    email_id: &str,
    now: Millis,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO replies (kind, request_id, recipient, email_id, status, next_attempt_at, created_at)
         VALUES ('not', ?, ?, ?, 'pending', ?, ?)",
    )
    .bind(request_id)
    .bind(to)
    .bind(email_id)
    .bind(now)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Rows per multi-row INSERT (SQLite allows 32 766 bound values; a job row
/// has 13, a request row 12).
const ROWS_PER_INSERT: usize = 500;

/// Records accepted emails: a handful of multi-row statements for the whole
/// group commit, not a few per email (each statement is a round trip to
/// SQLite's thread). Results are in the order of `requests`; of two emails
/// with the same (account, emailId), the first is queued, the second is a
/// duplicate.
async fn accept_all(
    conn: &mut SqliteConnection,
    requests: &[&NewRequest],
) -> Result<Vec<Accepted>, StoreError> {
    let now = now_millis();
    let mut results: Vec<Option<Accepted>> = vec![None; requests.len()];
    // Acks to queue: (position, code).
    let mut acks: Vec<(usize, AckCode)> = Vec::new();

    // 1. The requests themselves; the unique key de-duplicates.
    let with_id: Vec<usize> = (0..requests.len())
        .filter(|&i| {
            let has_id = requests[i].email_id.is_some();
            if !has_id {
                results[i] = Some(Accepted::NoEmailId);
                acks.push((i, AckCode::MissingEmailId));
            }
            has_id
        })
        .collect();
    // (account, emailId) → id of the rows actually inserted.
    let mut new_ids: HashMap<(String, String), i64> = HashMap::new();
    for chunk in with_id.chunks(ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::new(
            "INSERT INTO requests (account, email_id, received_at, message_id, mail_from,
                                   email_ack, email_not, error_code, pending_jobs, completed_at,
                                   sender_id, tracker) ",
        );
        insert.push_values(chunk, |mut row, &i| {
            let r = requests[i];
            let queued = queued_count(r);
            let error_code = match &r.body {
                RequestBody::Refused(code) => Some(i64::from(code.0)),
                RequestBody::Messages(_) => None,
            };
            row.push_bind(r.account.as_str())
                .push_bind(r.email_id.as_deref())
                .push_bind(now)
                .push_bind(r.message_id.as_deref())
                .push_bind(r.mail_from.as_str())
                .push_bind(r.email_ack.as_deref())
                .push_bind(r.email_not.as_deref())
                .push_bind(error_code)
                .push_bind(queued as i64)
                .push_bind((queued == 0).then_some(now))
                .push_bind(r.sender_id.as_deref())
                .push_bind(r.tracker.as_deref());
        });
        insert.push(" ON CONFLICT (account, email_id) DO NOTHING RETURNING id, account, email_id");
        for row in insert.build().fetch_all(&mut *conn).await? {
            new_ids.insert((row.try_get(1)?, row.try_get(2)?), row.try_get(0)?);
        }
    }

    // 2. Which are new (the first of each key) and which are duplicates.
    let mut new_requests: Vec<(usize, i64)> = Vec::new();
    for &i in &with_id {
        let r = requests[i];
        let key = (r.account.clone(), r.email_id.clone().unwrap_or_default());
        match new_ids.remove(&key) {
            Some(request_id) => {
                new_requests.push((i, request_id));
                results[i] = Some(Accepted::Queued {
                    request_id,
                    jobs: queued_count(r),
                });
                acks.push((i, AckCode::Processed));
            }
            None => {
                results[i] = Some(Accepted::Duplicate);
                acks.push((i, AckCode::Duplicate));
            }
        }
    }

    // 3. Their jobs, one row per recipient.
    let rows: Vec<(i64, &NewRequest, usize, &NewMessage)> = new_requests
        .iter()
        .flat_map(|&(i, request_id)| {
            let r = requests[i];
            let messages = match &r.body {
                RequestBody::Messages(m) => &m[..],
                RequestBody::Refused(_) => &[][..],
            };
            messages
                .iter()
                .enumerate()
                .map(move |(position, m)| (request_id, r, position, m))
        })
        .collect();
    for chunk in rows.chunks(ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::new(
            "INSERT INTO jobs (request_id, seq, tel, number, text, account, received_at, status,
                               code, detail, next_attempt_at, updated_at, same_as) ",
        );
        insert.push_values(chunk, |mut row, &(request_id, r, position, m)| {
            let (number, status, code, detail) = match (&m.number, m.duplicate_of) {
                (Ok(_), Some(_)) => (None, "duplicate", None, None),
                (Ok(n), None) => (Some(n.as_str()), "queued", None, None),
                (Err(c), _) => (
                    None,
                    "failed",
                    Some(i64::from(c.0)),
                    Some(m.detail.as_deref().unwrap_or(c.message())),
                ),
            };
            row.push_bind(request_id)
                .push_bind(position as i64 + 1)
                .push_bind(m.tel.as_str())
                .push_bind(number)
                .push_bind(m.text.as_str())
                .push_bind(r.account.as_str())
                .push_bind(now)
                .push_bind(status)
                .push_bind(code)
                .push_bind(detail)
                .push_bind(now)
                .push_bind(now)
                .push_bind(m.duplicate_of.map(|first| first as i64 + 1));
        });
        insert.build().execute(&mut *conn).await?;
    }

    // 4. etatAck for every email that asked for one.
    let acks: Vec<(usize, AckCode)> = acks
        .into_iter()
        .filter(|&(i, _)| requests[i].email_ack.is_some())
        .collect();
    for chunk in acks.chunks(ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::new(
            "INSERT INTO replies (kind, recipient, email_id, ack_code, status, next_attempt_at,
                                  created_at) ",
        );
        insert.push_values(chunk, |mut row, &(i, code)| {
            let r = requests[i];
            row.push_bind("ack")
                .push_bind(r.email_ack.as_deref())
                .push_bind(r.email_id.as_deref())
                .push_bind(i64::from(code.number()))
                .push_bind("pending")
                .push_bind(now)
                .push_bind(now);
        });
        insert.build().execute(&mut *conn).await?;
    }

    // 5. etatNot at once for a request with nothing to send.
    for &(i, request_id) in &new_requests {
        let r = requests[i];
        if queued_count(r) == 0
            && let (Some(to), Some(email_id)) = (&r.email_not, &r.email_id)
        {
            insert_not(conn, request_id, to, email_id, now).await?;
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Accepted::Duplicate))
        .collect())
}

/// SMS a request queues: valid numbers, repeats excepted.
fn queued_count(r: &NewRequest) -> usize {
    match &r.body {
        RequestBody::Messages(m) => m
            .iter()
            .filter(|m| m.number.is_ok() && m.duplicate_of.is_none())
            .count(),
        RequestBody::Refused(_) => 0,
    }
}

fn job_from_row(row: &SqliteRow) -> Result<Job, sqlx::Error> {
    Ok(Job {
        id: row.try_get("id")?,
        request_id: row.try_get("request_id")?,
        account: row.try_get("account")?,
        number: row.try_get("number")?,
        text: row.try_get("text")?,
        sender_id: row.try_get("sender_id")?,
        tracker: row.try_get("tracker")?,
        email_id: row.try_get("email_id")?,
        received_at: row.try_get("received_at")?,
        attempts: row.try_get::<i64, _>("attempts")? as u32,
        provider_index: row.try_get::<i64, _>("provider_index")? as u32,
        provider_attempts: row.try_get::<i64, _>("provider_attempts")? as u32,
        age_from: row.try_get("age_from")?,
        // Only claims read the list; other queries have no such column.
        opted_out: match row.try_get::<bool, _>("opted_out") {
            Ok(v) => v,
            Err(sqlx::Error::ColumnNotFound(_)) => false,
            Err(e) => return Err(e),
        },
    })
}

/// A job's columns, with its request's values (stored once per request)
/// read through the request's primary key. A macro so that `concat!` can
/// build whole statements from it at compile time.
macro_rules! job_columns {
    () => {
        "id, request_id, account, number, text, received_at, attempts, provider_index,
         provider_attempts, MAX(received_at, COALESCE(held_until, received_at)) AS age_from,
         (SELECT r.sender_id FROM requests r WHERE r.id = jobs.request_id) AS sender_id,
         (SELECT r.tracker FROM requests r WHERE r.id = jobs.request_id) AS tracker,
         (SELECT r.email_id FROM requests r WHERE r.id = jobs.request_id) AS email_id"
    };
}

async fn claim_jobs(
    conn: &mut SqliteConnection,
    now: Millis,
    limit: usize,
) -> Result<Vec<Job>, StoreError> {
    let rows = sqlx::query(concat!(
        "UPDATE jobs SET status = 'sending', attempts = attempts + 1,
                provider_attempts = provider_attempts + 1, updated_at = ?1
         WHERE id IN (SELECT id FROM jobs WHERE status = 'queued' AND next_attempt_at <= ?1
                      ORDER BY next_attempt_at, id LIMIT ?2)
         RETURNING ",
        job_columns!(),
        ", EXISTS (SELECT 1 FROM optouts o
                   WHERE o.number = jobs.number AND o.scope IN ('', jobs.account)) AS opted_out"
    ))
    .bind(now)
    .bind(limit as i64)
    .fetch_all(&mut *conn)
    .await?;
    let mut jobs = rows
        .iter()
        .map(job_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    jobs.sort_by_key(|j| j.id);
    Ok(jobs)
}

/// Records a batch of outcomes in a few set-based statements (the outcomes
/// travel as one JSON parameter), whatever the batch size.
///
/// The `status = 'sending'` guard makes a repeated outcome harmless: a job is
/// finished once, so its request's counter drops once and etatNot is queued
/// once.
async fn record_outcomes(
    conn: &mut SqliteConnection,
    outcomes: &[JobOutcome],
) -> Result<(), StoreError> {
    let now = now_millis();
    let mut finals = Vec::new();
    let mut retries = Vec::new();
    for outcome in outcomes {
        match outcome {
            JobOutcome::Sent {
                job_id,
                provider,
                provider_ref,
            } => finals.push(serde_json::json!([
                job_id,
                "sent",
                0,
                null,
                provider,
                provider_ref
            ])),
            JobOutcome::Failed {
                job_id,
                code,
                detail,
                provider,
            } => finals.push(serde_json::json!([
                job_id, "failed", code.0, detail, provider, null
            ])),
            JobOutcome::Retry {
                job_id,
                at,
                provider_index,
                detail,
                untried,
                held,
            } => retries.push(serde_json::json!([
                job_id,
                at,
                provider_index,
                detail,
                i64::from(*untried),
                i64::from(*held)
            ])),
        }
    }
    // Debits of sends that did not end in "sent" go back to their account,
    // in this same transaction.
    let unsent: Vec<i64> = outcomes
        .iter()
        .filter_map(|o| match o {
            JobOutcome::Sent { .. } => None,
            JobOutcome::Failed { job_id, .. } | JobOutcome::Retry { job_id, .. } => Some(*job_id),
        })
        .collect();
    if !unsent.is_empty() {
        let ids = serde_json::to_string(&unsent).unwrap_or_else(|_| "[]".into());
        sqlx::query(
            "INSERT INTO credits (account, balance, updated_at)
             SELECT account, SUM(debited), ?2 FROM jobs
             WHERE id IN (SELECT value FROM json_each(?1)) AND status = 'sending' AND debited > 0
             GROUP BY account
             ON CONFLICT (account) DO UPDATE SET balance = balance + excluded.balance,
                                                 updated_at = excluded.updated_at",
        )
        .bind(&ids)
        .bind(now)
        .execute(&mut *conn)
        .await?;
        sqlx::query(
            "UPDATE jobs SET debited = 0
             WHERE id IN (SELECT value FROM json_each(?1)) AND status = 'sending' AND debited > 0",
        )
        .bind(&ids)
        .execute(&mut *conn)
        .await?;
    }
    if !retries.is_empty() {
        sqlx::query(
            "UPDATE jobs SET status = 'queued', next_attempt_at = o.value ->> 1,
                    held_until = CASE WHEN o.value ->> 5 THEN o.value ->> 1 ELSE held_until END,
                    attempts = MAX(attempts - (o.value ->> 4), 0),
                    provider_attempts = CASE WHEN provider_index = o.value ->> 2
                                             THEN MAX(provider_attempts - (o.value ->> 4), 0)
                                             ELSE 0 END,
                    provider_index = o.value ->> 2, detail = o.value ->> 3, updated_at = ?2
             FROM json_each(?1) AS o
             WHERE jobs.id = o.value ->> 0 AND jobs.status = 'sending'",
        )
        .bind(serde_json::Value::Array(retries).to_string())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    }
    if finals.is_empty() {
        return Ok(());
    }
    let final_count = finals.len();
    let finished = sqlx::query(
        "UPDATE jobs SET status = o.value ->> 1, code = o.value ->> 2, detail = o.value ->> 3,
                provider = o.value ->> 4, provider_ref = o.value ->> 5, updated_at = ?2
         FROM json_each(?1) AS o
         WHERE jobs.id = o.value ->> 0 AND jobs.status = 'sending'
         RETURNING jobs.request_id",
    )
    .bind(serde_json::Value::Array(finals).to_string())
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    let mut per_request: std::collections::BTreeMap<i64, i64> = Default::default();
    for row in &finished {
        *per_request.entry(row.try_get(0)?).or_default() += 1;
    }
    if finished.len() < final_count {
        tracing::warn!(
            ignored = final_count - finished.len(),
            "outcomes for jobs that were not being sent: ignored"
        );
    }
    let counts: Vec<[i64; 2]> = per_request.into_iter().map(|(id, n)| [id, n]).collect();
    let completed = sqlx::query(
        "UPDATE requests SET pending_jobs = pending_jobs - (d.value ->> 1),
                completed_at = CASE WHEN pending_jobs = d.value ->> 1 THEN ?2 ELSE NULL END
         FROM json_each(?1) AS d
         WHERE requests.id = d.value ->> 0
         RETURNING requests.id, requests.pending_jobs, requests.email_not, requests.email_id",
    )
    .bind(serde_json::to_string(&counts).unwrap_or_default())
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    for row in completed {
        let pending: i64 = row.try_get(1)?;
        let email_not: Option<String> = row.try_get(2)?;
        if pending == 0
            && let Some(to) = email_not
        {
            let email_id: String = row.try_get(3)?;
            insert_not(conn, row.try_get(0)?, &to, &email_id, now).await?;
        }
    }
    Ok(())
}

async fn claim_replies(
    conn: &mut SqliteConnection,
    now: Millis,
    limit: usize,
) -> Result<Vec<ClaimedReply>, StoreError> {
    let rows = sqlx::query(
        "UPDATE replies SET status = 'sending', attempts = attempts + 1
         WHERE id IN (SELECT id FROM replies WHERE status = 'pending' AND next_attempt_at <= ?1
                      ORDER BY next_attempt_at, id LIMIT ?2)
         RETURNING id, kind, request_id, recipient, email_id, ack_code, attempts, created_at",
    )
    .bind(now)
    .bind(limit as i64)
    .fetch_all(&mut *conn)
    .await?;
    let mut replies = Vec::with_capacity(rows.len());
    for row in rows {
        let kind: String = row.try_get("kind")?;
        let email_id: Option<String> = row.try_get("email_id")?;
        let (content, request_id) = if kind == "ack" {
            let code: i64 = row.try_get("ack_code")?;
            let code = AckCode::from_number(code as u16).unwrap_or(AckCode::Processed);
            (ReplyContent::Ack { email_id, code }, None)
        } else {
            let etats = Vec::new();
            let request_id: i64 = row.try_get("request_id")?;
            (ReplyContent::Not { email_id, etats }, Some(request_id))
        };
        let id: i64 = row.try_get("id")?;
        let created_at: i64 = row.try_get("created_at")?;
        replies.push(ClaimedReply {
            reply: PendingReply {
                id,
                key: format!("{created_at}.{id}"),
                to: row.try_get("recipient")?,
                attempts: row.try_get::<i64, _>("attempts")? as u32,
                content,
            },
            request_id,
        });
    }
    replies.sort_by_key(|r| r.reply.id);
    Ok(replies)
}

/// The etatNot lines of a finished request: one per job in the sender's
/// order (a repeated number with its first occurrence's code), or the
/// request-level code with an empty `<tel>`.
async fn etats(readers: &SqlitePool, request_id: i64) -> Result<Vec<(Code, String)>, StoreError> {
    let error: Option<i64> = sqlx::query("SELECT error_code FROM requests WHERE id = ?")
        .bind(request_id)
        .fetch_one(readers)
        .await?
        .try_get(0)?;
    if let Some(code) = error {
        return Ok(vec![(Code(code as u16), String::new())]);
    }
    let rows = sqlx::query(
        "SELECT COALESCE(j.code, first.code), j.tel FROM jobs j
         LEFT JOIN jobs first ON first.request_id = j.request_id AND first.seq = j.same_as
         WHERE j.request_id = ? ORDER BY j.seq",
    )
    .bind(request_id)
    .fetch_all(readers)
    .await?;
    rows.iter()
        .map(|row| {
            let code: Option<i64> = row.try_get(0)?;
            Ok((
                Code(code.unwrap_or(i64::from(Code::INTERNAL.0)) as u16),
                row.try_get(1)?,
            ))
        })
        .collect()
}

/// Records reply outcomes in one statement (they travel as one JSON
/// parameter: id, status, next attempt, error).
async fn record_replies(
    conn: &mut SqliteConnection,
    outcomes: &[(i64, ReplyOutcome)],
) -> Result<(), StoreError> {
    let rows: Vec<serde_json::Value> = outcomes
        .iter()
        .map(|(id, outcome)| match outcome {
            ReplyOutcome::Sent => serde_json::json!([id, "sent", null, null]),
            ReplyOutcome::Retry { at, error } => serde_json::json!([id, "pending", at, error]),
            ReplyOutcome::Failed { error } => serde_json::json!([id, "failed", null, error]),
        })
        .collect();
    sqlx::query(
        "UPDATE replies SET status = o.value ->> 1,
                next_attempt_at = COALESCE(o.value ->> 2, next_attempt_at),
                last_error = o.value ->> 3,
                sent_at = CASE WHEN o.value ->> 1 = 'sent' THEN ?2 ELSE sent_at END
         FROM json_each(?1) AS o
         WHERE replies.id = o.value ->> 0",
    )
    .bind(serde_json::Value::Array(rows).to_string())
    .bind(now_millis())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Requests deleted by one purge operation at most, so that other writes
/// wait little behind it.
pub const PURGE_CHUNK: u64 = 1_000;

/// Deletes up to [`PURGE_CHUNK`] requests finished before `before` whose
/// replies are all settled (their jobs and replies go with them), and
/// settled etatAck-only replies.
async fn purge(conn: &mut SqliteConnection, before: Millis) -> Result<u64, StoreError> {
    let requests = sqlx::query(
        "DELETE FROM requests WHERE id IN (
             SELECT id FROM requests WHERE completed_at IS NOT NULL AND completed_at < ?1
               AND NOT EXISTS (SELECT 1 FROM replies
                               WHERE replies.request_id = requests.id
                                 AND replies.status IN ('pending', 'sending'))
             LIMIT ?2)",
    )
    .bind(before)
    .bind(PURGE_CHUNK as i64)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    sqlx::query(
        "DELETE FROM replies WHERE id IN (
             SELECT id FROM replies WHERE request_id IS NULL AND status IN ('sent', 'failed')
               AND created_at < ?1 LIMIT ?2)",
    )
    .bind(before)
    .bind(PURGE_CHUNK as i64 * 10)
    .execute(&mut *conn)
    .await?;
    Ok(requests)
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
        match self.submit(OpKind::Accept(request)).await? {
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
            if let (Some(request_id), ReplyContent::Not { etats: lines, .. }) =
                (request_id, &mut reply.content)
            {
                match etats(&self.readers, request_id).await {
                    Ok(read) => *lines = read,
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
    use super::*;
    use crate::store::NewMessage;

    fn request(account: &str, email_id: Option<&str>, numbers: &[&str]) -> NewRequest {
        NewRequest {
            account: account.into(),
            email_id: email_id.map(Into::into),
            message_id: None,
            mail_from: "a@b.c".into(),
            sender_id: None,
            tracker: None,
            email_ack: Some("ack@b.c".into()),
            email_not: Some("not@b.c".into()),
            body: RequestBody::Messages(
                numbers
                    .iter()
                    .map(|n| NewMessage {
                        tel: n.to_string(),
                        number: Ok(n.to_string()),
                        text: "t".into(),
                        duplicate_of: None,
                        detail: None,
                    })
                    .collect(),
            ),
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
        accept_all(&mut conn, &[&earlier]).await.unwrap();

        let first = request("acme", Some("x"), &["+33600000001", "+33600000002"]);
        let again = request("acme", Some("x"), &["+33600000003"]);
        let no_id = request("acme", None, &["+33600000004"]);
        let other_account = request("other", Some("x"), &["+33600000005"]);
        let seen = request("acme", Some("seen"), &["+33600000006"]);
        let results = accept_all(&mut conn, &[&first, &again, &no_id, &other_account, &seen])
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
