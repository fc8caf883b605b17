//! ISO-8859-15 (Latin-9), the charset sMsmode reads a plain (non-Unicode)
//! message in.
//!
//! Latin-9 is Latin-1 with eight positions replaced: `€ Š š Ž ž Œ œ Ÿ` take
//! the places of `¤ ¦ ¨ ´ ¸ ¼ ½ ¾`, which Latin-9 cannot express at all. Every
//! other char from U+0000 to U+00FF is its own byte.
//!
//! The document's character table lists `€` twice: `%A4` in the ISO-8859-15
//! column, and `%80*` at the end of the table (the Windows-1252 position).
//! We send `0xA4`, the standard ISO-8859-15 byte the table gives first.

/// The Latin-9 byte of `c`, or `None` if Latin-9 has no such char.
pub fn latin9_byte(c: char) -> Option<u8> {
    match c {
        // The eight chars Latin-9 puts where Latin-1 has something else.
        '€' => Some(0xA4),
        'Š' => Some(0xA6),
        'š' => Some(0xA8),
        'Ž' => Some(0xB4),
        'ž' => Some(0xB8),
        'Œ' => Some(0xBC),
        'œ' => Some(0xBD),
        'Ÿ' => Some(0xBE),
        // The Latin-1 chars those positions held: gone from Latin-9.
        '\u{A4}' | '\u{A6}' | '\u{A8}' | '\u{B4}' | '\u{B8}' | '\u{BC}' | '\u{BD}' | '\u{BE}' => {
            None
        }
        c => u8::try_from(u32::from(c)).ok(),
    }
}

/// The Latin-9 bytes of `text`, or `None` if one of its chars has no byte.
pub fn encode(text: &str) -> Option<Vec<u8>> {
    text.chars().map(latin9_byte).collect()
}

/// The Latin-9 bytes of `text`, `?` standing for a char without a byte (what
/// sMsmode itself does with a char it cannot send).
pub fn encode_lossy(text: &str) -> Vec<u8> {
    text.chars()
        .map(|c| latin9_byte(c).unwrap_or(b'?'))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn agrees_with_encoding_rs_on_every_byte_and_char() {
        // Every byte decodes (encoding_rs) to a char we map back to it.
        for b in 0..=255u8 {
            let byte = [b];
            let (text, _, _) = encoding_rs::ISO_8859_15.decode(&byte);
            let c = text.chars().next().unwrap();
            assert_eq!(latin9_byte(c), Some(b), "{b:#04x} {c:?}");
        }
        // And no other char of the BMP has a byte.
        let mapped = (0..=0xFFFFu32)
            .filter_map(char::from_u32)
            .filter(|&c| latin9_byte(c).is_some())
            .count();
        assert_eq!(mapped, 256);
    }

    #[test]
    fn the_eight_latin9_positions() {
        assert_eq!(
            encode("€ŠšŽžŒœŸ"),
            Some(vec![0xA4, 0xA6, 0xA8, 0xB4, 0xB8, 0xBC, 0xBD, 0xBE])
        );
        for c in ['¤', '¦', '¨', '´', '¸', '¼', '½', '¾'] {
            assert_eq!(latin9_byte(c), None, "{c}");
        }
    }

    #[test]
    fn the_documents_table() {
        // The "Caractères et encodage" table, the non-ASCII column (the
        // extraction shows ¡ as "ı" and ü as "Û"; the codes say which chars
        // they are). € is 0xA4, the table's ISO-8859-15 entry.
        let table: &[(char, u8)] = &[
            ('¡', 0xA1),
            ('£', 0xA3),
            ('€', 0xA4),
            ('¥', 0xA5),
            ('§', 0xA7),
            ('¿', 0xBF),
            ('Ä', 0xC4),
            ('Å', 0xC5),
            ('Æ', 0xC6),
            ('Ç', 0xC7),
            ('È', 0xC8),
            ('É', 0xC9),
            ('Ñ', 0xD1),
            ('Ö', 0xD6),
            ('Ø', 0xD8),
            ('Ü', 0xDC),
            ('ß', 0xDF),
            ('à', 0xE0),
            ('ä', 0xE4),
            ('å', 0xE5),
            ('æ', 0xE6),
            ('è', 0xE8),
            ('é', 0xE9),
            ('ì', 0xEC),
            ('ñ', 0xF1),
            ('ò', 0xF2),
            ('ö', 0xF6),
            ('ø', 0xF8),
            ('ù', 0xF9),
            ('ü', 0xFC),
        ];
        for &(c, b) in table {
            assert_eq!(latin9_byte(c), Some(b), "{c}");
        }
    }

    #[test]
    fn lossy_replaces_with_a_question_mark() {
        assert_eq!(encode_lossy("aΔ€"), vec![b'a', b'?', 0xA4]);
        assert_eq!(encode("aΔ"), None);
    }
}
