//! The dispatcher against scripted providers, over the real SQLite store:
//! transient failures are retried, unusable providers failed over,
//! permanent refusals reported with their code, and etatNot is queued once,
//! only when every recipient has its outcome.

use crate::common::*;
use mail2sms::codes::Code;
use mail2sms::config::Config;
use mail2sms::dispatch::Dispatcher;
use mail2sms::providers::{FailureKind, OutgoingSms, Provider, Providers, SendError};
use mail2sms::shutdown;
use mail2sms::store::{
    Etat, NewMessage, NewRequest, ReplyContent, RetryKind, SqliteStore, Store, now_millis,
};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

/// A provider that answers per destination from a script, then succeeds.
struct Scripted {
    /// Per number: the errors to return first, in order.
    script: Mutex<HashMap<String, Vec<SendError>>>,
    /// Every call: the numbers of the batch.
    calls: Mutex<Vec<Vec<String>>>,
    /// The numbers it accepted, with their reference.
    sent: Mutex<Vec<(String, String)>>,
}

impl Scripted {
    fn new(script: Vec<(&str, Vec<SendError>)>) -> Arc<Scripted> {
        Arc::new(Scripted {
            script: Mutex::new(
                script
                    .into_iter()
                    .map(|(n, e)| (n.to_string(), e))
                    .collect(),
            ),
            calls: Mutex::new(Vec::new()),
            sent: Mutex::new(Vec::new()),
        })
    }
}

#[async_trait::async_trait]
impl Provider for Scripted {
    fn max_batch(&self) -> usize {
        100
    }

    async fn send(&self, batch: &[OutgoingSms]) -> Vec<Result<String, SendError>> {
        self.calls
            .lock()
            .unwrap()
            .push(batch.iter().map(|s| s.to.clone()).collect());
        batch
            .iter()
            .map(|sms| {
                let mut script = self.script.lock().unwrap();
                match script.get_mut(&sms.to).filter(|e| !e.is_empty()) {
                    Some(errors) => Err(errors.remove(0)),
                    None => {
                        self.sent
                            .lock()
                            .unwrap()
                            .push((sms.to.clone(), sms.reference.clone()));
                        Ok(format!("p-{}", sms.reference))
                    }
                }
            })
            .collect()
    }
}

fn config(dir: &Path) -> Config {
    let mut c = Config::parse(
        &(test_toml(dir).replace(
            "providers = [\"outbox\"]",
            "providers = [\"outbox\", \"backup\"]",
        ) + &format!(
            "\n[providers.backup]\ntype = \"outbox\"\npath = \"{}/backup.jsonl\"\n",
            dir.display()
        )),
        Path::new("test"),
    )
    .unwrap();
    c.dispatch.max_attempts = 3;
    c.dispatch.retry_initial_ms = 20;
    c.dispatch.retry_max_ms = 40;
    c.dispatch.poll_interval_ms = 20;
    c
}

fn request(numbers: &[&str]) -> NewRequest {
    let messages = numbers.iter().map(|n| NewMessage::to(n, "t")).collect();
    NewRequest {
        email_not: Some("not@masociete.com".into()),
        ..NewRequest::new("masociete", Some("d-1"), "ops@masociete.com", messages)
    }
}

fn transient() -> SendError {
    SendError::transient("HTTP 503")
}

/// Runs a dispatcher with these providers until `done` says so.
async fn dispatch_until(
    store: Arc<dyn Store>,
    config: &Config,
    primary: Arc<Scripted>,
    backup: Arc<Scripted>,
    done: impl FnMut() -> bool,
) {
    dispatch_with(
        store,
        config,
        vec![("outbox", primary), ("backup", backup)],
        done,
    )
    .await
}

