//! NetOxygen's calls and answers, without I/O: the `methodCall` bytes of
//! `send_message`, `auth`, `get_credits`, `get_status` and
//! `cancel_message`, and the decoding of their answers into our results,
//! with the document's two tables ("Codes d'erreur", "Codes de statut") as
//! one `match` each.
//!
//! Decoders never see the password; the I/O layer scrubs it from every
//! error detail (a fault string may quote what it was sent).

use super::xmlrpc::{self, Fault, Response, Value};
use crate::codes::Code;
use crate::providers::SendError;
use crate::providers::delivery as common;
use crate::providers::http;

/// `send_message`: the one call that sends.
pub const SEND_MESSAGE: &str = "send_message";

/// The most numbers put in one `send_message` call. The document sets no
/// limit; 100 numbers keep a call small (about 5 KB) and quick for the
/// gateway to answer within `timeout_ms`.
pub const MAX_NUMBERS_PER_CALL: usize = 100;

/// The time zone of `send_message`'s 6th parameter, per the document.
pub const GATEWAY_TIME_ZONE: &str = "Europe/Zurich";

/// What the gateway said for one accepted SMS: its unique id (for
/// `get_status`), or `None` when it took the SMS without giving one (an
/// entry refused with code 1 "OK" or 9 "Pending", see [`ErrorCode`]).
pub type Accepted = Option<String>;

/// One row of the document's "Codes d'erreur" table: the error code of a
/// refused `send_message` entry, and the first code of a `get_status`
/// entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// 1 OK: sent or being sent.
    Ok,
    /// 2 Gateway error.
    GatewayError,
    /// 3 Message routing error.
    RoutingError,
    /// 4 Message format error.
    FormatError,
    /// 5 Invalid destination number.
    InvalidDestination,
    /// 6 Invalid source number (the sender).
    InvalidSource,
    /// 7 Empty message.
    EmptyMessage,
    /// 8 Max message length exceeded.
    MaxLengthExceeded,
    /// 9 Pending: the message waits at the gateway.
    Pending,
    /// 10 Message canceled (a scheduled message cancelled before sending).
    Canceled,
    /// A code the document does not list.
    Other(i64),
}

impl ErrorCode {
    /// The row of a numeric code.
    pub fn from_code(code: i64) -> ErrorCode {
        match code {
            1 => ErrorCode::Ok,
            2 => ErrorCode::GatewayError,
            3 => ErrorCode::RoutingError,
            4 => ErrorCode::FormatError,
            5 => ErrorCode::InvalidDestination,
            6 => ErrorCode::InvalidSource,
            7 => ErrorCode::EmptyMessage,
            8 => ErrorCode::MaxLengthExceeded,
            9 => ErrorCode::Pending,
            10 => ErrorCode::Canceled,
            other => ErrorCode::Other(other),
        }
    }

    /// The numeric code.
    pub fn code(self) -> i64 {
        match self {
            ErrorCode::Ok => 1,
            ErrorCode::GatewayError => 2,
            ErrorCode::RoutingError => 3,
            ErrorCode::FormatError => 4,
            ErrorCode::InvalidDestination => 5,
            ErrorCode::InvalidSource => 6,
            ErrorCode::EmptyMessage => 7,
            ErrorCode::MaxLengthExceeded => 8,
            ErrorCode::Pending => 9,
            ErrorCode::Canceled => 10,
            ErrorCode::Other(code) => code,
        }
    }

    /// The document's description.
    pub fn description(self) -> &'static str {
        match self {
            ErrorCode::Ok => "OK",
            ErrorCode::GatewayError => "Gateway error",
            ErrorCode::RoutingError => "Message routing error",
            ErrorCode::FormatError => "Message format error",
            ErrorCode::InvalidDestination => "Invalid destination number",
            ErrorCode::InvalidSource => "Invalid source number",
            ErrorCode::EmptyMessage => "Empty message",
            ErrorCode::MaxLengthExceeded => "Max message length exceeded",
            ErrorCode::Pending => "Pending",
            ErrorCode::Canceled => "Message canceled",
            ErrorCode::Other(_) => "code not in the document",
        }
    }

    /// What a `send_message` entry refused (status FALSE) with this code
    /// means for our SMS:
    ///
    /// - 1 OK and 9 Pending: the gateway has the message (sent, being sent,
    ///   or waiting in its queue), so it is accepted — reporting a failure
    ///   would make the user send it again, and retrying would send it
    ///   twice. No id comes with it.
    /// - 2 Gateway error: the gateway's own trouble, transient.
    /// - 3 Routing error: the gateway has no route for this message; the
    ///   number itself was not found invalid (that is 5), so not code 7:
    ///   permanent 999 (resending the same SMS here will not route it).
    /// - 4, 7, 8, 10: the message itself is refused (format, empty, too
    ///   long, cancelled): permanent 999.
    /// - 5: permanent 7 (invalid number). 6: permanent 33 (sender refused).
    /// - Anything else: permanent 999 with the code in the detail.
    pub fn send_result(self) -> Result<Accepted, SendError> {
        let detail = format!(
            "NetOxygen error code {} ({})",
            self.code(),
            self.description()
        );
        match self {
            ErrorCode::Ok | ErrorCode::Pending => Ok(None),
            ErrorCode::GatewayError => Err(SendError::transient(detail)),
            ErrorCode::RoutingError => Err(SendError::permanent(Code::INTERNAL, detail)),
            ErrorCode::FormatError => Err(SendError::permanent(Code::INTERNAL, detail)),
            ErrorCode::InvalidDestination => Err(SendError::permanent(Code::BAD_NUMBER, detail)),
            ErrorCode::InvalidSource => Err(SendError::permanent(Code::SENDER_NOT_ALLOWED, detail)),
            ErrorCode::EmptyMessage => Err(SendError::permanent(Code::INTERNAL, detail)),
            ErrorCode::MaxLengthExceeded => Err(SendError::permanent(Code::INTERNAL, detail)),
            ErrorCode::Canceled => Err(SendError::permanent(Code::INTERNAL, detail)),
            ErrorCode::Other(_) => Err(SendError::permanent(Code::INTERNAL, detail)),
        }
    }
}

