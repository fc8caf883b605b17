//! Shared helpers for the integration tests: a daemon on port 0 in a
//! temporary directory, a real SMTP client (lettre), and readers for what
//! the daemon produced (outbox lines, reply emails).
#![allow(dead_code)]

pub mod http_mock;

use lettre::address::Envelope;
use lettre::transport::smtp::response::Response;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use mail2sms::app::{self, Running};
use mail2sms::config::Config;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The spec's example key.
pub const KEYID: &str = "a296464ce012b8ab710a";

/// A configuration for tests: SMTP on 127.0.0.1:0, everything under `dir`.
pub fn test_toml(dir: &Path) -> String {
    format!(
        r#"
[smtp]
listen = "127.0.0.1:0"
hostname = "sms.example.com"
domains = ["sms.example.com"]

[store]
path = "{dir}/mail2sms.db"

[replies]
from = "mail2sms@sms.example.com"
transport = "file://{dir}/replies"

[dispatch]
poll_interval_ms = 50
retry_initial_ms = 50
retry_max_ms = 200

[accounts.masociete]
keyid = "{KEYID}"
senders = ["ops@masociete.com", "@filiale.fr"]
providers = ["outbox"]

[providers.outbox]
type = "outbox"
path = "{dir}/outbox.jsonl"
fsync = false
"#,
        dir = dir.display()
    )
}

/// A daemon running in a temporary directory.
pub struct TestApp {
    /// Holds the files; removed on drop.
    pub dir: tempfile::TempDir,
    /// The configuration it runs with.
    pub config: Config,
    /// Where SMTP listens.
    pub addr: SocketAddr,
    /// The daemon (None once stopped).
    pub running: Option<Running>,
}

impl TestApp {
    /// A daemon on the test configuration.
    pub async fn spawn() -> TestApp {
        Self::spawn_with(|_| {}).await
    }

    /// A daemon on the test configuration changed by `tweak`.
    pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config =
            Config::parse(&test_toml(dir.path()), Path::new("test")).expect("test config");
        tweak(&mut config);
        Self::start_in(dir, config).await
    }

    /// A daemon whose account sends through one provider, given as the body
    /// of its `[providers.NAME]` table (e.g. `type = "smsmode"` and its keys).
    pub async fn spawn_with_provider(name: &str, provider_toml: &str) -> TestApp {
        let provider: mail2sms::providers::ProviderConfig =
            toml::from_str(provider_toml).expect("provider table");
        let name = name.to_string();
        Self::spawn_with(move |c| {
            c.providers.insert(name.clone(), provider);
            for account in c.accounts.values_mut() {
                account.providers = vec![name.clone()];
            }
        })
        .await
    }

    /// Starts a daemon on `config` in `dir`.
    pub async fn start_in(dir: tempfile::TempDir, config: Config) -> TestApp {
        let running = app::start(config.clone()).await.expect("daemon starts");
        TestApp {
            dir,
            config,
            addr: running.smtp_addr,
            running: Some(running),
        }
    }

    /// Stops the daemon and starts it again on the same files.
    pub async fn restart(mut self) -> TestApp {
        self.stop().await;
        let running = app::start(self.config.clone())
            .await
            .expect("daemon restarts");
        self.addr = running.smtp_addr;
        self.running = Some(running);
        self
    }

    /// Stops the daemon.
    pub async fn stop(&mut self) {
        if let Some(r) = self.running.take() {
            r.stop().await;
        }
    }

    /// A real SMTP client to the daemon.
    pub fn client(&self) -> AsyncSmtpTransport<Tokio1Executor> {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(self.addr.port())
            .timeout(Some(Duration::from_secs(20)))
            .build()
    }

    /// Sends raw message bytes from `from` to `sms@sms.example.com`.
    pub async fn send(
        &self,
        from: &str,
        raw: &[u8],
    ) -> Result<Response, lettre::transport::smtp::Error> {
        self.send_to(from, "sms@sms.example.com", raw).await
    }

    /// Sends raw message bytes with this envelope.
    pub async fn send_to(
        &self,
        from: &str,
        to: &str,
        raw: &[u8],
    ) -> Result<Response, lettre::transport::smtp::Error> {
        let from = if from.is_empty() {
            None
        } else {
            Some(from.parse().expect("from address"))
        };
        let envelope =
            Envelope::new(from, vec![to.parse().expect("to address")]).expect("envelope");
        self.client().send_raw(&envelope, raw).await
    }

    /// Sends the same message `n` times at once, each on its own
    /// connection, and returns every result.
    pub async fn send_concurrently(
        &self,
        from: &str,
        raw: &[u8],
        n: usize,
    ) -> Vec<Result<Response, lettre::transport::smtp::Error>> {
        let mut tasks = tokio::task::JoinSet::new();
        let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(n));
        for _ in 0..n {
            let client = self.client();
            let envelope = Envelope::new(
                Some(from.parse().expect("from")),
                vec!["sms@sms.example.com".parse().expect("to")],
            )
            .expect("envelope");
            let raw = raw.to_vec();
            let barrier = barrier.clone();
            tasks.spawn(async move {
                barrier.wait().await;
                client.send_raw(&envelope, &raw).await
            });
        }
        tasks.join_all().await
    }

    /// The outbox file.
    pub fn outbox_path(&self) -> PathBuf {
        self.dir.path().join("outbox.jsonl")
    }

    /// Every outbox line so far.
    pub fn outbox(&self) -> Vec<serde_json::Value> {
        read_outbox(&self.outbox_path())
    }

    /// Waits until the outbox has at least `n` lines, and returns them.
    pub async fn wait_outbox(&self, n: usize) -> Vec<serde_json::Value> {
        wait_until(|| {
            let lines = self.outbox();
            (lines.len() >= n).then_some(lines)
        })
        .await
        .unwrap_or_else(|| panic!("outbox never reached {n} lines: {:?}", self.outbox()))
    }

    /// Every reply email written so far.
    pub fn replies(&self) -> Vec<ReplyMail> {
        read_replies(&self.dir.path().join("replies"))
    }

    /// Waits until at least `n` replies were written, and returns them.
    pub async fn wait_replies(&self, n: usize) -> Vec<ReplyMail> {
        wait_until(|| {
            let r = self.replies();
            (r.len() >= n).then_some(r)
        })
        .await
        .unwrap_or_else(|| panic!("never got {n} replies: {:?}", self.replies()))
    }

    /// The replies sent to `to`.
    pub async fn wait_reply_to(&self, to: &str) -> ReplyMail {
        wait_until(|| self.replies().into_iter().find(|r| r.to == to))
            .await
            .unwrap_or_else(|| panic!("no reply to {to}: {:?}", self.replies()))
    }
}