#[tokio::test]
async fn retries_failover_and_codes_reach_etat_not_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.store).await.unwrap());
    store
        .accept(request(&[
            "+33600000001",
            "+33600000002",
            "+33600000003",
            "+33600000004",
        ]))
        .await
        .unwrap();
    let unusable = SendError {
        kind: FailureKind::ProviderUnusable,
        code: Code::NO_CREDIT,
        detail: "no credit".into(),
    };
    let primary = Scripted::new(vec![
        // Sent on the third try.
        ("+33600000001", vec![transient(), transient()]),
        // Refused for good: reported with its code, never retried.
        (
            "+33600000002",
            vec![SendError::permanent(Code::NOT_ASSIGNED, "unassigned")],
        ),
        // Three transient failures: fail over to the backup.
        ("+33600000003", vec![transient(), transient(), transient()]),
        // The provider is out of credit: straight to the backup.
        ("+33600000004", vec![unusable]),
    ]);
    let backup = Scripted::new(vec![]);
    let p = primary.clone();
    let b = backup.clone();
    dispatch_until(
        store.clone(),
        &config,
        primary.clone(),
        backup.clone(),
        move || p.sent.lock().unwrap().len() == 1 && b.sent.lock().unwrap().len() == 2,
    )
    .await;
    // Settle: the last outcomes are recorded before the dispatcher stops.
    let replies = store.claim_replies(now_millis(), 10).await.unwrap();
    assert_eq!(replies.len(), 1, "one etatNot: {replies:?}");
    assert_eq!(
        replies[0].content,
        ReplyContent::Not {
            email_id: Some("d-1".into()),
            etats: vec![
                Etat::new(Code::SENT, "+33600000001"),
                Etat::new(Code::NOT_ASSIGNED, "+33600000002"),
                Etat::new(Code::SENT, "+33600000003"),
                Etat::new(Code::SENT, "+33600000004"),
            ]
        }
    );
    let tries_for = |p: &Scripted, n: &str| {
        p.calls
            .lock()
            .unwrap()
            .iter()
            .filter(|c| c.iter().any(|x| x == n))
            .count()
    };
    assert_eq!(tries_for(&primary, "+33600000001"), 3);
    assert_eq!(tries_for(&primary, "+33600000002"), 1);
    assert_eq!(tries_for(&primary, "+33600000003"), 3);
    assert_eq!(tries_for(&primary, "+33600000004"), 1);
    let mut on_backup: Vec<_> = backup
        .sent
        .lock()
        .unwrap()
        .iter()
        .map(|(n, _)| n.clone())
        .collect();
    on_backup.sort();
    assert_eq!(on_backup, ["+33600000003", "+33600000004"]);
    // The reference is the store's id and the job id, the same on both.
    let reference = backup.sent.lock().unwrap()[0].1.clone();
    assert!(
        reference.starts_with(&format!("{}-", store.instance_id())),
        "{reference}"
    );
    assert!(reference.len() <= 30);
    assert_eq!(
        store.job_counts().await.unwrap(),
        [("failed".to_string(), 1), ("sent".to_string(), 3)]
    );
}

#[tokio::test]
async fn etat_not_waits_for_a_recipient_still_being_retried() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.dispatch.retry_initial_ms = 60_000; // the retry is far away
    config.dispatch.retry_max_ms = 60_000;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.store).await.unwrap());
    store
        .accept(request(&["+33600000001", "+33600000002"]))
        .await
        .unwrap();
    let primary = Scripted::new(vec![("+33600000002", vec![transient()])]);
    let p = primary.clone();
    dispatch_until(
        store.clone(),
        &config,
        primary.clone(),
        Scripted::new(vec![]),
        move || !p.calls.lock().unwrap().is_empty() && p.sent.lock().unwrap().len() == 1,
    )
    .await;
    assert!(
        store
            .claim_replies(now_millis(), 10)
            .await
            .unwrap()
            .is_empty(),
        "no etatNot yet"
    );
    assert_eq!(
        store.job_counts().await.unwrap(),
        [("queued".to_string(), 1), ("sent".to_string(), 1)]
    );
}