/// Where a message stands, in broad terms (from [`StatusCode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Received by the phone.
    Delivered,
    /// Still on its way (queued, scheduled, submitted, at the network).
    InProgress,
    /// Will not be delivered.
    Failed,
    /// A status code the document does not list.
    Unknown,
}

/// One row of the document's "Codes de statut" table: the second code of a
/// `get_status` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusCode {
    /// 1 Delivered to the recipient device.
    DeliveredToDevice,
    /// 2 Delivered to the recipient network (waiting there).
    DeliveredToNetwork,
    /// 3 Message submitted to the recipient's network.
    Submitted,
    /// 4 Message error, delivery failed.
    MessageError,
    /// 5 Routing error, delivery failed.
    RoutingError,
    /// 6 Message expired, delivery cancelled.
    Expired,
    /// 7 Gateway error.
    GatewayError,
    /// 8 Message in queue at the gateway.
    InQueue,
    /// 9 Message scheduled for later.
    Scheduled,
    /// A code the document does not list.
    Other(i64),
}

impl StatusCode {
    /// The row of a numeric code.
    pub fn from_code(code: i64) -> StatusCode {
        match code {
            1 => StatusCode::DeliveredToDevice,
            2 => StatusCode::DeliveredToNetwork,
            3 => StatusCode::Submitted,
            4 => StatusCode::MessageError,
            5 => StatusCode::RoutingError,
            6 => StatusCode::Expired,
            7 => StatusCode::GatewayError,
            8 => StatusCode::InQueue,
            9 => StatusCode::Scheduled,
            other => StatusCode::Other(other),
        }
    }

    /// The numeric code.
    pub fn code(self) -> i64 {
        match self {
            StatusCode::DeliveredToDevice => 1,
            StatusCode::DeliveredToNetwork => 2,
            StatusCode::Submitted => 3,
            StatusCode::MessageError => 4,
            StatusCode::RoutingError => 5,
            StatusCode::Expired => 6,
            StatusCode::GatewayError => 7,
            StatusCode::InQueue => 8,
            StatusCode::Scheduled => 9,
            StatusCode::Other(code) => code,
        }
    }

    /// The document's description.
    pub fn description(self) -> &'static str {
        match self {
            StatusCode::DeliveredToDevice => "Delivered to the recipient device",
            StatusCode::DeliveredToNetwork => "Delivered to the recipient network",
            StatusCode::Submitted => "Message submitted",
            StatusCode::MessageError => "Message error, delivery failed",
            StatusCode::RoutingError => "Routing error, delivery failed",
            StatusCode::Expired => "Message expired, delivery cancelled",
            StatusCode::GatewayError => "Gateway error",
            StatusCode::InQueue => "Message in queue",
            StatusCode::Scheduled => "Message scheduled",
            StatusCode::Other(_) => "status not in the document",
        }
    }

    /// Where the message stands: 1 is the only delivery; 2 ("waiting on
    /// the recipient's network"), 3, 8 and 9 are on their way; 4 to 7 are
    /// failures.
    pub fn progress(self) -> Progress {
        match self {
            StatusCode::DeliveredToDevice => Progress::Delivered,
            StatusCode::DeliveredToNetwork => Progress::InProgress,
            StatusCode::Submitted => Progress::InProgress,
            StatusCode::MessageError => Progress::Failed,
            StatusCode::RoutingError => Progress::Failed,
            StatusCode::Expired => Progress::Failed,
            StatusCode::GatewayError => Progress::Failed,
            StatusCode::InQueue => Progress::InProgress,
            StatusCode::Scheduled => Progress::InProgress,
            StatusCode::Other(_) => Progress::Unknown,
        }
    }
}

/// One `get_status` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageStatus {
    /// The message id (as the gateway echoed it, else the one asked for at
    /// that position).
    pub id: String,
    /// The error code ("Codes d'erreur").
    pub error: ErrorCode,
    /// The delivery status ("Codes de statut").
    pub status: StatusCode,
}

impl MessageStatus {
    /// The common status. The status code decides (1 delivered; 2, 3, 8,
    /// 9 on their way; 6 expired; 4, 5, 7 failed), except that error 10
    /// (cancelled before sending) is undelivered whatever the status says;
    /// a failure's reason is the status's words, with the error's when it
    /// is not OK. The provider's code is `error/status`.
    pub fn delivery(&self) -> common::DeliveryStatus {
        let reason = match self.error {
            ErrorCode::Ok => self.status.description().to_owned(),
            error => format!("{}: {}", self.status.description(), error.description()),
        };
        let state = match (self.error, self.status.progress()) {
            (ErrorCode::Canceled, _) => common::DeliveryState::undelivered(reason.clone()),
            (_, Progress::Delivered) => common::DeliveryState::Delivered,
            (_, Progress::InProgress) => common::DeliveryState::Accepted,
            (_, Progress::Failed) if self.status == StatusCode::Expired => {
                common::DeliveryState::Expired
            }
            (_, Progress::Failed) => common::DeliveryState::undelivered(reason.clone()),
            (_, Progress::Unknown) => common::DeliveryState::Unknown,
        };
        common::DeliveryStatus {
            id: self.id.clone(),
            number: None,
            state,
            provider_code: format!("{}/{}", self.error.code(), self.status.code()),
            provider_text: reason,
            at: None,
        }
    }
}

/// One `cancel_message` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Cancellation {
    /// The message id (echoed, else the one asked for at that position).
    pub id: String,
    /// Whether the scheduled message was cancelled.
    pub cancelled: bool,
}

/// `get_credits`' answer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Credits {
    /// The credits left.
    Balance(f64),
    /// `FALSE`: the gateway gives no balance for this account.
    Unavailable,
}

/// The `dest` / `message` parameters as the document's "complete" Perl
/// example sends them: `<base64>` of the UTF-8 bytes, one value for one
/// number, an array of them for several.
fn dest_param(numbers: &[&str]) -> Value {
    match numbers {
        [one] => Value::Base64(one.as_bytes().to_vec()),
        many => Value::Array(
            many.iter()
                .map(|n| Value::Base64(n.as_bytes().to_vec()))
                .collect(),
        ),
    }
}

