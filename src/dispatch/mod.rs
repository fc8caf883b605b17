//! Sends queued SMS through the account's providers and records each
//! outcome; [`classify`] is the one place where a provider's answer becomes
//! sent, retry later (same or next provider) or failed.
//!
//! Retries are scheduled in the store (`next_attempt_at`), not in memory, so
//! they survive restarts; the backoff is exponential with full jitter.

pub mod breaker;
pub mod gates;
pub mod reply_sender;
pub mod routing;

use crate::codes::Code;
use crate::config::Config;
use crate::providers::{FailureKind, OutgoingSms, Providers, Reconciled, SendError};
use crate::shutdown::Shutdown;
use crate::store::{Job, JobOutcome, Millis, Store, now_millis};
use breaker::Breaker;
use gates::Gates;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use routing::Routing;
use serde::Deserialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, Semaphore};

/// What to do with an SMS whose send was interrupted (the daemon died while
/// the provider was being called) and that the provider cannot account for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnknownOutcome {
    /// Send it again: never lost, possibly received twice (the default).
    Resend,
    /// Report it failed (code 999): never twice, possibly lost.
    Fail,
}

/// The `[dispatch]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DispatchConfig {
    /// Jobs claimed from the store at once.
    pub batch_size: usize,
    /// Provider calls in flight at once.
    pub concurrency: usize,
    /// Tries per provider before failing over to the next one.
    pub max_attempts: u32,
    /// First retry delay, in milliseconds (doubles each try, with jitter).
    pub retry_initial_ms: u64,
    /// Longest retry delay, in milliseconds.
    pub retry_max_ms: u64,
    /// After this many seconds since the email arrived, a transient failure
    /// is final (code 999).
    pub max_age_secs: u64,
    /// How often the store is checked for due retries when nothing wakes
    /// the dispatcher, in milliseconds.
    pub poll_interval_ms: u64,
    /// Policy for interrupted sends the provider cannot account for.
    pub unknown_outcome: UnknownOutcome,
    /// Failed provider calls in a row after which the provider is put
    /// aside (circuit breaker); 0 never puts a provider aside.
    pub breaker_threshold: u32,
    /// How long a provider is put aside, in seconds; then calls are tried
    /// again, and one more failure puts it aside again.
    pub breaker_cooldown_secs: u64,
}

impl Default for DispatchConfig {
    fn default() -> Self {
        DispatchConfig {
            batch_size: 500,
            concurrency: 4,
            max_attempts: 5,
            retry_initial_ms: 2_000,
            retry_max_ms: 300_000,
            max_age_secs: 86_400,
            poll_interval_ms: 1_000,
            unknown_outcome: UnknownOutcome::Resend,
            breaker_threshold: 5,
            breaker_cooldown_secs: 30,
        }
    }
}

impl DispatchConfig {
    /// Checks the values; the error names the key.
    pub fn validate(&self) -> Result<(), (String, String)> {
        let zero = |k: &str| Err((format!("dispatch.{k}"), "must be at least 1".to_string()));
        if self.batch_size == 0 {
            return zero("batch_size");
        }
        if self.concurrency == 0 {
            return zero("concurrency");
        }
        if self.max_attempts == 0 {
            return zero("max_attempts");
        }
        if self.poll_interval_ms == 0 {
            return zero("poll_interval_ms");
        }
        if self.retry_max_ms < self.retry_initial_ms {
            return Err((
                "dispatch.retry_max_ms".into(),
                "must not be less than retry_initial_ms".into(),
            ));
        }
        Ok(())
    }

    /// The delay before try number `attempt + 1`.
    fn backoff(&self, attempt: u32) -> Millis {
        backoff(self.retry_initial_ms, self.retry_max_ms, attempt)
    }
}

/// How long an SMS waits when the store cannot debit its credits.
const STORE_RETRY_MS: Millis = 5_000;

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

