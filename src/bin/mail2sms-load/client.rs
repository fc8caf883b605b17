//! A minimal SMTP client: one message per connection, timed.

use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Timeout for establishing a TCP connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout for each SMTP reply (and each write).
const REPLY_TIMEOUT: Duration = Duration::from_secs(30);
/// Timeout for the reply to QUIT (not measured, only politeness).
const QUIT_TIMEOUT: Duration = Duration::from_secs(5);

/// What became of one message.
#[derive(Debug)]
pub(crate) enum Status {
    /// Final reply to DATA received (any code); `code == 250` means accepted.
    Done {
        /// The reply code.
        code: u16,
        /// A `250` saying the emailId was already processed (nothing queued).
        duplicate: bool,
        /// When the last byte of DATA was written (latency start).
        data_end: Instant,
        /// When the reply arrived (latency end).
        reply_at: Instant,
        /// The same moment on the wall clock, for `--record`.
        reply_wall: SystemTime,
    },
    /// A non-expected reply before the end of DATA (greeting, EHLO, MAIL, RCPT, DATA).
    Refused {
        /// The step that was refused: `greeting`, `ehlo`, `mail`, `rcpt` or `data`.
        stage: &'static str,
        /// The refusing reply's code.
        code: u16,
    },
    /// Connection / I/O / timeout / protocol error.
    Failed {
        /// The step that failed: `connect`, a command, `body` or `end-of-data`.
        stage: &'static str,
        /// What went wrong, for the report's error counts.
        what: String,
    },
}

/// One sent message and what became of it.
pub(crate) struct Outcome {
    /// The message's index (it picks the phone number; outcomes are sorted on it).
    pub(crate) idx: usize,
    /// The emailId sent: how the outbox and the store name the message.
    pub(crate) email_id: String,
    /// The daemon's answer, or why there was none.
    pub(crate) status: Status,
}

/// One SMTP connection, read line by line.
type Conn = BufReader<TcpStream>;

/// Reads one (possibly multi-line) reply: its code and its last line.
async fn read_reply(conn: &mut Conn, limit: Duration) -> Result<(u16, String), String> {
    let fut = async {
        let mut line = String::new();
        loop {
            line.clear();
            let n = conn
                .read_line(&mut line)
                .await
                .map_err(|e| format!("read: {e}"))?;
            if n == 0 {
                return Err("connection closed".to_string());
            }
            let b = line.as_bytes();
            if b.len() < 3 || !b[..3].iter().all(u8::is_ascii_digit) {
                return Err(format!("bad reply line {:?}", line.trim_end()));
            }
            let code: u16 = line[..3].parse().unwrap_or(0);
            // "250-..." continues a multi-line reply, "250 ..." or "250" ends it.
            if b.get(3) != Some(&b'-') {
                return Ok((code, line.trim_end().to_string()));
            }
        }
    };
    match tokio::time::timeout(limit, fut).await {
        Ok(r) => r,
        Err(_) => Err("timeout".to_string()),
    }
}

/// Writes and flushes `bytes`, within `REPLY_TIMEOUT`.
async fn write_all(conn: &mut Conn, bytes: &[u8]) -> Result<(), String> {
    let fut = async {
        let s = conn.get_mut();
        s.write_all(bytes).await?;
        s.flush().await
    };
    match tokio::time::timeout(REPLY_TIMEOUT, fut).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(format!("write: {e}")),
        Err(_) => Err("write timeout".to_string()),
    }
}

/// Send a command and expect one of `ok` codes.
async fn command(
    conn: &mut Conn,
    stage: &'static str,
    line: &str,
    ok: &[u16],
) -> Result<(), Status> {
    write_all(conn, line.as_bytes())
        .await
        .map_err(|what| Status::Failed { stage, what })?;
    expect(conn, stage, ok).await
}

/// Reads a reply and expects one of `ok` codes.
async fn expect(conn: &mut Conn, stage: &'static str, ok: &[u16]) -> Result<(), Status> {
    match read_reply(conn, REPLY_TIMEOUT).await {
        Ok((code, _)) if ok.contains(&code) => Ok(()),
        Ok((code, _)) => Err(Status::Refused { stage, code }),
        Err(what) => Err(Status::Failed { stage, what }),
    }
}

/// Sends one message on a new connection (greeting to end of DATA, then
/// a polite QUIT) and times its end of DATA.
pub(crate) async fn send_one(addr: SocketAddr, from: &str, to: &str, data: &[u8]) -> Status {
    let stream = match tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Status::Failed {
                stage: "connect",
                what: e.kind().to_string(),
            };
        }
        Err(_) => {
            return Status::Failed {
                stage: "connect",
                what: "timeout".to_string(),
            };
        }
    };
    let _ = stream.set_nodelay(true);
    let mut conn = BufReader::with_capacity(4096, stream);

    let r = async {
        expect(&mut conn, "greeting", &[220]).await?;
        command(&mut conn, "ehlo", "EHLO load-client.load.test\r\n", &[250]).await?;
        command(
            &mut conn,
            "mail",
            &format!("MAIL FROM:<{from}>\r\n"),
            &[250],
        )
        .await?;
        command(
            &mut conn,
            "rcpt",
            &format!("RCPT TO:<{to}>\r\n"),
            &[250, 251],
        )
        .await?;
        command(&mut conn, "data", "DATA\r\n", &[354]).await?;
        write_all(&mut conn, data)
            .await
            .map_err(|what| Status::Failed {
                stage: "body",
                what,
            })?;
        // `data` ends with CRLF, so this completes "\r\n.\r\n".
        write_all(&mut conn, b".\r\n")
            .await
            .map_err(|what| Status::Failed {
                stage: "body",
                what,
            })?;
        let data_end = Instant::now();
        let (code, text) =
            read_reply(&mut conn, REPLY_TIMEOUT)
                .await
                .map_err(|what| Status::Failed {
                    stage: "end-of-data",
                    what,
                })?;
        let reply_at = Instant::now();
        Ok::<_, Status>(Status::Done {
            code,
            duplicate: code == 250 && text.contains("already processed"),
            data_end,
            reply_at,
            reply_wall: SystemTime::now(),
        })
    }
    .await;

    let status = r.unwrap_or_else(|s| s);
    if !matches!(status, Status::Failed { .. }) {
        // Polite QUIT; its outcome is not measured.
        if write_all(&mut conn, b"QUIT\r\n").await.is_ok() {
            let _ = read_reply(&mut conn, QUIT_TIMEOUT).await;
        }
    }
    status
}
