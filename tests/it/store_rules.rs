//! Credits, opt-outs and sending-limit counts over the real SQLite store, in
//! a database file of a temporary directory: balances, greedy reservation,
//! reservations from two stores on one file (two daemons) that never
//! overdraw, opt-out lists and their scopes, per-account counts since a
//! time, and all of it kept across a reopen.

use mail2sms::codes::Code;
use mail2sms::store::{
    JobOutcome, NewMessage, NewRequest, OptOut, RequestBody, SqliteStore, Store, StoreConfig,
    now_millis,
};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

fn config(dir: &Path) -> StoreConfig {
    StoreConfig::sqlite(dir.join("data").join("mail2sms.db"))
}

async fn open(dir: &Path) -> SqliteStore {
    SqliteStore::open(&config(dir)).await.expect("open store")
}

fn set(numbers: &[&str]) -> HashSet<String> {
    numbers.iter().map(|n| n.to_string()).collect()
}

fn strings(numbers: &[&str]) -> Vec<String> {
    numbers.iter().map(|n| n.to_string()).collect()
}

#[tokio::test]
async fn balances_start_unset_then_add_take_away_and_refund() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;

    assert_eq!(store.credit_balance("acme").await.unwrap(), None);
    assert_eq!(store.add_credits("acme", 10).await.unwrap(), 10);
    assert_eq!(store.add_credits("acme", 5).await.unwrap(), 15);
    assert_eq!(store.credit_balance("acme").await.unwrap(), Some(15));
    // Taking away: down to 0, never below.
    assert_eq!(store.add_credits("acme", -4).await.unwrap(), 11);
    assert_eq!(store.add_credits("acme", -100).await.unwrap(), 0);
    assert_eq!(store.credit_balance("acme").await.unwrap(), Some(0));
    // A negative start on a new account is 0 as well.
    assert_eq!(store.add_credits("newco", -7).await.unwrap(), 0);
    assert_eq!(store.credit_balance("newco").await.unwrap(), Some(0));
    // Adding 0 sets a balance of 0.
    assert_eq!(store.add_credits("zero", 0).await.unwrap(), 0);
    assert_eq!(store.credit_balance("zero").await.unwrap(), Some(0));

    store.refund_credits("acme", 6).await.unwrap();
    assert_eq!(store.credit_balance("acme").await.unwrap(), Some(6));
    // A refund creates a missing balance; a refund of nothing does not.
    store.refund_credits("other", 4).await.unwrap();
    assert_eq!(store.credit_balance("other").await.unwrap(), Some(4));
    store.refund_credits("nobody", 0).await.unwrap();
    assert_eq!(store.credit_balance("nobody").await.unwrap(), None);

    // Saturates instead of overflowing.
    assert_eq!(store.add_credits("big", i64::MAX).await.unwrap(), i64::MAX);
    assert_eq!(store.add_credits("big", 1).await.unwrap(), i64::MAX);
    store.refund_credits("big", u64::MAX).await.unwrap();
    assert_eq!(store.credit_balance("big").await.unwrap(), Some(i64::MAX));

    // Accounts are separate.
    assert_eq!(store.credit_balance("acme").await.unwrap(), Some(6));
}

#[tokio::test]
async fn reserve_debits_in_order_skipping_what_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.add_credits("acme", 10).await.unwrap();

    // 4 fits (6 left), 8 does not, 3 fits (3 left), 2 fits (1 left), 2 does not.
    let taken = store
        .reserve_credits("acme", &no_jobs(&[4, 8, 3, 2, 2]))
        .await
        .unwrap();
    assert_eq!(taken, [true, false, true, true, false]);
    assert_eq!(store.credit_balance("acme").await.unwrap(), Some(1));

    // Everything fits: all debited, down to exactly 0.
    store.add_credits("acme", 5).await.unwrap();
    let taken = store
        .reserve_credits("acme", &no_jobs(&[2, 1, 3]))
        .await
        .unwrap();
    assert_eq!(taken, [true, true, true]);
    assert_eq!(store.credit_balance("acme").await.unwrap(), Some(0));

    // Nothing left: nothing debited.
    let taken = store.reserve_credits("acme", &no_jobs(&[1])).await.unwrap();
    assert_eq!(taken, [false]);
    assert_eq!(store.credit_balance("acme").await.unwrap(), Some(0));

    // Nothing asked: nothing to say.
    assert!(
        store
            .reserve_credits("acme", &no_jobs(&[]))
            .await
            .unwrap()
            .is_empty()
    );

    // A refund makes room again.
    store.refund_credits("acme", 3).await.unwrap();
    let taken = store
        .reserve_credits("acme", &no_jobs(&[2, 2, 1]))
        .await
        .unwrap();
    assert_eq!(taken, [true, false, true]);
    assert_eq!(store.credit_balance("acme").await.unwrap(), Some(0));
}