/// `send_message(user, pass, dest, message[, sender, date])`.
///
/// `numbers` are international numbers in digits without `+` (the form
/// `clean_number` returns), `sender` the sender id (`None` or empty: the
/// account's default), `date` the local Zurich time of a scheduled send
/// (see [`zurich_date`]). Only the parameters needed are passed: a date
/// without a sender passes `""` as the 5th, as the document says. The 7th
/// (`type`) is never passed: "text" is the default, and we send no flash
/// SMS.
pub fn encode_send_message(
    user: &str,
    pass: &str,
    numbers: &[&str],
    text: &str,
    sender: Option<&str>,
    date: Option<&str>,
) -> Vec<u8> {
    let sender = sender.filter(|s| !s.is_empty());
    let mut params = vec![
        Value::Str(user.to_owned()),
        Value::Str(pass.to_owned()),
        dest_param(numbers),
        Value::Base64(text.as_bytes().to_vec()),
    ];
    match (sender, date) {
        (None, None) => {}
        (Some(sender), None) => params.push(Value::Str(sender.to_owned())),
        (sender, Some(date)) => {
            params.push(Value::Str(sender.unwrap_or_default().to_owned()));
            params.push(Value::Str(date.to_owned()));
        }
    }
    xmlrpc::method_call(SEND_MESSAGE, &params)
}

/// A Unix time in milliseconds as the gateway's date parameter: local time
/// in Europe/Zurich, `YYYY-MM-DD HH:MM:SS` (milliseconds dropped). During
/// the autumn hour that happens twice the text is ambiguous; the gateway
/// resolves it its way (at worst one hour off).
pub fn zurich_date(unix_ms: i64) -> Result<String, String> {
    let timestamp = jiff::Timestamp::from_millisecond(unix_ms)
        .map_err(|e| format!("send_at {unix_ms} is out of range: {e}"))?;
    let zone = jiff::tz::TimeZone::get(GATEWAY_TIME_ZONE)
        .map_err(|e| format!("time zone {GATEWAY_TIME_ZONE}: {e}"))?;
    Ok(timestamp
        .to_zoned(zone)
        .strftime("%Y-%m-%d %H:%M:%S")
        .to_string())
}

/// `auth(user, pass)`.
pub fn encode_auth(user: &str, pass: &str) -> Vec<u8> {
    xmlrpc::method_call(
        "auth",
        &[Value::Str(user.to_owned()), Value::Str(pass.to_owned())],
    )
}

/// `get_credits(user, pass)`.
pub fn encode_get_credits(user: &str, pass: &str) -> Vec<u8> {
    xmlrpc::method_call(
        "get_credits",
        &[Value::Str(user.to_owned()), Value::Str(pass.to_owned())],
    )
}

/// The id parameter of `get_status` / `cancel_message`: a string for one,
/// an array of strings for several.
fn ids_param(ids: &[&str]) -> Value {
    match ids {
        [one] => Value::Str((*one).to_owned()),
        many => Value::Array(many.iter().map(|id| Value::Str((*id).to_owned())).collect()),
    }
}

/// `get_status(user, pass, id or [ids])`.
pub fn encode_get_status(user: &str, pass: &str, ids: &[&str]) -> Vec<u8> {
    xmlrpc::method_call(
        "get_status",
        &[
            Value::Str(user.to_owned()),
            Value::Str(pass.to_owned()),
            ids_param(ids),
        ],
    )
}

/// `cancel_message(user, pass, id or [ids])`.
pub fn encode_cancel_message(user: &str, pass: &str, ids: &[&str]) -> Vec<u8> {
    xmlrpc::method_call(
        "cancel_message",
        &[
            Value::Str(user.to_owned()),
            Value::Str(pass.to_owned()),
            ids_param(ids),
        ],
    )
}

/// A malformed answer: transient (the gateway may be mid-deployment or
/// behind a proxy's error page), with the start of what came back.
fn malformed(what: &str, text: &str) -> SendError {
    SendError::transient(format!(
        "unreadable NetOxygen answer ({what}){}",
        http::snippet(text)
    ))
}

/// An XML-RPC fault, for the whole call. The document lists no faults;
/// XML-RPC gateways of this kind refuse bad logins and empty accounts this
/// way, so the fault string decides (case-insensitive, English or French),
/// in this order:
///
/// - password, passwd, login, identifiant, credential, "mot de passe",
///   authentication / authentification / authenticate, "auth failed",
///   "unknown user",
///   "utilisateur inconnu" → unusable, code 3;
/// - credit, crédit, solde, balance → unusable, code 12;
/// - sender, expéditeur, expediteur, source (as words) → permanent, code 33
///   ("sender not authorized", "expéditeur non autorisé");
/// - anything else → permanent 999 with the fault's code and text.
///
/// "auth" alone proves nothing: "not authorized" / "non autorisé" is about
/// what we asked for, not about who we are, and is not taken for refused
/// credentials (which would put the provider aside for every SMS).
pub fn fault_error(fault: &Fault) -> SendError {
    const CREDENTIALS: &[&str] = &[
        "password",
        "passwd",
        "login",
        "identifiant",
        "credential",
        "mot de passe",
        "authentication",
        "authentification",
        "authenticate",
        "auth failed",
        "unknown user",
        "utilisateur inconnu",
    ];
    const CREDIT: &[&str] = &["credit", "crédit", "solde", "balance"];
    const SENDER: &[&str] = &["sender", "expéditeur", "expediteur", "source"];
    let lower = fault.string.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .collect();
    let detail = format!("NetOxygen fault {}: {}", fault.code, fault.string.trim());
    if CREDENTIALS.iter().any(|w| lower.contains(w)) {
        SendError::unusable(Code::BAD_CREDENTIALS, detail)
    } else if CREDIT.iter().any(|w| lower.contains(w)) {
        SendError::unusable(Code::NO_CREDIT, detail)
    } else if words.iter().any(|w| SENDER.contains(w)) {
        SendError::permanent(Code::SENDER_NOT_ALLOWED, detail)
    } else {
        SendError::permanent(Code::INTERNAL, detail)
    }
}

/// The return value of a call, or why there is none (unreadable answer:
/// transient; fault: [`fault_error`]).
fn call_value(text: &str) -> Result<Value, SendError> {
    match xmlrpc::parse_response(text) {
        Ok(Response::Success(value)) => Ok(value),
        Ok(Response::Fault(fault)) => Err(fault_error(&fault)),
        Err(e) => Err(malformed(&e.0, text)),
    }
}

