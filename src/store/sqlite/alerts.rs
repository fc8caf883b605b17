//! Alert requests (issue 10), in the accept transaction: Message-ID
//! de-duplication, storm control (the same text to a number, the per-hour
//! cap, the count of what was held back carried by the next SMS that goes)
//! and the failure notice once every SMS has its outcome.

use crate::codes::Code;
use crate::store::{Accepted, AlertInfo, Millis, NewMessage, NewRequest, RequestBody, StoreError};
use sqlx::sqlite::SqliteConnection;
use sqlx::{QueryBuilder, Row};
use std::collections::{HashMap, HashSet};

/// The rolling window of `max_per_hour`.
const HOUR_MS: Millis = 3_600_000;

/// The recipients (as written, and E.164 when sent) of the alerts with this
/// Message-ID accepted for `account` after `since`: an MTA's retry, or the
/// other part of a message it split into several transactions (one row
/// with NULLs for an earlier alert without recipients). Read from the
/// `requests_alert_message` and `jobs_request` indexes.
pub(super) const SEEN_MESSAGE_SQL: &str = "SELECT j.tel, j.number FROM requests r
     LEFT JOIN jobs j ON j.request_id = r.id
     WHERE r.account = ?1 AND r.message_id = ?2 AND r.received_at > ?3
       AND r.return_path IS NOT NULL AND r.message_id IS NOT NULL";

/// Per `[number, text hash]` of ?1 (a JSON array), for account ?2: the
/// number, alert SMS queued to it since ?3 (the last hour; counted only
/// when ?5, the account has `alert_max_per_hour`), whether one with that
/// text was queued since ?4 (the de-duplication window), the hash, and how
/// many were held back since the last that went. Read from the
/// `jobs_alert_number` and `jobs_alert_text` indexes and `alert_held`'s
/// primary key.
pub(super) const NUMBER_STATE_SQL: &str = "SELECT n.value ->> 0,
       CASE WHEN ?5 THEN
         (SELECT COUNT(*) FROM jobs j
          WHERE j.account = ?2 AND j.number = n.value ->> 0 AND j.received_at > ?3
            AND j.alert_text_hash IS NOT NULL)
       ELSE 0 END,
       EXISTS (SELECT 1 FROM jobs j
               WHERE j.account = ?2 AND j.number = n.value ->> 0 AND j.received_at > ?4
                 AND j.alert_text_hash IS NOT NULL AND j.alert_text_hash = n.value ->> 1),
       n.value ->> 1,
       COALESCE((SELECT h.held FROM alert_held h
                 WHERE h.account = ?2 AND h.number = n.value ->> 0), 0)
     FROM json_each(?1) AS n";

/// What the store knows about one number when an alert arrives.
#[derive(Default)]
struct NumberState {
    /// Alert SMS queued to it in the last hour (this alert's included).
    last_hour: u32,
    /// The hashes of this alert's texts that went to it within the
    /// de-duplication window (and of those this alert queues).
    sent_texts: HashSet<i64>,
    /// Alert SMS held back since the last one that went.
    held: i64,
    /// Whether `held` changed and must be written back.
    changed: bool,
}

/// What becomes of one recipient of an alert.
enum Plan {
    /// Queued for sending with this text (the note of alerts held back
    /// added when there were some) and the original text's hash.
    Queue {
        number: String,
        text: String,
        hash: i64,
    },
    /// Not sent: a storm rule held it back, for this reason.
    Held { detail: String },
    /// Refused by the account's rules at accept: a failure.
    Refused { code: Code, detail: String },
    /// The same number earlier in the alert (its 1-based position).
    Repeat { first: i64 },
    /// Already reached by an earlier delivery of the same message (same
    /// Message-ID): an MTA retry, neither sent again nor counted as held.
    Retried,
}

/// The recipients earlier deliveries of an alert's message reached.
struct Reached {
    /// The numbers as written.
    tels: HashSet<String>,
    /// The E.164 numbers.
    numbers: HashSet<String>,
}

impl Reached {
    /// Whether `m` is one of them.
    fn covers(&self, m: &NewMessage) -> bool {
        self.tels.contains(&m.tel) || m.number.as_ref().is_ok_and(|n| self.numbers.contains(n))
    }
}

