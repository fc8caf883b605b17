//! The `<envoi>` scanner: finds the request block in a body and reads its
//! tags. Deliberately not an XML parser: bodies are typed by hand or built by
//! scripts, and contain raw `&` and `<`, text around the block (greetings,
//! signatures, disclaimers) and tags in any case.
//!
//! Rules:
//! * the first `<envoi>` of the text (tag names are case-insensitive, and
//!   spacing before `>`, as in `<envoi >`, is tolerated) starts the block, and
//!   the first `</envoi>` after it ends it; what lies outside is ignored;
//! * an `<envoi>` without `</envoi>` is refused rather than read to the end of
//!   the text: a truncated or badly quoted body could otherwise lose
//!   recipients silently, and the sender can fix it;
//! * inside the block, a known tag's value is everything up to its matching
//!   closing tag (so `<sms>a < b & c</sms>` keeps `a < b & c`); a known tag
//!   without closing tag is refused;
//! * unknown tags (`<br>`, `<foo>`…) are ignored, logged at debug; their
//!   content is read like the rest of the block;
//! * a tag given twice: the first one wins (logged at debug), as an XML reader
//!   taking "the" `<keyid>` would do; the repeat is neither decoded nor
//!   checked against the caps;
//! * values over the protocol's caps ([`super::limits`]) refuse the request;
//! * `num` and `sms` without index are index 0, before `num1`; `num0`/`sms0`
//!   are the same slot.

use std::collections::BTreeMap;

use super::text::{clean_value, message_text};
use super::{RequestError, limits};
use crate::logsafe::Safe;

/// Longest tag name quoted in an error message (which must stay short).
const MAX_TAG_IN_ERROR: usize = 16;

/// The values read from one `<envoi>` block, cleaned (see
/// [`clean_value`]; SMS texts also through [`message_text`]) and within the
/// protocol's caps ([`limits`]), but not yet interpreted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Envoi {
    /// `<keyid>`: the account's identification key.
    pub keyid: Option<String>,
    /// `<emailId>`: the sender's unique id of this request.
    pub email_id: Option<String>,
    /// `<emailAck>`: where to report whether the email was processed.
    pub email_ack: Option<String>,
    /// `<emailNot>`: where to report per-SMS results.
    pub email_not: Option<String>,
    /// `<emetteur>`: the requested sender id.
    pub emetteur: Option<String>,
    /// `<tracker>`: the sender's id of the send.
    pub tracker: Option<String>,
    /// `<smslong>`: the announced number of SMS parts, still as text.
    pub smslong: Option<String>,
    /// `<nostop>`: the STOP-mention opt-out, still as text.
    pub nostop: Option<String>,
    /// `<sms>`: the message shared by recipients without their own `smsX`
    /// (a message text: `Ö` applied, control characters removed).
    pub sms: Option<String>,
    /// `numX` by index (`num` is 0); indices above 500 are kept so that the
    /// request can be refused with code 23.
    pub nums: BTreeMap<u64, String>,
    /// `smsX` by index (`sms0` is index 0), message texts like `sms`.
    pub smss: BTreeMap<u64, String>,
}

/// What a tag name means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tag {
    Keyid,
    EmailId,
    EmailAck,
    EmailNot,
    Emetteur,
    Tracker,
    Smslong,
    Nostop,
    Sms,
    Num(u64),
    SmsN(u64),
    Unknown,
}

/// A tag found at some position of the text.
struct TagAt<'a> {
    /// The name as written.
    name: &'a str,
    /// `</name>` rather than `<name>`.
    closing: bool,
    /// The byte offset just after its `>`.
    end: usize,
}

/// Finds and reads the `<envoi>` block of `text`.
pub(crate) fn scan(text: &str) -> Result<Envoi, RequestError> {
    let start = find_tag(text, 0, "envoi", false)
        .ok_or(RequestError::NoEnvoi)?
        .1;
    let (block_end, _) = find_tag(text, start, "envoi", true).ok_or(RequestError::UnclosedEnvoi)?;
    read_block(&text[start..block_end])
}

/// Reads the tags of the block's inside.
fn read_block(block: &str) -> Result<Envoi, RequestError> {
    let mut envoi = Envoi::default();
    let mut pos = 0;
    while let Some(rel) = block[pos..].find('<') {
        let lt = pos + rel;
        let Some(tag) = tag_at(block, lt) else {
            pos = lt + 1;
            continue;
        };
        if tag.closing {
            tracing::debug!(tag = %Safe(tag.name), "stray closing tag in <envoi> ignored");
            pos = tag.end;
            continue;
        }
        let kind = classify(tag.name);
        if kind == Tag::Unknown {
            // Only the tag itself is skipped (its content is scanned as
            // usual): this also keeps the scan linear on hostile input.
            tracing::debug!(tag = %Safe(tag.name), "unknown tag in <envoi> ignored");
            pos = tag.end;
            continue;
        }
        let Some((close_start, close_end)) = find_tag(block, tag.end, tag.name, true) else {
            return Err(RequestError::UnclosedTag {
                tag: tag.name.chars().take(MAX_TAG_IN_ERROR).collect(),
            });
        };
        store(&mut envoi, kind, tag.name, &block[tag.end..close_start])?;
        pos = close_end;
    }
    Ok(envoi)
}

