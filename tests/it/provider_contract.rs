//! The provider contract: what every HTTP adapter does whatever its wire
//! format, written once and run against each adapter through a small
//! [`Fixture`] (how to build it against a mock's base URL, a batch it sends
//! as three requests, and an answer accepting a send). Timeouts, refused
//! connections, HTTP statuses, redirects, unreadable answers, secrets in
//! errors and logs, and batches stopped at their first failing request.
//! What is specific to one wire format stays in its `provider_*.rs` file.

use crate::common::http_mock::{MockResponse, MockServer, Recorded, parse_form};
use crate::common::*;
use mail2sms::codes::Code;
use mail2sms::providers::netoxygen::{Netoxygen, NetoxygenConfig};
use mail2sms::providers::smseco::{Smseco, SmsecoConfig, SmsecoFormat};
use mail2sms::providers::smsfactor::{Smsfactor, SmsfactorConfig};
use mail2sms::providers::smsmode::{Smsmode, SmsmodeConfig};
use mail2sms::providers::{FailureKind, OutgoingSms, Provider, SendError};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The credential every fixture is configured with: plain characters, so
/// that it travels the same in every wire format (form, XML, XML-RPC) and
/// an echo of the request shows it as is.
const SECRET: &str = "S3cr3tPw0rdZ9";

/// One adapter, as the contract drives it.
struct Fixture {
    /// The provider type, for failure messages.
    name: &'static str,
    /// Builds the adapter against a mock at `base` (`http://127.0.0.1:PORT`)
    /// with this `timeout_ms`, its credential being [`SECRET`].
    build: fn(base: &str, timeout_ms: u64) -> Box<dyn Provider>,
    /// Three SMS that the adapter sends as three requests.
    batch: fn() -> Vec<OutgoingSms>,
    /// The provider's answer accepting the send request `req`.
    accept: fn(req: &Recorded) -> MockResponse,
}

fn sms(i: i64, text: &str, sender: &str) -> OutgoingSms {
    test_sms(format!("0a1b2c3d-{i}"), i, format!("+3360102030{i}"), text).with_sender(Some(sender))
}

/// Three texts (Unicode, so that sMsmode cannot use its batch call):
/// three requests for sMsmode, smsfactor and NetOxygen.
fn three_texts() -> Vec<OutgoingSms> {
    ["ça va", "ça ira", "ça roule"]
        .iter()
        .zip(1..)
        .map(|(text, i)| sms(i, text, "MaSociete"))
        .collect()
}

/// Three senders: three requests for SMSECO (which merges different
/// texts of one sender into one request).
fn three_senders() -> Vec<OutgoingSms> {
    ["Un", "Deux", "Trois"]
        .iter()
        .zip(1..)
        .map(|(sender, i)| sms(i, "Bonjour", &format!("{sender}Soc")))
        .collect()
}

fn smsmode(base: &str, timeout_ms: u64) -> Box<dyn Provider> {
    let config: SmsmodeConfig = toml::from_str(&format!(
        "url = \"{base}/http/1.6/\"\naccess_token = \"{SECRET}\"\ntimeout_ms = {timeout_ms}\n"
    ))
    .unwrap();
    Box::new(Smsmode::new(&config).unwrap())
}

fn smsmode_accept(_: &Recorded) -> MockResponse {
    MockResponse::ok("text/plain; charset=ISO-8859-15", "0 | Accepte | ID1")
}

fn smsfactor(base: &str, timeout_ms: u64) -> Box<dyn Provider> {
    let config: SmsfactorConfig = toml::from_str(&format!(
        "url = \"{base}/API/\"\nusername = \"u@masociete.com\"\npassword = \"{SECRET}\"\ntimeout_ms = {timeout_ms}\n"
    ))
    .unwrap();
    Box::new(Smsfactor::new(&config).unwrap())
}

fn smsfactor_accept(_: &Recorded) -> MockResponse {
    MockResponse::ok(
        "text/xml; charset=UTF-8",
        "<response><status>1</status><message>OK</message><ticket>T1</ticket><credits>9</credits></response>",
    )
}

