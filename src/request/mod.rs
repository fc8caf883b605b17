//! From a parsed email to a send request: the `<envoi>` block of the body
//! ([`envoi`]), or its attachment form ([`csv`]), interpreted into a
//! [`Request`]; then [`resolve`] turns the recipients into phone numbers for
//! one account's default region ([`phone`]). The pipeline reads requests
//! through one interface, [`RequestReader`] (`reader.rs`, the ingress
//! seam), of which `<envoi>` ([`EnvoiReader`]) is the first implementation.
//!
//! Two kinds of failure, as the protocol has them:
//! * the email cannot be read as a request at all (no `<envoi>`, no keyid, a
//!   broken attachment…): [`RequestError`], refused during the SMTP dialogue;
//! * the request is readable but refused as a whole with a protocol code
//!   (23, 34, 6): [`Request::recipients`] is `Err(code)`, reported to the
//!   sender through `emailNot` like any other result.

pub mod alert;
mod csv;
mod envoi;
pub mod limits;
pub mod phone;
mod reader;
mod text;

use crate::codes::Code;
use crate::logsafe::Safe;
use crate::mail::{Attachment, ParsedMail};

pub use phone::{PhoneNumber, is_valid_region, warm_up};
pub use reader::{BuildContext, Envelope, EnvoiReader, Readers, RequestHead, RequestReader};

/// At most this many `numX` in one `<envoi>` (spec §2; code 23 beyond).
pub const MAX_NUMBERS: usize = 500;

/// Operator-set bounds on a request (the protocol's own caps are the
/// constants of [`limits`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most non-blank lines accepted in `mobiles.csv` (the 500-number limit
    /// being `<envoi>`'s only); beyond, the email is refused.
    pub max_csv_lines: usize,
}

/// The default of `limits.max_csv_lines`: a 100 000-line `mobiles.csv` is
/// about 4 MB and is handled in under two seconds.
pub const DEFAULT_MAX_CSV_LINES: usize = 100_000;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_csv_lines: DEFAULT_MAX_CSV_LINES,
        }
    }
}

/// One send request, as the sender wrote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// `<keyid>`: identifies the account (never empty in `<envoi>`
    /// mail; empty for alert mail, whose account is found otherwise).
    pub keyid: String,
    /// `<emailId>`: the sender's unique id, for duplicate detection and
    /// reports.
    pub email_id: Option<String>,
    /// `<emailAck>`: where to say whether the email was processed.
    pub email_ack: Option<String>,
    /// `<emailNot>`: where to send per-SMS results.
    pub email_not: Option<String>,
    /// `<emetteur>`: the requested sender id.
    pub sender_id: Option<String>,
    /// `<tracker>`: the sender's id of the send, passed along.
    pub tracker: Option<String>,
    /// `<smslong>`: the announced number of SMS parts. `None` when absent,
    /// empty, or not an integer (then `recipients` is `Err(34)`).
    pub smslong: Option<u32>,
    /// `<nostop>1</nostop>`: the sender asks not to append the STOP mention.
    pub nostop: bool,
    /// The recipients in order, or the request-level code that refuses the
    /// whole email (23, 34, 6 when no number at all).
    pub recipients: Result<Vec<RawRecipient>, Code>,
}

/// One recipient as written in the request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RawRecipient {
    /// The number as the sender wrote it (trimmed), echoed in `etatNot`.
    pub tel: String,
    /// The message for this recipient, line breaks (`Ö`) applied.
    pub text: String,
}

/// One recipient after number normalisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recipient {
    /// The number as the sender wrote it, echoed in `etatNot`.
    pub tel: String,
    /// The normalised number, or the code reported for it (6, 7).
    pub number: Result<PhoneNumber, Code>,
    /// The message for this recipient.
    pub text: String,
    /// For a number already given earlier in the same email: the position
    /// (0-based) of that first occurrence. It gets no SMS of its own; etatNot
    /// reports it with the first one's outcome, so `etatN` still matches the
    /// sender's N-th number.
    pub duplicate_of: Option<usize>,
}

