//! Framing of command lines, with a hard cap on their length.

use std::io::BufRead;

/// What [`LineReader::frame`] found in its input.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Frame<'a> {
    /// A complete command line, its LF included.
    Line(&'a [u8]),
    /// The current line went over the limit; the rest of it will be skipped.
    TooLong,
    /// No complete line yet (or the tail of a too-long line was skipped).
    Pending,
}

/// Splits the command stream into lines without ever holding more than the
/// configured line length.
pub(super) struct LineReader {
    /// The start of a line split across reads (complete lines found within one
    /// read are returned without being copied).
    buf: Vec<u8>,
    /// Longest line accepted, in bytes, CRLF included.
    limit: usize,
    /// Whether we are skipping the rest of a line that was too long.
    discarding: bool,
    /// Whether `buf` holds a line already returned, to be cleared on the next call.
    returned: bool,
}

impl LineReader {
    pub(super) fn new(limit: usize) -> Self {
        Self {
            buf: Vec::new(),
            limit,
            discarding: false,
            returned: false,
        }
    }

    /// Looks for the next line in `input`; returns how many bytes of `input`
    /// it consumed and what it found.
    pub(super) fn frame<'a>(&'a mut self, input: &'a [u8]) -> (usize, Frame<'a>) {
        if self.returned {
            self.buf.clear();
            self.returned = false;
        }
        let Some(lf) = find_lf(input) else {
            if !self.discarding && self.buf.len() + input.len() > self.limit {
                self.buf.clear();
                self.discarding = true;
                return (input.len(), Frame::TooLong);
            }
            if !self.discarding {
                self.buf.extend_from_slice(input);
            }
            return (input.len(), Frame::Pending);
        };
        let used = lf + 1;
        if self.discarding {
            self.discarding = false;
            return (used, Frame::Pending);
        }
        if self.buf.len() + used > self.limit {
            self.buf.clear();
            return (used, Frame::TooLong);
        }
        if self.buf.is_empty() {
            return (used, Frame::Line(&input[..used]));
        }
        self.buf.extend_from_slice(&input[..used]);
        self.returned = true;
        (used, Frame::Line(&self.buf))
    }
}

/// The position of the first LF in `bytes`.
///
/// `BufRead::skip_until` on a slice is std's (SIMD) memchr, which a plain
/// `iter().position()` is not; this keeps scanning cheap for big messages and
/// over-long lines without another dependency.
pub(super) fn find_lf(bytes: &[u8]) -> Option<usize> {
    let mut rest = bytes;
    // Reading from a slice cannot fail.
    let skipped = rest.skip_until(b'\n').unwrap_or(0);
    (skipped > 0 && bytes[skipped - 1] == b'\n').then(|| skipped - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` one after the other and collects what comes out.
    fn run(reader: &mut LineReader, chunks: &[&[u8]]) -> Vec<Result<String, &'static str>> {
        let mut out = Vec::new();
        for chunk in chunks {
            let mut rest = *chunk;
            while !rest.is_empty() {
                let (used, frame) = reader.frame(rest);
                match frame {
                    Frame::Line(line) => out.push(Ok(String::from_utf8_lossy(line).into_owned())),
                    Frame::TooLong => out.push(Err("too long")),
                    Frame::Pending => {}
                }
                rest = &rest[used..];
            }
        }
        out
    }

    #[test]
    fn find_lf_finds_the_first_lf() {
        assert_eq!(find_lf(b""), None);
        assert_eq!(find_lf(b"abc"), None);
        assert_eq!(find_lf(b"\n"), Some(0));
        assert_eq!(find_lf(b"ab\r\ncd\n"), Some(3));
    }

    #[test]
    fn lines_split_across_reads_are_joined() {
        let mut reader = LineReader::new(100);
        let got = run(
            &mut reader,
            &[b"NOOP\r\nMA", b"IL FROM:<a@b>", b"\r\nQUIT\r\n"],
        );
        assert_eq!(
            got,
            vec![
                Ok("NOOP\r\n".into()),
                Ok("MAIL FROM:<a@b>\r\n".into()),
                Ok("QUIT\r\n".into())
            ]
        );
    }

    #[test]
    fn too_long_line_is_reported_once_and_skipped() {
        let mut reader = LineReader::new(10);
        let got = run(&mut reader, &[b"0123456789", b"abc", b"def\r\nNOOP\r\n"]);
        assert_eq!(got, vec![Err("too long"), Ok("NOOP\r\n".into())]);
        let got = run(&mut reader, &[b"0123456789\r\nNOOP\r\n"]);
        assert_eq!(got, vec![Err("too long"), Ok("NOOP\r\n".into())]);
        // Exactly at the limit, CRLF included, is fine.
        let got = run(&mut reader, &[b"01234567\r\n"]);
        assert_eq!(got, vec![Ok("01234567\r\n".into())]);
    }

    #[test]
    fn huge_line_does_not_grow_memory() {
        let mut reader = LineReader::new(4096);
        let chunk = vec![b'x'; 1 << 20];
        let mut too_long = 0;
        for _ in 0..300 {
            let (used, frame) = reader.frame(&chunk);
            assert_eq!(used, chunk.len());
            too_long += usize::from(frame == Frame::TooLong);
            assert!(reader.buf.capacity() <= 4096);
        }
        assert_eq!(too_long, 1);
        let got = run(&mut reader, &[b"tail\r\nQUIT\r\n"]);
        assert_eq!(got, vec![Ok("QUIT\r\n".into())]);
    }
}
