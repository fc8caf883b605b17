//! The account's rules over a built request, recipient by recipient, and
//! its sending limits (code 29).

use super::keyring::Account;
use crate::calendar;
use crate::codes::Code;
use crate::logsafe::Safe;
use crate::request::{self, PhoneNumber, RawRecipient, Recipient};
use crate::rules::AccountConfig;
use crate::rules::account::QuietHours;
use crate::rules::{self, Refusal, TextOptions};
use crate::store::NewMessage;
use jiff::Timestamp;

/// The refusal of every recipient, if any: a sender id that is not allowed
/// (33), or commercial traffic in quiet hours (24) for accounts that
/// reject it.
pub(super) fn refusal_of_all(
    config: &AccountConfig,
    sender_id: &Result<Option<String>, Refusal>,
    now: Timestamp,
) -> Option<Refusal> {
    match sender_id {
        Err(refusal) => Some(refusal.clone()),
        Ok(_)
            if config.commercial
                && config.quiet_hours == QuietHours::Reject
                && calendar::is_quiet(now) =>
        {
            Some(Refusal::new(
                Code::QUIET_HOURS,
                format!(
                    "commercial SMS in quiet hours ({} Paris time; quiet_hours = \"reject\")",
                    now.to_zoned(calendar::paris().clone())
                        .strftime("%A %Y-%m-%d %H:%M")
                ),
            ))
        }
        Ok(_) => None,
    }
}

/// The recipients' numbers resolved for the account's region and each
/// checked against its rules, in order.
pub(super) fn check_recipients(
    config: &AccountConfig,
    recipients: Vec<RawRecipient>,
    refuse_all: Option<&Refusal>,
    options: TextOptions,
) -> Vec<NewMessage> {
    request::resolve(recipients, &config.region)
        .into_iter()
        .map(|r| check_recipient(config, r, refuse_all, options))
        .collect()
}

/// One recipient checked: its number and prepared text, or the refusal.
fn check_recipient(
    config: &AccountConfig,
    r: Recipient,
    refuse_all: Option<&Refusal>,
    options: TextOptions,
) -> NewMessage {
    let mut text = r.text;
    let checked = match r.number {
        Err(code) => Err(Refusal::new(code, code.message())),
        Ok(n) => check_number(config, &n, refuse_all).and_then(|number| {
            text = rules::prepare_text(config, &text, options)?;
            Ok(number)
        }),
    };
    let (number, detail) = match checked {
        Ok(n) => (Ok(n), None),
        Err(refusal) => (Err(refusal.code), Some(refusal.detail)),
    };
    NewMessage {
        tel: r.tel,
        number,
        text,
        duplicate_of: r.duplicate_of,
        detail,
    }
}

/// A valid number as the account's rules see it: refused with every
/// recipient, or for its country.
fn check_number(
    config: &AccountConfig,
    n: &PhoneNumber,
    refuse_all: Option<&Refusal>,
) -> Result<String, Refusal> {
    if let Some(refusal) = refuse_all {
        return Err(refusal.clone());
    }
    if !rules::country_allowed(config, n.country()) {
        return Err(Refusal::new(
            Code::COUNTRY_NOT_ALLOWED,
            format!(
                "destination country {} is not in the account's countries",
                n.country().unwrap_or("unknown")
            ),
        ));
    }
    Ok(n.as_str().to_string())
}

/// Refuses with code 29 the SMS of `messages` beyond the `taken` first
/// sendable ones.
pub(super) fn refuse_over_limit(account: &Account, messages: &mut [NewMessage], taken: usize) {
    let limit = |n: Option<u32>| n.map_or("none".into(), |n| n.to_string());
    let detail = format!(
        "over the account's sending limit (max_per_minute {}, max_per_day {})",
        limit(account.config.max_per_minute),
        limit(account.config.max_per_day)
    );
    let over: Vec<usize> = sendable(messages).skip(taken).collect();
    for i in over {
        messages[i].number = Err(Code::OVERFLOW);
        messages[i].detail = Some(detail.clone());
    }
}

/// The positions of the SMS `messages` would queue, in order.
pub(super) fn sendable(messages: &[NewMessage]) -> impl Iterator<Item = usize> + '_ {
    messages
        .iter()
        .enumerate()
        .filter(|(_, m)| m.number.is_ok() && m.duplicate_of.is_none())
        .map(|(i, _)| i)
}

/// Logs the rule refusals of a request: one line per distinct reason, with
/// how many recipients it refused (a 100 000-line mobiles.csv must not log
/// 100 000 lines).
pub(super) fn log_refusals(account: &str, email_id: Option<&str>, messages: &[NewMessage]) {
    let mut reasons: std::collections::BTreeMap<(u16, &str), usize> = Default::default();
    for m in messages {
        if let (Err(code), Some(detail)) = (&m.number, &m.detail) {
            *reasons.entry((code.0, detail.as_str())).or_default() += 1;
        }
    }
    for ((code, detail), count) in reasons {
        let email_id = email_id.map(Safe);
        tracing::info!(account, email_id = ?email_id, code, count, detail = %Safe(detail), "recipients refused");
    }
}