/// Why an email cannot be read as a request; the message is sent back on a
/// single SMTP `550 5.6.0` line, so it is short ASCII.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The body has no `<envoi>` tag.
    #[error("no <envoi> request found in the message body")]
    NoEnvoi,
    /// An HTML-only body without a readable `<envoi>` (raw markup is
    /// swallowed by the HTML rendering).
    #[error("no <envoi> request found: the message is HTML only; send it as plain text")]
    HtmlOnly,
    /// `<envoi>` is never closed.
    #[error("<envoi> is not closed: add </envoi> after the last tag")]
    UnclosedEnvoi,
    /// A known tag inside `<envoi>` is never closed.
    #[error("<{tag}> is not closed: add </{tag}>")]
    UnclosedTag {
        /// The tag name as written (ASCII letters and digits).
        tag: String,
    },
    /// No (or an empty) `<keyid>`.
    #[error("missing <keyid> in <envoi>")]
    MissingKeyid,
    /// A `numX` has neither `smsX` nor `sms`.
    #[error("{} has no message: add <sms> or <{}>", num_tag(*index), sms_tag(*index))]
    NoMessage {
        /// The recipient's index (0 for `num`).
        index: u64,
    },
    /// `mobiles.csv` without `message.csv` nor `<sms>`.
    #[error("mobiles.csv is attached without message.csv (attach it or give <sms>)")]
    MobilesWithoutMessage,
    /// `message.csv` without `mobiles.csv`.
    #[error("message.csv is attached without mobiles.csv")]
    MessageWithoutMobiles,
    /// `message.csv` holds no message (and no `<sms>` replaces it).
    #[error("message.csv is empty: its first line must be the message")]
    EmptyTemplate,
    /// `mobiles.csv` has more lines than allowed.
    #[error("mobiles.csv has more than {max} lines")]
    TooManyCsvLines {
        /// The configured cap.
        max: usize,
    },
    /// A value is over its protocol cap ([`limits`]): the whole email is
    /// refused rather than its value cut or copied around.
    #[error("{field} is {chars} characters long; the limit is {max}")]
    TooLong {
        /// Which value: the tag as the protocol spells it (`emailId`,
        /// `sms12`…) or which CSV text.
        field: String,
        /// Its length in characters (as written when far over the cap and
        /// so never decoded).
        chars: usize,
        /// The cap.
        max: usize,
    },
    /// `<emailAck>` / `<emailNot>` is not one email address: the reply
    /// could never be delivered (and a line break in it would reach the
    /// reply's headers).
    #[error("{field} is not an email address (one local-part@domain, no spaces or line breaks)")]
    NotAnAddress {
        /// `emailAck` or `emailNot`.
        field: String,
    },
    /// An identifier (`<emailId>`, `<tracker>`) holds a control character
    /// (a line break, a NUL…): it is echoed in reply headers, provider
    /// requests and logs, where it could forge a line.
    #[error(
        "{field} holds a control character (U+{code:04X}); it is echoed in replies and must be plain text"
    )]
    ControlCharacter {
        /// `emailId` or `tracker`.
        field: String,
        /// The first control character found.
        code: u32,
    },
    /// Alert mail to a name that is not a group of the account (nor an
    /// `<envoi>` request in the body).
    #[error(
        "no <envoi> request found in the message body, and no group named `{}` exists for alert mail",
        group_shown(name)
    )]
    NoSuchGroup {
        /// The local part as given, lowercased.
        name: String,
    },
    /// The account's `alert_template` could not be rendered for this
    /// message.
    #[error("alert_template cannot be rendered: {reason}")]
    AlertTemplate {
        /// minijinja's reason, on one line.
        reason: String,
    },
    /// A CSV attachment cannot be read.
    #[error("{file} cannot be read (line {line})")]
    Csv {
        /// Which attachment.
        file: &'static str,
        /// The line where reading failed (1-based, 0 if unknown).
        line: u64,
    },
}

