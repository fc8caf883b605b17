//! Issue 10, end to end over SMTP: alert mail's de-duplication across a
//! restart, storm hold-back with the count in the next SMS, and the failure
//! notice (DSN) — the store's side seen through a real client, the daemon
//! and its outbox.

use crate::common::{TestApp, wait_until};
use mail_parser::MimeHeaders;
use mail2sms::config::Config;
use std::time::Duration;

/// Where the alerts come from: a monitoring server the account allows.
const NAGIOS: &str = "nagios@monitoring.example";

/// The test account, taking alert mail from the monitoring server, with an
/// `oncall` group of a French and a British number.
fn alerts(c: &mut Config) {
    let a = c.accounts.get_mut("masociete").expect("test account");
    a.alerts = true;
    a.senders.push("@monitoring.example".into());
    a.groups.insert(
        "oncall".into(),
        vec!["+33601020304".into(), "+447911123456".into()],
    );
}

/// An alert email with this Message-ID, subject and body.
fn alert(message_id: &str, subject: &str, body: &str) -> Vec<u8> {
    format!(
        "From: Nagios <{NAGIOS}>\r\nTo: oncall@sms.example.com\r\nSubject: {subject}\r\n\
         Message-ID: <{message_id}>\r\nDate: Thu, 3 Dec 2026 21:00:00 +0100\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n{body}\r\n"
    )
    .into_bytes()
}

/// Every reply email written so far, as written (`file://` transport).
fn raw_replies(app: &TestApp) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir(app.dir.path().join("replies")) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .map(|p| std::fs::read_to_string(p).expect("a reply file"))
        .collect()
}

/// Sends `raw` from `from` to `to` and expects a `250`.
async fn accepted(app: &TestApp, from: &str, to: &str, raw: &[u8]) {
    let r = app.send_to(from, to, raw).await;
    assert!(r.as_ref().is_ok_and(|r| r.is_positive()), "{r:?}");
}

/// Lets the dispatcher run, then returns the outbox.
async fn settled(app: &TestApp) -> Vec<serde_json::Value> {
    tokio::time::sleep(Duration::from_millis(600)).await;
    app.outbox()
}

/// An MTA that retries the same message (same Message-ID) gets `250` and no
/// second SMS, also after the daemon restarted in between.
#[tokio::test]
async fn an_mta_retry_is_sent_once_even_across_a_restart() {
    let app = TestApp::spawn_with(alerts).await;
    let mail = alert("retry-1@monitoring.example", "db1 down", "CRITICAL");
    accepted(&app, NAGIOS, "0601020304@sms.example.com", &mail).await;
    app.wait_outbox(1).await;
    let app = app.restart().await;
    let again = app
        .send_to(NAGIOS, "0601020304@sms.example.com", &mail)
        .await
        .expect("250");
    let text = again.message().collect::<Vec<_>>().join(" ");
    assert!(text.contains("already accepted"), "{text}");
    let out = settled(&app).await;
    assert_eq!(out.len(), 1, "{out:?}");
    assert_eq!(out[0]["to"], "+33601020304");
    assert!(out[0]["text"].as_str().unwrap().starts_with("db1 down\n"));
}

/// An MTA that splits one message's recipients over several transactions
/// (Postfix does, past its recipient limit) sends them all with the same
/// Message-ID: each new recipient gets its SMS, and only a recipient
/// already reached is a retry (review of issue 10).
#[tokio::test]
async fn a_message_split_over_transactions_reaches_every_recipient_once() {
    let app = TestApp::spawn_with(alerts).await;
    let mail = alert("split-1@monitoring.example", "ups on battery", "x");
    accepted(&app, NAGIOS, "0601020304@sms.example.com", &mail).await;
    accepted(&app, NAGIOS, "0601020305@sms.example.com", &mail).await;
    let both = app.wait_outbox(2).await;
    let mut to: Vec<&str> = both.iter().filter_map(|l| l["to"].as_str()).collect();
    to.sort_unstable();
    assert_eq!(to, ["+33601020304", "+33601020305"]);
    // The group holds the first number and a new one: only the new one goes.
    accepted(&app, NAGIOS, "oncall@sms.example.com", &mail).await;
    let out = app.wait_outbox(3).await;
    assert_eq!(out[2]["to"], "+447911123456", "{out:?}");
    // Everything reached: the whole message is a retry.
    let again = app
        .send_to(NAGIOS, "0601020305@sms.example.com", &mail)
        .await
        .expect("250");
    let text = again.message().collect::<Vec<_>>().join(" ");
    assert!(text.contains("already accepted"), "{text}");
    assert_eq!(settled(&app).await.len(), 3);
}

