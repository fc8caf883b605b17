//! Store faults (issue 8): a full disk, a failing `COMMIT`, a read-only
//! database file and a lock held by another process, at chosen moments —
//! during accept, claim, outcome recording, reply recording and credits —
//! then taken away. What must hold every time:
//!
//! - an operation that returns `Ok` is in the database file when it returns
//!   (another connection sees it), so `250` is never sent for mail that is
//!   not stored;
//! - an operation that fails changes nothing and reports nothing as done;
//! - the writer recovers by itself once the cause is gone;
//! - ids are never reused and de-duplication stays intact.
//!
//! The daemon-level runs (a real tmpfs filled during an SMTP load, and a
//! database file made immutable during one) are at the end; they say
//! SKIPPED when this machine does not let them mount or `chattr`.

use crate::common::*;
use mail2sms::codes::Code;
use mail2sms::store::{
    Accepted, JobOutcome, NewMessage, NewRequest, ReplyOutcome, SqliteStore, Store, StoreConfig,
    now_millis,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{ConnectOptions, Row};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

fn store_config(dir: &Path) -> StoreConfig {
    StoreConfig {
        busy_timeout_ms: 300,
        ..StoreConfig::sqlite(dir.join("mail2sms.db"))
    }
}

/// The SQLite file of a store config.
fn db(config: &StoreConfig) -> &Path {
    config.url.sqlite_path().expect("a SQLite store")
}

fn request(email_id: &str, numbers: &[&str]) -> NewRequest {
    let text = format!("hello {email_id}");
    let messages = numbers.iter().map(|n| NewMessage::to(n, &text)).collect();
    NewRequest {
        sender_id: Some("ACME".into()),
        tracker: Some(format!("t-{email_id}")),
        email_ack: Some("ack@acme.test".into()),
        email_not: Some("not@acme.test".into()),
        ..NewRequest::new("acme", Some(email_id), "ops@acme.test", messages)
    }
}

/// An independent connection to the database file: what another process
/// (or the daemon after a crash) would find there.
async fn observer(path: &Path) -> SqliteConnection {
    SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .busy_timeout(Duration::from_secs(5))
        .connect()
        .await
        .expect("observer connection")
}

/// The emailIds stored, as another connection sees them.
async fn stored_email_ids(path: &Path) -> HashSet<String> {
    let mut conn = observer(path).await;
    sqlx::query("SELECT email_id FROM requests")
        .fetch_all(&mut conn)
        .await
        .expect("read requests")
        .iter()
        .map(|r| r.get::<String, _>(0))
        .collect()
}

/// (status, count) of the jobs, as another connection sees them.
async fn job_statuses(path: &Path) -> HashMap<String, i64> {
    let mut conn = observer(path).await;
    sqlx::query("SELECT status, COUNT(*) FROM jobs GROUP BY status")
        .fetch_all(&mut conn)
        .await
        .expect("read jobs")
        .iter()
        .map(|r| (r.get(0), r.get(1)))
        .collect()
}

/// Whether another process can write the database now: the store holds no
/// transaction open behind the operations it reported.
async fn writable_by_another(path: &Path) -> bool {
    let mut conn = SqliteConnectOptions::new()
        .filename(path)
        .busy_timeout(Duration::from_millis(500))
        .connect()
        .await
        .expect("second writer");
    let ok = sqlx::raw_sql("BEGIN IMMEDIATE")
        .execute(&mut conn)
        .await
        .is_ok();
    let _ = sqlx::raw_sql("ROLLBACK").execute(&mut conn).await;
    ok
}

fn job_ids(accepted: &[Accepted]) -> usize {
    accepted
        .iter()
        .map(|a| match a {
            Accepted::Queued { jobs, .. } => *jobs,
            _ => 0,
        })
        .sum()
}

/// Issue 8: a failed `COMMIT` (SQLite rolled the transaction back) followed
/// by a full disk used to leave the writer inside a transaction that never
/// ended: later accepts returned `Ok` (SMTP `250`) while nothing reached the
/// file, and other processes found the database locked.
#[tokio::test]
async fn accepted_is_in_the_file_after_commit_and_disk_full_failures() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let store = SqliteStore::open(&config).await.unwrap();
    let mut accepted = vec![store.accept(request("1", &["+33601000001"])).await.unwrap()];

    // A COMMIT that fails (the disk gave out at the last moment).
    store.fail_next_commits(1);
    let failed = store.accept(request("2", &["+33601000002"])).await;
    assert!(
        failed.is_err(),
        "a failed COMMIT must fail the accept: {failed:?}"
    );

    // Then the disk is full for a statement.
    store.set_max_page_count(Some(1)).await.unwrap();
    let big: Vec<String> = (0..400).map(|i| format!("+336020{i:05}")).collect();
    let big: Vec<&str> = big.iter().map(String::as_str).collect();
    let full = store.accept(request("3", &big)).await;
    assert!(
        full.is_err(),
        "a full database must fail the accept: {full:?}"
    );

    // Space comes back: the writer goes on by itself, and what it says it
    // stored is in the file at once.
    store.set_max_page_count(None).await.unwrap();
    for id in ["4", "5"] {
        accepted.push(store.accept(request(id, &["+33601000004"])).await.unwrap());
        assert!(
            stored_email_ids(db(&config)).await.contains(id),
            "emailId {id} was accepted but is not in the file"
        );
    }
    assert!(
        writable_by_another(db(&config)).await,
        "the writer keeps a transaction open after recovering"
    );
    assert_eq!(
        stored_email_ids(db(&config)).await,
        HashSet::from(["1".into(), "4".into(), "5".into()])
    );

    // The failed ones were never stored: sent again, they are new; the
    // stored ones are still duplicates.
    accepted.push(store.accept(request("2", &["+33601000002"])).await.unwrap());
    accepted.push(store.accept(request("3", &big)).await.unwrap());
    assert_eq!(
        store.accept(request("1", &["+33601000001"])).await.unwrap(),
        Accepted::Duplicate
    );
    assert_eq!(
        store.accept(request("4", &["+33601000004"])).await.unwrap(),
        Accepted::Duplicate
    );

    // Every job id is used once: the claim gives each job exactly once.
    let jobs = store.claim_jobs(now_millis(), 10_000).await.unwrap();
    let ids: HashSet<i64> = jobs.iter().map(|j| j.id).collect();
    assert_eq!(ids.len(), jobs.len());
    assert_eq!(jobs.len(), job_ids(&accepted));
    // Per-request values come back from the request (stored once).
    let job = jobs.iter().find(|j| j.email_id == "5").unwrap();
    assert_eq!(job.tracker.as_deref(), Some("t-5"));
    assert_eq!(job.sender_id.as_deref(), Some("ACME"));
}