impl RequestError {
    /// The email holds no request of the kind its reader reads (rather
    /// than a broken one): another [`RequestReader`] may read it.
    pub fn is_absent(&self) -> bool {
        matches!(
            self,
            RequestError::NoEnvoi | RequestError::HtmlOnly | RequestError::NoSuchGroup { .. }
        )
    }
}

/// A client's group name as an SMTP reply shows it: printable ASCII only
/// (others escaped), at most 64 characters.
fn group_shown(name: &str) -> String {
    name.chars()
        .take(64)
        .flat_map(|c| {
            if c.is_ascii_graphic() {
                vec![c]
            } else {
                c.escape_default().collect()
            }
        })
        .collect()
}

/// `num` or `numX`, as the sender would write it.
fn num_tag(index: u64) -> String {
    if index == 0 {
        "num".to_owned()
    } else {
        format!("num{index}")
    }
}

/// The `smsX` that would give `numX` its message.
fn sms_tag(index: u64) -> String {
    format!("sms{index}")
}

/// Reads the request of an email: its `<envoi>` block and, if attached,
/// `mobiles.csv` / `message.csv` ([`head`] then [`build`]).
pub fn parse(mail: &ParsedMail, limits: &Limits) -> Result<Request, RequestError> {
    build(head(mail)?, mail, limits)
}

/// What is read of a request before its account is checked: the `<envoi>`
/// block, whose keyid names the account (issue 8: nothing costly is done
/// for an unknown keyid or sender).
#[derive(Clone, Debug)]
pub struct Head {
    /// `<keyid>`: identifies the account (never empty).
    pub keyid: String,
    /// The block's values, interpreted by [`build`].
    envoi: envoi::Envoi,
}

/// Reads the `<envoi>` block of the body and its keyid.
pub fn head(mail: &ParsedMail) -> Result<Head, RequestError> {
    let envoi = envoi::scan(&mail.text).map_err(|e| match e {
        RequestError::NoEnvoi if mail.html_only => RequestError::HtmlOnly,
        other => other,
    })?;
    let keyid = envoi
        .keyid
        .clone()
        .filter(|k| !k.is_empty())
        .ok_or(RequestError::MissingKeyid)?;
    Ok(Head { keyid, envoi })
}

/// Upper bounds of what [`build`] makes of a request: a short
/// `mobiles.csv` can expand into a large request (`message.csv`'s text
/// copied for each of its lines), so the caller admits the memory before
/// building (issue 8).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expansion {
    /// Recipients at most: what costs per recipient (structures, rows).
    pub recipients: usize,
    /// Bytes of numbers and texts at most: what is copied along the way.
    pub text_bytes: usize,
    /// Bytes of the longest text at most: what is copied most at once (a
    /// text is checked, bound and written while others wait).
    pub longest_text: usize,
}

/// The [`Expansion`] of `head` with `mail`'s attachments. Linear in the
/// input, allocates nothing but `message.csv`'s template.
pub fn expansion_bound(head: &Head, mail: &ParsedMail, limits: &Limits) -> Expansion {
    let Some(mobiles) = find_attachment(&mail.attachments, "mobiles.csv") else {
        let sms = head.envoi.sms.as_ref().map_or(0, String::len);
        let numbers = head.envoi.nums.len().min(MAX_NUMBERS + 1);
        let own: usize = head.envoi.smss.values().map(String::len).sum();
        let tels: usize = head.envoi.nums.values().map(String::len).sum();
        let longest_own = head.envoi.smss.values().map(String::len).max();
        return Expansion {
            recipients: numbers,
            longest_text: longest_own.unwrap_or(0).max(sms),
            text_bytes: numbers
                .saturating_mul(sms)
                .saturating_add(own)
                .saturating_add(tels),
        };
    };
    let template = find_attachment(&mail.attachments, "message.csv")
        .and_then(|m| csv::template(&m.text).ok().flatten())
        .unwrap_or_default();
    let sms = head.envoi.sms.as_deref().unwrap_or("");
    // Each line's text is at most the template with every `[` replaced by
    // a field of that line: `[`s × the whole file bounds the substitutions
    // (and the file bounds the numbers).
    let placeholders = count(template.as_bytes(), b"[").max(count(sms.as_bytes(), b"["));
    let lines = count(mobiles.text.as_bytes(), b"\r\n")
        .saturating_add(1)
        .min(limits.max_csv_lines);
    let text = template.len().max(sms.len());
    let longest_line = mobiles.text.split(['\r', '\n']).map(str::len).max();
    Expansion {
        recipients: lines,
        longest_text: placeholders
            .saturating_mul(longest_line.unwrap_or(0))
            .saturating_add(text),
        text_bytes: lines.saturating_mul(text).saturating_add(
            placeholders
                .saturating_add(1)
                .saturating_mul(mobiles.text.len()),
        ),
    }
}

