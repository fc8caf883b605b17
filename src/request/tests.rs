//! Tests of [`super::parse`] and [`super::resolve`] (the scanner, text, CSV
//! and phone modules have their own).

use super::*;

/// Spec §1, verbatim.
const SPEC_SINGLE: &str = "<envoi>
<keyid>a296464ce012b8ab710a</keyid>
<num>0601020304</num>
<sms>L'été est fini! Super promo -10% à partir de 50€ d'achat !!!</sms>
<emetteur>MaSociete</emetteur>
<emailNot>not@masociete.com</emailNot>
<emailAck>ack@masociete.com</emailAck>
<emailId>1548</emailId>
</envoi>";

/// Spec §2, same message, verbatim.
const SPEC_SAME: &str = "<envoi>
<keyid>a296464ce012b8ab710a</keyid>
<num1>0601020304</num1>
<num2>0601020305</num2>
<sms>L'été est fini! Super promo -10% à partir de 50€ d'achat !!!</sms>
<emetteur>MaSociete</emetteur>
<emailNot>not@masociete.com</emailNot>
<emailAck>ack@masociete.com</emailAck>
<emailId>1548</emailId>
</envoi>";

/// Spec §2, one message each, verbatim.
const SPEC_EACH: &str = "<envoi>
<keyid>a296464ce012b8ab710a</keyid>
<num1>0601020304</num1>
<num2>0601020305</num2>
<sms1>L'été est fini! Super promo -10% à partir de 50€ d'achat !!!</sms1>
<sms2>L'été est fini! Super promo -20% à partir de 100€ d'achat !!!</sms2>
<emetteur>MaSociete</emetteur>
<emailNot>not@masociete.com</emailNot>
<emailAck>ack@masociete.com</emailAck>
<emailId>1548</emailId>
</envoi>";

/// Spec §3, the body when attachments carry numbers and message, verbatim.
const SPEC_ATTACHED: &str = "<envoi>
<keyid>a296464ce012b8ab710a</keyid>
<emetteur>MaSociete</emetteur>
<emailNot>not@masociete.com</emailNot>
<emailAck>ack@masociete.com</emailAck>
<emailId>1548</emailId>
</envoi>";

/// Spec §3, verbatim.
const SPEC_MOBILES: &str = "0601020304;;Michel;;Martin;;10/10/2015
0601020305;;Sarah;;Dupont;;02/08/2015";

/// Spec §3, verbatim.
const SPEC_MESSAGE: &str = "Bonjour [1] [2], votre nouvelle carte sera disponible le [3]";

const PROMO_10: &str = "L'été est fini! Super promo -10% à partir de 50€ d'achat !!!";
const PROMO_20: &str = "L'été est fini! Super promo -20% à partir de 100€ d'achat !!!";

fn body(text: &str) -> ParsedMail {
    ParsedMail {
        text: text.to_owned(),
        ..ParsedMail::default()
    }
}

fn with_files(text: &str, files: &[(&str, &str)]) -> ParsedMail {
    ParsedMail {
        attachments: files
            .iter()
            .map(|(name, text)| Attachment {
                name: (*name).to_owned(),
                text: (*text).to_owned(),
            })
            .collect(),
        ..body(text)
    }
}

fn req(mail: &ParsedMail) -> Result<Request, RequestError> {
    parse(mail, &Limits::default())
}

fn recipients(mail: &ParsedMail) -> Result<Vec<(String, String)>, Code> {
    req(mail)
        .unwrap()
        .recipients
        .map(|list| list.into_iter().map(|r| (r.tel, r.text)).collect())
}

fn pairs(list: &[(&str, &str)]) -> Result<Vec<(String, String)>, Code> {
    Ok(list
        .iter()
        .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
        .collect())
}

fn envoi(inner: &str) -> ParsedMail {
    body(&format!("<envoi><keyid>k</keyid>{inner}</envoi>"))
}

