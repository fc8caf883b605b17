//! Issue 10, SMTP security: STARTTLS, `require_tls`, AUTH PLAIN and LOGIN,
//! the AUTH lockout and `smtp.networks`.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::super::auth::{self, DecodeError};
use super::super::lockout::Lockout;
use super::super::session::SessionError;
use super::super::{ServerTls, Shared, SmtpUser, connection};
use super::{Client, Recorder, config, serve};
use crate::net::Networks;

/// The password of the test user `alice`.
const PASSWORD: &str = "correct horse";

/// An argon2id PHC string of `password` with the cheapest parameters: the
/// PHC string carries them, so the server checks it as fast.
fn cheap_hash(password: &str) -> String {
    let params = Params::new(8, 1, 1, None).unwrap();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::encode_b64(b"a fixed test salt").unwrap();
    argon2
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

fn b64(bytes: &[u8]) -> String {
    use base64ct::{Base64, Encoding};
    Base64::encode_string(bytes)
}

/// A test config with the user `alice`; `exempt` as `tls_exempt_networks`.
fn auth_config(exempt: &str) -> super::SmtpConfig {
    let mut config = config();
    config.users.insert(
        "alice".into(),
        SmtpUser {
            password_hash: cheap_hash(PASSWORD),
            account: "acme".into(),
        },
    );
    config.tls_exempt_networks = networks(exempt);
    config
}

fn networks(list: &str) -> Networks {
    toml::from_str::<toml::Value>(&format!("n = {list}"))
        .unwrap()
        .get("n")
        .unwrap()
        .clone()
        .try_into()
        .unwrap()
}

/// A self-signed certificate for `localhost`, in files, and the server's
/// TLS identity read from them.
struct TestCert {
    /// Holds the PEM files.
    dir: tempfile::TempDir,
    /// The certificate, for the client to trust.
    cert: rustls_pki_types::CertificateDer<'static>,
    /// The server's identity.
    tls: Arc<ServerTls>,
}

fn test_cert() -> TestCert {
    let dir = tempfile::tempdir().unwrap();
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, generated.cert.pem()).unwrap();
    std::fs::write(&key_path, generated.signing_key.serialize_pem()).unwrap();
    let tls = Arc::new(ServerTls::load(&cert_path, &key_path).unwrap());
    TestCert {
        dir,
        cert: generated.cert.der().clone(),
        tls,
    }
}

/// A client connector that trusts only `cert`.
fn connector(cert: &rustls_pki_types::CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// A connection from `peer` served as the accept loop serves it, over an
/// in-memory pipe; the greeting is read.
async fn connect(
    config: super::SmtpConfig,
    handler: Arc<Recorder>,
    tls: Option<Arc<ServerTls>>,
    peer: &str,
) -> (Client<DuplexStream>, JoinHandle<Result<(), SessionError>>) {
    let shared = Arc::new(Shared::with_tls(Arc::new(config), handler, tls));
    connect_on(shared, peer).await
}

async fn connect_on(
    shared: Arc<Shared>,
    peer: &str,
) -> (Client<DuplexStream>, JoinHandle<Result<(), SessionError>>) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (stop, stop_rx) = watch::channel(false);
    let peer: SocketAddr = peer.parse().unwrap();
    let session = tokio::spawn(connection(server, shared, peer, stop_rx, false));
    let mut client = Client::new(client);
    client.stop = Some(stop);
    client.expect_reply("220 ").await;
    (client, session)
}

/// Upgrades a client told `220 2.0.0 Ready to start TLS`.
async fn handshake<S: AsyncRead + AsyncWrite + Unpin>(
    client: Client<S>,
    cert: &TestCert,
) -> Client<tokio_rustls::client::TlsStream<S>> {
    let Client { stream, stop } = client;
    assert!(stream.buffer().is_empty(), "plain bytes after the 220");
    let name = ServerName::try_from("localhost").unwrap();
    let tls = connector(&cert.cert)
        .connect(name, stream.into_inner())
        .await
        .unwrap();
    let mut client = Client::new(tls);
    client.stop = stop;
    client
}

