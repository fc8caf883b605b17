//! What goes to SMSECO: which SMS of a batch share a request (the plan),
//! and the bytes of each request. Pure: no I/O, no clock (the caller passes
//! `now`).

use crate::gsm;
use crate::providers::{OutgoingSms, http};
use crate::xml;
use serde::Serialize;
use std::collections::{HashMap, HashSet};

/// The most recipients put in one `sendsms` request. The document sets no
/// limit for POST; 500 is iSendPro's own per-request limit (its code 23),
/// which the sysadmins already know, and it bounds what one failed or
/// timed-out request can hold up.
pub const MAX_PER_REQUEST: usize = 500;

/// A `send_at` less than this far ahead (milliseconds) is sent at once,
/// without `<datesend>`: a time SMSECO's clock already sees as past would be
/// refused with statut -13 and the SMS lost, while sending up to two minutes
/// early is harmless.
pub const SCHEDULE_MIN_AHEAD_MS: i64 = 120_000;

/// The name of the one mail-merge (`publipostage`) field: the template is
/// `{t}` and each recipient's `<datas><t>` holds its whole text.
pub const MERGE_FIELD: &str = "t";

/// The most characters SMSECO takes in `msgid` (statut -10 beyond).
pub const MSGID_MAX_CHARS: usize = 30;

/// One `sendsms` request: a message (sender, options) and its recipients.
#[derive(Debug, Clone, PartialEq)]
pub struct SendRequest {
    /// `<msgid>`: the reference of the first SMS of the request (our
    /// references are unique and at most 30 characters, SMSECO's limit).
    pub msgid: String,
    /// `<expediteur>`, if any.
    pub sender: Option<String>,
    /// `<datesend>` (`AAAA-MM-JJ HH:MM`, UTC), for a scheduled send.
    pub datesend: Option<String>,
    /// `<unicode>1</unicode>`: some text is not in the GSM-7 alphabet.
    pub unicode: bool,
    /// The recipients, each number at most once (SMSECO drops duplicates).
    pub recipients: Vec<Recipient>,
}

/// One SMS of a request.
#[derive(Debug, Clone, PartialEq)]
pub struct Recipient {
    /// Its position in the batch handed to `send`, to put its result back.
    pub index: usize,
    /// `<numero>`: the E.164 number without `+` (`indicatif+numero`).
    pub number: String,
    /// Its text.
    pub text: String,
}

impl SendRequest {
    /// The text every recipient shares, if they all share one: the request
    /// then uses the plain `<numero>` list, else the mail-merge form.
    pub fn common_text(&self) -> Option<&str> {
        let first = self.recipients.first()?;
        self.recipients
            .iter()
            .all(|r| r.text == first.text)
            .then_some(first.text.as_str())
    }
}

/// What SMS of a batch must share to go in one request: the message-level
/// fields (sender, send time, unicode flag).
type GroupKey = (Option<String>, Option<String>, bool);

/// Splits a batch into requests: SMS sharing a sender, a send time (to the
/// minute) and GSM-7-ness go together, at most [`MAX_PER_REQUEST`] per
/// request and never the same number twice in one request (a second SMS to
/// a number goes in the next request of its group). Requests come in the
/// order their first SMS has in the batch; each recipient keeps its index.
pub fn plan(batch: &[OutgoingSms], now_ms: i64) -> Vec<SendRequest> {
    let mut requests: Vec<SendRequest> = Vec::new();
    // Numbers already in each request, by request position.
    let mut numbers: Vec<HashSet<String>> = Vec::new();
    // Requests of each group, by position.
    let mut groups: HashMap<GroupKey, Vec<usize>> = HashMap::new();
    for (index, sms) in batch.iter().enumerate() {
        let datesend = sms.send_at.and_then(|at| datesend(at, now_ms));
        let unicode = !gsm::is_gsm7(&sms.text);
        let number = http::digits(&sms.to).to_string();
        let slots = groups
            .entry((sms.sender_id.clone(), datesend.clone(), unicode))
            .or_default();
        let slot = slots.iter().copied().find(|&r| {
            requests[r].recipients.len() < MAX_PER_REQUEST && !numbers[r].contains(&number)
        });
        let slot = match slot {
            Some(r) => r,
            None => {
                requests.push(SendRequest {
                    msgid: truncate_chars(&sms.reference, MSGID_MAX_CHARS),
                    sender: sms.sender_id.clone(),
                    datesend,
                    unicode,
                    recipients: Vec::new(),
                });
                numbers.push(HashSet::new());
                slots.push(requests.len() - 1);
                requests.len() - 1
            }
        };
        numbers[slot].insert(number.clone());
        requests[slot].recipients.push(Recipient {
            index,
            number,
            text: sms.text.clone(),
        });
    }
    requests
}

