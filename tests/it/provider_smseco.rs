//! The SMSECO adapter against a mock speaking the document's wire format
//! (SMSECO API v2.0): the requests it sends are parsed here independently
//! of the adapter, checked field by field, and answered with the
//! document's `<REPONSE>` (or JSON) structures. Then end to end: an email
//! over SMTP, the SMS at the mock, and etatNot's code.

use crate::common::http_mock::{MockResponse, MockServer, Recorded};
use crate::common::*;
use mail2sms::codes::Code;
use mail2sms::providers::smseco::{Smseco, SmsecoConfig, SmsecoFormat};
use mail2sms::providers::{DeliveryState, FailureKind, OutgoingSms, Provider};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

const LOGIN: &str = "ops@masociete.ci";
const PASSWORD: &str = "pw&<s3cr3t>";

// ---------------------------------------------------------------------------
// The mock: an independent reading of the document's request format
// ---------------------------------------------------------------------------

/// A `sendsms` request as the mock reads it.
#[derive(Debug, Clone, Default)]
struct SendReq {
    /// `XML` or `JSON`: the one form field.
    field: String,
    /// `compte/login`.
    login: String,
    /// `compte/password`.
    password: String,
    /// `message/msgid`.
    msgid: String,
    /// `message/expediteur`, if present.
    expediteur: Option<String>,
    /// `message/msg`: the text, or `{t}` in the mail-merge form.
    msg: String,
    /// `message/unicode`, if present.
    unicode: Option<String>,
    /// `message/datesend`, if present.
    datesend: Option<String>,
    /// (numero, `datas/t` for the mail-merge form).
    recipients: Vec<(String, Option<String>)>,
}

/// The inner text of the first `<name>…</name>` of `xml`.
fn tag<'a>(xml: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = xml.find(&open)? + open.len();
    let end = xml[start..].find(&close)? + start;
    Some(&xml[start..end])
}

/// The inner texts of every `<name>…</name>` of `xml`.
fn tags<'a>(xml: &'a str, name: &str) -> Vec<&'a str> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let mut out = Vec::new();
    let mut rest = xml;
    while let Some(s) = rest.find(&open) {
        let start = s + open.len();
        let Some(e) = rest[start..].find(&close) else {
            break;
        };
        out.push(&rest[start..start + e]);
        rest = &rest[start + e + close.len()..];
    }
    out
}

