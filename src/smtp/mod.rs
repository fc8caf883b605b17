//! The SMTP listener: receives mail for our domains and hands every message to
//! a [`Handler`].
//!
//! Commands are parsed by `smtp-proto` (sans-IO); framing, the DATA phase and
//! all I/O are ours: [`line`] frames command lines, [`data`] receives the
//! message body, [`protocol`] is the SMTP state machine and [`session`] drives
//! it over one connection. This module holds the configuration, the public
//! types and the accept loop.

mod auth;
mod budget;
mod config;
mod data;
mod line;
mod lockout;
mod protocol;
mod session;
#[cfg(test)]
mod tests;
mod tls;

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::future::Future;
use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;

use auth::Users;
pub use auth::{HashError, check_hash, hash_password};
use budget::Budget;
pub use budget::{GrowError, HANDLING_FACTOR, Share};
pub use config::{SmtpConfig, SmtpUser, Unauthorized};
use lockout::{Lockout, MAX_LOCKED};
use session::{End, Session};
pub use tls::{ServerTls, TlsError};

/// How long [`run`] waits for sessions in progress once shutdown is asked.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// How long the accept loop backs off after an accept error (e.g. out of
/// file descriptors), so that it does not spin.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The reply a client outside `smtp.networks` gets at connect.
const ACCESS_DENIED: &[u8] = b"554 5.7.1 access denied\r\n";

/// The reply a locked-out client gets at connect.
const LOCKED_OUT: &[u8] = b"421 4.7.0 too many authentication failures, try later\r\n";

/// The reply a client gets when all connection slots are taken.
const TOO_MANY_CONNECTIONS: &[u8] = b"421 4.3.2 too many connections, try later\r\n";

/// Shortest time between two log lines about refused connections (per
/// address for the per-address cap, in all for the global one), so that a
/// client connecting in a loop cannot flood the log.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// The IPv6 prefix length counted as one address by the per-address cap: a
/// /64 is the smallest network given to one subscriber, and one host can take
/// as many addresses in it as it likes.
const IPV6_PREFIX_BITS: u32 = 64;

/// The envelope of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// The reverse-path of MAIL FROM, without brackets; `""` for `<>`.
    pub mail_from: String,
    /// The accepted forward-paths of RCPT TO, without brackets, in order.
    pub rcpt_to: Vec<String>,
    /// The name the client gave in HELO/EHLO.
    pub helo: String,
    /// The client's address.
    pub peer: SocketAddr,
    /// The user the client authenticated as (SMTP AUTH), which can name an
    /// account without a keyid; `None` without AUTH.
    pub auth_user: Option<String>,
}

/// A reply the handler wants sent at end of DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// The SMTP reply code (2xx accepted, 4xx try again later, 5xx refused).
    /// A code outside 200..=599 is replaced by `451 4.3.0`.
    pub code: u16,
    /// The RFC 3463 enhanced status code, e.g. `"2.0.0"`; may be empty.
    pub enhanced: String,
    /// Human-readable text; several lines give a multi-line reply.
    pub text: String,
}

impl Reply {
    /// A reply with the given code, enhanced status code and text.
    pub fn new(code: u16, enhanced: impl Into<String>, text: impl Into<String>) -> Self {
        Self {
            code,
            enhanced: enhanced.into(),
            text: text.into(),
        }
    }
}

