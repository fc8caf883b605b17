//! Waiting between tries, in one place: [`backoff`] spaces the retries the
//! store schedules (SMS and replies), [`insist`] and [`persist`] repeat a
//! store operation in memory until the store takes it.

use crate::shutdown::Shutdown;
use crate::store::{Millis, StoreError};
use std::future::Future;
use std::time::Duration;

/// Exponential backoff with jitter: `initial` doubled per attempt up to
/// `max`, then a random point in its upper half (so retries of many SMS
/// that failed together spread out).
pub fn backoff(initial_ms: u64, max_ms: u64, attempt: u32) -> Millis {
    let exp = initial_ms
        .saturating_mul(1u64 << attempt.saturating_sub(1).min(30))
        .min(max_ms);
    (exp / 2 + fastrand::u64(0..=exp / 2)) as Millis
}

/// How long [`insist`] goes on trying once shutdown is asked: a store that
/// is full or locked for a moment at shutdown still gets the outcomes.
pub const SHUTDOWN_RECORD_GRACE: Duration = Duration::from_secs(10);

/// The first wait after a failed store operation; it doubles each time.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest wait between two tries before shutdown.
const LONGEST_DELAY: Duration = Duration::from_secs(10);
/// The longest wait between two tries during the shutdown grace.
const LONGEST_GRACE_DELAY: Duration = Duration::from_secs(1);

/// Runs a store operation until it succeeds: an outcome that is not
/// recorded would make an SMS be sent again, or a reply be lost. After
/// shutdown is asked it goes on for [`SHUTDOWN_RECORD_GRACE`], then gives
/// up: what was being sent stays "sending" in the store and is settled at
/// the next start (`recover`, `requeue_interrupted_replies`), which is the
/// only way an SMS whose outcome could not be recorded may go out again
/// (with `dispatch.unknown_outcome = "resend"` and a provider that cannot
/// be asked).
pub async fn insist<F, Fut>(what: &str, shutdown: &Shutdown, operation: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), StoreError>>,
{
    persist(what, shutdown, SHUTDOWN_RECORD_GRACE, operation).await;
}

/// Runs a store operation until it succeeds, or until `grace` after
/// shutdown is asked (then it gives up and returns `false`). Waits double
/// from 100 ms up to 10 s (1 s during the grace); the first failure and
/// every tenth are logged, so a store that is down for a while does not
/// flood the log.
pub async fn persist<F, Fut>(
    what: &str,
    shutdown: &Shutdown,
    grace: Duration,
    mut operation: F,
) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), StoreError>>,
{
    let mut delay = FIRST_DELAY;
    let mut shutdown = shutdown.clone();
    let mut give_up_at: Option<tokio::time::Instant> = None;
    let mut failures = 0u32;
    while let Err(e) = operation().await {
        failures += 1;
        let now = tokio::time::Instant::now();
        if shutdown.is_fired() {
            let deadline = *give_up_at.get_or_insert(now + grace);
            if now >= deadline {
                tracing::error!(error = %e, failures, "cannot record {what}; stopping anyway, they are settled at the next start");
                return false;
            }
        }
        if failures == 1 || failures.is_multiple_of(10) {
            tracing::error!(error = %e, failures, "cannot record {what}; retrying");
        }
        if give_up_at.is_some() {
            tokio::time::sleep(delay.min(LONGEST_GRACE_DELAY)).await;
        } else {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.wait() => {}
            }
        }
        delay = (delay * 2).min(LONGEST_DELAY);
    }
    if failures > 0 {
        tracing::info!(failures, "{what} recorded after the store recovered");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[test]
    fn backoff_doubles_within_its_upper_half_up_to_the_cap() {
        for (attempt, low, high) in [(0, 500, 1_000), (1, 500, 1_000), (2, 1_000, 2_000)] {
            let b = backoff(1_000, 8_000, attempt);
            assert!((low..=high).contains(&b), "{attempt}: {b}");
        }
        let capped = backoff(1_000, 8_000, 40);
        assert!((4_000..=8_000).contains(&capped), "{capped}");
    }

    #[tokio::test]
    async fn persist_retries_until_the_operation_succeeds() {
        let (_trigger, shutdown) = crate::shutdown::channel();
        let calls = Cell::new(0);
        let done = persist("x", &shutdown, Duration::ZERO, || {
            calls.set(calls.get() + 1);
            let n = calls.get();
            async move {
                if n < 3 {
                    Err(StoreError::Unavailable("busy".into()))
                } else {
                    Ok(())
                }
            }
        })
        .await;
        assert!(done);
        assert_eq!(calls.get(), 3);
    }

    #[tokio::test]
    async fn persist_gives_up_after_its_grace_once_shutdown_is_asked() {
        let (trigger, shutdown) = crate::shutdown::channel();
        trigger.fire();
        let calls = Cell::new(0);
        let done = persist("x", &shutdown, Duration::ZERO, || {
            calls.set(calls.get() + 1);
            async { Err(StoreError::Unavailable("full".into())) }
        })
        .await;
        assert!(!done);
        assert_eq!(calls.get(), 1, "no grace: one try only");
    }
}