/// `<datesend>` for a send at `at_ms` (Unix ms): `AAAA-MM-JJ HH:MM` in UTC,
/// rounded up to the minute (never earlier than asked), or `None` if it is
/// less than [`SCHEDULE_MIN_AHEAD_MS`] ahead of `now_ms` (send at once).
///
/// The document does not name a time zone; SMSECO is in Côte d'Ivoire,
/// whose time (Africa/Abidjan) is UTC all year, without summer time.
pub fn datesend(at_ms: i64, now_ms: i64) -> Option<String> {
    if at_ms.saturating_sub(now_ms) < SCHEDULE_MIN_AHEAD_MS {
        return None;
    }
    let minute = at_ms.div_euclid(60_000) + i64::from(at_ms.rem_euclid(60_000) != 0);
    let at = jiff::Timestamp::from_second(minute.checked_mul(60)?).ok()?;
    Some(
        at.to_zoned(jiff::tz::TimeZone::UTC)
            .strftime("%Y-%m-%d %H:%M")
            .to_string(),
    )
}

/// The first `max` characters of `text`.
fn truncate_chars(text: &str, max: usize) -> String {
    text.chars().take(max).collect()
}

/// `<compte>`: the credentials, escaped.
fn xml_account(out: &mut String, login: &str, password: &str) {
    out.push_str("<compte>");
    xml_element(out, "login", login);
    xml_element(out, "password", password);
    out.push_str("</compte>");
}

/// How values are escaped for an element: the characters XML 1.0 cannot
/// carry (C0 controls other than tab, LF and CR; U+FFFE, U+FFFF) are
/// dropped, since SMSECO would refuse the whole request as invalid XML
/// (statut -1); CR is written `&#13;` so that the parser's end-of-line
/// normalisation does not turn it into LF.
const STYLE: xml::Style = xml::Style {
    quotes: true,
    cr_reference: true,
    forbidden: xml::Forbidden::Drop,
};

/// `value` escaped for an element ([`STYLE`]).
fn xml_text(value: &str) -> String {
    xml::escape(value, STYLE)
}

/// Appends `<name>escaped value</name>`.
fn xml_element(out: &mut String, name: &str, value: &str) {
    out.push('<');
    out.push_str(name);
    out.push('>');
    out.push_str(&xml_text(value));
    out.push_str("</");
    out.push_str(name);
    out.push('>');
}

/// The `XML` value of a `sendsms` request (§I-1-1, and §II-1-1 for the
/// mail-merge form). Optional elements the adapter does not use (`flash`,
/// `binaire`, `mwi`, `pid`, `rpi`, `alt_dcs`, `udhdata`) are left out, and
/// `unicode` / `datesend` appear only when set.
pub fn encode_xml(request: &SendRequest, login: &str, password: &str) -> String {
    let mut out = String::with_capacity(256 + request.recipients.len() * 40);
    out.push_str("<SMS>");
    xml_account(&mut out, login, password);
    out.push_str("<message>");
    xml_element(&mut out, "msgid", &request.msgid);
    if let Some(sender) = &request.sender {
        xml_element(&mut out, "expediteur", sender);
    }
    let common = request.common_text();
    let template = format!("{{{MERGE_FIELD}}}");
    xml_element(&mut out, "msg", common.unwrap_or(&template));
    if request.unicode {
        out.push_str("<unicode>1</unicode>");
    }
    if let Some(datesend) = &request.datesend {
        xml_element(&mut out, "datesend", datesend);
    }
    out.push_str("</message><destinataires>");
    for r in &request.recipients {
        if common.is_some() {
            xml_element(&mut out, "numero", &r.number);
        } else {
            out.push_str("<sms>");
            xml_element(&mut out, "numero", &r.number);
            out.push_str("<datas>");
            xml_element(&mut out, MERGE_FIELD, &r.text);
            out.push_str("</datas></sms>");
        }
    }
    out.push_str("</destinataires></SMS>");
    out
}

