//! The pipeline as a whole: what reaches its request readers.

use super::*;
use crate::config::Config;
use crate::request::{RequestError, RequestReader};
use crate::smtp::Handler;
use std::sync::Mutex;

/// A config with one account (keyid `k1`) and its store under `dir`.
fn config(dir: &std::path::Path) -> Config {
    let toml = format!(
        r#"
[store]
path = "{dir}/mail2sms.db"

[replies]
from = "mail2sms@sms.example.com"
transport = "file://{dir}/replies"

[accounts.a]
keyid = "k1"
senders = ["ops@masociete.com"]
providers = ["outbox"]

[providers.outbox]
type = "outbox"
path = "{dir}/outbox.jsonl"
"#,
        dir = dir.display()
    );
    Config::parse(&toml, std::path::Path::new("test")).expect("config")
}

/// A reader that keeps the envelope it was given and finds no request.
struct Recorder(Arc<Mutex<Vec<Envelope>>>);

impl RequestReader for Recorder {
    fn head(
        &self,
        envelope: &Envelope,
        _mail: &crate::mail::ParsedMail,
    ) -> Result<Box<dyn RequestHead>, RequestError> {
        self.0.lock().expect("lock").push(envelope.clone());
        Err(RequestError::NoEnvoi)
    }
}

/// A pipeline over a fresh store whose only reader is a [`Recorder`].
async fn recording_pipeline(dir: &std::path::Path) -> (Pipeline, Arc<Mutex<Vec<Envelope>>>) {
    let config = config(dir);
    let store = crate::store::open(&config.store).await.expect("store");
    let seen = Arc::new(Mutex::new(Vec::new()));
    let readers = Readers::new(vec![Box::new(Recorder(seen.clone()))]);
    let wake = || Arc::new(Notify::new());
    let pipeline = Pipeline::with_readers(config.pipeline_setup(), store, wake(), wake(), readers);
    (pipeline, seen)
}

const MAIL: &[u8] = b"From: ops@masociete.com\r\nSubject: disk\r\n\r\ndisk full\r\n";

#[tokio::test]
async fn the_whole_smtp_envelope_reaches_the_readers() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pipeline, seen) = recording_pipeline(dir.path()).await;
    let smtp = crate::smtp::Envelope {
        mail_from: "ops@masociete.com".into(),
        rcpt_to: vec![
            "+33601020304@sms.example.com".into(),
            "oncall@sms.example.com".into(),
        ],
        helo: "nagios.example.com".into(),
        peer: "192.0.2.7:40000".parse().expect("address"),
        auth_user: Some("nagios".into()),
    };
    let reply = pipeline.message(&smtp, MAIL.to_vec()).await;
    assert_eq!((reply.code, reply.enhanced.as_str()), (550, "5.6.0"));
    let expected = Envelope {
        client: Some("192.0.2.7".parse().expect("ip")),
        helo: Some("nagios.example.com".into()),
        auth_user: Some("nagios".into()),
        mail_from: "ops@masociete.com".into(),
        recipients: smtp.rcpt_to.clone(),
    };
    assert_eq!(*seen.lock().expect("lock"), [expected]);
}

#[tokio::test]
async fn process_hands_its_envelope_to_the_readers_as_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pipeline, seen) = recording_pipeline(dir.path()).await;
    let local = Envelope {
        mail_from: String::new(),
        recipients: vec!["sms@sms.example.com".into()],
        ..Envelope::default()
    };
    let verdict = pipeline.process(&local, MAIL.to_vec()).await;
    assert_eq!(
        verdict,
        Verdict::Unreadable(RequestError::NoEnvoi.to_string())
    );
    assert_eq!(*seen.lock().expect("lock"), [local]);
}

