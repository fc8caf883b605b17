//! The templates of the two replies and the XML text they render.
//!
//! The defaults (`templates/etat_ack.xml`, `templates/etat_not.xml`) are
//! embedded in the binary; an operator can override either by putting a file
//! of the same name in `replies.templates`. Every printed value goes through
//! the XML escaping of [`xml`](super::xml) by way of MiniJinja's auto-escape
//! and a custom formatter, so an edited template cannot forget it (only an
//! explicit `|safe` or `{% autoescape false %}` opts out).

use std::borrow::Cow;
use std::path::Path;

use minijinja::syntax::SyntaxConfig;
use minijinja::value::{Serde, Value};
use minijinja::{AutoEscape, Environment, Output, State, UndefinedBehavior};
use serde::Serialize;

use super::error::ReplyError;
use super::{Etat, ReplyContent, xml};
use crate::codes::{AckCode, Code};

/// File name of the `etatAck` template, embedded and in `replies.templates`.
pub const ACK_FILE: &str = "etat_ack.xml";
/// File name of the `etatNot` template, embedded and in `replies.templates`.
pub const NOT_FILE: &str = "etat_not.xml";

/// The embedded `etatAck` template.
const ACK_DEFAULT: &str = include_str!("../../templates/etat_ack.xml");
/// The embedded `etatNot` template.
const NOT_DEFAULT: &str = include_str!("../../templates/etat_not.xml");

/// The name of our auto-escape mode, which only our formatter understands.
const XML_ESCAPE: &str = "xml";

/// The two reply templates, parsed and checked.
pub struct Templates {
    /// Holds both templates under [`ACK_FILE`] and [`NOT_FILE`], configured
    /// to XML-escape every printed value.
    env: Environment<'static>,
    /// Where the `etatAck` template came from, to name it in errors.
    ack_origin: String,
    /// Where the `etatNot` template came from, to name it in errors.
    not_origin: String,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates")
            .field("ack", &self.ack_origin)
            .field("not", &self.not_origin)
            .finish()
    }
}

/// What `etat_ack.xml` sees.
#[derive(Serialize)]
struct AckContext<'a> {
    /// The request's emailId, or `?`.
    email_id: &'a str,
    /// 0, 1 or 2.
    code: u16,
    /// The spec's messageAck for `code`.
    message: &'static str,
}

/// What `etat_not.xml` sees.
#[derive(Serialize)]
struct NotContext<'a> {
    /// The request's emailId, or `?`.
    email_id: &'a str,
    /// One entry per recipient, in order.
    etats: Vec<EtatContext<'a>>,
}

/// One recipient in `etat_not.xml`.
#[derive(Serialize)]
struct EtatContext<'a> {
    /// Appended to the element names: empty for a single recipient
    /// (`<etat>`), `1`..`N` for several (`<etat1>`), as the spec's two forms.
    suffix: String,
    /// The annex code.
    code: u16,
    /// The recipient's number as the request wrote it.
    tel: &'a str,
    /// The annex message for `code`.
    message: &'static str,
}

impl Templates {
    /// The embedded templates, each replaced by the file of the same name in
    /// `dir` when there is one. Both are test-rendered, so a template that
    /// does not parse or uses an unknown variable is reported now, naming
    /// its file, rather than at the first reply.
    pub fn load(dir: Option<&Path>) -> Result<Templates, ReplyError> {
        if let Some(dir) = dir
            && !dir.is_dir()
        {
            return Err(ReplyError::Config {
                key: "replies.templates",
                reason: format!("{}: not a directory", dir.display()),
            });
        }
        let mut env = environment();
        let ack_origin = add(&mut env, dir, ACK_FILE, ACK_DEFAULT)?;
        let not_origin = add(&mut env, dir, NOT_FILE, NOT_DEFAULT)?;
        let templates = Templates {
            env,
            ack_origin,
            not_origin,
        };
        templates.self_check()?;
        Ok(templates)
    }

    /// Where each template came from, e.g. `embedded etat_ack.xml` or the
    /// override's path, for `check-config`.
    pub fn origins(&self) -> [&str; 2] {
        [&self.ack_origin, &self.not_origin]
    }

    /// The reply's XML as UTF-8 text with `\n` line ends (CRLF in an edited
    /// template is normalised).
    pub fn render(&self, body: &ReplyContent) -> Result<String, ReplyError> {
        let email_id = body.email_id();
        let (name, origin, ctx) = match body {
            ReplyContent::Ack { code, .. } => (
                ACK_FILE,
                &self.ack_origin,
                Value::from(Serde(AckContext {
                    email_id,
                    code: code.number(),
                    message: code.message(),
                })),
            ),
            ReplyContent::Not { etats, .. } => (
                NOT_FILE,
                &self.not_origin,
                Value::from(Serde(NotContext {
                    email_id,
                    etats: etat_contexts(etats),
                })),
            ),
            ReplyContent::Dsn(_) => return Err(ReplyError::NotTemplated(body.kind())),
        };
        let rendered = self
            .env
            .get_template(name)
            .and_then(|t| t.render(ctx))
            .map_err(|source| ReplyError::Template {
                file: origin.clone(),
                source,
            })?;
        Ok(rendered.replace("\r\n", "\n"))
    }

