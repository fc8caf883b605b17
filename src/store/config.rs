//! The `[store]` table: which backend holds the data, and how it writes.

use serde::Deserialize;
use std::fmt;
use std::path::{Path, PathBuf};

/// The `[store]` table of the config.
#[derive(Debug, Clone, Deserialize)]
#[serde(try_from = "RawStoreConfig")]
pub struct StoreConfig {
    /// Where the data lives: `url = "sqlite://PATH"` (`path = "PATH"` is a
    /// synonym); the SQLite file's directory is created if missing.
    pub url: StoreUrl,
    /// How long a write waits for a lock held by another process (e.g.
    /// `mail2sms deliver` next to the daemon) before giving up with `451`.
    pub busy_timeout_ms: u64,
    /// The most operations committed in one transaction (group commit).
    pub max_batch: usize,
    /// Days a finished request (all SMS and replies settled) is kept; its
    /// emailId is refused as a duplicate for that long. 0 keeps everything
    /// forever (the spec's "an emailId is processed once").
    pub retention_days: u64,
}

impl StoreConfig {
    /// The default settings over a SQLite file.
    pub fn sqlite(path: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            url: StoreUrl::Sqlite(path.into()),
            ..StoreConfig::default()
        }
    }
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            url: StoreUrl::Sqlite(PathBuf::from("mail2sms-data/mail2sms.db")),
            busy_timeout_ms: 5_000,
            max_batch: 512,
            retention_days: 0,
        }
    }
}

/// A backend and its location, read from `store.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreUrl {
    /// The embedded SQLite database in this file.
    Sqlite(PathBuf),
}

impl StoreUrl {
    /// Reads `sqlite://PATH` (or `sqlite:PATH`): `sqlite:///var/lib/x.db` is
    /// absolute, `sqlite://data/x.db` relative to the working directory.
    pub fn parse(url: &str) -> Result<StoreUrl, String> {
        let Some((scheme, rest)) = url.split_once(':') else {
            return Err(format!(
                "`{url}` is not a URL like sqlite:///var/lib/mail2sms/mail2sms.db"
            ));
        };
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() || path.contains('?') || path == ":memory:" {
                    return Err(format!(
                        "`{url}`: a SQLite store needs a file path, without parameters"
                    ));
                }
                Ok(StoreUrl::Sqlite(PathBuf::from(path)))
            }
            other => Err(format!(
                "`{other}:` stores are not supported by this build (supported: sqlite://PATH)"
            )),
        }
    }

    /// The SQLite file, for commands and tests that read it directly.
    pub fn sqlite_path(&self) -> Option<&Path> {
        match self {
            StoreUrl::Sqlite(path) => Some(path),
        }
    }
}

/// Shown without anything secret (a future server URL's password).
impl fmt::Display for StoreUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
        }
    }
}

/// `[store]` as written: `url` or its synonym `path`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStoreConfig {
    /// `sqlite://PATH`.
    url: Option<String>,
    /// A SQLite file: the same as `url = "sqlite://PATH"`.
    path: Option<PathBuf>,
    /// See [`StoreConfig::busy_timeout_ms`].
    busy_timeout_ms: Option<u64>,
    /// See [`StoreConfig::max_batch`].
    max_batch: Option<usize>,
    /// See [`StoreConfig::retention_days`].
    retention_days: Option<u64>,
}

impl TryFrom<RawStoreConfig> for StoreConfig {
    type Error = String;

    fn try_from(raw: RawStoreConfig) -> Result<StoreConfig, String> {
        let default = StoreConfig::default();
        let url = match (raw.url, raw.path) {
            (Some(_), Some(_)) => {
                return Err("store.url and store.path name the same thing: set only one".into());
            }
            (Some(url), None) => StoreUrl::parse(&url).map_err(|e| format!("store.url: {e}"))?,
            (None, Some(path)) => StoreUrl::Sqlite(path),
            (None, None) => default.url,
        };
        Ok(StoreConfig {
            url,
            busy_timeout_ms: raw.busy_timeout_ms.unwrap_or(default.busy_timeout_ms),
            max_batch: raw.max_batch.unwrap_or(default.max_batch),
            retention_days: raw.retention_days.unwrap_or(default.retention_days),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml: &str) -> Result<StoreConfig, String> {
        toml::from_str::<StoreConfig>(toml).map_err(|e| e.to_string())
    }

    #[test]
    fn url_and_path_name_the_sqlite_file() {
        let by_url = parse("url = \"sqlite:///var/lib/m/m.db\"").unwrap();
        assert_eq!(by_url.url, StoreUrl::Sqlite("/var/lib/m/m.db".into()));
        let relative = parse("url = \"sqlite://data/m.db\"").unwrap();
        assert_eq!(relative.url, StoreUrl::Sqlite("data/m.db".into()));
        let by_path = parse("path = \"/var/lib/m/m.db\"\nmax_batch = 7").unwrap();
        assert_eq!(by_path.url, by_url.url);
        assert_eq!(by_path.max_batch, 7);
        assert_eq!(by_path.url.to_string(), "sqlite:///var/lib/m/m.db");
        assert_eq!(parse("").unwrap().url, StoreConfig::default().url);
    }

    #[test]
    fn unusable_urls_say_why() {
        let both = parse("url = \"sqlite://a.db\"\npath = \"a.db\"").unwrap_err();
        assert!(both.contains("set only one"), "{both}");
        let pg = parse("url = \"postgres://u:secret@h/db\"").unwrap_err();
        assert!(pg.contains("`postgres:` stores are not supported"), "{pg}");
        assert!(!pg.contains("secret"), "{pg}");
        for bad in [
            "sqlite://",
            "sqlite::memory:",
            "sqlite://a.db?mode=ro",
            "nowhere",
        ] {
            assert!(parse(&format!("url = \"{bad}\"")).is_err(), "{bad}");
        }
        assert!(parse("colour = 1").unwrap_err().contains("colour"));
    }
}
