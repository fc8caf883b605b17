//! The daemon's memory stays bounded across connections: message buffers
//! share one budget (`smtp.max_buffered_bytes`), and a message that does not
//! fit in what is left of it gets a transient 452 and is not stored.

mod common;
use common::*;
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