/// Records one value, the first occurrence of a tag winning: a repeat is
/// logged and skipped before anything is decoded or copied.
fn store(envoi: &mut Envoi, kind: Tag, name: &str, raw: &str) -> Result<(), RequestError> {
    if is_repeat(envoi, kind) {
        tracing::debug!(
            tag = %Safe(name),
            ignored = %Safe(raw),
            "repeated tag in <envoi>: the first one is kept"
        );
        return Ok(());
    }
    let value = read_value(kind, raw)?;
    match kind {
        Tag::Keyid => envoi.keyid = Some(value),
        Tag::EmailId => envoi.email_id = Some(value),
        Tag::EmailAck => envoi.email_ack = Some(value),
        Tag::EmailNot => envoi.email_not = Some(value),
        Tag::Emetteur => envoi.emetteur = Some(value),
        Tag::Tracker => envoi.tracker = Some(value),
        Tag::Smslong => envoi.smslong = Some(value),
        Tag::Nostop => envoi.nostop = Some(value),
        Tag::Sms => envoi.sms = Some(value),
        Tag::Num(index) => {
            envoi.nums.insert(index, value);
        }
        Tag::SmsN(index) => {
            envoi.smss.insert(index, value);
        }
        Tag::Unknown => {}
    }
    Ok(())
}

/// Whether the slot of `kind` already holds a value.
fn is_repeat(envoi: &Envoi, kind: Tag) -> bool {
    match kind {
        Tag::Keyid => envoi.keyid.is_some(),
        Tag::EmailId => envoi.email_id.is_some(),
        Tag::EmailAck => envoi.email_ack.is_some(),
        Tag::EmailNot => envoi.email_not.is_some(),
        Tag::Emetteur => envoi.emetteur.is_some(),
        Tag::Tracker => envoi.tracker.is_some(),
        Tag::Smslong => envoi.smslong.is_some(),
        Tag::Nostop => envoi.nostop.is_some(),
        Tag::Sms => envoi.sms.is_some(),
        Tag::Num(index) => envoi.nums.contains_key(&index),
        Tag::SmsN(index) => envoi.smss.contains_key(&index),
        Tag::Unknown => false,
    }
}

/// A tag's value, cleaned; SMS texts also get [`message_text`]. A capped
/// value (see [`cap`]) is refused from its raw span's length when that
/// cannot fit, else from its cleaned length.
fn read_value(kind: Tag, raw: &str) -> Result<String, RequestError> {
    let Some(max) = cap(kind) else {
        return Ok(clean_value(raw));
    };
    if limits::span_too_long(raw.len(), max) {
        return Err(too_long(kind, raw.chars().count(), max));
    }
    let value = match kind {
        Tag::Sms | Tag::SmsN(_) => message_text(&clean_value(raw)),
        _ => clean_value(raw),
    };
    let chars = value.chars().count();
    if chars > max {
        return Err(too_long(kind, chars, max));
    }
    check_form(kind, &value)?;
    Ok(value)
}

/// Identifiers are plain text and reply addresses are addresses: what a
/// value becomes (a reply's `Subject:`, its recipient, a provider field)
/// can take nothing else. An empty value means "absent" and passes.
fn check_form(kind: Tag, value: &str) -> Result<(), RequestError> {
    match kind {
        Tag::EmailId | Tag::Tracker => match value.chars().find(|c| c.is_control()) {
            Some(c) => Err(RequestError::ControlCharacter {
                field: kind.field_name(),
                code: u32::from(c),
            }),
            None => Ok(()),
        },
        Tag::EmailAck | Tag::EmailNot
            if !value.is_empty() && crate::address::Mailbox::parse(value).is_none() =>
        {
            Err(RequestError::NotAnAddress {
                field: kind.field_name(),
            })
        }
        _ => Ok(()),
    }
}

/// The protocol cap of a tag's value in characters, if it has one.
fn cap(kind: Tag) -> Option<usize> {
    match kind {
        Tag::EmailId => Some(limits::MAX_EMAIL_ID_CHARS),
        Tag::Tracker => Some(limits::MAX_TRACKER_CHARS),
        Tag::Emetteur => Some(limits::MAX_EMETTEUR_CHARS),
        Tag::EmailAck | Tag::EmailNot => Some(limits::MAX_ADDRESS_CHARS),
        Tag::Sms | Tag::SmsN(_) => Some(limits::MAX_SMS_CHARS),
        Tag::Keyid | Tag::Smslong | Tag::Nostop | Tag::Num(_) | Tag::Unknown => None,
    }
}