/// Polls `f` every 20 ms for up to 15 s.
pub async fn wait_until<T>(mut f: impl FnMut() -> Option<T>) -> Option<T> {
    for _ in 0..750 {
        if let Some(v) = f() {
            return Some(v);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    None
}

/// Reads an outbox file (missing: empty).
pub fn read_outbox(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("outbox line is JSON"))
        .collect()
}

/// A reply email as written by the `file://` transport.
#[derive(Debug, Clone)]
pub struct ReplyMail {
    /// The To: header.
    pub to: String,
    /// The Subject: header.
    pub subject: String,
    /// The Content-Type: header.
    pub content_type: String,
    /// The body after quoted-printable decoding: the Latin-1 bytes.
    pub body: Vec<u8>,
    /// The file as written.
    pub raw: String,
}

impl ReplyMail {
    /// The body decoded from Latin-1, with CRLF turned into LF.
    pub fn text(&self) -> String {
        self.body
            .iter()
            .map(|&b| b as char)
            .collect::<String>()
            .replace("\r\n", "\n")
    }
}

fn header(head: &str, name: &str) -> String {
    head.split("\r\n")
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
        })
        .unwrap_or_default()
}

/// Reads every `.eml` in `dir`, in name order.
pub fn read_replies(dir: &Path) -> Vec<ReplyMail> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            let raw = std::fs::read_to_string(p).expect("reply is ASCII (quoted-printable)");
            let (head, body) = raw.split_once("\r\n\r\n").expect("headers and body");
            ReplyMail {
                to: header(head, "To"),
                subject: header(head, "Subject"),
                content_type: header(head, "Content-Type"),
                body: decode_qp(body),
                raw: raw.clone(),
            }
        })
        .collect()
}

/// Quoted-printable decoding (RFC 2045), written here independently of the
/// daemon's encoder.
pub fn decode_qp(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'=' if bytes[i + 1..].starts_with(b"\r\n") => i += 3,
            b'=' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).expect("hex");
                out.push(u8::from_str_radix(hex, 16).expect("QP escape"));
                i += 3;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

