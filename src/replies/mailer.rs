//! Sending one reply: render, wrap in MIME, deliver over the configured
//! transport.

use std::fmt;
use std::path::PathBuf;
use std::sync::OnceLock;
use std::time::Duration;

use lettre::address::Envelope;
use lettre::message::Mailbox;
use lettre::transport::smtp::AsyncSmtpTransportBuilder;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::extension::ClientId;
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};

use super::config::RepliesConfig;
use super::error::ReplyError;
use super::render::Templates;
use super::transport::{SmtpSecurity, SmtpSpec, TransportSpec};
use super::{ReplyContent, dsn, message, sendmail, spool};
use crate::logsafe::Safe;

/// Sends replies as configured by `[replies]`.
pub struct Mailer {
    /// `From:` of every reply (the envelope sender is null).
    from: Mailbox,
    /// The domain of `from`: right-hand side of the Message-IDs and our
    /// EHLO name.
    domain: String,
    /// The parsed `replies.transport`, for [`describe`](Self::describe).
    spec: TransportSpec,
    /// The (possibly operator-edited) templates.
    templates: Templates,
    /// The delivery mechanism.
    backend: Backend,
    /// `replies.timeout_secs`: per SMTP command, or per whole sendmail /
    /// file delivery.
    timeout: Duration,
}

/// How a formatted message leaves the process.
enum Backend {
    /// SMTP through lettre's pooled async transport.
    Smtp {
        /// The validated configuration, built into a transport on first use:
        /// lettre's connection pool spawns a tokio task when built, and
        /// `Mailer::new` must also work outside a runtime (`check-config`).
        builder: AsyncSmtpTransportBuilder,
        /// The transport, shared by all sends so connections are reused.
        transport: OnceLock<AsyncSmtpTransport<Tokio1Executor>>,
    },
    /// A sendmail-compatible command, run once per reply (`sendmail` from
    /// `PATH` by default).
    Sendmail(PathBuf),
    /// One `.eml` file per reply in this directory.
    File(PathBuf),
}

impl Mailer {
    /// Validates `[replies]` (addresses, transport URL, templates) without
    /// connecting anywhere; errors name the key at fault.
    pub fn new(config: &RepliesConfig) -> Result<Mailer, ReplyError> {
        config.validate()?;
        let timeout = Duration::from_secs(config.timeout_secs);
        let from: Mailbox = config.from.trim().parse().map_err(|e| ReplyError::Config {
            key: "replies.from",
            reason: format!("{:?} is not an email address: {e}", config.from),
        })?;
        let domain = from.email.domain().to_owned();
        let spec = TransportSpec::parse(&config.transport)?;
        let templates = Templates::load(config.templates.as_deref())?;
        let backend = match &spec {
            TransportSpec::Smtp(smtp) => Backend::Smtp {
                builder: smtp_builder(smtp, &domain, timeout)?,
                transport: OnceLock::new(),
            },
            TransportSpec::Sendmail { command } => {
                Backend::Sendmail(command.clone().unwrap_or_else(|| PathBuf::from("sendmail")))
            }
            TransportSpec::File { dir } => Backend::File(dir.clone()),
        };
        Ok(Mailer {
            from,
            domain,
            spec,
            templates,
            backend,
            timeout,
        })
    }

