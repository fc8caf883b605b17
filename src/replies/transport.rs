//! Parsing `replies.transport`: where replies are delivered.
//!
//! Forms:
//! - `smtp://[user:password@]host[:port][/][?tls=starttls|required|none]`:
//!   STARTTLS (required, never opportunistic) when `tls=starttls` /
//!   `tls=required` or when the port is 587; plain text otherwise
//!   (`tls=none` forces it, even on 587). Default port 25, 587 with STARTTLS.
//! - `smtps://[user:password@]host[:port]`: TLS from the first byte, port 465.
//! - `file://DIR`: one `DIR/{id}.eml` per reply.
//! - `sendmail` or `sendmail:///path/to/sendmail`.
//!
//! User and password are percent-decoded (`%40` for `@`, `%3A` for `:`); an
//! unencoded `@` in the password also works, the last `@` ends the userinfo.

use std::fmt;
use std::path::PathBuf;

use super::error::ReplyError;

/// The configuration key every parse error names.
const KEY: &str = "replies.transport";

/// A parsed `replies.transport`.
#[derive(Clone, PartialEq, Eq)]
pub enum TransportSpec {
    /// Deliver to an SMTP server.
    Smtp(SmtpSpec),
    /// Write one `.eml` file per reply into this directory.
    File {
        /// The spool directory, created if missing.
        dir: PathBuf,
    },
    /// Pipe to a sendmail-compatible command.
    Sendmail {
        /// The command; `None` runs `sendmail` from `PATH`.
        command: Option<PathBuf>,
    },
}

/// How an SMTP connection is protected.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpSecurity {
    /// No encryption (a local relay).
    Plain,
    /// Plain connection upgraded with STARTTLS, which must succeed.
    StartTls,
    /// TLS from the start (`smtps://`).
    Tls,
}

/// An SMTP server to relay replies through.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpSpec {
    /// Host name or IP address (without IPv6 brackets); also the name the
    /// TLS certificate must match.
    pub host: String,
    /// The TCP port, defaulted from the security mode.
    pub port: u16,
    /// Encryption mode.
    pub security: SmtpSecurity,
    /// Login and password for SMTP AUTH, percent-decoded. The password never
    /// leaves this struct through `Debug` or `describe`.
    pub credentials: Option<(String, String)>,
}

impl fmt::Debug for SmtpSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSpec")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("user", &self.credentials.as_ref().map(|(user, _)| user))
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for TransportSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TransportSpec::Smtp(smtp) => f.debug_tuple("Smtp").field(smtp).finish(),
            TransportSpec::File { dir } => f.debug_struct("File").field("dir", dir).finish(),
            TransportSpec::Sendmail { command } => f
                .debug_struct("Sendmail")
                .field("command", command)
                .finish(),
        }
    }
}

impl TransportSpec {
    /// Parses `replies.transport`; errors start with `replies.transport:` and
    /// quote the URL only with its password masked.
    pub fn parse(url: &str) -> Result<TransportSpec, ReplyError> {
        let url = url.trim();
        if url == "sendmail" {
            return Ok(TransportSpec::Sendmail { command: None });
        }
        let Some((scheme, rest)) = url.split_once("://") else {
            return Err(unsupported(url));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "smtp" => parse_smtp(rest, false).map(TransportSpec::Smtp),
            "smtps" => parse_smtp(rest, true).map(TransportSpec::Smtp),
            "file" if rest.is_empty() => Err(config("file:// needs a directory".into())),
            "file" => Ok(TransportSpec::File {
                dir: PathBuf::from(rest),
            }),
            "sendmail" => Ok(TransportSpec::Sendmail {
                command: (!rest.is_empty()).then(|| PathBuf::from(rest)),
            }),
            _ => Err(unsupported(url)),
        }
    }

    /// A human description for `check-config`: kind and target, the SMTP
    /// user but never the password.
    pub fn describe(&self) -> String {
        match self {
            TransportSpec::Smtp(s) => {
                let security = match s.security {
                    SmtpSecurity::Plain => "plain text",
                    SmtpSecurity::StartTls => "STARTTLS required",
                    SmtpSecurity::Tls => "TLS",
                };
                let host = if s.host.contains(':') {
                    format!("[{}]", s.host)
                } else {
                    s.host.clone()
                };
                let auth = match &s.credentials {
                    Some((user, _)) => format!(", authenticating as {user:?}"),
                    None => String::new(),
                };
                format!("SMTP to {host}:{} ({security}{auth})", s.port)
            }
            TransportSpec::File { dir } => {
                format!("one .eml file per reply in {}", dir.display())
            }
            TransportSpec::Sendmail { command: None } => "sendmail (from PATH)".into(),
            TransportSpec::Sendmail { command: Some(c) } => format!("sendmail {}", c.display()),
        }
    }
}

