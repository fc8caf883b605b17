//! `mail2sms-load`: a load generator / benchmark for the mail2sms daemon.
//!
//! It sends N single-recipient iSendPro `<envoi>` emails over C concurrent SMTP
//! connections (one message per connection, hand-written minimal SMTP client),
//! tails the `outbox` provider's JSONL file to see when each SMS reaches the
//! provider, and reports throughput, latency percentiles and the daemon's peak
//! RSS.
//!
//! Either spawn a daemon (`--spawn PATH`, it gets a private temp dir and config)
//! or measure one that is already running (`--addr HOST:PORT --outbox FILE
//! [--pid PID]`).
//!
//! This is a benchmark, not a test: the numbers depend on the machine, and the
//! tool itself competes with the daemon for CPU.

mod args;
mod client;
mod daemon;
mod figures;
mod latency;
mod message;
mod outbox;
mod phase;
mod records;
mod report;
mod tally;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use serde_json::{Value, json};

use args::{Args, DEFAULT_KEYID};
use daemon::{Target, proc_mem};
use figures::Figures;
use message::{MsgGen, rfc5322_date};
use outbox::{TailState, Tailer, wait_drain};
use phase::{Plan, Resend, run_phase};
use records::{Record, read_records, write_records};
use report::Report;
use tally::tally;

