//! The send wire format, pure: which requests a batch becomes, their bytes,
//! and what sMsmode's answers mean. No I/O here (see the parent module).

use super::charset;
use crate::codes::Code;
use crate::gsm;
use crate::providers::{OutgoingSms, SendError, http};
use jiff::tz::TimeZone;
use std::collections::HashMap;

/// One text to many numbers (`sendSMS.do`, document item 3; with
/// `classe_msg=9` for Unicode, item 16).
pub const SEND_SMS_PATH: &str = "sendSMS.do";
/// A text per number, as a CSV file (`sendSMSBatch.do`, item 17).
pub const SEND_SMS_BATCH_PATH: &str = "sendSMSBatch.do";
/// The account's balance (`credit.do`, item 5).
pub const CREDIT_PATH: &str = "credit.do";

/// The most numbers one request carries (and so [`Provider::max_batch`]).
/// POST has no documented limit (GET has 300); 500 is iSendPro's own limit
/// per request (its code 23) and the dispatcher's default batch size, and
/// bounds what one failed request sends back to the queue.
///
/// [`Provider::max_batch`]: crate::providers::Provider::max_batch
pub const MAX_NUMBERS_PER_REQUEST: usize = 500;

/// The multipart field the CSV file goes in (the document's curl example).
pub const BATCH_FILE_FIELD: &str = "fichier";

/// How a message's text travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Charset {
    /// ISO-8859-15 bytes, the default (item 3, "Caractères et encodage"):
    /// for texts that fit GSM-7 and whose every char has a Latin-9 byte.
    Latin9,
    /// UTF-8 bytes with `classe_msg=9` (item 16): any other text, so that
    /// nothing is replaced by `?`.
    Utf8,
}

impl Charset {
    /// The charset a text needs. GSM-7 texts go in Latin-9, except the few
    /// GSM-7 chars Latin-9 lacks (the Greek capitals `ΔΦΓΛΩΠΨΣΘΞ` and `¤`),
    /// which would come out as `?`: those texts go as Unicode.
    pub fn of(text: &str) -> Charset {
        if gsm::is_gsm7(text) && charset::encode(text).is_some() {
            Charset::Latin9
        } else {
            Charset::Utf8
        }
    }

    /// The bytes of `text` in this charset (Latin-9: `?` for a char it
    /// lacks, which only happens in sender ids; texts are checked by [`of`]).
    ///
    /// [`of`]: Charset::of
    pub fn encode(self, text: &str) -> Vec<u8> {
        match self {
            Charset::Latin9 => charset::encode_lossy(text),
            Charset::Utf8 => text.as_bytes().to_vec(),
        }
    }

    /// The form body's `Content-Type`, naming the charset as sMsmode's own
    /// client examples do.
    pub fn form_content_type(self) -> &'static str {
        match self {
            Charset::Latin9 => "application/x-www-form-urlencoded; charset=ISO-8859-15",
            Charset::Utf8 => "application/x-www-form-urlencoded; charset=UTF-8",
        }
    }
}

/// `nbr_msg`: the number of SMS the text needs in its charset, so that
/// sMsmode (default 5, "le message sera coupé") never cuts it.
pub fn nbr_msg(text: &str, charset: Charset) -> u32 {
    let segments = gsm::segments(text);
    match charset {
        Charset::Latin9 => segments.count,
        Charset::Utf8 if segments.encoding == gsm::Encoding::Ucs2 => segments.count,
        // A GSM-7 text sent as Unicode (Greek capitals, `¤`): count it as UCS-2.
        Charset::Utf8 => ucs2_segments(text),
    }
}

/// UCS-2 segments (70 units alone, 67 per part, a surrogate pair never
/// split), the item 16 table: 70, 134, 201, 268, 335.
fn ucs2_segments(text: &str) -> u32 {
    let units: usize = text.chars().map(char::len_utf16).sum();
    if units <= 70 {
        return 1;
    }
    let (mut count, mut used) = (1u32, 0usize);
    for c in text.chars() {
        let size = c.len_utf16();
        if used + size > 67 {
            count = count.saturating_add(1);
            used = 0;
        }
        used += size;
    }
    count
}

/// `date_envoi` (`ddMMyyyy-HH:mm`, French time) for a send at `send_at`
/// (Unix ms), or `None` to send at once. The document's format has minutes
/// only: the time is cut to its minute, and a minute already begun or past
/// means now.
pub fn date_envoi(send_at: Option<i64>, now_ms: i64, tz: &TimeZone) -> Option<String> {
    let at = send_at?;
    let minute = at - at.rem_euclid(60_000);
    if minute <= now_ms {
        return None;
    }
    let timestamp = jiff::Timestamp::from_millisecond(minute).ok()?;
    Some(
        timestamp
            .to_zoned(tz.clone())
            .strftime("%d%m%Y-%H:%M")
            .to_string(),
    )
}

/// Which call a planned request uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `sendSMS.do`: one text (and sender) to every member.
    SendSms,
    /// `sendSMSBatch.do`: a CSV line per member.
    SendSmsBatch,
}