pub use crate::secrets::redact_url;

/// The part after `smtp://` or `smtps://`.
fn parse_smtp(rest: &str, tls: bool) -> Result<SmtpSpec, ReplyError> {
    let (userinfo, hostpart) = match rest.rfind('@') {
        Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
        None => (None, rest),
    };
    let credentials = userinfo.map(parse_userinfo).transpose()?;

    let (authority, query) = match hostpart.split_once('?') {
        Some((a, q)) => (a, Some(q)),
        None => (hostpart, None),
    };
    let authority = match authority.split_once('/') {
        Some((a, "")) => a,
        Some(_) => return Err(config("a path is not allowed after the host".into())),
        None => authority,
    };
    let (host, port) = split_host_port(authority)?;

    let mut requested = None;
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("tls", value)) => requested = Some(value.to_ascii_lowercase()),
            _ => {
                return Err(config(format!(
                    "unknown parameter {pair:?} (only tls=starttls|required|none)"
                )));
            }
        }
    }
    let security = match (tls, requested.as_deref()) {
        (true, None | Some("required")) => SmtpSecurity::Tls,
        (true, Some(other)) => {
            return Err(config(format!(
                "smtps:// is always TLS; tls={other} is contradictory (use smtp:// for STARTTLS or plain text)"
            )));
        }
        (false, Some("starttls" | "required")) => SmtpSecurity::StartTls,
        (false, Some("none")) => SmtpSecurity::Plain,
        (false, None) if port == Some(587) => SmtpSecurity::StartTls,
        (false, None) => SmtpSecurity::Plain,
        (false, Some(other)) => {
            return Err(config(format!(
                "tls={other} is not one of starttls, required, none"
            )));
        }
    };
    let port = port.unwrap_or(match security {
        SmtpSecurity::Plain => 25,
        SmtpSecurity::StartTls => 587,
        SmtpSecurity::Tls => 465,
    });
    Ok(SmtpSpec {
        host,
        port,
        security,
        credentials,
    })
}

/// `user:password`, both percent-decoded. Error messages never quote the
/// password.
fn parse_userinfo(userinfo: &str) -> Result<(String, String), ReplyError> {
    let Some((user, password)) = userinfo.split_once(':') else {
        return Err(config(
            "a user without a password (write user:password@host, percent-encoded)".into(),
        ));
    };
    let user = percent_decode(user)
        .ok_or_else(|| config("the user name has an invalid percent-encoding".into()))?;
    let password = percent_decode(password)
        .ok_or_else(|| config("the password has an invalid percent-encoding".into()))?;
    if user.is_empty() {
        return Err(config("empty user name".into()));
    }
    Ok((user, password))
}

/// `host`, `host:port`, `[v6]` or `[v6]:port`.
fn split_host_port(authority: &str) -> Result<(String, Option<u16>), ReplyError> {
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or_else(|| config(format!("unclosed [ in host {authority:?}")))?;
        match after {
            "" => (host, None),
            _ => match after.strip_prefix(':') {
                Some(port) => (host, Some(port)),
                None => return Err(config(format!("unexpected {after:?} after the host"))),
            },
        }
    } else {
        match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(config("missing host".into()));
    }
    let port = port
        .map(|p| match p.parse::<u16>() {
            Ok(n) if n > 0 => Ok(n),
            _ => Err(config(format!("invalid port {p:?}"))),
        })
        .transpose()?;
    Ok((host.to_owned(), port))
}

/// Decodes `%XX` escapes; `None` on a malformed escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            if !hex.iter().all(u8::is_ascii_hexdigit) {
                return None;
            }
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A `replies.transport` error.
fn config(reason: String) -> ReplyError {
    ReplyError::Config { key: KEY, reason }
}

