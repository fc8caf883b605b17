//! The sMsmode adapter against a mock of sMsmode's HTTP API 3.1: the mock
//! reads each request as sMsmode would (POST only, the access token in the
//! body, form or multipart bodies, ISO-8859-15 or UTF-8 texts, the batch
//! CSV), refuses what the document would refuse, and answers in the
//! document's `code | description | id` format. Then end to end: an email
//! in, the SMS at the mock, the code in etatNot.

use crate::common::http_mock::{MockResponse, MockServer, Recorded, parse_form};
use crate::common::*;
use mail2sms::codes::Code;
use mail2sms::providers::smsmode::{Smsmode, SmsmodeConfig};
use mail2sms::providers::{DeliveryState, FailureKind, OutgoingSms, Provider, SendError};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The document's example access token.
const TOKEN: &str = "Ab1CD2efg3Hi";
/// The path prefix of the document's URLs.
const BASE: &str = "/http/1.6/";

/// A request as sMsmode reads it.
#[derive(Debug, Clone)]
struct Call {
    /// The call's name, e.g. `sendSMS.do`.
    name: String,
    /// The `Content-Type` header.
    content_type: String,
    /// Form fields, or the text fields of a multipart body (raw bytes).
    fields: Vec<(String, Vec<u8>)>,
    /// The multipart file part: (field name, its Content-Type, bytes).
    file: Option<(String, String, Vec<u8>)>,
}

impl Call {
    fn get(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_slice())
    }

    fn count(&self, name: &str) -> usize {
        self.fields.iter().filter(|(n, _)| n == name).count()
    }

    /// An ASCII field.
    fn ascii(&self, name: &str) -> String {
        let value = self
            .get(name)
            .unwrap_or_else(|| panic!("no {name}: {self:?}"));
        assert!(value.is_ascii(), "{name} is not ASCII: {value:?}");
        String::from_utf8(value.to_vec()).unwrap()
    }

    /// `message` decoded as sMsmode does: UTF-8 with `classe_msg=9`, else
    /// ISO-8859-15.
    fn message(&self) -> String {
        let bytes = self.get("message").expect("message");
        if self.get("classe_msg") == Some(b"9") {
            String::from_utf8(bytes.to_vec()).expect("classe_msg=9 message is UTF-8")
        } else {
            encoding_rs::ISO_8859_15.decode(bytes).0.into_owned()
        }
    }

    /// `numero`, split.
    fn numbers(&self) -> Vec<String> {
        self.ascii("numero")
            .split(',')
            .map(str::to_string)
            .collect()
    }

    /// The batch CSV's records, decoded from ISO-8859-15.
    fn csv(&self) -> Vec<Vec<String>> {
        let (_, _, bytes) = self.file.as_ref().expect("a CSV file");
        let text = encoding_rs::ISO_8859_15.decode(bytes).0.into_owned();
        csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(text.as_bytes())
            .records()
            .map(|r| r.expect("CSV record").iter().map(str::to_string).collect())
            .collect()
    }
}

/// Reads a recorded request as sMsmode would, or says why it would not.
fn parse(req: &Recorded) -> Result<Call, String> {
    if req.method != "POST" {
        return Err(format!("method {}", req.method));
    }
    let name = req
        .path
        .strip_prefix(BASE)
        .ok_or_else(|| format!("path {}", req.path))?
        .to_string();
    // sendSMSBatch.do takes its parameters in the query string, as the
    // document's curl example does; every other call in the body.
    if req.query.is_some() != (name == "sendSMSBatch.do") {
        return Err(format!("query string {:?} on {name}", req.query));
    }
    let content_type = req.header("content-type").unwrap_or("").to_string();
    let (fields, file) = if content_type.starts_with("application/x-www-form-urlencoded") {
        if !req.body.is_ascii() {
            return Err("form body is not ASCII".into());
        }
        (parse_form(&req.body), None)
    } else if let Some(boundary) = content_type.strip_prefix("multipart/form-data; boundary=") {
        let (mut fields, file) = parse_multipart(&req.body, boundary)?;
        fields.extend(req.query_pairs());
        (fields, file)
    } else {
        return Err(format!("content type {content_type:?}"));
    };
    Ok(Call {
        name,
        content_type,
        fields,
        file,
    })
}

type Multipart = (Vec<(String, Vec<u8>)>, Option<(String, String, Vec<u8>)>);

