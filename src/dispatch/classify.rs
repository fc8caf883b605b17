//! The one place failures are sorted: what a provider's answer (or the
//! absence of one) means for a job: sent, retry later on the same or the
//! next provider, or failed. Pure functions over an [`Attempt`].

use super::DispatchConfig;
use crate::codes::Code;
use crate::providers::{FailureKind, SendError};
use crate::store::{Job, JobOutcome, Millis, RetryKind};

/// One job's turn on one provider, as the classify family sees it.
#[derive(Debug, Clone, Copy)]
pub struct Attempt<'a> {
    /// The job: its provider position, tries there and age.
    pub job: &'a Job,
    /// The provider's name, for the outcome and its detail.
    pub provider: &'a str,
    /// How many providers the job's account has: whether there is a next
    /// one to fail over to.
    pub provider_count: usize,
    /// The time of the decision: retry times and the age limit count from
    /// it.
    pub now: Millis,
    /// Tries per provider, backoff and age limit.
    pub config: &'a DispatchConfig,
}

impl Attempt<'_> {
    /// The position of the next provider in the job's list.
    fn next_provider(&self) -> u32 {
        self.job.provider_index + 1
    }

    /// Whether the account has a provider after this one.
    fn has_next(&self) -> bool {
        (self.next_provider() as usize) < self.provider_count
    }

    /// Whether the job is past `dispatch.max_age_secs` (counted from
    /// reception or the end of a rules hold).
    fn too_old(&self) -> bool {
        self.now - self.job.age_from > (self.config.max_age_secs as Millis) * 1000
    }

    /// The delay before try number `attempt + 1`.
    fn backoff(&self, attempt: u32) -> Millis {
        self.config.backoff(attempt)
    }

    /// A retry of this job: `detail` is prefixed with the provider's name.
    fn retry(&self, at: Millis, provider_index: u32, detail: &str, kind: RetryKind) -> JobOutcome {
        JobOutcome::Retry {
            job_id: self.job.id,
            at,
            provider_index,
            detail: format!("{}: {detail}", self.provider),
            kind,
        }
    }

    /// The next provider, at once.
    fn fail_over(&self, detail: &str, kind: RetryKind) -> JobOutcome {
        self.retry(self.now, self.next_provider(), detail, kind)
    }

    /// A final failure with `code`, blamed on this provider.
    fn failed(&self, code: Code, detail: &str) -> JobOutcome {
        JobOutcome::Failed {
            job_id: self.job.id,
            code,
            detail: format!("{}: {detail}", self.provider),
            provider: Some(self.provider.to_string()),
        }
    }

    /// The next provider if there is one, else a final failure.
    fn fail_over_or_fail(&self, error: &SendError) -> JobOutcome {
        if self.has_next() {
            self.fail_over(&error.detail, RetryKind::Counted)
        } else {
            self.failed(error.code, &error.detail)
        }
    }
}

/// Decides what a provider's answer means for a job: the single place where
/// failures are sorted into retry, fail over, or final.
pub fn classify(attempt: &Attempt, result: Result<String, SendError>) -> JobOutcome {
    let error = match result {
        Ok(provider_ref) => {
            return JobOutcome::Sent {
                job_id: attempt.job.id,
                provider: attempt.provider.to_string(),
                provider_ref,
            };
        }
        Err(e) => e,
    };
    match error.kind {
        FailureKind::Permanent => attempt.failed(error.code, &error.detail),
        FailureKind::ProviderUnusable => attempt.fail_over_or_fail(&error),
        // Never handed to the provider (an earlier request of its batch
        // failed): it waits like a first retry, without counting a try.
        FailureKind::NotAttempted => {
            wait_untried(attempt, attempt.now + attempt.backoff(1), &error.detail)
        }
        FailureKind::Transient => {
            let tries_here = attempt.job.provider_attempts;
            if attempt.too_old() || tries_here >= attempt.config.max_attempts {
                attempt.fail_over_or_fail(&error)
            } else {
                attempt.retry(
                    attempt.now + attempt.backoff(tries_here),
                    attempt.job.provider_index,
                    &error.detail,
                    RetryKind::Counted,
                )
            }
        }
    }
}

/// What happens to a job whose provider is put aside until `until`
/// (circuit breaker) and was therefore not called: the next provider at
/// once if there is one, else a wait until the provider is tried again.
/// The attempt does not count; the age limit still applies.
pub fn classify_unavailable(attempt: &Attempt, until: Millis) -> JobOutcome {
    let detail = "put aside after repeated failures";
    if attempt.has_next() {
        attempt.fail_over(detail, RetryKind::Untried)
    } else {
        wait_untried(attempt, until, detail)
    }
}

