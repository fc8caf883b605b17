//! Reply emails over a real SMTP exchange: a transient refusal is retried
//! from the store until delivered, once; a permanent one is not repeated.

mod common;
use common::*;
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