/// A strict multipart/form-data reader (RFC 7578).
fn parse_multipart(body: &[u8], boundary: &str) -> Result<Multipart, String> {
    let delimiter = format!("--{boundary}");
    let mut pieces = Vec::new();
    let mut rest = body;
    while let Some(at) = find(rest, delimiter.as_bytes()) {
        pieces.push(&rest[..at]);
        rest = &rest[at + delimiter.len()..];
    }
    if pieces.first() != Some(&&b""[..]) || rest != b"--\r\n" {
        return Err("multipart framing".into());
    }
    let mut fields = Vec::new();
    let mut file = None;
    for piece in &pieces[1..] {
        let piece = piece
            .strip_prefix(b"\r\n")
            .and_then(|p| p.strip_suffix(b"\r\n"))
            .ok_or("multipart part framing")?;
        let at = find(piece, b"\r\n\r\n").ok_or("multipart part headers")?;
        let head = std::str::from_utf8(&piece[..at]).map_err(|_| "part headers")?;
        let content = piece[at + 4..].to_vec();
        let mut name = None;
        let mut filename = None;
        let mut part_type = String::new();
        for line in head.split("\r\n") {
            let (header, value) = line.split_once(": ").ok_or("part header")?;
            if header.eq_ignore_ascii_case("content-disposition") {
                for param in value.split("; ").skip(1) {
                    let (k, v) = param.split_once('=').ok_or("disposition param")?;
                    let v = v.trim_matches('"').to_string();
                    match k {
                        "name" => name = Some(v),
                        "filename" => filename = Some(v),
                        _ => {}
                    }
                }
            } else if header.eq_ignore_ascii_case("content-type") {
                part_type = value.to_string();
            }
        }
        let name = name.ok_or("part without a name")?;
        if filename.is_some() {
            file = Some((name, part_type, content));
        } else {
            fields.push((name, content));
        }
    }
    Ok((fields, file))
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// An answer as sMsmode sends it: ISO-8859-15 text.
fn answer(text: &str) -> MockResponse {
    let (bytes, _, _) = encoding_rs::ISO_8859_15.encode(text);
    MockResponse::ok("text/plain; charset=ISO-8859-15", bytes.into_owned())
}

/// Why sMsmode refuses a send call it can read, if it does (item 3/17
/// rules; "35 | Paramètre obligatoire manquant" is the answer).
fn invalid_send(call: &Call) -> Option<String> {
    match call.name.as_str() {
        "sendSMS.do" => {
            for required in ["message", "numero", "nbr_msg", "refClient"] {
                if call.count(required) != 1 {
                    return Some(format!("{required} given {} times", call.count(required)));
                }
            }
            let numero = call.ascii("numero");
            if numero.is_empty()
                || !numero
                    .split(',')
                    .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            {
                return Some(format!("numero {numero:?}"));
            }
            let utf8 = call.get("classe_msg") == Some(b"9");
            let charset = if utf8 { "UTF-8" } else { "ISO-8859-15" };
            if call.content_type != format!("application/x-www-form-urlencoded; charset={charset}")
            {
                return Some(format!("content type {}", call.content_type));
            }
        }
        "sendSMSBatch.do" => {
            let Some((field, part_type, _)) = &call.file else {
                return Some("no file".into());
            };
            if field != "fichier" || part_type != "text/csv" {
                return Some(format!("file part {field} {part_type}"));
            }
            let records = call.csv();
            if records.first().map(|h| h.join(",")).as_deref()
                != Some("numero,message,emetteur,refClient")
            {
                return Some("CSV header".into());
            }
            if records.len() < 2 || records[1..].iter().any(|r| r.len() != 4) {
                return Some("CSV lines".into());
            }
        }
        other => return Some(format!("not a send call: {other}")),
    }
    if call.get("stop").is_some() {
        return Some("stop must not be sent".into());
    }
    let nbr = call.ascii("nbr_msg");
    if nbr.parse::<u32>().map_or(true, |n| n == 0) {
        return Some(format!("nbr_msg {nbr}"));
    }
    None
}

/// A mock sMsmode: checks the token and the request, then lets `accept`
/// answer (a valid send answers `0 | Accepté | ID<n>` if `accept` says
/// nothing).
async fn mock(
    accept: impl Fn(&Call) -> Option<MockResponse> + Send + Sync + 'static,
) -> MockServer {
    let ids = Arc::new(AtomicUsize::new(0));
    MockServer::start(move |req| {
        let call = match parse(req) {
            Ok(call) => call,
            Err(why) => return answer(&format!("35 | Paramètre obligatoire manquant ({why})")),
        };
        if call.count("accessToken") != 1 {
            return answer("35 | Paramètre obligatoire manquant");
        }
        if call.get("accessToken") != Some(TOKEN.as_bytes()) {
            return answer("32 | Erreur d'authentification");
        }
        if let Some(response) = accept(&call) {
            return response;
        }
        if let Some(why) = invalid_send(&call) {
            return answer(&format!("35 | Paramètre obligatoire manquant ({why})"));
        }
        let n = ids.fetch_add(1, Ordering::SeqCst) + 1;
        answer(&format!(
            "0 | Accepté - le message a été accepté par le système et est en cours de traitement | ID{n}"
        ))
    })
    .await
}

fn calls(server: &MockServer) -> Vec<Call> {
    server
        .requests()
        .iter()
        .map(|r| parse(r).expect("a readable request"))
        .collect()
}

fn config_for(url: &str, token: &str, timeout_ms: u64) -> SmsmodeConfig {
    toml::from_str(&format!(
        "url = \"{url}\"\naccess_token = \"{token}\"\ntimeout_ms = {timeout_ms}"
    ))
    .expect("config")
}

fn provider(server: &MockServer) -> Smsmode {
    Smsmode::new(&config_for(&server.url(BASE), TOKEN, 5_000)).expect("provider")
}

fn sms(reference: &str, to: &str, text: &str, sender: Option<&str>) -> OutgoingSms {
    test_sms(reference, 1, to, text).with_sender(sender)
}

fn ok(id: &str) -> Result<String, SendError> {
    Ok(id.to_string())
}

fn kinds(results: &[Result<String, SendError>]) -> Vec<(FailureKind, Code)> {
    results
        .iter()
        .map(|r| {
            let e = r.as_ref().expect_err("an error");
            (e.kind, e.code)
        })
        .collect()
}

const SPEC_SMS: &str = "L'été est fini! Super promo -10% à partir de 50€ d'achat !!!";

#[tokio::test]
async fn one_text_to_many_numbers_is_one_latin9_form_post() {
    let server = mock(|_| None).await;
    let batch = [
        sms("inst-1", "+33601020304", SPEC_SMS, Some("MaSociete")),
        sms("inst-2", "+33601020305", SPEC_SMS, Some("MaSociete")),
        sms("inst-3", "+447700900123", SPEC_SMS, Some("MaSociete")),
    ];
    let results = provider(&server).send(&batch).await;
    assert_eq!(results, [ok("ID1"), ok("ID1"), ok("ID1")]);

    let requests = server.requests();
    assert_eq!(requests.len(), 1, "one request for one text");
    let raw = &requests[0];
    assert_eq!(raw.method, "POST");
    assert_eq!(raw.path, "/http/1.6/sendSMS.do");
    assert_eq!(raw.query, None, "nothing in the URL");
    let call = parse(raw).unwrap();
    assert_eq!(
        call.content_type,
        "application/x-www-form-urlencoded; charset=ISO-8859-15"
    );
    assert_eq!(call.ascii("accessToken"), TOKEN);
    assert_eq!(
        call.numbers(),
        ["33601020304", "33601020305", "447700900123"]
    );
    // ISO-8859-15 bytes: é = E9, à = E0, € = A4 (not UTF-8, not Windows-1252 80).
    let bytes = call.get("message").unwrap();
    assert_eq!(bytes, &encoding_rs::ISO_8859_15.encode(SPEC_SMS).0[..]);
    assert!(bytes.contains(&0xE9) && bytes.contains(&0xA4) && !bytes.contains(&0x80));
    assert_eq!(call.message(), SPEC_SMS);
    assert_eq!(call.ascii("emetteur"), "MaSociete");
    assert_eq!(call.ascii("refClient"), "inst-1");
    assert_eq!(call.ascii("nbr_msg"), "1");
    for absent in ["classe_msg", "stop", "date_envoi"] {
        assert_eq!(call.get(absent), None, "{absent}");
    }
}

#[tokio::test]
async fn long_texts_ask_for_every_segment() {
    let server = mock(|_| None).await;
    // 161 GSM septets with the euro (2 septets each): 2 SMS; 400 chars: 3.
    let long = format!("{}€", "a".repeat(159));
    let longer = "b".repeat(400);
    let batch = [
        sms("r1", "+33601020304", &long, None),
        sms("r2", "+33601020305", &longer, None),
    ];
    let results = provider(&server).send(&batch).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let both = calls(&server);
    // Two texts, GSM-7: one batch file, nbr_msg for the longest.
    assert_eq!(both.len(), 1);
    assert_eq!(both[0].name, "sendSMSBatch.do");
    assert_eq!(both[0].ascii("nbr_msg"), "3");
    // Alone, the first goes by sendSMS.do with its own count.
    let solo = mock(|_| None).await;
    assert_eq!(provider(&solo).send(&batch[..1]).await, [ok("ID1")]);
    let solo_calls = calls(&solo);
    assert_eq!(solo_calls[0].name, "sendSMS.do");
    assert_eq!(solo_calls[0].ascii("nbr_msg"), "2");
    assert_eq!(solo_calls[0].message(), long);
}

#[tokio::test]
async fn unicode_text_goes_as_utf8_with_classe_msg_9() {
    let server = mock(|_| None).await;
    let text = "Rendez-vous confirmé ✔ à 14h, ça marche 😀";
    let batch = [
        sms("r1", "+33601020304", text, Some("PERSO")),
        sms("r2", "+33601020305", text, Some("PERSO")),
    ];
    let results = provider(&server).send(&batch).await;
    assert_eq!(results, [ok("ID1"), ok("ID1")]);
    let calls = calls(&server);
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.name, "sendSMS.do");
    assert_eq!(
        call.content_type,
        "application/x-www-form-urlencoded; charset=UTF-8"
    );
    assert_eq!(call.ascii("classe_msg"), "9");
    assert_eq!(call.get("message").unwrap(), text.as_bytes());
    assert_eq!(call.numbers(), ["33601020304", "33601020305"]);
    assert_eq!(call.ascii("emetteur"), "PERSO");
    assert_eq!(call.ascii("nbr_msg"), "1"); // 43 UTF-16 units
}

