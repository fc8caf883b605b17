//! What became of one email, as SMTP and `mail2sms deliver` tell it.

use super::NOT_AUTHORIZED;

/// What became of one email.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Stored; its SMS are queued (possibly none, if every number was bad or
    /// the request was refused as a whole: etatNot says so).
    Queued {
        /// The request's id.
        request_id: i64,
        /// SMS queued.
        jobs: usize,
    },
    /// Same (account, emailId) as an earlier email: etatAck code 1, no SMS.
    Duplicate {
        /// The repeated emailId.
        email_id: String,
    },
    /// An alert whose Message-ID the account accepted within
    /// `alert_dedup_secs` (an MTA retrying): `250`, no SMS (issue 10).
    AlertRetry {
        /// The repeated Message-ID.
        message_id: String,
    },
    /// No emailId: etatAck code 2, no SMS.
    NoEmailId,
    /// Not a request we can read (`550 5.6.0`).
    Unreadable(String),
    /// Unknown keyid or sender not allowed (`550 5.7.1`, always
    /// [`NOT_AUTHORIZED`]); no reply email, since answering unauthenticated
    /// mail would be backscatter.
    Unauthorized,
    /// Not authorized, and `smtp.unauthorized = "discard"`: `250` as if
    /// accepted (behind an MTA a `550` bounces to a possibly forged
    /// sender), nothing stored or sent; logged and counted.
    Discarded,
    /// The store could not commit (`451 4.3.0`): the sender retries later.
    Unavailable(String),
    /// The memory budget cannot take the request now (`451 4.3.1`): the
    /// sender retries later.
    Busy(String),
}

impl Verdict {
    /// The SMTP reply: code, enhanced status, text.
    pub fn smtp_reply(&self) -> (u16, &'static str, String) {
        match self {
            Verdict::Queued { request_id, jobs } => (
                250,
                "2.0.0",
                format!("Ok: queued as {request_id} ({jobs} SMS)"),
            ),
            Verdict::Duplicate { email_id } => {
                let shown: String = email_id.chars().take(64).collect();
                (
                    250,
                    "2.0.0",
                    format!("Ok: emailId {shown} already processed, nothing sent (etatAck 1)"),
                )
            }
            Verdict::AlertRetry { message_id } => {
                let shown: String = message_id.chars().take(64).collect();
                (
                    250,
                    "2.0.0",
                    format!("Ok: message {shown} already accepted, nothing sent again"),
                )
            }
            Verdict::NoEmailId => (
                250,
                "2.0.0",
                "Ok: no emailId, nothing sent (etatAck 2)".to_string(),
            ),
            Verdict::Discarded => (250, "2.0.0", "Ok".to_string()),
            Verdict::Unreadable(reason) => (550, "5.6.0", reason.clone()),
            Verdict::Unauthorized => (550, "5.7.1", NOT_AUTHORIZED.to_string()),
            Verdict::Unavailable(reason) => (451, "4.3.0", reason.clone()),
            Verdict::Busy(reason) => (451, "4.3.1", reason.clone()),
        }
    }

    /// The `sysexits.h` exit code for `mail2sms deliver`.
    pub fn exit_code(&self) -> u8 {
        match self {
            Verdict::Queued { .. }
            | Verdict::Duplicate { .. }
            | Verdict::AlertRetry { .. }
            | Verdict::NoEmailId
            | Verdict::Discarded => 0,
            Verdict::Unreadable(_) => 65, // EX_DATAERR
            Verdict::Unauthorized => 77,  // EX_NOPERM
            Verdict::Unavailable(_) | Verdict::Busy(_) => 75, // EX_TEMPFAIL
        }
    }
}
