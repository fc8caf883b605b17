//! smsfactor's wire format (API v2.2), without any I/O: request bodies out,
//! answers in, and the document's status tables as `match`es.

use super::xml::{self, Token};
use crate::codes::Code;
use crate::providers::DeliveryState;
use crate::providers::SendError;
use crate::providers::delivery as common;
use crate::xml as escaping;

/// The send call, appended to the configured `url` (document §1.1).
pub const SEND_PATH: &str = "apiV2.php";

/// The delivery-report call, appended to the configured `url` (§2.1).
pub const REPORT_PATH: &str = "getDr.php";

/// The `Content-Type` of every request: the document says the XML flow is
/// POSTed, and names no form variable, so it is the raw body, in UTF-8 as
/// its XML declaration says.
pub const CONTENT_TYPE: &str = "text/xml; charset=UTF-8";

/// The longest text smsfactor takes (§1.2.1.4, "Limite : 1120 caractères"),
/// counted in Unicode characters.
pub const MAX_TEXT_CHARS: usize = 1120;

/// The most `<gsm>` recipients we put in one request. The document says
/// "Limite : aucune"; we cap it so that one request stays a few tens of
/// kilobytes and one failure touches a bounded number of SMS.
pub const MAX_RECIPIENTS: usize = 1000;

/// The time zone of `<delay>`: smsfactor is a French service and the
/// document's example (`2010-09-21T21:10:00`) has no offset.
pub const DELAY_TIME_ZONE: &str = "Europe/Paris";

/// The account, as `<authentication>` carries it.
#[derive(Clone, Copy)]
pub struct Credentials<'a> {
    /// `<username>`: the account's email address.
    pub username: &'a str,
    /// `<password>`.
    pub password: &'a str,
}

/// The `<message>` part of a send request: what every recipient receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message<'a> {
    /// `<sender>`, required by smsfactor.
    pub sender: &'a str,
    /// `<text>`.
    pub text: &'a str,
    /// `<delay>` (`yyyy-mm-ddThh:mm:ss`, Paris time), for a scheduled send.
    pub delay: Option<String>,
}

/// One `<gsm gsmsmsid="…">number</gsm>` of a send request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recipient<'a> {
    /// The number in international form without `+` (`33601020304`).
    pub number: &'a str,
    /// Our reference for this SMS, so its delivery report can be found.
    pub gsmsmsid: &'a str,
}

/// How values go between tags or in an attribute: the characters XML 1.0
/// cannot carry at all (control characters other than tab, line feed and
/// carriage return) are dropped, since one of them would make smsfactor
/// refuse the whole request as malformed (status -2); the rest is escaped,
/// quotes too (values also stand in attributes).
pub const STYLE: escaping::Style = escaping::Style {
    quotes: true,
    cr_reference: false,
    forbidden: escaping::Forbidden::Drop,
};

/// A value ready to go between tags or in an attribute ([`STYLE`]).
fn value(text: &str) -> String {
    escaping::escape(text, STYLE)
}

/// The `<authentication>` element.
fn authentication(credentials: Credentials<'_>) -> String {
    format!(
        "<authentication><username>{}</username><password>{}</password></authentication>",
        value(credentials.username),
        value(credentials.password)
    )
}

