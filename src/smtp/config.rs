//! The `[smtp]` table: where to listen, and the limits every session
//! keeps.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use crate::net::Networks;

/// Configuration of the SMTP listener (the `[smtp]` table of the config file).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmtpConfig {
    /// Address to listen on (used by the caller that binds the listener).
    pub listen: String,
    /// Our name, sent in the greeting and the HELO/EHLO replies.
    pub hostname: String,
    /// Recipient domains we accept mail for (case-insensitive); anything else
    /// is refused so that we are never an open relay.
    pub domains: Vec<String>,
    /// Simultaneous connections; clients beyond it get a 421 at once.
    pub max_connections: usize,
    /// Simultaneous connections from one client address (an IPv6 /64 counts
    /// as one address, loopback too); more get a `421 4.7.0` at once. Without
    /// it one client could hold every `max_connections` slot (issue 8).
    pub max_connections_per_ip: usize,
    /// Seconds a session may last: past them its next command gets a
    /// `421 4.4.2` and the connection is closed, so that a client cannot hold
    /// its slots forever by sending a NOOP before each idle timeout (issue 8).
    pub max_session_secs: u64,
    /// Longest command line in bytes, CRLF included; longer ones get a 500.
    pub max_line_length: usize,
    /// Largest message in bytes (after dot-unstuffing); advertised in SIZE.
    pub max_message_size: usize,
    /// Most bytes of message buffers all sessions together may hold (buffers
    /// still being received and those being handled). `max_message_size`
    /// only bounds one connection: without this, `max_connections` clients
    /// could make the daemon buffer gigabytes. Beyond it, messages get a
    /// transient `452 4.3.1` and their senders retry later. It also pays for
    /// handling: each finished message takes `HANDLING_FACTOR` times its size
    /// more while it is handled, and buffers leave `HANDLING_FACTOR` + 1
    /// maximal messages of it to handling.
    pub max_buffered_bytes: usize,
    /// Most recipients in one transaction; more get a 452.
    pub max_recipients: usize,
    /// Seconds a single read (or write) may wait before the client is dropped.
    pub idle_timeout_secs: u64,
    /// Seconds the whole DATA phase of one message may take (RFC 5321
    /// suggests 10 minutes): a client trickling bytes would otherwise hold
    /// its share of `max_buffered_bytes` for as long as it likes.
    pub data_timeout_secs: u64,
    /// The certificate chain (PEM) offered with STARTTLS and on
    /// `listen_tls`; with `tls_key`, turns STARTTLS on. Re-read on SIGHUP
    /// without dropping sessions.
    pub tls_cert: Option<PathBuf>,
    /// The private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Refuse MAIL (`530 5.7.0`) before STARTTLS, except from
    /// `tls_exempt_networks`: credentials and messages never cross the
    /// network in clear.
    pub require_tls: bool,
    /// Clients that may send and authenticate without TLS (default: loopback
    /// only, where a local MTA relays; `[]` exempts nobody).
    pub tls_exempt_networks: Networks,
    /// An optional second listener speaking TLS from the first byte
    /// (implicit TLS, "SMTPS", RFC 8314), e.g. `0.0.0.0:465`.
    pub listen_tls: Option<String>,
    /// SMTP AUTH users, by name: each names the account it sends for.
    pub users: BTreeMap<String, SmtpUser>,
    /// Seconds a client address gets `421` at connect after three failed
    /// AUTH attempts in one session, so passwords cannot be guessed fast.
    pub auth_lockout_secs: u64,
    /// Clients allowed to connect at all (CIDR list); others get `554 5.7.1`
    /// at connect. Absent: any client.
    pub networks: Option<Networks>,
    /// What a message refused as not authorized (unknown keyid, sender or
    /// network not allowed) gets: `reject` answers `550 5.7.1`; `discard`
    /// answers `250`, sends nothing, logs and counts it — behind an MTA, a
    /// `550` becomes a bounce to a possibly forged sender (backscatter).
    pub unauthorized: Unauthorized,
}

