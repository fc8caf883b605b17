//! The smsfactor adapter against a mock of smsfactor's XML API v2.2: the
//! mock parses each request with a strict XML parser (quick-xml, not the
//! adapter's tolerant reader), checks every field the document names, and
//! answers in the document's `<response>` format. Then end to end: an email
//! over SMTP, the SMS at the mock, and etatNot's code.

use crate::common::http_mock::{MockResponse, MockServer, Recorded};
use crate::common::*;
use mail2sms::codes::Code;
use mail2sms::providers::smsfactor::{CHECK_OK, Smsfactor, SmsfactorConfig};
use mail2sms::providers::{DeliveryState, FailureKind, OutgoingSms, Provider, SendError};
use quick_xml::events::Event;
use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const USER: &str = "compte@masociete.com";
const PASSWORD: &str = "pa$$w0rd&<s3cret";
const SEND_PATH: &str = "/API/apiV2.php";
const REPORT_PATH: &str = "/API/getDr.php";

// ---------------------------------------------------------------------
// The mock's side of the wire format.

/// An XML document read strictly: every element's path, attributes and
/// text, in document order.
#[derive(Debug, Default)]
struct Element {
    path: String,
    attrs: Vec<(String, String)>,
    text: String,
}

/// Parses `body` strictly (well-formed XML 1.0, matching end tags).
fn parse_strict(body: &str) -> Result<Vec<Element>, String> {
    let mut reader = quick_xml::Reader::from_str(body);
    let mut stack: Vec<usize> = Vec::new();
    let mut path: Vec<String> = Vec::new();
    let mut out: Vec<Element> = Vec::new();
    loop {
        match reader.read_event().map_err(|e| e.to_string())? {
            Event::Start(e) => {
                let name = <str as ToOwned>::to_owned(e.name().as_ref());
                path.push(name);
                let attrs = e
                    .attributes()
                    .map(|a| {
                        let a = a.map_err(|e| e.to_string())?;
                        Ok((
                            <str as ToOwned>::to_owned(a.key.as_ref()),
                            a.normalized_value(quick_xml::XmlVersion::Implicit1_0)
                                .map_err(|e| e.to_string())?
                                .into_owned(),
                        ))
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                stack.push(out.len());
                out.push(Element {
                    path: path.join("/"),
                    attrs,
                    text: String::new(),
                });
            }
            Event::Empty(e) => {
                let name = <str as ToOwned>::to_owned(e.name().as_ref());
                out.push(Element {
                    path: format!("{}/{name}", path.join("/")),
                    ..Element::default()
                });
            }
            Event::Text(t) => {
                if let Some(&at) = stack.last() {
                    out[at].text.push_str(&t.xml10_content());
                }
            }
            Event::GeneralRef(r) => {
                let resolved = if r.is_char_ref() {
                    r.resolve_char_ref()
                        .map_err(|e| e.to_string())?
                        .ok_or("bad char ref")?
                        .to_string()
                } else {
                    quick_xml::escape::resolve_predefined_entity(&r.xml10_content())
                        .ok_or("unknown entity")?
                        .to_string()
                };
                if let Some(&at) = stack.last() {
                    out[at].text.push_str(&resolved);
                }
            }
            Event::End(_) => {
                stack.pop();
                path.pop();
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !stack.is_empty() {
        return Err("unclosed element".into());
    }
    Ok(out)
}

/// A send request as the mock understood it.
#[derive(Debug)]
struct SmsRequest {
    username: String,
    password: String,
    sender: String,
    text: String,
    delay: Option<String>,
    /// (gsmsmsid, number), in order.
    gsm: Vec<(String, String)>,
}

/// Checks a send request the way smsfactor would: POST, the path, a raw
/// UTF-8 XML body with its declaration and `text/xml` type, only the
/// document's elements, in the document's places.
fn parse_send(req: &Recorded) -> Result<SmsRequest, String> {
    if req.method != "POST" || req.path != SEND_PATH {
        return Err(format!("{} {}", req.method, req.path));
    }
    if req.header("content-type") != Some("text/xml; charset=UTF-8") {
        return Err(format!("content-type {:?}", req.header("content-type")));
    }
    let body = std::str::from_utf8(&req.body).map_err(|e| e.to_string())?;
    if !body.starts_with("<?xml version=\"1.0\" encoding=\"UTF-8\"?>") {
        return Err("no XML declaration".into());
    }
    let elements = parse_strict(body)?;
    let allowed = [
        "sms",
        "sms/authentication",
        "sms/authentication/username",
        "sms/authentication/password",
        "sms/message",
        "sms/message/sender",
        "sms/message/text",
        "sms/message/delay",
        "sms/recipients",
        "sms/recipients/gsm",
    ];
    if let Some(e) = elements
        .iter()
        .find(|e| !allowed.contains(&e.path.as_str()))
    {
        return Err(format!("unexpected element {}", e.path));
    }
    let one = |path: &str| -> Result<String, String> {
        let found: Vec<_> = elements.iter().filter(|e| e.path == path).collect();
        match found.as_slice() {
            [e] => Ok(e.text.clone()),
            _ => Err(format!("{path}: {} times", found.len())),
        }
    };
    let gsm = elements
        .iter()
        .filter(|e| e.path == "sms/recipients/gsm")
        .map(|e| match e.attrs.as_slice() {
            [(k, v)] if k == "gsmsmsid" => Ok((v.clone(), e.text.clone())),
            other => Err(format!("gsm attributes {other:?}")),
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(SmsRequest {
        username: one("sms/authentication/username")?,
        password: one("sms/authentication/password")?,
        sender: one("sms/message/sender")?,
        text: one("sms/message/text")?,
        delay: elements
            .iter()
            .find(|e| e.path == "sms/message/delay")
            .map(|e| e.text.clone()),
        gsm,
    })
}

/// The document's answer (§1.3), clean XML.
fn response(status: i64, message: &str, ticket: &str, credits: &str) -> MockResponse {
    MockResponse::ok(
        "text/xml; charset=UTF-8",
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<response>\n  <status>{status}</status>\n  <message>{message}</message>\n  <ticket>{ticket}</ticket>\n  <credits>{credits}</credits>\n</response>\n"
        ),
    )
}

/// A faithful smsfactor: checks the request and the credentials, refuses
/// a list holding a number in `bad` (or not in international digits) with
/// -5, else answers 1 with ticket `T1`, `T2`, …
fn smsfactor(bad: &'static [&'static str]) -> impl Fn(&Recorded) -> MockResponse + Send + Sync {
    let tickets = AtomicUsize::new(0);
    move |req| {
        let sms = match parse_send(req) {
            Ok(sms) => sms,
            Err(e) => return response(-2, &format!("Erreur XML: {e}"), "", ""),
        };
        if sms.username != USER || sms.password != PASSWORD {
            return response(-1, "Login ou mot de passe incorrect", "", "");
        }
        let bad_list = sms.gsm.is_empty()
            || sms.gsm.iter().any(|(_, n)| {
                bad.contains(&n.as_str())
                    || !n.bytes().all(|b| b.is_ascii_digit())
                    || n.starts_with('0')
            });
        if bad_list {
            return response(-5, "Liste des destinataires incorrecte", "", "100");
        }
        let n = tickets.fetch_add(1, Ordering::SeqCst) + 1;
        response(1, "OK", &format!("T{n}"), "99")
    }
}

// ---------------------------------------------------------------------
// The adapter's side.

fn config(base: &str) -> SmsfactorConfig {
    SmsfactorConfig {
        url: format!("{base}/API/"),
        username: USER.into(),
        password: PASSWORD.into(),
        timeout_ms: 5_000,
        rate_limit: None,
    }
}

fn adapter(mock: &MockServer) -> Smsfactor {
    Smsfactor::new(&config(&mock.base)).expect("adapter")
}

fn sms(n: u32, to: &str, text: &str) -> OutgoingSms {
    test_sms(format!("0a1b2c3d-{n}"), n.into(), to, text).with_sender(Some("MaSociete"))
}

fn error(result: &Result<String, SendError>) -> (FailureKind, Code) {
    let e = result.as_ref().expect_err("an error");
    (e.kind, e.code)
}

const TEXT: &str = "L'été \"chaud\" <promo> & -10% dès 50€\nligne 2";

// ---------------------------------------------------------------------
// Direct tests of the adapter.

#[tokio::test]
async fn one_text_to_many_numbers_is_one_request_with_every_field() {
    let mock = MockServer::start(smsfactor(&[])).await;
    let batch = [
        sms(1, "+33601020304", TEXT),
        sms(2, "+33601020305", TEXT),
        sms(3, "+447700900123", TEXT),
    ];
    let results = adapter(&mock).send(&batch).await;
    assert_eq!(
        results,
        vec![Ok("T1".into()), Ok("T1".into()), Ok("T1".into())]
    );
    let requests = mock.requests();
    assert_eq!(requests.len(), 1, "one request for one text");
    let req = &requests[0];
    let parsed = parse_send(req).expect("a valid request");
    assert_eq!(parsed.username, USER);
    assert_eq!(parsed.password, PASSWORD);
    assert_eq!(parsed.sender, "MaSociete");
    assert_eq!(parsed.text, TEXT);
    assert_eq!(parsed.delay, None);
    assert_eq!(
        parsed.gsm,
        vec![
            ("0a1b2c3d-1".to_string(), "33601020304".to_string()),
            ("0a1b2c3d-2".to_string(), "33601020305".to_string()),
            ("0a1b2c3d-3".to_string(), "447700900123".to_string()),
        ]
    );
    // The text's bytes are UTF-8, as declared: é is C3 A9, € E2 82 AC.
    let body = req.body_text();
    assert!(
        body.contains("L&apos;été &quot;chaud&quot; &lt;promo&gt; &amp; -10% dès 50€\nligne 2")
    );
    assert!(req.body.windows(2).any(|w| w == [0xC3, 0xA9]));
    assert!(req.body.windows(3).any(|w| w == [0xE2, 0x82, 0xAC]));
    assert!(req.query.is_none(), "nothing in the URL");
}

#[tokio::test]
async fn different_texts_senders_and_times_go_out_as_one_request_each() {
    let mock = MockServer::start(smsfactor(&[])).await;
    let mut other_sender = sms(4, "+33601020307", "texte A");
    other_sender.sender_id = Some("Filiale".into());
    let mut later = sms(5, "+33601020308", "texte A");
    later.send_at = Some(1_752_481_800_000); // 2025-07-14T08:30:00Z
    let batch = [
        sms(1, "+33601020304", "texte A"),
        sms(2, "+33601020305", "texte B"),
        sms(3, "+33601020306", "texte A"),
        other_sender,
        later,
    ];
    let results = adapter(&mock).send(&batch).await;
    // Requests go in the order of each group's first SMS: A, B, A/Filiale,
    // A/later; results come back in input order.
    assert_eq!(
        results,
        vec![
            Ok("T1".into()),
            Ok("T2".into()),
            Ok("T1".into()),
            Ok("T3".into()),
            Ok("T4".into()),
        ]
    );
    let requests: Vec<SmsRequest> = mock
        .requests()
        .iter()
        .map(|r| parse_send(r).expect("valid"))
        .collect();
    assert_eq!(requests.len(), 4);
    let summary: Vec<(&str, &str, Option<&str>, Vec<&str>)> = requests
        .iter()
        .map(|r| {
            (
                r.text.as_str(),
                r.sender.as_str(),
                r.delay.as_deref(),
                r.gsm.iter().map(|(_, n)| n.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                "texte A",
                "MaSociete",
                None,
                vec!["33601020304", "33601020306"]
            ),
            ("texte B", "MaSociete", None, vec!["33601020305"]),
            ("texte A", "Filiale", None, vec!["33601020307"]),
            // 08:30 UTC is 10:30 in Paris in July (UTC+2).
            (
                "texte A",
                "MaSociete",
                Some("2025-07-14T10:30:00"),
                vec!["33601020308"]
            ),
        ]
    );
}

#[tokio::test]
async fn winter_delay_is_paris_time_too() {
    let mock = MockServer::start(smsfactor(&[])).await;
    let mut s = sms(1, "+33601020304", "rappel");
    s.send_at = Some(1_736_942_400_000); // 2025-01-15T12:00:00Z
    let results = adapter(&mock).send(&[s]).await;
    assert_eq!(results, vec![Ok("T1".into())]);
    let req = parse_send(&mock.requests()[0]).expect("valid");
    assert_eq!(req.delay.as_deref(), Some("2025-01-15T13:00:00"));
}

/// Sends one SMS to a mock answering `status`, returns its result.
async fn one_with_status(status: i64, message: &str) -> Result<String, SendError> {
    let message = message.to_string();
    let mock = MockServer::start(move |_| response(status, &message, "", "7")).await;
    let results = adapter(&mock).send(&[sms(1, "+33601020304", "x")]).await;
    assert_eq!(mock.requests().len(), 1, "status {status}: one request");
    results.into_iter().next().expect("one result")
}

#[tokio::test]
async fn every_documented_status_is_mapped() {
    let rows = [
        (
            -1,
            "Login incorrect",
            FailureKind::ProviderUnusable,
            Code::BAD_CREDENTIALS,
        ),
        (-2, "Erreur XML", FailureKind::Permanent, Code::INTERNAL),
        (
            -3,
            "Crédits insuffisants",
            FailureKind::ProviderUnusable,
            Code::NO_CREDIT,
        ),
        (
            -4,
            "Date incorrecte",
            FailureKind::Permanent,
            Code::INTERNAL,
        ),
        (
            -5,
            "Liste incorrecte",
            FailureKind::Permanent,
            Code::BAD_NUMBER,
        ),
        (-9, "Nouveau code", FailureKind::Permanent, Code::INTERNAL),
        (0, "Zéro", FailureKind::Permanent, Code::INTERNAL),
    ];
    for (status, message, kind, code) in rows {
        let result = one_with_status(status, message).await;
        assert_eq!(error(&result), (kind, code), "status {status}");
        let detail = &result.unwrap_err().detail;
        assert!(
            detail.contains(&format!("status {status}: {message}, credits 7")),
            "status {status}: {detail}"
        );
    }
}

#[tokio::test]
async fn the_password_never_appears_in_details() {
    // A server that echoes the password back (raw and XML-escaped).
    let escaped = PASSWORD.replace('&', "&amp;").replace('<', "&lt;");
    let echo = format!("bad password {escaped} for {USER}");
    let result = one_with_status(-1, &echo).await;
    let e = result.expect_err("refused");
    assert_eq!(
        (e.kind, e.code),
        (FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS)
    );
    assert!(!e.detail.contains(PASSWORD), "{}", e.detail);
    assert!(!e.detail.contains(&escaped), "{}", e.detail);
    assert!(
        e.detail
            .contains("bad password *** for compte@masociete.com")
    );

    // HTTP 401 and an unreadable answer echoing it too.
    for answer in [
        MockResponse {
            status: 401,
            content_type: Some("text/plain".into()),
            body: format!("denied: {PASSWORD}").into_bytes(),
            delay: None,
            location: None,
        },
        MockResponse::ok("text/html", format!("<html>{escaped}</html>")),
    ] {
        let mock = MockServer::start(move |_| answer.clone()).await;
        let p = adapter(&mock);
        let results = p.send(&[sms(1, "+33601020304", "x")]).await;
        let e = results[0].as_ref().expect_err("fails");
        assert!(!e.detail.contains(PASSWORD), "{}", e.detail);
        assert!(!e.detail.contains(&escaped), "{}", e.detail);
        let e = p.check().await.expect_err("fails");
        assert!(!e.detail.contains(PASSWORD), "{}", e.detail);
        assert!(!e.detail.contains(&escaped), "{}", e.detail);
    }
}

#[tokio::test]
async fn a_refused_recipient_list_is_split_until_the_bad_numbers_stand_alone() {
    let mock = MockServer::start(smsfactor(&["33600000003", "33600000006"])).await;
    let batch: Vec<OutgoingSms> = (0..8)
        .map(|i| sms(i, &format!("+3360000000{i}"), "promo"))
        .collect();
    let results = adapter(&mock).send(&batch).await;
    for (i, r) in results.iter().enumerate() {
        if i == 3 || i == 6 {
            assert_eq!(error(r), (FailureKind::Permanent, Code::BAD_NUMBER), "{i}");
        } else {
            assert!(r.as_ref().is_ok_and(|t| t.starts_with('T')), "{i}: {r:?}");
        }
    }
    // Every good number went out in exactly one accepted request, the bad
    // ones in none.
    let mut accepted: Vec<String> = Vec::new();
    for req in mock.requests() {
        let parsed = parse_send(&req).expect("valid");
        let numbers: Vec<String> = parsed.gsm.iter().map(|(_, n)| n.clone()).collect();
        if !numbers
            .iter()
            .any(|n| n == "33600000003" || n == "33600000006")
        {
            accepted.extend(numbers);
        }
    }
    accepted.sort();
    let expected: Vec<String> = [0, 1, 2, 4, 5, 7]
        .iter()
        .map(|i| format!("3360000000{i}"))
        .collect();
    assert_eq!(accepted, expected);
    // Halving, not one request per number: 8 → 4+4 → 2+2+2+2 → 1+1 twice.
    assert!(mock.requests().len() <= 11, "{}", mock.requests().len());
}

#[tokio::test]
async fn many_refused_numbers_cost_a_bounded_number_of_requests() {
    // Every list is refused: halving down to single numbers would take
    // 511 requests for 256 numbers.
    let mock =
        MockServer::start(|_| response(-5, "Liste des destinataires incorrecte", "", "100")).await;
    let batch: Vec<OutgoingSms> = (0..256)
        .map(|i| sms(i, &format!("+336100{i:05}"), "promo"))
        .collect();
    let results = adapter(&mock).send(&batch).await;
    let requests = mock.requests().len();
    assert!(requests <= 40, "{requests} requests");
    for r in &results {
        assert_eq!(error(r), (FailureKind::Permanent, Code::BAD_NUMBER));
    }
    // Some numbers were isolated, the rest were refused together, and say
    // so.
    let together = results
        .iter()
        .filter(|r| r.as_ref().unwrap_err().detail.contains("refused together"))
        .count();
    assert!(together > 0 && together < 256, "{together}");
    // Every number was in some request, none twice in one.
    for req in mock.requests() {
        let parsed = parse_send(&req).expect("valid");
        let numbers: HashSet<&str> = parsed.gsm.iter().map(|(_, n)| n.as_str()).collect();
        assert_eq!(numbers.len(), parsed.gsm.len());
    }
}

#[tokio::test]
async fn a_number_is_never_twice_in_one_request() {
    let mock = MockServer::start(smsfactor(&[])).await;
    let batch = [
        sms(1, "+33601020304", "promo"),
        sms(2, "+33601020305", "promo"),
        sms(3, "+33601020304", "promo"),
        sms(4, "+33601020304", "promo"),
        sms(5, "+33601020304", "autre"),
    ];
    let results = adapter(&mock).send(&batch).await;
    assert_eq!(
        results,
        vec![
            Ok("T1".into()),
            Ok("T1".into()),
            Ok("T2".into()),
            Ok("T3".into()),
            Ok("T4".into()),
        ]
    );
    let requests: Vec<SmsRequest> = mock
        .requests()
        .iter()
        .map(|r| parse_send(r).expect("valid"))
        .collect();
    let summary: Vec<(&str, Vec<&str>)> = requests
        .iter()
        .map(|r| {
            (
                r.text.as_str(),
                r.gsm.iter().map(|(id, _)| id.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            // A repeated number goes in a later request, in the order its
            // SMS came.
            ("promo", vec!["0a1b2c3d-1", "0a1b2c3d-2"]),
            ("promo", vec!["0a1b2c3d-3"]),
            ("promo", vec!["0a1b2c3d-4"]),
            ("autre", vec!["0a1b2c3d-5"]),
        ]
    );
}

#[tokio::test]
async fn a_failing_request_stops_the_batch() {
    // smsfactor's own refusals of the account stop a batch like HTTP
    // failures do (those are in provider_contract.rs): -1 and -3.
    let batch = [
        sms(1, "+33601020304", "texte A"),
        sms(2, "+33601020305", "texte B"),
        sms(3, "+33601020306", "texte C"),
    ];
    let failures = [
        response(-1, "Login ou mot de passe incorrect", "", ""),
        response(-3, "Crédits insuffisants", "", "0"),
    ];
    for failure in failures {
        let answer = failure.clone();
        let mock = MockServer::start(move |_| answer.clone()).await;
        let results = adapter(&mock).send(&batch).await;
        let said = String::from_utf8_lossy(&failure.body).into_owned();
        assert_eq!(mock.requests().len(), 1, "{said}");
        assert_batch_stopped(&results);
    }
}

#[tokio::test]
async fn a_failure_while_splitting_stops_the_batch() {
    // The first list is refused (-5), its first half meets a 503: neither
    // the second half nor the other text is sent.
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let mock = MockServer::start(move |_| match seen.fetch_add(1, Ordering::SeqCst) {
        0 => response(-5, "Liste des destinataires incorrecte", "", "100"),
        _ => MockResponse::status(503),
    })
    .await;
    let batch = [
        sms(1, "+33601020304", "texte A"),
        sms(2, "+33601020305", "texte A"),
        sms(3, "+33601020306", "texte B"),
    ];
    let results = adapter(&mock).send(&batch).await;
    assert_eq!(mock.requests().len(), 2);
    for r in &results {
        let (kind, code) = error(r);
        assert!(
            matches!(kind, FailureKind::Transient | FailureKind::NotAttempted),
            "{r:?}"
        );
        assert_eq!(code, Code::INTERNAL);
    }
    assert!(
        results[1]
            .as_ref()
            .unwrap_err()
            .detail
            .starts_with("not sent: ")
    );
}

#[tokio::test]
async fn a_permanent_refusal_does_not_stop_the_batch() {
    let mock = MockServer::start(|req| match parse_send(req) {
        Ok(sms) if sms.text == "texte B" => response(-4, "Date incorrecte", "", "9"),
        _ => response(1, "OK", "T", "9"),
    })
    .await;
    let batch = [
        sms(1, "+33601020304", "texte A"),
        sms(2, "+33601020305", "texte B"),
        sms(3, "+33601020306", "texte C"),
    ];
    let results = adapter(&mock).send(&batch).await;
    assert_eq!(results[0], Ok("T".into()));
    assert_eq!(error(&results[1]), (FailureKind::Permanent, Code::INTERNAL));
    assert_eq!(results[2], Ok("T".into()));
    assert_eq!(mock.requests().len(), 3);
}

#[tokio::test]
async fn a_single_refused_number_gets_7_without_retry() {
    let mock = MockServer::start(smsfactor(&["33600000001"])).await;
    let results = adapter(&mock).send(&[sms(1, "+33600000001", "x")]).await;
    assert_eq!(
        error(&results[0]),
        (FailureKind::Permanent, Code::BAD_NUMBER)
    );
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn the_documents_literal_answer_in_latin1_is_read() {
    // §1.3 as written (`</ message >`), ISO-8859-1 bytes declared only in
    // the XML declaration.
    let mut body =
        b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<response>\n  <status>-3</status>\n  <message>Cr\xe9dits insuffisants</ message >\n  <ticket></ticket>\n  <credits>0</credits>\n</response>".to_vec();
    let mock = MockServer::start(move |_| MockResponse::ok("text/xml", body.clone())).await;
    let results = adapter(&mock).send(&[sms(1, "+33601020304", "x")]).await;
    assert_eq!(
        error(&results[0]),
        (FailureKind::ProviderUnusable, Code::NO_CREDIT)
    );
    assert!(
        results[0]
            .as_ref()
            .unwrap_err()
            .detail
            .contains("Crédits insuffisants, credits 0")
    );

    body = b"<response>\n  <status>1</status>\n  <message>OK</ message >\n  <ticket>8812</ticket>\n  <credits>41</credits>\n</response>".to_vec();
    let mock = MockServer::start(move |_| MockResponse::ok("text/xml", body.clone())).await;
    let results = adapter(&mock).send(&[sms(1, "+33601020304", "x")]).await;
    assert_eq!(results, vec![Ok("8812".into())]);
}

#[tokio::test]
async fn unreadable_answers_are_transient() {
    // Answers that look like smsfactor's but are not (HTML and empty
    // bodies are in provider_contract.rs).
    for body in [
        "<response><status>OK</status></response>",
        "<response><status>1",
        "Warning: mysql_connect() failed",
    ] {
        let mock = MockServer::start(move |_| MockResponse::ok("text/html", body)).await;
        let results = adapter(&mock)
            .send(&[sms(1, "+33601020304", "x"), sms(2, "+33601020305", "x")])
            .await;
        for r in &results {
            assert_eq!(
                error(r),
                (FailureKind::Transient, Code::INTERNAL),
                "{body:?}"
            );
        }
        assert_eq!(mock.requests().len(), 1);
    }
}

#[tokio::test]
async fn sms_without_sender_or_with_a_long_text_never_reach_smsfactor() {
    let mock = MockServer::start(smsfactor(&[])).await;
    let mut no_sender = sms(1, "+33601020304", "x");
    no_sender.sender_id = None;
    let long = sms(2, "+33601020305", &"a".repeat(1121));
    let max = sms(3, "+33601020306", &"€".repeat(1120));
    let results = adapter(&mock).send(&[no_sender, long, max]).await;
    assert_eq!(
        error(&results[0]),
        (FailureKind::Permanent, Code::EMPTY_SENDER)
    );
    assert_eq!(error(&results[1]), (FailureKind::Permanent, Code::INTERNAL));
    assert_eq!(results[2], Ok("T1".into()));
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let parsed = parse_send(&requests[0]).unwrap();
    assert_eq!(
        parsed.gsm,
        vec![("0a1b2c3d-3".into(), "33601020306".into())]
    );
    assert_eq!(parsed.text.chars().count(), 1120);
}

// ---------------------------------------------------------------------
// check() and delivery reports (getDr.php).

/// A delivery-report request as the mock understood it: (username,
/// password, ticket, gsmsmsid).
fn parse_report(req: &Recorded) -> Result<(String, String, String, String), String> {
    if req.method != "POST" || req.path != REPORT_PATH {
        return Err(format!("{} {}", req.method, req.path));
    }
    if req.header("content-type") != Some("text/xml; charset=UTF-8") {
        return Err("content-type".into());
    }
    let elements = parse_strict(std::str::from_utf8(&req.body).map_err(|e| e.to_string())?)?;
    let paths: Vec<&str> = elements.iter().map(|e| e.path.as_str()).collect();
    if paths
        != [
            "deliveryreport",
            "deliveryreport/authentication",
            "deliveryreport/authentication/username",
            "deliveryreport/authentication/password",
            "deliveryreport/message",
            "deliveryreport/message/ticket",
        ]
    {
        return Err(format!("elements {paths:?}"));
    }
    let ticket = &elements[5];
    let gsmsmsid = match ticket.attrs.as_slice() {
        [(k, v)] if k == "gsmsmsid" => v.clone(),
        other => return Err(format!("ticket attributes {other:?}")),
    };
    Ok((
        elements[2].text.clone(),
        elements[3].text.clone(),
        ticket.text.clone(),
        gsmsmsid,
    ))
}

#[tokio::test]
async fn check_asks_getdr_for_ticket_0_and_sends_nothing() {
    // smsfactor answers an unknown ticket with some status; with good
    // credentials anything but -1 means they were accepted.
    for answer_status in [1, -2, 0] {
        let mock = MockServer::start(move |req| match parse_report(req) {
            Ok((u, p, _, _)) if u == USER && p == PASSWORD => MockResponse::ok(
                "text/xml",
                format!(
                    "<response><status>{answer_status}</status><message>m</ message ></response>"
                ),
            ),
            _ => MockResponse::status(400),
        })
        .await;
        let said = adapter(&mock).check().await;
        assert_eq!(said, Ok(CHECK_OK.to_string()), "status {answer_status}");
        let requests = mock.requests();
        assert_eq!(requests.len(), 1);
        let (_, _, ticket, gsmsmsid) = parse_report(&requests[0]).expect("valid");
        assert_eq!((ticket.as_str(), gsmsmsid.as_str()), ("0", ""));
    }
}

#[tokio::test]
async fn check_reports_refused_credentials() {
    let mock = MockServer::start(|_| {
        MockResponse::ok(
            "text/xml",
            "<response><status>-1</status><message>Login ou mot de passe incorrect</message></response>",
        )
    })
    .await;
    let e = adapter(&mock).check().await.expect_err("refused");
    assert_eq!(
        (e.kind, e.code),
        (FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS)
    );
    assert!(e.detail.contains("Login ou mot de passe incorrect"));

    let mock =
        MockServer::start(|_| MockResponse::ok("text/html", "<html>maintenance</html>")).await;
    let e = adapter(&mock).check().await.expect_err("unreadable");
    assert!(e.is_transient());
    let mock = MockServer::start(|_| MockResponse::status(503)).await;
    assert!(
        adapter(&mock)
            .check()
            .await
            .expect_err("503")
            .is_transient()
    );
}

#[tokio::test]
async fn delivery_reports_are_asked_and_read() {
    let mock = MockServer::start(|req| match parse_report(req) {
        Ok((_, _, ticket, _)) if ticket == "8812" => MockResponse::ok(
            "text/xml; charset=UTF-8",
            "<response><status>1</status><message>OK</message>\
             <gsm number=\"33601020304\" gsmsmsid=\"0a1b2c3d-1\">DELIVERED</gsm>\
             <gsm number=\"33601020305\" gsmsmsid=\"0a1b2c3d-2\">INVALID_DESTINATION_ADDRESS</gsm>\
             </response>",
        ),
        // The document's literal form: no status yet.
        Ok(_) => MockResponse::ok(
            "text/xml",
            "<response>\n  <status>1</status>\n  <message>OK</ message >\n  <gsm number=\"33601020306\" gsmsmsid=\"0a1b2c3d-3\" /></gsm>\n</response>",
        ),
        Err(e) => MockResponse::ok("text/xml", format!("<response><status>-2</status><message>{e}</message></response>")),
    })
    .await;
    let p = adapter(&mock);
    let reports = p
        .delivery_reports("8812", Some("0a1b2c3d-1"))
        .await
        .expect("reports");
    let seen: Vec<_> = reports
        .iter()
        .map(|s| {
            (
                s.id.as_str(),
                s.number.as_deref(),
                &s.state,
                s.provider_code.as_str(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            (
                "0a1b2c3d-1",
                Some("33601020304"),
                &DeliveryState::Delivered,
                "DELIVERED"
            ),
            (
                "0a1b2c3d-2",
                Some("33601020305"),
                &DeliveryState::undelivered("Le numéro indiqué n'est pas valide"),
                "INVALID_DESTINATION_ADDRESS"
            ),
        ]
    );
    let (u, pw, ticket, gsmsmsid) = parse_report(&mock.requests()[0]).unwrap();
    assert_eq!(
        (u.as_str(), pw.as_str(), ticket.as_str(), gsmsmsid.as_str()),
        (USER, PASSWORD, "8812", "0a1b2c3d-1")
    );
    let pending = p.delivery_reports("9000", None).await.expect("reports");
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (&pending[0].state, pending[0].provider_code.as_str()),
        (&DeliveryState::Accepted, "")
    );

    let mock = MockServer::start(|_| {
        MockResponse::ok(
            "text/xml",
            "<response><status>-1</status><message>Login</message></response>",
        )
    })
    .await;
    let e = adapter(&mock)
        .delivery_reports("1", None)
        .await
        .expect_err("refused");
    assert_eq!(
        (e.kind, e.code),
        (FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS)
    );
}

// ---------------------------------------------------------------------
// End to end: email in, SMS at the mock, etatNot out.

async fn spawn_app(mock: &MockServer) -> TestApp {
    TestApp::spawn_with_provider(
        "smsfactor",
        &format!(
            "type = \"smsfactor\"\nurl = \"{}/API\"\nusername = \"{USER}\"\npassword = \"{}\"\ntimeout_ms = 3000\n",
            mock.base, PASSWORD
        ),
    )
    .await
}

fn envoi_with_sender(nums: &[&str], text: &str, email_id: &str) -> String {
    envoi_multi(nums, text, email_id)
        .replace("<emailNot>", "<emetteur>MaSociete</emetteur>\n<emailNot>")
}

async fn send_email(app: &TestApp, envoi: &str) {
    app.send(
        "ops@masociete.com",
        &plain_email("ops@masociete.com", envoi),
    )
    .await
    .expect("accepted");
}

#[tokio::test]
async fn e2e_sms_reaches_smsfactor_and_etatnot_says_0() {
    let mock = MockServer::start(smsfactor(&[])).await;
    let app = spawn_app(&mock).await;
    let text = "L'été est fini! Super promo -10% à partir de 50€ d'achat !!!";
    let envoi = envoi("0601020304", text, "2001")
        .replace("<emailNot>", "<emetteur>MaSociete</emetteur>\n<emailNot>");
    send_email(&app, &envoi).await;
    let not = app.wait_reply_to("not@masociete.com").await;
    assert!(not.text().contains("<code>0</code>"), "{}", not.text());
    assert!(not.text().contains("<tel>0601020304</tel>"));
    let requests = mock.requests();
    assert_eq!(requests.len(), 1);
    let req = parse_send(&requests[0]).expect("valid");
    assert_eq!(req.text, text);
    assert_eq!(req.sender, "MaSociete");
    assert_eq!(req.gsm.len(), 1);
    assert_eq!(req.gsm[0].1, "33601020304");
    assert!(!req.gsm[0].0.is_empty() && req.gsm[0].0.len() <= 30);
}

#[tokio::test]
async fn e2e_two_numbers_one_text_is_one_request() {
    let mock = MockServer::start(smsfactor(&[])).await;
    let app = spawn_app(&mock).await;
    send_email(
        &app,
        &envoi_with_sender(&["0601020304", "0601020305"], "Bonjour à tous", "2002"),
    )
    .await;
    let not = app.wait_reply_to("not@masociete.com").await;
    assert!(not.text().contains("<code1>0</code1>"), "{}", not.text());
    assert!(not.text().contains("<code2>0</code2>"), "{}", not.text());
    let requests = mock.requests();
    assert_eq!(requests.len(), 1, "one request for both numbers");
    let req = parse_send(&requests[0]).expect("valid");
    let mut numbers: Vec<&str> = req.gsm.iter().map(|(_, n)| n.as_str()).collect();
    numbers.sort();
    assert_eq!(numbers, ["33601020304", "33601020305"]);
    let refs: HashSet<&str> = req.gsm.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(refs.len(), 2, "one gsmsmsid per SMS");
}

#[tokio::test]
async fn e2e_a_refused_number_reports_7_and_the_other_is_sent() {
    let mock = MockServer::start(smsfactor(&["33601020305"])).await;
    let app = spawn_app(&mock).await;
    send_email(
        &app,
        &envoi_with_sender(&["0601020304", "0601020305"], "Bonjour", "2003"),
    )
    .await;
    let not = app.wait_reply_to("not@masociete.com").await;
    let text = not.text();
    assert!(
        text.contains("<code1>0</code1>\n<tel1>0601020304</tel1>"),
        "{text}"
    );
    assert!(
        text.contains("<code2>7</code2>\n<tel2>0601020305</tel2>"),
        "{text}"
    );
}

#[tokio::test]
async fn e2e_no_credit_reports_12() {
    let calls = Arc::new(Mutex::new(0));
    let seen = calls.clone();
    let mock = MockServer::start(move |_| {
        *seen.lock().unwrap() += 1;
        response(-3, "Crédits insuffisants", "", "0")
    })
    .await;
    let app = spawn_app(&mock).await;
    send_email(&app, &envoi_with_sender(&["0601020304"], "Bonjour", "2004")).await;
    let not = app.wait_reply_to("not@masociete.com").await;
    assert!(not.text().contains("<code>12</code>"), "{}", not.text());
    assert_eq!(*calls.lock().unwrap(), 1, "no retry on the only provider");
}

#[tokio::test]
async fn e2e_without_sender_reports_16_and_sends_nothing() {
    let mock = MockServer::start(smsfactor(&[])).await;
    let app = spawn_app(&mock).await;
    send_email(&app, &envoi("0601020304", "Bonjour", "2005")).await;
    let not = app.wait_reply_to("not@masociete.com").await;
    assert!(not.text().contains("<code>16</code>"), "{}", not.text());
    assert!(mock.requests().is_empty());
}