#[tokio::test]
async fn accounts_sharing_a_provider_keep_their_own_failover_lists() {
    // Regression (second review, H3): the provider count of the first job of
    // a batch was used for every job going to the same provider.
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    let mut solo = config.accounts["masociete"].clone();
    solo.keyid = "solo-key".into();
    solo.providers = vec!["outbox".into()];
    config.accounts.insert("solo".into(), solo);
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.store).await.unwrap());
    let mut only_primary = request(&["+33600000009"]);
    only_primary.account = "solo".into();
    only_primary.email_id = Some("solo-1".into());
    store.accept(only_primary).await.unwrap();
    store.accept(request(&["+33600000001"])).await.unwrap();
    let no_credit = || SendError {
        kind: FailureKind::ProviderUnusable,
        code: Code::NO_CREDIT,
        detail: "no credit".into(),
    };
    let primary = Scripted::new(vec![
        ("+33600000009", vec![no_credit()]),
        ("+33600000001", vec![no_credit()]),
    ]);
    let backup = Scripted::new(vec![]);
    let b = backup.clone();
    // The backup is only reached after the first batch (both jobs) was
    // recorded, and the dispatcher finishes its batches before it stops.
    dispatch_until(store.clone(), &config, primary, backup.clone(), move || {
        b.sent.lock().unwrap().len() == 1
    })
    .await;
    assert_eq!(
        backup
            .sent
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>(),
        ["+33600000001"],
        "the two-provider account fails over"
    );
    let replies = store.claim_replies(now_millis(), 10).await.unwrap();
    let solo_not = replies
        .iter()
        .find(|r| matches!(&r.content, ReplyContent::Not { email_id, .. } if email_id.as_deref() == Some("solo-1")))
        .expect("solo etatNot");
    assert_eq!(
        solo_not.content,
        ReplyContent::Not {
            email_id: Some("solo-1".into()),
            etats: vec![Etat::new(Code::NO_CREDIT, "+33600000009")],
        },
        "the one-provider account reports the provider's code"
    );
}

/// Runs a dispatcher with these named providers until `done` says so.
async fn dispatch_with(
    store: Arc<dyn Store>,
    config: &Config,
    named: Vec<(&str, Arc<Scripted>)>,
    mut done: impl FnMut() -> bool,
) {
    let mut providers = Providers::new();
    for (name, p) in named {
        providers.insert(name.to_string(), p);
    }
    let wake = Arc::new(Notify::new());
    let dispatcher = Arc::new(Dispatcher::new(
        config.dispatch_setup(),
        store,
        providers,
        wake.clone(),
        Arc::new(Notify::new()),
    ));
    let (trigger, listen) = shutdown::channel();
    let task = tokio::spawn(dispatcher.run(listen));
    wake.notify_one();
    wait_until(|| done().then_some(()))
        .await
        .expect("dispatch finished");
    trigger.fire();
    task.await.unwrap();
}

#[tokio::test]
async fn a_failing_provider_is_put_aside_and_sms_fail_over_without_calling_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.dispatch.max_attempts = 50; // failover comes from the breaker
    config.dispatch.breaker_threshold = 2;
    config.dispatch.breaker_cooldown_secs = 3_600;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.store).await.unwrap());
    store.accept(request(&["+33600000001"])).await.unwrap();
    let down = Scripted::new(vec![("+33600000001", vec![transient(); 50])]);
    let backup = Scripted::new(vec![]);
    let b = backup.clone();
    dispatch_with(
        store.clone(),
        &config,
        vec![("outbox", down.clone()), ("backup", backup.clone())],
        move || b.sent.lock().unwrap().len() == 1,
    )
    .await;
    assert_eq!(
        down.calls.lock().unwrap().len(),
        2,
        "two failed calls, then the provider is no longer called"
    );
    let replies = store.claim_replies(now_millis(), 10).await.unwrap();
    assert_eq!(replies.len(), 1, "{replies:?}");
    let job_attempts = down.calls.lock().unwrap().len();
    assert_eq!(job_attempts, 2);
}