/// One HTTP request of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedRequest {
    /// The call.
    pub endpoint: Endpoint,
    /// Indices in the batch of the SMS it carries, in batch order; each gets
    /// this request's answer.
    pub members: Vec<usize>,
    /// The charset of its text(s).
    pub charset: Charset,
    /// `date_envoi`, shared by every member.
    pub date_envoi: Option<String>,
}

/// Splits a batch into requests:
///
/// - SMS are bucketed by `date_envoi` and charset, and a number appears at
///   most once per request (a second SMS to the same number goes in a later
///   request: a provider may merge duplicates of a recipient list, and that
///   SMS would be reported sent without being sent);
/// - Unicode SMS sharing (text, sender) go as one `sendSMS.do` each group;
/// - Latin-9 SMS: if they all share (text, sender), one `sendSMS.do`;
///   otherwise one `sendSMSBatch.do` with a CSV line each. A text or sender
///   with a line break never goes in the CSV (a line-based reader on the
///   other side would split it): it goes by `sendSMS.do`;
/// - no request carries more than [`MAX_NUMBERS_PER_REQUEST`] numbers.
pub fn plan(batch: &[OutgoingSms], now_ms: i64, tz: &TimeZone) -> Vec<PlannedRequest> {
    type Group<'a> = Option<(&'a str, Option<&'a str>)>;
    type Key<'a> = (usize, Option<String>, Charset, Group<'a>);
    let mut occurrences: HashMap<&str, usize> = HashMap::new();
    let mut index: HashMap<Key, usize> = HashMap::new();
    let mut buckets: Vec<(Charset, Option<String>, Vec<usize>)> = Vec::new();
    for (i, sms) in batch.iter().enumerate() {
        let seen = occurrences.entry(sms.to.as_str()).or_insert(0);
        let round = *seen;
        *seen += 1;
        let charset = Charset::of(&sms.text);
        let date = date_envoi(sms.send_at, now_ms, tz);
        let csv_ok =
            !has_line_break(&sms.text) && !sms.sender_id.as_deref().is_some_and(has_line_break);
        let group = if charset == Charset::Latin9 && csv_ok {
            None
        } else {
            Some((sms.text.as_str(), sms.sender_id.as_deref()))
        };
        let key = (round, date.clone(), charset, group);
        let at = *index.entry(key).or_insert_with(|| {
            buckets.push((charset, date, Vec::new()));
            buckets.len() - 1
        });
        buckets[at].2.push(i);
    }
    let mut requests = Vec::new();
    for (charset, date_envoi, members) in buckets {
        let first = &batch[members[0]];
        let one_text = members
            .iter()
            .all(|&i| batch[i].text == first.text && batch[i].sender_id == first.sender_id);
        let endpoint = if one_text {
            Endpoint::SendSms
        } else {
            Endpoint::SendSmsBatch
        };
        for chunk in members.chunks(MAX_NUMBERS_PER_REQUEST) {
            requests.push(PlannedRequest {
                endpoint,
                members: chunk.to_vec(),
                charset,
                date_envoi: date_envoi.clone(),
            });
        }
    }
    requests
}

fn has_line_break(text: &str) -> bool {
    text.contains(['\r', '\n'])
}

/// A request's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedRequest {
    /// The path under the configured `url`.
    pub path: &'static str,
    /// The query string, if the call takes its parameters there.
    pub query: Option<String>,
    /// The `Content-Type` header.
    pub content_type: String,
    /// The body.
    pub body: Vec<u8>,
}

/// The `sendSMS.do` form body of a [`PlannedRequest`] (whose members share
/// text and sender): `accessToken`, `classe_msg=9` for Unicode, `message`,
/// `emetteur` if any, `numero` (international digits, comma-separated),
/// `date_envoi` if scheduled, `nbr_msg`, and `refClient` (the first member's
/// reference: the API takes one per request). `stop` is never sent: the
/// text is the account's, STOP mention included.
pub fn encode_send_sms(
    token: &str,
    batch: &[OutgoingSms],
    request: &PlannedRequest,
) -> EncodedRequest {
    let first = &batch[request.members[0]];
    let charset = request.charset;
    let numbers = request
        .members
        .iter()
        .map(|&i| http::digits(&batch[i].to))
        .collect::<Vec<_>>()
        .join(",");
    let mut pairs: Vec<(&str, Vec<u8>)> = vec![("accessToken", token.as_bytes().to_vec())];
    if charset == Charset::Utf8 {
        pairs.push(("classe_msg", b"9".to_vec()));
    }
    pairs.push(("message", charset.encode(&first.text)));
    if let Some(sender) = &first.sender_id {
        pairs.push(("emetteur", charset.encode(sender)));
    }
    pairs.push(("numero", numbers.into_bytes()));
    if let Some(date) = &request.date_envoi {
        pairs.push(("date_envoi", date.as_bytes().to_vec()));
    }
    pairs.push((
        "nbr_msg",
        nbr_msg(&first.text, charset).to_string().into_bytes(),
    ));
    pairs.push(("refClient", first.reference.as_bytes().to_vec()));
    let refs: Vec<(&str, &[u8])> = pairs.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    EncodedRequest {
        path: SEND_SMS_PATH,
        query: None,
        content_type: charset.form_content_type().to_string(),
        body: http::form_encode(&refs).into_bytes(),
    }
}

