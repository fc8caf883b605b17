//! Session-level tests: over an in-memory pipe, and over TCP through [`run`].

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{
    AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream,
};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;

use super::session::{Session, SessionError};
use super::{Envelope, Handler, LogLimiter, PerAddress, Refused, Reply, Shared, SmtpConfig, run};

mod security;

/// The text of the reply when the buffer budget is out.
const INSUFFICIENT: &str = "insufficient system storage, try again later";

/// How long a test waits for any one reply.
const PATIENCE: Duration = Duration::from_secs(10);

/// Records every message and answers with the queued replies (250 when none).
#[derive(Default)]
struct Recorder {
    /// The messages received, in order.
    messages: Mutex<Vec<(Envelope, Vec<u8>)>>,
    /// Replies to give, in order.
    replies: Mutex<VecDeque<Reply>>,
}

impl Recorder {
    fn with_replies(replies: impl IntoIterator<Item = Reply>) -> Arc<Self> {
        let recorder = Self::default();
        recorder.replies.lock().unwrap().extend(replies);
        Arc::new(recorder)
    }

    fn messages(&self) -> Vec<(Envelope, Vec<u8>)> {
        self.messages.lock().unwrap().clone()
    }

    fn bodies(&self) -> Vec<String> {
        self.messages()
            .into_iter()
            .map(|(_, data)| String::from_utf8(data).unwrap())
            .collect()
    }
}

#[async_trait::async_trait]
impl Handler for Recorder {
    async fn message(&self, envelope: &Envelope, data: Vec<u8>) -> Reply {
        let count = {
            let mut messages = self.messages.lock().unwrap();
            messages.push((envelope.clone(), data));
            messages.len()
        };
        let queued = self.replies.lock().unwrap().pop_front();
        queued.unwrap_or_else(|| Reply::new(250, "2.0.0", format!("Ok: queued as {count}")))
    }
}

fn config() -> SmtpConfig {
    SmtpConfig {
        domains: vec!["sms.example.com".into(), "localhost".into()],
        ..SmtpConfig::default()
    }
}

/// The client side of a session.
struct Client<S> {
    /// The connection, buffered for reading replies line by line.
    stream: BufReader<S>,
    /// Keeps the shutdown channel open (a closed one means shutdown).
    stop: Option<watch::Sender<bool>>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Client<S> {
    fn new(stream: S) -> Self {
        Self {
            stream: BufReader::new(stream),
            stop: None,
        }
    }

    async fn send(&mut self, bytes: impl AsRef<[u8]>) {
        self.stream
            .get_mut()
            .write_all(bytes.as_ref())
            .await
            .unwrap();
    }

    /// Reads one complete (possibly multi-line) reply.
    async fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(PATIENCE, self.stream.read_line(&mut line));
            let n = read.await.expect("reply timed out").unwrap();
            assert!(n > 0, "connection closed; got so far: {reply:?}");
            assert!(line.ends_with("\r\n"), "bad reply line {line:?}");
            reply.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return reply;
            }
        }
    }

    /// Sends one command line and reads its reply.
    async fn cmd(&mut self, line: &str) -> String {
        self.send(format!("{line}\r\n")).await;
        self.reply().await
    }

    /// Reads one reply and checks it starts with `prefix`.
    async fn expect_reply(&mut self, prefix: &str) {
        let reply = self.reply().await;
        assert!(
            reply.starts_with(prefix),
            "expected {prefix:?}, got {reply:?}"
        );
    }

    /// Sends a message with DATA and checks the final reply starts with `prefix`.
    async fn expect_data(&mut self, content: &str, prefix: &str) {
        let reply = self.data(content).await;
        assert!(
            reply.starts_with(prefix),
            "expected {prefix:?}, got {reply:?}"
        );
    }

    /// Sends one command line and checks its reply starts with `prefix`.
    async fn expect(&mut self, line: &str, prefix: &str) {
        let reply = self.cmd(line).await;
        assert!(
            reply.starts_with(prefix),
            "{line}: expected {prefix:?}, got {reply:?}"
        );
    }

    /// Checks the server closed the connection.
    async fn closed(&mut self) {
        let mut rest = Vec::new();
        let read = tokio::time::timeout(PATIENCE, self.stream.read_to_end(&mut rest));
        let _ = read.await.expect("server did not close");
        assert!(
            rest.is_empty(),
            "unexpected {:?}",
            String::from_utf8_lossy(&rest)
        );
    }

    /// MAIL and RCPT, each expected to succeed.
    async fn envelope(&mut self, from: &str, to: &str) {
        self.expect(&format!("MAIL FROM:<{from}>"), "250 ").await;
        self.expect(&format!("RCPT TO:<{to}>"), "250 ").await;
    }

    /// DATA with `content` (sent as is, terminator included); returns the final reply.
    async fn data(&mut self, content: &str) -> String {
        self.expect("DATA", "354 ").await;
        self.send(content).await;
        self.reply().await
    }
}

/// Starts a session over an in-memory pipe and reads the greeting.
async fn start(
    config: SmtpConfig,
    handler: Arc<Recorder>,
) -> (Client<DuplexStream>, JoinHandle<Result<(), SessionError>>) {
    start_on(Arc::new(Shared::new(Arc::new(config), handler))).await
}

