//! What one request asks for, end to end: de-duplication, request-level
//! refusals, numbers, and the etatAck / etatNot codes that report them.

use crate::common::*;
use std::time::Duration;

async fn send_ok(app: &TestApp, body: &str) {
    let response = app
        .send("ops@masociete.com", &plain_email("ops@masociete.com", body))
        .await
        .expect("accepted");
    assert!(response.is_positive());
}

#[tokio::test]
async fn same_email_id_on_many_connections_is_processed_once() {
    let app = TestApp::spawn().await;
    let mail = plain_email("ops@masociete.com", &envoi("0601020304", "once", "dup-1"));
    for result in app.send_concurrently("ops@masociete.com", &mail, 10).await {
        assert!(result.expect("each copy gets 250").is_positive());
    }
    let acks = app.wait_replies(10 + 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.outbox().len(), 1, "exactly one SMS");
    let acks: Vec<_> = acks
        .iter()
        .filter(|r| r.to == "ack@masociete.com")
        .collect();
    assert_eq!(acks.len(), 10);
    let processed = acks
        .iter()
        .filter(|a| a.text().contains("<code>0</code>"))
        .count();
    let duplicates: Vec<_> = acks
        .iter()
        .filter(|a| a.text().contains("<code>1</code>"))
        .collect();
    assert_eq!((processed, duplicates.len()), (1, 9));
    assert!(duplicates[0].text().contains("<emailId>dup-1</emailId>"));
    assert!(
        duplicates[0]
            .text()
            .contains("<message>emailId deja traite</message>")
    );
}

