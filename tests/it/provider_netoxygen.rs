//! The `netoxygen` adapter against a mock NetOxygen gateway that speaks real
//! XML-RPC: it parses each `methodCall` with an independent XML-RPC reader
//! (dxr), checks the method, the parameters and their XML-RPC types, decodes
//! the base64 `dest` and `message`, and answers with `methodResponse` XML
//! written here by hand (arrays of arrays, faults, Latin-1 bodies).

use crate::common::http_mock::{MockResponse, MockServer, Recorded};
use crate::common::*;
use mail2sms::codes::Code;
use mail2sms::providers::netoxygen::{Cancellation, Credits, Netoxygen, NetoxygenConfig};
use mail2sms::providers::{DeliveryState, FailureKind, OutgoingSms, Provider, SendError};

const USER: &str = "user33";
const PASSWORD: &str = "s3cret-pw";
const ACCENTS: &str = "Été à 50€ ça coûte";

/// A parsed `methodCall`, as the gateway sees it.
#[derive(Debug)]
struct Call {
    /// The method name.
    name: String,
    /// The parameters with their XML-RPC types.
    params: Vec<dxr::Value>,
}

impl Call {
    fn string(&self, i: usize) -> String {
        match &self.params[i] {
            dxr::Value::String(s) => s.clone(),
            other => panic!("param {i} of {} is not a <string>: {other:?}", self.name),
        }
    }

    /// A `<base64>` parameter, as UTF-8 text.
    fn base64_text(&self, i: usize) -> String {
        base64_text(&self.params[i])
    }

    /// `dest`: one base64 value, or an array of them.
    fn numbers(&self) -> Vec<String> {
        match &self.params[2] {
            dxr::Value::Array(items) => items.iter().map(base64_text).collect(),
            one => vec![base64_text(one)],
        }
    }

    fn credentials_ok(&self) -> bool {
        self.string(0) == USER && self.string(1) == PASSWORD
    }
}

fn base64_text(v: &dxr::Value) -> String {
    match v {
        dxr::Value::Base64(bytes) => String::from_utf8(bytes.clone()).expect("UTF-8 bytes"),
        other => panic!("not <base64>: {other:?}"),
    }
}

/// Parses a recorded request as the gateway would.
fn call(req: &Recorded) -> Call {
    let call = dxr::MethodCall::from_xml(&req.body_text())
        .unwrap_or_else(|e| panic!("not a methodCall ({e}): {}", req.body_text()));
    Call {
        name: call.name.to_string(),
        params: call.params,
    }
}

