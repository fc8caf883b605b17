//! Sends the etatAck / etatNot emails and alert failure notices queued in
//! the store, retrying
//! transient failures with backoff; a reply is never dropped: a permanent
//! failure stays in the store with its error.
//!
//! At most `replies.concurrency` replies are in flight. Each is claimed when
//! a slot is free and its outcome recorded as soon as its own delivery ends,
//! with no batch barrier (issue 8): a `kill -9` can make only the replies in
//! flight go out again (with the same Message-ID), and a slow or failing
//! server delays only its own replies.

use crate::clock::Clock;
use crate::dispatch::retry::{backoff, insist};
use crate::logsafe::Safe;
use crate::replies::{Mailer, RepliesConfig};
use crate::shutdown::Shutdown;
use crate::store::{Millis, PendingReply, ReplyOutcome, Store, StoreError};
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio::time::Instant;

/// How often due retries are looked for when nothing wakes the sender.
const POLL: Duration = Duration::from_secs(1);
/// The first wait after a store error (a failed claim, an outcome not
/// recorded); it doubles up to [`STORE_RETRY_MAX`].
const STORE_RETRY_INITIAL: Duration = Duration::from_millis(100);
/// The longest wait between two tries of a failing store operation.
const STORE_RETRY_MAX: Duration = Duration::from_secs(10);
/// While a store operation keeps failing, one log line per this long.
const STORE_ERROR_LOG_EVERY: Duration = Duration::from_secs(60);

/// The three store operations the reply sender uses, so that it can be
/// tested against a store that fails on demand.
#[async_trait]
pub trait ReplyQueue: Send + Sync + 'static {
    /// [`Store::requeue_interrupted_replies`].
    async fn requeue_interrupted(&self) -> Result<u64, StoreError>;
    /// [`Store::claim_replies`].
    async fn claim(&self, now: Millis, limit: usize) -> Result<Vec<PendingReply>, StoreError>;
    /// [`Store::record_replies`].
    async fn record(&self, outcomes: Vec<(i64, ReplyOutcome)>) -> Result<(), StoreError>;
}

#[async_trait]
impl<S: Store + ?Sized> ReplyQueue for S {
    async fn requeue_interrupted(&self) -> Result<u64, StoreError> {
        self.requeue_interrupted_replies().await
    }

    async fn claim(&self, now: Millis, limit: usize) -> Result<Vec<PendingReply>, StoreError> {
        self.claim_replies(now, limit).await
    }

    async fn record(&self, outcomes: Vec<(i64, ReplyOutcome)>) -> Result<(), StoreError> {
        self.record_replies(outcomes).await
    }
}

/// The reply email sender.
pub struct ReplySender<Q: ?Sized = dyn Store> {
    /// Where replies come from and their outcomes go.
    queue: Arc<Q>,
    /// How they are sent.
    mailer: Arc<Mailer>,
    /// Rung when replies are queued.
    wake: Arc<Notify>,
    /// First retry delay, in milliseconds (`replies.retry_initial_ms`).
    retry_initial_ms: u64,
    /// The most replies in flight at once (`replies.concurrency`).
    concurrency: usize,
    /// The time of the store's timeline: claims and retry times count in
    /// it. The store stamps replies with the system clock, so this is the
    /// system clock until the store takes a `Clock` too.
    clock: Clock,
}

impl<Q: ReplyQueue + ?Sized> ReplySender<Q> {
    /// A sender over this queue (the store) and mailer.
    pub fn new(
        config: &RepliesConfig,
        queue: Arc<Q>,
        mailer: Arc<Mailer>,
        wake: Arc<Notify>,
    ) -> ReplySender<Q> {
        ReplySender {
            queue,
            mailer,
            wake,
            retry_initial_ms: config.retry_initial_ms.max(1),
            concurrency: config.concurrency.max(1),
            clock: Clock::default(),
        }
    }