/// Issue 8: a failed claim leaves its jobs queued (no attempt used), a
/// failed outcome record leaves them "sending" (never claimed again, so
/// never sent twice) until the record goes through, once.
#[tokio::test]
async fn failed_claims_and_outcome_records_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let store = SqliteStore::open(&config).await.unwrap();
    store
        .accept(request("10", &["+33601000010", "+33601000011"]))
        .await
        .unwrap();

    store.fail_next_commits(1);
    assert!(store.claim_jobs(now_millis(), 10).await.is_err());
    assert_eq!(job_statuses(db(&config)).await.get("queued"), Some(&2));

    let jobs = store.claim_jobs(now_millis(), 10).await.unwrap();
    assert_eq!(jobs.len(), 2);
    assert!(jobs.iter().all(|j| j.attempts == 1), "{jobs:?}");

    let outcomes: Vec<JobOutcome> = jobs
        .iter()
        .map(|j| JobOutcome::Sent {
            job_id: j.id,
            provider: "outbox".into(),
            provider_ref: format!("ref-{}", j.id),
        })
        .collect();
    store.fail_next_commits(1);
    assert!(store.record_outcomes(outcomes.clone()).await.is_err());
    assert_eq!(job_statuses(db(&config)).await.get("sending"), Some(&2));
    // Not claimable again while their outcome is unknown to the store.
    assert!(store.claim_jobs(now_millis(), 10).await.unwrap().is_empty());

    // Disk full while recording: the same.
    store.set_max_page_count(Some(1)).await.unwrap();
    let mut full_failed = false;
    for _ in 0..3 {
        full_failed |= store.record_outcomes(outcomes.clone()).await.is_err();
        if full_failed {
            break;
        }
    }
    store.set_max_page_count(None).await.unwrap();
    if !full_failed {
        // The update fitted in the pages the database had: it is recorded.
        assert_eq!(job_statuses(db(&config)).await.get("sent"), Some(&2));
    }

    store.record_outcomes(outcomes.clone()).await.unwrap();
    assert_eq!(job_statuses(db(&config)).await.get("sent"), Some(&2));
    // etatAck at accept, etatNot once, however many times it was recorded.
    let replies = store.claim_replies(now_millis(), 10).await.unwrap();
    let nots = replies
        .iter()
        .filter(|r| matches!(r.content, mail2sms::store::ReplyContent::Not { .. }))
        .count();
    assert_eq!((replies.len(), nots), (2, 1), "{replies:?}");
}

