//! The first stages: read the request's head, check who may send, then
//! admit what building the request will take into the memory budget.

use super::keyring::{Account, Keyring};
use super::{KEYID_SHOWN, Verdict};
use crate::logsafe::Safe;
use crate::mail::{self, ParsedMail};
use crate::request::{Envelope, Expansion, Limits, Readers, RequestHead};
use crate::rules;
use crate::smtp::{GrowError, Share};
use std::sync::Arc;

/// Copies of all numbers and texts that live at once while a request is
/// built and checked ([`Expansion::text_bytes`]): the recipients as
/// written, and as checked (`rules::prepare_text` copies each text).
const TEXT_COPIES: usize = 2;

/// More copies of the longest text ([`Expansion::longest_text`]): the
/// store binds and writes one text at a time (measured: one 24 MB `<sms>`
/// took about 6 × 24 MB beyond its parsing, in all).
const LONGEST_TEXT_COPIES: usize = 4;

/// Bytes of memory each recipient takes beyond its number and text while
/// its request is built, checked and stored (measured: a 100 000-line
/// `mobiles.csv` peaked at about 130 MB).
const RECIPIENT_COST: usize = 1024;

/// What reading a request needs, shared with the blocking pool (big
/// messages are read there).
pub(super) struct Ingress {
    /// Accounts by keyid.
    pub(super) keyring: Keyring,
    /// The kinds of request we read, tried in order.
    pub(super) readers: Readers,
    /// What one email may ask for.
    pub(super) limits: Limits,
}

/// What is known of an email once its account and sender are checked.
pub(super) struct Admitted {
    /// The email's account.
    pub(super) account: Arc<Account>,
    /// The checked sender: the `From:` address, else the envelope's.
    pub(super) sender: String,
    /// The email as parsed, attachments included.
    pub(super) mail: ParsedMail,
    /// What its reader read before the account was checked.
    pub(super) head: Box<dyn RequestHead>,
    /// What building the request takes at most.
    pub(super) bound: Expansion,
}

impl Ingress {
    /// Reads the headers and the request's head of `raw`, checks who may
    /// send, and only then reads the attachments (issue 8: a stranger costs
    /// no attachment decoding). The error is the verdict.
    pub(super) fn admit(&self, raw: &[u8], envelope: &Envelope) -> Result<Admitted, Verdict> {
        let (mut mail, mime) = mail::read(raw).map_err(|e| unreadable(&e))?;
        let head = self
            .readers
            .head(envelope, &mail)
            .map_err(|e| unreadable(&e))?;
        let (account, sender) = self.authorize(head.as_ref(), &mail, envelope)?;
        mail.attachments = mime.attachments();
        let bound = head.expansion_bound(&mail, &self.limits);
        Ok(Admitted {
            account,
            sender,
            mail,
            head,
            bound,
        })
    }

    /// Who may send: the account the request names, and a sender that
    /// account allows (else [`Verdict::Unauthorized`], the same for both).
    fn authorize(
        &self,
        head: &dyn RequestHead,
        mail: &ParsedMail,
        envelope: &Envelope,
    ) -> Result<(Arc<Account>, String), Verdict> {
        let keyid = head.keyid().unwrap_or_default();
        let Some(account) = self.keyring.get(keyid) else {
            let shown: String = keyid.trim().chars().take(KEYID_SHOWN).collect();
            tracing::info!(keyid = %Safe(&shown), "refused: unknown keyid");
            return Err(Verdict::Unauthorized);
        };
        // The From: header is who the request claims to come from; the
        // envelope only stands in when there is none.
        let sender = mail.from.as_deref().unwrap_or(&envelope.mail_from);
        if !rules::sender_allowed(&account.config.senders, sender) {
            tracing::info!(account = %account.name, sender = %Safe(sender), "refused: sender not allowed for the keyid");
            return Err(Verdict::Unauthorized);
        }
        Ok((account.clone(), sender.to_owned()))
    }
}

/// A request that cannot be read (`550 5.6.0`), saying why.
fn unreadable(e: &dyn std::fmt::Display) -> Verdict {
    Verdict::Unreadable(e.to_string())
}

/// Grows `share` of the SMTP byte budget by what building a request of
/// `bound` takes, or says why it cannot (issue 8).
pub(super) fn reserve(
    share: &mut Share,
    account: &Account,
    bound: Expansion,
) -> Result<(), Verdict> {
    let needed = TEXT_COPIES
        .saturating_mul(bound.text_bytes)
        .saturating_add(LONGEST_TEXT_COPIES.saturating_mul(bound.longest_text))
        .saturating_add(RECIPIENT_COST.saturating_mul(bound.recipients));
    let Err(e) = share.try_grow(needed) else {
        return Ok(());
    };
    tracing::warn!(account = %account.name, needed, error = %e, "request too large to build now");
    Err(match e {
        GrowError::Busy => Verdict::Busy(format!("request too large to build now: {e}")),
        GrowError::OverLimit { limit } => Verdict::Unreadable(format!(
            "request too large: building it would take more than the {limit} bytes \
             of smtp.max_buffered_bytes (mobiles.csv lines x message text); \
             send fewer lines per email"
        )),
    })
}