/// `[smtp.users.NAME]`: one SMTP AUTH user.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpUser {
    /// The argon2id hash of the password (PHC string, made by
    /// `mail2sms hash-password`); never the password itself.
    pub password_hash: String,
    /// The account this user sends for (alert mail, and `<envoi>` mail
    /// whose keyid names the same account).
    pub account: String,
}

impl std::fmt::Debug for SmtpUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The hash is a secret too: it can be attacked offline.
        f.debug_struct("SmtpUser")
            .field("password_hash", &"<hidden>")
            .field("account", &self.account)
            .finish()
    }
}

/// `smtp.unauthorized`: what a message refused as not authorized gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Unauthorized {
    /// `550 5.7.1`.
    #[default]
    Reject,
    /// `250`, nothing sent, logged and counted.
    Discard,
}

impl Default for SmtpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:2525".into(),
            hostname: "localhost".into(),
            domains: vec!["localhost".into()],
            max_connections: 1024,
            // Above the 20 parallel connections a Postfix relay opens by default.
            max_connections_per_ip: 100,
            max_session_secs: 600,
            max_line_length: 4096,
            max_message_size: 25 * 1024 * 1024,
            max_buffered_bytes: 256 * 1024 * 1024,
            max_recipients: 100,
            idle_timeout_secs: 300,
            data_timeout_secs: 600,
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            tls_exempt_networks: Networks::loopback(),
            listen_tls: None,
            users: BTreeMap::new(),
            auth_lockout_secs: 60,
            networks: None,
            unauthorized: Unauthorized::Reject,
        }
    }
}

impl SmtpConfig {
    /// The TLS keys: a certificate needs its key and the reverse, and what
    /// needs TLS needs both.
    fn validate_tls(&self) -> Result<(), (&'static str, String)> {
        let both = "needs smtp.tls_cert and smtp.tls_key (PEM files)";
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(("smtp.tls_key", "must be set with smtp.tls_cert".into()));
            }
            (None, Some(_)) => {
                return Err(("smtp.tls_cert", "must be set with smtp.tls_key".into()));
            }
            (None, None) if self.require_tls => return Err(("smtp.require_tls", both.into())),
            (None, None) if self.listen_tls.is_some() => {
                return Err(("smtp.listen_tls", both.into()));
            }
            _ => {}
        }
        if let Some(listen) = &self.listen_tls
            && listen.parse::<std::net::SocketAddr>().is_err()
        {
            return Err((
                "smtp.listen_tls",
                format!("`{listen}` is not an address like 0.0.0.0:465"),
            ));
        }
        Ok(())
    }

    /// Checks what the types alone cannot; the error names the key.
    pub fn validate(&self) -> Result<(), (&'static str, String)> {
        if self.listen.parse::<std::net::SocketAddr>().is_err() {
            return Err((
                "smtp.listen",
                format!("`{}` is not an address like 127.0.0.1:2525", self.listen),
            ));
        }
        if self.domains.is_empty() {
            return Err(("smtp.domains", "at least one domain is needed".into()));
        }
        self.validate_tls()?;
        if self.max_message_size > u32::MAX as usize {
            return Err(("smtp.max_message_size", "must be at most 4294967295".into()));
        }
        if self.max_buffered_bytes < self.max_message_size {
            return Err((
                "smtp.max_buffered_bytes",
                "must be at least smtp.max_message_size, or the largest messages could never be accepted".into(),
            ));
        }
        let at_least_one = [
            ("smtp.idle_timeout_secs", self.idle_timeout_secs == 0),
            ("smtp.data_timeout_secs", self.data_timeout_secs == 0),
            ("smtp.max_connections", self.max_connections == 0),
            (
                "smtp.max_connections_per_ip",
                self.max_connections_per_ip == 0,
            ),
            ("smtp.max_session_secs", self.max_session_secs == 0),
        ];
        match at_least_one.into_iter().find(|(_, zero)| *zero) {
            Some((key, _)) => Err((key, "must be at least 1".into())),
            None => Ok(()),
        }
    }
}