#[tokio::test]
async fn different_gsm_texts_go_as_one_csv_batch() {
    let server = mock(|_| None).await;
    let batch = [
        sms(
            "r1",
            "+33601020304",
            "Bonjour Michel, votre carte est à vous",
            Some("RDV"),
        ),
        sms(
            "r2",
            "+33601020305",
            "Bonjour Sarah, \"votre\" carte: 5€",
            None,
        ),
        sms(
            "r3",
            "+33601020306",
            "Bonjour Michel, votre carte est à vous",
            Some("TOTO"),
        ),
    ];
    let results = provider(&server).send(&batch).await;
    assert_eq!(results, [ok("ID1"), ok("ID1"), ok("ID1")]);
    let requests = server.requests();
    assert_eq!(requests.len(), 1, "one batch request");
    assert_eq!(requests[0].path, "/http/1.6/sendSMSBatch.do");
    assert!(
        requests[0]
            .query
            .as_deref()
            .is_some_and(|q| q.starts_with(&format!("accessToken={TOKEN}&nbr_msg="))),
        "the document's form: parameters in the query string"
    );
    let call = parse(&requests[0]).unwrap();
    assert!(
        call.content_type
            .starts_with("multipart/form-data; boundary=")
    );
    assert_eq!(call.ascii("accessToken"), TOKEN);
    assert_eq!(call.ascii("nbr_msg"), "1");
    assert_eq!(call.get("classe_msg"), None);
    let (field, part_type, bytes) = call.file.clone().unwrap();
    assert_eq!(
        (field.as_str(), part_type.as_str()),
        ("fichier", "text/csv")
    );
    assert!(
        bytes.contains(&0xE0) && bytes.contains(&0xA4),
        "à and € in ISO-8859-15"
    );
    assert_eq!(
        call.csv(),
        [
            vec!["numero", "message", "emetteur", "refClient"],
            vec![
                "33601020304",
                "Bonjour Michel, votre carte est à vous",
                "RDV",
                "r1"
            ],
            vec![
                "33601020305",
                "Bonjour Sarah, \"votre\" carte: 5€",
                "",
                "r2"
            ],
            vec![
                "33601020306",
                "Bonjour Michel, votre carte est à vous",
                "TOTO",
                "r3"
            ],
        ]
    );
}

