//! The `netoxygen` provider: NetOxygen XML-RPC gateway. (Skeleton: being written.)

use super::{OutgoingSms, Provider, SendError};
use async_trait::async_trait;
use serde::Deserialize;

/// `type = "netoxygen"`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NetoxygenConfig {
    /// The API's base URL (e.g. `https://sms.netoxygen.ch/api2/`).
    pub url: String,
    /// The gateway `user`.
    pub user: String,
    /// The `pass` sent with every call.
    pub password: String,
    /// Request timeout in milliseconds.
    #[serde(default = "super::http::default_timeout_ms")]
    pub timeout_ms: u64,
    /// The most requests per second sent to this provider (none: no limit).
    #[serde(default)]
    pub rate_limit: Option<std::num::NonZeroU32>,
}

impl std::fmt::Debug for NetoxygenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl NetoxygenConfig {
    /// A one-line description without secrets.
    pub fn describe(&self) -> String {
        format!("netoxygen → {}", self.url)
    }
}

/// The `netoxygen` provider.
pub struct Netoxygen {
    /// The configuration.
    config: NetoxygenConfig,
}

impl Netoxygen {
    /// Builds the provider (its HTTP client).
    pub fn new(config: &NetoxygenConfig) -> Result<Self, String> {
        Ok(Netoxygen {
            config: config.clone(),
        })
    }
}

#[async_trait]
impl Provider for Netoxygen {
    fn max_batch(&self) -> usize {
        1
    }

    async fn send(&self, batch: &[OutgoingSms]) -> Vec<Result<String, SendError>> {
        let _ = &self.config;
        super::http::all_failed(batch.len(), &SendError::transient("not written yet"))
    }
}