/// Checks what every call to the gateway must be.
fn check_transport(req: &Recorded) {
    assert_eq!(req.method, "POST");
    assert_eq!(req.path, "/api2/");
    assert_eq!(req.header("content-type"), Some("text/xml"));
    assert!(
        req.body
            .starts_with(b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<methodCall>")
    );
}

fn response(value_xml: &str) -> MockResponse {
    MockResponse::ok(
        "text/xml",
        format!(
            "<?xml version=\"1.0\"?>\n<methodResponse>\n<params>\n<param>\n<value>{value_xml}</value>\n</param>\n</params>\n</methodResponse>\n"
        ),
    )
}

fn fault(code: i32, string: &str) -> MockResponse {
    MockResponse::ok(
        "text/xml",
        format!(
            "<?xml version=\"1.0\"?>\n<methodResponse><fault><value><struct>\
             <member><name>faultCode</name><value><int>{code}</int></value></member>\
             <member><name>faultString</name><value><string>{string}</string></value></member>\
             </struct></value></fault></methodResponse>\n"
        ),
    )
}

/// One `[dest, status, third]` entry.
fn entry(dest: &str, ok: bool, third: &str) -> String {
    let status = if ok { 1 } else { 0 };
    format!(
        "<value><array><data><value><string>{dest}</string></value><value><boolean>{status}</boolean></value><value>{third}</value></data></array></value>"
    )
}

fn array(entries: &[String]) -> String {
    format!("<array><data>{}</data></array>", entries.concat())
}

/// The gateway: checks credentials (a fault quoting the password when
/// they are wrong), then answers `send_message` per number: `id-<number>`
/// for numbers not ending in 00, error 5 for those that do; a message
/// `code:N` is refused with code N for every number.
fn gateway(req: &Recorded) -> MockResponse {
    let call = call(req);
    if !call.credentials_ok() {
        return fault(
            801,
            &format!(
                "Authentication failed for {} / {}",
                call.string(0),
                call.string(1)
            ),
        );
    }
    match call.name.as_str() {
        "send_message" => {
            let text = call.base64_text(3);
            let entries: Vec<String> = call
                .numbers()
                .iter()
                .map(|n| {
                    if let Some(code) = text.strip_prefix("code:") {
                        entry(n, false, &format!("<int>{code}</int>"))
                    } else if n.ends_with("00") {
                        entry(n, false, "<i4>5</i4>")
                    } else {
                        entry(n, true, &format!("<string>id-{n}</string>"))
                    }
                })
                .collect();
            response(&array(&entries))
        }
        "auth" => response("<boolean>1</boolean>"),
        "get_credits" => response("<double>212.5</double>"),
        other => fault(
            -32601,
            &format!("server error. requested method {other} does not exist."),
        ),
    }
}

fn config(url: &str) -> NetoxygenConfig {
    toml::from_str(&format!(
        "url = \"{url}\"\nuser = \"{USER}\"\npassword = \"{PASSWORD}\"\ntimeout_ms = 2000\n"
    ))
    .expect("config")
}

fn provider(server: &MockServer) -> Netoxygen {
    Netoxygen::new(&config(&server.url("/api2/"))).expect("provider")
}

fn sms(n: u32, to: &str, text: &str) -> OutgoingSms {
    test_sms(format!("abcd1234-{n}"), i64::from(n), to, text)
}

fn kind_code(r: &Result<String, SendError>) -> (FailureKind, Code) {
    let e = r.as_ref().expect_err("an error");
    (e.kind, e.code)
}

#[tokio::test]
async fn one_sms_goes_as_the_documents_perl_example_sends_it() {
    let server = MockServer::start(gateway).await;
    let results = provider(&server)
        .send(&[sms(1, "+41791234567", ACCENTS)])
        .await;
    assert_eq!(results, vec![Ok("id-41791234567".to_string())]);

    let requests = server.requests();
    assert_eq!(requests.len(), 1);
    check_transport(&requests[0]);
    let call = call(&requests[0]);
    assert_eq!(call.name, "send_message");
    // user and pass as strings, dest and message as base64 of UTF-8,
    // nothing else (no sender, no date, no type).
    assert_eq!(call.params.len(), 4, "{call:?}");
    assert_eq!(call.string(0), USER);
    assert_eq!(call.string(1), PASSWORD);
    assert_eq!(
        call.params[2],
        dxr::Value::Base64(b"41791234567".to_vec()),
        "one number: one base64 value"
    );
    assert_eq!(call.base64_text(3), ACCENTS);
    assert_eq!(
        call.params[3],
        dxr::Value::Base64(ACCENTS.as_bytes().to_vec())
    );
}

#[tokio::test]
async fn several_numbers_with_one_text_are_one_call_matched_by_dest() {
    // Answered in reverse order: results follow our numbers, not the
    // answer's order.
    let server = MockServer::start(|req| {
        let call = call(req);
        let mut entries: Vec<String> = call
            .numbers()
            .iter()
            .map(|n| {
                if n.ends_with("00") {
                    entry(n, false, "<int>5</int>")
                } else {
                    entry(n, true, &format!("<string>id-{n}</string>"))
                }
            })
            .collect();
        entries.reverse();
        response(&array(&entries))
    })
    .await;
    let batch = [
        sms(1, "+41791234567", ACCENTS),
        sms(2, "+33601020300", ACCENTS),
        sms(3, "+33601020304", ACCENTS),
    ];
    let results = provider(&server).send(&batch).await;
    assert_eq!(results[0], Ok("id-41791234567".into()));
    assert_eq!(
        kind_code(&results[1]),
        (FailureKind::Permanent, Code::BAD_NUMBER)
    );
    assert_eq!(results[2], Ok("id-33601020304".into()));

    let requests = server.requests();
    assert_eq!(requests.len(), 1, "one call for one text");
    let call = call(&requests[0]);
    assert_eq!(
        call.params[2],
        dxr::Value::Array(vec![
            dxr::Value::Base64(b"41791234567".to_vec()),
            dxr::Value::Base64(b"33601020300".to_vec()),
            dxr::Value::Base64(b"33601020304".to_vec()),
        ])
    );
    assert_eq!(call.base64_text(3), ACCENTS);
}

#[tokio::test]
async fn different_texts_senders_and_dates_are_separate_calls() {
    let server = MockServer::start(gateway).await;
    let mut batch = vec![
        sms(1, "+41791234567", "texte A"),
        sms(2, "+41791234568", "texte B"),
        sms(3, "+41791234569", "texte A"),
        sms(4, "+41791234570", "texte A"),
    ];
    batch[0].sender_id = Some("MaSociete".into());
    batch[2].sender_id = Some("MaSociete".into());
    // 2026-07-01 12:30:00 UTC is 14:30:00 in Zurich (summer time).
    batch[1].send_at = Some(1_782_909_000_000);
    batch[3].sender_id = Some("Autre".into());
    batch[3].send_at = Some(1_765_000_800_000); // 2025-12-06 06:00:00 UTC
    let results = provider(&server).send(&batch).await;
    assert_eq!(
        results,
        vec![
            Ok("id-41791234567".into()),
            Ok("id-41791234568".into()),
            Ok("id-41791234569".into()),
            Ok("id-41791234570".into()),
        ]
    );
    let calls: Vec<Call> = server.requests().iter().map(call).collect();
    assert_eq!(calls.len(), 3, "{calls:?}");
    // A with its sender: one call, two numbers, 5 parameters.
    assert_eq!(calls[0].numbers(), ["41791234567", "41791234569"]);
    assert_eq!(calls[0].base64_text(3), "texte A");
    assert_eq!(calls[0].params.len(), 5);
    assert_eq!(calls[0].string(4), "MaSociete");
    // B scheduled with the default sender: "" then the Zurich time.
    assert_eq!(calls[1].numbers(), ["41791234568"]);
    assert_eq!(calls[1].base64_text(3), "texte B");
    assert_eq!(calls[1].params.len(), 6);
    assert_eq!(calls[1].string(4), "");
    assert_eq!(calls[1].string(5), "2026-07-01 14:30:00");
    // A with another sender and a winter date (UTC+1).
    assert_eq!(calls[2].numbers(), ["41791234570"]);
    assert_eq!(calls[2].string(4), "Autre");
    assert_eq!(calls[2].string(5), "2025-12-06 07:00:00");
}

#[tokio::test]
async fn every_error_code_of_the_table_reaches_the_right_kind_and_code() {
    use FailureKind::*;
    let server = MockServer::start(gateway).await;
    let provider = provider(&server);
    let cases: &[(i64, Option<(FailureKind, Code)>)] = &[
        (1, None),
        (2, Some((Transient, Code::INTERNAL))),
        (3, Some((Permanent, Code::INTERNAL))),
        (4, Some((Permanent, Code::INTERNAL))),
        (5, Some((Permanent, Code::BAD_NUMBER))),
        (6, Some((Permanent, Code::SENDER_NOT_ALLOWED))),
        (7, Some((Permanent, Code::INTERNAL))),
        (8, Some((Permanent, Code::INTERNAL))),
        (9, None),
        (10, Some((Permanent, Code::INTERNAL))),
        (77, Some((Permanent, Code::INTERNAL))),
    ];
    for (code, expected) in cases {
        let results = provider
            .send(&[sms(9, "+41791234567", &format!("code:{code}"))])
            .await;
        match expected {
            // Accepted without an id: our reference stands in.
            None => assert_eq!(results, vec![Ok("abcd1234-9".to_string())], "code {code}"),
            Some(kc) => {
                assert_eq!(kind_code(&results[0]), *kc, "code {code}");
                let detail = &results[0].as_ref().unwrap_err().detail;
                assert!(
                    detail.contains(&format!("NetOxygen error code {code} (")),
                    "{detail}"
                );
            }
        }
    }
    assert_eq!(server.requests().len(), cases.len());
}

#[tokio::test]
async fn an_auth_fault_makes_the_provider_unusable_without_showing_the_password() {
    let server = MockServer::start(gateway).await;
    let mut bad = config(&server.url("/api2/"));
    bad.password = "wrong-Pa55".into();
    let provider = Netoxygen::new(&bad).unwrap();
    // Two texts: after the first call says "unusable", the second text is
    // not sent at all.
    let results = provider
        .send(&[sms(1, "+41791234567", "un"), sms(2, "+41791234568", "deux")])
        .await;
    let said = "NetOxygen fault 801: Authentication failed for user33 / ***";
    for ((r, expected), kind) in results
        .iter()
        .zip([
            said.to_string(),
            format!("not sent: an earlier request of the batch failed: {said}"),
        ])
        .zip([FailureKind::ProviderUnusable, FailureKind::ProviderUnusable])
    {
        assert_eq!(kind_code(r), (kind, Code::BAD_CREDENTIALS));
        let detail = &r.as_ref().unwrap_err().detail;
        assert!(!detail.contains("wrong-Pa55"), "{detail}");
        assert_eq!(detail, &expected);
    }
    assert_eq!(server.requests().len(), 1);
    // check() says the same.
    let e = provider.check().await.unwrap_err();
    assert_eq!(
        (e.kind, e.code),
        (FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS)
    );
    assert!(!e.detail.contains("wrong-Pa55"));
}

#[tokio::test]
async fn credit_and_other_faults_are_mapped() {
    let server = MockServer::start(|req| {
        let call = call(req);
        match call.base64_text(3).as_str() {
            "credit" => fault(3, "Not enough credits left on account user33"),
            _ => fault(-32602, "Wrong parameter count"),
        }
    })
    .await;
    let provider = provider(&server);
    let r = provider.send(&[sms(1, "+41791234567", "credit")]).await;
    assert_eq!(
        kind_code(&r[0]),
        (FailureKind::ProviderUnusable, Code::NO_CREDIT)
    );
    let r = provider.send(&[sms(1, "+41791234567", "other")]).await;
    assert_eq!(kind_code(&r[0]), (FailureKind::Permanent, Code::INTERNAL));
    assert_eq!(
        r[0].as_ref().unwrap_err().detail,
        "NetOxygen fault -32602: Wrong parameter count"
    );
}

#[tokio::test]
async fn a_refused_sender_is_not_a_credentials_problem() {
    // "not authorized" is about the sender here, not about our login: the
    // SMS fails with 33 and the other calls of the batch still go.
    let server = MockServer::start(|req| {
        let call = call(req);
        match call.base64_text(3).as_str() {
            "en" => fault(4, "Sender not authorized for this account"),
            "fr" => fault(4, "Expéditeur non autorisé"),
            "autre" => fault(4, "Operation not authorized"),
            _ => gateway(req),
        }
    })
    .await;
    let batch = [
        sms(1, "+41791234567", "en"),
        sms(2, "+41791234568", "fr"),
        sms(3, "+41791234569", "autre"),
        sms(4, "+41791234570", "ok"),
    ];
    let results = provider(&server).send(&batch).await;
    assert_eq!(
        kind_code(&results[0]),
        (FailureKind::Permanent, Code::SENDER_NOT_ALLOWED)
    );
    assert_eq!(
        kind_code(&results[1]),
        (FailureKind::Permanent, Code::SENDER_NOT_ALLOWED)
    );
    assert_eq!(
        kind_code(&results[2]),
        (FailureKind::Permanent, Code::INTERNAL)
    );
    assert_eq!(results[3], Ok("id-41791234570".into()));
    assert_eq!(server.requests().len(), 4);
}

#[tokio::test]
async fn a_failing_call_stops_the_batch() {
    // Three texts: three calls if all went well.
    let batch = [
        sms(1, "+41791234567", "un"),
        sms(2, "+41791234568", "deux"),
        sms(3, "+41791234569", "trois"),
    ];
    // The gateway's own failures stop a batch like HTTP ones do (those
    // are in provider_contract.rs): error 2 (gateway error), a credit fault.
    let failures = [
        response(&array(&[entry("41791234567", false, "<int>2</int>")])),
        fault(3, "Not enough credits"),
    ];
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

#[tokio::test]
async fn the_password_is_masked_in_every_escaped_form() {
    let password = "a\"b<c&d é";
    // As given, as our XML-RPC writer escapes it (quotes left alone), and
    // with quotes escaped too.
    let forms = [
        password.to_string(),
        "a\"b&lt;c&amp;d é".to_string(),
        "a&quot;b&lt;c&amp;d é".to_string(),
    ];
    let echoed = forms.clone();
    let server = MockServer::start(move |req| {
        let call = call(req);
        assert_eq!(call.string(1), "a\"b<c&d é");
        let mut page = MockResponse::status(500);
        page.body = format!("bad request: [{}]", echoed.join("] [")).into_bytes();
        page
    })
    .await;
    let mut c = config(&server.url("/api2/"));
    c.password = password.into();
    let provider = Netoxygen::new(&c).unwrap();
    let results = provider
        .send(&[sms(1, "+41791234567", "un"), sms(2, "+41791234568", "deux")])
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
    let e = provider.check().await.unwrap_err();
    for form in &forms {
        assert!(!e.detail.contains(form.as_str()), "{form} in {e:?}");
    }
}

/// A body in ISO-8859-1: é is the single byte 0xE9.
fn latin1(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| u8::try_from(u32::from(c)).expect("Latin-1"))
        .collect()
}

#[tokio::test]
async fn latin1_answers_are_decoded_by_their_declared_charset() {
    // The charset only in the XML declaration: a fault whose words are
    // only recognised once é is decoded.
    let server = MockServer::start(|_| {
        MockResponse::ok(
            "text/xml",
            latin1(
                "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<methodResponse><fault><value><struct>\
                 <member><name>faultCode</name><value><int>12</int></value></member>\
                 <member><name>faultString</name><value><string>Crédit épuisé</string></value></member>\
                 </struct></value></fault></methodResponse>\n",
            ),
        )
    })
    .await;
    let r = provider(&server)
        .send(&[sms(1, "+41791234567", ACCENTS)])
        .await;
    assert_eq!(
        kind_code(&r[0]),
        (FailureKind::ProviderUnusable, Code::NO_CREDIT)
    );
    assert_eq!(
        r[0].as_ref().unwrap_err().detail,
        "NetOxygen fault 12: Crédit épuisé"
    );

    // The charset in Content-Type and in the declaration: an accepted
    // entry whose id has accented bytes, and a refusal in words.
    let server = MockServer::start(|_| {
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<methodResponse><params><param><value>{}</value></param></params></methodResponse>\n",
            array(&[
                entry("41791234567", true, "<string>réf-é1</string>"),
                entry("41791234568", false, "<string>numéro refusé</string>"),
            ])
        );
        MockResponse::ok("text/xml; charset=ISO-8859-1", latin1(&body))
    })
    .await;
    let r = provider(&server)
        .send(&[sms(1, "+41791234567", "x"), sms(2, "+41791234568", "x")])
        .await;
    assert_eq!(r[0], Ok("réf-é1".into()));
    assert_eq!(kind_code(&r[1]), (FailureKind::Permanent, Code::INTERNAL));
    assert!(
        r[1].as_ref().unwrap_err().detail.contains("numéro refusé"),
        "{:?}",
        r[1]
    );
}