#[tokio::test]
async fn missing_email_id_gets_ack_code_2_and_no_sms() {
    let app = TestApp::spawn().await;
    let body = envoi("0601020304", "x", "").replace("<emailId></emailId>\n", "");
    send_ok(&app, &body).await;
    let ack = app.wait_reply_to("ack@masociete.com").await;
    assert_eq!(
        ack.text(),
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<etatAck>\n<emailId>?</emailId>\n<code>2</code>\n<message>emailId non renseigne</message>\n</etatAck>\n"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.outbox().is_empty());
    assert_eq!(app.replies().len(), 1, "no etatNot");
}

#[tokio::test]
async fn empty_email_id_is_no_email_id_every_time() {
    let app = TestApp::spawn().await;
    for _ in 0..2 {
        let mail = plain_email("ops@masociete.com", &envoi("0601020304", "x", " "));
        let response = app
            .send("ops@masociete.com", &mail)
            .await
            .expect("accepted");
        assert!(
            response.message().any(|l| l.contains("no emailId")),
            "{response:?}"
        );
    }
    let acks = app.wait_replies(2).await;
    for ack in &acks {
        assert!(
            ack.text().contains("<emailId>?</emailId>\n<code>2</code>"),
            "{}",
            ack.text()
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.outbox().is_empty());
}

fn etat_not(email_id: &str, code: u16, tel: &str, message: &str) -> String {
    format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<etatNot>\n<emailId>{email_id}</emailId>\n</etatNot>\n<etat>\n<code>{code}</code>\n<tel>{tel}</tel>\n<message>{message}</message>\n</etat>\n"
    )
}

#[tokio::test]
async fn more_than_500_numbers_is_code_23_for_the_whole_email() {
    let app = TestApp::spawn().await;
    let nums: String = (1..=501)
        .map(|i| format!("<num{i}>06{:08}</num{i}>\n", i))
        .collect();
    let body = format!(
        "<envoi>\n<keyid>{KEYID}</keyid>\n{nums}<sms>x</sms>\n<emailNot>not@masociete.com</emailNot>\n<emailAck>ack@masociete.com</emailAck>\n<emailId>big-501</emailId>\n</envoi>\n"
    );
    send_ok(&app, &body).await;
    let ack = app.wait_reply_to("ack@masociete.com").await;
    assert!(ack.text().contains("<code>0</code>"));
    let not = app.wait_reply_to("not@masociete.com").await;
    assert_eq!(
        not.text(),
        etat_not(
            "big-501",
            23,
            "",
            "Le nombre maximum de téléphones par requête est de 500"
        )
    );
    assert!(app.outbox().is_empty());
}

#[tokio::test]
async fn smslong_not_an_integer_is_code_34() {
    let app = TestApp::spawn().await;
    let body =
        envoi("0601020304", "x", "sl-1").replace("</envoi>", "<smslong>deux</smslong>\n</envoi>");
    send_ok(&app, &body).await;
    let not = app.wait_reply_to("not@masociete.com").await;
    assert_eq!(
        not.text(),
        etat_not("sl-1", 34, "", "La valeur de smslong doit être un entier !")
    );
    assert!(app.outbox().is_empty());
}

#[tokio::test]
async fn numbers_are_normalised_deduplicated_and_bad_ones_reported() {
    let app = TestApp::spawn().await;
    let body = format!(
        "<envoi>\n<keyid>{KEYID}</keyid>\n<num1>06 01 02 03 04</num1>\n<num2>+33601020304</num2>\n<num3>0033601020305</num3>\n<num4>12345</num4>\n<num5></num5>\n<num6>+41 79 123 45 67</num6>\n<num7>0696123456</num7>\n<sms>hello</sms>\n<emailNot>not@masociete.com</emailNot>\n<emailId>nums-1</emailId>\n</envoi>\n"
    );
    send_ok(&app, &body).await;
    let not = app.wait_reply_to("not@masociete.com").await;
    let text = not.text();
    let lines = app.outbox();
    let mut to: Vec<_> = lines
        .iter()
        .map(|l| l["to"].as_str().unwrap().to_string())
        .collect();
    to.sort();
    assert_eq!(
        to,
        [
            "+33601020304",
            "+33601020305",
            "+41791234567",
            "+596696123456"
        ]
    );
    // One etat per number given, in order, each with the tel as written;
    // the repeated number got no SMS of its own but its first one's code.
    assert_eq!(lines.len(), 4, "one SMS per distinct number");
    assert!(
        text.contains("<code1>0</code1>\n<tel1>06 01 02 03 04</tel1>"),
        "{text}"
    );
    assert!(
        text.contains("<code2>0</code2>\n<tel2>+33601020304</tel2>"),
        "{text}"
    );
    assert!(text.contains("<code4>7</code4>\n<tel4>12345</tel4>\n<message4>Un numéro de téléphone est sur 10 chiffres</message4>"), "{text}");
    assert!(text.contains("<code5>6</code5>\n<tel5></tel5>"), "{text}");
    assert!(text.contains("<tel7>0696123456</tel7>"), "{text}");
    assert_eq!(text.matches("<code").count(), 7, "{text}");
}

#[tokio::test]
async fn a_request_whose_numbers_are_all_bad_still_gets_its_etat_not() {
    let app = TestApp::spawn().await;
    send_ok(&app, &envoi("not-a-number", "x", "bad-1")).await;
    let not = app.wait_reply_to("not@masociete.com").await;
    assert_eq!(
        not.text(),
        etat_not(
            "bad-1",
            7,
            "not-a-number",
            "Un numéro de téléphone est sur 10 chiffres"
        )
    );
}

/// The text of a refusal (the server's reply, as the client reports it).
fn refusal(
    result: Result<lettre::transport::smtp::response::Response, lettre::transport::smtp::Error>,
) -> String {
    result.expect_err("the daemon must refuse").to_string()
}

/// Issue 8: one email with a 1 MB emailId and 500 numbers took 10 s, 1.6 GB
/// and 1 GB of store; now it is refused during the SMTP dialogue with
/// `550 5.6.0` naming the field and its limit, and nothing is stored or
/// sent. The same for an SMS text over 10 000 characters.
#[tokio::test]
async fn over_long_values_are_refused_with_the_field_and_its_limit() {
    // Enough segments for a 10 000-character text (67 GSM-7 segments).
    let app = TestApp::spawn_with(|c| {
        c.accounts.get_mut("masociete").unwrap().max_segments = 70;
    })
    .await;
    let nums: Vec<String> = (0..500).map(|i| format!("0601{i:06}")).collect();
    let nums: Vec<&str> = nums.iter().map(String::as_str).collect();
    let body = envoi_multi(&nums, "x", &"1".repeat(1_048_576));
    let result = app
        .send(
            "ops@masociete.com",
            &plain_email("ops@masociete.com", &body),
        )
        .await;
    let text = refusal(result);
    assert!(text.contains("5.6.0"), "{text}");
    assert!(
        text.contains("emailId is 1048576 characters long; the limit is 64"),
        "{text}"
    );
    let body = envoi("0601020304", &"x".repeat(10_001), "long-sms");
    let result = app
        .send(
            "ops@masociete.com",
            &plain_email("ops@masociete.com", &body),
        )
        .await;
    let text = refusal(result);
    assert!(
        text.contains("5.6.0") && text.contains("sms is 10001 characters long; the limit is 10000"),
        "{text}"
    );
    // At the limits, the same email is accepted.
    send_ok(
        &app,
        &envoi("0601020304", &"x".repeat(10_000), &"9".repeat(64)),
    )
    .await;
    let lines = app.wait_outbox(1).await;
    assert_eq!(lines.len(), 1, "only the email within the limits was sent");
    assert_eq!(lines[0]["text"].as_str().map(str::len), Some(10_000));
}
