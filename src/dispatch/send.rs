//! One claimed batch, in stages: screened by the gates, grouped by
//! provider, the SMS a provider cannot take split out, each group sent in
//! requests of the provider's size (a batch stops at its first failing
//! request), then every outcome recorded at once.

use super::classify::{
    Attempt, classify, classify_not_attempted, classify_unavailable, wait_untried,
};
use super::{Dispatcher, ProviderGroup, Routed, Slot};
use crate::codes::Code;
use crate::providers::{FailureKind, OutgoingSms, SendError};
use crate::shutdown::Shutdown;
use crate::store::{Job, JobOutcome, Millis};

/// How long an SMS waits when the store cannot debit its credits.
const STORE_RETRY_MS: Millis = 5_000;

/// What each SMS of a request got from its provider.
type Answers = Vec<Result<String, SendError>>;

impl Dispatcher {
    /// Sends claimed jobs, grouped by provider, and records the outcomes.
    pub(super) async fn send_batch(&self, jobs: Vec<Job>, shutdown: &Shutdown) {
        let claimed = jobs.len();
        let (jobs, screened) = self.gates.screen(jobs, self.clock.now());
        let (groups, mut outcomes) = self.by_provider(&jobs);
        outcomes.extend(screened);
        for group in groups {
            self.send_group(group, &mut outcomes).await;
        }
        self.finish(claimed, outcomes, shutdown).await;
    }