/// Receives the messages accepted by the SMTP server.
#[async_trait::async_trait]
pub trait Handler: Send + Sync + 'static {
    /// Called once per message at end of DATA (after dot-unstuffing), with the
    /// complete message bytes. The session sends exactly the returned reply.
    async fn message(&self, envelope: &Envelope, data: Vec<u8>) -> Reply;

    /// What the session calls: [`Handler::message`] with the share of the
    /// byte budget taken for this message's handling, which a handler whose
    /// work can grow beyond it (a request expanded per recipient) grows with
    /// [`Share::try_grow`] (issue 8). The default ignores the share.
    async fn message_within(&self, envelope: &Envelope, data: Vec<u8>, share: &mut Share) -> Reply {
        let _ = share;
        self.message(envelope, data).await
    }

    /// Called at each RCPT TO of one of our domains, before it is accepted:
    /// `Err(reply)` refuses that recipient with `reply` (e.g. `550 5.1.1`
    /// for a local part that looks like a number but is not a valid one,
    /// issue 10), so that the sending MTA bounces it at once. `envelope` is
    /// the transaction so far (`rcpt_to`: the recipients accepted before
    /// this one). Must be quick: it runs on the session's task. The default
    /// accepts every recipient.
    fn recipient(&self, envelope: &Envelope, address: &str) -> Result<(), Reply> {
        let _ = (envelope, address);
        Ok(())
    }
}

/// What every session of one server shares.
struct Shared {
    /// The listener's configuration.
    config: Arc<SmtpConfig>,
    /// Where accepted messages go.
    handler: Arc<dyn Handler>,
    /// The 220 greeting, rendered once.
    greeting: Box<[u8]>,
    /// The EHLO reply but its last line, rendered once (the session adds
    /// STARTTLS and AUTH when they apply).
    ehlo: Box<[u8]>,
    /// The TLS identity, when `smtp.tls_cert` and `smtp.tls_key` are set.
    tls: Option<Arc<ServerTls>>,
    /// The SMTP AUTH users.
    users: Arc<Users>,
    /// Addresses locked out after failed AUTH attempts.
    lockout: Lockout,
    /// How long one read or write may take.
    idle_timeout: Duration,
    /// How long the DATA phase of one message may take.
    data_timeout: Duration,
    /// How long a session may last before its next command closes it.
    max_session: Duration,
    /// The bytes of message buffers and handling shares still free to take,
    /// out of `max_buffered_bytes` (one permit per byte); sessions take them
    /// as their buffer grows and at end of DATA, and give them back when the
    /// message is handled or dropped.
    budget: Arc<Budget>,
}

impl Shared {
    #[cfg(test)]
    fn new(config: Arc<SmtpConfig>, handler: Arc<dyn Handler>) -> Self {
        Self::with_tls(config, handler, None)
    }

    fn with_tls(
        config: Arc<SmtpConfig>,
        handler: Arc<dyn Handler>,
        tls: Option<Arc<ServerTls>>,
    ) -> Self {
        let host = &config.hostname;
        let greeting = format!("220 {host} ESMTP mail2sms\r\n");
        let ehlo = format!(
            "250-{host}\r\n\
             250-PIPELINING\r\n\
             250-8BITMIME\r\n\
             250-SIZE {size}\r\n",
            size = config.max_message_size
        );
        Self {
            tls,
            users: Arc::new(Users::new(&config.users)),
            lockout: Lockout::new(Duration::from_secs(config.auth_lockout_secs), MAX_LOCKED),
            idle_timeout: Duration::from_secs(config.idle_timeout_secs),
            data_timeout: Duration::from_secs(config.data_timeout_secs),
            max_session: Duration::from_secs(config.max_session_secs),
            budget: Arc::new(Budget::new(
                config.max_buffered_bytes,
                config.max_message_size,
            )),
            config,
            handler,
            greeting: greeting.into_bytes().into_boxed_slice(),
            ehlo: ehlo.into_bytes().into_boxed_slice(),
        }
    }
}

/// The sockets a server accepts on.
pub struct Listeners {
    /// `smtp.listen`: plain SMTP, STARTTLS when there is a TLS identity.
    pub plain: TcpListener,
    /// `smtp.listen_tls`: TLS from the first byte (needs a TLS identity).
    pub implicit_tls: Option<TcpListener>,
}

/// Serves plain SMTP, without TLS, on an already bound listener: [`serve`]
/// with no TLS identity and no implicit-TLS listener.
pub async fn run(
    listener: TcpListener,
    config: Arc<SmtpConfig>,
    handler: Arc<dyn Handler>,
    shutdown: impl Future<Output = ()>,
) {
    let listeners = Listeners {
        plain: listener,
        implicit_tls: None,
    };
    serve(listeners, config, handler, None, shutdown).await;
}

