//! GSM 03.38 / UCS-2 classification, exact SMS segment counting and
//! transliteration to the GSM 7-bit alphabet.
//!
//! Why this exists: providers bill, and limit, per *segment*, and our credits
//! are debited the same way, so the count has to match what the network will
//! actually send. A text made only of characters of the GSM 03.38 default
//! alphabet (3GPP TS 23.038) and its extension table travels as 7-bit septets:
//! 160 in a single SMS, 153 per part once concatenated (the 6-octet UDH eats
//! the rest). A single other character (`ç`, `ê`, a curly quote, an emoji…)
//! switches the *whole* message to UCS-2: 70 UTF-16 units alone, 67 per part.
//! Extension-table characters take two septets (ESC + code) and a surrogate
//! pair takes two units; neither may be split across parts, so parts are
//! filled greedily rather than computed by division. National language shift
//! tables are not used.
//!
//! [`transliterate`] lets the bridge keep a message in GSM-7 (more than twice
//! the capacity per credit) by replacing every other character with its
//! nearest GSM-7 equivalent, or `?` when there is none.

pub mod fit;

/// `unicode` of an account: what becomes of characters outside GSM-7.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UnicodeMode {
    /// Texts outside GSM-7 go in UCS-2.
    #[default]
    Auto,
    /// Texts are brought to GSM-7.
    Transliterate,
}

/// How an SMS text is encoded on the air.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// GSM 03.38 7-bit default alphabet (with its extension table).
    Gsm7,
    /// UCS-2 (UTF-16 code units, as sent by phones and providers).
    Ucs2,
}

/// The result of analysing a text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segments {
    /// The encoding the text needs.
    pub encoding: Encoding,
    /// Septets (GSM-7, extension-table characters count 2) or UTF-16 code units (UCS-2).
    pub units: usize,
    /// Number of SMS segments: GSM-7 one segment up to 160 septets, else parts of 153;
    /// UCS-2 one segment up to 70 units, else parts of 67. An empty text is 1 segment.
    pub count: u32,
}

/// Septets in a single GSM-7 SMS.
const GSM7_SINGLE: usize = 160;
/// Septets in each part of a concatenated GSM-7 SMS.
const GSM7_PART: usize = 153;
/// UTF-16 units in a single UCS-2 SMS.
const UCS2_SINGLE: usize = 70;
/// UTF-16 units in each part of a concatenated UCS-2 SMS.
const UCS2_PART: usize = 67;

/// Whether every char is in the GSM 03.38 default alphabet or its extension table.
pub fn is_gsm7(text: &str) -> bool {
    text.chars().all(|c| gsm7_septets(c).is_some())
}

/// Septets a char takes in GSM-7 (1 basic, 2 extension), None if not encodable.
///
/// ESC (0x1B) is the escape to the extension table, not a text char: None.
pub fn gsm7_septets(c: char) -> Option<usize> {
    match c {
        // Extension table (ESC + code); listed first as `[\]^` fall in the range below.
        '\x0C' | '^' | '{' | '}' | '\\' | '[' | '~' | ']' | '|' | '€' => Some(2),
        // ASCII part of the default alphabet: everything printable but `` ` ``
        // (and the extension chars above), plus LF and CR.
        '\n' | '\r' | ' '..='_' | 'a'..='z' => Some(1),
        // The rest of the default alphabet.
        '£' | '¥' | 'è' | 'é' | 'ù' | 'ì' | 'ò' | 'Ç' | 'Ø' | 'ø' | 'Å' | 'å' | 'Δ' | 'Φ' | 'Γ'
        | 'Λ' | 'Ω' | 'Π' | 'Ψ' | 'Σ' | 'Θ' | 'Ξ' | 'Æ' | 'æ' | 'ß' | 'É' | '¤' | '¡' | 'Ä'
        | 'Ö' | 'Ñ' | 'Ü' | '§' | '¿' | 'ä' | 'ö' | 'ñ' | 'ü' | 'à' => Some(1),
        _ => None,
    }
}