/// Like [`start`], for a session of a server whose state is `shared`.
async fn start_on(
    shared: Arc<Shared>,
) -> (Client<DuplexStream>, JoinHandle<Result<(), SessionError>>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (stop, stop_rx) = watch::channel(false);
    let peer: SocketAddr = "192.0.2.7:4321".parse().unwrap();
    let session = Session::new(server, shared, peer, stop_rx);
    let session = tokio::spawn(async move { session.run(true).await.map(|_| ()) });
    let mut client = Client::new(client);
    client.stop = Some(stop);
    assert_eq!(client.reply().await, "220 localhost ESMTP mail2sms\r\n");
    (client, session)
}

/// Like [`start`], then EHLO.
async fn start_ehlo(config: SmtpConfig, handler: Arc<Recorder>) -> Client<DuplexStream> {
    let (mut client, _) = start(config, handler).await;
    client.expect("EHLO client.example", "250-").await;
    client
}

#[tokio::test]
async fn greeting_helo_and_ehlo() {
    let config = SmtpConfig {
        max_message_size: 12345,
        ..config()
    };
    let (mut client, _) = start(config, Arc::default()).await;
    assert_eq!(client.cmd("HELO client.example").await, "250 localhost\r\n");
    let ehlo = client.cmd("EHLO client.example").await;
    let lines: Vec<&str> = ehlo.lines().collect();
    assert!(lines[0].starts_with("250-localhost"), "{ehlo}");
    for extension in [
        "PIPELINING",
        "8BITMIME",
        "SIZE 12345",
        "ENHANCEDSTATUSCODES",
    ] {
        assert!(
            lines[1..].iter().any(|l| &l[4..] == extension),
            "{extension}: {ehlo}"
        );
    }
    for hidden in ["STARTTLS", "AUTH", "CHUNKING"] {
        assert!(!ehlo.contains(hidden), "{hidden}: {ehlo}");
    }
    assert!(lines.last().unwrap().starts_with("250 "));
}

#[tokio::test]
async fn lowercase_verbs_and_other_commands() {
    let recorder = Arc::new(Recorder::default());
    let (mut client, session) = start(config(), recorder.clone()).await;
    client.expect("ehlo client.example", "250-").await;
    assert_eq!(client.cmd("noop").await, "250 2.0.0 Ok\r\n");
    client.expect("vrfy bob", "252 2.5.0 ").await;
    client.expect("help", "214 ").await;
    assert_eq!(
        client.cmd("mail from:<a@example.org>").await,
        "250 2.1.0 Ok\r\n"
    );
    assert_eq!(client.cmd("rset").await, "250 2.0.0 Ok\r\n");
    // RSET dropped the transaction.
    client.expect("rcpt to:<x@localhost>", "503 5.5.1 ").await;
    for unimplemented in [
        "bdat 10 last",
        "AUTH PLAIN AGVtAHA=",
        "STARTTLS",
        "EXPN list",
    ] {
        client.expect(unimplemented, "502 5.5.1 ").await;
    }
    client.expect("FROBNICATE now", "500 5.5.1 ").await;
    client.expect("HELO", "501 ").await;
    client.envelope("a@example.org", "x@localhost").await;
    client
        .expect_data("Subject: lower\r\n\r\nhi\r\n.\r\n", "250 ")
        .await;
    assert_eq!(
        client.cmd("quit").await,
        "221 2.0.0 localhost closing connection\r\n"
    );
    client.closed().await;
    assert!(session.await.unwrap().is_ok());
    assert_eq!(recorder.bodies(), ["Subject: lower\r\n\r\nhi\r\n"]);
}

#[tokio::test]
async fn bad_sequence_gets_503() {
    let (mut client, _) = start(config(), Arc::default()).await;
    client
        .expect("MAIL FROM:<a@example.org>", "503 5.5.1 ")
        .await;
    client.expect("EHLO client.example", "250-").await;
    client.expect("RCPT TO:<x@localhost>", "503 5.5.1 ").await;
    client.expect("DATA", "503 5.5.1 ").await;
    client.expect("MAIL FROM:<a@example.org>", "250 ").await;
    client
        .expect("MAIL FROM:<a@example.org>", "503 5.5.1 ")
        .await;
    client.expect("DATA", "503 5.5.1 ").await;
}

#[tokio::test]
async fn envelope_syntax_variants_are_accepted() {
    let recorder = Arc::new(Recorder::default());
    let mut client = start_ehlo(config(), recorder.clone()).await;
    // Space after the colon, SIZE and BODY parameters.
    let mail = "MAIL FROM: <a@example.org> SIZE=1000 BODY=8BITMIME";
    assert_eq!(client.cmd(mail).await, "250 2.1.0 Ok\r\n");
    let rcpt = "RCPT TO: <0612345678@sms.example.com> NOTIFY=SUCCESS,FAILURE";
    assert_eq!(client.cmd(rcpt).await, "250 2.1.5 Ok\r\n");
    client.expect("RCPT TO:<other@LOCALHOST>", "250 ").await;
    let reply = client.data("Subject: one\r\n\r\nbody\r\n.\r\n").await;
    assert_eq!(reply, "250 2.0.0 Ok: queued as 1\r\n");
    // The null sender.
    assert_eq!(client.cmd("MAIL FROM:<>").await, "250 2.1.0 Ok\r\n");
    client.expect("RCPT TO:<x@localhost>", "250 ").await;
    client.expect_data("\r\n.\r\n", "250 ").await;
    // Unknown parameters are refused.
    client.expect("MAIL FROM:<a@b> FOO=BAR", "555 5.5.4 ").await;

    let messages = recorder.messages();
    let (envelope, data) = &messages[0];
    assert_eq!(envelope.mail_from, "a@example.org");
    assert_eq!(
        envelope.rcpt_to,
        ["0612345678@sms.example.com", "other@LOCALHOST"]
    );
    assert_eq!(envelope.helo, "client.example");
    assert_eq!(envelope.peer, "192.0.2.7:4321".parse().unwrap());
    assert_eq!(data, b"Subject: one\r\n\r\nbody\r\n");
    assert_eq!(messages[1].0.mail_from, "");
    assert_eq!(messages[1].1, b"\r\n");
}

