//! The `smsfactor` provider: smsfactor XML API v2.2. (Skeleton: being written.)

use super::{OutgoingSms, Provider, SendError};
use async_trait::async_trait;
use serde::Deserialize;

/// `type = "smsfactor"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsfactorConfig {
    /// The API's base URL (e.g. `https://secure.smsfactor.com/API/`).
    pub url: String,
    /// The account's `username` (its email address).
    pub username: String,
    /// The account's `password`.
    pub password: String,
    /// Request timeout in milliseconds.
    #[serde(default = "super::http::default_timeout_ms")]
    pub timeout_ms: u64,
    /// The most requests per second sent to this provider (none: no limit).
    #[serde(default)]
    pub rate_limit: Option<std::num::NonZeroU32>,
}

impl std::fmt::Debug for SmsfactorConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl SmsfactorConfig {
    /// A one-line description without secrets.
    pub fn describe(&self) -> String {
        format!("smsfactor → {}", self.url)
    }
}

/// The `smsfactor` provider.
pub struct Smsfactor {
    /// The configuration.
    config: SmsfactorConfig,
}

impl Smsfactor {
    /// Builds the provider (its HTTP client).
    pub fn new(config: &SmsfactorConfig) -> Result<Self, String> {
        Ok(Smsfactor {
            config: config.clone(),
        })
    }
}

#[async_trait]
impl Provider for Smsfactor {
    fn max_batch(&self) -> usize {
        1
    }

    async fn send(&self, batch: &[OutgoingSms]) -> Vec<Result<String, SendError>> {
        let _ = &self.config;
        super::http::all_failed(batch.len(), &SendError::transient("not written yet"))
    }
}
