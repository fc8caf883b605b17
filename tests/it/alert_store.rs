//! Alert mail in the store (issue 10), through the `Store` trait, the
//! dispatcher and the reply sender: the Message-ID de-duplication (within
//! its window, after it, across a restart), storm control (the same text
//! once, `max_per_hour`, the count of what was held back in the next SMS
//! that goes), the failure notice (RFC 3464) to the envelope sender over
//! real SMTP with a null envelope sender, and a failed commit changing
//! nothing.

use crate::common::*;
use mail_parser::MimeHeaders;
use mail2sms::clock::Clock;
use mail2sms::codes::Code;
use mail2sms::config::Config;
use mail2sms::dispatch::Dispatcher;
use mail2sms::providers::{OutgoingSms, Provider, Providers, SendError};
use mail2sms::replies::Mailer;
use mail2sms::replies::sender::ReplySender;
use mail2sms::shutdown;
use mail2sms::store::{
    Accepted, AlertInfo, NewMessage, NewRequest, RequestBody, SqliteStore, Store, now_millis,
};
use sqlx::ConnectOptions;
use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::Notify;

const N1: &str = "+33601020301";
const N2: &str = "+33601020302";
const RETURN_PATH: &str = "nagios@masociete.com";

/// The storm settings of an alert: a one-hour window, no cap, a notice.
fn info() -> AlertInfo {
    AlertInfo {
        return_path: RETURN_PATH.into(),
        dedup_secs: 3_600,
        max_per_hour: None,
        failure_notice: true,
        max_segments: 3,
    }
}

/// An alert of account `masociete` with this Message-ID, one SMS of `text`
/// per number.
fn alert(message_id: Option<&str>, numbers: &[&str], text: &str, info: AlertInfo) -> NewRequest {
    let messages = numbers.iter().map(|n| NewMessage::to(n, text)).collect();
    NewRequest {
        message_id: message_id.map(str::to_owned),
        alert: Some(info),
        ..NewRequest::new("masociete", None, "nagios@masociete.com", messages)
    }
}

/// A store in `dir` whose accepts are stamped by `clock`.
async fn open(dir: &Path, clock: &Clock) -> Arc<SqliteStore> {
    let store = SqliteStore::open(&test_config(dir).store).await.unwrap();
    store.set_clock(clock.clone());
    Arc::new(store)
}

fn test_config(dir: &Path) -> Config {
    Config::parse(&test_toml(dir), Path::new("test")).unwrap()
}

/// A manual clock `hours` before now (jobs it stamps are due at once).
fn clock_hours_ago(hours: i64) -> Clock {
    Clock::manual(jiff::Timestamp::from_millisecond(now_millis() - hours * 3_600_000).unwrap())
}

/// Moves `clock` forward by `secs`.
fn advance(clock: &Clock, secs: i64) {
    clock.set(clock.now() + jiff::SignedDuration::from_secs(secs));
}

/// The texts of the SMS queued so far, per number, in order (claims them).
async fn claim_texts(store: &SqliteStore) -> Vec<(String, String)> {
    let jobs = store.claim_jobs(now_millis(), 1_000).await.unwrap();
    jobs.into_iter().map(|j| (j.number, j.text)).collect()
}

fn queued(accepted: &Accepted) -> usize {
    match accepted {
        Accepted::Queued { jobs, .. } => *jobs,
        other => panic!("not stored: {other:?}"),
    }
}