#[tokio::test]
async fn reserve_without_a_balance_debits_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    store.add_credits("other", 100).await.unwrap();

    let taken = store
        .reserve_credits("acme", &no_jobs(&[1, 2]))
        .await
        .unwrap();
    assert_eq!(taken, [false, false]);
    // No balance was made up for it, and the other account kept its own.
    assert_eq!(store.credit_balance("acme").await.unwrap(), None);
    assert_eq!(store.credit_balance("other").await.unwrap(), Some(100));
}

/// Two stores on one file, like two daemons sharing a database, and many
/// tasks reserving at once on each: what they were told they got adds up to
/// exactly the balance there was, never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_reservations_from_two_stores_never_overdraw() {
    const INITIAL: i64 = 1_000;
    const TASKS_PER_STORE: usize = 12;
    const CALLS_PER_TASK: usize = 25;
    // Demand: 2 × 12 × 25 × 6 = 3 600 segments for 1 000.
    const SEGMENTS: [u32; 3] = [1, 2, 3];

    let dir = tempfile::tempdir().unwrap();
    let first = Arc::new(open(dir.path()).await);
    let second = Arc::new(open(dir.path()).await);
    assert_eq!(first.add_credits("acme", INITIAL).await.unwrap(), INITIAL);

    let mut tasks = Vec::new();
    for store in [&first, &second] {
        for _ in 0..TASKS_PER_STORE {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                let mut got = 0i64;
                for _ in 0..CALLS_PER_TASK {
                    let taken = store
                        .reserve_credits("acme", &no_jobs(&SEGMENTS))
                        .await
                        .unwrap();
                    assert_eq!(taken.len(), SEGMENTS.len());
                    got += SEGMENTS
                        .iter()
                        .zip(&taken)
                        .filter(|(_, t)| **t)
                        .map(|(s, _)| i64::from(*s))
                        .sum::<i64>();
                }
                got
            }));
        }
    }
    let mut debited = 0;
    for task in tasks {
        debited += task.await.unwrap();
    }
    assert_eq!(
        debited, INITIAL,
        "segments handed out vs the balance there was"
    );
    // Demand exceeded the balance and 1-segment SMS were asked to the end.
    assert_eq!(first.credit_balance("acme").await.unwrap(), Some(0));
    assert_eq!(second.credit_balance("acme").await.unwrap(), Some(0));
}

/// Refunds and additions from both stores at once are none of them lost.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_additions_from_two_stores_are_all_kept() {
    let dir = tempfile::tempdir().unwrap();
    let first = Arc::new(open(dir.path()).await);
    let second = Arc::new(open(dir.path()).await);
    let mut tasks = Vec::new();
    for store in [&first, &second] {
        for i in 0..10 {
            let store = Arc::clone(store);
            tasks.push(tokio::spawn(async move {
                for _ in 0..20 {
                    if i % 2 == 0 {
                        store.add_credits("acme", 2).await.unwrap();
                    } else {
                        store.refund_credits("acme", 1).await.unwrap();
                    }
                }
            }));
        }
    }
    for task in tasks {
        task.await.unwrap();
    }
    // 2 stores × (5 tasks × 20 × 2 + 5 tasks × 20 × 1).
    assert_eq!(second.credit_balance("acme").await.unwrap(), Some(600));
}

/// Opening a database another process has open (the CLI next to the
/// daemon), even while both create it, works and sees the same data.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn stores_opened_together_on_a_new_file_share_it() {
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        let (a, b) = tokio::join!(SqliteStore::open(&config), SqliteStore::open(&config));
        let (a, b) = (a.expect("first open"), b.expect("second open"));
        assert_eq!(a.instance_id(), b.instance_id());
        a.add_credits("acme", 3).await.unwrap();
        assert_eq!(b.credit_balance("acme").await.unwrap(), Some(3));
        assert!(b.optout_add(None, "+33601020304").await.unwrap());
        assert!(!a.optout_add(None, "+33601020304").await.unwrap());
    }
}

