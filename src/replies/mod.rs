//! The reply emails of the iSendPro protocol (spec §5 "Réponses par e-mail"):
//! `etatAck` (was the email processed?) and `etatNot` (what happened to each
//! SMS), rendered from operator-editable templates, encoded in ISO-8859-1 as
//! their XML declaration says, and sent over SMTP, sendmail or into a
//! directory of `.eml` files.
//!
//! - [`config`]: the `[replies]` table.
//! - [`render`]: the templates and the XML they produce.
//! - [`xml`]: the escaping every template value goes through.
//! - [`latin1`]: the ISO-8859-1 encoding of the rendered text.
//! - [`message`]: the MIME message around it.
//! - [`transport`]: parsing `replies.transport`.
//! - [`spool`]: the `file://` transport's atomic writes.
//! - [`mailer`]: sending one reply.
//! - [`sender`]: the task that sends the queued replies, with retries.
//! - [`error`]: what can go wrong, and whether retrying can help.

pub mod config;
pub mod error;
pub mod latin1;
pub mod mailer;
pub mod message;
pub mod render;
pub mod sender;
pub mod spool;
pub mod transport;
pub mod xml;

#[cfg(test)]
mod smtp_sink;

pub use config::RepliesConfig;
pub use error::ReplyError;
pub use latin1::to_latin1;
pub use mailer::Mailer;
pub use render::Templates;

use crate::codes::{AckCode, Code};

/// One recipient's outcome, as reported in `etatNot`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Etat {
    /// The annex code of the outcome; its message is `Code::message()`.
    pub code: Code,
    /// The phone number as the sender wrote it, so they can match the line
    /// to their request.
    pub tel: String,
}

/// What a reply says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyBody {
    /// `etatAck`, sent to `emailAck`.
    Ack {
        /// The request's `emailId`; `None` renders as `?`.
        email_id: Option<String>,
        /// Whether the email was processed.
        code: AckCode,
    },
    /// `etatNot`, sent to `emailNot`.
    Not {
        /// The request's `emailId`; `None` renders as `?`.
        email_id: Option<String>,
        /// One outcome per recipient, in the request's order.
        etats: Vec<Etat>,
    },
}

impl ReplyBody {
    /// The `emailId` as the reply writes it: the value, or `?` when absent.
    pub fn email_id(&self) -> &str {
        let (ReplyBody::Ack { email_id, .. } | ReplyBody::Not { email_id, .. }) = self;
        email_id.as_deref().unwrap_or("?")
    }

    /// The root element's name, `etatAck` or `etatNot` (also the subject's
    /// first word).
    pub fn kind(&self) -> &'static str {
        match self {
            ReplyBody::Ack { .. } => "etatAck",
            ReplyBody::Not { .. } => "etatNot",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_id_defaults_to_question_mark() {
        let body = ReplyBody::Ack {
            email_id: None,
            code: AckCode::MissingEmailId,
        };
        assert_eq!(body.email_id(), "?");
        assert_eq!(body.kind(), "etatAck");
        let body = ReplyBody::Not {
            email_id: Some("1548".into()),
            etats: Vec::new(),
        };
        assert_eq!(body.email_id(), "1548");
        assert_eq!(body.kind(), "etatNot");
    }
}
