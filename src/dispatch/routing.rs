//! Which providers an SMS goes through, in failover order: the providers
//! of the longest `[[routes]]` prefix matching its number, then the
//! account's own list (without repeating a provider).

use crate::rules::AccountConfig;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::collections::HashMap;

/// A `[[routes]]` entry: numbers starting with `prefix` go through
/// `providers` first.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// The start of the E.164 number, with its `+` (e.g. `+41`, `+336`).
    pub prefix: String,
    /// Provider names, in failover order; the account's providers follow.
    pub providers: Vec<String>,
}

impl RouteConfig {
    /// Checks the prefix's form; the error is (key, reason).
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        let digits = self.prefix.strip_prefix('+').unwrap_or("");
        if digits.is_empty() || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err((
                "prefix",
                format!("`{}` is not a number prefix like +41", self.prefix),
            ));
        }
        if self.providers.is_empty() {
            return Err(("providers", "at least one provider is needed".into()));
        }
        Ok(())
    }
}

/// The provider lists, precomputed per account and route.
#[derive(Debug, Default)]
pub struct Routing {
    /// Per account: (prefix, list) longest prefix first, then the account's
    /// default list under the empty prefix.
    accounts: HashMap<String, Vec<(String, Vec<String>)>>,
}

impl Routing {
    /// Builds the lists from the accounts and routes (already validated).
    pub fn new(accounts: &BTreeMap<String, AccountConfig>, routes: &[RouteConfig]) -> Routing {
        let mut routes: Vec<&RouteConfig> = routes.iter().collect();
        routes.sort_by_key(|r| std::cmp::Reverse(r.prefix.len()));
        let accounts = accounts
            .iter()
            .map(|(name, account)| {
                let mut lists: Vec<(String, Vec<String>)> = routes
                    .iter()
                    .map(|route| {
                        let mut list = Vec::new();
                        for p in route.providers.iter().chain(&account.providers) {
                            if !list.contains(p) {
                                list.push(p.clone());
                            }
                        }
                        (route.prefix.clone(), list)
                    })
                    .collect();
                lists.push((String::new(), account.providers.clone()));
                (name.clone(), lists)
            })
            .collect();
        Routing { accounts }
    }

    /// The providers, in failover order, for an SMS of `account` to
    /// `number` (E.164); `None` for an unknown account.
    pub fn providers(&self, account: &str, number: &str) -> Option<&[String]> {
        self.accounts
            .get(account)?
            .iter()
            .find(|(prefix, _)| number.starts_with(prefix.as_str()))
            .map(|(_, list)| list.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use std::path::Path;

    fn config(routes: &str) -> Config {
        let text = format!(
            "[replies]\nfrom = \"a@b.c\"\ntransport = \"file:///tmp/r\"\n\
             [accounts.acme]\nkeyid = \"k\"\nsenders = [\"@a.fr\"]\nproviders = [\"fr\", \"backup\"]\n\
             [providers.fr]\ntype = \"outbox\"\npath = \"/tmp/a\"\n\
             [providers.backup]\ntype = \"outbox\"\npath = \"/tmp/b\"\n\
             [providers.nox]\ntype = \"outbox\"\npath = \"/tmp/c\"\n{routes}"
        );
        Config::parse(&text, Path::new("t")).unwrap()
    }

    #[test]
    fn longest_prefix_first_then_the_account_list() {
        let c = config(
            "[[routes]]\nprefix = \"+41\"\nproviders = [\"nox\"]\n\
             [[routes]]\nprefix = \"+4179\"\nproviders = [\"backup\", \"nox\"]\n",
        );
        let r = Routing::new(&c.accounts, &c.routes);
        assert_eq!(
            r.providers("acme", "+33601020304").unwrap(),
            ["fr", "backup"]
        );
        assert_eq!(
            r.providers("acme", "+41221234567").unwrap(),
            ["nox", "fr", "backup"]
        );
        assert_eq!(
            r.providers("acme", "+41791234567").unwrap(),
            ["backup", "nox", "fr"]
        );
        assert!(r.providers("nobody", "+33601020304").is_none());
    }

    #[test]
    fn routes_are_validated() {
        for (route, key) in [
            ("prefix = \"41\"\nproviders = [\"nox\"]", "routes[0].prefix"),
            (
                "prefix = \"+4a\"\nproviders = [\"nox\"]",
                "routes[0].prefix",
            ),
            ("prefix = \"+41\"\nproviders = []", "routes[0].providers"),
            (
                "prefix = \"+41\"\nproviders = [\"nope\"]",
                "routes[0].providers",
            ),
            (
                "prefix = \"+41\"\nproviders = [\"nox\"]\nweight = 1",
                "weight",
            ),
        ] {
            let text = format!(
                "[replies]\nfrom = \"a@b.c\"\ntransport = \"file:///tmp/r\"\n\
                 [accounts.acme]\nkeyid = \"k\"\nsenders = [\"@a.fr\"]\nproviders = [\"nox\"]\n\
                 [providers.nox]\ntype = \"outbox\"\npath = \"/tmp/c\"\n[[routes]]\n{route}\n"
            );
            let e = Config::parse(&text, Path::new("t"))
                .unwrap_err()
                .to_string();
            assert!(e.contains(key), "{key}: {e}");
        }
    }
}
