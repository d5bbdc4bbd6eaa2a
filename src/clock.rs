//! The time usage is metered and billed by: the system clock, or — for tests and for
//! rehearsing a month's end — one that stands still at a chosen instant until it is
//! moved (`TENANTRY_CLOCK`, refused in production).
//!
//! Everything that decides which hour and which billing period usage belongs to, and
//! whether a period has ended and may be closed, asks a [`Clock`]; nothing else does.
//! Clones share the instant, so a test that holds one moves the server's.

use std::sync::{Arc, Mutex, PoisonError};

use time::OffsetDateTime;

#[derive(Debug, Clone, Default)]
pub struct Clock(Option<Arc<Mutex<OffsetDateTime>>>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Self(None)
    }

    /// A clock standing at `at` until [`Clock::set`] moves it.
    pub fn manual(at: OffsetDateTime) -> Self {
        Self(Some(Arc::new(Mutex::new(at))))
    }

    pub fn now(&self) -> OffsetDateTime {
        match &self.0 {
            None => OffsetDateTime::now_utc(),
            Some(at) => *at.lock().unwrap_or_else(PoisonError::into_inner),
        }
    }

    /// Moves a manual clock (and every clone of it) to `at`; the system clock cannot be set.
    pub fn set(&self, at: OffsetDateTime) {
        if let Some(instant) = &self.0 {
            *instant.lock().unwrap_or_else(PoisonError::into_inner) = at;
        }
    }

    pub fn is_manual(&self) -> bool {
        self.0.is_some()
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn a_manual_clock_stands_still_until_moved_and_its_clones_move_with_it() {
        let clock = Clock::manual(datetime!(2026-11-30 23:59 UTC));
        let clone = clock.clone();
        assert_eq!(clone.now(), datetime!(2026-11-30 23:59 UTC));
        clock.set(datetime!(2026-12-01 00:01 UTC));
        assert_eq!(clone.now(), datetime!(2026-12-01 00:01 UTC));
    }

    #[test]
    fn the_system_clock_cannot_be_set() {
        let clock = Clock::system();
        clock.set(datetime!(2000-01-01 00:00 UTC));
        assert!(clock.now().year() >= 2025);
        assert!(!clock.is_manual());
    }
}
