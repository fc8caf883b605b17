//! Everything that can go wrong while configuring, rendering or sending a
//! reply, and whether trying again later can help.

use std::path::PathBuf;

use crate::logsafe::Safe;

/// An error of the replies module.
///
/// No variant carries the SMTP password: configuration errors only quote the
/// transport URL through [`redact_url`](super::transport::redact_url).
#[derive(thiserror::Error, Debug)]
pub enum ReplyError {
    /// A `[replies]` key has an unusable value; `key` is the full key name
    /// (e.g. `replies.transport`) so the operator knows what to fix.
    #[error("{key}: {reason}")]
    Config {
        /// The configuration key, e.g. `replies.transport`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A template override could not be read.
    #[error("template {}: {source}", path.display())]
    TemplateRead {
        /// The file that could not be read.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A template does not parse, or fails to render.
    #[error("template {file}: {source}")]
    Template {
        /// The file the template came from (a path, or "embedded etat_ack.xml").
        file: String,
        /// MiniJinja's diagnosis, with line number.
        source: minijinja::Error,
    },
    /// The recipient address (`emailAck` / `emailNot`) is not an address.
    #[error("invalid recipient address {:?}: {source}", Safe(address))]
    Recipient {
        /// The address as given.
        address: String,
        /// Why lettre refused it.
        source: lettre::address::AddressError,
    },
    /// The reply id cannot name a file or a Message-ID.
    #[error("invalid reply id {0:?}: it must not be empty")]
    Id(String),
    /// The message could not be assembled.
    #[error("building the reply: {0}")]
    Build(#[from] lettre::error::Error),
    /// The SMTP server refused the reply or could not be talked to.
    #[error("smtp: {0}")]
    Smtp(#[from] lettre::transport::smtp::Error),
    /// Writing the `.eml` file failed.
    #[error("writing {}: {source}", path.display())]
    File {
        /// The file or directory being written.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A header line of the reply would be longer than RFC 5322 allows
    /// (998 octets) even after folding: sending it would be refused or
    /// mangled downstream. The value is not quoted (it may be a megabyte).
    #[error("the {header} header would be a {octets}-octet line (the limit is 998)")]
    HeaderTooLong {
        /// The header's name, e.g. `To`.
        header: String,
        /// The length of its longest line.
        octets: usize,
    },
    /// A reply that is not made from a template (a failure notice) was
    /// given to the templates.
    #[error("a {0} reply has no template")]
    NotTemplated(&'static str),
    /// The sendmail command could not be run, or failed.
    #[error("sendmail: {0}")]
    SendmailCommand(String),
    /// The delivery took longer than `replies.timeout_secs`.
    #[error("delivery timed out after {0} s")]
    Timeout(u64),
}

impl ReplyError {
    /// Trying again later may succeed: the network, the server's 4xx, a
    /// full disk, a slow sendmail. Exactly one of `is_transient` and
    /// [`is_permanent`](Self::is_permanent) is true.
    pub fn is_transient(&self) -> bool {
        match self {
            ReplyError::Smtp(e) => !e.is_permanent(),
            ReplyError::SendmailCommand(_) | ReplyError::File { .. } | ReplyError::Timeout(_) => {
                true
            }
            ReplyError::Config { .. }
            | ReplyError::TemplateRead { .. }
            | ReplyError::Template { .. }
            | ReplyError::Recipient { .. }
            | ReplyError::Id(_)
            | ReplyError::Build(_)
            | ReplyError::NotTemplated(_)
            | ReplyError::HeaderTooLong { .. } => false,
        }
    }

    /// Trying again will fail the same way: an SMTP 5xx, a bad address, a
    /// broken template or configuration.
    pub fn is_permanent(&self) -> bool {
        !self.is_transient()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        let io = ReplyError::File {
            path: "/x".into(),
            source: std::io::Error::other("disk full"),
        };
        assert!(io.is_transient() && !io.is_permanent());
        assert!(ReplyError::Timeout(30).is_transient());
        let bad = "not an address"
            .parse::<lettre::Address>()
            .expect_err("invalid");
        let rcpt = ReplyError::Recipient {
            address: "not an address".into(),
            source: bad,
        };
        assert!(rcpt.is_permanent() && !rcpt.is_transient());
        let config = ReplyError::Config {
            key: "replies.from",
            reason: "empty".into(),
        };
        assert!(config.is_permanent());
        assert_eq!(config.to_string(), "replies.from: empty");
    }
}
