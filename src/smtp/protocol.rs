//! The SMTP state machine of one session: turns command lines into replies,
//! collects the envelope and hands finished messages to the handler.
//!
//! It does no I/O: replies accumulate in an output buffer that the session
//! writes out once per batch of input, which is what makes PIPELINING cheap.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::sync::Arc;

use smtp_proto::{AUTH_LOGIN, AUTH_PLAIN, Error as ParseError, Request};

use super::auth::{self, Credentials};
use super::data::{DataReceiver, Dropped};
use super::{Envelope, Reply, Shared};
use crate::logsafe::Safe;

/// Whether the session goes on after a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Flow {
    /// Keep reading commands.
    Continue,
    /// The client said QUIT (or must go): send the output and close.
    Quit,
    /// The client said STARTTLS and was told 220: send the output, forget
    /// any input left, and start the TLS handshake.
    StartTls,
    /// Credentials are ready to check: call [`Protocol::authenticate`].
    Authenticate,
}

/// Where an AUTH exchange stands.
#[derive(Default)]
enum AuthStep {
    /// No exchange under way: lines are commands.
    #[default]
    Idle,
    /// PLAIN was given no initial response: the next line is it.
    PlainResponse,
    /// LOGIN asked for the user name.
    LoginUser,
    /// LOGIN asked for the password of this user.
    LoginPassword(String),
}

/// The text of the `452 4.3.1` given when the buffer budget is out.
const INSUFFICIENT_STORAGE: &str = "insufficient system storage, try again later";

/// The text of the `451 4.3.1` given when a finished message did not get
/// its handling share of the budget in time.
const HANDLING_BUSY: &str = "too many messages being handled, try again later";

/// The protocol state of one session.
pub(super) struct Protocol {
    /// Configuration, handler and pre-rendered replies.
    shared: Arc<Shared>,
    /// The client's address, for the envelope and the logs.
    peer: SocketAddr,
    /// Replies not yet written to the client.
    out: Vec<u8>,
    /// The HELO/EHLO name; `None` until the client introduced itself.
    helo: Option<String>,
    /// The reverse-path; `Some` once MAIL was accepted (a transaction is open).
    mail_from: Option<String>,
    /// The accepted recipients of the open transaction.
    rcpt_to: Vec<String>,
    /// Whether input is message content (after a 354) rather than commands.
    in_data: bool,
    /// Finds the end of the message content, unstuffs it and keeps it.
    data: DataReceiver,
    /// Whether the connection is encrypted (after STARTTLS, or on the
    /// implicit-TLS listener).
    secure: bool,
    /// Whether the client is in `smtp.tls_exempt_networks`: it may send
    /// and authenticate in clear.
    exempt: bool,
    /// The user the client authenticated as.
    auth_user: Option<String>,
    /// Failed AUTH attempts in this session.
    auth_failures: u8,
    /// The AUTH exchange under way, whose lines are not commands.
    auth_step: AuthStep,
    /// Credentials read and waiting for [`Protocol::authenticate`].
    pending: Option<Credentials>,
}

impl Protocol {
    /// A fresh session state; `secure` when the connection is encrypted.
    pub(super) fn new(shared: Arc<Shared>, peer: SocketAddr, secure: bool) -> Self {
        let data = DataReceiver::new(shared.config.max_message_size, shared.budget.clone());
        let exempt = shared.config.tls_exempt_networks.contains(peer.ip());
        Self {
            secure,
            exempt,
            auth_user: None,
            auth_failures: 0,
            auth_step: AuthStep::Idle,
            pending: None,
            shared,
            peer,
            out: Vec::with_capacity(512),
            helo: None,
            mail_from: None,
            rcpt_to: Vec::new(),
            in_data: false,
            data,
        }
    }

    /// Replies waiting to be written.
    pub(super) fn output(&self) -> &[u8] {
        &self.out
    }

    /// Forgets the replies once they are written.
    pub(super) fn clear_output(&mut self) {
        self.out.clear();
    }

    /// The client's address.
    pub(super) fn peer(&self) -> SocketAddr {
        self.peer
    }

    /// Whether the input is message content.
    pub(super) fn in_data(&self) -> bool {
        self.in_data
    }

    /// Queues the 220 greeting.
    pub(super) fn greet(&mut self) {
        self.out.extend_from_slice(&self.shared.greeting);
    }

    /// Queues the reply for a read that timed out.
    pub(super) fn idle_timeout(&mut self) {
        let text = format!("{} idle timeout", self.shared.config.hostname);
        self.reply(421, "4.4.2", &text);
    }