#[test]
fn spec_single_recipient() {
    let request = req(&body(SPEC_SINGLE)).unwrap();
    assert_eq!(
        request,
        Request {
            keyid: "a296464ce012b8ab710a".to_owned(),
            email_id: Some("1548".to_owned()),
            email_ack: Some("ack@masociete.com".to_owned()),
            email_not: Some("not@masociete.com".to_owned()),
            sender_id: Some("MaSociete".to_owned()),
            tracker: None,
            smslong: None,
            nostop: false,
            recipients: Ok(vec![RawRecipient {
                tel: "0601020304".to_owned(),
                text: PROMO_10.to_owned(),
            }]),
        }
    );
}

#[test]
fn spec_several_recipients_same_message() {
    assert_eq!(
        recipients(&body(SPEC_SAME)),
        pairs(&[("0601020304", PROMO_10), ("0601020305", PROMO_10)])
    );
}

#[test]
fn spec_several_recipients_own_message() {
    assert_eq!(
        recipients(&body(SPEC_EACH)),
        pairs(&[("0601020304", PROMO_10), ("0601020305", PROMO_20)])
    );
}

#[test]
fn spec_attachments() {
    let mail = with_files(
        SPEC_ATTACHED,
        &[("mobiles.csv", SPEC_MOBILES), ("message.csv", SPEC_MESSAGE)],
    );
    let request = req(&mail).unwrap();
    assert_eq!(request.keyid, "a296464ce012b8ab710a");
    assert_eq!(request.email_id.as_deref(), Some("1548"));
    assert_eq!(
        recipients(&mail),
        pairs(&[
            (
                "0601020304",
                "Bonjour Michel Martin, votre nouvelle carte sera disponible le 10/10/2015"
            ),
            (
                "0601020305",
                "Bonjour Sarah Dupont, votre nouvelle carte sera disponible le 02/08/2015"
            ),
        ])
    );
}

#[test]
fn attachment_names_are_case_insensitive() {
    let mail = with_files(
        "<envoi><keyid>k</keyid><sms>ignored</sms></envoi>",
        &[
            ("Mobiles.CSV", "0601020304"),
            (
                "C:\\Users\\moi\\MESSAGE.csv",
                "Bonjour, votre nouvelle carte est disponible",
            ),
        ],
    );
    assert_eq!(
        recipients(&mail),
        pairs(&[("0601020304", "Bonjour, votre nouvelle carte est disponible")])
    );
}

#[test]
fn mobiles_csv_replaces_the_numbers_of_the_body() {
    let mail = with_files(
        "<envoi><keyid>k</keyid><num>0699999999</num><sms>x</sms></envoi>",
        &[("mobiles.csv", "0601020304"), ("message.csv", "Bonjour")],
    );
    assert_eq!(recipients(&mail), pairs(&[("0601020304", "Bonjour")]));
}

#[test]
fn empty_email_id_ack_and_not_tags_are_absent_values() {
    let mail = with_files(
        "<envoi><keyid>k</keyid><num>0601020304</num><sms>x</sms><emailId> </emailId><emailAck></emailAck><emailNot></emailNot></envoi>",
        &[],
    );
    let request = parse(&mail, &Limits::default()).unwrap();
    assert_eq!(request.email_id, None);
    assert_eq!(request.email_ack, None);
    assert_eq!(request.email_not, None);
}

#[test]
fn mobiles_with_sms_as_template() {
    let mail = with_files(
        "<envoi><keyid>k</keyid><sms>Bonjour [1]Ö&agrave; bient&ocirc;t</sms></envoi>",
        &[("mobiles.csv", SPEC_MOBILES)],
    );
    assert_eq!(
        recipients(&mail),
        pairs(&[
            ("0601020304", "Bonjour Michel\nà bientôt"),
            ("0601020305", "Bonjour Sarah\nà bientôt"),
        ])
    );
}