/// Rows of the database file matching `sql` (a `SELECT COUNT(*)`).
async fn count(dir: &Path, sql: &str) -> i64 {
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.join("mail2sms.db"))
        .read_only(true)
        .connect()
        .await
        .unwrap();
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(&mut conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_message_id_is_remembered_for_its_window_and_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock_hours_ago(3);
    let store = open(dir.path(), &clock).await;
    let first = store
        .accept(alert(Some("<m1@nagios>"), &[N1], "disk full", info()))
        .await
        .unwrap();
    assert_eq!(queued(&first), 1);
    advance(&clock, 600);
    assert_eq!(
        store
            .accept(alert(Some("<m1@nagios>"), &[N1], "disk full", info()))
            .await
            .unwrap(),
        Accepted::Duplicate,
        "an MTA's retry within the window"
    );
    // Another account's alert with the same Message-ID is its own.
    let mut other = alert(Some("<m1@nagios>"), &[N2], "disk full", info());
    other.account = "other".into();
    assert_eq!(queued(&store.accept(other).await.unwrap()), 1);
    // No Message-ID: nothing to de-duplicate on.
    let none = store
        .accept(alert(None, &[N2], "cpu", info()))
        .await
        .unwrap();
    assert_eq!(queued(&none), 1);

    // A restart: the Message-ID is in the store.
    drop(store);
    let store = open(dir.path(), &clock).await;
    assert_eq!(
        store
            .accept(alert(Some("<m1@nagios>"), &[N1], "disk full", info()))
            .await
            .unwrap(),
        Accepted::Duplicate,
        "remembered across a restart"
    );

    // Once the window is over, the same Message-ID is a new alert.
    advance(&clock, 3_001);
    let later = store
        .accept(alert(Some("<m1@nagios>"), &[N1], "disk full", info()))
        .await
        .unwrap();
    assert_eq!(queued(&later), 1);
    assert_eq!(claim_texts(&store).await.len(), 4);
    // Alerts have no emailId, and never an etatAck or etatNot.
    assert_eq!(
        count(
            dir.path(),
            "SELECT COUNT(*) FROM requests WHERE email_id IS NULL"
        )
        .await,
        4
    );
    assert_eq!(count(dir.path(), "SELECT COUNT(*) FROM replies").await, 0);
}

#[tokio::test]
async fn a_message_id_retry_is_not_counted_as_held_back() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock_hours_ago(3);
    let store = open(dir.path(), &clock).await;
    store
        .accept(alert(Some("<r1@ups>"), &[N1], "on battery", info()))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            store
                .accept(alert(Some("<r1@ups>"), &[N1], "on battery", info()))
                .await
                .unwrap(),
            Accepted::Duplicate
        );
    }
    store
        .accept(alert(Some("<r2@ups>"), &[N1], "power back", info()))
        .await
        .unwrap();
    assert_eq!(
        claim_texts(&store).await,
        [
            (N1.to_string(), "on battery".to_string()),
            (N1.to_string(), "power back".to_string())
        ],
        "no note: nothing was held back"
    );
    assert_eq!(
        count(
            dir.path(),
            "SELECT COUNT(*) FROM jobs WHERE status = 'held'"
        )
        .await,
        0
    );
}

#[tokio::test]
async fn the_same_text_to_a_number_goes_once_and_the_next_text_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock_hours_ago(3);
    let store = open(dir.path(), &clock).await;
    let accept = |id: &'static str, numbers: &'static [&'static str], text: &'static str| {
        let store = store.clone();
        async move {
            queued(
                &store
                    .accept(alert(Some(id), numbers, text, info()))
                    .await
                    .unwrap(),
            )
        }
    };
    assert_eq!(accept("a1", &[N1], "disk full").await, 1);
    assert_eq!(
        accept("a2", &[N1], "disk full").await,
        0,
        "same text: held back"
    );
    assert_eq!(accept("a3", &[N1, N2], "disk full").await, 1, "N2 had none");
    assert_eq!(
        accept("a4", &[N1], "disk ok").await,
        1,
        "a different text goes"
    );
    assert_eq!(accept("a5", &[N1], "disk ok").await, 0);
    // After the window, the same text goes again, with the count.
    advance(&clock, 3_601);
    assert_eq!(accept("a6", &[N1], "disk ok").await, 1);
    assert_eq!(
        claim_texts(&store).await,
        [
            (N1.to_string(), "disk full".to_string()),
            (N2.to_string(), "disk full".to_string()),
            (
                N1.to_string(),
                "disk ok\n(+2 similar alerts held back)".to_string()
            ),
            (
                N1.to_string(),
                "disk ok\n(+1 similar alerts held back)".to_string()
            ),
        ]
    );
    // A request whose SMS were all held back is complete at once, and its
    // SMS are kept as held back, not failed.
    assert_eq!(
        count(
            dir.path(),
            "SELECT COUNT(*) FROM requests WHERE pending_jobs = 0 AND completed_at IS NOT NULL"
        )
        .await,
        2
    );
    assert_eq!(
        count(
            dir.path(),
            "SELECT COUNT(*) FROM jobs WHERE status = 'held'"
        )
        .await,
        3
    );
    assert_eq!(
        count(
            dir.path(),
            "SELECT COUNT(*) FROM jobs WHERE status = 'failed'"
        )
        .await,
        0
    );
}

/// A provider that refuses, for good, the SMS to some numbers and takes
/// the others, recording what it was given.
struct FailFor {
    /// The numbers refused.
    refused: HashSet<String>,
    /// (number, text) of every SMS taken.
    sent: Mutex<Vec<(String, String)>>,
}

