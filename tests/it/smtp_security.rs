//! Issue 10, SMTP security end to end with a real client (lettre): STARTTLS
//! and implicit TLS with a certificate made here, AUTH PLAIN and LOGIN, the
//! AUTH lockout, `require_tls`, `smtp.networks`, the certificate reload on
//! SIGHUP, and `mail2sms hash-password`.

use crate::common::*;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use mail2sms::config::Config;
use mail2sms::smtp::{self, Handler, Listeners, Reply, ServerTls, SmtpConfig, SmtpUser};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The password of the test user `alice`.
const PASSWORD: &str = "correct horse battery";

/// The argon2id PHC string of `password` with the cheapest parameters (the
/// PHC string carries them: the daemon checks it as fast).
fn cheap_hash(password: &str) -> String {
    let params = Params::new(8, 1, 1, None).unwrap();
    let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
    let salt = SaltString::encode_b64(b"some test salt").unwrap();
    argon2
        .hash_password(password.as_bytes(), &salt)
        .unwrap()
        .to_string()
}

/// A self-signed certificate for `localhost` written as PEM files.
struct Cert {
    /// The certificate, PEM.
    pem: String,
    /// The key, PEM.
    key: String,
}

fn new_cert() -> Cert {
    let generated = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    Cert {
        pem: generated.cert.pem(),
        key: generated.signing_key.serialize_pem(),
    }
}

impl Cert {
    /// Writes the pair as `cert.pem` and `key.pem` in `dir`.
    fn write(&self, dir: &Path) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &self.pem).unwrap();
        std::fs::write(&key, &self.key).unwrap();
        (cert, key)
    }

    /// lettre's TLS parameters trusting only this certificate.
    fn params(&self) -> TlsParameters {
        TlsParameters::builder("localhost".into())
            .add_root_certificate(Certificate::from_pem(self.pem.as_bytes()).unwrap())
            .build_rustls()
            .unwrap()
    }
}

/// A daemon with `cert`, the user `alice` of account `masociete`, and
/// `tweak` applied.
async fn spawn_tls(cert: &Cert, tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = cert.write(dir.path());
    let mut config = Config::parse(&test_toml(dir.path()), Path::new("test")).unwrap();
    config.smtp.tls_cert = Some(cert_path);
    config.smtp.tls_key = Some(key_path);
    config.smtp.users.insert(
        "alice".into(),
        SmtpUser {
            password_hash: cheap_hash(PASSWORD),
            account: "masociete".into(),
        },
    );
    tweak(&mut config);
    config.validate().expect("valid test config");
    TestApp::start_in(dir, config).await
}

/// A lettre client to `port` on loopback with `tls`.
fn client(port: u16, tls: Tls) -> AsyncSmtpTransport<Tokio1Executor> {
    AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .tls(tls)
        .timeout(Some(Duration::from_secs(20)))
        .build()
}

fn envoi_mail(email_id: &str) -> (Envelope, Vec<u8>) {
    let envelope = Envelope::new(
        Some("ops@masociete.com".parse().unwrap()),
        vec!["sms@sms.example.com".parse().unwrap()],
    )
    .unwrap();
    let raw = plain_email(
        "ops@masociete.com",
        &envoi("0601020304", "over TLS", email_id),
    );
    (envelope, raw)
}

/// The SMTP reply code of a lettre error, e.g. `"535"`.
fn code(error: &lettre::transport::smtp::Error) -> String {
    error
        .status()
        .map(|c| c.to_string())
        .unwrap_or_else(|| format!("no code: {error}"))
}

#[tokio::test]
async fn starttls_then_a_message_is_delivered() {
    let cert = new_cert();
    let app = spawn_tls(&cert, |c| c.smtp.require_tls = true).await;
    let (envelope, raw) = envoi_mail("tls-1");
    let mailer = client(app.addr.port(), Tls::Required(cert.params()));
    assert!(
        mailer
            .send_raw(&envelope, &raw)
            .await
            .unwrap()
            .is_positive()
    );
    let lines = app.wait_outbox(1).await;
    assert!(text_for(&lines, "+33601020304").contains("over TLS"));
    // A client that does not trust the certificate does not get through.
    let other = new_cert();
    let mailer = client(app.addr.port(), Tls::Required(other.params()));
    assert!(mailer.send_raw(&envelope, &raw).await.is_err());
}