#[tokio::test]
async fn size_parameter_over_the_limit_is_refused_at_mail() {
    let config = SmtpConfig {
        max_message_size: 1000,
        ..config()
    };
    let mut client = start_ehlo(config, Arc::default()).await;
    let reply = client.cmd("MAIL FROM:<a@example.org> SIZE=1001").await;
    assert!(reply.starts_with("552 5.3.4 "), "{reply}");
    client
        .expect("MAIL FROM:<a@example.org> SIZE=1000", "250 ")
        .await;
}

#[tokio::test]
async fn relaying_is_denied() {
    let mut client = start_ehlo(config(), Arc::default()).await;
    client.expect("MAIL FROM:<a@example.org>", "250 ").await;
    for foreign in [
        "victim@example.net",
        "x@sms.example.com.evil.org",
        "postmaster",
    ] {
        let reply = client.cmd(&format!("RCPT TO:<{foreign}>")).await;
        assert!(
            reply.starts_with("550 5.7.1 relaying denied"),
            "{foreign}: {reply}"
        );
    }
    client.expect("RCPT TO:<x@localhost@>", "501 ").await;
    client.expect("DATA", "503 ").await;
    client.expect("RCPT TO:<x@Sms.Example.COM>", "250 ").await;
}

#[tokio::test]
async fn too_many_recipients_get_452() {
    let config = SmtpConfig {
        max_recipients: 2,
        ..config()
    };
    let recorder = Arc::new(Recorder::default());
    let mut client = start_ehlo(config, recorder.clone()).await;
    client.envelope("a@example.org", "1@localhost").await;
    client.expect("RCPT TO:<2@localhost>", "250 ").await;
    client.expect("RCPT TO:<3@localhost>", "452 4.5.3 ").await;
    client.expect_data("x\r\n.\r\n", "250 ").await;
    assert_eq!(
        recorder.messages()[0].0.rcpt_to,
        ["1@localhost", "2@localhost"]
    );
}

#[tokio::test]
async fn pipelined_commands_get_their_replies_in_order() {
    let recorder = Arc::new(Recorder::default());
    let (mut client, _) = start(config(), recorder.clone()).await;
    client
        .send("EHLO a\r\nNOOP\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@evil.org>\r\n")
        .await;
    client.expect_reply("250-localhost").await;
    assert_eq!(client.reply().await, "250 2.0.0 Ok\r\n");
    assert_eq!(client.reply().await, "250 2.1.0 Ok\r\n");
    client.expect_reply("550 5.7.1 ").await;
    client
        .send("RSET\r\nMAIL FROM:<a@example.org>\r\nRCPT TO:<x@localhost>\r\nDATA\r\n")
        .await;
    assert_eq!(client.reply().await, "250 2.0.0 Ok\r\n");
    assert_eq!(client.reply().await, "250 2.1.0 Ok\r\n");
    assert_eq!(client.reply().await, "250 2.1.5 Ok\r\n");
    client.expect_reply("354 ").await;
    // The end of the message, the next transaction and QUIT in one packet.
    client
        .send("one\r\n.\r\nMAIL FROM:<>\r\nRCPT TO:<y@localhost>\r\nDATA\r\n")
        .await;
    client.expect_reply("250 2.0.0 Ok: queued as 1").await;
    client.expect_reply("250 ").await;
    client.expect_reply("250 ").await;
    client.expect_reply("354 ").await;
    client.send("two\r\n.\r\nQUIT\r\n").await;
    client.expect_reply("250 2.0.0 Ok: queued as 2").await;
    client.expect_reply("221 ").await;
    client.closed().await;
    assert_eq!(recorder.bodies(), ["one\r\n", "two\r\n"]);
}

#[tokio::test]
async fn bare_lf_dot_does_not_end_data() {
    let recorder = Arc::new(Recorder::default());
    let mut client = start_ehlo(config(), recorder.clone()).await;
    client.envelope("a@example.org", "x@localhost").await;
    let smuggled = concat!(
        "Subject: hi\r\n\r\nhello\n.\n",
        "MAIL FROM:<ceo@example.org>\r\nRCPT TO:<y@localhost>\r\nDATA\r\n",
        "fake\r\n.\n",
        "forged\n.\r\n",
        "end\r\n.\r\n"
    );
    let reply = client.data(smuggled).await;
    assert_eq!(reply, "250 2.0.0 Ok: queued as 1\r\n");
    // Nothing else came back: the smuggled commands were content.
    assert_eq!(client.cmd("NOOP").await, "250 2.0.0 Ok\r\n");
    assert_eq!(
        recorder.bodies(),
        [concat!(
            "Subject: hi\r\n\r\nhello\n.\n",
            "MAIL FROM:<ceo@example.org>\r\nRCPT TO:<y@localhost>\r\nDATA\r\n",
            "fake\r\n\n",
            "forged\n.\r\n",
            "end\r\n"
        )]
    );
}

