//! What an alert recipient's address names: a phone number
//! (`+33601020304@…`, `06.01.02.03.04@…`) or a group (`oncall@…`), and why
//! a local part that looks like a number is not a valid one.

use crate::request::PhoneNumber;

/// What the local part of one recipient address names.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Local {
    /// Only digits, `+`, `.` and `-`: a phone number as written.
    Number(String),
    /// Anything else: a group name (or an `<envoi>` address), lowercased.
    Name(String),
}

/// The local part and the domain of `address` (split at its last `@`);
/// `None` when it has no `@`.
pub fn split(address: &str) -> Option<(&str, &str)> {
    address.rsplit_once('@')
}

/// Whether `domain` is one of `domains` (already lowercased).
pub fn is_ours(domain: &str, domains: &[String]) -> bool {
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    domains.contains(&domain)
}

/// What `local` names.
pub fn classify(local: &str) -> Local {
    if looks_like_number(local) {
        Local::Number(local.to_owned())
    } else {
        Local::Name(local.to_ascii_lowercase())
    }
}

/// A local part made only of digits, `+`, `.` and `-`, with at least one
/// digit: the sender meant a phone number.
pub fn looks_like_number(local: &str) -> bool {
    !local.is_empty()
        && local.bytes().any(|b| b.is_ascii_digit())
        && local
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'.' | b'-'))
}

/// `local` (which [`looks_like_number`]) as a phone number, national
/// numbers being read for `region`; else why it is not one, for the
/// `550 5.1.1` of RCPT.
pub fn number(local: &str, region: &str) -> Result<PhoneNumber, &'static str> {
    let plus = local.bytes().filter(|&b| b == b'+').count();
    if plus > 1 || (plus == 1 && !local.starts_with('+')) {
        return Err("a + may only start the number");
    }
    if let Ok(number) = PhoneNumber::parse(local, region) {
        return Ok(number);
    }
    let digits: String = local.chars().filter(char::is_ascii_digit).collect();
    let national = plus == 0 && digits.starts_with('0') && !digits.starts_with("00");
    let french = region.eq_ignore_ascii_case("FR");
    Err(match digits.len() {
        n if national && french && n < 10 => "too short",
        n if national && french && n > 10 => "too long",
        n if n < 8 => "too short",
        n if n > 15 => "too long",
        _ => "not a valid phone number",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_written_form_of_a_french_mobile_is_the_same_number() {
        for local in [
            "+33601020304",
            "0033601020304",
            "33601020304",
            "0601020304",
            "06.01.02.03.04",
            "06-01-02-03-04",
            "+33.6.01.02.03.04",
        ] {
            assert!(looks_like_number(local), "{local}");
            let n = number(local, "FR").unwrap_or_else(|e| panic!("{local}: {e}"));
            assert_eq!(n.as_str(), "+33601020304", "{local}");
        }
    }

    #[test]
    fn national_numbers_are_read_in_the_region() {
        assert_eq!(
            number("0791234567", "CH").expect("swiss mobile").as_str(),
            "+41791234567"
        );
        assert!(number("0791234567", "FR").is_ok_and(|n| n.as_str() == "+33791234567"));
    }

    #[test]
    fn an_invalid_number_says_why() {
        assert_eq!(number("0123", "FR").err(), Some("too short"));
        assert_eq!(number("060102030", "FR").err(), Some("too short"));
        assert_eq!(number("06010203045", "FR").err(), Some("too long"));
        assert_eq!(number("+3360102030411223344", "FR").err(), Some("too long"));
        assert_eq!(
            number("0033+601020304", "FR").err(),
            Some("a + may only start the number")
        );
        assert_eq!(
            number("++33601020304", "FR").err(),
            Some("a + may only start the number")
        );
        assert_eq!(
            number("+999601020304", "FR").err(),
            Some("not a valid phone number")
        );
    }

    #[test]
    fn only_digits_plus_dots_and_dashes_look_like_a_number() {
        assert!(!looks_like_number("oncall"));
        assert!(!looks_like_number("ops2"));
        assert!(!looks_like_number("06 01"));
        assert!(!looks_like_number("+-."));
        assert!(!looks_like_number(""));
        assert_eq!(classify("OnCall"), Local::Name("oncall".into()));
        assert_eq!(classify("06.01"), Local::Number("06.01".into()));
    }

    #[test]
    fn domains_are_compared_without_case() {
        let domains = vec!["sms.example.com".to_string()];
        assert!(is_ours("SMS.Example.com", &domains));
        assert!(is_ours("sms.example.com.", &domains));
        assert!(!is_ours("example.com", &domains));
        assert_eq!(split("a@b@sms.x"), Some(("a@b", "sms.x")));
        assert_eq!(split("nobody"), None);
    }
}