/// The body of a send request (§1.2): an XML declaration, then `<sms>` on
/// one line, elements in the document's order, without the optional
/// `<isFlash>`, `<type>` (default `longSMS`) and `<bookmark>`, and with
/// `<delay>` only for a scheduled send.
pub fn encode_send(
    credentials: Credentials<'_>,
    message: &Message<'_>,
    recipients: &[Recipient<'_>],
) -> Vec<u8> {
    let mut out = String::with_capacity(300 + message.text.len() + recipients.len() * 60);
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<sms>");
    out.push_str(&authentication(credentials));
    out.push_str("<message><sender>");
    out.push_str(&value(message.sender));
    out.push_str("</sender><text>");
    out.push_str(&value(message.text));
    out.push_str("</text>");
    if let Some(delay) = &message.delay {
        out.push_str("<delay>");
        out.push_str(&value(delay));
        out.push_str("</delay>");
    }
    out.push_str("</message><recipients>");
    for r in recipients {
        out.push_str("<gsm gsmsmsid=\"");
        out.push_str(&value(r.gsmsmsid));
        out.push_str("\">");
        out.push_str(&value(r.number));
        out.push_str("</gsm>");
    }
    out.push_str("</recipients></sms>\n");
    out.into_bytes()
}

/// `<delay>` for a send at `send_at_ms` (Unix milliseconds): the wall-clock
/// time in Paris, to the second (`2010-09-21T21:10:00`). In the autumn hour
/// that happens twice, the text is the same for both; smsfactor picks one.
pub fn paris_delay(send_at_ms: i64) -> Result<String, String> {
    let at = jiff::Timestamp::from_millisecond(send_at_ms)
        .map_err(|e| format!("send time {send_at_ms} ms is out of range: {e}"))?;
    let tz = jiff::tz::TimeZone::get(DELAY_TIME_ZONE)
        .map_err(|e| format!("time zone {DELAY_TIME_ZONE} unavailable: {e}"))?;
    Ok(at.to_zoned(tz).strftime("%Y-%m-%dT%H:%M:%S").to_string())
}

/// The body of a delivery-report request (§2.2). The document always shows
/// the `gsmsmsid` attribute; without a reference it is sent empty.
pub fn encode_report_request(
    credentials: Credentials<'_>,
    ticket: &str,
    gsmsmsid: Option<&str>,
) -> Vec<u8> {
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<deliveryreport>{}<message><ticket gsmsmsid=\"{}\">{}</ticket></message></deliveryreport>\n",
        authentication(credentials),
        value(gsmsmsid.unwrap_or("")),
        value(ticket)
    )
    .into_bytes()
}

/// An answer that is not smsfactor's `<response>`: a proxy's error page, a
/// cut answer, a PHP error. Sorted as transient by the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// No `<status>` element at all.
    #[error("answer without <status>{snippet}")]
    NoStatus {
        /// The start of the answer (see [`crate::providers::http::snippet`]).
        snippet: String,
    },
    /// A `<status>` that is not an integer.
    #[error("answer with status {0:?}, not a number")]
    BadStatus(String),
    /// The answer stops inside `<status>`: its number may be cut.
    #[error("answer cut short in <status>")]
    CutShort,
}

/// The `<status>` of an answer, as an integer.
/// The number must be followed by a tag, so that a cut answer (`<status>1`
/// of `<status>12</status>`) is not read as another status; what comes after
/// `</status>` need not be there, so a "sent" whose answer was cut after its
/// status still counts as sent (never to be sent twice).
fn status(tokens: &[Token], text: &str) -> Result<i64, DecodeError> {
    let at = tokens
        .iter()
        .position(|t| t.is_start("status"))
        .ok_or_else(|| DecodeError::NoStatus {
            snippet: crate::providers::http::snippet(text),
        })?;
    if matches!(tokens[at], Token::Start { empty: true, .. }) {
        return Err(DecodeError::BadStatus(String::new()));
    }
    let raw = xml::text_after(tokens, at);
    let ends = match tokens.get(at + 1) {
        Some(Token::Text(_)) => at + 2,
        _ => at + 1,
    };
    if tokens.get(ends).is_none() {
        return Err(DecodeError::CutShort);
    }
    raw.parse().map_err(|_| DecodeError::BadStatus(raw))
}

/// Text from the provider made fit for a log line: one line, at most 200
/// characters.
fn one_line(text: &str) -> String {
    text.split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect()
}