impl FailFor {
    fn new(refused: &[&str]) -> Arc<FailFor> {
        Arc::new(FailFor {
            refused: refused.iter().map(|n| n.to_string()).collect(),
            sent: Mutex::new(Vec::new()),
        })
    }

    fn sent(&self) -> Vec<(String, String)> {
        self.sent.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl Provider for FailFor {
    fn max_batch(&self) -> usize {
        100
    }

    async fn send(&self, batch: &[OutgoingSms]) -> Vec<Result<String, SendError>> {
        batch
            .iter()
            .map(|sms| {
                if self.refused.contains(&sms.to) {
                    Err(SendError::permanent(
                        Code::BAD_NUMBER,
                        "number unknown to the network",
                    ))
                } else {
                    self.sent
                        .lock()
                        .unwrap()
                        .push((sms.to.clone(), sms.text.clone()));
                    Ok(format!("p-{}", sms.reference))
                }
            })
            .collect()
    }
}

/// The dispatcher (over `provider`) and the reply sender (to `sink`) over
/// `store`, until [`Running::stop`].
struct Running {
    trigger: shutdown::Trigger,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Running {
    fn start(
        store: Arc<SqliteStore>,
        dir: &Path,
        provider: Arc<FailFor>,
        sink: &ReplySink,
    ) -> Running {
        let mut config = test_config(dir);
        config.replies.transport = sink.transport();
        config.replies.retry_initial_ms = 50;
        config.dispatch.poll_interval_ms = 20;
        let mut providers = Providers::new();
        providers.insert("outbox".to_string(), provider);
        let store: Arc<dyn Store> = store;
        let wake = Arc::new(Notify::new());
        let replies_wake = Arc::new(Notify::new());
        let dispatcher = Arc::new(Dispatcher::new(
            config.dispatch_setup(),
            store.clone(),
            providers,
            wake.clone(),
            replies_wake.clone(),
        ));
        let mailer = Arc::new(Mailer::new(&config.replies).unwrap());
        let replies = ReplySender::new(&config.replies, store, mailer, replies_wake);
        let (trigger, listen) = shutdown::channel();
        let tasks = vec![
            tokio::spawn(dispatcher.run(listen.clone())),
            tokio::spawn(replies.run(listen)),
        ];
        wake.notify_one();
        Running { trigger, tasks }
    }

    async fn stop(self) {
        self.trigger.fire();
        for task in self.tasks {
            task.await.unwrap();
        }
    }
}

#[tokio::test]
async fn max_per_hour_holds_back_and_the_next_sms_that_goes_carries_the_count() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock_hours_ago(3);
    let store = open(dir.path(), &clock).await;
    let capped = AlertInfo {
        max_per_hour: Some(2),
        max_segments: 1,
        ..info()
    };
    for i in 0..5 {
        let text = format!("load {i}");
        let accepted = store
            .accept(alert(Some(&format!("c{i}")), &[N1], &text, capped.clone()))
            .await
            .unwrap();
        assert_eq!(queued(&accepted), usize::from(i < 2), "alert {i}");
        advance(&clock, 60);
    }
    // Still within the hour of the first: held back.
    advance(&clock, 1_000);
    let held = store
        .accept(alert(Some("c5"), &[N1], "load 5", capped.clone()))
        .await
        .unwrap();
    assert_eq!(queued(&held), 0);
    // An hour after the first two, the next alert goes with the count, its
    // long text cut so that text and note fit in one SMS.
    advance(&clock, 3_600);
    let long = "CRITICAL - load average: 42.17, 40.03, 38.99 on db1.example.com; \
                swap 97% used; 3 processes in state D; check_load has been failing \
                for 2 hours and the on-call engineer should look at it";
    store
        .accept(alert(Some("c6"), &[N1], long, capped.clone()))
        .await
        .unwrap();
    store
        .accept(alert(Some("c7"), &[N1], "load ok", capped.clone()))
        .await
        .unwrap();

    let provider = FailFor::new(&[]);
    let sink = ReplySink::start().await;
    let running = Running::start(store.clone(), dir.path(), provider.clone(), &sink);
    wait_until(|| (provider.sent().len() == 4).then_some(()))
        .await
        .unwrap_or_else(|| panic!("4 SMS sent: {:?}", provider.sent()));
    running.stop().await;
    let sent = provider.sent();
    let texts: Vec<&str> = sent.iter().map(|(_, t)| t.as_str()).collect();
    assert_eq!(&texts[..2], ["load 0", "load 1"]);
    let noted = texts[2];
    assert!(
        noted.ends_with("...\n(+4 similar alerts held back)"),
        "{noted:?}"
    );
    assert!(
        noted.starts_with("CRITICAL - load average: 42.17"),
        "{noted:?}"
    );
    assert!(noted.chars().count() <= 160, "one GSM-7 segment: {noted:?}");
    assert_eq!(texts[3], "load ok", "the count went back to 0");
    assert!(sink.deliveries().is_empty(), "nothing failed: no notice");
}

/// The one notice the sink received, parsed: (delivery, first part,
/// whole message text).
fn one_notice(sink: &ReplySink) -> (Delivery, String, String) {
    let deliveries = sink.deliveries();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    let d = deliveries[0].clone();
    let parsed = mail_parser::MessageParser::default()
        .parse(&d.data[..])
        .expect("mail-parser reads the notice");
    let content_type = parsed.content_type().expect("a content type");
    assert_eq!(
        (content_type.ctype(), content_type.subtype()),
        ("multipart", Some("report"))
    );
    assert_eq!(
        content_type.attribute("report-type"),
        Some("delivery-status")
    );
    let status = parsed
        .parts
        .iter()
        .find(|p| {
            p.content_type()
                .is_some_and(|c| c.ctype() == "message" && c.subtype() == Some("delivery-status"))
        })
        .expect("a message/delivery-status part");
    assert!(!status.is_empty(), "an empty delivery-status part");
    let first = parsed.body_text(0).expect("a text part").into_owned();
    let raw = String::from_utf8_lossy(&d.data).into_owned();
    (d, first, raw)
}

#[tokio::test]
async fn a_failure_at_the_provider_sends_a_notice_with_a_null_envelope_sender() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::default();
    let store = open(dir.path(), &clock).await;
    store
        .accept(alert(
            Some("<f1@nagios.example>"),
            &[N1, N2],
            "db down",
            info(),
        ))
        .await
        .unwrap();
    let provider = FailFor::new(&[N2]);
    let sink = ReplySink::start().await;
    let running = Running::start(store.clone(), dir.path(), provider.clone(), &sink);
    wait_until(|| (!sink.deliveries().is_empty()).then_some(()))
        .await
        .expect("a failure notice");
    running.stop().await;

    let (delivery, first, raw) = one_notice(&sink);
    assert_eq!(delivery.mail_from, "", "MAIL FROM:<>");
    assert_eq!(delivery.to, RETURN_PATH);
    assert_eq!(delivery.subject, "Undelivered SMS: 1 of 2 failed");
    assert!(
        first.contains(&format!(
            "{N2}: outbox: number unknown to the network (code 7)"
        )),
        "{first}"
    );
    assert!(!first.contains(N1), "only the failed number: {first}");
    for field in [
        "From: mail2sms@sms.example.com\r\n",
        "Auto-Submitted: auto-replied\r\n",
        "In-Reply-To: <f1@nagios.example>\r\n",
        "Reporting-MTA: dns; sms.example.com",
        "Arrival-Date: ",
        &format!("Final-Recipient: rfc822; {N2}@sms.example.com"),
        "Action: failed",
        "Status: 5.0.0",
        "Diagnostic-Code: x-mail2sms; 7 outbox: number unknown to the network",
    ] {
        assert!(raw.contains(field), "{field:?} missing in\n{raw}");
    }
    assert_eq!(provider.sent().len(), 1);
}

#[tokio::test]
async fn an_opted_out_number_sends_a_notice() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::default();
    let store = open(dir.path(), &clock).await;
    store.optout_add(Some("masociete"), N2).await.unwrap();
    store
        .accept(alert(Some("<o1@ups>"), &[N1, N2], "on battery", info()))
        .await
        .unwrap();
    let provider = FailFor::new(&[]);
    let sink = ReplySink::start().await;
    let running = Running::start(store.clone(), dir.path(), provider.clone(), &sink);
    wait_until(|| (!sink.deliveries().is_empty()).then_some(()))
        .await
        .expect("a failure notice");
    running.stop().await;
    let (delivery, first, raw) = one_notice(&sink);
    assert_eq!(delivery.mail_from, "");
    assert!(first.contains(N2) && first.contains("(code 11)"), "{first}");
    assert!(raw.contains("Diagnostic-Code: x-mail2sms; 11 "), "{raw}");
    assert_eq!(
        provider.sent(),
        [(N1.to_string(), "on battery".to_string())]
    );
}

