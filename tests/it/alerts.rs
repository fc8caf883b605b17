//! Alert mail over SMTP (issue 10): an email without `<envoi>` to
//! `NUMBER@sms.example.com` or `GROUP@sms.example.com` becomes an SMS for
//! the alert account that allows its sender and client; what is refused
//! at RCPT and at DATA, `networks` (alert mail and code 14 for `<envoi>`),
//! and `smtp.unauthorized = "discard"`.
//!
//! Tests marked `needs the alert store` need the store to accept a request
//! without emailId when it is an alert (another branch): they check the
//! SMS reaching the outbox.

use crate::common::*;
use lettre::AsyncTransport;
use lettre::address::Envelope;
use lettre::transport::smtp::Error;
use lettre::transport::smtp::response::Response;
use mail2sms::config::Config;
use mail2sms::smtp::Unauthorized;
use sqlx::Connection;
use std::path::Path;

/// The test daemon with an alert account `ops` (senders `@example.com`)
/// with these keys, and `tweak` applied.
async fn spawn(ops_keys: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "{}\n[accounts.ops]\nkeyid = \"ops-key-0001\"\nsenders = [\"@example.com\"]\nproviders = [\"outbox\"]\nalerts = true\n{ops_keys}\n",
        test_toml(dir.path())
    );
    let mut config = Config::parse(&toml, Path::new("test")).expect("alert config");
    tweak(&mut config);
    TestApp::start_in(dir, config).await
}

/// Sends `raw` from `from` to every address of `to` over one transaction.
async fn send(app: &TestApp, from: &str, to: &[&str], raw: &[u8]) -> Result<Response, Error> {
    let envelope = Envelope::new(
        Some(from.parse().expect("from")),
        to.iter().map(|t| t.parse().expect("to")).collect(),
    )
    .expect("envelope");
    app.client().send_raw(&envelope, raw).await
}

/// An alert email: this subject, a plain UTF-8 body.
fn alert(from: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: {from}\r\nSubject: {subject}\r\nMessage-ID: <{}@example.com>\r\nMIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n{}",
        fastrand::u64(..),
        body.replace('\n', "\r\n")
    )
    .into_bytes()
}

/// The SMTP refusal text (code, enhanced code and text).
fn refused(result: Result<Response, Error>) -> String {
    result.expect_err("the daemon must refuse").to_string()
}