/// Classify and count segments exactly.
pub fn segments(text: &str) -> Segments {
    let septets: Option<Vec<usize>> = text.chars().map(gsm7_septets).collect();
    match septets {
        Some(sizes) => count(Encoding::Gsm7, &sizes, GSM7_SINGLE, GSM7_PART),
        None => {
            let sizes: Vec<usize> = text.chars().map(char::len_utf16).collect();
            count(Encoding::Ucs2, &sizes, UCS2_SINGLE, UCS2_PART)
        }
    }
}

/// Fill parts greedily: a char (1 or 2 units) that does not fit in what is
/// left of the current part starts the next one.
fn count(encoding: Encoding, sizes: &[usize], single: usize, part: usize) -> Segments {
    let units = sizes.iter().sum();
    let mut count = 1u32;
    if units > single {
        let mut used = 0;
        for &size in sizes {
            if used + size > part {
                count = count.saturating_add(1);
                used = 0;
            }
            used += size;
        }
    }
    Segments {
        encoding,
        units,
        count,
    }
}

/// Replace every char outside GSM-7 by its nearest GSM-7 equivalent.
///
/// GSM text comes back unchanged. Accents absent from GSM-7 are stripped
/// (`ê`→`e`, `ç`→`c`, `À`→`A`; `ő`/`ű` become `ö`/`ü`), ligatures are spelt out
/// (`œ`→`oe`), typographic quotes, dashes, ellipsis and exotic spaces become
/// their ASCII forms, tab becomes a space, Greek becomes the GSM Greek
/// capitals or Latin look-alikes, Russian/Ukrainian Cyrillic is romanised,
/// and fullwidth forms become ASCII. A base letter followed by a combining
/// accent is composed when the result is GSM (`e`+U+0301→`é`), else the
/// accent is dropped. Invisible chars (zero-width, bidi marks, soft hyphen,
/// other control chars) are dropped. Anything else (emoji, CJK…) becomes one
/// `?` per grapheme: joiners, variation selectors, skin tones and the second
/// half of a flag do not add more.
pub fn transliterate(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    // The last thing written is a `?` for an unknown char that may be extended.
    let mut in_unknown = false;
    // The previous char was a ZERO WIDTH JOINER.
    let mut after_zwj = false;
    // A regional indicator opened a flag: the next one closes it.
    let mut open_flag = false;
    for c in text.chars() {
        if is_extender(c) {
            if !in_unknown && let Some(prev) = out.pop() {
                out.push(compose(prev, c).unwrap_or(prev));
            }
            continue;
        }
        if c == '\u{200D}' {
            after_zwj = true;
            continue;
        }
        let joined = std::mem::take(&mut after_zwj);
        let regional = ('\u{1F1E6}'..='\u{1F1FF}').contains(&c);
        if regional && open_flag {
            open_flag = false;
            continue;
        }
        open_flag = regional;
        match lookup(c) {
            Out::Char(m) => {
                out.push(m);
                in_unknown = false;
            }
            Out::Str(s) => {
                out.push_str(s);
                in_unknown = false;
            }
            Out::Drop => {}
            Out::Unknown => {
                if !(joined && in_unknown) {
                    out.push('?');
                }
                in_unknown = true;
            }
        }
    }
    out
}

/// What one char becomes.
enum Out {
    Char(char),
    Str(&'static str),
    Drop,
    Unknown,
}

/// Marks that extend the previous grapheme: combining diacritics, variation
/// selectors, emoji skin-tone modifiers and tag characters.
fn is_extender(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}' | '\u{1AB0}'..='\u{1AFF}' | '\u{1DC0}'..='\u{1DFF}'
        | '\u{20D0}'..='\u{20FF}' | '\u{FE00}'..='\u{FE0F}' | '\u{FE20}'..='\u{FE2F}'
        | '\u{1F3FB}'..='\u{1F3FF}' | '\u{E0020}'..='\u{E007F}' | '\u{E0100}'..='\u{E01EF}')
}

