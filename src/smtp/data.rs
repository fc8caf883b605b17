//! The DATA phase: finds the end of the message and undoes dot-stuffing.
//!
//! Only `CRLF . CRLF` ends the message (RFC 5321 §4.1.1.4). A dot line
//! ended by a bare LF (`LF . LF`, `LF . CRLF`, `CRLF . LF`) is message content:
//! accepting those is what makes SMTP smuggling possible. Bare CR and LF
//! inside lines are passed through untouched.

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

/// Receives one message body, keeping at most `limit` bytes of it.
pub(super) struct DataReceiver {
    /// Position relative to line starts and the terminator; survives reads.
    state: State,
    /// Largest message kept, in bytes after unstuffing.
    limit: usize,
    /// Whether the message went over `limit`; it is then discarded to its end.
    oversized: bool,
    /// Content bytes seen so far, kept or not (for the logs).
    size: usize,
}

impl DataReceiver {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            state: State::LineStart,
            limit,
            oversized: false,
            size: 0,
        }
    }

    /// Prepares for a new message.
    pub(super) fn reset(&mut self) {
        self.state = State::LineStart;
        self.oversized = false;
        self.size = 0;
    }

    /// The size of the message content, even if it was dropped.
    pub(super) fn size(&self) -> usize {
        self.size
    }

    /// Whether the message went over the size limit (and was dropped).
    pub(super) fn oversized(&self) -> bool {
        self.oversized
    }

    /// Consumes message bytes from `input`, appending the unstuffed content to
    /// `message`. Returns how many bytes it consumed and whether it reached the
    /// end of the message (the bytes after it are commands again).
    ///
    /// The message keeps the CRLF that precedes the terminating dot.
    pub(super) fn feed(&mut self, input: &[u8], message: &mut Vec<u8>) -> (usize, bool) {
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
                    self.keep(b"\r", message);
                    self.state = State::TextCr;
                }
                // Other bytes after a leading dot: the dot stays dropped.
                State::LineStart | State::Dot => self.state = State::Text,
                State::Text | State::TextCr => {
                    let rest = &input[pos..];
                    let Some(lf) = find_lf(rest) else {
                        self.keep(rest, message);
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
                    self.keep(&rest[..=lf], message);
                    self.state = if crlf { State::LineStart } else { State::Text };
                    pos += lf + 1;
                }
            }
        }
        (input.len(), false)
    }

    /// Appends content to the message unless that would exceed the limit.
    fn keep(&mut self, bytes: &[u8], message: &mut Vec<u8>) {
        self.size = self.size.saturating_add(bytes.len());
        if self.oversized {
            return;
        }
        if message.len() + bytes.len() > self.limit {
            self.oversized = true;
            *message = Vec::new();
            return;
        }
        message.extend_from_slice(bytes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `input` in pieces of `step` bytes; returns the message and what
    /// follows it, or `None` if the message did not end.
    fn receive(
        input: &[u8],
        step: usize,
        limit: usize,
    ) -> Option<(Vec<u8>, Vec<u8>, DataReceiver)> {
        let mut receiver = DataReceiver::new(limit);
        let mut message = Vec::new();
        let mut offset = 0;
        while offset < input.len() {
            let end = (offset + step).min(input.len());
            let (used, done) = receiver.feed(&input[offset..end], &mut message);
            offset += used;
            if done {
                return Some((message, input[offset..].to_vec(), receiver));
            }
        }
        None
    }

    /// Checks `input` gives `expected` then `after`, whatever the read sizes.
    fn check(input: &str, expected: &str, after: &str) {
        for step in 1..=input.len() {
            let (message, rest, receiver) = receive(input.as_bytes(), step, 1 << 20)
                .unwrap_or_else(|| panic!("no end found in {input:?} (step {step})"));
            assert_eq!(String::from_utf8(message).unwrap(), expected, "step {step}");
            assert_eq!(String::from_utf8(rest).unwrap(), after, "step {step}");
            assert!(!receiver.oversized());
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
            let message = String::from_utf8(message).unwrap();
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
        assert!(receiver.oversized());
        assert_eq!(receiver.size(), body.len() * 100);
        assert!(message.is_empty() && message.capacity() == 0);
        assert_eq!(rest, b"QUIT\r\n");
        // Exactly at the limit is fine.
        let (message, _, receiver) = receive(b"0123456\r\n.\r\n", 3, 9).unwrap();
        assert!(!receiver.oversized());
        assert_eq!(message, b"0123456\r\n");
    }
}