#[tokio::test]
async fn an_unknown_keyid_is_refused_before_the_request_is_built() {
    /// Names an unknown account, and fails the test if built.
    struct Stranger;
    impl RequestHead for Stranger {
        fn keyid(&self) -> Option<&str> {
            Some("not-a-key")
        }
        fn expansion_bound(
            &self,
            _: &crate::mail::ParsedMail,
            _: &Limits,
        ) -> crate::request::Expansion {
            panic!("bound of a stranger's request")
        }
        fn build(
            self: Box<Self>,
            _: &crate::mail::ParsedMail,
            _: &BuildContext<'_>,
        ) -> Result<Request, RequestError> {
            panic!("built a stranger's request")
        }
    }
    struct Strangers;
    impl RequestReader for Strangers {
        fn head(
            &self,
            _: &Envelope,
            _: &crate::mail::ParsedMail,
        ) -> Result<Box<dyn RequestHead>, RequestError> {
            Ok(Box::new(Stranger))
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config(dir.path());
    let store = crate::store::open(&config.store).await.expect("store");
    let readers = Readers::new(vec![Box::new(Strangers)]);
    let wake = || Arc::new(Notify::new());
    let pipeline = Pipeline::with_readers(config.pipeline_setup(), store, wake(), wake(), readers);
    let verdict = pipeline.process(&Envelope::default(), MAIL.to_vec()).await;
    assert_eq!(verdict, Verdict::Unauthorized);
}

/// A config with an `<envoi>` account `a` (keyid `k1`, networks
/// 192.0.2.0/24), alert accounts `a-lan` (networks 192.0.2.0/24) and
/// `b-any` (any client) for `@example.com`, `c-pager` (region CH, for
/// `pager@pager.example` only), AUTH users `nagios` (→ `c-pager`) and
/// `envoi` (→ `a`), then `extra`.
fn alert_config(dir: &std::path::Path, extra: &str) -> Config {
    let toml = format!(
        r#"
[smtp]
domains = ["sms.example.com"]
{extra}

[smtp.users.nagios]
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
account = "c-pager"

[smtp.users.envoi]
password_hash = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA"
account = "a"

[store]
path = "{dir}/mail2sms.db"

[replies]
from = "mail2sms@sms.example.com"
transport = "file://{dir}/replies"

[accounts.a]
keyid = "k1"
senders = ["ops@masociete.com"]
providers = ["outbox"]
networks = ["192.0.2.0/24"]

[accounts.a-lan]
keyid = "k2"
senders = ["@example.com"]
providers = ["outbox"]
alerts = true
networks = ["192.0.2.0/24"]

[accounts.b-any]
keyid = "k3"
senders = ["@example.com"]
providers = ["outbox"]
alerts = true
groups = {{ oncall = ["0601020304"] }}

[accounts.c-pager]
keyid = "k4"
senders = ["pager@pager.example"]
providers = ["outbox"]
alerts = true
region = "CH"

[providers.outbox]
type = "outbox"
path = "{dir}/outbox.jsonl"
"#,
        dir = dir.display()
    );
    Config::parse(&toml, std::path::Path::new("test")).expect("config")
}

/// The standard pipeline of [`alert_config`].
async fn alert_pipeline(dir: &std::path::Path, extra: &str) -> Pipeline {
    let config = alert_config(dir, extra);
    let store = crate::store::open(&config.store).await.expect("store");
    let wake = || Arc::new(Notify::new());
    Pipeline::new(config.pipeline_setup(), store, wake(), wake())
}

const ALERT: &[u8] = b"From: nagios@example.com\r\nSubject: disk\r\n\r\ndisk full\r\n";

/// An envelope from `client` (none: `deliver`) to `to`.
fn alert_envelope(client: Option<&str>, auth_user: Option<&str>, to: &str) -> Envelope {
    Envelope {
        client: client.map(|c| c.parse().expect("ip")),
        helo: None,
        auth_user: auth_user.map(str::to_owned),
        mail_from: "nagios@example.com".into(),
        recipients: vec![to.to_owned()],
    }
}

/// The account alert mail is admitted for, or the verdict.
fn admitted_account(
    pipeline: &Pipeline,
    raw: &[u8],
    envelope: &Envelope,
) -> Result<String, Verdict> {
    let admitted = pipeline.ingress.admit(raw, envelope)?;
    assert!(admitted.alert);
    assert_eq!(admitted.refusal, None);
    Ok(admitted.account.name.clone())
}

#[tokio::test]
async fn alert_mail_goes_to_the_first_account_allowing_sender_and_client() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = alert_pipeline(dir.path(), "").await;
    let to = "0601020304@sms.example.com";
    let lan = alert_envelope(Some("192.0.2.7"), None, to);
    assert_eq!(
        admitted_account(&pipeline, ALERT, &lan).as_deref(),
        Ok("a-lan")
    );
    let outside = alert_envelope(Some("198.51.100.1"), None, to);
    assert_eq!(
        admitted_account(&pipeline, ALERT, &outside).as_deref(),
        Ok("b-any")
    );
    // `deliver` has no client address: a local hand-over passes networks.
    let local = alert_envelope(None, None, to);
    assert_eq!(
        admitted_account(&pipeline, ALERT, &local).as_deref(),
        Ok("a-lan")
    );
    // The From: header is checked, else the envelope sender.
    let stranger = b"From: someone@elsewhere.example\r\nSubject: x\r\n\r\ny\r\n";
    assert_eq!(
        admitted_account(&pipeline, stranger, &lan),
        Err(Verdict::Unauthorized)
    );
    let no_from = b"Subject: x\r\n\r\ny\r\n";
    assert_eq!(
        admitted_account(&pipeline, no_from, &lan).as_deref(),
        Ok("a-lan")
    );
}

#[tokio::test]
async fn an_auth_user_sends_alerts_for_its_own_account_only() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = alert_pipeline(dir.path(), "").await;
    // nagios@example.com is not among c-pager's senders: AUTH names it.
    let nagios = alert_envelope(
        Some("198.51.100.1"),
        Some("nagios"),
        "0791234567@sms.example.com",
    );
    assert_eq!(
        admitted_account(&pipeline, ALERT, &nagios).as_deref(),
        Ok("c-pager")
    );
    // An AUTH user whose account takes no alerts is refused, even though
    // another account would take this sender.
    let envoi_user = alert_envelope(
        Some("192.0.2.7"),
        Some("envoi"),
        "0601020304@sms.example.com",
    );
    assert_eq!(
        admitted_account(&pipeline, ALERT, &envoi_user),
        Err(Verdict::Unauthorized)
    );
    let unknown = alert_envelope(
        Some("192.0.2.7"),
        Some("nobody"),
        "0601020304@sms.example.com",
    );
    assert_eq!(
        admitted_account(&pipeline, ALERT, &unknown),
        Err(Verdict::Unauthorized)
    );
}

