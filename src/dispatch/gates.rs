//! Account rules checked right before a send rather than when the email
//! arrived, because they can change while an SMS waits: commercial quiet
//! hours (deferred to the next allowed minute), the opt-out list (code 11)
//! and the credit balance (code 12, debited per segment sent).

use crate::codes::Code;
use crate::gsm;
use crate::providers::SendError;
use crate::rules::AccountConfig;
use crate::store::{Job, JobOutcome, RetryKind, Store};
use std::collections::{BTreeMap, HashMap};

/// What the dispatcher needs to know of each account.
#[derive(Debug, Clone, Copy, Default)]
struct AccountGates {
    /// Quiet hours apply.
    commercial: bool,
    /// A credit balance is kept.
    credits: bool,
}

/// The per-send checks of every account.
#[derive(Debug, Default)]
pub struct Gates {
    /// By account name.
    accounts: HashMap<String, AccountGates>,
}

impl Gates {
    /// The gates of these accounts.
    pub fn new(accounts: &BTreeMap<String, AccountConfig>) -> Gates {
        Gates {
            accounts: accounts
                .iter()
                .map(|(name, a)| {
                    (
                        name.clone(),
                        AccountGates {
                            commercial: a.commercial,
                            credits: a.credits,
                        },
                    )
                })
                .collect(),
        }
    }

    fn of(&self, account: &str) -> AccountGates {
        self.accounts.get(account).copied().unwrap_or_default()
    }

    /// Sorts out the jobs that must not be sent now: commercial SMS in quiet
    /// hours wait for the next allowed minute (not counted as a try), SMS to
    /// a number on the opt-out list when claimed fail with code 11. Returns
    /// the jobs to send and the outcomes of the others.
    pub fn screen(&self, jobs: Vec<Job>, at: jiff::Timestamp) -> (Vec<Job>, Vec<JobOutcome>) {
        let mut outcomes = Vec::new();
        let mut keep = Vec::with_capacity(jobs.len());
        let quiet = crate::calendar::is_quiet(at);
        for job in jobs {
            if quiet && self.of(&job.account).commercial {
                let next = crate::calendar::next_allowed(at);
                outcomes.push(JobOutcome::Retry {
                    job_id: job.id,
                    at: next.as_millisecond(),
                    provider_index: job.provider_index,
                    detail: format!("commercial quiet hours: deferred to {next}"),
                    kind: RetryKind::Held,
                });
            } else {
                keep.push(job);
            }
        }
        let mut send = Vec::with_capacity(keep.len());
        for job in keep {
            if job.opted_out {
                outcomes.push(JobOutcome::Failed {
                    job_id: job.id,
                    code: Code::BLACKLISTED,
                    detail: "the number is on the opt-out list".into(),
                    provider: None,
                });
            } else {
                send.push(job);
            }
        }
        (send, outcomes)
    }

    /// Debits the credits of the SMS about to be sent, for accounts that
    /// keep a balance; returns for each job `Ok(segments debited)` or the
    /// error refusing it (code 12 when the balance does not cover it; a
    /// transient error when the store cannot be written). The store gives
    /// a debit back with any outcome but "sent" (`record_outcomes`).
    pub async fn reserve(&self, store: &dyn Store, jobs: &[&Job]) -> Vec<Result<u32, SendError>> {
        let mut results: Vec<Result<u32, SendError>> = vec![Ok(0); jobs.len()];
        let mut by_account: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
        for (i, job) in jobs.iter().enumerate() {
            if self.of(&job.account).credits {
                by_account.entry(job.account.as_str()).or_default().push(i);
            }
        }
        for (account, positions) in by_account {
            let segments: Vec<u32> = positions
                .iter()
                .map(|&i| gsm::segments(&jobs[i].text).count)
                .collect();
            let wanted: Vec<(i64, u32)> = positions
                .iter()
                .zip(&segments)
                .map(|(&i, &n)| (jobs[i].id, n))
                .collect();
            match store.reserve_credits(account, &wanted).await {
                Ok(debited) => {
                    for ((&i, &n), ok) in positions.iter().zip(&segments).zip(debited) {
                        results[i] = if ok {
                            Ok(n)
                        } else {
                            Err(SendError::permanent(
                                Code::NO_CREDIT,
                                format!(
                                    "account {account}: credit balance too low for {n} segment(s)"
                                ),
                            ))
                        };
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, account, "cannot debit credits; SMS wait");
                    for &i in &positions {
                        results[i] = Err(SendError::transient(format!("credits unavailable: {e}")));
                    }
                }
            }
        }
        results
    }
}
