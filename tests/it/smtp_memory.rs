//! The daemon's memory stays bounded across connections: message buffers
//! share one budget (`smtp.max_buffered_bytes`), and a message that does not
//! fit in what is left of it gets a transient 452 and is not stored. The
//! handling of a message (parsing, request building) is paid from the same
//! budget (issue 8).

use crate::common::*;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A raw SMTP client: sees the exact replies.
struct Raw(BufReader<TcpStream>);

impl Raw {
    async fn connect(app: &TestApp) -> Raw {
        let mut raw = Raw(BufReader::new(TcpStream::connect(app.addr).await.unwrap()));
        raw.expect_reply("220 ").await;
        raw
    }

    /// Reads one complete (possibly multi-line) reply.
    async fn reply(&mut self) -> String {
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            let read = tokio::time::timeout(Duration::from_secs(20), self.0.read_line(&mut line));
            assert!(read.await.expect("reply timed out").unwrap() > 0, "closed");
            reply.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return reply;
            }
        }
    }

    async fn expect_reply(&mut self, prefix: &str) {
        let reply = self.reply().await;
        assert!(reply.starts_with(prefix), "expected {prefix:?}: {reply:?}");
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.0.get_mut().write_all(bytes).await.unwrap();
    }

    async fn expect(&mut self, line: &str, prefix: &str) {
        self.send(format!("{line}\r\n").as_bytes()).await;
        self.expect_reply(prefix).await;
    }

    /// Connects, sends `mail` from `from` in one transaction and returns the
    /// reply to its DATA (or to MAIL, if that refused it).
    async fn transaction(app: &TestApp, from: &str, mail: &[u8]) -> String {
        Raw::transaction_at(app, from, mail, async {}).await
    }

    /// [`Raw::transaction`], ending the DATA only once `end` is ready.
    async fn transaction_at(
        app: &TestApp,
        from: &str,
        mail: &[u8],
        end: impl std::future::Future<Output = ()>,
    ) -> String {
        let mut raw = Raw::connect(app).await;
        raw.expect("EHLO client.example", "250").await;
        raw.send(format!("MAIL FROM:<{from}>\r\n").as_bytes()).await;
        let reply = raw.reply().await;
        if !reply.starts_with("250") {
            return reply;
        }
        raw.expect("RCPT TO:<sms@sms.example.com>", "250 ").await;
        raw.expect("DATA", "354 ").await;
        raw.send(mail).await;
        end.await;
        raw.send(b"\r\n.\r\n").await;
        raw.reply().await
    }
}

#[tokio::test]
async fn message_over_the_shared_budget_gets_452_and_is_not_stored() {
    let app = TestApp::spawn_with(|c| {
        c.smtp.max_buffered_bytes = 100_000;
        c.smtp.max_message_size = 1_000_000;
    })
    .await;
    // A valid request, padded past the budget (but not past the size limit).
    let mut body = envoi("0601020304", "too big for now", "mem1");
    body.push_str(&"padding line\n".repeat(20_000));
    let mail = plain_email("ops@masociete.com", &body);
    assert!(mail.len() > 200_000 && mail.len() < 1_000_000);

    let mut raw = Raw::connect(&app).await;
    raw.expect("EHLO client.example", "250").await;
    // Announced with SIZE, it is refused at once.
    raw.expect(
        &format!("MAIL FROM:<ops@masociete.com> SIZE={}", mail.len()),
        "452 4.3.1 ",
    )
    .await;
    // Not announced, it is read to its end and then refused.
    raw.expect("MAIL FROM:<ops@masociete.com>", "250 ").await;
    raw.expect("RCPT TO:<sms@sms.example.com>", "250 ").await;
    raw.expect("DATA", "354 ").await;
    raw.send(&mail).await;
    raw.send(b".\r\n").await;
    raw.expect_reply("452 4.3.1 insufficient system storage")
        .await;
    // The session goes on.
    raw.expect("NOOP", "250 ").await;
    raw.expect("QUIT", "221 ").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.outbox().is_empty(), "{:?}", app.outbox());

    // A normal request on a new connection is accepted and sent.
    let mail = plain_email("ops@masociete.com", &envoi("0601020304", "hello", "mem2"));
    let response = app.send("ops@masociete.com", &mail).await.unwrap();
    assert_eq!(response.code().to_string(), "250");
    let outbox = app.wait_outbox(1).await;
    assert_eq!(outbox.len(), 1);
    assert!(outbox[0].to_string().contains("hello"), "{:?}", outbox[0]);
}

/// A valid request from ops@masociete.com padded to about `size` bytes.
fn padded(size: usize, email_id: &str) -> Vec<u8> {
    let mut body = envoi("0601020304", "padded", email_id);
    // 14 bytes a line once its LF is CRLF.
    body.push_str(&"padding line\n".repeat(size / 14));
    plain_email("ops@masociete.com", &body)
}