#[tokio::test]
async fn envoi_mail_from_outside_the_networks_is_refused_with_code_14() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = alert_pipeline(dir.path(), "").await;
    let raw = b"From: ops@masociete.com\r\n\r\n<envoi><keyid>k1</keyid><emailId>e1</emailId><num>0601020304</num><sms>hi</sms></envoi>\r\n";
    let outside = alert_envelope(Some("198.51.100.1"), None, "sms@sms.example.com");
    let admitted = pipeline.ingress.admit(raw, &outside).expect("admitted");
    assert!(!admitted.alert);
    assert_eq!(admitted.refusal, Some(crate::codes::Code::IP_NOT_ALLOWED));
    let inside = alert_envelope(Some("192.0.2.1"), None, "sms@sms.example.com");
    assert_eq!(
        pipeline
            .ingress
            .admit(raw, &inside)
            .expect("admitted")
            .refusal,
        None
    );
}

#[tokio::test]
async fn discard_answers_250_stores_nothing_and_counts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = alert_pipeline(dir.path(), "unauthorized = \"discard\"").await;
    let stranger = b"From: someone@elsewhere.example\r\nSubject: x\r\n\r\ny\r\n";
    let envelope = alert_envelope(Some("192.0.2.7"), None, "0601020304@sms.example.com");
    let verdict = pipeline.process(&envelope, stranger.to_vec()).await;
    assert_eq!(verdict, Verdict::Discarded);
    assert_eq!(verdict.smtp_reply().0, 250);
    assert_eq!(verdict.exit_code(), 0);
    assert_eq!(pipeline.discarded(), 1);
    let unknown_key = b"From: ops@masociete.com\r\n\r\n<envoi><keyid>nope</keyid></envoi>\r\n";
    assert_eq!(
        pipeline.process(&envelope, unknown_key.to_vec()).await,
        Verdict::Discarded
    );
    assert_eq!(pipeline.discarded(), 2);
    // What is readable but unreadable stays a 550.
    let broken = b"From: ops@masociete.com\r\n\r\n<envoi><num>1</num></envoi>\r\n";
    assert!(matches!(
        pipeline.process(&envelope, broken.to_vec()).await,
        Verdict::Unreadable(_)
    ));
}