/// The error for a URL of no known form.
fn unsupported(url: &str) -> ReplyError {
    config(format!(
        "{:?} is not smtp://host[:port], smtps://host[:port], file://DIR or sendmail",
        redact_url(url)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smtp(url: &str) -> SmtpSpec {
        match TransportSpec::parse(url) {
            Ok(TransportSpec::Smtp(s)) => s,
            other => panic!("{url}: {other:?}"),
        }
    }

    fn err(url: &str) -> String {
        TransportSpec::parse(url).expect_err(url).to_string()
    }

    #[test]
    fn smtp_security_and_default_ports() {
        let s = smtp("smtp://mx.example");
        assert_eq!(
            (s.host.as_str(), s.port, s.security),
            ("mx.example", 25, SmtpSecurity::Plain)
        );
        assert_eq!(s.credentials, None);
        let s = smtp("smtp://mx.example:587");
        assert_eq!((s.port, s.security), (587, SmtpSecurity::StartTls));
        let s = smtp("smtp://mx.example:587/?tls=none");
        assert_eq!((s.port, s.security), (587, SmtpSecurity::Plain));
        let s = smtp("smtp://mx.example?tls=starttls");
        assert_eq!((s.port, s.security), (587, SmtpSecurity::StartTls));
        let s = smtp("smtp://mx.example:2525?tls=required");
        assert_eq!((s.port, s.security), (2525, SmtpSecurity::StartTls));
        let s = smtp("smtps://mx.example");
        assert_eq!((s.port, s.security), (465, SmtpSecurity::Tls));
        let s = smtp("smtp://[::1]:2525");
        assert_eq!((s.host.as_str(), s.port), ("::1", 2525));
    }

    #[test]
    fn credentials_are_percent_decoded() {
        let s = smtp("smtp://us%65r%40corp:p%40ss%3Aw0rd%25@mx.example:587");
        assert_eq!(
            s.credentials,
            Some(("user@corp".to_owned(), "p@ss:w0rd%".to_owned()))
        );
        // An unencoded @ in the password: the last @ ends the userinfo.
        let s = smtp("smtp://bob:a@b@mx.example");
        assert_eq!(s.credentials, Some(("bob".to_owned(), "a@b".to_owned())));
        assert_eq!(s.host, "mx.example");
    }

    #[test]
    fn file_and_sendmail() {
        assert_eq!(
            TransportSpec::parse("file:///var/spool/replies").expect("file"),
            TransportSpec::File {
                dir: "/var/spool/replies".into()
            }
        );
        assert_eq!(
            TransportSpec::parse("sendmail").expect("sendmail"),
            TransportSpec::Sendmail { command: None }
        );
        assert_eq!(
            TransportSpec::parse("sendmail:///usr/lib/sendmail").expect("sendmail"),
            TransportSpec::Sendmail {
                command: Some("/usr/lib/sendmail".into())
            }
        );
    }

    #[test]
    fn errors_name_the_key_and_hide_the_password() {
        for url in [
            "http://mx.example",
            "mx.example:25",
            "smtp://",
            "smtp://mx.example:0",
            "smtp://mx.example:99999",
            "smtp://mx.example/ehlo",
            "smtp://mx.example?tls=maybe",
            "smtp://mx.example?port=25",
            "smtps://mx.example?tls=none",
            "smtp://bob@mx.example",
            "smtp://bob:s3cret%zz@mx.example",
            "file://",
            "ftp://bob:s3cret@mx.example",
            "bob:s3cret@mx.example",
        ] {
            let text = err(url);
            assert!(text.starts_with("replies.transport: "), "{url}: {text}");
            assert!(!text.contains("s3cret"), "{url}: {text}");
        }
    }

    #[test]
    fn redaction_and_description() {
        assert_eq!(
            redact_url("smtp://bob:s3cret@mx.example:587"),
            "smtp://bob:***@mx.example:587"
        );
        assert_eq!(redact_url("smtp://mx.example"), "smtp://mx.example");
        assert_eq!(redact_url("bob:s3cret@mx"), "***@mx");
        assert_eq!(redact_url("file:///a:b@c"), "file:///a:b@c");
        let spec = TransportSpec::parse("smtp://bob:s3cret@mx.example:587").expect("smtp");
        let text = format!("{} {spec:?}", spec.describe());
        assert!(!text.contains("s3cret"), "{text}");
        assert_eq!(
            spec.describe(),
            "SMTP to mx.example:587 (STARTTLS required, authenticating as \"bob\")"
        );
    }
}