/// XML text → its value (the five predefined entities).
fn unescape(s: &str) -> String {
    s.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// The single form field of a request body: (name, UTF-8 value).
fn form_field(req: &Recorded) -> (String, String) {
    let form = req.form();
    assert_eq!(form.len(), 1, "exactly one form field: {form:?}");
    let (name, value) = form.into_iter().next().unwrap();
    (
        name,
        String::from_utf8(value).expect("the document is UTF-8"),
    )
}

/// Reads a `sendsms` request, XML (§I-1-1, §II-1-1) or JSON (§I-3-1, §II-2-1).
fn parse_send(req: &Recorded) -> SendReq {
    let (field, value) = form_field(req);
    if field == "JSON" {
        let v: serde_json::Value = serde_json::from_str(&value).expect("JSON value");
        let s = |v: &serde_json::Value| v.as_str().map(str::to_string);
        return SendReq {
            field,
            login: s(&v["compte"]["login"]).unwrap_or_default(),
            password: s(&v["compte"]["password"]).unwrap_or_default(),
            msgid: s(&v["message"]["msgid"]).unwrap_or_default(),
            expediteur: s(&v["message"]["expediteur"]),
            msg: s(&v["message"]["msg"]).unwrap_or_default(),
            unicode: v["message"]
                .get("unicode")
                .map(|u| u.to_string().trim_matches('"').to_string()),
            datesend: s(&v["message"]["datesend"]),
            recipients: v["destinataires"]
                .as_array()
                .expect("destinataires is a list")
                .iter()
                .map(|d| (s(&d["numero"]).unwrap_or_default(), s(&d["datas"]["t"])))
                .collect(),
        };
    }
    assert_eq!(field, "XML");
    let xml = value.as_str();
    assert!(xml.starts_with("<SMS>") && xml.ends_with("</SMS>"), "{xml}");
    let compte = tag(xml, "compte").expect("compte");
    let message = tag(xml, "message").expect("message");
    let dest = tag(xml, "destinataires").expect("destinataires");
    let recipients = if dest.starts_with("<sms>") {
        tags(dest, "sms")
            .into_iter()
            .map(|s| {
                (
                    unescape(tag(s, "numero").expect("numero")),
                    tag(s, "datas").and_then(|d| tag(d, "t")).map(unescape),
                )
            })
            .collect()
    } else {
        tags(dest, "numero")
            .into_iter()
            .map(|n| (unescape(n), None))
            .collect()
    };
    SendReq {
        field,
        login: unescape(tag(compte, "login").expect("login")),
        password: unescape(tag(compte, "password").expect("password")),
        msgid: unescape(tag(message, "msgid").expect("msgid")),
        expediteur: tag(message, "expediteur").map(unescape),
        msg: unescape(tag(message, "msg").expect("msg")),
        unicode: tag(message, "unicode").map(unescape),
        datesend: tag(message, "datesend").map(unescape),
        recipients,
    }
}

/// The text each recipient gets: its `datas/t` in the mail-merge form,
/// else the common `msg`.
fn texts(p: &SendReq) -> Vec<(String, String)> {
    p.recipients
        .iter()
        .map(|(n, t)| match t {
            Some(t) => {
                assert_eq!(p.msg, "{t}", "mail-merge template");
                (n.clone(), t.clone())
            }
            None => (n.clone(), p.msg.clone()),
        })
        .collect()
}

/// §I-1's success answer: every number but `invalid` is listed with
/// `smsfid` `F-<number>`.
fn answer_xml(p: &SendReq, invalid: &[&str]) -> String {
    let valid: Vec<&String> = p
        .recipients
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !invalid.contains(&n.as_str()))
        .collect();
    let mut xml = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<REPONSE>\n  <msgfid>M-{}</msgfid>\n  <statut>{}</statut>\n  <texte>Message envoyé</texte>\n  <destinataires>{}</destinataires>\n  <sms>{}</sms>\n  <credits>{}</credits>\n  <solde>209</solde>\n  <messages>\n",
        p.msgid,
        valid.len(),
        valid.len(),
        valid.len(),
        valid.len()
    );
    for n in &valid {
        xml.push_str(&format!(
            "    <sms>\n      <smsfid>F-{n}</smsfid>\n      <destination>{n}</destination>\n      <credits>1</credits>\n    </sms>\n"
        ));
    }
    xml.push_str("  </messages>\n</REPONSE>\n");
    xml
}

/// §I-3's success answer.
fn answer_json(p: &SendReq, invalid: &[&str]) -> String {
    let valid: Vec<&String> = p
        .recipients
        .iter()
        .map(|(n, _)| n)
        .filter(|n| !invalid.contains(&n.as_str()))
        .collect();
    let messages: Vec<serde_json::Value> = valid
        .iter()
        .map(|n| serde_json::json!({"smsfid": format!("F-{n}"), "destination": n, "credits": 1}))
        .collect();
    serde_json::json!({
        "msgid": format!("M-{}", p.msgid), "statut": valid.len(), "texte": "ok",
        "destinataires": valid.len().to_string(), "sms": valid.len().to_string(),
        "credits": valid.len().to_string(), "solde": "209", "messages": messages
    })
    .to_string()
}

/// §I-1's error answer.
fn error_xml(statut: i64, texte: &str) -> String {
    format!("<REPONSE>\n<statut>{statut}</statut>\n<texte>{texte}</texte>\n</REPONSE>")
}

/// A mock SMSECO taking sends; `invalid` numbers are left out of answers.
async fn smseco_mock(invalid: &'static [&'static str]) -> MockServer {
    MockServer::start(move |req| {
        let p = parse_send(req);
        if p.field == "JSON" {
            MockResponse::ok("application/json", answer_json(&p, invalid))
        } else {
            MockResponse::ok("text/xml; charset=UTF-8", answer_xml(&p, invalid))
        }
    })
    .await
}

/// Checks what every `sendsms` request must be.
fn assert_send_request(req: &Recorded, format: &str) -> SendReq {
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, format!("/api/{format}/sendsms/"));
    assert_eq!(req.query, None);
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let p = parse_send(req);
    assert_eq!(p.field, format.to_uppercase());
    assert_eq!(p.login, LOGIN);
    assert_eq!(p.password, PASSWORD);
    assert!(
        !p.msgid.is_empty() && p.msgid.chars().count() <= 30,
        "{p:?}"
    );
    p
}

fn config(server_base: &str) -> SmsecoConfig {
    SmsecoConfig {
        url: format!("{server_base}/api/"),
        login: LOGIN.into(),
        password: PASSWORD.into(),
        format: SmsecoFormat::Xml,
        timeout_ms: 5_000,
        rate_limit: None,
    }
}