#[tokio::test]
async fn different_unicode_texts_go_one_request_each() {
    let server = mock(|_| None).await;
    let batch = [
        sms("r1", "+33601020304", "ça va ?", None),
        sms("r2", "+33601020305", "ça ira", None),
        sms("r3", "+33601020306", "ça va ?", None),
        sms("r4", "+33601020307", "Plain GSM text", None),
    ];
    let results = provider(&server).send(&batch).await;
    assert_eq!(results, [ok("ID1"), ok("ID2"), ok("ID1"), ok("ID3")]);
    let calls = calls(&server);
    let summary: Vec<_> = calls
        .iter()
        .map(|c| {
            (
                c.name.as_str(),
                c.get("classe_msg").map(|v| v.to_vec()),
                c.message(),
                c.numbers(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "sendSMS.do",
                Some(b"9".to_vec()),
                "ça va ?".to_string(),
                vec!["33601020304".to_string(), "33601020306".to_string()]
            ),
            (
                "sendSMS.do",
                Some(b"9".to_vec()),
                "ça ira".to_string(),
                vec!["33601020305".to_string()]
            ),
            (
                "sendSMS.do",
                None,
                "Plain GSM text".to_string(),
                vec!["33601020307".to_string()]
            ),
        ]
    );
}

#[tokio::test]
async fn a_number_twice_goes_in_two_requests() {
    let server = mock(|_| None).await;
    let batch = [
        sms("r1", "+33601020304", "Same", None),
        sms("r2", "+33601020304", "Same", None),
    ];
    let results = provider(&server).send(&batch).await;
    assert_eq!(results, [ok("ID1"), ok("ID2")]);
    let calls = calls(&server);
    assert_eq!(calls.len(), 2);
    assert!(calls.iter().all(|c| c.numbers() == ["33601020304"]));
    assert_eq!(calls[1].ascii("refClient"), "r2");
}

#[tokio::test]
async fn scheduled_sms_carry_date_envoi_in_french_time() {
    let server = mock(|_| None).await;
    let at = |s: &str| s.parse::<jiff::Timestamp>().unwrap().as_millisecond();
    let mut winter = sms("r1", "+33601020304", "Winter", None);
    winter.send_at = Some(at("2099-01-15T13:35:00Z"));
    let mut summer = sms("r2", "+33601020305", "Summer", None);
    summer.send_at = Some(at("2099-07-14T08:00:30Z"));
    let mut past = sms("r3", "+33601020306", "Now", None);
    past.send_at = Some(at("2001-01-01T00:00:00Z"));
    let results = provider(&server).send(&[winter, summer, past]).await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let dates: Vec<_> = calls(&server)
        .iter()
        .map(|c| {
            (
                c.message(),
                c.get("date_envoi")
                    .map(|d| String::from_utf8_lossy(d).into_owned()),
            )
        })
        .collect();
    assert_eq!(
        dates,
        [
            ("Winter".to_string(), Some("15012099-14:35".to_string())),
            ("Summer".to_string(), Some("14072099-10:00".to_string())),
            ("Now".to_string(), None),
        ]
    );
}

#[tokio::test]
async fn whether_a_send_is_ahead_is_judged_by_the_providers_clock() {
    // In 2000 by the provider's clock, a send at 2001-01-01 is still ahead.
    let server = mock(|_| None).await;
    let clock = mail2sms::clock::Clock::manual("2000-06-01T00:00:00Z".parse().unwrap());
    let provider = provider(&server).with_clock(clock);
    let mut later = sms("r1", "+33601020304", "Later", None);
    later.send_at = Some(
        "2001-01-01T00:00:00Z"
            .parse::<jiff::Timestamp>()
            .unwrap()
            .as_millisecond(),
    );
    assert!(provider.send(&[later]).await[0].is_ok());
    let date = calls(&server)[0]
        .get("date_envoi")
        .map(|d| String::from_utf8_lossy(d).into_owned());
    assert_eq!(date.as_deref(), Some("01012001-01:00"));
}

#[tokio::test]
async fn every_documented_send_code_is_mapped() {
    let rows = [
        // Not called temporary by the document, and the request may have
        // been taken: the next provider, not a retry here.
        (
            "31 | Erreur interne",
            FailureKind::ProviderUnusable,
            Code::INTERNAL,
        ),
        (
            "32 | Erreur d'authentification",
            FailureKind::ProviderUnusable,
            Code::BAD_CREDENTIALS,
        ),
        (
            "33 | Crédits insuffisants",
            FailureKind::ProviderUnusable,
            Code::NO_CREDIT,
        ),
        (
            "35 | Paramètre obligatoire manquant",
            FailureKind::Permanent,
            Code::INTERNAL,
        ),
        (
            "50 | Temporairement inaccessible",
            FailureKind::Transient,
            Code::INTERNAL,
        ),
        ("44 | Nouveau code", FailureKind::Permanent, Code::INTERNAL),
    ];
    for (text, kind, code) in rows {
        for batch in [
            // sendSMS.do and sendSMSBatch.do share the table.
            vec![
                sms("r1", "+33601020304", "Hello", None),
                sms("r2", "+33601020305", "Hello", None),
            ],
            vec![
                sms("r1", "+33601020304", "Hello", None),
                sms("r2", "+33601020305", "Bye", None),
            ],
        ] {
            let server = mock(move |_| Some(answer(text))).await;
            let results = provider(&server).send(&batch).await;
            assert_eq!(kinds(&results), [(kind, code), (kind, code)], "{text}");
            let detail = &results[0].as_ref().unwrap_err().detail;
            let description = text.split(" | ").nth(1).unwrap();
            assert!(detail.contains(description), "{text}: {detail}");
            assert_eq!(server.requests().len(), 1);
        }
    }
}

#[tokio::test]
async fn unusable_provider_stops_the_batch() {
    let server = mock(|_| Some(answer("33 | Crédits insuffisants"))).await;
    let batch = [
        sms("r1", "+33601020304", "ça va ?", None),
        sms("r2", "+33601020305", "ça ira", None),
        sms("r3", "+33601020306", "ça roule", None),
    ];
    let results = provider(&server).send(&batch).await;
    assert_eq!(
        kinds(&results),
        [(FailureKind::ProviderUnusable, Code::NO_CREDIT); 3]
    );
    assert_eq!(
        server.requests().len(),
        1,
        "no request after the first refusal"
    );
}

#[tokio::test]
async fn an_acceptance_is_never_retried_whatever_its_id_looks_like() {
    // Code 0 is an acceptance: reading any of these as unreadable (and so
    // transient, retried) would send the SMS twice.
    for (text, id) in [
        ("0 | Accepté | abc def", "abc def"),
        (
            "0 | Accepté | Vz4lHUWycCKb | extra | fields",
            "Vz4lHUWycCKb",
        ),
        ("0 | Accepté", ""),
        ("0|Accepté|  id7  ", "id7"),
    ] {
        let server = mock(move |_| Some(answer(text))).await;
        let batch = [
            sms("r1", "+33601020304", "Hello", None),
            sms("r2", "+33601020305", "Hello", None),
        ];
        let results = provider(&server).send(&batch).await;
        assert_eq!(results, [ok(id), ok(id)], "{text:?}");
        assert_eq!(server.requests().len(), 1, "{text:?}");
    }
}

#[tokio::test]
async fn a_failing_request_stops_the_batch() {
    // sMsmode's own failures stop a batch like HTTP ones do (those are in
    // provider_contract.rs): 50 (temporary) and 31 (internal error).
    // Three Unicode texts: three sendSMS.do requests if all went well.
    let batch = [
        sms("r1", "+33601020304", "ça va ?", None),
        sms("r2", "+33601020305", "ça ira", None),
        sms("r3", "+33601020306", "ça roule", None),
    ];
    for text in ["50 | Temporairement inaccessible", "31 | Erreur interne"] {
        let server = mock(move |_| Some(answer(text))).await;
        let results = provider(&server).send(&batch).await;
        assert_eq!(server.requests().len(), 1, "{text}: one request only");
        assert_batch_stopped(&results);
    }
}

#[tokio::test]
async fn a_permanent_refusal_does_not_stop_the_batch() {
    let server = mock(|call| {
        (call.message() == "ça ira").then(|| answer("35 | Paramètre obligatoire manquant"))
    })
    .await;
    let batch = [
        sms("r1", "+33601020304", "ça va ?", None),
        sms("r2", "+33601020305", "ça ira", None),
        sms("r3", "+33601020306", "ça roule", None),
    ];
    let results = provider(&server).send(&batch).await;
    assert_eq!(results[0], ok("ID1"));
    assert_eq!(
        kinds(&results[1..2]),
        [(FailureKind::Permanent, Code::INTERNAL)]
    );
    assert_eq!(results[2], ok("ID2"));
    assert_eq!(server.requests().len(), 3);
}

#[tokio::test]
async fn a_wrong_token_is_refused_and_never_shown() {
    let secret = "Wr0ngS3cr3tT0k3n";
    // A server that echoes what it was sent, in a refusal and in an error page.
    let echo = |req: &Recorded| {
        let body = String::from_utf8_lossy(&req.body).into_owned();
        if req.path.ends_with("credit.do") {
            let mut page = MockResponse::status(500);
            page.body = format!("Internal error for {body}").into_bytes();
            page
        } else {
            answer(&format!("32 | Erreur d'authentification ({body})"))
        }
    };
    let server = MockServer::start(echo).await;
    let provider = Smsmode::new(&config_for(&server.url(BASE), secret, 5_000)).unwrap();
    let results = provider
        .send(&[sms("r1", "+33601020304", "Hello", None)])
        .await;
    let e = results[0].as_ref().unwrap_err();
    assert_eq!(
        (e.kind, e.code),
        (FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS)
    );
    assert!(!e.detail.contains(secret), "{e:?}");
    assert!(e.detail.contains("***"), "{e:?}");
    let e = provider.check().await.unwrap_err();
    assert!(e.is_transient());
    assert!(e.detail.starts_with("HTTP 500"), "{e:?}");
    assert!(!e.detail.contains(secret), "{e:?}");
    // Nothing in the URL of these calls.
    assert!(server.requests().iter().all(|r| r.query.is_none()));
    // And the mock really refuses wrong tokens.
    let strict = mock(|_| None).await;
    let provider = Smsmode::new(&config_for(&strict.url(BASE), secret, 5_000)).unwrap();
    let results = provider
        .send(&[sms("r1", "+33601020304", "Hello", None)])
        .await;
    assert_eq!(
        kinds(&results),
        [(FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS)]
    );
}

#[tokio::test]
async fn unreadable_answers_are_transient() {
    // A 200 whose text is not `code | …` (HTML and empty bodies are in
    // provider_contract.rs).
    let server = mock(|_| Some(MockResponse::ok("text/plain", "OK"))).await;
    let results = provider(&server)
        .send(&[
            sms("r1", "+33601020304", "Hello", None),
            sms("r2", "+33601020305", "Hello", None),
        ])
        .await;
    assert_eq!(
        kinds(&results),
        [(FailureKind::Transient, Code::INTERNAL); 2]
    );
}

#[tokio::test]
async fn check_reports_the_balance() {
    let server = mock(|call| (call.name == "credit.do").then(|| answer("212.5"))).await;
    assert_eq!(
        provider(&server).check().await,
        Ok("credentials accepted, balance 212.5 credits".to_string())
    );
    let calls = calls(&server);
    assert_eq!(calls.len(), 1);
    assert_eq!(calls[0].name, "credit.do");
    assert_eq!(
        calls[0].fields,
        [("accessToken".to_string(), TOKEN.as_bytes().to_vec())]
    );

    let post_paid = mock(|_| Some(answer("-42"))).await;
    assert_eq!(provider(&post_paid).balance().await, Ok(-42.0));

    // A refused token: the mock answers 32.
    let provider = Smsmode::new(&config_for(&server.url(BASE), "nope", 5_000)).unwrap();
    let e = provider.check().await.unwrap_err();
    assert_eq!(
        (e.kind, e.code),
        (FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS)
    );
}

#[tokio::test]
async fn delivery_reports_and_statuses() {
    let server = mock(|call| {
        let id = call
            .get("smsID")
            .map(|v| String::from_utf8_lossy(v).into_owned());
        Some(match (call.name.as_str(), id.as_deref()) {
            ("compteRendu.do", Some("12345678")) => answer("33600000000 11 | 33611111111 13"),
            ("compteRendu.do", _) => answer("61 | SMS n'existant pas ou plus"),
            ("smsStatus.do", Some("12345678")) => answer("0 | Envoyé"),
            ("smsStatus.do", _) => answer("61 | smsID invalide"),
            _ => answer("35 | Paramètre obligatoire manquant"),
        })
    })
    .await;
    let provider = provider(&server);
    let report = provider.delivery_report("12345678").await.unwrap();
    let seen: Vec<_> = report
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
                "12345678",
                Some("33600000000"),
                &DeliveryState::Delivered,
                "11"
            ),
            (
                "12345678",
                Some("33611111111"),
                &DeliveryState::Accepted,
                "13"
            ),
        ]
    );
    let status = provider.sms_status("12345678").await.unwrap();
    assert_eq!(status.state, DeliveryState::Accepted);
    assert_eq!(status.provider_code, "0");
    assert_eq!(status.provider_text, "Envoyé");
    for e in [
        provider.delivery_report("999").await.unwrap_err(),
        provider.sms_status("999").await.unwrap_err(),
    ] {
        assert_eq!((e.kind, e.code), (FailureKind::Permanent, Code::INTERNAL));
        assert!(e.detail.contains(" 61 ("), "{e:?}");
    }
    let calls = calls(&server);
    assert_eq!(calls[0].name, "compteRendu.do");
    assert_eq!(calls[0].ascii("accessToken"), TOKEN);
    assert_eq!(calls[0].ascii("smsID"), "12345678");
    assert_eq!(calls[1].name, "smsStatus.do");
}

