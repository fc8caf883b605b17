//! A check's report: the summary, the `figures:` line and the JSON line.

use std::path::Path;

use serde_json::{Value, json};

use crate::args::Args;

use super::Inputs;
use super::findings::Findings;

/// The human-readable summary, with one `BROKEN:` line per broken promise.
pub(crate) fn print_summary(
    db: &Path,
    args: &Args,
    inputs: &Inputs,
    f: &Findings,
    broken: &[String],
) {
    let Inputs {
        store,
        answers,
        outbox,
        replies,
    } = inputs;
    let (stored, jobs, max_job) = (&store.stored, &store.jobs, store.max_job);
    let (first_run, resend_dups) = (&answers.first_run, answers.resend_dups);
    let Findings {
        stored_ours,
        sms_lines,
        dup_sms,
        ref_repeats,
        sent_unanswered,
        queued_after,
        reply_deliveries,
        reply_dups,
        ..
    } = f;
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
    for b in broken {
        println!("  BROKEN: {b}");
    }
}

/// One line of `key=value` figures, for scripts (scripts/fault-run).
pub(crate) fn print_figures(args: &Args, inputs: &Inputs, f: &Findings) {
    let first_run = &inputs.answers.first_run;
    let (resend_dups, replies) = (inputs.answers.resend_dups, &inputs.replies);
    let Findings {
        accepted,
        stored_ours,
        sms_lines,
        dup_sms,
        ref_repeats,
        twice,
        lost,
        not_sent,
        queued_after,
        reply_deliveries,
        reply_dups,
        ..
    } = f;
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
}

/// The JSON line.
pub(crate) fn print_json(db: &Path, args: &Args, inputs: &Inputs, f: &Findings, broken: &[String]) {
    let (stored, jobs) = (&inputs.store.stored, &inputs.store.jobs);
    let (first_run, resend_dups) = (&inputs.answers.first_run, inputs.answers.resend_dups);
    let replies = &inputs.replies;
    let Findings {
        accepted,
        lost,
        twice,
        not_sent,
        sent_twice,
        sent_unanswered,
        queued_after,
        stored_ours,
        ref_repeats,
        sms_lines,
        dup_sms,
        reply_deliveries,
        reply_dups,
    } = f;
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
}