#[tokio::test]
async fn the_implicit_tls_listener_speaks_tls_from_the_first_byte() {
    let cert = new_cert();
    let app = spawn_tls(&cert, |c| c.smtp.listen_tls = Some("127.0.0.1:0".into())).await;
    let port = app.running.as_ref().unwrap().smtp_tls_addr.unwrap().port();
    let (envelope, raw) = envoi_mail("tls-2");
    let mailer = client(port, Tls::Wrapper(cert.params()));
    assert!(
        mailer
            .send_raw(&envelope, &raw)
            .await
            .unwrap()
            .is_positive()
    );
    app.wait_outbox(1).await;
    // Already TLS: no STARTTLS offered; a plain client gets no greeting.
    let mut plain = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    plain.write_all(b"EHLO x\r\n").await.unwrap();
    let mut line = String::new();
    let mut plain = BufReader::new(plain);
    let read = plain.read_line(&mut line);
    let _ = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap();
    assert!(!line.starts_with("220"), "{line:?}");
}

/// Records the envelopes the server hands over.
#[derive(Default)]
struct Recorder {
    /// The AUTH user of each message.
    users: Mutex<Vec<Option<String>>>,
}

#[async_trait::async_trait]
impl Handler for Recorder {
    async fn message(&self, envelope: &smtp::Envelope, _: Vec<u8>) -> Reply {
        self.users.lock().unwrap().push(envelope.auth_user.clone());
        Reply::new(250, "2.0.0", "Ok")
    }
}

#[tokio::test]
async fn auth_plain_and_login_over_tls_name_the_user_to_the_handler() {
    let cert = new_cert();
    let dir = tempfile::tempdir().unwrap();
    let (cert_path, key_path) = cert.write(dir.path());
    let mut config = SmtpConfig {
        domains: vec!["sms.example.com".into()],
        tls_exempt_networks: mail2sms::net::Networks(Vec::new()),
        ..SmtpConfig::default()
    };
    config.users.insert(
        "alice".into(),
        SmtpUser {
            password_hash: cheap_hash(PASSWORD),
            account: "masociete".into(),
        },
    );
    let tls = Arc::new(ServerTls::load(&cert_path, &key_path).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let recorder = Arc::new(Recorder::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listeners = Listeners {
        plain: listener,
        implicit_tls: None,
    };
    let server = tokio::spawn(smtp::serve(
        listeners,
        Arc::new(config),
        recorder.clone(),
        Some(tls),
        async {
            let _ = stopped.await;
        },
    ));
    let (envelope, raw) = envoi_mail("auth-1");
    for mechanism in [Mechanism::Plain, Mechanism::Login] {
        let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(port)
            .tls(Tls::Required(cert.params()))
            .credentials(Credentials::new("alice".into(), PASSWORD.into()))
            .authentication(vec![mechanism])
            .build();
        assert!(
            mailer
                .send_raw(&envelope, &raw)
                .await
                .unwrap()
                .is_positive()
        );
    }
    // Without TLS (and no exempt network) AUTH is not even offered.
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(port)
        .credentials(Credentials::new("alice".into(), PASSWORD.into()))
        .build();
    assert!(mailer.send_raw(&envelope, &raw).await.is_err());
    assert_eq!(
        *recorder.users.lock().unwrap(),
        [Some("alice".to_owned()), Some("alice".to_owned())]
    );
    stop.send(()).unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn an_authenticated_envoi_message_goes_through_and_a_wrong_password_gets_535() {
    let cert = new_cert();
    let app = spawn_tls(&cert, |_| {}).await;
    let (envelope, raw) = envoi_mail("auth-2");
    let with = |password: &str| {
        AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
            .port(app.addr.port())
            .tls(Tls::Required(cert.params()))
            .credentials(Credentials::new("alice".into(), password.into()))
            .authentication(vec![Mechanism::Plain])
            .build()
    };
    let error = with("wrong").send_raw(&envelope, &raw).await.unwrap_err();
    assert_eq!(code(&error), "535", "{error}");
    assert!(
        with(PASSWORD)
            .send_raw(&envelope, &raw)
            .await
            .unwrap()
            .is_positive()
    );
    assert_eq!(app.wait_outbox(1).await.len(), 1);
}

/// A raw SMTP conversation, for what lettre will not do (three AUTH
/// attempts in one session).
struct Raw {
    /// The connection.
    stream: BufReader<TcpStream>,
}

impl Raw {
    async fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
        Raw {
            stream: BufReader::new(stream),
        }
    }

    async fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            let read = self.stream.read_line(&mut line);
            tokio::time::timeout(Duration::from_secs(10), read)
                .await
                .unwrap()
                .unwrap();
            all.push_str(&line);
            if line.len() < 4 || line.as_bytes()[3] != b'-' {
                return all;
            }
        }
    }

    async fn cmd(&mut self, line: &str) -> String {
        let stream = self.stream.get_mut();
        stream
            .write_all(format!("{line}\r\n").as_bytes())
            .await
            .unwrap();
        self.reply().await
    }
}