    /// `routed`'s turn on the provider `name` at `now`.
    fn attempt<'a>(&'a self, name: &'a str, routed: Routed<'a>, now: Millis) -> Attempt<'a> {
        Attempt {
            job: routed.job,
            provider: name,
            provider_count: routed.provider_count,
            now,
            config: &self.config,
        }
    }

    /// Sends one provider's jobs in requests of its batch size. An SMS
    /// without a sender id never reaches a provider that needs one: the
    /// next provider is tried, and code 16 is reported if there is none.
    async fn send_group(&self, group: ProviderGroup<'_>, outcomes: &mut Vec<JobOutcome>) {
        let provider = &group.slot.provider;
        let (sendable, refused) =
            split_missing_sender(group.jobs, provider.requires_sender_id(), |j| {
                j.sender_id.is_some() || self.default_sender_ids.contains_key(&j.account)
            });
        for routed in refused {
            let error = SendError::unusable(
                Code::EMPTY_SENDER,
                "this provider needs a sender id: no <emetteur> and no default_sender_id",
            );
            let attempt = self.attempt(group.name, routed, self.now());
            push_logged(outcomes, routed.job, classify(&attempt, Err(error)));
        }
        for request in sendable.chunks(provider.max_batch().max(1)) {
            self.send_request(group.name, group.slot, request, outcomes)
                .await;
        }
    }

    /// Sends one request's SMS: unless the provider is put aside, their
    /// credits are debited, then the provider is called.
    async fn send_request(
        &self,
        name: &str,
        slot: &Slot,
        request: &[Routed<'_>],
        outcomes: &mut Vec<JobOutcome>,
    ) {
        // A provider put aside takes nothing: no credits are debited for
        // SMS that wait or go elsewhere.
        if let Some(until) = slot.breaker.open_until(self.now()) {
            return self.put_aside(name, request, until, outcomes);
        }
        // Debited before the breaker is asked, so that its one probe after
        // a pause is never spent on a request that makes no call.
        let request = self.debit(name, request, outcomes).await;
        if request.is_empty() {
            return;
        }
        if let Err(until) = slot.breaker.admit(self.now()) {
            return self.put_aside(name, &request, until, outcomes);
        }
        let answers = self.call(name, slot, &request).await;
        self.sort_answers(name, &request, answers, outcomes);
    }

    /// The SMS of a provider put aside until `until`: the next provider,
    /// or a wait, without counting a try.
    fn put_aside(
        &self,
        name: &str,
        request: &[Routed<'_>],
        until: Millis,
        outcomes: &mut Vec<JobOutcome>,
    ) {
        let now = self.now();
        for &routed in request {
            let outcome = classify_unavailable(&self.attempt(name, routed, now), until);
            push_logged(outcomes, routed.job, outcome);
        }
    }

    /// Debits the credits of a request's SMS (the store gives them back
    /// with any outcome but "sent", the breaker's waits included) and
    /// returns those debited. An SMS the balance cannot cover is refused
    /// (code 12); one the store could not debit waits without using up a
    /// try on a provider it never reached.
    async fn debit<'a>(
        &self,
        name: &str,
        request: &[Routed<'a>],
        outcomes: &mut Vec<JobOutcome>,
    ) -> Vec<Routed<'a>> {
        let jobs: Vec<&Job> = request.iter().map(|r| r.job).collect();
        let reserved = self.gates.reserve(&*self.store, &jobs).await;
        let mut debited = Vec::with_capacity(request.len());
        for (&routed, reservation) in request.iter().zip(reserved) {
            let now = self.now();
            let attempt = self.attempt(name, routed, now);
            let outcome = match reservation {
                Ok(_) => {
                    debited.push(routed);
                    continue;
                }
                Err(e) if e.is_transient() => {
                    wait_untried(&attempt, now + STORE_RETRY_MS, &e.detail)
                }
                Err(e) => classify(&attempt, Err(e)),
            };
            push_logged(outcomes, routed.job, outcome);
        }
        debited
    }

    /// Calls the provider (within its rate limit) and tells its breaker how
    /// the request went.
    async fn call(&self, name: &str, slot: &Slot, request: &[Routed<'_>]) -> Answers {
        let batch: Vec<OutgoingSms> = request.iter().map(|r| self.outgoing(r.job)).collect();
        if let Some(limiter) = &slot.limiter {
            limiter.until_ready().await;
        }
        let answers = slot.provider.send(&batch).await;
        let now = self.now();
        if let Some(until) = slot.breaker.record(&answers, now) {
            tracing::warn!(
                provider = name,
                retry_in_ms = until - now,
                "provider put aside after repeated failures"
            );
        }
        answers
    }

    /// Classifies a request's answers. The request that stopped the batch
    /// (its first transient failure) guides the SMS the adapter left
    /// unsent, so they are classified last.
    fn sort_answers(
        &self,
        name: &str,
        request: &[Routed<'_>],
        answers: Answers,
        outcomes: &mut Vec<JobOutcome>,
    ) {
        let now = self.now();
        let mut answers = answers.into_iter();
        let mut cause: Option<(&Job, JobOutcome)> = None;
        let mut not_attempted = Vec::new();
        for &routed in request {
            let answer = answers.next().unwrap_or_else(|| {
                Err(SendError::transient("provider gave no answer for this SMS"))
            });
            let attempt = self.attempt(name, routed, now);
            match answer {
                Err(e) if e.kind == FailureKind::NotAttempted => not_attempted.push((attempt, e)),
                answer => {
                    let transient = matches!(&answer, Err(e) if e.kind == FailureKind::Transient);
                    let outcome = classify(&attempt, answer);
                    if transient && cause.is_none() {
                        cause = Some((routed.job, outcome.clone()));
                    }
                    push_logged(outcomes, routed.job, outcome);
                }
            }
        }
        let cause = cause.as_ref().map(|(job, outcome)| (*job, outcome));
        for (attempt, error) in not_attempted {
            let outcome = classify_not_attempted(&attempt, cause, &error);
            push_logged(outcomes, attempt.job, outcome);
        }
    }

    /// Records the batch's outcomes, then wakes the reply sender if a
    /// request may be complete, and the dispatcher if the claim was full
    /// (more may be due).
    async fn finish(&self, claimed: usize, outcomes: Vec<JobOutcome>, shutdown: &Shutdown) {
        let completes = outcomes
            .iter()
            .any(|o| !matches!(o, JobOutcome::Retry { .. }));
        self.record(outcomes, shutdown).await;
        if completes {
            self.replies_wake.notify_one();
        }
        if claimed >= self.config.batch_size {
            self.wake.notify_one();
        }
    }
}

/// Splits off the jobs that have no sender id when the provider needs one:
/// returns those to send and those refused, each in their order.
fn split_missing_sender<'a>(
    jobs: Vec<Routed<'a>>,
    needs_sender: bool,
    has_sender: impl Fn(&Job) -> bool,
) -> (Vec<Routed<'a>>, Vec<Routed<'a>>) {
    if !needs_sender {
        return (jobs, Vec::new());
    }
    jobs.into_iter().partition(|r| has_sender(r.job))
}

/// Logs a job's outcome and adds it to those to record.
fn push_logged(outcomes: &mut Vec<JobOutcome>, job: &Job, outcome: JobOutcome) {
    log_outcome(job, &outcome);
    outcomes.push(outcome);
}

/// Logs what becomes of a job sent (or not) this time.
fn log_outcome(job: &Job, outcome: &JobOutcome) {
    match outcome {
        JobOutcome::Sent {
            provider,
            provider_ref,
            ..
        } => {
            tracing::debug!(job = job.id, %provider, %provider_ref, "SMS sent")
        }
        JobOutcome::Failed { code, detail, .. } => {
            tracing::warn!(job = job.id, code = code.0, %detail, "SMS failed")
        }
        JobOutcome::Retry {
            at,
            provider_index,
            detail,
            ..
        } => {
            tracing::info!(job = job.id, retry_at = at, provider_index, %detail, "SMS will be retried")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use crate::config::Config;
    use crate::providers::{Provider, Providers};
    use crate::store::{NewMessage, NewRequest, RequestBody, Store, now_millis};
    use std::path::Path;
    use std::sync::Arc;
    use tokio::sync::Notify;

    /// A provider whose every SMS fails for a while.
    struct Down;

    #[async_trait::async_trait]
    impl Provider for Down {
        fn max_batch(&self) -> usize {
            10
        }

        async fn send(&self, batch: &[OutgoingSms]) -> Vec<Result<String, SendError>> {
            batch
                .iter()
                .map(|_| Err(SendError::transient("HTTP 503")))
                .collect()
        }
    }

    fn config(dir: &Path) -> Config {
        let text = format!(
            r#"
[smtp]
listen = "127.0.0.1:0"
hostname = "sms.example.com"
domains = ["sms.example.com"]

[store]
path = "{dir}/mail2sms.db"

[replies]
from = "mail2sms@sms.example.com"
transport = "file://{dir}/replies"

[dispatch]
retry_initial_ms = 1000
retry_max_ms = 2000

[accounts.a]
keyid = "a296464ce012b8ab710a"
senders = ["ops@a.example"]
providers = ["down"]

[providers.down]
type = "outbox"
path = "{dir}/outbox.jsonl"
"#,
            dir = dir.display()
        );
        Config::parse(&text, Path::new("test")).unwrap()
    }

    fn request() -> NewRequest {
        NewRequest {
            account: "a".into(),
            email_id: Some("c-1".into()),
            message_id: None,
            mail_from: "ops@a.example".into(),
            sender_id: None,
            tracker: None,
            email_ack: None,
            email_not: None,
            body: RequestBody::Messages(vec![NewMessage {
                tel: "+33600000001".into(),
                number: Ok("+33600000001".into()),
                text: "t".into(),
                duplicate_of: None,
                detail: None,
            }]),
            alert: None,
        }
    }

    #[tokio::test]
    async fn retry_times_count_on_the_dispatchers_clock() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let store: Arc<dyn Store> = crate::store::open(&config.store).await.unwrap();
        store.accept(request()).await.unwrap();
        let jobs = store.claim_jobs(now_millis(), 10).await.unwrap();
        assert_eq!(jobs.len(), 1);
        let providers: Providers = [("down".to_string(), Arc::new(Down) as Arc<dyn Provider>)]
            .into_iter()
            .collect();
        let wake = Arc::new(Notify::new());
        let mut dispatcher = Dispatcher::new(
            config.dispatch_setup(),
            store.clone(),
            providers,
            wake.clone(),
            wake,
        );
        // 2000-01-01T00:00:00Z, long before the system clock.
        let then: Millis = 946_684_800_000;
        dispatcher.store_clock = Clock::manual(jiff::Timestamp::from_millisecond(then).unwrap());
        let (_trigger, shutdown) = crate::shutdown::channel();
        dispatcher.send_batch(jobs, &shutdown).await;
        // Due at most `retry_max_ms` after the dispatcher's time.
        assert!(store.claim_jobs(then, 10).await.unwrap().is_empty());
        let due = store.claim_jobs(then + 2_000, 10).await.unwrap();
        assert_eq!(due.len(), 1, "retried on the dispatcher's clock");
    }
}