/// A client outside the exempt networks and not a loopback one.
const REMOTE: &str = "192.0.2.7:4321";

#[test]
fn plain_and_login_responses_are_decoded() {
    let plain = auth::decode_plain(&b64(b"\0alice\0secret")).unwrap();
    assert_eq!(
        (plain.user.as_str(), plain.password.as_str()),
        ("alice", "secret")
    );
    let plain = auth::decode_plain(&b64(b"alice\0alice\0p\0ss")).err();
    assert_eq!(plain, Some(DecodeError::Malformed), "a NUL in the password");
    // An authorization identity equal to the user is allowed...
    let same = auth::decode_plain(&b64(b"alice\0alice\0pw")).unwrap();
    assert_eq!(same.user, "alice");
    // ...another one is not: a user cannot act as someone else.
    assert_eq!(
        auth::decode_plain(&b64(b"bob\0alice\0pw")).err(),
        Some(DecodeError::Malformed)
    );
    assert_eq!(
        auth::decode_plain(&b64(b"alice\0pw")).err(),
        Some(DecodeError::Malformed)
    );
    assert_eq!(
        auth::decode_plain(&b64(b"\0\0pw")).err(),
        Some(DecodeError::Malformed)
    );
    assert_eq!(
        auth::decode_plain("not base64!").err(),
        Some(DecodeError::Base64)
    );
    assert_eq!(
        auth::decode_text(&b64("élise".as_bytes())).unwrap(),
        "élise"
    );
    assert_eq!(auth::decode_text("=").unwrap(), "");
    assert_eq!(
        auth::decode_text(&b64(b"\xff")).err(),
        Some(DecodeError::Malformed)
    );
}

#[test]
fn hashes_are_checked_and_made() {
    let hash = auth::hash_password("s3cret").unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(auth::check_hash(&hash).is_ok());
    assert!(auth::check_hash(&cheap_hash("x")).is_ok());
    assert!(matches!(
        auth::hash_password(""),
        Err(auth::HashError::Empty)
    ));
    for bad in [
        "",
        "s3cret",
        "$argon2id$v=19$m=8,t=1,p=1",
        "$pbkdf2$i=1$c2FsdA$aGFzaA",
    ] {
        let error = auth::check_hash(bad).unwrap_err();
        assert!(bad.is_empty() || !error.contains(bad), "{error}");
    }
    let users = auth::Users::new(&auth_config("[]").users);
    let creds = |user: &str, password: &str| auth::Credentials {
        user: user.into(),
        password: password.into(),
    };
    assert!(users.verify(&creds("alice", PASSWORD)));
    assert!(!users.verify(&creds("alice", "wrong")));
    // An unknown user is checked against a real hash, and always fails,
    // even with that user's password.
    assert!(!users.verify(&creds("mallory", PASSWORD)));
}