/// The CSV file of a `sendSMSBatch.do` (item 17, in ISO-8859-15): the
/// example's header `"numero","message","emetteur","refClient"`, then a line
/// per member, every field quoted (`"` doubled), lines ended by CRLF. An SMS
/// without sender id has an empty `emetteur`, as in the example's line 2.
pub fn batch_csv(batch: &[OutgoingSms], members: &[usize]) -> Vec<u8> {
    let mut csv = Vec::new();
    csv.extend_from_slice(b"\"numero\",\"message\",\"emetteur\",\"refClient\"\r\n");
    for &i in members {
        let sms = &batch[i];
        let fields = [
            http::digits(&sms.to).as_bytes().to_vec(),
            charset::encode_lossy(&sms.text),
            charset::encode_lossy(sms.sender_id.as_deref().unwrap_or("")),
            sms.reference.as_bytes().to_vec(),
        ];
        for (n, field) in fields.iter().enumerate() {
            if n > 0 {
                csv.push(b',');
            }
            csv.push(b'"');
            for &b in field {
                if b == b'"' {
                    csv.push(b'"');
                }
                csv.push(b);
            }
            csv.push(b'"');
        }
        csv.extend_from_slice(b"\r\n");
    }
    csv
}

/// A boundary that occurs nowhere in `content`, from `random`.
pub fn pick_boundary(content: &[u8], mut random: impl FnMut() -> u64) -> String {
    loop {
        let boundary = format!("mail2sms-{:016x}{:016x}", random(), random());
        let found = content
            .windows(boundary.len())
            .any(|w| w == boundary.as_bytes());
        if !found {
            return boundary;
        }
    }
}

/// The `sendSMSBatch.do` request of a [`PlannedRequest`], as the
/// document's curl example sends it: `accessToken`, `nbr_msg` (the longest
/// line's count) and `date_envoi` if scheduled in the query string, and a
/// `multipart/form-data` body with the CSV file in the field `fichier` as
/// `text/csv`. (The URL therefore holds the token: no error or log line
/// ever shows a URL.)
pub fn encode_send_batch(
    token: &str,
    batch: &[OutgoingSms],
    request: &PlannedRequest,
    boundary: &str,
) -> EncodedRequest {
    let nbr = request
        .members
        .iter()
        .map(|&i| nbr_msg(&batch[i].text, Charset::Latin9))
        .max()
        .unwrap_or(1);
    let mut fields: Vec<(&str, Vec<u8>)> = vec![
        ("accessToken", token.as_bytes().to_vec()),
        ("nbr_msg", nbr.to_string().into_bytes()),
    ];
    if let Some(date) = &request.date_envoi {
        fields.push(("date_envoi", date.as_bytes().to_vec()));
    }
    let refs: Vec<(&str, &[u8])> = fields.iter().map(|(k, v)| (*k, v.as_slice())).collect();
    let query = http::form_encode(&refs);
    let mut body = Vec::new();
    body.extend_from_slice(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"{BATCH_FILE_FIELD}\"; filename=\"sms.csv\"\r\nContent-Type: text/csv\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(&batch_csv(batch, &request.members));
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    EncodedRequest {
        path: SEND_SMS_BATCH_PATH,
        query: Some(query),
        content_type: format!("multipart/form-data; boundary={boundary}"),
        body,
    }
}

/// What a send call answered (`code_retour | description | smsID`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendAnswer {
    /// Code 0: accepted; the `smsID` (or `campagneID`), empty if the answer
    /// had none.
    Accepted(String),
    /// Any other code, with the provider's description.
    Refused {
        /// `code_retour`.
        code: u32,
        /// The description, as given.
        description: String,
    },
}

/// Reads a send answer. An answer that does not start with a numeric code
/// is malformed: a transient error (it may be a proxy's or a maintenance
/// page, and the request may not have been read).
///
/// Code `0` is always an acceptance, whatever follows it: sMsmode has taken
/// the request, and sending it again would send every SMS twice. The id is
/// the third field (`0 | description | id`), trimmed; an answer without
/// one, with an id holding blanks, or with more fields than the document's
/// three is still accepted, and the oddity is logged.
pub fn decode_send(text: &str) -> Result<SendAnswer, SendError> {
    let (code, rest) = split_answer(text)?;
    if code == 0 {
        let id = rest.get(1).copied().unwrap_or("");
        if rest.len() > 2 || id.contains(char::is_whitespace) {
            tracing::warn!(
                fields = rest.len() + 1,
                id,
                "smsmode: odd acceptance answer (code 0); counted as sent with this id"
            );
        }
        Ok(SendAnswer::Accepted(id.to_string()))
    } else {
        Ok(SendAnswer::Refused {
            code,
            description: rest.join(" | "),
        })
    }
}

