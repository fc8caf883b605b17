//! Client addresses locked out after too many failed AUTH attempts: they get
//! `421 4.7.0` at connect for `smtp.auth_lockout_secs`, so that passwords
//! cannot be guessed at the speed of new connections.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use super::address_key;

/// Most addresses the table holds: an attacker with many addresses cannot
/// make it grow without bound. Beyond it, the lock that ends first is
/// dropped for the new one.
pub(super) const MAX_LOCKED: usize = 10_000;

/// The locked-out addresses and when each lock ends.
pub(super) struct Lockout {
    /// How long a lock lasts (`smtp.auth_lockout_secs`).
    duration: Duration,
    /// Most entries kept (see [`MAX_LOCKED`]).
    capacity: usize,
    /// The end of each lock, by address key (an IPv6 client by its /64).
    until: Mutex<HashMap<IpAddr, Instant>>,
}

impl Lockout {
    pub(super) fn new(duration: Duration, capacity: usize) -> Self {
        Self {
            duration,
            capacity,
            until: Mutex::new(HashMap::new()),
        }
    }

    /// Locks `ip` out from `now` on.
    pub(super) fn lock_out(&self, ip: IpAddr, now: Instant) {
        if self.duration.is_zero() || self.capacity == 0 {
            return;
        }
        let Some(end) = now.checked_add(self.duration) else {
            return;
        };
        let key = address_key(ip);
        let mut until = self.table();
        if until.len() >= self.capacity && !until.contains_key(&key) {
            until.retain(|_, end| *end > now);
            if until.len() >= self.capacity {
                let first = until.iter().min_by_key(|(_, end)| **end).map(|(k, _)| *k);
                if let Some(first) = first {
                    until.remove(&first);
                }
            }
        }
        until.insert(key, end);
    }

    /// Whether `ip` is locked out at `now`; forgets its lock once over.
    pub(super) fn is_locked(&self, ip: IpAddr, now: Instant) -> bool {
        let key = address_key(ip);
        let mut until = self.table();
        match until.get(&key) {
            Some(end) if *end > now => true,
            Some(_) => {
                until.remove(&key);
                false
            }
            None => false,
        }
    }

    /// How many addresses the table holds.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.table().len()
    }

    /// The table (never left inconsistent: nothing in its critical sections
    /// panics, so a poisoned lock is taken as is).
    fn table(&self) -> MutexGuard<'_, HashMap<IpAddr, Instant>> {
        self.until.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