/// The answer to a send (§1.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendResponse {
    /// `<status>`: 1 sent, negative an error (§1.3.1.1).
    pub status: i64,
    /// `<message>`: the status in words (may differ for XML errors).
    pub message: String,
    /// `<ticket>`: the send's number at smsfactor, for delivery reports;
    /// `None` if absent or empty.
    pub ticket: Option<String>,
    /// `<credits>`: the credits left on the account, as written; `None` if
    /// absent or empty.
    pub credits: Option<String>,
}

/// A non-empty element text.
fn non_empty(tokens: &[Token], name: &str) -> Option<String> {
    xml::first_text(tokens, name).filter(|t| !t.is_empty())
}

/// Reads the answer to a send; tolerates the document's own typos
/// (`</ message >`).
pub fn decode_send_response(text: &str) -> Result<SendResponse, DecodeError> {
    let tokens = xml::tokens(text);
    Ok(SendResponse {
        status: status(&tokens, text)?,
        message: one_line(&xml::first_text(&tokens, "message").unwrap_or_default()),
        ticket: non_empty(&tokens, "ticket"),
        credits: non_empty(&tokens, "credits"),
    })
}

/// The document's table of send statuses (§1.3.1.1): `Ok(ticket)` for
/// every SMS of the request, or the error each of them gets.
///
/// | status | meaning (document)           | kind      | code |
/// |--------|------------------------------|-----------|------|
/// | 1      | message envoyé               | sent      | 0    |
/// | -1     | login / mot de passe         | unusable  | 3    |
/// | -2     | erreur XML                   | permanent | 999  |
/// | -3     | crédits insuffisants         | unusable  | 12   |
/// | -4     | date différée incorrecte     | permanent | 999  |
/// | -5     | liste des destinataires      | permanent | 7    |
/// | other  | (not documented)             | permanent | 999  |
pub fn send_outcome(response: &SendResponse) -> Result<String, SendError> {
    let said = describe(response);
    match response.status {
        // Sent and debited: even without a ticket it must not be sent again.
        1 => Ok(response
            .ticket
            .clone()
            .unwrap_or_else(|| NO_TICKET.to_owned())),
        -1 => Err(SendError::unusable(
            Code::BAD_CREDENTIALS,
            format!("smsfactor refused the username/password ({said})"),
        )),
        -2 => Err(SendError::permanent(
            Code::INTERNAL,
            format!("smsfactor could not read our XML request ({said}); not retried"),
        )),
        -3 => Err(SendError::unusable(
            Code::NO_CREDIT,
            format!("not enough smsfactor credits ({said})"),
        )),
        -4 => Err(SendError::permanent(
            Code::INTERNAL,
            format!("smsfactor refused the scheduled date <delay> ({said})"),
        )),
        -5 => Err(SendError::permanent(
            Code::BAD_NUMBER,
            format!("smsfactor refused the recipient list ({said})"),
        )),
        _ => Err(SendError::permanent(
            Code::INTERNAL,
            format!("smsfactor answered an undocumented status ({said})"),
        )),
    }
}

/// The provider id reported for an SMS when smsfactor said "sent" without
/// a `<ticket>`.
pub const NO_TICKET: &str = "no-ticket";

/// `status -3: Crédits insuffisants, credits 0` for details.
fn describe(response: &SendResponse) -> String {
    let mut said = format!("status {}", response.status);
    if !response.message.is_empty() {
        said.push_str(": ");
        said.push_str(&response.message);
    }
    if let Some(credits) = &response.credits {
        said.push_str(", credits ");
        said.push_str(&one_line(credits));
    }
    said
}

/// A delivery report's status (§2.3.1.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReportStatus {
    /// `NOT_SENT`: stored at smsfactor but not sent yet; sent as soon as
    /// possible.
    NotSent,
    /// `SENT`: sent, no delivery report available for this number.
    Sent,
    /// `NOT_DELIVERED`: cannot be delivered.
    NotDelivered,
    /// `DELIVERED`: sent and received.
    Delivered,
    /// `NOT_ALLOWED`: no message may be sent to this number.
    NotAllowed,
    /// `INVALID_DESTINATION_ADDRESS`: the number is not valid.
    InvalidDestinationAddress,
    /// A status the document does not list, as written.
    Other(String),
}

