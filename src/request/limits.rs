//! The protocol's caps on what one request may contain (issue 8).
//!
//! These are fixed by the protocol and the formats the values end up in
//! (an SMTP path, a reply's `Subject:`, a store row), not operator settings:
//! a request over any of them is refused as a whole (`550 5.6.0`, naming the
//! field and its limit) before its values are copied around.
//!
//! Lengths are counted in characters (Unicode scalar values) of the value as
//! read: surrounding whitespace trimmed and character references decoded.
//! A value's raw span is first compared with [`MAX_RAW_BYTES_PER_CHAR`] times
//! its cap in bytes, so that a 24 MB `<sms>` is refused from its span's length
//! alone, without being decoded or copied.

/// `<emailId>`: an identifier, echoed in etatAck/etatNot and their
/// `Subject:`; any characters, not required to be numeric.
pub const MAX_EMAIL_ID_CHARS: usize = 64;

/// `<tracker>`: the sender's identifier of the send, passed along.
pub const MAX_TRACKER_CHARS: usize = 64;

/// `<emetteur>`: far above the 11 characters a sender id may have (spec §4),
/// so that the sender-id rule still explains what is wrong with it (code 33)
/// while a huge value never reaches it.
pub const MAX_EMETTEUR_CHARS: usize = 64;

/// `<emailAck>` / `<emailNot>`: an address, at most the 254 characters an
/// SMTP path can carry.
pub use crate::address::MAX_ADDRESS_CHARS;

/// Each SMS text: `<sms>`, `<smsX>`, and each text merged from `message.csv`
/// and `mobiles.csv`. Far above the default segment cap (6 segments, under
/// 1 000 characters) yet small enough that 500 recipients stay a few MB.
pub const MAX_SMS_CHARS: usize = 10_000;

/// Bytes of raw span allowed per character of a cap before decoding: the
/// longest character reference (`&#x10FFFF;`, `&#1114111;`) is 10 bytes for
/// one character, so a span longer than 10 × the cap cannot decode to a
/// value within it (short of whitespace runs folded into one space, which
/// no sender needs).
pub const MAX_RAW_BYTES_PER_CHAR: usize = 10;

/// Whether a raw span of `raw_len` bytes is over `max_chars` whatever it
/// decodes to (see [`MAX_RAW_BYTES_PER_CHAR`]).
pub(crate) fn span_too_long(raw_len: usize, max_chars: usize) -> bool {
    raw_len > max_chars.saturating_mul(MAX_RAW_BYTES_PER_CHAR)
}
