//! Accepting requests: a handful of multi-row statements per group commit.

use super::alerts::accept_alert;
use crate::codes::AckCode;
use crate::store::{Accepted, Millis, NewMessage, NewRequest, RequestBody, StoreError};
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Row};
use std::collections::HashMap;

pub(super) async fn insert_not(
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
pub(super) const ROWS_PER_INSERT: usize = 500;

/// Records accepted emails: a handful of multi-row statements for the whole
/// group commit, not a few per email (each statement is a round trip to
/// SQLite's thread). Results are in the order of `requests`; of two emails
/// with the same (account, emailId), the first is queued, the second is a
/// duplicate. Alerts (issue 10) come after, one at a time in their order,
/// each seeing what the ones before it stored (their Message-IDs, the SMS
/// they queued, what they held back).
pub(super) async fn accept_all(
    conn: &mut SqliteConnection,
    requests: &[&NewRequest],
    now: Millis,
) -> Result<Vec<Accepted>, StoreError> {
    let mut results: Vec<Option<Accepted>> = vec![None; requests.len()];
    // Acks to queue: (position, code).
    let mut acks: Vec<(usize, AckCode)> = Vec::new();
    let with_id: Vec<usize> = (0..requests.len())
        .filter(|&i| requests[i].alert.is_none())
        .filter(|&i| {
            let has_id = requests[i].email_id.is_some();
            if !has_id {
                results[i] = Some(Accepted::NoEmailId);
                acks.push((i, AckCode::MissingEmailId));
            }
            has_id
        })
        .collect();
    let mut new_ids = insert_requests(conn, requests, &with_id, now).await?;
    // Which are new (the first of each key) and which are duplicates.
    let mut new_requests: Vec<(usize, i64)> = Vec::new();
    for &i in &with_id {
        let r = requests[i];
        let key = (r.account.clone(), r.email_id.clone().unwrap_or_default());
        let (result, ack) = match new_ids.remove(&key) {
            Some(request_id) => {
                new_requests.push((i, request_id));
                let jobs = queued_count(r);
                (Accepted::Queued { request_id, jobs }, AckCode::Processed)
            }
            None => (Accepted::Duplicate, AckCode::Duplicate),
        };
        results[i] = Some(result);
        acks.push((i, ack));
    }
    insert_jobs(conn, requests, &new_requests, now).await?;
    insert_acks(conn, requests, &acks, now).await?;
    // etatNot at once for a request with nothing to send.
    for &(i, request_id) in &new_requests {
        let r = requests[i];
        if queued_count(r) == 0
            && let (Some(to), Some(email_id)) = (&r.email_not, &r.email_id)
        {
            insert_not(conn, request_id, to, email_id, now).await?;
        }
    }
    for (i, r) in requests.iter().enumerate() {
        if let Some(alert) = &r.alert {
            results[i] = Some(accept_alert(conn, r, alert, now).await?);
        }
    }
    Ok(results
        .into_iter()
        .map(|r| r.unwrap_or(Accepted::Duplicate))
        .collect())
}

/// Inserts the requests at positions `with_id`; the unique key
/// de-duplicates. Returns (account, emailId) → id of the rows inserted.
async fn insert_requests(
    conn: &mut SqliteConnection,
    requests: &[&NewRequest],
    with_id: &[usize],
    now: Millis,
) -> Result<HashMap<(String, String), i64>, StoreError> {
    let mut new_ids = HashMap::new();
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
    Ok(new_ids)
}

/// Inserts the jobs of the new requests, one row per recipient.
async fn insert_jobs(
    conn: &mut SqliteConnection,
    requests: &[&NewRequest],
    new_requests: &[(usize, i64)],
    now: Millis,
) -> Result<(), StoreError> {
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
    Ok(())
}

/// Queues an etatAck for every email that asked for one.
async fn insert_acks(
    conn: &mut SqliteConnection,
    requests: &[&NewRequest],
    acks: &[(usize, AckCode)],
    now: Millis,
) -> Result<(), StoreError> {
    let acks: Vec<(usize, AckCode)> = acks
        .iter()
        .copied()
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
    Ok(())
}

/// SMS a request queues: valid numbers, repeats excepted.
pub(super) fn queued_count(r: &NewRequest) -> usize {
    match &r.body {
        RequestBody::Messages(m) => m
            .iter()
            .filter(|m| m.number.is_ok() && m.duplicate_of.is_none())
            .count(),
        RequestBody::Refused(_) => 0,
    }
}
