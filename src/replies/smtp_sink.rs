//! Test support: a tiny SMTP server on 127.0.0.1 that records what it is
//! sent, and decoders for what it records.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

/// How the sink answers.
#[derive(Clone, Copy)]
pub enum Behaviour {
    /// Accept everything.
    Accept,
    /// Answer this line to every RCPT TO.
    RejectRcpt(&'static str),
    /// Answer this line to every AUTH.
    RejectAuth(&'static str),
}

/// One accepted message.
#[derive(Clone, Debug, Default)]
pub struct Received {
    /// The EHLO argument.
    pub ehlo: String,
    /// The decoded AUTH PLAIN payload (`\0user\0password`), if any.
    pub auth: Option<String>,
    /// The MAIL FROM argument, e.g. `<a@b>`.
    pub mail_from: String,
    /// The RCPT TO arguments.
    pub rcpt_to: Vec<String>,
    /// The DATA, dot-unstuffed, without the final `.` line.
    pub data: Vec<u8>,
}

/// A running sink.
pub struct Sink {
    /// Where it listens.
    pub addr: SocketAddr,
    /// What it accepted so far.
    received: Arc<Mutex<Vec<Received>>>,
}

impl Sink {
    /// The messages accepted so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("sink lock").clone()
    }
}

/// Starts a sink on an ephemeral port; it serves until the runtime ends.
pub async fn start(behaviour: Behaviour) -> Sink {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind sink");
    let addr = listener.local_addr().expect("sink addr");
    let received = Arc::new(Mutex::new(Vec::new()));
    let store = Arc::clone(&received);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, behaviour, Arc::clone(&store)));
        }
    });
    Sink { addr, received }
}

/// One SMTP session.
async fn serve(stream: TcpStream, behaviour: Behaviour, store: Arc<Mutex<Vec<Received>>>) {
    let (read, mut write) = stream.into_split();
    let mut read = BufReader::new(read);
    let mut current = Received::default();
    let _ = write.write_all(b"220 sink ESMTP\r\n").await;
    loop {
        let mut line = Vec::new();
        match read.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&line).trim_end().to_owned();
        let upper = line.to_ascii_uppercase();
        let reply: String = if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            current.ehlo = line[4..].trim().to_owned();
            "250-sink\r\n250-AUTH PLAIN\r\n250 8BITMIME".into()
        } else if upper.starts_with("AUTH PLAIN") {
            match behaviour {
                Behaviour::RejectAuth(answer) => answer.into(),
                _ => {
                    let payload = decode_base64(line[10..].trim());
                    current.auth = Some(String::from_utf8(payload).expect("utf-8 credentials"));
                    "235 2.7.0 ok".into()
                }
            }
        } else if upper.starts_with("MAIL FROM:") {
            current.mail_from = line[10..].trim().to_owned();
            "250 ok".into()
        } else if upper.starts_with("RCPT TO:") {
            match behaviour {
                Behaviour::RejectRcpt(answer) => answer.into(),
                _ => {
                    current.rcpt_to.push(line[8..].trim().to_owned());
                    "250 ok".into()
                }
            }
        } else if upper == "DATA" {
            let _ = write.write_all(b"354 go ahead\r\n").await;
            let mut data = Vec::new();
            loop {
                let mut l = Vec::new();
                match read.read_until(b'\n', &mut l).await {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if l == b".\r\n" {
                    break;
                }
                let l = if l.starts_with(b"..") {
                    &l[1..]
                } else {
                    &l[..]
                };
                data.extend_from_slice(l);
            }
            let mut mail = std::mem::take(&mut current);
            mail.data = data;
            current.ehlo.clone_from(&mail.ehlo);
            current.auth.clone_from(&mail.auth);
            store.lock().expect("sink lock").push(mail);
            "250 2.0.0 queued".into()
        } else if upper == "QUIT" {
            let _ = write.write_all(b"221 bye\r\n").await;
            return;
        } else if upper == "RSET" {
            current.mail_from.clear();
            current.rcpt_to.clear();
            "250 ok".into()
        } else if upper == "NOOP" {
            "250 ok".into()
        } else {
            "502 5.5.2 not implemented".into()
        };
        if write
            .write_all(format!("{reply}\r\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Decodes a quoted-printable body (soft line breaks and `=XX`).
pub fn decode_qp(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        if input[i] == b'=' {
            if input[i + 1..].starts_with(b"\r\n") {
                i += 3;
                continue;
            }
            let hex = std::str::from_utf8(&input[i + 1..i + 3]).expect("hex");
            out.push(u8::from_str_radix(hex, 16).expect("qp escape"));
            i += 3;
        } else {
            out.push(input[i]);
            i += 1;
        }
    }
    out
}

/// Decodes standard base64 (with padding).
fn decode_base64(input: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in input.bytes().filter(|&c| c != b'=') {
        let v = ALPHABET.iter().position(|&a| a == c).expect("base64 char");
        bits = (bits << 6) | u32::try_from(v).expect("6 bits");
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push(u8::try_from((bits >> count) & 0xFF).expect("byte"));
        }
    }
    out
}

#[test]
fn decoders() {
    assert_eq!(decode_base64("AGJvYgBwdw=="), b"\0bob\0pw");
    assert_eq!(decode_qp(b"a=E9=\r\nb\r\n"), b"a\xE9b\r\n");
}
