//! The message generator: single-recipient iSendPro `<envoi>` emails.

/// Second digit after "06" that makes a valid French mobile number
/// (libphonenumber: 6[0-24-8]\d{7}).
const MOBILE_DIGIT: [u8; 8] = [b'0', b'1', b'2', b'4', b'5', b'6', b'7', b'8'];

/// Makes the messages of a run: emailIds, phone numbers and the DATA payload.
pub(crate) struct MsgGen {
    /// Makes this run's emailIds distinct from every other run's.
    pub(crate) run_id: u64,
    /// `--numeric-ids`: emailIds made of digits only.
    pub(crate) numeric_ids: bool,
    /// The `<keyid>` every message carries.
    pub(crate) keyid: String,
    /// Envelope sender and `From:`.
    pub(crate) from: String,
    /// Envelope recipient and `To:`.
    pub(crate) to: String,
    /// Whether messages ask for etatAck / etatNot replies.
    pub(crate) acks: bool,
    /// The `Date:` header, the same for every message.
    pub(crate) date: String,
    /// `--sms-bytes`: pad each `<sms>` text to this many bytes (0: a short text).
    pub(crate) sms_bytes: usize,
    /// `--pad-bytes`: text after `</envoi>` up to this many bytes (0: none).
    pub(crate) pad_bytes: usize,
    /// `--alert`: plain alert mail, the recipient address naming the number.
    pub(crate) alert: bool,
}

/// What every alert text starts with, before the message's emailId: the
/// outbox tailer finds the message an alert SMS belongs to by it (alerts
/// carry no emailId).
pub(crate) const ALERT_SUBJECT: &str = "mail2sms load ";

/// Appends lines of `y` (78 bytes with their CRLF) until `text` is about
/// `bytes` long.
fn pad_lines(text: &mut String, bytes: usize) {
    if bytes > text.len() {
        text.reserve(bytes - text.len());
        while text.len() + 78 <= bytes {
            text.push_str(&"y".repeat(76));
            text.push_str("\r\n");
        }
    }
}

impl MsgGen {
    /// The emailId of message `idx`.
    pub(crate) fn email_id(&self, idx: usize) -> String {
        if self.numeric_ids {
            // 13-digit millis * 10^7 + idx stays below i64::MAX.
            format!("{}", self.run_id * 10_000_000 + idx as u64)
        } else {
            format!("{}-{}", self.run_id, idx)
        }
    }

    /// Prefix shared by every emailId of this run.
    pub(crate) fn id_prefix(&self) -> String {
        if self.numeric_ids {
            // Digits of run_id followed by idx padded into 7 digits.
            format!("{}", self.run_id)
        } else {
            format!("{}-", self.run_id)
        }
    }

    /// The phone number of message `idx`: a distinct French mobile.
    fn number(idx: usize) -> String {
        let d = MOBILE_DIGIT[(idx / 10_000_000) % MOBILE_DIGIT.len()] as char;
        format!("06{d}{:07}", idx % 10_000_000)
    }

    /// The `<sms>` text: short, or padded with lines of `x` up to
    /// `sms_bytes` (lines stay under SMTP's 1 000-byte line limit).
    fn sms_text(&self, idx: usize) -> String {
        let mut text = format!("Load test message {idx}");
        if self.sms_bytes > text.len() {
            text.reserve(self.sms_bytes - text.len());
            while text.len() < self.sms_bytes {
                let n = (self.sms_bytes - text.len()).min(78);
                text.push_str("\r\n");
                text.extend(std::iter::repeat_n('x', n.saturating_sub(2)));
            }
        }
        text
    }

    /// The DATA payload, CRLF line endings, dot-stuffed, ending with CRLF
    /// (the terminating ".\r\n" is written separately).
    pub(crate) fn data(&self, idx: usize, email_id: &str) -> Vec<u8> {
        if self.alert {
            return self.alert_data(email_id);
        }
        let mut body = String::with_capacity(512);
        body.push_str("<envoi>\r\n");
        body.push_str(&format!("<keyid>{}</keyid>\r\n", xml_escape(&self.keyid)));
        body.push_str(&format!("<num>{}</num>\r\n", Self::number(idx)));
        body.push_str(&format!("<sms>{}</sms>\r\n", self.sms_text(idx)));
        if self.acks {
            body.push_str("<emailNot>ack@load.test</emailNot>\r\n");
            body.push_str("<emailAck>ack@load.test</emailAck>\r\n");
        }
        body.push_str(&format!("<emailId>{}</emailId>\r\n", xml_escape(email_id)));
        body.push_str("</envoi>\r\n");
        pad_lines(&mut body, self.pad_bytes);

        let mut msg = String::with_capacity(1024);
        msg.push_str(&format!("From: <{}>\r\n", self.from));
        msg.push_str(&format!("To: <{}>\r\n", self.to));
        msg.push_str(&format!("Subject: mail2sms load {email_id}\r\n"));
        msg.push_str(&format!("Message-ID: <{email_id}@load.test>\r\n"));
        msg.push_str(&format!("Date: {}\r\n", self.date));
        msg.push_str("MIME-Version: 1.0\r\n");
        msg.push_str("Content-Type: text/plain; charset=UTF-8\r\n");
        msg.push_str("\r\n");
        msg.push_str(&body);
        dot_stuff(msg.as_bytes())
    }

