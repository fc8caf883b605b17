//! The answers the clients got, from the `--record` files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::Result;

use crate::records::{Record, read_records};

/// Every answer of the checked runs.
pub(crate) struct Answers {
    /// Every answer each emailId got, in the order of the files.
    pub(crate) by_id: BTreeMap<String, Vec<Record>>,
    /// The first run's answers, by kind.
    pub(crate) first_run: AnswerTally,
    /// Re-sends answered "already processed".
    pub(crate) resend_dups: u64,
}

/// Reads the `--records` files, the first run first, then its re-sends.
pub(crate) fn read_answers(records: &[PathBuf]) -> Result<Answers> {
    let mut answers: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    let mut first_run = AnswerTally::default();
    let mut resend_dups = 0u64;
    for (i, path) in records.iter().enumerate() {
        for r in read_records(path)? {
            if i == 0 {
                first_run.add(&r);
            } else if r.result == "250-dup" {
                resend_dups += 1;
            }
            answers.entry(r.email_id.clone()).or_default().push(r);
        }
    }
    Ok(Answers {
        by_id: answers,
        first_run,
        resend_dups,
    })
}

/// Answers of the first run of a check, by kind.
#[derive(Default)]
pub(crate) struct AnswerTally {
    /// Messages the run sent.
    pub(crate) sent: u64,
    /// Answered `250`.
    pub(crate) ok: u64,
    /// Answered `451` (the store could not commit: try again later).
    pub(crate) busy: u64,
    /// Every other answer, by result.
    other: BTreeMap<String, u64>,
}

impl AnswerTally {
    /// Counts one answer.
    fn add(&mut self, r: &Record) {
        self.sent += 1;
        match r.result.as_str() {
            "250" | "250-dup" => self.ok += 1,
            "451" => self.busy += 1,
            other => *self.other.entry(other.to_string()).or_default() += 1,
        }
    }

    /// The other answers, for the summary.
    pub(crate) fn other_text(&self) -> String {
        if self.other.is_empty() {
            return "none".to_string();
        }
        let parts: Vec<String> = self
            .other
            .iter()
            .map(|(k, n)| format!("{k} x{n}"))
            .collect();
        parts.join(", ")
    }
}