// End to end: an email in, the SMS at the mock, the code in etatNot.

fn provider_toml(server: &MockServer, token: &str) -> String {
    format!(
        "type = \"smsmode\"\nurl = \"{}\"\naccess_token = \"{token}\"\ntimeout_ms = 2000\n",
        server.url(BASE)
    )
}

fn envoi_with_sender(num: &str, sms: &str, email_id: &str) -> String {
    format!(
        "<envoi>\n<keyid>{KEYID}</keyid>\n<num>{num}</num>\n<sms>{sms}</sms>\n<emetteur>MaSociete</emetteur>\n<emailNot>not@masociete.com</emailNot>\n<emailAck>ack@masociete.com</emailAck>\n<emailId>{email_id}</emailId>\n</envoi>\n"
    )
}

fn etat_not(email_id: &str, code: u16, tel: &str) -> Vec<u8> {
    latin1_crlf(&format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<etatNot>\n<emailId>{email_id}</emailId>\n</etatNot>\n<etat>\n<code>{code}</code>\n<tel>{tel}</tel>\n<message>{}</message>\n</etat>\n",
        Code(code).message()
    ))
}

async fn email_through(server: &MockServer, token: &str, email_id: &str) -> TestApp {
    let app = TestApp::spawn_with_provider("smsmode", &provider_toml(server, token)).await;
    let body = envoi_with_sender("0601020304", SPEC_SMS, email_id);
    app.send(
        "ops@masociete.com",
        &plain_email("ops@masociete.com", &body),
    )
    .await
    .expect("accepted");
    app
}