    /// Queues the reply for a client whose DATA took too long.
    pub(super) fn data_timeout(&mut self) {
        let text = format!(
            "{} message took too long to send",
            self.shared.config.hostname
        );
        self.reply(421, "4.4.2", &text);
    }

    /// Queues the reply for a session closed by the server's shutdown.
    pub(super) fn shutting_down(&mut self) {
        let text = format!("{} shutting down", self.shared.config.hostname);
        self.reply(421, "4.3.2", &text);
    }

    /// Queues the reply for a session that lasted `max_session_secs` and is
    /// closed at its next command (issue 8).
    pub(super) fn session_too_long(&mut self) {
        tracing::info!(peer = %self.peer, "SMTP session closed: older than smtp.max_session_secs");
        let text = format!("{} session too long, closing", self.shared.config.hostname);
        self.reply(421, "4.4.2", &text);
    }

    /// Queues the reply for a command line over the length limit.
    pub(super) fn line_too_long(&mut self) {
        self.reply(500, "5.5.2", "line too long");
    }

    /// Handles one command line (LF included).
    pub(super) fn command(&mut self, line: &[u8]) -> Flow {
        if !matches!(self.auth_step, AuthStep::Idle) {
            return self.auth_line(line);
        }
        match Request::parse(&mut line.iter()) {
            Ok(request) => return self.request(request),
            Err(ParseError::UnknownCommand) => self.reply(500, "5.5.1", "command not recognized"),
            Err(ParseError::InvalidSenderAddress) => self.reply(501, "5.1.7", "bad sender address"),
            Err(ParseError::InvalidRecipientAddress) => {
                self.reply(501, "5.1.3", "bad recipient address")
            }
            Err(ParseError::SyntaxError { syntax }) => {
                self.reply(501, "5.5.2", &format!("syntax: {syntax}"))
            }
            Err(ParseError::InvalidParameter { param }) => {
                self.reply(501, "5.5.4", &format!("invalid parameter {param}"))
            }
            Err(ParseError::UnsupportedParameter { param }) => {
                self.reply(555, "5.5.4", &format!("unsupported parameter {param}"))
            }
            Err(_) => self.reply(501, "5.5.2", "syntax error"),
        }
        Flow::Continue
    }

    /// Handles one parsed command.
    fn request(&mut self, request: Request<Cow<'_, str>>) -> Flow {
        match request {
            Request::Ehlo { host } => {
                self.hello(host);
                self.ehlo();
            }
            Request::Helo { host } => {
                self.hello(host);
                write_reply(&mut self.out, 250, "", &self.shared.config.hostname);
            }
            Request::Mail { from } => {
                if self.helo.is_none() {
                    self.reply(503, "5.5.1", "send HELO/EHLO first");
                } else if self.mail_from.is_some() {
                    self.reply(503, "5.5.1", "sender already given");
                } else if self.shared.config.require_tls && !self.secure && !self.exempt {
                    self.reply(530, "5.7.0", "Must issue a STARTTLS command first");
                } else if from.size > self.shared.config.max_message_size {
                    self.reply(552, "5.3.4", "message size exceeds fixed limit");
                } else if from.size > self.shared.budget.available_for_buffers() {
                    // Only a check: the budget is taken as the message comes.
                    tracing::warn!(peer = %self.peer, size = from.size, "SMTP buffer budget exhausted");
                    self.reply(452, "4.3.1", INSUFFICIENT_STORAGE);
                } else {
                    self.mail_from = Some(from.address.into_owned());
                    self.reply(250, "2.1.0", "Ok");
                }
            }
            Request::Rcpt { to } => self.recipient(&to.address),
            Request::Data => {
                if self.mail_from.is_none() {
                    self.reply(503, "5.5.1", "need MAIL before DATA");
                } else if self.rcpt_to.is_empty() {
                    self.reply(503, "5.5.1", "need RCPT before DATA");
                } else {
                    self.in_data = true;
                    self.data.reset();
                    self.reply(354, "", "End data with <CR><LF>.<CR><LF>");
                }
            }
            Request::Rset => {
                self.reset();
                self.reply(250, "2.0.0", "Ok");
            }
            Request::Noop { .. } => self.reply(250, "2.0.0", "Ok"),
            Request::Vrfy { .. } => self.reply(
                252,
                "2.5.0",
                "cannot VRFY user, but will accept message and attempt delivery",
            ),
            Request::Help { .. } => self.reply(214, "2.0.0", "mail2sms: see RFC 5321"),
            Request::Quit => {
                let text = format!("{} closing connection", self.shared.config.hostname);
                self.reply(221, "2.0.0", &text);
                return Flow::Quit;
            }
            Request::StartTls => return self.start_tls(),
            Request::Auth {
                mechanism,
                initial_response,
            } => return self.auth(mechanism, &initial_response),
            Request::Lhlo { .. }
            | Request::Bdat { .. }
            | Request::Expn { .. }
            | Request::Etrn { .. }
            | Request::Atrn { .. }
            | Request::Burl { .. } => self.reply(502, "5.5.1", "command not implemented"),
        }
        Flow::Continue
    }

