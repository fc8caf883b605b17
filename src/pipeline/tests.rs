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
            _: &Limits,
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