/// What happens to an SMS the adapter did not send because an earlier
/// request of its batch failed transiently (`cause`: that request's job and
/// outcome): it follows the failed request without counting a try, going
/// to the next provider with it, or retried when it is. So a provider's
/// outage moves a whole batch at the pace of its first request, and the
/// backoff still grows.
pub fn classify_not_attempted(
    attempt: &Attempt,
    cause: Option<(&Job, &JobOutcome)>,
    error: &SendError,
) -> JobOutcome {
    let moved_on = match cause {
        Some((cause_job, JobOutcome::Retry { provider_index, .. })) => {
            *provider_index != cause_job.provider_index
        }
        Some((_, JobOutcome::Failed { .. })) => true,
        _ => false,
    };
    match cause {
        _ if moved_on && attempt.has_next() => attempt.fail_over(&error.detail, RetryKind::Untried),
        Some((_, JobOutcome::Retry { at, .. })) if !moved_on => {
            wait_untried(attempt, *at, &error.detail)
        }
        _ => {
            let at = attempt.now + attempt.backoff(attempt.job.provider_attempts.max(1));
            wait_untried(attempt, at, &error.detail)
        }
    }
}

/// A job that was not handed to its provider this time waits until `at`
/// on the same provider without counting a try; past the age limit
/// (`dispatch.max_age_secs`, counted from reception or the end of a rules
/// hold) it goes to the next provider, or fails (999) on the last one, so
/// no wait goes on forever.
pub fn wait_untried(attempt: &Attempt, at: Millis, detail: &str) -> JobOutcome {
    if !attempt.too_old() {
        attempt.retry(at, attempt.job.provider_index, detail, RetryKind::Untried)
    } else if attempt.has_next() {
        attempt.fail_over(detail, RetryKind::Untried)
    } else {
        attempt.failed(Code::INTERNAL, detail)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job on its `provider_index`-th provider with `attempts` tries there.
    fn job(attempts: u32, provider_index: u32, received_at: Millis) -> Job {
        Job {
            provider_attempts: attempts,
            opted_out: false,
            id: 9,
            request_id: 1,
            account: "a".into(),
            number: "+33601020304".into(),
            text: "t".into(),
            sender_id: None,
            tracker: None,
            email_id: "1".into(),
            received_at,
            age_from: received_at,
            attempts,
            provider_index,
        }
    }

    const CONFIG: DispatchConfig = DispatchConfig {
        max_attempts: 3,
        retry_initial_ms: 1_000,
        retry_max_ms: 8_000,
        max_age_secs: 3_600,
        batch_size: 500,
        concurrency: 4,
        poll_interval_ms: 1_000,
        unknown_outcome: super::super::UnknownOutcome::Resend,
        breaker_threshold: 5,
        breaker_cooldown_secs: 30,
    };

    const NOW: Millis = 10_000_000;

    /// `job`'s turn on `provider`, one of `provider_count`, at [`NOW`].
    fn on<'a>(job: &'a Job, provider: &'a str, provider_count: usize) -> Attempt<'a> {
        Attempt {
            job,
            provider,
            provider_count,
            now: NOW,
            config: &CONFIG,
        }
    }

    #[test]
    fn success_is_sent() {
        let j = job(1, 0, NOW);
        let o = classify(&on(&j, "p", 1), Ok("ref1".into()));
        assert_eq!(
            o,
            JobOutcome::Sent {
                job_id: 9,
                provider: "p".into(),
                provider_ref: "ref1".into()
            }
        );
    }

    #[test]
    fn permanent_failure_is_final_with_its_code() {
        let e = SendError::permanent(Code::BAD_NUMBER, "invalid number");
        match classify(&on(&job(1, 0, NOW), "p", 2), Err(e)) {
            JobOutcome::Failed { code, detail, .. } => {
                assert_eq!(code, Code::BAD_NUMBER);
                assert_eq!(detail, "p: invalid number");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transient_failure_is_retried_with_growing_backoff() {
        for (attempt, low, high) in [(1, 500, 1_000), (2, 1_000, 2_000)] {
            let j = job(attempt, 0, NOW);
            match classify(&on(&j, "p", 1), Err(SendError::transient("timeout"))) {
                JobOutcome::Retry {
                    at,
                    provider_index,
                    kind,
                    ..
                } => {
                    assert_eq!((provider_index, kind), (0, RetryKind::Counted));
                    assert!(
                        (NOW + low..=NOW + high).contains(&at),
                        "{attempt}: {}",
                        at - NOW
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        let capped = CONFIG.backoff(30);
        assert!((4_000..=8_000).contains(&capped), "{capped}");
    }

    #[test]
    fn transient_failures_fail_over_after_max_attempts_then_fail() {
        let e = || Err(SendError::transient("HTTP 503"));
        match classify(&on(&job(3, 0, NOW), "p", 2), e()) {
            JobOutcome::Retry {
                at, provider_index, ..
            } => {
                assert_eq!((at, provider_index), (NOW, 1));
            }
            other => panic!("{other:?}"),
        }
        // Second provider: its own three tries.
        for tries in [1, 2] {
            assert!(matches!(
                classify(&on(&job(tries, 1, NOW), "q", 2), e()),
                JobOutcome::Retry {
                    provider_index: 1,
                    ..
                }
            ));
        }
        match classify(&on(&job(3, 1, NOW), "q", 2), e()) {
            JobOutcome::Failed { code, .. } => assert_eq!(code, Code::INTERNAL),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn too_old_transient_failure_fails_over_then_is_final() {
        let j = job(1, 0, NOW - 3_601_000);
        let old = |count| classify(&on(&j, "p", count), Err(SendError::transient("t")));
        assert!(matches!(
            old(2),
            JobOutcome::Retry {
                provider_index: 1,
                at: NOW,
                ..
            }
        ));
        assert!(matches!(old(1), JobOutcome::Failed { .. }));
    }

    #[test]
    fn sms_an_adapter_did_not_send_wait_without_a_try_until_too_old() {
        let cause = SendError::transient("HTTP 503");
        let not_sent = || Err(SendError::not_attempted(&cause));
        // Even past max_attempts: it was never handed to the provider.
        match classify(&on(&job(5, 0, NOW), "p", 1), not_sent()) {
            JobOutcome::Retry {
                kind: RetryKind::Untried,
                provider_index: 0,
                at,
                ..
            } => assert!((NOW + 500..=NOW + 1_000).contains(&at), "{}", at - NOW),
            other => panic!("{other:?}"),
        }
        // Past the age limit: the next provider, or 999 on the last.
        let old = job(1, 0, NOW - 3_601_000);
        assert!(matches!(
            classify(&on(&old, "p", 2), not_sent()),
            JobOutcome::Retry {
                provider_index: 1,
                ..
            }
        ));
        assert!(matches!(
            classify(&on(&old, "p", 1), not_sent()),
            JobOutcome::Failed {
                code: Code::INTERNAL,
                ..
            }
        ));
        // The breaker's waits end the same way on the last provider.
        assert!(matches!(
            classify_unavailable(&on(&old, "p", 1), NOW + 10),
            JobOutcome::Failed { .. }
        ));
        assert!(matches!(
            classify_unavailable(&on(&old, "p", 2), NOW + 10),
            JobOutcome::Retry {
                provider_index: 1,
                kind: RetryKind::Untried,
                ..
            }
        ));
    }

    #[test]
    fn a_provider_put_aside_makes_its_last_sms_wait_until_it_is_tried_again() {
        let j = job(2, 0, NOW);
        assert_eq!(
            classify_unavailable(&on(&j, "p", 1), NOW + 30_000),
            JobOutcome::Retry {
                job_id: 9,
                at: NOW + 30_000,
                provider_index: 0,
                detail: "p: put aside after repeated failures".into(),
                kind: RetryKind::Untried,
            }
        );
    }

    #[test]
    fn sms_left_unsent_follow_the_request_that_stopped_their_batch() {
        let stopped = SendError::transient("HTTP 503");
        let error = SendError::not_attempted(&stopped);
        let (first, j) = (job(1, 0, NOW), job(1, 0, NOW));
        // The failed request waits on its provider: they wait with it.
        let waits = classify(&on(&first, "p", 2), Err(stopped.clone()));
        let JobOutcome::Retry { at, .. } = waits else {
            panic!("{waits:?}")
        };
        match classify_not_attempted(&on(&j, "p", 2), Some((&first, &waits)), &error) {
            JobOutcome::Retry {
                at: theirs,
                provider_index: 0,
                kind: RetryKind::Untried,
                ..
            } => assert_eq!(theirs, at),
            other => panic!("{other:?}"),
        }
        // It moved to the next provider: they go along, at once.
        let moved = classify(&on(&job(3, 0, NOW), "p", 2), Err(stopped));
        assert!(matches!(
            classify_not_attempted(&on(&j, "p", 2), Some((&first, &moved)), &error),
            JobOutcome::Retry {
                at: NOW,
                provider_index: 1,
                kind: RetryKind::Untried,
                ..
            }
        ));
        // No cause: a first retry's wait, still untried.
        assert!(matches!(
            classify_not_attempted(&on(&j, "p", 2), None, &error),
            JobOutcome::Retry {
                provider_index: 0,
                kind: RetryKind::Untried,
                ..
            }
        ));
    }

    #[test]
    fn unusable_provider_is_skipped_at_once() {
        let e = SendError {
            kind: FailureKind::ProviderUnusable,
            code: Code::NO_CREDIT,
            detail: "no credit".into(),
        };
        assert!(matches!(
            classify(&on(&job(1, 0, NOW), "p", 2), Err(e.clone())),
            JobOutcome::Retry {
                provider_index: 1,
                at: NOW,
                kind: RetryKind::Counted,
                ..
            }
        ));
        assert!(matches!(
            classify(&on(&job(1, 1, NOW), "q", 2), Err(e)),
            JobOutcome::Failed {
                code: Code::NO_CREDIT,
                ..
            }
        ));
    }
}