    /// An alert email: what a monitoring server sends, its subject distinct
    /// per message (so that storm control lets each through) and naming it.
    fn alert_data(&self, email_id: &str) -> Vec<u8> {
        let mut msg = String::with_capacity(512);
        msg.push_str(&format!("From: Nagios <{}>\r\n", self.from));
        msg.push_str(&format!("To: <{}>\r\n", self.to));
        msg.push_str(&format!("Subject: {ALERT_SUBJECT}{email_id}\r\n"));
        msg.push_str(&format!("Message-ID: <{email_id}@load.test>\r\n"));
        msg.push_str(&format!("Date: {}\r\n", self.date));
        msg.push_str("MIME-Version: 1.0\r\n");
        msg.push_str("Content-Type: text/plain; charset=UTF-8\r\n");
        msg.push_str("\r\n");
        msg.push_str("** PROBLEM Service Alert: db1/disk is CRITICAL **\r\n\r\n");
        msg.push_str(
            "Host: db1\r\nState: CRITICAL\r\nInfo: DISK CRITICAL - free space: / 312 MB (2%)\r\n",
        );
        msg.push_str("\r\n-- \r\nNagios\r\n");
        dot_stuff(msg.as_bytes())
    }
}

/// Escapes what would end or open a tag in `<keyid>` and `<emailId>`,
/// with the crate's one XML escaper.
fn xml_escape(s: &str) -> String {
    mail2sms::xml::escape(s, mail2sms::xml::Style::MARKUP)
}

/// Double a leading '.' on every line (RFC 5321 4.5.2).
fn dot_stuff(msg: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(msg.len() + 8);
    let mut at_line_start = true;
    for &b in msg {
        if at_line_start && b == b'.' {
            out.push(b'.');
        }
        out.push(b);
        at_line_start = b == b'\n';
    }
    if !out.ends_with(b"\r\n") {
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// RFC 5322 date (UTC) without a date crate.
pub(crate) fn rfc5322_date(unix_secs: u64) -> String {
    const WD: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MON: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} +0000",
        WD[days.rem_euclid(7) as usize],
        d,
        MON[(m - 1) as usize],
        y,
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(rfc5322_date(0), "Thu, 01 Jan 1970 00:00:00 +0000");
        assert_eq!(rfc5322_date(951_782_400), "Tue, 29 Feb 2000 00:00:00 +0000");
        assert_eq!(
            rfc5322_date(1_795_311_260),
            "Sun, 22 Nov 2026 01:34:20 +0000"
        );
    }

    #[test]
    fn numbers_are_distinct_french_mobiles() {
        let mut seen = std::collections::HashSet::new();
        for i in (1000..80_000_000).step_by(9_999_991).chain(0..1000) {
            let n = MsgGen::number(i);
            let b = n.as_bytes();
            assert_eq!(b.len(), 10, "{n}");
            assert!(n.starts_with("06") && b"01245678".contains(&b[2]), "{n}");
            assert!(seen.insert(n));
        }
    }

    #[test]
    fn dot_stuffing() {
        assert_eq!(dot_stuff(b"a\r\n.b\r\n.\r\n"), b"a\r\n..b\r\n..\r\n");
        assert_eq!(dot_stuff(b"a"), b"a\r\n");
    }

    #[test]
    fn message_shape() {
        let g = MsgGen {
            run_id: 42,
            numeric_ids: false,
            keyid: "k<1>".into(),
            from: "load@load.test".into(),
            to: "sms@sms.load.test".into(),
            acks: true,
            date: rfc5322_date(0),
            sms_bytes: 0,
            pad_bytes: 0,
            alert: false,
        };
        let id = g.email_id(7);
        assert_eq!(id, "42-7");
        let d = String::from_utf8(g.data(7, &id)).unwrap();
        assert!(
            d.contains("\r\n\r\n<envoi>\r\n<keyid>k&lt;1&gt;</keyid>\r\n<num>0600000007</num>\r\n")
        );
        assert!(d.contains(
            "<emailAck>ack@load.test</emailAck>\r\n<emailId>42-7</emailId>\r\n</envoi>\r\n"
        ));
        assert!(!d.replace("\r\n", "").contains('\n'));
        let g = MsgGen {
            numeric_ids: true,
            ..g
        };
        assert_eq!(g.email_id(7), "420000007");
        assert!(g.email_id(7).starts_with(&g.id_prefix()));
    }

    #[test]
    fn alert_shape() {
        let g = MsgGen {
            run_id: 9,
            numeric_ids: false,
            keyid: "k".into(),
            from: "nagios@load.test".into(),
            to: "0600000001@sms.load.test".into(),
            acks: false,
            date: rfc5322_date(0),
            sms_bytes: 0,
            pad_bytes: 0,
            alert: true,
        };
        let d = String::from_utf8(g.data(3, "9-3")).unwrap();
        assert!(d.contains("\r\nSubject: mail2sms load 9-3\r\n"), "{d}");
        assert!(d.contains("To: <0600000001@sms.load.test>\r\n"));
        assert!(!d.contains("<envoi>"));
    }

    #[test]
    fn padded_sms_text() {
        let g = MsgGen {
            run_id: 1,
            numeric_ids: false,
            keyid: "k".into(),
            from: "a@b.c".into(),
            to: "d@e.f".into(),
            acks: false,
            date: rfc5322_date(0),
            sms_bytes: 1_000,
            pad_bytes: 0,
            alert: false,
        };
        let text = g.sms_text(3);
        assert_eq!(text.len(), 1_000);
        assert!(text.starts_with("Load test message 3\r\nxxx"));
        assert!(text.split("\r\n").all(|l| l.len() <= 78));
        assert_eq!(
            MsgGen { sms_bytes: 0, ..g }.sms_text(3),
            "Load test message 3"
        );
    }
}
