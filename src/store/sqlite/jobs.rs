//! SMS jobs: claims and outcomes, in set-based statements.

use super::accept::insert_not;
use super::alerts::queue_failure_notice;
use crate::store::{Job, JobOutcome, Millis, StoreError, now_millis};
use sqlx::Row;
use sqlx::sqlite::{SqliteConnection, SqliteRow};

pub(super) fn job_from_row(row: &SqliteRow) -> Result<Job, sqlx::Error> {
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

pub(super) async fn claim_jobs(
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
pub(super) async fn record_outcomes(
    conn: &mut SqliteConnection,
    outcomes: &[JobOutcome],
) -> Result<(), StoreError> {
    let now = now_millis();
    let (finals, retries) = as_json(outcomes);
    // Debits of sends that did not end in "sent" go back to their account,
    // in this same transaction.
    let unsent: Vec<i64> = outcomes
        .iter()
        .filter_map(|o| match o {
            JobOutcome::Sent { .. } => None,
            JobOutcome::Failed { job_id, .. } | JobOutcome::Retry { job_id, .. } => Some(*job_id),
        })
        .collect();
    refund(conn, &unsent, now).await?;
    requeue(conn, retries, now).await?;
    if finals.is_empty() {
        return Ok(());
    }
    let per_request = finish(conn, finals, now).await?;
    complete_requests(conn, per_request, now).await
}

/// The final outcomes and the retries, as the JSON rows the statements
/// read: `[id, status, code, detail, provider, provider_ref]` and
/// `[id, at, provider_index, detail, gives_attempt_back, moves_age]`.
fn as_json(outcomes: &[JobOutcome]) -> (Vec<serde_json::Value>, Vec<serde_json::Value>) {
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
                kind,
            } => retries.push(serde_json::json!([
                job_id,
                at,
                provider_index,
                detail,
                i64::from(kind.gives_attempt_back()),
                i64::from(kind.moves_age())
            ])),
        }
    }
    (finals, retries)
}

/// Gives the debits of `unsent` jobs back to their accounts.
async fn refund(
    conn: &mut SqliteConnection,
    unsent: &[i64],
    now: Millis,
) -> Result<(), StoreError> {
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
    Ok(())
}

/// Puts retried jobs back in the queue for their time.
async fn requeue(
    conn: &mut SqliteConnection,
    retries: Vec<serde_json::Value>,
    now: Millis,
) -> Result<(), StoreError> {
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
    Ok(())
}

/// Records final outcomes of jobs being sent; returns, per request, how
/// many of its jobs ended.
async fn finish(
    conn: &mut SqliteConnection,
    finals: Vec<serde_json::Value>,
    now: Millis,
) -> Result<std::collections::BTreeMap<i64, i64>, StoreError> {
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
    Ok(per_request)
}

/// Lowers each request's count of pending jobs; a request whose last job
/// ended gets its etatNot queued, or, for an alert, its failure notice.
async fn complete_requests(
    conn: &mut SqliteConnection,
    per_request: std::collections::BTreeMap<i64, i64>,
    now: Millis,
) -> Result<(), StoreError> {
    let counts: Vec<[i64; 2]> = per_request.into_iter().map(|(id, n)| [id, n]).collect();
    let completed = sqlx::query(
        "UPDATE requests SET pending_jobs = pending_jobs - (d.value ->> 1),
                completed_at = CASE WHEN pending_jobs = d.value ->> 1 THEN ?2 ELSE NULL END
         FROM json_each(?1) AS d
         WHERE requests.id = d.value ->> 0
         RETURNING requests.id, requests.pending_jobs, requests.email_not, requests.email_id,
                   requests.return_path, requests.failure_notice",
    )
    .bind(serde_json::to_string(&counts).unwrap_or_default())
    .bind(now)
    .fetch_all(&mut *conn)
    .await?;
    for row in completed {
        let pending: i64 = row.try_get(1)?;
        let email_not: Option<String> = row.try_get(2)?;
        let return_path: Option<String> = row.try_get(4)?;
        if pending != 0 {
            continue;
        }
        if let Some(to) = email_not {
            let email_id: String = row.try_get(3)?;
            insert_not(conn, row.try_get(0)?, &to, &email_id, now).await?;
        }
        if let Some(to) = return_path {
            let notice: bool = row.try_get(5)?;
            queue_failure_notice(conn, row.try_get(0)?, &to, notice, now).await?;
        }
    }
    Ok(())
}