#[tokio::test]
async fn dots_are_unstuffed() {
    let recorder = Arc::new(Recorder::default());
    let mut client = start_ehlo(config(), recorder.clone()).await;
    client.envelope("a@example.org", "x@localhost").await;
    let reply = client
        .data("..\r\n..leading\r\nmid.dle\r\n...\r\n.\r\n")
        .await;
    assert!(reply.starts_with("250 "));
    client.envelope("a@example.org", "x@localhost").await;
    // A message sent in tiny pieces.
    client.expect("DATA", "354 ").await;
    for piece in ["a\r", "\n", ".", ".b\r\n", "\r", "\n.", "\r", "\n"] {
        client.send(piece).await;
        tokio::task::yield_now().await;
    }
    client.expect_reply("250 ").await;
    assert_eq!(
        recorder.bodies(),
        [".\r\n.leading\r\nmid.dle\r\n..\r\n", "a\r\n.b\r\n\r\n"]
    );
}

#[tokio::test]
async fn oversized_message_gets_552_and_the_session_goes_on() {
    let config = SmtpConfig {
        max_message_size: 1000,
        ..config()
    };
    let recorder = Arc::new(Recorder::default());
    let mut client = start_ehlo(config, recorder.clone()).await;
    client.envelope("a@example.org", "x@localhost").await;
    client.expect("DATA", "354 ").await;
    let line = "x".repeat(998) + "\r\n";
    for _ in 0..2000 {
        client.send(&line).await;
    }
    client.send(".\r\n").await;
    assert_eq!(client.reply().await, "552 5.3.4 message too big\r\n");
    assert!(recorder.messages().is_empty());
    // The transaction is over; a new one works.
    client.expect("RCPT TO:<x@localhost>", "503 ").await;
    client.envelope("a@example.org", "x@localhost").await;
    client.expect_data("small\r\n.\r\n", "250 ").await;
    assert_eq!(recorder.bodies(), ["small\r\n"]);
}

#[tokio::test]
async fn long_command_line_is_refused_and_skipped() {
    let config = SmtpConfig {
        max_line_length: 512,
        ..config()
    };
    let mut client = start_ehlo(config, Arc::default()).await;
    client.send("NOOP ").await;
    let chunk = vec![b'x'; 1 << 20];
    for _ in 0..300 {
        client.send(&chunk).await;
    }
    client.send("\r\nNOOP\r\n").await;
    assert_eq!(client.reply().await, "500 5.5.2 line too long\r\n");
    assert_eq!(client.reply().await, "250 2.0.0 Ok\r\n");
    // Just under the limit is fine.
    let noop = format!("NOOP {}", "y".repeat(512 - 7));
    assert_eq!(client.cmd(&noop).await, "250 2.0.0 Ok\r\n");
}

#[tokio::test]
async fn idle_client_gets_421() {
    let config = SmtpConfig {
        idle_timeout_secs: 1,
        ..config()
    };
    let started = Instant::now();
    let (mut client, session) = start(config, Arc::default()).await;
    assert_eq!(client.reply().await, "421 4.4.2 localhost idle timeout\r\n");
    assert!(started.elapsed() >= Duration::from_millis(900));
    client.closed().await;
    assert!(matches!(
        session.await.unwrap(),
        Err(SessionError::IdleTimeout)
    ));
}