#[tokio::test]
async fn auth_needs_tls_or_an_exempt_client() {
    let (mut client, _) = connect(auth_config("[]"), Arc::default(), None, REMOTE).await;
    let ehlo = client.cmd("EHLO client.example").await;
    assert!(!ehlo.contains("AUTH"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(ehlo.ends_with("250 ENHANCEDSTATUSCODES\r\n"), "{ehlo}");
    let plain = b64(format!("\0alice\0{PASSWORD}").as_bytes());
    assert_eq!(
        client.cmd(&format!("AUTH PLAIN {plain}")).await,
        "538 5.7.11 Encryption required for requested authentication mechanism\r\n"
    );
    // Without users there is no AUTH at all.
    let (mut client, _) = connect(config(), Arc::default(), None, REMOTE).await;
    client.expect("EHLO client.example", "250-").await;
    client
        .expect(&format!("AUTH PLAIN {plain}"), "502 5.5.1 ")
        .await;
}

#[tokio::test]
async fn auth_plain_in_one_line_and_in_two() {
    let recorder = Arc::new(Recorder::default());
    let config = auth_config(r#"["192.0.2.0/24"]"#);
    let (mut client, _) = connect(config.clone(), recorder.clone(), None, REMOTE).await;
    let ehlo = client.cmd("EHLO client.example").await;
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN\r\n"), "{ehlo}");
    client.expect("AUTH PLAIN", "334 ").await;
    let plain = b64(format!("\0alice\0{PASSWORD}").as_bytes());
    assert_eq!(
        client.cmd(&plain).await,
        "235 2.7.0 Authentication successful\r\n"
    );
    client
        .expect(&format!("AUTH PLAIN {plain}"), "503 5.5.1 ")
        .await;
    client
        .envelope("a@example.org", "0612345678@sms.example.com")
        .await;
    client
        .expect_data("Subject: x\r\n\r\nhi\r\n.\r\n", "250 ")
        .await;
    assert_eq!(recorder.messages()[0].0.auth_user.as_deref(), Some("alice"));

    // One line, and AUTH refused during a transaction.
    let (mut client, _) = connect(config, recorder.clone(), None, REMOTE).await;
    client.expect("EHLO client.example", "250-").await;
    client.expect("MAIL FROM:<a@example.org>", "250 ").await;
    client
        .expect(&format!("AUTH PLAIN {plain}"), "503 5.5.1 ")
        .await;
    client.expect("RSET", "250 ").await;
    client.expect(&format!("AUTH PLAIN {plain}"), "235 ").await;
}

#[tokio::test]
async fn auth_login_with_and_without_initial_response_and_cancel() {
    let recorder = Arc::new(Recorder::default());
    let config = auth_config(r#"["192.0.2.0/24"]"#);
    let (mut client, _) = connect(config.clone(), recorder.clone(), None, REMOTE).await;
    client.expect("EHLO client.example", "250-").await;
    assert_eq!(client.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6\r\n");
    // `*` cancels; the line is not taken as a command.
    assert_eq!(
        client.cmd("*").await,
        "501 5.7.0 authentication cancelled\r\n"
    );
    assert_eq!(client.cmd("AUTH LOGIN").await, "334 VXNlcm5hbWU6\r\n");
    assert_eq!(client.cmd(&b64(b"alice")).await, "334 UGFzc3dvcmQ6\r\n");
    // A password that looks like a command is still a password.
    client.expect(&b64(b"QUIT"), "535 5.7.8 ").await;
    assert_eq!(
        client.cmd(&format!("AUTH LOGIN {}", b64(b"alice"))).await,
        "334 UGFzc3dvcmQ6\r\n"
    );
    client.expect(&b64(PASSWORD.as_bytes()), "235 2.7.0 ").await;
    client
        .envelope("a@example.org", "0612345678@sms.example.com")
        .await;
    client
        .expect_data("Subject: x\r\n\r\nhi\r\n.\r\n", "250 ")
        .await;
    assert_eq!(recorder.messages()[0].0.auth_user.as_deref(), Some("alice"));
    client.expect("AUTH CRAM-MD5", "503 ").await;

    let (mut client, _) = connect(config, recorder, None, REMOTE).await;
    client.expect("EHLO client.example", "250-").await;
    client.expect("AUTH CRAM-MD5", "504 5.5.4 ").await;
    client.expect("AUTH LOGIN", "334 ").await;
    client.expect("!!!", "501 5.5.2 ").await;
    client.expect("NOOP", "250 ").await;
}

#[tokio::test]
async fn the_third_failure_closes_the_session_and_locks_the_address_out() {
    let config = auth_config(r#"["192.0.2.0/24"]"#);
    let shared = Arc::new(Shared::with_tls(
        Arc::new(config),
        Arc::new(Recorder::default()),
        None,
    ));
    let (mut client, session) = connect_on(shared.clone(), REMOTE).await;
    client.expect("EHLO client.example", "250-").await;
    let wrong = b64(b"\0alice\0wrong");
    for _ in 0..2 {
        assert_eq!(
            client.cmd(&format!("AUTH PLAIN {wrong}")).await,
            "535 5.7.8 Authentication credentials invalid\r\n"
        );
    }
    assert!(
        !shared
            .lockout
            .is_locked(REMOTE.parse::<SocketAddr>().unwrap().ip(), Instant::now())
    );
    assert_eq!(
        client
            .cmd(&format!("AUTH PLAIN {}", b64(b"\0nobody\0x")))
            .await,
        "421 4.7.0 too many authentication failures\r\n"
    );
    client.closed().await;
    assert!(session.await.unwrap().is_ok());
    let ip: IpAddr = "192.0.2.7".parse().unwrap();
    assert!(shared.lockout.is_locked(ip, Instant::now()));
    assert!(
        !shared
            .lockout
            .is_locked("192.0.2.8".parse().unwrap(), Instant::now())
    );
}

#[test]
fn lockouts_expire_and_the_table_is_bounded() {
    let lockout = Lockout::new(Duration::from_secs(60), 3);
    let now = Instant::now();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    lockout.lock_out(ip("192.0.2.1"), now);
    assert!(lockout.is_locked(ip("192.0.2.1"), now + Duration::from_secs(59)));
    assert!(!lockout.is_locked(ip("192.0.2.1"), now + Duration::from_secs(60)));
    assert_eq!(lockout.len(), 0, "an expired lock is forgotten");
    // IPv6 by /64.
    lockout.lock_out(ip("2001:db8:1:2::1"), now);
    assert!(lockout.is_locked(ip("2001:db8:1:2:ffff::9"), now));
    assert!(!lockout.is_locked(ip("2001:db8:1:3::1"), now));
    // Never more than the capacity: the lock ending first goes.
    for (i, last) in ["192.0.2.2", "192.0.2.3", "192.0.2.4", "192.0.2.5"]
        .iter()
        .enumerate()
    {
        lockout.lock_out(ip(last), now + Duration::from_secs(i as u64 + 1));
    }
    assert_eq!(lockout.len(), 3);
    assert!(!lockout.is_locked(ip("2001:db8:1:2::1"), now));
    assert!(lockout.is_locked(ip("192.0.2.5"), now));
    // Expired entries make room first.
    let later = now + Duration::from_secs(62);
    lockout.lock_out(ip("198.51.100.1"), later);
    assert!(lockout.is_locked(ip("198.51.100.1"), later));
    assert!(
        lockout.is_locked(ip("192.0.2.5"), later),
        "still locked until +65 s"
    );
    // Off when the duration is 0.
    let off = Lockout::new(Duration::ZERO, 3);
    off.lock_out(ip("192.0.2.1"), now);
    assert!(!off.is_locked(ip("192.0.2.1"), now));
}

/// Review of issue 10: failures count per address across sessions, so two
/// tries per connection and a reconnect are locked out too; failures older
/// than the lockout duration are forgotten, and the table stays bounded.
#[test]
fn auth_failures_count_per_address_across_sessions() {
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    let lockout = Lockout::new(Duration::from_secs(60), 2);
    let now = Instant::now();
    let a = ip("192.0.2.1");
    assert!(!lockout.fail(a, now));
    assert!(!lockout.fail(a, now + Duration::from_secs(1)));
    // A new session from the same address: the third failure locks.
    assert!(lockout.fail(a, now + Duration::from_secs(2)));
    assert!(lockout.is_locked(a, now + Duration::from_secs(3)));
    // Spread out beyond the duration, failures do not add up.
    let b = ip("192.0.2.2");
    assert!(!lockout.fail(b, now));
    assert!(!lockout.fail(b, now + Duration::from_secs(1)));
    assert!(!lockout.fail(b, now + Duration::from_secs(61)));
    assert!(!lockout.is_locked(b, now + Duration::from_secs(62)));
    // Many addresses: the table keeps at most its capacity.
    for i in 0..10u8 {
        lockout.fail(ip(&format!("198.51.100.{i}")), now);
    }
    assert!(lockout.failures_len() <= 2);
    assert!(
        !Lockout::new(Duration::ZERO, 2).fail(a, now),
        "0 turns it off"
    );
}

#[tokio::test]
async fn require_tls_refuses_mail_in_clear_except_from_exempt_clients() {
    let cert = test_cert();
    let mut config = auth_config("[\"127.0.0.0/8\"]");
    config.require_tls = true;
    let (mut client, _) = connect(
        config.clone(),
        Arc::default(),
        Some(cert.tls.clone()),
        REMOTE,
    )
    .await;
    let ehlo = client.cmd("EHLO client.example").await;
    assert!(ehlo.contains("250-STARTTLS\r\n"), "{ehlo}");
    assert_eq!(
        client.cmd("MAIL FROM:<a@example.org>").await,
        "530 5.7.0 Must issue a STARTTLS command first\r\n"
    );
    let (mut local, _) = connect(
        config,
        Arc::default(),
        Some(cert.tls.clone()),
        "127.0.0.1:4000",
    )
    .await;
    local.expect("EHLO client.example", "250-").await;
    local.expect("MAIL FROM:<a@example.org>", "250 ").await;
    drop(cert.dir);
}

#[tokio::test]
async fn starttls_forgets_the_session_and_what_was_pipelined_after_it() {
    let cert = test_cert();
    let recorder = Arc::new(Recorder::default());
    let mut config = auth_config("[]");
    config.require_tls = true;
    let (mut client, session) =
        connect(config, recorder.clone(), Some(cert.tls.clone()), REMOTE).await;
    client.expect("EHLO client.example", "250-").await;
    // The injection: commands sent in clear in the same packet as STARTTLS.
    client
        .send(
            "STARTTLS\r\nMAIL FROM:<evil@example.org>\r\nRCPT TO:<0611111111@sms.example.com>\r\n",
        )
        .await;
    assert_eq!(client.reply().await, "220 2.0.0 Ready to start TLS\r\n");
    let mut client = handshake(client, &cert).await;
    // No greeting, and no reply to the injected commands: the first reply
    // is to EHLO, which must be sent again.
    client
        .expect("MAIL FROM:<a@example.org>", "503 5.5.1 ")
        .await;
    let ehlo = client.cmd("EHLO client.example").await;
    assert!(ehlo.starts_with("250-localhost\r\n"), "{ehlo}");
    assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
    assert!(ehlo.contains("250-AUTH PLAIN LOGIN\r\n"), "{ehlo}");
    client.expect("STARTTLS", "503 5.5.1 ").await;
    client
        .expect("RCPT TO:<0612345678@sms.example.com>", "503 5.5.1 ")
        .await;
    client
        .expect(
            &format!(
                "AUTH PLAIN {}",
                b64(format!("\0alice\0{PASSWORD}").as_bytes())
            ),
            "235 ",
        )
        .await;
    client
        .envelope("a@example.org", "0612345678@sms.example.com")
        .await;
    client
        .expect_data("Subject: x\r\n\r\nhi\r\n.\r\n", "250 ")
        .await;
    client.expect("QUIT", "221 ").await;
    assert!(session.await.unwrap().is_ok());
    let messages = recorder.messages();
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].0.mail_from, "a@example.org");
    assert_eq!(messages[0].0.rcpt_to, ["0612345678@sms.example.com"]);
    assert_eq!(messages[0].0.auth_user.as_deref(), Some("alice"));
}

#[tokio::test]
async fn a_failed_handshake_closes_the_connection() {
    let cert = test_cert();
    let (mut client, session) =
        connect(config(), Arc::default(), Some(cert.tls.clone()), REMOTE).await;
    client.expect("EHLO client.example", "250-").await;
    client.expect("STARTTLS", "220 ").await;
    client.send("this is no TLS ClientHello\r\n").await;
    // The server gives up: a TLS alert at most, then the end.
    let mut rest = Vec::new();
    let read = tokio::io::AsyncReadExt::read_to_end(&mut client.stream, &mut rest);
    tokio::time::timeout(super::PATIENCE, read)
        .await
        .unwrap()
        .unwrap();
    assert!(session.await.unwrap().is_ok());
}

#[tokio::test]
async fn a_reload_keeps_the_old_identity_when_the_new_one_is_bad() {
    let cert = test_cert();
    let key_path = cert.dir.path().join("key.pem");
    std::fs::write(
        &key_path,
        "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
    )
    .unwrap();
    let error = cert.tls.reload().unwrap_err().to_string();
    assert!(error.contains("key.pem"), "{error}");
    assert!(!error.contains("AAAA"), "{error}");
    // Still serving with the old pair.
    let (mut client, _) = connect(config(), Arc::default(), Some(cert.tls.clone()), REMOTE).await;
    client.expect("EHLO client.example", "250-").await;
    client.expect("STARTTLS", "220 ").await;
    let mut client = handshake(client, &cert).await;
    client.expect("EHLO client.example", "250-").await;
}

#[tokio::test]
async fn clients_outside_smtp_networks_get_554_at_connect() {
    let mut config = config();
    config.networks = Some(networks(r#"["192.0.2.0/24"]"#));
    let (addr, stop, server) = serve(config, Arc::default()).await;
    let mut client = Client::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    assert_eq!(client.reply().await, "554 5.7.1 access denied\r\n");
    client.closed().await;
    super::shut(stop, server).await;

    let mut config = super::config();
    config.networks = Some(networks(r#"["127.0.0.0/8"]"#));
    let (addr, stop, server) = serve(config, Arc::default()).await;
    let mut client = Client::new(tokio::net::TcpStream::connect(addr).await.unwrap());
    client.expect_reply("220 ").await;
    super::shut(stop, server).await;
}

/// A buffer a test's tracing subscriber writes to.
#[derive(Clone, Default)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Passwords, and the base64 lines carrying them, never reach the log, at
/// any level; nor does the user name of a failure when it is no user (it
/// may be a password typed in the wrong field).
#[tokio::test]
async fn auth_exchanges_are_not_logged() {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The test's runtime has one thread: the session's task logs here too.
    let guard = tracing::subscriber::set_default(subscriber);
    let secret = "hunter2-secret";
    let plain_wrong = b64(format!("\0al\nice\0{secret}").as_bytes());
    let login_password = b64(secret.as_bytes());
    let plain_right = b64(format!("\0alice\0{PASSWORD}").as_bytes());
    let config = auth_config(r#"["192.0.2.0/24"]"#);
    let (mut client, _) = connect(config, Arc::default(), None, REMOTE).await;
    client.expect("EHLO client.example", "250-").await;
    client
        .expect(&format!("AUTH PLAIN {plain_wrong}"), "535 ")
        .await;
    client
        .expect(&format!("AUTH LOGIN {}", b64(b"alice")), "334 ")
        .await;
    client.expect(&login_password, "535 ").await;
    client.expect("AUTH PLAIN", "334 ").await;
    client.expect(&plain_right, "235 ").await;
    client
        .envelope("a@example.org", "0612345678@sms.example.com")
        .await;
    client
        .expect_data("Subject: x\r\n\r\nhi\r\n.\r\n", "250 ")
        .await;
    client.expect("QUIT", "221 ").await;
    drop(guard);
    let log = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    assert!(log.contains("SMTP AUTH failed"), "{log}");
    assert!(log.contains("SMTP AUTH succeeded"), "{log}");
    assert!(!log.contains("al\\nice"), "no unknown user name: {log}");
    assert!(log.contains("(not a user)"), "{log}");
    for leak in [
        secret,
        PASSWORD,
        &plain_wrong,
        &login_password,
        &plain_right,
    ] {
        assert!(!log.contains(leak), "{leak} in {log}");
    }
}