/// An email with a plain-text UTF-8 body, CRLF line ends.
pub fn plain_email(from: &str, body: &str) -> Vec<u8> {
    let body = body.replace("\r\n", "\n").replace('\n', "\r\n");
    format!(
        "From: {from}\r\nTo: sms@sms.example.com\r\nSubject: sms\r\nMessage-ID: <{}@masociete.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{body}",
        fastrand::u64(..)
    )
    .into_bytes()
}

/// A one-recipient `<envoi>` body.
pub fn envoi(num: &str, sms: &str, email_id: &str) -> String {
    format!(
        "<envoi>\n<keyid>{KEYID}</keyid>\n<num>{num}</num>\n<sms>{sms}</sms>\n<emailNot>not@masociete.com</emailNot>\n<emailAck>ack@masociete.com</emailAck>\n<emailId>{email_id}</emailId>\n</envoi>\n"
    )
}

/// The Latin-1 bytes of `text` with LF turned into CRLF, as a reply body
/// carries them.
pub fn latin1_crlf(text: &str) -> Vec<u8> {
    text.replace('\n', "\r\n")
        .chars()
        .map(|c| u8::try_from(u32::from(c)).expect("Latin-1 text"))
        .collect()
}

/// An `<envoi>` body with one `<numN>` per number (the spec's multiple
/// form), with emailNot / emailAck set as in [`envoi`].
pub fn envoi_multi(nums: &[&str], sms: &str, email_id: &str) -> String {
    let nums: String = nums
        .iter()
        .enumerate()
        .map(|(i, n)| format!("<num{i}>{n}</num{i}>\n", i = i + 1))
        .collect();
    format!(
        "<envoi>\n<keyid>{KEYID}</keyid>\n{nums}<sms>{sms}</sms>\n<emailNot>not@masociete.com</emailNot>\n<emailAck>ack@masociete.com</emailAck>\n<emailId>{email_id}</emailId>\n</envoi>\n"
    )
}

/// One attachment of [`multipart_email`]: file name, Content-Type, optional
/// Content-Transfer-Encoding, and the body as it goes on the wire.
pub type Part<'a> = (&'a str, &'a str, Option<&'a str>, &'a str);

/// A multipart/mixed email from ops@masociete.com: a UTF-8 text part with
/// `envoi`, then the attachments.
pub fn multipart_email(envoi: &str, parts: &[Part]) -> Vec<u8> {
    let mut raw = format!(
        "From: ops@masociete.com\r\nTo: sms@sms.example.com\r\nSubject: csv\r\nMIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n--b1\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{envoi}\r\n"
    );
    for (name, content_type, encoding, body) in parts {
        raw.push_str(&format!(
            "--b1\r\nContent-Type: {content_type}; name=\"{name}\"\r\n"
        ));
        if let Some(encoding) = encoding {
            raw.push_str(&format!("Content-Transfer-Encoding: {encoding}\r\n"));
        }
        raw.push_str(&format!(
            "Content-Disposition: attachment; filename=\"{name}\"\r\n\r\n{body}\r\n"
        ));
    }
    raw.push_str("--b1--\r\n");
    raw.into_bytes()
}

/// The text of the outbox line sent to `number`.
pub fn text_for(lines: &[serde_json::Value], number: &str) -> String {
    lines
        .iter()
        .find(|l| l["to"] == number)
        .and_then(|l| l["text"].as_str())
        .unwrap_or_else(|| panic!("no SMS to {number}: {lines:?}"))
        .to_string()
}

/// Checks what a provider answers for a batch stopped by its first failing
/// request: that request's error (not a permanent refusal) first, then every
/// other SMS "not attempted", with the same code and the cause in its detail.
pub fn assert_batch_stopped(
    results: &[Result<String, mail2sms::providers::SendError>],
) -> mail2sms::providers::SendError {
    use mail2sms::providers::FailureKind;
    let first = results[0].as_ref().expect_err("the first request failed");
    assert_ne!(first.kind, FailureKind::Permanent, "{first:?}");
    for later in &results[1..] {
        let e = later.as_ref().expect_err("not attempted");
        // An unusable provider is unusable for every SMS; after a transient
        // failure the rest were not attempted.
        let kind = match first.kind {
            FailureKind::ProviderUnusable => FailureKind::ProviderUnusable,
            _ => FailureKind::NotAttempted,
        };
        assert_eq!((e.kind, e.code), (kind, first.code));
        assert_eq!(
            e.detail,
            format!(
                "not sent: an earlier request of the batch failed: {}",
                first.detail
            )
        );
    }
    first.clone()
}

