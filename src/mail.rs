//! From raw RFC 5322 bytes to what the request parser needs: the sender, the
//! message id, the body text in which to look for `<envoi>`, and the
//! attachments as text.
//!
//! Body text: the text bodies of the message (text/plain, or an HTML body
//! rendered to text when there is no plain one), joined with line breaks. If
//! none of them contains `<envoi>`, the HTML bodies rendered to text are used
//! instead when they do (an HTML part where `&lt;envoi&gt;` was typed in the
//! editor).
//!
//! Charsets: mail-parser decodes declared charsets itself, but a part with
//! 8-bit bytes and no (or an unknown, or a wrong UTF-8) charset comes back
//! with U+FFFD in place of the bytes. Such parts are decoded again from their
//! raw bytes: UTF-8 if valid, else Windows-1252 (a superset of ISO-8859-1's
//! printable range, and what Windows mail tools and spreadsheets write).

use mail_parser::decoders::base64::base64_decode;
use mail_parser::decoders::charsets::map::charset_decoder;
use mail_parser::decoders::html::html_to_text;
use mail_parser::decoders::quoted_printable::quoted_printable_decode;
use mail_parser::{
    Encoding, HeaderName, Message, MessageParser, MessagePart, MimeHeaders, PartType,
};

/// An email reduced to what the request parser needs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ParsedMail {
    /// The `From:` address (addr-spec as written), for sender authorisation.
    pub from: Option<String>,
    /// The `Message-ID:` (without angle brackets), for logs and replies.
    pub message_id: Option<String>,
    /// The `Subject:`, RFC 2047 decoded: the first line of an alert SMS.
    pub subject: Option<String>,
    /// The `Date:` header, when readable: the date an alert shows.
    pub date: Option<jiff::Timestamp>,
    /// The body text in which to look for `<envoi>`.
    pub text: String,
    /// Text attachments (every text/* part and every `*.csv`/`*.txt` file),
    /// decoded to text, for `mobiles.csv` / `message.csv`.
    pub attachments: Vec<Attachment>,
    /// The body has HTML and no plain-text part: a refusal can then say
    /// that the spec asks for plain text.
    pub html_only: bool,
}

/// One attachment decoded to text.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attachment {
    /// The file name (Content-Disposition `filename`, else Content-Type
    /// `name`); empty when neither is given.
    pub name: String,
    /// The contents, UTF-8 BOM removed.
    pub text: String,
}

/// An email whose MIME structure is parsed but whose attachments are not
/// read yet ([`Mime::attachments`]): a request refused on its keyid or
/// sender costs no attachment decoding (issue 8).
pub struct Mime<'x> {
    /// The parsed message (parts decoded by mail-parser, bodies borrowed
    /// from the raw bytes where no decoding was needed).
    message: Message<'x>,
}

/// Why bytes cannot be read as an email.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MailError {
    /// Nothing was received.
    #[error("empty message")]
    Empty,
    /// The bytes do not start with RFC 5322 header fields.
    #[error("not an email message: no header fields found")]
    NotAMessage,
    /// More than one `From:` header: which one is the sender would be a
    /// guess (RFC 5322 allows one), and a guess is what a forger wants.
    #[error("more than one From: header")]
    SeveralFrom,
}

/// Parses a raw email, attachments included (tests; the pipeline reads the
/// attachments only once the sender is known, through [`read`]).
#[cfg(test)]
pub fn parse(raw: &[u8]) -> Result<ParsedMail, MailError> {
    let (mut mail, mime) = read(raw)?;
    mail.attachments = mime.attachments();
    Ok(mail)
}

