//! The load run's report: the human-readable summary and the JSON line the
//! scripts parse.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::args::Args;
use crate::daemon::{Mem, Target};
use crate::figures::Figures;
use crate::latency::{lat_json, lat_line, r3};
use crate::outbox::TailState;
use crate::tally::Tally;

/// Everything the report of a load run shows.
pub(crate) struct Report<'a> {
    /// The command line: warmup count, drain timeout.
    pub(crate) args: &'a Args,
    /// The measured daemon: address, outbox, pid.
    pub(crate) target: &'a Target,
    /// The run id, to find the run's emailIds again.
    pub(crate) run_id: u64,
    /// Concurrent connections used.
    pub(crate) conns: usize,
    /// The warmup's figures (`null` without warmup).
    pub(crate) warmup: Value,
    /// Measured messages sent.
    pub(crate) sent: usize,
    /// The measured run's answers by kind.
    pub(crate) tally: &'a Tally,
    /// What the outbox showed.
    pub(crate) outbox: &'a TailState,
    /// Throughput and latencies.
    pub(crate) figures: Figures,
    /// The daemon's memory before the load (its RSS at rest).
    pub(crate) mem_idle: Option<Mem>,
    /// The daemon's memory after the load (its peak RSS).
    pub(crate) mem_end: Option<Mem>,
    /// How a spawned daemon exited.
    pub(crate) daemon_exit: Option<String>,
    /// Every measured message accepted and its SMS seen.
    pub(crate) complete: bool,
}

impl Report<'_> {
    /// The human-readable summary (the spawned daemon's dir line comes after it).
    pub(crate) fn print_summary(&self) {
        println!();
        println!("mail2sms-load summary");
        self.print_sending();
        self.print_outbox();
        self.print_latency_and_memory();
    }

    /// Where the messages went and what the daemon answered.
    fn print_sending(&self) {
        let (t, f) = (self.tally, &self.figures);
        let (sent, accepted) = (self.sent, f.accepted);
        let (send_wall, accepted_per_s) = (f.send_wall, f.accepted_per_s);
        println!(
            "  target              {}  (outbox {})",
            self.target.addr,
            self.target.outbox.display()
        );
        println!(
            "  messages            {sent} over {} connections (+{} warmup), run id {}",
            self.conns, self.args.warmup, self.run_id
        );
        println!(
            "  accepted (250)      {accepted}/{sent}  in {send_wall:.3} s  => {accepted_per_s:.1} emails/s{}",
            if t.duplicates > 0 {
                format!(" ({} of them \"already processed\")", t.duplicates)
            } else {
                String::new()
            }
        );
        if !t.rejected.is_empty() {
            let s: Vec<String> = t
                .rejected
                .iter()
                .map(|(c, n)| format!("{c}: {n}"))
                .collect();
            println!("  end-of-DATA replies other than 250: {}", s.join(", "));
        }
        if !t.refused.is_empty() {
            let s: Vec<String> = t.refused.iter().map(|(c, n)| format!("{c}: {n}")).collect();
            println!("  refused before DATA end: {}", s.join(", "));
        }
        if !t.errors.is_empty() {
            let s: Vec<String> = t.errors.iter().map(|(c, n)| format!("{c} x{n}")).collect();
            println!("  errors: {}", s.join(", "));
        }
    }

    /// The SMS seen in the outbox and what was wrong there.
    fn print_outbox(&self) {
        let (st, f) = (self.outbox, &self.figures);
        let (sms_seen, accepted, missing) = (f.sms_seen, f.accepted, f.missing);
        let (sms_per_s, unexpected) = (f.sms_per_s, f.unexpected);
        println!(
            "  SMS in outbox       {sms_seen}/{accepted}{}  => {sms_per_s:.1} SMS/s (first connect to last SMS seen{})",
            if missing > 0 {
                format!(
                    "  ({missing} missing after {:.0} s drain)",
                    self.args.drain_timeout
                )
            } else {
                String::new()
            },
            f.sms_wall
                .map(|w| format!(", {w:.3} s"))
                .unwrap_or_default()
        );
        if st.duplicates > 0 || unexpected > 0 {
            println!(
                "  outbox anomalies    {} duplicate email_id lines, {unexpected} SMS for non-accepted messages",
                st.duplicates
            );
        }
        if st.invalid_json > 0 || !st.missing_keys.is_empty() {
            println!(
                "  outbox format       {} invalid JSON lines{}; lines missing keys: {:?}",
                st.invalid_json,
                st.first_invalid
                    .as_ref()
                    .map(|s| format!(" (first: {s})"))
                    .unwrap_or_default(),
                st.missing_keys
            );
        }
    }

    /// Latencies, the daemon's memory and how it exited.
    fn print_latency_and_memory(&self) {
        let f = &self.figures;
        let (mem_idle, mem_end) = (self.mem_idle, self.mem_end);
        println!(
            "  latency end-of-DATA -> 250   {}",
            lat_line(&f.reply_latency)
        );
        println!(
            "  latency end-of-DATA -> SMS   {}",
            lat_line(&f.sms_latency)
        );
        match (self.target.pid, mem_end) {
            (Some(pid), Some((hwm, rss))) => println!(
                "  daemon pid {pid}      peak RSS (VmHWM) {:.1} MiB, RSS now {:.1} MiB{}",
                hwm as f64 / 1024.0,
                rss as f64 / 1024.0,
                mem_idle
                    .map(|(_, r)| format!(", RSS before load {:.1} MiB", r as f64 / 1024.0))
                    .unwrap_or_default()
            ),
            (Some(pid), None) => println!("  daemon pid {pid}      /proc/{pid}/status unreadable"),
            (None, _) => println!("  daemon RSS          unknown (pass --pid)"),
        }
        if let Some(e) = &self.daemon_exit {
            println!("  daemon              {e}");
        }
    }

    /// The machine-readable line.
    pub(crate) fn print_json(&self) {
        let (t, st, f) = (self.tally, self.outbox, &self.figures);
        let (mem_idle, mem_end) = (self.mem_idle, self.mem_end);
        let map_json = |m: &BTreeMap<String, u64>| -> Value {
            Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
        };
        let out = json!({
            "tool": "mail2sms-load",
            "run_id": self.run_id,
            "addr": self.target.addr.to_string(),
            "messages": self.sent,
            "already_processed": t.duplicates,
            "connections": self.conns,
            "warmup": self.warmup,
            "accepted": f.accepted,
            "wall_s": r3(f.send_wall),
            "accepted_per_s": r3(f.accepted_per_s),
            "rejected": Value::Object(t.rejected.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()),
            "refused": map_json(&t.refused),
            "errors": map_json(&t.errors),
            "sms_seen": f.sms_seen,
            "sms_missing": f.missing,
            "sms_wall_s": f.sms_wall.map(r3),
            "sms_per_s": r3(f.sms_per_s),
            "outbox_duplicates": st.duplicates,
            "outbox_unexpected": f.unexpected,
            "outbox_foreign_ids": f.foreign,
            "outbox_invalid_lines": st.invalid_json,
            "outbox_missing_keys": Value::Object(st.missing_keys.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()),
            "latency_reply_ms": lat_json(&f.reply_latency),
            "latency_sms_ms": lat_json(&f.sms_latency),
            "daemon_pid": self.target.pid,
            "peak_rss_kb": mem_end.map(|m| m.0),
            "rss_end_kb": mem_end.map(|m| m.1),
            "rss_before_kb": mem_idle.map(|m| m.1),
            "complete": self.complete,
        });
        println!("{out}");
    }
}