/// How many bytes of `bytes` are one of `any`.
fn count(bytes: &[u8], any: &[u8]) -> usize {
    bytes.iter().filter(|b| any.contains(b)).count()
}

/// Interprets the `<envoi>` block of [`head`] with `mail`'s attachments.
///
/// Attachments replace `numX`/`smsX` (spec §3): with `mobiles.csv`, body
/// numbers are ignored (and logged); its template is `message.csv`'s first
/// line, or `<sms>` when `message.csv` is absent. Refusal order: block errors
/// (values over their caps, [`limits`], among them), keyid, attachments
/// (merged texts over their cap too), then the request-level codes 34, 23, 6,
/// and last a number without message.
pub fn build(head: Head, mail: &ParsedMail, limits: &Limits) -> Result<Request, RequestError> {
    let Head { keyid, envoi } = head;
    // The scanner already made it a message text (Ö, control characters).
    let sms = envoi.sms.as_deref().filter(|s| !s.is_empty());

    let csv_recipients = attachment_recipients(&mail.attachments, sms, limits)?;

    let smslong_text = envoi.smslong.as_deref().filter(|s| !s.is_empty());
    // A count of segments: 0 is no more an integer count than "deux".
    let smslong = smslong_text.map(|t| t.trim().parse::<u32>().ok().filter(|&n| n > 0).ok_or(()));
    let recipients = if let Some(Err(_)) = smslong {
        Err(Code::SMSLONG_NOT_INTEGER)
    } else if let Some(list) = csv_recipients {
        if !envoi.nums.is_empty() {
            // Spec §3 and the issue: the attachments replace num/sms.
            tracing::info!(
                ignored = envoi.nums.len(),
                "mobiles.csv attached: the <num> tags of the body are ignored"
            );
        }
        if list.is_empty() {
            Err(Code::NO_NUMBER)
        } else {
            Ok(list)
        }
    } else {
        body_recipients(&envoi, sms)?
    };

    log_request(&envoi);
    Ok(Request {
        keyid,
        // An empty tag is no value: `<emailId></emailId>` is "no emailId"
        // (etatAck 2), not an emailId "" that every later email would repeat.
        email_id: envoi.email_id.filter(|s| !s.is_empty()),
        email_ack: envoi.email_ack.filter(|s| !s.is_empty()),
        email_not: envoi.email_not.filter(|s| !s.is_empty()),
        sender_id: envoi.emetteur,
        tracker: envoi.tracker,
        smslong: smslong.and_then(Result::ok),
        nostop: envoi.nostop.as_deref() == Some("1"),
        recipients,
    })
}