    /// Sends replies until shutdown, after requeueing those a previous run
    /// left half-sent and clearing what its crash left in the transport.
    /// At shutdown, the replies in flight are finished and recorded.
    pub async fn run(self, mut shutdown: Shutdown) {
        insist("interrupted replies", &shutdown, || async {
            self.queue.requeue_interrupted().await.map(|_| ())
        })
        .await;
        self.mailer.prepare().await;
        let mut in_flight = JoinSet::new();
        let mut pacing = Pacing::new();
        while !shutdown.is_fired() {
            let free = self.concurrency - in_flight.len();
            if pacing.due && free > 0 {
                let now = self.clock.now().as_millisecond();
                let claimed = self.queue.claim(now, free).await;
                for reply in pacing.claimed(claimed, free) {
                    in_flight.spawn(self.deliver(reply, shutdown.clone()));
                }
            }
            let free = self.concurrency - in_flight.len();
            tokio::select! {
                _ = shutdown.wait() => {}
                Some(done) = in_flight.join_next(), if !in_flight.is_empty() => log_panic(done),
                _ = self.wake.notified(), if free > 0 && !pacing.backing_off() => pacing.due = true,
                _ = tokio::time::sleep_until(pacing.next_look), if free > 0 => pacing.due = true,
            }
        }
        while let Some(done) = in_flight.join_next().await {
            log_panic(done);
        }
    }

    /// One reply's whole life in flight: sent, then its outcome recorded.
    fn deliver(
        &self,
        reply: PendingReply,
        shutdown: Shutdown,
    ) -> impl Future<Output = ()> + Send + 'static {
        let (queue, mailer, clock) = (self.queue.clone(), self.mailer.clone(), self.clock.clone());
        let retry_initial_ms = self.retry_initial_ms;
        async move {
            let id = reply.id;
            let outcome = send_one(&mailer, reply, retry_initial_ms, &clock).await;
            record(&*queue, id, outcome, shutdown).await;
        }
    }
}

/// When the sender claims replies: as soon as a slot is free while replies
/// may be due, else when woken or at the next look.
struct Pacing {
    /// Whether replies may be due right now: the last claim filled every
    /// free slot (more may wait), or the sender was woken or polled.
    due: bool,
    /// When to look again without being woken: the poll, or the end of a
    /// failed claim's backoff.
    next_look: Instant,
    /// Failed claims in a row: their backoff and logging.
    errors: StoreRetry,
}

impl Pacing {
    /// Claims due at once.
    fn new() -> Pacing {
        Pacing {
            due: true,
            next_look: Instant::now(),
            errors: StoreRetry::default(),
        }
    }

    /// Takes in the result of a claim of `asked` replies and returns the
    /// replies to send.
    fn claimed(
        &mut self,
        result: Result<Vec<PendingReply>, StoreError>,
        asked: usize,
    ) -> Vec<PendingReply> {
        match result {
            Ok(replies) => {
                self.errors.succeeded("claim replies");
                self.due = replies.len() == asked;
                self.next_look = Instant::now() + POLL;
                replies
            }
            Err(e) => {
                self.due = false;
                self.next_look = Instant::now() + self.errors.failed("claim replies", &e);
                Vec::new()
            }
        }
    }

    /// Whether the last claim failed: wakes do not cut its backoff short.
    fn backing_off(&self) -> bool {
        self.errors.failing()
    }
}

/// Logs a delivery task that panicked (its reply stays "being sent" until
/// the next start requeues it).
fn log_panic(done: Result<(), tokio::task::JoinError>) {
    if let Err(e) = done {
        tracing::error!(error = %e, "a reply delivery task failed");
    }
}

/// Records one reply's outcome, retrying with backoff until the store takes
/// it: the reply is never sent again because its outcome could not be
/// recorded. At shutdown it gives up; the reply then stays "being sent" and
/// the next start requeues it (the one repeat a crash can cause, too).
async fn record<Q: ReplyQueue + ?Sized>(
    queue: &Q,
    id: i64,
    outcome: ReplyOutcome,
    mut shutdown: Shutdown,
) {
    let mut errors = StoreRetry::default();
    loop {
        match queue.record(vec![(id, outcome.clone())]).await {
            Ok(()) => {
                errors.succeeded("record a reply's outcome");
                return;
            }
            Err(e) if shutdown.is_fired() => {
                tracing::warn!(
                    reply = id,
                    error = %e,
                    "cannot record a reply's outcome at shutdown; it is requeued at the next start"
                );
                return;
            }
            Err(e) => {
                let delay = errors.failed("record a reply's outcome", &e);
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = shutdown.wait() => {}
                }
            }
        }
    }
}