#[tokio::test]
async fn end_to_end_sent_sms_reports_code_0() {
    let server = mock(|_| None).await;
    let app = email_through(&server, TOKEN, "e2e-1").await;
    let not = app.wait_reply_to("not@masociete.com").await;
    assert_eq!(not.body, etat_not("e2e-1", 0, "0601020304"));
    let calls = calls(&server);
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    assert_eq!(call.name, "sendSMS.do");
    assert_eq!(call.numbers(), ["33601020304"]);
    assert_eq!(call.message(), SPEC_SMS);
    assert_eq!(call.ascii("emetteur"), "MaSociete");
    let reference = call.ascii("refClient");
    assert!(
        !reference.is_empty() && reference.len() <= 30,
        "{reference}"
    );
}

#[tokio::test]
async fn end_to_end_no_credit_reports_code_12() {
    let server = mock(|_| Some(answer("33 | Crédits insuffisants"))).await;
    let app = email_through(&server, TOKEN, "e2e-2").await;
    let not = app.wait_reply_to("not@masociete.com").await;
    assert_eq!(not.body, etat_not("e2e-2", 12, "0601020304"));
}

#[tokio::test]
async fn end_to_end_bad_token_reports_code_3() {
    let server = mock(|_| None).await;
    let app = email_through(&server, "not-the-token", "e2e-3").await;
    let not = app.wait_reply_to("not@masociete.com").await;
    assert_eq!(not.body, etat_not("e2e-3", 3, "0601020304"));
}

