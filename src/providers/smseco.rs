//! The `smseco` provider: SMSECO API v2.0. (Skeleton: being written.)

use super::{OutgoingSms, Provider, SendError};
use async_trait::async_trait;
use serde::Deserialize;

/// `type = "smseco"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsecoConfig {
    /// The API's base URL (e.g. `http://www.smseco.com/api/`).
    pub url: String,
    /// The account's `login`.
    pub login: String,
    /// The account's `password`.
    pub password: String,
    /// Request timeout in milliseconds.
    #[serde(default = "super::http::default_timeout_ms")]
    pub timeout_ms: u64,
    /// The most requests per second sent to this provider (none: no limit).
    #[serde(default)]
    pub rate_limit: Option<std::num::NonZeroU32>,
}

impl std::fmt::Debug for SmsecoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl SmsecoConfig {
    /// A one-line description without secrets.
    pub fn describe(&self) -> String {
        format!("smseco → {}", self.url)
    }
}

/// The `smseco` provider.
pub struct Smseco {
    /// The configuration.
    config: SmsecoConfig,
}

impl Smseco {
    /// Builds the provider (its HTTP client).
    pub fn new(config: &SmsecoConfig) -> Result<Self, String> {
        Ok(Smseco {
            config: config.clone(),
        })
    }
}

#[async_trait]
impl Provider for Smseco {
    fn max_batch(&self) -> usize {
        1
    }

    async fn send(&self, batch: &[OutgoingSms]) -> Vec<Result<String, SendError>> {
        let _ = &self.config;
        super::http::all_failed(batch.len(), &SendError::transient("not written yet"))
    }
}