/// Parses a raw email but leaves its attachments for later: the returned
/// [`ParsedMail`] has none yet.
pub fn read(raw: &[u8]) -> Result<(ParsedMail, Mime<'_>), MailError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(MailError::Empty);
    }
    let message = MessageParser::default()
        .parse(raw)
        .ok_or(MailError::NotAMessage)?;
    let has_headers = message
        .part(0)
        .is_some_and(|root| root.headers().iter().any(|h| is_field_name(h.name())));
    if !has_headers {
        return Err(MailError::NotAMessage);
    }
    if message.header_values(HeaderName::From).nth(1).is_some() {
        return Err(MailError::SeveralFrom);
    }

    let from = message
        .from()
        .and_then(|a| a.first())
        .and_then(|addr| addr.address())
        .map(str::to_owned);
    let message_id = message.message_id().map(str::to_owned);
    let subject = message.subject().map(str::to_owned);
    let date = message
        .date()
        .and_then(|d| jiff::Timestamp::from_second(d.to_timestamp()).ok());

    let mut text = join(
        message
            .text_bodies()
            .filter(|p| !is_named_file(p))
            .map(|p| body_text(&message, p)),
    );
    if !contains_envoi(&text) {
        let html = join(
            message
                .html_bodies()
                .filter(|p| !is_named_file(p))
                .map(|p| body_text(&message, p)),
        );
        if contains_envoi(&html) {
            text = html;
        }
    }

    let html_only = message.html_bodies().next().is_some()
        && !message
            .text_bodies()
            .any(|p| !p.is_text_html() && !is_named_file(p));

    let mail = ParsedMail {
        from,
        message_id,
        subject,
        date,
        text,
        attachments: Vec::new(),
        html_only,
    };
    Ok((mail, Mime { message }))
}

impl Mime<'_> {
    /// The attachments decoded to text (their decoded bytes are moved, not
    /// copied, when mail-parser already owns them).
    pub fn attachments(mut self) -> Vec<Attachment> {
        let message = &self.message;
        // Files sent "inline" (Apple Mail does) are body parts for mail-parser.
        let inline_files = message
            .text_body
            .iter()
            .filter(|&&id| message.part(id).is_some_and(is_named_file));
        let ids: Vec<u32> = message
            .attachments
            .iter()
            .chain(inline_files)
            .copied()
            .collect();
        ids.into_iter()
            .filter_map(|id| self.attachment(id))
            .collect()
    }

    /// Part `id` as an attachment worth reading as text, or `None`.
    fn attachment(&mut self, id: u32) -> Option<Attachment> {
        let part = self.message.part(id)?;
        let name = part.attachment_name().unwrap_or("").trim().to_owned();
        let text = match &part.body {
            PartType::Text(_) | PartType::Html(_) => self.take_text(id)?,
            PartType::Binary(_) | PartType::InlineBinary(_) if is_text_file_name(&name) => {
                match self.take_body(id)? {
                    PartType::Binary(bytes) | PartType::InlineBinary(bytes) => {
                        decode_owned(bytes.into_owned())
                    }
                    _ => return None,
                }
            }
            _ => return None,
        };
        Some(Attachment {
            name,
            text: strip_bom(text),
        })
    }

    /// The text of text part `id`, moved out of the message when it need
    /// not be decoded again (see [`part_text`]).
    fn take_text(&mut self, id: u32) -> Option<String> {
        let part = self.message.part(id)?;
        if needs_redecoding(part) {
            return Some(part_text(&self.message, part));
        }
        match self.take_body(id)? {
            PartType::Text(text) | PartType::Html(text) => Some(text.into_owned()),
            _ => None,
        }
    }

    /// Moves part `id`'s body out of the message.
    fn take_body(&mut self, id: u32) -> Option<PartType<'_>> {
        let part = self.message.parts.get_mut(usize::try_from(id).ok()?)?;
        Some(std::mem::replace(&mut part.body, PartType::Text("".into())))
    }
}

/// Whether `name` is an RFC 5322 field name (printable ASCII but `:`);
/// mail-parser also turns a line of junk into a "header".
fn is_field_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| (33..=126).contains(&b) && b != b':')
}

/// Whether a part is a `*.csv` / `*.txt` file rather than body text.
fn is_named_file(part: &MessagePart<'_>) -> bool {
    part.attachment_name().is_some_and(is_text_file_name)
}

/// Whether a file name ends in `.csv` or `.txt` (any case).
fn is_text_file_name(name: &str) -> bool {
    let lower = name.trim().to_ascii_lowercase();
    lower.ends_with(".csv") || lower.ends_with(".txt")
}

/// Joins body texts with a line break (a single one is not copied).
fn join(mut texts: impl Iterator<Item = String>) -> String {
    let Some(mut joined) = texts.next() else {
        return String::new();
    };
    for text in texts {
        joined.push('\n');
        joined.push_str(&text);
    }
    joined
}

