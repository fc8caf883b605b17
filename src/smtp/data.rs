//! The DATA phase: finds the end of the message and undoes dot-stuffing.
//!
//! Only `CRLF . CRLF` ends the message (RFC 5321 §4.1.1.4). A dot line
//! ended by a bare LF (`LF . LF`, `LF . CRLF`, `CRLF . LF`) is message content:
//! accepting those is what makes SMTP smuggling possible. Bare CR and LF
//! inside lines are passed through untouched.

use std::sync::Arc;

use super::budget::{Budget, BufferPermit};
use super::line::find_lf;

/// Where the receiver stands with respect to the terminator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// At the start of a line: DATA just began or the last bytes were CRLF.
    LineStart,
    /// Inside a line; the last byte was not CR.
    Text,
    /// Inside a line; the last byte was CR, so an LF now ends the line.
    TextCr,
    /// A dot at the start of a line, dropped (unstuffed) unless it ends the message.
    Dot,
    /// A dot and a CR at the start of a line: an LF now ends the message.
    DotCr,
}

/// Smallest buffer a message gets once it has content: tiny messages do not
/// go back to the budget for every line.
const MIN_BUFFER: usize = 4 * 1024;

/// Why a message was not kept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Dropped {
    /// It went over the per-message limit (a permanent refusal).
    TooBig,
    /// The global budget of buffered bytes ran out (a transient refusal).
    NoBudget,
}

/// A received message with the share of the budget that pays for its
/// buffer; the share goes back when this is dropped.
pub(super) struct Message {
    /// The message content.
    pub(super) bytes: Vec<u8>,
    /// The budget taken for `bytes`' capacity; `None` if it needed none.
    pub(super) reserved: Option<BufferPermit>,
}

/// Receives one message body, keeping at most `limit` bytes of it, in a
/// buffer whose every byte of capacity is taken from the shared budget.
pub(super) struct DataReceiver {
    /// Position relative to line starts and the terminator; survives reads.
    state: State,
    /// Largest message kept, in bytes after unstuffing.
    limit: usize,
    /// Why the message is being discarded to its end, if it is.
    dropped: Option<Dropped>,
    /// Content bytes seen so far, kept or not (for the logs).
    size: usize,
    /// The content kept so far.
    message: Vec<u8>,
    /// The budget taken for `message`'s capacity.
    reserved: Option<BufferPermit>,
    /// The budget shared by all sessions (one permit per byte).
    budget: Arc<Budget>,
}

impl DataReceiver {
    pub(super) fn new(limit: usize, budget: Arc<Budget>) -> Self {
        Self {
            state: State::LineStart,
            limit,
            dropped: None,
            size: 0,
            message: Vec::new(),
            reserved: None,
            budget,
        }
    }

    /// Prepares for a new message (and gives back any leftover buffer).
    pub(super) fn reset(&mut self) {
        self.state = State::LineStart;
        self.dropped = None;
        self.size = 0;
        self.free();
    }

    /// The size of the message content, even if it was dropped.
    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// Takes the complete message, or tells why it was dropped.
    pub(super) fn take(&mut self) -> Result<Message, Dropped> {
        if let Some(dropped) = self.dropped {
            return Err(dropped);
        }
        Ok(Message {
            bytes: std::mem::take(&mut self.message),
            reserved: self.reserved.take(),
        })
    }

    /// Consumes message bytes from `input`, keeping the unstuffed content.
    /// Returns how many bytes it consumed and whether it reached the
    /// end of the message (the bytes after it are commands again).
    ///
    /// The message keeps the CRLF that precedes the terminating dot.
    pub(super) fn feed(&mut self, input: &[u8]) -> (usize, bool) {
        let mut pos = 0;
        while pos < input.len() {
            let byte = input[pos];
            match self.state {
                State::LineStart if byte == b'.' => {
                    self.state = State::Dot;
                    pos += 1;
                }
                State::Dot if byte == b'\r' => {
                    self.state = State::DotCr;
                    pos += 1;
                }
                State::DotCr if byte == b'\n' => {
                    self.state = State::LineStart;
                    return (pos + 1, true);
                }
                State::DotCr => {
                    // "." CR then something else: the CR is content.
                    self.keep(b"\r");
                    self.state = State::TextCr;
                }
                // Other bytes after a leading dot: the dot stays dropped.
                State::LineStart | State::Dot => self.state = State::Text,
                State::Text | State::TextCr => {
                    let rest = &input[pos..];
                    let Some(lf) = find_lf(rest) else {
                        self.keep(rest);
                        self.state = if rest.last() == Some(&b'\r') {
                            State::TextCr
                        } else {
                            State::Text
                        };
                        return (input.len(), false);
                    };
                    let crlf = match lf {
                        0 => self.state == State::TextCr,
                        _ => rest[lf - 1] == b'\r',
                    };
                    self.keep(&rest[..=lf]);
                    self.state = if crlf { State::LineStart } else { State::Text };
                    pos += lf + 1;
                }
            }
        }
        (input.len(), false)
    }

