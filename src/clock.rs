//! The time the rules see: the system clock, or a clock a test sets, so
//! that quiet hours and daily limits can be tested at any hour.

use jiff::Timestamp;
use std::sync::{Arc, Mutex};

/// A source of the current time. The default is the system clock.
#[derive(Clone, Default)]
pub struct Clock {
    /// `None`: the system clock; else a time set by hand.
    manual: Option<Arc<Mutex<Timestamp>>>,
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.manual {
            None => f.write_str("system clock"),
            Some(t) => write!(f, "manual clock at {}", self.now_of(t)),
        }
    }
}

impl Clock {
    /// A clock that shows `at` until [`Clock::set`] moves it.
    pub fn manual(at: Timestamp) -> Clock {
        Clock {
            manual: Some(Arc::new(Mutex::new(at))),
        }
    }

    fn now_of(&self, t: &Mutex<Timestamp>) -> Timestamp {
        *t.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current time.
    pub fn now(&self) -> Timestamp {
        match &self.manual {
            None => Timestamp::now(),
            Some(t) => self.now_of(t),
        }
    }

    /// Moves a manual clock (no effect on the system clock).
    pub fn set(&self, at: Timestamp) {
        if let Some(t) = &self.manual {
            *t.lock().unwrap_or_else(|e| e.into_inner()) = at;
        }
    }
}
