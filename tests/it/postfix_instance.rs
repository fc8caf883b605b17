//! A private Postfix for the tests of `postfix.rs`: its own
//! `config_directory`, queue, data directory and log file in a temp dir,
//! smtpd on a free loopback port, nothing able to leave the machine
//! (`default_transport = error:…`), stopped on drop. Its `main.cf`,
//! `master.cf` and transport table are built from `examples/postfix/`, so
//! the documented configuration is the tested one.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The Postfix binaries the tests need.
const POSTFIX: &str = "/usr/sbin/postfix";

/// Why the Postfix tests cannot run here, if they cannot.
pub fn skip_reason() -> Option<&'static str> {
    if !Path::new(POSTFIX).exists() {
        return Some("skipped: postfix not installed");
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("skipped: postfix tests need root (`postfix start`)");
    }
    None
}

/// Returns early from a test, saying why, when Postfix cannot run here.
/// Written to standard error directly: the test harness captures
/// `eprintln!` of passing tests, and a skip must show in `cargo test`.
macro_rules! skip_without_postfix {
    () => {
        if let Some(reason) = $crate::postfix_instance::skip_reason() {
            use std::io::Write as _;
            // libtest names each test's thread after the test.
            let test = std::thread::current().name().unwrap_or("").to_string();
            let _ = writeln!(std::io::stderr(), "{reason}: {test}");
            return;
        }
    };
}
pub(crate) use skip_without_postfix;

/// A loopback port nothing listens on (right now).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A file of `examples/postfix/`.
pub fn example(name: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/postfix")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Replaces `from` by `to` in `text`, checking that `from` is there (so a
/// changed example fails loudly instead of being silently not tested).
pub fn replace(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "`{from}` not found in:\n{text}");
    text.replace(from, to)
}

/// Makes `path` readable and traversable by everyone: Postfix's daemons
/// (user `postfix`) and the pipe's user reach their files through it.
pub fn open_up(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
}

/// The uid and gid of a system user.
pub fn user_ids(name: &str) -> (u32, u32) {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("read /etc/passwd");
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            (fields.first() == Some(&name)).then(|| {
                (
                    fields[2].parse().expect("uid"),
                    fields[3].parse().expect("gid"),
                )
            })
        })
        .unwrap_or_else(|| panic!("no user {name}"))
}

/// What a test's Postfix is made of, beyond the fixed instance settings.
pub struct Setup {
    /// The transport table (e.g. `examples/postfix/transport.smtp` with the
    /// test's port), plus any line the test adds.
    pub transport: String,
    /// Lines appended to `master.cf` (the pipe service of
    /// `examples/postfix/master.cf`), or empty.
    pub master_cf: String,
    /// Lines appended to `main.cf` after the example's (later wins).
    pub main_cf: String,
}

/// A running private Postfix; stopped on drop.
pub struct Postfix {
    /// Its `config_directory` (main.cf, master.cf, the tables).
    pub config_dir: PathBuf,
    /// Its `queue_directory`.
    queue_dir: PathBuf,
    /// Its `maillog_file`: what it did, for the checks and for diagnosis.
    pub log_file: PathBuf,
    /// Where its smtpd listens (127.0.0.1).
    pub smtpd_port: u16,
}

/// The services of the instance's `master.cf` (none chrooted, no local
/// delivery), then smtpd on `127.0.0.1:{port}`.
fn master_cf(port: u16) -> String {
    format!(
        "127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"
    )
}

/// The instance's own settings (directories, loopback, no way out), then
/// `examples/postfix/main.cf` with its tables in `config_dir`.
fn main_cf(root: &Path, config_dir: &Path) -> String {
    let root = root.display();
    let instance = format!(
        "compatibility_level = 3.6
queue_directory = {root}/queue
data_directory = {root}/data
maillog_file = {root}/maillog
maillog_file_prefixes = {root}
myhostname = postfix.test
mydomain = postfix.test
myorigin = postfix.test
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
default_transport = error:no outside mail from tests
alias_maps =
alias_database =
local_recipient_maps =
"
    );
    let example = replace(
        &example("main.cf"),
        "/etc/postfix/",
        &format!("{}/", config_dir.display()),
    );
    format!("{instance}\n{example}\n")
}

