//! Phone number normalisation: what the sender wrote in `<num>` or
//! `mobiles.csv` becomes an E.164 number, or the protocol code that refuses it.
//!
//! Accepted forms (separators space, tab, no-break space, `.`, `-`, `(`, `)`
//! and `/` are ignored):
//!
//! * `+<country code><number>` and `00<country code><number>`, any country;
//!   `+33 (0)6…` (the French habit of keeping the trunk `0`) is tolerated.
//! * For the default region `FR`: `0[1-9]` + 8 digits (national) and `33` + 9
//!   digits (international without `+`/`00`). National numbers of the
//!   overseas departments are mapped to their own country codes (libphonenumber
//!   would wrongly read `0696…` as `+33 696…`): see [`overseas`].
//! * For any other default region: that region's national format, as
//!   libphonenumber understands it.
//!
//! Validity is libphonenumber's, with one exception: the whole French `07`
//! block is a mobile block in the ARCEP numbering plan, but libphonenumber
//! lists only the allocated `073`–`079` ranges, and the spec's own example is
//! `0701020304`; so `+33 7` + 8 digits is accepted too (but for `+33 709`,
//! whose national form `0709…` belongs to the overseas departments).

use phonenumber::country;
use phonenumber::metadata::DATABASE;

use crate::codes::Code;

/// A phone number in E.164 form (`+33601020304`). It can only be built by
/// [`PhoneNumber::parse`], so holding one means the number is valid.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PhoneNumber {
    /// The E.164 text, `+` then digits; what providers are given.
    e164: String,
    /// The ISO region libphonenumber attributes the number to (for
    /// per-country rules such as allowed destinations); `None` for
    /// non-geographic numbers.
    region: Option<&'static str>,
}

impl PhoneNumber {
    /// Normalises `raw` as written by the sender, national numbers being read
    /// for `default_region` (an ISO code such as `"FR"`, any case).
    ///
    /// Empty (or separators only) gives [`Code::NO_NUMBER`]; anything that is
    /// not a valid number gives [`Code::BAD_NUMBER`].
    pub fn parse(raw: &str, default_region: &str) -> Result<PhoneNumber, Code> {
        let cleaned = strip_separators(raw).ok_or(Code::BAD_NUMBER)?;
        if cleaned.is_empty() {
            return Err(Code::NO_NUMBER);
        }
        let region = default_region.trim().to_ascii_uppercase();
        let international = to_international(&cleaned, &region)?;
        let number = match international {
            Some(plus) => phonenumber::parse(None, &plus),
            None => {
                let id: country::Id = region.parse().map_err(|_| Code::BAD_NUMBER)?;
                phonenumber::parse(Some(id), &cleaned)
            }
        }
        .map_err(|_| Code::BAD_NUMBER)?;
        if number.extension().is_some() {
            return Err(Code::BAD_NUMBER);
        }
        let e164 = number.format().to_string();
        if phonenumber::is_valid(&number) {
            let region = number.metadata(&DATABASE).map(|m| m.id()).filter(|id| {
                // "001" is libphonenumber's id for non-geographic entities.
                id.bytes().all(|b| b.is_ascii_uppercase())
            });
            Ok(PhoneNumber { e164, region })
        } else if is_french_07(&e164) {
            Ok(PhoneNumber {
                e164,
                region: DATABASE.by_id("FR").map(|m| m.id()),
            })
        } else {
            Err(Code::BAD_NUMBER)
        }
    }

    /// The E.164 text, e.g. `+33601020304`.
    pub fn as_str(&self) -> &str {
        &self.e164
    }

    /// The ISO region of the number (`"FR"`, `"MQ"`, `"CH"`…), if geographic.
    pub fn country(&self) -> Option<&'static str> {
        self.region
    }
}

impl std::fmt::Display for PhoneNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.e164)
    }
}

/// Whether `region` is an ISO region code libphonenumber knows (`"FR"`,
/// `"fr"`, `"RE"`…), for configuration checks.
pub fn is_valid_region(region: &str) -> bool {
    let upper = region.trim().to_ascii_uppercase();
    upper.len() == 2 && upper.parse::<country::Id>().is_ok() && DATABASE.by_id(&upper).is_some()
}

/// Forces libphonenumber's lazily loaded metadata (its first use takes a
/// noticeable time), so that it happens at start-up and not in the first
/// SMTP transaction. Says whether the metadata answered: a French mobile
/// read as its E.164 form.
pub fn warm_up() -> bool {
    PhoneNumber::parse("0601020304", "FR").is_ok_and(|n| n.as_str() == "+33601020304")
}

