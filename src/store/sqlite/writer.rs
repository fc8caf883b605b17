//! The writer task: one connection, group commits, and what happens when
//! the database fails (issue 8).

use super::accept::accept_all;
use super::credits::{add_credits, reserve_credits};
use super::jobs::{claim_jobs, record_outcomes};
use super::purge::purge;
use super::replies::{claim_replies, record_replies};
use super::{Op, OpKind, OpResult, connect};
use crate::clock::Clock;
use crate::store::{Accepted, Millis, NewRequest, StoreError, now_millis};
use sqlx::Connection;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Runs queued operations in group-committed transactions until every
/// sender is gone.
pub(super) async fn writer_task(mut writer: Writer, mut rx: mpsc::Receiver<Op>, max_batch: usize) {
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
pub(super) struct Writer {
    /// The writing connection; `None` after one was dropped as unusable,
    /// until a new one is opened.
    pub(super) conn: Option<SqliteConnection>,
    /// How to open a new connection (the same file and pragmas).
    pub(super) options: SqliteConnectOptions,
    /// How long opening may retry while the database is busy.
    pub(super) patience: Duration,
    /// Limits and injected faults, shared with [`SqliteStore`].
    pub(super) faults: Arc<Faults>,
}

/// Knobs the fault tests turn on a running store: they make the database
/// full or a `COMMIT` fail at a chosen moment, the way a full disk does.
#[derive(Debug, Default)]
pub(super) struct Faults {
    /// `PRAGMA max_page_count` of the writing connection (0: SQLite's
    /// default); re-applied to every new connection.
    pub(super) max_page_count: AtomicU64,
    /// How many of the next commits the commit hook turns into rollbacks.
    pub(super) failing_commits: AtomicU32,
    /// The time accepts are stamped with, which the alert windows
    /// (Message-ID, same text, per hour) count in: the system clock, or a
    /// clock a test moves.
    pub(super) clock: std::sync::Mutex<Clock>,
}

impl Faults {
    /// The accept time, in milliseconds.
    pub(super) fn now(&self) -> Millis {
        self.clock
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .now()
            .as_millisecond()
    }
}

/// Why a group of operations failed, and so how far the failure reaches.
pub(super) enum BatchError {
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
        let now = self.faults.now();
        let conn = self.connection().await.map_err(BatchError::Database)?;
        if let Err(error) = sqlx::raw_sql("BEGIN IMMEDIATE").execute(&mut *conn).await {
            self.recover().await;
            return Err(BatchError::Database(error.into()));
        }
        let result = match run_ops(conn, ops, now).await {
            Ok(results) => match sqlx::raw_sql("COMMIT").execute(&mut *conn).await {
                Ok(_) => return Ok(results),
                Err(error) => BatchError::Database(error.into()),
            },
            Err(error) if error.affects_everything() => BatchError::Database(error),
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
    pub(super) async fn install(
        self: &Arc<Self>,
        conn: &mut SqliteConnection,
    ) -> Result<(), StoreError> {
        set_max_page_count(conn, self.max_page_count.load(Ordering::Acquire)).await?;
        let faults = self.clone();
        conn.lock_handle().await?.set_commit_hook(move || {
            faults
                .failing_commits
                .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| n.checked_sub(1))
                .is_err()
        });
        Ok(())
    }
}

/// Sets `PRAGMA max_page_count` (0: no cap); returns the cap SQLite
/// applied, never below the database's size.
async fn set_max_page_count(conn: &mut SqliteConnection, pages: u64) -> Result<u64, StoreError> {
    let pages = if pages == 0 { UNLIMITED_PAGES } else { pages };
    let applied: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "PRAGMA max_page_count = {pages}"
    )))
    .fetch_one(&mut *conn)
    .await?;
    Ok(applied as u64)
}

/// The largest `max_page_count` SQLite takes: no cap.
const UNLIMITED_PAGES: u64 = 0xffff_fffe;

/// Runs the operations of one transaction (already begun on `conn`).
async fn run_ops(
    conn: &mut SqliteConnection,
    ops: &[Op],
    now: Millis,
) -> Result<Vec<OpResult>, StoreError> {
    let mut results: Vec<Option<OpResult>> = ops.iter().map(|_| None).collect();
    // Every accepted email of the group in a few statements.
    let (positions, requests): (Vec<usize>, Vec<&NewRequest>) = ops
        .iter()
        .enumerate()
        .filter_map(|(i, op)| match &op.kind {
            OpKind::Accept(r) => Some((i, &**r)),
            _ => None,
        })
        .unzip();
    if !requests.is_empty() {
        for (i, accepted) in positions
            .into_iter()
            .zip(accept_all(&mut *conn, &requests, now).await?)
        {
            results[i] = Some(OpResult::Accepted(accepted));
        }
    }
    for (op, result) in ops.iter().zip(results.iter_mut()) {
        if result.is_none() {
            *result = Some(apply(&mut *conn, &op.kind, now).await?);
        }
    }
    Ok(results.into_iter().flatten().collect())
}

pub(super) async fn apply(
    conn: &mut SqliteConnection,
    kind: &OpKind,
    now: Millis,
) -> Result<OpResult, StoreError> {
    Ok(match kind {
        OpKind::Accept(request) => OpResult::Accepted(
            accept_all(conn, &[&**request], now)
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
        OpKind::MaxPageCount(pages) => OpResult::Count(set_max_page_count(conn, *pages).await?),
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
