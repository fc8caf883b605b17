//! XML escaping: the one escaper every XML writer of the crate uses, each
//! with the [`Style`] its reader needs.
//!
//! The writers differ in three ways only, and each difference has a
//! reason: attribute values need quotes escaped (element content does not,
//! and the reply templates keep the annex's apostrophes readable); a
//! carriage return must be written `&#13;` where it has to survive (a
//! parser's end-of-line handling reads a bare CR as LF); and a character
//! XML 1.0 cannot carry at all makes the whole document ill-formed, so a
//! text may drop it or replace it, while a credential must go as given.

/// What becomes of a character XML 1.0 cannot carry, even as a character
/// reference (C0 controls other than tab, LF and CR; U+FFFE, U+FFFF).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    /// Written as is (a credential must reach the server unchanged).
    Keep,
    /// Left out (a text the provider would otherwise refuse whole).
    Drop,
    /// Replaced by this character (a reply the reader must still see).
    Replace(char),
}

/// How a writer escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    /// Whether `"` and `'` are escaped too: needed in attribute values.
    pub quotes: bool,
    /// Whether CR is written `&#13;`, so that it reaches the reader as CR
    /// and not as LF.
    pub cr_reference: bool,
    /// What becomes of the characters XML 1.0 cannot carry.
    pub forbidden: Forbidden,
}

impl Style {
    /// Element content or attribute values, every character kept: `&`,
    /// `<`, `>`, `"`, `'` escaped.
    pub const MARKUP: Style = Style {
        quotes: true,
        cr_reference: false,
        forbidden: Forbidden::Keep,
    };
}

/// Whether XML 1.0 can carry `c` at all (even as a character reference).
pub fn allowed(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// `text` escaped in `style`: `&`, `<` and `>` always.
pub fn escape(text: &str, style: Style) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if style.quotes => out.push_str("&quot;"),
            '\'' if style.quotes => out.push_str("&apos;"),
            '\r' if style.cr_reference => out.push_str("&#13;"),
            c if !allowed(c) => match style.forbidden {
                Forbidden::Keep => out.push(c),
                Forbidden::Drop => {}
                Forbidden::Replace(r) => out.push(r),
            },
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markup_escapes_the_five_and_keeps_the_rest() {
        assert_eq!(
            escape("a&b<c>\"d'e\r\u{1}é", Style::MARKUP),
            "a&amp;b&lt;c&gt;&quot;d&apos;e\r\u{1}é"
        );
    }

    #[test]
    fn each_option_does_one_thing() {
        let text = "L'a\r\u{1}\u{FFFE}b\t\n😀";
        let style = |quotes, cr_reference, forbidden| Style {
            quotes,
            cr_reference,
            forbidden,
        };
        assert_eq!(
            escape(text, style(false, true, Forbidden::Keep)),
            "L'a&#13;\u{1}\u{FFFE}b\t\n😀"
        );
        assert_eq!(
            escape(text, style(false, false, Forbidden::Drop)),
            "L'a\rb\t\n😀"
        );
        assert_eq!(
            escape(text, style(false, false, Forbidden::Replace('?'))),
            "L'a\r??b\t\n😀"
        );
    }
}