/// Runs a store operation until it succeeds: an outcome that is not
/// recorded would make an SMS be sent again, or a reply be lost. After
/// shutdown is asked it goes on for [`SHUTDOWN_RECORD_GRACE`], then gives
/// up: what was being sent stays "sending" in the store and is settled at
/// the next start (`recover`, `requeue_interrupted_replies`), which is the
/// only way an SMS whose outcome could not be recorded may go out again
/// (with `dispatch.unknown_outcome = "resend"` and a provider that cannot
/// be asked).
pub async fn insist<F, Fut>(what: &str, shutdown: &Shutdown, mut operation: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), crate::store::StoreError>>,
{
    let mut delay = Duration::from_millis(100);
    let mut shutdown = shutdown.clone();
    let mut give_up_at: Option<tokio::time::Instant> = None;
    let mut failures = 0u32;
    while let Err(e) = operation().await {
        failures += 1;
        let now = tokio::time::Instant::now();
        if shutdown.is_fired() {
            let deadline = *give_up_at.get_or_insert(now + SHUTDOWN_RECORD_GRACE);
            if now >= deadline {
                tracing::error!(error = %e, failures, "cannot record {what}; stopping anyway, they are settled at the next start");
                return;
            }
        }
        // The first failure and then every tenth: a store that is down
        // for a while must not flood the log.
        if failures == 1 || failures.is_multiple_of(10) {
            tracing::error!(error = %e, failures, "cannot record {what}; retrying");
        }
        if give_up_at.is_some() {
            tokio::time::sleep(delay.min(Duration::from_secs(1))).await;
        } else {
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.wait() => {}
            }
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
    if failures > 0 {
        tracing::info!(failures, "{what} recorded after the store recovered");
    }
}

/// Decides what a provider's answer means for a job: the single place where
/// failures are sorted into retry, fail over, or final.
pub fn classify(
    job: &Job,
    provider: &str,
    provider_count: usize,
    result: Result<String, SendError>,
    config: &DispatchConfig,
    now: Millis,
) -> JobOutcome {
    let error = match result {
        Ok(provider_ref) => {
            return JobOutcome::Sent {
                job_id: job.id,
                provider: provider.to_string(),
                provider_ref,
            };
        }
        Err(e) => e,
    };
    let failed = |e: &SendError| JobOutcome::Failed {
        job_id: job.id,
        code: e.code,
        detail: format!("{provider}: {}", e.detail),
        provider: Some(provider.to_string()),
    };
    let next_provider = job.provider_index + 1;
    let has_next = (next_provider as usize) < provider_count;
    let fail_over = |e: &SendError| JobOutcome::Retry {
        job_id: job.id,
        at: now,
        provider_index: next_provider,
        detail: format!("{provider}: {}", e.detail),
        untried: false,
        held: false,
    };
    match error.kind {
        FailureKind::Permanent => failed(&error),
        FailureKind::ProviderUnusable if has_next => fail_over(&error),
        FailureKind::ProviderUnusable => failed(&error),
        // Never handed to the provider (an earlier request of its batch
        // failed): it waits like a first retry, without counting a try.
        FailureKind::NotAttempted => wait_untried(
            job,
            provider,
            provider_count,
            now + config.backoff(1),
            error.detail,
            config,
            now,
        ),
        FailureKind::Transient => {
            let too_old = now - job.age_from > (config.max_age_secs as Millis) * 1000;
            let tries_here = job.provider_attempts;
            if too_old || tries_here >= config.max_attempts {
                if has_next {
                    fail_over(&error)
                } else {
                    failed(&error)
                }
            } else {
                JobOutcome::Retry {
                    job_id: job.id,
                    at: now + config.backoff(tries_here),
                    provider_index: job.provider_index,
                    detail: format!("{provider}: {}", error.detail),
                    untried: false,
                    held: false,
                }
            }
        }
    }
}

/// What happens to a job whose provider is put aside until `until`
/// (circuit breaker) and was therefore not called: the next provider at
/// once if there is one, else a wait until the provider is tried again.
/// The attempt does not count; the age limit still applies.
pub fn classify_unavailable(
    job: &Job,
    provider: &str,
    provider_count: usize,
    until: Millis,
    config: &DispatchConfig,
    now: Millis,
) -> JobOutcome {
    let detail = "put aside after repeated failures".to_string();
    let next_provider = job.provider_index + 1;
    if (next_provider as usize) < provider_count {
        JobOutcome::Retry {
            job_id: job.id,
            at: now,
            provider_index: next_provider,
            detail: format!("{provider}: {detail}"),
            untried: true,
            held: false,
        }
    } else {
        wait_untried(job, provider, provider_count, until, detail, config, now)
    }
}

/// What happens to an SMS the adapter did not send because an earlier
/// request of its batch failed transiently (`cause`: that request's job and
/// outcome): it follows the failed request without counting a try, going
/// to the next provider with it, or retried when it is. So a provider's
/// outage moves a whole batch at the pace of its first request, and the
/// backoff still grows.
pub fn classify_not_attempted(
    job: &Job,
    provider: &str,
    provider_count: usize,
    cause: Option<(&Job, &JobOutcome)>,
    error: SendError,
    config: &DispatchConfig,
    now: Millis,
) -> JobOutcome {
    let next_provider = job.provider_index + 1;
    let has_next = (next_provider as usize) < provider_count;
    let moved_on = match cause {
        Some((cause_job, JobOutcome::Retry { provider_index, .. })) => {
            *provider_index != cause_job.provider_index
        }
        Some((_, JobOutcome::Failed { .. })) => true,
        _ => false,
    };
    match cause {
        _ if moved_on && has_next => JobOutcome::Retry {
            job_id: job.id,
            at: now,
            provider_index: next_provider,
            detail: format!("{provider}: {}", error.detail),
            untried: true,
            held: false,
        },
        Some((_, JobOutcome::Retry { at, .. })) if !moved_on => wait_untried(
            job,
            provider,
            provider_count,
            *at,
            error.detail,
            config,
            now,
        ),
        _ => wait_untried(
            job,
            provider,
            provider_count,
            now + config.backoff(job.provider_attempts.max(1)),
            error.detail,
            config,
            now,
        ),
    }
}

/// A job that was not handed to its provider this time waits until `at`
/// on the same provider without counting a try; past the age limit
/// (`dispatch.max_age_secs`, counted from reception or the end of a rules
/// hold) it goes to the next provider, or fails (999) on the last one, so
/// no wait goes on forever.
pub fn wait_untried(
    job: &Job,
    provider: &str,
    provider_count: usize,
    at: Millis,
    detail: String,
    config: &DispatchConfig,
    now: Millis,
) -> JobOutcome {
    let detail = format!("{provider}: {detail}");
    let too_old = now - job.age_from > (config.max_age_secs as Millis) * 1000;
    let next_provider = job.provider_index + 1;
    if !too_old {
        JobOutcome::Retry {
            job_id: job.id,
            at,
            provider_index: job.provider_index,
            detail,
            untried: true,
            held: false,
        }
    } else if (next_provider as usize) < provider_count {
        JobOutcome::Retry {
            job_id: job.id,
            at: now,
            provider_index: next_provider,
            detail,
            untried: true,
            held: false,
        }
    } else {
        JobOutcome::Failed {
            job_id: job.id,
            code: Code::INTERNAL,
            detail,
            provider: Some(provider.to_string()),
        }
    }
}

fn outgoing(job: &Job, instance: &str, default_sender_id: Option<&String>) -> OutgoingSms {
    OutgoingSms {
        job_id: job.id,
        reference: format!("{instance}-{}", job.id),
        to: job.number.clone(),
        text: job.text.clone(),
        sender_id: job.sender_id.clone().or_else(|| default_sender_id.cloned()),
        account: job.account.clone(),
        email_id: job.email_id.clone(),
        tracker: job.tracker.clone(),
        send_at: None,
    }
}

/// The SMS sender.
pub struct Dispatcher {
    /// Where jobs come from and outcomes go.
    store: Arc<dyn Store>,
    /// The configured providers, each with its breaker and rate limit.
    providers: BTreeMap<String, Slot>,
    /// Which providers each SMS goes through, in failover order.
    routing: Routing,
    /// Quiet hours, opt-outs and credits, checked right before each send.
    gates: Gates,
    /// The time quiet hours are checked at.
    clock: crate::clock::Clock,
    /// Each account's `default_sender_id`, used when a request has no
    /// `<emetteur>`.
    default_sender_ids: HashMap<String, String>,
    /// Batching, retries, policies.
    config: DispatchConfig,
    /// Rung when new jobs are queued.
    wake: Arc<Notify>,
    /// Rung when a request completes (its etatNot is queued).
    replies_wake: Arc<Notify>,
}

impl Dispatcher {
    /// A dispatcher for this configuration.
    pub fn new(
        config: &Config,
        store: Arc<dyn Store>,
        providers: Providers,
        wake: Arc<Notify>,
        replies_wake: Arc<Notify>,
    ) -> Dispatcher {
        Dispatcher {
            store,
            providers: providers
                .into_iter()
                .map(|(name, provider)| {
                    let limiter = config
                        .providers
                        .get(&name)
                        .and_then(|p| p.batch_rate_limit())
                        .map(|n| RateLimiter::direct(Quota::per_second(n)));
                    let breaker = Breaker::new(
                        config.dispatch.breaker_threshold,
                        (config.dispatch.breaker_cooldown_secs as Millis).saturating_mul(1000),
                    );
                    (
                        name,
                        Slot {
                            provider,
                            breaker,
                            limiter,
                        },
                    )
                })
                .collect(),
            routing: Routing::new(config),
            gates: Gates::new(config),
            clock: config.clock.clone(),
            default_sender_ids: config
                .accounts
                .iter()
                .filter_map(|(name, a)| Some((name.clone(), a.default_sender_id.clone()?)))
                .collect(),
            config: config.dispatch.clone(),
            wake,
            replies_wake,
        }
    }

    /// Sorts jobs by the provider each goes to now; a job whose account has
    /// no provider at its position (config validation prevents it) is failed
    /// rather than left "being sent" forever.
    fn by_provider<'a>(&'a self, jobs: &'a [Job]) -> (Vec<ProviderGroup<'a>>, Vec<JobOutcome>) {
        let mut groups: BTreeMap<&str, ProviderGroup<'a>> = BTreeMap::new();
        let mut unroutable = Vec::new();
        for job in jobs {
            let route = self
                .routing
                .providers(&job.account, &job.number)
                .and_then(|list| {
                    let name = list.get(job.provider_index as usize)?;
                    Some((name.as_str(), list.len(), self.providers.get(name)?))
                });
            match route {
                Some((name, count, slot)) => groups
                    .entry(name)
                    .or_insert_with(|| ProviderGroup {
                        name,
                        slot,
                        jobs: Vec::new(),
                        provider_counts: Vec::new(),
                    })
                    .push(job, count),
                None => unroutable.push(JobOutcome::Failed {
                    job_id: job.id,
                    code: Code::INTERNAL,
                    detail: format!(
                        "account {} has no provider number {}",
                        job.account,
                        job.provider_index + 1
                    ),
                    provider: None,
                }),
            }
        }
        (groups.into_values().collect(), unroutable)
    }

    /// Settles jobs a previous run left half-sent, then sends until shutdown.
    pub async fn run(self: Arc<Self>, mut shutdown: Shutdown) {
        let mut delay = Duration::from_millis(100);
        while let Err(e) = self.recover(&shutdown).await {
            tracing::error!(error = %e, "cannot settle interrupted sends; retrying");
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.wait() => return,
            }
            delay = (delay * 2).min(Duration::from_secs(10));
        }
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        while !shutdown.is_fired() {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let jobs = match self
                .store
                .claim_jobs(now_millis(), self.config.batch_size)
                .await
            {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim jobs");
                    Vec::new()
                }
            };
            if jobs.is_empty() {
                drop(permit);
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(poll) => {}
                    _ = shutdown.wait() => {}
                }
                continue;
            }
            let this = self.clone();
            let stop = shutdown.clone();
            tokio::spawn(async move {
                this.send_batch(jobs, &stop).await;
                drop(permit);
            });
        }
        // Let batches in flight finish recording their outcomes.
        let _ = permits.acquire_many(self.config.concurrency as u32).await;
    }

    /// Sends claimed jobs, grouped by provider, and records the outcomes.
    async fn send_batch(&self, jobs: Vec<Job>, shutdown: &Shutdown) {
        let claimed = jobs.len();
        let rules_now = self.clock.now().as_millisecond();
        let (jobs, screened) = self.gates.screen(jobs, rules_now);
        let (groups, mut outcomes) = self.by_provider(&jobs);
        outcomes.extend(screened);
        let instance = self.store.instance_id();
        for ProviderGroup {
            name,
            slot,
            jobs: group,
            provider_counts,
        } in groups
        {
            let provider = &slot.provider;
            let size = provider.max_batch().max(1);
            // An SMS without a sender id never reaches a provider that
            // needs one: the next provider is tried, and code 16 is
            // reported if there is none.
            let needs_sender = provider.requires_sender_id();
            let (group, provider_counts, refused) =
                split_missing_sender(group, provider_counts, needs_sender, |j| {
                    j.sender_id.is_some() || self.default_sender_ids.contains_key(&j.account)
                });
            for (job, count) in refused {
                let error = SendError::unusable(
                    Code::EMPTY_SENDER,
                    "this provider needs a sender id: no <emetteur> and no default_sender_id",
                );
                let outcome = classify(job, name, count, Err(error), &self.config, now_millis());
                log_outcome(job, &outcome);
                outcomes.push(outcome);
            }
            for (chunk, counts) in group.chunks(size).zip(provider_counts.chunks(size)) {
                // A provider put aside takes nothing: no credits are debited
                // for SMS that wait or go elsewhere.
                if let Some(until) = slot.breaker.open_until(now_millis()) {
                    let now = now_millis();
                    for (job, &count) in chunk.iter().zip(counts) {
                        let outcome =
                            classify_unavailable(job, name, count, until, &self.config, now);
                        log_outcome(job, &outcome);
                        outcomes.push(outcome);
                    }
                    continue;
                }
                // Credits are debited before the send (the store gives them
                // back with any outcome but "sent", the breaker's waits
                // included); an SMS the balance cannot cover is refused
                // (code 12). Debited before the breaker is asked, so that
                // its one probe after a pause is never spent on a chunk
                // that makes no call.
                let reserved = self.gates.reserve(&*self.store, chunk).await;
                let mut chunk_ok: Vec<&Job> = Vec::with_capacity(chunk.len());
                let mut counts_ok = Vec::with_capacity(chunk.len());
                for ((&job, &count), reservation) in chunk.iter().zip(counts).zip(reserved) {
                    match reservation {
                        Ok(_) => {
                            chunk_ok.push(job);
                            counts_ok.push(count);
                        }
                        // The store could not debit: the SMS waits without
                        // using up a try on a provider it never reached.
                        Err(e) if e.is_transient() => {
                            let now = now_millis();
                            let outcome = wait_untried(
                                job,
                                name,
                                count,
                                now + STORE_RETRY_MS,
                                e.detail,
                                &self.config,
                                now,
                            );
                            log_outcome(job, &outcome);
                            outcomes.push(outcome);
                        }
                        Err(e) => {
                            let outcome =
                                classify(job, name, count, Err(e), &self.config, now_millis());
                            log_outcome(job, &outcome);
                            outcomes.push(outcome);
                        }
                    }
                }
                if chunk_ok.is_empty() {
                    continue;
                }
                let (chunk, counts) = (&chunk_ok[..], &counts_ok[..]);
                if let Err(until) = slot.breaker.admit(now_millis()) {
                    let now = now_millis();
                    for (job, &count) in chunk.iter().zip(counts) {
                        let outcome =
                            classify_unavailable(job, name, count, until, &self.config, now);
                        log_outcome(job, &outcome);
                        outcomes.push(outcome);
                    }
                    continue;
                }
                let batch: Vec<OutgoingSms> = chunk
                    .iter()
                    .map(|j| outgoing(j, instance, self.default_sender_ids.get(&j.account)))
                    .collect();
                if let Some(limiter) = &slot.limiter {
                    limiter.until_ready().await;
                }
                let results = provider.send(&batch).await;
                if let Some(until) = slot.breaker.record(&results, now_millis()) {
                    tracing::warn!(
                        provider = name,
                        retry_in_ms = until - now_millis(),
                        "provider put aside after repeated failures"
                    );
                }
                let mut results = results.into_iter();
                let now = now_millis();
                // The request that stopped the batch (its first transient
                // failure) guides the SMS the adapter left unsent.
                let mut cause: Option<(&Job, JobOutcome)> = None;
                let mut not_attempted = Vec::new();
                for (&job, &count) in chunk.iter().zip(counts) {
                    let result = results.next().unwrap_or_else(|| {
                        Err(SendError::transient("provider gave no answer for this SMS"))
                    });
                    match result {
                        Err(e) if e.kind == FailureKind::NotAttempted => {
                            not_attempted.push((job, count, e));
                        }
                        result => {
                            let transient =
                                matches!(&result, Err(e) if e.kind == FailureKind::Transient);
                            let outcome = classify(job, name, count, result, &self.config, now);
                            if transient && cause.is_none() {
                                cause = Some((job, outcome.clone()));
                            }
                            log_outcome(job, &outcome);
                            outcomes.push(outcome);
                        }
                    }
                }
                for (job, count, error) in not_attempted {
                    let outcome = classify_not_attempted(
                        job,
                        name,
                        count,
                        cause.as_ref().map(|(j, o)| (*j, o)),
                        error,
                        &self.config,
                        now,
                    );
                    log_outcome(job, &outcome);
                    outcomes.push(outcome);
                }
            }
        }
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

    /// Records outcomes, insisting until the store takes them.
    async fn record(&self, outcomes: Vec<JobOutcome>, shutdown: &Shutdown) {
        insist("SMS outcomes", shutdown, || {
            self.store.record_outcomes(outcomes.clone())
        })
        .await;
    }

    /// Settles jobs left "being sent" by a crash: asks each provider what
    /// became of them, and applies [`UnknownOutcome`] where it cannot tell.
    pub async fn recover(&self, shutdown: &Shutdown) -> Result<(), crate::store::StoreError> {
        let jobs = self.store.in_flight_jobs().await?;
        if jobs.is_empty() {
            return Ok(());
        }
        tracing::warn!(
            count = jobs.len(),
            "settling SMS whose send was interrupted"
        );
        let now = now_millis();
        let (groups, mut outcomes) = self.by_provider(&jobs);
        let instance = self.store.instance_id();
        for ProviderGroup {
            name,
            slot,
            jobs: group,
            ..
        } in groups
        {
            let provider = &slot.provider;
            let batch: Vec<OutgoingSms> = group
                .iter()
                .map(|j| outgoing(j, instance, self.default_sender_ids.get(&j.account)))
                .collect();
            let states = provider.reconcile(&batch).await;
            for (job, state) in group.iter().zip(states) {
                outcomes.push(match state {
                    Reconciled::Sent(provider_ref) => JobOutcome::Sent {
                        job_id: job.id,
                        provider: name.to_string(),
                        provider_ref,
                    },
                    Reconciled::NotSent => JobOutcome::Retry {
                        job_id: job.id,
                        at: now,
                        provider_index: job.provider_index,
                        detail: "interrupted before it reached the provider".into(),
                        untried: true,
                        held: false,
                    },
                    Reconciled::Unknown => self.unknown(job, name, now),
                });
            }
        }
        self.record(outcomes, shutdown).await;
        self.replies_wake.notify_one();
        Ok(())
    }

    fn unknown(&self, job: &Job, provider: &str, now: Millis) -> JobOutcome {
        match self.config.unknown_outcome {
            UnknownOutcome::Resend => JobOutcome::Retry {
                job_id: job.id,
                at: now,
                provider_index: job.provider_index,
                detail: "send interrupted, outcome unknown: sending again".into(),
                untried: false,
                held: false,
            },
            UnknownOutcome::Fail => JobOutcome::Failed {
                job_id: job.id,
                code: Code::INTERNAL,
                detail: "send interrupted, outcome unknown".into(),
                provider: (!provider.is_empty()).then(|| provider.to_string()),
            },
        }
    }
}

