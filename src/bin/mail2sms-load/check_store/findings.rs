//! The inputs of a check compared with the promises.

use crate::records::Record;

use super::Inputs;

/// What a check found, per promise.
pub(crate) struct Findings<'a> {
    /// EmailIds with at least one `250`.
    pub(crate) accepted: u64,
    /// Answered `250` but not in `requests`: a lost email.
    pub(crate) lost: Vec<&'a str>,
    /// Queued (`250`, not "already processed") more than once.
    pub(crate) twice: Vec<&'a str>,
    /// Queued, but no SMS line.
    pub(crate) not_sent: Vec<&'a str>,
    /// More than one SMS line.
    pub(crate) sent_twice: Vec<&'a str>,
    /// An SMS line but no `250` (451, error): allowed, but told.
    pub(crate) sent_unanswered: u64,
    /// Emails queued after `--after-ms` (did the daemon go on after a fault?).
    pub(crate) queued_after: u64,
    /// The checked emailIds found in the store.
    pub(crate) stored_ours: usize,
    /// Outbox lines repeating a ref: a reused job id.
    pub(crate) ref_repeats: u64,
    /// SMS lines in the outbox.
    pub(crate) sms_lines: u64,
    /// SMS lines beyond the first per emailId.
    pub(crate) dup_sms: u64,
    /// Reply deliveries in the reply log.
    pub(crate) reply_deliveries: u64,
    /// Reply deliveries beyond the first per Message-ID.
    pub(crate) reply_dups: u64,
}

impl<'a> Findings<'a> {
    /// Compares every checked emailId's answers with the store and the outbox.
    pub(crate) fn of(inputs: &'a Inputs, after_ms: Option<u64>) -> Findings<'a> {
        let (stored, outbox) = (&inputs.store.stored, &inputs.outbox);
        let mut f = Findings {
            accepted: 0,
            lost: Vec::new(),
            twice: Vec::new(),
            not_sent: Vec::new(),
            sent_twice: Vec::new(),
            sent_unanswered: 0,
            queued_after: 0,
            stored_ours: 0,
            ref_repeats: 0,
            sms_lines: 0,
            dup_sms: 0,
            reply_deliveries: 0,
            reply_dups: 0,
        };
        for (id, rs) in &inputs.answers.by_id {
            let sms = outbox
                .as_ref()
                .map(|o| o.by_email.get(id).copied().unwrap_or(0));
            if rs.iter().any(Record::accepted) {
                f.accepted += 1;
                if !stored.contains(id) {
                    f.lost.push(id.as_str());
                }
                if sms == Some(0) {
                    f.not_sent.push(id.as_str());
                }
            } else if sms.is_some_and(|n| n > 0) {
                f.sent_unanswered += 1;
            }
            if rs.iter().filter(|r| r.queued()).count() > 1 {
                f.twice.push(id.as_str());
            }
            if sms.is_some_and(|n| n > 1) {
                f.sent_twice.push(id.as_str());
            }
            if let Some(after) = after_ms
                && rs.iter().any(|r| r.queued() && r.at_ms > after)
            {
                f.queued_after += 1;
            }
        }
        f.totals(inputs);
        f
    }

    /// The figures over the whole store, outbox and reply log.
    fn totals(&mut self, inputs: &Inputs) {
        let (stored, outbox) = (&inputs.store.stored, &inputs.outbox);
        self.stored_ours = inputs
            .answers
            .by_id
            .keys()
            .filter(|id| stored.contains(*id))
            .count();
        self.ref_repeats = outbox
            .as_ref()
            .map_or(0, |o| o.by_ref.values().map(|n| n - 1).sum());
        self.sms_lines = outbox.as_ref().map_or(0, |o| o.by_email.values().sum());
        self.dup_sms = outbox
            .as_ref()
            .map_or(0, |o| o.by_email.values().map(|n| n - 1).sum());
        (self.reply_deliveries, self.reply_dups) = inputs.replies.as_ref().map_or((0, 0), |r| {
            let deliveries = r.values().map(|c| c.deliveries);
            (
                deliveries.clone().sum::<u64>(),
                deliveries.map(|n| n - 1).sum::<u64>(),
            )
        });
    }

    /// The broken promises, one sentence each (none: the check passes).
    pub(crate) fn broken(&self, after_ms: Option<u64>) -> Vec<String> {
        let mut broken = Vec::new();
        let mut promise = |ids: &[&str], what: &str| {
            if !ids.is_empty() {
                let some: Vec<&str> = ids.iter().take(5).copied().collect();
                broken.push(format!("{} {what} (e.g. {})", ids.len(), some.join(" ")));
            }
        };
        promise(&self.lost, "emailIds answered 250 are not in the store");
        promise(
            &self.twice,
            "emailIds were queued twice (250 without \"already processed\")",
        );
        promise(&self.sent_twice, "emailIds were sent more than once");
        promise(&self.not_sent, "emailIds answered 250 were never sent");
        if self.ref_repeats > 0 {
            broken.push(format!(
                "{} outbox lines repeat a ref (job ids reused)",
                self.ref_repeats
            ));
        }
        if after_ms.is_some() && self.queued_after == 0 {
            broken
                .push("no email was queued after the fault ended: the daemon did not go on".into());
        }
        broken
    }
}