/// (code, tel) of every `<etat>` of an etatNot, in order.
pub fn etats(not: &ReplyMail) -> Vec<(u16, String)> {
    let text = not.text();
    let mut out = Vec::new();
    let mut rest = text.as_str();
    while let Some(i) = rest.find("<code") {
        rest = &rest[i + 5..];
        let gt = rest.find('>').unwrap();
        let end = rest.find("</code").unwrap();
        let code: u16 = rest[gt + 1..end].parse().unwrap();
        let t = rest.find("<tel").unwrap();
        let after = &rest[t..];
        let gt = after.find('>').unwrap();
        let end = after.find("</tel").unwrap();
        out.push((code, after[gt + 1..end].to_string()));
        rest = &after[end..];
    }
    out
}

/// The `<code>` values of an etatNot, in order.
pub fn codes(not: &ReplyMail) -> Vec<u16> {
    etats(not).into_iter().map(|(code, _)| code).collect()
}

/// One message a [`ReplySink`] accepted.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// Its `Message-ID:` (stable per reply: repeats show as the same id).
    pub message_id: String,
    /// Its `Subject:` (`etatAck <emailId>` / `etatNot <emailId>`).
    pub subject: String,
    /// The envelope recipients, comma-separated.
    pub to: String,
    /// The round ([`ReplySink::set_round`]) in which its DATA ended.
    pub round: usize,
    /// The envelope sender (`MAIL FROM`), `""` for the null sender `<>`.
    pub mail_from: String,
    /// The message as received.
    pub data: Vec<u8>,
}

/// What a [`ReplySink`] shares with its SMTP handler.
#[derive(Default)]
struct SinkState {
    /// Every accepted message, in order.
    deliveries: std::sync::Mutex<Vec<Delivery>>,
    /// Recipients whose messages wait for [`ReplySink::release`].
    held: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Whether every message waits for [`ReplySink::release`].
    hold_all: std::sync::atomic::AtomicBool,
    /// Set once by [`ReplySink::release`].
    released: tokio::sync::Notify,
    /// Whether [`ReplySink::release`] was called.
    is_released: std::sync::atomic::AtomicBool,
    /// Messages being handled right now (DATA ended, not yet answered).
    in_progress: std::sync::atomic::AtomicUsize,
    /// The most messages ever handled at once.
    max_in_progress: std::sync::atomic::AtomicUsize,
    /// The current round, stamped on each delivery.
    round: std::sync::atomic::AtomicUsize,
    /// Each message is answered after a random delay up to this (ms), as a
    /// real relay takes a moment.
    max_delay_ms: std::sync::atomic::AtomicU64,
}

/// The next mail relay for reply emails, on 127.0.0.1 port 0 (the daemon's
/// own SMTP server code as the listener): answers `250` to everything and
/// records every delivery, so repeats are counted (unlike `file://`, whose
/// rewrite of the same file hides them); can hold messages until released.
pub struct ReplySink {
    /// Where it listens.
    pub port: u16,
    /// Shared with the handler.
    state: std::sync::Arc<SinkState>,
}

/// The SMTP handler of a [`ReplySink`].
struct SinkHandler(std::sync::Arc<SinkState>);

#[async_trait::async_trait]
impl mail2sms::smtp::Handler for SinkHandler {
    async fn message(
        &self,
        envelope: &mail2sms::smtp::Envelope,
        data: Vec<u8>,
    ) -> mail2sms::smtp::Reply {
        use std::sync::atomic::Ordering::SeqCst;
        let state = &self.0;
        let round = state.round.load(SeqCst);
        let now = state.in_progress.fetch_add(1, SeqCst) + 1;
        state.max_in_progress.fetch_max(now, SeqCst);
        let to = envelope.rcpt_to.join(",");
        let held = state.hold_all.load(SeqCst) || state.held.lock().unwrap().contains(&to);
        if held {
            let released = state.released.notified();
            if !state.is_released.load(SeqCst) {
                released.await;
            }
        }
        let max_delay = state.max_delay_ms.load(SeqCst);
        if max_delay > 0 {
            tokio::time::sleep(Duration::from_millis(fastrand::u64(0..=max_delay))).await;
        }
        let text = String::from_utf8_lossy(&data);
        let head = text.split("\r\n\r\n").next().unwrap_or_default();
        state.deliveries.lock().unwrap().push(Delivery {
            message_id: header(head, "Message-ID"),
            subject: header(head, "Subject"),
            to,
            round,
            mail_from: envelope.mail_from.clone(),
            data: data.clone(),
        });
        state.in_progress.fetch_sub(1, SeqCst);
        mail2sms::smtp::Reply::new(250, "2.0.0", "ok")
    }
}

