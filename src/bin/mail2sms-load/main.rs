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

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow, bail};
use clap::{ArgGroup, Parser};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Timeout for establishing a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout for each SMTP reply (and each write).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout for the reply to QUIT (not measured, only politeness).
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a spawned daemon may take to start listening.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// Outbox polling interval.
const TAIL_POLL: Duration = Duration::from_millis(2);
/// Keys every outbox line is expected to carry.
const OUTBOX_KEYS: [&str; 6] = ["to", "text", "email_id", "account", "sender_id", "tracker"];
/// Default account key (matches the config written in `--spawn` mode).
const DEFAULT_KEYID: &str = "loadkey0123456789";
/// Second digit after "06" that makes a valid French mobile number
/// (libphonenumber: 6[0-24-8]\d{7}).
const MOBILE_DIGIT: [u8; 8] = [b'0', b'1', b'2', b'4', b'5', b'6', b'7', b'8'];

#[derive(Parser, Debug)]
#[command(
    name = "mail2sms-load",
    version,
    about = "Load generator for the mail2sms daemon: SMTP in, outbox JSONL out",
    group(ArgGroup::new("target").required(true).args(["spawn", "addr", "check_store"]))
)]
struct Args {
    /// Spawn this mail2sms binary (`<bin> serve --config <tmp>/mail2sms.toml`)
    /// on a free loopback port with a fresh store and outbox, and kill it at the end.
    #[arg(long, value_name = "PATH", conflicts_with_all = ["addr", "outbox", "pid"])]
    spawn: Option<PathBuf>,

    /// Measure an already running daemon listening on HOST:PORT.
    #[arg(long, value_name = "HOST:PORT", requires = "outbox")]
    addr: Option<String>,

    /// Outbox JSONL file of the running daemon (with --addr).
    #[arg(long, value_name = "FILE")]
    outbox: Option<PathBuf>,

    /// Pid of the running daemon, for peak RSS (with --addr).
    #[arg(long, value_name = "PID")]
    pid: Option<u32>,

    /// Number of measured messages.
    #[arg(short = 'n', long, default_value_t = 10_000)]
    messages: usize,

    /// Number of concurrent SMTP connections (one message per connection).
    #[arg(short = 'c', long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    connections: u32,

    /// Account key put in <keyid> [default: loadkey0123456789, the spawned config's key].
    #[arg(long)]
    keyid: Option<String>,

    /// Envelope sender and From: header.
    #[arg(long, default_value = "load@load.test")]
    from: String,

    /// Envelope recipient and To: header.
    #[arg(long, default_value = "sms@sms.load.test")]
    to: String,

    /// Add <emailAck>/<emailNot> pointing at ack@load.test so the daemon produces reply emails.
    #[arg(long)]
    acks: bool,

    /// Messages sent (and drained) before the measured run; not measured.
    #[arg(long, default_value_t = 200)]
    warmup: usize,

    /// Seconds to wait, after the last reply, for accepted messages to reach the outbox.
    #[arg(long, value_name = "SECS", default_value_t = 60.0)]
    drain_timeout: f64,

    /// Use purely numeric emailIds (RUNID * 10^7 + N) instead of "RUNID-N".
    #[arg(long)]
    numeric_ids: bool,

    /// Keep the temp dir of a spawned daemon (it is always kept when the run is incomplete).
    #[arg(long)]
    keep: bool,

    /// Stop starting messages after SECS (`-n` is then an upper bound).
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,

    /// Start at most N messages per second, over all connections.
    #[arg(long, value_name = "N")]
    rate: Option<f64>,

    /// The run id that makes emailIds distinct [default: the current Unix
    /// milliseconds]; fix it to send the same emailIds again.
    #[arg(long, value_name = "ID")]
    run_id: Option<u64>,

    /// Pad each `<sms>` text to BYTES bytes (a large-request run; over
    /// 10 000 characters the request is refused from the `<sms>` span).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    sms_bytes: usize,

    /// Pad each message to about BYTES bytes with text after `</envoi>`:
    /// a large message whose request is still valid (a memory run).
    #[arg(long, value_name = "BYTES", default_value_t = 0)]
    pad_bytes: usize,

    /// Write one line per measured message: emailId, index, result
    /// (`250`, `250-dup` for "already processed", another code,
    /// `refused:STAGE:CODE` or `error:STAGE`) and the reply's Unix
    /// milliseconds, tab-separated.
    #[arg(long, value_name = "FILE", conflicts_with = "check_store")]
    record: Option<PathBuf>,

    /// Send again the messages listed in FILE (a `--record` file of an
    /// earlier run), with the same emailIds, instead of new ones.
    #[arg(long, value_name = "FILE", conflicts_with = "check_store")]
    resend: Option<PathBuf>,

    /// Instead of sending, check the SQLite store DB (opened read-only,
    /// the daemon stopped) against `--records`, `--outbox` and
    /// `--replies-log`, print the figures and exit with status 3 when a
    /// promise is broken (a 250'd email not stored or not sent once, an
    /// emailId queued twice, an outbox ref repeated).
    #[arg(long, value_name = "DB", conflicts_with_all = ["spawn", "addr", "pid"])]
    check_store: Option<PathBuf>,

    /// With --check-store: `--record` files, the first run first, then its
    /// re-sends.
    #[arg(long, value_name = "FILE", num_args = 1.., requires = "check_store")]
    records: Vec<PathBuf>,

    /// With --check-store: a log of reply deliveries, one line per delivery
    /// starting with its Message-ID (written by the fault run's sendmail sink).
    #[arg(long, value_name = "FILE", requires = "check_store")]
    replies_log: Option<PathBuf>,

    /// With --check-store: also count the emails queued after this Unix
    /// millisecond (did the daemon go on after a fault?); none is a broken
    /// promise.
    #[arg(long, value_name = "MS", requires = "check_store")]
    after_ms: Option<u64>,
}

