//! The text of an alert SMS: by default the subject, a line break, then
//! the plain body cleaned of what a phone screen does not need (quoted
//! lines, the signature, runs of blank lines and of spaces); or the
//! account's `alert_template`. Then cut to the account's segments, never
//! refused for length.

use jiff::Timestamp;

use crate::gsm;
use crate::gsm::UnicodeMode;

/// What a template sees of one alert, for one recipient address.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Fields {
    /// The decoded subject.
    pub subject: String,
    /// The plain body, cleaned ([`clean_body`]).
    pub body: String,
    /// The `From:` address (else the envelope sender).
    pub from: String,
    /// The recipient address as given.
    pub to: String,
    /// The `Date:` header, else the reception time, as `YYYY-MM-DD HH:MM`
    /// in Europe/Paris.
    pub date: String,
}

/// The body without quoted lines (`>`), without the signature (after a
/// `-- ` line), each line's runs of spaces made one space, and without
/// blank lines.
pub fn clean_body(body: &str) -> String {
    let mut lines = Vec::new();
    for line in body.lines() {
        let line = line.trim_end_matches('\r');
        if line == "-- " || line == "--" {
            break;
        }
        if line.trim_start().starts_with('>') {
            continue;
        }
        let words = one_line(line);
        if !words.is_empty() {
            lines.push(words);
        }
    }
    lines.join("\n")
}

/// `text` on one line: runs of white space (line breaks too) made one
/// space, none at either end.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The default text: the subject, a line break, the cleaned body (either
/// alone when the other is empty).
pub fn default_text(fields: &Fields) -> String {
    let subject = one_line(&fields.subject);
    match (subject.is_empty(), fields.body.is_empty()) {
        (true, _) => fields.body.clone(),
        (false, true) => subject,
        (false, false) => format!("{subject}\n{}", fields.body),
    }
}

/// `at` as `YYYY-MM-DD HH:MM` in Europe/Paris.
pub fn paris_date(at: Timestamp) -> String {
    at.to_zoned(crate::calendar::paris().clone())
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

/// An account's `alert_template`, compiled once (at config load).
pub struct Template {
    /// The environment holding the one template, `alert`; undefined
    /// variables are errors, so that a typo refuses the alert rather than
    /// sending a blank.
    env: minijinja::Environment<'static>,
}

impl std::fmt::Debug for Template {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Template")
    }
}

impl Template {
    /// Compiles `source`; the error is minijinja's, for the config error.
    pub fn compile(source: &str) -> Result<Template, String> {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_template_owned("alert", source.to_owned())
            .map_err(|e| describe(&e))?;
        Ok(Template { env })
    }

    /// The text for `fields`; the error says what went wrong, for the
    /// `550 5.6.0`.
    pub fn render(&self, fields: &Fields) -> Result<String, String> {
        let template = self.env.get_template("alert").map_err(|e| describe(&e))?;
        template
            .render(minijinja::context! {
                subject => &fields.subject,
                body => &fields.body,
                from => &fields.from,
                to => &fields.to,
                date => &fields.date,
            })
            .map_err(|e| describe(&e))
    }
}

/// A minijinja error on one line, with its line number when known.
fn describe(e: &minijinja::Error) -> String {
    let text = one_line(&e.to_string());
    match e.line() {
        Some(line) if !text.contains("line ") => format!("{text} (line {line})"),
        _ => text,
    }
}