/// Whether `text` contains an `<envoi` opening (ASCII case-insensitive).
fn contains_envoi(text: &str) -> bool {
    text.as_bytes()
        .windows(6)
        .any(|w| w.eq_ignore_ascii_case(b"<envoi"))
}

/// A body part as plain text (HTML rendered to text).
fn body_text(message: &Message<'_>, part: &MessagePart<'_>) -> String {
    let text = part_text(message, part);
    if part.is_text_html() {
        html_to_text(&text)
    } else {
        text
    }
}

/// `text` without its leading byte-order mark (removed in place).
fn strip_bom(mut text: String) -> String {
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    text
}

/// Whether mail-parser may have put U+FFFD in place of a part's bytes (see
/// the module documentation).
fn needs_redecoding(part: &MessagePart<'_>) -> bool {
    let charset = part.content_type().and_then(|ct| ct.attribute("charset"));
    let lossy_possible = match charset {
        None => true,
        Some(c) => is_utf8_label(c) || charset_decoder(c.as_bytes()).is_none(),
    };
    lossy_possible && part.text_contents().unwrap_or("").contains('\u{fffd}')
}

/// The text of a text/* part, re-decoded from its raw bytes when
/// mail-parser could not (see the module documentation).
fn part_text(message: &Message<'_>, part: &MessagePart<'_>) -> String {
    let decoded = part.text_contents().unwrap_or("");
    if !needs_redecoding(part) {
        return decoded.to_owned();
    }
    match raw_body(message, part) {
        Some(bytes) => decode_owned(bytes),
        None => decoded.to_owned(),
    }
}

/// Whether a charset label names UTF-8.
fn is_utf8_label(charset: &str) -> bool {
    let c = charset.trim().to_ascii_lowercase();
    c == "utf-8" || c == "utf8"
}

/// A part's body bytes with the transfer encoding undone; `None` if the
/// offsets or the encoding are broken.
fn raw_body(message: &Message<'_>, part: &MessagePart<'_>) -> Option<Vec<u8>> {
    let start = usize::try_from(part.raw_body_offset()).ok()?;
    let end = usize::try_from(part.raw_end_offset()).ok()?;
    let raw = message.raw_message().get(start..end)?;
    match part.encoding {
        Encoding::None => Some(raw.to_vec()),
        Encoding::Base64 => base64_decode(raw),
        Encoding::QuotedPrintable => quoted_printable_decode(raw),
    }
}

