//! The reply emails of the iSendPro protocol (spec §5 "Réponses par e-mail"):
//! `etatAck` (was the email processed?) and `etatNot` (what happened to each
//! SMS), rendered from operator-editable templates and encoded in ISO-8859-1
//! as their XML declaration says; and the failure notice of an alert
//! (issue 10). All are sent with a null envelope sender, over SMTP,
//! sendmail or into a directory of `.eml` files.
//!
//! - [`config`]: the `[replies]` table.
//! - [`render`]: the templates and the XML they produce.
//! - [`xml`]: the escaping every template value goes through.
//! - [`latin1`]: the ISO-8859-1 encoding of the rendered text.
//! - [`message`]: the MIME message around it.
//! - [`dsn`]: the failure notice of an alert (RFC 3464), not templated.
//! - [`transport`]: parsing `replies.transport`.
//! - [`sendmail`]: the `sendmail` transport, with a null envelope sender.
//! - [`spool`]: the `file://` transport's atomic writes.
//! - [`mailer`]: sending one reply.
//! - [`sender`]: the task that sends the queued replies, with retries.
//! - [`error`]: what can go wrong, and whether retrying can help.

pub mod config;
pub mod dsn;
pub mod error;
pub mod latin1;
pub mod mailer;
pub mod message;
pub mod render;
pub mod sender;
pub mod sendmail;
pub mod spool;
pub mod transport;
pub mod xml;

#[cfg(test)]
mod smtp_sink;

pub use crate::store::{Etat, ReplyContent};
pub use config::RepliesConfig;
pub use error::ReplyError;
pub use latin1::to_latin1;
pub use mailer::Mailer;
pub use render::Templates;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::AckCode;

    #[test]
    fn email_id_defaults_to_question_mark() {
        let body = ReplyContent::Ack {
            email_id: None,
            code: AckCode::MissingEmailId,
        };
        assert_eq!(body.email_id(), "?");
        assert_eq!(body.kind(), "etatAck");
        let body = ReplyContent::Not {
            email_id: Some("1548".into()),
            etats: Vec::new(),
        };
        assert_eq!(body.email_id(), "1548");
        assert_eq!(body.kind(), "etatNot");
    }
}
