//! XML escaping of the values the templates print.
//!
//! The templates' formatter applies it to every `{{ value }}` (see
//! [`render`](super::render)), so an operator editing a template cannot
//! forget it. Unlike MiniJinja's HTML escaping it leaves `/` alone: the
//! spec's clients read `0601020304`, not `&#x2f;`.

/// Escapes `&`, `<`, `>`, `"` and `'`, and replaces the control characters
/// XML 1.0 forbids (all of C0 but tab, LF and CR) with `?`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if c < ' ' => out.push('?'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_the_five_and_keeps_slash() {
        assert_eq!(
            escape(r#"a&b<c>"d'e/f é"#),
            "a&amp;b&lt;c&gt;&quot;d&apos;e/f é"
        );
        assert_eq!(escape("x\u{1}y\tz"), "x?y\tz");
    }
}