fn smseco(base: &str, timeout_ms: u64) -> Box<dyn Provider> {
    let config = SmsecoConfig {
        url: format!("{base}/api/"),
        login: "ops@masociete.ci".into(),
        password: SECRET.into(),
        format: SmsecoFormat::Xml,
        timeout_ms,
        rate_limit: None,
    };
    Box::new(Smseco::new(&config).unwrap())
}

/// SMSECO lists each number it took: every `<numero>` of the request.
fn smseco_accept(req: &Recorded) -> MockResponse {
    let form = parse_form(&req.body);
    let xml = String::from_utf8_lossy(&form[0].1).into_owned();
    let numbers: Vec<&str> = xml
        .split("<numero>")
        .skip(1)
        .filter_map(|rest| rest.split("</numero>").next())
        .collect();
    let listed: String = numbers
        .iter()
        .map(|n| format!("<sms><smsfid>F-{n}</smsfid><destination>{n}</destination><credits>1</credits></sms>"))
        .collect();
    let n = numbers.len();
    MockResponse::ok(
        "text/xml; charset=UTF-8",
        format!(
            "<REPONSE><msgfid>M1</msgfid><statut>{n}</statut><texte>ok</texte><messages>{listed}</messages></REPONSE>"
        ),
    )
}

fn netoxygen(base: &str, timeout_ms: u64) -> Box<dyn Provider> {
    let config: NetoxygenConfig = toml::from_str(&format!(
        "url = \"{base}/api2/\"\nuser = \"masociete\"\npassword = \"{SECRET}\"\ntimeout_ms = {timeout_ms}\n"
    ))
    .unwrap();
    Box::new(Netoxygen::new(&config).unwrap())
}

/// The gateway answers `[dest, true, id]` for each `dest` of the call.
fn netoxygen_accept(req: &Recorded) -> MockResponse {
    let call = dxr::MethodCall::from_xml(&req.body_text()).expect("a methodCall");
    let text = |v: &dxr::Value| match v {
        dxr::Value::Base64(bytes) => String::from_utf8_lossy(bytes).into_owned(),
        other => panic!("not <base64>: {other:?}"),
    };
    let numbers: Vec<String> = match &call.params[2] {
        dxr::Value::Array(items) => items.iter().map(text).collect(),
        one => vec![text(one)],
    };
    let entries: String = numbers
        .iter()
        .map(|n| format!("<value><array><data><value><string>{n}</string></value><value><boolean>1</boolean></value><value><string>id-{n}</string></value></data></array></value>"))
        .collect();
    MockResponse::ok(
        "text/xml",
        format!(
            "<?xml version=\"1.0\"?><methodResponse><params><param><value><array><data>{entries}</data></array></value></param></params></methodResponse>"
        ),
    )
}

/// Every HTTP adapter.
const FIXTURES: [Fixture; 4] = [
    Fixture {
        name: "smsmode",
        build: smsmode,
        batch: three_texts,
        accept: smsmode_accept,
    },
    Fixture {
        name: "smsfactor",
        build: smsfactor,
        batch: three_texts,
        accept: smsfactor_accept,
    },
    Fixture {
        name: "smseco",
        build: smseco,
        batch: three_senders,
        accept: smseco_accept,
    },
    Fixture {
        name: "netoxygen",
        build: netoxygen,
        batch: three_texts,
        accept: netoxygen_accept,
    },
];

/// The batch sent to a mock answering every request with `answer`, and
/// what the mock received.
async fn send_to(
    fixture: &Fixture,
    timeout_ms: u64,
    answer: impl Fn(&Recorded) -> MockResponse + Send + Sync + 'static,
) -> (Vec<Result<String, SendError>>, Vec<Recorded>) {
    let server = MockServer::start(answer).await;
    let provider = (fixture.build)(&server.base, timeout_ms);
    let results = provider.send(&(fixture.batch)()).await;
    (results, server.requests())
}

/// The first SMS's error, after checking that the batch stopped there:
/// one request, the others not attempted.
fn stopped(name: &str, results: &[Result<String, SendError>], requests: usize) -> SendError {
    assert_eq!(requests, 1, "{name}: one request only");
    assert_eq!(results.len(), 3, "{name}");
    assert_batch_stopped(results)
}