/// How many requests the store holds.
async fn stored(app: &TestApp) -> i64 {
    let db = app.dir.path().join("mail2sms.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .expect("db");
    sqlx::query_scalar("SELECT COUNT(*) FROM requests")
        .fetch_one(&mut conn)
        .await
        .expect("count")
}

/// Waits a little so that anything queued would have been sent.
async fn settle() {
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
}

#[tokio::test]
async fn a_number_looking_recipient_that_is_no_number_is_refused_at_rcpt() {
    let app = spawn("", |_| {}).await;
    let raw = alert("nagios@example.com", "disk", "full");
    let text = refused(send(&app, "nagios@example.com", &["0123@sms.example.com"], &raw).await);
    assert!(text.contains("550") || text.contains("5.1.1"), "{text}");
    assert!(
        text.contains("5.1.1") && text.contains("not a valid phone number: too short"),
        "{text}"
    );
    assert_eq!(stored(&app).await, 0);
}

#[tokio::test]
async fn a_name_that_is_no_group_is_refused_naming_it() {
    let app = spawn("[accounts.ops.groups]\noncall = [\"0601020304\"]", |_| {}).await;
    let raw = alert("nagios@example.com", "disk", "full");
    let text = refused(send(&app, "nagios@example.com", &["oncal@sms.example.com"], &raw).await);
    assert!(
        text.contains("5.6.0") && text.contains("no group named `oncal`"),
        "{text}"
    );
    // The group exists for another account only: the same refusal at DATA.
    let app = spawn("", |c| {
        let mut other = c.accounts["ops"].clone();
        other.keyid = "other-key-0001".into();
        other.senders = vec!["someone@elsewhere.example".into()];
        other.groups = [("oncall".to_string(), vec!["0601020304".to_string()])].into();
        c.accounts.insert("other".into(), other);
    })
    .await;
    let text = refused(
        send(
            &app,
            "nagios@example.com",
            &["oncall@sms.example.com"],
            &raw,
        )
        .await,
    );
    assert!(
        text.contains("5.6.0") && text.contains("no group named `oncall`"),
        "{text}"
    );
    assert_eq!(stored(&app).await, 0);
}

#[tokio::test]
async fn a_client_outside_the_alert_networks_is_refused_and_nothing_is_stored() {
    let app = spawn(
        "networks = [\"192.0.2.0/24\"]\n[accounts.ops.groups]\noncall = [\"0601020304\"]",
        |_| {},
    )
    .await;
    let raw = alert("nagios@example.com", "disk", "full");
    // A number: refused at RCPT.
    let text = refused(
        send(
            &app,
            "nagios@example.com",
            &["0601020304@sms.example.com"],
            &raw,
        )
        .await,
    );
    assert!(
        text.contains("5.7.1") && text.contains("not authorized"),
        "{text}"
    );
    // A group passes RCPT (it could be an <envoi> address): refused at DATA.
    let text = refused(
        send(
            &app,
            "nagios@example.com",
            &["oncall@sms.example.com"],
            &raw,
        )
        .await,
    );
    assert!(
        text.contains("5.7.1") && text.contains("not authorized"),
        "{text}"
    );
    settle().await;
    assert_eq!(stored(&app).await, 0);
    assert!(app.outbox().is_empty());
}

/// Review of issue 10: `<envoi>` mail addressed to a number is read as
/// `<envoi>` whatever its recipients, so a client that no alert account
/// allows is not refused at RCPT for it.
#[tokio::test]
async fn envoi_mail_to_a_number_from_outside_the_alert_networks_is_read_as_envoi() {
    let app = spawn("networks = [\"192.0.2.0/24\"]", |_| {}).await;
    let body = plain_email("ops@masociete.com", &envoi("0601020304", "hello", "net-2"));
    let reply = send(
        &app,
        "ops@masociete.com",
        &["0601020304@sms.example.com"],
        &body,
    )
    .await
    .expect("accepted as <envoi> mail");
    assert!(reply.is_positive());
    app.wait_outbox(1).await;
}

#[tokio::test]
async fn envoi_mail_from_outside_the_account_networks_gets_code_14() {
    let app = spawn("", |c| {
        let networks = toml::from_str::<toml::Table>("n = [\"192.0.2.0/24\"]").expect("toml")["n"]
            .clone()
            .try_into()
            .expect("networks");
        c.accounts.get_mut("masociete").expect("account").networks = Some(networks);
    })
    .await;
    let body = plain_email("ops@masociete.com", &envoi("0601020304", "hello", "net-1"));
    let reply = send(&app, "ops@masociete.com", &["sms@sms.example.com"], &body)
        .await
        .expect("accepted, refused in etatNot");
    assert!(reply.is_positive());
    let ack = app.wait_reply_to("ack@masociete.com").await;
    assert!(
        ack.text().contains("<emailId>net-1</emailId>"),
        "{}",
        ack.text()
    );
    let not = app.wait_reply_to("not@masociete.com").await;
    assert!(not.text().contains("<code>14</code>"), "{}", not.text());
    settle().await;
    assert!(app.outbox().is_empty());
}

#[tokio::test]
async fn a_sender_no_alert_account_allows_is_refused() {
    let app = spawn("", |_| {}).await;
    let raw = alert("intruder@elsewhere.example", "disk", "full");
    let text = refused(
        send(
            &app,
            "intruder@elsewhere.example",
            &["0601020304@sms.example.com"],
            &raw,
        )
        .await,
    );
    assert!(
        text.contains("5.7.1") && text.contains("not authorized"),
        "{text}"
    );
    // The From: header is what is checked, not the envelope sender.
    let text = refused(
        send(
            &app,
            "nagios@example.com",
            &["0601020304@sms.example.com"],
            &raw,
        )
        .await,
    );
    assert!(text.contains("5.7.1"), "{text}");
    assert_eq!(stored(&app).await, 0);
}

#[tokio::test]
async fn discard_answers_250_and_sends_nothing() {
    let app = spawn("networks = [\"192.0.2.0/24\"]", |c| {
        c.smtp.unauthorized = Unauthorized::Discard;
    })
    .await;
    let stranger = alert("intruder@elsewhere.example", "disk", "full");
    let reply = send(
        &app,
        "intruder@elsewhere.example",
        &["0601020304@sms.example.com"],
        &stranger,
    )
    .await
    .expect("discarded with 250");
    assert_eq!(reply.code().to_string(), "250");
    // A client outside the networks: no 550 at RCPT either.
    let outside = alert("nagios@example.com", "disk", "full");
    let reply = send(
        &app,
        "nagios@example.com",
        &["0601020304@sms.example.com"],
        &outside,
    )
    .await
    .expect("discarded with 250");
    assert_eq!(reply.code().to_string(), "250");
    // An unknown keyid too.
    let body = plain_email("ops@masociete.com", &envoi("0601020304", "x", "d-1"))
        .into_iter()
        .collect::<Vec<u8>>();
    let body = String::from_utf8(body)
        .expect("utf8")
        .replace(KEYID, "not-a-key");
    send(
        &app,
        "ops@masociete.com",
        &["sms@sms.example.com"],
        body.as_bytes(),
    )
    .await
    .expect("discarded with 250");
    settle().await;
    assert_eq!(stored(&app).await, 0);
    assert!(app.outbox().is_empty());
    assert!(app.replies().is_empty());
    // An invalid number is still refused at once.
    let text = refused(
        send(
            &app,
            "nagios@example.com",
            &["0123@sms.example.com"],
            &outside,
        )
        .await,
    );
    assert!(text.contains("5.1.1"), "{text}");
}

#[tokio::test]
async fn envoi_mail_to_a_number_address_is_read_as_envoi() {
    let app = spawn("", |_| {}).await;
    let body = plain_email(
        "ops@masociete.com",
        &envoi("0601020304", "from envoi", "env-1"),
    );
    send(
        &app,
        "ops@masociete.com",
        &["0601020399@sms.example.com"],
        &body,
    )
    .await
    .expect("accepted");
    let lines = app.wait_outbox(1).await;
    assert_eq!(text_for(&lines, "+33601020304"), "from envoi");
    settle().await;
    assert_eq!(app.outbox().len(), 1, "no SMS to the recipient address");
}

// ---- Through to the outbox: needs the alert store (branch storm). ----

#[tokio::test]
async fn numbers_in_every_form_reach_the_outbox_once_each() {
    let app = spawn("", |_| {}).await;
    let raw = alert(
        "nagios@example.com",
        "PROBLEM: disk",
        "host1 /var 95%\n\n-- \nNagios",
    );
    send(
        &app,
        "nagios@example.com",
        &[
            "+33601020304@sms.example.com",
            "0033601020305@sms.example.com",
            "33601020306@sms.example.com",
            "06.01.02.03.07@sms.example.com",
            "06-01-02-03-04@sms.example.com",
        ],
        &raw,
    )
    .await
    .expect("accepted");
    let lines = app.wait_outbox(4).await;
    for n in [
        "+33601020304",
        "+33601020305",
        "+33601020306",
        "+33601020307",
    ] {
        assert_eq!(text_for(&lines, n), "PROBLEM: disk\nhost1 /var 95%");
    }
    settle().await;
    assert_eq!(app.outbox().len(), 4);
}

#[tokio::test]
async fn a_group_reaches_each_of_its_numbers() {
    let app = spawn(
        "[accounts.ops.groups]\noncall = [\"+33601020304\", \"0601020305\"]",
        |_| {},
    )
    .await;
    let raw = alert("nagios@example.com", "UPS on battery", "5 min left");
    send(
        &app,
        "nagios@example.com",
        &["oncall@sms.example.com", "0601020305@sms.example.com"],
        &raw,
    )
    .await
    .expect("accepted");
    let lines = app.wait_outbox(2).await;
    assert_eq!(
        text_for(&lines, "+33601020305"),
        "UPS on battery\n5 min left"
    );
    settle().await;
    assert_eq!(app.outbox().len(), 2);
}

#[tokio::test]
async fn html_only_alerts_are_sent_as_text() {
    let app = spawn("", |_| {}).await;
    let raw = b"From: ups@example.com\r\nSubject: UPS\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body><p>On <b>battery</b></p></body></html>\r\n";
    send(
        &app,
        "ups@example.com",
        &["0601020304@sms.example.com"],
        raw,
    )
    .await
    .expect("accepted");
    let lines = app.wait_outbox(1).await;
    assert_eq!(text_for(&lines, "+33601020304"), "UPS\nOn battery");
}

#[tokio::test]
async fn a_long_alert_is_cut_to_max_segments() {
    let app = spawn("max_segments = 2", |_| {}).await;
    let raw = alert(
        "nagios@example.com",
        "big",
        &"disk full on host1 ".repeat(50),
    );
    send(
        &app,
        "nagios@example.com",
        &["0601020304@sms.example.com"],
        &raw,
    )
    .await
    .expect("accepted, never refused for length");
    let lines = app.wait_outbox(1).await;
    let text = text_for(&lines, "+33601020304");
    assert!(text.ends_with("...") && text.len() <= 2 * 153, "{text}");
}

#[tokio::test]
async fn rfc2047_subjects_are_decoded() {
    let app = spawn("", |_| {}).await;
    let raw = b"From: a@example.com\r\nSubject: =?ISO-8859-1?Q?Temp=E9rature_=E9lev=E9e?=\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nsalle 2\r\n";
    send(&app, "a@example.com", &["0601020304@sms.example.com"], raw)
        .await
        .expect("accepted");
    let lines = app.wait_outbox(1).await;
    assert_eq!(
        text_for(&lines, "+33601020304"),
        "Température élevée\nsalle 2"
    );
}

#[tokio::test]
async fn the_template_shapes_the_text() {
    let app = spawn(
        "alert_template = \"[{{ date }}] {{ subject }} ({{ to }})\"",
        |_| {},
    )
    .await;
    let raw = b"From: a@example.com\r\nDate: Wed, 01 Jul 2026 12:05:00 +0000\r\nSubject: disk\r\n\r\nfull\r\n";
    send(&app, "a@example.com", &["0601020304@sms.example.com"], raw)
        .await
        .expect("accepted");
    let lines = app.wait_outbox(1).await;
    assert_eq!(
        text_for(&lines, "+33601020304"),
        "[2026-07-01 14:05] disk (0601020304@sms.example.com)"
    );
}

/// `mail2sms deliver -f FROM TO` of `raw` with the test config plus an
/// alert account `ops` (networks 192.0.2.0/24) and `smtp_keys` in
/// `[smtp]`: its exit code and output.
fn deliver(smtp_keys: &str, from: &str, to: &str, raw: &[u8]) -> (Option<i32>, String) {
    use std::io::Write;
    let dir = tempfile::tempdir().expect("tempdir");
    let toml = format!(
        "{}\n[accounts.ops]\nkeyid = \"ops-key-0001\"\nsenders = [\"@example.com\"]\nproviders = [\"outbox\"]\nalerts = true\nnetworks = [\"192.0.2.0/24\"]\n",
        test_toml(dir.path()).replace("[smtp]\n", &format!("[smtp]\n{smtp_keys}\n"))
    );
    let config = dir.path().join("mail2sms.toml");
    std::fs::write(&config, toml).expect("config");
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_mail2sms"))
        .args([
            "deliver",
            "--config",
            config.to_str().expect("path"),
            "-f",
            from,
            to,
        ])
        .current_dir(dir.path())
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn mail2sms");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(raw)
        .expect("write");
    let out = child.wait_with_output().expect("wait");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

#[test]
fn deliver_hands_alerts_over_locally_past_networks_and_discards_strangers() {
    let to = "0601020304@sms.example.com";
    // No client address: a local hand-over is allowed by `networks`.
    let ok = alert("nagios@example.com", "disk", "full");
    let (code, out) = deliver("", "nagios@example.com", to, &ok);
    assert_eq!(code, Some(0), "{out}");
    let stranger = alert("intruder@elsewhere.example", "disk", "full");
    let (code, out) = deliver("", "intruder@elsewhere.example", to, &stranger);
    assert_eq!(code, Some(77), "{out}");
    // The RCPT check of SMTP, for deliver's recipients too (review).
    let (code, out) = deliver("", "nagios@example.com", "0123@sms.example.com", &ok);
    assert_eq!(code, Some(65), "{out}");
    assert!(out.contains("5.1.1"), "{out}");
    let (code, out) = deliver(
        "unauthorized = \"discard\"",
        "intruder@elsewhere.example",
        to,
        &stranger,
    );
    assert_eq!(code, Some(0), "{out}");
}

#[tokio::test]
async fn sighup_re_reads_groups_files_and_a_bad_one_keeps_the_old_groups() {
    let groups = tempfile::NamedTempFile::new().expect("groups file");
    std::fs::write(groups.path(), "dba = [\"0601020307\"]\n").expect("write");
    let keys = format!("groups_file = {:?}", groups.path().display().to_string());
    let app = spawn(&keys, |_| {}).await;
    let raw = alert("nagios@example.com", "db down", "db1");
    let to_web = || send(&app, "nagios@example.com", &["web@sms.example.com"], &raw);
    let text = refused(to_web().await);
    assert!(text.contains("no group named `web`"), "{text}");
    send(&app, "nagios@example.com", &["dba@sms.example.com"], &raw)
        .await
        .expect("dba is a group");

    std::fs::write(groups.path(), "web = [\"0601020308\"]\n").expect("write");
    // SAFETY: kill(2) on our own process; the daemon listens to SIGHUP
    // from the moment it started (tokio's handler), so it is not fatal.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
    let mut reread = false;
    for _ in 0..100 {
        if to_web().await.is_ok() {
            reread = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(reread, "web@ never became a group after SIGHUP");

    std::fs::write(groups.path(), "web = [\"12\"]\n").expect("write");
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(libc::getpid(), libc::SIGHUP) }, 0);
    settle().await;
    to_web()
        .await
        .expect("the old groups stay when the file is bad");
}