    /// The EHLO reply: STARTTLS when it can be used, AUTH when it may be.
    fn ehlo(&mut self) {
        self.out.extend_from_slice(&self.shared.ehlo);
        if self.shared.tls.is_some() && !self.secure {
            self.out.extend_from_slice(b"250-STARTTLS\r\n");
        }
        if self.auth_offered() {
            self.out.extend_from_slice(b"250-AUTH PLAIN LOGIN\r\n");
        }
        self.out.extend_from_slice(b"250 ENHANCEDSTATUSCODES\r\n");
    }

    /// Whether AUTH is offered: there are users, and the connection is
    /// encrypted or the client exempt.
    fn auth_offered(&self) -> bool {
        !self.shared.users.is_empty() && (self.secure || self.exempt)
    }

    /// STARTTLS (RFC 3207).
    fn start_tls(&mut self) -> Flow {
        if self.shared.tls.is_none() {
            self.reply(502, "5.5.1", "command not implemented");
        } else if self.secure {
            self.reply(503, "5.5.1", "TLS already active");
        } else {
            self.reply(220, "2.0.0", "Ready to start TLS");
            return Flow::StartTls;
        }
        Flow::Continue
    }

    /// AUTH (RFC 4954), PLAIN or LOGIN.
    fn auth(&mut self, mechanism: u64, initial: &str) -> Flow {
        if self.shared.users.is_empty() {
            self.reply(502, "5.5.1", "command not implemented");
        } else if !self.secure && !self.exempt {
            self.reply(
                538,
                "5.7.11",
                "Encryption required for requested authentication mechanism",
            );
        } else if self.helo.is_none() {
            self.reply(503, "5.5.1", "send EHLO first");
        } else if self.auth_user.is_some() {
            self.reply(503, "5.5.1", "already authenticated");
        } else if self.mail_from.is_some() {
            self.reply(503, "5.5.1", "AUTH not allowed during a mail transaction");
        } else if mechanism == AUTH_PLAIN && initial.is_empty() {
            self.auth_step = AuthStep::PlainResponse;
            self.out.extend_from_slice(b"334 \r\n");
        } else if mechanism == AUTH_PLAIN {
            return self.credentials(auth::decode_plain(initial));
        } else if mechanism == AUTH_LOGIN && initial.is_empty() {
            self.auth_step = AuthStep::LoginUser;
            self.out.extend_from_slice(b"334 VXNlcm5hbWU6\r\n");
        } else if mechanism == AUTH_LOGIN {
            return self.login_user(initial);
        } else {
            self.reply(504, "5.5.4", "unrecognized authentication mechanism");
        }
        Flow::Continue
    }

    /// A line of an AUTH exchange: never parsed as a command, never logged.
    fn auth_line(&mut self, line: &[u8]) -> Flow {
        let step = std::mem::take(&mut self.auth_step);
        let line = String::from_utf8_lossy(line);
        let line = line.trim_end_matches(['\r', '\n']);
        if line == "*" {
            self.reply(501, "5.7.0", "authentication cancelled");
            return Flow::Continue;
        }
        match step {
            AuthStep::Idle => Flow::Continue,
            AuthStep::PlainResponse => self.credentials(auth::decode_plain(line)),
            AuthStep::LoginUser => self.login_user(line),
            AuthStep::LoginPassword(user) => {
                let credentials =
                    auth::decode_text(line).map(|password| Credentials { user, password });
                self.credentials(credentials)
            }
        }
    }

    /// LOGIN's user name: asks for the password.
    fn login_user(&mut self, line: &str) -> Flow {
        match auth::decode_text(line) {
            Ok(user) => {
                self.auth_step = AuthStep::LoginPassword(user);
                self.out.extend_from_slice(b"334 UGFzc3dvcmQ6\r\n");
            }
            Err(error) => self.reply(501, "5.5.2", &error.to_string()),
        }
        Flow::Continue
    }