    /// Appends content to the message, unless that would exceed the limit or
    /// the budget: the message is then dropped.
    fn keep(&mut self, bytes: &[u8]) {
        self.size = self.size.saturating_add(bytes.len());
        if self.dropped.is_some() {
            return;
        }
        let needed = self.message.len() + bytes.len();
        if needed > self.limit {
            self.drop_message(Dropped::TooBig);
            return;
        }
        if needed > self.message.capacity() && !self.grow(needed) {
            self.drop_message(Dropped::NoBudget);
            return;
        }
        self.message.extend_from_slice(bytes);
    }

    /// Grows the buffer to hold at least `needed` bytes (`needed <= limit`),
    /// taking the budget for its new capacity first; `false` if the budget
    /// does not have it. The capacity doubles so that copying stays
    /// amortized, as `Vec` does on its own.
    fn grow(&mut self, needed: usize) -> bool {
        let capacity = self
            .message
            .capacity()
            // Half again (not double): a message just over half the limit
            // must not reserve the whole limit of the shared budget.
            .saturating_add(self.message.capacity() / 2)
            .max(MIN_BUFFER)
            .min(self.limit)
            .max(needed);
        let held = self.reserved.as_ref().map_or(0, |r| r.num_permits());
        let Ok(more) = u32::try_from(capacity.saturating_sub(held)) else {
            return false;
        };
        // Never wait: a session that cannot have the memory now is refused.
        // Buffers cannot take the headroom kept for handling (see budget.rs).
        let Some(permit) = self.budget.try_buffer(more) else {
            return false;
        };
        match &mut self.reserved {
            Some(reserved) => reserved.merge(permit),
            None => self.reserved = Some(permit),
        }
        self.message.reserve_exact(capacity - self.message.len());
        true
    }

    /// Frees the buffer and discards the rest of the message.
    fn drop_message(&mut self, why: Dropped) {
        self.dropped = Some(why);
        self.free();
    }