/// The `JSON` value of a `sendsms` request (§I-3-1, §II-2-1).
#[derive(Serialize)]
struct JsonSend<'a> {
    /// The credentials.
    compte: JsonAccount<'a>,
    /// The message-level fields.
    message: JsonMessage<'a>,
    /// One object per number.
    destinataires: Vec<JsonRecipient<'a>>,
}

/// `"compte"`.
#[derive(Serialize)]
struct JsonAccount<'a> {
    /// The account's login.
    login: &'a str,
    /// The account's password.
    password: &'a str,
}

/// `"message"`, in the document's key order.
#[derive(Serialize)]
struct JsonMessage<'a> {
    /// The sender, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    expediteur: Option<&'a str>,
    /// Our reference.
    msgid: &'a str,
    /// The text, or the mail-merge template.
    msg: &'a str,
    /// `AAAA-MM-JJ HH:MM` (§II-2-1 spelling; §I-3-1's `"date send"` is a typo).
    #[serde(skip_serializing_if = "Option::is_none")]
    datesend: Option<&'a str>,
    /// `1` for a UCS-2 text.
    #[serde(skip_serializing_if = "Option::is_none")]
    unicode: Option<u8>,
}

/// One `"destinataires"` entry.
#[derive(Serialize)]
struct JsonRecipient<'a> {
    /// The number, `indicatif+numero`.
    numero: &'a str,
    /// The mail-merge data (only in the per-number form).
    #[serde(skip_serializing_if = "Option::is_none")]
    datas: Option<JsonDatas<'a>>,
}

/// `"datas"` of the mail-merge form: the one field `t`.
#[derive(Serialize)]
struct JsonDatas<'a> {
    /// The recipient's whole text.
    t: &'a str,
}

/// The `JSON` value of a `sendsms` request: the same fields as
/// [`encode_xml`], as §I-3-1 / §II-2-1 lay them out.
pub fn encode_json(request: &SendRequest, login: &str, password: &str) -> String {
    let common = request.common_text();
    let template = format!("{{{MERGE_FIELD}}}");
    let body = JsonSend {
        compte: JsonAccount { login, password },
        message: JsonMessage {
            expediteur: request.sender.as_deref(),
            msgid: &request.msgid,
            msg: common.unwrap_or(&template),
            datesend: request.datesend.as_deref(),
            unicode: request.unicode.then_some(1),
        },
        destinataires: request
            .recipients
            .iter()
            .map(|r| JsonRecipient {
                numero: &r.number,
                datas: common.is_none().then_some(JsonDatas { t: &r.text }),
            })
            .collect(),
    };
    // Serialising plain strings and integers cannot fail.
    serde_json::to_string(&body).unwrap_or_default()
}

/// The `XML` value of a `getbalance` request (§IV-1-2-1).
pub fn encode_balance(login: &str, password: &str) -> String {
    let mut out = String::from("<SMS>");
    xml_account(&mut out, login, password);
    out.push_str("</SMS>");
    out
}

/// The `XML` value of a `getdlrs` request (§III-2-1): `msgfid` and `smsfid`
/// narrow the answer to one send or one SMS; without either, every status
/// not yet read is returned.
pub fn encode_dlrs(
    login: &str,
    password: &str,
    msgfid: Option<&str>,
    smsfid: Option<&str>,
) -> String {
    let mut out = String::from("<SMS>");
    xml_account(&mut out, login, password);
    if msgfid.is_some() || smsfid.is_some() {
        out.push_str("<message>");
        if let Some(id) = msgfid {
            xml_element(&mut out, "msgfid", id);
        }
        if let Some(id) = smsfid {
            xml_element(&mut out, "smsfid", id);
        }
        out.push_str("</message>");
    }
    out.push_str("</SMS>");
    out
}

/// The form body carrying a request: `field=value` URL-encoded (UTF-8).
pub fn form_body(field: &str, value: &str) -> String {
    http::form_encode(&[(field, value.as_bytes())])
}

