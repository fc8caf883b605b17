//! The `[replies]` table of the configuration file.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;

use super::error::ReplyError;
use super::transport::redact_url;

/// The `[replies]` table of the config.
///
/// `Debug` is written by hand: `transport` may hold an SMTP password, which
/// must never reach a log line or a `check-config` dump.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepliesConfig {
    /// The address replies are sent from (`From:`; the envelope sender is
    /// null, `MAIL FROM:<>`, so their bounces come back to nobody); its
    /// domain also names the replies' Message-IDs and the failure notices'
    /// `Reporting-MTA`. `Name <addr>` is accepted.
    pub from: String,
    /// Where replies go: `smtp://[user:password@]host[:port][?tls=starttls|required|none]`,
    /// `smtps://[user:password@]host[:port]`, `file://DIR` (one `.eml` per
    /// reply, for tests and for handing over to another MTA) or `sendmail`
    /// (`sendmail:///path/to/sendmail` for another binary).
    pub transport: String,
    /// A directory whose `etat_ack.xml` / `etat_not.xml`, when present,
    /// replace the embedded templates, so operators can adapt the replies
    /// to a client that expects a slightly different form.
    #[serde(default)]
    pub templates: Option<PathBuf>,
    /// How long one SMTP command (or one whole sendmail / file delivery) may
    /// take before the attempt counts as a transient failure.
    #[serde(default = "default_timeout_secs")]
    pub timeout_secs: u64,
    /// The first retry delay after a transient failure, in milliseconds; it
    /// doubles on each try (with jitter) up to one hour.
    #[serde(default = "default_retry_initial_ms")]
    pub retry_initial_ms: u64,
    /// How many replies may be in flight at once. Each reply's outcome is
    /// recorded as soon as its own delivery ends, so this is also the most
    /// replies a crash can make go out twice (issue 8), and a slow server
    /// holds at most this many slots.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
}

/// The default of `replies.concurrency`.
fn default_concurrency() -> usize {
    8
}

impl RepliesConfig {
    /// Checks what the types alone cannot; errors name the key at fault.
    pub fn validate(&self) -> Result<(), ReplyError> {
        if self.timeout_secs == 0 {
            return Err(ReplyError::Config {
                key: "replies.timeout_secs",
                reason: "must be at least 1".into(),
            });
        }
        if self.concurrency == 0 {
            return Err(ReplyError::Config {
                key: "replies.concurrency",
                reason: "must be at least 1 (how many replies are sent at once; 0 would send none)"
                    .into(),
            });
        }
        Ok(())
    }
}

/// The default of `replies.retry_initial_ms`.
fn default_retry_initial_ms() -> u64 {
    5_000
}

/// The default of `replies.timeout_secs`.
fn default_timeout_secs() -> u64 {
    30
}

impl fmt::Debug for RepliesConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RepliesConfig")
            .field("from", &self.from)
            .field("transport", &redact_url(&self.transport))
            .field("templates", &self.templates)
            .field("timeout_secs", &self.timeout_secs)
            .field("retry_initial_ms", &self.retry_initial_ms)
            .field("concurrency", &self.concurrency)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Wrapper {
        replies: RepliesConfig,
    }

    fn parse(text: &str) -> Result<RepliesConfig, toml::de::Error> {
        toml::from_str::<Wrapper>(text).map(|w| w.replies)
    }

    #[test]
    fn defaults_and_unknown_keys() {
        let config = parse("[replies]\nfrom = \"a@b.c\"\ntransport = \"sendmail\"\n")
            .expect("minimal table");
        assert_eq!(config.timeout_secs, 30);
        assert_eq!(config.concurrency, 8);
        assert!(config.templates.is_none());
        let err = parse("[replies]\nfrom = \"a@b.c\"\ntransport = \"sendmail\"\nport = 25\n");
        assert!(err.is_err(), "unknown keys are refused");
    }

    /// Issue 8: `replies.concurrency = 0` would never send a reply.
    #[test]
    fn zero_concurrency_is_refused() {
        let config =
            parse("[replies]\nfrom = \"a@b.c\"\ntransport = \"sendmail\"\nconcurrency = 0\n")
                .expect("table");
        let err = config.validate().expect_err("0 refused");
        assert!(
            err.to_string()
                .starts_with("replies.concurrency: must be at least 1"),
            "{err}"
        );
        let mut config = config;
        config.concurrency = 1;
        config.validate().expect("1 is fine");
    }

    #[test]
    fn debug_hides_the_password() {
        let config = parse(
            "[replies]\nfrom = \"a@b.c\"\ntransport = \"smtp://bob:s3cr%40t@mx.example:587\"\n",
        )
        .expect("table");
        let shown = format!("{config:?} {config:#?}");
        assert!(!shown.contains("s3cr"), "{shown}");
        assert!(shown.contains("mx.example:587"), "{shown}");
    }
}
