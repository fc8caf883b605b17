//! A tolerant reader for smsfactor's small XML answers.
//!
//! The document's own examples are not well-formed XML: end tags written
//! `</ message >` or `</ deliveryreport >`, and delivery reports written
//! `<gsm number="" gsmsmsid="" /></gsm>` (an empty element followed by a
//! stray end tag). A strict parser would reject an answer shaped like the
//! documentation, and a rejected answer to a send becomes a retry: an SMS
//! sent twice. So answers are read by this forgiving scanner instead, which
//! turns the text into a flat list of [`Token`]s and never fails:
//!
//! - tag names are trimmed (`</ message >` ends `message`), compared without
//!   regard to ASCII case;
//! - end tags are not matched against start tags (a stray `</gsm>` is just
//!   a token);
//! - `<?…?>` declarations, `<!--…-->` comments and `<!…>` declarations are
//!   skipped, `<![CDATA[…]]>` is text;
//! - the five predefined entities and numeric character references are
//!   decoded, any other `&…;` is kept as written;
//! - a tag left open at the end of the input ends the scan.

/// One piece of the scanned input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Token {
    /// `<name attr="value">`, or `<name/>` when `empty`.
    Start {
        /// The element's name, trimmed.
        name: String,
        /// Its attributes, values decoded, in order.
        attrs: Vec<(String, String)>,
        /// Whether it was written `<name … />`.
        empty: bool,
    },
    /// `</name>` (the name trimmed).
    End {
        /// The element's name.
        name: String,
    },
    /// Character data between tags, entities decoded (not trimmed).
    Text(String),
}

impl Token {
    /// Whether this is a start tag named `wanted` (ASCII case ignored).
    pub fn is_start(&self, wanted: &str) -> bool {
        matches!(self, Token::Start { name, .. } if name.eq_ignore_ascii_case(wanted))
    }

    /// The value of the attribute `wanted` of a start tag (ASCII case
    /// ignored), if it has one.
    pub fn attr(&self, wanted: &str) -> Option<&str> {
        match self {
            Token::Start { attrs, .. } => attrs
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(wanted))
                .map(|(_, v)| v.as_str()),
            _ => None,
        }
    }
}

/// Scans `input` into tokens (see the module doc for what is tolerated).
pub fn tokens(input: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let Some(lt) = rest.find('<') else {
            push_text(&mut out, decode_entities(rest));
            break;
        };
        if lt > 0 {
            push_text(&mut out, decode_entities(&rest[..lt]));
        }
        rest = &rest[lt..];
        if let Some(after) = rest.strip_prefix("<![CDATA[") {
            let Some(end) = after.find("]]>") else {
                push_text(&mut out, after.to_owned());
                break;
            };
            push_text(&mut out, after[..end].to_owned());
            rest = &after[end + 3..];
        } else if let Some(after) = rest.strip_prefix("<!--") {
            let Some(end) = after.find("-->") else { break };
            rest = &after[end + 3..];
        } else if let Some(after) = rest.strip_prefix("<?") {
            let Some(end) = after.find("?>") else { break };
            rest = &after[end + 2..];
        } else if let Some(after) = rest.strip_prefix("<!") {
            let Some(end) = after.find('>') else { break };
            rest = &after[end + 1..];
        } else {
            let Some(end) = tag_end(rest) else { break };
            if let Some(token) = tag(&rest[1..end]) {
                out.push(token);
            }
            rest = &rest[end + 1..];
        }
    }
    out
}

/// Appends text, joining it to a text token just before (CDATA next to
/// plain text reads as one piece).
fn push_text(out: &mut Vec<Token>, text: String) {
    if let Some(Token::Text(previous)) = out.last_mut() {
        previous.push_str(&text);
    } else {
        out.push(Token::Text(text));
    }
}

/// The index of the `>` closing the tag that starts `s` (skipping `>`
/// inside quoted attribute values).
fn tag_end(s: &str) -> Option<usize> {
    let mut quote: Option<char> = None;
    for (i, c) in s.char_indices().skip(1) {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), _) => {}
            (None, '"' | '\'') => quote = Some(c),
            (None, '>') => return Some(i),
            (None, _) => {}
        }
    }
    None
}

/// Reads the inside of a tag (between `<` and `>`).
fn tag(inner: &str) -> Option<Token> {
    let inner = inner.trim();
    if let Some(end) = inner.strip_prefix('/') {
        let name = end.split_whitespace().next().unwrap_or("").to_owned();
        return Some(Token::End { name });
    }
    let (inner, empty) = match inner.strip_suffix('/') {
        Some(inner) => (inner.trim_end(), true),
        None => (inner, false),
    };
    let name_end = inner
        .find(|c: char| c.is_whitespace() || c == '/')
        .unwrap_or(inner.len());
    let name = inner[..name_end].to_owned();
    if name.is_empty() {
        return None;
    }
    Some(Token::Start {
        name,
        attrs: attributes(&inner[name_end..]),
        empty,
    })
}