/// A number as the gateway may echo it, reduced to its international
/// digits: `+41 79 123 45 67`, `0041791234567` and `41791234567` are all
/// `41791234567`.
fn normalise_number(text: &str) -> String {
    let digits: String = text.chars().filter(char::is_ascii_digit).collect();
    match digits.strip_prefix("00") {
        Some(rest) => rest.to_owned(),
        None => digits,
    }
}

/// One entry of `send_message`'s answer.
#[derive(Debug)]
struct SendEntry {
    /// The destination the entry is about (normalised), if it says.
    dest: Option<String>,
    /// What it says.
    result: Result<Accepted, SendError>,
}

/// Reads `[dest, status, id_or_error_code]` (the Perl example's `($d, $s,
/// $i)`): status TRUE → the id; FALSE → the error code's row.
fn send_entry(fields: &[Value]) -> SendEntry {
    let dest = fields
        .first()
        .and_then(Value::as_text)
        .map(|d| normalise_number(&d))
        .filter(|d| !d.is_empty());
    let third = fields.get(2);
    let result = match fields.get(1).and_then(Value::as_bool) {
        Some(true) => Ok(third
            .and_then(Value::as_text)
            .map(|id| id.trim().to_owned())
            .filter(|id| !id.is_empty())),
        Some(false) => match third.and_then(Value::as_int) {
            Some(code) => ErrorCode::from_code(code).send_result(),
            None => Err(SendError::permanent(
                Code::INTERNAL,
                format!(
                    "NetOxygen refused the message: {}",
                    Value::Array(fields.to_vec()).summary()
                ),
            )),
        },
        None => Err(SendError::transient(format!(
            "unreadable NetOxygen answer entry: {}",
            Value::Array(fields.to_vec()).summary()
        ))),
    };
    SendEntry { dest, result }
}

/// The entries of `send_message`'s "tableau de tableaux". A single flat
/// `[dest, status, id]` is read as one entry; a bare FALSE as a refusal of
/// the whole call (our credentials or account).
fn send_entries(value: &Value) -> Result<Vec<SendEntry>, SendError> {
    match value {
        Value::Array(items) if is_flat_entry(items) => Ok(vec![send_entry(items)]),
        Value::Array(items) => Ok(items
            .iter()
            .map(|item| match item {
                Value::Array(fields) => send_entry(fields),
                other => SendEntry {
                    dest: None,
                    result: Err(SendError::transient(format!(
                        "unreadable NetOxygen answer entry: {}",
                        other.summary()
                    ))),
                },
            })
            .collect()),
        Value::Bool(false) => Err(SendError::unusable(
            Code::BAD_CREDENTIALS,
            "NetOxygen send_message returned FALSE (credentials or account refused)",
        )),
        other => Err(SendError::transient(format!(
            "unreadable NetOxygen answer (not an array): {}",
            other.summary()
        ))),
    }
}

/// `[dest, status(, third)]` of scalars rather than an array of arrays.
fn is_flat_entry(items: &[Value]) -> bool {
    (2..=3).contains(&items.len())
        && items
            .iter()
            .all(|v| !matches!(v, Value::Array(_) | Value::Struct(_)))
        && items.get(1).and_then(Value::as_bool).is_some()
}

/// Decodes `send_message`'s answer for the `numbers` of the call (digits,
/// in the order sent, each at most once): one result per number.
///
/// An entry is matched to a number by its `dest` (normalised to
/// international digits), else by position when the answer has exactly
/// one entry per number and that entry's `dest` names none of ours (absent,
/// or in a form we cannot compare). A number no entry answers for was not
/// reported sent: permanent 999 ("not in the answer"), never Ok.
pub fn decode_send_message(text: &str, numbers: &[&str]) -> Vec<Result<Accepted, SendError>> {
    let entries = match call_value(text).and_then(|v| send_entries(&v)) {
        Ok(entries) => entries,
        Err(e) => return http::all_failed(numbers.len(), &e),
    };
    let ours: Vec<String> = numbers.iter().map(|n| normalise_number(n)).collect();
    let mut taken = vec![false; entries.len()];
    let mut assigned: Vec<Option<usize>> = vec![None; numbers.len()];
    // By dest, the entry at the same position first.
    for (i, number) in ours.iter().enumerate() {
        let matches = |j: usize| !taken[j] && entries[j].dest.as_deref() == Some(number.as_str());
        let found = if i < entries.len() && matches(i) {
            Some(i)
        } else {
            (0..entries.len()).find(|&j| matches(j))
        };
        if let Some(j) = found {
            taken[j] = true;
            assigned[i] = Some(j);
        }
    }
    // By position, for entries that name none of our numbers.
    if entries.len() == numbers.len() {
        for (i, slot) in assigned.iter_mut().enumerate() {
            let names_ours = entries[i]
                .dest
                .as_ref()
                .is_some_and(|d| ours.iter().any(|n| n == d));
            if slot.is_none() && !taken[i] && !names_ours {
                taken[i] = true;
                *slot = Some(i);
            }
        }
    }
    assigned
        .iter()
        .zip(numbers)
        .map(|(slot, number)| match slot {
            Some(j) => entries[*j].result.clone(),
            None => Err(SendError::permanent(
                Code::INTERNAL,
                format!("NetOxygen's answer does not mention {number}: not reported sent"),
            )),
        })
        .collect()
}

/// Decodes `auth`'s TRUE/FALSE.
pub fn decode_auth(text: &str) -> Result<bool, SendError> {
    let value = call_value(text)?;
    value
        .as_bool()
        .ok_or_else(|| malformed("auth did not return TRUE or FALSE", text))
}

/// Decodes `get_credits`: a number (integer, double or numeric string), or
/// FALSE.
pub fn decode_get_credits(text: &str) -> Result<Credits, SendError> {
    let value = call_value(text)?;
    match &value {
        Value::Bool(false) => Ok(Credits::Unavailable),
        Value::Str(s) if s.trim().is_empty() || s.trim().eq_ignore_ascii_case("false") => {
            Ok(Credits::Unavailable)
        }
        v => v
            .as_f64()
            .map(Credits::Balance)
            .ok_or_else(|| malformed("get_credits did not return a number", text)),
    }
}

