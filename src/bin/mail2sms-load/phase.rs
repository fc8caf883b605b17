//! A phase: the messages of a plan, sent over concurrent connections.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::client::{Outcome, send_one};
use crate::message::MsgGen;

/// What one phase (the warmup or the measured run) sent.
pub(crate) struct Phase {
    /// Every message's outcome, sorted by index.
    pub(crate) outcomes: Vec<Outcome>,
    /// When the phase began: the start of its wall time and of its rate schedule.
    pub(crate) started: Instant,
    /// When the last worker ended: the end of the wall time when no reply came.
    pub(crate) finished: Instant,
}

/// `--resend`: the (index, emailId) pairs of the messages to send again.
pub(crate) type Resend = Arc<Vec<(usize, String)>>;

/// Which messages a phase sends, and how fast.
#[derive(Clone)]
pub(crate) struct Plan {
    /// Index of the first generated message (`first..first+count`).
    pub(crate) first: usize,
    /// How many messages at most.
    pub(crate) count: usize,
    /// `--resend`: the exact (index, emailId) pairs to send instead of
    /// generated ones (`first` is then ignored).
    pub(crate) list: Option<Resend>,
    /// `--rate`: messages started per second, over all connections.
    pub(crate) rate: Option<f64>,
    /// `--duration`: no message is started after this long.
    pub(crate) duration: Option<Duration>,
}

impl Plan {
    /// The `pos`-th message of the plan: its index and emailId.
    fn message(&self, g: &MsgGen, pos: usize) -> (usize, String) {
        match &self.list {
            Some(list) => list[pos].clone(),
            None => (self.first + pos, g.email_id(self.first + pos)),
        }
    }
}

/// Send the messages of `plan` over `conns` concurrent connections.
pub(crate) async fn run_phase(
    label: &'static str,
    addr: SocketAddr,
    gen_: Arc<MsgGen>,
    plan: Plan,
    conns: usize,
) -> Phase {
    let count = plan.list.as_ref().map_or(plan.count, |l| l.len());
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let stop_at = plan.duration.map(|d| started + d);

    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.tick().await;
            loop {
                tick.tick().await;
                let d = done.load(Ordering::Relaxed);
                eprintln!(
                    "  [{label}] {d}/{count} sent, {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
        })
    };

    let mut workers = Vec::with_capacity(conns);
    for _ in 0..conns.min(count.max(1)) {
        let next = next.clone();
        let done = done.clone();
        let g = gen_.clone();
        let plan = plan.clone();
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let pos = next.fetch_add(1, Ordering::Relaxed);
                if pos >= count {
                    break;
                }
                if let Some(rate) = plan.rate {
                    let due = started + Duration::from_secs_f64(pos as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                if stop_at.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
                let (idx, email_id) = plan.message(&g, pos);
                let data = g.data(idx, &email_id);
                let status = send_one(addr, &g.from, &g.to, &data).await;
                done.fetch_add(1, Ordering::Relaxed);
                out.push(Outcome {
                    idx,
                    email_id,
                    status,
                });
            }
            out
        }));
    }
    let mut outcomes = Vec::with_capacity(count);
    for w in workers {
        match w.await {
            Ok(mut v) => outcomes.append(&mut v),
            Err(e) => eprintln!("worker panicked: {e}"),
        }
    }
    let finished = Instant::now();
    progress.abort();
    outcomes.sort_by_key(|o| o.idx);
    Phase {
        outcomes,
        started,
        finished,
    }
}