    /// Sends one reply. `id` is stable for this reply (used in Message-ID and
    /// the file name, so retrying after a crash overwrites rather than
    /// duplicates with file://).
    pub async fn send(&self, id: &str, to: &str, body: &ReplyContent) -> Result<(), ReplyError> {
        let message = match body {
            ReplyContent::Dsn(report) => dsn::build(&self.from, &self.domain, id, to, report)?,
            _ => {
                let xml = self.templates.render(body)?;
                message::build(&self.from, &self.domain, id, to, body, &xml)?
            }
        };
        // RFC 3834 / RFC 3464: automatic replies and delivery notices go
        // with a null envelope sender, so that their own bounces come back
        // to nobody (a bounce to `replies.from`, in the SMS domain, would
        // be refused and lost, or loop); `From:` stays `replies.from`.
        let recipient = message::parse_recipient(to)?.email;
        let envelope = Envelope::new(None, vec![recipient.clone()])?;
        let secs = self.timeout.as_secs();
        match &self.backend {
            Backend::Smtp { builder, transport } => {
                // lettre applies the timeout to each command itself; cutting
                // a pooled connection mid-transaction would be worse.
                let transport = transport.get_or_init(|| builder.clone().build());
                // lettre ends DATA with CRLF "." CRLF; that first CRLF ends
                // our last line, so the server stores exactly the message.
                let formatted = message.formatted();
                let data = formatted.strip_suffix(b"\r\n").unwrap_or(&formatted);
                transport.send_raw(&envelope, data).await?;
            }
            Backend::Sendmail(command) => {
                let formatted = message.formatted();
                let run = sendmail::run(command, recipient.as_ref(), &formatted);
                tokio::time::timeout(self.timeout, run)
                    .await
                    .map_err(|_| ReplyError::Timeout(secs))??;
            }
            Backend::File(dir) => {
                let name = message::id_token(id)?;
                let formatted = message.formatted();
                tokio::time::timeout(self.timeout, spool::write_eml(dir, &name, &formatted))
                    .await
                    .map_err(|_| ReplyError::Timeout(secs))??;
            }
        }
        tracing::debug!(
            id,
            to = %Safe(to),
            kind = body.kind(),
            email_id = %Safe(body.email_id()),
            "reply sent"
        );
        Ok(())
    }

    /// Readies the transport before the first send, in the daemon that
    /// sends replies (never in `check-config`): for `file://`, removes the
    /// temporary files that writes cut short by a crash left behind, and
    /// logs how many. Failing to is logged, not fatal: they only take space.
    pub async fn prepare(&self) {
        let Backend::File(dir) = &self.backend else {
            return;
        };
        match spool::remove_temp_files(dir).await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(
                removed,
                dir = %dir.display(),
                "removed temporary reply files left by an interrupted run"
            ),
            Err(e) => tracing::warn!(error = %e, "cannot remove leftover temporary reply files"),
        }
    }

    /// For `check-config`: transport kind and target, sender, templates;
    /// never the SMTP password.
    pub fn describe(&self) -> String {
        let [ack, not] = self.templates.origins();
        format!(
            "{}, from {}, templates: {ack}, {not}",
            self.spec.describe(),
            self.from,
        )
    }

    /// The templates replies are rendered with.
    pub fn templates(&self) -> &Templates {
        &self.templates
    }
}

impl fmt::Display for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

impl fmt::Debug for Mailer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Mailer")
            .field("from", &self.from.to_string())
            .field("transport", &self.spec)
            .field("templates", &self.templates)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// The lettre builder for `smtp`, not yet connected.
fn smtp_builder(
    smtp: &SmtpSpec,
    domain: &str,
    timeout: Duration,
) -> Result<AsyncSmtpTransportBuilder, ReplyError> {
    let tls_error = |e: lettre::transport::smtp::Error| ReplyError::Config {
        key: "replies.transport",
        reason: format!("TLS setup for {:?}: {e}", smtp.host),
    };
    let builder = match smtp.security {
        SmtpSecurity::Plain => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host),
        SmtpSecurity::StartTls => {
            AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host).map_err(tls_error)?
        }
        SmtpSecurity::Tls => {
            AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host).map_err(tls_error)?
        }
    };
    let builder = builder
        .port(smtp.port)
        .timeout(Some(timeout))
        .hello_name(ClientId::Domain(domain.to_owned()));
    Ok(match &smtp.credentials {
        Some((user, password)) => {
            builder.credentials(Credentials::new(user.clone(), password.clone()))
        }
        None => builder,
    })
}

#[cfg(test)]
mod tests {
    use super::super::smtp_sink::{self, Behaviour, decode_qp};
    use super::*;
    use crate::codes::{AckCode, Code};
    use crate::replies::Etat;

    const ACK_BYTES: &[u8] = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\r\n<etatAck>\r\n\
        <emailId>1548</emailId>\r\n<code>0</code>\r\n\
        <message>Votre email a bien ete traite</message>\r\n</etatAck>\r\n";

    const NOT_BYTES: &[u8] = b"<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\r\n<etatNot>\r\n\
        <emailId>1548</emailId>\r\n</etatNot>\r\n\
        <etat1>\r\n<code1>0</code1>\r\n<tel1>0601020304</tel1>\r\n\
        <message1>Votre message a bien \xE9t\xE9 envoy\xE9</message1>\r\n</etat1>\r\n\
        <etat2>\r\n<code2>12</code2>\r\n<tel2>0601020305</tel2>\r\n\
        <message2>Votre cr\xE9dit de MT est \xE9puis\xE9</message2>\r\n</etat2>\r\n\
        <etat3>\r\n<code3>24</code3>\r\n<tel3>+33601020306</tel3>\r\n\
        <message3>Pas d'envoi commercial entre 20h et 08h, ni les dimanches et jours \
        f\xE9ri\xE9s</message3>\r\n</etat3>\r\n";