/// The entries of a "tableau de tableaux" answer about message ids: a
/// single flat entry (scalars only) is read as one entry when one id was
/// asked.
fn id_entries<'v>(
    value: &'v Value,
    ids: &[&str],
    text: &str,
) -> Result<Vec<&'v [Value]>, SendError> {
    let Value::Array(items) = value else {
        return Err(malformed("not an array", text));
    };
    let flat = ids.len() == 1
        && !items.is_empty()
        && items
            .iter()
            .all(|v| !matches!(v, Value::Array(_) | Value::Struct(_)));
    if flat {
        return Ok(vec![items.as_slice()]);
    }
    items
        .iter()
        .map(|item| match item {
            Value::Array(fields) => Ok(fields.as_slice()),
            _ => Err(malformed("an entry is not an array", text)),
        })
        .collect()
}

/// The id an entry is about: echoed as its first field when it has
/// `with_id` fields or more, else the one asked for at that position.
fn entry_id(fields: &[Value], with_id: usize, ids: &[&str], position: usize) -> String {
    if fields.len() >= with_id
        && let Some(id) = fields.first().and_then(Value::as_text)
    {
        return id.trim().to_owned();
    }
    ids.get(position).copied().unwrap_or_default().to_owned()
}

/// Decodes `get_status`: per id, its error code and status code. An entry
/// is `[id, error, status]`, or `[error, status]` (id by position).
pub fn decode_get_status(text: &str, ids: &[&str]) -> Result<Vec<MessageStatus>, SendError> {
    let value = call_value(text)?;
    let entries = id_entries(&value, ids, text)?;
    entries
        .iter()
        .enumerate()
        .map(|(i, fields)| {
            let codes = &fields[fields.len().saturating_sub(2)..];
            match (codes, fields.len()) {
                ([error, status], 2..) => Ok(MessageStatus {
                    id: entry_id(fields, 3, ids, i),
                    error: ErrorCode::from_code(
                        error
                            .as_int()
                            .ok_or_else(|| malformed("error code not a number", text))?,
                    ),
                    status: StatusCode::from_code(
                        status
                            .as_int()
                            .ok_or_else(|| malformed("status code not a number", text))?,
                    ),
                }),
                _ => Err(malformed(
                    "a get_status entry has fewer than two codes",
                    text,
                )),
            }
        })
        .collect()
}

