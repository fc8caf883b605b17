//! ISO-8859-1, the encoding the replies' XML declaration announces.
//!
//! Written by hand because `encoding_rs` follows the WHATWG standard, which
//! maps the label ISO-8859-1 to Windows-1252 (and so would emit `€` as 0x80,
//! a C1 control in real Latin-1).

/// Encodes `s` in ISO-8859-1: every char up to U+00FF becomes the byte of the
/// same value, any other char (`€`, `œ`, emoji…) becomes `?`.
pub fn to_latin1(s: &str) -> Vec<u8> {
    s.chars()
        .map(|c| u8::try_from(u32::from(c)).unwrap_or(b'?'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_byte_per_char_and_question_marks() {
        assert_eq!(to_latin1("été"), [0xE9, b't', 0xE9]);
        assert_eq!(to_latin1("50€ œ"), b"50? ?");
        assert_eq!(to_latin1("\u{FF}\u{100}"), [0xFF, b'?']);
        assert_eq!(to_latin1("😀"), b"?");
        assert_eq!(to_latin1("a\nb"), b"a\nb");
    }
}
