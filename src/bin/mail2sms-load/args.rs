//! The command line.

use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{ArgGroup, Parser};

/// Default account key (matches the config written in `--spawn` mode).
pub(crate) const DEFAULT_KEYID: &str = "loadkey0123456789";

#[derive(Parser, Debug)]
#[command(
    name = "mail2sms-load",
    version,
    about = "Load generator for the mail2sms daemon: SMTP in, outbox JSONL out",
    group(ArgGroup::new("target").required(true).args(["spawn", "addr", "check_store"]))
)]
pub(crate) struct Args {
    /// Spawn this mail2sms binary (`<bin> serve --config <tmp>/mail2sms.toml`)
    /// on a free loopback port with a fresh store and outbox, and kill it at the end.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["addr", "outbox", "pid"])]
    pub(crate) spawn: Option<PathBuf>,

    /// Measure an already running daemon listening on HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", requires = "outbox")]
    pub(crate) addr: Option<String>,

    /// Outbox JSONL file of the running daemon (with --addr).
    #[arg(long, value_name = "FILE")]
    pub(crate) outbox: Option<PathBuf>,

    /// Pid of the running daemon, for peak RSS (with --addr).
    #[arg(long, value_name = "PID")]
    pub(crate) pid: Option<u32>,

    /// Number of measured messages.
    #[arg(short = 'n', long, default_value_t = 10_000)]
    pub(crate) messages: usize,

    /// Number of concurrent SMTP connections (one message per connection).
    #[arg(short = 'c', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub(crate) connections: u32,

    /// Account key put in <keyid> [default: loadkey0123456789, the spawned config's key].
    #[arg(long)]
    pub(crate) keyid: Option<String>,

    /// Envelope sender and From: header.
    #[arg(long, default_value = "load@load.test")]
    pub(crate) from: String,

    /// Envelope recipient and To: header [default: sms@sms.load.test, or
    /// 0600000001@sms.load.test with --alert].
    #[arg(long)]
    pub(crate) to: Option<String>,

    /// Add <emailAck>/<emailNot> pointing at ack@load.test so the daemon produces reply emails.
    #[arg(long)]
    pub(crate) acks: bool,

    /// Send plain alert mail (issue 10) instead of `<envoi>` requests: no
    /// block, a distinct subject per message, all to one number
    /// (`--to`, default `0600000001@sms.load.test`); the spawned daemon's
    /// account takes alerts. Not with --check-store.
    #[arg(long, conflicts_with_all = ["acks", "check_store", "sms_bytes", "pad_bytes"])]
    pub(crate) alert: bool,

    /// Messages sent (and drained) before the measured run; not measured.
    #[arg(long, default_value_t = 200)]
    pub(crate) warmup: usize,

    /// Seconds to wait, after the last reply, for accepted messages to reach the outbox.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    pub(crate) drain_timeout: f64,

    /// Use purely numeric emailIds (RUNID * 10^7 + N) instead of "RUNID-N".
    #[arg(long)]
    pub(crate) numeric_ids: bool,

    /// Keep the temp dir of a spawned daemon (it is always kept when the run is incomplete).
    #[arg(long)]
    pub(crate) keep: bool,

    /// Stop starting messages after SECS (`-n` is then an upper bound).
    #[arg(long, value_name = "SECS")]
    pub(crate) duration: Option<f64>,

    /// Start at most N messages per second, over all connections.
    #[arg(long, value_name = "N")]
    pub(crate) rate: Option<f64>,

    /// The run id that makes emailIds distinct [default: the current Unix
    /// milliseconds]; fix it to send the same emailIds again.
    #[arg(long, value_name = "ID")]
    pub(crate) run_id: Option<u64>,

    /// Pad each `<sms>` text to BYTES bytes (a large-request run; over
    /// 10 000 characters the request is refused from the `<sms>` span).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub(crate) sms_bytes: usize,

    /// Pad each message to about BYTES bytes with text after `</envoi>`:
    /// a large message whose request is still valid (a memory run).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pub(crate) pad_bytes: usize,

    /// Write one line per measured message: emailId, index, result
    /// (`250`, `250-dup` for "already processed", another code,
    /// `refused:STAGE:CODE` or `error:STAGE`) and the reply's Unix
    /// milliseconds, tab-separated.
    #[arg(long, value_name = "FILE", conflicts_with = "check_store")]
    pub(crate) record: Option<PathBuf>,

    /// Send again the messages listed in FILE (a `--record` file of an
    /// earlier run), with the same emailIds, instead of new ones.
    #[arg(long, value_name = "FILE", conflicts_with = "check_store")]
    pub(crate) resend: Option<PathBuf>,

    /// Instead of sending, check the SQLite store DB (opened read-only,
    /// the daemon stopped) against `--records`, `--outbox` and
    /// `--replies-log`, print the figures and exit with status 3 when a
    /// promise is broken (a 250'd email not stored or not sent once, an
    /// emailId queued twice, an outbox ref repeated).
    #[arg(long, value_name = "DB", conflicts_with_all = ["spawn", "addr", "pid"])]
    pub(crate) check_store: Option<PathBuf>,

    /// With --check-store: `--record` files, the first run first, then its
    /// re-sends.
    #[arg(long, value_name = "FILE", num_args = 1.., requires = "check_store")]
    pub(crate) records: Vec<PathBuf>,

    /// With --check-store: a log of reply deliveries, one line per delivery
    /// starting with its Message-ID (written by the fault run's sendmail sink).
    #[arg(long, value_name = "FILE", requires = "check_store")]
    pub(crate) replies_log: Option<PathBuf>,

    /// With --check-store: also count the emails queued after this Unix
    /// millisecond (did the daemon go on after a fault?); none is a broken
    /// promise.
    #[arg(long, value_name = "MS", requires = "check_store")]
    pub(crate) after_ms: Option<u64>,
}

impl Args {
    /// The checks clap cannot make on a load run's numbers.
    pub(crate) fn check(&self) -> Result<()> {
        if self.messages == 0 {
            bail!("--messages must be at least 1");
        }
        if !(self.drain_timeout.is_finite() && self.drain_timeout >= 0.0) {
            bail!("--drain-timeout must be a non-negative number of seconds");
        }
        for (name, v) in [("--duration", self.duration), ("--rate", self.rate)] {
            if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
                bail!("{name} must be a positive number");
            }
        }
        Ok(())
    }
}
