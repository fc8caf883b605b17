//! The store contract (issue 9): what every backend of [`Store`] must do,
//! written once against the trait and run for each backend by
//! [`contract!`]. Today it runs for SQLite; a PostgreSQL backend adds one
//! `contract!` line with a factory that opens it, and runs the same suite
//! unchanged.
//!
//! Covered: accept with de-duplication under concurrency, claims that never
//! hand a job to two claimers, outcomes (sent, failed, retried, held) and
//! the etatNot they queue once, credits debited and given back atomically
//! under concurrency, opt-out lists and their scopes as the claim sees
//! them, deferred sends, and retention.

use mail2sms::codes::Code;
use mail2sms::store::{
    Accepted, Etat, JobOutcome, NewMessage, NewRequest, ReplyContent, Store, now_millis,
};
use std::collections::HashSet;
use std::sync::Arc;

/// A store under test and what keeps it alive (its directory, its server).
struct Opened {
    /// The store, through the trait only.
    store: Arc<dyn Store>,
    /// Removed when the test ends.
    _dir: tempfile::TempDir,
}

/// Opens a fresh, empty SQLite store in a temporary directory.
async fn sqlite() -> Opened {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = mail2sms::store::StoreConfig::sqlite(dir.path().join("contract.db"));
    Opened {
        store: mail2sms::store::open(&config).await.expect("open store"),
        _dir: dir,
    }
}

/// One `#[tokio::test]` per contract case, for a backend's factory.
macro_rules! contract {
    ($backend:ident, $open:expr, [$($case:ident),* $(,)?]) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let opened = $open.await;
                    super::cases::$case(opened.store.clone()).await;
                }
            )*
        }
    };
}

contract!(
    sqlite,
    super::sqlite(),
    [
        accept_dedupes_under_concurrency,
        claims_never_hand_a_job_to_two_claimers,
        outcomes_finish_requests_and_queue_one_etat_not,
        retries_wait_and_give_untried_attempts_back,
        credits_never_overdraw_under_concurrency,
        opt_outs_are_seen_by_the_claim,
        retention_forgets_finished_requests_only,
    ]
);

fn request(account: &str, email_id: &str, numbers: &[&str]) -> NewRequest {
    let messages = numbers
        .iter()
        .map(|n| NewMessage::to(n, &format!("to {n}")))
        .collect();
    NewRequest {
        sender_id: Some("ACME".into()),
        tracker: Some("trk".into()),
        email_ack: Some("ack@acme.test".into()),
        email_not: Some("not@acme.test".into()),
        ..NewRequest::new(account, Some(email_id), "ops@acme.test", messages)
    }
}

fn numbers(count: usize) -> Vec<String> {
    (0..count).map(|i| format!("+336{i:08}")).collect()
}

fn sent(job_id: i64) -> JobOutcome {
    JobOutcome::Sent {
        job_id,
        provider: "p".into(),
        provider_ref: format!("ref-{job_id}"),
    }
}

/// The contract's cases, each over any [`Store`].
mod cases {
    use super::*;

    /// Concurrent accepts of one (account, emailId): exactly one is
    /// queued; the same emailId in another account is its own.
    pub async fn accept_dedupes_under_concurrency(store: Arc<dyn Store>) {
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..40 {
            let store = store.clone();
            let account = if i % 4 == 0 { "other" } else { "acme" };
            tasks.spawn(async move {
                (
                    account,
                    store
                        .accept(request(account, "1548", &["+33601020304"]))
                        .await
                        .expect("accept"),
                )
            });
        }
        let results = tasks.join_all().await;
        for account in ["acme", "other"] {
            let queued = results
                .iter()
                .filter(|(a, r)| *a == account && matches!(r, Accepted::Queued { jobs: 1, .. }))
                .count();
            let duplicates = results
                .iter()
                .filter(|(a, r)| *a == account && *r == Accepted::Duplicate)
                .count();
            let total = results.iter().filter(|(a, _)| *a == account).count();
            assert_eq!((queued, duplicates), (1, total - 1), "{account}");
        }
        let mut none = request("acme", "x", &["+33601020304"]);
        none.email_id = None;
        assert_eq!(store.accept(none).await.unwrap(), Accepted::NoEmailId);
    }

