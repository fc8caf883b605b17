//! The attachment form of a request (spec §3): `mobiles.csv` lists the
//! recipients, one a line, as `num;;[1];;[2]…`, and the first line of
//! `message.csv` is the message, in which `[n]` stands for the line's field n.
//!
//! Decisions where the spec is silent:
//! * lines are read with the `csv` crate (`;` delimiter, `"` quoting, CR/LF
//!   or LF line ends, fields trimmed); the empty fields between the two `;` of
//!   each `;;` are dropped. A line whose odd fields are not all empty was
//!   written with single `;` separators, and all its fields are data;
//! * blank lines are skipped; there is no header line;
//! * the 500-number limit is `<envoi>`'s; the attachment's limit is
//!   [`super::Limits::max_csv_lines`] non-blank lines, beyond which the request
//!   is refused;
//! * `[n]` with n ≥ 1 is a placeholder, replaced by field n, or by nothing
//!   when the line has fewer fields; anything else in brackets is literal text;
//! * the template is `message.csv`'s first non-blank line taken verbatim; if
//!   it starts with `"` it is a spreadsheet cell and is unquoted as CSV (which
//!   also lets a quoted cell span several lines). No entity decoding (a file is
//!   not HTML); `Ö` is a line break as in the body, and control characters
//!   are removed from the template and the fields before they are merged;
//! * each merged text is within [`MAX_SMS_CHARS`], else the request is
//!   refused (issue 8).

use super::limits::{self, MAX_SMS_CHARS};
use super::text::message_text;
use super::{Limits, RawRecipient, RequestError};

/// Reads `mobiles.csv` into recipients, each text being `template` with its
/// fields substituted. The template and the fields are message texts
/// ([`message_text`]) before they are merged; a merged text over
/// [`MAX_SMS_CHARS`] refuses the request, its length being known before it
/// is built.
pub(crate) fn recipients(
    mobiles: &str,
    template: &str,
    limits: &Limits,
) -> Result<Vec<RawRecipient>, RequestError> {
    let template = Template::parse(&message_text(template));
    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(b';')
        .has_headers(false)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(mobiles.as_bytes());
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| RequestError::Csv {
            file: "mobiles.csv",
            line: e.position().map_or(0, |p| p.line()),
        })?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        if out.len() == limits.max_csv_lines {
            return Err(RequestError::TooManyCsvLines {
                max: limits.max_csv_lines,
            });
        }
        let fields: Vec<&str> = record.iter().collect();
        let (tel, data) = fields.split_first().unwrap_or((&"", &[]));
        let data: Vec<String> = data_fields(data).into_iter().map(message_text).collect();
        let line = record.position().map_or(0, |p| p.line());
        out.push(RawRecipient {
            tel: (*tel).to_owned(),
            text: template.merge(&data, line)?,
        });
    }
    Ok(out)
}

/// The template in `message.csv`; `None` when it holds only blank lines.
pub(crate) fn template(message: &str) -> Result<Option<String>, RequestError> {
    let Some(first) = message.lines().find(|line| !line.trim().is_empty()) else {
        return Ok(None);
    };
    let first = first.trim();
    check_template_span(first)?;
    if !first.starts_with('"') {
        return Ok(Some(first.to_owned()));
    }
    // A spreadsheet cell: one field per record (0x1F, the ASCII unit
    // separator, does not occur in text).
    let start = message.len() - message.trim_start().len();
    let mut reader = ::csv::ReaderBuilder::new()
        .delimiter(0x1f)
        .has_headers(false)
        .flexible(true)
        .from_reader(message.as_bytes().get(start..).unwrap_or_default());
    let mut record = ::csv::StringRecord::new();
    let read = reader
        .read_record(&mut record)
        .map_err(|e| RequestError::Csv {
            file: "message.csv",
            line: e.position().map_or(0, |p| p.line()),
        })?;
    let cell = if read {
        record.get(0).unwrap_or("")
    } else {
        ""
    };
    check_template_span(cell)?;
    let cell = cell.replace("\r\n", "\n");
    let cell = cell.trim();
    Ok((!cell.is_empty()).then(|| cell.to_owned()))
}

/// Refuses a template whose text is too long for any merged message to fit
/// [`MAX_SMS_CHARS`], before it is copied (see [`limits::span_too_long`]:
/// each `[n]` may vanish, so the bound is generous).
fn check_template_span(text: &str) -> Result<(), RequestError> {
    if limits::span_too_long(text.len(), MAX_SMS_CHARS) {
        return Err(RequestError::TooLong {
            field: "the message of message.csv".to_owned(),
            chars: text.chars().count(),
            max: MAX_SMS_CHARS,
        });
    }
    Ok(())
}

/// The data fields of a line (after the number): the `;;` form's separator
/// fields (odd positions, all empty) are dropped.
fn data_fields<'a>(after_number: &[&'a str]) -> Vec<&'a str> {
    // after_number = ["", f1, "", f2, …] in the `;;` form.
    let double = after_number.iter().step_by(2).all(|f| f.is_empty());
    if double {
        after_number.iter().skip(1).step_by(2).copied().collect()
    } else {
        after_number.to_vec()
    }
}

/// A template split once into literal text and `[n]` placeholders, so that
/// each line's merged length is known before its text is built (a template
/// of many `[1]` and a long field must not build a huge text).
#[derive(Debug)]
struct Template {
    /// The literal runs and placeholders, in order.
    pieces: Vec<Piece>,
    /// The characters of the literal runs together.
    literal_chars: usize,
}