/// `a="x" b='y' c=z` → pairs, values decoded; anything unreadable is
/// skipped.
fn attributes(mut s: &str) -> Vec<(String, String)> {
    let mut attrs = Vec::new();
    loop {
        s = s.trim_start_matches(|c: char| c.is_whitespace() || c == '/');
        if s.is_empty() {
            return attrs;
        }
        let name_end = s
            .find(|c: char| c.is_whitespace() || c == '=')
            .unwrap_or(s.len());
        let name = s[..name_end].to_owned();
        s = s[name_end..].trim_start();
        let Some(after_eq) = s.strip_prefix('=') else {
            // An attribute without a value: keep it, empty.
            attrs.push((name, String::new()));
            continue;
        };
        s = after_eq.trim_start();
        let value;
        match s.chars().next() {
            Some(q @ ('"' | '\'')) => {
                let body = &s[1..];
                let end = body.find(q).unwrap_or(body.len());
                value = decode_entities(&body[..end]);
                s = body.get(end + 1..).unwrap_or("");
            }
            _ => {
                let end = s.find(char::is_whitespace).unwrap_or(s.len());
                value = decode_entities(&s[..end]);
                s = &s[end..];
            }
        }
        attrs.push((name, value));
    }
}

/// Decodes `&amp;`, `&lt;`, `&gt;`, `&quot;`, `&apos;`, `&#NN;` and
/// `&#xHH;`; anything else is kept as written.
pub fn decode_entities(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let decoded = rest.find(';').filter(|&semi| semi <= 10).and_then(|semi| {
            let entity = &rest[1..semi];
            let c = match entity {
                "amp" => Some('&'),
                "lt" => Some('<'),
                "gt" => Some('>'),
                "quot" => Some('"'),
                "apos" => Some('\''),
                _ => {
                    let number = entity.strip_prefix('#')?;
                    let code = match number.strip_prefix(['x', 'X']) {
                        Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                        None => number.parse().ok()?,
                    };
                    char::from_u32(code)
                }
            }?;
            Some((c, semi))
        });
        match decoded {
            Some((c, semi)) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// The text of the first element named `name`: the character data right
/// after its start tag, up to the next tag of any kind, trimmed. `Some("")`
/// for an empty element (`<name/>`), `None` if there is no such element.
pub fn first_text(tokens: &[Token], name: &str) -> Option<String> {
    let at = tokens.iter().position(|t| t.is_start(name))?;
    match tokens[at] {
        Token::Start { empty: true, .. } => Some(String::new()),
        _ => Some(text_after(tokens, at)),
    }
}

/// The character data right after token `at`, up to the next tag, trimmed.
pub fn text_after(tokens: &[Token], at: usize) -> String {
    match tokens.get(at + 1) {
        Some(Token::Text(text)) => text.trim().to_owned(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(name: &str, attrs: &[(&str, &str)], empty: bool) -> Token {
        Token::Start {
            name: name.into(),
            attrs: attrs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect(),
            empty,
        }
    }

    fn end(name: &str) -> Token {
        Token::End { name: name.into() }
    }

    #[test]
    fn clean_xml() {
        let t = tokens(
            "<?xml version=\"1.0\"?>\n<!-- c --><r a=\"1\" b='x &amp; y'><s>t&lt;1&#233;&#xE9;</s><e/></r>",
        );
        assert_eq!(
            t,
            vec![
                Token::Text("\n".into()),
                start("r", &[("a", "1"), ("b", "x & y")], false),
                start("s", &[], false),
                Token::Text("t<1éé".into()),
                end("s"),
                start("e", &[], true),
                end("r"),
            ]
        );
    }

    #[test]
    fn the_documents_spaced_end_tags_and_stray_ends() {
        let t = tokens("<message>OK</ message ><gsm number=\"336\" gsmsmsid=\"r1\" /></gsm>");
        assert_eq!(
            t,
            vec![
                start("message", &[], false),
                Token::Text("OK".into()),
                end("message"),
                start("gsm", &[("number", "336"), ("gsmsmsid", "r1")], true),
                end("gsm"),
            ]
        );
        assert_eq!(first_text(&t, "MESSAGE").as_deref(), Some("OK"));
        assert_eq!(first_text(&t, "gsm").as_deref(), Some(""));
        assert_eq!(first_text(&tokens("<e/>text"), "e").as_deref(), Some(""));
        assert_eq!(text_after(&tokens("<e/>text"), 0), "text");
        assert_eq!(first_text(&t, "ticket"), None);
    }

    #[test]
    fn cdata_doctype_and_odd_attributes() {
        let t = tokens("<!DOCTYPE x><a k=v flag q=\"a>b\"><![CDATA[<raw> &amp;]]> tail</a>");
        assert_eq!(
            t,
            vec![
                start("a", &[("k", "v"), ("flag", ""), ("q", "a>b")], false),
                Token::Text("<raw> &amp; tail".into()),
                end("a"),
            ]
        );
    }

    #[test]
    fn unknown_entities_stay_and_open_tags_end_the_scan() {
        assert_eq!(
            decode_entities("a &nbsp; & b &#xZZ; &#0;"),
            "a &nbsp; & b &#xZZ; \0"
        );
        assert_eq!(
            tokens("<a>x</a><b att=\"never closed"),
            vec![start("a", &[], false), Token::Text("x".into()), end("a")]
        );
        assert_eq!(tokens("plain text"), vec![Token::Text("plain text".into())]);
        assert_eq!(tokens(""), vec![]);
        assert_eq!(tokens("<>"), vec![]);
    }
}