impl ReportStatus {
    /// Reads a status word (ASCII case ignored, surrounding blanks too).
    pub fn from_wire(word: &str) -> ReportStatus {
        let word = word.trim();
        match word.to_ascii_uppercase().as_str() {
            "NOT_SENT" => ReportStatus::NotSent,
            "SENT" => ReportStatus::Sent,
            "NOT_DELIVERED" => ReportStatus::NotDelivered,
            "DELIVERED" => ReportStatus::Delivered,
            "NOT_ALLOWED" => ReportStatus::NotAllowed,
            "INVALID_DESTINATION_ADDRESS" => ReportStatus::InvalidDestinationAddress,
            _ => ReportStatus::Other(word.to_owned()),
        }
    }
}

impl ReportStatus {
    /// The word as smsfactor writes it.
    pub fn word(&self) -> &str {
        match self {
            ReportStatus::NotSent => "NOT_SENT",
            ReportStatus::Sent => "SENT",
            ReportStatus::NotDelivered => "NOT_DELIVERED",
            ReportStatus::Delivered => "DELIVERED",
            ReportStatus::NotAllowed => "NOT_ALLOWED",
            ReportStatus::InvalidDestinationAddress => "INVALID_DESTINATION_ADDRESS",
            ReportStatus::Other(word) => word,
        }
    }

    /// The document's meaning of the status (§2.3.1.2).
    pub fn meaning(&self) -> &'static str {
        match self {
            ReportStatus::NotSent => "Le message est enregistré mais n'a pas encore été envoyé",
            ReportStatus::Sent => {
                "Le message a été envoyé mais aucun accusé de réception n'est disponible"
            }
            ReportStatus::NotDelivered => "Le message ne peut pas être remis au destinataire",
            ReportStatus::Delivered => "Le message a été envoyé et reçu",
            ReportStatus::NotAllowed => "Aucun message ne peut être envoyé vers ce numéro",
            ReportStatus::InvalidDestinationAddress => "Le numéro indiqué n'est pas valide",
            ReportStatus::Other(_) => "statut absent du document",
        }
    }

    /// The common state: `NOT_SENT` (sent as soon as possible) and `SENT`
    /// (no receipt yet) are accepted; the three refusals undelivered.
    pub fn state(&self) -> DeliveryState {
        match self {
            ReportStatus::NotSent | ReportStatus::Sent => DeliveryState::Accepted,
            ReportStatus::Delivered => DeliveryState::Delivered,
            ReportStatus::NotDelivered
            | ReportStatus::NotAllowed
            | ReportStatus::InvalidDestinationAddress => DeliveryState::undelivered(self.meaning()),
            ReportStatus::Other(_) => DeliveryState::Unknown,
        }
    }
}

/// One `<gsm number="…" gsmsmsid="…">STATUS</gsm>` of a delivery-report
/// answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReport {
    /// `number`: the phone number as smsfactor writes it.
    pub number: String,
    /// `gsmsmsid`: the reference we gave at send (our SMS reference).
    pub gsmsmsid: String,
    /// The status; `None` when smsfactor has none yet ("si aucun statut
    /// n'est disponible merci de réessayer plus tard").
    pub status: Option<ReportStatus>,
}

impl DeliveryReport {
    /// The common status. A report without a status yet ("si aucun statut
    /// n'est disponible merci de réessayer plus tard") is accepted: the
    /// send was.
    pub fn delivery(&self) -> common::DeliveryStatus {
        let (state, code, text) = match &self.status {
            Some(status) => (status.state(), status.word(), status.meaning()),
            None => (DeliveryState::Accepted, "", "aucun statut disponible"),
        };
        common::DeliveryStatus {
            id: self.gsmsmsid.clone(),
            number: Some(self.number.clone()),
            state,
            provider_code: code.to_owned(),
            provider_text: text.to_owned(),
            at: None,
        }
    }
}