#[test]
fn only_one_csv_file_is_refused() {
    let mobiles_only = with_files(SPEC_ATTACHED, &[("mobiles.csv", SPEC_MOBILES)]);
    assert_eq!(req(&mobiles_only), Err(RequestError::MobilesWithoutMessage));
    let message_only = with_files(SPEC_ATTACHED, &[("message.csv", SPEC_MESSAGE)]);
    assert_eq!(req(&message_only), Err(RequestError::MessageWithoutMobiles));
    let empty_message = with_files(
        SPEC_ATTACHED,
        &[("mobiles.csv", SPEC_MOBILES), ("message.csv", "\r\n")],
    );
    assert_eq!(req(&empty_message), Err(RequestError::EmptyTemplate));
}

#[test]
fn empty_mobiles_is_no_number() {
    let mail = with_files(
        SPEC_ATTACHED,
        &[("mobiles.csv", "\r\n\r\n"), ("message.csv", SPEC_MESSAGE)],
    );
    assert_eq!(recipients(&mail), Err(Code::NO_NUMBER));
}

#[test]
fn csv_line_cap() {
    let mail = with_files(
        SPEC_ATTACHED,
        &[("mobiles.csv", SPEC_MOBILES), ("message.csv", SPEC_MESSAGE)],
    );
    let limits = Limits { max_csv_lines: 1 };
    assert_eq!(
        parse(&mail, &limits),
        Err(RequestError::TooManyCsvLines { max: 1 })
    );
    assert_eq!(Limits::default().max_csv_lines, 100_000);
}

#[test]
fn csv_has_no_500_limit() {
    let mobiles: String = (0..600).map(|i| format!("06010{i:05}\n")).collect();
    let mail = with_files(
        SPEC_ATTACHED,
        &[("mobiles.csv", &mobiles), ("message.csv", "hi")],
    );
    assert_eq!(recipients(&mail).map(|l| l.len()), Ok(600));
}

#[test]
fn raw_lt_and_amp_in_sms() {
    assert_eq!(
        recipients(&envoi("<num>0601020304</num><sms>a < b & c</sms>")),
        pairs(&[("0601020304", "a < b & c")])
    );
}

#[test]
fn entities_are_decoded() {
    assert_eq!(
        recipients(&envoi(
            "<num>0601020304</num><sms>&lt;b&gt; &amp; &quot;x&quot; &apos; &#233;&#xE9; &eacute; 5&euro;&nbsp;! &foo; R&D</sms>"
        )),
        pairs(&[("0601020304", "<b> & \"x\" ' éé é 5€ ! &foo; R&D")])
    );
}

#[test]
fn o_umlaut_is_a_line_break_and_wrapping_is_folded() {
    assert_eq!(
        recipients(&envoi(
            "<num>\r\n 0601020304 \r\n</num><sms>\r\n  Bonjour,ÖVotre rendez-vous est\r\n  confirmé.ÖÖCordialement \r\n</sms>"
        )),
        pairs(&[(
            "0601020304",
            "Bonjour,\nVotre rendez-vous est confirmé.\n\nCordialement"
        )])
    );
}

#[test]
fn o_umlaut_in_emetteur_is_kept() {
    let request = req(&envoi(
        "<emetteur>SÖC</emetteur><num>0601020304</num><sms>x</sms>",
    ))
    .unwrap();
    assert_eq!(request.sender_id.as_deref(), Some("SÖC"));
}

#[test]
fn optional_fields() {
    let request = req(&envoi(
        "<num>0601020304</num><sms>x</sms><tracker>monCompte_monId</tracker><smslong> 2 </smslong><nostop>1</nostop>",
    ))
    .unwrap();
    assert_eq!(request.tracker.as_deref(), Some("monCompte_monId"));
    assert_eq!(request.smslong, Some(2));
    assert!(request.nostop);
    let request = req(&envoi(
        "<num>0601020304</num><sms>x</sms><nostop>0</nostop>",
    ))
    .unwrap();
    assert!(!request.nostop);
    let request = req(&envoi(
        "<num>0601020304</num><sms>x</sms><smslong></smslong>",
    ))
    .unwrap();
    assert_eq!(request.smslong, None);
    assert!(request.recipients.is_ok());
}

