//! The failure notice of an alert (issue 10): an RFC 3464 delivery status
//! notification, `multipart/report; report-type=delivery-status`, whose
//! first part says in a few plain lines which numbers failed and why, and
//! whose second part (`message/delivery-status`) says it again for
//! programs: one recipient block per failed SMS.

use lettre::Message;
use lettre::message::header::{ContentType, HeaderName, HeaderValue, MIME_VERSION_1_0};
use lettre::message::{Mailbox, MultiPart, SinglePart};

use super::error::ReplyError;
use super::message::{check_header_lines, id_token, parse_recipient};
use crate::store::{DeliveryReport, FailedSms};

/// The most characters of a failure's reason the notice shows: a
/// provider's answer can be long, and the `Diagnostic-Code:` line must
/// stay well within 998 octets.
const REASON_CHARS: usize = 300;

/// The longest Message-ID (brackets included) copied into `In-Reply-To` /
/// `References`; a longer one is left out rather than make a header line
/// over 998 octets.
const MAX_MESSAGE_ID: usize = 900;

/// `Undelivered SMS: 1 of 2 failed`.
pub fn subject(report: &DeliveryReport) -> String {
    format!(
        "Undelivered SMS: {} of {} failed",
        report.failures.len(),
        report.total.max(report.failures.len())
    )
}

/// The failure notice from `from` to `to` (the alert's envelope sender).
/// `domain` names its Message-ID (`<{id}@{domain}>`) and is the
/// `Reporting-MTA`.
pub fn build(
    from: &Mailbox,
    domain: &str,
    id: &str,
    to: &str,
    report: &DeliveryReport,
) -> Result<Message, ReplyError> {
    let mut builder = Message::builder()
        .from(from.clone())
        .to(parse_recipient(to)?)
        .subject(subject(report))
        .message_id(Some(format!("<{}@{domain}>", id_token(id)?)))
        // RFC 3834: an automatic reply; nothing should answer it.
        .raw_header(HeaderValue::new(
            HeaderName::new_from_ascii_str("Auto-Submitted"),
            "auto-replied".to_owned(),
        ))
        .header(MIME_VERSION_1_0);
    if let Some(original) = original_id(report) {
        builder = builder
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("In-Reply-To"),
                original.clone(),
            ))
            .raw_header(HeaderValue::new(
                HeaderName::new_from_ascii_str("References"),
                original,
            ));
    }
    let content_type = |s: &str| {
        ContentType::parse(s).map_err(|e| ReplyError::Config {
            key: "replies",
            reason: format!("content type {s:?}: {e}"),
        })
    };
    let boundary: String = std::iter::repeat_with(fastrand::alphanumeric)
        .take(32)
        .collect();
    let report_type =
        format!("multipart/report; report-type=delivery-status; boundary=\"{boundary}\"");
    let parts = MultiPart::builder()
        .header(content_type(&report_type)?)
        .build()
        .singlepart(
            SinglePart::builder()
                .header(ContentType::TEXT_PLAIN)
                .body(human_text(report)),
        )
        .singlepart(
            SinglePart::builder()
                .header(content_type("message/delivery-status")?)
                .body(delivery_status(domain, report)),
        );
    let message = builder.multipart(parts)?;
    check_header_lines(&message)?;
    Ok(message)
}

/// The original Message-ID in brackets, when it is known and short and
/// plain enough to be copied into a header.
fn original_id(report: &DeliveryReport) -> Option<String> {
    let id = report.message_id.as_deref()?.trim();
    let plain = !id.is_empty()
        && id.len() + 2 <= MAX_MESSAGE_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>');
    plain.then(|| format!("<{id}>"))
}

/// The first part: a few lines a person reads, in UTF-8.
fn human_text(report: &DeliveryReport) -> String {
    let mut text = format!(
        "Your alert could not be delivered by SMS to every recipient: {} of {} SMS failed.\n",
        report.failures.len(),
        report.total.max(report.failures.len())
    );
    if let Some(id) = &report.message_id {
        let shown: String = id.chars().take(200).collect();
        text.push_str(&format!("Alert Message-ID: <{shown}>\n"));
    }
    text.push('\n');
    for failure in &report.failures {
        text.push_str(&format!(
            "- {}: {} (code {})\n",
            shown_number(failure),
            one_line(&failure.reason, REASON_CHARS),
            failure.code.0
        ));
    }
    text.push_str("\nThis notice was sent automatically; do not reply to it.\n");
    text
}