/// Removes the tolerated separators; `None` when something else than digits
/// (and one leading `+`) remains.
fn strip_separators(raw: &str) -> Option<String> {
    let mut out = String::with_capacity(raw.len());
    for c in raw.trim().chars() {
        match c {
            ' ' | '\t' | '\u{a0}' | '.' | '-' | '(' | ')' | '/' => {}
            '0'..='9' => out.push(c),
            '+' if out.is_empty() => out.push(c),
            _ => return None,
        }
    }
    if out == "+" {
        return None;
    }
    Some(out)
}

/// Rewrites the forms this module recognises itself into `+…` text.
/// `Ok(None)`: a national number of a non-French region, left to
/// libphonenumber.
fn to_international(digits: &str, region: &str) -> Result<Option<String>, Code> {
    let rest = if let Some(rest) = digits.strip_prefix('+') {
        rest
    } else if let Some(rest) = digits.strip_prefix("00") {
        rest
    } else if region == "FR" {
        return french_national(digits).map(Some);
    } else {
        return Ok(None);
    };
    // "+33 (0)6 01 02 03 04": drop the trunk 0 kept after the country code.
    let rest = match rest.strip_prefix("330") {
        Some(national) if national.len() == 9 => format!("33{national}"),
        _ => rest.to_owned(),
    };
    Ok(Some(format!("+{rest}")))
}

/// A French number written without `+`/`00`: `0[1-9]` + 8 digits, or `33` +
/// 9 digits.
fn french_national(digits: &str) -> Result<String, Code> {
    let bytes = digits.as_bytes();
    match bytes {
        [b'0', b'1'..=b'9', ..] if bytes.len() == 10 => Ok(match overseas(digits) {
            Some(code) => format!("+{code}{}", &digits[1..]),
            None => format!("+33{}", &digits[1..]),
        }),
        [b'3', b'3', ..] if bytes.len() == 11 => Ok(format!("+{digits}")),
        _ => Err(Code::BAD_NUMBER),
    }
}

/// The country code of an overseas department's national number (10 digits
/// with trunk `0`): these share the French numbering plan but are dialled
/// internationally with their own codes, and the number keeps its digits
/// after the trunk `0` (`0696123456` → `+596 696123456`).
fn overseas(national: &str) -> Option<&'static str> {
    const PREFIXES: &[(&str, &str)] = &[
        ("0590", "590"), // Guadeloupe, Saint-Martin, Saint-Barthélemy (fixed)
        ("0690", "590"), // … mobiles
        ("0691", "590"),
        ("0594", "594"), // French Guiana (fixed)
        ("0694", "594"), // … mobiles
        ("0596", "596"), // Martinique (fixed)
        ("0696", "596"), // … mobiles
        ("0697", "596"),
        ("0262", "262"), // Réunion (fixed)
        ("0692", "262"), // … mobiles
        ("0693", "262"),
        ("0269", "262"), // Mayotte (fixed)
        ("0639", "262"), // … mobiles
        // The 0709 mobile block, shared out in 2023 (libphonenumber has it).
        ("07090", "590"),  // Guadeloupe
        ("07091", "596"),  // Martinique
        ("07092", "262"),  // Réunion
        ("070930", "594"), // French Guiana
        ("070931", "594"),
        ("070932", "594"),
        ("070933", "594"),
        ("070935", "262"), // Mayotte
        ("070936", "262"),
        ("070937", "262"),
    ];
    PREFIXES
        .iter()
        .find(|(prefix, _)| national.starts_with(prefix))
        .map(|&(_, code)| code)
}