impl Postfix {
    /// Writes the configuration under `root` (which must be reachable by
    /// the `postfix` user: see [`open_up`]) and starts the instance.
    pub fn start(root: &Path, setup: &Setup) -> Postfix {
        let config_dir = root.join("etc");
        let queue_dir = root.join("queue");
        let data_dir = root.join("data");
        for dir in [&config_dir, &queue_dir, &data_dir] {
            std::fs::create_dir_all(dir).expect("create a Postfix directory");
            open_up(dir);
        }
        let (uid, gid) = user_ids("postfix");
        std::os::unix::fs::chown(&data_dir, Some(uid), Some(gid)).expect("chown data_directory");
        let smtpd_port = free_port();
        let main = format!("{}{}\n", main_cf(root, &config_dir), setup.main_cf);
        std::fs::write(config_dir.join("main.cf"), main).expect("write main.cf");
        let master = format!("{}{}\n", master_cf(smtpd_port), setup.master_cf);
        std::fs::write(config_dir.join("master.cf"), master).expect("write master.cf");
        std::fs::write(config_dir.join("transport"), &setup.transport).expect("transport");
        std::fs::write(config_dir.join("sms_access"), example("sms_access")).expect("sms_access");
        for table in ["transport", "sms_access"] {
            let out = run(Command::new("/usr/sbin/postmap").arg(config_dir.join(table)));
            assert!(out.status.success(), "postmap {table}: {}", text(&out));
        }
        let postfix = Postfix {
            log_file: root.join("maillog"),
            config_dir,
            queue_dir,
            smtpd_port,
        };
        let out = postfix.command(POSTFIX, &["start"]);
        assert!(out.status.success(), "postfix start: {}", text(&out));
        postfix
    }

    /// Runs one of Postfix's commands on this instance (`-c DIR` first).
    fn command(&self, program: &str, args: &[&str]) -> Output {
        run(Command::new(program)
            .arg("-c")
            .arg(&self.config_dir)
            .args(args))
    }

    /// Submits `raw` with this instance's `sendmail -f FROM TO`, as a local
    /// program (cron, a monitoring script) would.
    pub fn sendmail(&self, from: &str, to: &str, raw: &[u8]) {
        let mut child = Command::new("/usr/sbin/sendmail")
            .arg("-C")
            .arg(&self.config_dir)
            .args(["-f", from, to])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn sendmail");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(raw)
            .expect("write to sendmail");
        let out = wait_bounded(child);
        assert!(out.status.success(), "sendmail: {}", text(&out));
    }

    /// The queue, one JSON object per message (`postqueue -j`).
    pub fn queue(&self) -> Vec<serde_json::Value> {
        let out = self.command("/usr/sbin/postqueue", &["-j"]);
        assert!(out.status.success(), "postqueue -j: {}", text(&out));
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).expect("postqueue -j line is JSON"))
            .collect()
    }

    /// `postqueue -p`, as a sysadmin reads the queue.
    pub fn queue_listing(&self) -> String {
        text(&self.command("/usr/sbin/postqueue", &["-p"]))
    }

    /// Asks for every queued message to be tried now (`postqueue -f`).
    pub fn flush(&self) {
        let out = self.command("/usr/sbin/postqueue", &["-f"]);
        assert!(out.status.success(), "postqueue -f: {}", text(&out));
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// Waits (up to 60 s) until `done` holds for the log and queue, or
    /// panics with both, saying what was awaited.
    pub async fn wait(&self, what: &str, mut done: impl FnMut(&Postfix) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            if done(self) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "Postfix: {what}: not within 60 s\n--- queue\n{}--- log\n{}",
            self.queue_listing(),
            self.log()
        );
    }

    /// Waits until the queue is empty.
    pub async fn wait_queue_empty(&self) {
        self.wait("the queue to empty", |p| p.queue().is_empty())
            .await;
    }

    /// Waits until the log has `n` lines containing `needle`.
    pub async fn wait_log(&self, needle: &str, n: usize) {
        let what = format!("{n} log lines with `{needle}`");
        self.wait(&what, |p| p.log().matches(needle).count() >= n)
            .await;
    }

    /// The master's pid, while it runs.
    fn master_pid(&self) -> Option<i32> {
        let pid = std::fs::read_to_string(self.queue_dir.join("pid/master.pid")).ok()?;
        let pid: i32 = pid.trim().parse().ok()?;
        Path::new(&format!("/proc/{pid}")).exists().then_some(pid)
    }
}

impl Drop for Postfix {
    /// Stops the instance and waits (up to 10 s) for its master to exit;
    /// kills it if it does not. Its children exit with it.
    fn drop(&mut self) {
        let pid = self.master_pid();
        let _ = self.command(POSTFIX, &["stop"]);
        let Some(pid) = pid else { return };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        if Path::new(&format!("/proc/{pid}")).exists() {
            let _ = self.command(POSTFIX, &["abort"]);
            // SAFETY: kill only sends a signal to the master we started.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Runs a command to its end (bounded: 30 s), capturing its output.
pub fn run(command: &mut Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn a Postfix command");
    wait_bounded(child)
}

/// Waits up to 30 s for `child`, then kills it and panics.
fn wait_bounded(mut child: std::process::Child) -> Output {
    let deadline = Instant::now() + Duration::from_secs(30);
    while child.try_wait().expect("wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("wait after kill");
            panic!("command still running after 30 s: {}", text(&out));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("collect output")
}

/// Status, standard output and standard error of a command, for messages.
pub fn text(out: &Output) -> String {
    format!(
        "{}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
