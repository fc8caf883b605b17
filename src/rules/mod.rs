//! Per-account rules, enforced by mail2sms itself before any SMS leaves.
//!
//! When an email arrives (before anything is stored): who may send for an
//! account, the sender id (code 33), destination countries (27), the text's
//! encoding, STOP mention and segment cap (999), commercial quiet hours in
//! `reject` mode (24) and the sending limits (29, [`volume`]). Right before
//! each send (`dispatch`): quiet hours in `defer` mode, the opt-out list
//! (11) and credits (12), since those can change while an SMS waits.

pub mod account;
pub mod volume;

use crate::codes::Code;
use crate::gsm;
use crate::logsafe::Safe;
pub use account::{AccountConfig, UnicodeMode};

pub use crate::address::Mailbox;

/// Whether `address` (a bare address, see [`address`]) may send for an
/// account whose `senders` list is `allowed`: an exact address, or a whole
/// `@domain` (that domain exactly, not its subdomains), compared without
/// ASCII case. Something that is not exactly one mailbox is allowed by no
/// rule; so is a rule that is not one.
pub fn sender_allowed(allowed: &[String], address: &str) -> bool {
    let Some(sender) = Mailbox::parse(address) else {
        tracing::debug!(address = %Safe(address), "sender is not one mailbox address");
        return false;
    };
    allowed.iter().any(|rule| match rule.strip_prefix('@') {
        Some(domain) => sender.in_domain(domain),
        None => Mailbox::parse(rule).is_some_and(|rule| sender.same_as(&rule)),
    })
}

/// Whether `rule` can allow anyone: one mailbox address, or `@` and a
/// domain that addresses can have (see [`address`]); for the configuration's
/// validation of `senders`.
pub fn valid_sender_rule(rule: &str) -> bool {
    match rule.strip_prefix('@') {
        Some(domain) => crate::address::is_domain(domain),
        None => Mailbox::parse(rule).is_some(),
    }
}

/// A recipient refused by a rule: the code etatNot reports and why, in
/// words, for the store and the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The annex code.
    pub code: Code,
    /// What exactly was wrong.
    pub detail: String,
}

impl Refusal {
    /// A refusal with its code and reason.
    pub fn new(code: Code, detail: impl Into<String>) -> Refusal {
        Refusal {
            code,
            detail: detail.into(),
        }
    }
}

/// Checks a sender id against spec §4: 4 to 11 ASCII letters and digits,
/// not only digits. The error says what is wrong.
pub fn check_sender_id(id: &str) -> Result<(), &'static str> {
    let len = id.chars().count();
    if !(4..=11).contains(&len) {
        return Err("a sender id has 4 to 11 characters");
    }
    if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("a sender id has only letters and digits (no space, no accent)");
    }
    if id.bytes().all(|b| b.is_ascii_digit()) {
        return Err("a sender id cannot be only digits");
    }
    Ok(())
}

/// The sender id an email's SMS go out with: its `<emetteur>` if valid and
/// allowed (else code 33), or the account's `default_sender_id`. An empty
/// `<emetteur>` counts as absent.
pub fn sender_id(
    account: &AccountConfig,
    emetteur: Option<&str>,
) -> Result<Option<String>, Refusal> {
    match emetteur.map(str::trim).filter(|e| !e.is_empty()) {
        None => Ok(account.default_sender_id.clone()),
        Some(id) => {
            if let Err(reason) = check_sender_id(id) {
                Err(Refusal::new(
                    Code::SENDER_NOT_ALLOWED,
                    format!("<emetteur> `{}`: {reason}", Safe(id)),
                ))
            } else if !account.sender_ids.is_empty() && !account.sender_ids.iter().any(|s| s == id)
            {
                Err(Refusal::new(
                    Code::SENDER_NOT_ALLOWED,
                    format!(
                        "<emetteur> `{}` is not one of the account's sender ids ({})",
                        Safe(id),
                        account.sender_ids.join(", ")
                    ),
                ))
            } else {
                Ok(Some(id.to_string()))
            }
        }
    }
}

/// Whether `country` (the number's ISO region) may be sent to.
pub fn country_allowed(account: &AccountConfig, country: Option<&str>) -> bool {
    match &account.countries {
        None => true,
        Some(allowed) => country.is_some_and(|c| allowed.iter().any(|a| a.eq_ignore_ascii_case(c))),
    }
}