/// The answer to a delivery-report request (§2.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryReports {
    /// `<status>`: 1 answered, -1 credentials, -2 XML error.
    pub status: i64,
    /// `<message>`, one line.
    pub message: String,
    /// The `<gsm>` entries, in the answer's order.
    pub reports: Vec<DeliveryReport>,
}

/// Reads a delivery-report answer. Each `<gsm>` start tag gives a report;
/// its status is the text right after it, so both the clean form
/// `<gsm number="…" gsmsmsid="…">DELIVERED</gsm>` and the document's
/// literal `<gsm number="…" gsmsmsid="…" /></gsm>` (no status) are read.
pub fn decode_delivery_reports(text: &str) -> Result<DeliveryReports, DecodeError> {
    let tokens = xml::tokens(text);
    let status = status(&tokens, text)?;
    let reports = tokens
        .iter()
        .enumerate()
        .filter(|(_, t)| t.is_start("gsm"))
        .map(|(i, t)| {
            let word = xml::text_after(&tokens, i);
            DeliveryReport {
                number: t.attr("number").unwrap_or("").trim().to_owned(),
                gsmsmsid: t.attr("gsmsmsid").unwrap_or("").trim().to_owned(),
                status: (!word.is_empty()).then(|| ReportStatus::from_wire(&word)),
            }
        })
        .collect();
    Ok(DeliveryReports {
        status,
        message: one_line(&xml::first_text(&tokens, "message").unwrap_or_default()),
        reports,
    })
}

