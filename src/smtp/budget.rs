//! The byte budget shared by all sessions (`smtp.max_buffered_bytes`, one
//! permit per byte): message buffers while DATA is received, and what the
//! handling of a finished message may need (issue 8).
//!
//! Deadlock freedom: if finished messages held the whole budget in their
//! buffers while each waited for its handling share, nobody would move. So
//! buffers may only fill the budget up to a headroom of one maximal handling
//! share (a second semaphore, `buffers`, caps them), while handling shares
//! are taken from the whole budget, first come first served (tokio's
//! semaphore is fair), with a deadline. Handling always ends and gives its
//! share back, and buffers can never take the headroom: the waiter at the
//! head of the queue always gets its share in the end.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Bytes of memory the handling of one message byte may take on top of its
/// buffer: mail-parser's decoded parts, the body text, the `<envoi>` values
/// and the request before its recipients are expanded (measured with
/// `tests/it/memory_bomb.rs` and the release binary; see the README).
pub const HANDLING_FACTOR: usize = 3;

/// The headroom buffers leave, in maximal messages: one maximal handling
/// share, plus one message's worth for what its handler grows it by.
const HEADROOM_FACTOR: usize = HANDLING_FACTOR + 1;

/// How long a finished message waits for its handling share before the
/// client is told to try later (`451 4.3.1`).
pub(super) const SHARE_WAIT: Duration = Duration::from_secs(120);

/// The shared budget.
pub(super) struct Budget {
    /// Every byte of the budget: buffers and handling shares.
    total: Arc<Semaphore>,
    /// What buffers may hold: the budget less the headroom kept for handling.
    buffers: Arc<Semaphore>,
    /// The largest handling share: the headroom buffers cannot take, but
    /// no more than [`HANDLING_FACTOR`] maximal messages.
    max_share: usize,
    /// The whole budget in bytes: the most one message's handling may
    /// ever hold (grown shares never wait, so they cannot deadlock).
    size: usize,
}

impl Budget {
    /// A budget of `total` bytes for messages of at most `max_message`
    /// bytes. The headroom is [`HEADROOM_FACTOR`] maximal messages, but
    /// buffers always keep room for one maximal message: with a budget too
    /// small for both, handling shares are cut down to what is left.
    pub(super) fn new(total: usize, max_message: usize) -> Budget {
        let total = total.min(Semaphore::MAX_PERMITS).min(u32::MAX as usize);
        let buffers = total
            .saturating_sub(HEADROOM_FACTOR.saturating_mul(max_message))
            .max(max_message.min(total));
        Budget {
            total: Arc::new(Semaphore::new(total)),
            buffers: Arc::new(Semaphore::new(buffers)),
            max_share: (total - buffers).min(HANDLING_FACTOR.saturating_mul(max_message)),
            size: total,
        }
    }

    /// Bytes of the whole budget free right now.
    #[cfg(test)]
    pub(super) fn available_permits(&self) -> usize {
        self.total.available_permits()
    }

    /// Bytes a message buffer could still take right now.
    pub(super) fn available_for_buffers(&self) -> usize {
        self.buffers
            .available_permits()
            .min(self.total.available_permits())
    }

    /// Takes `bytes` for a message buffer, without waiting; `None` if the
    /// buffers' part of the budget does not have them now.
    pub(super) fn try_buffer(&self, bytes: u32) -> Option<BufferPermit> {
        let buffers = self.buffers.clone().try_acquire_many_owned(bytes).ok()?;
        let total = self.total.clone().try_acquire_many_owned(bytes).ok()?;
        Some(BufferPermit { buffers, total })
    }

    /// The handling share of a message of `size` bytes.
    pub(super) fn share_size(&self, size: usize) -> usize {
        HANDLING_FACTOR.saturating_mul(size).min(self.max_share)
    }

    /// Waits (first come, first served, at most [`SHARE_WAIT`]) for the
    /// handling share of a message of `size` bytes; `None` if it did not
    /// come in time.
    pub(super) async fn share(&self, size: usize) -> Option<Share> {
        let bytes = u32::try_from(self.share_size(size)).ok()?;
        let acquire = self.total.clone().acquire_many_owned(bytes);
        let permit = tokio::time::timeout(SHARE_WAIT, acquire).await.ok()?.ok()?;
        Some(Share {
            permit: Some(permit),
            total: Some(self.total.clone()),
            max: self.size,
        })
    }
}

/// The budget a message buffer holds (in both semaphores); given back when
/// dropped.
pub(super) struct BufferPermit {
    /// Its part of what buffers may hold.
    buffers: OwnedSemaphorePermit,
    /// Its part of the whole budget.
    total: OwnedSemaphorePermit,
}

impl BufferPermit {
    /// Bytes held.
    pub(super) fn num_permits(&self) -> usize {
        self.total.num_permits()
    }