#[tokio::test]
async fn a_client_trickling_data_is_cut_off_at_the_data_deadline() {
    let config = SmtpConfig {
        idle_timeout_secs: 5,
        data_timeout_secs: 1,
        ..config()
    };
    let recorder: Arc<Recorder> = Arc::default();
    let mut client = start_ehlo(config, recorder.clone()).await;
    client.envelope("a@example.org", "x@localhost").await;
    assert!(client.cmd("DATA").await.starts_with("354"));
    let started = Instant::now();
    // Each byte arrives well within the idle timeout, yet the whole
    // message takes too long.
    for _ in 0..3 {
        client.send("x").await;
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    assert_eq!(
        client.reply().await,
        "421 4.4.2 localhost message took too long to send\r\n"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(recorder.messages().is_empty());
}

#[tokio::test]
async fn handler_failures_leave_the_session_usable() {
    let recorder = Recorder::with_replies([
        Reply::new(451, "4.3.0", "try later"),
        Reply::new(554, "5.7.1", "refused\nfor good"),
        Reply::new(999, "", "nonsense"),
    ]);
    let mut client = start_ehlo(config(), recorder.clone()).await;
    client.envelope("a@example.org", "x@localhost").await;
    assert_eq!(client.data("1\r\n.\r\n").await, "451 4.3.0 try later\r\n");
    client.envelope("a@example.org", "x@localhost").await;
    let reply = client.data("2\r\n.\r\n").await;
    assert_eq!(reply, "554-5.7.1 refused\r\n554 5.7.1 for good\r\n");
    client.envelope("a@example.org", "x@localhost").await;
    assert_eq!(
        client.data("3\r\n.\r\n").await,
        "451 4.3.0 internal error\r\n"
    );
    client.envelope("a@example.org", "x@localhost").await;
    assert_eq!(
        client.data("4\r\n.\r\n").await,
        "250 2.0.0 Ok: queued as 4\r\n"
    );
    assert_eq!(recorder.bodies(), ["1\r\n", "2\r\n", "3\r\n", "4\r\n"]);
}

#[tokio::test]
async fn shutdown_closes_idle_sessions() {
    let (mut client, session) = start(config(), Arc::default()).await;
    let stop = client.stop.take().unwrap();
    stop.send(true).unwrap();
    assert_eq!(
        client.reply().await,
        "421 4.3.2 localhost shutting down\r\n"
    );
    client.closed().await;
    assert!(session.await.unwrap().is_ok());
}

/// A configuration with a 100 kB budget for buffered messages and a 1 MB
/// message limit, so that only the budget can refuse the tests' messages.
fn small_budget() -> SmtpConfig {
    SmtpConfig {
        max_buffered_bytes: 100_000,
        max_message_size: 1_000_000,
        ..config()
    }
}

/// Message content of about `size` bytes, terminator included.
fn content(size: usize) -> String {
    ("x".repeat(98) + "\r\n").repeat(size / 100) + ".\r\n"
}

/// Says when it gets its first message, then holds it until released.
struct Holding {
    /// Where to say it holds a message, and what releases it.
    hold: Mutex<Option<(oneshot::Sender<()>, oneshot::Receiver<()>)>>,
    /// Records the messages and answers them.
    recorder: Arc<Recorder>,
}

#[async_trait::async_trait]
impl Handler for Holding {
    async fn message(&self, envelope: &Envelope, data: Vec<u8>) -> Reply {
        let hold = self.hold.lock().unwrap().take();
        if let Some((held, release)) = hold {
            held.send(()).unwrap();
            let _ = release.await;
        }
        self.recorder.message(envelope, data).await
    }
}

/// A server with [`small_budget`] and a client of it whose 60 kB message
/// sits in the handler, its buffer counted in the budget, until the sender
/// is used; the client's reply to it is still to be read.
async fn holding_60_kb() -> (
    Arc<Shared>,
    Arc<Recorder>,
    Client<DuplexStream>,
    oneshot::Sender<()>,
) {
    let (held_tx, held) = oneshot::channel();
    let (release, release_rx) = oneshot::channel();
    let recorder = Arc::new(Recorder::default());
    let handler = Arc::new(Holding {
        hold: Mutex::new(Some((held_tx, release_rx))),
        recorder: recorder.clone(),
    });
    let shared = Arc::new(Shared::new(Arc::new(small_budget()), handler));
    let (mut first, _) = start_on(shared.clone()).await;
    first.expect("EHLO first.example", "250-").await;
    first.envelope("a@example.org", "x@localhost").await;
    first.expect("DATA", "354 ").await;
    first.send(content(60_000)).await;
    tokio::time::timeout(PATIENCE, held).await.unwrap().unwrap();
    (shared, recorder, first, release)
}

#[tokio::test]
async fn message_over_the_budget_gets_452_and_the_session_goes_on() {
    let recorder = Arc::new(Recorder::default());
    let shared = Arc::new(Shared::new(Arc::new(small_budget()), recorder.clone()));
    let (mut client, _) = start_on(shared.clone()).await;
    client.expect("EHLO client.example", "250-").await;
    client.envelope("a@example.org", "x@localhost").await;
    let reply = client.data(&content(200_000)).await;
    assert_eq!(reply, format!("452 4.3.1 {INSUFFICIENT}\r\n"));
    assert!(recorder.messages().is_empty());
    assert_eq!(shared.budget.available_permits(), 100_000);
    // The transaction is over; a new one works.
    client.expect("RCPT TO:<x@localhost>", "503 ").await;
    client.envelope("a@example.org", "x@localhost").await;
    client.expect_data("small\r\n.\r\n", "250 ").await;
    assert_eq!(recorder.bodies(), ["small\r\n"]);
}

#[tokio::test]
async fn concurrent_sessions_share_the_budget() {
    let (shared, recorder, mut first, release) = holding_60_kb().await;
    // The first message holds 60 kB of the 100 kB: a second one does not fit.
    let (mut second, _) = start_on(shared.clone()).await;
    second.expect("EHLO second.example", "250-").await;
    second.envelope("b@example.org", "y@localhost").await;
    let reply = second.data(&content(60_000)).await;
    assert_eq!(reply, format!("452 4.3.1 {INSUFFICIENT}\r\n"));
    // Once the first message is handled, its budget is free again.
    release.send(()).unwrap();
    first.expect_reply("250 ").await;
    second.envelope("b@example.org", "y@localhost").await;
    second.expect_data(&content(60_000), "250 ").await;
    let messages = recorder.messages();
    assert_eq!(messages.len(), 2);
    assert_eq!(messages[0].0.mail_from, "a@example.org");
    assert_eq!(messages[1].0.mail_from, "b@example.org");
    assert_eq!(shared.budget.available_permits(), 100_000);
}

#[tokio::test]
async fn size_parameter_over_the_free_budget_gets_452_at_mail() {
    let (shared, _, mut first, release) = holding_60_kb().await;
    let (mut second, _) = start_on(shared.clone()).await;
    second.expect("EHLO second.example", "250-").await;
    let reply = second.cmd("MAIL FROM:<b@example.org> SIZE=50000").await;
    assert_eq!(reply, format!("452 4.3.1 {INSUFFICIENT}\r\n"));
    // What is left of the budget can still be asked for.
    second
        .expect("MAIL FROM:<b@example.org> SIZE=30000", "250 ")
        .await;
    second.expect("RSET", "250 ").await;
    release.send(()).unwrap();
    first.expect_reply("250 ").await;
    second
        .expect("MAIL FROM:<b@example.org> SIZE=50000", "250 ")
        .await;
}

#[tokio::test]
async fn the_budget_is_given_back_after_every_message() {
    let recorder = Arc::new(Recorder::default());
    let shared = Arc::new(Shared::new(Arc::new(small_budget()), recorder.clone()));
    let (mut client, _) = start_on(shared.clone()).await;
    client.expect("EHLO client.example", "250-").await;
    // 3 MB in all through a 100 kB budget, with refused messages among them.
    for round in 0..50 {
        client.envelope("a@example.org", "x@localhost").await;
        if round % 10 == 9 {
            client.expect_data(&content(200_000), "452 4.3.1 ").await;
        } else {
            client.expect_data(&content(60_000), "250 ").await;
        }
        assert_eq!(shared.budget.available_permits(), 100_000, "round {round}");
    }
    assert_eq!(recorder.messages().len(), 45);
    // A client that leaves in the middle of a message gives its share back.
    let (mut leaving, session) = start_on(shared.clone()).await;
    leaving.expect("EHLO client.example", "250-").await;
    leaving.envelope("a@example.org", "x@localhost").await;
    leaving.expect("DATA", "354 ").await;
    leaving.send("x".repeat(50_000)).await;
    drop(leaving);
    assert!(session.await.unwrap().is_ok());
    assert_eq!(shared.budget.available_permits(), 100_000);
}

/// Serves `config` on a fresh port; the sender stops the server.
async fn serve(
    config: SmtpConfig,
    handler: Arc<Recorder>,
) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<()>) {
    serve_with(config, handler).await
}

/// Like [`serve`], with any handler.
async fn serve_with(
    config: SmtpConfig,
    handler: Arc<dyn Handler>,
) -> (SocketAddr, oneshot::Sender<()>, JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(run(listener, Arc::new(config), handler, async {
        let _ = stopped.await;
    }));
    (addr, stop, server)
}

#[tokio::test]
async fn lettre_sends_a_message() {
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let recorder = Arc::new(Recorder::default());
    let (addr, stop, server) = serve(config(), recorder.clone()).await;
    let message = Message::builder()
        .from("Alice <alice@example.org>".parse().unwrap())
        .to("0612345678@sms.example.com".parse().unwrap())
        .subject("Hello")
        .body(String::from(
            "First line\r\n.second line starts with a dot\r\n",
        ))
        .unwrap();
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(addr.port())
        .build();
    let response = mailer.send(message).await.unwrap();
    assert_eq!(response.code().to_string(), "250");
    drop(mailer);

    let messages = recorder.messages();
    assert_eq!(messages.len(), 1);
    let (envelope, data) = &messages[0];
    assert_eq!(envelope.mail_from, "alice@example.org");
    assert_eq!(envelope.rcpt_to, ["0612345678@sms.example.com"]);
    let data = String::from_utf8(data.clone()).unwrap();
    assert!(data.contains("Subject: Hello\r\n"), "{data}");
    assert!(
        data.contains("\r\n.second line starts with a dot\r\n"),
        "{data}"
    );
    stop.send(()).unwrap();
    tokio::time::timeout(PATIENCE, server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn connections_over_the_cap_get_421_at_once() {
    let config = SmtpConfig {
        max_connections: 2,
        ..config()
    };
    let (addr, stop, server) = serve(config, Arc::default()).await;
    let connect = || async { Client::new(TcpStream::connect(addr).await.unwrap()) };
    let mut first = connect().await;
    first.expect_reply("220 ").await;
    let mut second = connect().await;
    second.expect_reply("220 ").await;
    // Two idle clients hold both slots: the third is turned away.
    let mut third = connect().await;
    assert_eq!(
        third.reply().await,
        "421 4.3.2 too many connections, try later\r\n"
    );
    third.closed().await;
    // The idle clients are still served.
    assert_eq!(second.cmd("NOOP").await, "250 2.0.0 Ok\r\n");
    // Once a client leaves, its slot is free again.
    first.expect("QUIT", "221 ").await;
    first.closed().await;
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut next = connect().await;
        if next.reply().await.starts_with("220 ") {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never released");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.send(()).unwrap();
    tokio::time::timeout(PATIENCE, server)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn run_stops_on_shutdown() {
    let (addr, stop, server) = serve(config(), Arc::default()).await;
    let mut idle = Client::new(TcpStream::connect(addr).await.unwrap());
    idle.expect_reply("220 ").await;
    stop.send(()).unwrap();
    assert_eq!(idle.reply().await, "421 4.3.2 localhost shutting down\r\n");
    idle.closed().await;
    tokio::time::timeout(PATIENCE, server)
        .await
        .unwrap()
        .unwrap();
    assert!(TcpStream::connect(addr).await.is_err());
}

/// A client source address other than 127.0.0.1: all of 127.0.0.0/8 is
/// loopback on Linux.
const OTHER_ADDRESS: &str = "127.0.0.2";

/// Connects to `addr` from the loopback address `from`.
async fn connect_from(from: &str, addr: SocketAddr) -> Client<TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(format!("{from}:0").parse().unwrap()).unwrap();
    Client::new(socket.connect(addr).await.unwrap())
}

/// Connects from `from` until the server greets: a session's place is given
/// back just after its socket closes.
async fn connect_when_free(from: &str, addr: SocketAddr) -> Client<TcpStream> {
    let deadline = Instant::now() + PATIENCE;
    loop {
        let mut client = connect_from(from, addr).await;
        let reply = client.reply().await;
        if reply.starts_with("220 ") {
            return client;
        }
        assert!(
            reply.starts_with("421 4.7.0 "),
            "unexpected greeting {reply:?}"
        );
        assert!(Instant::now() < deadline, "the place was never given back");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Stops a server started by [`serve`] and waits for it.
async fn shut(stop: oneshot::Sender<()>, server: JoinHandle<()>) {
    stop.send(()).unwrap();
    tokio::time::timeout(PATIENCE, server)
        .await
        .unwrap()
        .unwrap();
}

/// Issue 8: one address gets at most `max_connections_per_ip` connections;
/// the next is told so and closed, those it has go on, a closed one frees a
/// place, and other addresses have their own count.
#[tokio::test]
async fn connections_over_the_per_address_cap_get_421() {
    let config = SmtpConfig {
        max_connections_per_ip: 2,
        ..config()
    };
    let (addr, stop, server) = serve(config, Arc::default()).await;
    let mut first = connect_from("127.0.0.1", addr).await;
    first.expect_reply("220 ").await;
    let mut second = connect_from("127.0.0.1", addr).await;
    second.expect_reply("220 ").await;
    let mut third = connect_from("127.0.0.1", addr).await;
    assert_eq!(
        third.reply().await,
        "421 4.7.0 too many connections from your address (at most 2), try later\r\n"
    );
    third.closed().await;
    first.expect("NOOP", "250 ").await;
    second.expect("NOOP", "250 ").await;
    // Another address is not counted with the first.
    let mut others = Vec::new();
    for _ in 0..2 {
        let mut other = connect_from(OTHER_ADDRESS, addr).await;
        other.expect_reply("220 ").await;
        other.expect("NOOP", "250 ").await;
        others.push(other);
    }
    first.expect("QUIT", "221 ").await;
    first.closed().await;
    let mut again = connect_when_free("127.0.0.1", addr).await;
    again.expect("NOOP", "250 ").await;
    shut(stop, server).await;
}

/// A handler with a bug: it panics, which ends its session's task.
struct Panicking;

#[async_trait::async_trait]
impl Handler for Panicking {
    async fn message(&self, _: &Envelope, _: Vec<u8>) -> Reply {
        panic!("handler bug (this panic is expected by the test)");
    }
}

/// Issue 8: a session that ends abnormally (its task panics) gives its place
/// in the address's count back.
#[tokio::test]
async fn a_session_ending_abnormally_gives_its_place_back() {
    let config = SmtpConfig {
        max_connections_per_ip: 1,
        ..config()
    };
    let (addr, stop, server) = serve_with(config, Arc::new(Panicking)).await;
    let mut doomed = connect_from("127.0.0.1", addr).await;
    doomed.expect_reply("220 ").await;
    doomed.expect("EHLO client.example", "250-").await;
    doomed.envelope("a@example.org", "x@localhost").await;
    doomed.expect("DATA", "354 ").await;
    doomed.send("Subject: boom\r\n\r\nx\r\n.\r\n").await;
    // The task died: the connection closes without a reply (or is reset).
    let mut rest = Vec::new();
    let read = tokio::time::timeout(PATIENCE, doomed.stream.read_to_end(&mut rest));
    let _ = read.await.expect("the session did not end");
    assert!(rest.is_empty(), "{:?}", String::from_utf8_lossy(&rest));
    let mut next = connect_when_free("127.0.0.1", addr).await;
    next.expect("NOOP", "250 ").await;
    shut(stop, server).await;
}

/// Issue 8: a client sending NOOP in time is served until the session is
/// `max_session_secs` old; then its next command gets 421 and it is closed.
#[tokio::test]
async fn a_session_past_max_session_secs_is_closed_at_its_next_command() {
    let config = SmtpConfig {
        max_session_secs: 2,
        ..config()
    };
    let started = Instant::now();
    let (mut client, session) = start(config, Arc::default()).await;
    let mut served = 0;
    let last = loop {
        let reply = client.cmd("NOOP").await;
        if reply != "250 2.0.0 Ok\r\n" {
            break reply;
        }
        served += 1;
        assert!(started.elapsed() < PATIENCE, "never closed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(last, "421 4.4.2 localhost session too long, closing\r\n");
    assert!(started.elapsed() >= Duration::from_secs(2));
    assert!(served > 0, "no NOOP was served before the session's end");
    client.closed().await;
    assert!(session.await.unwrap().is_ok());
}

/// Issue 8: a message under way when the session reaches
/// `max_session_secs` is received and handled; the 421 comes at the next
/// command.
#[tokio::test]
async fn a_message_under_way_at_max_session_secs_is_let_finish() {
    let config = SmtpConfig {
        max_session_secs: 1,
        ..config()
    };
    let recorder: Arc<Recorder> = Arc::default();
    let mut client = start_ehlo(config, recorder.clone()).await;
    client.envelope("a@example.org", "x@localhost").await;
    client.expect("DATA", "354 ").await;
    client.send("Subject: slow\r\n\r\nfirst half, ").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.send("second half\r\n.\r\n").await;
    client.expect_reply("250 ").await;
    assert_eq!(
        recorder.bodies(),
        ["Subject: slow\r\n\r\nfirst half, second half\r\n"]
    );
    assert_eq!(
        client.cmd("NOOP").await,
        "421 4.4.2 localhost session too long, closing\r\n"
    );
    client.closed().await;
}

/// Issue 8: a client trickling a command line that never ends is closed
/// too once the session is `max_session_secs` old.
#[tokio::test]
async fn a_never_ending_line_does_not_outlive_max_session_secs() {
    let config = SmtpConfig {
        max_session_secs: 1,
        ..config()
    };
    let (mut client, session) = start(config, Arc::default()).await;
    client.send("NOOP ").await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    client.send("still going").await;
    assert_eq!(
        client.reply().await,
        "421 4.4.2 localhost session too long, closing\r\n"
    );
    client.closed().await;
    assert!(session.await.unwrap().is_ok());
}

/// Issue 8 in miniature: one address opening every connection it can and
/// keeping them busy with NOOP no longer locks the other clients out.
#[tokio::test]
async fn a_noop_flood_from_one_address_leaves_room_for_others() {
    let config = SmtpConfig {
        max_connections: 4,
        max_connections_per_ip: 3,
        ..config()
    };
    let (addr, stop, server) = serve(config, Arc::default()).await;
    let mut flood = Vec::new();
    for _ in 0..4 {
        let mut client = connect_from("127.0.0.1", addr).await;
        if client.reply().await.starts_with("220 ") {
            flood.push(client);
        }
    }
    assert_eq!(flood.len(), 3, "the flooding address got past its cap");
    for client in &mut flood {
        client.expect("NOOP", "250 ").await;
    }
    let mut real = connect_from(OTHER_ADDRESS, addr).await;
    real.expect_reply("220 ").await;
    real.expect("EHLO relay.example", "250-").await;
    real.envelope("a@example.org", "x@localhost").await;
    real.expect_data("Subject: hi\r\n\r\nhi\r\n.\r\n", "250 ")
        .await;
    for client in &mut flood {
        client.expect("NOOP", "250 ").await;
    }
    shut(stop, server).await;
}

/// Issue 8: an IPv6 client is counted by its /64 (it can take any address in
/// it), an IPv4-mapped one as its IPv4 address; the table forgets an address
/// with its last connection.
#[test]
fn ipv6_clients_are_counted_by_their_64() {
    let table = Arc::new(PerAddress::new(1));
    let now = Instant::now();
    let admit = |ip: &str| table.admit(ip.parse().unwrap(), now);
    let first = admit("2001:db8:1:2::1").ok().unwrap();
    assert!(admit("2001:db8:1:2:ffff:ffff:ffff:ffff").is_err());
    let neighbour = admit("2001:db8:1:3::1").ok().unwrap();
    let v4 = admit("192.0.2.7").ok().unwrap();
    assert!(admit("::ffff:192.0.2.7").is_err());
    drop(first);
    let again = admit("2001:db8:1:2::99").ok().unwrap();
    drop((neighbour, v4, again));
    assert!(table.lock().is_empty());
}

/// Issue 8: refusals are logged at most once a second per address, the next
/// line counting those left out; each address has its own limit.
#[test]
fn refusals_are_logged_at_most_once_a_second_per_address() {
    let table = Arc::new(PerAddress::new(1));
    let start = Instant::now();
    let at = |ms: u64| start + Duration::from_millis(ms);
    let log = |ip: &str, ms| match table.admit(ip.parse().unwrap(), at(ms)) {
        Err(Refused { log }) => log,
        Ok(_) => panic!("{ip} admitted over the cap"),
    };
    let _held = (
        table
            .admit("192.0.2.1".parse().unwrap(), start)
            .ok()
            .unwrap(),
        table
            .admit("192.0.2.2".parse().unwrap(), start)
            .ok()
            .unwrap(),
    );
    assert_eq!(log("192.0.2.1", 0), Some(0));
    assert_eq!(log("192.0.2.1", 10), None);
    assert_eq!(log("192.0.2.2", 20), Some(0));
    assert_eq!(log("192.0.2.1", 999), None);
    assert_eq!(log("192.0.2.1", 1000), Some(2));
    assert_eq!(log("192.0.2.1", 1500), None);
    assert_eq!(log("192.0.2.1", 5000), Some(1));
}

/// Issue 8: the log limiter of refusals for want of any slot.
#[test]
fn log_limiter_lets_one_line_a_second_through() {
    let mut limiter = LogLimiter::default();
    let start = Instant::now();
    assert_eq!(limiter.allow(start), Some(0));
    for ms in 1..=999 {
        assert_eq!(limiter.allow(start + Duration::from_millis(ms)), None);
    }
    assert_eq!(limiter.allow(start + Duration::from_secs(1)), Some(999));
}