/// Accepts on `listener`, or never when there is none.
async fn accept(listener: Option<&TcpListener>) -> std::io::Result<(TcpStream, SocketAddr)> {
    match listener {
        Some(listener) => listener.accept().await,
        None => std::future::pending().await,
    }
}

/// Serves SMTP on already bound listeners until `shutdown` completes; then
/// stops accepting and waits (bounded) for sessions in progress. Both
/// listeners share the connection limits. `tls` (the identity STARTTLS and
/// the implicit-TLS listener use) is shared with whoever reloads it.
///
/// Idle sessions are told `421` and closed at shutdown; sessions receiving a
/// message or waiting for the handler get up to 30 s to finish, then are
/// aborted.
pub async fn serve(
    listeners: Listeners,
    config: Arc<SmtpConfig>,
    handler: Arc<dyn Handler>,
    tls: Option<Arc<ServerTls>>,
    shutdown: impl Future<Output = ()>,
) {
    let Listeners {
        plain: listener,
        implicit_tls,
    } = listeners;
    // Implicit TLS without an identity cannot be served (validation refuses
    // such a config).
    let implicit_tls = implicit_tls.filter(|_| tls.is_some());
    let shared = Arc::new(Shared::with_tls(config, handler, tls));
    let mut gate = Gate::new(&shared.config);
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sessions = JoinSet::new();
    tokio::pin!(shutdown);
    tracing::info!(addr = ?listener.local_addr().ok(), "SMTP server listening");
    if let Some(tls_listener) = &implicit_tls {
        tracing::info!(addr = ?tls_listener.local_addr().ok(), "SMTP implicit-TLS server listening");
    }

    loop {
        let (accepted, implicit) = tokio::select! {
            () = &mut shutdown => break,
            Some(done) = sessions.join_next(), if !sessions.is_empty() => {
                log_join(done);
                continue;
            }
            accepted = listener.accept() => (accepted, false),
            accepted = accept(implicit_tls.as_ref()) => (accepted, true),
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "SMTP accept failed");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let Some(admission) = gate.admit(&shared, &stream, peer, implicit) else {
            continue;
        };
        tracing::debug!(%peer, implicit_tls = implicit, "SMTP connection accepted");
        // Replies are written once per batch: no reason to let Nagle delay them.
        let _ = stream.set_nodelay(true);
        let connection = connection(stream, shared.clone(), peer, stop_rx.clone(), implicit);
        sessions.spawn(async move {
            let result = connection.await;
            // Also dropped if the task panics or is aborted.
            drop(admission);
            (peer, result)
        });
    }

    drop(listener);
    drop(implicit_tls);
    let _ = stop_tx.send(true);
    tracing::info!(sessions = sessions.len(), "SMTP server stopping");
    let drained = tokio::time::timeout(SHUTDOWN_GRACE, async {
        while let Some(done) = sessions.join_next().await {
            log_join(done);
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            sessions = sessions.len(),
            "SMTP sessions still running after the grace period; aborting them"
        );
        sessions.shutdown().await;
    }
    tracing::info!("SMTP server stopped");
}

/// Serves one connection: a plain session, then an encrypted one if the
/// client says STARTTLS; or, on the implicit-TLS listener, the handshake
/// then an encrypted session.
async fn connection<S>(
    stream: S,
    shared: Arc<Shared>,
    peer: SocketAddr,
    stop: watch::Receiver<bool>,
    implicit: bool,
) -> Result<(), session::SessionError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (stream, expires) = if implicit {
        (
            stream,
            tokio::time::Instant::now().checked_add(shared.max_session),
        )
    } else {
        let session = Session::new(stream, shared.clone(), peer, stop.clone());
        match session.run(true).await? {
            End::Closed => return Ok(()),
            End::StartTls { stream, expires } => (stream, expires),
        }
    };
    let Some(tls) = &shared.tls else {
        return Ok(());
    };
    let handshake = tls.acceptor().accept(stream);
    let stream = match tokio::time::timeout(shared.idle_timeout, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(error)) => {
            tracing::info!(%peer, %error, "SMTP TLS handshake failed");
            return Ok(());
        }
        Err(_) => {
            tracing::info!(%peer, "SMTP TLS handshake timed out");
            return Ok(());
        }
    };
    let session = Session::encrypted(stream, shared, peer, stop, expires);
    // An encrypted session never asks for STARTTLS again (it gets 503).
    session.run(implicit).await.map(|_| ())
}

