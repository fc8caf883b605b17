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
mod check_store;
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

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Result, anyhow, bail};
use clap::Parser;
use serde_json::{Value, json};

use args::{Args, DEFAULT_KEYID};
use daemon::{Target, proc_mem};
use figures::Figures;
use message::{MsgGen, rfc5322_date};
use outbox::{TailState, Tailer, wait_drain};
use phase::{Plan, Resend, run_phase};
use records::{read_records, write_records};
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
        return check_store::check_store(db, &args).await;
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
        to: args.to.clone().unwrap_or_else(|| {
            let to = if args.alert { "0600000001" } else { "sms" };
            format!("{to}@sms.load.test")
        }),
        alert: args.alert,
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