// ---------------------------------------------------------------------------
// Message generation
// ---------------------------------------------------------------------------

struct MsgGen {
    /// Makes this run's emailIds distinct from every other run's.
    run_id: u64,
    /// `--numeric-ids`: emailIds made of digits only.
    numeric_ids: bool,
    /// The `<keyid>` every message carries.
    keyid: String,
    /// Envelope sender and `From:`.
    from: String,
    /// Envelope recipient and `To:`.
    to: String,
    /// Whether messages ask for etatAck / etatNot replies.
    acks: bool,
    /// The `Date:` header, the same for every message.
    date: String,
    /// `--sms-bytes`: pad each `<sms>` text to this many bytes (0: a short text).
    sms_bytes: usize,
    /// `--pad-bytes`: text after `</envoi>` up to this many bytes (0: none).
    pad_bytes: usize,
}

/// Appends lines of `y` (78 bytes with their CRLF) until `text` is about
/// `bytes` long.
fn pad_lines(text: &mut String, bytes: usize) {
    if bytes > text.len() {
        text.reserve(bytes - text.len());
        while text.len() + 78 <= bytes {
            text.push_str(&"y".repeat(76));
            text.push_str("\r\n");
        }
    }
}

impl MsgGen {
    fn email_id(&self, idx: usize) -> String {
        if self.numeric_ids {
            // 13-digit millis * 10^7 + idx stays below i64::MAX.
            format!("{}", self.run_id * 10_000_000 + idx as u64)
        } else {
            format!("{}-{}", self.run_id, idx)
        }
    }

    /// Prefix shared by every emailId of this run.
    fn id_prefix(&self) -> String {
        if self.numeric_ids {
            // Digits of run_id followed by idx padded into 7 digits.
            format!("{}", self.run_id)
        } else {
            format!("{}-", self.run_id)
        }
    }

    fn number(idx: usize) -> String {
        let d = MOBILE_DIGIT[(idx / 10_000_000) % MOBILE_DIGIT.len()] as char;
        format!("06{d}{:07}", idx % 10_000_000)
    }

    /// The `<sms>` text: short, or padded with lines of `x` up to
    /// `sms_bytes` (lines stay under SMTP's 1 000-byte line limit).
    fn sms_text(&self, idx: usize) -> String {
        let mut text = format!("Load test message {idx}");
        if self.sms_bytes > text.len() {
            text.reserve(self.sms_bytes - text.len());
            while text.len() < self.sms_bytes {
                let n = (self.sms_bytes - text.len()).min(78);
                text.push_str("\r\n");
                text.extend(std::iter::repeat_n('x', n.saturating_sub(2)));
            }
        }
        text
    }

    /// The DATA payload, CRLF line endings, dot-stuffed, ending with CRLF
    /// (the terminating ".\r\n" is written separately).
    fn data(&self, idx: usize, email_id: &str) -> Vec<u8> {
        let mut body = String::with_capacity(512);
        body.push_str("<envoi>\r\n");
        body.push_str(&format!("<keyid>{}</keyid>\r\n", xml_escape(&self.keyid)));
        body.push_str(&format!("<num>{}</num>\r\n", Self::number(idx)));
        body.push_str(&format!("<sms>{}</sms>\r\n", self.sms_text(idx)));
        if self.acks {
            body.push_str("<emailNot>ack@load.test</emailNot>\r\n");
            body.push_str("<emailAck>ack@load.test</emailAck>\r\n");
        }
        body.push_str(&format!("<emailId>{}</emailId>\r\n", xml_escape(email_id)));
        body.push_str("</envoi>\r\n");
        pad_lines(&mut body, self.pad_bytes);

        let mut msg = String::with_capacity(1024);
        msg.push_str(&format!("From: <{}>\r\n", self.from));
        msg.push_str(&format!("To: <{}>\r\n", self.to));
        msg.push_str(&format!("Subject: mail2sms load {email_id}\r\n"));
        msg.push_str(&format!("Message-ID: <{email_id}@load.test>\r\n"));
        msg.push_str(&format!("Date: {}\r\n", self.date));
        msg.push_str("MIME-Version: 1.0\r\n");
        msg.push_str("Content-Type: text/plain; charset=UTF-8\r\n");
        msg.push_str("\r\n");
        msg.push_str(&body);
        dot_stuff(msg.as_bytes())
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Double a leading '.' on every line (RFC 5321 4.5.2).
fn dot_stuff(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 8);
    let mut at_line_start = true;
    for &b in msg {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// RFC 5322 date (UTC) without a date crate.
fn rfc5322_date(unix_secs: u64) -> String {
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        WD[days.rem_euclid(7) as usize],
        d,
        MON[(m - 1) as usize],
        y,
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

// ---------------------------------------------------------------------------
// Minimal SMTP client
// ---------------------------------------------------------------------------

#[derive(Debug)]
enum Status {
    /// Final reply to DATA received (any code); `code == 250` means accepted.
    Done {
        /// The reply code.
        code: u16,
        /// A `250` saying the emailId was already processed (nothing queued).
        duplicate: bool,
        /// When the last byte of DATA was written (latency start).
        data_end: Instant,
        /// When the reply arrived (latency end).
        reply_at: Instant,
        /// The same moment on the wall clock, for `--record`.
        reply_wall: SystemTime,
    },
    /// A non-expected reply before the end of DATA (greeting, EHLO, MAIL, RCPT, DATA).
    Refused { stage: &'static str, code: u16 },
    /// Connection / I/O / timeout / protocol error.
    Failed { stage: &'static str, what: String },
}

struct Outcome {
    idx: usize,
    email_id: String,
    status: Status,
}

type Conn = BufReader<TcpStream>;

/// Reads one (possibly multi-line) reply: its code and its last line.
async fn read_reply(conn: &mut Conn, limit: Duration) -> Result<(u16, String), String> {
    let fut = async {
        let mut line = String::new();
        loop {
            line.clear();
            let n = conn
                .read_line(&mut line)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed".to_string());
            }
            let b = line.as_bytes();
            if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
                return Err(format!("bad reply line {:?}", line.trim_end()));
            }
            let code: u16 = line[..3].parse().unwrap_or(0);
            // "250-..." continues a multi-line reply, "250 ..." or "250" ends it.
            if b.get(3) != Some(&b'-') {
                return Ok((code, line.trim_end().to_string()));
            }
        }
    };
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err("timeout".to_string()),
    }
}

async fn write_all(conn: &mut Conn, bytes: &[u8]) -> Result<(), String> {
    let fut = async {
        let s = conn.get_mut();
        s.write_all(bytes).await?;
        s.flush().await
    };
    match tokio::time::timeout(REPLY_TIMEOUT, fut).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write: {e}")),
        Err(_) => Err("write timeout".to_string()),
    }
}

/// Send a command and expect one of `ok` codes.
async fn command(
    conn: &mut Conn,
    stage: &'static str,
    line: &str,
    ok: &[u16],
) -> Result<(), Status> {
    write_all(conn, line.as_bytes())
        .await
        .map_err(|what| Status::Failed { stage, what })?;
    expect(conn, stage, ok).await
}

async fn expect(conn: &mut Conn, stage: &'static str, ok: &[u16]) -> Result<(), Status> {
    match read_reply(conn, REPLY_TIMEOUT).await {
        Ok((code, _)) if ok.contains(&code) => Ok(()),
        Ok((code, _)) => Err(Status::Refused { stage, code }),
        Err(what) => Err(Status::Failed { stage, what }),
    }
}

async fn send_one(addr: SocketAddr, from: &str, to: &str, data: &[u8]) -> Status {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Status::Failed {
                stage: "connect",
                what: e.kind().to_string(),
            };
        }
        Err(_) => {
            return Status::Failed {
                stage: "connect",
                what: "timeout".to_string(),
            };
        }
    };
    let _ = stream.set_nodelay(true);
    let mut conn = BufReader::with_capacity(4096, stream);