    fn config(transport: &str) -> RepliesConfig {
        RepliesConfig {
            from: "mail2sms <sms@gw.example>".into(),
            transport: transport.into(),
            templates: None,
            timeout_secs: 5,
            retry_initial_ms: 5_000,
            concurrency: 8,
        }
    }

    fn ack() -> ReplyContent {
        ReplyContent::Ack {
            email_id: Some("1548".into()),
            code: AckCode::Processed,
        }
    }

    fn not() -> ReplyContent {
        ReplyContent::Not {
            email_id: Some("1548".into()),
            etats: vec![
                Etat {
                    code: Code::SENT,
                    tel: "0601020304".into(),
                },
                Etat {
                    code: Code::NO_CREDIT,
                    tel: "0601020305".into(),
                },
                // A line longer than quoted-printable's 76 columns.
                Etat {
                    code: Code::QUIET_HOURS,
                    tel: "+33601020306".into(),
                },
            ],
        }
    }

    /// Splits a formatted message into its header block and decoded body.
    fn split(eml: &[u8]) -> (String, Vec<u8>) {
        let at = eml
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("blank line after the headers");
        let headers = String::from_utf8(eml[..at + 2].to_vec()).expect("ASCII headers");
        assert!(eml[at + 4..].is_ascii(), "quoted-printable body is ASCII");
        (headers, decode_qp(&eml[at + 4..]))
    }

    #[tokio::test]
    async fn file_transport_writes_latin1_eml_byte_for_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = dir.path().join("spool");
        let mailer = Mailer::new(&config(&format!("file://{}", spool.display()))).expect("mailer");
        mailer
            .send("ack-1548", "ack@client.example", &ack())
            .await
            .expect("send ack");
        mailer
            .send("not-1548", "not@client.example", &not())
            .await
            .expect("send not");

        let (headers, body) = split(&std::fs::read(spool.join("ack-1548.eml")).expect("ack eml"));
        assert_eq!(body, ACK_BYTES);
        for h in [
            "Subject: etatAck 1548\r\n",
            "Message-ID: <ack-1548@gw.example>\r\n",
            "To: ack@client.example\r\n",
            "Content-Type: text/plain; charset=ISO-8859-1\r\n",
            "Content-Transfer-Encoding: quoted-printable\r\n",
        ] {
            assert!(headers.contains(h), "{h:?} missing in\n{headers}");
        }

        let raw = std::fs::read(spool.join("not-1548.eml")).expect("not eml");
        let (headers, body) = split(&raw);
        assert_eq!(body, NOT_BYTES);
        assert!(headers.contains("Subject: etatNot 1548\r\n"), "{headers}");
        assert!(
            headers.contains("Message-ID: <not-1548@gw.example>\r\n"),
            "{headers}"
        );
        // é is quoted-printable =E9 on the wire.
        assert!(
            String::from_utf8_lossy(&raw).contains("=E9t=E9 envoy=E9"),
            "{}",
            String::from_utf8_lossy(&raw)
        );