#[tokio::test]
async fn a_number_the_answer_leaves_out_is_not_reported_sent() {
    let server = MockServer::start(|req| {
        let call = call(req);
        let first = &call.numbers()[0];
        response(&array(&[entry(first, true, "<string>id-1</string>")]))
    })
    .await;
    let r = provider(&server)
        .send(&[sms(1, "+41791234567", "x"), sms(2, "+41791234568", "x")])
        .await;
    assert_eq!(r[0], Ok("id-1".into()));
    assert_eq!(kind_code(&r[1]), (FailureKind::Permanent, Code::INTERNAL));
}

#[tokio::test]
async fn malformed_answers_are_transient() {
    // XML-RPC answers of the wrong shape (HTML and empty bodies are in
    // provider_contract.rs).
    for body in [
        "<?xml version=\"1.0\"?><methodResponse><params><param><value><string>OK</string></value></param></params></methodResponse>",
        "<?xml version=\"1.0\"?><methodResponse><params><param><value><array><data>",
    ] {
        let server = MockServer::start(move |_| MockResponse::ok("text/xml", body)).await;
        let r = provider(&server).send(&[sms(1, "+41791234567", "x")]).await;
        assert_eq!(
            kind_code(&r[0]),
            (FailureKind::Transient, Code::INTERNAL),
            "{body}"
        );
    }
}