#[test]
fn smslong_not_integer_is_code_34() {
    for bad in ["deux", "2.5", "-1", "2 sms"] {
        let request = req(&envoi(&format!(
            "<num>0601020304</num><sms>x</sms><smslong>{bad}</smslong><emailId>9</emailId>"
        )))
        .unwrap();
        assert_eq!(request.recipients, Err(Code::SMSLONG_NOT_INTEGER), "{bad}");
        assert_eq!(request.smslong, None);
        assert_eq!(request.email_id.as_deref(), Some("9"));
    }
}

#[test]
fn more_than_500_numbers_is_code_23() {
    let nums: String = (1..=500)
        .map(|i| format!("<num{i}>06010{i:05}</num{i}>"))
        .collect();
    let ok = envoi(&format!("{nums}<sms>x</sms>"));
    assert_eq!(recipients(&ok).map(|l| l.len()), Ok(500));
    let plus_num = envoi(&format!("<num>0601020304</num>{nums}<sms>x</sms>"));
    assert_eq!(recipients(&plus_num), Err(Code::TOO_MANY_NUMBERS));
    let index_501 = envoi("<num501>0601020304</num501><sms>x</sms>");
    assert_eq!(recipients(&index_501), Err(Code::TOO_MANY_NUMBERS));
    assert_eq!(MAX_NUMBERS, 500);
}

#[test]
fn no_number_is_code_6() {
    assert_eq!(recipients(&envoi("<sms>x</sms>")), Err(Code::NO_NUMBER));
    assert_eq!(recipients(&body(SPEC_ATTACHED)), Err(Code::NO_NUMBER));
}

#[test]
fn empty_num_is_a_recipient() {
    assert_eq!(
        recipients(&envoi("<num></num><sms>x</sms>")),
        pairs(&[("", "x")])
    );
}

#[test]
fn order_and_fallback_to_sms() {
    assert_eq!(
        recipients(&envoi(
            "<sms3>three</sms3><num3>3</num3><num1>1</num1><sms>all</sms><num>0</num><num2>2</num2><sms2></sms2><sms9>orphan</sms9>"
        )),
        pairs(&[("0", "all"), ("1", "all"), ("2", "all"), ("3", "three")])
    );
}

#[test]
fn number_without_message_is_refused() {
    let err = req(&envoi(
        "<num1>0601020304</num1><num2>0601020305</num2><sms1>x</sms1>",
    ))
    .unwrap_err();
    assert_eq!(err, RequestError::NoMessage { index: 2 });
    assert_eq!(err.to_string(), "num2 has no message: add <sms> or <sms2>");
    let err = req(&envoi("<num>0601020304</num><sms></sms>")).unwrap_err();
    assert_eq!(err.to_string(), "num has no message: add <sms> or <sms0>");
}

#[test]
fn missing_keyid_is_refused() {
    assert_eq!(
        req(&body("<envoi><num>0601020304</num><sms>x</sms></envoi>")),
        Err(RequestError::MissingKeyid)
    );
    assert_eq!(
        req(&body(
            "<envoi><keyid> </keyid><num>0601020304</num><sms>x</sms></envoi>"
        )),
        Err(RequestError::MissingKeyid)
    );
}

#[test]
fn no_envoi_is_refused() {
    let err = req(&body("Bonjour, voici ma demande.")).unwrap_err();
    assert_eq!(err, RequestError::NoEnvoi);
    assert_eq!(
        err.to_string(),
        "no <envoi> request found in the message body"
    );
}