#[tokio::test]
async fn optout_add_and_remove_say_whether_they_changed_anything() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let n = "+33601020304";

    assert!(store.optout_add(None, n).await.unwrap());
    assert!(!store.optout_add(None, n).await.unwrap(), "already there");
    // Another scope is another list.
    assert!(store.optout_add(Some("acme"), n).await.unwrap());
    assert!(!store.optout_add(Some("acme"), n).await.unwrap());

    assert!(store.optout_remove(Some("acme"), n).await.unwrap());
    assert!(!store.optout_remove(Some("acme"), n).await.unwrap(), "gone");
    assert!(!store.optout_remove(Some("other"), n).await.unwrap());
    assert!(!store.optout_remove(None, "+33609999999").await.unwrap());
    // The global entry was not touched by the account's removal.
    assert_eq!(store.optout_list().await.unwrap().len(), 1);
    assert!(store.optout_remove(None, n).await.unwrap());
    assert!(!store.optout_remove(None, n).await.unwrap());
    assert!(store.optout_list().await.unwrap().is_empty());
}

#[tokio::test]
async fn optout_refuses_numbers_not_in_e164() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    for bad in [
        "0601020304",
        "33601020304",
        "+0601020304",
        "+33 6 01 02 03 04",
        "+",
        "",
    ] {
        assert!(
            store.optout_add(None, bad).await.is_err(),
            "{bad:?} would never match an E.164 destination"
        );
    }
    assert!(store.optout_list().await.unwrap().is_empty());
    assert!(
        store
            .optout_add(Some("acme"), "+12025550123")
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn opted_out_checks_the_account_list_and_the_global_one() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let (everyone, acme_only, other_only, nobody) = (
        "+33600000001",
        "+33600000002",
        "+33600000003",
        "+33600000004",
    );
    store.optout_add(None, everyone).await.unwrap();
    store.optout_add(Some("acme"), acme_only).await.unwrap();
    store.optout_add(Some("other"), other_only).await.unwrap();
    let all = strings(&[everyone, acme_only, other_only, nobody, everyone]);

    assert_eq!(
        store.opted_out("acme", &all).await.unwrap(),
        set(&[everyone, acme_only])
    );
    assert_eq!(
        store.opted_out("other", &all).await.unwrap(),
        set(&[everyone, other_only])
    );
    assert_eq!(
        store.opted_out("third", &all).await.unwrap(),
        set(&[everyone])
    );
    assert_eq!(
        store
            .opted_out("acme", &strings(&[nobody, other_only]))
            .await
            .unwrap(),
        set(&[])
    );
    assert!(store.opted_out("acme", &[]).await.unwrap().is_empty());

    // Taken off the global list: reachable again, except where listed.
    store.optout_remove(None, everyone).await.unwrap();
    assert_eq!(
        store.opted_out("acme", &all).await.unwrap(),
        set(&[acme_only])
    );
}

#[tokio::test]
async fn optout_list_is_global_first_then_by_account_and_number() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;
    let before = now_millis();
    for (scope, number) in [
        (Some("zeta"), "+33600000001"),
        (None, "+33600000009"),
        (Some("acme"), "+33600000002"),
        (None, "+33600000004"),
        (Some("acme"), "+33600000001"),
        (Some("beta"), "+33600000000"),
    ] {
        store.optout_add(scope, number).await.unwrap();
    }
    let after = now_millis();

    let list = store.optout_list().await.unwrap();
    let entries: Vec<(Option<&str>, &str)> = list
        .iter()
        .map(|o| (o.scope.as_deref(), o.number.as_str()))
        .collect();
    assert_eq!(
        entries,
        [
            (None, "+33600000004"),
            (None, "+33600000009"),
            (Some("acme"), "+33600000001"),
            (Some("acme"), "+33600000002"),
            (Some("beta"), "+33600000000"),
            (Some("zeta"), "+33600000001"),
        ]
    );
    for OptOut { added_at, .. } in &list {
        assert!((before..=after).contains(added_at), "{added_at}");
    }
}

fn message(number: &str) -> NewMessage {
    NewMessage::to(number, "hello")
}

fn request(account: &str, email_id: &str, body: RequestBody) -> NewRequest {
    NewRequest {
        body,
        ..NewRequest::new(account, Some(email_id), "ops@example.com", Vec::new())
    }
}