/// Logs how a session task ended.
fn log_join(done: Result<(SocketAddr, Result<(), session::SessionError>), tokio::task::JoinError>) {
    match done {
        Ok((peer, Ok(()))) => tracing::debug!(%peer, "SMTP session closed"),
        Ok((peer, Err(error))) => tracing::debug!(%peer, %error, "SMTP session ended"),
        Err(error) => tracing::error!(%error, "SMTP session task failed"),
    }
}

/// Decides which connections are served: the global and per-address caps.
struct Gate {
    /// Free connection slots, out of `max_connections`.
    slots: Arc<Semaphore>,
    /// Open connections per client address, out of `max_connections_per_ip`.
    per_address: Arc<PerAddress>,
    /// Limits the log lines about connections refused for want of a slot.
    full_log: LogLimiter,
    /// Limits the log lines about connections refused by `smtp.networks`
    /// or an AUTH lockout.
    denied_log: LogLimiter,
}

/// What a served connection holds until its session ends; dropping it gives
/// both back.
struct Admission {
    /// The connection's place in its address's count.
    _address: AddressSlot,
    /// The connection's slot.
    _slot: OwnedSemaphorePermit,
}

impl Gate {
    fn new(config: &SmtpConfig) -> Self {
        Self {
            slots: Arc::new(Semaphore::new(
                config.max_connections.min(Semaphore::MAX_PERMITS),
            )),
            per_address: Arc::new(PerAddress::new(config.max_connections_per_ip)),
            full_log: LogLimiter::default(),
            denied_log: LogLimiter::default(),
        }
    }

    /// Admits a new connection, or tells the client why not (`554` outside
    /// `smtp.networks`, `421` locked out or over a cap) and returns `None`
    /// (the caller then drops the connection). On the implicit-TLS listener
    /// a refused client is closed without a word: it expects a handshake.
    fn admit(
        &mut self,
        shared: &Shared,
        stream: &TcpStream,
        peer: SocketAddr,
        implicit: bool,
    ) -> Option<Admission> {
        let now = Instant::now();
        let refuse = |stream: &TcpStream, reply: &[u8]| {
            if !implicit {
                refuse(stream, reply);
            }
        };
        if let Some(networks) = &shared.config.networks
            && !networks.contains(peer.ip())
        {
            if let Some(suppressed) = self.denied_log.allow(now) {
                tracing::info!(%peer, suppressed, "SMTP connection refused: not in smtp.networks");
            }
            refuse(stream, ACCESS_DENIED);
            return None;
        }
        if shared.lockout.is_locked(peer.ip(), now) {
            if let Some(suppressed) = self.denied_log.allow(now) {
                tracing::info!(%peer, suppressed, "SMTP connection refused: locked out after failed AUTH");
            }
            refuse(stream, LOCKED_OUT);
            return None;
        }
        let address = match self.per_address.admit(peer.ip(), now) {
            Ok(address) => address,
            Err(Refused { log }) => {
                if let Some(suppressed) = log {
                    tracing::warn!(
                        %peer,
                        limit = self.per_address.cap,
                        suppressed,
                        "SMTP connection refused: too many connections from this address"
                    );
                }
                refuse(stream, &self.per_address.refusal);
                return None;
            }
        };
        let Ok(slot) = self.slots.clone().try_acquire_owned() else {
            if let Some(suppressed) = self.full_log.allow(now) {
                tracing::warn!(%peer, suppressed, "SMTP connection refused: too many connections");
            }
            refuse(stream, TOO_MANY_CONNECTIONS);
            return None;
        };
        Some(Admission {
            _address: address,
            _slot: slot,
        })
    }
}