#[test]
fn error_messages_are_single_ascii_lines() {
    let errors = [
        RequestError::NoEnvoi,
        RequestError::UnclosedEnvoi,
        RequestError::UnclosedTag {
            tag: "sms2".to_owned(),
        },
        RequestError::MissingKeyid,
        RequestError::NoMessage { index: 7 },
        RequestError::MobilesWithoutMessage,
        RequestError::MessageWithoutMobiles,
        RequestError::EmptyTemplate,
        RequestError::TooManyCsvLines { max: 100_000 },
        RequestError::TooLong {
            field: "the message for mobiles.csv line 100000".to_owned(),
            chars: 24_000_000,
            max: limits::MAX_SMS_CHARS,
        },
        RequestError::Csv {
            file: "mobiles.csv",
            line: 3,
        },
    ];
    for e in errors {
        let text = e.to_string();
        assert!(
            text.is_ascii() && !text.contains(['\r', '\n']) && text.len() < 100,
            "{text}"
        );
    }
}

#[test]
fn end_to_end_from_raw_mail() {
    let raw = b"From: Service <service@masociete.com>\r\n\
Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n\
\r\n\
--XYZ\r\n\
Content-Type: text/plain; charset=ISO-8859-15\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
Bonjour,\r\n\
<envoi>\r\n\
<keyid>a296464ce012b8ab710a</keyid>\r\n\
<sms>Promo =E0 50=A4 pour [1]</sms>\r\n\
<emailId>1548</emailId>\r\n\
</envoi>\r\n\
Ce message est confidentiel. <num>0000</num>\r\n\
--XYZ\r\n\
Content-Type: application/vnd.ms-excel; name=\"mobiles.csv\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
MDYwMTAyMDMwNDs7SOls6G5lDQowNiAwMSAwMiAwMyAwNDs7ZG91Ymxvbg0KMDY5NjEyMzQ1Njs7\r\n\
QW5uYQ0K\r\n\
--XYZ--\r\n";
    let mail = crate::mail::parse(raw).unwrap();
    let request = req(&mail).unwrap();
    let resolved = resolve(request.recipients.unwrap(), "FR");
    let got: Vec<(&str, Option<&str>, &str, Option<usize>)> = resolved
        .iter()
        .map(|r| {
            (
                r.tel.as_str(),
                r.number.as_ref().ok().map(PhoneNumber::as_str),
                r.text.as_str(),
                r.duplicate_of,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (
                "0601020304",
                Some("+33601020304"),
                "Promo à 50€ pour Hélène",
                None
            ),
            (
                "06 01 02 03 04",
                Some("+33601020304"),
                "Promo à 50€ pour doublon",
                Some(0)
            ),
            (
                "0696123456",
                Some("+596696123456"),
                "Promo à 50€ pour Anna",
                None
            ),
        ]
    );
}

#[test]
fn resolve_normalises_and_marks_duplicates() {
    let raw = |tel: &str, text: &str| RawRecipient {
        tel: tel.to_owned(),
        text: text.to_owned(),
    };
    let resolved = resolve(
        vec![
            raw("0601020304", "first"),
            raw("+33 6 01 02 03 04", "duplicate"),
            raw("", "empty"),
            raw("abc", "bad"),
            raw("abc", "bad again"),
            raw("0701020304", "seven"),
            raw("0041791234567", "swiss"),
        ],
        "FR",
    );
    type Row<'a> = (&'a str, Result<&'a str, Code>, &'a str, Option<usize>);
    let got: Vec<Row> = resolved
        .iter()
        .map(|r| {
            (
                r.tel.as_str(),
                r.number.as_ref().map(PhoneNumber::as_str).map_err(|c| *c),
                r.text.as_str(),
                r.duplicate_of,
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            ("0601020304", Ok("+33601020304"), "first", None),
            (
                "+33 6 01 02 03 04",
                Ok("+33601020304"),
                "duplicate",
                Some(0)
            ),
            ("", Err(Code::NO_NUMBER), "empty", None),
            ("abc", Err(Code::BAD_NUMBER), "bad", None),
            ("abc", Err(Code::BAD_NUMBER), "bad again", None),
            ("0701020304", Ok("+33701020304"), "seven", None),
            ("0041791234567", Ok("+41791234567"), "swiss", None),
        ]
    );
}

// Issue 8: the protocol's caps on what one request may contain.

/// The spec §1 example with `tag`'s value replaced by `value`.
fn spec_single_with(tag: &str, value: &str) -> ParsedMail {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = SPEC_SINGLE.find(&open).unwrap() + open.len();
    let end = SPEC_SINGLE.find(&close).unwrap();
    body(&format!(
        "{}{value}{}",
        &SPEC_SINGLE[..start],
        &SPEC_SINGLE[end..]
    ))
}

fn too_long(field: &str, chars: usize, max: usize) -> RequestError {
    RequestError::TooLong {
        field: field.to_owned(),
        chars,
        max,
    }
}

/// Issue 8: a 1 MB emailId was copied into every recipient's row; each
/// per-request value is refused over its cap, naming the field and the
/// limit, and accepted at it.
#[test]
fn per_request_values_are_capped() {
    for (tag, max) in [
        ("emailId", limits::MAX_EMAIL_ID_CHARS),
        ("tracker", limits::MAX_TRACKER_CHARS),
        ("emetteur", limits::MAX_EMETTEUR_CHARS),
        ("emailAck", limits::MAX_ADDRESS_CHARS),
        ("emailNot", limits::MAX_ADDRESS_CHARS),
    ] {
        let mail = if tag == "tracker" {
            body(&SPEC_SINGLE.replace("</envoi>", "<tracker>x</tracker>\n</envoi>"))
        } else {
            body(SPEC_SINGLE)
        };
        let with = |value: &str| {
            let text = mail.text.replace(
                &mail.text[mail.text.find(&format!("<{tag}>")).unwrap()
                    ..mail.text.find(&format!("</{tag}>")).unwrap()],
                &format!("<{tag}>{value}"),
            );
            req(&body(&text))
        };
        // Addresses must stay addresses; the others take any text.
        let value = |chars: usize| match tag {
            "emailAck" | "emailNot" => format!("{}@x.fr", "é".repeat(chars - 5)),
            _ => "é".repeat(chars),
        };
        assert!(with(&value(max)).is_ok(), "{tag} at its cap");
        assert_eq!(
            with(&value(max + 1)),
            Err(too_long(tag, max + 1, max)),
            "{tag}"
        );
    }
}

/// Issue 8: a decoded `&#13;&#10;` in an identifier or a reply address
/// would reach reply headers and logs: such requests are refused, naming
/// the field.
#[test]
fn identifiers_and_reply_addresses_must_be_plain() {
    let err = req(&spec_single_with(
        "emailId",
        "1548&#13;&#10;Bcc: x@evil.test",
    ))
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "emailId holds a control character (U+000D); it is echoed in replies and must be plain text"
    );
    for tag in ["emailAck", "emailNot"] {
        for bad in [
            "a@x.fr&#13;&#10;Bcc: e@evil.test",
            "not an address",
            "a@b@c.fr",
        ] {
            assert_eq!(
                req(&spec_single_with(tag, bad)),
                Err(RequestError::NotAnAddress { field: tag.into() }),
                "{tag} = {bad}"
            );
        }
        assert!(req(&spec_single_with(tag, "suivi@masociete.com")).is_ok());
    }
}

