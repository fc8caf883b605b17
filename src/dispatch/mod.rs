//! Sends queued SMS through the account's providers and records each
//! outcome; [`classify`](classify::classify) is the one place where a
//! provider's answer becomes sent, retry later (same or next provider) or
//! failed.
//!
//! - [`classify`]: the classify family, pure functions over an
//!   [`Attempt`](classify::Attempt).
//! - [`send`]: one claimed batch, in named stages.
//! - [`retry`]: the backoff and [`insist`](retry::insist).
//! - [`routing`], [`breaker`], [`gates`]: which providers, which are put
//!   aside, what the account rules hold back right before a send.
//!
//! Retries are scheduled in the store (`next_attempt_at`), not in memory, so
//! they survive restarts; the backoff is exponential with full jitter.

pub mod breaker;
pub mod classify;
pub mod gates;
pub mod retry;
pub mod routing;
mod send;

use crate::clock::Clock;
use crate::codes::Code;
use crate::providers::ProviderConfig;
use crate::providers::{OutgoingSms, Providers, Reconciled};
use crate::rules::AccountConfig;
use crate::shutdown::Shutdown;
use crate::store::{Job, JobOutcome, Millis, RetryKind, Store};
use breaker::Breaker;
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
    pub(crate) fn backoff(&self, attempt: u32) -> Millis {
        retry::backoff(self.retry_initial_ms, self.retry_max_ms, attempt)
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
    gates: gates::Gates,
    /// The time the rules see: quiet hours are checked at it.
    clock: Clock,
    /// The time of the store's timeline: claims, retry times, the age
    /// limit and the breaker count in it. The store stamps jobs with the
    /// system clock, so this is the system clock (a test moving the rules'
    /// clock to another day must not stop claims); it becomes
    /// `config.clock` when the store takes a `Clock` too.
    store_clock: Clock,
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

/// What the dispatcher is built from: its own table, the accounts and
/// routes it sends for, the providers' settings and the clock quiet hours
/// are read on — never the whole configuration.
#[derive(Clone, Copy)]
pub struct Setup<'a> {
    /// `[dispatch]`: retries, failover, breaker, batches.
    pub dispatch: &'a DispatchConfig,
    /// The accounts, by name: provider lists, default sender ids, gates.
    pub accounts: &'a BTreeMap<String, AccountConfig>,
    /// `[[routes]]`: prefixes whose providers go first.
    pub routes: &'a [routing::RouteConfig],
    /// The providers' settings, by name (their batch rate limits).
    pub providers: &'a BTreeMap<String, ProviderConfig>,
    /// The time quiet hours are read on.
    pub clock: &'a Clock,
}

impl Dispatcher {
    /// A dispatcher for this setup.
    pub fn new(
        config: Setup<'_>,
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
            routing: Routing::new(config.accounts, config.routes),
            gates: gates::Gates::new(config.accounts),
            clock: config.clock.clone(),
            store_clock: Clock::default(),
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

    /// The current time on the store's timeline.
    fn now(&self) -> Millis {
        self.store_clock.now().as_millisecond()
    }

    /// What the provider is handed for `job`: its sender id, or the
    /// account's default one.
    fn outgoing(&self, job: &Job) -> OutgoingSms {
        OutgoingSms {
            job_id: job.id,
            reference: format!("{}-{}", self.store.instance_id(), job.id),
            to: job.number.clone(),
            text: job.text.clone(),
            sender_id: job
                .sender_id
                .clone()
                .or_else(|| self.default_sender_ids.get(&job.account).cloned()),
            account: job.account.clone(),
            email_id: job.email_id.clone(),
            tracker: job.tracker.clone(),
            send_at: None,
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
                Some((name, provider_count, slot)) => groups
                    .entry(name)
                    .or_insert_with(|| ProviderGroup {
                        name,
                        slot,
                        jobs: Vec::new(),
                    })
                    .jobs
                    .push(Routed {
                        job,
                        provider_count,
                    }),
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
        // Nothing is sent before the interrupted sends are settled; a
        // shutdown asked meanwhile leaves them to the next start.
        let settled = retry::persist(
            "the settlement of interrupted sends",
            &shutdown,
            Duration::ZERO,
            || self.recover(&shutdown),
        )
        .await;
        if !settled {
            return;
        }
        let permits = Arc::new(Semaphore::new(self.config.concurrency));
        let poll = Duration::from_millis(self.config.poll_interval_ms);
        while !shutdown.is_fired() {
            let Ok(permit) = permits.clone().acquire_owned().await else {
                break;
            };
            let jobs = match self
                .store
                .claim_jobs(self.now(), self.config.batch_size)
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

    /// Records outcomes, insisting until the store takes them.
    async fn record(&self, outcomes: Vec<JobOutcome>, shutdown: &Shutdown) {
        retry::insist("SMS outcomes", shutdown, || {
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
        let now = self.now();
        let (groups, mut outcomes) = self.by_provider(&jobs);
        for group in groups {
            let batch: Vec<OutgoingSms> = group.jobs.iter().map(|r| self.outgoing(r.job)).collect();
            let states = group.slot.provider.reconcile(&batch).await;
            for (routed, state) in group.jobs.iter().zip(states) {
                outcomes.push(self.reconciled(routed.job, group.name, state, now));
            }
        }
        self.record(outcomes, shutdown).await;
        self.replies_wake.notify_one();
        Ok(())
    }

    /// The outcome of an interrupted send, from what its provider knows.
    fn reconciled(&self, job: &Job, provider: &str, state: Reconciled, now: Millis) -> JobOutcome {
        match state {
            Reconciled::Sent(provider_ref) => JobOutcome::Sent {
                job_id: job.id,
                provider: provider.to_string(),
                provider_ref,
            },
            Reconciled::NotSent => JobOutcome::Retry {
                job_id: job.id,
                at: now,
                provider_index: job.provider_index,
                detail: "interrupted before it reached the provider".into(),
                kind: RetryKind::Untried,
            },
            Reconciled::Unknown => self.unknown(job, provider, now),
        }
    }

    /// An interrupted send its provider cannot account for, settled by
    /// `dispatch.unknown_outcome`.
    fn unknown(&self, job: &Job, provider: &str, now: Millis) -> JobOutcome {
        match self.config.unknown_outcome {
            UnknownOutcome::Resend => JobOutcome::Retry {
                job_id: job.id,
                at: now,
                provider_index: job.provider_index,
                detail: "send interrupted, outcome unknown: sending again".into(),
                kind: RetryKind::Counted,
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

/// A provider with what the dispatcher keeps about it.
struct Slot {
    /// The provider.
    provider: Arc<dyn crate::providers::Provider>,
    /// Puts it aside when it keeps failing.
    breaker: Breaker,
    /// Its `rate_limit` (requests per second), if any.
    limiter: Option<DefaultDirectRateLimiter>,
}

/// A job with the length of its account's provider list.
#[derive(Debug, Clone, Copy)]
struct Routed<'a> {
    /// The job.
    job: &'a Job,
    /// How many providers its account has: accounts sharing a provider may
    /// have failover lists of different lengths.
    provider_count: usize,
}

/// Jobs going to one provider.
struct ProviderGroup<'a> {
    /// The provider's name in the config.
    name: &'a str,
    /// The provider, its breaker and limiter.
    slot: &'a Slot,
    /// The jobs, in the order they were claimed.
    jobs: Vec<Routed<'a>>,
}