#[tokio::test]
async fn queued_since_counts_sms_per_account_from_the_given_time_on() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path()).await;

    // Earlier: acme queues 2 SMS (a refused number and a repeat queue
    // nothing), other queues 1.
    let mut refused = message("0000");
    refused.number = Err(Code::BAD_NUMBER);
    let mut repeat = message("+33600000001");
    repeat.duplicate_of = Some(0);
    let earlier = RequestBody::Messages(vec![
        message("+33600000001"),
        refused,
        repeat,
        message("+33600000002"),
    ]);
    store.accept(request("acme", "a", earlier)).await.unwrap();
    let one = RequestBody::Messages(vec![message("+33600000003")]);
    store.accept(request("other", "o", one)).await.unwrap();
    // A request refused as a whole queues nothing.
    let refused_request = RequestBody::Refused(Code::TOO_MANY_NUMBERS);
    store
        .accept(request("third", "r", refused_request))
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_millis(5)).await;
    // Later: acme queues 1 more.
    let later = RequestBody::Messages(vec![message("+33600000004")]);
    store.accept(request("acme", "b", later)).await.unwrap();

    // When each was received, as the jobs say; claiming them (and what
    // becomes of them) does not change what was queued.
    let jobs = store.claim_jobs(now_millis(), 100).await.unwrap();
    assert_eq!(jobs.len(), 4);
    let received: HashMap<&str, i64> = jobs
        .iter()
        .map(|j| (j.email_id.as_str(), j.received_at))
        .collect();
    let earliest = received["a"].min(received["o"]);
    let later_at = received["b"];
    assert!(received["a"].max(received["o"]) < later_at);
    let outcomes = vec![
        JobOutcome::Sent {
            job_id: jobs[0].id,
            provider: "outbox".into(),
            provider_ref: "x".into(),
        },
        JobOutcome::Failed {
            job_id: jobs[1].id,
            code: Code::BAD_NUMBER,
            detail: "refused".into(),
            provider: Some("outbox".into()),
        },
    ];
    store.record_outcomes(outcomes).await.unwrap();

    let counts = |v: &[(&str, u64)]| -> Vec<(String, u64)> {
        v.iter().map(|(a, n)| (a.to_string(), *n)).collect()
    };
    assert_eq!(
        store.queued_since(0).await.unwrap(),
        counts(&[("acme", 3), ("other", 1)])
    );
    assert_eq!(
        store.queued_since(earliest).await.unwrap(),
        counts(&[("acme", 3), ("other", 1)])
    );
    // The boundary is included: received exactly at `since` counts.
    assert_eq!(
        store.queued_since(later_at).await.unwrap(),
        counts(&[("acme", 1)])
    );
    assert_eq!(store.queued_since(later_at + 1).await.unwrap(), counts(&[]));
}

#[tokio::test]
async fn everything_survives_reopening_the_store() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(dir.path()).await;
        store.add_credits("acme", 20).await.unwrap();
        store
            .reserve_credits("acme", &no_jobs(&[5, 30, 2]))
            .await
            .unwrap();
        store.optout_add(None, "+33600000001").await.unwrap();
        store
            .optout_add(Some("acme"), "+33600000002")
            .await
            .unwrap();
        let body = RequestBody::Messages(vec![message("+33600000003")]);
        store.accept(request("acme", "a", body)).await.unwrap();
    }
    let store = open(dir.path()).await;
    assert_eq!(store.credit_balance("acme").await.unwrap(), Some(13));
    let list: Vec<(Option<String>, String)> = store
        .optout_list()
        .await
        .unwrap()
        .into_iter()
        .map(|o| (o.scope, o.number))
        .collect();
    assert_eq!(
        list,
        [
            (None, "+33600000001".to_string()),
            (Some("acme".to_string()), "+33600000002".to_string()),
        ]
    );
    assert_eq!(
        store
            .opted_out("acme", &strings(&["+33600000001", "+33600000002"]))
            .await
            .unwrap(),
        set(&["+33600000001", "+33600000002"])
    );
    assert_eq!(
        store.queued_since(0).await.unwrap(),
        [("acme".to_string(), 1)]
    );
}

/// Segments for reservations not tied to a job (ids no job has).
fn no_jobs(segments: &[u32]) -> Vec<(i64, u32)> {
    segments.iter().map(|&s| (-1, s)).collect()
}
