//! The MIME message around a rendered reply.
//!
//! The body is the XML encoded in ISO-8859-1 (as its declaration says), with
//! CRLF line ends, sent as `text/plain; charset=ISO-8859-1` in
//! quoted-printable: text/plain because the protocol's emails are plain text
//! (spec §III) and clients read the body as text; quoted-printable because
//! Latin-1 bytes are not valid 8bit UTF-8, which lettre refuses to send raw.

use lettre::Message;
use lettre::message::Mailbox;
use lettre::message::header::{ContentTransferEncoding, HeaderName, HeaderValue, MIME_VERSION_1_0};

use super::error::ReplyError;
use super::{ReplyContent, to_latin1};

/// The body's content type, written verbatim (lettre's typed header would
/// lower-case the charset).
pub const CONTENT_TYPE: &str = "text/plain; charset=ISO-8859-1";

/// RFC 5322 §2.1.1: no line of a message may be longer than this many
/// octets, CRLF excluded.
pub const MAX_LINE_OCTETS: usize = 998;

/// The most characters of the emailId the `Subject:` shows. The body always
/// carries it whole; a longer one (a row stored before requests were capped
/// at 64 characters) is cut, so that the subject stays one short line
/// whatever the store holds (issue 8).
pub const SUBJECT_EMAIL_ID_CHARS: usize = 64;

/// The reply email from `from` to `to`, carrying `xml` (the rendered body).
///
/// `id` is the caller's stable id for this reply; `<{id}@{domain}>` is its
/// Message-ID, so a resent reply can be recognised as the same message.
/// The message is single-part, so `formatted()` ends exactly with the body.
/// No header line is longer than [`MAX_LINE_OCTETS`]: the subject is cut,
/// and a message that would still have such a line (a huge `To:`) is
/// refused with [`ReplyError::HeaderTooLong`], a permanent error.
pub fn build(
    from: &Mailbox,
    domain: &str,
    id: &str,
    to: &str,
    body: &ReplyContent,
    xml: &str,
) -> Result<Message, ReplyError> {
    let to_mailbox = parse_recipient(to)?;
    let message = Message::builder()
        .from(from.clone())
        .to(to_mailbox)
        .subject(subject(body))
        .message_id(Some(format!("<{}@{domain}>", id_token(id)?)))
        // RFC 3834: an automatic reply, so that vacation responders and
        // the like do not answer it (and loop with us).
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-replied".to_owned(),
        ))
        .header(MIME_VERSION_1_0)
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Content-Type"),
            CONTENT_TYPE.to_owned(),
        ))
        // With the encoding preset, lettre quoted-printable-encodes the bytes
        // (it cannot refuse: any bytes can be quoted-printable).
        .header(ContentTransferEncoding::QuotedPrintable)
        .body(crlf(to_latin1(xml)))?;
    check_header_lines(&message)?;
    Ok(message)
}

/// A reply's recipient as a mailbox; an address that is not one is a
/// permanent error naming it.
pub(super) fn parse_recipient(to: &str) -> Result<Mailbox, ReplyError> {
    to.trim().parse().map_err(|source| ReplyError::Recipient {
        address: to.to_owned(),
        source,
    })
}

/// `etatAck 1548`: the kind and the emailId, cut to
/// [`SUBJECT_EMAIL_ID_CHARS`] characters (`...` marks the cut), control
/// characters shown as `?`. lettre folds what is left at its spaces, or
/// splits it into RFC 2047 encoded words when it is not ASCII.
fn subject(body: &ReplyContent) -> String {
    let email_id = body.email_id();
    let mut shown: String = email_id
        .chars()
        .take(SUBJECT_EMAIL_ID_CHARS)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if email_id.chars().nth(SUBJECT_EMAIL_ID_CHARS).is_some() {
        shown.push_str("...");
    }
    format!("{} {shown}", body.kind())
}

/// Refuses a message with a header line longer than [`MAX_LINE_OCTETS`]
/// (one that lettre could not fold: a long value without spaces), naming
/// the header but not quoting its value.
pub(super) fn check_header_lines(message: &Message) -> Result<(), ReplyError> {
    let headers = message.headers().to_string();
    let mut name = "";
    for line in headers.split("\r\n") {
        if !line.starts_with([' ', '\t']) {
            name = line.split(':').next().unwrap_or_default();
        }
        if line.len() > MAX_LINE_OCTETS {
            return Err(ReplyError::HeaderTooLong {
                header: name.to_owned(),
                octets: line.len(),
            });
        }
    }
    Ok(())
}