/// Issue 8: a reply whose outcome could not be recorded stays "sending":
/// it is not claimed again (so not sent again) until the record goes
/// through.
#[tokio::test]
async fn failed_reply_records_keep_the_reply_out_of_the_queue() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let store = SqliteStore::open(&config).await.unwrap();
    store
        .accept(request("20", &["+33601000020"]))
        .await
        .unwrap();

    store.fail_next_commits(1);
    assert!(store.claim_replies(now_millis(), 10).await.is_err());
    let replies = store.claim_replies(now_millis(), 10).await.unwrap();
    assert_eq!(
        replies.len(),
        1,
        "the failed claim must leave the ack pending"
    );
    assert_eq!(replies[0].attempts, 1);

    store.fail_next_commits(1);
    let sent = vec![(replies[0].id, ReplyOutcome::Sent)];
    assert!(store.record_replies(sent.clone()).await.is_err());
    assert!(
        store
            .claim_replies(now_millis(), 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.record_replies(sent).await.unwrap();
    let mut conn = observer(db(&config)).await;
    let status: String = sqlx::query_scalar("SELECT status FROM replies WHERE id = ?")
        .bind(replies[0].id)
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(status, "sent");
}

/// Issue 8: a credit reservation that cannot commit debits nothing, and
/// the balance is right once the store recovers.
#[tokio::test]
async fn failed_credit_reservations_debit_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let store = SqliteStore::open(&config).await.unwrap();
    store.add_credits("acme", 10).await.unwrap();
    store
        .accept(request("30", &["+33601000030"]))
        .await
        .unwrap();
    let jobs = store.claim_jobs(now_millis(), 10).await.unwrap();
    let wanted: Vec<(i64, u32)> = jobs.iter().map(|j| (j.id, 3)).collect();

    store.fail_next_commits(1);
    assert!(store.reserve_credits("acme", &wanted).await.is_err());
    assert_eq!(store.credit_balance("acme").await.unwrap(), Some(10));

    assert_eq!(
        store.reserve_credits("acme", &wanted).await.unwrap(),
        vec![true]
    );
    assert_eq!(store.credit_balance("acme").await.unwrap(), Some(7));
    // A failure that is not "sent" gives the one debit back, once.
    let failed = vec![JobOutcome::Failed {
        job_id: jobs[0].id,
        code: Code::INTERNAL,
        detail: "test".into(),
        provider: None,
    }];
    store.fail_next_commits(1);
    assert!(store.record_outcomes(failed.clone()).await.is_err());
    assert_eq!(store.credit_balance("acme").await.unwrap(), Some(7));
    store.record_outcomes(failed.clone()).await.unwrap();
    store.record_outcomes(failed).await.unwrap();
    assert_eq!(store.credit_balance("acme").await.unwrap(), Some(10));
}

/// Issue 8: a lock held by another process: `Err` (SMTP 451) while it is
/// held, and the writer goes on once it is released.
#[tokio::test]
async fn a_lock_held_by_another_process_fails_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let store = SqliteStore::open(&config).await.unwrap();
    let mut other = SqliteConnectOptions::new()
        .filename(db(&config))
        .connect()
        .await
        .unwrap();
    sqlx::raw_sql("BEGIN EXCLUSIVE")
        .execute(&mut other)
        .await
        .unwrap();
    let locked = store.accept(request("40", &["+33601000040"])).await;
    assert!(locked.is_err(), "{locked:?}");
    sqlx::raw_sql("ROLLBACK").execute(&mut other).await.unwrap();

    store
        .accept(request("41", &["+33601000041"]))
        .await
        .unwrap();
    store
        .accept(request("40", &["+33601000040"]))
        .await
        .unwrap();
    assert_eq!(
        stored_email_ids(db(&config)).await,
        HashSet::from(["40".into(), "41".into()])
    );
    assert!(writable_by_another(db(&config)).await);
}

/// Says on the real stderr (not captured by the test harness, so `cargo
/// test` shows it) that a test could not run here.
fn skipped(test: &str, why: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED store_faults::{test}: {why} on this machine (run as root)"
    );
}

