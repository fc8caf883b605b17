//! The circuit breaker: a provider whose calls keep failing is put aside
//! for a while, so that every SMS does not wait for its timeouts; SMS meant
//! for it fail over to the next provider, or wait if there is none.
//!
//! Closed (normal) → after `threshold` failed calls in a row → open for
//! `cooldown`; then calls are let through again (half-open): one success
//! closes it, one failure opens it for another `cooldown`.

use crate::providers::{FailureKind, SendError};
use crate::store::Millis;
use std::sync::Mutex;

/// One provider's breaker.
#[derive(Debug)]
pub struct Breaker {
    /// Failed calls in a row that open the breaker.
    threshold: u32,
    /// How long it stays open, in milliseconds.
    cooldown_ms: Millis,
    /// The mutable part; calls are few (one per batch), so a mutex is fine.
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Failed calls since the last success.
    failures: u32,
    /// While set and in the future, no call is made.
    open_until: Option<Millis>,
}

/// What a call's results say about the provider's health.
fn call_failed(results: &[Result<String, SendError>]) -> bool {
    !results.is_empty()
        && results.iter().all(|r| {
            matches!(
                r,
                Err(SendError {
                    kind: FailureKind::Transient
                        | FailureKind::ProviderUnusable
                        | FailureKind::NotAttempted,
                    ..
                })
            )
        })
}

impl Breaker {
    /// A closed breaker; `threshold` 0 disables it.
    pub fn new(threshold: u32, cooldown_ms: Millis) -> Breaker {
        Breaker {
            threshold,
            cooldown_ms,
            state: Mutex::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Until when the provider is put aside, if it is, without taking the
    /// probe a pause's end lets through.
    pub fn open_until(&self, now: Millis) -> Option<Millis> {
        self.state().open_until.filter(|&until| until > now)
    }

    /// `Ok` if a call may be made now, else until when the provider is put
    /// aside. When the pause is over, one call is let through (the probe)
    /// and the others keep waiting until it has answered: a success closes
    /// the breaker, a failure puts the provider aside again.
    pub fn admit(&self, now: Millis) -> Result<(), Millis> {
        let mut state = self.state();
        match state.open_until {
            Some(until) if until > now => Err(until),
            Some(_) => {
                // The probe: the others wait another cooldown (or less,
                // if the probe answers first).
                state.open_until = Some(now + self.cooldown_ms);
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Records a call's results; returns `Some(until)` when this call opened
    /// the breaker (for the log).
    pub fn record(&self, results: &[Result<String, SendError>], now: Millis) -> Option<Millis> {
        if self.threshold == 0 {
            return None;
        }
        let mut state = self.state();
        if !call_failed(results) {
            *state = State::default();
            return None;
        }
        state.failures = state.failures.saturating_add(1);
        if state.failures >= self.threshold {
            let until = now + self.cooldown_ms;
            state.open_until = Some(until);
            return Some(until);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::Code;

    fn transient() -> Vec<Result<String, SendError>> {
        vec![Err(SendError::transient("HTTP 503")); 2]
    }

    #[test]
    fn opens_after_threshold_failures_in_a_row_and_closes_on_success() {
        let b = Breaker::new(3, 1_000);
        assert_eq!(b.record(&transient(), 0), None);
        assert_eq!(b.record(&transient(), 1), None);
        assert!(b.admit(2).is_ok());
        assert_eq!(b.record(&transient(), 2), Some(1_002));
        assert_eq!(b.admit(500), Err(1_002));
        assert_eq!(b.open_until(500), Some(1_002));
        assert_eq!(b.open_until(1_002), None, "looking does not take the probe");
        // Half-open after the cooldown: one probe goes, the others wait.
        assert!(b.admit(1_002).is_ok());
        assert_eq!(b.admit(1_002), Err(2_002), "only one probe");
        // The probe fails: aside again.
        assert_eq!(b.record(&transient(), 1_003), Some(2_003));
        assert_eq!(b.admit(1_500), Err(2_003));
        // A successful probe closes it and resets the count.
        assert!(b.admit(2_003).is_ok());
        assert_eq!(b.record(&[Ok("id".into())], 2_004), None);
        assert!(b.admit(2_004).is_ok());
        assert!(b.admit(2_004).is_ok(), "closed: everyone goes");
        assert_eq!(b.record(&transient(), 2_005), None);
        assert!(b.admit(2_006).is_ok());
    }

    #[test]
    fn a_provider_that_answers_is_healthy() {
        let b = Breaker::new(1, 1_000);
        // A refused number is an answer: the provider works.
        let answered = vec![
            Err(SendError::permanent(Code::BAD_NUMBER, "invalid")),
            Err(SendError::transient("x")),
        ];
        assert_eq!(b.record(&answered, 0), None);
        assert!(b.admit(1).is_ok());
        // Refused credentials: put aside like a failing provider.
        let unusable = vec![Err(SendError::unusable(Code::BAD_CREDENTIALS, "auth"))];
        assert_eq!(b.record(&unusable, 1), Some(1_001));
        // No results (empty batch) say nothing.
        let b = Breaker::new(1, 1_000);
        assert_eq!(b.record(&[], 0), None);
    }

    #[test]
    fn threshold_zero_disables_it() {
        let b = Breaker::new(0, 1_000);
        for t in 0..10 {
            assert_eq!(b.record(&transient(), t), None);
        }
        assert!(b.admit(10).is_ok());
    }
}
