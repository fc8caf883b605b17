//! The server's TLS identity for STARTTLS and the implicit-TLS listener:
//! `smtp.tls_cert` and `smtp.tls_key` read into a rustls configuration that
//! [`ServerTls::reload`] swaps (on SIGHUP) without touching open sessions.

use std::path::{Path, PathBuf};
use std::sync::{Arc, PoisonError, RwLock};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::TlsAcceptor;

use super::SmtpConfig;

/// Why the certificate or key could not be used. No variant carries key
/// material: only file names and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("{key} {}: cannot read: {source}", file.display())]
    Read {
        /// The config key naming the file.
        key: &'static str,
        /// The file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The certificate file holds no PEM certificate.
    #[error("smtp.tls_cert {}: no PEM certificate in it", file.display())]
    NoCertificate {
        /// The file.
        file: PathBuf,
    },
    /// The key file holds no usable PEM private key.
    #[error("smtp.tls_key {}: no PEM private key (PKCS#8, PKCS#1 or SEC1) in it", file.display())]
    NoKey {
        /// The file.
        file: PathBuf,
    },
    /// rustls refused the pair (e.g. the key does not match the certificate,
    /// or is of an unsupported kind).
    #[error("smtp.tls_cert {} / smtp.tls_key {}: {reason}", cert.display(), key.display())]
    Invalid {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// What rustls said (names no key material).
        reason: String,
    },
}

/// The current TLS configuration and where it comes from.
pub struct ServerTls {
    /// `smtp.tls_cert`, re-read by [`ServerTls::reload`].
    cert: PathBuf,
    /// `smtp.tls_key`, re-read by [`ServerTls::reload`].
    key: PathBuf,
    /// The configuration new handshakes use; a reload replaces the `Arc`,
    /// sessions already encrypted keep the one they started with.
    current: RwLock<Arc<ServerConfig>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl ServerTls {
    /// Reads `cert` and `key` (PEM).
    pub fn load(cert: &Path, key: &Path) -> Result<ServerTls, TlsError> {
        let config = read(cert, key)?;
        Ok(ServerTls {
            cert: cert.to_owned(),
            key: key.to_owned(),
            current: RwLock::new(config),
        })
    }

    /// The TLS identity of `config`: `None` when `smtp.tls_cert` and
    /// `smtp.tls_key` are not both set (validation refuses only one).
    pub fn from_config(config: &SmtpConfig) -> Result<Option<Arc<ServerTls>>, TlsError> {
        match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Ok(Some(Arc::new(ServerTls::load(cert, key)?))),
            _ => Ok(None),
        }
    }

    /// Re-reads the certificate and key; on error the configuration in use
    /// stays. New handshakes use the new one; open sessions go on.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = read(&self.cert, &self.key)?;
        *self.current.write().unwrap_or_else(PoisonError::into_inner) = config;
        Ok(())
    }

    /// An acceptor on the current configuration.
    pub(super) fn acceptor(&self) -> TlsAcceptor {
        let config = self
            .current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        TlsAcceptor::from(config)
    }
}

/// Builds a rustls server configuration from PEM files.
fn read(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>, TlsError> {
    let cert_pem = std::fs::read(cert).map_err(|source| TlsError::Read {
        key: "smtp.tls_cert",
        file: cert.to_owned(),
        source,
    })?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::NoCertificate {
            file: cert.to_owned(),
        })?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            file: cert.to_owned(),
        });
    }
    let key_pem = std::fs::read(key).map_err(|source| TlsError::Read {
        key: "smtp.tls_key",
        file: key.to_owned(),
        source,
    })?;
    let private = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::NoKey {
        file: key.to_owned(),
    })?;
    let invalid = |error: rustls::Error| TlsError::Invalid {
        cert: cert.to_owned(),
        key: key.to_owned(),
        reason: error.to_string(),
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(invalid)?
        .with_no_client_auth()
        .with_single_cert(chain, private)
        .map_err(invalid)?;
    Ok(Arc::new(config))
}