/// `+33 7` + 8 digits, except the overseas `0709` block: see the module
/// documentation.
fn is_french_07(e164: &str) -> bool {
    e164.strip_prefix("+337").is_some_and(|rest| {
        rest.len() == 8 && !rest.starts_with("09") && rest.bytes().all(|b| b.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fr(raw: &str) -> Result<String, Code> {
        PhoneNumber::parse(raw, "FR").map(|n| n.as_str().to_owned())
    }

    #[test]
    fn spec_examples_pass() {
        assert_eq!(fr("0601020304").as_deref(), Ok("+33601020304"));
        assert_eq!(fr("0601020305").as_deref(), Ok("+33601020305"));
        assert_eq!(fr("0701020304").as_deref(), Ok("+33701020304"));
    }

    #[test]
    fn french_forms_and_separators() {
        for raw in [
            "06 01 02 03 04",
            "06.01.02.03.04",
            "06-01-02-03-04",
            "+33601020304",
            "+33 6 01 02 03 04",
            "+33 (0)6 01 02 03 04",
            "0033601020304",
            "0033 (0)601020304",
            "33601020304",
            " 0601020304\t",
        ] {
            assert_eq!(fr(raw).as_deref(), Ok("+33601020304"), "{raw}");
        }
        assert_eq!(fr("01 42 68 53 00").as_deref(), Ok("+33142685300"));
        assert_eq!(fr("0612345678").as_deref(), Ok("+33612345678"));
        assert_eq!(fr("0780000000").as_deref(), Ok("+33780000000"));
    }

    #[test]
    fn international_numbers() {
        assert_eq!(fr("+41 79 123 45 67").as_deref(), Ok("+41791234567"));
        assert_eq!(fr("0041791234567").as_deref(), Ok("+41791234567"));
        assert_eq!(fr("+32 470 12 34 56").as_deref(), Ok("+32470123456"));
        let ch = PhoneNumber::parse("0041791234567", "FR").unwrap();
        assert_eq!(ch.country(), Some("CH"));
    }

    #[test]
    fn overseas_departments_national() {
        assert_eq!(fr("0696123456").as_deref(), Ok("+596696123456"));
        assert_eq!(fr("0697123456").as_deref(), Ok("+596697123456"));
        assert_eq!(fr("0596612345").as_deref(), Ok("+596596612345"));
        assert_eq!(fr("0690123456").as_deref(), Ok("+590690123456"));
        assert_eq!(fr("0691221234").as_deref(), Ok("+590691221234"));
        assert_eq!(fr("0590201234").as_deref(), Ok("+590590201234"));
        assert_eq!(fr("0694201234").as_deref(), Ok("+594694201234"));
        assert_eq!(fr("0594101234").as_deref(), Ok("+594594101234"));
        assert_eq!(fr("0692123456").as_deref(), Ok("+262692123456"));
        assert_eq!(fr("0693123456").as_deref(), Ok("+262693123456"));
        assert_eq!(fr("0262161234").as_deref(), Ok("+262262161234"));
        assert_eq!(fr("0639201234").as_deref(), Ok("+262639201234"));
        assert_eq!(fr("0709012345").as_deref(), Ok("+590709012345"));
        assert_eq!(fr("0709112345").as_deref(), Ok("+596709112345"));
        assert_eq!(fr("0709212345").as_deref(), Ok("+262709212345"));
        assert_eq!(fr("0709301234").as_deref(), Ok("+594709301234"));
        assert_eq!(fr("0709351234").as_deref(), Ok("+262709351234"));
        // Written as French numbers, they are not French.
        assert_eq!(fr("+33709012345"), Err(Code::BAD_NUMBER));
        assert_eq!(fr("0269601234").as_deref(), Ok("+262269601234"));
        let mq = PhoneNumber::parse("0696123456", "FR").unwrap();
        assert_eq!(mq.country(), Some("MQ"));
        let yt = PhoneNumber::parse("0639201234", "FR").unwrap();
        assert_eq!(yt.country(), Some("YT"));
        let re = PhoneNumber::parse("06 92 12 34 56", "FR").unwrap();
        assert_eq!(re.country(), Some("RE"));
        assert_eq!(
            PhoneNumber::parse("0601020304", "FR").unwrap().country(),
            Some("FR")
        );
        assert_eq!(
            PhoneNumber::parse("0701020304", "FR").unwrap().country(),
            Some("FR")
        );
    }

    #[test]
    fn other_default_region() {
        assert_eq!(
            PhoneNumber::parse("079 123 45 67", "CH").map(|n| n.as_str().to_owned()),
            Ok("+41791234567".to_owned())
        );
        assert_eq!(
            PhoneNumber::parse("0692123456", "re").map(|n| n.as_str().to_owned()),
            Ok("+262692123456".to_owned())
        );
    }

    #[test]
    fn empty_is_no_number() {
        assert_eq!(fr(""), Err(Code::NO_NUMBER));
        assert_eq!(fr("   "), Err(Code::NO_NUMBER));
        assert_eq!(fr(" . - "), Err(Code::NO_NUMBER));
    }

    #[test]
    fn invalid_is_bad_number() {
        for raw in [
            "abc",
            "06010203",
            "060102030405",
            "0001020304",
            "601020304",
            "+",
            "06 01 02 03 0x",
            "+33 6 01",
            "+99912345678",
            "33 1",
            "06+0102030",
            "0800",
        ] {
            assert_eq!(fr(raw), Err(Code::BAD_NUMBER), "{raw}");
        }
        assert_eq!(
            PhoneNumber::parse("0601020304", "ZZ"),
            Err(Code::BAD_NUMBER)
        );
    }

    #[test]
    fn regions() {
        assert!(is_valid_region("FR"));
        assert!(is_valid_region("fr"));
        assert!(is_valid_region("MQ"));
        assert!(!is_valid_region("ZZ"));
        assert!(!is_valid_region("FRA"));
        assert!(!is_valid_region(""));
        assert!(!is_valid_region("001"));
    }

    #[test]
    fn warm_up_loads_working_metadata() {
        assert!(
            warm_up(),
            "the sample number did not parse after warming up"
        );
    }
}