#[tokio::test]
async fn three_failures_close_the_session_and_lock_the_address_out() {
    let cert = new_cert();
    let app = spawn_tls(&cert, |_| {}).await;
    // Loopback is exempt by default: AUTH is offered in clear.
    let mut raw = Raw::connect(app.addr.port()).await;
    assert!(raw.reply().await.starts_with("220 "));
    assert!(raw.cmd("EHLO x").await.contains("250-AUTH PLAIN LOGIN\r\n"));
    // base64("\0alice\0wrong")
    for _ in 0..2 {
        assert!(
            raw.cmd("AUTH PLAIN AGFsaWNlAHdyb25n")
                .await
                .starts_with("535 5.7.8 ")
        );
    }
    assert_eq!(
        raw.cmd("AUTH PLAIN AGFsaWNlAHdyb25n").await,
        "421 4.7.0 too many authentication failures\r\n"
    );
    assert_eq!(raw.reply().await, "", "closed");
    // Now even the right password cannot get in from this address.
    let mut next = Raw::connect(app.addr.port()).await;
    assert!(next.reply().await.starts_with("421 4.7.0 "));
    let (envelope, raw_mail) = envoi_mail("lock-1");
    let mailer = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous("127.0.0.1")
        .port(app.addr.port())
        .credentials(Credentials::new("alice".into(), PASSWORD.into()))
        .build();
    let error = mailer.send_raw(&envelope, &raw_mail).await.unwrap_err();
    assert!(
        error.to_string().contains("421") || code(&error) == "421",
        "{error}"
    );
}

#[tokio::test]
async fn the_lockout_ends_after_auth_lockout_secs() {
    let cert = new_cert();
    let app = spawn_tls(&cert, |c| c.smtp.auth_lockout_secs = 1).await;
    let mut raw = Raw::connect(app.addr.port()).await;
    raw.reply().await;
    raw.cmd("EHLO x").await;
    for _ in 0..3 {
        raw.cmd("AUTH PLAIN AGFsaWNlAHdyb25n").await;
    }
    let mut next = Raw::connect(app.addr.port()).await;
    assert!(next.reply().await.starts_with("421 4.7.0 "));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let mut next = Raw::connect(app.addr.port()).await;
    assert!(next.reply().await.starts_with("220 "));
}

#[tokio::test]
async fn require_tls_lets_exempt_clients_send_in_clear_and_no_one_else() {
    let cert = new_cert();
    let (envelope, raw) = envoi_mail("req-1");
    let app = spawn_tls(&cert, |c| c.smtp.require_tls = true).await;
    let mailer = client(app.addr.port(), Tls::None);
    assert!(
        mailer
            .send_raw(&envelope, &raw)
            .await
            .unwrap()
            .is_positive()
    );
    app.wait_outbox(1).await;

    let app = spawn_tls(&cert, |c| {
        c.smtp.require_tls = true;
        c.smtp.tls_exempt_networks = mail2sms::net::Networks(Vec::new());
    })
    .await;
    let mailer = client(app.addr.port(), Tls::None);
    let error = mailer.send_raw(&envelope, &raw).await.unwrap_err();
    assert_eq!(code(&error), "530", "{error}");
    assert!(error.to_string().contains("STARTTLS"), "{error}");
}

