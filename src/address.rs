//! Sender addresses read as addresses (issue 8): `evil@evil.test@acme.test`
//! must not pass an `@acme.test` rule because its text ends that way.
//!
//! The address is a bare RFC 5321 mailbox, `local-part@domain`, as the SMTP
//! envelope and the `From:` header's parsed address give it (no display name,
//! no angle brackets: whoever extracts it removes them). Decisions:
//! * the local part is a dot-atom (`first.last+tag`, non-ASCII letters allowed
//!   as SMTPUTF8 does) or a quoted string, in which `@` and spaces are
//!   allowed: `"evil@x"@acme.test` is a valid mailbox *at acme.test* and so
//!   passes an `@acme.test` rule (what the local part means is that domain's
//!   business);
//! * the domain is dot-separated labels of letters, digits and `-`; no empty
//!   label, so no trailing dot (RFC 5321 has none: `ops@acme.test.` is
//!   refused), no address literal (`[192.0.2.1]`);
//! * an empty local part or domain, a second unquoted `@`, a space outside
//!   quotes, a control character anywhere, or more than 254 characters (the
//!   SMTP path limit) is not an address, and is allowed by no rule.
//!
//! Comparisons: the domain exactly, ignoring ASCII case (`sub.acme.test` is
//! not `acme.test`); the local part by its value (`"ops"` is `ops`), also
//! ignoring ASCII case: RFC 5321 lets the receiving domain treat it as
//! case-sensitive, but no mail system does, and rules were always compared
//! that way.

use std::borrow::Cow;

/// The longest address: the 254 characters an SMTP path can carry (RFC 5321
/// §4.5.3.1.3, 256 with its angle brackets).
pub const MAX_ADDRESS_CHARS: usize = 254;

/// One mailbox, as read from a bare address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mailbox<'a> {
    /// The local part's value: a dot-atom as written, a quoted string without
    /// its quotes and escapes; what full-address rules compare.
    pub local: Cow<'a, str>,
    /// The domain as written; what `@domain` rules compare.
    pub domain: &'a str,
}

impl<'a> Mailbox<'a> {
    /// Reads `address` as one mailbox; `None` if it is not exactly one.
    pub fn parse(address: &'a str) -> Option<Mailbox<'a>> {
        if address.chars().count() > MAX_ADDRESS_CHARS {
            return None;
        }
        let (local, rest) = if address.starts_with('"') {
            quoted_local(address)
        } else {
            let (local, rest) = address.split_once('@')?;
            is_dot_atom(local).then_some((Cow::Borrowed(local), rest))
        }?;
        if local.is_empty() || !is_domain(rest) {
            return None;
        }
        Some(Mailbox {
            local,
            domain: rest,
        })
    }

    /// Whether this mailbox is in `domain` (exactly, ignoring ASCII case).
    pub fn in_domain(&self, domain: &str) -> bool {
        self.domain.eq_ignore_ascii_case(domain)
    }

    /// Whether both are the same mailbox (ignoring ASCII case).
    pub fn same_as(&self, other: &Mailbox<'_>) -> bool {
        self.in_domain(other.domain) && self.local.eq_ignore_ascii_case(&other.local)
    }
}

/// A quoted local part at the start of `address` (which starts with `"`):
/// its value and what follows its `@`. Quoted pairs (`\"`, `\\`) stand for
/// their second character; control characters are refused, even escaped.
fn quoted_local(address: &str) -> Option<(Cow<'_, str>, &str)> {
    let mut value = String::new();
    let mut chars = address.char_indices().skip(1);
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => {
                let rest = address[i + 1..].strip_prefix('@')?;
                return Some((Cow::Owned(value), rest));
            }
            '\\' => {
                let (_, escaped) = chars.next()?;
                if escaped.is_control() {
                    return None;
                }
                value.push(escaped);
            }
            c if c.is_control() => return None,
            c => value.push(c),
        }
    }
    None
}

/// Whether `local` is a dot-atom: atoms of `atext` joined by single dots.
fn is_dot_atom(local: &str) -> bool {
    local
        .split('.')
        .all(|atom| !atom.is_empty() && atom.chars().all(is_atext))
}

