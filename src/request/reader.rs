//! The ingress seam: what reaches the pipeline ([`Envelope`] plus the
//! parsed email) and the one interface through which a request is read out
//! of it ([`RequestReader`], then [`RequestHead`]).
//!
//! Reading is two steps, in this order (issue 8): [`RequestReader::head`]
//! reads only what names the account, so nothing costly is done for a
//! stranger; once the account and sender are checked, the pipeline admits
//! [`RequestHead::expansion_bound`] into its memory budget and only then
//! calls [`RequestHead::build`]. `<envoi>` ([`EnvoiReader`]) is the first
//! reader; another kind of request is another implementation, added to
//! [`Readers::standard`].

use std::net::IpAddr;

use jiff::Timestamp;

use std::sync::Arc;

use super::alert::{AlertBook, AlertReader};
use super::{Expansion, Head, Limits, Request, RequestError};
use crate::mail::ParsedMail;

/// How one email reached us, whichever way it came (SMTP or
/// `mail2sms deliver`): who handed it over and to whom it is addressed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Envelope {
    /// The client's IP address, so that an account can be limited to its
    /// networks; `None` for a message handed over locally (`deliver`).
    pub client: Option<IpAddr>,
    /// The name the client gave in HELO/EHLO, for logs; `None` when there
    /// was no SMTP dialogue.
    pub helo: Option<String>,
    /// The SMTP AUTH user, which names an account without a keyid; `None`
    /// when the client did not authenticate (always, until AUTH exists).
    pub auth_user: Option<String>,
    /// The reverse-path (`MAIL FROM`, `deliver -f`), `""` for `<>`: the
    /// sender checked when the message has no `From:` header.
    pub mail_from: String,
    /// Every recipient (`RCPT TO`, `deliver`'s arguments), in order: what
    /// a reader that takes its numbers from the addresses reads.
    pub recipients: Vec<String>,
}

/// What building a request knows beyond the email: the operator's bounds,
/// and, once who may send was checked, the account and the time.
#[derive(Clone, Copy, Debug)]
pub struct BuildContext<'a> {
    /// What one email may ask for.
    pub limits: Limits,
    /// The name of the account the request was admitted for (an alert is
    /// read with its account's region, groups and template).
    pub account: &'a str,
    /// When the email was received (an alert without `Date:` is dated so).
    pub received: Timestamp,
}

/// One kind of request an email can hold (`<envoi>`, …): the first step of
/// reading it.
pub trait RequestReader: Send + Sync {
    /// Reads the part of the request that names its account, and nothing
    /// costly (attachments are not read yet). An error for which
    /// [`RequestError::is_absent`] holds means "not this kind of request":
    /// the next reader is tried.
    fn head(
        &self,
        envelope: &Envelope,
        mail: &ParsedMail,
    ) -> Result<Box<dyn RequestHead>, RequestError>;
}

/// What a [`RequestReader`] read before the account is checked; the rest
/// of the request is built from it.
pub trait RequestHead: Send {
    /// The keyid the request names its account with, if it has one; the
    /// pipeline refuses a request that names no account it knows.
    fn keyid(&self) -> Option<&str>;

    /// Upper bounds of what [`RequestHead::build`] makes of the request
    /// with `mail`'s attachments, admitted into the memory budget before
    /// building. Linear in the input, allocates (almost) nothing.
    fn expansion_bound(&self, mail: &ParsedMail, limits: &Limits) -> Expansion;

    /// The whole request, attachments read, for the account of `context`.
    fn build(
        self: Box<Self>,
        mail: &ParsedMail,
        context: &BuildContext<'_>,
    ) -> Result<Request, RequestError>;
}

/// The `<envoi>` block of the body (and its attachments).
#[derive(Clone, Copy, Debug, Default)]
pub struct EnvoiReader;

impl RequestReader for EnvoiReader {
    fn head(
        &self,
        _envelope: &Envelope,
        mail: &ParsedMail,
    ) -> Result<Box<dyn RequestHead>, RequestError> {
        Ok(Box::new(super::head(mail)?))
    }
}

impl RequestHead for Head {
    fn keyid(&self) -> Option<&str> {
        Some(&self.keyid)
    }

    fn expansion_bound(&self, mail: &ParsedMail, limits: &Limits) -> Expansion {
        super::expansion_bound(self, mail, limits)
    }

    fn build(
        self: Box<Self>,
        mail: &ParsedMail,
        context: &BuildContext<'_>,
    ) -> Result<Request, RequestError> {
        super::build(*self, mail, &context.limits)
    }
}

/// The request readers, tried in order.
pub struct Readers {
    /// Each kind of request we read; the first one that finds its kind of
    /// request in an email reads it.
    readers: Vec<Box<dyn RequestReader>>,
}

impl Readers {
    /// These readers, tried in this order.
    pub fn new(readers: Vec<Box<dyn RequestReader>>) -> Readers {
        Readers { readers }
    }

