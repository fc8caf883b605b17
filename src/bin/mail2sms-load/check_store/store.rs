//! What the store holds, read from its SQLite file.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context, Result};

/// The store's figures a check needs.
pub(crate) struct StoreFigures {
    /// Every stored request's emailId: a `250` whose emailId is not here was lost.
    pub(crate) stored: HashSet<String>,
    /// Jobs per status, for the summary.
    pub(crate) jobs: Vec<(String, i64)>,
    /// The last job id: job ids must never be reused.
    pub(crate) max_job: Option<i64>,
}

/// Reads the store `db`, opened read-only (the daemon stopped).
pub(crate) async fn read_store(db: &Path) -> Result<StoreFigures> {
    use sqlx::Connection;

    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("open the store {} read-only", db.display()))?;
    let stored: HashSet<String> =
        sqlx::query_scalar::<_, String>("SELECT email_id FROM requests WHERE email_id IS NOT NULL")
            .fetch_all(&mut conn)
            .await
            .with_context(|| format!("{}: read requests.email_id", db.display()))?
            .into_iter()
            .collect();
    let jobs: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM jobs GROUP BY status ORDER BY status")
            .fetch_all(&mut conn)
            .await
            .with_context(|| format!("{}: count jobs by status", db.display()))?;
    let max_job: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM jobs")
        .fetch_one(&mut conn)
        .await
        .with_context(|| format!("{}: read the last job id", db.display()))?;
    let _ = conn.close().await;
    Ok(StoreFigures {
        stored,
        jobs,
        max_job,
    })
}