    /// Frees the buffer and gives its budget back.
    fn free(&mut self) {
        self.message = Vec::new();
        self.reserved = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A budget nothing in these tests comes close to.
    fn unlimited() -> Arc<Budget> {
        Arc::new(Budget::new(usize::MAX, 1 << 20))
    }

    /// Feeds `input` in pieces of `step` bytes to `receiver`; returns what
    /// follows the message, or `None` if the message did not end.
    fn feed(receiver: &mut DataReceiver, input: &[u8], step: usize) -> Option<Vec<u8>> {
        let mut offset = 0;
        while offset < input.len() {
            let end = (offset + step).min(input.len());
            let (used, done) = receiver.feed(&input[offset..end]);
            offset += used;
            if done {
                return Some(input[offset..].to_vec());
            }
        }
        None
    }

    /// The message (or why it was dropped), what follows it and the receiver.
    type Received = (Result<Vec<u8>, Dropped>, Vec<u8>, DataReceiver);

    /// Feeds `input` in pieces of `step` bytes; `None` if the message did not
    /// end.
    fn receive(input: &[u8], step: usize, limit: usize) -> Option<Received> {
        let mut receiver = DataReceiver::new(limit, unlimited());
        let rest = feed(&mut receiver, input, step)?;
        let message = receiver.take().map(|m| m.bytes);
        Some((message, rest, receiver))
    }

    /// Checks `input` gives `expected` then `after`, whatever the read sizes.
    fn check(input: &str, expected: &str, after: &str) {
        for step in 1..=input.len() {
            let (message, rest, receiver) = receive(input.as_bytes(), step, 1 << 20)
                .unwrap_or_else(|| panic!("no end found in {input:?} (step {step})"));
            let message = message.expect("message kept");
            assert_eq!(String::from_utf8(message).unwrap(), expected, "step {step}");
            assert_eq!(String::from_utf8(rest).unwrap(), after, "step {step}");
            assert_eq!(receiver.size(), expected.len());
        }
    }

    #[test]
    fn plain_message_ends_at_crlf_dot_crlf() {
        check(
            "Subject: hi\r\n\r\nbody\r\n.\r\nQUIT\r\n",
            "Subject: hi\r\n\r\nbody\r\n",
            "QUIT\r\n",
        );
    }

    #[test]
    fn empty_message() {
        check(".\r\nNOOP\r\n", "", "NOOP\r\n");
    }

    #[test]
    fn dots_are_unstuffed() {
        check(
            "..\r\n...x\r\n.y\r\na.b\r\n.\r\n",
            ".\r\n..x\r\ny\r\na.b\r\n",
            "",
        );
    }

    #[test]
    fn bare_lf_dot_does_not_end_the_message() {
        for smuggled in [
            "a\n.\nb",
            "a\n.\r\nb",
            "a\r\n.\nb",
            "a\r.\r\nb",
            "a\r\n.\r\r\nb",
        ] {
            let input = format!("{smuggled}\r\n.\r\n");
            let (message, _, _) = receive(input.as_bytes(), input.len(), 1 << 20).unwrap();
            let message = String::from_utf8(message.unwrap()).unwrap();
            assert!(
                message.starts_with('a') && message.ends_with("b\r\n"),
                "{smuggled:?}: {message:?}"
            );
            assert!(
                receive(smuggled.as_bytes(), 1, 1 << 20).is_none(),
                "{smuggled:?}"
            );
        }
        // After a bare LF we are not at a line start: the dot is plain content.
        check(
            "a\n.\nMAIL FROM:<x@y>\r\n.\r\n",
            "a\n.\nMAIL FROM:<x@y>\r\n",
            "",
        );
        check("a\r\n.\r\r\nb\r\n.\r\n", "a\r\n\r\r\nb\r\n", "");
    }

    #[test]
    fn oversized_message_is_dropped_but_read_to_its_end() {
        let body = "x".repeat(100) + "\r\n";
        let input = body.repeat(100) + ".\r\nQUIT\r\n";
        let (message, rest, receiver) = receive(input.as_bytes(), 7, 1000).unwrap();
        assert_eq!(message.err(), Some(Dropped::TooBig));
        assert_eq!(receiver.size(), body.len() * 100);
        assert!(receiver.message.capacity() == 0 && receiver.reserved.is_none());
        assert_eq!(rest, b"QUIT\r\n");
        // Exactly at the limit is fine.
        let (message, _, _) = receive(b"0123456\r\n.\r\n", 3, 9).unwrap();
        assert_eq!(message.unwrap(), b"0123456\r\n");
    }

    #[test]
    fn the_buffer_capacity_is_paid_from_the_budget() {
        let budget = Arc::new(Budget::new(100_000, 1 << 20));
        let mut receiver = DataReceiver::new(1 << 20, budget.clone());
        let line = "x".repeat(98) + "\r\n";
        let input = line.repeat(500) + ".\r\nQUIT\r\n";
        assert_eq!(
            feed(&mut receiver, input.as_bytes(), 1000).unwrap(),
            b"QUIT\r\n"
        );
        let message = receiver.take().unwrap();
        assert_eq!(message.bytes.len(), 50_000);
        let paid = message.reserved.as_ref().unwrap().num_permits();
        assert!(paid >= message.bytes.capacity(), "{paid}");
        assert_eq!(budget.available_permits(), 100_000 - paid);
        drop(message);
        assert_eq!(budget.available_permits(), 100_000);
    }

    #[test]
    fn message_over_the_budget_is_dropped_but_read_to_its_end() {
        let budget = Arc::new(Budget::new(100_000, 1 << 20));
        let mut receiver = DataReceiver::new(1 << 20, budget.clone());
        let line = "x".repeat(98) + "\r\n";
        let input = line.repeat(2000) + ".\r\nQUIT\r\n";
        assert_eq!(
            feed(&mut receiver, input.as_bytes(), 1000).unwrap(),
            b"QUIT\r\n"
        );
        assert_eq!(receiver.take().err(), Some(Dropped::NoBudget));
        assert_eq!(receiver.size(), 200_000);
        // The budget came back when the message was dropped.
        assert_eq!(budget.available_permits(), 100_000);
        // The next message fits again.
        receiver.reset();
        assert!(
            feed(&mut receiver, b"small\r\n.\r\n", 3)
                .unwrap()
                .is_empty()
        );
        assert_eq!(receiver.take().unwrap().bytes, b"small\r\n");
        assert_eq!(budget.available_permits(), 100_000);
    }
}