/// The error for a value of `kind` that is `chars` long, over `max`.
fn too_long(kind: Tag, chars: usize, max: usize) -> RequestError {
    RequestError::TooLong {
        field: kind.field_name(),
        chars,
        max,
    }
}

impl Tag {
    /// The tag's name as the protocol spells it, for error messages.
    fn field_name(self) -> String {
        match self {
            Tag::Keyid => "keyid".to_owned(),
            Tag::EmailId => "emailId".to_owned(),
            Tag::EmailAck => "emailAck".to_owned(),
            Tag::EmailNot => "emailNot".to_owned(),
            Tag::Emetteur => "emetteur".to_owned(),
            Tag::Tracker => "tracker".to_owned(),
            Tag::Smslong => "smslong".to_owned(),
            Tag::Nostop => "nostop".to_owned(),
            Tag::Sms => "sms".to_owned(),
            Tag::Num(index) => format!("num{index}"),
            Tag::SmsN(index) => format!("sms{index}"),
            Tag::Unknown => "an unknown tag".to_owned(),
        }
    }
}

/// The meaning of a tag name (case-insensitive).
fn classify(name: &str) -> Tag {
    let lower = name.to_ascii_lowercase();
    match lower.as_str() {
        "keyid" => Tag::Keyid,
        "emailid" => Tag::EmailId,
        "emailack" => Tag::EmailAck,
        "emailnot" => Tag::EmailNot,
        "emetteur" => Tag::Emetteur,
        "tracker" => Tag::Tracker,
        "smslong" => Tag::Smslong,
        "nostop" => Tag::Nostop,
        "sms" => Tag::Sms,
        "num" => Tag::Num(0),
        _ => {
            if let Some(index) = lower.strip_prefix("num").and_then(index_of) {
                Tag::Num(index)
            } else if let Some(index) = lower.strip_prefix("sms").and_then(index_of) {
                Tag::SmsN(index)
            } else {
                Tag::Unknown
            }
        }
    }
}

/// The index of `numX`/`smsX` (digits only); absurdly long indices saturate,
/// they are above 500 anyway.
fn index_of(digits: &str) -> Option<u64> {
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.parse().unwrap_or(u64::MAX))
}

/// The first `<name>` (or `</name>` when `closing`) at or after `from`, as
/// (offset of its `<`, offset after its `>`).
fn find_tag(text: &str, from: usize, name: &str, closing: bool) -> Option<(usize, usize)> {
    let mut pos = from;
    while let Some(rel) = text[pos..].find('<') {
        let lt = pos + rel;
        if let Some(tag) = tag_at(text, lt)
            && tag.closing == closing
            && tag.name.eq_ignore_ascii_case(name)
        {
            return Some((lt, tag.end));
        }
        pos = lt + 1;
    }
    None
}

