//! The daemon under measurement: spawned with a private temp dir and config,
//! or already running; stopped at the end, its memory read from /proc.

use std::fs::File;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use tokio::net::TcpStream;

use crate::args::Args;

/// How long a spawned daemon may take to start listening.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// A daemon this tool started (`--spawn`).
pub(crate) struct Spawned {
    /// The process, killed on drop if the run ends early.
    pub(crate) child: tokio::process::Child,
    /// Its private temp dir (config, store, outbox, replies, log).
    pub(crate) dir: PathBuf,
    /// Its stdout and stderr, shown when it fails to start.
    pub(crate) log: PathBuf,
}

/// The daemon a run measures: where to send and where to watch.
pub(crate) struct Target {
    /// Its SMTP address.
    pub(crate) addr: SocketAddr,
    /// Its outbox JSONL file, tailed to see the SMS.
    pub(crate) outbox: PathBuf,
    /// Its pid, for the memory figures (unknown for a running daemon without `--pid`).
    pub(crate) pid: Option<u32>,
    /// The daemon this tool started, if any: stopped at the end.
    pub(crate) spawned: Option<Spawned>,
}

impl Target {
    /// Spawns the daemon (`--spawn`) or resolves the running one's address.
    pub(crate) async fn open(args: &Args, keyid: &str) -> Result<Target> {
        if let Some(bin) = &args.spawn {
            let (sp, addr, outbox) = spawn_daemon(bin, keyid, args.alert).await?;
            let pid = sp.child.id();
            return Ok(Target {
                addr,
                outbox,
                pid,
                spawned: Some(sp),
            });
        }
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
        Ok(Target {
            addr,
            outbox,
            pid: args.pid,
            spawned: None,
        })
    }

    /// Stops a spawned daemon; returns a description of its exit.
    pub(crate) async fn stop(&mut self) -> Option<String> {
        match self.spawned.as_mut() {
            Some(sp) => Some(stop_daemon(sp).await),
            None => None,
        }
    }

    /// Tells where a spawned daemon's dir is when it is kept (`--keep`, or
    /// an incomplete run), removes it otherwise.
    pub(crate) fn keep_or_clean(&self, keep: bool, complete: bool) {
        if let Some(sp) = &self.spawned {
            if keep || !complete {
                println!(
                    "  daemon dir          {} (log {})",
                    sp.dir.display(),
                    sp.log.display()
                );
            } else {
                let _ = std::fs::remove_dir_all(&sp.dir);
            }
        }
    }
}

fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").context("bind 127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

fn toml_str(s: &str) -> String {
    // A TOML basic string (JSON string escaping is compatible for our inputs).
    serde_json::to_string(s).unwrap_or_else(|_| format!("\"{s}\""))
}

/// Writes the spawned daemon's config in `dir`; returns its path.
fn write_config(
    dir: &Path,
    addr: SocketAddr,
    keyid: &str,
    outbox: &Path,
    alerts: bool,
) -> Result<PathBuf> {
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
alerts = {alerts}

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
    Ok(cfg_path)
}

async fn spawn_daemon(
    bin: &Path,
    keyid: &str,
    alerts: bool,
) -> Result<(Spawned, SocketAddr, PathBuf)> {
    let dir = std::env::temp_dir().join(format!("mail2sms-load-{}", std::process::id()));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("clean {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("replies"))
        .with_context(|| format!("create {}", dir.display()))?;
    let port = free_port()?;
    let addr: SocketAddr = ([127, 0, 0, 1], port).into();
    let outbox = dir.join("outbox.jsonl");
    let cfg_path = write_config(&dir, addr, keyid, &outbox, alerts)?;

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
    wait_listening(&mut sp, addr).await?;
    Ok((sp, addr, outbox))
}

/// Waits until the spawned daemon's port accepts connections.
async fn wait_listening(sp: &mut Spawned, addr: SocketAddr) -> Result<()> {
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
    Ok(())
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

/// A process's memory: (VmHWM, VmRSS) in KiB.
pub(crate) type Mem = (u64, u64);

/// (VmHWM, VmRSS) in KiB from /proc/<pid>/status.
pub(crate) fn proc_mem(pid: u32) -> Option<Mem> {
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
