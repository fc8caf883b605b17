//! Values that come from a client, made safe to log.
//!
//! A header, an `<envoi>` tag or an SMTP argument can hold anything: a
//! decoded `&#13;&#10;` would start a forged log line, an escape sequence
//! would drive the operator's terminal, a megabyte would make one log line a
//! megabyte. [`Safe`] escapes every control character and cuts long values,
//! so a log field shows what was sent without letting it act (issue 8).

use std::fmt;

/// The most characters of a value a log line shows; the rest is counted.
pub const MAX_LOGGED_CHARS: usize = 256;

/// Displays a client-supplied value with its control characters escaped
/// (`\r`, `\n`, `\t`, `\0`, others as `\u{..}`) and at most
/// [`MAX_LOGGED_CHARS`] characters, followed by how many were left out.
#[derive(Clone, Copy)]
pub struct Safe<'a>(pub &'a str);

impl fmt::Display for Safe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shown, c) in self.0.chars().enumerate() {
            if shown == MAX_LOGGED_CHARS {
                let left = self.0.chars().count() - shown;
                return write!(f, "…({left} more characters)");
            }
            match c {
                '\r' => f.write_str("\\r")?,
                '\n' => f.write_str("\\n")?,
                '\t' => f.write_str("\\t")?,
                '\0' => f.write_str("\\0")?,
                '\\' => f.write_str("\\\\")?,
                c if c.is_control() || is_invisible_format(c) => {
                    write!(f, "\\u{{{:x}}}", c as u32)?
                }
                c => fmt::Write::write_char(f, c)?,
            }
        }
        Ok(())
    }
}

impl fmt::Debug for Safe<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

/// Characters that change how the rest of a line reads without showing
/// themselves: bidirectional overrides and line/paragraph separators.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 8: a decoded CR LF must not start a new log line.
    #[test]
    fn line_breaks_and_controls_are_escaped() {
        let forged = "1548\r\n2026-12-03T10:00:00Z  INFO forged line\x1b[2J\0";
        let shown = Safe(forged).to_string();
        assert!(!shown.contains(['\r', '\n', '\x1b', '\0']), "{shown}");
        assert_eq!(
            shown,
            "1548\\r\\n2026-12-03T10:00:00Z  INFO forged line\\u{1b}[2J\\0"
        );
        assert_eq!(Safe("a\\b\u{202e}c").to_string(), "a\\\\b\\u{202e}c");
    }

    #[test]
    fn long_values_are_cut_and_counted() {
        let long = "é".repeat(1_000_000);
        let shown = Safe(&long).to_string();
        assert!(shown.len() < 1_024, "{}", shown.len());
        assert!(shown.ends_with(&format!(
            "…({} more characters)",
            1_000_000 - MAX_LOGGED_CHARS
        )));
        assert_eq!(Safe("court").to_string(), "court");
    }
}
