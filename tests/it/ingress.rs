//! Each SMTP refusal, through a real client: relaying, unreadable requests,
//! unknown keyid, sender not allowed, size, and an unavailable store.

use crate::common::*;
use sqlx::Connection;
use std::time::Duration;

fn refusal(
    result: Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error>,
) -> String {
    let error = result.expect_err("the daemon must refuse");
    error.to_string()
}

fn code_of(
    result: &Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error>,
) -> Option<u16> {
    match result {
        Ok(r) => Some(r.code().to_string().parse().unwrap()),
        Err(e) => e.status().map(|c| c.to_string().parse().unwrap()),
    }
}

#[tokio::test]
async fn relaying_to_other_domains_is_refused() {
    let app = TestApp::spawn().await;
    let body = plain_email("ops@masociete.com", &envoi("0601020304", "x", "r1"));
    let result = app
        .send_to("ops@masociete.com", "someone@gmail.com", &body)
        .await;
    assert_eq!(code_of(&result), Some(550));
    assert!(refusal(result).contains("5.7.1"));
    assert!(app.outbox().is_empty());
}

#[tokio::test]
async fn body_without_envoi_is_refused_with_a_reason() {
    let app = TestApp::spawn().await;
    let body = plain_email(
        "ops@masociete.com",
        "Hello,\nplease send an SMS to 0601020304.\n",
    );
    let result = app.send("ops@masociete.com", &body).await;
    assert_eq!(code_of(&result), Some(550));
    let text = refusal(result);
    assert!(text.contains("5.6.0"), "{text}");
    assert!(text.to_lowercase().contains("envoi"), "{text}");
}

#[tokio::test]
async fn unknown_keyid_is_refused_without_any_reply_email() {
    let app = TestApp::spawn().await;
    let body = envoi("0601020304", "x", "k1").replace(KEYID, "not-a-key");
    let result = app
        .send(
            "ops@masociete.com",
            &plain_email("ops@masociete.com", &body),
        )
        .await;
    assert_eq!(code_of(&result), Some(550));
    assert!(refusal(result).contains("5.7.1"));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.replies().is_empty(), "no backscatter");
    assert!(app.outbox().is_empty());
}

#[tokio::test]
async fn sender_is_checked_on_from_header_then_envelope() {
    let app = TestApp::spawn().await;
    let body = envoi("0601020304", "x", "s1");
    // From: header not allowed, even with an allowed envelope sender.
    let result = app
        .send(
            "ops@masociete.com",
            &plain_email("intruder@evil.example", &body),
        )
        .await;
    assert_eq!(code_of(&result), Some(550));
    assert!(refusal(result).contains("5.7.1"));
    // A whole allowed domain.
    let ok = app
        .send(
            "bounce@mta.example",
            &plain_email("anyone@filiale.fr", &body),
        )
        .await
        .expect("domain rule");
    assert!(ok.is_positive());
    // No From: header: the envelope sender decides.
    let no_from = |id: &str| {
        format!(
            "To: sms@sms.example.com\r\nSubject: x\r\n\r\n{}",
            envoi("0601020304", "x", id).replace('\n', "\r\n")
        )
    };
    let ok = app
        .send("ops@masociete.com", no_from("s2").as_bytes())
        .await
        .expect("envelope");
    assert!(ok.is_positive());
    let refused = app.send("x@evil.example", no_from("s3").as_bytes()).await;
    assert_eq!(code_of(&refused), Some(550));
    app.wait_outbox(2).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.outbox().len(), 2);
}

#[tokio::test]
async fn message_over_the_size_limit_is_refused() {
    let app = TestApp::spawn_with(|c| c.smtp.max_message_size = 10_000).await;
    let mut body = envoi("0601020304", "x", "big1");
    body.push_str(&"padding line\n".repeat(2_000));
    let result = app
        .send(
            "ops@masociete.com",
            &plain_email("ops@masociete.com", &body),
        )
        .await;
    assert_eq!(code_of(&result), Some(552));
    assert!(app.outbox().is_empty());
}

#[tokio::test]
async fn locked_store_answers_451_and_nothing_is_lost() {
    let app = TestApp::spawn_with(|c| c.store.busy_timeout_ms = 200).await;
    // Another process holds the database: the commit cannot happen.
    let db = app.dir.path().join("mail2sms.db");
    let mut other = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();
    let mail = plain_email("ops@masociete.com", &envoi("0601020304", "locked", "l1"));
    let result = app.send("ops@masociete.com", &mail).await;
    assert_eq!(code_of(&result), Some(451));
    assert!(refusal(result).contains("4.3.0"));
    // The sender's MTA retries once the store is back: accepted then.
    sqlx::query("COMMIT").execute(&mut other).await.unwrap();
    let ok = app
        .send("ops@masociete.com", &mail)
        .await
        .expect("accepted after retry");
    assert!(ok.is_positive());
    let lines = app.wait_outbox(1).await;
    assert_eq!(lines[0]["text"], "locked");
}

