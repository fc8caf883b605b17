//! Retention (`store.retention_days`): finished requests are forgotten,
//! their emailIds free again, chunk after chunk so that other writes wait
//! little.

use super::{PURGE_CHUNK, Store, now_millis};
use crate::shutdown::Shutdown;
use std::sync::Arc;
use std::time::Duration;

/// How often retention runs after the first time (at start-up).
const EVERY: Duration = Duration::from_secs(3600);

/// Applies retention at start-up and then every hour until shutdown.
pub async fn retention(store: Arc<dyn Store>, days: u64, mut shutdown: Shutdown) {
    let keep = i64::try_from(days.saturating_mul(86_400_000)).unwrap_or(i64::MAX);
    loop {
        let purged = purge_all(store.as_ref(), now_millis().saturating_sub(keep), &shutdown).await;
        if purged > 0 {
            tracing::info!(requests = purged, "retention: old requests purged");
        }
        tokio::select! {
            _ = tokio::time::sleep(EVERY) => {}
            _ = shutdown.wait() => return,
        }
    }
}

/// Purges every request finished before `before`, one chunk (one short
/// write) at a time, until a chunk is not full; returns how many.
async fn purge_all(store: &dyn Store, before: i64, shutdown: &Shutdown) -> u64 {
    let mut purged = 0;
    loop {
        match store.purge(before).await {
            Ok(n) => {
                purged += n;
                if n < PURGE_CHUNK || shutdown.is_fired() {
                    return purged;
                }
                tokio::task::yield_now().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "retention: purge failed");
                return purged;
            }
        }
    }
}