    /// Renders each template once with representative values.
    fn self_check(&self) -> Result<(), ReplyError> {
        let samples = [
            ReplyContent::Ack {
                email_id: Some("1".into()),
                code: AckCode::Processed,
            },
            ReplyContent::Not {
                email_id: None,
                etats: vec![Etat {
                    code: Code::SENT,
                    tel: "0601020304".into(),
                }],
            },
            ReplyContent::Not {
                email_id: Some("1".into()),
                etats: vec![
                    Etat {
                        code: Code::SENT,
                        tel: "0601020304".into(),
                    },
                    Etat {
                        code: Code::BAD_NUMBER,
                        tel: "06".into(),
                    },
                ],
            },
        ];
        samples.iter().try_for_each(|s| self.render(s).map(drop))
    }
}

/// The per-recipient context, numbered only when there are several.
fn etat_contexts(etats: &[Etat]) -> Vec<EtatContext<'_>> {
    let numbered = etats.len() > 1;
    etats
        .iter()
        .enumerate()
        .map(|(i, etat)| EtatContext {
            suffix: if numbered {
                (i + 1).to_string()
            } else {
                String::new()
            },
            code: etat.code.0,
            tel: &etat.tel,
            message: etat.code.message(),
        })
        .collect()
}

/// A MiniJinja environment that XML-escapes all output and keeps the
/// templates' line structure: block tags on their own lines leave no blank
/// line, and the final newline stays.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    let mut syntax = SyntaxConfig::builder();
    syntax
        .trim_blocks(true)
        .lstrip_blocks(true)
        .keep_trailing_newline(true);
    // The default delimiters always build; keep MiniJinja's syntax if not.
    if let Ok(syntax) = syntax.build() {
        env.set_syntax(syntax);
    }
    env.set_undefined_behavior(UndefinedBehavior::SemiStrict);
    env.set_auto_escape_callback(|_| AutoEscape::Custom(Cow::Borrowed(XML_ESCAPE)));
    env.set_formatter(format_value);
    env.add_filter("escape", escape_filter);
    env.add_filter("e", escape_filter);
    env
}

/// Prints a value, XML-escaped unless it is marked safe or the template
/// turned auto-escaping off.
fn format_value(
    out: &mut Output,
    state: &mut State,
    value: &Value,
) -> Result<(), minijinja::Error> {
    let text = value.to_string();
    if value.is_safe() || *state.auto_escape() == AutoEscape::None {
        out.write_str(&text)?;
    } else {
        out.write_str(&xml::escape(&text))?;
    }
    Ok(())
}

/// `|escape` / `|e`: XML escaping (MiniJinja's own would fail on our custom
/// auto-escape mode), marked safe so the formatter does not escape twice.
fn escape_filter(value: Value) -> Value {
    if value.is_safe() {
        value
    } else {
        Value::from_safe_string(xml::escape(&value.to_string()))
    }
}