/// Every form a secret (the password) travels in, for masking it in what
/// SMSECO echoes back: as given, XML-escaped (as [`encode_xml`] writes it,
/// and with every character kept, [`xml::Style::MARKUP`]), JSON-escaped (as [`encode_json`] writes
/// it), and each of these percent-encoded as [`form_body`] sends it, also
/// with `%20` for a space and with lower-case hex, as a server may
/// re-encode it. Longest first, so that a form containing another is
/// masked whole; none empty.
pub fn secret_forms(secret: &str) -> Vec<String> {
    if secret.is_empty() {
        return Vec::new();
    }
    let json = serde_json::to_string(secret).unwrap_or_default();
    let json = json
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .unwrap_or(secret)
        .to_owned();
    let bases = [
        secret.to_owned(),
        xml_text(secret),
        xml::escape(secret, xml::Style::MARKUP),
        json,
    ];
    let mut forms: Vec<String> = Vec::new();
    for base in bases {
        let encoded = http::form_encode(&[("", base.as_bytes())]);
        let encoded = encoded.strip_prefix('=').unwrap_or(&encoded).to_owned();
        let spaced = encoded.replace('+', "%20");
        for form in [
            lower_hex(&encoded),
            lower_hex(&spaced),
            encoded,
            spaced,
            base,
        ] {
            if !form.is_empty() && !forms.contains(&form) {
                forms.push(form);
            }
        }
    }
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms
}

