//! Credit balances: conditional debits that never overdraw, written on
//! the jobs they pay for.

use crate::store::{StoreError, now_millis};
use sqlx::sqlite::SqliteConnection;

/// Adds `amount` to an account's balance, creating it from 0 if missing, and
/// returns the new balance. The balance never goes below 0 (taking away
/// more than there is leaves 0) nor above `i64::MAX` (saturates instead of
/// overflowing into a float).
pub(super) async fn add_credits(
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
pub(super) async fn reserve_credits(
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
pub(super) async fn debit_credits(
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