#[tokio::test]
async fn check_verifies_credentials_then_reads_the_balance() {
    let server = MockServer::start(gateway).await;
    let provider = provider(&server);
    assert_eq!(
        provider.check().await.unwrap(),
        "credentials accepted, balance 212.5 credits"
    );
    let calls: Vec<Call> = server.requests().iter().map(call).collect();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[0].name, "auth");
    assert_eq!(calls[1].name, "get_credits");
    for c in &calls {
        assert_eq!(c.params.len(), 2);
        assert!(c.credentials_ok());
    }
    for req in server.requests() {
        check_transport(&req);
    }

    // auth FALSE: unusable, code 3, and no balance asked.
    let server = MockServer::start(|_| response("<boolean>0</boolean>")).await;
    let e = self::provider(&server).check().await.unwrap_err();
    assert_eq!(
        (e.kind, e.code),
        (FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS)
    );
    assert_eq!(server.requests().len(), 1);

    // No credit left: unusable, code 12. FALSE: accepted, no balance.
    for (credits, expected) in [
        ("<int>0</int>", Err(Code::NO_CREDIT)),
        (
            "<boolean>0</boolean>",
            Ok("credentials accepted, balance unavailable (get_credits returned FALSE)"),
        ),
        (
            "<i4>40</i4>",
            Ok("credentials accepted, balance 40 credits"),
        ),
    ] {
        let server = MockServer::start(move |req| match call(req).name.as_str() {
            "auth" => response("<boolean>1</boolean>"),
            _ => response(credits),
        })
        .await;
        let got = self::provider(&server).check().await;
        match expected {
            Ok(text) => assert_eq!(got.unwrap(), text),
            Err(code) => assert_eq!(got.unwrap_err().code, code),
        }
    }
}

