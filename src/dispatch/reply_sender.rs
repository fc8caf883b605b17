//! Sends the etatAck / etatNot emails queued in the store, retrying
//! transient failures with backoff; a reply is never dropped: a permanent
//! failure stays in the store with its error.

use super::{backoff, insist};
use crate::replies::{Etat, Mailer, RepliesConfig, ReplyBody};
use crate::shutdown::Shutdown;
use crate::store::{PendingReply, ReplyContent, ReplyOutcome, Store, now_millis};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;
use tokio::task::JoinSet;

/// Replies claimed at once (and sent concurrently).
const BATCH: usize = 32;
/// How often due retries are looked for when nothing wakes the sender.
const POLL: Duration = Duration::from_secs(1);

/// The reply email sender.
pub struct ReplySender {
    /// Where replies come from.
    store: Arc<dyn Store>,
    /// How they are sent.
    mailer: Arc<Mailer>,
    /// Rung when replies are queued.
    wake: Arc<Notify>,
    /// First retry delay, in milliseconds (`replies.retry_initial_ms`).
    retry_initial_ms: u64,
}

impl ReplySender {
    /// A sender over this store and mailer.
    pub fn new(
        config: &RepliesConfig,
        store: Arc<dyn Store>,
        mailer: Arc<Mailer>,
        wake: Arc<Notify>,
    ) -> ReplySender {
        ReplySender {
            store,
            mailer,
            wake,
            retry_initial_ms: config.retry_initial_ms.max(1),
        }
    }

    /// Sends replies until shutdown, after requeueing those a previous run
    /// left half-sent.
    pub async fn run(self, mut shutdown: Shutdown) {
        insist("interrupted replies", &shutdown, || async {
            self.store.requeue_interrupted_replies().await.map(|_| ())
        })
        .await;
        while !shutdown.is_fired() {
            let replies = match self.store.claim_replies(now_millis(), BATCH).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "cannot claim replies");
                    Vec::new()
                }
            };
            if replies.is_empty() {
                tokio::select! {
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(POLL) => {}
                    _ = shutdown.wait() => {}
                }
                continue;
            }
            let mut sends = JoinSet::new();
            for reply in replies {
                let mailer = self.mailer.clone();
                let initial = self.retry_initial_ms;
                sends.spawn(async move {
                    let id = reply.id;
                    (id, send_one(&mailer, reply, initial).await)
                });
            }
            let outcomes: Vec<_> = sends.join_all().await;
            insist("reply outcomes", &shutdown, || {
                self.store.record_replies(outcomes.clone())
            })
            .await;
        }
    }
}

/// Converts stored content into the reply renderer's terms (by value: an
/// etatNot may have 100 000 lines, not worth a copy).
pub fn body(content: ReplyContent) -> ReplyBody {
    match content {
        ReplyContent::Ack { email_id, code } => ReplyBody::Ack { email_id, code },
        ReplyContent::Not { email_id, etats } => ReplyBody::Not {
            email_id,
            etats: etats
                .into_iter()
                .map(|(code, tel)| Etat { code, tel })
                .collect(),
        },
    }
}

/// Sends one reply. A transient failure is retried for as long as it takes
/// (backoff capped at one hour): a reply is never dropped. A permanent one
/// stays in the store as failed, with its error.
async fn send_one(mailer: &Mailer, reply: PendingReply, retry_initial_ms: u64) -> ReplyOutcome {
    match mailer
        .send(&reply.key, &reply.to, &body(reply.content))
        .await
    {
        Ok(()) => ReplyOutcome::Sent,
        Err(e) if e.is_transient() => {
            tracing::warn!(reply = reply.id, to = %reply.to, error = %e, "reply failed, will retry");
            ReplyOutcome::Retry {
                at: now_millis() + backoff(retry_initial_ms, 3_600_000, reply.attempts),
                error: e.to_string(),
            }
        }
        Err(e) => {
            tracing::error!(reply = reply.id, to = %reply.to, error = %e, "reply failed for good");
            ReplyOutcome::Failed {
                error: e.to_string(),
            }
        }
    }
}