/// Base letter + combining mark, when the composed letter is GSM-7.
fn compose(base: char, mark: char) -> Option<char> {
    Some(match (base, mark) {
        ('a', '\u{300}') => 'à',
        ('e', '\u{300}') => 'è',
        ('i', '\u{300}') => 'ì',
        ('o', '\u{300}') => 'ò',
        ('u', '\u{300}') => 'ù',
        ('e', '\u{301}') => 'é',
        ('E', '\u{301}') => 'É',
        ('n', '\u{303}') => 'ñ',
        ('N', '\u{303}') => 'Ñ',
        ('a', '\u{308}') => 'ä',
        ('o', '\u{308}') => 'ö',
        ('u', '\u{308}') => 'ü',
        ('A', '\u{308}') => 'Ä',
        ('O', '\u{308}') => 'Ö',
        ('U', '\u{308}') => 'Ü',
        ('a', '\u{30A}') => 'å',
        ('A', '\u{30A}') => 'Å',
        ('C', '\u{327}') => 'Ç',
        _ => return None,
    })
}

/// Romanisation of Cyrillic А..Я / а..я (U+0410..U+044F), upper and lower.
const CYRILLIC: [(&str, &str); 32] = [
    ("A", "a"),
    ("B", "b"),
    ("V", "v"),
    ("G", "g"),
    ("D", "d"),
    ("E", "e"),
    ("Zh", "zh"),
    ("Z", "z"),
    ("I", "i"),
    ("Y", "y"),
    ("K", "k"),
    ("L", "l"),
    ("M", "m"),
    ("N", "n"),
    ("O", "o"),
    ("P", "p"),
    ("R", "r"),
    ("S", "s"),
    ("T", "t"),
    ("U", "u"),
    ("F", "f"),
    ("Kh", "kh"),
    ("Ts", "ts"),
    ("Ch", "ch"),
    ("Sh", "sh"),
    ("Shch", "shch"),
    ("", ""),
    ("Y", "y"),
    ("'", "'"),
    ("E", "e"),
    ("Yu", "yu"),
    ("Ya", "ya"),
];

