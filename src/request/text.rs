//! Cleaning of the values found between tags: what the mail client did to
//! the text is undone, what the protocol's conventions mean is applied.

/// Cleans one tag value as written in the body:
///
/// 1. every whitespace run that contains a line break (CR and/or LF) is folded
///    into a single space: line breaks inside a value come from the mail
///    client wrapping long lines (with or without a trailing space, as
///    `format=flowed` does), never from the sender, who must write `Ö` for a
///    line break (spec, "Remarques");
/// 2. surrounding whitespace is trimmed;
/// 3. character references are decoded (see [`decode_entities`]).
pub(crate) fn clean_value(raw: &str) -> String {
    decode_entities(fold_line_breaks(raw).trim())
}

/// Applies the message-text conventions to an already cleaned value: `Ö`
/// stands for a line break (spec, "Remarques"); a no-break space (what HTML
/// mail and `&nbsp;` produce) and a tab become a plain space: they look the
/// same on a phone but are outside the GSM 7-bit alphabet and would force the
/// whole SMS into UCS-2; every other control character (C0 but CR and LF,
/// DEL, C1: a NUL, an escape sequence) is removed, so that none reaches the
/// segment count, the rules, the store or a provider (issue 8).
pub(crate) fn message_text(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            'Ö' => Some('\n'),
            '\u{a0}' | '\t' => Some(' '),
            '\n' | '\r' => Some(c),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// Folds every whitespace run containing CR or LF into one space.
fn fold_line_breaks(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut run = String::new();
    let mut run_has_break = false;
    for c in raw.chars() {
        if c == ' ' || c == '\t' || c == '\r' || c == '\n' {
            run_has_break |= c == '\r' || c == '\n';
            run.push(c);
            continue;
        }
        flush_run(&mut out, &mut run, &mut run_has_break);
        out.push(c);
    }
    flush_run(&mut out, &mut run, &mut run_has_break);
    out
}

/// Writes a pending whitespace run, folded if it held a line break.
fn flush_run(out: &mut String, run: &mut String, has_break: &mut bool) {
    if *has_break {
        out.push(' ');
    } else {
        out.push_str(run);
    }
    run.clear();
    *has_break = false;
}

/// Decodes character references: the five XML ones, numeric ones (`&#233;`,
/// `&#xE9;`) and the HTML named entities of Latin-1, Windows-1252's
/// punctuation and `&euro;` (see [`named_entity`]). A reference that is
/// unknown, unterminated or names an invalid code point, and a lone `&`,
/// stay literal: hand-written bodies contain raw `&`.
pub(crate) fn decode_entities(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let after = &rest[amp + 1..];
        match entity_at(after) {
            Some((decoded, len)) => {
                out.push(decoded);
                rest = &after[len..];
            }
            None => {
                out.push('&');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The character of the reference that starts `after` (the text just after
/// `&`) and the length of that reference including its `;`.
fn entity_at(after: &str) -> Option<(char, usize)> {
    // Longest named entity in the table is 6 characters; numeric ones are at
    // most "#x10FFFF" / "#1114111".
    let semi = after.bytes().take(10).position(|b| b == b';')?;
    let name = &after[..semi];
    let decoded = if let Some(number) = name.strip_prefix('#') {
        let value = match number.strip_prefix(['x', 'X']) {
            Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                u32::from_str_radix(hex, 16).ok()?
            }
            Some(_) => return None,
            None if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
                number.parse().ok()?
            }
            None => return None,
        };
        if value == 0 {
            return None;
        }
        char::from_u32(value)?
    } else {
        named_entity(name)?
    };
    Some((decoded, semi + 1))
}

/// HTML named entities (case-sensitive): XML's five, all of Latin-1, `&euro;`
/// and the other characters of Windows-1252. The full HTML5 table is behind
/// quick-xml's `escape-html` feature, which costs compile time for entities
/// nobody writes in an SMS.
#[expect(clippy::too_many_lines, reason = "the entity table, one arm per name")]
fn named_entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => '\u{a0}',
        "iexcl" => '¡',
        "cent" => '¢',
        "pound" => '£',
        "curren" => '¤',
        "yen" => '¥',
        "brvbar" => '¦',
        "sect" => '§',
        "uml" => '¨',
        "copy" => '©',
        "ordf" => 'ª',
        "laquo" => '«',
        "not" => '¬',
        "shy" => '\u{ad}',
        "reg" => '®',
        "macr" => '¯',
        "deg" => '°',
        "plusmn" => '±',
        "sup2" => '²',
        "sup3" => '³',
        "acute" => '´',
        "micro" => 'µ',
        "para" => '¶',
        "middot" => '·',
        "cedil" => '¸',
        "sup1" => '¹',
        "ordm" => 'º',
        "raquo" => '»',
        "frac14" => '¼',
        "frac12" => '½',
        "frac34" => '¾',
        "iquest" => '¿',
        "Agrave" => 'À',
        "Aacute" => 'Á',
        "Acirc" => 'Â',
        "Atilde" => 'Ã',
        "Auml" => 'Ä',
        "Aring" => 'Å',
        "AElig" => 'Æ',
        "Ccedil" => 'Ç',
        "Egrave" => 'È',
        "Eacute" => 'É',
        "Ecirc" => 'Ê',
        "Euml" => 'Ë',
        "Igrave" => 'Ì',
        "Iacute" => 'Í',
        "Icirc" => 'Î',
        "Iuml" => 'Ï',
        "ETH" => 'Ð',
        "Ntilde" => 'Ñ',
        "Ograve" => 'Ò',
        "Oacute" => 'Ó',
        "Ocirc" => 'Ô',
        "Otilde" => 'Õ',
        "Ouml" => 'Ö',
        "times" => '×',
        "Oslash" => 'Ø',
        "Ugrave" => 'Ù',
        "Uacute" => 'Ú',
        "Ucirc" => 'Û',
        "Uuml" => 'Ü',
        "Yacute" => 'Ý',
        "THORN" => 'Þ',
        "szlig" => 'ß',
        "agrave" => 'à',
        "aacute" => 'á',
        "acirc" => 'â',
        "atilde" => 'ã',
        "auml" => 'ä',
        "aring" => 'å',
        "aelig" => 'æ',
        "ccedil" => 'ç',
        "egrave" => 'è',
        "eacute" => 'é',
        "ecirc" => 'ê',
        "euml" => 'ë',
        "igrave" => 'ì',
        "iacute" => 'í',
        "icirc" => 'î',
        "iuml" => 'ï',
        "eth" => 'ð',
        "ntilde" => 'ñ',
        "ograve" => 'ò',
        "oacute" => 'ó',
        "ocirc" => 'ô',
        "otilde" => 'õ',
        "ouml" => 'ö',
        "divide" => '÷',
        "oslash" => 'ø',
        "ugrave" => 'ù',
        "uacute" => 'ú',
        "ucirc" => 'û',
        "uuml" => 'ü',
        "yacute" => 'ý',
        "thorn" => 'þ',
        "yuml" => 'ÿ',
        "euro" => '€',
        "OElig" => 'Œ',
        "oelig" => 'œ',
        "Scaron" => 'Š',
        "scaron" => 'š',
        "Yuml" => 'Ÿ',
        "Zcaron" => 'Ž',
        "zcaron" => 'ž',
        "fnof" => 'ƒ',
        "circ" => 'ˆ',
        "tilde" => '˜',
        "ndash" => '–',
        "mdash" => '—',
        "lsquo" => '‘',
        "rsquo" => '’',
        "sbquo" => '‚',
        "ldquo" => '“',
        "rdquo" => '”',
        "bdquo" => '„',
        "dagger" => '†',
        "Dagger" => '‡',
        "bull" => '•',
        "hellip" => '…',
        "permil" => '‰',
        "lsaquo" => '‹',
        "rsaquo" => '›',
        "trade" => '™',
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_and_numeric_entities() {
        assert_eq!(
            decode_entities("&amp; &lt; &gt; &quot; &apos; &#233; &#xE9; &#XE9;"),
            "& < > \" ' é é é"
        );
    }

    #[test]
    fn html_named_entities() {
        assert_eq!(
            decode_entities("L&apos;&eacute;t&eacute; &agrave; 50&euro;&nbsp;!"),
            "L'été à 50€\u{a0}!"
        );
        assert_eq!(decode_entities("&Ouml;&ouml;&hellip;"), "Öö…");
    }

    #[test]
    fn unknown_and_lone_ampersands_stay_literal() {
        assert_eq!(decode_entities("a & b"), "a & b");
        assert_eq!(decode_entities("R&D;"), "R&D;");
        assert_eq!(decode_entities("&foo; &amp"), "&foo; &amp");
        assert_eq!(
            decode_entities("&#xZZ; &#; &#0; &#xD800; &#99999999;"),
            "&#xZZ; &#; &#0; &#xD800; &#99999999;"
        );
        assert_eq!(decode_entities("&&amp;"), "&&");
        assert_eq!(decode_entities("fin &"), "fin &");
        assert_eq!(decode_entities("&EACUTE;"), "&EACUTE;");
    }

    #[test]
    fn folds_wrapped_lines_and_trims() {
        assert_eq!(
            clean_value("\r\n  Bonjour\r\nMichel \r\n  Martin  \n"),
            "Bonjour Michel Martin"
        );
        assert_eq!(clean_value("a\n\n\nb"), "a b");
        assert_eq!(clean_value("a  b\tc"), "a  b\tc");
    }

    #[test]
    fn o_umlaut_is_a_line_break() {
        assert_eq!(message_text("Ligne 1ÖLigne 2"), "Ligne 1\nLigne 2");
        assert_eq!(message_text(&clean_value("a&Ouml;b&nbsp;c")), "a\nb c");
        assert_eq!(message_text("ö stays"), "ö stays");
    }

    /// Issue 8: a NUL in `<sms>` reached the provider.
    #[test]
    fn control_characters_are_removed_but_line_breaks_kept() {
        assert_eq!(
            message_text("a\0b\u{7}c\u{1b}[2Jd\u{7f}e\u{85}f"),
            "abc[2Jdef"
        );
        assert_eq!(message_text("l1\r\nl2\nl3\rl4"), "l1\r\nl2\nl3\rl4");
        assert_eq!(message_text("col1\tcol2"), "col1 col2");
        assert_eq!(
            message_text(&clean_value("x&#1;y&#27;z&#9;w&#13;&#10;v")),
            "xyz w\r\nv"
        );
    }
}