/// `text` as it will be sent: transliterated when the account asks, then
/// cut to `max_segments` with `...` (so that the account's length rule,
/// which refuses, always passes).
pub fn cut(text: &str, unicode: UnicodeMode, max_segments: u32) -> String {
    let text = match unicode {
        UnicodeMode::Auto => text.to_owned(),
        UnicodeMode::Transliterate => gsm::transliterate(text),
    };
    crate::gsm::fit::fit(&text, "", max_segments)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> Fields {
        Fields {
            subject: "PROBLEM: disk".into(),
            body: "host1 /var 95%".into(),
            from: "nagios@example.com".into(),
            to: "oncall@sms.example.com".into(),
            date: "2026-07-01 14:05".into(),
        }
    }

    #[test]
    fn quoted_lines_the_signature_and_blank_runs_are_removed() {
        let body = "Disk   full\ton host1\r\n\r\n\r\n  \r\n> earlier alert\r\n  >> older\r\nsee   graphs\r\n-- \r\nNagios\r\nmonitoring team\r\n";
        assert_eq!(clean_body(body), "Disk full on host1\nsee graphs");
        assert_eq!(clean_body("a\n--\nsig"), "a");
        assert_eq!(clean_body("a -- b\n---\nc"), "a -- b\n---\nc");
        assert_eq!(clean_body("\n\n"), "");
    }

    #[test]
    fn the_default_text_is_the_subject_then_the_body() {
        assert_eq!(default_text(&fields()), "PROBLEM: disk\nhost1 /var 95%");
        let no_subject = Fields {
            subject: "  ".into(),
            ..fields()
        };
        assert_eq!(default_text(&no_subject), "host1 /var 95%");
        let no_body = Fields {
            body: String::new(),
            subject: "a\r\n  b".into(),
            ..fields()
        };
        assert_eq!(default_text(&no_body), "a b");
    }

    #[test]
    fn a_template_sees_all_five_fields() {
        let t =
            Template::compile("[{{ date }}] {{ subject }} from {{ from }} to {{ to }}: {{ body }}")
                .expect("compiles");
        assert_eq!(
            t.render(&fields()).expect("renders"),
            "[2026-07-01 14:05] PROBLEM: disk from nagios@example.com to oncall@sms.example.com: host1 /var 95%"
        );
    }

    #[test]
    fn template_errors_are_told() {
        let err = Template::compile("{{ subject ").expect_err("syntax");
        assert!(!err.is_empty() && !err.contains('\n'), "{err}");
        let t = Template::compile("{{ subjet }}").expect("compiles");
        let err = t.render(&fields()).expect_err("undefined");
        assert!(err.contains("undefined"), "{err}");
        let t =
            Template::compile("{{ body | nosuchfilter }}").expect("filters are found at render");
        assert!(t.render(&fields()).is_err());
    }

    #[test]
    fn dates_are_paris_time_summer_and_winter() {
        // 12:05 UTC is 14:05 in summer (CEST) and 13:05 in winter (CET).
        let summer: Timestamp = "2026-07-01T12:05:00Z".parse().expect("ts");
        let winter: Timestamp = "2026-01-15T12:05:00Z".parse().expect("ts");
        assert_eq!(paris_date(summer), "2026-07-01 14:05");
        assert_eq!(paris_date(winter), "2026-01-15 13:05");
        // The night clocks go back: 00:30 UTC on 2026-10-25 is 02:30 CEST,
        // 01:30 UTC is 02:30 CET.
        let before: Timestamp = "2026-10-25T00:30:00Z".parse().expect("ts");
        let after: Timestamp = "2026-10-25T01:30:00Z".parse().expect("ts");
        assert_eq!(paris_date(before), "2026-10-25 02:30");
        assert_eq!(paris_date(after), "2026-10-25 02:30");
    }

    #[test]
    fn a_long_alert_is_cut_within_its_segments_and_stays_gsm7() {
        let long = "disk full on host1 ".repeat(40);
        let cut_text = cut(&long, UnicodeMode::Auto, 2);
        assert!(cut_text.ends_with("..."), "{cut_text}");
        let segments = gsm::segments(&cut_text);
        assert_eq!(segments.encoding, gsm::Encoding::Gsm7);
        assert!(segments.count <= 2);
        assert_eq!(cut("short", UnicodeMode::Auto, 1), "short");
    }

    #[test]
    fn transliteration_comes_before_the_cut() {
        let long = "Fenêtre ouverte ".repeat(30);
        let auto = cut(&long, UnicodeMode::Auto, 1);
        assert!(
            auto.ends_with("...") && auto.chars().count() <= 70,
            "{auto}"
        );
        let gsm = cut(&long, UnicodeMode::Transliterate, 1);
        assert_eq!(gsm::segments(&gsm).encoding, gsm::Encoding::Gsm7);
        assert!(gsm.chars().count() > 70 && gsm.ends_with("..."), "{gsm}");
    }
}