/// The same text to the same number is sent once; what is held back is
/// counted in the next SMS that goes to that number — but an MTA retry
/// (same Message-ID) is not counted.
#[tokio::test]
async fn a_storm_is_held_back_and_counted_in_the_next_sms() {
    let app = TestApp::spawn_with(alerts).await;
    let to = "+33601020304@sms.example.com";
    for i in 0..4 {
        let mail = alert(&format!("storm-{i}@m.example"), "db1 down", "CRITICAL");
        accepted(&app, NAGIOS, to, &mail).await;
    }
    // An MTA retry of the last one: not a held-back alert.
    let retry = alert("storm-3@m.example", "db1 down", "CRITICAL");
    accepted(&app, NAGIOS, to, &retry).await;
    assert_eq!(settled(&app).await.len(), 1);
    let next = alert("storm-4@m.example", "db1 up", "OK");
    accepted(&app, NAGIOS, to, &next).await;
    let out = app.wait_outbox(2).await;
    let text = out[1]["text"].as_str().unwrap();
    assert!(text.starts_with("db1 up\n"), "{text}");
    assert!(
        text.ends_with("(+3 similar alerts held back)"),
        "three repeats, the retry not counted: {text}"
    );
}

/// `alert_max_per_hour` caps the alerts one number gets; others still go.
#[tokio::test]
async fn alert_max_per_hour_caps_each_number() {
    let app = TestApp::spawn_with(|c| {
        alerts(c);
        c.accounts.get_mut("masociete").unwrap().alert_max_per_hour = Some(2);
    })
    .await;
    for i in 0..4 {
        let mail = alert(&format!("cap-{i}@m.example"), &format!("alert {i}"), "x");
        accepted(&app, NAGIOS, "0601020304@sms.example.com", &mail).await;
    }
    let other = alert("cap-other@m.example", "alert other", "x");
    accepted(&app, NAGIOS, "0601020305@sms.example.com", &other).await;
    let out = settled(&app).await;
    let to_first = out.iter().filter(|l| l["to"] == "+33601020304").count();
    let to_other = out.iter().filter(|l| l["to"] == "+33601020305").count();
    assert_eq!((to_first, to_other), (2, 1), "{out:?}");
}

/// When one SMS of an alert fails (here a country the account does not
/// allow), the envelope sender gets an RFC 3464 report naming that number
/// and why; nothing for a null sender, nor when everything went.
#[tokio::test]
async fn a_failed_alert_sends_a_delivery_status_notification() {
    let app = TestApp::spawn_with(|c| {
        alerts(c);
        c.accounts.get_mut("masociete").unwrap().countries = Some(vec!["FR".into()]);
    })
    .await;
    // Everything sent: no report.
    let ok = alert("ok-1@m.example", "all fine", "x");
    accepted(&app, NAGIOS, "0601020304@sms.example.com", &ok).await;
    // From the null sender: no report either.
    let null = alert("null-1@m.example", "to the group, null sender", "x");
    accepted(&app, "", "oncall@sms.example.com", &null).await;
    // To the group: the British number is refused.
    let mail = alert("dsn-1@m.example", "disk full", "x");
    accepted(&app, NAGIOS, "oncall@sms.example.com", &mail).await;
    let dsn = wait_until(|| raw_replies(&app).into_iter().next())
        .await
        .expect("a failure notice");
    let parsed = mail_parser::MessageParser::default()
        .parse(dsn.as_bytes())
        .expect("a MIME message");
    let to = parsed
        .to()
        .and_then(|a| a.first())
        .and_then(|a| a.address());
    assert_eq!(to, Some(NAGIOS));
    let content_type = parsed.content_type().expect("Content-Type");
    assert_eq!(content_type.ctype(), "multipart");
    assert_eq!(content_type.subtype(), Some("report"));
    assert_eq!(
        content_type.attribute("report-type"),
        Some("delivery-status")
    );
    let human = parsed.body_text(0).expect("a first, human-readable part");
    assert!(human.contains("+447911123456"), "{human}");
    assert!(dsn.contains("Action: failed"), "{dsn}");
    assert!(
        !dsn.contains("+33601020304"),
        "the sent number is not reported"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(raw_replies(&app).len(), 1, "one report only");
    let sent = wait_until(|| {
        let out = app.outbox();
        (out.len() >= 3).then_some(out)
    })
    .await
    .expect("the French SMS of all three alerts went");
    assert!(sent.iter().all(|l| l["to"] == "+33601020304"));
}