/// Issue 8: more maximal messages at once than the budget can handle
/// together. Finished messages wait for their handling share while their
/// buffers hold the budget; since buffers cannot take the headroom kept for
/// handling, the first waiter always gets its share: every message is
/// answered, `250` or a transient `4.3.1` (`452` during DATA, `451` if its
/// request could not grow), and none waits for its share until the
/// deadline. Every message is sent before any is ended, so that buffers
/// are full when the first share is asked for (without the headroom, the
/// replies time out).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_maximal_messages_than_the_budget_can_handle_are_all_answered() {
    let app = TestApp::spawn_with(|c| {
        c.smtp.max_message_size = 200_000;
        // Room for the buffers of two messages and one handling share.
        c.smtp.max_buffered_bytes = 1_200_000;
    })
    .await;
    let app = std::sync::Arc::new(app);
    let mut tasks = tokio::task::JoinSet::new();
    let all_sent = std::sync::Arc::new(tokio::sync::Barrier::new(8));
    for n in 0..8 {
        let (app, all_sent) = (app.clone(), all_sent.clone());
        tasks.spawn(async move {
            let mail = padded(190_000, &format!("many-{n}"));
            assert!(mail.len() > 180_000 && mail.len() < 200_000);
            let end = async move {
                all_sent.wait().await;
            };
            Raw::transaction_at(&app, "ops@masociete.com", &mail, end).await
        });
    }
    let replies = tasks.join_all().await;
    let accepted = replies.iter().filter(|r| r.starts_with("250 ")).count();
    for reply in &replies {
        let transient = reply.starts_with("452 4.3.1 ")
            || reply.starts_with("451 4.3.1 request too large to build now");
        assert!(reply.starts_with("250 ") || transient, "{replies:?}");
    }
    assert!(accepted >= 1, "{replies:?}");
    assert_eq!(app.wait_outbox(accepted).await.len(), accepted);
}

/// Issue 8: the refusal of an unknown keyid and of a sender not allowed
/// for a keyid are the same bytes, so a stranger cannot learn whether a
/// keyid exists.
#[tokio::test]
async fn unknown_keyid_and_unauthorized_sender_get_the_same_reply() {
    let app = TestApp::spawn().await;
    let body = envoi("0601020304", "x", "who-1");
    let unknown = plain_email(
        "ops@masociete.com",
        &body.replace(KEYID, "0123456789abcdef0123"),
    );
    let stranger = plain_email("intruder@evil.example", &body);
    let unknown = Raw::transaction(&app, "ops@masociete.com", &unknown).await;
    let stranger = Raw::transaction(&app, "intruder@evil.example", &stranger).await;
    assert!(unknown.starts_with("550 5.7.1 "), "{unknown:?}");
    assert_eq!(unknown, stranger);
}

/// Issue 8: the keyid is checked before the attachments are read: a
/// stranger's broken attachments get the same refusal as anyone's, not a
/// description of what is wrong with them.
#[tokio::test]
async fn unknown_keyid_is_refused_before_the_attachments_are_read() {
    let app = TestApp::spawn().await;
    let parts = [("message.csv", "text/csv", None, "Bonjour [1]")];
    let body = "<envoi><keyid>KEY</keyid><emailId>att-1</emailId></envoi>";
    let unknown = multipart_email(&body.replace("KEY", "not-a-key"), &parts);
    let reply = Raw::transaction(&app, "ops@masociete.com", &unknown).await;
    assert!(reply.starts_with("550 5.7.1 "), "{reply:?}");
    // With the right keyid, the attachments are read and refused.
    let known = multipart_email(&body.replace("KEY", KEYID), &parts);
    let reply = Raw::transaction(&app, "ops@masociete.com", &known).await;
    assert!(
        reply.starts_with("550 5.6.0 ") && reply.contains("mobiles.csv"),
        "{reply:?}"
    );
}

/// Issue 8: a small message whose `message.csv` text is copied for each of
/// its many `mobiles.csv` lines would take far more memory than it
/// weighs; beyond the whole budget it is refused for good, naming the limit.
#[tokio::test]
async fn request_expanding_beyond_the_budget_is_refused_naming_the_limit() {
    let app = TestApp::spawn_with(|c| {
        c.smtp.max_message_size = 1_000_000;
        c.smtp.max_buffered_bytes = 4_000_000;
    })
    .await;
    let template = "Bonjour [1], ".to_string() + &"x".repeat(5_000);
    let mobiles = "0601020304;;Michel\r\n".repeat(10_000);
    let parts = [
        ("message.csv", "text/csv", None, template.as_str()),
        ("mobiles.csv", "text/csv", None, mobiles.as_str()),
    ];
    let mail = multipart_email(
        &format!("<envoi><keyid>{KEYID}</keyid><emailId>exp-1</emailId></envoi>"),
        &parts,
    );
    assert!(mail.len() < 300_000);
    let reply = Raw::transaction(&app, "ops@masociete.com", &mail).await;
    assert!(
        reply.starts_with("550 5.6.0 ") && reply.contains("smtp.max_buffered_bytes"),
        "{reply:?}"
    );
    assert!(app.outbox().is_empty());
}