    /// Credentials decoded (or not): queues them for checking.
    fn credentials(&mut self, credentials: Result<Credentials, auth::DecodeError>) -> Flow {
        match credentials {
            Ok(credentials) => {
                self.pending = Some(credentials);
                Flow::Authenticate
            }
            Err(error) => {
                self.reply(501, "5.5.2", &error.to_string());
                Flow::Continue
            }
        }
    }

    /// Checks the credentials read (off the async threads: argon2 is slow
    /// by design): `235` and the session is authenticated, or `535`; the
    /// third failure closes the session and locks the client's address out.
    pub(super) async fn authenticate(&mut self) -> Flow {
        let Some(credentials) = self.pending.take() else {
            return Flow::Continue;
        };
        let user = credentials.user.clone();
        let ok = self.shared.users.check(credentials).await;
        if ok {
            tracing::info!(peer = %self.peer, user = %Safe(&user), "SMTP AUTH succeeded");
            self.auth_user = Some(user);
            self.reply(235, "2.7.0", "Authentication successful");
            return Flow::Continue;
        }
        self.auth_failures += 1;
        // A password typed as the user name must not reach the log.
        let known = self.shared.users.knows(&user);
        tracing::info!(
            peer = %self.peer,
            user = %Safe(if known { &user } else { "(not a user)" }),
            failures = self.auth_failures,
            "SMTP AUTH failed"
        );
        let now = std::time::Instant::now();
        let locked = self.shared.lockout.fail(self.peer.ip(), now);
        if locked || self.auth_failures >= super::lockout::MAX_FAILURES {
            tracing::warn!(
                peer = %self.peer,
                secs = self.shared.config.auth_lockout_secs,
                "SMTP client locked out after too many authentication failures"
            );
            self.shared.lockout.lock_out(self.peer.ip(), now);
            self.reply(421, "4.7.0", "too many authentication failures");
            return Flow::Quit;
        }
        self.reply(535, "5.7.8", "Authentication credentials invalid");
        Flow::Continue
    }

    /// HELO/EHLO: records the name and starts afresh.
    fn hello(&mut self, host: Cow<'_, str>) {
        self.helo = Some(host.into_owned());
        self.reset();
    }

    /// RCPT: accepts a recipient of one of our domains, within the limit.
    fn recipient(&mut self, address: &str) {
        let domains = &self.shared.config.domains;
        let local = address
            .rsplit_once('@')
            .is_some_and(|(_, domain)| domains.iter().any(|d| d.eq_ignore_ascii_case(domain)));
        if self.mail_from.is_none() {
            self.reply(503, "5.5.1", "need MAIL before RCPT");
        } else if !local {
            tracing::info!(peer = %self.peer, rcpt = %Safe(address), "SMTP relaying denied");
            self.reply(550, "5.7.1", "relaying denied");
        } else if self.rcpt_to.len() >= self.shared.config.max_recipients {
            self.reply(452, "4.5.3", "too many recipients");
        } else if let Err(reply) = self.shared.handler.recipient(&self.envelope(), address) {
            tracing::info!(peer = %self.peer, rcpt = %Safe(address), code = reply.code, "SMTP recipient refused");
            self.reply(reply.code, &reply.enhanced, &reply.text);
        } else {
            self.rcpt_to.push(address.to_owned());
            self.reply(250, "2.1.5", "Ok");
        }
    }

    /// Consumes message content; returns the bytes consumed and whether the
    /// message is complete (call [`Protocol::end_of_data`] then).
    pub(super) fn receive(&mut self, input: &[u8]) -> (usize, bool) {
        self.data.feed(input)
    }

    /// The transaction so far, as the handler sees it.
    fn envelope(&self) -> Envelope {
        Envelope {
            mail_from: self.mail_from.clone().unwrap_or_default(),
            rcpt_to: self.rcpt_to.clone(),
            helo: self.helo.clone().unwrap_or_default(),
            peer: self.peer,
            auth_user: self.auth_user.clone(),
        }
    }