/// Backoff and bounded logging for a store operation that keeps failing:
/// the first failure is logged, then one line a minute with the count.
#[derive(Default)]
struct StoreRetry {
    /// Failures in a row so far.
    failures: u32,
    /// When a failure was last logged (`None`: not yet in this run of
    /// failures).
    logged_at: Option<Instant>,
}

impl StoreRetry {
    /// Counts a failure of `what`, logs it if due, and says how long to
    /// wait before trying again.
    fn failed(&mut self, what: &str, error: &StoreError) -> Duration {
        self.failures = self.failures.saturating_add(1);
        let due = self
            .logged_at
            .is_none_or(|at| at.elapsed() >= STORE_ERROR_LOG_EVERY);
        if due {
            self.logged_at = Some(Instant::now());
            tracing::error!(error = %error, failures = self.failures, "cannot {what}; retrying");
        }
        let doubled = STORE_RETRY_INITIAL.saturating_mul(1 << (self.failures - 1).min(16));
        doubled.min(STORE_RETRY_MAX)
    }

    /// Ends a run of failures of `what` (logged if there was one).
    fn succeeded(&mut self, what: &str) {
        if self.failures > 0 {
            tracing::info!(failures = self.failures, "could {what} again");
        }
        *self = StoreRetry::default();
    }

    /// Whether the last try failed (the caller is backing off).
    fn failing(&self) -> bool {
        self.failures > 0
    }
}

