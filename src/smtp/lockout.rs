//! Client addresses locked out after too many failed AUTH attempts: they get
//! `421 4.7.0` at connect for `smtp.auth_lockout_secs`, so that passwords
//! cannot be guessed at the speed of new connections. Failures are counted
//! per address across sessions: two tries per connection and a reconnect
//! lock out like three in one session.

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
    /// Failures not yet locked out, by address key: how many, and when the
    /// first of them was (they count for `duration` from it).
    failures: Mutex<HashMap<IpAddr, (u8, Instant)>>,
}

/// Failed AUTH attempts from one address within `auth_lockout_secs` that
/// lock it out.
pub(super) const MAX_FAILURES: u8 = 3;

impl Lockout {
    pub(super) fn new(duration: Duration, capacity: usize) -> Self {
        Self {
            duration,
            capacity,
            until: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Counts a failed AUTH attempt from `ip` at `now`: the
    /// [`MAX_FAILURES`]th within the lockout duration locks the address out
    /// (returns `true`). Failures older than the duration are forgotten; the
    /// table is bounded like the locks.
    pub(super) fn fail(&self, ip: IpAddr, now: Instant) -> bool {
        if self.duration.is_zero() || self.capacity == 0 {
            return false;
        }
        let key = address_key(ip);
        let count = {
            let mut failures = self.failures.lock().unwrap_or_else(PoisonError::into_inner);
            let fresh = |first: &Instant| now.saturating_duration_since(*first) < self.duration;
            if failures.len() >= self.capacity && !failures.contains_key(&key) {
                failures.retain(|_, (_, first)| fresh(first));
                if failures.len() >= self.capacity {
                    let oldest = failures
                        .iter()
                        .min_by_key(|(_, (_, f))| *f)
                        .map(|(k, _)| *k);
                    if let Some(oldest) = oldest {
                        failures.remove(&oldest);
                    }
                }
            }
            let entry = failures.entry(key).or_insert((0, now));
            if !fresh(&entry.1) {
                *entry = (0, now);
            }
            entry.0 = entry.0.saturating_add(1);
            let count = entry.0;
            if count >= MAX_FAILURES {
                failures.remove(&key);
            }
            count
        };
        if count >= MAX_FAILURES {
            self.lock_out(ip, now);
            return true;
        }
        false
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

    /// How many addresses have failures not yet locked out.
    #[cfg(test)]
    pub(super) fn failures_len(&self) -> usize {
        self.failures
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
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