/// Issue 8: the example the issue gives, word for word; emailId need not be
/// numeric.
#[test]
fn megabyte_email_id_is_refused_with_its_length() {
    let err = req(&spec_single_with("emailId", &"1".repeat(1_048_576))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "emailId is 1048576 characters long; the limit is 64"
    );
    let request = req(&spec_single_with("emailId", "monCompte_2026-12-03#1548")).unwrap();
    assert_eq!(
        request.email_id.as_deref(),
        Some("monCompte_2026-12-03#1548")
    );
}

/// Issue 8: the cap counts decoded characters (an entity is one), and
/// surrounding whitespace is not counted.
#[test]
fn caps_count_decoded_characters() {
    let at_cap = format!("  {}  ", "&eacute;".repeat(limits::MAX_EMAIL_ID_CHARS));
    let request = req(&spec_single_with("emailId", &at_cap)).unwrap();
    assert_eq!(
        request.email_id.map(|id| id.chars().count()),
        Some(limits::MAX_EMAIL_ID_CHARS)
    );
    assert_eq!(
        req(&spec_single_with("emailId", &"&#233;".repeat(65))),
        Err(too_long("emailId", 65, 64))
    );
}

/// Issue 8: each SMS text is capped, `<sms>` and `<smsX>` alike.
#[test]
fn sms_texts_are_capped() {
    let max = limits::MAX_SMS_CHARS;
    let ok = "x".repeat(max);
    let over = "x".repeat(max + 1);
    assert!(req(&spec_single_with("sms", &ok)).is_ok());
    assert_eq!(
        req(&spec_single_with("sms", &over)),
        Err(too_long("sms", max + 1, max))
    );
    let each = SPEC_EACH.replace(PROMO_20, &over);
    assert_eq!(req(&body(&each)), Err(too_long("sms2", max + 1, max)));
    assert_eq!(
        req(&body(&SPEC_EACH.replace(PROMO_20, &ok))).map(|r| r.recipients.unwrap()[1].text.len()),
        Ok(max)
    );
}

