//! `--check-store`: the store, the outbox and the answers the clients got,
//! against the promises.

mod answers;
mod counts;
mod findings;
mod report;
mod store;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};

use crate::args::Args;

use answers::{Answers, read_answers};
use counts::{OutboxCount, ReplyCount, count_outbox, count_replies};
use findings::Findings;
use store::{StoreFigures, read_store};

/// Everything a check reads.
struct Inputs {
    /// The store's requests and jobs.
    store: StoreFigures,
    /// The answers the clients got (`--records`).
    answers: Answers,
    /// The outbox's lines (`--outbox`), if given.
    outbox: Option<OutboxCount>,
    /// The reply deliveries per Message-ID (`--replies-log`), if given.
    replies: Option<BTreeMap<String, ReplyCount>>,
}

/// `--check-store`: the store, the outbox and the answers the clients got,
/// against the promises. Returns Ok(false) when one is broken.
pub(crate) async fn check_store(db: &Path, args: &Args) -> Result<bool> {
    let inputs = read_inputs(db, args).await?;
    let findings = Findings::of(&inputs, args.after_ms);
    let broken = findings.broken(args.after_ms);
    report::print_summary(db, args, &inputs, &findings, &broken);
    report::print_figures(args, &inputs, &findings);
    report::print_json(db, args, &inputs, &findings, &broken);
    Ok(broken.is_empty())
}

/// Reads the store, then the records, the outbox and the reply log.
async fn read_inputs(db: &Path, args: &Args) -> Result<Inputs> {
    if args.records.is_empty() {
        bail!("--check-store needs --records FILE... (the --record files of the runs to check)");
    }
    if !db.is_file() {
        bail!("--check-store {}: no such database file", db.display());
    }
    let store = read_store(db).await?;
    let answers = read_answers(&args.records)?;
    let outbox = match &args.outbox {
        Some(p) => Some(count_outbox(p)?),
        None => None,
    };
    let replies = match &args.replies_log {
        Some(p) => Some(count_replies(p)?),
        None => None,
    };
    Ok(Inputs {
        store,
        answers,
        outbox,
        replies,
    })
}