    /// Ends the DATA phase: hands the message to the handler (unless it was
    /// dropped), queues the reply and closes the transaction.
    pub(super) async fn end_of_data(&mut self) {
        self.in_data = false;
        let envelope = Envelope {
            mail_from: self.mail_from.take().unwrap_or_default(),
            rcpt_to: std::mem::take(&mut self.rcpt_to),
            helo: self.helo.clone().unwrap_or_default(),
            peer: self.peer,
            auth_user: self.auth_user.clone(),
        };
        let size = self.data.size();
        let (code, enhanced, text) = match self.data.take() {
            Err(Dropped::TooBig) => (
                552,
                Cow::Borrowed("5.3.4"),
                Cow::Borrowed("message too big"),
            ),
            Err(Dropped::NoBudget) => {
                tracing::warn!(peer = %self.peer, size, "SMTP buffer budget exhausted");
                (
                    452,
                    Cow::Borrowed("4.3.1"),
                    Cow::Borrowed(INSUFFICIENT_STORAGE),
                )
            }
            Ok(message) => {
                // The handler owns the bytes until it returns: their budget is
                // given back only then, with the handling share.
                let reply = self.handle(&envelope, message.bytes).await;
                drop(message.reserved);
                if (200..=599).contains(&reply.code) {
                    (
                        reply.code,
                        Cow::Owned(reply.enhanced),
                        Cow::Owned(reply.text),
                    )
                } else {
                    tracing::error!(
                        code = reply.code,
                        "SMTP handler returned an invalid reply code"
                    );
                    (451, Cow::Borrowed("4.3.0"), Cow::Borrowed("internal error"))
                }
            }
        };
        tracing::info!(
            peer = %self.peer,
            helo = %Safe(&envelope.helo),
            mail_from = %Safe(&envelope.mail_from),
            rcpts = envelope.rcpt_to.len(),
            size,
            code,
            reply = %Safe(&text),
            "SMTP message"
        );
        self.reply(code, &enhanced, &text);
        // Keep the recipient list's allocation for the next transaction.
        self.rcpt_to = envelope.rcpt_to;
        self.rcpt_to.clear();
    }

    /// Takes the message's handling share of the budget (waiting its turn)
    /// and hands the message to the handler; `451 4.3.1` if the share did
    /// not come in time.
    async fn handle(&self, envelope: &Envelope, bytes: Vec<u8>) -> Reply {
        let size = bytes.len();
        let Some(mut share) = self.shared.budget.share(size).await else {
            tracing::warn!(peer = %self.peer, size, "SMTP handling share not available in time");
            return Reply::new(451, "4.3.1", HANDLING_BUSY);
        };
        let handler = &self.shared.handler;
        handler.message_within(envelope, bytes, &mut share).await
    }

    /// Aborts the open transaction, if any.
    fn reset(&mut self) {
        self.mail_from = None;
        self.rcpt_to.clear();
    }

    /// Queues one reply.
    fn reply(&mut self, code: u16, enhanced: &str, text: &str) {
        write_reply(&mut self.out, code, enhanced, text);
    }
}

/// Writes a reply (multi-line if `text` has several lines); `code` must be
/// three digits. CRs and LFs cannot leak from `enhanced` or `text` into the
/// protocol.
fn write_reply(out: &mut Vec<u8>, code: u16, enhanced: &str, text: &str) {
    let digits = [
        b'0' + (code / 100 % 10) as u8,
        b'0' + (code / 10 % 10) as u8,
        b'0' + (code % 10) as u8,
    ];
    let mut lines = text
        .trim_end_matches(['\r', '\n'])
        .split('\n')
        .map(|line| line.strip_suffix('\r').unwrap_or(line))
        .peekable();
    while let Some(line) = lines.next() {
        out.extend_from_slice(&digits);
        out.push(if lines.peek().is_some() { b'-' } else { b' ' });
        if !enhanced.is_empty() {
            push_clean(out, enhanced);
            out.push(b' ');
        }
        push_clean(out, line);
        out.extend_from_slice(b"\r\n");
    }
}

/// Appends `text` with any CR or LF turned into a space.
fn push_clean(out: &mut Vec<u8>, text: &str) {
    let start = out.len();
    out.extend_from_slice(text.as_bytes());
    for byte in &mut out[start..] {
        if matches!(byte, b'\r' | b'\n') {
            *byte = b' ';
        }
    }
}

#[cfg(test)]
mod tests {
    use super::write_reply;

    fn reply(code: u16, enhanced: &str, text: &str) -> String {
        let mut out = Vec::new();
        write_reply(&mut out, code, enhanced, text);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn replies_are_formatted() {
        assert_eq!(reply(250, "2.0.0", "Ok"), "250 2.0.0 Ok\r\n");
        assert_eq!(reply(354, "", "go"), "354 go\r\n");
        assert_eq!(
            reply(550, "5.7.1", "a\r\nb\n"),
            "550-5.7.1 a\r\n550 5.7.1 b\r\n"
        );
        assert_eq!(reply(451, "4.3.0\r\n", "x\ry"), "451 4.3.0   x y\r\n");
        assert_eq!(reply(250, "", ""), "250 \r\n");
    }
}
