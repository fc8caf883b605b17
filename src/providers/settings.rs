//! What every provider type's configuration knows about itself: the one
//! interface the registry ([`super::ProviderConfig`]) hands out, so that
//! nothing outside a provider's own folder matches on its type.

use super::{Provider, ProviderError};
use crate::clock::Clock;
use std::num::NonZeroU32;
use std::sync::Arc;

/// A `[providers.NAME]` table of one type, deserialized: it validates
/// itself, describes itself without secrets, gives its rate limit and
/// builds its adapter.
pub trait ProviderSettings: std::fmt::Debug + Send + Sync {
    /// A one-line description for `check-config`: the type, where SMS go,
    /// whether credentials are set, never the credentials themselves.
    fn describe(&self) -> String;

    /// The most requests per second this provider may be sent, if limited.
    fn rate_limit(&self) -> Option<NonZeroU32>;

    /// The rate limit the dispatcher applies per batch: only for providers
    /// that make one request per batch (the outbox); the HTTP adapters
    /// limit each of their requests themselves (`http::Client`).
    fn batch_rate_limit(&self) -> Option<NonZeroU32> {
        None
    }

    /// Checks the values; the error is (key under the provider's table,
    /// reason).
    fn validate(&self) -> Result<(), (String, String)>;

    /// Builds the adapter; `name` is the table's name (for errors), `clock`
    /// the time the adapter stamps and schedules with.
    fn build(&self, name: &str, clock: &Clock) -> Result<Arc<dyn Provider>, ProviderError>;
}

/// The validation every HTTP provider shares: each credential set (the
/// first empty one is named), then `url` and `timeout_ms`.
pub fn validate_http(
    credentials: &[(&str, &str)],
    url: &str,
    timeout_ms: u64,
) -> Result<(), (String, String)> {
    if let Some((key, _)) = credentials.iter().find(|(_, v)| v.trim().is_empty()) {
        return Err((key.to_string(), "must not be empty".into()));
    }
    super::http::validate(url, timeout_ms)
}

/// The error of an HTTP adapter that could not be built.
pub fn http_error(name: &str, reason: String) -> ProviderError {
    ProviderError::Http {
        name: name.to_owned(),
        reason,
    }
}