/// The recipients of the body's `numX`, each with its `smsX` or `<sms>`;
/// an empty `smsX` counts as absent. `smsX` without `numX` are ignored.
fn body_recipients(
    envoi: &envoi::Envoi,
    sms: Option<&str>,
) -> Result<Result<Vec<RawRecipient>, Code>, RequestError> {
    let too_many = envoi.nums.len() > MAX_NUMBERS
        || envoi
            .nums
            .last_key_value()
            .is_some_and(|(&index, _)| index > MAX_NUMBERS as u64);
    if too_many {
        return Ok(Err(Code::TOO_MANY_NUMBERS));
    }
    if envoi.nums.is_empty() {
        return Ok(Err(Code::NO_NUMBER));
    }
    for index in envoi.smss.keys().filter(|i| !envoi.nums.contains_key(i)) {
        tracing::debug!(index, "smsX without numX ignored");
    }
    envoi
        .nums
        .iter()
        .map(|(&index, tel)| {
            let own = envoi.smss.get(&index).filter(|s| !s.is_empty()).cloned();
            let text = own
                .or_else(|| sms.map(str::to_owned))
                .ok_or(RequestError::NoMessage { index })?;
            Ok(RawRecipient {
                tel: tel.clone(),
                text,
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Ok)
}

/// Logs (at debug) the per-request values a request was read with, every
/// one escaped: they come from the client (issue 8). The keyid is a secret
/// and is not logged.
fn log_request(envoi: &envoi::Envoi) {
    tracing::debug!(
        email_id = ?envoi.email_id.as_deref().map(Safe),
        email_ack = ?envoi.email_ack.as_deref().map(Safe),
        email_not = ?envoi.email_not.as_deref().map(Safe),
        emetteur = ?envoi.emetteur.as_deref().map(Safe),
        tracker = ?envoi.tracker.as_deref().map(Safe),
        numbers = envoi.nums.len(),
        "request read"
    );
}

/// The recipients of `mobiles.csv` (`None` when not attached).
fn attachment_recipients(
    attachments: &[Attachment],
    sms: Option<&str>,
    limits: &Limits,
) -> Result<Option<Vec<RawRecipient>>, RequestError> {
    let mobiles = find_attachment(attachments, "mobiles.csv");
    let message = find_attachment(attachments, "message.csv");
    let (mobiles, template) = match (mobiles, message) {
        (None, None) => return Ok(None),
        (None, Some(_)) => return Err(RequestError::MessageWithoutMobiles),
        (Some(mobiles), Some(message)) => (
            mobiles,
            csv::template(&message.text)?
                .or_else(|| sms.map(str::to_owned))
                .ok_or(RequestError::EmptyTemplate)?,
        ),
        (Some(mobiles), None) => (
            mobiles,
            sms.map(str::to_owned)
                .ok_or(RequestError::MobilesWithoutMessage)?,
        ),
    };
    csv::recipients(&mobiles.text, &template, limits).map(Some)
}

/// The first attachment named `name` (case-insensitive, any directory part
/// ignored).
fn find_attachment<'a>(attachments: &'a [Attachment], name: &str) -> Option<&'a Attachment> {
    attachments.iter().find(|a| {
        let base = a.name.rsplit(['/', '\\']).next().unwrap_or(&a.name);
        base.trim().eq_ignore_ascii_case(name)
    })
}

/// Normalises the recipients' numbers for `default_region` and marks
/// duplicates: a valid number already met (same E.164) points to its first
/// occurrence, whose text wins, and gets no SMS of its own. Every entry is
/// kept, so that each is reported to the sender in order.
pub fn resolve(recipients: Vec<RawRecipient>, default_region: &str) -> Vec<Recipient> {
    let mut seen = std::collections::HashMap::new();
    recipients
        .into_iter()
        .enumerate()
        .map(|(position, raw)| {
            let number = PhoneNumber::parse(&raw.tel, default_region);
            let duplicate_of = match &number {
                Ok(n) => match seen.entry(n.as_str().to_owned()) {
                    std::collections::hash_map::Entry::Occupied(first) => Some(*first.get()),
                    std::collections::hash_map::Entry::Vacant(slot) => {
                        slot.insert(position);
                        None
                    }
                },
                Err(_) => None,
            };
            Recipient {
                tel: raw.tel,
                number,
                text: raw.text,
                duplicate_of,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests;