fn provider(server: &MockServer) -> Smseco {
    Smseco::new(&config(&server.base)).expect("provider")
}

fn sms(i: i64, to: &str, text: &str) -> OutgoingSms {
    test_sms(format!("0123456789abcdef-{i}"), i, to, text).with_sender(Some("MaSociete"))
}

fn assert_error(
    result: &Result<String, mail2sms::providers::SendError>,
    kind: FailureKind,
    code: Code,
) {
    let e = result.as_ref().expect_err("an error");
    assert_eq!((e.kind, e.code), (kind, code), "{e:?}");
    assert!(!e.detail.contains(PASSWORD), "secret in {e:?}");
}

// ---------------------------------------------------------------------------
// Through the adapter
// ---------------------------------------------------------------------------

#[tokio::test]
async fn one_text_to_many_numbers_is_one_request() {
    let server = smseco_mock(&[]).await;
    let text = "Fête & <promo> \"-10%\" à 50€\nligne 2";
    let batch = [
        sms(1, "+33601020304", text),
        sms(2, "+22507352518", text),
        sms(3, "+22678657808", text),
    ];
    let results = provider(&server).send(&batch).await;
    assert_eq!(
        results,
        vec![
            Ok("F-33601020304".into()),
            Ok("F-22507352518".into()),
            Ok("F-22678657808".into()),
        ]
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let p = assert_send_request(&requests[0], "xml");
    assert_eq!(p.msgid, "0123456789abcdef-1");
    assert_eq!(p.expediteur.as_deref(), Some("MaSociete"));
    assert_eq!(p.msg.as_bytes(), text.as_bytes());
    // ê is not GSM-7: the whole message is UCS-2.
    assert_eq!(p.unicode.as_deref(), Some("1"));
    assert_eq!(p.datesend, None);
    assert_eq!(
        p.recipients,
        vec![
            ("33601020304".to_string(), None),
            ("22507352518".to_string(), None),
            ("22678657808".to_string(), None),
        ]
    );
    // The escaping is on the wire, not only after decoding.
    let (_, xml) = form_field(&requests[0]);
    assert!(xml.contains("<msg>F\u{ea}te &amp; &lt;promo&gt;"), "{xml}");
    assert!(xml.contains("<password>pw&amp;&lt;s3cr3t&gt;</password>"));
}

#[tokio::test]
async fn gsm7_text_has_no_unicode_flag() {
    let server = smseco_mock(&[]).await;
    let results = provider(&server)
        .send(&[sms(1, "+33601020304", "L'été à 50€, où?")])
        .await;
    assert_eq!(results, vec![Ok("F-33601020304".into())]);
    let p = assert_send_request(&server.requests()[0], "xml");
    assert_eq!(p.unicode, None);
}

#[tokio::test]
async fn different_texts_go_in_one_mail_merge_request() {
    let server = smseco_mock(&[]).await;
    let batch = [
        sms(1, "+33601020304", "Bonjour Michel, {nom} & co"),
        sms(2, "+33601020305", "Bonjour Sarah"),
        sms(3, "+33601020306", "Bonjour Michel, {nom} & co"),
    ];
    let results = provider(&server).send(&batch).await;
    assert_eq!(
        results,
        vec![
            Ok("F-33601020304".into()),
            Ok("F-33601020305".into()),
            Ok("F-33601020306".into()),
        ]
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let p = assert_send_request(&requests[0], "xml");
    assert_eq!(p.msg, "{t}");
    assert_eq!(
        texts(&p),
        vec![
            ("33601020304".into(), "Bonjour Michel, {nom} & co".into()),
            ("33601020305".into(), "Bonjour Sarah".into()),
            ("33601020306".into(), "Bonjour Michel, {nom} & co".into()),
        ]
    );
}

#[tokio::test]
async fn the_same_number_twice_goes_in_two_requests() {
    let server = smseco_mock(&[]).await;
    let batch = [
        sms(1, "+33601020304", "Premier"),
        sms(2, "+33601020304", "Second"),
        sms(3, "+33601020305", "Premier"),
    ];
    let results = provider(&server).send(&batch).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let first = assert_send_request(&requests[0], "xml");
    let second = assert_send_request(&requests[1], "xml");
    assert_eq!(
        texts(&first),
        vec![
            ("33601020304".into(), "Premier".into()),
            ("33601020305".into(), "Premier".into()),
        ]
    );
    assert_eq!(
        texts(&second),
        vec![("33601020304".into(), "Second".into())]
    );
    assert_eq!(first.msgid, "0123456789abcdef-1");
    assert_eq!(second.msgid, "0123456789abcdef-2");
}

#[tokio::test]
async fn a_number_missing_from_the_answer_is_code_7() {
    let server = smseco_mock(&["33600000001"]).await;
    let batch = [
        sms(1, "+33601020304", "Salut"),
        sms(2, "+33600000001", "Salut"),
    ];
    let results = provider(&server).send(&batch).await;
    assert_eq!(results[0], Ok("F-33601020304".into()));
    assert_error(&results[1], FailureKind::Permanent, Code::BAD_NUMBER);
}

#[tokio::test]
async fn every_error_statut_is_mapped() {
    let statut = Arc::new(AtomicI64::new(0));
    let current = statut.clone();
    let server = MockServer::start(move |_| {
        let s = current.load(Ordering::SeqCst);
        // SMSECO's own words, echoing the password to check it is masked.
        MockResponse::ok(
            "text/xml",
            error_xml(s, &format!("erreur {s} pour {}", "pw&amp;&lt;s3cr3t&gt;")),
        )
    })
    .await;
    let p = provider(&server);
    use FailureKind::*;
    let table: &[(i64, FailureKind, Code)] = &[
        (-1, Permanent, Code::INTERNAL),
        (-2, ProviderUnusable, Code::BAD_CREDENTIALS),
        (-3, ProviderUnusable, Code::BAD_CREDENTIALS),
        (-4, ProviderUnusable, Code::BAD_CREDENTIALS),
        (-5, Permanent, Code::INTERNAL),
        (-6, ProviderUnusable, Code::NO_CREDIT),
        (-7, Permanent, Code::BAD_NUMBER),
        (-8, Permanent, Code::SENDER_NOT_ALLOWED),
        (-9, Permanent, Code::BAD_NUMBER),
        (-10, Permanent, Code::INTERNAL),
        (-11, ProviderUnusable, Code::BAD_CREDENTIALS),
        (-12, ProviderUnusable, Code::BAD_CREDENTIALS),
        (-13, Permanent, Code::INTERNAL),
        (-14, ProviderUnusable, Code::INTERNAL),
        (-15, Permanent, Code::INTERNAL),
        (-42, Permanent, Code::INTERNAL),
    ];
    for &(s, kind, code) in table {
        statut.store(s, Ordering::SeqCst);
        let batch = [sms(1, "+33601020304", "x"), sms(2, "+33601020305", "x")];
        let results = p.send(&batch).await;
        assert_eq!(results.len(), 2);
        for r in &results {
            assert_error(r, kind, code);
            let detail = &r.as_ref().unwrap_err().detail;
            assert!(
                detail.contains(&format!("statut {s}")) && detail.contains(&format!("erreur {s}")),
                "{detail}"
            );
            assert!(detail.contains("***"), "{detail}");
        }
    }
    assert_eq!(server.requests().len(), table.len());
}

#[tokio::test]
async fn an_unusable_account_stops_the_rest_of_the_batch() {
    let server =
        MockServer::start(|_| MockResponse::ok("text/xml", error_xml(-6, "Crédits insuffisants")))
            .await;
    let mut other = sms(2, "+33601020305", "B");
    other.sender_id = Some("Autre".into());
    let results = provider(&server)
        .send(&[sms(1, "+33601020304", "A"), other])
        .await;
    assert_error(&results[0], FailureKind::ProviderUnusable, Code::NO_CREDIT);
    assert_error(&results[1], FailureKind::ProviderUnusable, Code::NO_CREDIT);
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_failing_request_stops_the_batch() {
    // Three senders: three requests if all went well.
    let batch: Vec<OutgoingSms> = ["Un", "Deux", "Trois"]
        .iter()
        .enumerate()
        .map(|(i, sender)| {
            let mut s = sms(i as i64, &format!("+3360102030{i}"), sender);
            s.sender_id = Some((*sender).into());
            s
        })
        .collect();
    // SMSECO's own refusal of the account stops a batch like HTTP
    // failures do (those are in provider_contract.rs).
    let failures = [MockResponse::ok(
        "text/xml",
        error_xml(-4, "Echec de l'Authentification"),
    )];
    for failure in failures {
        let answer = failure.clone();
        let server = MockServer::start(move |_| answer.clone()).await;
        let results = provider(&server).send(&batch).await;
        assert_eq!(
            server.requests().len(),
            1,
            "{} {:?}",
            failure.status,
            String::from_utf8_lossy(&failure.body)
        );
        assert_batch_stopped(&results);
    }
}

/// `application/x-www-form-urlencoded` of a value, written independently
/// of the adapter: unreserved bytes as they are, space as `+`, the rest
/// `%XX`.
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn the_password_is_masked_in_every_encoding() {
    let password = "a\"b<c&d é";
    let xml = password
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;");
    let json = serde_json::to_string(password).unwrap();
    let json = json.trim_matches('"').to_string();
    let forms = vec![
        password.to_string(),
        xml.clone(),
        json.clone(),
        percent_encode(password),
        percent_encode(&xml),
        percent_encode(&json),
        percent_encode(password).replace('+', "%20").to_lowercase(),
    ];
    for format in [SmsecoFormat::Xml, SmsecoFormat::Json] {
        // An error page quoting what it was sent, in every form.
        let echoed = forms.clone();
        let server = MockServer::start(move |req| {
            let p = parse_send(req);
            assert_eq!(p.password, "a\"b<c&d é");
            let mut page = MockResponse::status(500);
            page.body = format!("bad request: [{}]", echoed.join("] [")).into_bytes();
            page
        })
        .await;
        let mut c = config(&server.base);
        c.password = password.into();
        c.format = format;
        let p = Smseco::new(&c).unwrap();
        let results = p
            .send(&[sms(1, "+33601020304", "A"), {
                let mut s = sms(2, "+33601020305", "B");
                s.sender_id = Some("Autre".into());
                s
            }])
            .await;
        for r in &results {
            let detail = &r.as_ref().unwrap_err().detail;
            for form in &forms {
                assert!(!detail.contains(form.as_str()), "{form} in {detail}");
            }
            assert!(
                detail.contains("bad request: [***] [***] [***]"),
                "{detail}"
            );
        }
        // The page echoing the request's body as it came.
        let server = MockServer::start(|req| {
            let mut page = MockResponse::status(400);
            page.body = format!("cannot read {}", req.body_text()).into_bytes();
            page
        })
        .await;
        c.url = format!("{}/api/", server.base);
        let results = Smseco::new(&c)
            .unwrap()
            .send(&[sms(1, "+33601020304", "A")])
            .await;
        let detail = &results[0].as_ref().unwrap_err().detail;
        assert!(detail.contains("***"), "{detail}");
        for form in &forms {
            assert!(!detail.contains(form.as_str()), "{form} in {detail}");
        }
    }
}

#[tokio::test]
async fn a_refused_sender_does_not_stop_other_senders() {
    let server = MockServer::start(|req| {
        let p = parse_send(req);
        if p.expediteur.as_deref() == Some("Inconnu") {
            MockResponse::ok("text/xml", error_xml(-8, "Expéditeur non enregistré"))
        } else {
            MockResponse::ok("text/xml", answer_xml(&p, &[]))
        }
    })
    .await;
    let mut refused = sms(1, "+33601020304", "A");
    refused.sender_id = Some("Inconnu".into());
    let results = provider(&server)
        .send(&[refused, sms(2, "+33601020305", "A")])
        .await;
    assert_error(
        &results[0],
        FailureKind::Permanent,
        Code::SENDER_NOT_ALLOWED,
    );
    assert_eq!(results[1], Ok("F-33601020305".into()));
    assert_eq!(server.requests().len(), 2);
}

#[tokio::test]
async fn malformed_answers_are_transient() {
    // A <REPONSE> cut short (HTML and empty bodies are in
    // provider_contract.rs).
    for body in ["<REPONSE><statut>2</statut><messages><sms>"] {
        let server = MockServer::start(move |_| MockResponse::ok("text/html", body)).await;
        let results = provider(&server).send(&[sms(1, "+33601020304", "A")]).await;
        assert_error(&results[0], FailureKind::Transient, Code::INTERNAL);
    }
}

#[tokio::test]
async fn scheduled_send_carries_datesend_in_utc() {
    let server = smseco_mock(&[]).await;
    // Tomorrow at 09:30:00 UTC, an exact minute.
    let now = mail2sms::store::now_millis();
    let at = (now / 86_400_000 + 1) * 86_400_000 + 9 * 3_600_000 + 30 * 60_000;
    let mut s = sms(1, "+33601020304", "Rappel");
    s.send_at = Some(at);
    let results = provider(&server).send(&[s]).await;
    assert!(results[0].is_ok());
    let p = assert_send_request(&server.requests()[0], "xml");
    let expected = jiff::Timestamp::from_millisecond(at)
        .unwrap()
        .to_zoned(jiff::tz::TimeZone::get("Africa/Abidjan").unwrap())
        .strftime("%Y-%m-%d %H:%M")
        .to_string();
    assert!(expected.ends_with(" 09:30"), "{expected}");
    assert_eq!(p.datesend.as_deref(), Some(expected.as_str()));
}

#[tokio::test]
async fn whether_a_send_is_ahead_is_judged_by_the_providers_clock() {
    // In 2000 by the provider's clock, a send at 2001-01-01 09:30 UTC is
    // still ahead, so it carries its datesend.
    let server = smseco_mock(&[]).await;
    let clock = mail2sms::clock::Clock::manual("2000-06-01T00:00:00Z".parse().unwrap());
    let mut s = sms(1, "+33601020304", "Rappel");
    s.send_at = Some(
        "2001-01-01T09:30:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond(),
    );
    let results = provider(&server).with_clock(clock).send(&[s]).await;
    assert!(results[0].is_ok(), "{results:?}");
    let p = assert_send_request(&server.requests()[0], "xml");
    assert_eq!(p.datesend.as_deref(), Some("2001-01-01 09:30"));
}

#[tokio::test]
async fn json_form() {
    let server = smseco_mock(&["33600000001"]).await;
    let mut c = config(&server.base);
    c.format = SmsecoFormat::Json;
    let p = Smseco::new(&c).unwrap();
    // One text to many.
    let results = p
        .send(&[
            sms(1, "+33601020304", "Fête \"ce soir\""),
            sms(2, "+33600000001", "Fête \"ce soir\""),
        ])
        .await;
    assert_eq!(results[0], Ok("F-33601020304".into()));
    assert_error(&results[1], FailureKind::Permanent, Code::BAD_NUMBER);
    // Different texts: the mail-merge form.
    let results = p
        .send(&[sms(3, "+33601020304", "A"), sms(4, "+33601020305", "B")])
        .await;
    assert_eq!(
        results,
        vec![Ok("F-33601020304".into()), Ok("F-33601020305".into())]
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    let first = assert_send_request(&requests[0], "json");
    assert_eq!(first.msg, "Fête \"ce soir\"");
    assert_eq!(first.unicode.as_deref(), Some("1"));
    assert_eq!(first.expediteur.as_deref(), Some("MaSociete"));
    assert_eq!(first.msgid, "0123456789abcdef-1");
    assert_eq!(
        first.recipients,
        vec![("33601020304".into(), None), ("33600000001".into(), None)]
    );
    let second = assert_send_request(&requests[1], "json");
    assert_eq!(
        texts(&second),
        vec![
            ("33601020304".into(), "A".into()),
            ("33601020305".into(), "B".into())
        ]
    );
    // JSON errors are mapped the same.
    let server = MockServer::start(|_| {
        MockResponse::ok("application/json", r#"{"statut":-4,"texte":"Echec"}"#)
    })
    .await;
    let mut c = config(&server.base);
    c.format = SmsecoFormat::Json;
    let results = Smseco::new(&c)
        .unwrap()
        .send(&[sms(1, "+33601020304", "A")])
        .await;
    assert_error(
        &results[0],
        FailureKind::ProviderUnusable,
        Code::BAD_CREDENTIALS,
    );
}

#[tokio::test]
async fn check_reads_the_balance() {
    let server = MockServer::start(|req| {
        let (_, xml) = form_field(req);
        if tag(&xml, "password").map(unescape).as_deref() != Some(PASSWORD) {
            return MockResponse::ok(
                "text/xml",
                "<REPONSE>\n<accountid></accountid>\n<statut>-4</statut>\n<texte>Echec de l'Authentification</texte>\n</REPONSE>",
            );
        }
        MockResponse::ok(
            "text/xml",
            "<REPONSE>\n    <accountid>4321</accountid>\n    <statut>0</statut>\n    <texte>OK</texte>\n    <credits>212.5</credits>\n    <expire>2026-12-31</expire>\n    <cumul>1500</cumul>\n</REPONSE>",
        )
    })
    .await;
    let said = provider(&server).check().await.expect("balance");
    assert_eq!(
        said,
        "credentials accepted, balance 212.5 credits, expire 2026-12-31"
    );
    let req = &server.requests()[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api/xml/getbalance/");
    assert_eq!(
        req.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    let (field, xml) = form_field(req);
    assert_eq!(field, "XML");
    assert_eq!(
        xml,
        "<SMS><compte><login>ops@masociete.ci</login><password>pw&amp;&lt;s3cr3t&gt;</password></compte></SMS>"
    );
    // Wrong password: unusable, code 3, the password nowhere.
    let mut c = config(&server.base);
    c.password = "wrong-password".into();
    let e = Smseco::new(&c).unwrap().check().await.unwrap_err();
    assert_eq!(
        (e.kind, e.code),
        (FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS)
    );
    assert!(!e.detail.contains("wrong-password") && !e.detail.contains(PASSWORD));
    assert!(e.detail.contains("Echec de l'Authentification"));
}

#[tokio::test]
async fn check_with_no_credit_left() {
    let server = MockServer::start(|_| {
        MockResponse::ok(
            "text/xml",
            "<REPONSE><accountid>1</accountid><statut>0</statut><texte>OK</texte><credits>0</credits></REPONSE>",
        )
    })
    .await;
    let e = provider(&server).check().await.unwrap_err();
    assert_eq!(
        (e.kind, e.code),
        (FailureKind::ProviderUnusable, Code::NO_CREDIT)
    );
}

#[tokio::test]
async fn delivery_reports_are_read() {
    let server = MockServer::start(|_| {
        MockResponse::ok(
            "text/xml; charset=ISO-8859-1",
            b"<REPONSE>\n  <accountid>4321</accountid>\n  <statut>0</statut>\n  <texte>OK</texte>\n  <messages>\n    <message>\n      <msgfid>M-1</msgfid>\n      <dlrs>\n        <dlr>\n          <smsfid>F-33601020304</smsfid>\n          <destination>33601020304</destination>\n          <date>2025-06-15 16:07:12</date>\n          <statut>56</statut>\n          <libelle>Accus\xe9 de R\xe9ception</libelle>\n          <texte>Livr\xe9</texte>\n        </dlr>\n        <dlr>\n          <smsfid>F-33601020305</smsfid>\n          <destination>33601020305</destination>\n          <date>2025-06-15 16:07:13</date>\n          <statut>49</statut>\n          <libelle>Erreur Cr\xe9dits</libelle>\n          <texte></texte>\n        </dlr>\n      </dlrs>\n    </message>\n  </messages>\n</REPONSE>".to_vec(),
        )
    })
    .await;
    let reports = provider(&server)
        .delivery_reports(Some("M-1"), None)
        .await
        .expect("reports");
    assert_eq!(reports.len(), 2);
    assert_eq!(reports[0].id, "F-33601020304");
    assert_eq!(reports[0].number.as_deref(), Some("33601020304"));
    assert_eq!(reports[0].state, DeliveryState::Delivered);
    assert_eq!(reports[0].provider_code, "56");
    assert_eq!(reports[0].provider_text, "Accusé de Réception: Livré");
    assert_eq!(reports[0].at.as_deref(), Some("2025-06-15 16:07:12"));
    assert_eq!(
        reports[1].state,
        DeliveryState::undelivered("Erreur Crédits")
    );
    assert_eq!(reports[1].provider_text, "Erreur Crédits");
    let req = &server.requests()[0];
    assert_eq!(req.path, "/api/xml/getdlrs/");
    let (field, xml) = form_field(req);
    assert_eq!(field, "XML");
    assert_eq!(tag(&xml, "msgfid"), Some("M-1"));
    assert_eq!(tag(&xml, "smsfid"), None);
    assert_eq!(tag(&xml, "login"), Some(LOGIN));
}

// ---------------------------------------------------------------------------
// End to end
// ---------------------------------------------------------------------------

fn provider_toml(server: &MockServer) -> String {
    format!(
        "type = \"smseco\"\nurl = \"{}/api/\"\nlogin = \"{LOGIN}\"\npassword = \"pw&<s3cr3t>\"\ntimeout_ms = 5000\n",
        server.base
    )
}

/// An `<envoi>` with a sender, numbers and one text or one text each.
fn envoi_with_sender(nums: &[&str], texts: &[&str], email_id: &str) -> String {
    let mut body = format!("<envoi>\n<keyid>{KEYID}</keyid>\n");
    if nums.len() == 1 {
        body.push_str(&format!("<num>{}</num>\n", nums[0]));
    } else {
        for (i, n) in nums.iter().enumerate() {
            body.push_str(&format!("<num{i}>{n}</num{i}>\n", i = i + 1));
        }
    }
    if texts.len() == 1 {
        body.push_str(&format!("<sms>{}</sms>\n", texts[0]));
    } else {
        for (i, t) in texts.iter().enumerate() {
            body.push_str(&format!("<sms{i}>{t}</sms{i}>\n", i = i + 1));
        }
    }
    body.push_str(&format!(
        "<emetteur>MaSociete</emetteur>\n<emailNot>not@masociete.com</emailNot>\n<emailAck>ack@masociete.com</emailAck>\n<emailId>{email_id}</emailId>\n</envoi>\n"
    ));
    body
}

async fn send_email(app: &TestApp, body: &str) {
    app.send("ops@masociete.com", &plain_email("ops@masociete.com", body))
        .await
        .expect("accepted");
}

#[tokio::test]
async fn e2e_sent_sms_reports_code_0() {
    let server = smseco_mock(&[]).await;
    let app = TestApp::spawn_with_provider("smseco", &provider_toml(&server)).await;
    let text = "L'été est fini! Super promo -10% à partir de 50€ d'achat !!!";
    send_email(&app, &envoi_with_sender(&["0601020304"], &[text], "2001")).await;
    let not = app.wait_reply_to("not@masociete.com").await;
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let p = assert_send_request(&requests[0], "xml");
    assert_eq!(p.expediteur.as_deref(), Some("MaSociete"));
    assert_eq!(texts(&p), vec![("33601020304".into(), text.into())]);
    assert_eq!(p.unicode, None);
    let t = not.text();
    assert!(t.contains("<code>0</code>"), "{t}");
    assert!(t.contains("<tel>0601020304</tel>"), "{t}");
}

#[tokio::test]
async fn e2e_invalid_number_reports_code_7() {
    let server = smseco_mock(&["33601020305"]).await;
    let app = TestApp::spawn_with_provider("smseco", &provider_toml(&server)).await;
    send_email(
        &app,
        &envoi_with_sender(&["0601020304", "0601020305"], &["Bonjour"], "2002"),
    )
    .await;
    let not = app.wait_reply_to("not@masociete.com").await;
    let t = not.text();
    assert!(
        t.contains("<code1>0</code1>\n<tel1>0601020304</tel1>"),
        "{t}"
    );
    assert!(
        t.contains("<code2>7</code2>\n<tel2>0601020305</tel2>"),
        "{t}"
    );
    // One text, two numbers: one request with both.
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let p = assert_send_request(&requests[0], "xml");
    assert_eq!(
        p.recipients,
        vec![("33601020304".into(), None), ("33601020305".into(), None)]
    );
}

#[tokio::test]
async fn e2e_no_credit_reports_code_12() {
    let server = MockServer::start(|_| {
        MockResponse::ok(
            "text/xml",
            error_xml(-6, "Pas assez de crédits ou crédits insuffisants"),
        )
    })
    .await;
    let app = TestApp::spawn_with_provider("smseco", &provider_toml(&server)).await;
    send_email(
        &app,
        &envoi_with_sender(&["0601020304"], &["Bonjour"], "2003"),
    )
    .await;
    let not = app.wait_reply_to("not@masociete.com").await;
    let t = not.text();
    assert!(t.contains("<code>12</code>"), "{t}");
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn e2e_different_texts_use_one_mail_merge_request() {
    let server = smseco_mock(&[]).await;
    let app = TestApp::spawn_with_provider("smseco", &provider_toml(&server)).await;
    let (a, b) = ("Promo -10% dès 50€", "Promo -20% dès 100€");
    send_email(
        &app,
        &envoi_with_sender(&["0601020304", "0601020305"], &[a, b], "2004"),
    )
    .await;
    let not = app.wait_reply_to("not@masociete.com").await;
    let t = not.text();
    assert!(
        t.contains("<code1>0</code1>") && t.contains("<code2>0</code2>"),
        "{t}"
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    let p = assert_send_request(&requests[0], "xml");
    assert_eq!(p.msg, "{t}");
    let mut got = texts(&p);
    got.sort();
    assert_eq!(
        got,
        vec![
            ("33601020304".into(), a.into()),
            ("33601020305".into(), b.into())
        ]
    );
    // 'è' is GSM-7: no unicode flag.
    assert_eq!(p.unicode, None);
}

#[tokio::test]
async fn e2e_without_a_sender_reports_code_16_and_sends_nothing() {
    let server = smseco_mock(&[]).await;
    let app = TestApp::spawn_with_provider("smseco", &provider_toml(&server)).await;
    send_email(&app, &envoi("0601020304", "Bonjour", "2005")).await;
    let not = app.wait_reply_to("not@masociete.com").await;
    let t = not.text();
    assert!(t.contains("<code>16</code>"), "{t}");
    assert!(server.requests().is_empty());
}