    /// Adds `other`'s bytes to this one.
    pub(super) fn merge(&mut self, other: BufferPermit) {
        self.buffers.merge(other.buffers);
        self.total.merge(other.total);
    }
}

/// The part of the budget the handling of one message holds, taken at the
/// end of DATA; the handler may take more as its request grows
/// ([`Share::try_grow`]). Given back when dropped.
pub struct Share {
    /// The bytes held; `None` for an unbounded share.
    permit: Option<OwnedSemaphorePermit>,
    /// Where more is taken from; `None` for an unbounded share.
    total: Option<Arc<Semaphore>>,
    /// The most one message's handling may hold: the whole budget.
    max: usize,
}

/// Why a share could not grow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GrowError {
    /// The budget does not have the bytes now (a transient refusal).
    #[error("the buffer budget is exhausted, try again later")]
    Busy,
    /// One message may never hold that much (a permanent refusal).
    #[error("more than the {limit} bytes one message may take to handle")]
    OverLimit {
        /// The most one message's handling may hold.
        limit: usize,
    },
}

impl Share {
    /// A share that always grows: for messages not received over SMTP
    /// (`mail2sms deliver` handles one message per process).
    pub fn unbounded() -> Share {
        Share {
            permit: None,
            total: None,
            max: usize::MAX,
        }
    }

    /// Bytes held.
    pub fn held(&self) -> usize {
        self.permit
            .as_ref()
            .map_or(0, OwnedSemaphorePermit::num_permits)
    }

    /// Makes the share `bytes` larger, without waiting.
    pub fn try_grow(&mut self, bytes: usize) -> Result<(), GrowError> {
        let Some(total) = &self.total else {
            return Ok(());
        };
        let wanted = self.held().saturating_add(bytes);
        if wanted > self.max {
            return Err(GrowError::OverLimit { limit: self.max });
        }
        let bytes = u32::try_from(bytes).map_err(|_| GrowError::OverLimit { limit: self.max })?;
        let more = total
            .clone()
            .try_acquire_many_owned(bytes)
            .map_err(|_| GrowError::Busy)?;
        match &mut self.permit {
            Some(permit) => permit.merge(more),
            None => self.permit = Some(more),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_leave_the_headroom_of_one_maximal_share() {
        let budget = Budget::new(1000, 100);
        assert_eq!(budget.max_share, 100 * HANDLING_FACTOR);
        let buffers = budget.try_buffer(600).expect("buffers fit");
        assert!(
            budget.try_buffer(1).is_none(),
            "the headroom is for handling"
        );
        assert_eq!(budget.available_permits(), 400);
        drop(buffers);
        assert_eq!(budget.available_permits(), 1000);
        // A budget too small for a headroom still takes one maximal message.
        let small = Budget::new(150, 100);
        assert_eq!((small.max_share, small.available_for_buffers()), (50, 100));
    }

    /// Issue 8: more maximal messages than the budget can handle together.
    /// Buffers take all they may, then every finished message waits for
    /// its handling share while holding its buffer: since buffers cannot
    /// take the headroom, each gets its share in turn, none reaches the
    /// deadline. (Without the headroom they would all wait for it.)
    #[tokio::test]
    async fn finished_messages_all_get_their_share_in_turn() {
        let budget = Arc::new(Budget::new(1000, 100));
        let buffers: Vec<BufferPermit> = std::iter::from_fn(|| budget.try_buffer(100)).collect();
        assert_eq!(buffers.len(), 6);
        let handled: Vec<_> = buffers
            .into_iter()
            .map(|buffer| {
                let budget = budget.clone();
                tokio::spawn(async move {
                    let share = budget.share(100).await;
                    tokio::task::yield_now().await;
                    drop(buffer);
                    share.map(|s| s.held())
                })
            })
            .collect();
        for handling in handled {
            assert_eq!(handling.await.unwrap(), Some(100 * HANDLING_FACTOR));
        }
        assert_eq!(budget.available_permits(), 1000);
    }

    /// Issue 8: a share cannot grow past what one message may hold, nor
    /// take what the budget does not have.
    #[tokio::test]
    async fn shares_grow_within_the_budget() {
        let budget = Budget::new(1000, 100);
        let mut share = budget.share(10).await.unwrap();
        assert_eq!(share.held(), 10 * HANDLING_FACTOR);
        assert_eq!(share.try_grow(100), Ok(()));
        assert_eq!(
            share.try_grow(1000),
            Err(GrowError::OverLimit { limit: 1000 })
        );
        let _buffers = budget.try_buffer(600).unwrap();
        let other = budget.share(80).await.unwrap();
        assert_eq!(budget.available_permits(), 30);
        assert_eq!(share.try_grow(100), Err(GrowError::Busy));
        drop((share, other));
        assert_eq!(budget.available_permits(), 400);
        assert_eq!(Share::unbounded().try_grow(usize::MAX), Ok(()));
    }
}
