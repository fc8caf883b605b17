//! The spec's own examples (004, §III and §5), sent over SMTP with a real
//! client, and the replies checked byte for byte.

use crate::common::*;

const SPEC_SMS: &str = "L'été est fini! Super promo -10% à partir de 50€ d'achat !!!";

#[tokio::test]
async fn single_recipient_example() {
    let app = TestApp::spawn().await;
    let body = format!(
        "<envoi>\n<keyid>a296464ce012b8ab710a</keyid>\n<num>0601020304</num>\n<sms>{SPEC_SMS}</sms>\n<emetteur>MaSociete</emetteur>\n<emailNot>not@masociete.com</emailNot>\n<emailAck>ack@masociete.com</emailAck>\n<emailId>1548</emailId>\n</envoi>\n"
    );
    let response = app
        .send(
            "ops@masociete.com",
            &plain_email("ops@masociete.com", &body),
        )
        .await
        .expect("accepted");
    assert_eq!(response.code().to_string(), "250");

    let lines = app.wait_outbox(1).await;
    assert_eq!(lines.len(), 1);
    let sms = &lines[0];
    assert_eq!(sms["to"], "+33601020304");
    assert_eq!(sms["text"], SPEC_SMS);
    assert_eq!(sms["sender_id"], "MaSociete");
    assert_eq!(sms["account"], "masociete");
    assert_eq!(sms["email_id"], "1548");
    assert_eq!(sms["tracker"], serde_json::Value::Null);

    let ack = app.wait_reply_to("ack@masociete.com").await;
    assert_eq!(
        ack.body,
        latin1_crlf(
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<etatAck>\n<emailId>1548</emailId>\n<code>0</code>\n<message>Votre email a bien ete traite</message>\n</etatAck>\n"
        )
    );
    assert!(
        ack.content_type
            .to_ascii_lowercase()
            .contains("charset=iso-8859-1")
    );

    let not = app.wait_reply_to("not@masociete.com").await;
    assert_eq!(
        not.body,
        latin1_crlf(
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<etatNot>\n<emailId>1548</emailId>\n</etatNot>\n<etat>\n<code>0</code>\n<tel>0601020304</tel>\n<message>Votre message a bien été envoyé</message>\n</etat>\n"
        )
    );
    // é is one byte, 0xE9, as the XML declaration promises.
    assert!(not.body.contains(&0xE9));
    assert!(not.raw.contains("=E9"));
}

#[tokio::test]
async fn two_recipients_same_message_example() {
    let app = TestApp::spawn().await;
    let body = format!(
        "<envoi>\n<keyid>a296464ce012b8ab710a</keyid>\n<num1>0601020304</num1>\n<num2>0601020305</num2>\n<sms>{SPEC_SMS}</sms>\n<emetteur>MaSociete</emetteur>\n<emailNot>not@masociete.com</emailNot>\n<emailAck>ack@masociete.com</emailAck>\n<emailId>1548</emailId>\n</envoi>\n"
    );
    app.send(
        "ops@masociete.com",
        &plain_email("ops@masociete.com", &body),
    )
    .await
    .expect("accepted");
    let lines = app.wait_outbox(2).await;
    let mut to: Vec<_> = lines.iter().map(|l| l["to"].as_str().unwrap()).collect();
    to.sort();
    assert_eq!(to, ["+33601020304", "+33601020305"]);
    assert!(lines.iter().all(|l| l["text"] == SPEC_SMS));

    let not = app.wait_reply_to("not@masociete.com").await;
    assert_eq!(
        not.body,
        latin1_crlf(
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<etatNot>\n<emailId>1548</emailId>\n</etatNot>\n<etat1>\n<code1>0</code1>\n<tel1>0601020304</tel1>\n<message1>Votre message a bien été envoyé</message1>\n</etat1>\n<etat2>\n<code2>0</code2>\n<tel2>0601020305</tel2>\n<message2>Votre message a bien été envoyé</message2>\n</etat2>\n"
        )
    );
}