    /// Four claimers racing over 300 jobs: every job is claimed exactly
    /// once, with its request's values.
    pub async fn claims_never_hand_a_job_to_two_claimers(store: Arc<dyn Store>) {
        let numbers = numbers(300);
        let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
        for (i, chunk) in numbers.chunks(30).enumerate() {
            store
                .accept(request("acme", &format!("c{i}"), chunk))
                .await
                .unwrap();
        }
        let mut tasks = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let store = store.clone();
            tasks.spawn(async move {
                let mut mine = Vec::new();
                loop {
                    let jobs = store.claim_jobs(now_millis(), 7).await.expect("claim");
                    if jobs.is_empty() {
                        return mine;
                    }
                    mine.extend(jobs);
                }
            });
        }
        let claimed: Vec<_> = tasks.join_all().await.into_iter().flatten().collect();
        let ids: HashSet<i64> = claimed.iter().map(|j| j.id).collect();
        assert_eq!((claimed.len(), ids.len()), (300, 300));
        let job = &claimed[0];
        assert_eq!(job.account, "acme");
        assert!(job.email_id.starts_with('c'));
        assert_eq!(job.sender_id.as_deref(), Some("ACME"));
        assert_eq!(job.tracker.as_deref(), Some("trk"));
        assert_eq!(job.attempts, 1);
        assert!(store.in_flight_jobs().await.unwrap().len() == 300);
    }

    /// A request is finished when its last job is; its etatNot is queued
    /// once, with each recipient's code in order, whatever is recorded
    /// twice.
    pub async fn outcomes_finish_requests_and_queue_one_etat_not(store: Arc<dyn Store>) {
        store
            .accept(request("acme", "o1", &["+33601000001", "+33601000002"]))
            .await
            .unwrap();
        let jobs = store.claim_jobs(now_millis(), 10).await.unwrap();
        assert_eq!(jobs.len(), 2);
        let failed = JobOutcome::Failed {
            job_id: jobs[1].id,
            code: Code::INTERNAL,
            detail: "refused".into(),
            provider: Some("p".into()),
        };
        store.record_outcomes(vec![sent(jobs[0].id)]).await.unwrap();
        let ack_only = store.claim_replies(now_millis(), 10).await.unwrap();
        assert_eq!(
            ack_only.len(),
            1,
            "etatNot before the last job: {ack_only:?}"
        );
        store.record_outcomes(vec![failed.clone()]).await.unwrap();
        store
            .record_outcomes(vec![failed, sent(jobs[0].id)])
            .await
            .unwrap();
        let replies = store.claim_replies(now_millis(), 10).await.unwrap();
        let nots: Vec<_> = replies
            .iter()
            .filter_map(|r| match &r.content {
                ReplyContent::Not { etats, .. } => Some(etats.clone()),
                ReplyContent::Ack { .. } | ReplyContent::Dsn(_) => None,
            })
            .collect();
        assert_eq!(
            nots,
            vec![vec![
                Etat::new(Code(0), "+33601000001"),
                Etat::new(Code::INTERNAL, "+33601000002")
            ]]
        );
        let counts: std::collections::HashMap<String, i64> =
            store.job_counts().await.unwrap().into_iter().collect();
        assert_eq!(counts.get("sent"), Some(&1));
        assert_eq!(counts.get("failed"), Some(&1));
    }

    /// A retry waits until its time; an untried retry gives its attempt
    /// back; a held one moves the age origin to the end of the hold.
    pub async fn retries_wait_and_give_untried_attempts_back(store: Arc<dyn Store>) {
        store
            .accept(request("acme", "r1", &["+33601000001"]))
            .await
            .unwrap();
        let now = now_millis();
        let job = store.claim_jobs(now, 10).await.unwrap().remove(0);
        let later = now + 60_000;
        store
            .record_outcomes(vec![JobOutcome::Retry {
                job_id: job.id,
                at: later,
                provider_index: 1,
                detail: "quiet hours".into(),
                kind: mail2sms::store::RetryKind::Held,
            }])
            .await
            .unwrap();
        assert!(store.claim_jobs(later - 1, 10).await.unwrap().is_empty());
        let again = store.claim_jobs(later, 10).await.unwrap().remove(0);
        assert_eq!(again.id, job.id);
        assert_eq!(again.attempts, 1, "an untried wait gives its attempt back");
        assert_eq!(again.provider_index, 1);
        assert_eq!(again.age_from, later, "a hold moves the age origin");
        store
            .record_outcomes(vec![JobOutcome::Retry {
                job_id: job.id,
                at: later,
                provider_index: 1,
                detail: "503".into(),
                kind: mail2sms::store::RetryKind::Counted,
            }])
            .await
            .unwrap();
        let third = store.claim_jobs(later, 10).await.unwrap().remove(0);
        assert_eq!(third.attempts, 2, "a counted retry uses a try");
        assert_eq!(third.provider_attempts, 2);
    }

    /// Twenty concurrent reservations of 3 segments on a balance of 30:
    /// exactly ten succeed; a failure gives its debit back, once.
    pub async fn credits_never_overdraw_under_concurrency(store: Arc<dyn Store>) {
        store.add_credits("acme", 30).await.unwrap();
        let numbers = numbers(20);
        let numbers: Vec<&str> = numbers.iter().map(String::as_str).collect();
        store.accept(request("acme", "k1", &numbers)).await.unwrap();
        let jobs = store.claim_jobs(now_millis(), 100).await.unwrap();
        let mut tasks = tokio::task::JoinSet::new();
        for job in &jobs {
            let store = store.clone();
            let id = job.id;
            tasks.spawn(async move {
                let taken = store.reserve_credits("acme", &[(id, 3)]).await.unwrap();
                (id, taken[0])
            });
        }
        let results = tasks.join_all().await;
        let debited: Vec<i64> = results.iter().filter(|r| r.1).map(|r| r.0).collect();
        assert_eq!(debited.len(), 10);
        assert_eq!(store.credit_balance("acme").await.unwrap(), Some(0));
        let failed = JobOutcome::Failed {
            job_id: debited[0],
            code: Code::INTERNAL,
            detail: "x".into(),
            provider: None,
        };
        store.record_outcomes(vec![failed.clone()]).await.unwrap();
        store.record_outcomes(vec![failed]).await.unwrap();
        store.record_outcomes(vec![sent(debited[1])]).await.unwrap();
        assert_eq!(store.credit_balance("acme").await.unwrap(), Some(3));
    }

    /// The account's list and the global one are both seen by the claim;
    /// another account's list is not.
    pub async fn opt_outs_are_seen_by_the_claim(store: Arc<dyn Store>) {
        assert!(
            store
                .optout_add(Some("acme"), "+33601000001")
                .await
                .unwrap()
        );
        assert!(
            !store
                .optout_add(Some("acme"), "+33601000001")
                .await
                .unwrap()
        );
        assert!(store.optout_add(None, "+33601000002").await.unwrap());
        assert!(
            store
                .optout_add(Some("other"), "+33601000003")
                .await
                .unwrap()
        );
        assert!(store.optout_add(None, "0601").await.is_err());
        store
            .accept(request(
                "acme",
                "x1",
                &["+33601000001", "+33601000002", "+33601000003"],
            ))
            .await
            .unwrap();
        let jobs = store.claim_jobs(now_millis(), 10).await.unwrap();
        let out: Vec<(String, bool)> = jobs
            .iter()
            .map(|j| (j.number.clone(), j.opted_out))
            .collect();
        assert_eq!(
            out,
            vec![
                ("+33601000001".to_string(), true),
                ("+33601000002".to_string(), true),
                ("+33601000003".to_string(), false)
            ]
        );
        assert!(store.optout_remove(None, "+33601000002").await.unwrap());
        assert!(!store.optout_remove(None, "+33601000002").await.unwrap());
        assert_eq!(store.optout_list().await.unwrap().len(), 2);
    }

    /// Retention forgets requests finished before the cut (their emailId
    /// is free again), never one still being sent.
    pub async fn retention_forgets_finished_requests_only(store: Arc<dyn Store>) {
        store
            .accept(request("acme", "done", &["+33601000001"]))
            .await
            .unwrap();
        let job = store.claim_jobs(now_millis(), 10).await.unwrap().remove(0);
        store.record_outcomes(vec![sent(job.id)]).await.unwrap();
        store
            .accept(request("acme", "busy", &["+33601000002"]))
            .await
            .unwrap();
        // Replies settled, so the finished request may go.
        let replies = store.claim_replies(now_millis(), 10).await.unwrap();
        let outcomes = replies
            .iter()
            .map(|r| (r.id, mail2sms::store::ReplyOutcome::Sent))
            .collect();
        store.record_replies(outcomes).await.unwrap();
        assert_eq!(store.purge(now_millis() + 1).await.unwrap(), 1);
        assert!(matches!(
            store
                .accept(request("acme", "done", &["+33601000001"]))
                .await
                .unwrap(),
            Accepted::Queued { .. }
        ));
        assert_eq!(
            store
                .accept(request("acme", "busy", &["+33601000002"]))
                .await
                .unwrap(),
            Accepted::Duplicate
        );
    }
}