#[tokio::test]
async fn status_cancel_and_credits_calls() {
    let server = MockServer::start(|req| {
        let call = call(req);
        assert!(call.credentials_ok());
        match call.name.as_str() {
            "get_status" => match &call.params[2] {
                dxr::Value::Array(ids) => {
                    assert_eq!(
                        ids,
                        &vec![
                            dxr::Value::String("id-1".into()),
                            dxr::Value::String("id-2".into())
                        ]
                    );
                    response(
                        "<array><data>\
                         <value><array><data><value>id-1</value><value><int>1</int></value><value><int>1</int></value></data></array></value>\
                         <value><array><data><value>id-2</value><value><int>10</int></value><value><int>9</int></value></data></array></value>\
                         </data></array>",
                    )
                }
                other => panic!("ids: {other:?}"),
            },
            "cancel_message" => match &call.params[2] {
                dxr::Value::String(id) if id == "id-2" => response(
                    "<array><data><value><array><data><value>id-2</value><value><boolean>1</boolean></value></data></array></value></data></array>",
                ),
                other => panic!("id: {other:?}"),
            },
            "get_credits" => response("<boolean>0</boolean>"),
            other => panic!("{other}"),
        }
    })
    .await;
    let provider = provider(&server);
    let statuses = provider.get_status(&["id-1", "id-2"]).await.unwrap();
    let seen: Vec<_> = statuses
        .iter()
        .map(|s| (s.id.as_str(), &s.state, s.provider_code.as_str()))
        .collect();
    assert_eq!(
        seen,
        [
            ("id-1", &DeliveryState::Delivered, "1/1"),
            (
                "id-2",
                &DeliveryState::undelivered("Message scheduled: Message canceled"),
                "10/9"
            ),
        ]
    );
    assert_eq!(
        provider.cancel_message(&["id-2"]).await.unwrap(),
        vec![Cancellation {
            id: "id-2".into(),
            cancelled: true
        }]
    );
    assert_eq!(provider.get_credits().await.unwrap(), Credits::Unavailable);
    assert!(provider.get_status(&[]).await.unwrap().is_empty());
    let names: Vec<String> = server.requests().iter().map(|r| call(r).name).collect();
    assert_eq!(names, ["get_status", "cancel_message", "get_credits"]);
}