#[tokio::test]
async fn one_message_each_example() {
    let app = TestApp::spawn().await;
    let sms2 = "L'été est fini! Super promo -20% à partir de 100€ d'achat !!!";
    let body = format!(
        "<envoi>\n<keyid>a296464ce012b8ab710a</keyid>\n<num1>0601020304</num1>\n<num2>0601020305</num2>\n<sms1>{SPEC_SMS}</sms1>\n<sms2>{sms2}</sms2>\n<emetteur>MaSociete</emetteur>\n<emailNot>not@masociete.com</emailNot>\n<emailAck>ack@masociete.com</emailAck>\n<emailId>1548</emailId>\n</envoi>\n"
    );
    app.send(
        "ops@masociete.com",
        &plain_email("ops@masociete.com", &body),
    )
    .await
    .expect("accepted");
    let lines = app.wait_outbox(2).await;
    assert_eq!(text_for(&lines, "+33601020304"), SPEC_SMS);
    assert_eq!(text_for(&lines, "+33601020305"), sms2);
}

#[tokio::test]
async fn attachments_example() {
    let app = TestApp::spawn().await;
    let envoi = "<envoi>\r\n<keyid>a296464ce012b8ab710a</keyid>\r\n<emetteur>MaSociete</emetteur>\r\n<emailNot>not@masociete.com</emailNot>\r\n<emailAck>ack@masociete.com</emailAck>\r\n<emailId>1548</emailId>\r\n</envoi>\r\n";
    let mobiles =
        "0601020304;;Michel;;Martin;;10/10/2015\r\n0601020305;;Sarah;;Dupont;;02/08/2015\r\n";
    let message = "Bonjour [1] [2], votre nouvelle carte sera disponible le [3]\r\n";
    let raw = multipart_email(
        envoi,
        &[
            ("mobiles.csv", "text/csv", None, mobiles),
            ("message.csv", "text/csv", None, message),
        ],
    );
    app.send("ops@masociete.com", &raw).await.expect("accepted");
    let lines = app.wait_outbox(2).await;
    assert_eq!(
        text_for(&lines, "+33601020304"),
        "Bonjour Michel Martin, votre nouvelle carte sera disponible le 10/10/2015"
    );
    assert_eq!(
        text_for(&lines, "+33601020305"),
        "Bonjour Sarah Dupont, votre nouvelle carte sera disponible le 02/08/2015"
    );
}

#[tokio::test]
async fn example_files_are_accepted_by_the_demo_defaults() {
    // examples/*.eml must go through the embedded defaults as they are.
    let dir = tempfile::tempdir().unwrap();
    let mut config = mail2sms::config::Config::embedded().unwrap();
    config.smtp.listen = "127.0.0.1:0".into();
    config.store.url = mail2sms::store::StoreUrl::Sqlite(dir.path().join("db.sqlite"));
    let Some(mail2sms::providers::ProviderConfig::Outbox(outbox)) =
        config.providers.get_mut("outbox")
    else {
        panic!("the embedded defaults send to the outbox");
    };
    outbox.path = dir.path().join("outbox.jsonl");
    config.replies.transport = format!("file://{}/replies", dir.path().display());
    let app = TestApp::start_in(dir, config).await;
    let mut expected = 0;
    let mut names: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/examples"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "eml"))
        .collect();
    names.sort();
    assert!(names.len() >= 4, "examples/*.eml: {names:?}");
    for path in &names {
        let raw = std::fs::read(path).unwrap();
        let response = app
            .send_to("ops@masociete.com", "sms@localhost", &raw)
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(response.is_positive(), "{}", path.display());
        let text = String::from_utf8_lossy(&raw);
        expected += text
            .matches("<num")
            .count()
            .max(2 * usize::from(text.contains("mobiles.csv")));
    }
    let lines = app.wait_outbox(expected).await;
    assert_eq!(lines.len(), expected);
}