/// `chattr` on a path; false when the tool or the permission is missing.
fn chattr(flag: &str, paths: &[PathBuf]) -> bool {
    std::process::Command::new("chattr")
        .arg(flag)
        .args(paths)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes files immutable while it lives (`chattr -i` again on drop, so a
/// failing test leaves nothing that cannot be removed).
struct Immutable(Vec<PathBuf>);

impl Immutable {
    fn new(files: Vec<PathBuf>) -> Option<Immutable> {
        chattr("+i", &files).then_some(Immutable(files))
    }
}

impl Drop for Immutable {
    fn drop(&mut self) {
        chattr("-i", &self.0);
    }
}

/// The database file and its WAL: what `chattr +i` makes read-only.
fn db_files(path: &Path) -> Vec<PathBuf> {
    let wal = PathBuf::from(format!("{}-wal", path.display()));
    [path.to_path_buf(), wal]
        .into_iter()
        .filter(|p| p.exists())
        .collect()
}

/// Issue 8: a database file made read-only (`chattr +i`, which even root
/// cannot write through): accepts fail while it lasts, nothing is reported
/// stored that is not, and the writer recovers once it is writable again.
#[tokio::test]
async fn a_read_only_database_file_fails_then_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let config = store_config(dir.path());
    let store = SqliteStore::open(&config).await.unwrap();
    store
        .accept(request("50", &["+33601000050"]))
        .await
        .unwrap();
    let Some(immutable) = Immutable::new(db_files(db(&config))) else {
        skipped(
            "a_read_only_database_file_fails_then_recovers",
            "chattr +i not permitted",
        );
        return;
    };
    let mut results = Vec::new();
    for i in 0..20 {
        let id = format!("r{i}");
        let big: Vec<String> = (0..200).map(|n| format!("+3360300{n:04}")).collect();
        let big: Vec<&str> = big.iter().map(String::as_str).collect();
        results.push((id.clone(), store.accept(request(&id, &big)).await.is_ok()));
    }
    drop(immutable);
    let stored = stored_email_ids(db(&config)).await;
    for (id, ok) in &results {
        assert_eq!(
            stored.contains(id),
            *ok,
            "emailId {id}: accept said {ok}, the file says {}",
            stored.contains(id)
        );
    }
    assert!(
        results.iter().any(|(_, ok)| !ok),
        "no write failed on an immutable database: the test did not test anything"
    );
    store
        .accept(request("51", &["+33601000051"]))
        .await
        .unwrap();
    assert!(stored_email_ids(db(&config)).await.contains("51"));
    assert!(writable_by_another(db(&config)).await);
}

// ---- daemon-level runs under SMTP load -------------------------------------

/// What a load run saw: for each emailId sent, the SMTP reply code.
struct LoadRun {
    /// emailId → reply code of its last send.
    codes: HashMap<String, u16>,
}

/// Sends `per_sender` distinct emails from each of `senders` concurrent
/// SMTP clients, with emailIds `{tag}-{sender}-{n}`; `fault` runs once a
/// third of the load has been sent, and the load goes on meanwhile.
async fn load_with_fault<F, Fut>(
    app: &TestApp,
    tag: &str,
    senders: usize,
    per_sender: usize,
    fault: F,
) -> LoadRun
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for s in 0..senders {
        let client = app.client();
        let sent = sent.clone();
        let tag = tag.to_string();
        tasks.spawn(async move {
            let mut codes = Vec::new();
            for n in 0..per_sender {
                let email_id = format!("{tag}-{s}-{n}");
                let raw = plain_email(
                    "ops@masociete.com",
                    &envoi("0601020304", &format!("load {email_id}"), &email_id),
                );
                let envelope = lettre::address::Envelope::new(
                    Some("ops@masociete.com".parse().unwrap()),
                    vec!["sms@sms.example.com".parse().unwrap()],
                )
                .unwrap();
                let code = match lettre::AsyncTransport::send_raw(&client, &envelope, &raw).await {
                    Ok(r) => u16::from(r.code()),
                    Err(e) => e.status().map_or(0, u16::from),
                };
                codes.push((email_id, code));
                sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            codes
        });
    }
    let third = senders * per_sender / 3;
    while sent.load(std::sync::atomic::Ordering::Relaxed) < third {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    fault().await;
    let codes = tasks.join_all().await.into_iter().flatten().collect();
    LoadRun { codes }
}

/// The outbox lines per emailId.
fn sms_per_email_id(app: &TestApp) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in app.outbox() {
        let id = line["email_id"].as_str().unwrap_or_default().to_string();
        *counts.entry(id).or_default() += 1;
    }
    counts
}

/// Checks the promises after a faulty load: every `250` is in the file and
/// sent once, every other reply was `451`, some mail failed (the fault was
/// real) and mail was accepted after it (the daemon went on by itself).
/// Then sends everything again: the stored ones are duplicates, the
/// refused ones go through, and still no SMS is sent twice.
async fn check_promises(app: &TestApp, run: &LoadRun, db: &Path) {
    let accepted: HashSet<&String> = run
        .codes
        .iter()
        .filter(|(_, c)| **c == 250)
        .map(|(id, _)| id)
        .collect();
    let others: Vec<(&String, &u16)> = run.codes.iter().filter(|(_, c)| **c != 250).collect();
    assert!(
        others.iter().all(|(_, c)| **c == 451),
        "every refusal must be 451: {others:?}"
    );
    assert!(
        !others.is_empty(),
        "no email got 451: the fault did not reach the store"
    );
    let stored = stored_email_ids(db).await;
    for id in &accepted {
        assert!(
            stored.contains(*id),
            "emailId {id} got 250 but is not stored"
        );
    }
    for (id, _) in &others {
        assert!(!stored.contains(*id), "emailId {id} got 451 but is stored");
    }
    wait_until(|| (app.outbox().len() >= accepted.len()).then_some(()))
        .await
        .expect("every accepted email sent");
    let sms = sms_per_email_id(app);
    for id in &accepted {
        assert_eq!(sms.get(*id), Some(&1), "emailId {id}: SMS count");
    }
    assert!(sms.values().all(|&n| n == 1), "an SMS was sent twice");

    // The MTA retries everything: refused ones are queued now, stored ones
    // are duplicates (etatAck 1), no SMS twice.
    for (id, code) in &run.codes {
        let raw = plain_email(
            "ops@masociete.com",
            &envoi("0601020304", &format!("load {id}"), id),
        );
        let reply = app
            .send("ops@masociete.com", &raw)
            .await
            .expect("retry accepted");
        let text = reply.message().collect::<Vec<_>>().join(" ");
        if *code == 250 {
            assert!(text.contains("already processed"), "{id}: {text}");
        } else {
            assert!(text.contains("queued"), "{id}: {text}");
        }
    }
    wait_until(|| (app.outbox().len() >= run.codes.len()).then_some(()))
        .await
        .expect("every email sent once");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let sms = sms_per_email_id(app);
    assert_eq!(sms.len(), run.codes.len());
    assert!(sms.values().all(|&n| n == 1), "an SMS was sent twice");
}

/// Mounts a tmpfs of `size` at `dir`; false when not permitted.
fn mount_tmpfs(dir: &Path, size: &str) -> bool {
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
        .arg(dir)
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Unmounts the tmpfs when the test ends, whatever way it ends.
struct Unmount(PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

/// Fills the file system of `dir` until it is full; returns the filler.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("filler");
    let block = vec![0u8; 4096];
    while file.write_all(&block).is_ok() {}
    let _ = file.sync_all();
    path
}

/// Issue 8, the reported run: the store on a small tmpfs, the disk filled
/// for two seconds during an SMTP load from two senders, then freed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_full_during_smtp_load_loses_nothing_and_sends_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path().join("disk");
    std::fs::create_dir(&mount).unwrap();
    if !mount_tmpfs(&mount, "16m") {
        skipped(
            "disk_full_during_smtp_load_loses_nothing_and_sends_nothing_twice",
            "mounting a tmpfs is not permitted",
        );
        return;
    }
    let _unmount = Unmount(mount.clone());
    let db = mount.join("mail2sms.db");
    let mut config =
        mail2sms::config::Config::parse(&test_toml(dir.path()), Path::new("test")).unwrap();
    config.store.url = mail2sms::store::StoreUrl::Sqlite(db.clone());
    config.store.busy_timeout_ms = 200;
    let app = TestApp::start_in(dir, config).await;

    let run = load_with_fault(&app, "full", 2, 150, || async {
        let filler = fill(&mount);
        tokio::time::sleep(Duration::from_secs(2)).await;
        std::fs::remove_file(filler).unwrap();
    })
    .await;
    check_promises(&app, &run, &db).await;
}

/// Issue 8: the database file and its WAL made immutable for two seconds
/// during an SMTP load.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_only_store_during_smtp_load_loses_nothing_and_sends_nothing_twice() {
    let app = TestApp::spawn_with(|c| c.store.busy_timeout_ms = 200).await;
    let db = app.config.store.url.sqlite_path().unwrap().to_path_buf();
    if !chattr("-i", &db_files(&db)) {
        skipped(
            "read_only_store_during_smtp_load_loses_nothing_and_sends_nothing_twice",
            "chattr not permitted",
        );
        return;
    }
    let run = load_with_fault(&app, "ro", 2, 150, || async {
        let immutable = Immutable::new(db_files(&db)).expect("chattr +i");
        tokio::time::sleep(Duration::from_secs(2)).await;
        drop(immutable);
    })
    .await;
    check_promises(&app, &run, &db).await;
}