/// Decodes `cancel_message`: per id, whether it was cancelled. An entry is
/// `[id, boolean]`, `[boolean]`, or a bare boolean (id by position).
pub fn decode_cancel_message(text: &str, ids: &[&str]) -> Result<Vec<Cancellation>, SendError> {
    let value = call_value(text)?;
    let Value::Array(items) = &value else {
        return Err(malformed("not an array", text));
    };
    let entries: Vec<&[Value]> = if ids.len() == 1
        && items.len() == 2
        && items.iter().all(|v| !matches!(v, Value::Array(_)))
    {
        // One flat `[id, boolean]`.
        vec![items.as_slice()]
    } else {
        items
            .iter()
            .map(|item| match item {
                Value::Array(fields) => fields.as_slice(),
                scalar => std::slice::from_ref(scalar),
            })
            .collect()
    };
    entries
        .iter()
        .enumerate()
        .map(|(i, fields)| {
            let cancelled = fields
                .last()
                .and_then(Value::as_bool)
                .ok_or_else(|| malformed("a cancel_message entry is not a boolean", text))?;
            Ok(Cancellation {
                id: entry_id(fields, 2, ids, i),
                cancelled,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::FailureKind;

    fn response(value_xml: &str) -> String {
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<methodResponse><params><param><value>{value_xml}</value></param></params></methodResponse>\n"
        )
    }

    fn fault(code: i64, string: &str) -> String {
        format!(
            "<?xml version=\"1.0\"?>\n<methodResponse><fault><value><struct>\
             <member><name>faultCode</name><value><int>{code}</int></value></member>\
             <member><name>faultString</name><value><string>{string}</string></value></member>\
             </struct></value></fault></methodResponse>\n"
        )
    }

    /// `[[dest, status, third], …]` with typed XML values.
    fn entries(rows: &[(&str, &str, &str)]) -> String {
        let rows: String = rows
            .iter()
            .map(|(d, s, t)| {
                format!("<value><array><data><value>{d}</value><value>{s}</value><value>{t}</value></data></array></value>")
            })
            .collect();
        response(&format!("<array><data>{rows}</data></array>"))
    }

    fn kind_code(e: &SendError) -> (FailureKind, Code) {
        (e.kind, e.code)
    }

    #[test]
    fn the_perl_example_call_is_sent_as_the_document_shows() {
        // The "complete" Perl example: user and pass as strings (smart_encode),
        // destination and message as base64 of their UTF-8 bytes, nothing
        // else.
        let body = encode_send_message(
            "myuser",
            "mypass",
            &["0792223344"],
            "message de test",
            None,
            None,
        );
        assert_eq!(
            String::from_utf8(body).unwrap(),
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<methodCall><methodName>send_message</methodName><params>\
             <param><value><string>myuser</string></value></param>\
             <param><value><string>mypass</string></value></param>\
             <param><value><base64>MDc5MjIyMzM0NA==</base64></value></param>\
             <param><value><base64>bWVzc2FnZSBkZSB0ZXN0</base64></value></param>\
             </params></methodCall>\n"
        );
    }

    #[test]
    fn accented_text_goes_as_base64_of_its_utf8_bytes() {
        let text = "Été à 50€ ça coûte";
        let body = encode_send_message("u", "p", &["41791234567"], text, None, None);
        let (name, params) = xmlrpc::parse_call(std::str::from_utf8(&body).unwrap()).unwrap();
        assert_eq!(name, "send_message");
        assert_eq!(params[3], Value::Base64(text.as_bytes().to_vec()));
        // The body itself is pure ASCII: no charset can garble it.
        assert!(body.is_ascii());
    }

    #[test]
    fn several_numbers_go_as_an_array_of_base64_values() {
        let body = encode_send_message("u", "p", &["41791234567", "33601020304"], "hi", None, None);
        let (_, params) = xmlrpc::parse_call(std::str::from_utf8(&body).unwrap()).unwrap();
        assert_eq!(
            params[2],
            Value::Array(vec![
                Value::Base64(b"41791234567".to_vec()),
                Value::Base64(b"33601020304".to_vec()),
            ])
        );
        assert_eq!(params.len(), 4);
    }

    #[test]
    fn numbers_take_the_form_clean_number_returns() {
        // clean_number('022/364 8000') returns '41223648000': international
        // digits without '+', which is what we send for +41223648000.
        assert_eq!(http::digits("+41223648000"), "41223648000");
        assert_eq!(normalise_number("+41 22 364 80 00"), "41223648000");
        assert_eq!(normalise_number("0041223648000"), "41223648000");
    }

    #[test]
    fn only_the_needed_optional_parameters_are_passed() {
        let params = |sender: Option<&str>, date: Option<&str>| {
            let body = encode_send_message("u", "p", &["41791234567"], "t", sender, date);
            xmlrpc::parse_call(std::str::from_utf8(&body).unwrap())
                .unwrap()
                .1
        };
        assert_eq!(params(None, None).len(), 4);
        assert_eq!(params(Some(""), None).len(), 4);
        let p = params(Some("MaSociete"), None);
        assert_eq!(p.len(), 5);
        assert_eq!(p[4], Value::Str("MaSociete".into()));
        // A date with the default sender: "" as the 5th parameter.
        let p = params(None, Some("2006-12-06 20:05:00"));
        assert_eq!(
            p[4..],
            [
                Value::Str(String::new()),
                Value::Str("2006-12-06 20:05:00".into())
            ]
        );
        let p = params(Some("MaSociete"), Some("2006-12-06 20:05:00"));
        assert_eq!(
            p[4..],
            [
                Value::Str("MaSociete".into()),
                Value::Str("2006-12-06 20:05:00".into())
            ]
        );
    }

    #[test]
    fn dates_are_zurich_local_time_in_the_documents_format() {
        // The document's example "2006-12-06 20:05:00" (winter, UTC+1).
        let winter = jiff::Timestamp::from_second(1_165_431_900)
            .unwrap()
            .as_millisecond();
        assert_eq!(zurich_date(winter).unwrap(), "2006-12-06 20:05:00");
        // Summer time, UTC+2; milliseconds dropped.
        let summer = jiff::Timestamp::from_second(1_782_909_000)
            .unwrap()
            .as_millisecond()
            + 999;
        assert_eq!(zurich_date(summer).unwrap(), "2026-07-01 14:30:00");
        assert!(zurich_date(i64::MAX).is_err());
    }

    #[test]
    fn an_accepted_entry_gives_its_id() {
        let text = entries(&[(
            "<string>41791234567</string>",
            "<boolean>1</boolean>",
            "<string>a1b2c3</string>",
        )]);
        assert_eq!(
            decode_send_message(&text, &["41791234567"]),
            vec![Ok(Some("a1b2c3".into()))]
        );
        // Lenient types: int status, int id, untyped dest.
        let text = entries(&[("41791234567", "<int>1</int>", "<i4>987</i4>")]);
        assert_eq!(
            decode_send_message(&text, &["41791234567"]),
            vec![Ok(Some("987".into()))]
        );
        // String status, base64 dest (echoed as sent).
        let text = entries(&[(
            "<base64>NDE3OTEyMzQ1Njc=</base64>",
            "<string>true</string>",
            "x9",
        )]);
        assert_eq!(
            decode_send_message(&text, &["41791234567"]),
            vec![Ok(Some("x9".into()))]
        );
    }

    #[test]
    fn every_error_code_of_the_table_is_mapped() {
        use FailureKind::*;
        let cases: &[(i64, Option<(FailureKind, Code)>)] = &[
            (1, None),
            (2, Some((Transient, Code::INTERNAL))),
            (3, Some((Permanent, Code::INTERNAL))),
            (4, Some((Permanent, Code::INTERNAL))),
            (5, Some((Permanent, Code::BAD_NUMBER))),
            (6, Some((Permanent, Code::SENDER_NOT_ALLOWED))),
            (7, Some((Permanent, Code::INTERNAL))),
            (8, Some((Permanent, Code::INTERNAL))),
            (9, None),
            (10, Some((Permanent, Code::INTERNAL))),
            (42, Some((Permanent, Code::INTERNAL))),
        ];
        for (code, expected) in cases {
            let text = entries(&[(
                "<string>41791234567</string>",
                "<boolean>0</boolean>",
                &format!("<int>{code}</int>"),
            )]);
            let result = decode_send_message(&text, &["41791234567"]).remove(0);
            match expected {
                None => assert_eq!(result, Ok(None), "code {code}"),
                Some(kc) => {
                    let e = result.unwrap_err();
                    assert_eq!(kind_code(&e), *kc, "code {code}");
                    assert!(
                        e.detail.contains(&format!("error code {code} (")),
                        "{}",
                        e.detail
                    );
                }
            }
        }
        assert_eq!(
            ErrorCode::from_code(8).description(),
            "Max message length exceeded"
        );
        for code in 1..=10 {
            assert_eq!(ErrorCode::from_code(code).code(), code);
        }
    }

    #[test]
    fn a_refusal_without_a_numeric_code_keeps_the_gateways_words() {
        let text = entries(&[(
            "41791234567",
            "<boolean>0</boolean>",
            "<string>quota dépassé</string>",
        )]);
        let e = decode_send_message(&text, &["41791234567"])
            .remove(0)
            .unwrap_err();
        assert_eq!(kind_code(&e), (FailureKind::Permanent, Code::INTERNAL));
        assert!(e.detail.contains("quota dépassé"), "{}", e.detail);
    }

    #[test]
    fn entries_are_matched_by_dest_then_by_position() {
        // Answered in another order, dest echoed with '+' or '00'.
        let text = entries(&[
            ("+33601020304", "<boolean>0</boolean>", "<int>5</int>"),
            ("0041791234567", "<boolean>1</boolean>", "id-a"),
        ]);
        let results = decode_send_message(&text, &["41791234567", "33601020304"]);
        assert_eq!(results[0], Ok(Some("id-a".into())));
        assert_eq!(results[1].as_ref().unwrap_err().code, Code::BAD_NUMBER);
        // Dest in a form we cannot compare (national): by position.
        let text = entries(&[
            ("0791234567", "<boolean>1</boolean>", "id-1"),
            ("", "<boolean>1</boolean>", "id-2"),
        ]);
        assert_eq!(
            decode_send_message(&text, &["41791234567", "41791234568"]),
            vec![Ok(Some("id-1".into())), Ok(Some("id-2".into()))]
        );
    }

    #[test]
    fn a_number_missing_from_the_answer_is_not_sent() {
        let text = entries(&[("41791234567", "<boolean>1</boolean>", "id-a")]);
        let results = decode_send_message(&text, &["41791234567", "33601020304"]);
        assert_eq!(results[0], Ok(Some("id-a".into())));
        let e = results[1].as_ref().unwrap_err();
        assert_eq!(kind_code(e), (FailureKind::Permanent, Code::INTERNAL));
        assert!(e.detail.contains("does not mention 33601020304"));
        // Same count, but the second entry names the first number again:
        // not taken by position.
        let text = entries(&[
            ("41791234567", "<boolean>1</boolean>", "id-a"),
            ("41791234567", "<boolean>1</boolean>", "id-b"),
        ]);
        let results = decode_send_message(&text, &["41791234567", "33601020304"]);
        assert_eq!(results[0], Ok(Some("id-a".into())));
        assert!(results[1].is_err());
        // An empty array: nothing sent.
        let results =
            decode_send_message(&response("<array><data></data></array>"), &["41791234567"]);
        assert!(results[0].as_ref().unwrap_err().is_permanent());
    }

    #[test]
    fn a_flat_single_entry_is_read() {
        let text = response(
            "<array><data><value>41791234567</value><value><boolean>1</boolean></value><value>id-7</value></data></array>",
        );
        assert_eq!(
            decode_send_message(&text, &["41791234567"]),
            vec![Ok(Some("id-7".into()))]
        );
    }

    #[test]
    fn an_accepted_entry_without_id_is_accepted() {
        let text = entries(&[("41791234567", "<boolean>1</boolean>", "")]);
        assert_eq!(decode_send_message(&text, &["41791234567"]), vec![Ok(None)]);
    }

    #[test]
    fn faults_are_sorted_by_their_words() {
        use FailureKind::*;
        let cases = [
            (
                "Authentication failed",
                (ProviderUnusable, Code::BAD_CREDENTIALS),
            ),
            (
                "Invalid user or password",
                (ProviderUnusable, Code::BAD_CREDENTIALS),
            ),
            (
                "Mot de passe incorrect",
                (ProviderUnusable, Code::BAD_CREDENTIALS),
            ),
            ("LOGIN REFUSED", (ProviderUnusable, Code::BAD_CREDENTIALS)),
            ("Not enough credits", (ProviderUnusable, Code::NO_CREDIT)),
            ("Crédit insuffisant", (ProviderUnusable, Code::NO_CREDIT)),
            ("Solde épuisé", (ProviderUnusable, Code::NO_CREDIT)),
            ("Too many parameters", (Permanent, Code::INTERNAL)),
            (
                "Unknown user user33",
                (ProviderUnusable, Code::BAD_CREDENTIALS),
            ),
            ("Auth failed", (ProviderUnusable, Code::BAD_CREDENTIALS)),
            (
                "Identifiant inconnu",
                (ProviderUnusable, Code::BAD_CREDENTIALS),
            ),
            (
                "Authentification échouée",
                (ProviderUnusable, Code::BAD_CREDENTIALS),
            ),
            // "auth" alone is not about our credentials.
            (
                "Sender not authorized",
                (Permanent, Code::SENDER_NOT_ALLOWED),
            ),
            (
                "Expéditeur non autorisé",
                (Permanent, Code::SENDER_NOT_ALLOWED),
            ),
            (
                "Source address not authorised",
                (Permanent, Code::SENDER_NOT_ALLOWED),
            ),
            ("Destination not authorized", (Permanent, Code::INTERNAL)),
            ("Opération non autorisée", (Permanent, Code::INTERNAL)),
            ("Unauthorized", (Permanent, Code::INTERNAL)),
            ("Resource temporarily locked", (Permanent, Code::INTERNAL)),
        ];
        for (string, expected) in cases {
            let text = fault(801, string);
            let results = decode_send_message(&text, &["41791234567", "41791234568"]);
            assert_eq!(results.len(), 2);
            for r in results {
                let e = r.unwrap_err();
                assert_eq!(kind_code(&e), expected, "{string}");
                assert_eq!(e.detail, format!("NetOxygen fault 801: {string}"));
            }
        }
    }

    #[test]
    fn a_bare_false_refuses_the_whole_call() {
        let results = decode_send_message(&response("<boolean>0</boolean>"), &["41791234567"]);
        let e = results[0].as_ref().unwrap_err();
        assert_eq!(
            kind_code(e),
            (FailureKind::ProviderUnusable, Code::BAD_CREDENTIALS)
        );
    }

    #[test]
    fn unreadable_answers_are_transient() {
        for text in [
            "",
            "<html><body><h1>Service Unavailable</h1></body></html>",
            &response("<string>OK</string>"),
            &response("<array><data><value>oops</value></data></array>"),
            &response(
                "<array><data><value><array><data><value>41791234567</value><value>maybe</value></data></array></value></data></array>",
            ),
            "<methodResponse><params><param><value><array>",
        ] {
            let results = decode_send_message(text, &["41791234567"]);
            assert!(results[0].as_ref().unwrap_err().is_transient(), "{text:?}");
        }
    }

    #[test]
    fn auth_and_credits_are_decoded() {
        assert!(decode_auth(&response("<boolean>1</boolean>")).unwrap());
        assert!(!decode_auth(&response("<boolean>0</boolean>")).unwrap());
        assert!(decode_auth(&response("<int>1</int>")).unwrap());
        assert!(
            decode_auth(&response("<string>yes</string>"))
                .unwrap_err()
                .is_transient()
        );
        let e = decode_auth(&fault(3, "Authentication failed")).unwrap_err();
        assert_eq!(e.code, Code::BAD_CREDENTIALS);

        assert_eq!(
            decode_get_credits(&response("<double>212.5</double>")).unwrap(),
            Credits::Balance(212.5)
        );
        assert_eq!(
            decode_get_credits(&response("<int>40</int>")).unwrap(),
            Credits::Balance(40.0)
        );
        assert_eq!(
            decode_get_credits(&response("<string>17.25</string>")).unwrap(),
            Credits::Balance(17.25)
        );
        assert_eq!(
            decode_get_credits(&response("<int>0</int>")).unwrap(),
            Credits::Balance(0.0)
        );
        assert_eq!(
            decode_get_credits(&response("<boolean>0</boolean>")).unwrap(),
            Credits::Unavailable
        );
        assert!(
            decode_get_credits(&response("<string>lots</string>"))
                .unwrap_err()
                .is_transient()
        );
    }

    #[test]
    fn every_status_code_of_the_table_is_mapped() {
        use Progress::*;
        let cases = [
            (1, Delivered, "Delivered to the recipient device"),
            (2, InProgress, "Delivered to the recipient network"),
            (3, InProgress, "Message submitted"),
            (4, Failed, "Message error, delivery failed"),
            (5, Failed, "Routing error, delivery failed"),
            (6, Failed, "Message expired, delivery cancelled"),
            (7, Failed, "Gateway error"),
            (8, InProgress, "Message in queue"),
            (9, InProgress, "Message scheduled"),
            (11, Unknown, "status not in the document"),
        ];
        for (code, progress, description) in cases {
            let status = StatusCode::from_code(code);
            assert_eq!(status.progress(), progress, "{code}");
            assert_eq!(status.description(), description);
            assert_eq!(status.code(), code);
        }
    }

    #[test]
    fn get_status_entries_are_decoded() {
        let text = response(
            "<array><data>\
             <value><array><data><value>id-1</value><value><int>1</int></value><value><int>1</int></value></data></array></value>\
             <value><array><data><value><int>5</int></value><value><i4>4</i4></value></data></array></value>\
             </data></array>",
        );
        assert_eq!(
            decode_get_status(&text, &["id-1", "id-2"]).unwrap(),
            vec![
                MessageStatus {
                    id: "id-1".into(),
                    error: ErrorCode::Ok,
                    status: StatusCode::DeliveredToDevice
                },
                MessageStatus {
                    id: "id-2".into(),
                    error: ErrorCode::InvalidDestination,
                    status: StatusCode::MessageError
                },
            ]
        );
        // One id, flat answer.
        let text = response(
            "<array><data><value><int>9</int></value><value><int>9</int></value></data></array>",
        );
        assert_eq!(
            decode_get_status(&text, &["id-3"]).unwrap(),
            vec![MessageStatus {
                id: "id-3".into(),
                error: ErrorCode::Pending,
                status: StatusCode::Scheduled
            }]
        );
        assert!(
            decode_get_status(&response("<int>1</int>"), &["a"])
                .unwrap_err()
                .is_transient()
        );
        assert!(decode_get_status(&response("<array><data><value><array><data><value>x</value><value>y</value></data></array></value></data></array>"), &["a", "b"]).unwrap_err().is_transient());
    }

    #[test]
    fn cancel_entries_are_decoded() {
        let text = response(
            "<array><data>\
             <value><array><data><value>id-1</value><value><boolean>1</boolean></value></data></array></value>\
             <value><array><data><value><boolean>0</boolean></value></data></array></value>\
             <value><boolean>1</boolean></value>\
             </data></array>",
        );
        assert_eq!(
            decode_cancel_message(&text, &["id-1", "id-2", "id-3"]).unwrap(),
            vec![
                Cancellation {
                    id: "id-1".into(),
                    cancelled: true
                },
                Cancellation {
                    id: "id-2".into(),
                    cancelled: false
                },
                Cancellation {
                    id: "id-3".into(),
                    cancelled: true
                },
            ]
        );
        let text = response(
            "<array><data><value>id-9</value><value><boolean>0</boolean></value></data></array>",
        );
        assert_eq!(
            decode_cancel_message(&text, &["id-9"]).unwrap(),
            vec![Cancellation {
                id: "id-9".into(),
                cancelled: false
            }]
        );
        assert!(decode_cancel_message(&response("<string>no</string>"), &["a"]).is_err());
    }

    #[test]
    fn id_calls_pass_a_string_for_one_and_an_array_for_several() {
        let one = encode_get_status("u", "p", &["id-1"]);
        let (name, params) = xmlrpc::parse_call(std::str::from_utf8(&one).unwrap()).unwrap();
        assert_eq!(name, "get_status");
        assert_eq!(params[2], Value::Str("id-1".into()));
        let many = encode_cancel_message("u", "p", &["a", "b"]);
        let (name, params) = xmlrpc::parse_call(std::str::from_utf8(&many).unwrap()).unwrap();
        assert_eq!(name, "cancel_message");
        assert_eq!(
            params[2],
            Value::Array(vec![Value::Str("a".into()), Value::Str("b".into())])
        );
        let (name, params) =
            xmlrpc::parse_call(std::str::from_utf8(&encode_auth("u", "p")).unwrap()).unwrap();
        assert_eq!((name.as_str(), params.len()), ("auth", 2));
        let (name, _) =
            xmlrpc::parse_call(std::str::from_utf8(&encode_get_credits("u", "p")).unwrap())
                .unwrap();
        assert_eq!(name, "get_credits");
    }

    #[test]
    fn every_status_has_a_common_state() {
        use common::DeliveryState as S;
        let entry = |error: i64, status: i64| MessageStatus {
            id: "id".into(),
            error: ErrorCode::from_code(error),
            status: StatusCode::from_code(status),
        };
        let failed = |status: i64| S::undelivered(StatusCode::from_code(status).description());
        let rows = [
            (1, 1, S::Delivered),
            (1, 2, S::Accepted),
            (1, 3, S::Accepted),
            (1, 4, failed(4)),
            (1, 5, failed(5)),
            (1, 6, S::Expired),
            (1, 7, failed(7)),
            (1, 8, S::Accepted),
            (1, 9, S::Accepted),
            (1, 11, S::Unknown),
            (9, 8, S::Accepted),
            (10, 9, S::undelivered("Message scheduled: Message canceled")),
            (
                5,
                5,
                S::undelivered("Routing error, delivery failed: Invalid destination number"),
            ),
        ];
        for (error, status, state) in rows {
            let common = entry(error, status).delivery();
            assert_eq!(common.state, state, "{error}/{status}");
            assert_eq!(common.provider_code, format!("{error}/{status}"));
            assert_eq!(common.id, "id");
        }
    }
}