    let r = async {
        expect(&mut conn, "greeting", &[220]).await?;
        command(&mut conn, "ehlo", "EHLO load-client.load.test\r\n", &[250]).await?;
        command(
            &mut conn,
            "mail",
            &format!("MAIL FROM:<{from}>\r\n"),
            &[250],
        )
        .await?;
        command(
            &mut conn,
            "rcpt",
            &format!("RCPT TO:<{to}>\r\n"),
            &[250, 251],
        )
        .await?;
        command(&mut conn, "data", "DATA\r\n", &[354]).await?;
        write_all(&mut conn, data)
            .await
            .map_err(|what| Status::Failed {
                stage: "body",
                what,
            })?;
        // `data` ends with CRLF, so this completes "\r\n.\r\n".
        write_all(&mut conn, b".\r\n")
            .await
            .map_err(|what| Status::Failed {
                stage: "body",
                what,
            })?;
        let data_end = Instant::now();
        let (code, text) =
            read_reply(&mut conn, REPLY_TIMEOUT)
                .await
                .map_err(|what| Status::Failed {
                    stage: "end-of-data",
                    what,
                })?;
        let reply_at = Instant::now();
        Ok::<_, Status>(Status::Done {
            code,
            duplicate: code == 250 && text.contains("already processed"),
            data_end,
            reply_at,
            reply_wall: SystemTime::now(),
        })
    }
    .await;

    let status = r.unwrap_or_else(|s| s);
    if !matches!(status, Status::Failed { .. }) {
        // Polite QUIT; its outcome is not measured.
        if write_all(&mut conn, b"QUIT\r\n").await.is_ok() {
            let _ = read_reply(&mut conn, QUIT_TIMEOUT).await;
        }
    }
    status
}

struct Phase {
    outcomes: Vec<Outcome>,
    started: Instant,
    finished: Instant,
}

/// Which messages a phase sends, and how fast.
#[derive(Clone)]
struct Plan {
    /// Index of the first generated message (`first..first+count`).
    first: usize,
    /// How many messages at most.
    count: usize,
    /// `--resend`: the exact (index, emailId) pairs to send instead of
    /// generated ones (`first` is then ignored).
    list: Option<Arc<Vec<(usize, String)>>>,
    /// `--rate`: messages started per second, over all connections.
    rate: Option<f64>,
    /// `--duration`: no message is started after this long.
    duration: Option<Duration>,
}

impl Plan {
    /// The `pos`-th message of the plan: its index and emailId.
    fn message(&self, g: &MsgGen, pos: usize) -> (usize, String) {
        match &self.list {
            Some(list) => list[pos].clone(),
            None => (self.first + pos, g.email_id(self.first + pos)),
        }
    }
}

/// Send the messages of `plan` over `conns` concurrent connections.
async fn run_phase(
    label: &'static str,
    addr: SocketAddr,
    gen_: Arc<MsgGen>,
    plan: Plan,
    conns: usize,
) -> Phase {
    let count = plan.list.as_ref().map_or(plan.count, |l| l.len());
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let stop_at = plan.duration.map(|d| started + d);

    let progress = {
        let done = done.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(2));
            tick.tick().await;
            loop {
                tick.tick().await;
                let d = done.load(Ordering::Relaxed);
                eprintln!(
                    "  [{label}] {d}/{count} sent, {:.1} s",
                    started.elapsed().as_secs_f64()
                );
            }
        })
    };

    let mut workers = Vec::with_capacity(conns);
    for _ in 0..conns.min(count.max(1)) {
        let next = next.clone();
        let done = done.clone();
        let g = gen_.clone();
        let plan = plan.clone();
        workers.push(tokio::spawn(async move {
            let mut out = Vec::new();
            loop {
                let pos = next.fetch_add(1, Ordering::Relaxed);
                if pos >= count {
                    break;
                }
                if let Some(rate) = plan.rate {
                    let due = started + Duration::from_secs_f64(pos as f64 / rate);
                    tokio::time::sleep_until(due.into()).await;
                }
                if stop_at.is_some_and(|t| Instant::now() >= t) {
                    break;
                }
                let (idx, email_id) = plan.message(&g, pos);
                let data = g.data(idx, &email_id);
                let status = send_one(addr, &g.from, &g.to, &data).await;
                done.fetch_add(1, Ordering::Relaxed);
                out.push(Outcome {
                    idx,
                    email_id,
                    status,
                });
            }
            out
        }));
    }
    let mut outcomes = Vec::with_capacity(count);
    for w in workers {
        match w.await {
            Ok(mut v) => outcomes.append(&mut v),
            Err(e) => eprintln!("worker panicked: {e}"),
        }
    }
    let finished = Instant::now();
    progress.abort();
    outcomes.sort_by_key(|o| o.idx);
    Phase {
        outcomes,
        started,
        finished,
    }
}