    /// The readers of the protocol: `<envoi>` first (a body with
    /// `<envoi>` is read as such whatever its recipients), then alert mail
    /// for the accounts of `alerts`.
    pub fn standard(alerts: Arc<AlertBook>) -> Readers {
        Readers::new(vec![
            Box::new(EnvoiReader),
            Box::new(AlertReader::new(alerts)),
        ])
    }

    /// The head of the first reader that finds its kind of request in
    /// `mail`; when none does, the last reader's reason.
    pub fn head(
        &self,
        envelope: &Envelope,
        mail: &ParsedMail,
    ) -> Result<Box<dyn RequestHead>, RequestError> {
        let mut absent = RequestError::NoEnvoi;
        for reader in &self.readers {
            match reader.head(envelope, mail) {
                Err(e) if e.is_absent() => absent = e,
                read => return read,
            }
        }
        Err(absent)
    }
}

impl std::fmt::Debug for Readers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readers")
            .field("readers", &self.readers.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A mail with this body.
    fn mail(text: &str) -> ParsedMail {
        ParsedMail {
            text: text.to_string(),
            ..ParsedMail::default()
        }
    }

    /// The standard readers without alert accounts.
    fn standard() -> Readers {
        let book = AlertBook::new(Vec::new(), &[]);
        Readers::standard(Arc::new(book))
    }

    /// A reader that takes every email, naming this keyid.
    struct Everything(&'static str);

    impl RequestReader for Everything {
        fn head(
            &self,
            _envelope: &Envelope,
            mail: &ParsedMail,
        ) -> Result<Box<dyn RequestHead>, RequestError> {
            let mut head = super::super::head(&crate::mail::ParsedMail {
                text: format!("<envoi><keyid>{}</keyid></envoi>", self.0),
                ..mail.clone()
            })?;
            head.keyid = self.0.to_string();
            Ok(Box::new(head))
        }
    }

    /// A reader that finds its kind of request only for mail to a
    /// recipient, and says why it found none.
    struct ToRecipients;

    impl RequestReader for ToRecipients {
        fn head(
            &self,
            envelope: &Envelope,
            _mail: &ParsedMail,
        ) -> Result<Box<dyn RequestHead>, RequestError> {
            match envelope.recipients.first() {
                Some(_) => Err(RequestError::MissingKeyid),
                None => Err(RequestError::HtmlOnly),
            }
        }
    }

    #[test]
    fn the_envoi_reader_reads_the_keyid_and_builds_the_request() {
        let mail = mail("<envoi><keyid>k1</keyid><num>0601020304</num><sms>hi</sms></envoi>");
        let head = standard().head(&Envelope::default(), &mail).expect("head");
        assert_eq!(head.keyid(), Some("k1"));
        let limits = Limits::default();
        assert_eq!(head.expansion_bound(&mail, &limits).recipients, 1);
        let context = BuildContext {
            limits,
            account: "a",
            received: Timestamp::UNIX_EPOCH,
        };
        let request = head.build(&mail, &context).expect("request");
        assert_eq!(request.keyid, "k1");
        assert_eq!(request.recipients.expect("recipients").len(), 1);
    }

    #[test]
    fn readers_are_tried_in_order_until_one_finds_its_kind() {
        let readers = Readers::new(vec![Box::new(EnvoiReader), Box::new(Everything("other"))]);
        let envoi = mail("<envoi><keyid>k1</keyid></envoi>");
        let head = readers.head(&Envelope::default(), &envoi).expect("envoi");
        assert_eq!(head.keyid(), Some("k1"));
        let plain = mail("disk full on host1");
        let head = readers.head(&Envelope::default(), &plain).expect("next");
        assert_eq!(head.keyid(), Some("other"));
    }

    #[test]
    fn an_error_other_than_absent_stops_at_its_reader() {
        let readers = Readers::new(vec![Box::new(EnvoiReader), Box::new(Everything("other"))]);
        let broken = mail("<envoi><num>0601020304</num></envoi>");
        let err = readers.head(&Envelope::default(), &broken).err();
        assert_eq!(err, Some(RequestError::MissingKeyid));
    }

    #[test]
    fn when_no_reader_finds_a_request_the_last_reason_is_given() {
        let readers = Readers::new(vec![Box::new(EnvoiReader), Box::new(ToRecipients)]);
        let plain = mail("disk full on host1");
        let err = readers.head(&Envelope::default(), &plain).err();
        assert_eq!(err, Some(RequestError::HtmlOnly));
        let to = Envelope {
            recipients: vec!["oncall@sms.example.com".into()],
            ..Envelope::default()
        };
        assert_eq!(
            readers.head(&to, &plain).err(),
            Some(RequestError::MissingKeyid)
        );
        assert_eq!(
            standard().head(&Envelope::default(), &plain).err(),
            Some(RequestError::NoEnvoi)
        );
    }
}