        // Resending the same id replaces the file.
        mailer
            .send("ack-1548", "ack@client.example", &ack())
            .await
            .expect("resend");
        assert_eq!(std::fs::read_dir(&spool).expect("list").count(), 2);
    }

    /// Issue 8: a 1 MB emailId (a row stored before requests were capped)
    /// gives a message whose every line is within RFC 5322's 998 octets,
    /// which mail-parser reads back: the subject cut, the body whole.
    #[tokio::test]
    async fn a_1_mb_email_id_makes_no_line_over_998_octets() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mailer =
            Mailer::new(&config(&format!("file://{}", dir.path().display()))).expect("mailer");
        let email_id = "7".repeat(1 << 20);
        let body = ReplyContent::Ack {
            email_id: Some(email_id.clone()),
            code: AckCode::Processed,
        };
        mailer
            .send("ack-big", "ack@client.example", &body)
            .await
            .expect("send");
        let raw = std::fs::read(dir.path().join("ack-big.eml")).expect("eml");
        let longest = raw
            .split(|&b| b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line).len())
            .max();
        assert!(longest <= Some(998), "a {longest:?}-octet line");

        let parsed = mail_parser::MessageParser::default()
            .parse(&raw[..])
            .expect("mail-parser reads it");
        assert_eq!(
            parsed.subject(),
            Some(format!("etatAck {}...", &email_id[..64]).as_str())
        );
        assert_eq!(parsed.message_id(), Some("ack-big@gw.example"));
        let to = parsed
            .to()
            .and_then(|to| to.first())
            .and_then(|a| a.address());
        assert_eq!(to, Some("ack@client.example"));
        let text = parsed.body_text(0).expect("text body");
        assert!(
            text.contains(&format!("<emailId>{email_id}</emailId>")),
            "the body carries the whole emailId"
        );
    }

    #[tokio::test]
    async fn smtp_delivers_to_a_sink_with_percent_decoded_credentials() {
        let sink = smtp_sink::start(Behaviour::Accept).await;
        let url = format!("smtp://bob%40corp:p%40ss%3Aword@{}?tls=none", sink.addr);
        let mailer = Mailer::new(&config(&url)).expect("mailer");
        mailer
            .send("not-1548", "not@client.example", &not())
            .await
            .expect("smtp send");
        let received = sink.received();
        assert_eq!(received.len(), 1);
        let mail = &received[0];
        assert_eq!(mail.auth.as_deref(), Some("\0bob@corp\0p@ss:word"));
        // A null envelope sender (RFC 3834): bounces of replies go nowhere.
        assert_eq!(mail.mail_from, "<>");
        assert_eq!(mail.rcpt_to, ["<not@client.example>"]);
        assert_eq!(mail.ehlo, "gw.example");
        let (headers, body) = split(&mail.data);
        assert_eq!(body, NOT_BYTES);
        assert!(headers.contains("Subject: etatNot 1548\r\n"), "{headers}");
    }

    #[tokio::test]
    async fn smtp_4xx_is_transient_and_5xx_permanent() {
        let sink = smtp_sink::start(Behaviour::RejectRcpt("451 4.3.0 try again later")).await;
        let mailer = Mailer::new(&config(&format!("smtp://{}", sink.addr))).expect("mailer");
        let err = mailer
            .send("a1", "ack@client.example", &ack())
            .await
            .expect_err("451");
        assert!(err.is_transient() && !err.is_permanent(), "{err}");

        let sink = smtp_sink::start(Behaviour::RejectRcpt("550 5.1.1 no such user")).await;
        let mailer = Mailer::new(&config(&format!("smtp://{}", sink.addr))).expect("mailer");
        let err = mailer
            .send("a1", "ack@client.example", &ack())
            .await
            .expect_err("550");
        assert!(err.is_permanent() && !err.is_transient(), "{err}");
        assert!(sink.received().is_empty());
    }

    #[tokio::test]
    async fn smtp_connection_refused_is_transient() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        drop(listener);
        let mailer = Mailer::new(&config(&format!("smtp://{addr}"))).expect("mailer");
        let err = mailer
            .send("a1", "ack@client.example", &ack())
            .await
            .expect_err("refused");
        assert!(err.is_transient(), "{err}");
    }

    #[tokio::test]
    async fn the_password_never_shows() {
        let sink = smtp_sink::start(Behaviour::RejectAuth("535 5.7.8 bad credentials")).await;
        let url = format!("smtp://bob:Sup3rS3cret@{}", sink.addr);
        let cfg = config(&url);
        let mailer = Mailer::new(&cfg).expect("mailer");
        let err = mailer
            .send("a1", "ack@client.example", &ack())
            .await
            .expect_err("auth refused");
        let shown = [
            format!("{cfg:?}"),
            format!("{cfg:#?}"),
            format!("{mailer}"),
            format!("{mailer:?}"),
            format!("{mailer:#?}"),
            mailer.describe(),
            format!("{err}"),
            format!("{err:?}"),
        ];
        for text in &shown {
            assert!(!text.contains("Sup3rS3cret"), "{text}");
        }
        assert!(mailer.describe().contains(&sink.addr.port().to_string()));
        assert!(mailer.describe().contains("bob"));
        // Nor in a configuration error about the same URL.
        let err = Mailer::new(&config("smtp://bob:Sup3rS3cret@mx.example:x")).expect_err("port");
        assert!(!format!("{err} {err:?}").contains("Sup3rS3cret"), "{err}");
    }

    #[tokio::test]
    async fn sendmail_pipes_the_message() {
        let dir = tempfile::tempdir().expect("tempdir");
        let script = dir.path().join("fake-sendmail");
        let out = dir.path().join("out.eml");
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$@\" > '{0}.args'\ncat > '{0}'\n",
                out.display()
            ),
        )
        .expect("script");
        make_executable(&script);
        let mailer =
            Mailer::new(&config(&format!("sendmail://{}", script.display()))).expect("mailer");
        mailer
            .send("ack-1548", "ack@client.example", &ack())
            .await
            .expect("sendmail");
        let (headers, body) = split(&std::fs::read(&out).expect("piped message"));
        assert_eq!(body, ACK_BYTES);
        assert!(headers.contains("Subject: etatAck 1548\r\n"), "{headers}");
        let args = std::fs::read_to_string(format!("{}.args", out.display())).expect("args");
        // The null envelope sender, as sendmail(1) takes it.
        assert_eq!(args.trim(), "-i -f <> -- ack@client.example");

        // A failing sendmail is worth retrying.
        let failing = dir.path().join("failing-sendmail");
        std::fs::write(&failing, "#!/bin/sh\necho 'queue full' >&2\nexit 75\n").expect("script");
        make_executable(&failing);
        let mailer =
            Mailer::new(&config(&format!("sendmail://{}", failing.display()))).expect("mailer");
        let err = mailer
            .send("ack-1548", "ack@client.example", &ack())
            .await
            .expect_err("sendmail failure");
        assert!(err.is_transient(), "{err}");
    }

    fn make_executable(path: &std::path::Path) {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    #[test]
    fn mailer_can_be_shared_across_tasks() {
        fn send_sync<T: Send + Sync>(_: &T) {}
        fn send<T: Send>(_: &T) {}
        let mailer = Mailer::new(&config("sendmail")).expect("mailer");
        send_sync(&mailer);
        send(&mailer.send("a", "b@c.d", &ack()));
    }

    #[test]
    fn new_validates_and_names_keys() {
        let mut bad_from = config("sendmail");
        bad_from.from = "not an address".into();
        let err = Mailer::new(&bad_from).expect_err("from");
        assert!(err.to_string().starts_with("replies.from: "), "{err}");

        let err = Mailer::new(&config("smtp://")).expect_err("transport");
        assert!(err.to_string().starts_with("replies.transport: "), "{err}");

        let mut zero = config("sendmail");
        zero.timeout_secs = 0;
        let err = Mailer::new(&zero).expect_err("timeout");
        assert!(
            err.to_string().starts_with("replies.timeout_secs: "),
            "{err}"
        );
        let mut zero = config("sendmail");
        zero.concurrency = 0;
        let err = Mailer::new(&zero).expect_err("concurrency");
        assert!(
            err.to_string().starts_with("replies.concurrency: "),
            "{err}"
        );

        // Outside a runtime, even with SMTP over TLS: nothing connects yet.
        let mailer = Mailer::new(&config("smtps://mx.example")).expect("smtps");
        assert_eq!(
            mailer.describe(),
            "SMTP to mx.example:465 (TLS), from mail2sms <sms@gw.example>, \
             templates: embedded etat_ack.xml, embedded etat_not.xml"
        );
    }

    #[tokio::test]
    async fn custom_templates_from_config_are_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let templates = dir.path().join("templates");
        std::fs::create_dir(&templates).expect("mkdir");
        std::fs::write(
            templates.join("etat_ack.xml"),
            "<ack>{{ email_id }}:{{ code }}</ack>\n",
        )
        .expect("write");
        let spool = dir.path().join("spool");
        let mut cfg = config(&format!("file://{}", spool.display()));
        cfg.templates = Some(templates.clone());
        let mailer = Mailer::new(&cfg).expect("mailer");
        mailer
            .send("a", "ack@client.example", &ack())
            .await
            .expect("send");
        let (_, body) = split(&std::fs::read(spool.join("a.eml")).expect("eml"));
        assert_eq!(body, b"<ack>1548:0</ack>\r\n");

        std::fs::write(templates.join("etat_ack.xml"), "<ack>{% if %}</ack>\n").expect("write");
        let err = Mailer::new(&cfg).expect_err("broken template");
        assert!(err.to_string().contains("etat_ack.xml"), "{err}");
    }
}
