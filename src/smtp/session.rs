//! One SMTP connection: reads input in batches, feeds it to the protocol and
//! writes the replies of each batch at once.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::watch;
use tokio::time::{Instant, timeout};

use super::Shared;
use super::line::{Frame, LineReader};
use super::protocol::{Flow, Protocol};

/// Size of the read buffer: a whole pipelined command batch or a good chunk
/// of message fits in one read.
const READ_BUFFER: usize = 16 * 1024;

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionError {
    /// The connection failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The client sent nothing for too long (it was told 421).
    #[error("idle timeout")]
    IdleTimeout,
    /// The client did not read our replies for too long.
    #[error("write timeout")]
    WriteTimeout,
}

/// How a session that did not fail ended.
pub(super) enum End<S> {
    /// The connection is over.
    Closed,
    /// The client was told `220` to STARTTLS: the TLS handshake comes next
    /// on this stream, then a fresh session (RFC 3207: all state forgotten).
    /// Input the client sent after the STARTTLS line has been discarded.
    StartTls {
        /// The connection, plain still.
        stream: S,
        /// When the session's time is up, which the encrypted session keeps.
        expires: Option<Instant>,
    },
}

/// One client connection.
pub(super) struct Session<S> {
    /// The connection to the client.
    stream: S,
    /// Frames command lines.
    lines: LineReader,
    /// The SMTP state machine, which also holds the pending replies.
    protocol: Protocol,
    /// Becomes `true` when the server shuts down.
    shutdown: watch::Receiver<bool>,
    /// Configuration and the idle timeout.
    shared: Arc<Shared>,
    /// When the session has lasted `max_session_secs` and its next command
    /// closes it; `None` if that is too far to represent (never).
    expires: Option<Instant>,
}

impl<S: AsyncRead + AsyncWrite + Unpin> Session<S> {
    /// A session on a plain connection, which starts with the greeting.
    pub(super) fn new(
        stream: S,
        shared: Arc<Shared>,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        let expires = Instant::now().checked_add(shared.max_session);
        Self::start(stream, shared, peer, shutdown, false, expires)
    }

    /// A session on an encrypted connection; `expires` as for [`End::StartTls`]
    /// (implicit TLS: from the connection's start).
    pub(super) fn encrypted(
        stream: S,
        shared: Arc<Shared>,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
        expires: Option<Instant>,
    ) -> Self {
        Self::start(stream, shared, peer, shutdown, true, expires)
    }

    fn start(
        stream: S,
        shared: Arc<Shared>,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
        secure: bool,
        expires: Option<Instant>,
    ) -> Self {
        Self {
            stream,
            lines: LineReader::new(shared.config.max_line_length),
            protocol: Protocol::new(shared.clone(), peer, secure),
            shutdown,
            expires,
            shared,
        }
    }

    /// Runs the session to its end. After STARTTLS no greeting is sent: the
    /// client sends EHLO at once (RFC 3207).
    pub(super) async fn run(mut self, greet: bool) -> Result<End<S>, SessionError> {
        if greet {
            self.protocol.greet();
        }
        self.flush().await?;
        let mut input = vec![0; READ_BUFFER].into_boxed_slice();
        // When the DATA phase under way must be over.
        let mut data_deadline: Option<Instant> = None;
        loop {
            let in_data = self.protocol.in_data();
            let now = Instant::now();
            let wait = match (in_data, data_deadline) {
                (false, _) => {
                    data_deadline = None;
                    self.shared.idle_timeout
                }
                (true, None) => {
                    // A deadline too far to represent is no deadline.
                    data_deadline = now.checked_add(self.shared.data_timeout);
                    self.shared.idle_timeout.min(self.shared.data_timeout)
                }
                (true, Some(deadline)) => self
                    .shared
                    .idle_timeout
                    .min(deadline.saturating_duration_since(now)),
            };
            let read = tokio::select! {
                biased;
                // A message being received is let through; idle clients go.
                _ = self.shutdown.wait_for(|&stop| stop), if !in_data => None,
                read = timeout(wait, self.stream.read(&mut input)) => Some(read),
            };
            let Some(read) = read else {
                self.protocol.shutting_down();
                self.flush().await?;
                return Ok(End::Closed);
            };
            let Ok(read) = read else {
                if data_deadline.is_some_and(|d| Instant::now() >= d) {
                    self.protocol.data_timeout();
                } else {
                    self.protocol.idle_timeout();
                }
                self.flush().await?;
                return Err(SessionError::IdleTimeout);
            };
            let n = read?;
            if n == 0 {
                return Ok(End::Closed);
            }
            let flow = self.process(&input[..n]).await;
            self.flush().await?;
            match flow {
                Flow::Quit => return Ok(End::Closed),
                Flow::StartTls => {
                    return Ok(End::StartTls {
                        stream: self.stream,
                        expires: self.expires,
                    });
                }
                Flow::Continue | Flow::Authenticate => {}
            }
        }
    }

    /// Feeds one batch of input to the protocol.
    async fn process(&mut self, mut input: &[u8]) -> Flow {
        while !input.is_empty() {
            if self.protocol.in_data() {
                let (used, done) = self.protocol.receive(input);
                input = &input[used..];
                if done {
                    self.protocol.end_of_data().await;
                }
                continue;
            }
            // Checked on any command input, a partial line included, so that
            // a client trickling a never-ending line is closed too.
            if self.expired() {
                self.protocol.session_too_long();
                return Flow::Quit;
            }
            let (used, frame) = self.lines.frame(input);
            input = &input[used..];
            match frame {
                Frame::Line(line) => match self.protocol.command(line) {
                    Flow::Continue => {}
                    Flow::Authenticate => {
                        if self.protocol.authenticate().await == Flow::Quit {
                            return Flow::Quit;
                        }
                    }
                    Flow::Quit => return Flow::Quit,
                    Flow::StartTls => {
                        // CVE-2011-0411: what was sent in clear after STARTTLS
                        // must not be taken as sent over TLS.
                        let left = input.len();
                        if left > 0 {
                            tracing::info!(
                                peer = %self.protocol.peer(),
                                bytes = left,
                                "SMTP input pipelined after STARTTLS discarded"
                            );
                        }
                        return Flow::StartTls;
                    }
                },
                Frame::TooLong => self.protocol.line_too_long(),
                Frame::Pending => {}
            }
        }
        Flow::Continue
    }

    /// Whether the session has lasted `max_session_secs`.
    fn expired(&self) -> bool {
        self.expires
            .is_some_and(|expires| Instant::now() >= expires)
    }

    /// Writes the pending replies.
    async fn flush(&mut self) -> Result<(), SessionError> {
        if self.protocol.output().is_empty() {
            return Ok(());
        }
        let write = async {
            self.stream.write_all(self.protocol.output()).await?;
            self.stream.flush().await
        };
        timeout(self.shared.idle_timeout, write)
            .await
            .map_err(|_| SessionError::WriteTimeout)??;
        self.protocol.clear_output();
        Ok(())
    }
}
