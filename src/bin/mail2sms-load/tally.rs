//! The answers of a phase, counted by kind.

use std::collections::BTreeMap;
use std::time::Instant;

use crate::client::Status;
use crate::phase::Phase;

/// The answers of a phase, by kind.
pub(crate) struct Tally {
    /// Accepted (`250`) messages, as indexes into the phase's outcomes.
    pub(crate) accepted: Vec<usize>,
    /// Final replies to end of DATA other than 250, by code.
    pub(crate) rejected: BTreeMap<u16, u64>,
    /// Refusals before end of DATA, "stage code".
    pub(crate) refused: BTreeMap<String, u64>,
    /// Errors, "stage: what".
    pub(crate) errors: BTreeMap<String, u64>,
    /// `250` replies saying "already processed" (counted in `accepted` too).
    pub(crate) duplicates: u64,
    /// When the last end-of-DATA reply came: the end of the sending wall time.
    pub(crate) last_reply: Option<Instant>,
}

/// Sorts the answers of `p`.
pub(crate) fn tally(p: &Phase) -> Tally {
    let mut t = Tally {
        accepted: Vec::new(),
        rejected: BTreeMap::new(),
        refused: BTreeMap::new(),
        errors: BTreeMap::new(),
        duplicates: 0,
        last_reply: None,
    };
    for (i, o) in p.outcomes.iter().enumerate() {
        match &o.status {
            Status::Done {
                code,
                duplicate,
                reply_at,
                ..
            } => {
                t.last_reply = Some(t.last_reply.map_or(*reply_at, |l| l.max(*reply_at)));
                t.duplicates += u64::from(*duplicate);
                if *code == 250 {
                    t.accepted.push(i);
                } else {
                    *t.rejected.entry(*code).or_default() += 1;
                }
            }
            Status::Refused { stage, code } => {
                *t.refused.entry(format!("{stage} {code}")).or_default() += 1;
            }
            Status::Failed { stage, what } => {
                *t.errors.entry(format!("{stage}: {what}")).or_default() += 1;
            }
        }
    }
    t
}