#[tokio::test]
async fn an_sms_waiting_for_a_provider_put_aside_keeps_its_retries() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    let mut solo = config.accounts["masociete"].clone();
    solo.providers = vec!["outbox".into()];
    config.accounts.insert("masociete".into(), solo);
    config.dispatch.max_attempts = 4;
    config.dispatch.breaker_threshold = 2;
    config.dispatch.breaker_cooldown_secs = 1;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.store).await.unwrap());
    store.accept(request(&["+33600000001"])).await.unwrap();
    // Two failures open the breaker; the SMS waits (its claims while the
    // provider is aside are not tries), the probe fails and puts it aside
    // again, and the fourth real try goes out. Counting the waiting claims
    // as tries would have failed it for good before that.
    let flaky = Scripted::new(vec![(
        "+33600000001",
        vec![transient(), transient(), transient()],
    )]);
    let f = flaky.clone();
    dispatch_with(
        store.clone(),
        &config,
        vec![("outbox", flaky.clone()), ("backup", Scripted::new(vec![]))],
        move || f.sent.lock().unwrap().len() == 1,
    )
    .await;
    assert_eq!(flaky.calls.lock().unwrap().len(), 4);
    assert_eq!(store.job_counts().await.unwrap(), [("sent".to_string(), 1)]);
}

#[tokio::test]
async fn untried_retries_give_the_attempt_back() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path());
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.store).await.unwrap());
    store.accept(request(&["+33600000001"])).await.unwrap();
    let job = store.claim_jobs(now_millis(), 10).await.unwrap().remove(0);
    assert_eq!((job.attempts, job.provider_attempts), (1, 1));
    let mut job_id = job.id;
    for untried in [true, false] {
        store
            .record_outcomes(vec![mail2sms::store::JobOutcome::Retry {
                job_id,
                at: 0,
                provider_index: 0,
                detail: "wait".into(),
                kind: if untried {
                    RetryKind::Untried
                } else {
                    RetryKind::Counted
                },
            }])
            .await
            .unwrap();
        let again = store.claim_jobs(now_millis(), 10).await.unwrap().remove(0);
        let expected = if untried { (1, 1) } else { (2, 2) };
        assert_eq!(
            (again.attempts, again.provider_attempts),
            expected,
            "untried={untried}"
        );
        job_id = again.id;
    }
    // Only a rules hold (quiet hours) moves where the age is counted from.
    for held in [false, true] {
        let until = now_millis() - 1;
        store
            .record_outcomes(vec![mail2sms::store::JobOutcome::Retry {
                job_id,
                at: until,
                provider_index: 0,
                detail: "wait".into(),
                kind: if held {
                    RetryKind::Held
                } else {
                    RetryKind::Untried
                },
            }])
            .await
            .unwrap();
        let again = store.claim_jobs(now_millis(), 10).await.unwrap().remove(0);
        let expected = if held { until } else { again.received_at };
        assert_eq!(again.age_from, expected, "held={held}");
    }
}

#[tokio::test]
async fn prefix_routes_pick_providers_by_destination() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    config.routes = vec![mail2sms::dispatch::routing::RouteConfig {
        prefix: "+41".into(),
        providers: vec!["backup".into()],
    }];
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.store).await.unwrap());
    store
        .accept(request(&["+41791234567", "+33600000001"]))
        .await
        .unwrap();
    let primary = Scripted::new(vec![]);
    let swiss = Scripted::new(vec![]);
    let (p, s) = (primary.clone(), swiss.clone());
    dispatch_with(
        store.clone(),
        &config,
        vec![("outbox", primary.clone()), ("backup", swiss.clone())],
        move || p.sent.lock().unwrap().len() + s.sent.lock().unwrap().len() == 2,
    )
    .await;
    let numbers = |p: &Scripted| -> Vec<String> {
        p.sent
            .lock()
            .unwrap()
            .iter()
            .map(|(n, _)| n.clone())
            .collect()
    };
    assert_eq!(numbers(&swiss), ["+41791234567"]);
    assert_eq!(numbers(&primary), ["+33600000001"]);
}