fn main() -> ExitCode {
    let args = Args::parse();
    // A broken promise in --check-store mode is told apart from an incomplete load run.
    let incomplete = if args.check_store.is_some() { 3 } else { 2 };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("mail2sms-load: runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let r = rt.block_on(async {
        tokio::select! {
            r = run(args) => r,
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
        }
    });
    match r {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(incomplete),
        Err(e) => {
            eprintln!("mail2sms-load: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Returns Ok(true) when every measured message was accepted and reached the outbox.
async fn run(mut args: Args) -> Result<bool> {
    if let Some(db) = &args.check_store {
        return check_store(db, &args).await;
    }
    args.check()?;
    let resend = resend_list(&mut args)?;
    let keyid = args
        .keyid
        .clone()
        .unwrap_or_else(|| DEFAULT_KEYID.to_string());
    let conns = args.connections as usize;
    let drain_timeout = Duration::from_secs_f64(args.drain_timeout);

    let mut target = Target::open(&args, &keyid).await?;
    let g = Arc::new(generator(&args, keyid));
    let plan = Plan {
        first: args.warmup,
        count: args.messages,
        list: resend,
        rate: args.rate,
        duration: args.duration.map(Duration::from_secs_f64),
    };
    let prefix = g.id_prefix();
    let tail = Tailer::start(target.outbox.clone());
    let mem_idle = target.pid.and_then(proc_mem);

    eprintln!(
        "mail2sms-load: target {}, outbox {}, run id {}, {} warmup + {} messages over {} connections",
        target.addr,
        target.outbox.display(),
        g.run_id,
        args.warmup,
        args.messages,
        conns
    );

    let warmup_json = warmup(&args, target.addr, &g, &plan, &tail).await;

    // Measured run.
    let p = run_phase("load", target.addr, g.clone(), plan, conns).await;
    if let Some(path) = &args.record {
        write_records(path, &p.outcomes)?;
    }
    let t = tally(&p);
    let acc_ids: Vec<&str> = t
        .accepted
        .iter()
        .map(|&i| p.outcomes[i].email_id.as_str())
        .collect();
    let missing = wait_drain(&tail, &acc_ids, Instant::now() + drain_timeout).await;
    let mem_end = target.pid.and_then(proc_mem);
    let st = stop_tail(tail).await;
    let figures = Figures::of(&p, &t, &st, missing, &prefix);

    let daemon_exit = target.stop().await;
    let complete = figures.accepted == p.outcomes.len() && missing == 0;
    let report = Report {
        args: &args,
        target: &target,
        run_id: g.run_id,
        conns,
        warmup: warmup_json,
        sent: p.outcomes.len(),
        tally: &t,
        outbox: &st,
        figures,
        mem_idle,
        mem_end,
        daemon_exit,
        complete,
    };
    report.print_summary();
    target.keep_or_clean(args.keep, complete);
    report.print_json();
    Ok(complete)
}

/// `--resend`: the (index, emailId) pairs to send again. Re-sends are the
/// measurement: no warmup with fresh emailIds.
fn resend_list(args: &mut Args) -> Result<Option<Resend>> {
    let Some(path) = &args.resend else {
        return Ok(None);
    };
    let list = read_records(path)?
        .into_iter()
        .map(|r| (r.idx, r.email_id))
        .collect::<Vec<_>>();
    if list.is_empty() {
        bail!("--resend {}: no message to send again", path.display());
    }
    args.warmup = 0;
    Ok(Some(Arc::new(list)))
}

/// The run's message generator; its run id is the current Unix
/// milliseconds unless `--run-id` fixes it.
fn generator(args: &Args, keyid: String) -> MsgGen {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    MsgGen {
        run_id: args.run_id.unwrap_or(now.as_millis() as u64),
        numeric_ids: args.numeric_ids,
        keyid,
        from: args.from.clone(),
        to: args.to.clone(),
        acks: args.acks,
        date: rfc5322_date(now.as_secs()),
        sms_bytes: args.sms_bytes,
        pad_bytes: args.pad_bytes,
    }
}

/// Warmup: sent and drained, not measured. Returns its JSON figures
/// (`null` without warmup).
async fn warmup(
    args: &Args,
    addr: SocketAddr,
    g: &Arc<MsgGen>,
    plan: &Plan,
    tail: &Tailer,
) -> Value {
    if args.warmup == 0 {
        return Value::Null;
    }
    let warmup = Plan {
        first: 0,
        count: args.warmup,
        list: None,
        duration: None,
        ..plan.clone()
    };
    let conns = args.connections as usize;
    let drain_timeout = Duration::from_secs_f64(args.drain_timeout);
    let p = run_phase("warmup", addr, g.clone(), warmup, conns).await;
    let t = tally(&p);
    let ids: Vec<&str> = t
        .accepted
        .iter()
        .map(|&i| p.outcomes[i].email_id.as_str())
        .collect();
    let missing = wait_drain(tail, &ids, Instant::now() + drain_timeout).await;
    eprintln!(
        "warmup: {} sent, {} accepted, {} SMS in outbox, {:.2} s",
        args.warmup,
        ids.len(),
        ids.len() - missing,
        p.started.elapsed().as_secs_f64()
    );
    if ids.is_empty() {
        let first = p.outcomes.first().map(|o| format!("{:?}", o.status));
        eprintln!("warmup: nothing accepted; first outcome: {first:?}");
    }
    json!({
        "sent": args.warmup, "accepted": ids.len(), "sms_seen": ids.len() - missing,
    })
}

/// Lets the tailer notice trailing duplicates, then stops it; returns what it saw.
async fn stop_tail(tail: Tailer) -> TailState {
    tokio::time::sleep(Duration::from_millis(50)).await;
    let st = {
        let mut guard = tail.lock();
        std::mem::take(&mut *guard)
    };
    drop(tail);
    st
}

// ---------------------------------------------------------------------------
// Store check (`--check-store`)
// ---------------------------------------------------------------------------

/// Lines per `email_id` and per `ref` in an outbox file.
#[derive(Default)]
struct OutboxCount {
    /// SMS lines per emailId (single-recipient messages: more than one is a
    /// duplicate SMS).
    by_email: HashMap<String, u64>,
    /// Lines per client reference: a repeated ref is a reused job id.
    by_ref: HashMap<String, u64>,
    /// Lines that are not JSON objects (a torn last line, a bug).
    invalid: u64,
}

fn count_outbox(path: &Path) -> Result<OutboxCount> {
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
struct ReplyCount {
    /// How many times it was delivered (more than once: a duplicate).
    deliveries: u64,
    /// `etatAck` or `etatNot` (from its subject), or `other`.
    kind: &'static str,
}

/// Deliveries per Message-ID in a reply log: one line per delivery, the
/// Message-ID first, then the Subject: header (tab-separated).
fn count_replies(path: &Path) -> Result<BTreeMap<String, ReplyCount>> {
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

/// `--check-store`: the store, the outbox and the answers the clients got,
/// against the promises. Returns Ok(false) when one is broken.
async fn check_store(db: &Path, args: &Args) -> Result<bool> {
    use sqlx::Connection;

    if args.records.is_empty() {
        bail!("--check-store needs --records FILE... (the --record files of the runs to check)");
    }
    if !db.is_file() {
        bail!("--check-store {}: no such database file", db.display());
    }
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(db)
        .read_only(true);
    let mut conn = sqlx::SqliteConnection::connect_with(&options)
        .await
        .with_context(|| format!("open the store {} read-only", db.display()))?;
    let stored: std::collections::HashSet<String> =
        sqlx::query_scalar::<_, String>("SELECT email_id FROM requests")
            .fetch_all(&mut conn)
            .await
            .with_context(|| format!("{}: read requests.email_id", db.display()))?
            .into_iter()
            .collect();
    let jobs: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM jobs GROUP BY status ORDER BY status")
            .fetch_all(&mut conn)
            .await
            .with_context(|| format!("{}: count jobs by status", db.display()))?;
    let max_job: Option<i64> = sqlx::query_scalar("SELECT MAX(id) FROM jobs")
        .fetch_one(&mut conn)
        .await
        .with_context(|| format!("{}: read the last job id", db.display()))?;
    let _ = conn.close().await;

    // Every answer each emailId got, in the order of the files.
    let mut answers: BTreeMap<String, Vec<Record>> = BTreeMap::new();
    let mut first_run = AnswerTally::default();
    let mut resend_dups = 0u64;
    for (i, path) in args.records.iter().enumerate() {
        for r in read_records(path)? {
            if i == 0 {
                first_run.add(&r);
            } else if r.result == "250-dup" {
                resend_dups += 1;
            }
            answers.entry(r.email_id.clone()).or_default().push(r);
        }
    }
    let outbox = match &args.outbox {
        Some(p) => Some(count_outbox(p)?),
        None => None,
    };
    let replies = match &args.replies_log {
        Some(p) => Some(count_replies(p)?),
        None => None,
    };

    let mut accepted = 0u64; // emailIds with at least one 250
    let mut lost = Vec::new(); // 250 but not in `requests`
    let mut twice = Vec::new(); // queued (250, not "already processed") more than once
    let mut not_sent = Vec::new(); // queued, no SMS line
    let mut sent_twice = Vec::new(); // more than one SMS line
    let mut sent_unanswered = 0u64; // SMS line but no 250 (451, error)
    let mut queued_after = 0u64;
    for (id, rs) in &answers {
        let sms = outbox
            .as_ref()
            .map(|o| o.by_email.get(id).copied().unwrap_or(0));
        if rs.iter().any(Record::accepted) {
            accepted += 1;
            if !stored.contains(id) {
                lost.push(id.as_str());
            }
            if sms == Some(0) {
                not_sent.push(id.as_str());
            }
        } else if sms.is_some_and(|n| n > 0) {
            sent_unanswered += 1;
        }
        if rs.iter().filter(|r| r.queued()).count() > 1 {
            twice.push(id.as_str());
        }
        if sms.is_some_and(|n| n > 1) {
            sent_twice.push(id.as_str());
        }
        if let Some(after) = args.after_ms
            && rs.iter().any(|r| r.queued() && r.at_ms > after)
        {
            queued_after += 1;
        }
    }
    let stored_ours = answers.keys().filter(|id| stored.contains(*id)).count();
    let ref_repeats: u64 = outbox
        .as_ref()
        .map_or(0, |o| o.by_ref.values().map(|n| n - 1).sum());
    let sms_lines: u64 = outbox.as_ref().map_or(0, |o| o.by_email.values().sum());
    let dup_sms: u64 = outbox
        .as_ref()
        .map_or(0, |o| o.by_email.values().map(|n| n - 1).sum());
    let (reply_deliveries, reply_dups) = replies.as_ref().map_or((0, 0), |r| {
        let deliveries = r.values().map(|c| c.deliveries);
        (
            deliveries.clone().sum::<u64>(),
            deliveries.map(|n| n - 1).sum::<u64>(),
        )
    });

    let mut broken = Vec::new();
    let mut promise = |ids: &[&str], what: &str| {
        if !ids.is_empty() {
            let some: Vec<&str> = ids.iter().take(5).copied().collect();
            broken.push(format!("{} {what} (e.g. {})", ids.len(), some.join(" ")));
        }
    };
    promise(&lost, "emailIds answered 250 are not in the store");
    promise(
        &twice,
        "emailIds were queued twice (250 without \"already processed\")",
    );
    promise(&sent_twice, "emailIds were sent more than once");
    promise(&not_sent, "emailIds answered 250 were never sent");
    if ref_repeats > 0 {
        broken.push(format!(
            "{ref_repeats} outbox lines repeat a ref (job ids reused)"
        ));
    }
    if args.after_ms.is_some() && queued_after == 0 {
        broken.push("no email was queued after the fault ended: the daemon did not go on".into());
    }

    let jobs_text: Vec<String> = jobs.iter().map(|(s, n)| format!("{s} {n}")).collect();
    println!("store check {}", db.display());
    println!(
        "  first run           {} sent: {} x 250, {} x 451, {} other ({})",
        first_run.sent,
        first_run.ok,
        first_run.busy,
        first_run.sent - first_run.ok - first_run.busy,
        first_run.other_text()
    );
    println!(
        "  store               {} requests ({stored_ours} of these emailIds), jobs: {}; last job id {}",
        stored.len(),
        if jobs_text.is_empty() {
            "none".to_string()
        } else {
            jobs_text.join(", ")
        },
        max_job.map_or("none".to_string(), |n| n.to_string())
    );
    if let Some(o) = &outbox {
        println!(
            "  outbox              {sms_lines} SMS lines, {dup_sms} duplicate SMS, {ref_repeats} repeated refs, {sent_unanswered} SMS for emails never answered 250, {} invalid lines",
            o.invalid
        );
    }
    if args.records.len() > 1 {
        println!("  re-sends            {resend_dups} answered \"already processed\"");
    }
    if let Some(after) = args.after_ms {
        println!("  after {after}  {queued_after} emails queued");
    }
    if let Some(r) = &replies {
        let kind = |k: &str| r.values().filter(|c| c.kind == k).count();
        println!(
            "  replies             {reply_deliveries} deliveries of {} messages ({} etatAck, {} etatNot), {reply_dups} duplicates",
            r.len(),
            kind("etatAck"),
            kind("etatNot")
        );
    }
    for b in &broken {
        println!("  BROKEN: {b}");
    }
    // One line of `key=value` figures, for scripts (scripts/fault-run).
    let mut figures = format!(
        "figures: sent={} accepted={accepted} answered451={} other={} stored={} sms={sms_lines} dup_sms={dup_sms} twice={} lost={} not_sent={} repeated_refs={ref_repeats}",
        first_run.sent,
        first_run.busy,
        first_run.sent - first_run.ok - first_run.busy,
        stored_ours,
        twice.len(),
        lost.len(),
        not_sent.len(),
    );
    if args.records.len() > 1 {
        figures.push_str(&format!(" already_processed={resend_dups}"));
    }
    if args.after_ms.is_some() {
        figures.push_str(&format!(" queued_after_fault={queued_after}"));
    }
    if replies.is_some() {
        figures.push_str(&format!(
            " replies={reply_deliveries} reply_dups={reply_dups}"
        ));
    }
    println!("{figures}");
    let out = json!({
        "tool": "mail2sms-load",
        "check": db.display().to_string(),
        "sent": first_run.sent,
        "answered_250": first_run.ok,
        "answered_451": first_run.busy,
        "emails_accepted": accepted,
        "stored_requests": stored.len(),
        "stored_of_ours": stored_ours,
        "jobs": Value::Object(jobs.iter().map(|(s, n)| (s.clone(), json!(n))).collect()),
        "sms_sent": sms_lines,
        "duplicate_sms": dup_sms,
        "repeated_refs": ref_repeats,
        "lost": lost.len(),
        "processed_twice": twice.len(),
        "sent_twice": sent_twice.len(),
        "not_sent": not_sent.len(),
        "sent_without_250": sent_unanswered,
        "resend_already_processed": resend_dups,
        "queued_after": args.after_ms.map(|_| queued_after),
        "reply_deliveries": replies.as_ref().map(|_| reply_deliveries),
        "reply_duplicates": replies.as_ref().map(|_| reply_dups),
        "broken": broken,
    });
    println!("{out}");
    Ok(broken.is_empty())
}

/// Answers of the first run of a check, by kind.
#[derive(Default)]
struct AnswerTally {
    /// Messages the run sent.
    sent: u64,
    /// Answered `250`.
    ok: u64,
    /// Answered `451` (the store could not commit: try again later).
    busy: u64,
    /// Every other answer, by result.
    other: BTreeMap<String, u64>,
}

impl AnswerTally {
    fn add(&mut self, r: &Record) {
        self.sent += 1;
        match r.result.as_str() {
            "250" | "250-dup" => self.ok += 1,
            "451" => self.busy += 1,
            other => *self.other.entry(other.to_string()).or_default() += 1,
        }
    }

    fn other_text(&self) -> String {
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