#[tokio::test]
async fn end_to_end_refused_parameters_report_code_999() {
    let server = mock(|_| Some(answer("35 | Paramètre obligatoire manquant"))).await;
    let app = email_through(&server, TOKEN, "e2e-4").await;
    let not = app.wait_reply_to("not@masociete.com").await;
    assert_eq!(not.body, etat_not("e2e-4", 999, "0601020304"));
}

#[tokio::test]
async fn end_to_end_a_text_per_number_goes_as_one_batch() {
    let server = mock(|_| None).await;
    let app = TestApp::spawn_with_provider("smsmode", &provider_toml(&server, TOKEN)).await;
    let sms2 = "L'été est fini! Super promo -20% à partir de 100€ d'achat !!!";
    let body = format!(
        "<envoi>\n<keyid>{KEYID}</keyid>\n<num1>0601020304</num1>\n<num2>0601020305</num2>\n<sms1>{SPEC_SMS}</sms1>\n<sms2>{sms2}</sms2>\n<emetteur>MaSociete</emetteur>\n<emailNot>not@masociete.com</emailNot>\n<emailAck>ack@masociete.com</emailAck>\n<emailId>e2e-5</emailId>\n</envoi>\n"
    );
    app.send(
        "ops@masociete.com",
        &plain_email("ops@masociete.com", &body),
    )
    .await
    .expect("accepted");
    let not = app.wait_reply_to("not@masociete.com").await;
    let text = not.text();
    assert_eq!(text.matches("<code1>0</code1>").count(), 1, "{text}");
    assert_eq!(text.matches("<code2>0</code2>").count(), 1, "{text}");
    let calls = calls(&server);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(calls[0].name, "sendSMSBatch.do");
    let mut lines: Vec<_> = calls[0].csv()[1..]
        .iter()
        .map(|r| (r[0].clone(), r[1].clone(), r[2].clone()))
        .collect();
    lines.sort();
    assert_eq!(
        lines,
        [
            (
                "33601020304".to_string(),
                SPEC_SMS.to_string(),
                "MaSociete".to_string()
            ),
            (
                "33601020305".to_string(),
                sms2.to_string(),
                "MaSociete".to_string()
            ),
        ]
    );
}