/// The second part: per-message fields, then one block per failed SMS
/// (RFC 3464 §2.2, §2.3), all ASCII.
fn delivery_status(domain: &str, report: &DeliveryReport) -> String {
    let arrival = jiff::Timestamp::from_millisecond(report.received_at)
        .ok()
        .and_then(|t| jiff::fmt::rfc2822::to_string(&t.to_zoned(jiff::tz::TimeZone::UTC)).ok());
    let mut text = format!("Reporting-MTA: dns; {}\n", ascii(domain, 255));
    if let Some(arrival) = arrival {
        text.push_str(&format!("Arrival-Date: {arrival}\n"));
    }
    for failure in &report.failures {
        text.push_str(&format!(
            "\nFinal-Recipient: rfc822; {}\nAction: failed\nStatus: 5.0.0\n\
             Diagnostic-Code: x-mail2sms; {} {}\n",
            final_recipient(domain, failure),
            failure.code.0,
            ascii(&one_line(&failure.reason, REASON_CHARS), REASON_CHARS * 4)
        ));
    }
    text
}

/// The number a person recognises: the E.164 one when the SMS got that
/// far, else the recipient as the alert gave it.
fn shown_number(failure: &FailedSms) -> String {
    let shown = failure.number.as_deref().unwrap_or(&failure.tel);
    one_line(shown, 100)
}

/// `Final-Recipient`: the address the alert was sent to when the store
/// kept one (`tel` with an `@`), else `<number>@<domain>`.
fn final_recipient(domain: &str, failure: &FailedSms) -> String {
    let address = if failure.tel.contains('@') {
        failure.tel.clone()
    } else {
        format!("{}@{domain}", shown_number(failure))
    };
    ascii(&address, 320).replace(char::is_whitespace, "")
}

/// `text` on one line (line breaks and tabs as spaces), cut to `chars`
/// characters with `...` marking the cut.
fn one_line(text: &str, chars: usize) -> String {
    let flat: String = text
        .trim()
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    if flat.chars().count() <= chars {
        return flat;
    }
    let cut: String = flat.chars().take(chars).collect();
    format!("{cut}...")
}

/// `text` with every character outside printable ASCII as `?`, at most
/// `bytes` long: `message/delivery-status` is 7-bit.
fn ascii(text: &str, bytes: usize) -> String {
    text.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '?'
            }
        })
        .take(bytes)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::Code;

    fn report() -> DeliveryReport {
        DeliveryReport {
            message_id: Some("alert-1@nagios.example".into()),
            received_at: 1_764_000_000_000,
            total: 2,
            failures: vec![FailedSms {
                tel: "+33601020304".into(),
                number: Some("+33601020304".into()),
                code: Code(11),
                reason: "numéro désinscrit\r\n(STOP)".into(),
            }],
        }
    }

    #[test]
    fn a_multipart_report_with_both_parts() {
        let from: Mailbox = "mail2sms <sms@gw.example>".parse().expect("from");
        let message = build(
            &from,
            "gw.example",
            "dsn-1",
            "nagios@ops.example",
            &report(),
        )
        .expect("message");
        let raw = message.formatted();
        let parsed = mail_parser::MessageParser::default()
            .parse(&raw[..])
            .expect("mail-parser reads it");
        assert_eq!(parsed.subject(), Some("Undelivered SMS: 1 of 2 failed"));
        let text = String::from_utf8_lossy(&raw);
        assert!(
            text.contains("Content-Type: multipart/report; report-type=delivery-status;"),
            "{text}"
        );
        assert!(
            text.contains("In-Reply-To: <alert-1@nagios.example>\r\n"),
            "{text}"
        );
        assert!(text.contains("Auto-Submitted: auto-replied\r\n"), "{text}");
        let first = parsed.body_text(0).expect("first part");
        assert!(
            first.contains("- +33601020304: numéro désinscrit  (STOP) (code 11)"),
            "{first}"
        );
        for field in [
            "Reporting-MTA: dns; gw.example",
            "Arrival-Date: ",
            "Final-Recipient: rfc822; +33601020304@gw.example",
            "Action: failed",
            "Status: 5.0.0",
            "Diagnostic-Code: x-mail2sms; 11 num?ro d?sinscrit  (STOP)",
        ] {
            assert!(text.contains(field), "{field:?} missing in\n{text}");
        }
    }

    #[test]
    fn a_long_or_odd_message_id_is_left_out() {
        let mut long = report();
        long.message_id = Some("x".repeat(2_000));
        assert_eq!(original_id(&long), None);
        long.message_id = Some("a b@c".into());
        assert_eq!(original_id(&long), None);
        let from: Mailbox = "sms@gw.example".parse().expect("from");
        long.message_id = Some("x".repeat(2_000));
        build(&from, "gw.example", "dsn-2", "a@b.example", &long).expect("still built");
    }
}