// ---------------------------------------------------------------------------
// Outbox tailer
// ---------------------------------------------------------------------------

#[derive(Default)]
struct TailState {
    /// First time each email_id was seen in the outbox.
    seen: HashMap<String, Instant>,
    lines: u64,
    invalid_json: u64,
    duplicates: u64,
    /// Lines lacking a key from `OUTBOX_KEYS`, by key.
    missing_keys: BTreeMap<&'static str, u64>,
    /// First invalid line, for the report.
    first_invalid: Option<String>,
    read_errors: u64,
}

impl TailState {
    fn ingest(&mut self, line: &[u8], now: Instant) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        self.lines += 1;
        let v: Value = match serde_json::from_slice(line) {
            Ok(v @ Value::Object(_)) => v,
            _ => {
                self.invalid_json += 1;
                if self.first_invalid.is_none() {
                    let s = String::from_utf8_lossy(line);
                    self.first_invalid = Some(s.chars().take(200).collect());
                }
                return;
            }
        };
        for k in OUTBOX_KEYS {
            if v.get(k).is_none() {
                *self.missing_keys.entry(k).or_default() += 1;
            }
        }
        let id = match v.get("email_id") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => return,
        };
        match self.seen.entry(id) {
            std::collections::hash_map::Entry::Occupied(_) => self.duplicates += 1,
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(now);
            }
        }
    }
}

struct Tailer {
    state: Arc<Mutex<TailState>>,
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<()>>,
}