/// Sends one reply. A transient failure is retried for as long as it takes
/// (backoff capped at one hour): a reply is never dropped. A permanent one
/// stays in the store as failed, with its error; a retry's time is taken
/// from `clock` when the send ends.
async fn send_one(
    mailer: &Mailer,
    reply: PendingReply,
    retry_initial_ms: u64,
    clock: &Clock,
) -> ReplyOutcome {
    match mailer.send(&reply.key, &reply.to, &reply.content).await {
        Ok(()) => ReplyOutcome::Sent,
        Err(e) if e.is_transient() => {
            tracing::warn!(reply = reply.id, to = %Safe(&reply.to), error = %e, "reply failed, will retry");
            ReplyOutcome::Retry {
                at: clock.now().as_millisecond()
                    + backoff(retry_initial_ms, 3_600_000, reply.attempts),
                error: e.to_string(),
            }
        }
        Err(e) => {
            tracing::error!(reply = reply.id, to = %Safe(&reply.to), error = %e, "reply failed for good");
            ReplyOutcome::Failed {
                error: e.to_string(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::AckCode;
    use crate::store::ReplyContent;
    use std::collections::HashSet;
    use std::path::Path;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A reply queue in memory whose claims and records fail on demand.
    #[derive(Default)]
    struct FakeQueue {
        /// Replies waiting to be claimed.
        pending: Mutex<Vec<PendingReply>>,
        /// Ids claimed and not yet recorded ("being sent").
        sending: Mutex<HashSet<i64>>,
        /// Every outcome recorded, in order.
        recorded: Mutex<Vec<(i64, ReplyOutcome)>>,
        /// Claims tried.
        claims: AtomicUsize,
        /// Records tried.
        records: AtomicUsize,
        /// How many claims fail before one succeeds.
        failing_claims: AtomicUsize,
        /// How many records fail before one succeeds.
        failing_records: AtomicUsize,
    }

    /// Takes one from `counter` if it is not 0: whether this call fails.
    fn fails(counter: &AtomicUsize) -> bool {
        counter
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok()
    }

    #[async_trait]
    impl ReplyQueue for FakeQueue {
        async fn requeue_interrupted(&self) -> Result<u64, StoreError> {
            Ok(0)
        }

        async fn claim(&self, _: Millis, limit: usize) -> Result<Vec<PendingReply>, StoreError> {
            self.claims.fetch_add(1, Ordering::SeqCst);
            if fails(&self.failing_claims) {
                return Err(StoreError::Unavailable("database or disk is full".into()));
            }
            let mut pending = self.pending.lock().unwrap();
            let take = limit.min(pending.len());
            let claimed: Vec<_> = pending.drain(..take).collect();
            let mut sending = self.sending.lock().unwrap();
            sending.extend(claimed.iter().map(|r| r.id));
            Ok(claimed)
        }

        async fn record(&self, outcomes: Vec<(i64, ReplyOutcome)>) -> Result<(), StoreError> {
            self.records.fetch_add(1, Ordering::SeqCst);
            if fails(&self.failing_records) {
                return Err(StoreError::Unavailable("database or disk is full".into()));
            }
            let mut sending = self.sending.lock().unwrap();
            for (id, _) in &outcomes {
                assert!(sending.remove(id), "reply {id} recorded but not claimed");
            }
            self.recorded.lock().unwrap().extend(outcomes);
            Ok(())
        }
    }

    fn ack(id: i64) -> PendingReply {
        PendingReply {
            id,
            key: format!("1700000000000.{id}"),
            to: "ack@client.example".into(),
            attempts: 1,
            content: ReplyContent::Ack {
                email_id: Some(format!("t-{id}")),
                code: AckCode::Processed,
            },
        }
    }

    /// A mailer whose sendmail appends each message to `out`: every
    /// delivery is counted, unlike `file://` whose rewrite hides repeats.
    fn appending_mailer(dir: &Path, out: &Path) -> (RepliesConfig, Arc<Mailer>) {
        use std::os::unix::fs::PermissionsExt;
        let script = dir.join("sendmail");
        std::fs::write(&script, format!("#!/bin/sh\ncat >> '{}'\n", out.display()))
            .expect("script");
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        let config: RepliesConfig = toml::from_str(&format!(
            "from = \"sms@gw.example\"\ntransport = \"sendmail://{}\"\n",
            script.display()
        ))
        .expect("config");
        let mailer = Arc::new(Mailer::new(&config).expect("mailer"));
        (config, mailer)
    }

    /// Polls `f` every 10 ms for up to 15 s.
    async fn eventually(mut f: impl FnMut() -> bool) {
        for _ in 0..1_500 {
            if f() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("never happened");
    }

    /// Issue 8: an outcome the store cannot take is recorded again until it
    /// is, and the reply is not sent a second time meanwhile.
    #[tokio::test]
    async fn an_outcome_not_recorded_is_retried_and_the_reply_not_sent_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("delivered");
        let (config, mailer) = appending_mailer(dir.path(), &out);
        let queue = Arc::new(FakeQueue::default());
        queue.pending.lock().unwrap().push(ack(1));
        queue.failing_records.store(3, Ordering::SeqCst);
        let (trigger, shutdown) = crate::shutdown::channel();
        let sender = ReplySender::new(&config, queue.clone(), mailer, Arc::new(Notify::new()));
        let task = tokio::spawn(sender.run(shutdown));

        eventually(|| !queue.recorded.lock().unwrap().is_empty()).await;
        assert_eq!(
            *queue.recorded.lock().unwrap(),
            [(1, ReplyOutcome::Sent)],
            "recorded once it could be"
        );
        assert_eq!(
            queue.records.load(Ordering::SeqCst),
            4,
            "3 failures, then done"
        );
        let delivered = std::fs::read_to_string(&out).expect("delivered");
        assert_eq!(
            delivered
                .matches("Message-ID: <1700000000000.1@gw.example>")
                .count(),
            1,
            "sent once:\n{delivered}"
        );
        trigger.fire();
        task.await.expect("sender stops");
    }

    /// Issue 8: a failing claim backs off, even when the sender is woken
    /// again and again meanwhile.
    #[tokio::test]
    async fn a_failing_claim_backs_off_even_when_woken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, mailer) = appending_mailer(dir.path(), &dir.path().join("delivered"));
        let queue = Arc::new(FakeQueue::default());
        queue.failing_claims.store(usize::MAX, Ordering::SeqCst);
        let wake = Arc::new(Notify::new());
        let (trigger, shutdown) = crate::shutdown::channel();
        let sender = ReplySender::new(&config, queue.clone(), mailer, wake.clone());
        let task = tokio::spawn(sender.run(shutdown));
        // About 1 000 wakes during the first 1.5 s, in which the backoff
        // allows 5 claims (after 0, 0.1, 0.3, 0.7 and 1.5 s).
        for _ in 0..1_000 {
            wake.notify_one();
            tokio::time::sleep(Duration::from_micros(1_500)).await;
        }
        trigger.fire();
        task.await.expect("sender stops");
        let claims = queue.claims.load(Ordering::SeqCst);
        assert!((1..=12).contains(&claims), "{claims} claims");
    }
}