/// Issue 8: a 24 MB `<sms>` is refused from its span's length, never
/// decoded: the length reported is the one written (every `&amp;` counted as
/// five characters), and it takes no time.
#[test]
fn huge_sms_is_refused_from_its_span() {
    let written = "&amp;".repeat(24 * 1024 * 1024 / 5);
    let started = std::time::Instant::now();
    let err = req(&spec_single_with("sms", &written)).unwrap_err();
    assert_eq!(err, too_long("sms", written.len(), limits::MAX_SMS_CHARS));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    // Just within the span bound, the decoded length decides.
    let within = "&amp;".repeat(limits::MAX_SMS_CHARS * 2);
    assert_eq!(
        req(&spec_single_with("sms", &within)),
        Err(too_long(
            "sms",
            limits::MAX_SMS_CHARS * 2,
            limits::MAX_SMS_CHARS
        ))
    );
}

/// A repeated tag is ignored as before (the first one wins), whatever its
/// length: it is never decoded.
#[test]
fn an_ignored_repeat_is_not_capped() {
    let text = SPEC_SINGLE.replace(
        "</envoi>",
        &format!("<emailId>{}</emailId>\n</envoi>", "9".repeat(100_000)),
    );
    assert_eq!(req(&body(&text)).unwrap().email_id.as_deref(), Some("1548"));
}

/// Issue 8: the texts merged from message.csv and mobiles.csv are capped
/// once merged, and the merged length is known before the text is built (a
/// template of many `[1]` must not multiply a long field).
#[test]
fn merged_csv_texts_are_capped() {
    let max = limits::MAX_SMS_CHARS;
    let field = "y".repeat(max / 2);
    let mobiles = format!("0601020304;;{field}\n0601020305;;{field}z\n");
    let mail = with_files(
        SPEC_ATTACHED,
        &[("mobiles.csv", &mobiles), ("message.csv", "[1][1]")],
    );
    assert_eq!(
        req(&mail),
        Err(too_long("the message for mobiles.csv line 2", max + 2, max))
    );
    let bomb = format!("0601020304;;{}\n", "y".repeat(1_000_000));
    let template = "[1]".repeat(3_000);
    let mail = with_files(
        SPEC_ATTACHED,
        &[("mobiles.csv", &bomb), ("message.csv", &template)],
    );
    assert_eq!(
        req(&mail),
        Err(too_long(
            "the message for mobiles.csv line 1",
            3_000_000_000,
            max
        ))
    );
    let ok = format!("0601020304;;{field}\n");
    let mail = with_files(
        SPEC_ATTACHED,
        &[("mobiles.csv", &ok), ("message.csv", "[1][1]")],
    );
    assert_eq!(recipients(&mail).map(|l| l[0].1.len()), Ok(max));
}

