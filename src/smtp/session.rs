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
    pub(super) fn new(
        stream: S,
        shared: Arc<Shared>,
        peer: SocketAddr,
        shutdown: watch::Receiver<bool>,
    ) -> Self {
        Self {
            stream,
            lines: LineReader::new(shared.config.max_line_length),
            protocol: Protocol::new(shared.clone(), peer),
            shutdown,
            expires: Instant::now().checked_add(shared.max_session),
            shared,
        }
    }

    /// Runs the session to its end.
    pub(super) async fn run(mut self) -> Result<(), SessionError> {
        self.protocol.greet();
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
                return self.flush().await;
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
                return Ok(());
            }
            let flow = self.process(&input[..n]).await;
            self.flush().await?;
            if flow == Flow::Quit {
                return Ok(());
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
                Frame::Line(line) => {
                    if self.protocol.command(line) == Flow::Quit {
                        return Flow::Quit;
                    }
                }
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
