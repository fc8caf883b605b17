//! XML escaping of the values the templates print.
//!
//! The templates' formatter applies it to every `{{ value }}` (see
//! [`render`](super::render)), so an operator editing a template cannot
//! forget it. Unlike MiniJinja's HTML escaping it leaves `/` alone: the
//! spec's clients read `0601020304`, not `&#x2f;`. Values only ever stand
//! in element content, so quotes and apostrophes stay as they are: the
//! annex's messages ("L'adresse IP n'est pas autorisée") read as the spec
//! writes them.

use crate::xml::{Forbidden, Style};

/// How reply values are escaped: element content only (quotes stay), and
/// what XML 1.0 cannot carry becomes `?` so the reader still sees a place.
const REPLY: Style = Style {
    quotes: false,
    cr_reference: false,
    forbidden: Forbidden::Replace('?'),
};

/// Escapes `&`, `<` and `>`, and replaces the characters XML 1.0 forbids
/// (all of C0 but tab, LF and CR, and U+FFFE/U+FFFF) with `?`.
pub fn escape(s: &str) -> String {
    crate::xml::escape(s, REPLY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_keeps_slash_and_quotes() {
        assert_eq!(escape(r#"a&b<c>"d'e/f é"#), r#"a&amp;b&lt;c&gt;"d'e/f é"#);
        assert_eq!(escape("x\u{1}y\tz"), "x?y\tz");
    }
}
