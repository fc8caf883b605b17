//! The accounts, found by keyid.

use crate::rules::AccountConfig;
use std::hash::BuildHasher;
use std::sync::Arc;

/// An account as the pipeline needs it.
#[derive(Debug)]
pub(super) struct Account {
    /// Its name in the config (the store's key).
    pub(super) name: String,
    /// Its settings (shared with the blocking pool for big requests).
    pub(super) config: Arc<AccountConfig>,
}

/// The accounts, found by keyid without a timing leak: each keyid is kept
/// as a keyed hash (std's `RandomState`, SipHash with random per-process
/// keys), and a lookup compares the hash of the given keyid with every
/// account's, without stopping at the first match (issue 8). Not `Debug`:
/// it holds the keyids.
pub(super) struct Keyring {
    /// The keyed hash function.
    hasher: std::collections::hash_map::RandomState,
    /// Each account with its keyid's hash and its keyid (checked once the
    /// hash matched).
    accounts: Vec<(u64, String, Arc<Account>)>,
}

impl Keyring {
    /// The keyring of these accounts (keyids trimmed, as the pipeline
    /// trims the `<keyid>` it reads).
    pub(super) fn new<'a>(
        accounts: impl IntoIterator<Item = (&'a String, &'a AccountConfig)>,
    ) -> Keyring {
        let hasher = std::collections::hash_map::RandomState::new();
        let accounts = accounts
            .into_iter()
            .map(|(name, a)| {
                let keyid = a.keyid.trim().to_string();
                let account = Account {
                    name: name.clone(),
                    config: Arc::new(a.clone()),
                };
                (hasher.hash_one(&keyid), keyid, Arc::new(account))
            })
            .collect();
        Keyring { hasher, accounts }
    }

    /// The accounts by name (the same ones the keyids find).
    pub(super) fn by_name(&self) -> std::collections::BTreeMap<String, Arc<Account>> {
        self.accounts
            .iter()
            .map(|(_, _, account)| (account.name.clone(), account.clone()))
            .collect()
    }

    /// The account of `keyid` (trimmed).
    pub(super) fn get(&self, keyid: &str) -> Option<&Arc<Account>> {
        let keyid = keyid.trim();
        let hash = self.hasher.hash_one(keyid);
        // Every entry is looked at: the time does not depend on which
        // one matches, or on how much of a hash matches.
        let found =
            self.accounts.iter().fold(
                None,
                |found, entry| if entry.0 == hash { Some(entry) } else { found },
            );
        found.filter(|entry| entry.1 == keyid).map(|entry| &entry.2)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rules::AccountConfig;

    /// An account with this keyid.
    fn account(keyid: &str) -> AccountConfig {
        let toml = format!("keyid = {keyid:?}\nsenders = []\nproviders = []");
        toml::from_str(&toml).expect("account")
    }

    /// Issue 8: keyids are found through their keyed hash, trimmed, and
    /// only whole: a prefix, a longer key or another case is unknown.
    #[test]
    fn keyring_finds_whole_keyids_only() {
        let accounts: std::collections::BTreeMap<String, AccountConfig> = [
            ("a".to_string(), account(" a296464ce012b8ab710a ")),
            ("b".to_string(), account("b0b0b0b0b0b0b0b0b0b0")),
        ]
        .into_iter()
        .collect();
        let keyring = Keyring::new(&accounts);
        let name = |keyid: &str| keyring.get(keyid).map(|a| a.name.clone());
        assert_eq!(name("a296464ce012b8ab710a").as_deref(), Some("a"));
        assert_eq!(name("\tb0b0b0b0b0b0b0b0b0b0 ").as_deref(), Some("b"));
        for unknown in [
            "a296464ce012b8ab710",
            "a296464ce012b8ab710a0",
            "A296464CE012B8AB710A",
            "",
        ] {
            assert_eq!(name(unknown), None, "{unknown:?}");
        }
    }
}