#[tokio::test]
async fn each_fixture_sends_its_batch_as_three_accepted_requests() {
    for fixture in &FIXTURES {
        let (results, requests) = send_to(fixture, 5_000, fixture.accept).await;
        assert_eq!(requests.len(), 3, "{}", fixture.name);
        assert!(
            results.iter().all(Result::is_ok),
            "{}: {results:?}",
            fixture.name
        );
    }
}

#[tokio::test]
async fn a_timeout_is_transient_and_stops_the_batch() {
    for fixture in &FIXTURES {
        let accept = fixture.accept;
        let started = Instant::now();
        let (results, requests) = send_to(fixture, 200, move |r| {
            accept(r).delayed(Duration::from_secs(3))
        })
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{}",
            fixture.name
        );
        let e = stopped(fixture.name, &results, requests.len());
        assert_eq!((e.kind, e.code), (FailureKind::Transient, Code::INTERNAL));
        assert!(e.detail.contains("timed out"), "{}: {e:?}", fixture.name);
    }
}

#[tokio::test]
async fn a_refused_connection_is_transient_and_stops_the_batch() {
    for fixture in &FIXTURES {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let provider = (fixture.build)(&format!("http://127.0.0.1:{port}"), 2_000);
        let results = provider.send(&(fixture.batch)()).await;
        let e = assert_batch_stopped(&results);
        assert_eq!((e.kind, e.code), (FailureKind::Transient, Code::INTERNAL));
        assert!(
            e.detail.contains("cannot connect"),
            "{}: {e:?}",
            fixture.name
        );
        let check = provider.check().await.expect_err("no server");
        assert!(check.is_transient(), "{}: {check:?}", fixture.name);
    }
}

#[tokio::test]
async fn http_statuses_are_sorted_and_stop_the_batch() {
    let unusable = |code| (FailureKind::ProviderUnusable, code);
    let transient = (FailureKind::Transient, Code::INTERNAL);
    let rows = [
        (401, unusable(Code::BAD_CREDENTIALS)),
        (403, unusable(Code::BAD_CREDENTIALS)),
        (404, unusable(Code::INTERNAL)),
        (408, transient),
        (429, transient),
        (500, transient),
        (502, transient),
        (503, transient),
    ];
    for fixture in &FIXTURES {
        for (status, expected) in rows {
            let (results, requests) =
                send_to(fixture, 5_000, move |_| MockResponse::status(status)).await;
            let e = stopped(fixture.name, &results, requests.len());
            assert_eq!((e.kind, e.code), expected, "{} HTTP {status}", fixture.name);
            assert!(e.detail.starts_with(&format!("HTTP {status}")), "{e:?}");
        }
    }
}

#[tokio::test]
async fn an_unreadable_answer_is_transient_and_stops_the_batch() {
    for fixture in &FIXTURES {
        for body in ["<html><body>Maintenance</body></html>", ""] {
            let (results, requests) =
                send_to(fixture, 5_000, move |_| MockResponse::ok("text/html", body)).await;
            let e = stopped(fixture.name, &results, requests.len());
            assert_eq!(
                (e.kind, e.code),
                (FailureKind::Transient, Code::INTERNAL),
                "{} {body:?}",
                fixture.name
            );
        }
    }
}

#[tokio::test]
async fn redirects_are_never_followed() {
    for fixture in &FIXTURES {
        for status in [301, 302, 307, 308] {
            let server = MockServer::start(|_| MockResponse::status(200)).await;
            let location = format!("{}/moved/here?token={SECRET}", server.base);
            let (results, requests) = send_to(fixture, 5_000, move |_| {
                MockResponse::redirect(status, &location)
            })
            .await;
            let e = stopped(fixture.name, &results, requests.len());
            let name = fixture.name;
            assert_eq!(
                (e.kind, e.code),
                (FailureKind::ProviderUnusable, Code::INTERNAL)
            );
            assert!(
                e.detail.starts_with(&format!("HTTP {status}")),
                "{name}: {e:?}"
            );
            assert!(e.detail.contains("/moved/here"), "{name}: {e:?}");
            assert!(!e.detail.contains(SECRET), "{name}: {e:?}");
            assert!(server.requests().is_empty(), "{name}: followed to {status}");
        }
    }
}