/// `code | field | field…` → (code, trimmed fields); malformed if the
/// first field is not a number.
pub(crate) fn split_answer(text: &str) -> Result<(u32, Vec<&str>), SendError> {
    let trimmed = text.trim().trim_start_matches('\u{feff}').trim();
    let mut fields = trimmed.split('|').map(str::trim);
    let code = fields
        .next()
        .and_then(|c| c.parse::<u32>().ok())
        .ok_or_else(|| malformed(text))?;
    Ok((code, fields.collect()))
}

/// A transient error for an answer we cannot read.
pub(crate) fn malformed(text: &str) -> SendError {
    let snippet = http::snippet(text);
    let snippet = if snippet.is_empty() {
        ": (empty)".to_string()
    } else {
        snippet
    };
    SendError::transient(format!("sMsmode: unreadable answer{snippet}"))
}

/// The send table (items 3, 16, 17 "Réponse"): a refusal's code → how to
/// handle it and the iSendPro code.
pub fn send_error(code: u32, description: &str) -> SendError {
    let detail = |meaning: &str| {
        if description.is_empty() {
            format!("sMsmode {code} ({meaning})")
        } else {
            format!("sMsmode {code} ({meaning}): {description}")
        }
    };
    match code {
        // "Erreur interne": not called temporary by the document (only 50
        // is), and the request may have been taken before it failed:
        // retrying here could send it twice. The next provider is tried at
        // once; 999 if there is none.
        31 => SendError::unusable(Code::INTERNAL, detail("internal error")),
        // "Erreur d'authentification": the access token is refused.
        32 => SendError::unusable(Code::BAD_CREDENTIALS, detail("authentication failed")),
        // "Crédits insuffisants".
        33 => SendError::unusable(Code::NO_CREDIT, detail("insufficient credits")),
        // "Paramètre obligatoire manquant": this request cannot be sent as it
        // is (an empty text, say); sending it again will not help.
        35 => SendError::permanent(Code::INTERNAL, detail("missing parameter")),
        // "Temporairement inaccessible".
        50 => SendError::transient(detail("temporarily unavailable")),
        _ => SendError::permanent(Code::INTERNAL, detail("undocumented code")),
    }
}