/// What a request asks of its texts, beyond the account's settings.
#[derive(Debug, Clone, Copy, Default)]
pub struct TextOptions {
    /// A sender id is used (the STOP mention goes with custom sender ids).
    pub has_sender_id: bool,
    /// `<nostop>1</nostop>`.
    pub nostop: bool,
    /// `<smslong>`: the most segments the sender wants.
    pub smslong: Option<u32>,
}

/// The text as it will be sent: transliterated if the account says so,
/// with the STOP mention for commercial traffic with a sender id (unless
/// `<nostop>` and the account allows it), and within the segment cap
/// (`<smslong>`, never above `max_segments`); a text that needs more is
/// refused (code 999), never cut.
pub fn prepare_text(
    account: &AccountConfig,
    text: &str,
    options: TextOptions,
) -> Result<String, Refusal> {
    let mut text = match account.unicode {
        UnicodeMode::Auto => text.to_string(),
        UnicodeMode::Transliterate => gsm::transliterate(text),
    };
    if account.commercial
        && options.has_sender_id
        && !(options.nostop && account.nostop_allowed)
        && let Some(stop) = account.stop_text.as_deref().map(str::trim)
        && !stop.is_empty()
    {
        let stop = match account.unicode {
            UnicodeMode::Auto => stop.to_string(),
            UnicodeMode::Transliterate => gsm::transliterate(stop),
        };
        if !text.ends_with(&stop) {
            if !text.is_empty() && !text.ends_with([' ', '\n']) {
                text.push(' ');
            }
            text.push_str(&stop);
        }
    }
    let cap = options
        .smslong
        .map_or(account.max_segments, |n| n.min(account.max_segments));
    let segments = gsm::segments(&text);
    if segments.count > cap {
        let (encoding, unit) = match segments.encoding {
            gsm::Encoding::Gsm7 => ("GSM-7", "septets"),
            gsm::Encoding::Ucs2 => ("UCS-2", "UTF-16 units"),
        };
        let limit = match options.smslong {
            Some(n) if n < account.max_segments => format!("<smslong> {n}"),
            _ => format!("max_segments {}", account.max_segments),
        };
        return Err(Refusal::new(
            Code::INTERNAL,
            format!(
                "text too long: {} segments ({encoding}, {} {unit}), limit {cap} ({limit}); not sent, never cut",
                segments.count, segments.units
            ),
        ));
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::account::QuietHours;
    use super::*;

    fn account() -> AccountConfig {
        AccountConfig {
            keyid: "k".into(),
            senders: vec!["@a.fr".into()],
            providers: vec!["p".into()],
            region: "FR".into(),
            default_sender_id: None,
            sender_ids: Vec::new(),
            unicode: UnicodeMode::Auto,
            max_segments: 6,
            commercial: false,
            stop_text: None,
            nostop_allowed: false,
            quiet_hours: QuietHours::Reject,
            countries: None,
            credits: false,
            max_per_minute: None,
            max_per_day: None,
            networks: None,
            alerts: false,
            groups: Default::default(),
            groups_file: None,
            alert_template: None,
            alert_dedup_secs: 3600,
            alert_max_per_hour: None,
            alert_failure_notice: true,
        }
    }

    #[test]
    fn sender_ids_follow_spec_section_4() {
        for ok in ["MaSociete", "MaSoc", "ABCD", "MaSociete71", "1234A"] {
            assert_eq!(check_sender_id(ok), Ok(()), "{ok}");
        }
        for bad in [
            "ABC",
            "MaSociete123",
            "Ma Societe",
            "Société",
            "12345678",
            "Ma-Soc",
            "",
        ] {
            assert!(check_sender_id(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn emetteur_else_default_and_the_allowed_list() {
        let mut a = account();
        assert_eq!(sender_id(&a, None), Ok(None));
        assert_eq!(sender_id(&a, Some("Other1")), Ok(Some("Other1".into())));
        assert_eq!(
            sender_id(&a, Some("12345")).unwrap_err().code,
            Code::SENDER_NOT_ALLOWED
        );
        let e = sender_id(&a, Some("Way too long id")).unwrap_err();
        assert_eq!(e.code, Code::SENDER_NOT_ALLOWED);
        assert!(e.detail.contains("4 to 11"), "{e:?}");
        a.default_sender_id = Some("MaSociete".into());
        a.sender_ids = vec!["MaSociete".into(), "MaSoc".into()];
        assert_eq!(sender_id(&a, None), Ok(Some("MaSociete".into())));
        assert_eq!(sender_id(&a, Some("  ")), Ok(Some("MaSociete".into())));
        assert_eq!(sender_id(&a, Some("MaSoc")), Ok(Some("MaSoc".into())));
        let e = sender_id(&a, Some("Other1")).unwrap_err();
        assert_eq!(e.code, Code::SENDER_NOT_ALLOWED);
        assert!(e.detail.contains("MaSociete, MaSoc"), "{e:?}");
    }

    #[test]
    fn countries() {
        let mut a = account();
        assert!(country_allowed(&a, Some("US")));
        assert!(country_allowed(&a, None));
        a.countries = Some(vec!["FR".into(), "be".into()]);
        assert!(country_allowed(&a, Some("FR")));
        assert!(country_allowed(&a, Some("BE")));
        assert!(!country_allowed(&a, Some("CH")));
        assert!(!country_allowed(&a, None));
    }

    fn opts(has_sender_id: bool, nostop: bool, smslong: Option<u32>) -> TextOptions {
        TextOptions {
            has_sender_id,
            nostop,
            smslong,
        }
    }

    #[test]
    fn stop_mention_for_commercial_traffic_with_a_sender_id() {
        let mut a = account();
        a.commercial = true;
        a.stop_text = Some("STOP SMS au 36111".into());
        let t = |a: &AccountConfig, o| prepare_text(a, "Promo -10%", o).unwrap();
        assert_eq!(
            t(&a, opts(true, false, None)),
            "Promo -10% STOP SMS au 36111"
        );
        // No sender id: the operator's short code is shown, no STOP needed.
        assert_eq!(t(&a, opts(false, false, None)), "Promo -10%");
        // nostop only counts for accounts allowed to use it.
        assert_eq!(
            t(&a, opts(true, true, None)),
            "Promo -10% STOP SMS au 36111"
        );
        a.nostop_allowed = true;
        assert_eq!(t(&a, opts(true, true, None)), "Promo -10%");
        // Not commercial: nothing appended.
        a.commercial = false;
        assert_eq!(t(&a, opts(true, false, None)), "Promo -10%");
    }

    #[test]
    fn spec_141_characters_plus_stop_fit_one_sms() {
        let mut a = account();
        a.commercial = true;
        a.stop_text = Some("STOP SMS au 36111".into());
        let text = "x".repeat(141);
        let sent = prepare_text(&a, &text, opts(true, false, Some(1))).unwrap();
        assert_eq!(sent.chars().count(), 159);
        assert_eq!(
            prepare_text(&a, &"x".repeat(143), opts(true, false, Some(1))).map_err(|e| e.code),
            Err(Code::INTERNAL)
        );
    }

    #[test]
    fn segment_cap_from_smslong_never_above_max_segments() {
        let mut a = account();
        a.max_segments = 2;
        let two = "x".repeat(306);
        let three = "x".repeat(307);
        assert!(prepare_text(&a, &two, TextOptions::default()).is_ok());
        assert_eq!(
            prepare_text(&a, &three, TextOptions::default()).map_err(|e| e.code),
            Err(Code::INTERNAL)
        );
        assert_eq!(
            prepare_text(&a, &two, opts(false, false, Some(1))).map_err(|e| e.code),
            Err(Code::INTERNAL)
        );
        assert_eq!(
            prepare_text(&a, &three, opts(false, false, Some(5))).map_err(|e| e.code),
            Err(Code::INTERNAL)
        );
        // UCS-2 counts 70/67.
        a.max_segments = 1;
        assert!(prepare_text(&a, &"é".repeat(160), TextOptions::default()).is_ok());
        assert!(prepare_text(&a, &"ê".repeat(70), TextOptions::default()).is_ok());
        assert_eq!(
            prepare_text(&a, &"ê".repeat(71), TextOptions::default()).map_err(|e| e.code),
            Err(Code::INTERNAL)
        );
    }

    #[test]
    fn transliteration_keeps_the_text_in_gsm7() {
        let mut a = account();
        a.max_segments = 1;
        a.unicode = UnicodeMode::Transliterate;
        let text = "Noël à 50€ — ça coûte “peu”".to_string() + &"x".repeat(120);
        let sent = prepare_text(&a, &text, TextOptions::default()).unwrap();
        assert!(sent.starts_with("Noel à 50€ - ca coute \"peu\""), "{sent}");
        assert!(gsm::is_gsm7(&sent));
        // In auto mode the same text is UCS-2 and needs 3 segments.
        a.unicode = UnicodeMode::Auto;
        assert_eq!(
            prepare_text(&a, &text, TextOptions::default()).map_err(|e| e.code),
            Err(Code::INTERNAL)
        );
    }

    fn rules() -> Vec<String> {
        vec!["ops@masociete.com".into(), "@filiale.fr".into()]
    }

    #[test]
    fn exact_address_any_case() {
        assert!(sender_allowed(&rules(), "OPS@MaSociete.com"));
        assert!(!sender_allowed(&rules(), "other@masociete.com"));
    }

    #[test]
    fn whole_domain_but_not_subdomains_or_lookalikes() {
        assert!(sender_allowed(&rules(), "anyone@filiale.fr"));
        assert!(sender_allowed(&rules(), "x@FILIALE.FR"));
        assert!(!sender_allowed(&rules(), "x@evil-filiale.fr"));
        assert!(!sender_allowed(&rules(), "x@sub.filiale.fr"));
        assert!(!sender_allowed(&rules(), "filiale.fr"));
        assert!(!sender_allowed(&rules(), ""));
    }

    fn acme() -> Vec<String> {
        vec!["@acme.test".into(), "boss@corp.test".into()]
    }

    /// Issue 8: `evil@evil.test@acme.test` passed an `@acme.test` rule (the
    /// text after the last `@` was compared); hostile forms pass no rule.
    #[test]
    fn hostile_senders_pass_no_rule() {
        for hostile in [
            "evil@evil.test@acme.test",
            "evil@acme.test.evil.test",
            "evil@sub.acme.test",
            "@acme.test",
            "acme.test",
            "<ops@acme.test>",
            "ops@acme.test.",
            "ops@acme.test\r\n",
            "ops\r\n@acme.test",
            "ops@acme\r\n.test",
            "evil@x@boss@corp.test",
            "boss@corp.test@evil.test",
            "\"boss@corp.test\"@evil.test",
            "boss@corp.test\0",
        ] {
            assert!(!sender_allowed(&acme(), hostile), "{hostile:?}");
        }
    }

    /// Issue 8: a quoted local part holding `@` is a mailbox at the domain
    /// after its closing quote: `"evil@x"@acme.test` is at acme.test.
    #[test]
    fn quoted_local_part_is_at_its_real_domain() {
        assert!(sender_allowed(&acme(), "\"evil@x\"@acme.test"));
        assert!(sender_allowed(&acme(), "\"boss\"@Corp.Test"));
        assert!(!sender_allowed(&acme(), "\"boss@corp.test\"@corp.test"));
    }

    /// A rule that is not an address or a domain allows nothing, and a
    /// domain rule does not allow the bare domain.
    #[test]
    fn malformed_rules_allow_nothing() {
        let rules: Vec<String> = vec!["evil@x@acme.test".into(), "@".into(), "@acme.test.".into()];
        for rule in &rules {
            assert!(!valid_sender_rule(rule), "{rule}");
        }
        for rule in [
            "@acme.test",
            "ops@acme.test",
            "\"o p\"@acme.test",
            "@localhost",
        ] {
            assert!(valid_sender_rule(rule), "{rule}");
        }
        assert!(!sender_allowed(&rules, "evil@x@acme.test"));
        assert!(!sender_allowed(&rules, "x@acme.test"));
    }

    /// Issue 8: a client's `<emetteur>` is escaped in the refusal detail,
    /// which is stored and logged.
    #[test]
    fn refusal_detail_escapes_the_emetteur() {
        let e = sender_id(&account(), Some("Ma\r\nSoc")).unwrap_err();
        assert!(!e.detail.contains(['\r', '\n']), "{}", e.detail);
        assert!(e.detail.contains("Ma\\r\\nSoc"), "{}", e.detail);
    }
}