impl ReplySink {
    /// Starts a sink taking mail for `masociete.com`; it runs until the
    /// test's runtime ends.
    pub async fn start() -> ReplySink {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the sink");
        let port = listener.local_addr().expect("sink addr").port();
        let config = std::sync::Arc::new(mail2sms::smtp::SmtpConfig {
            domains: vec!["masociete.com".into()],
            ..mail2sms::smtp::SmtpConfig::default()
        });
        let state = std::sync::Arc::new(SinkState::default());
        let handler: std::sync::Arc<dyn mail2sms::smtp::Handler> =
            std::sync::Arc::new(SinkHandler(state.clone()));
        tokio::spawn(mail2sms::smtp::run(
            listener,
            config,
            handler,
            std::future::pending(),
        ));
        ReplySink { port, state }
    }

    /// `replies.transport` for the daemon to reach this sink.
    pub fn transport(&self) -> String {
        format!("smtp://127.0.0.1:{}", self.port)
    }

    /// Holds messages to `to` until [`release`](Self::release).
    pub fn hold(&self, to: &str) {
        self.state.held.lock().unwrap().insert(to.to_string());
    }

    /// Holds every message until [`release`](Self::release).
    pub fn hold_all(&self) {
        self.state
            .hold_all
            .store(true, std::sync::atomic::Ordering::SeqCst);
    }

    /// Lets every held message (and every later one) through.
    pub fn release(&self) {
        self.state
            .is_released
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.state.released.notify_waiters();
    }

    /// Answers each message after a random delay up to `ms`.
    pub fn set_max_delay_ms(&self, ms: u64) {
        self.state
            .max_delay_ms
            .store(ms, std::sync::atomic::Ordering::SeqCst);
    }

    /// Stamps later deliveries with `round`.
    pub fn set_round(&self, round: usize) {
        self.state
            .round
            .store(round, std::sync::atomic::Ordering::SeqCst);
    }

    /// Every delivery so far.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.state.deliveries.lock().unwrap().clone()
    }

    /// Messages held or being answered right now.
    pub fn in_progress(&self) -> usize {
        self.state
            .in_progress
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The most messages ever held or answered at once.
    pub fn max_in_progress(&self) -> usize {
        self.state
            .max_in_progress
            .load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// An `<envoi>` asking only for an etatAck, sent to `ack`.
pub fn envoi_ack_only(num: &str, email_id: &str, ack: &str) -> String {
    envoi(num, "x", email_id)
        .replace("<emailNot>not@masociete.com</emailNot>\n", "")
        .replace("ack@masociete.com", ack)
}

/// Counts the replies a `kill -9` made go out again: for each round, the
/// deliveries of a Message-ID already delivered in an earlier round (those
/// in flight when the previous round was killed, requeued at this start).
/// Panics if a Message-ID is delivered twice within one round.
pub fn repeats_per_round(deliveries: &[Delivery], rounds: usize) -> Vec<usize> {
    let mut first_round: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    let mut repeats = vec![0; rounds];
    let mut seen_in_round = std::collections::HashSet::new();
    for d in deliveries {
        assert!(
            seen_in_round.insert((d.message_id.as_str(), d.round)),
            "{} delivered twice in round {}",
            d.message_id,
            d.round
        );
        match first_round.get(d.message_id.as_str()) {
            Some(&first) if first < d.round => repeats[d.round] += 1,
            Some(_) => {}
            None => {
                first_round.insert(&d.message_id, d.round);
            }
        }
    }
    repeats
}

/// An SMS to hand an adapter directly: sent now, no sender id or tracker,
/// for the account `masociete` and emailId `1548` (the spec's examples).
pub fn test_sms(
    reference: impl Into<String>,
    job_id: i64,
    to: impl Into<String>,
    text: impl Into<String>,
) -> mail2sms::providers::OutgoingSms {
    mail2sms::providers::OutgoingSms::new(reference, job_id, to, text, "masociete", "1548")
}