#[tokio::test]
async fn a_refusal_at_accept_queues_the_notice_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::default();
    let store = open(dir.path(), &clock).await;
    let mut refused = alert(Some("<x1@cron>"), &[], "backup failed", info());
    refused.body = RequestBody::Messages(vec![NewMessage {
        number: Err(Code::COUNTRY_NOT_ALLOWED),
        detail: Some("country +1 is not allowed for this account".into()),
        ..NewMessage::to("+12025550100", "backup failed")
    }]);
    assert_eq!(queued(&store.accept(refused).await.unwrap()), 0);
    let sink = ReplySink::start().await;
    let running = Running::start(store.clone(), dir.path(), FailFor::new(&[]), &sink);
    wait_until(|| (!sink.deliveries().is_empty()).then_some(()))
        .await
        .expect("a failure notice");
    running.stop().await;
    let (_, first, raw) = one_notice(&sink);
    assert!(
        first.contains("+12025550100: country +1 is not allowed for this account (code 27)"),
        "{first}"
    );
    assert!(
        raw.contains("Subject: Undelivered SMS: 1 of 1 failed"),
        "{raw}"
    );
}

#[tokio::test]
async fn no_notice_on_success_for_a_null_sender_or_when_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Clock::default();
    let store = open(dir.path(), &clock).await;
    let null_sender = AlertInfo {
        return_path: String::new(),
        ..info()
    };
    let off = AlertInfo {
        failure_notice: false,
        ..info()
    };
    let control = AlertInfo {
        return_path: "control@masociete.com".into(),
        ..info()
    };
    for (id, numbers, info) in [
        ("s1", vec![N1], info()),
        ("s2", vec![N2], null_sender),
        ("s3", vec![N2], off),
        ("s4", vec![N2], control),
    ] {
        let text = format!("alert {id}");
        store
            .accept(alert(Some(id), &numbers, &text, info))
            .await
            .unwrap();
    }
    let sink = ReplySink::start().await;
    let running = Running::start(store.clone(), dir.path(), FailFor::new(&[N2]), &sink);
    wait_until(|| (!sink.deliveries().is_empty()).then_some(()))
        .await
        .expect("the control alert's notice");
    wait_for_count(
        dir.path(),
        "SELECT COUNT(*) FROM jobs WHERE status = 'failed'",
        3,
    )
    .await;
    // Give a wrong notice time to show.
    tokio::time::sleep(Duration::from_millis(300)).await;
    running.stop().await;
    let deliveries = sink.deliveries();
    assert_eq!(deliveries.len(), 1, "{deliveries:?}");
    assert_eq!(deliveries[0].to, "control@masociete.com");
    assert_eq!(
        count(
            dir.path(),
            "SELECT COUNT(*) FROM replies WHERE kind = 'dsn'"
        )
        .await,
        1
    );
    assert_eq!(
        count(
            dir.path(),
            "SELECT COUNT(*) FROM requests WHERE completed_at IS NOT NULL"
        )
        .await,
        4
    );
}

