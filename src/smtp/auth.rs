//! SMTP AUTH (RFC 4954): decoding the PLAIN and LOGIN exchanges, checking
//! credentials against the argon2id hashes of `[smtp.users]`, and making
//! such hashes (`mail2sms hash-password`).
//!
//! Nothing here logs: credentials and the base64 lines carrying them never
//! reach a log.

use std::collections::BTreeMap;
use std::sync::Arc;

use tokio::sync::Semaphore;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64ct::{Base64, Encoding};

use super::SmtpUser;

/// A user name and password given by a client, to be checked.
pub(super) struct Credentials {
    /// The authentication identity (user name).
    pub(super) user: String,
    /// The password; never logged.
    pub(super) password: String,
}

/// Why a client's AUTH data could not be read (the client gets `501`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(super) enum DecodeError {
    /// Not valid base64.
    #[error("invalid base64")]
    Base64,
    /// Not UTF-8, or not the `authzid NUL authcid NUL passwd` of PLAIN.
    #[error("malformed credentials")]
    Malformed,
}

/// Decodes one base64 line of the exchange; `=` is an empty response.
pub(super) fn decode_base64(line: &str) -> Result<Vec<u8>, DecodeError> {
    let line = line.trim();
    if line == "=" {
        return Ok(Vec::new());
    }
    Base64::decode_vec(line).map_err(|_| DecodeError::Base64)
}

/// A decoded text value (user name or password).
pub(super) fn decode_text(line: &str) -> Result<String, DecodeError> {
    String::from_utf8(decode_base64(line)?).map_err(|_| DecodeError::Malformed)
}

/// Decodes a PLAIN response (RFC 4616): `[authzid] NUL authcid NUL passwd`.
/// An authorization identity other than the user's own is refused: a user
/// cannot act as another.
pub(super) fn decode_plain(line: &str) -> Result<Credentials, DecodeError> {
    let bytes = decode_base64(line)?;
    let mut parts = bytes.split(|&b| b == 0);
    let (Some(authzid), Some(user), Some(password), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(DecodeError::Malformed);
    };
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).map_err(|_| DecodeError::Malformed);
    let (authzid, user, password) = (text(authzid)?, text(user)?, text(password)?);
    if user.is_empty() || (!authzid.is_empty() && authzid != user) {
        return Err(DecodeError::Malformed);
    }
    Ok(Credentials { user, password })
}

/// Most password checks running at once: each takes the memory its hash
/// asks for (19 MiB with the defaults), and a thousand sessions trying
/// passwords together must not take gigabytes; the others wait their turn.
const MAX_CHECKS: usize = 4;

/// The users of `[smtp.users]`, ready to check passwords.
pub(super) struct Users {
    /// Each user's PHC string, by name.
    hashes: BTreeMap<String, String>,
    /// Turns to check a password, out of [`MAX_CHECKS`].
    checks: Arc<Semaphore>,
}

impl Users {
    pub(super) fn new(users: &BTreeMap<String, SmtpUser>) -> Self {
        Self {
            hashes: users
                .iter()
                .map(|(name, user)| (name.clone(), user.password_hash.clone()))
                .collect(),
            checks: Arc::new(Semaphore::new(MAX_CHECKS)),
        }
    }

    /// Checks `credentials` on a blocking thread, waiting for a turn
    /// first; see [`Users::verify`].
    pub(super) async fn check(self: &Arc<Self>, credentials: Credentials) -> bool {
        let Ok(_turn) = self.checks.clone().acquire_owned().await else {
            return false;
        };
        let users = self.clone();
        tokio::task::spawn_blocking(move || users.verify(&credentials))
            .await
            .unwrap_or(false)
    }

    /// Whether `user` is a configured user: only those are named in the log
    /// of a failure (a password typed as a user name must not be logged).
    pub(super) fn knows(&self, user: &str) -> bool {
        self.hashes.contains_key(user)
    }

    /// Whether any user is configured (AUTH is offered only then).
    pub(super) fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// Whether `credentials` are right. Slow by design (argon2): call it
    /// off the async threads. An unknown user costs as much as a known one
    /// (the password is checked against another user's hash, with the same
    /// parameters, and the result thrown away), so that timing does not tell
    /// which users exist.
    pub(super) fn verify(&self, credentials: &Credentials) -> bool {
        let (hash, known) = match self.hashes.get(&credentials.user) {
            Some(hash) => (hash, true),
            None => match self.hashes.values().next() {
                Some(hash) => (hash, false),
                None => return false,
            },
        };
        let Ok(parsed) = PasswordHash::new(hash) else {
            return false;
        };
        let matches = Argon2::default()
            .verify_password(credentials.password.as_bytes(), &parsed)
            .is_ok();
        known && matches
    }
}

/// Why a password could not be hashed.
#[derive(Debug, thiserror::Error)]
pub enum HashError {
    /// An empty password is refused.
    #[error("the password is empty")]
    Empty,
    /// argon2 failed (e.g. no randomness for the salt).
    #[error("cannot hash the password: {0}")]
    Hash(String),
}

/// The argon2id PHC string of `password`, with argon2's default parameters
/// and a random salt: what `[smtp.users.NAME] password_hash` takes.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    if password.is_empty() {
        return Err(HashError::Empty);
    }
    let salt = SaltString::generate(&mut password_hash::rand_core::OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| HashError::Hash(error.to_string()))
}

/// Checks that `hash` is an argon2 PHC string this server can verify; the
/// error says what is wrong without quoting the hash.
pub fn check_hash(hash: &str) -> Result<(), &'static str> {
    let parsed = PasswordHash::new(hash)
        .map_err(|_| "is not a PHC string like $argon2id$v=19$m=...,t=...,p=...$salt$hash (make one with `mail2sms hash-password`)")?;
    if !matches!(
        parsed.algorithm.as_str(),
        "argon2id" | "argon2i" | "argon2d"
    ) {
        return Err("is not an argon2 hash (make one with `mail2sms hash-password`)");
    }
    if parsed.hash.is_none() || parsed.salt.is_none() {
        return Err("lacks its salt or hash part");
    }
    argon2::Params::try_from(&parsed).map_err(|_| "has invalid argon2 parameters")?;
    Ok(())
}