/// RFC 5322 `atext`, plus non-ASCII characters other than controls and
/// spaces (RFC 6531).
fn is_atext(c: char) -> bool {
    if c.is_ascii() {
        c.is_ascii_alphanumeric() || "!#$%&'*+-/=?^_`{|}~".contains(c)
    } else {
        !c.is_control() && !c.is_whitespace()
    }
}

/// Whether `domain` is dot-separated non-empty labels of letters (non-ASCII
/// ones too, for internationalised names), digits and `-`; at most 254
/// characters, like the address.
pub(crate) fn is_domain(domain: &str) -> bool {
    domain
        .split('.')
        .all(|label| !label.is_empty() && label.chars().all(|c| c.is_alphanumeric() || c == '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(address: &str) -> Option<(String, &str)> {
        Mailbox::parse(address).map(|m| (m.local.into_owned(), m.domain))
    }

    #[test]
    fn plain_addresses() {
        assert_eq!(
            parts("Jean.Dupont+sms@MaSociete.com"),
            Some(("Jean.Dupont+sms".to_owned(), "MaSociete.com"))
        );
        assert_eq!(
            parts("élodie@société.fr"),
            Some(("élodie".to_owned(), "société.fr"))
        );
        assert_eq!(parts("a@b"), Some(("a".to_owned(), "b")));
    }

    /// Issue 8: the quoted local part is one value; its `@` is not the
    /// address's.
    #[test]
    fn quoted_local_parts() {
        assert_eq!(
            parts("\"evil@x\"@acme.test"),
            Some(("evil@x".to_owned(), "acme.test"))
        );
        assert_eq!(
            parts("\"a \\\"b\\\\\"@acme.test"),
            Some(("a \"b\\".to_owned(), "acme.test"))
        );
        assert_eq!(
            parts("\"ops\"@acme.test"),
            Some(("ops".to_owned(), "acme.test"))
        );
        for bad in [
            "\"\"@acme.test",
            "\"open@acme.test",
            "\"a\"b@acme.test",
            "\"a\"@x@acme.test",
            "\"a\r\nb\"@acme.test",
            "\"a\\\0\"@acme.test",
        ] {
            assert_eq!(parts(bad), None, "{bad:?}");
        }
    }

    /// Issue 8: hostile forms are not addresses at all.
    #[test]
    fn hostile_forms_are_not_addresses() {
        for bad in [
            "evil@evil.test@acme.test",
            "@acme.test",
            "acme.test",
            "ops@",
            "",
            "@",
            "<ops@acme.test>",
            "Ops <ops@acme.test>",
            " ops@acme.test",
            "ops@acme.test ",
            "o ps@acme.test",
            "ops@acme.test\r\n",
            "ops\r\n@acme.test",
            "ops@acme.test\r\nX-Forged: 1",
            "ops@acme\0.test",
            "ops@acme.test.",
            "ops@.acme.test",
            "ops@acme..test",
            ".ops@acme.test",
            "o..ps@acme.test",
            "ops.@acme.test",
            "ops@[192.0.2.1]",
            "ops@acme.test,evil@evil.test",
            "ops@acme.test;evil.test",
        ] {
            assert_eq!(parts(bad), None, "{bad:?}");
        }
        let long = format!("{}@acme.test", "a".repeat(MAX_ADDRESS_CHARS));
        assert_eq!(parts(&long), None);
    }

    #[test]
    fn comparisons_ignore_ascii_case_only_where_meant() {
        let m = Mailbox::parse("OPS@Acme.Test").unwrap();
        assert!(m.in_domain("acme.test"));
        assert!(!m.in_domain("acme.test."));
        assert!(!m.in_domain("test"));
        assert!(m.same_as(&Mailbox::parse("ops@ACME.test").unwrap()));
        assert!(m.same_as(&Mailbox::parse("\"ops\"@acme.test").unwrap()));
        assert!(!m.same_as(&Mailbox::parse("ops2@acme.test").unwrap()));
        assert!(!m.same_as(&Mailbox::parse("ops@sub.acme.test").unwrap()));
    }
}