/// `id` made safe for a file name and a Message-ID: letters, digits, `.`,
/// `_` and `-` are kept, every other byte becomes `%XX` (injective, so two
/// ids never share a file).
pub fn id_token(id: &str) -> Result<String, ReplyError> {
    if id.is_empty() {
        return Err(ReplyError::Id(id.to_owned()));
    }
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    Ok(out)
}

/// LF → CRLF (the rendered text uses LF; a CR already before an LF is kept
/// as is).
fn crlf(bytes: Vec<u8>) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len() + bytes.len() / 16);
    let mut previous = 0u8;
    for b in bytes {
        if b == b'\n' && previous != b'\r' {
            out.push(b'\r');
        }
        out.push(b);
        previous = b;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::AckCode;

    #[test]
    fn id_tokens_are_injective_and_path_safe() {
        assert_eq!(id_token("ack-1548.2_x").expect("id"), "ack-1548.2_x");
        assert_eq!(id_token("a/b").expect("id"), "a%2Fb");
        assert_eq!(id_token("a%2Fb").expect("id"), "a%252Fb");
        assert_eq!(id_token("é").expect("id"), "%C3%A9");
        assert!(id_token("").is_err());
    }

    #[test]
    fn crlf_line_ends() {
        assert_eq!(crlf(b"a\nb\r\nc\n".to_vec()), b"a\r\nb\r\nc\r\n");
    }

    #[test]
    fn headers() {
        let from: Mailbox = "mail2sms <sms@gw.example>".parse().expect("from");
        let body = ReplyContent::Ack {
            email_id: Some("1548".into()),
            code: AckCode::Processed,
        };
        let message = build(
            &from,
            "gw.example",
            "ack-7",
            "ack@client.example",
            &body,
            "<x>é</x>\n",
        )
        .expect("message");
        let text = String::from_utf8(message.formatted()).expect("ascii");
        for header in [
            "From: mail2sms <sms@gw.example>\r\n",
            "To: ack@client.example\r\n",
            "Subject: etatAck 1548\r\n",
            "Message-ID: <ack-7@gw.example>\r\n",
            "Auto-Submitted: auto-replied\r\n",
            "MIME-Version: 1.0\r\n",
            "Content-Type: text/plain; charset=ISO-8859-1\r\n",
            "Content-Transfer-Encoding: quoted-printable\r\n",
        ] {
            assert!(text.contains(header), "{header:?} missing in\n{text}");
        }
        assert!(text.ends_with("\r\n\r\n<x>=E9</x>\r\n"), "{text}");

        let err = build(&from, "gw.example", "ack-7", "not an address", &body, "")
            .expect_err("bad recipient");
        assert!(err.is_permanent(), "{err}");
    }

    /// Issue 8: a long emailId is cut in the subject (the body keeps it).
    #[test]
    fn the_subject_shows_at_most_64_characters_of_the_email_id() {
        let ack = |email_id: &str| ReplyContent::Ack {
            email_id: Some(email_id.to_owned()),
            code: AckCode::Processed,
        };
        let id64 = "x".repeat(64);
        assert_eq!(subject(&ack(&id64)), format!("etatAck {id64}"));
        let id65 = format!("{id64}y");
        assert_eq!(subject(&ack(&id65)), format!("etatAck {id64}..."));
        assert_eq!(subject(&ack("a\r\nb\u{1b}")), "etatAck a??b?");
        let accents = "é".repeat(100);
        assert_eq!(
            subject(&ack(&accents)),
            format!("etatAck {}...", "é".repeat(64))
        );
    }

    /// Issue 8: a header line that cannot be folded within 998 octets (a
    /// huge `To:` address) is refused, permanently, without quoting it.
    #[test]
    fn a_header_line_over_998_octets_is_refused() {
        let from: Mailbox = "mail2sms <sms@gw.example>".parse().expect("from");
        let body = ReplyContent::Ack {
            email_id: Some("1548".into()),
            code: AckCode::Processed,
        };
        // Addresses are at most 64 + 1 + 254 octets: a display name is
        // what can make the line long.
        let to = format!("{} <ack@client.example>", "a".repeat(2_000));
        let err = build(&from, "gw.example", "ack-7", &to, &body, "")
            .expect_err("a 2 000-octet To: line");
        assert!(err.is_permanent(), "{err}");
        let text = err.to_string();
        assert!(text.starts_with("the To header would be a "), "{text}");
        assert!(!text.contains("aaaa"), "{text}");
        let to = format!("{} <ack@client.example>", "a".repeat(900));
        build(&from, "gw.example", "ack-7", &to, &body, "").expect("short enough");
    }
}