/// `%3C` → `%3c`: the two hex digits after each `%` in lower case.
fn lower_hex(encoded: &str) -> String {
    let mut out = String::with_capacity(encoded.len());
    let mut hex_left = 0;
    for c in encoded.chars() {
        if hex_left > 0 {
            out.push(c.to_ascii_lowercase());
            hex_left -= 1;
        } else {
            if c == '%' {
                hex_left = 2;
            }
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sms(i: i64, to: &str, text: &str) -> OutgoingSms {
        crate::providers::test_sms(format!("a1b2c3d4-{i}"), i, to, text)
            .with_sender(Some("MaSociete"))
    }

    /// The document's structure (§I-1-1) with its whitespace removed.
    fn squeeze(doc: &str) -> String {
        doc.lines().map(str::trim).collect()
    }

    #[test]
    fn plain_request_follows_the_documents_structure() {
        let batch = [
            sms(1, "+33601020304", "Bonjour & <bienvenue>"),
            sms(2, "+22678657808", "Bonjour & <bienvenue>"),
        ];
        let requests = plan(&batch, 0);
        assert_eq!(requests.len(), 1);
        let xml = encode_xml(&requests[0], "toto@toto.fr", "12<3456");
        // §I-1-1's structure, filled in, unused optional elements left out.
        let expected = squeeze(
            "<SMS>
                <compte>
                    <login>toto@toto.fr</login>
                    <password>12&lt;3456</password>
                </compte>
                <message>
                    <msgid>a1b2c3d4-1</msgid>
                    <expediteur>MaSociete</expediteur>
                    <msg>Bonjour &amp; &lt;bienvenue&gt;</msg>
                </message>
                <destinataires>
                    <numero>33601020304</numero>
                    <numero>22678657808</numero>
                </destinataires>
            </SMS>",
        );
        assert_eq!(xml, expected);
        let body = form_body("XML", &xml);
        assert!(body.starts_with("XML=%3CSMS%3E%3Ccompte%3E%3Clogin%3Etoto%40toto.fr"));
        assert!(body.contains("Bonjour+%26amp%3B+%26lt%3Bbienvenue"));
    }

    #[test]
    fn characters_xml_cannot_carry_are_dropped_and_cr_kept() {
        let requests = plan(
            &[sms(1, "+33601020304", "a\u{1}\u{1b}b\r\nc\td\u{fffe}")],
            0,
        );
        let xml = encode_xml(&requests[0], "l", "p");
        assert!(xml.contains("<msg>ab&#13;\nc\td</msg>"), "{xml}");
    }

    #[test]
    fn different_texts_use_the_mail_merge_form() {
        let batch = [
            sms(1, "+33601020304", "Bonjour Michel"),
            sms(2, "+33601020305", "Bonjour Sarah"),
        ];
        let requests = plan(&batch, 0);
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0].common_text(), None);
        let xml = encode_xml(&requests[0], "l", "p");
        // §II-1-1's structure with one field, `t`, holding the whole text.
        let expected = squeeze(
            "<SMS>
                <compte><login>l</login><password>p</password></compte>
                <message>
                    <msgid>a1b2c3d4-1</msgid>
                    <expediteur>MaSociete</expediteur>
                    <msg>{t}</msg>
                </message>
                <destinataires>
                    <sms>
                        <numero>33601020304</numero>
                        <datas>
                            <t>Bonjour Michel</t>
                        </datas>
                    </sms>
                    <sms>
                        <numero>33601020305</numero>
                        <datas>
                            <t>Bonjour Sarah</t>
                        </datas>
                    </sms>
                </destinataires>
            </SMS>",
        );
        assert_eq!(xml, expected);
    }

    #[test]
    fn unicode_and_datesend_are_set_only_when_needed() {
        let now = 1_750_000_000_000; // 2025-06-15T15:06:40Z
        let mut a = sms(1, "+33601020304", "Ça coûte 5€");
        a.send_at = Some(now + 3_600_000 + 20_000); // 16:07:00 → 16:07
        let requests = plan(&[a.clone()], now);
        assert!(requests[0].unicode);
        assert_eq!(requests[0].datesend.as_deref(), Some("2025-06-15 16:07"));
        let xml = encode_xml(&requests[0], "l", "p");
        assert!(
            xml.contains(
                "<msg>Ça coûte 5€</msg><unicode>1</unicode><datesend>2025-06-15 16:07</datesend></message>"
            ),
            "{xml}"
        );
        // é, è, à, ù, € are GSM-7: no unicode flag; no send_at: no datesend.
        let b = sms(2, "+33601020304", "L'été à 50€ où?");
        let requests = plan(&[b], now);
        assert!(!requests[0].unicode);
        let xml = encode_xml(&requests[0], "l", "p");
        assert!(!xml.contains("<unicode>") && !xml.contains("<datesend>"));
    }

    #[test]
    fn datesend_rounds_up_and_skips_times_too_close() {
        let now = 1_750_000_000_000;
        assert_eq!(datesend(now, now), None);
        assert_eq!(datesend(now + SCHEDULE_MIN_AHEAD_MS - 1, now), None);
        assert_eq!(datesend(now - 3_600_000, now), None);
        // 15:08:40 → 15:09; an exact minute stays as it is.
        assert_eq!(
            datesend(now + SCHEDULE_MIN_AHEAD_MS, now).as_deref(),
            Some("2025-06-15 15:09")
        );
        assert_eq!(
            datesend(1_750_003_200_000, now).as_deref(),
            Some("2025-06-15 16:00")
        );
    }

    #[test]
    fn a_number_is_never_twice_in_one_request() {
        let batch = [
            sms(1, "+33601020304", "A"),
            sms(2, "+33601020304", "B"),
            sms(3, "+33601020305", "A"),
            sms(4, "+33601020304", "A"),
        ];
        let requests = plan(&batch, 0);
        let shape: Vec<Vec<usize>> = requests
            .iter()
            .map(|r| r.recipients.iter().map(|x| x.index).collect())
            .collect();
        assert_eq!(shape, vec![vec![0, 2], vec![1], vec![3]]);
        assert_eq!(requests[0].common_text(), Some("A"));
        assert_eq!(requests[1].msgid, "a1b2c3d4-2");
        assert_eq!(requests[2].msgid, "a1b2c3d4-4");
    }

    #[test]
    fn requests_are_split_by_sender_time_unicode_and_size() {
        let now = 1_750_000_000_000;
        let mut other_sender = sms(2, "+33601020305", "A");
        other_sender.sender_id = Some("Autre".into());
        let mut later = sms(3, "+33601020306", "A");
        later.send_at = Some(now + 86_400_000);
        let mut now_anyway = sms(5, "+33601020308", "B");
        now_anyway.send_at = Some(now + 1000); // too close: sent at once
        let batch = [
            sms(1, "+33601020304", "A"),
            other_sender,
            later,
            sms(4, "+33601020307", "Fête"),
            now_anyway,
        ];
        let requests = plan(&batch, now);
        let shape: Vec<Vec<usize>> = requests
            .iter()
            .map(|r| r.recipients.iter().map(|x| x.index).collect())
            .collect();
        assert_eq!(shape, vec![vec![0, 4], vec![1], vec![2], vec![3]]);
        assert_eq!(requests[1].sender.as_deref(), Some("Autre"));
        assert!(requests[2].datesend.is_some());
        assert!(requests[3].unicode);

        let big: Vec<OutgoingSms> = (0..MAX_PER_REQUEST as i64 + 1)
            .map(|i| sms(i, &format!("+336{:08}", i), "A"))
            .collect();
        let requests = plan(&big, now);
        assert_eq!(requests.len(), 2);
        assert_eq!(requests[0].recipients.len(), MAX_PER_REQUEST);
        assert_eq!(requests[1].recipients[0].index, MAX_PER_REQUEST);
    }

    #[test]
    fn msgid_is_at_most_30_characters() {
        let mut long = sms(1, "+33601020304", "A");
        long.reference = "x".repeat(40);
        assert_eq!(plan(&[long], 0)[0].msgid.chars().count(), 30);
    }

    #[test]
    fn json_request_has_the_same_fields() {
        let now = 1_750_000_000_000;
        let mut a = sms(1, "+33601020304", "Fête \"ça\"");
        a.send_at = Some(1_750_003_200_000);
        let requests = plan(&[a], now);
        assert_eq!(
            encode_json(&requests[0], "toto@toto.fr", "123456"),
            r#"{"compte":{"login":"toto@toto.fr","password":"123456"},"message":{"expediteur":"MaSociete","msgid":"a1b2c3d4-1","msg":"Fête \"ça\"","datesend":"2025-06-15 16:00","unicode":1},"destinataires":[{"numero":"33601020304"}]}"#
        );
        let batch = [sms(1, "+33601020304", "A"), sms(2, "+33601020305", "B")];
        let requests = plan(&batch, now);
        assert_eq!(
            encode_json(&requests[0], "l", "p"),
            r#"{"compte":{"login":"l","password":"p"},"message":{"expediteur":"MaSociete","msgid":"a1b2c3d4-1","msg":"{t}"},"destinataires":[{"numero":"33601020304","datas":{"t":"A"}},{"numero":"33601020305","datas":{"t":"B"}}]}"#
        );
    }

    #[test]
    fn balance_and_dlr_requests_follow_the_document() {
        assert_eq!(
            encode_balance("particulier@smseco.com", "123456"),
            squeeze(
                "<SMS>
                    <compte>
                        <login>particulier@smseco.com</login>
                        <password>123456</password>
                    </compte>
                </SMS>"
            )
        );
        assert_eq!(
            encode_dlrs(
                "l",
                "p",
                Some("55857bdb8d51b7-38880789"),
                Some("55857bf80517a0-38726421")
            ),
            squeeze(
                "<SMS>
                    <compte>
                        <login>l</login>
                        <password>p</password>
                    </compte>
                    <message>
                        <msgfid>55857bdb8d51b7-38880789</msgfid>
                        <smsfid>55857bf80517a0-38726421</smsfid>
                    </message>
                </SMS>"
            )
        );
        assert_eq!(
            encode_dlrs("l", "p", None, None),
            "<SMS><compte><login>l</login><password>p</password></compte></SMS>"
        );
    }

    #[test]
    fn secret_forms_cover_what_is_sent() {
        let password = "a\"b<c&d é\r";
        let forms = secret_forms(password);
        assert!(forms.windows(2).all(|w| w[0].len() >= w[1].len()));
        let req = plan(&[sms(1, "+33601020304", "x")], 0).remove(0);
        let xml = encode_xml(&req, "l", password);
        let json = encode_json(&req, "l", password);
        for sent in [
            xml.clone(),
            json.clone(),
            form_body("XML", &xml),
            form_body("JSON", &json),
            form_body("XML", &xml).to_lowercase(),
            form_body("JSON", &json).replace('+', "%20"),
        ] {
            assert!(forms.iter().any(|f| sent.contains(f.as_str())), "{sent}");
        }
        assert!(secret_forms("").is_empty());
        assert_eq!(secret_forms("abc"), ["abc"]);
    }
}
