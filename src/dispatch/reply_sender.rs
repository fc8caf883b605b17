//! Sends the etatAck / etatNot emails queued in the store, retrying
//! transient failures with backoff; a reply is never dropped: a permanent
//! failure stays in the store with its error.

use crate::replies::{Etat, Mailer, RepliesConfig, ReplyBody};
use crate::shutdown::Shutdown;
use crate::store::{Millis, PendingReply, ReplyContent, ReplyOutcome, Store, now_millis};
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
    /// Tries before giving up (`replies.max_attempts`).
    max_attempts: u32,
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
            max_attempts: config.max_attempts.max(1),
        }
    }

    /// Sends replies until shutdown.
    pub async fn run(self, mut shutdown: Shutdown) {
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
                let (initial, max) = (self.retry_initial_ms, self.max_attempts);
                sends.spawn(async move {
                    let outcome = send_one(&mailer, &reply, initial, max).await;
                    (reply.id, outcome)
                });
            }
            while let Some(done) = sends.join_next().await {
                let Ok((id, outcome)) = done else { continue };
                let mut delay = Duration::from_millis(100);
                while let Err(e) = self.store.record_reply(id, outcome.clone()).await {
                    tracing::error!(error = %e, "cannot record a reply outcome; retrying");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(10));
                }
            }
        }
    }
}

/// Converts stored content into the reply renderer's terms.
pub fn body(content: &ReplyContent) -> ReplyBody {
    match content {
        ReplyContent::Ack { email_id, code } => ReplyBody::Ack {
            email_id: email_id.clone(),
            code: *code,
        },
        ReplyContent::Not { email_id, etats } => ReplyBody::Not {
            email_id: email_id.clone(),
            etats: etats
                .iter()
                .map(|(code, tel)| Etat {
                    code: *code,
                    tel: tel.clone(),
                })
                .collect(),
        },
    }
}

async fn send_one(
    mailer: &Mailer,
    reply: &PendingReply,
    retry_initial_ms: u64,
    max_attempts: u32,
) -> ReplyOutcome {
    match mailer
        .send(&reply.key, &reply.to, &body(&reply.content))
        .await
    {
        Ok(()) => ReplyOutcome::Sent,
        Err(e) if e.is_transient() && reply.attempts < max_attempts => {
            tracing::warn!(reply = reply.id, to = %reply.to, error = %e, "reply failed, will retry");
            ReplyOutcome::Retry {
                at: now_millis() + backoff(retry_initial_ms, reply.attempts),
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

/// `initial` doubling up to one hour, with jitter.
fn backoff(initial: u64, attempts: u32) -> Millis {
    let exp = initial
        .saturating_mul(1 << attempts.saturating_sub(1).min(20))
        .min(3_600_000);
    (exp / 2 + fastrand::u64(0..=exp / 2)) as Millis
}