#[tokio::test]
async fn old_client_forms_are_accepted() {
    // Raw SMTP, as old clients write it: lowercase verbs, a space after the
    // colon, SIZE and BODY parameters, pipelined commands.
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let app = TestApp::spawn().await;
    let stream = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut reply = async || loop {
        let line = lines.next_line().await.unwrap().unwrap();
        if line.as_bytes().get(3) != Some(&b'-') {
            return line;
        }
    };
    assert!(reply().await.starts_with("220"));
    write.write_all(b"ehlo old.client\r\n").await.unwrap();
    assert!(reply().await.starts_with("250"));
    let body = envoi("0601020304", "old client", "old1").replace('\n', "\r\n");
    let message = format!("From: ops@masociete.com\r\nSubject: x\r\n\r\n{body}.\r\n");
    write
        .write_all(
            format!(
                "mail from: <ops@masociete.com> SIZE={} BODY=8BITMIME\r\nrcpt to: <sms@SMS.example.com> NOTIFY=NEVER\r\ndata\r\n",
                message.len()
            )
            .as_bytes(),
        )
        .await
        .unwrap();
    assert!(reply().await.starts_with("250"));
    assert!(reply().await.starts_with("250"));
    assert!(reply().await.starts_with("354"));
    write.write_all(message.as_bytes()).await.unwrap();
    let end = reply().await;
    assert!(end.starts_with("250 2.0.0"), "{end}");
    // A null sender is accepted too (the From: header decides).
    write.write_all(b"MAIL FROM:<>\r\n").await.unwrap();
    assert!(reply().await.starts_with("250"));
    write.write_all(b"QUIT\r\n").await.unwrap();
    assert!(reply().await.starts_with("221"));
    assert_eq!(app.wait_outbox(1).await[0]["text"], "old client");
}

#[tokio::test]
async fn idle_connections_do_not_block_others() {
    let app = TestApp::spawn_with(|c| c.smtp.max_connections_per_ip = 300).await;
    let mut idle = Vec::new();
    // From another loopback address than the sender's, as idle clients of
    // another host would be.
    for _ in 0..200 {
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
        idle.push(socket.connect(app.addr).await.unwrap());
    }
    let mail = plain_email("ops@masociete.com", &envoi("0601020304", "busy", "idle-1"));
    let ok = tokio::time::timeout(
        Duration::from_secs(10),
        app.send("ops@masociete.com", &mail),
    )
    .await
    .expect("served while 200 clients sit idle")
    .expect("accepted");
    assert!(ok.is_positive());
    drop(idle);
}

#[tokio::test]
async fn over_the_connection_cap_a_client_gets_421_at_once() {
    use tokio::io::AsyncReadExt;
    let app = TestApp::spawn_with(|c| c.smtp.max_connections = 3).await;
    let mut held = Vec::new();
    for _ in 0..3 {
        let mut s = tokio::net::TcpStream::connect(app.addr).await.unwrap();
        let mut greeting = [0u8; 3];
        s.read_exact(&mut greeting).await.unwrap();
        assert_eq!(&greeting, b"220");
        held.push(s);
    }
    let mail = plain_email("ops@masociete.com", &envoi("0601020304", "x", "cap-1"));
    let result = tokio::time::timeout(Duration::from_secs(5), app.send("ops@masociete.com", &mail))
        .await
        .expect("answered at once, not queued");
    assert_eq!(code_of(&result), Some(421));
    drop(held);
}

#[tokio::test]
async fn html_only_mail_with_raw_markup_is_refused_naming_html() {
    let app = TestApp::spawn().await;
    let raw = format!(
        "From: ops@masociete.com\r\nTo: sms@sms.example.com\r\nSubject: x\r\nMIME-Version: 1.0\r\nContent-Type: text/html; charset=UTF-8\r\n\r\n<html><body>{}</body></html>\r\n",
        envoi("0601020304", "x", "html-raw").replace('\n', "")
    );
    let result = app.send("ops@masociete.com", raw.as_bytes()).await;
    assert_eq!(code_of(&result), Some(550));
    let text = refusal(result);
    assert!(
        text.contains("5.6.0") && text.contains("HTML only"),
        "{text}"
    );
}