#[tokio::test]
async fn clients_outside_smtp_networks_get_554_at_connect() {
    let app = TestApp::spawn_with(|c| {
        c.smtp.networks = Some(
            toml::from_str::<Networks>("n = [\"192.0.2.0/24\"]")
                .unwrap()
                .n,
        );
    })
    .await;
    let mut raw = Raw::connect(app.addr.port()).await;
    assert_eq!(raw.reply().await, "554 5.7.1 access denied\r\n");
    let (envelope, mail) = envoi_mail("net-1");
    let error = app.client().send_raw(&envelope, &mail).await.unwrap_err();
    assert!(
        error.to_string().contains("554") || code(&error) == "554",
        "{error}"
    );
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(app.outbox().is_empty());
}

/// A `[smtp] networks` value read as the config file reads it.
#[derive(serde::Deserialize)]
struct Networks {
    /// The list.
    n: mail2sms::net::Networks,
}

/// A STARTTLS session opened by hand with tokio-rustls, trusting `cert`.
async fn tls_session(
    port: u16,
    cert: &Cert,
) -> BufReader<tokio_rustls::client::TlsStream<TcpStream>> {
    let mut raw = Raw::connect(port).await;
    raw.reply().await;
    raw.cmd("EHLO x").await;
    assert!(raw.cmd("STARTTLS").await.starts_with("220 "));
    let mut roots = rustls::RootCertStore::empty();
    for der in rustls_pki_types::CertificateDer::pem_slice_iter(cert.pem.as_bytes()) {
        roots.add(der.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let stream = connector
        .connect(name, raw.stream.into_inner())
        .await
        .unwrap();
    BufReader::new(stream)
}

use rustls_pki_types::pem::PemObject;

async fn tls_cmd<S>(stream: &mut BufReader<S>, line: &str) -> String
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    stream
        .get_mut()
        .write_all(format!("{line}\r\n").as_bytes())
        .await
        .unwrap();
    let mut all = String::new();
    loop {
        let mut reply = String::new();
        let read = stream.read_line(&mut reply);
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .unwrap()
            .unwrap();
        all.push_str(&reply);
        if reply.len() < 4 || reply.as_bytes()[3] != b'-' {
            return all;
        }
    }
}

#[tokio::test]
async fn sighup_swaps_the_certificate_without_dropping_sessions() {
    let first = new_cert();
    let app = spawn_tls(&first, |_| {}).await;
    let port = app.addr.port();
    let mut open = tls_session(port, &first).await;
    assert!(tls_cmd(&mut open, "EHLO x").await.starts_with("250-"));

    // A bad pair is refused: the first certificate stays.
    std::fs::write(app.dir.path().join("key.pem"), "not a key").unwrap();
    let tls = app.running.as_ref().unwrap().smtp_tls.clone().unwrap();
    let error = tls.reload().unwrap_err().to_string();
    assert!(error.contains("key.pem"), "{error}");
    let (envelope, raw) = envoi_mail("hup-1");
    let mailer = client(port, Tls::Required(first.params()));
    assert!(
        mailer
            .send_raw(&envelope, &raw)
            .await
            .unwrap()
            .is_positive()
    );

    // The second pair, by SIGHUP as an operator would.
    let second = new_cert();
    second.write(app.dir.path());
    // SAFETY: sends SIGHUP to this process, whose tokio handler (the
    // daemon's) is installed.
    unsafe {
        libc::kill(libc::getpid(), libc::SIGHUP);
    }
    let (envelope, raw) = envoi_mail("hup-2");
    let mut sent = false;
    for _ in 0..200 {
        let mailer = client(port, Tls::Required(second.params()));
        if mailer.send_raw(&envelope, &raw).await.is_ok() {
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(sent, "a new connection never saw the second certificate");
    let mailer = client(port, Tls::Required(first.params()));
    assert!(mailer.send_raw(&envelope, &raw).await.is_err());
    // The session opened before goes on.
    assert!(tls_cmd(&mut open, "NOOP").await.starts_with("250 "));
    assert!(
        tls_cmd(&mut open, "MAIL FROM:<ops@masociete.com>")
            .await
            .starts_with("250 ")
    );
    app.wait_outbox(2).await;
}

#[test]
fn hash_password_reads_stdin_and_prints_a_verifiable_hash() {
    use std::process::{Command, Stdio};
    let run = |input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mail2sms"))
            .arg("hash-password")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let output = run("s3cret pass\n");
    assert!(output.status.success(), "{output:?}");
    let hash = String::from_utf8(output.stdout).unwrap();
    let hash = hash.trim_end();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let parsed = PasswordHash::new(hash).unwrap();
    assert!(
        Argon2::default()
            .verify_password(b"s3cret pass", &parsed)
            .is_ok()
    );
    assert!(
        Argon2::default()
            .verify_password(b"s3cret pass\n", &parsed)
            .is_err()
    );
    // The hash is accepted by the config.
    mail2sms::smtp::check_hash(hash).unwrap();

    let output = run("\n");
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    assert!(String::from_utf8_lossy(&output.stderr).contains("empty"));
}

#[test]
fn config_errors_name_the_key_and_never_show_a_hash() {
    let dir = tempfile::tempdir().unwrap();
    let base = test_toml(dir.path());
    let parse = |smtp: &str| {
        let text = base.replacen("[smtp]\n", &format!("[smtp]\n{smtp}\n"), 1);
        Config::parse(&text, Path::new("test"))
    };
    let error = |smtp: &str| parse(smtp).unwrap_err().to_string();
    assert!(error("require_tls = true").contains("smtp.require_tls"));
    assert!(error("listen_tls = \"127.0.0.1:0\"").contains("smtp.listen_tls"));
    assert!(error("tls_cert = \"/x/cert.pem\"").contains("smtp.tls_key"));
    assert!(error("tls_key = \"/x/key.pem\"").contains("smtp.tls_cert"));
    let users = |hash: &str, account: &str| {
        format!("[smtp.users.alice]\npassword_hash = \"{hash}\"\naccount = \"{account}\"\n")
    };
    let hash = cheap_hash(PASSWORD);
    // The users table comes after the other [smtp] keys.
    let with_users = |table: &str| {
        let text = format!("{base}\n{table}");
        Config::parse(&text, Path::new("test"))
    };
    let bad = "$argon2id$v=19$m=8,t=1,p=1$c2VjcmV0";
    let message = with_users(&users(bad, "masociete"))
        .unwrap_err()
        .to_string();
    assert!(
        message.contains("smtp.users.alice.password_hash"),
        "{message}"
    );
    assert!(!message.contains("c2VjcmV0"), "{message}");
    let message = with_users(&users(&hash, "nobody")).unwrap_err().to_string();
    assert!(message.contains("smtp.users.alice.account"), "{message}");
    assert!(message.contains("nobody"), "{message}");
    let config = with_users(&users(&hash, "masociete")).unwrap();
    let summary = config.summary();
    assert!(
        summary.contains("smtp user alice: account masociete"),
        "{summary}"
    );
    assert!(!summary.contains("argon2"), "{summary}");
}

#[tokio::test]
async fn a_missing_or_bad_certificate_stops_the_start_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cert = new_cert();
    let (cert_path, key_path) = cert.write(dir.path());
    let start = |cert: PathBuf, key: PathBuf| {
        let mut config = Config::parse(&test_toml(dir.path()), Path::new("test")).unwrap();
        config.smtp.tls_cert = Some(cert);
        config.smtp.tls_key = Some(key);
        async move {
            match mail2sms::app::start(config).await {
                Ok(_) => panic!("started"),
                Err(error) => error.to_string(),
            }
        }
    };
    let missing = dir.path().join("missing.pem");
    let error = start(missing.clone(), key_path.clone()).await;
    assert!(
        error.contains("smtp.tls_cert") && error.contains("missing.pem"),
        "{error}"
    );
    let mut file = std::fs::File::create(dir.path().join("garbage.pem")).unwrap();
    file.write_all(b"hello").unwrap();
    let error = start(cert_path.clone(), dir.path().join("garbage.pem")).await;
    assert!(
        error.contains("smtp.tls_key") && error.contains("garbage.pem"),
        "{error}"
    );
    // The key of another certificate.
    let other = new_cert();
    std::fs::write(dir.path().join("other.pem"), &other.key).unwrap();
    let error = start(cert_path, dir.path().join("other.pem")).await;
    assert!(error.contains("smtp.tls_cert"), "{error}");
    assert!(!error.contains("PRIVATE KEY"), "{error}");
}
