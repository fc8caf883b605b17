//! Reply emails: claims, their etatNot lines, outcomes.

use super::ClaimedReply;
use crate::codes::{AckCode, Code};
use crate::store::{
    DeliveryReport, Etat, FailedSms, Millis, PendingReply, ReplyContent, ReplyOutcome, StoreError,
    now_millis,
};
use sqlx::sqlite::SqliteConnection;
use sqlx::{Row, SqlitePool};

pub(super) async fn claim_replies(
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
        } else if kind == "dsn" {
            // Filled in from the request by `delivery_report`.
            let report = DeliveryReport {
                message_id: None,
                received_at: 0,
                total: 0,
                failures: Vec::new(),
            };
            let request_id: i64 = row.try_get("request_id")?;
            (ReplyContent::Dsn(report), Some(request_id))
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
pub(super) async fn etats(readers: &SqlitePool, request_id: i64) -> Result<Vec<Etat>, StoreError> {
    let error: Option<i64> = sqlx::query("SELECT error_code FROM requests WHERE id = ?")
        .bind(request_id)
        .fetch_one(readers)
        .await?
        .try_get(0)?;
    if let Some(code) = error {
        return Ok(vec![Etat::new(Code(code as u16), String::new())]);
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
            Ok(Etat::new(
                Code(code.unwrap_or(i64::from(Code::INTERNAL.0)) as u16),
                row.try_get::<String, _>(1)?,
            ))
        })
        .collect()
}

/// What the failure notice of alert request `request_id` reports: the
/// alert's Message-ID and arrival, how many SMS it was to make, and each
/// that failed (in the alert's order) with its reason.
pub(super) async fn delivery_report(
    readers: &SqlitePool,
    request_id: i64,
) -> Result<DeliveryReport, StoreError> {
    let request = sqlx::query("SELECT message_id, received_at FROM requests WHERE id = ?")
        .bind(request_id)
        .fetch_one(readers)
        .await?;
    let rows = sqlx::query(
        "SELECT tel, number, status, code, detail FROM jobs
         WHERE request_id = ? AND status IN ('sent', 'failed') ORDER BY seq",
    )
    .bind(request_id)
    .fetch_all(readers)
    .await?;
    let mut failures = Vec::new();
    for row in &rows {
        if row.try_get::<String, _>(2)? != "failed" {
            continue;
        }
        let code = Code(
            row.try_get::<Option<i64>, _>(3)?
                .unwrap_or(i64::from(Code::INTERNAL.0)) as u16,
        );
        let detail: Option<String> = row.try_get(4)?;
        failures.push(FailedSms {
            tel: row.try_get(0)?,
            number: row.try_get(1)?,
            code,
            reason: detail
                .filter(|d| !d.trim().is_empty())
                .unwrap_or_else(|| code.message().to_owned()),
        });
    }
    let message_id: Option<String> = request.try_get(0)?;
    Ok(DeliveryReport {
        message_id: message_id.map(|m| {
            m.trim()
                .trim_start_matches('<')
                .trim_end_matches('>')
                .to_owned()
        }),
        received_at: request.try_get(1)?,
        total: rows.len(),
        failures,
    })
}

/// Records reply outcomes in one statement (they travel as one JSON
/// parameter: id, status, next attempt, error).
pub(super) async fn record_replies(
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
