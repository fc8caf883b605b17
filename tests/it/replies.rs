//! Reply emails over a real SMTP exchange: a transient refusal is retried
//! from the store until delivered, once; a permanent one is not repeated.

use crate::common::*;
use mail2sms::smtp::{self, Envelope, Handler, Reply, SmtpConfig};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The next mail relay: answers each message with the next scripted code
/// (then 250) and records what it accepted.
struct Relay {
    /// Codes to answer, in order; 250 once exhausted.
    script: Mutex<Vec<u16>>,
    /// Every attempt: (recipient, code answered).
    attempts: Mutex<Vec<(String, u16)>>,
    /// The messages answered 250.
    delivered: Mutex<Vec<Vec<u8>>>,
}

#[async_trait::async_trait]
impl Handler for Relay {
    async fn message(&self, envelope: &Envelope, data: Vec<u8>) -> Reply {
        let code = {
            let mut script = self.script.lock().unwrap();
            if script.is_empty() {
                250
            } else {
                script.remove(0)
            }
        };
        self.attempts
            .lock()
            .unwrap()
            .push((envelope.rcpt_to.join(","), code));
        match code {
            250 => {
                self.delivered.lock().unwrap().push(data);
                Reply::new(250, "2.0.0", "ok")
            }
            451 => Reply::new(451, "4.3.0", "try again later"),
            _ => Reply::new(code, "5.1.1", "no such user"),
        }
    }
}