#[tokio::test]
async fn a_provider_rate_limit_spaces_its_calls() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path());
    let Some(mail2sms::providers::ProviderConfig::Outbox(outbox)) =
        config.providers.get_mut("outbox")
    else {
        panic!("outbox provider");
    };
    outbox.rate_limit = std::num::NonZeroU32::new(2);
    config.dispatch.batch_size = 1; // one SMS per call
    config.dispatch.concurrency = 4;
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.store).await.unwrap());
    store
        .accept(request(&[
            "+33600000001",
            "+33600000002",
            "+33600000003",
            "+33600000004",
            "+33600000005",
        ]))
        .await
        .unwrap();
    let primary = Scripted::new(vec![]);
    let p = primary.clone();
    let started = std::time::Instant::now();
    dispatch_with(
        store.clone(),
        &config,
        vec![
            ("outbox", primary.clone()),
            ("backup", Scripted::new(vec![])),
        ],
        move || p.sent.lock().unwrap().len() == 5,
    )
    .await;
    // 2 per second with a burst of 2: the 3 calls after the burst need at
    // least 1.5 s. (A lower bound: never flaky on a slow machine.)
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(1_400),
        "{:?}",
        started.elapsed()
    );
}

/// A provider that fails like the real adapters when a batch needs several
/// requests: the first request's SMS get `error`, the others are left
/// unsent (`SendError::not_attempted`).
struct StopsAtFirst {
    /// What the first request of every batch gets.
    error: SendError,
    /// How many batches it was given.
    calls: Mutex<usize>,
}

#[async_trait::async_trait]
impl Provider for StopsAtFirst {
    fn max_batch(&self) -> usize {
        100
    }

    async fn send(&self, batch: &[OutgoingSms]) -> Vec<Result<String, SendError>> {
        *self.calls.lock().unwrap() += 1;
        let mut results = vec![Err(self.error.clone())];
        results.extend((1..batch.len()).map(|_| Err(SendError::not_attempted(&self.error))));
        results
    }
}

/// Regression (third review): SMS an adapter left unsent must move with the
/// failed request, not one request's worth per round.
#[tokio::test]
async fn sms_left_unsent_by_a_failing_batch_move_with_it() {
    let numbers: Vec<String> = (0..20).map(|i| format!("+336000001{i:02}")).collect();
    let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
    for (error, primary_calls) in [
        (
            SendError::unusable(Code::BAD_CREDENTIALS, "HTTP 401"),
            1, // refused credentials: everything to the backup at once
        ),
        (SendError::transient("HTTP 503"), 3), // max_attempts rounds, all together
    ] {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.dispatch.breaker_threshold = 0;
        config.dispatch.max_attempts = 3;
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&config.store).await.unwrap());
        store.accept(request(&numbers)).await.unwrap();
        let down = Arc::new(StopsAtFirst {
            error,
            calls: Mutex::new(0),
        });
        let backup = Scripted::new(vec![]);
        let b = backup.clone();
        let mut providers = Providers::new();
        providers.insert("outbox".into(), down.clone());
        providers.insert("backup".into(), backup.clone());
        let wake = Arc::new(Notify::new());
        let dispatcher = Arc::new(Dispatcher::new(
            config.dispatch_setup(),
            store.clone(),
            providers,
            wake.clone(),
            Arc::new(Notify::new()),
        ));
        let (trigger, listen) = shutdown::channel();
        let task = tokio::spawn(dispatcher.run(listen));
        wake.notify_one();
        wait_until(|| (b.sent.lock().unwrap().len() == 20).then_some(()))
            .await
            .expect("all 20 reach the backup");
        trigger.fire();
        task.await.unwrap();
        assert_eq!(*down.calls.lock().unwrap(), primary_calls);
    }
}