/// An SMTP envelope from `peer` (optionally authenticated).
fn smtp_envelope(peer: &str, auth_user: Option<&str>) -> crate::smtp::Envelope {
    crate::smtp::Envelope {
        mail_from: "nagios@example.com".into(),
        rcpt_to: Vec::new(),
        helo: "nagios".into(),
        peer: format!("{peer}:4000").parse().expect("peer"),
        auth_user: auth_user.map(str::to_owned),
    }
}

#[tokio::test]
async fn rcpt_refuses_invalid_numbers_and_clients_no_alert_account_allows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pipeline = alert_pipeline(dir.path(), "").await;
    let any = smtp_envelope("198.51.100.1", None);
    let reply = pipeline
        .recipient(&any, "0123@sms.example.com")
        .expect_err("short");
    assert_eq!((reply.code, reply.enhanced.as_str()), (550, "5.1.1"));
    assert_eq!(reply.text, "not a valid phone number: too short");
    for fine in [
        "0601020304@sms.example.com",
        "+41791234567@sms.example.com",
        "oncall@sms.example.com",
        "sms@sms.example.com",
        "0123@other.example",
    ] {
        assert_eq!(pipeline.recipient(&any, fine), Ok(()), "{fine}");
    }
    // Swiss national numbers are valid for the AUTH user's account only.
    let nagios = smtp_envelope("198.51.100.1", Some("nagios"));
    assert_eq!(
        pipeline.recipient(&nagios, "0791234567@sms.example.com"),
        Ok(())
    );
    let reply = pipeline
        .recipient(&nagios, "0601020304@sms.example.com")
        .expect_err("not CH");
    assert_eq!(reply.enhanced, "5.1.1");
    // Who may send is decided at DATA (the message may carry <envoi>):
    // an AUTH user whose account takes no alerts passes RCPT.
    let envoi_user = smtp_envelope("192.0.2.7", Some("envoi"));
    assert_eq!(
        pipeline.recipient(&envoi_user, "0601020304@sms.example.com"),
        Ok(())
    );
}

/// Review of issue 10: a client outside every alert account's networks is
/// not refused at RCPT, since the message may be `<envoi>` mail (read as
/// today whatever its recipients); an alert from it is refused at DATA
/// (tests/it/alerts.rs).
#[tokio::test]
async fn rcpt_leaves_networks_to_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = alert_config(dir.path(), "");
    let mut accounts = config.accounts.clone();
    for account in accounts.values_mut() {
        account.networks = Some(crate::net::Networks::loopback());
    }
    let setup = Setup {
        accounts: &accounts,
        ..config.pipeline_setup()
    };
    let store = crate::store::open(&config.store).await.expect("store");
    let wake = || Arc::new(Notify::new());
    let pipeline = Pipeline::new(setup, store, wake(), wake());
    let outside = smtp_envelope("198.51.100.1", None);
    assert_eq!(
        pipeline.recipient(&outside, "0601020304@sms.example.com"),
        Ok(())
    );
    let reply = pipeline
        .recipient(&outside, "0123@sms.example.com")
        .expect_err("still no number");
    assert_eq!(reply.enhanced, "5.1.1");
}