async fn relay(script: Vec<u16>) -> (Arc<Relay>, u16) {
    let relay = Arc::new(Relay {
        script: Mutex::new(script),
        attempts: Mutex::new(Vec::new()),
        delivered: Mutex::new(Vec::new()),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let config = Arc::new(SmtpConfig {
        domains: vec!["masociete.com".into()],
        ..SmtpConfig::default()
    });
    let handler: Arc<dyn Handler> = relay.clone();
    tokio::spawn(smtp::run(listener, config, handler, std::future::pending()));
    (relay, port)
}

#[tokio::test]
async fn transient_reply_failure_is_retried_and_delivered_once() {
    let (relay, port) = relay(vec![451, 451]).await;
    let app = TestApp::spawn_with(|c| {
        c.replies.transport = format!("smtp://127.0.0.1:{port}");
        c.replies.retry_initial_ms = 50;
    })
    .await;
    let body =
        envoi("0601020304", "x", "r-1").replace("<emailNot>not@masociete.com</emailNot>\n", "");
    app.send(
        "ops@masociete.com",
        &plain_email("ops@masociete.com", &body),
    )
    .await
    .expect("accepted");
    let delivered = wait_until(|| {
        let d = relay.delivered.lock().unwrap();
        (!d.is_empty()).then(|| d.clone())
    })
    .await
    .expect("the ack is delivered after the retries");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attempts = relay.attempts.lock().unwrap().clone();
    assert_eq!(
        attempts,
        vec![
            ("ack@masociete.com".to_string(), 451),
            ("ack@masociete.com".to_string(), 451),
            ("ack@masociete.com".to_string(), 250)
        ]
    );
    assert_eq!(relay.delivered.lock().unwrap().len(), 1, "sent once");
    let text = String::from_utf8_lossy(&delivered[0]);
    assert!(text.contains("<emailId>r-1</emailId>"), "{text}");
    assert!(text.contains("charset=ISO-8859-1"), "{text}");
}

#[tokio::test]
async fn permanent_reply_failure_is_not_repeated() {
    let (relay, port) = relay(vec![550]).await;
    let app = TestApp::spawn_with(|c| {
        c.replies.transport = format!("smtp://127.0.0.1:{port}");
        c.replies.retry_initial_ms = 50;
    })
    .await;
    let body =
        envoi("0601020304", "x", "r-2").replace("<emailNot>not@masociete.com</emailNot>\n", "");
    app.send(
        "ops@masociete.com",
        &plain_email("ops@masociete.com", &body),
    )
    .await
    .expect("accepted");
    wait_until(|| (!relay.attempts.lock().unwrap().is_empty()).then_some(()))
        .await
        .expect("one attempt");
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(relay.attempts.lock().unwrap().len(), 1);
    assert!(relay.delivered.lock().unwrap().is_empty());
    // The SMS itself is unaffected.
    assert_eq!(app.wait_outbox(1).await.len(), 1);
}

/// Reply statuses in the store, counted (`sent`, `sending`, …).
async fn reply_statuses(app: &TestApp) -> std::collections::BTreeMap<String, i64> {
    use sqlx::Connection;
    let db = app.dir.path().join("mail2sms.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("open the store");
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT status, COUNT(*) FROM replies GROUP BY status")
            .fetch_all(&mut conn)
            .await
            .expect("reply statuses");
    rows.into_iter().collect()
}

/// Waits until the store's reply statuses are `expected`.
async fn wait_statuses(app: &TestApp, expected: &[(&str, i64)]) {
    let expected: std::collections::BTreeMap<String, i64> = expected
        .iter()
        .map(|&(status, n)| (status.to_string(), n))
        .collect();
    let mut last = Default::default();
    for _ in 0..750 {
        last = reply_statuses(app).await;
        if last == expected {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("reply statuses stayed {last:?}, expected {expected:?}");
}

/// Issue 8: a reply server that holds one reply delays only that one: the
/// others are sent, and their outcomes recorded, while it is held (the
/// sender used to wait for its whole batch before claiming more).
#[tokio::test]
async fn a_slow_reply_delays_only_itself() {
    let sink = ReplySink::start().await;
    sink.hold("slow@masociete.com");
    let app = TestApp::spawn_with(|c| c.replies.transport = sink.transport()).await;
    let slow = envoi_ack_only("0601020304", "slow-1", "slow@masociete.com");
    app.send(
        "ops@masociete.com",
        &plain_email("ops@masociete.com", &slow),
    )
    .await
    .expect("accepted");
    wait_until(|| (sink.in_progress() == 1).then_some(()))
        .await
        .expect("the slow reply reaches the relay");
    for i in 0..5 {
        let body = envoi_ack_only("0601020304", &format!("fast-{i}"), "ack@masociete.com");
        app.send(
            "ops@masociete.com",
            &plain_email("ops@masociete.com", &body),
        )
        .await
        .expect("accepted");
    }
    wait_until(|| (sink.deliveries().len() == 5).then_some(()))
        .await
        .expect("the other replies go out while the slow one is held");
    assert!(
        sink.deliveries()
            .iter()
            .all(|d| d.to == "ack@masociete.com")
    );
    wait_statuses(&app, &[("sending", 1), ("sent", 5)]).await;

    sink.release();
    wait_until(|| (sink.deliveries().len() == 6).then_some(()))
        .await
        .expect("the slow reply goes out once released");
    wait_statuses(&app, &[("sent", 6)]).await;
}

/// Issue 8: at most `replies.concurrency` replies are in flight, however
/// many are queued; the rest go out as slots free.
#[tokio::test]
async fn at_most_concurrency_replies_are_in_flight() {
    let sink = ReplySink::start().await;
    sink.hold_all();
    let app = TestApp::spawn_with(|c| {
        c.replies.transport = sink.transport();
        c.replies.concurrency = 3;
    })
    .await;
    for i in 0..8 {
        let body = envoi_ack_only("0601020304", &format!("c-{i}"), "ack@masociete.com");
        app.send(
            "ops@masociete.com",
            &plain_email("ops@masociete.com", &body),
        )
        .await
        .expect("accepted");
    }
    wait_until(|| (sink.in_progress() == 3).then_some(()))
        .await
        .expect("three replies in flight");
    // Nothing more starts while the three are held.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(sink.in_progress(), 3);
    wait_statuses(&app, &[("pending", 5), ("sending", 3)]).await;

    sink.release();
    wait_until(|| (sink.deliveries().len() == 8).then_some(()))
        .await
        .expect("every reply goes out");
    assert_eq!(sink.max_in_progress(), 3);
    wait_statuses(&app, &[("sent", 8)]).await;
}

/// Issue 8: the `.*.tmp` files that crashed writes of the `file://`
/// transport left behind are removed when the daemon starts; nothing else
/// in the directory is touched.
#[tokio::test]
async fn leftover_temporary_reply_files_are_removed_at_start() {
    let mut spool = std::path::PathBuf::new();
    let app = TestApp::spawn_with(|c| {
        spool = c.replies.transport["file://".len()..].into();
        std::fs::create_dir_all(&spool).expect("spool dir");
        for name in [
            ".1700000000000.1.4242.0.tmp",
            ".x.tmp",
            "keep.eml",
            "keep.tmp",
        ] {
            std::fs::write(spool.join(name), b"x").expect("write");
        }
    })
    .await;
    let names = || {
        let mut names: Vec<String> = std::fs::read_dir(&spool)
            .expect("list the spool")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        names
    };
    wait_until(|| (names() == ["keep.eml", "keep.tmp"]).then_some(()))
        .await
        .unwrap_or_else(|| panic!("left: {:?}", names()));
    drop(app);
}

/// Issue 10: etatAck and etatNot go with a null envelope sender
/// (`MAIL FROM:<>`, RFC 3834), so that their bounces do not come back to
/// `replies.from` in the SMS domain (refused, and lost); the `From:` header
/// stays `replies.from`.
#[tokio::test]
async fn replies_go_with_a_null_envelope_sender() {
    let sink = ReplySink::start().await;
    let app = TestApp::spawn_with(|c| c.replies.transport = sink.transport()).await;
    app.send(
        "ops@masociete.com",
        &plain_email("ops@masociete.com", &envoi("0601020304", "x", "null-1")),
    )
    .await
    .expect("accepted");
    wait_until(|| (sink.deliveries().len() == 2).then_some(()))
        .await
        .expect("etatAck and etatNot delivered");
    let mut deliveries = sink.deliveries();
    deliveries.sort_by(|a, b| a.subject.cmp(&b.subject));
    let seen: Vec<(&str, &str, &str)> = deliveries
        .iter()
        .map(|d| (d.subject.as_str(), d.to.as_str(), d.mail_from.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("etatAck null-1", "ack@masociete.com", ""),
            ("etatNot null-1", "not@masociete.com", "")
        ]
    );
    for d in &deliveries {
        let text = String::from_utf8_lossy(&d.data);
        assert!(
            text.contains("From: mail2sms@sms.example.com\r\n"),
            "{text}"
        );
    }
}
