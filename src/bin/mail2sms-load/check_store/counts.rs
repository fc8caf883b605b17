//! What the outbox and the reply log hold, counted per email.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use anyhow::{Context, Result};
use serde_json::Value;

/// Lines per `email_id` and per `ref` in an outbox file.
#[derive(Default)]
pub(crate) struct OutboxCount {
    /// SMS lines per emailId (single-recipient messages: more than one is a
    /// duplicate SMS).
    pub(crate) by_email: HashMap<String, u64>,
    /// Lines per client reference: a repeated ref is a reused job id.
    pub(crate) by_ref: HashMap<String, u64>,
    /// Lines that are not JSON objects (a torn last line, a bug).
    pub(crate) invalid: u64,
}

/// Counts the lines of the outbox file at `path`.
pub(crate) fn count_outbox(path: &Path) -> Result<OutboxCount> {
    let text = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let mut c = OutboxCount::default();
    for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(line) else {
            c.invalid += 1;
            continue;
        };
        let key = |k: &str| match v.get(k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        if let Some(id) = key("email_id") {
            *c.by_email.entry(id).or_default() += 1;
        }
        if let Some(r) = key("ref") {
            *c.by_ref.entry(r).or_default() += 1;
        }
    }
    Ok(c)
}

/// Deliveries of one reply email, from a reply log.
pub(crate) struct ReplyCount {
    /// How many times it was delivered (more than once: a duplicate).
    pub(crate) deliveries: u64,
    /// `etatAck` or `etatNot` (from its subject), or `other`.
    pub(crate) kind: &'static str,
}

/// Deliveries per Message-ID in a reply log: one line per delivery, the
/// Message-ID first, then the Subject: header (tab-separated).
pub(crate) fn count_replies(path: &Path) -> Result<BTreeMap<String, ReplyCount>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    let mut by_id = BTreeMap::new();
    for line in text.lines() {
        let Some(id) = line.split_whitespace().next() else {
            continue;
        };
        let kind = ["etatAck", "etatNot"]
            .into_iter()
            .find(|k| line.contains(k))
            .unwrap_or("other");
        by_id
            .entry(id.to_string())
            .or_insert(ReplyCount {
                deliveries: 0,
                kind,
            })
            .deliveries += 1;
    }
    Ok(by_id)
}