/// Waits until `sql` (a `SELECT COUNT(*)`) counts `n` in the database file.
async fn wait_for_count(dir: &Path, sql: &str, n: i64) {
    for _ in 0..750 {
        if count(dir, sql).await == n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{sql} never reached {n}");
}

#[tokio::test]
async fn a_failed_commit_during_an_alert_accept_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clock = clock_hours_ago(3);
    let store = open(dir.path(), &clock).await;
    let capped = AlertInfo {
        max_per_hour: Some(1),
        ..info()
    };
    store
        .accept(alert(Some("k1"), &[N1], "fan 1 failed", capped.clone()))
        .await
        .unwrap();
    let held = store
        .accept(alert(Some("k2"), &[N1], "fan 2 failed", capped.clone()))
        .await
        .unwrap();
    assert_eq!(queued(&held), 0);
    advance(&clock, 3_601);

    store.fail_next_commits(1);
    let failed = store
        .accept(alert(Some("k3"), &[N1], "fans ok", capped.clone()))
        .await;
    assert!(
        failed.is_err(),
        "a failed COMMIT fails the accept: {failed:?}"
    );

    // The MTA tries again: the Message-ID was not remembered, and the count
    // of what was held back was not used up.
    let again = store
        .accept(alert(Some("k3"), &[N1], "fans ok", capped.clone()))
        .await
        .unwrap();
    assert_eq!(queued(&again), 1);
    let texts = claim_texts(&store).await;
    assert_eq!(
        texts.last().map(|(_, t)| t.as_str()),
        Some("fans ok\n(+1 similar alerts held back)")
    );
    assert_eq!(count(dir.path(), "SELECT COUNT(*) FROM requests").await, 3);
}