/// One part of a [`Template`].
#[derive(Debug)]
enum Piece {
    /// Text copied as is.
    Literal(String),
    /// `[n]`: the line's data field n - 1 (0-based), nothing when missing.
    Field(usize),
}

impl Template {
    /// Splits `template`: each `[n]` (n ≥ 1) is a placeholder; anything else
    /// in brackets is literal text.
    fn parse(template: &str) -> Template {
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut rest = template;
        while let Some(open) = rest.find('[') {
            literal.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let digits = after.bytes().take_while(u8::is_ascii_digit).count();
            let index = after[..digits].parse::<usize>().ok().filter(|&n| n >= 1);
            match index {
                Some(n) if after.as_bytes().get(digits) == Some(&b']') => {
                    if !literal.is_empty() {
                        pieces.push(Piece::Literal(std::mem::take(&mut literal)));
                    }
                    pieces.push(Piece::Field(n - 1));
                    rest = &after[digits + 1..];
                }
                _ => {
                    literal.push('[');
                    rest = after;
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Literal(literal));
        }
        let literal_chars = pieces
            .iter()
            .map(|p| match p {
                Piece::Literal(text) => text.chars().count(),
                Piece::Field(_) => 0,
            })
            .sum();
        Template {
            pieces,
            literal_chars,
        }
    }

    /// The text for one line's `fields`, refused when over
    /// [`MAX_SMS_CHARS`] (`line` names the line in the error).
    fn merge(&self, fields: &[String], line: u64) -> Result<String, RequestError> {
        let field_chars: Vec<usize> = fields.iter().map(|f| f.chars().count()).collect();
        let chars = self.literal_chars
            + self
                .pieces
                .iter()
                .map(|p| match p {
                    Piece::Field(i) => field_chars.get(*i).copied().unwrap_or(0),
                    Piece::Literal(_) => 0,
                })
                .sum::<usize>();
        if chars > MAX_SMS_CHARS {
            return Err(RequestError::TooLong {
                field: format!("the message for mobiles.csv line {line}"),
                chars,
                max: MAX_SMS_CHARS,
            });
        }
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Literal(text) => out.push_str(text),
                Piece::Field(i) => out.push_str(fields.get(*i).map_or("", String::as_str)),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(mobiles: &str, template: &str) -> Vec<(String, String)> {
        recipients(mobiles, template, &Limits::default())
            .unwrap()
            .into_iter()
            .map(|r| (r.tel, r.text))
            .collect()
    }

    fn pairs(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(a, b)| ((*a).to_owned(), (*b).to_owned()))
            .collect()
    }

    #[test]
    fn spec_example_with_dynamic_data() {
        let got = read(
            "0601020304;;Michel;;Martin;;10/10/2015\n0601020305;;Sarah;;Dupont;;02/08/2015\n",
            "Bonjour [1] [2], votre nouvelle carte sera disponible le [3]",
        );
        assert_eq!(
            got,
            pairs(&[
                (
                    "0601020304",
                    "Bonjour Michel Martin, votre nouvelle carte sera disponible le 10/10/2015"
                ),
                (
                    "0601020305",
                    "Bonjour Sarah Dupont, votre nouvelle carte sera disponible le 02/08/2015"
                ),
            ])
        );
    }

    #[test]
    fn spec_example_without_dynamic_data() {
        let got = read("0601020304", "Bonjour, votre nouvelle carte est disponible");
        assert_eq!(
            got,
            pairs(&[("0601020304", "Bonjour, votre nouvelle carte est disponible")])
        );
    }

    #[test]
    fn crlf_blank_lines_quotes_and_single_semicolons() {
        let got = read(
            "\r\n0601020304;;\"Dupont; Sarah\";;x\r\n\r\n  \r\n0601020305;Michel;Martin\r\n0601020306;;;;Vide\r\n",
            "[1]|[2]",
        );
        assert_eq!(
            got,
            pairs(&[
                ("0601020304", "Dupont; Sarah|x"),
                ("0601020305", "Michel|Martin"),
                ("0601020306", "|Vide"),
            ])
        );
    }

    #[test]
    fn missing_fields_and_non_placeholders() {
        let got = read("0601020304;;Michel", "[1] [2] [0] [x] [ [12 [] fin[1]Ö[3]");
        assert_eq!(
            got,
            pairs(&[("0601020304", "Michel  [0] [x] [ [12 [] finMichel\n")])
        );
    }

    #[test]
    fn empty_number_field_is_kept() {
        let got = read(";;Michel", "[1]");
        assert_eq!(got, pairs(&[("", "Michel")]));
    }

    #[test]
    fn line_cap() {
        let limits = Limits { max_csv_lines: 2 };
        assert!(recipients("1\n2\n\n", "x", &limits).is_ok());
        assert_eq!(
            recipients("1\n2\n3\n", "x", &limits),
            Err(RequestError::TooManyCsvLines { max: 2 })
        );
    }

    #[test]
    fn template_first_line() {
        assert_eq!(
            template(
                "\r\nBonjour [1] [2], votre nouvelle carte sera disponible le [3]\r\nignored\r\n"
            ),
            Ok(Some(
                "Bonjour [1] [2], votre nouvelle carte sera disponible le [3]".to_owned()
            ))
        );
        assert_eq!(
            template("Il a dit \"oui\"; fin"),
            Ok(Some("Il a dit \"oui\"; fin".to_owned()))
        );
        assert_eq!(
            template("\"Bonjour; \"\"[1]\"\"\r\nsuite\";x\r\nignored"),
            Ok(Some("Bonjour; \"[1]\"\nsuite;x".to_owned()))
        );
        assert_eq!(template(" \r\n\r\n"), Ok(None));
    }
}