/// Issue 8: a message.csv template far over the cap is refused before it is
/// copied or merged.
#[test]
fn huge_message_csv_is_refused() {
    let template = "x".repeat(limits::MAX_SMS_CHARS * limits::MAX_RAW_BYTES_PER_CHAR + 1);
    for message in [template.clone(), format!("\"{template}\"")] {
        let mail = with_files(
            SPEC_ATTACHED,
            &[("mobiles.csv", SPEC_MOBILES), ("message.csv", &message)],
        );
        assert!(
            matches!(req(&mail), Err(RequestError::TooLong { ref field, .. }) if field == "the message of message.csv"),
            "{:?}",
            req(&mail).map(|_| ())
        );
    }
}

/// Issue 8: the emetteur cap applies before the sender-id rule sees it.
#[test]
fn long_emetteur_is_refused_before_the_sender_id_rule() {
    assert_eq!(
        req(&spec_single_with("emetteur", &"M".repeat(100_000))),
        Err(too_long("emetteur", 100_000, limits::MAX_EMETTEUR_CHARS))
    );
}

/// Issue 8: a NUL in `<sms>` reached the provider; control characters are
/// gone from every SMS text (`<sms>`, `<smsX>`, message.csv, mobiles.csv
/// fields), line breaks kept.
#[test]
fn control_characters_leave_every_sms_text() {
    let mail = envoi(
        "<num1>0601020304</num1><num2>0601020305</num2><sms>a\0b&#7;cÖd</sms><sms2>e\u{1b}f&#13;&#10;g</sms2>",
    );
    assert_eq!(
        recipients(&mail),
        pairs(&[("0601020304", "abc\nd"), ("0601020305", "ef\r\ng")])
    );
    let mail = with_files(
        SPEC_ATTACHED,
        &[
            ("mobiles.csv", "0601020304;;Mi\0chel\u{7}"),
            ("message.csv", "Bonjour\0 [1]\u{1b}[2J"),
        ],
    );
    assert_eq!(
        recipients(&mail),
        pairs(&[("0601020304", "Bonjour Michel[2J")])
    );
    // Nothing left but control characters: no message at all.
    assert_eq!(
        req(&envoi("<num>0601020304</num><sms>\0&#1;</sms>")),
        Err(RequestError::NoMessage { index: 0 })
    );
}

/// A buffer a test's tracing subscriber writes to.
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// What `f` logs, at every level.
fn captured_log(f: impl FnOnce()) -> String {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    let bytes = buffer.0.lock().unwrap().clone();
    String::from_utf8(bytes).unwrap()
}

/// Issue 8 point 5: a decoded `&#13;&#10;` in `<emailAck>` or `<tracker>`
/// and a repeated `<emailId>` with raw line breaks cannot forge a log line:
/// the first two are refused, the repeat is logged escaped.
#[test]
fn client_values_never_reach_the_log_raw() {
    let repeated = SPEC_SINGLE.replace(
        "</envoi>",
        "<emailId>1549\r\nFORGED-ID</emailId><unknowntag>x</unknowntag></envoi>",
    );
    let log = captured_log(|| {
        req(&body(&repeated)).unwrap();
    });
    assert!(log.contains("1549\\r\\nFORGED-ID"), "{log}");
    let forged_ack = SPEC_SINGLE.replace(
        "<emailAck>ack@masociete.com</emailAck>",
        "<emailAck>ack@masociete.com&#13;&#10;FORGED-ACK</emailAck>",
    );
    let forged_tracker = SPEC_SINGLE.replace(
        "</envoi>",
        "<tracker>t&#10;FORGED-TRACKER</tracker></envoi>",
    );
    let log = log
        + &captured_log(|| {
            assert!(req(&body(&forged_ack)).is_err());
            assert!(req(&body(&forged_tracker)).is_err());
        });
    assert!(!log.contains('\r'), "{log}");
    for line in log.lines() {
        assert!(!line.starts_with("FORGED"), "forged line: {line}");
    }
}
