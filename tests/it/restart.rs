//! Restarts with work queued, through the real store and daemon: accepted
//! requests survive, interrupted sends are settled exactly once, and a
//! stop/start in the middle of traffic loses and repeats nothing.

use crate::common::*;
use mail2sms::config::Config;
use mail2sms::store::{
    Accepted, NewMessage, NewRequest, RequestBody, SqliteStore, Store, now_millis,
};
use std::collections::HashSet;
use std::io::Write;
use std::path::Path;

const NUMBERS: [(&str, &str); 3] = [
    ("0601020301", "+33601020301"),
    ("06 01 02 03 02", "+33601020302"),
    ("+33601020303", "+33601020303"),
];

fn config_in(dir: &tempfile::TempDir) -> Config {
    Config::parse(&test_toml(dir.path()), Path::new("test")).expect("test config")
}

/// A three-recipient request, as the pipeline would record it.
fn request(email_id: &str) -> NewRequest {
    NewRequest {
        account: "masociete".into(),
        email_id: Some(email_id.into()),
        message_id: Some("<restart@masociete.com>".into()),
        mail_from: "ops@masociete.com".into(),
        sender_id: Some("MaSociete".into()),
        tracker: None,
        email_ack: Some("ack@masociete.com".into()),
        email_not: Some("not@masociete.com".into()),
        body: RequestBody::Messages(
            NUMBERS
                .iter()
                .map(|(tel, e164)| NewMessage {
                    tel: (*tel).into(),
                    number: Ok((*e164).into()),
                    text: format!("restart {email_id}"),
                    duplicate_of: None,
                    detail: None,
                })
                .collect(),
        ),
        alert: None,
    }
}

/// The etatNot of a three-recipient request whose SMS were all sent.
fn all_sent_etat_not(email_id: &str) -> String {
    let mut text = format!(
        "<?xml version=\"1.0\" encoding=\"ISO-8859-1\"?>\n<etatNot>\n<emailId>{email_id}</emailId>\n</etatNot>\n"
    );
    for (i, (tel, _)) in NUMBERS.iter().enumerate() {
        let i = i + 1;
        text.push_str(&format!(
            "<etat{i}>\n<code{i}>0</code{i}>\n<tel{i}>{tel}</tel{i}>\n<message{i}>Votre message a bien été envoyé</message{i}>\n</etat{i}>\n"
        ));
    }
    text
}

/// Reads the outbox once the daemon is stopped: every line must be whole
/// and parse.
fn final_outbox(path: &Path) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(path).expect("outbox exists");
    assert!(
        text.is_empty() || text.ends_with('\n'),
        "outbox ends with a partial line: {text:?}"
    );
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad outbox line {l:?}: {e}")))
        .collect()
}

fn jobs_of(lines: &[serde_json::Value]) -> Vec<i64> {
    let mut jobs: Vec<i64> = lines
        .iter()
        .map(|l| l["job"].as_i64().expect("job id"))
        .collect();
    jobs.sort_unstable();
    jobs
}

