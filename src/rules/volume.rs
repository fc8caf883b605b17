//! Per-account sending limits (`max_per_minute`, `max_per_day`): SMS
//! accepted beyond them are refused with code 29 ("overflow").
//!
//! Counted when an email is accepted, in memory: a rolling minute (60
//! one-second buckets) and the Paris calendar day. At start-up the counters
//! are seeded from the store (`Store::queued_since`), so a restart does not
//! reset a day's count.

use jiff::Timestamp;
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// One account's limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// SMS per rolling 60 seconds.
    pub per_minute: Option<u32>,
    /// SMS per Paris calendar day.
    pub per_day: Option<u32>,
}

/// What one account used.
#[derive(Debug, Default)]
struct Usage {
    /// (second, SMS) for the last 60 seconds, oldest first.
    seconds: VecDeque<(i64, u64)>,
    /// The Paris day counted, and its SMS.
    day: Option<(jiff::civil::Date, u64)>,
}

impl Usage {
    fn minute_count(&mut self, second: i64) -> u64 {
        while self.seconds.front().is_some_and(|&(s, _)| s <= second - 60) {
            self.seconds.pop_front();
        }
        self.seconds.iter().map(|&(_, n)| n).sum()
    }

    fn day_count(&mut self, day: jiff::civil::Date) -> u64 {
        match self.day {
            Some((d, n)) if d == day => n,
            _ => {
                self.day = Some((day, 0));
                0
            }
        }
    }

    fn add(&mut self, second: i64, day: jiff::civil::Date, n: u64) {
        match self.seconds.back_mut() {
            Some((s, count)) if *s == second => *count += n,
            _ => self.seconds.push_back((second, n)),
        }
        if let Some((d, count)) = &mut self.day
            && *d == day
        {
            *count += n;
        }
    }
}

/// The counters of every account with a limit.
#[derive(Debug, Default)]
pub struct Volume {
    /// Limits by account name (accounts without limits are absent).
    limits: HashMap<String, Limits>,
    /// Usage by account name.
    usage: Mutex<HashMap<String, Usage>>,
}

fn paris_day(at: Timestamp) -> jiff::civil::Date {
    at.to_zoned(crate::calendar::paris().clone()).date()
}

impl Volume {
    /// Counters for these accounts' limits.
    pub fn new(limits: impl IntoIterator<Item = (String, Limits)>) -> Volume {
        Volume {
            limits: limits
                .into_iter()
                .filter(|(_, l)| l.per_minute.is_some() || l.per_day.is_some())
                .collect(),
            usage: Mutex::default(),
        }
    }

    /// Whether any account has a limit (nothing to seed otherwise).
    pub fn is_empty(&self) -> bool {
        self.limits.is_empty()
    }

    /// The start of today in Paris, for seeding the day counters.
    pub fn day_start(now: Timestamp) -> Timestamp {
        paris_day(now)
            .to_zoned(crate::calendar::paris().clone())
            .map(|z| z.timestamp())
            .unwrap_or(now)
    }

    /// Counts SMS already accepted: `minute` in the last minute and `day`
    /// today (from the store at start-up).
    pub fn seed(&self, account: &str, minute: u64, day: u64, now: Timestamp) {
        if !self.limits.contains_key(account) {
            return;
        }
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let u = usage.entry(account.to_string()).or_default();
        let today = paris_day(now);
        u.day = Some((today, day));
        if minute > 0 {
            u.seconds.push_back((now.as_second(), minute));
        }
    }

    /// Takes up to `wanted` SMS from `account`'s allowance at `now`; returns
    /// how many it may send (the rest are refused with code 29).
    pub fn take(&self, account: &str, wanted: usize, now: Timestamp) -> usize {
        let Some(limits) = self.limits.get(account) else {
            return wanted;
        };
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let u = usage.entry(account.to_string()).or_default();
        let second = now.as_second();
        let day = paris_day(now);
        let mut granted = wanted as u64;
        if let Some(max) = limits.per_minute {
            granted = granted.min(u64::from(max).saturating_sub(u.minute_count(second)));
        }
        if let Some(max) = limits.per_day {
            granted = granted.min(u64::from(max).saturating_sub(u.day_count(day)));
        }
        if granted > 0 {
            u.add(second, day, granted);
        }
        granted as usize
    }

    /// Gives back SMS taken but not queued after all (the store failed, or
    /// the email was a duplicate).
    pub fn give_back(&self, account: &str, count: usize) {
        if count == 0 || !self.limits.contains_key(account) {
            return;
        }
        let mut usage = self.usage.lock().unwrap_or_else(|e| e.into_inner());
        let Some(u) = usage.get_mut(account) else {
            return;
        };
        let mut left = count as u64;
        for (_, n) in u.seconds.iter_mut().rev() {
            let back = left.min(*n);
            *n -= back;
            left -= back;
            if left == 0 {
                break;
            }
        }
        if let Some((_, n)) = &mut u.day {
            *n = n.saturating_sub(count as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn volume(per_minute: Option<u32>, per_day: Option<u32>) -> Volume {
        Volume::new([(
            "a".to_string(),
            Limits {
                per_minute,
                per_day,
            },
        )])
    }

    #[test]
    fn rolling_minute() {
        let v = volume(Some(10), None);
        let t0 = at("2026-06-01T10:00:00Z");
        assert_eq!(v.take("a", 6, t0), 6);
        assert_eq!(v.take("a", 6, at("2026-06-01T10:00:30Z")), 4);
        assert_eq!(v.take("a", 1, at("2026-06-01T10:00:59Z")), 0);
        // The first 6 leave the window 60 s after they came.
        assert_eq!(v.take("a", 10, at("2026-06-01T10:01:00Z")), 6);
        // Accounts without limits are never counted.
        assert_eq!(v.take("other", 1_000_000, t0), 1_000_000);
    }

    #[test]
    fn paris_calendar_day() {
        let v = volume(None, Some(100));
        // 23:30 Paris on 1 June is 21:30 UTC; midnight Paris is 22:00 UTC.
        assert_eq!(v.take("a", 80, at("2026-06-01T21:30:00Z")), 80);
        assert_eq!(v.take("a", 80, at("2026-06-01T21:59:00Z")), 20);
        assert_eq!(v.take("a", 80, at("2026-06-01T22:00:00Z")), 80);
    }

    #[test]
    fn both_limits_and_give_back() {
        let v = volume(Some(5), Some(8));
        let t = at("2026-06-01T10:00:00Z");
        assert_eq!(v.take("a", 7, t), 5);
        v.give_back("a", 2);
        assert_eq!(v.take("a", 7, t), 2);
        assert_eq!(
            v.take("a", 7, at("2026-06-01T10:05:00Z")),
            3,
            "day: 5 of 8 used"
        );
    }

    #[test]
    fn seeded_counts_survive_a_restart() {
        let v = volume(Some(10), Some(100));
        let now = at("2026-06-01T10:00:00Z");
        v.seed("a", 4, 95, now);
        assert_eq!(v.take("a", 10, now), 5);
        assert_eq!(
            Volume::day_start(now),
            at("2026-05-31T22:00:00Z"),
            "midnight Paris (CEST)"
        );
    }
}