impl Tailer {
    /// Start tailing `path`. If it already exists, only lines appended from now on count.
    fn start(path: PathBuf) -> Tailer {
        let state = Arc::new(Mutex::new(TailState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s2, st2) = (state.clone(), stop.clone());
        let handle = std::thread::Builder::new()
            .name("outbox-tail".into())
            .spawn(move || tail_loop(&path, &s2, &st2))
            .expect("spawn tailer thread");
        Tailer {
            state,
            stop,
            handle: Some(handle),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TailState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Tailer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

struct OpenFile {
    file: File,
    ino: u64,
    pos: u64,
}

fn open_tail(path: &Path, at_end: bool, skip_partial: &mut bool) -> Option<OpenFile> {
    let mut file = File::open(path).ok()?;
    let md = file.metadata().ok()?;
    let mut pos = 0;
    if at_end && md.len() > 0 {
        let mut last = [0u8; 1];
        file.seek(SeekFrom::Start(md.len() - 1)).ok()?;
        file.read_exact(&mut last).ok()?;
        pos = md.len();
        // If a line is being written right now, its rest is not ours to count.
        *skip_partial = last[0] != b'\n';
    }
    file.seek(SeekFrom::Start(pos)).ok()?;
    Some(OpenFile {
        file,
        ino: md.ino(),
        pos,
    })
}

fn tail_loop(path: &Path, state: &Mutex<TailState>, stop: &AtomicBool) {
    let mut skip_partial = false;
    let mut cur = open_tail(path, true, &mut skip_partial);
    let mut pending: Vec<u8> = Vec::with_capacity(1 << 16);
    let mut chunk: Vec<u8> = Vec::with_capacity(1 << 16);
    loop {
        let stopping = stop.load(Ordering::Relaxed);
        if cur.is_none() {
            cur = open_tail(path, false, &mut skip_partial);
        }
        if let Some(f) = cur.as_mut() {
            // Truncated in place: start over.
            if let Ok(md) = f.file.metadata()
                && md.len() < f.pos
            {
                let _ = f.file.seek(SeekFrom::Start(0));
                f.pos = 0;
                pending.clear();
            }
            chunk.clear();
            match f.file.read_to_end(&mut chunk) {
                Ok(n) => f.pos += n as u64,
                Err(_) => state.lock().unwrap_or_else(|e| e.into_inner()).read_errors += 1,
            }
            if !chunk.is_empty() {
                let now = Instant::now();
                pending.extend_from_slice(&chunk);
                if let Some(last_nl) = pending.iter().rposition(|&b| b == b'\n') {
                    let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
                    for line in pending[..last_nl].split(|&b| b == b'\n') {
                        if skip_partial {
                            skip_partial = false;
                            continue;
                        }
                        st.ingest(line, now);
                    }
                    drop(st);
                    pending.drain(..=last_nl);
                }
            }
            // Replaced by another file (rotation): finish this one, then reopen.
            match std::fs::metadata(path) {
                Ok(md) if md.ino() != f.ino => {
                    cur = None;
                    pending.clear();
                    continue;
                }
                _ => {}
            }
        }
        if stopping {
            break;
        }
        std::thread::sleep(TAIL_POLL);
    }
}

/// Wait until every id in `ids` was seen or `deadline` passes; returns how many are missing.
async fn wait_drain(tail: &Tailer, ids: &[&str], deadline: Instant) -> usize {
    let mut pending: Vec<&str> = ids.to_vec();
    let mut last_report = Instant::now();
    loop {
        {
            let st = tail.lock();
            pending.retain(|id| !st.seen.contains_key(*id));
        }
        if pending.is_empty() || Instant::now() >= deadline {
            return pending.len();
        }
        if last_report.elapsed() >= Duration::from_secs(2) {
            last_report = Instant::now();
            eprintln!(
                "  [drain] {}/{} SMS seen in outbox",
                ids.len() - pending.len(),
                ids.len()
            );
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

// ---------------------------------------------------------------------------
// Daemon handling
// ---------------------------------------------------------------------------

struct Spawned {
    child: tokio::process::Child,
    dir: PathBuf,
    log: PathBuf,
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn toml_str(s: &str) -> String {
    // A TOML basic string (JSON string escaping is compatible for our inputs).
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

async fn spawn_daemon(bin: &Path, keyid: &str) -> Result<(Spawned, SocketAddr, PathBuf)> {
    let dir = std::env::temp_dir().join(format!("mail2sms-load-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clean {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("replies"))
        .with_context(|| format!("create {}", dir.display()))?;
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let outbox = dir.join("outbox.jsonl");
    let dir_s = dir.to_string_lossy();
    let config = format!(
        r#"[smtp]
listen = "{addr}"
hostname = "sms.load.test"
domains = ["sms.load.test"]

[store]
path = {db}

[replies]
from = "mail2sms@sms.load.test"
transport = {replies}

[accounts.load]
keyid = {keyid}
senders = ["@load.test"]
providers = ["outbox"]

[providers.outbox]
type = "outbox"
path = {outbox}
"#,
        db = toml_str(&format!("{dir_s}/mail2sms.db")),
        replies = toml_str(&format!("file://{dir_s}/replies")),
        keyid = toml_str(keyid),
        outbox = toml_str(&outbox.to_string_lossy()),
    );
    let cfg_path = dir.join("mail2sms.toml");
    std::fs::write(&cfg_path, config).context("write config")?;

    let log = dir.join("daemon.log");
    let log_file = File::create(&log).context("create daemon.log")?;
    let child = match tokio::process::Command::new(bin)
        .arg("serve")
        .arg("--config")
        .arg(&cfg_path)
        .stdin(std::process::Stdio::null())
        .stdout(log_file.try_clone()?)
        .stderr(log_file)
        .kill_on_drop(true)
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e).with_context(|| format!("spawn {}", bin.display()));
        }
    };
    let mut sp = Spawned { child, dir, log };

    // Wait until the port accepts connections.
    let t0 = Instant::now();
    loop {
        if let Some(st) = sp.child.try_wait()? {
            bail!(
                "daemon exited during startup ({st}); log {}:\n{}",
                sp.log.display(),
                log_tail(&sp.log)
            );
        }
        if let Ok(Ok(s)) =
            tokio::time::timeout(Duration::from_millis(200), TcpStream::connect(addr)).await
        {
            drop(s);
            break;
        }
        if t0.elapsed() > STARTUP_TIMEOUT {
            bail!(
                "daemon not listening on {addr} after {}s; log {}:\n{}",
                STARTUP_TIMEOUT.as_secs(),
                sp.log.display(),
                log_tail(&sp.log)
            );
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    eprintln!(
        "daemon pid {} listening on {addr} after {} ms (dir {})",
        sp.child.id().unwrap_or(0),
        t0.elapsed().as_millis(),
        sp.dir.display()
    );
    Ok((sp, addr, outbox))
}

fn log_tail(path: &Path) -> String {
    let s = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// SIGTERM, wait up to 10 s, then SIGKILL. Returns a description of the exit.
async fn stop_daemon(sp: &mut Spawned) -> String {
    if let Some(pid) = sp.child.id() {
        let _ = std::process::Command::new("kill")
            .arg("-TERM")
            .arg(pid.to_string())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if let Ok(Ok(st)) = tokio::time::timeout(Duration::from_secs(10), sp.child.wait()).await {
            return format!("stopped by SIGTERM: {st}");
        }
    }
    let _ = sp.child.kill().await;
    "killed (SIGKILL)".to_string()
}

/// (VmHWM, VmRSS) in KiB from /proc/<pid>/status.
fn proc_mem(pid: u32) -> Option<(u64, u64)> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        s.lines()
            .find(|l| l.starts_with(name))?
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    Some((field("VmHWM:")?, field("VmRSS:")?))
}

// ---------------------------------------------------------------------------
// Statistics
// ---------------------------------------------------------------------------

struct Lat {
    n: usize,
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

fn lat(mut v: Vec<Duration>) -> Option<Lat> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    // Nearest-rank percentile.
    let pct = |p: f64| ms(v[((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1]);
    let sum: f64 = v.iter().map(|d| ms(*d)).sum();
    Some(Lat {
        n: v.len(),
        p50: pct(0.50),
        p90: pct(0.90),
        p99: pct(0.99),
        max: ms(*v.last().expect("non-empty")),
        mean: sum / v.len() as f64,
    })
}

fn lat_json(l: &Option<Lat>) -> Value {
    match l {
        None => Value::Null,
        Some(l) => json!({
            "n": l.n, "p50": r3(l.p50), "p90": r3(l.p90), "p99": r3(l.p99),
            "max": r3(l.max), "mean": r3(l.mean),
        }),
    }
}

fn lat_line(l: &Option<Lat>) -> String {
    match l {
        None => "n/a".to_string(),
        Some(l) => format!(
            "p50 {:.2} ms  p90 {:.2} ms  p99 {:.2} ms  max {:.2} ms  (mean {:.2} ms, n={})",
            l.p50, l.p90, l.p99, l.max, l.mean, l.n
        ),
    }
}

fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

struct Tally {
    accepted: Vec<usize>, // indexes into outcomes
    /// Final replies to end of DATA other than 250, by code.
    rejected: BTreeMap<u16, u64>,
    /// Refusals before end of DATA, "stage code".
    refused: BTreeMap<String, u64>,
    /// Errors, "stage: what".
    errors: BTreeMap<String, u64>,
    /// `250` replies saying "already processed" (counted in `accepted` too).
    duplicates: u64,
    last_reply: Option<Instant>,
}

fn tally(p: &Phase) -> Tally {
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

// ---------------------------------------------------------------------------
// Records (`--record`, `--resend`, `--records`)
// ---------------------------------------------------------------------------

/// One line of a `--record` file: what one message got.
#[derive(Debug, PartialEq)]
struct Record {
    /// The emailId sent: the key every check is made on.
    email_id: String,
    /// The message's index (it picks the phone number), so that `--resend`
    /// sends the very same message again.
    idx: usize,
    /// What the daemon answered: `250`, `250-dup` ("already processed"),
    /// another end-of-DATA code, `refused:STAGE:CODE` or `error:STAGE`.
    result: String,
    /// When the answer came, in Unix milliseconds (0: no answer).
    at_ms: u64,
}

impl Record {
    fn of(o: &Outcome) -> Record {
        let (result, at_ms) = match &o.status {
            Status::Done {
                code,
                duplicate,
                reply_wall,
                ..
            } => {
                let ms = reply_wall
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_millis() as u64);
                let result = if *duplicate {
                    "250-dup".to_string()
                } else {
                    code.to_string()
                };
                (result, ms)
            }
            Status::Refused { stage, code } => (format!("refused:{stage}:{code}"), 0),
            Status::Failed { stage, .. } => (format!("error:{stage}"), 0),
        };
        Record {
            email_id: o.email_id.clone(),
            idx: o.idx,
            result,
            at_ms,
        }
    }

    /// A `250` that queued the request (not "already processed").
    fn queued(&self) -> bool {
        self.result == "250"
    }

    /// Any `250`: the daemon says the request is in its store.
    fn accepted(&self) -> bool {
        self.result == "250" || self.result == "250-dup"
    }
}

fn write_records(path: &Path, outcomes: &[Outcome]) -> Result<()> {
    use std::io::Write;
    let file = File::create(path).with_context(|| format!("create {}", path.display()))?;
    let mut w = std::io::BufWriter::new(file);
    for o in outcomes {
        let r = Record::of(o);
        writeln!(w, "{}\t{}\t{}\t{}", r.email_id, r.idx, r.result, r.at_ms)
            .with_context(|| format!("write {}", path.display()))?;
    }
    w.flush()
        .with_context(|| format!("write {}", path.display()))
}

fn read_records(path: &Path) -> Result<Vec<Record>> {
    let text = std::fs::read_to_string(path).with_context(|| format!("read {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, line)| {
            let bad = || {
                anyhow!(
                    "{}:{}: not a --record line: {line:?}",
                    path.display(),
                    n + 1
                )
            };
            let f: Vec<&str> = line.split('\t').collect();
            let [email_id, idx, result, at_ms] = f[..] else {
                return Err(bad());
            };
            Ok(Record {
                email_id: email_id.to_string(),
                idx: idx.parse().map_err(|_| bad())?,
                result: result.to_string(),
                at_ms: at_ms.parse().map_err(|_| bad())?,
            })
        })
        .collect()
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

// ---------------------------------------------------------------------------
// Main
// ---------------------------------------------------------------------------

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
    if args.messages == 0 {
        bail!("--messages must be at least 1");
    }
    if !(args.drain_timeout.is_finite() && args.drain_timeout >= 0.0) {
        bail!("--drain-timeout must be a non-negative number of seconds");
    }
    for (name, v) in [("--duration", args.duration), ("--rate", args.rate)] {
        if v.is_some_and(|v| !(v.is_finite() && v > 0.0)) {
            bail!("{name} must be a positive number");
        }
    }
    let resend = match &args.resend {
        Some(path) => {
            let list = read_records(path)?
                .into_iter()
                .map(|r| (r.idx, r.email_id))
                .collect::<Vec<_>>();
            if list.is_empty() {
                bail!("--resend {}: no message to send again", path.display());
            }
            // Re-sends are the measurement: no warmup with fresh emailIds.
            args.warmup = 0;
            Some(Arc::new(list))
        }
        None => None,
    };
    let keyid = args
        .keyid
        .clone()
        .unwrap_or_else(|| DEFAULT_KEYID.to_string());
    let conns = args.connections as usize;
    let drain_timeout = Duration::from_secs_f64(args.drain_timeout);

    let mut spawned = None;
    let (addr, outbox, pid) = if let Some(bin) = &args.spawn {
        let (sp, addr, outbox) = spawn_daemon(bin, &keyid).await?;
        let pid = sp.child.id();
        spawned = Some(sp);
        (addr, outbox, pid)
    } else {
        let a = args
            .addr
            .as_deref()
            .context("--addr or --spawn is required")?;
        let addr = tokio::net::lookup_host(a)
            .await
            .with_context(|| format!("resolve {a}"))?
            .next()
            .with_context(|| format!("{a} resolves to nothing"))?;
        let outbox = args
            .outbox
            .clone()
            .context("--outbox is required with --addr")?;
        (addr, outbox, args.pid)
    };

    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let g = Arc::new(MsgGen {
        run_id: args.run_id.unwrap_or(now.as_millis() as u64),
        numeric_ids: args.numeric_ids,
        keyid,
        from: args.from.clone(),
        to: args.to.clone(),
        acks: args.acks,
        date: rfc5322_date(now.as_secs()),
        sms_bytes: args.sms_bytes,
        pad_bytes: args.pad_bytes,
    });
    let plan = Plan {
        first: args.warmup,
        count: args.messages,
        list: resend,
        rate: args.rate,
        duration: args.duration.map(Duration::from_secs_f64),
    };
    let prefix = g.id_prefix();
    let tail = Tailer::start(outbox.clone());
    let mem_idle = pid.and_then(proc_mem);

    eprintln!(
        "mail2sms-load: target {addr}, outbox {}, run id {}, {} warmup + {} messages over {} connections",
        outbox.display(),
        g.run_id,
        args.warmup,
        args.messages,
        conns
    );

    // Warmup: sent and drained, not measured.
    let mut warmup_json = Value::Null;
    if args.warmup > 0 {
        let warmup = Plan {
            first: 0,
            count: args.warmup,
            list: None,
            duration: None,
            ..plan.clone()
        };
        let p = run_phase("warmup", addr, g.clone(), warmup, conns).await;
        let t = tally(&p);
        let ids: Vec<&str> = t
            .accepted
            .iter()
            .map(|&i| p.outcomes[i].email_id.as_str())
            .collect();
        let missing = wait_drain(&tail, &ids, Instant::now() + drain_timeout).await;
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
        warmup_json = json!({
            "sent": args.warmup, "accepted": ids.len(), "sms_seen": ids.len() - missing,
        });
    }

    // Measured run.
    let p = run_phase("load", addr, g.clone(), plan, conns).await;
    if let Some(path) = &args.record {
        write_records(path, &p.outcomes)?;
    }
    let sent = p.outcomes.len();
    let t = tally(&p);
    let acc_ids: Vec<&str> = t
        .accepted
        .iter()
        .map(|&i| p.outcomes[i].email_id.as_str())
        .collect();
    let missing = wait_drain(&tail, &acc_ids, Instant::now() + drain_timeout).await;
    let mem_end = pid.and_then(proc_mem);

    // Let the tailer notice trailing duplicates, then stop it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let st = {
        let mut guard = tail.lock();
        std::mem::take(&mut *guard)
    };
    drop(tail);

    // Latencies.
    let mut reply_lat = Vec::with_capacity(t.accepted.len());
    let mut sms_lat = Vec::with_capacity(t.accepted.len());
    let mut last_sms: Option<Instant> = None;
    for &i in &t.accepted {
        let o = &p.outcomes[i];
        if let Status::Done {
            data_end, reply_at, ..
        } = o.status
        {
            reply_lat.push(reply_at.duration_since(data_end));
            if let Some(&seen) = st.seen.get(&o.email_id) {
                sms_lat.push(seen.saturating_duration_since(data_end));
                last_sms = Some(last_sms.map_or(seen, |l| l.max(seen)));
            }
        }
    }
    // SMS lines of this run that do not belong to an accepted measured message
    // (warmup ids are in `seen` too: exclude them).
    let measured: std::collections::HashSet<&str> =
        p.outcomes.iter().map(|o| o.email_id.as_str()).collect();
    let accepted_set: std::collections::HashSet<&str> = acc_ids.iter().copied().collect();
    let unexpected = st
        .seen
        .keys()
        .filter(|k| k.starts_with(&prefix) && measured.contains(k.as_str()))
        .filter(|k| !accepted_set.contains(k.as_str()))
        .count();
    let foreign = st.seen.keys().filter(|k| !k.starts_with(&prefix)).count();

    let accepted = t.accepted.len();
    let sms_seen = accepted - missing;
    let send_wall = t
        .last_reply
        .unwrap_or(p.finished)
        .duration_since(p.started)
        .as_secs_f64();
    let accepted_per_s = if send_wall > 0.0 {
        accepted as f64 / send_wall
    } else {
        0.0
    };
    let sms_wall = last_sms.map(|l| l.duration_since(p.started).as_secs_f64());
    let sms_per_s = match sms_wall {
        Some(w) if w > 0.0 => sms_seen as f64 / w,
        _ => 0.0,
    };
    let reply_l = lat(reply_lat);
    let sms_l = lat(sms_lat);

    let daemon_exit = match spawned.as_mut() {
        Some(sp) => Some(stop_daemon(sp).await),
        None => None,
    };
    let complete = accepted == sent && missing == 0;

    // ---- human-readable summary ----
    println!();
    println!("mail2sms-load summary");
    println!(
        "  target              {addr}  (outbox {})",
        outbox.display()
    );
    println!(
        "  messages            {sent} over {} connections (+{} warmup), run id {}",
        conns, args.warmup, g.run_id
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
    println!(
        "  SMS in outbox       {sms_seen}/{accepted}{}  => {sms_per_s:.1} SMS/s (first connect to last SMS seen{})",
        if missing > 0 {
            format!(
                "  ({missing} missing after {:.0} s drain)",
                args.drain_timeout
            )
        } else {
            String::new()
        },
        sms_wall.map(|w| format!(", {w:.3} s")).unwrap_or_default()
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
    println!("  latency end-of-DATA -> 250   {}", lat_line(&reply_l));
    println!("  latency end-of-DATA -> SMS   {}", lat_line(&sms_l));
    match (pid, mem_end) {
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
    if let Some(e) = &daemon_exit {
        println!("  daemon              {e}");
    }
    if let Some(sp) = &spawned {
        if args.keep || !complete {
            println!(
                "  daemon dir          {} (log {})",
                sp.dir.display(),
                sp.log.display()
            );
        } else {
            let _ = std::fs::remove_dir_all(&sp.dir);
        }
    }

    // ---- machine-readable line ----
    let map_json = |m: &BTreeMap<String, u64>| -> Value {
        Value::Object(m.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
    };
    let out = json!({
        "tool": "mail2sms-load",
        "run_id": g.run_id,
        "addr": addr.to_string(),
        "messages": sent,
        "already_processed": t.duplicates,
        "connections": conns,
        "warmup": warmup_json,
        "accepted": accepted,
        "wall_s": r3(send_wall),
        "accepted_per_s": r3(accepted_per_s),
        "rejected": Value::Object(t.rejected.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()),
        "refused": map_json(&t.refused),
        "errors": map_json(&t.errors),
        "sms_seen": sms_seen,
        "sms_missing": missing,
        "sms_wall_s": sms_wall.map(r3),
        "sms_per_s": r3(sms_per_s),
        "outbox_duplicates": st.duplicates,
        "outbox_unexpected": unexpected,
        "outbox_foreign_ids": foreign,
        "outbox_invalid_lines": st.invalid_json,
        "outbox_missing_keys": Value::Object(st.missing_keys.iter().map(|(k, v)| (k.to_string(), json!(v))).collect()),
        "latency_reply_ms": lat_json(&reply_l),
        "latency_sms_ms": lat_json(&sms_l),
        "daemon_pid": pid,
        "peak_rss_kb": mem_end.map(|m| m.0),
        "rss_end_kb": mem_end.map(|m| m.1),
        "rss_before_kb": mem_idle.map(|m| m.1),
        "complete": complete,
    });
    println!("{out}");
    Ok(complete)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_311_260),
            "Sun, 22 Nov 2026 01:34:20 +0000"
        );
    }

    #[test]
    fn numbers_are_distinct_french_mobiles() {
        let mut seen = std::collections::HashSet::new();
        for i in (1000..80_000_000).step_by(9_999_991).chain(0..1000) {
            let n = MsgGen::number(i);
            let b = n.as_bytes();
            assert_eq!(b.len(), 10, "{n}");
            assert!(n.starts_with("06") && b"01245678".contains(&b[2]), "{n}");
            assert!(seen.insert(n));
        }
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n.\r\n"), b"a\r\n..b\r\n..\r\n");
        assert_eq!(dot_stuff(b"a"), b"a\r\n");
    }

    #[test]
    fn message_shape() {
        let g = MsgGen {
            run_id: 42,
            numeric_ids: false,
            keyid: "k<1>".into(),
            from: "load@load.test".into(),
            to: "sms@sms.load.test".into(),
            acks: true,
            date: rfc5322_date(0),
            sms_bytes: 0,
            pad_bytes: 0,
        };
        let id = g.email_id(7);
        assert_eq!(id, "42-7");
        let d = String::from_utf8(g.data(7, &id)).unwrap();
        assert!(
            d.contains("\r\n\r\n<envoi>\r\n<keyid>k&lt;1&gt;</keyid>\r\n<num>0600000007</num>\r\n")
        );
        assert!(d.contains(
            "<emailAck>ack@load.test</emailAck>\r\n<emailId>42-7</emailId>\r\n</envoi>\r\n"
        ));
        assert!(!d.replace("\r\n", "").contains('\n'));
        let g = MsgGen {
            numeric_ids: true,
            ..g
        };
        assert_eq!(g.email_id(7), "420000007");
        assert!(g.email_id(7).starts_with(&g.id_prefix()));
    }

    #[test]
    fn padded_sms_text() {
        let g = MsgGen {
            run_id: 1,
            numeric_ids: false,
            keyid: "k".into(),
            from: "a@b.c".into(),
            to: "d@e.f".into(),
            acks: false,
            date: rfc5322_date(0),
            sms_bytes: 1_000,
            pad_bytes: 0,
        };
        let text = g.sms_text(3);
        assert_eq!(text.len(), 1_000);
        assert!(text.starts_with("Load test message 3\r\nxxx"));
        assert!(text.split("\r\n").all(|l| l.len() <= 78));
        assert_eq!(
            MsgGen { sms_bytes: 0, ..g }.sms_text(3),
            "Load test message 3"
        );
    }

    #[test]
    fn records_round_trip() {
        let now = Instant::now();
        let done = |code, duplicate| Status::Done {
            code,
            duplicate,
            data_end: now,
            reply_at: now,
            reply_wall: UNIX_EPOCH + Duration::from_millis(1_234),
        };
        let statuses = vec![
            done(250, false),
            done(250, true),
            done(451, false),
            Status::Refused {
                stage: "rcpt",
                code: 550,
            },
            Status::Failed {
                stage: "connect",
                what: "refused".into(),
            },
        ];
        let expected = [
            ("250", 1_234),
            ("250-dup", 1_234),
            ("451", 1_234),
            ("refused:rcpt:550", 0),
            ("error:connect", 0),
        ];
        let outcomes: Vec<Outcome> = statuses
            .into_iter()
            .enumerate()
            .map(|(idx, status)| Outcome {
                idx,
                email_id: format!("9-{idx}"),
                status,
            })
            .collect();
        let dir = std::env::temp_dir().join(format!("load-records-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("answers.tsv");
        write_records(&path, &outcomes).unwrap();
        let back = read_records(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(back.len(), outcomes.len());
        for (idx, (r, (result, ms))) in back.iter().zip(expected).enumerate() {
            assert_eq!(
                (r.email_id.as_str(), r.idx),
                (format!("9-{idx}").as_str(), idx)
            );
            assert_eq!((r.result.as_str(), r.at_ms), (result, ms));
        }
        assert!(back[0].queued() && back[0].accepted());
        assert!(!back[1].queued() && back[1].accepted());
        assert!(!back[2].accepted());
    }

    #[test]
    fn tail_ingest() {
        let mut t = TailState::default();
        let now = Instant::now();
        t.ingest(br#"{"to":"+33600000001","text":"x","email_id":"1-1","account":"a","sender_id":null,"tracker":null}"#, now);
        t.ingest(br#"{"email_id":17}"#, now);
        t.ingest(br#"{"email_id":"1-1"}"#, now);
        t.ingest(b"garbage", now);
        t.ingest(b"  ", now);
        assert_eq!(t.lines, 4);
        assert_eq!(t.invalid_json, 1);
        assert_eq!(t.duplicates, 1);
        assert!(t.seen.contains_key("1-1") && t.seen.contains_key("17"));
        assert_eq!(t.missing_keys.get("to"), Some(&2));
    }
}