/// The GSM-7 replacement of one char (GSM chars map to themselves).
#[expect(
    clippy::too_many_lines,
    reason = "a transliteration table, one arm per character group"
)]
fn lookup(c: char) -> Out {
    use Out::{Char as C, Drop, Str as S, Unknown};
    if gsm7_septets(c).is_some() {
        return C(c);
    }
    match c {
        // Spaces and line breaks.
        '\t'
        | '\u{A0}'
        | '\u{1680}'
        | '\u{2000}'..='\u{200A}'
        | '\u{202F}'
        | '\u{205F}'
        | '\u{3000}' => C(' '),
        '\u{0B}' | '\u{85}' | '\u{2028}' | '\u{2029}' => C('\n'),
        // Invisible: soft hyphen, grapheme joiner, zero-width and bidi marks, BOM.
        '\u{AD}'
        | '\u{34F}'
        | '\u{61C}'
        | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{FEFF}' => Drop,
        c if c.is_control() => Drop,
        // Quotes, dashes, punctuation.
        '`' | '´' | '‘' | '’' | '‚' | '‛' | '′' | '‹' | '›' | 'ʹ' | 'ʻ' | 'ʼ' | 'ʽ' | 'ˈ' => {
            C('\'')
        }
        '“' | '”' | '„' | '‟' | '″' | '«' | '»' | 'ʺ' => C('"'),
        '‐' | '‑' | '‒' | '–' | '—' | '―' | '−' | '⁃' => C('-'),
        '…' => S("..."),
        '‥' => S(".."),
        '·' | '․' => C('.'),
        '•' | '‣' | '∙' | '●' => C('-'),
        '⁄' | '∕' | '÷' => C('/'),
        '¸' => C(','),
        '¦' => C('|'),
        'ˆ' => C('^'),
        '˜' | '≈' => C('~'),
        // Symbols.
        '×' => C('x'),
        '±' => S("+/-"),
        '©' => S("(c)"),
        '®' => S("(R)"),
        '™' => S("TM"),
        '°' | 'º' => C('o'),
        'ª' => C('a'),
        '¹' => C('1'),
        '²' => C('2'),
        '³' => C('3'),
        '¼' => S("1/4"),
        '½' => S("1/2"),
        '¾' => S("3/4"),
        '¢' => C('c'),
        '₤' => C('£'),
        '№' => S("No"),
        '←' => S("<-"),
        '→' => S("->"),
        '↔' => S("<->"),
        '⇐' | '≤' => S("<="),
        '⇒' => S("=>"),
        '≥' => S(">="),
        '≠' => S("!="),
        'µ' => C('u'),
        '∆' => C('Δ'),
        '\u{2126}' => C('Ω'), // OHM SIGN
        '∑' => C('Σ'),
        '∏' => C('Π'),
        // Latin-1 letters not in GSM-7.
        'À' | 'Á' | 'Â' | 'Ã' => C('A'),
        'È' | 'Ê' | 'Ë' => C('E'),
        'Ì' | 'Í' | 'Î' | 'Ï' => C('I'),
        'Ð' => C('D'),
        'Ò' | 'Ó' | 'Ô' | 'Õ' => C('O'),
        'Ù' | 'Ú' | 'Û' => C('U'),
        'Ý' => C('Y'),
        'Þ' => S("Th"),
        'á' | 'â' | 'ã' => C('a'),
        'ç' => C('c'),
        'ê' | 'ë' => C('e'),
        'í' | 'î' | 'ï' => C('i'),
        'ð' => C('d'),
        'ó' | 'ô' | 'õ' => C('o'),
        'ú' | 'û' => C('u'),
        'ý' | 'ÿ' => C('y'),
        'þ' => S("th"),
        // Latin Extended-A and a few others.
        'Ā' | 'Ă' | 'Ą' => C('A'),
        'ā' | 'ă' | 'ą' => C('a'),
        'Ć' | 'Ĉ' | 'Ċ' | 'Č' => C('C'),
        'ć' | 'ĉ' | 'ċ' | 'č' => C('c'),
        'Ď' | 'Đ' => C('D'),
        'ď' | 'đ' => C('d'),
        'Ē' | 'Ĕ' | 'Ė' | 'Ę' | 'Ě' => C('E'),
        'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => C('e'),
        'Ĝ' | 'Ğ' | 'Ġ' | 'Ģ' => C('G'),
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => C('g'),
        'Ĥ' | 'Ħ' => C('H'),
        'ĥ' | 'ħ' => C('h'),
        'Ĩ' | 'Ī' | 'Ĭ' | 'Į' | 'İ' => C('I'),
        'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => C('i'),
        'Ĳ' => S("IJ"),
        'ĳ' => S("ij"),
        'Ĵ' => C('J'),
        'ĵ' => C('j'),
        'Ķ' => C('K'),
        'ķ' | 'ĸ' => C('k'),
        'Ĺ' | 'Ļ' | 'Ľ' | 'Ŀ' | 'Ł' => C('L'),
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => C('l'),
        'Ń' | 'Ņ' | 'Ň' | 'Ŋ' => C('N'),
        'ń' | 'ņ' | 'ň' | 'ŋ' => C('n'),
        'ŉ' => S("'n"),
        'Ō' | 'Ŏ' => C('O'),
        'ō' | 'ŏ' => C('o'),
        'Ő' => C('Ö'),
        'ő' => C('ö'),
        'Œ' => S("OE"),
        'œ' => S("oe"),
        'Ŕ' | 'Ŗ' | 'Ř' => C('R'),
        'ŕ' | 'ŗ' | 'ř' => C('r'),
        'Ś' | 'Ŝ' | 'Ş' | 'Š' | 'Ș' => C('S'),
        'ś' | 'ŝ' | 'ş' | 'š' | 'ș' | 'ſ' => C('s'),
        'Ţ' | 'Ť' | 'Ŧ' | 'Ț' => C('T'),
        'ţ' | 'ť' | 'ŧ' | 'ț' => C('t'),
        'Ũ' | 'Ū' | 'Ŭ' | 'Ů' | 'Ų' => C('U'),
        'ũ' | 'ū' | 'ŭ' | 'ů' | 'ų' => C('u'),
        'Ű' => C('Ü'),
        'ű' => C('ü'),
        'Ŵ' => C('W'),
        'ŵ' => C('w'),
        'Ŷ' | 'Ÿ' => C('Y'),
        'ŷ' => C('y'),
        'Ź' | 'Ż' | 'Ž' => C('Z'),
        'ź' | 'ż' | 'ž' => C('z'),
        'ƒ' => C('f'),
        'ẞ' => S("SS"),
        // Greek: capitals not in GSM-7 become their Latin look-alikes; small
        // letters become capitals (the usual way to write Greek SMS in GSM-7).
        '\u{391}' | '\u{386}' => C('A'),
        '\u{392}' => C('B'),
        '\u{395}' | '\u{388}' => C('E'),
        '\u{396}' => C('Z'),
        '\u{397}' | '\u{389}' => C('H'),
        '\u{399}' | '\u{38A}' | '\u{3AA}' | '\u{390}' | '\u{3AF}' | '\u{3CA}' => C('I'),
        '\u{39A}' => C('K'),
        '\u{39C}' => C('M'),
        '\u{39D}' => C('N'),
        '\u{39F}' | '\u{38C}' | '\u{3CC}' => C('O'),
        '\u{3A1}' => C('P'),
        '\u{3A4}' => C('T'),
        '\u{3A5}' | '\u{38E}' | '\u{3AB}' | '\u{3B0}' | '\u{3CB}' | '\u{3CD}' => C('Y'),
        '\u{3A7}' => C('X'),
        '\u{38F}' | '\u{3CE}' => C('Ω'),
        '\u{3AC}' => C('A'),
        '\u{3AD}' => C('E'),
        '\u{3AE}' => C('H'),
        '\u{3C2}' => C('Σ'), // final sigma
        '\u{3B1}'..='\u{3C9}' => char::from_u32(c as u32 - 0x20).map_or(Unknown, lookup),
        // Cyrillic (Russian, Ukrainian).
        '\u{410}'..='\u{42F}' => CYRILLIC
            .get((c as u32 - 0x410) as usize)
            .map_or(Unknown, |p| S(p.0)),
        '\u{430}'..='\u{44F}' => CYRILLIC
            .get((c as u32 - 0x430) as usize)
            .map_or(Unknown, |p| S(p.1)),
        '\u{401}' => S("Yo"),
        '\u{451}' => S("yo"),
        '\u{404}' => S("Ye"),
        '\u{454}' => S("ye"),
        '\u{406}' => C('I'),
        '\u{456}' => C('i'),
        '\u{407}' => S("Yi"),
        '\u{457}' => S("yi"),
        '\u{490}' => C('G'),
        '\u{491}' => C('g'),
        // Fullwidth ASCII.
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).map_or(Unknown, lookup),
        _ => Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The GSM 03.38 default alphabet in code order 0x00..=0x7F; ESC (0x1B)
    /// is written as U+001B and is not a text char.
    const BASIC: &str = "@£$¥èéùìòÇ\nØø\rÅå\u{394}_\u{3A6}\u{393}\u{39B}\u{3A9}\u{3A0}\u{3A8}\u{3A3}\u{398}\u{39E}\u{1B}ÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
    /// The extension table.
    const EXTENSION: &str = "\x0C^{}\\[~]|€";

    fn seg(encoding: Encoding, units: usize, count: u32) -> Segments {
        Segments {
            encoding,
            units,
            count,
        }
    }

    #[test]
    fn basic_table_is_exact() {
        let chars: Vec<char> = BASIC.chars().collect();
        assert_eq!(chars.len(), 128);
        for (code, &c) in chars.iter().enumerate() {
            let expected = if code == 0x1B { None } else { Some(1) };
            assert_eq!(gsm7_septets(c), expected, "code {code:#04x} {c:?}");
        }
        assert_eq!(chars[0x1B], '\u{1B}');
        assert_eq!(chars[0x40], '¡');
        assert_eq!(chars[0x60], '¿');
        // Nothing else in the whole of Unicode is a 1-septet char.
        let all = (0..=0x10FFFFu32).filter_map(char::from_u32);
        let (mut one, mut two) = (0, 0);
        for c in all {
            match gsm7_septets(c) {
                Some(1) => one += 1,
                Some(2) => two += 1,
                None => {}
                Some(n) => panic!("{c:?} takes {n} septets"),
            }
        }
        assert_eq!((one, two), (127, 10));
    }

    #[test]
    fn extension_table_counts_two() {
        assert_eq!(EXTENSION.chars().count(), 10);
        for c in EXTENSION.chars() {
            assert_eq!(gsm7_septets(c), Some(2), "{c:?}");
        }
        assert_eq!(segments("["), seg(Encoding::Gsm7, 2, 1));
        assert_eq!(segments("^"), seg(Encoding::Gsm7, 2, 1));
        assert_eq!(segments("€"), seg(Encoding::Gsm7, 2, 1));
    }

    #[test]
    fn not_gsm7() {
        for c in [
            'ê', 'ç', 'ë', '’', '😀', '`', '\t', '\u{A0}', '\u{1B}', '\0', '\u{7F}', 'Á', 'á', 'Ì',
            'Ò', 'Ù', 'È', 'ÿ', '\u{2126}', '\u{391}', '\u{3B4}', '¢', 'µ', '\u{FEFF}',
        ] {
            assert_eq!(gsm7_septets(c), None, "{c:?}");
            assert!(!is_gsm7(&format!("abc{c}")), "{c:?}");
        }
        assert!(is_gsm7(""));
        assert!(is_gsm7(BASIC.replace('\u{1B}', "").as_str()));
        assert!(is_gsm7(EXTENSION));
    }

    #[test]
    fn gsm7_segments() {
        assert_eq!(segments(""), seg(Encoding::Gsm7, 0, 1));
        assert_eq!(segments(&"a".repeat(160)), seg(Encoding::Gsm7, 160, 1));
        assert_eq!(segments(&"a".repeat(161)), seg(Encoding::Gsm7, 161, 2));
        assert_eq!(segments(&"a".repeat(306)), seg(Encoding::Gsm7, 306, 2));
        assert_eq!(segments(&"a".repeat(307)), seg(Encoding::Gsm7, 307, 3));
        assert_eq!(segments(&"a".repeat(459)), seg(Encoding::Gsm7, 459, 3));
        assert_eq!(segments(&"a".repeat(460)), seg(Encoding::Gsm7, 460, 4));
        assert_eq!(segments("\r\n"), seg(Encoding::Gsm7, 2, 1));
        // 158 + 2 = 160 still fits one SMS; 159 + 2 = 161 does not.
        let t = format!("{}€", "a".repeat(158));
        assert_eq!(segments(&t), seg(Encoding::Gsm7, 160, 1));
        let t = format!("{}€", "a".repeat(159));
        assert_eq!(segments(&t), seg(Encoding::Gsm7, 161, 2));
        // 80 extension chars = 160 septets = 1; 81 = 162 → 2 parts (76 + 5).
        assert_eq!(segments(&"[".repeat(80)), seg(Encoding::Gsm7, 160, 1));
        assert_eq!(segments(&"{".repeat(81)), seg(Encoding::Gsm7, 162, 2));
        // 77 extension chars fill 154 > 153: each part holds 76 of them, so
        // 153 of them (306 septets) need 3 parts, not 306/153 = 2.
        assert_eq!(segments(&"~".repeat(153)), seg(Encoding::Gsm7, 306, 3));
    }

    #[test]
    fn escape_pair_never_split() {
        // 152 + € straddles the first boundary: € moves to part 2, which
        // overflows by one, although 306 septets would fit 2 parts.
        let t = format!("{}€{}", "a".repeat(152), "a".repeat(152));
        assert_eq!(segments(&t), seg(Encoding::Gsm7, 306, 3));
        // Same total with € not straddling: 2 parts.
        let t = format!("{}€{}", "a".repeat(151), "a".repeat(153));
        assert_eq!(segments(&t), seg(Encoding::Gsm7, 306, 2));
    }

    #[test]
    fn ucs2_segments() {
        for c in ["ê", "ç", "ë", "’", "😀"] {
            let s = segments(&format!("hello {c}"));
            assert_eq!(s.encoding, Encoding::Ucs2, "{c}");
        }
        // UTF-16 units, not chars or bytes.
        assert_eq!(segments("ê"), seg(Encoding::Ucs2, 1, 1));
        assert_eq!(segments("😀"), seg(Encoding::Ucs2, 2, 1));
        let t = |n: usize| format!("ê{}", "a".repeat(n - 1));
        assert_eq!(segments(&t(70)), seg(Encoding::Ucs2, 70, 1));
        assert_eq!(segments(&t(71)), seg(Encoding::Ucs2, 71, 2));
        assert_eq!(segments(&t(134)), seg(Encoding::Ucs2, 134, 2));
        assert_eq!(segments(&t(135)), seg(Encoding::Ucs2, 135, 3));
        // Extension chars are 1 unit in UCS-2, not 2.
        assert_eq!(segments("ê€["), seg(Encoding::Ucs2, 3, 1));
    }

    #[test]
    fn surrogate_pair_never_split() {
        assert_eq!(segments(&"😀".repeat(35)), seg(Encoding::Ucs2, 70, 1));
        assert_eq!(segments(&"😀".repeat(36)), seg(Encoding::Ucs2, 72, 2));
        // 33 emoji (66 units) per part: 67 emoji need 3 parts, not 134/67 = 2.
        assert_eq!(segments(&"😀".repeat(67)), seg(Encoding::Ucs2, 134, 3));
        let t = format!("ê{}😀{}", "a".repeat(65), "a".repeat(66));
        assert_eq!(segments(&t), seg(Encoding::Ucs2, 134, 3));
        let t = format!("ê{}😀{}", "a".repeat(64), "a".repeat(67));
        assert_eq!(segments(&t), seg(Encoding::Ucs2, 134, 2));
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        assert_eq!(segments("\u{1B}"), seg(Encoding::Ucs2, 1, 1));
        assert_eq!(segments("\0\u{7F}\u{FFFF}"), seg(Encoding::Ucs2, 3, 1));
        assert_eq!(segments("\u{10FFFF}"), seg(Encoding::Ucs2, 2, 1));
        assert_eq!(transliterate("\u{1B}\0\u{7F}\u{9F}"), "");
        assert_eq!(transliterate("\u{301}"), "");
        assert_eq!(transliterate("\u{200D}\u{200D}"), "");
        assert_eq!(transliterate("\u{1F1EB}"), "?");
    }

    #[test]
    fn transliterate_requested_mappings() {
        let cases = [
            ("ë ê â î ô û ï ç", "e e a i o u i c"),
            ("Ç", "Ç"),
            ("œuvre Œuvre", "oeuvre OEuvre"),
            ("æ Æ", "æ Æ"),
            ("l’été ‘x’ ‚y", "l'été 'x' 'y"),
            ("“a” „b“ « c »", "\"a\" \"b\" \" c \""),
            ("wait…", "wait..."),
            ("a – b — c", "a - b - c"),
            ("a\u{A0}b\u{202F}c\u{2009}d\te", "a b c d e"),
            ("5 €", "5 €"),
            ("ÀÁÂÃ ÈÊË ÌÍÎÏ ÒÓÔÕ ÙÚÛ Ý", "AAAA EEE IIII OOOO UUU Y"),
            ("ÄÅÉÑÖØÜ äåéñöøü", "ÄÅÉÑÖØÜ äåéñöøü"),
            ("ΔΦΓΛΩΠΨΣΘΞ", "ΔΦΓΛΩΠΨΣΘΞ"),
            ("ok 😀", "ok ?"),
            ("中文", "??"),
        ];
        for (input, expected) in cases {
            assert_eq!(transliterate(input), expected, "{input:?}");
        }
    }

    #[test]
    fn transliterate_more() {
        let cases = [
            ("Łódź Kraków Œ", "Lodz Krakow OE"),
            ("Dvořák Šťastný", "Dvorak Stastny"),
            ("Győr Fűzfő", "Györ Füzfö"),
            ("Ștefan Țară", "Stefan Tara"),
            ("straße STRAẞE", "straße STRASSE"),
            // Greek: look-alike capitals, small letters as capitals, tonos stripped.
            ("\u{391}\u{3B8}\u{3AE}\u{3BD}\u{3B1}", "AΘHNA"),
            ("\u{3BB}\u{3CC}\u{3B3}\u{3BF}\u{3C2}", "ΛOΓOΣ"),
            ("\u{3C0}\u{3C8}\u{3C6}\u{3C9}\u{3BE}", "ΠΨΦΩΞ"),
            ("Москва Щука объём", "Moskva Shchuka obyom"),
            ("Київ", "Kiyiv"),
            ("ＡＢＣ１２３！｀", "ABC123!'"),
            ("x² ½ ©2024 ™ 20°C ±1", "x2 1/2 (c)2024 TM 20oC +/-1"),
            ("a\u{0B}b\u{2028}c", "a\nb\nc"),
            (
                "so\u{AD}ft zero\u{200B}width \u{FEFF}bom \u{200E}lrm",
                "soft zerowidth bom lrm",
            ),
            ("`tick´", "'tick'"),
            ("• item", "- item"),
            ("µg", "ug"),
            ("\u{2126} \u{2206} ∑", "Ω Δ Σ"),
            ("a → b", "a -> b"),
        ];
        for (input, expected) in cases {
            assert_eq!(transliterate(input), expected, "{input:?}");
        }
    }

    #[test]
    fn transliterate_combining_marks() {
        // Composed when the result is GSM, else the mark is dropped.
        assert_eq!(transliterate("e\u{301}te\u{300}"), "étè");
        assert_eq!(
            transliterate("E\u{301} N\u{303} u\u{308} A\u{30A} C\u{327}"),
            "É Ñ ü Å Ç"
        );
        assert_eq!(transliterate("e\u{302} c\u{327} a\u{301}"), "e c a");
        assert_eq!(transliterate("é\u{301}"), "é");
        for base in ('A'..='Z').chain('a'..='z') {
            for mark in '\u{300}'..='\u{36F}' {
                assert!(is_gsm7(&transliterate(&format!("{base}{mark}"))));
            }
        }
    }

    #[test]
    fn transliterate_emoji_graphemes() {
        // One `?` per grapheme: skin tones, VS16, ZWJ sequences, flags.
        assert_eq!(transliterate("👍🏽"), "?");
        assert_eq!(transliterate("❤\u{FE0F}"), "?");
        assert_eq!(transliterate("👨\u{200D}👩\u{200D}👧"), "?");
        assert_eq!(transliterate("🇫🇷🇩🇪"), "??");
        assert_eq!(transliterate("1\u{FE0F}\u{20E3}"), "1");
        assert_eq!(transliterate("😀😀"), "??");
        assert_eq!(transliterate("a\u{200D}b"), "ab");
    }

    #[test]
    fn transliterate_is_identity_on_gsm() {
        let gsm = format!("{}{EXTENSION}", BASIC.replace('\u{1B}', ""));
        assert_eq!(transliterate(&gsm), gsm);
        let text = "Hello @all, RDV à 10h {salle [B]} ~ 5€ | 100% ^_^\r\nÇa va? ¿Qué?";
        assert!(is_gsm7(text));
        assert_eq!(transliterate(text), text);
    }

    #[test]
    fn transliterate_always_yields_gsm7() {
        for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
            let out = transliterate(&format!("x{c}y"));
            assert!(is_gsm7(&out), "{c:?} → {out:?}");
            assert!(
                out.starts_with('x') && out.ends_with('y'),
                "{c:?} → {out:?}"
            );
        }
    }
}