fn provider_toml(server: &MockServer) -> String {
    format!(
        "type = \"netoxygen\"\nurl = \"{}\"\nuser = \"{USER}\"\npassword = \"{PASSWORD}\"\ntimeout_ms = 2000\n",
        server.url("/api2/")
    )
}

fn envoi_with_sender(nums: &[&str], sms: &str) -> String {
    let nums: String = nums
        .iter()
        .enumerate()
        .map(|(i, n)| format!("<num{i}>{n}</num{i}>\n", i = i + 1))
        .collect();
    format!(
        "<envoi>\n<keyid>{KEYID}</keyid>\n{nums}<sms>{sms}</sms>\n<emetteur>MaSociete</emetteur>\n<emailNot>not@masociete.com</emailNot>\n<emailAck>ack@masociete.com</emailAck>\n<emailId>1548</emailId>\n</envoi>\n"
    )
}

#[tokio::test]
async fn email_to_sms_through_netoxygen_end_to_end() {
    let server = MockServer::start(gateway).await;
    let app = TestApp::spawn_with_provider("netoxygen", &provider_toml(&server)).await;
    let text = "L'été est fini! -10% à partir de 50€ d'achat";
    let body = envoi_with_sender(&["0601020304", "0601020300"], text);
    app.send(
        "ops@masociete.com",
        &plain_email("ops@masociete.com", &body),
    )
    .await
    .expect("accepted");

    let not = app.wait_reply_to("not@masociete.com").await;
    let etat = not.text();
    // The gateway accepted the first number and refused the second with
    // error 5 (invalid destination): iSendPro codes 0 and 7.
    assert!(
        etat.contains("<code1>0</code1>\n<tel1>0601020304</tel1>"),
        "{etat}"
    );
    assert!(
        etat.contains("<code2>7</code2>\n<tel2>0601020300</tel2>"),
        "{etat}"
    );

    let requests = server.requests();
    assert_eq!(requests.len(), 1, "one call for one text");
    check_transport(&requests[0]);
    let call = call(&requests[0]);
    assert_eq!(call.name, "send_message");
    assert_eq!(call.numbers(), ["33601020304", "33601020300"]);
    assert_eq!(call.base64_text(3), text);
    assert_eq!(call.params.len(), 5);
    assert_eq!(call.string(4), "MaSociete");
}

#[tokio::test]
async fn no_credit_at_netoxygen_is_reported_as_code_12() {
    let server = MockServer::start(|_| fault(3, "Insufficient credit balance")).await;
    let app = TestApp::spawn_with_provider("netoxygen", &provider_toml(&server)).await;
    let body = envoi("0601020304", "bonjour", "77");
    app.send(
        "ops@masociete.com",
        &plain_email("ops@masociete.com", &body),
    )
    .await
    .expect("accepted");
    let not = app.wait_reply_to("not@masociete.com").await;
    assert!(not.text().contains("<code>12</code>"), "{}", not.text());
    assert!(!not.raw.contains(PASSWORD));
    let call = call(&server.requests()[0]);
    assert_eq!(call.numbers(), ["33601020304"]);
    assert_eq!(call.base64_text(3), "bonjour");
}