/// Reads a `credit.do` answer: a bare number (`212.5`; negative for a
/// post-paid account), or an error as `code | description` (mapped by
/// [`send_error`]). A bare number is always a balance.
pub fn decode_credit(text: &str) -> Result<f64, SendError> {
    let trimmed = text.trim().trim_start_matches('\u{feff}').trim();
    if trimmed.contains('|') {
        return match split_answer(trimmed)? {
            (0, _) => Err(malformed(text)),
            (code, rest) => Err(send_error(code, &rest.join(" | "))),
        };
    }
    trimmed
        .replace(',', ".")
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| malformed(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::FailureKind;
    use crate::providers::http::form_encode;

    fn paris() -> TimeZone {
        TimeZone::get("Europe/Paris").unwrap()
    }

    fn sms(reference: &str, to: &str, text: &str, sender: Option<&str>) -> OutgoingSms {
        crate::providers::test_sms(reference, 1, to, text).with_sender(sender)
    }

    fn pairs(body: &[u8]) -> Vec<(String, Vec<u8>)> {
        // An independent decoder of the form body.
        let text = std::str::from_utf8(body).expect("form bodies are ASCII");
        text.split('&')
            .map(|pair| {
                let (k, v) = pair.split_once('=').unwrap();
                let mut out = Vec::new();
                let bytes = v.as_bytes();
                let mut i = 0;
                while i < bytes.len() {
                    match bytes[i] {
                        b'+' => out.push(b' '),
                        b'%' => {
                            out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap());
                            i += 2;
                        }
                        b => out.push(b),
                    }
                    i += 1;
                }
                (k.to_string(), out)
            })
            .collect()
    }

    fn one_request(batch: &[OutgoingSms]) -> PlannedRequest {
        let mut plan = plan(batch, 0, &paris());
        assert_eq!(plan.len(), 1, "{plan:?}");
        plan.remove(0)
    }

    #[test]
    fn the_documents_first_example() {
        // sendSMS.do?accessToken=Ab1CD2efg3Hi&message=Bonjour+Maman&numero=3363123456,…
        // (the example's second number is national: we always send E.164 digits).
        let batch = [
            sms("r1", "+3363123456", "Bonjour Maman", None),
            sms("r2", "+33623123457", "Bonjour Maman", None),
        ];
        let request = one_request(&batch);
        assert_eq!(request.endpoint, Endpoint::SendSms);
        let encoded = encode_send_sms("Ab1CD2efg3Hi", &batch, &request);
        assert_eq!(encoded.path, "sendSMS.do");
        assert_eq!(
            encoded.content_type,
            "application/x-www-form-urlencoded; charset=ISO-8859-15"
        );
        assert_eq!(
            String::from_utf8(encoded.body).unwrap(),
            "accessToken=Ab1CD2efg3Hi&message=Bonjour+Maman&numero=3363123456%2C33623123457&nbr_msg=1&refClient=r1"
        );
    }

    #[test]
    fn the_documents_scheduled_example() {
        // …&message=Bon+anniversaire&numero=3363123456&date_envoi=21122005-14:35
        let at = jiff::civil::date(2005, 12, 21)
            .at(14, 35, 0, 0)
            .to_zoned(paris())
            .unwrap()
            .timestamp()
            .as_millisecond();
        let mut one = sms("r1", "+3363123456", "Bon anniversaire", None);
        one.send_at = Some(at + 59_999); // cut to its minute
        let batch = [one];
        let request = one_request(&batch);
        assert_eq!(request.date_envoi.as_deref(), Some("21122005-14:35"));
        let encoded = encode_send_sms("Ab1CD2efg3Hi", &batch, &request);
        assert_eq!(
            pairs(&encoded.body),
            [
                ("accessToken".to_string(), b"Ab1CD2efg3Hi".to_vec()),
                ("message".into(), b"Bon anniversaire".to_vec()),
                ("numero".into(), b"3363123456".to_vec()),
                ("date_envoi".into(), b"21122005-14:35".to_vec()),
                ("nbr_msg".into(), b"1".to_vec()),
                ("refClient".into(), b"r1".to_vec()),
            ]
        );
    }

    #[test]
    fn the_documents_unicode_example() {
        // …&classe_msg=9&message=%E2%98%BA&emetteur=PERSO&numero=3363123456,…
        let batch = [
            sms("r1", "+3363123456", "☺", Some("PERSO")),
            sms("r2", "+33623123457", "☺", Some("PERSO")),
        ];
        let request = one_request(&batch);
        assert_eq!(request.charset, Charset::Utf8);
        let encoded = encode_send_sms("Ab1CD2efg3Hi", &batch, &request);
        assert_eq!(
            encoded.content_type,
            "application/x-www-form-urlencoded; charset=UTF-8"
        );
        assert_eq!(
            String::from_utf8(encoded.body).unwrap(),
            "accessToken=Ab1CD2efg3Hi&classe_msg=9&message=%E2%98%BA&emetteur=PERSO&numero=3363123456%2C33623123457&nbr_msg=1&refClient=r1"
        );
    }

    #[test]
    fn the_documents_character_table() {
        // Every row of "Caractères et encodage", as the body carries it.
        let table: &[(&str, &str)] = &[
            ("\n", "%0A"),
            ("\r", "%0D"),
            (" ", "+"),
            ("!", "%21"),
            ("\"", "%22"),
            ("#", "%23"),
            ("$", "%24"),
            ("%", "%25"),
            ("&", "%26"),
            ("'", "%27"),
            ("(", "%28"),
            (")", "%29"),
            ("*", "*"),
            ("+", "%2B"),
            (",", "%2C"),
            ("-", "-"),
            (".", "."),
            ("/", "%2F"),
            ("{", "%7B"),
            ("|", "%7C"),
            ("}", "%7D"),
            ("~", "%7E"),
            ("[", "%5B"),
            ("\\", "%5C"),
            ("]", "%5D"),
            ("^", "%5E"),
            (":", "%3A"),
            (";", "%3B"),
            ("<", "%3C"),
            ("=", "%3D"),
            (">", "%3E"),
            ("?", "%3F"),
            ("@", "%40"),
            ("AZaz09", "AZaz09"),
            ("¡", "%A1"),
            ("£", "%A3"),
            ("€", "%A4"),
            ("¥", "%A5"),
            ("§", "%A7"),
            ("¿", "%BF"),
            ("Ä", "%C4"),
            ("Å", "%C5"),
            ("Æ", "%C6"),
            ("Ç", "%C7"),
            ("É", "%C9"),
            ("Ñ", "%D1"),
            ("Ö", "%D6"),
            ("Ø", "%D8"),
            ("Ü", "%DC"),
            ("ß", "%DF"),
            ("à", "%E0"),
            ("ä", "%E4"),
            ("å", "%E5"),
            ("æ", "%E6"),
            ("è", "%E8"),
            ("é", "%E9"),
            ("ì", "%EC"),
            ("ñ", "%F1"),
            ("ò", "%F2"),
            ("ö", "%F6"),
            ("ø", "%F8"),
            ("ù", "%F9"),
            ("ü", "%FC"),
        ];
        for (text, encoded) in table {
            assert_eq!(Charset::of(text), Charset::Latin9, "{text:?}");
            let bytes = Charset::Latin9.encode(text);
            assert_eq!(
                form_encode(&[("message", &bytes)]),
                format!("message={encoded}"),
                "{text:?}"
            );
        }
        // È is in the table but not in GSM-7: such a text goes as Unicode.
        assert_eq!(charset::latin9_byte('È'), Some(0xC8));
        assert_eq!(Charset::of("È"), Charset::Utf8);
    }

    #[test]
    fn charsets() {
        assert_eq!(
            Charset::of("L'été est fini! -10% à 50€ d'achat"),
            Charset::Latin9
        );
        assert_eq!(Charset::of("ça"), Charset::Utf8); // ç is not GSM-7
        assert_eq!(Charset::of("Ω"), Charset::Utf8); // GSM-7, not Latin-9
        assert_eq!(Charset::of("¤"), Charset::Utf8);
        assert_eq!(Charset::of("œ"), Charset::Utf8); // Latin-9, not GSM-7
    }

    #[test]
    fn nbr_msg_is_what_the_text_needs() {
        // The document's tables: 160 / 306 / 459 (GSM), 70 / 134 / 201 (Unicode).
        let a = |n: usize| "a".repeat(n);
        for (text, count) in [
            (a(160), 1),
            (a(161), 2),
            (a(306), 2),
            (a(307), 3),
            (a(459), 3),
            (a(1000), 7),
        ] {
            assert_eq!(nbr_msg(&text, Charset::Latin9), count, "{}", text.len());
        }
        // Extension chars count double ("ces caractères comptent double").
        assert_eq!(nbr_msg(&"€".repeat(80), Charset::Latin9), 1);
        assert_eq!(nbr_msg(&"€".repeat(81), Charset::Latin9), 2);
        let u = |n: usize| "ç".repeat(n);
        for (n, count) in [(70, 1), (71, 2), (134, 2), (135, 3), (201, 3), (335, 5)] {
            assert_eq!(nbr_msg(&u(n), Charset::Utf8), count, "{n}");
        }
        // GSM-7 text sent as Unicode is counted as Unicode.
        assert_eq!(nbr_msg(&"Ω".repeat(70), Charset::Utf8), 1);
        assert_eq!(nbr_msg(&"Ω".repeat(71), Charset::Utf8), 2);
        assert_eq!(nbr_msg(&"Ω".repeat(135), Charset::Utf8), 3);
        // Characters outside U+FFFF count double and are not split.
        assert_eq!(nbr_msg(&"😀".repeat(35), Charset::Utf8), 1);
        assert_eq!(ucs2_segments(&format!("{}😀", "Ω".repeat(68))), 1);
        assert_eq!(ucs2_segments(&format!("{}😀", "Ω".repeat(69))), 2);
        // 134 units, but the pair cannot straddle parts 1 and 2: three parts.
        let straddling = format!("{}😀{}", "Ω".repeat(66), "Ω".repeat(66));
        assert_eq!(ucs2_segments(&straddling), 3);
    }

    #[test]
    fn long_texts_carry_their_segment_count() {
        let text = "x".repeat(200);
        let batch = [sms("r1", "+33601020304", &text, None)];
        let encoded = encode_send_sms("t", &batch, &one_request(&batch));
        assert!(
            pairs(&encoded.body).contains(&("nbr_msg".into(), b"2".to_vec())),
            "{:?}",
            String::from_utf8_lossy(&encoded.body)
        );
    }

    #[test]
    fn dates_are_french_local_time_and_never_past() {
        let tz = paris();
        let ms = |y, mo, d, h, mi| {
            jiff::civil::date(y, mo, d)
                .at(h, mi, 0, 0)
                .to_zoned(TimeZone::UTC)
                .unwrap()
                .timestamp()
                .as_millisecond()
        };
        // Winter: UTC+1; summer: UTC+2.
        assert_eq!(
            date_envoi(Some(ms(2030, 1, 15, 13, 35)), 0, &tz).as_deref(),
            Some("15012030-14:35")
        );
        assert_eq!(
            date_envoi(Some(ms(2030, 7, 14, 8, 0)), 0, &tz).as_deref(),
            Some("14072030-10:00")
        );
        // Past, or within the minute under way: at once.
        let now = ms(2030, 1, 15, 13, 35) + 10_000;
        assert_eq!(date_envoi(Some(now - 1), now, &tz), None);
        assert_eq!(date_envoi(Some(now + 40_000), now, &tz), None);
        assert_eq!(
            date_envoi(Some(now + 50_000), now, &tz).as_deref(),
            Some("15012030-14:36")
        );
        assert_eq!(date_envoi(None, now, &tz), None);
    }

    #[test]
    fn one_text_many_numbers_is_one_request() {
        let batch: Vec<_> = (0..5)
            .map(|i| {
                sms(
                    &format!("r{i}"),
                    &format!("+3360102030{i}"),
                    "Hi",
                    Some("ACME"),
                )
            })
            .collect();
        let plan = plan(&batch, 0, &paris());
        assert_eq!(
            plan,
            [PlannedRequest {
                endpoint: Endpoint::SendSms,
                members: vec![0, 1, 2, 3, 4],
                charset: Charset::Latin9,
                date_envoi: None,
            }]
        );
    }

    #[test]
    fn different_texts_are_batched_by_charset_and_date() {
        let mut later = sms("r6", "+33600000006", "Later", None);
        later.send_at = Some(4_102_444_800_000); // 2100-01-01
        let batch = [
            sms("r0", "+33600000000", "Hello A", None),
            sms("r1", "+33600000001", "Hello B", Some("ACME")),
            sms("r2", "+33600000002", "ça va ?", None),
            sms("r3", "+33600000003", "Hello A", None),
            sms("r4", "+33600000004", "ça va ?", None),
            sms("r5", "+33600000005", "ça ira", None),
            later,
            sms("r7", "+33600000007", "Two\nlines", None),
            sms("r8", "+33600000008", "Hello A", Some("OTHER")),
        ];
        let plan = plan(&batch, 0, &paris());
        let summary: Vec<_> = plan
            .iter()
            .map(|r| {
                (
                    r.endpoint,
                    r.charset,
                    r.members.clone(),
                    r.date_envoi.clone(),
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                (
                    Endpoint::SendSmsBatch,
                    Charset::Latin9,
                    vec![0, 1, 3, 8],
                    None
                ),
                (Endpoint::SendSms, Charset::Utf8, vec![2, 4], None),
                (Endpoint::SendSms, Charset::Utf8, vec![5], None),
                (
                    Endpoint::SendSms,
                    Charset::Latin9,
                    vec![6],
                    Some("01012100-01:00".into())
                ),
                (Endpoint::SendSms, Charset::Latin9, vec![7], None),
            ]
        );
    }

    #[test]
    fn a_number_appears_once_per_request() {
        let batch = [
            sms("r0", "+33600000000", "Same", None),
            sms("r1", "+33600000001", "Same", None),
            sms("r2", "+33600000000", "Same", None),
            sms("r3", "+33600000000", "Same", None),
        ];
        let members: Vec<_> = plan(&batch, 0, &paris())
            .into_iter()
            .map(|r| r.members)
            .collect();
        assert_eq!(members, [vec![0, 1], vec![2], vec![3]]);
    }

    #[test]
    fn requests_are_capped() {
        let batch: Vec<_> = (0..1203)
            .map(|i| sms(&format!("r{i}"), &format!("+336{i:08}"), "Same", None))
            .collect();
        let sizes: Vec<_> = plan(&batch, 0, &paris())
            .iter()
            .map(|r| r.members.len())
            .collect();
        assert_eq!(sizes, [500, 500, 203]);
    }

    #[test]
    fn the_documents_batch_file() {
        // The example file's lines, as our encoder writes them (every field
        // quoted; the example leaves some numbers bare, which CSV reads alike).
        let batch = [
            sms(
                "ref123",
                "+99999911",
                "Ceci est le corps du message 1, test fichier CSV",
                Some("RDV"),
            ),
            sms(
                "ref456",
                "88888888",
                "Ceci est le corps du message 2, test fichier CSV",
                None,
            ),
            sms(
                "ref789",
                "+77777777",
                "Ceci est le corps du message 3, test fichier CSV",
                Some("TOTO"),
            ),
        ];
        let csv = batch_csv(&batch, &[0, 1, 2]);
        assert_eq!(
            String::from_utf8(csv.clone()).unwrap(),
            "\"numero\",\"message\",\"emetteur\",\"refClient\"\r\n\
             \"99999911\",\"Ceci est le corps du message 1, test fichier CSV\",\"RDV\",\"ref123\"\r\n\
             \"88888888\",\"Ceci est le corps du message 2, test fichier CSV\",\"\",\"ref456\"\r\n\
             \"77777777\",\"Ceci est le corps du message 3, test fichier CSV\",\"TOTO\",\"ref789\"\r\n"
        );
        // A CSV reader sees the document's own records.
        let example = "\"numero\",\"message\",\"emetteur\",\"refClient\"\n\"99999911\",\"Ceci est le corps du message 1, test fichier CSV\",\"RDV\",\"ref123\"\n88888888,\"Ceci est le corps du message 2, test fichier CSV\",\"\",\"ref456\"\n77777777,\"Ceci est le corps du message 3, test fichier CSV\",\"TOTO\",\"ref789\"\n";
        let read = |bytes: &[u8]| -> Vec<csv::ByteRecord> {
            csv::ReaderBuilder::new()
                .has_headers(false)
                .from_reader(bytes)
                .byte_records()
                .map(Result::unwrap)
                .collect()
        };
        assert_eq!(read(&csv), read(example.as_bytes()));
    }

    #[test]
    fn batch_file_is_latin9_and_quotes_quotes() {
        let batch = [sms("r1", "+33600000001", "Dit \"oui\" à 5€", None)];
        let csv = batch_csv(&batch, &[0]);
        let line = &csv[csv.iter().position(|&b| b == b'\n').unwrap() + 1..];
        assert_eq!(
            line,
            b"\"33600000001\",\"Dit \"\"oui\"\" \xe0 5\xa4\",\"\",\"r1\"\r\n"
        );
    }

    #[test]
    fn batch_request_is_multipart() {
        let batch = [
            sms("r1", "+33600000001", "One", Some("ACME")),
            sms("r2", "+33600000002", &"Two".repeat(60), None),
        ];
        let request = one_request(&batch);
        assert_eq!(request.endpoint, Endpoint::SendSmsBatch);
        let encoded = encode_send_batch("Ab1CD2efg3Hi", &batch, &request, "BOUND");
        assert_eq!(encoded.path, "sendSMSBatch.do");
        assert_eq!(encoded.content_type, "multipart/form-data; boundary=BOUND");
        assert_eq!(
            encoded.query.as_deref(),
            Some("accessToken=Ab1CD2efg3Hi&nbr_msg=2")
        );
        let expected = format!(
            "--BOUND\r\nContent-Disposition: form-data; name=\"fichier\"; filename=\"sms.csv\"\r\nContent-Type: text/csv\r\n\r\n\
             \"numero\",\"message\",\"emetteur\",\"refClient\"\r\n\
             \"33600000001\",\"One\",\"ACME\",\"r1\"\r\n\
             \"33600000002\",\"{}\",\"\",\"r2\"\r\n\
             \r\n--BOUND--\r\n",
            "Two".repeat(60)
        );
        assert_eq!(String::from_utf8(encoded.body).unwrap(), expected);
    }

    #[test]
    fn boundaries_avoid_the_content() {
        let mut values = [1u64, 2, 3, 4].into_iter();
        let taken = format!("mail2sms-{:016x}{:016x}", 1, 2);
        let boundary = pick_boundary(taken.as_bytes(), || values.next().unwrap());
        assert_eq!(boundary, format!("mail2sms-{:016x}{:016x}", 3, 4));
    }

    #[test]
    fn accepted_answers() {
        assert_eq!(
            decode_send(
                "0 | Accepté - le message a été accepté par le système et est en cours de traitement | Vz4lHUWycCKb\n"
            ),
            Ok(SendAnswer::Accepted("Vz4lHUWycCKb".into()))
        );
        assert_eq!(
            decode_send("0|Accepté|abc"),
            Ok(SendAnswer::Accepted("abc".into()))
        );
        assert_eq!(
            decode_send("0 | Accepté"),
            Ok(SendAnswer::Accepted(String::new()))
        );
        assert_eq!(decode_send("0"), Ok(SendAnswer::Accepted(String::new())));
    }

    #[test]
    fn any_code_0_answer_is_an_acceptance() {
        // Retrying any of these would send the SMS twice: sMsmode took them.
        for (text, id) in [
            ("0 | Accepté | abc def", "abc def"),
            ("0 | Accepté | two words", "two words"),
            ("0|Accepté|  Vz4l  \r\n", "Vz4l"),
            ("0 | Accepté | id1 | extra", "id1"),
            ("0 | Accepté | | extra | more", ""),
            ("0 | | id2", "id2"),
            ("\u{feff}0 | Accepté | id3", "id3"),
        ] {
            assert_eq!(
                decode_send(text),
                Ok(SendAnswer::Accepted(id.into())),
                "{text:?}"
            );
        }
    }

    #[test]
    fn every_row_of_the_send_table() {
        let rows = [
            (31, FailureKind::ProviderUnusable, Code::INTERNAL),
            (32, FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS),
            (33, FailureKind::ProviderUnusable, Code::NO_CREDIT),
            (35, FailureKind::Permanent, Code::INTERNAL),
            (50, FailureKind::Transient, Code::INTERNAL),
            (42, FailureKind::Permanent, Code::INTERNAL),
        ];
        for (code, kind, isendpro) in rows {
            let answer = decode_send(&format!("{code} | Description {code}")).unwrap();
            assert_eq!(
                answer,
                SendAnswer::Refused {
                    code,
                    description: format!("Description {code}")
                }
            );
            let e = send_error(code, &format!("Description {code}"));
            assert_eq!((e.kind, e.code), (kind, isendpro), "{code}");
            assert!(e.detail.contains(&format!("Description {code}")), "{e:?}");
            assert!(e.detail.starts_with(&format!("sMsmode {code} (")), "{e:?}");
        }
    }

    #[test]
    fn malformed_answers_are_transient() {
        for text in [
            "",
            "   ",
            "<html><body>Maintenance</body></html>",
            "OK",
            "-1 | x",
            "x | 0 | id",
            "00a | Accepté | id",
        ] {
            let e = decode_send(text).unwrap_err();
            assert!(e.is_transient(), "{text:?}: {e:?}");
            assert!(e.detail.starts_with("sMsmode: unreadable answer"), "{e:?}");
        }
    }

    #[test]
    fn credit_answers() {
        assert_eq!(decode_credit("212.5"), Ok(212.5));
        assert_eq!(decode_credit("212.5\r\n"), Ok(212.5));
        assert_eq!(decode_credit("-12.25"), Ok(-12.25));
        assert_eq!(decode_credit("7,5"), Ok(7.5));
        let e = decode_credit("32 | Erreur d'authentification").unwrap_err();
        assert_eq!(
            (e.kind, e.code),
            (FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS)
        );
        assert!(decode_credit("<html>").unwrap_err().is_transient());
        assert!(decode_credit("NaN").unwrap_err().is_transient());
        assert!(decode_credit("0 | ok").unwrap_err().is_transient());
    }
}