/// Reads a tag at `lt` (which holds `<`): `<name>` or `</name>`, the name
/// being ASCII letters and digits, optionally followed by spaces.
fn tag_at(text: &str, lt: usize) -> Option<TagAt<'_>> {
    let bytes = text.as_bytes();
    let mut i = lt + 1;
    let closing = bytes.get(i) == Some(&b'/');
    if closing {
        i += 1;
    }
    let name_start = i;
    while bytes.get(i).is_some_and(u8::is_ascii_alphanumeric) {
        i += 1;
    }
    if i == name_start {
        return None;
    }
    let name = &text[name_start..i];
    while bytes.get(i).is_some_and(u8::is_ascii_whitespace) {
        i += 1;
    }
    (bytes.get(i) == Some(&b'>')).then_some(TagAt {
        name,
        closing,
        end: i + 1,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_known_tag() {
        let envoi = scan(
            "<envoi><keyid>k</keyid><emailId>1</emailId><emailAck>a@x</emailAck>\
             <emailNot>n@x</emailNot><emetteur>Me</emetteur><tracker>t</tracker>\
             <smslong>2</smslong><nostop>1</nostop><sms>s</sms><num>0601020304</num>\
             <num7>7</num7><sms7>s7</sms7></envoi>",
        )
        .unwrap();
        assert_eq!(envoi.keyid.as_deref(), Some("k"));
        assert_eq!(envoi.email_id.as_deref(), Some("1"));
        assert_eq!(envoi.email_ack.as_deref(), Some("a@x"));
        assert_eq!(envoi.email_not.as_deref(), Some("n@x"));
        assert_eq!(envoi.emetteur.as_deref(), Some("Me"));
        assert_eq!(envoi.tracker.as_deref(), Some("t"));
        assert_eq!(envoi.smslong.as_deref(), Some("2"));
        assert_eq!(envoi.nostop.as_deref(), Some("1"));
        assert_eq!(envoi.sms.as_deref(), Some("s"));
        assert_eq!(envoi.nums.get(&0).map(String::as_str), Some("0601020304"));
        assert_eq!(envoi.nums.get(&7).map(String::as_str), Some("7"));
        assert_eq!(envoi.smss.get(&7).map(String::as_str), Some("s7"));
    }

    #[test]
    fn tag_names_are_case_insensitive() {
        let envoi =
            scan("<ENVOI><KeyId>k</KEYID><EMAILID>9</emailid><Num1>1</NUM1></Envoi>").unwrap();
        assert_eq!(envoi.keyid.as_deref(), Some("k"));
        assert_eq!(envoi.email_id.as_deref(), Some("9"));
        assert_eq!(envoi.nums.get(&1).map(String::as_str), Some("1"));
    }

    #[test]
    fn text_around_the_block_is_ignored() {
        let envoi = scan(
            "Bonjour,\n<keyid>before</keyid>\n<envoi>\n<keyid>k</keyid>\n</envoi>\n-- \nJean\n\
             <keyid>after</keyid> <sms>disclaimer</sms>",
        )
        .unwrap();
        assert_eq!(envoi.keyid.as_deref(), Some("k"));
        assert_eq!(envoi.sms, None);
    }

    #[test]
    fn raw_lt_and_amp_are_kept() {
        let envoi = scan("<envoi><sms>a < b & c <b> </x></sms></envoi>").unwrap();
        assert_eq!(envoi.sms.as_deref(), Some("a < b & c <b> </x>"));
    }

    #[test]
    fn unknown_tags_are_ignored() {
        let envoi = scan(
            "<envoi><foo><keyid>k</keyid></foo><br><P><num501x>1</num501x><emailId>1</emailId></P></envoi>",
        )
        .unwrap();
        assert_eq!(envoi.keyid.as_deref(), Some("k"));
        assert_eq!(envoi.email_id.as_deref(), Some("1"));
        assert!(envoi.nums.is_empty());
    }

    #[test]
    fn hostile_input_stays_fast() {
        let body = format!("<envoi>{}<keyid>k</keyid></envoi>", "<a>".repeat(300_000));
        let started = std::time::Instant::now();
        assert_eq!(scan(&body).unwrap().keyid.as_deref(), Some("k"));
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn first_occurrence_wins() {
        let envoi =
            scan("<envoi><keyid>a</keyid><keyid>b</keyid><num1>1</num1><num1>2</num1></envoi>")
                .unwrap();
        assert_eq!(envoi.keyid.as_deref(), Some("a"));
        assert_eq!(envoi.nums.get(&1).map(String::as_str), Some("1"));
    }

    #[test]
    fn indices() {
        let envoi = scan(
            "<envoi><num0>z</num0><num>n</num><num501>x</num501><num99999999999999999999999>y</num99999999999999999999999></envoi>",
        )
        .unwrap();
        assert_eq!(envoi.nums.get(&0).map(String::as_str), Some("z"));
        assert_eq!(envoi.nums.get(&501).map(String::as_str), Some("x"));
        assert_eq!(envoi.nums.get(&u64::MAX).map(String::as_str), Some("y"));
    }

    #[test]
    fn spacing_inside_tags_is_tolerated() {
        let envoi = scan("<envoi ><keyid >k</keyid\n></envoi >").unwrap();
        assert_eq!(envoi.keyid.as_deref(), Some("k"));
    }

    #[test]
    fn no_envoi() {
        assert_eq!(scan("hello <keyid>k</keyid>"), Err(RequestError::NoEnvoi));
        assert_eq!(scan("&lt;envoi&gt;"), Err(RequestError::NoEnvoi));
        assert_eq!(scan(""), Err(RequestError::NoEnvoi));
    }

    #[test]
    fn unclosed_envoi_is_refused() {
        assert_eq!(
            scan("<envoi><keyid>k</keyid>"),
            Err(RequestError::UnclosedEnvoi)
        );
    }

    #[test]
    fn unclosed_known_tag_is_refused() {
        assert_eq!(
            scan("<envoi><keyid>k</keyid><Sms2>hello</envoi>"),
            Err(RequestError::UnclosedTag {
                tag: "Sms2".to_owned()
            })
        );
        let long = format!("<envoi><num{0}>1</envoi>", "9".repeat(100));
        assert_eq!(
            scan(&long),
            Err(RequestError::UnclosedTag {
                tag: format!("num{}", "9".repeat(13))
            })
        );
    }
}
