//! Retention: finished requests forgotten in chunks.

use crate::store::{Millis, StoreError};
use sqlx::sqlite::SqliteConnection;

/// Requests deleted by one purge operation at most, so that other writes
/// wait little behind it.
pub const PURGE_CHUNK: u64 = 1_000;

/// Deletes up to [`PURGE_CHUNK`] requests finished before `before` whose
/// replies are all settled (their jobs and replies go with them), and
/// settled etatAck-only replies.
pub(super) async fn purge(conn: &mut SqliteConnection, before: Millis) -> Result<u64, StoreError> {
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