/// The document's table of delivery-report statuses (§2.3.1.1).
///
/// | status | meaning (document)    | kind      | code |
/// |--------|-----------------------|-----------|------|
/// | 1      | réponse               | ok        | –    |
/// | -1     | login / mot de passe  | unusable  | 3    |
/// | -2     | erreur XML            | permanent | 999  |
/// | other  | (not documented)      | permanent | 999  |
pub fn report_outcome(reports: DeliveryReports) -> Result<DeliveryReports, SendError> {
    let said = if reports.message.is_empty() {
        format!("status {}", reports.status)
    } else {
        format!("status {}: {}", reports.status, reports.message)
    };
    match reports.status {
        1 => Ok(reports),
        -1 => Err(SendError::unusable(
            Code::BAD_CREDENTIALS,
            format!("smsfactor refused the username/password ({said})"),
        )),
        -2 => Err(SendError::permanent(
            Code::INTERNAL,
            format!("smsfactor could not read our XML request ({said})"),
        )),
        _ => Err(SendError::permanent(
            Code::INTERNAL,
            format!("smsfactor answered an undocumented status ({said})"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::FailureKind;

    const CREDS: Credentials<'static> = Credentials {
        username: "compte@masociete.com",
        password: "s3cr&t<",
    };

    #[test]
    fn send_request_bytes() {
        let body = encode_send(
            CREDS,
            &Message {
                sender: "MaSociete",
                text: "L'été \"chaud\" <promo> & -10%\nligne 2",
                delay: None,
            },
            &[
                Recipient {
                    number: "33601020304",
                    gsmsmsid: "ab12-1",
                },
                Recipient {
                    number: "33601020305",
                    gsmsmsid: "ab12-2",
                },
            ],
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<sms><authentication><username>compte@masociete.com</username><password>s3cr&amp;t&lt;</password></authentication><message><sender>MaSociete</sender><text>L&apos;été &quot;chaud&quot; &lt;promo&gt; &amp; -10%\nligne 2</text></message><recipients><gsm gsmsmsid=\"ab12-1\">33601020304</gsm><gsm gsmsmsid=\"ab12-2\">33601020305</gsm></recipients></sms>\n"
        );
    }

    #[test]
    fn send_request_has_the_documents_structure() {
        // The document's skeleton (§1.2) with its optional elements removed
        // and values filled in, compared as a tree: same elements, same
        // order, same attributes.
        let body = encode_send(
            CREDS,
            &Message {
                sender: "S",
                text: "T",
                delay: Some("2010-09-21T21:10:00".into()),
            },
            &[Recipient {
                number: "33600000000",
                gsmsmsid: "R",
            }],
        );
        let ours: Vec<Token> = xml::tokens(&String::from_utf8(body).unwrap())
            .into_iter()
            .filter(|t| !matches!(t, Token::Text(s) if s.trim().is_empty()))
            .collect();
        let document = "<sms>\n  <authentication>\n    <username>compte@masociete.com</username>\n    <password>s3cr&amp;t&lt;</password>\n  </authentication>\n  <message>\n    <sender>S</sender>\n    <text>T</text>\n    <delay>2010-09-21T21:10:00</delay>\n  </message>\n  <recipients>\n    <gsm gsmsmsid=\"R\">33600000000</gsm>\n  </recipients>\n</sms>";
        let theirs: Vec<Token> = xml::tokens(document)
            .into_iter()
            .filter(|t| !matches!(t, Token::Text(s) if s.trim().is_empty()))
            .collect();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn characters_xml_cannot_carry_are_dropped() {
        let body = encode_send(
            CREDS,
            &Message {
                sender: "S",
                text: "a\u{0}b\u{1b}c\td\u{fffe}e😀",
                delay: None,
            },
            &[],
        );
        assert!(
            String::from_utf8(body)
                .unwrap()
                .contains("<text>abc\tde😀</text>")
        );
    }

    #[test]
    fn delay_is_paris_wall_clock_time() {
        // The document's example, 2010-09-21T21:10:00, is summer time (+02).
        assert_eq!(
            paris_delay(1_285_096_200_000).unwrap(),
            "2010-09-21T21:10:00"
        );
        // Winter time (+01), and milliseconds are dropped.
        assert_eq!(
            paris_delay(1_736_942_400_999).unwrap(),
            "2025-01-15T13:00:00"
        );
        assert!(paris_delay(i64::MAX).is_err());
    }

    #[test]
    fn report_request_bytes() {
        assert_eq!(
            String::from_utf8(encode_report_request(CREDS, "123456", Some("ab12-1"))).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<deliveryreport><authentication><username>compte@masociete.com</username><password>s3cr&amp;t&lt;</password></authentication><message><ticket gsmsmsid=\"ab12-1\">123456</ticket></message></deliveryreport>\n"
        );
        assert!(
            String::from_utf8(encode_report_request(CREDS, "0", None))
                .unwrap()
                .contains("<ticket gsmsmsid=\"\">0</ticket>")
        );
    }

    /// The document's answer skeleton (§1.3), with `</ message >` as
    /// written there, filled with `status`.
    fn documents_answer(status: &str, message: &str, ticket: &str, credits: &str) -> String {
        format!(
            "<response>\n  <status>{status}</status>\n  <message>{message}</ message >\n  <ticket>{ticket}</ticket>\n  <credits>{credits}</credits>\n</response>"
        )
    }

    #[test]
    fn send_answer_as_the_document_writes_it() {
        let r = decode_send_response(&documents_answer("1", "OK", "1234567", "212")).unwrap();
        assert_eq!(
            r,
            SendResponse {
                status: 1,
                message: "OK".into(),
                ticket: Some("1234567".into()),
                credits: Some("212".into()),
            }
        );
        assert_eq!(send_outcome(&r), Ok("1234567".into()));
    }

    #[test]
    fn send_answer_clean_and_sparse() {
        let r = decode_send_response(
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<response><status>-3</status><message>Crédits insuffisants</message><ticket/><credits>0</credits></response>",
        )
        .unwrap();
        assert_eq!(r.status, -3);
        assert_eq!(r.message, "Crédits insuffisants");
        assert_eq!(r.ticket, None);
        assert_eq!(r.credits.as_deref(), Some("0"));
        let r = decode_send_response("<response><status> -1 </status></response>").unwrap();
        assert_eq!((r.status, r.message.as_str()), (-1, ""));
    }

    #[test]
    fn unreadable_send_answers() {
        assert_eq!(
            decode_send_response("<html><body>Bad gateway</body></html>"),
            Err(DecodeError::NoStatus {
                snippet: ": <html><body>Bad gateway</body></html>".into()
            })
        );
        assert_eq!(
            decode_send_response("<response><status>OK</status></response>"),
            Err(DecodeError::BadStatus("OK".into()))
        );
        assert!(decode_send_response("").is_err());
        assert_eq!(
            decode_send_response("<response><status/>1<x/></response>"),
            Err(DecodeError::BadStatus(String::new()))
        );
        assert_eq!(
            decode_send_response("<response><status>1"),
            Err(DecodeError::CutShort)
        );
        assert_eq!(
            decode_send_response("<response><status>-").unwrap_err(),
            DecodeError::CutShort
        );
        // Cut after the status: the status stands.
        assert_eq!(
            decode_send_response("<response><status>1</status><message>O")
                .unwrap()
                .status,
            1
        );
    }

    fn outcome(status: i64) -> Result<String, SendError> {
        send_outcome(&SendResponse {
            status,
            message: "le message".into(),
            ticket: None,
            credits: Some("42".into()),
        })
    }

    fn kind_code(r: Result<String, SendError>) -> (FailureKind, Code, String) {
        let e = r.unwrap_err();
        (e.kind, e.code, e.detail)
    }

    #[test]
    fn send_status_table() {
        assert_eq!(outcome(1), Ok(NO_TICKET.into()));
        let rows = [
            (-1, FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS),
            (-2, FailureKind::Permanent, Code::INTERNAL),
            (-3, FailureKind::ProviderUnusable, Code::NO_CREDIT),
            (-4, FailureKind::Permanent, Code::INTERNAL),
            (-5, FailureKind::Permanent, Code::BAD_NUMBER),
            (0, FailureKind::Permanent, Code::INTERNAL),
            (2, FailureKind::Permanent, Code::INTERNAL),
            (-6, FailureKind::Permanent, Code::INTERNAL),
        ];
        for (status, kind, code) in rows {
            let (k, c, detail) = kind_code(outcome(status));
            assert_eq!((k, c), (kind, code), "status {status}");
            assert!(
                detail.contains(&format!("status {status}: le message, credits 42")),
                "{detail}"
            );
        }
        let (_, _, detail) = kind_code(outcome(-3));
        assert_eq!(
            detail,
            "not enough smsfactor credits (status -3: le message, credits 42)"
        );
    }

    #[test]
    fn delivery_answer_as_the_document_writes_it() {
        // §2.3 literally: spaced end tag, self-closed <gsm/> then </gsm>,
        // so no status is given.
        let text = "<response>\n  <status>1</status>\n  <message>OK</ message >\n  <gsm number=\"33600000000\" gsmsmsid=\"ab12-1\" /></gsm>\n  <gsm number=\"33600000001\" gsmsmsid=\"ab12-2\" /></gsm>\n  <gsm number=\"\" gsmsmsid=\"\" /></gsm>\n</response>";
        let r = decode_delivery_reports(text).unwrap();
        assert_eq!(r.status, 1);
        assert_eq!(r.message, "OK");
        assert_eq!(
            r.reports,
            vec![
                DeliveryReport {
                    number: "33600000000".into(),
                    gsmsmsid: "ab12-1".into(),
                    status: None,
                },
                DeliveryReport {
                    number: "33600000001".into(),
                    gsmsmsid: "ab12-2".into(),
                    status: None,
                },
                DeliveryReport {
                    number: String::new(),
                    gsmsmsid: String::new(),
                    status: None,
                },
            ]
        );
        // The document's form with a status after the stray self-close.
        let r = decode_delivery_reports(
            "<response><status>1</status><message>OK</ message ><gsm number=\"336\" gsmsmsid=\"x\" />DELIVERED</gsm></response>",
        )
        .unwrap();
        assert_eq!(r.reports[0].status, Some(ReportStatus::Delivered));
    }

    #[test]
    fn delivery_answer_clean_with_every_status() {
        let words = [
            ("NOT_SENT", ReportStatus::NotSent),
            ("SENT", ReportStatus::Sent),
            ("NOT_DELIVERED", ReportStatus::NotDelivered),
            ("DELIVERED", ReportStatus::Delivered),
            ("NOT_ALLOWED", ReportStatus::NotAllowed),
            (
                "INVALID_DESTINATION_ADDRESS",
                ReportStatus::InvalidDestinationAddress,
            ),
            ("EXPIRED", ReportStatus::Other("EXPIRED".into())),
        ];
        let gsm: String = words
            .iter()
            .enumerate()
            .map(|(i, (w, _))| {
                format!("<gsm number=\"3360000000{i}\" gsmsmsid=\"r{i}\">{w}</gsm>\n")
            })
            .collect();
        let r = decode_delivery_reports(&format!(
            "<?xml version=\"1.0\"?>\n<response><status>1</status><message>OK</message>\n{gsm}</response>"
        ))
        .unwrap();
        assert_eq!(r.reports.len(), words.len());
        for (i, (report, (_, status))) in r.reports.iter().zip(&words).enumerate() {
            assert_eq!(report.number, format!("3360000000{i}"));
            assert_eq!(report.gsmsmsid, format!("r{i}"));
            assert_eq!(report.status.as_ref(), Some(status));
        }
        assert_eq!(
            ReportStatus::from_wire(" delivered\n"),
            ReportStatus::Delivered
        );
    }

    #[test]
    fn delivery_status_table() {
        let answer = |status: i64| DeliveryReports {
            status,
            message: "m".into(),
            reports: vec![],
        };
        assert_eq!(report_outcome(answer(1)), Ok(answer(1)));
        let rows = [
            (-1, FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS),
            (-2, FailureKind::Permanent, Code::INTERNAL),
            (0, FailureKind::Permanent, Code::INTERNAL),
            (-3, FailureKind::Permanent, Code::INTERNAL),
        ];
        for (status, kind, code) in rows {
            let e = report_outcome(answer(status)).unwrap_err();
            assert_eq!((e.kind, e.code), (kind, code), "status {status}");
            assert!(e.detail.contains(&format!("status {status}: m")));
        }
        assert!(decode_delivery_reports("<response></response>").is_err());
    }

    #[test]
    fn every_report_status_has_a_common_state() {
        use crate::providers::DeliveryState as S;
        let undelivered = |s: ReportStatus| S::undelivered(s.meaning());
        let rows = [
            ("NOT_SENT", S::Accepted),
            ("SENT", S::Accepted),
            ("NOT_DELIVERED", undelivered(ReportStatus::NotDelivered)),
            ("DELIVERED", S::Delivered),
            ("NOT_ALLOWED", undelivered(ReportStatus::NotAllowed)),
            (
                "INVALID_DESTINATION_ADDRESS",
                undelivered(ReportStatus::InvalidDestinationAddress),
            ),
            ("EXPIRED", S::Unknown),
        ];
        for (word, state) in rows {
            let status = ReportStatus::from_wire(word);
            assert_eq!(status.state(), state, "{word}");
            assert_eq!(status.word(), word);
        }
        // §2.3's example, as the document writes it: no status yet.
        let r = decode_delivery_reports(
            "<response>\n  <status>1</status>\n  <message></ message >\n  <gsm number=\"33601020304\" gsmsmsid=\"0a1b-1\" /></gsm>\n</response>",
        )
        .unwrap();
        assert_eq!(
            r.reports[0].delivery(),
            common::DeliveryStatus {
                id: "0a1b-1".into(),
                number: Some("33601020304".into()),
                state: S::Accepted,
                provider_code: String::new(),
                provider_text: "aucun statut disponible".into(),
                at: None,
            }
        );
    }
}