/// Splits off the jobs that have no sender id when the provider needs one.
#[allow(clippy::type_complexity)]
fn split_missing_sender(
    jobs: Vec<&Job>,
    counts: Vec<usize>,
    needs_sender: bool,
    has_sender: impl Fn(&Job) -> bool,
) -> (Vec<&Job>, Vec<usize>, Vec<(&Job, usize)>) {
    if !needs_sender {
        return (jobs, counts, Vec::new());
    }
    let mut kept = Vec::with_capacity(jobs.len());
    let mut kept_counts = Vec::with_capacity(jobs.len());
    let mut refused = Vec::new();
    for (job, count) in jobs.into_iter().zip(counts) {
        if has_sender(job) {
            kept.push(job);
            kept_counts.push(count);
        } else {
            refused.push((job, count));
        }
    }
    (kept, kept_counts, refused)
}

/// A provider with what the dispatcher keeps about it.
struct Slot {
    /// The provider.
    provider: Arc<dyn crate::providers::Provider>,
    /// Puts it aside when it keeps failing.
    breaker: Breaker,
    /// Its `rate_limit` (requests per second), if any.
    limiter: Option<DefaultDirectRateLimiter>,
}

/// Jobs going to one provider.
struct ProviderGroup<'a> {
    /// The provider's name in the config.
    name: &'a str,
    /// The provider, its breaker and limiter.
    slot: &'a Slot,
    /// The jobs.
    jobs: Vec<&'a Job>,
    /// For each job, how many providers its account has: accounts sharing a
    /// provider may have failover lists of different lengths.
    provider_counts: Vec<usize>,
}

