//! The measured run's figures: throughput, latencies, outbox anomalies.

use std::collections::HashSet;
use std::time::Instant;

use crate::client::Status;
use crate::latency::{Lat, lat};
use crate::outbox::TailState;
use crate::phase::Phase;
use crate::tally::Tally;

/// What the measured run achieved.
pub(crate) struct Figures {
    /// Messages answered `250`.
    pub(crate) accepted: usize,
    /// Accepted messages whose SMS never reached the outbox within the drain timeout.
    pub(crate) missing: usize,
    /// Accepted messages whose SMS reached the outbox.
    pub(crate) sms_seen: usize,
    /// SMS lines for measured messages that were not accepted.
    pub(crate) unexpected: usize,
    /// Outbox emailIds without this run's prefix: another run's or client's.
    pub(crate) foreign: usize,
    /// Seconds from the phase's start to the last end-of-DATA reply.
    pub(crate) send_wall: f64,
    /// Accepted emails per second over `send_wall`.
    pub(crate) accepted_per_s: f64,
    /// Seconds from the phase's start to the last SMS seen (none: no SMS).
    pub(crate) sms_wall: Option<f64>,
    /// SMS seen per second over `sms_wall`.
    pub(crate) sms_per_s: f64,
    /// End of DATA to its `250`.
    pub(crate) reply_latency: Option<Lat>,
    /// End of DATA to the SMS line in the outbox.
    pub(crate) sms_latency: Option<Lat>,
}

impl Figures {
    /// The figures of phase `p` (tallied as `t`), given what the outbox
    /// showed (`st`) and how many accepted SMS are `missing`; `prefix` is
    /// this run's emailId prefix.
    pub(crate) fn of(
        p: &Phase,
        t: &Tally,
        st: &TailState,
        missing: usize,
        prefix: &str,
    ) -> Figures {
        // Latencies.
        let mut reply_lat = Vec::with_capacity(t.accepted.len());
        let mut sms_lat = Vec::with_capacity(t.accepted.len());
        let mut last_sms: Option<Instant> = None;
        for &i in &t.accepted {
            let o = &p.outcomes[i];
            if let Status::Done {
                data_end, reply_at, ..
            } = o.status
            {
                reply_lat.push(reply_at.duration_since(data_end));
                if let Some(&seen) = st.seen.get(&o.email_id) {
                    sms_lat.push(seen.saturating_duration_since(data_end));
                    last_sms = Some(last_sms.map_or(seen, |l| l.max(seen)));
                }
            }
        }
        let (unexpected, foreign) = anomalies(p, t, st, prefix);

        let accepted = t.accepted.len();
        let sms_seen = accepted - missing;
        let send_wall = t
            .last_reply
            .unwrap_or(p.finished)
            .duration_since(p.started)
            .as_secs_f64();
        let accepted_per_s = if send_wall > 0.0 {
            accepted as f64 / send_wall
        } else {
            0.0
        };
        let sms_wall = last_sms.map(|l| l.duration_since(p.started).as_secs_f64());
        let sms_per_s = match sms_wall {
            Some(w) if w > 0.0 => sms_seen as f64 / w,
            _ => 0.0,
        };
        Figures {
            accepted,
            missing,
            sms_seen,
            unexpected,
            foreign,
            send_wall,
            accepted_per_s,
            sms_wall,
            sms_per_s,
            reply_latency: lat(reply_lat),
            sms_latency: lat(sms_lat),
        }
    }
}

/// SMS lines of this run that do not belong to an accepted measured message
/// (warmup ids are in `seen` too: they are excluded), and SMS lines of other
/// runs or clients.
fn anomalies(p: &Phase, t: &Tally, st: &TailState, prefix: &str) -> (usize, usize) {
    let measured: HashSet<&str> = p.outcomes.iter().map(|o| o.email_id.as_str()).collect();
    let accepted_set: HashSet<&str> = t
        .accepted
        .iter()
        .map(|&i| p.outcomes[i].email_id.as_str())
        .collect();
    let unexpected = st
        .seen
        .keys()
        .filter(|k| k.starts_with(prefix) && measured.contains(k.as_str()))
        .filter(|k| !accepted_set.contains(k.as_str()))
        .count();
    let foreign = st.seen.keys().filter(|k| !k.starts_with(prefix)).count();
    (unexpected, foreign)
}