async fn counts(app: &TestApp) -> Vec<(String, i64)> {
    app.running
        .as_ref()
        .expect("running")
        .store
        .job_counts()
        .await
        .expect("job counts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn accepted_work_is_sent_once_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_in(&dir);
    // Accepted while no dispatcher runs (as if the daemon stopped right
    // after answering 250).
    {
        let store = SqliteStore::open(&config.store).await.expect("store");
        let accepted = store.accept(request("rs-1")).await.expect("accept");
        assert!(
            matches!(accepted, Accepted::Queued { jobs: 3, .. }),
            "{accepted:?}"
        );
        assert_eq!(
            store.job_counts().await.expect("counts"),
            [("queued".to_string(), 3)]
        );
    }
    assert!(
        read_outbox(&dir.path().join("outbox.jsonl")).is_empty(),
        "nothing sent before the daemon runs"
    );

    let mut app = TestApp::start_in(dir, config).await;
    let not = app.wait_reply_to("not@masociete.com").await;
    assert_eq!(not.text(), all_sent_etat_not("rs-1"));
    let ack = app.wait_reply_to("ack@masociete.com").await;
    assert!(ack.text().contains("<code>0</code>"), "{}", ack.text());
    assert_eq!(counts(&app).await, [("sent".to_string(), 3)]);
    app.stop().await;

    let lines = final_outbox(&app.outbox_path());
    assert_eq!(lines.len(), 3, "{lines:?}");
    let mut to: Vec<&str> = lines.iter().map(|l| l["to"].as_str().unwrap()).collect();
    to.sort_unstable();
    assert_eq!(to, NUMBERS.map(|(_, e164)| e164));
    assert!(lines.iter().all(|l| l["email_id"] == "rs-1"));
    assert!(lines.iter().all(|l| l["text"] == "restart rs-1"));
    let jobs = jobs_of(&lines);
    assert_eq!(
        jobs.iter().collect::<HashSet<_>>().len(),
        3,
        "one line per job: {jobs:?}"
    );
    assert_eq!(app.replies().len(), 2, "one etatAck, one etatNot");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupted_sends_are_settled_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = config_in(&dir);
    let outbox_path = dir.path().join("outbox.jsonl");
    const MARK: i64 = 1_000; // an at_ms the daemon never writes
    let (claimed, written) = {
        let store = SqliteStore::open(&config.store).await.expect("store");
        store.accept(request("crash-1")).await.expect("accept");
        // The previous run claimed all three, then died mid-send: the first
        // SMS reached the outbox whole, the second only in part, the third
        // not at all.
        let claimed = store.claim_jobs(now_millis(), 10).await.expect("claim");
        assert_eq!(claimed.len(), 3);
        assert_eq!(
            store.job_counts().await.expect("counts"),
            [("sending".to_string(), 3)]
        );
        let first = &claimed[0];
        let store_id = store.instance_id().to_string();
        let mut file = std::fs::File::create(&outbox_path).expect("outbox");
        // An older line from another database with the same job number:
        // it must not count.
        writeln!(
            file,
            "{{\"ref\":\"0000beef-{}\",\"job\":{},\"to\":\"+33600000000\",\"text\":\"old\",\"sender_id\":null,\"account\":\"masociete\",\"email_id\":\"old\",\"tracker\":null,\"at_ms\":1}}",
            claimed[1].id, claimed[1].id
        )
        .expect("old line");
        // The Outbox's shape: one JSON object, `ref` first, then `\n`.
        writeln!(
            file,
            "{{\"ref\":\"{store_id}-{}\",\"job\":{},\"to\":\"{}\",\"text\":\"{}\",\"sender_id\":\"MaSociete\",\"account\":\"masociete\",\"email_id\":\"crash-1\",\"tracker\":null,\"at_ms\":{MARK}}}",
            first.id, first.id, first.number, first.text
        )
        .expect("whole line");
        write!(
            file,
            "{{\"ref\":\"{store_id}-{}\",\"job\":{},\"to\":\"{}\",\"te",
            claimed[1].id, claimed[1].id, claimed[1].number
        )
        .expect("partial line");
        let written = first.id;
        (claimed, written)
    };

    let mut app = TestApp::start_in(dir, config).await;
    let not = app.wait_reply_to("not@masociete.com").await;
    assert_eq!(not.text(), all_sent_etat_not("crash-1"));
    assert_eq!(counts(&app).await, [("sent".to_string(), 3)]);
    app.stop().await;

    let mut lines = final_outbox(&app.outbox_path());
    let old = lines.remove(0);
    assert_eq!(
        old["email_id"], "old",
        "the other database's line stays first"
    );
    let mut expected: Vec<i64> = claimed.iter().map(|j| j.id).collect();
    expected.sort_unstable();
    assert_eq!(jobs_of(&lines), expected, "one line per job: {lines:?}");
    let first: Vec<_> = lines.iter().filter(|l| l["job"] == written).collect();
    assert_eq!(first.len(), 1);
    assert_eq!(
        first[0]["at_ms"], MARK,
        "the hand-written line is the one kept"
    );
    assert_eq!(lines[0]["at_ms"], MARK, "it is still the first of ours");
    for line in &lines[1..] {
        assert_ne!(line["at_ms"], MARK);
        assert_eq!(line["text"], "restart crash-1");
    }
}

async fn send_one(app: &TestApp, i: usize) {
    let mail = plain_email(
        "ops@masociete.com",
        &envoi(
            &format!("0612{i:06}"),
            &format!("sms {i}"),
            &format!("mid-{i}"),
        ),
    );
    let response = app
        .send("ops@masociete.com", &mail)
        .await
        .expect("accepted");
    assert_eq!(response.code().to_string(), "250");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_and_start_in_the_middle_of_traffic_sends_each_sms_once() {
    let app = TestApp::spawn().await;
    for i in 0..20 {
        send_one(&app, i).await;
    }
    // No waiting for the first SMS: some are still queued or being sent.
    let mut app = app.restart().await;
    for i in 20..40 {
        send_one(&app, i).await;
    }
    app.wait_outbox(40).await;
    app.stop().await;

    let lines = final_outbox(&app.outbox_path());
    assert_eq!(lines.len(), 40, "{lines:?}");
    let jobs: HashSet<i64> = jobs_of(&lines).into_iter().collect();
    assert_eq!(jobs.len(), 40, "a job written twice");
    let ids: HashSet<String> = lines
        .iter()
        .map(|l| l["email_id"].as_str().unwrap().to_string())
        .collect();
    let expected: HashSet<String> = (0..40).map(|i| format!("mid-{i}")).collect();
    assert_eq!(ids, expected);
    for line in &lines {
        let i: usize = line["email_id"].as_str().unwrap()[4..].parse().unwrap();
        assert_eq!(line["to"], format!("+33612{i:06}"));
        assert_eq!(line["text"], format!("sms {i}"));
    }
}

#[tokio::test]
async fn retention_forgets_finished_requests_and_their_email_ids() {
    let app = TestApp::spawn().await;
    let mail = plain_email("ops@masociete.com", &envoi("0601020304", "first", "ret-1"));
    app.send("ops@masociete.com", &mail)
        .await
        .expect("accepted");
    app.wait_reply_to("not@masociete.com").await;
    let store = app.running.as_ref().unwrap().store.clone();
    // Nothing older than an hour ago: nothing purged, still a duplicate.
    assert_eq!(
        store
            .purge(mail2sms::store::now_millis() - 3_600_000)
            .await
            .unwrap(),
        0
    );
    let again = app
        .send("ops@masociete.com", &mail)
        .await
        .expect("accepted");
    assert!(
        again.message().any(|l| l.contains("already processed")),
        "{again:?}"
    );
    // Everything finished before now (once its replies are settled):
    // forgotten, the emailId is new again.
    let mut purged = 0;
    for _ in 0..100 {
        purged = store
            .purge(mail2sms::store::now_millis() + 1)
            .await
            .unwrap();
        if purged > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(purged, 1);
    let fresh = app
        .send("ops@masociete.com", &mail)
        .await
        .expect("accepted");
    assert!(fresh.message().any(|l| l.contains("queued")), "{fresh:?}");
    assert_eq!(app.wait_outbox(2).await.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_at_start_up_purges_every_expired_request_not_one_chunk() {
    // Regression (second review, H2): only one chunk was purged an hour.
    use mail2sms::codes::Code;
    use sqlx::Connection;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = config_in(&dir);
    config.store.retention_days = 1;
    let total = mail2sms::store::PURGE_CHUNK as usize * 2 + 500;
    {
        let store = std::sync::Arc::new(SqliteStore::open(&config.store).await.expect("store"));
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..total {
            let store = store.clone();
            tasks.spawn(async move {
                let mut r = request(&format!("old-{i}"));
                r.email_ack = None;
                r.email_not = None;
                r.body = RequestBody::Refused(Code::NO_NUMBER);
                store.accept(r).await.expect("accept")
            });
        }
        tasks.join_all().await;
    }
    let db = config.store.url.to_string();
    let mut conn = sqlx::SqliteConnection::connect(&db).await.expect("db");
    // Finished two days ago.
    sqlx::query("UPDATE requests SET completed_at = ?")
        .bind(now_millis() - 2 * 86_400_000)
        .execute(&mut conn)
        .await
        .expect("age them");
    let app = TestApp::start_in(dir, config).await;
    let left = wait_until(|| {
        let n: i64 = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(sqlx::query_scalar("SELECT COUNT(*) FROM requests").fetch_one(&mut conn))
        })
        .expect("count");
        (n == 0).then_some(n)
    })
    .await;
    assert_eq!(
        left,
        Some(0),
        "all {total} expired requests purged at start-up"
    );
    drop(app);
}