/// A log sink for the current thread: every event of the crate, at every
/// level, written to a buffer.
#[derive(Clone, Default)]
struct LogBuffer {
    /// What was logged, shared by the subscriber's writers and the test.
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.bytes.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl LogBuffer {
    /// The crate's events (all levels, from every test of this binary),
    /// collected by a global subscriber installed on first use: a
    /// thread-scoped one can miss events whose callsites other test
    /// threads registered first.
    fn global() -> &'static LogBuffer {
        static LOGS: std::sync::OnceLock<LogBuffer> = std::sync::OnceLock::new();
        LOGS.get_or_init(|| {
            let logs = LogBuffer::default();
            let sink = logs.clone();
            let subscriber = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(
                    "mail2sms::providers=trace",
                ))
                .with_writer(move || sink.clone())
                .with_ansi(false)
                .finish();
            tracing::subscriber::set_global_default(subscriber).expect("one subscriber");
            logs
        })
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }
}

/// Answers that quote the request (its query and body), as an error page
/// or an unreadable answer might.
fn echoes(req: &Recorded) -> [MockResponse; 3] {
    let request = format!("{:?} {}", req.query, req.body_text());
    // From a little before the secret, so that the quoted part (a detail
    // keeps the start of a body) holds it.
    let at = request.find(SECRET).unwrap_or(0);
    let echo = &request[request.floor_char_boundary(at.saturating_sub(16))..];
    let mut page = MockResponse::status(500);
    page.body = format!("Internal error for {echo}").into_bytes();
    let mut denied = MockResponse::status(401);
    denied.body = format!("Denied: {echo}").into_bytes();
    [
        page,
        denied,
        MockResponse::ok("text/html", format!("<html>{echo}</html>")),
    ]
}

#[tokio::test]
async fn secrets_never_reach_errors_or_logs() {
    let logs = LogBuffer::global();
    for fixture in &FIXTURES {
        for which in 0..3 {
            let (results, requests) =
                send_to(fixture, 5_000, move |r| echoes(r)[which].clone()).await;
            assert!(
                requests.iter().any(|r| r.body_text().contains(SECRET)
                    || r.query.as_deref().unwrap_or("").contains(SECRET)),
                "{}: the echo must carry the secret for this test to mean anything",
                fixture.name
            );
            for e in results.iter().filter_map(|r| r.as_ref().err()) {
                assert!(!e.detail.contains(SECRET), "{}: {e:?}", fixture.name);
            }
            assert!(results[0].as_ref().unwrap_err().detail.contains("***"));
            let server = MockServer::start(move |r| echoes(r)[which].clone()).await;
            let check = (fixture.build)(&server.base, 5_000).check().await;
            let said = format!("{check:?}");
            assert!(!said.contains(SECRET), "{}: {said}", fixture.name);
        }
    }
    let logged = logs.text();
    // The adapters log the failures they stop a batch on: masked.
    assert!(logged.contains("***"), "nothing captured: {logged}");
    assert!(!logged.contains(SECRET), "{logged}");
}

#[tokio::test]
async fn a_batch_stops_at_its_first_failing_request() {
    for fixture in &FIXTURES {
        let count = Arc::new(AtomicUsize::new(0));
        let seen = count.clone();
        let accept = fixture.accept;
        let (results, requests) = send_to(fixture, 5_000, move |r| {
            match seen.fetch_add(1, Ordering::SeqCst) {
                0 => accept(r),
                _ => MockResponse::status(503),
            }
        })
        .await;
        let name = fixture.name;
        assert_eq!(requests.len(), 2, "{name}: the third request is never sent");
        let kinds: Vec<Option<FailureKind>> = results
            .iter()
            .map(|r| r.as_ref().err().map(|e| e.kind))
            .collect();
        let count_of = |k: Option<FailureKind>| kinds.iter().filter(|&&x| x == k).count();
        assert_eq!(count_of(None), 1, "{name}: {results:?}");
        assert_eq!(
            count_of(Some(FailureKind::Transient)),
            1,
            "{name}: {results:?}"
        );
        assert_eq!(
            count_of(Some(FailureKind::NotAttempted)),
            1,
            "{name}: {results:?}"
        );
    }
}