/// Records one alert request: `Duplicate` when earlier alerts with its
/// Message-ID (within the window) reached every recipient, else the request
/// with each SMS queued, held back, refused, or already reached by an
/// earlier delivery of the same message (an MTA that split the recipients
/// over several transactions: only the new ones are sent).
pub(super) async fn accept_alert(
    conn: &mut SqliteConnection,
    r: &NewRequest,
    alert: &AlertInfo,
    now: Millis,
) -> Result<Accepted, StoreError> {
    let window = i64::try_from(alert.dedup_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let messages = match &r.body {
        RequestBody::Messages(m) => &m[..],
        RequestBody::Refused(_) => &[][..],
    };
    let reached = reached(conn, r, window, now).await?;
    if let Some(reached) = &reached
        && messages.iter().all(|m| reached.covers(m))
    {
        return Ok(Accepted::Duplicate);
    }
    let mut states = number_states(conn, r, messages, window, now).await?;
    let plans: Vec<Plan> = messages
        .iter()
        .map(|m| match &reached {
            Some(reached) if reached.covers(m) => Plan::Retried,
            _ => plan(m, alert, window, &mut states),
        })
        .collect();
    let queued = plans
        .iter()
        .filter(|p| matches!(p, Plan::Queue { .. }))
        .count();
    let request_id = insert_request(conn, r, alert, queued, now).await?;
    let held = plans
        .iter()
        .filter(|p| matches!(p, Plan::Held { .. }))
        .count();
    if held > 0 {
        // Logged inside the transaction: should the commit fail, the
        // retry of the same alert logs it again.
        tracing::info!(account = %r.account, request_id, held, queued, "alert SMS held back (storm control)");
    }
    insert_jobs(conn, r, request_id, messages, &plans, now).await?;
    write_held(conn, &r.account, &states).await?;
    if queued == 0 {
        let to = &alert.return_path;
        queue_failure_notice(conn, request_id, to, alert.failure_notice, now).await?;
    }
    Ok(Accepted::Queued {
        request_id,
        jobs: queued,
    })
}

/// What earlier alerts with `r`'s Message-ID reached within the window;
/// `None` when there is none (or no Message-ID, or no window).
async fn reached(
    conn: &mut SqliteConnection,
    r: &NewRequest,
    window: Millis,
    now: Millis,
) -> Result<Option<Reached>, StoreError> {
    let Some(message_id) = r.message_id.as_deref().filter(|_| window > 0) else {
        return Ok(None);
    };
    let rows: Vec<(Option<String>, Option<String>)> = sqlx::query_as(SEEN_MESSAGE_SQL)
        .bind(&r.account)
        .bind(message_id)
        .bind(now.saturating_sub(window))
        .fetch_all(&mut *conn)
        .await?;
    if rows.is_empty() {
        return Ok(None);
    }
    let (tels, numbers): (Vec<_>, Vec<_>) = rows.into_iter().unzip();
    Ok(Some(Reached {
        tels: tels.into_iter().flatten().collect(),
        numbers: numbers.into_iter().flatten().collect(),
    }))
}

/// The state of every number the alert would send to, one query.
async fn number_states(
    conn: &mut SqliteConnection,
    r: &NewRequest,
    messages: &[NewMessage],
    window: Millis,
    now: Millis,
) -> Result<HashMap<String, NumberState>, StoreError> {
    let keys: Vec<serde_json::Value> = messages
        .iter()
        .filter(|m| m.duplicate_of.is_none())
        .filter_map(|m| m.number.as_ref().ok().map(|n| (n, text_hash(&m.text))))
        .map(|(n, hash)| serde_json::json!([n, hash]))
        .collect();
    let mut states = HashMap::new();
    if keys.is_empty() {
        return Ok(states);
    }
    let rows = sqlx::query(NUMBER_STATE_SQL)
        .bind(serde_json::Value::Array(keys).to_string())
        .bind(&r.account)
        .bind(now.saturating_sub(HOUR_MS))
        .bind(if window > 0 {
            now.saturating_sub(window)
        } else {
            now
        })
        .bind(r.alert.as_ref().is_some_and(|a| a.max_per_hour.is_some()))
        .fetch_all(&mut *conn)
        .await?;
    for row in rows {
        let number: String = row.try_get(0)?;
        let last_hour: i64 = row.try_get(1)?;
        let same_text: bool = row.try_get(2)?;
        let hash: i64 = row.try_get(3)?;
        let held: i64 = row.try_get(4)?;
        let state = states.entry(number).or_insert_with(|| NumberState {
            last_hour: u32::try_from(last_hour).unwrap_or(u32::MAX),
            held,
            ..NumberState::default()
        });
        if same_text {
            state.sent_texts.insert(hash);
        }
    }
    Ok(states)
}

/// What the storm rules make of one recipient, updating its number's state
/// as the SMS is queued or held back.
fn plan(
    m: &NewMessage,
    alert: &AlertInfo,
    window: Millis,
    states: &mut HashMap<String, NumberState>,
) -> Plan {
    let number = match (&m.number, m.duplicate_of) {
        (Err(code), _) => {
            return Plan::Refused {
                code: *code,
                detail: m
                    .detail
                    .clone()
                    .unwrap_or_else(|| code.message().to_owned()),
            };
        }
        (Ok(_), Some(first)) => {
            return Plan::Repeat {
                first: first as i64 + 1,
            };
        }
        (Ok(number), None) => number,
    };
    let state = states.entry(number.clone()).or_default();
    let hash = text_hash(&m.text);
    let held = if window > 0 && state.sent_texts.contains(&hash) {
        Some(format!(
            "held back: the same text went to this number less than {} s ago",
            alert.dedup_secs
        ))
    } else {
        alert
            .max_per_hour
            .filter(|&max| state.last_hour >= max)
            .map(|max| format!("held back: {max} alert SMS to this number in the last hour"))
    };
    if let Some(detail) = held {
        state.held += 1;
        state.changed = true;
        return Plan::Held { detail };
    }
    let text = if state.held > 0 {
        let note = format!("\n(+{} similar alerts held back)", state.held);
        crate::gsm::fit::fit(&m.text, &note, alert.max_segments)
    } else {
        m.text.clone()
    };
    state.changed |= state.held > 0;
    state.held = 0;
    state.last_hour = state.last_hour.saturating_add(1);
    if window > 0 {
        // A second SMS of the same text in this alert is held back too.
        state.sent_texts.insert(hash);
    }
    Plan::Queue {
        number: number.clone(),
        text,
        hash,
    }
}

/// Inserts the alert's request row; returns its id.
async fn insert_request(
    conn: &mut SqliteConnection,
    r: &NewRequest,
    alert: &AlertInfo,
    queued: usize,
    now: Millis,
) -> Result<i64, StoreError> {
    let error_code = match &r.body {
        RequestBody::Refused(code) => Some(i64::from(code.0)),
        RequestBody::Messages(_) => None,
    };
    // No emailId, and never an etatAck or etatNot (there is no emailAck).
    Ok(sqlx::query_scalar(
        "INSERT INTO requests (account, email_id, received_at, message_id, mail_from,
                               email_ack, email_not, error_code, pending_jobs, completed_at,
                               sender_id, tracker, return_path, failure_notice)
         VALUES (?1, NULL, ?2, ?3, ?4, NULL, NULL, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
         RETURNING id",
    )
    .bind(&r.account)
    .bind(now)
    .bind(r.message_id.as_deref())
    .bind(&r.mail_from)
    .bind(error_code)
    .bind(queued as i64)
    .bind((queued == 0).then_some(now))
    .bind(r.sender_id.as_deref())
    .bind(r.tracker.as_deref())
    .bind(&alert.return_path)
    .bind(alert.failure_notice)
    .fetch_one(&mut *conn)
    .await?)
}

/// Inserts one job per recipient, as planned: held-back SMS are jobs of
/// their own final status `held` (no number, so that nothing claims or
/// counts them, and never a failure).
async fn insert_jobs(
    conn: &mut SqliteConnection,
    r: &NewRequest,
    request_id: i64,
    messages: &[NewMessage],
    plans: &[Plan],
    now: Millis,
) -> Result<(), StoreError> {
    let rows: Vec<(usize, &NewMessage, &Plan)> = messages
        .iter()
        .zip(plans)
        .enumerate()
        .map(|(i, (m, p))| (i, m, p))
        .collect();
    for chunk in rows.chunks(super::accept::ROWS_PER_INSERT) {
        let mut insert = QueryBuilder::new(
            "INSERT INTO jobs (request_id, seq, tel, number, text, account, received_at, status,
                               code, detail, next_attempt_at, updated_at, same_as,
                               alert_text_hash) ",
        );
        insert.push_values(chunk, |mut row, &(position, m, plan)| {
            let (number, text, status, code, detail, same_as, hash) = match plan {
                Plan::Queue { number, text, hash } => (
                    Some(number.as_str()),
                    text.as_str(),
                    "queued",
                    None,
                    None,
                    None,
                    Some(*hash),
                ),
                Plan::Held { detail } => (
                    None,
                    m.text.as_str(),
                    "held",
                    None,
                    Some(detail.as_str()),
                    None,
                    None,
                ),
                Plan::Refused { code, detail } => (
                    None,
                    m.text.as_str(),
                    "failed",
                    Some(i64::from(code.0)),
                    Some(detail.as_str()),
                    None,
                    None,
                ),
                Plan::Retried => (
                    None,
                    m.text.as_str(),
                    "held",
                    None,
                    Some(
                        "already reached by an earlier delivery of this message (same Message-ID)",
                    ),
                    None,
                    None,
                ),
                Plan::Repeat { first } => (
                    None,
                    m.text.as_str(),
                    "duplicate",
                    None,
                    None,
                    Some(*first),
                    None,
                ),
            };
            row.push_bind(request_id)
                .push_bind(position as i64 + 1)
                .push_bind(m.tel.as_str())
                .push_bind(number)
                .push_bind(text)
                .push_bind(r.account.as_str())
                .push_bind(now)
                .push_bind(status)
                .push_bind(code)
                .push_bind(detail)
                .push_bind(now)
                .push_bind(now)
                .push_bind(same_as)
                .push_bind(hash);
        });
        insert.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Writes back the held-back counts that changed: a count of 0 deletes the
/// number's row.
async fn write_held(
    conn: &mut SqliteConnection,
    account: &str,
    states: &HashMap<String, NumberState>,
) -> Result<(), StoreError> {
    let (kept, cleared): (Vec<_>, Vec<_>) = states
        .iter()
        .filter(|(_, s)| s.changed)
        .partition(|(_, s)| s.held > 0);
    if !cleared.is_empty() {
        let numbers: Vec<&String> = cleared.iter().map(|(n, _)| *n).collect();
        sqlx::query(
            "DELETE FROM alert_held
             WHERE account = ?1 AND number IN (SELECT value FROM json_each(?2))",
        )
        .bind(account)
        .bind(serde_json::to_string(&numbers).unwrap_or_default())
        .execute(&mut *conn)
        .await?;
    }
    if !kept.is_empty() {
        let rows: Vec<serde_json::Value> = kept
            .iter()
            .map(|(n, s)| serde_json::json!([n, s.held]))
            .collect();
        sqlx::query(
            "INSERT INTO alert_held (account, number, held)
             SELECT ?1, value ->> 0, value ->> 1 FROM json_each(?2) WHERE true
             ON CONFLICT (account, number) DO UPDATE SET held = excluded.held",
        )
        .bind(account)
        .bind(serde_json::Value::Array(rows).to_string())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// Queues the failure notice (a reply of kind `dsn`) of a finished alert
/// request when one of its SMS failed, it asks for notices and its
/// envelope sender is not null.
pub(super) async fn queue_failure_notice(
    conn: &mut SqliteConnection,
    request_id: i64,
    return_path: &str,
    failure_notice: bool,
    now: Millis,
) -> Result<(), StoreError> {
    if !failure_notice || return_path.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO replies (kind, request_id, recipient, status, next_attempt_at, created_at)
         SELECT 'dsn', ?1, ?2, 'pending', ?3, ?3
         WHERE EXISTS (SELECT 1 FROM jobs WHERE request_id = ?1 AND status = 'failed')",
    )
    .bind(request_id)
    .bind(return_path)
    .bind(now)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// A stable 64-bit hash of an alert's text (FNV-1a): the same text gives
/// the same value in every run and every version, as the store keeps it.
pub(super) fn text_hash(text: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::SqliteConnectOptions;
    use sqlx::{ConnectOptions, Row};

    /// What SQLite plans for `sql`, one detail line per step.
    async fn plan(conn: &mut SqliteConnection, sql: &str, binds: &[&str]) -> Vec<String> {
        let explain = format!("EXPLAIN QUERY PLAN {sql}");
        let mut query = sqlx::query(sqlx::AssertSqlSafe(explain));
        for b in binds {
            query = query.bind(*b);
        }
        let rows = query.fetch_all(&mut *conn).await.unwrap();
        rows.iter().map(|r| r.get::<String, _>(3)).collect()
    }

    /// The checks of every alert accept read indexes only: the Message-ID
    /// its partial index, the per-number state the `jobs_alert_number`
    /// covering index and `alert_held`'s primary key; never a scan of jobs
    /// or requests.
    #[tokio::test]
    async fn alert_checks_use_their_indexes() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = SqliteConnectOptions::new()
            .filename(dir.path().join("db.sqlite"))
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        super::super::migrator().run(&mut conn).await.unwrap();

        let details = plan(&mut conn, SEEN_MESSAGE_SQL, &["acme", "<m@x>", "0"]).await;
        assert!(
            details.iter().any(|d| d.contains(
                "USING INDEX requests_alert_message (account=? AND message_id=? AND received_at>?)"
            )),
            "{details:?}"
        );
        assert!(
            !details.iter().any(|d| d.contains("SCAN requests")),
            "{details:?}"
        );

        let numbers = "[[\"+33600000001\", 1]]";
        let details = plan(
            &mut conn,
            NUMBER_STATE_SQL,
            &[numbers, "acme", "0", "0", "1"],
        )
        .await;
        let on_jobs: Vec<&String> = details.iter().filter(|d| d.contains(" j ")).collect();
        assert_eq!(on_jobs.len(), 2, "{details:?}");
        // The load run of issue 10 (20 000 alerts to one number) made both
        // scans of a whole number's alerts visible: each is a range.
        assert!(
            on_jobs.iter().any(|d| d.contains(
                "COVERING INDEX jobs_alert_number (account=? AND number=? AND received_at>?)"
            )),
            "{details:?}"
        );
        assert!(
            on_jobs.iter().any(|d| d.contains(
                "COVERING INDEX jobs_alert_text (account=? AND number=? AND alert_text_hash=? AND received_at>?)"
            )),
            "{details:?}"
        );
        assert!(
            details
                .iter()
                .any(|d| d.contains("SEARCH h USING PRIMARY KEY")),
            "{details:?}"
        );
    }

    /// One group commit: each alert sees what the ones before it stored
    /// (its Message-ID, its SMS, what it held back), and `<envoi>`
    /// requests beside them keep their emailId de-duplication.
    #[tokio::test]
    async fn alerts_of_one_group_see_each_other() {
        use crate::store::NewMessage;
        let dir = tempfile::tempdir().unwrap();
        let mut conn = SqliteConnectOptions::new()
            .filename(dir.path().join("db.sqlite"))
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        super::super::migrator().run(&mut conn).await.unwrap();
        let info = AlertInfo {
            return_path: "ops@x.example".into(),
            dedup_secs: 60,
            max_per_hour: None,
            failure_notice: true,
            max_segments: 1,
        };
        let alert = |id: &str, text: &str| NewRequest {
            message_id: Some(id.into()),
            alert: Some(info.clone()),
            ..NewRequest::new(
                "acme",
                None,
                "ops@x.example",
                vec![NewMessage::to("+33600000001", text)],
            )
        };
        let envoi = |id: &str| {
            NewRequest::new(
                "acme",
                Some(id),
                "ops@x.example",
                vec![NewMessage::to("+33600000002", "t")],
            )
        };
        let (a1, a1_again, a2, a3, e1, e1_again) = (
            alert("m1", "down"),
            alert("m1", "down"),
            alert("m2", "down"),
            alert("m3", "up"),
            envoi("e1"),
            envoi("e1"),
        );
        let results = super::super::accept::accept_all(
            &mut conn,
            &[&a1, &e1, &a1_again, &a2, &e1_again, &a3],
            1_000_000,
        )
        .await
        .unwrap();
        let jobs: Vec<Option<usize>> = results
            .iter()
            .map(|r| match r {
                Accepted::Queued { jobs, .. } => Some(*jobs),
                _ => None,
            })
            .collect();
        assert_eq!(jobs, [Some(1), Some(1), None, Some(0), None, Some(1)]);
        assert_eq!(results[2], Accepted::Duplicate);
        assert_eq!(results[4], Accepted::Duplicate);
        let texts: Vec<String> =
            sqlx::query_scalar("SELECT text FROM jobs WHERE status = 'queued' ORDER BY id")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(texts, ["t", "down", "up\n(+1 similar alerts held back)"]);
        let held: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM alert_held")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(held, 0, "the count went back to 0");
    }

    #[test]
    fn text_hashes_are_stable() {
        // FNV-1a 64 of "" and "a", as published.
        assert_eq!(text_hash("") as u64, 0xcbf2_9ce4_8422_2325);
        assert_eq!(text_hash("a") as u64, 0xaf63_dc4c_8601_ec8c);
        assert_ne!(text_hash("disk full"), text_hash("disk ful"));
    }
}