/// Adds template `name`: the file of that name in `dir` if there is one,
/// otherwise the embedded `default`. Returns where it came from.
fn add(
    env: &mut Environment<'static>,
    dir: Option<&Path>,
    name: &'static str,
    default: &'static str,
) -> Result<String, ReplyError> {
    let (origin, source) = match dir.map(|d| d.join(name)) {
        Some(path) if path.exists() => {
            let bytes = std::fs::read(&path).map_err(|source| ReplyError::TemplateRead {
                path: path.clone(),
                source,
            })?;
            let text = String::from_utf8(bytes).map_err(|_| ReplyError::TemplateRead {
                path: path.clone(),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    "not UTF-8 (templates are UTF-8; replies are converted to ISO-8859-1 when sent)",
                ),
            })?;
            (path.display().to_string(), Cow::Owned(text))
        }
        _ => (format!("embedded {name}"), Cow::Borrowed(default)),
    };
    env.add_template_owned(name, source)
        .map_err(|source| ReplyError::Template {
            file: origin.clone(),
            source,
        })?;
    Ok(origin)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn etat(code: u16, tel: &str) -> Etat {
        Etat {
            code: Code(code),
            tel: tel.into(),
        }
    }

    fn defaults() -> Templates {
        Templates::load(None).expect("embedded templates load")
    }

    #[test]
    fn ack_exactly_as_the_spec() {
        let t = defaults();
        let xml = t
            .render(&ReplyContent::Ack {
                email_id: Some("1548".into()),
                code: AckCode::Processed,
            })
            .expect("render");
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<etatAck>\n<emailId>1548</emailId>\n\
             <code>0</code>\n<message>Votre email a bien ete traite</message>\n</etatAck>\n"
        );
        let xml = t
            .render(&ReplyContent::Ack {
                email_id: None,
                code: AckCode::MissingEmailId,
            })
            .expect("render");
        assert!(
            xml.contains(
                "<emailId>?</emailId>\n<code>2</code>\n<message>emailId non renseigne</message>\n"
            ),
            "{xml}"
        );
    }

    #[test]
    fn not_single_recipient_is_unnumbered() {
        let xml = defaults()
            .render(&ReplyContent::Not {
                email_id: Some("1548".into()),
                etats: vec![etat(0, "0601020304")],
            })
            .expect("render");
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<etatNot>\n<emailId>1548</emailId>\n</etatNot>\n\
             <etat>\n<code>0</code>\n<tel>0601020304</tel>\n<message>Votre message a bien été envoyé</message>\n</etat>\n"
        );
    }

    #[test]
    fn not_several_recipients_are_numbered_in_order() {
        let xml = defaults()
            .render(&ReplyContent::Not {
                email_id: None,
                etats: vec![
                    etat(0, "0601020304"),
                    etat(7, "06010"),
                    etat(4242, "0701020304"),
                ],
            })
            .expect("render");
        assert_eq!(
            xml,
            "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<etatNot>\n<emailId>?</emailId>\n</etatNot>\n\
             <etat1>\n<code1>0</code1>\n<tel1>0601020304</tel1>\n<message1>Votre message a bien été envoyé</message1>\n</etat1>\n\
             <etat2>\n<code2>7</code2>\n<tel2>06010</tel2>\n<message2>Un numéro de téléphone est sur 10 chiffres</message2>\n</etat2>\n\
             <etat3>\n<code3>4242</code3>\n<tel3>0701020304</tel3>\n\
             <message3>Une erreur est survenue. Merci de contacter le service technique</message3>\n</etat3>\n"
        );
    }

    #[test]
    fn values_are_xml_escaped_but_slash_is_kept() {
        let t = defaults();
        let xml = t
            .render(&ReplyContent::Not {
                email_id: Some(r#"a&b<c>"d'e/f"#.into()),
                etats: vec![etat(0, "<06>/&")],
            })
            .expect("render");
        assert!(
            xml.contains(r#"<emailId>a&amp;b&lt;c&gt;"d'e/f</emailId>"#),
            "{xml}"
        );
        assert!(xml.contains("<tel>&lt;06&gt;/&amp;</tel>"), "{xml}");
        // The annex's apostrophes stay as the spec writes them (code 14).
        let xml = t
            .render(&ReplyContent::Not {
                email_id: None,
                etats: vec![etat(14, "0601020304")],
            })
            .expect("render");
        assert!(
            xml.contains("<message>L'adresse IP n'est pas autorisée</message>"),
            "{xml}"
        );
    }

    #[test]
    fn custom_template_takes_effect_and_still_escapes() {
        let dir = tempfile::tempdir().expect("tempdir");
        // CRLF line ends, an explicit |e (must not double-escape), no
        // other filter: escaping must not depend on the operator.
        std::fs::write(
            dir.path().join(ACK_FILE),
            "<ack id=\"{{ email_id }}\">\r\n{{ message|upper }} {{ email_id|e }}\r\n</ack>\r\n",
        )
        .expect("write");
        let t = Templates::load(Some(dir.path())).expect("load");
        let xml = t
            .render(&ReplyContent::Ack {
                email_id: Some("<1>".into()),
                code: AckCode::Duplicate,
            })
            .expect("render");
        assert_eq!(
            xml,
            "<ack id=\"&lt;1&gt;\">\nEMAILID DEJA TRAITE &lt;1&gt;\n</ack>\n"
        );
        // The other template is still the embedded one.
        let xml = t
            .render(&ReplyContent::Not {
                email_id: Some("1".into()),
                etats: vec![etat(0, "0601020304")],
            })
            .expect("render");
        assert!(xml.starts_with("<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<etatNot>\n"));
    }

    #[test]
    fn broken_template_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(NOT_FILE);
        std::fs::write(&path, "<etatNot>\n{% for e in etats %}\n<etat>\n").expect("write");
        let err = Templates::load(Some(dir.path())).expect_err("syntax error");
        let text = err.to_string();
        assert!(text.contains(&path.display().to_string()), "{text}");
        assert!(err.is_permanent());

        // An unknown variable is caught at load time too.
        std::fs::write(&path, "<etatNot>{{ emailid }}</etatNot>\n").expect("write");
        let err = Templates::load(Some(dir.path())).expect_err("undefined variable");
        assert!(
            err.to_string().contains(&path.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn missing_template_dir_is_a_config_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        let err = Templates::load(Some(&missing)).expect_err("missing dir");
        assert!(err.to_string().starts_with("replies.templates: "), "{err}");
    }

    #[test]
    fn non_utf8_template_is_refused_with_a_hint() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(ACK_FILE), b"<message>\xE9</message>\n").expect("write");
        let err = Templates::load(Some(dir.path())).expect_err("latin-1 file");
        assert!(err.to_string().contains("not UTF-8"), "{err}");
    }
}
