//! Per-account rules applied to a request before anything is stored.
//!
//! For now: who may send for an account. (Segments, sender ids, quiet hours
//! and credits come with the rules issue.)

/// Whether `address` may send for an account whose `senders` list is
/// `allowed`: an exact address or a whole `@domain`, compared without case.
pub fn sender_allowed(allowed: &[String], address: &str) -> bool {
    let address = address.trim().trim_start_matches('<').trim_end_matches('>');
    let Some((_, domain)) = address.rsplit_once('@') else {
        return false;
    };
    allowed.iter().any(|rule| match rule.strip_prefix('@') {
        Some(d) => d.eq_ignore_ascii_case(domain),
        None => rule.eq_ignore_ascii_case(address),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert!(sender_allowed(&rules(), "<x@FILIALE.FR>"));
        assert!(!sender_allowed(&rules(), "x@evil-filiale.fr"));
        assert!(!sender_allowed(&rules(), "x@sub.filiale.fr"));
        assert!(!sender_allowed(&rules(), "filiale.fr"));
        assert!(!sender_allowed(&rules(), ""));
    }
}