impl<'a> ProviderGroup<'a> {
    fn push(&mut self, job: &'a Job, provider_count: usize) {
        self.jobs.push(job);
        self.provider_counts.push(provider_count);
    }
}

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

    fn config() -> DispatchConfig {
        DispatchConfig {
            max_attempts: 3,
            retry_initial_ms: 1_000,
            retry_max_ms: 8_000,
            max_age_secs: 3_600,
            ..DispatchConfig::default()
        }
    }

    const NOW: Millis = 10_000_000;

    #[test]
    fn success_is_sent() {
        let o = classify(&job(1, 0, NOW), "p", 1, Ok("ref1".into()), &config(), NOW);
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
        match classify(&job(1, 0, NOW), "p", 2, Err(e), &config(), NOW) {
            JobOutcome::Failed { code, detail, .. } => {
                assert_eq!(code, Code::BAD_NUMBER);
                assert_eq!(detail, "p: invalid number");
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn transient_failure_is_retried_with_growing_backoff() {
        let c = config();
        for (attempt, low, high) in [(1, 500, 1_000), (2, 1_000, 2_000)] {
            match classify(
                &job(attempt, 0, NOW),
                "p",
                1,
                Err(SendError::transient("timeout")),
                &c,
                NOW,
            ) {
                JobOutcome::Retry {
                    at, provider_index, ..
                } => {
                    assert_eq!(provider_index, 0);
                    assert!(
                        (NOW + low..=NOW + high).contains(&at),
                        "{attempt}: {}",
                        at - NOW
                    );
                }
                other => panic!("{other:?}"),
            }
        }
        let capped = c.backoff(30);
        assert!((4_000..=8_000).contains(&capped), "{capped}");
    }

    #[test]
    fn transient_failures_fail_over_after_max_attempts_then_fail() {
        let c = config();
        let e = || Err(SendError::transient("HTTP 503"));
        match classify(&job(3, 0, NOW), "p", 2, e(), &c, NOW) {
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
                classify(&job(tries, 1, NOW), "q", 2, e(), &c, NOW),
                JobOutcome::Retry {
                    provider_index: 1,
                    ..
                }
            ));
        }
        match classify(&job(3, 1, NOW), "q", 2, e(), &c, NOW) {
            JobOutcome::Failed { code, .. } => assert_eq!(code, Code::INTERNAL),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn too_old_transient_failure_fails_over_then_is_final() {
        let received = NOW - 3_601_000;
        let old = |count| {
            classify(
                &job(1, 0, received),
                "p",
                count,
                Err(SendError::transient("t")),
                &config(),
                NOW,
            )
        };
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
        match classify(&job(5, 0, NOW), "p", 1, not_sent(), &config(), NOW) {
            JobOutcome::Retry {
                untried: true,
                held: false,
                provider_index: 0,
                at,
                ..
            } => assert!((NOW + 500..=NOW + 1_000).contains(&at), "{}", at - NOW),
            other => panic!("{other:?}"),
        }
        // Past the age limit: the next provider, or 999 on the last.
        let old = NOW - 3_601_000;
        assert!(matches!(
            classify(&job(1, 0, old), "p", 2, not_sent(), &config(), NOW),
            JobOutcome::Retry {
                provider_index: 1,
                ..
            }
        ));
        assert!(matches!(
            classify(&job(1, 0, old), "p", 1, not_sent(), &config(), NOW),
            JobOutcome::Failed {
                code: Code::INTERNAL,
                ..
            }
        ));
        // The breaker's waits end the same way on the last provider.
        assert!(matches!(
            classify_unavailable(&job(1, 0, old), "p", 1, NOW + 10, &config(), NOW),
            JobOutcome::Failed { .. }
        ));
        assert!(matches!(
            classify_unavailable(&job(1, 0, old), "p", 2, NOW + 10, &config(), NOW),
            JobOutcome::Retry {
                provider_index: 1,
                untried: true,
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
            classify(&job(1, 0, NOW), "p", 2, Err(e.clone()), &config(), NOW),
            JobOutcome::Retry {
                provider_index: 1,
                at: NOW,
                ..
            }
        ));
        assert!(matches!(
            classify(&job(1, 1, NOW), "q", 2, Err(e), &config(), NOW),
            JobOutcome::Failed {
                code: Code::NO_CREDIT,
                ..
            }
        ));
    }
}
