//! The `smsmode` provider: sMsmode HTTP API 3.1. (Skeleton: being written.)

use super::{OutgoingSms, Provider, SendError};
use async_trait::async_trait;
use serde::Deserialize;

/// `type = "smsmode"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmsmodeConfig {
    /// The API's base URL (e.g. `https://api.smsmode.com/http/1.6/`).
    pub url: String,
    /// The `accessToken` (API key) of the sMsmode account.
    pub access_token: String,
    /// Request timeout in milliseconds.
    #[serde(default = "super::http::default_timeout_ms")]
    pub timeout_ms: u64,
    /// The most requests per second sent to this provider (none: no limit).
    #[serde(default)]
    pub rate_limit: Option<std::num::NonZeroU32>,
}

impl std::fmt::Debug for SmsmodeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl SmsmodeConfig {
    /// A one-line description without secrets.
    pub fn describe(&self) -> String {
        format!("smsmode → {}", self.url)
    }
}

/// The `smsmode` provider.
pub struct Smsmode {
    /// The configuration.
    config: SmsmodeConfig,
}

impl Smsmode {
    /// Builds the provider (its HTTP client).
    pub fn new(config: &SmsmodeConfig) -> Result<Self, String> {
        Ok(Smsmode {
            config: config.clone(),
        })
    }
}

#[async_trait]
impl Provider for Smsmode {
    fn max_batch(&self) -> usize {
        1
    }

    async fn send(&self, batch: &[OutgoingSms]) -> Vec<Result<String, SendError>> {
        let _ = &self.config;
        super::http::all_failed(batch.len(), &SendError::transient("not written yet"))
    }
}