/// Bytes of unknown charset to text: UTF-8 (BOM removed) if valid, else
/// Windows-1252. Valid UTF-8 is not copied.
fn decode_owned(mut bytes: Vec<u8>) -> String {
    if bytes.starts_with(b"\xef\xbb\xbf") {
        bytes.drain(..3);
    }
    match String::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => encoding_rs::WINDOWS_1252
            .decode_without_bom_handling(e.as_bytes())
            .0
            .into_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's first example, verbatim.
    const SPEC_SINGLE: &str = "<envoi>
<keyid>a296464ce012b8ab710a</keyid>
<num>0601020304</num>
<sms>L'été est fini! Super promo -10% à partir de 50€ d'achat !!!</sms>
<emetteur>MaSociete</emetteur>
<emailNot>not@masociete.com</emailNot>
<emailAck>ack@masociete.com</emailAck>
<emailId>1548</emailId>
</envoi>";

    const SMS: &str = "L'été est fini! Super promo -10% à partir de 50€ d'achat !!!";

    /// Headers (LF-separated, turned into CRLF) + blank line + body bytes.
    fn mail(headers: &str, body: &[u8]) -> Vec<u8> {
        let mut out = headers.trim_end().replace('\n', "\r\n").into_bytes();
        out.extend_from_slice(b"\r\n\r\n");
        out.extend_from_slice(body);
        out
    }

    fn crlf(text: &str) -> String {
        text.replace('\n', "\r\n")
    }

    fn sms_of(text: &str) -> &str {
        let start = text.find("<sms>").unwrap() + 5;
        let end = text.find("</sms>").unwrap();
        &text[start..end]
    }

    #[test]
    fn utf8_8bit_plain_with_headers() {
        let raw = mail(
            "From: Jean Dupont <Jean.Dupont@MaSociete.com>\n\
             To: sendsms@isendpro-api.com\n\
             Subject: envoi\n\
             Message-ID: <abc.123@masociete.com>\n\
             MIME-Version: 1.0\n\
             Content-Type: text/plain; charset=UTF-8\n\
             Content-Transfer-Encoding: 8bit",
            crlf(SPEC_SINGLE).as_bytes(),
        );
        let parsed = parse(&raw).unwrap();
        assert_eq!(parsed.from.as_deref(), Some("Jean.Dupont@MaSociete.com"));
        assert_eq!(parsed.message_id.as_deref(), Some("abc.123@masociete.com"));
        assert!(parsed.text.contains(SPEC_SINGLE.lines().nth(3).unwrap()));
        assert_eq!(sms_of(&parsed.text), SMS);
        assert!(parsed.attachments.is_empty());
    }

    #[test]
    fn lf_only_line_endings() {
        let raw =
            format!("From: a@b.fr\nContent-Type: text/plain; charset=utf-8\n\n{SPEC_SINGLE}\n");
        let parsed = parse(raw.as_bytes()).unwrap();
        assert_eq!(parsed.from.as_deref(), Some("a@b.fr"));
        assert_eq!(sms_of(&parsed.text), SMS);
    }

    #[test]
    fn iso_8859_1_and_15_bodies() {
        // "à 50€" : à = E0 in both; € = A4 in ISO-8859-15 only.
        let latin9 = mail(
            "From: a@b.fr\nContent-Type: text/plain; charset=\"ISO-8859-15\"\nContent-Transfer-Encoding: 8bit",
            b"<envoi><sms>L'\xe9t\xe9 est fini! Super promo -10% \xe0 partir de 50\xa4 d'achat !!!</sms></envoi>",
        );
        assert_eq!(sms_of(&parse(&latin9).unwrap().text), SMS);
        let latin1 = mail(
            "From: a@b.fr\nContent-Type: text/plain; charset=iso-8859-1",
            b"<envoi><sms>L'\xe9t\xe9 \xe0 50 euros</sms></envoi>",
        );
        assert_eq!(sms_of(&parse(&latin1).unwrap().text), "L'été à 50 euros");
    }

    #[test]
    fn windows_1252_body() {
        let raw = mail(
            "From: a@b.fr\nContent-Type: text/plain; charset=windows-1252",
            b"<envoi><sms>L'\xe9t\xe9 est fini! Super promo -10% \xe0 partir de 50\x80 d'achat !!!</sms></envoi>",
        );
        assert_eq!(sms_of(&parse(&raw).unwrap().text), SMS);
    }

    #[test]
    fn quoted_printable_with_soft_breaks_inside_sms() {
        let raw = mail(
            "From: a@b.fr\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: quoted-printable",
            b"<envoi>\r\n<keyid>a296464ce012b8ab710a</keyid>\r\n<sms>L'=C3=A9t=C3=A9 est fini! Super promo -10% =\r\n=C3=A0 partir de 50=E2=82=AC d'ach=\r\nat !!!</sms>\r\n</envoi>\r\n",
        );
        assert_eq!(sms_of(&parse(&raw).unwrap().text), SMS);
    }

    #[test]
    fn quoted_printable_latin1() {
        let raw = mail(
            "From: a@b.fr\nContent-Type: text/plain; charset=ISO-8859-15\nContent-Transfer-Encoding: quoted-printable",
            b"<envoi><sms>L'=E9t=E9 est fini! Super promo -10% =E0 partir de 50=A4 d'ach=\r\nat !!!</sms></envoi>",
        );
        assert_eq!(sms_of(&parse(&raw).unwrap().text), SMS);
    }

    #[test]
    fn base64_body() {
        // base64 of "<envoi><sms>L'été est fini! Super promo -10% à partir de 50€ d'achat !!!</sms></envoi>"
        let raw = mail(
            "From: a@b.fr\nContent-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: base64",
            b"PGVudm9pPjxzbXM+TCfDqXTDqSBlc3QgZmluaSEgU3VwZXIgcHJvbW8gLTEwJSDDoCBwYXJ0aXIg\r\nZGUgNTDigqwgZCdhY2hhdCAhISE8L3Ntcz48L2Vudm9pPg==\r\n",
        );
        assert_eq!(sms_of(&parse(&raw).unwrap().text), SMS);
    }

    #[test]
    fn eight_bit_without_charset_is_windows_1252() {
        let raw = mail(
            "From: a@b.fr\nContent-Transfer-Encoding: 8bit",
            b"<envoi><sms>L'\xe9t\xe9 est fini! Super promo -10% \xe0 partir de 50\x80 d'achat !!!</sms></envoi>\r\n",
        );
        assert_eq!(sms_of(&parse(&raw).unwrap().text), SMS);
    }

    #[test]
    fn eight_bit_without_charset_utf8_stays_utf8() {
        let raw = mail(
            "From: a@b.fr\nContent-Type: text/plain",
            format!("<envoi><sms>{SMS}</sms></envoi>").as_bytes(),
        );
        assert_eq!(sms_of(&parse(&raw).unwrap().text), SMS);
    }

    #[test]
    fn qp_without_charset_is_windows_1252() {
        let raw = mail(
            "From: a@b.fr\nContent-Type: text/plain\nContent-Transfer-Encoding: quoted-printable",
            b"<envoi><sms>L'=E9t=E9 est fini! Super promo -10% =E0 partir de 50=80 d'ach=\r\nat !!!</sms></envoi>",
        );
        assert_eq!(sms_of(&parse(&raw).unwrap().text), SMS);
    }

    #[test]
    fn declared_utf8_but_really_windows_1252() {
        let raw = mail(
            "From: a@b.fr\nContent-Type: text/plain; charset=utf-8",
            b"<envoi><sms>L'\xe9t\xe9 est fini! Super promo -10% \xe0 partir de 50\x80 d'achat !!!</sms></envoi>",
        );
        assert_eq!(sms_of(&parse(&raw).unwrap().text), SMS);
    }

    const MIXED: &[u8] = b"From: Service <service@masociete.com>\r\n\
Message-ID: <m1@masociete.com>\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/mixed; boundary=\"XYZ\"\r\n\
\r\n\
This is a multi-part message in MIME format.\r\n\
--XYZ\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
<envoi>\r\n\
<keyid>a296464ce012b8ab710a</keyid>\r\n\
<emetteur>MaSociete</emetteur>\r\n\
<emailNot>not@masociete.com</emailNot>\r\n\
<emailAck>ack@masociete.com</emailAck>\r\n\
<emailId>1548</emailId>\r\n\
</envoi>\r\n\
\r\n\
--\r\n\
Ce message et ses pi\xc3\xa8ces jointes sont confidentiels. <sms>ignored</sms>\r\n\
--XYZ\r\n\
Content-Type: text/csv\r\n\
Content-Disposition: attachment; filename=\"mobiles.csv\"\r\n\
Content-Transfer-Encoding: 8bit\r\n\
\r\n\
0601020304;;Michel;;Martin;;10/10/2015\r\n\
0601020305;;Sarah;;Dupont;;02/08/2015\r\n\
0601020306;;H\xe9l\xe8ne;;No\xebl;;01/01/2016\r\n\
--XYZ\r\n\
Content-Type: application/octet-stream; name=\"MESSAGE.CSV\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
77u/Qm9uam91ciBbMV0gWzJdLCB2b3RyZSBub3V2ZWxsZSBjYXJ0ZSBzZXJhIGRpc3BvbmlibGUg\r\n\
bGUgWzNdDQo=\r\n\
--XYZ\r\n\
Content-Type: image/png; name=\"logo.png\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
iVBORw0KGgo=\r\n\
--XYZ--\r\n";

    #[test]
    fn multipart_mixed_with_csv_attachments() {
        let parsed = parse(MIXED).unwrap();
        assert_eq!(parsed.from.as_deref(), Some("service@masociete.com"));
        assert_eq!(parsed.message_id.as_deref(), Some("m1@masociete.com"));
        assert!(
            parsed
                .text
                .starts_with("<envoi>\r\n<keyid>a296464ce012b8ab710a</keyid>")
        );
        assert!(parsed.text.contains("pièces jointes"));
        let names: Vec<&str> = parsed.attachments.iter().map(|a| a.name.as_str()).collect();
        assert_eq!(names, ["mobiles.csv", "MESSAGE.CSV"]);
        // Windows-1252 without charset.
        assert_eq!(
            parsed.attachments[0].text.trim_end(),
            "0601020304;;Michel;;Martin;;10/10/2015\r\n\
             0601020305;;Sarah;;Dupont;;02/08/2015\r\n\
             0601020306;;Hélène;;Noël;;01/01/2016"
        );
        // UTF-8 with BOM, base64, binary type.
        assert_eq!(
            parsed.attachments[1].text,
            "Bonjour [1] [2], votre nouvelle carte sera disponible le [3]\r\n"
        );
    }

    #[test]
    fn text_csv_attachment_with_bom_and_charset() {
        let raw = b"From: a@b.fr\r\n\
Content-Type: multipart/mixed; boundary=b1\r\n\
\r\n\
--b1\r\n\
Content-Type: text/plain; charset=us-ascii\r\n\
\r\n\
<envoi><keyid>k</keyid></envoi>\r\n\
--b1\r\n\
Content-Type: text/csv; charset=utf-8; name=message.csv\r\n\
Content-Disposition: attachment\r\n\
\r\n\
\xef\xbb\xbfBonjour [1] \xe2\x82\xac\r\n\
--b1\r\n\
Content-Type: text/csv; charset=windows-1252\r\n\
Content-Disposition: attachment; filename=mobiles.csv\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
0601020304;;No=EBl =80\r\n\
--b1--\r\n";
        let parsed = parse(raw).unwrap();
        assert_eq!(parsed.attachments.len(), 2);
        assert_eq!(parsed.attachments[0].name, "message.csv");
        assert_eq!(parsed.attachments[0].text.trim_end(), "Bonjour [1] €");
        assert_eq!(parsed.attachments[1].name, "mobiles.csv");
        assert_eq!(parsed.attachments[1].text.trim_end(), "0601020304;;Noël €");
    }

    #[test]
    fn inline_csv_files_are_attachments_not_body() {
        let raw = b"From: a@b.fr\r\n\
Content-Type: multipart/mixed; boundary=m\r\n\
\r\n\
--m\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
<envoi><keyid>k</keyid></envoi>\r\n\
--m\r\n\
Content-Type: text/plain\r\n\
Content-Disposition: inline; filename=\"mobiles.csv\"\r\n\
\r\n\
0601020304;;H\xe9l\xe8ne\r\n\
--m\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Disclaimer part\r\n\
--m--\r\n";
        let parsed = parse(raw).unwrap();
        assert_eq!(
            parsed.text,
            "<envoi><keyid>k</keyid></envoi>\nDisclaimer part"
        );
        assert_eq!(parsed.attachments.len(), 1);
        assert_eq!(parsed.attachments[0].name, "mobiles.csv");
        assert_eq!(parsed.attachments[0].text, "0601020304;;Hélène");
    }

    #[test]
    fn multipart_alternative_prefers_plain_text() {
        let raw = b"From: a@b.fr\r\n\
Content-Type: multipart/alternative; boundary=\"alt\"\r\n\
\r\n\
--alt\r\n\
Content-Type: text/plain; charset=ISO-8859-15\r\n\
Content-Transfer-Encoding: quoted-printable\r\n\
\r\n\
<envoi><keyid>k</keyid><num>0601020304</num><sms>50=A4</sms></envoi>\r\n\
--alt\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<html><body><p>&lt;envoi&gt;&lt;sms&gt;html&lt;/sms&gt;&lt;/envoi&gt;</p></body></html>\r\n\
--alt--\r\n";
        let parsed = parse(raw).unwrap();
        assert_eq!(sms_of(&parsed.text), "50€");
        assert!(!parsed.text.contains("html"));
        assert!(parsed.attachments.is_empty());
        assert!(!parsed.html_only);
    }

    #[test]
    fn html_only_is_rendered_to_text() {
        let raw = mail(
            "From: a@b.fr\nContent-Type: text/html; charset=utf-8",
            b"<html><head><style>p {color: red}</style></head><body>\r\n\
<p>&lt;envoi&gt;</p>\r\n\
<p>&lt;keyid&gt;a296464ce012b8ab710a&lt;/keyid&gt;</p>\r\n\
<p>&lt;num&gt;0601020304&lt;/num&gt;</p>\r\n\
<p>&lt;sms&gt;L'&eacute;t&eacute; est fini! Super promo -10% &agrave; partir de 50&euro; d'achat !!!&lt;/sms&gt;</p>\r\n\
<p>&lt;/envoi&gt;</p>\r\n\
<div>Cordialement</div></body></html>\r\n",
        );
        let parsed = parse(&raw).unwrap();
        assert_eq!(sms_of(&parsed.text), SMS);
        assert!(parsed.text.contains("<keyid>a296464ce012b8ab710a</keyid>"));
        assert!(!parsed.text.contains("color"));
    }

    #[test]
    fn html_with_literal_tags_yields_no_envoi() {
        let raw = mail(
            "From: a@b.fr\nContent-Type: text/html; charset=utf-8",
            b"<html><body><envoi><keyid>k</keyid></envoi></body></html>",
        );
        let parsed = parse(&raw).unwrap();
        assert!(!contains_envoi(&parsed.text));
        assert!(parsed.html_only);
    }

    #[test]
    fn html_part_used_when_plain_part_has_no_envoi() {
        let raw = b"From: a@b.fr\r\n\
Content-Type: multipart/alternative; boundary=\"alt\"\r\n\
\r\n\
--alt\r\n\
Content-Type: text/plain; charset=utf-8\r\n\
\r\n\
Bonjour\r\n\
--alt\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>&lt;envoi&gt;&lt;keyid&gt;k&lt;/keyid&gt;&lt;/envoi&gt;</p>\r\n\
--alt--\r\n";
        let parsed = parse(raw).unwrap();
        assert!(parsed.text.contains("<envoi><keyid>k</keyid></envoi>"));
    }

    #[test]
    fn not_a_message() {
        assert_eq!(parse(b""), Err(MailError::Empty));
        assert_eq!(parse(b"\r\n \r\n"), Err(MailError::Empty));
        assert!(parse(b"\x00\x01\x02\xff\xfe binary junk").is_err());
        assert!(parse(b"just a line of text, no header").is_err());
    }

    #[test]
    fn decode_bytes_fallbacks() {
        let decode = |bytes: &[u8]| decode_owned(bytes.to_vec());
        assert_eq!(decode(b"\xef\xbb\xbfabc"), "abc");
        assert_eq!(decode(b"caf\xc3\xa9"), "café");
        assert_eq!(decode(b"caf\xe9 \x80"), "café €");
    }

    /// Issue 8: with two `From:`, which one was checked was the last one;
    /// such a message is now refused.
    #[test]
    fn several_from_headers_are_refused() {
        let raw = mail(
            "From: evil@evil.test\nFrom: ops@acme.test\nContent-Type: text/plain",
            b"<envoi><keyid>k</keyid></envoi>",
        );
        assert_eq!(parse(&raw), Err(MailError::SeveralFrom));
        let one = mail("From: ops@acme.test\nSender: a@b.fr\nSender: c@d.fr", b"x");
        assert_eq!(parse(&one).unwrap().from.as_deref(), Some("ops@acme.test"));
    }

    /// Issue 8: the attachments are only decoded when asked for.
    #[test]
    fn attachments_are_read_on_demand() {
        let (mail, mime) = read(MIXED).unwrap();
        assert!(mail.attachments.is_empty());
        assert!(mail.text.contains("<keyid>a296464ce012b8ab710a</keyid>"));
        let names: Vec<String> = mime.attachments().into_iter().map(|a| a.name).collect();
        assert_eq!(names, ["mobiles.csv", "MESSAGE.CSV"]);
    }
    #[test]
    fn the_subject_is_decoded_and_the_date_read() {
        let raw = b"From: a@example.com\r\nSubject: =?ISO-8859-1?Q?Temp=E9rature?= =?UTF-8?B?4pyT?=\r\nDate: Wed, 01 Jul 2026 14:05:00 +0200\r\n\r\nbody\r\n";
        let mail = parse(raw).expect("mail");
        assert_eq!(mail.subject.as_deref(), Some("Température✓"));
        let date: jiff::Timestamp = "2026-07-01T12:05:00Z".parse().expect("ts");
        assert_eq!(mail.date, Some(date));
        let bare = parse(b"From: a@example.com\r\nDate: not a date\r\n\r\nx\r\n").expect("mail");
        assert_eq!((bare.subject, bare.date), (None, None));
    }
}