/// Writes a refusal to a connection about to be dropped.
fn refuse(stream: &TcpStream, reply: &[u8]) {
    // A fresh socket's send buffer is empty: this does not block.
    let _ = stream.try_write(reply);
}

/// Counts the open connections of each client address, to cap them.
struct PerAddress {
    /// Most connections one address may have open.
    cap: usize,
    /// The `421` given beyond the cap, rendered once.
    refusal: Box<[u8]>,
    /// The addresses (see [`address_key`]) with connections open. An address
    /// leaves with its last connection, so this holds at most
    /// `max_connections` entries whatever clients do.
    open: Mutex<HashMap<IpAddr, AddressCount>>,
}

/// What [`PerAddress`] knows of one address.
#[derive(Default)]
struct AddressCount {
    /// Its open connections.
    sessions: usize,
    /// Limits the log lines about its refused connections.
    refusals: LogLimiter,
}

/// A connection refused by the per-address cap.
struct Refused {
    /// `Some(n)` if this refusal is to be logged, `n` being the address's
    /// refusals left unlogged before it; `None` if it is only counted.
    log: Option<u64>,
}

/// One connection's place in its address's count, given back when dropped:
/// whatever way the session ends (return, panic, abort at shutdown), the
/// count goes down.
struct AddressSlot {
    /// The count it belongs to.
    table: Arc<PerAddress>,
    /// The address it counts for.
    address: IpAddr,
}

impl PerAddress {
    fn new(cap: usize) -> Self {
        let refusal = format!(
            "421 4.7.0 too many connections from your address (at most {cap}), try later\r\n"
        );
        Self {
            cap,
            refusal: refusal.into_bytes().into_boxed_slice(),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one more connection from `ip`, unless its address is at the cap.
    fn admit(self: &Arc<Self>, ip: IpAddr, now: Instant) -> Result<AddressSlot, Refused> {
        let address = address_key(ip);
        let mut open = self.lock();
        let count = match open.entry(address) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(entry) if self.cap > 0 => entry.insert(AddressCount::default()),
            // Only a refused address with connections open keeps an entry.
            Entry::Vacant(_) => return Err(Refused { log: None }),
        };
        if count.sessions >= self.cap {
            let log = count.refusals.allow(now);
            return Err(Refused { log });
        }
        count.sessions += 1;
        drop(open);
        Ok(AddressSlot {
            table: self.clone(),
            address,
        })
    }

    /// The counts (never left inconsistent: nothing in their critical
    /// sections panics, so a poisoned lock is taken as is).
    fn lock(&self) -> MutexGuard<'_, HashMap<IpAddr, AddressCount>> {
        self.open.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.table.lock();
        if let Entry::Occupied(mut entry) = open.entry(self.address) {
            let count = entry.get_mut();
            count.sessions = count.sessions.saturating_sub(1);
            if count.sessions == 0 {
                entry.remove();
            }
        }
    }
}

/// The address a client is counted under by the per-address cap: an IPv4
/// address as is (also when it arrives IPv4-mapped on an IPv6 listener), an
/// IPv6 address by its /64 prefix.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let mask = u128::MAX << (128 - IPV6_PREFIX_BITS);
                IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & mask))
            }
        },
    }
}

/// Lets one log line through per [`REFUSAL_LOG_INTERVAL`] and counts the
/// others, so that the next line says how many were left out.
#[derive(Default)]
struct LogLimiter {
    /// When a line was last let through.
    last: Option<Instant>,
    /// Events left unlogged since then.
    suppressed: u64,
}

impl LogLimiter {
    /// Whether to log an event happening at `now`: `Some(n)`, `n` being the
    /// events left unlogged before it, or `None` if it is only counted.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        let recent = self
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < REFUSAL_LOG_INTERVAL);
        if recent {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}
