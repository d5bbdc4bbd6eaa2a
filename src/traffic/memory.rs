//! Rate limits counted in this process's memory: `governor`'s GCRA per key, and the sliding
//! window. At most [`CAPACITY`] keys are kept; a key unused for [`IDLE`] is forgotten (its
//! limit is back to full long before then).
//!
//! Unlike the Redis store, which decides every limit of a check before it charges any,
//! this store charges limit by limit: a check the tenant limit refuses has still cost its
//! credential's limit. The credential's limit is the smaller one, so that rarely matters.
//! A cost above a limit's burst is refused by that limit without being charged to it
//! (governor's `InsufficientCapacity`, and [`Window::take`]'s own check), with the whole
//! window as its wait, as in Redis.

use std::{
    num::NonZeroU32,
    sync::{Arc, LazyLock, Mutex, PoisonError},
    time::{Duration, Instant},
};

use governor::{
    InsufficientCapacity, Quota, RateLimiter,
    clock::{Clock, DefaultClock},
    middleware::StateInformationMiddleware,
    state::{InMemoryState, NotKeyed},
};

use super::{Algorithm, Decision, Limit, Rate, RateStore, StoreFuture};

/// The most keys kept.
pub const CAPACITY: u64 = 100_000;
/// How long an unused key is kept.
pub const IDLE: Duration = Duration::from_secs(10 * 60);

type Bucket = RateLimiter<NotKeyed, InMemoryState, DefaultClock, StateInformationMiddleware>;

enum Counter {
    Gcra(Bucket),
    Window(Mutex<Window>),
}

struct Entry {
    rate: Rate,
    counter: Counter,
}

pub struct MemoryStore {
    entries: moka::sync::Cache<(Algorithm, String), Arc<Entry>>,
    clock: DefaultClock,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self {
            entries: moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .time_to_idle(IDLE)
                .build(),
            clock: DefaultClock::default(),
        }
    }

    fn entry(&self, limit: &Limit) -> Arc<Entry> {
        let key = (limit.algorithm, limit.store_key());
        match self.entries.get(&key) {
            // A plan change gives the key a fresh counter at the new rate.
            Some(entry) if entry.rate == limit.rate => entry,
            _ => {
                let entry = Arc::new(Entry {
                    rate: limit.rate,
                    counter: match limit.algorithm {
                        Algorithm::Gcra => Counter::Gcra(
                            RateLimiter::direct(quota(limit.rate))
                                .with_middleware::<StateInformationMiddleware>(),
                        ),
                        Algorithm::SlidingWindow => Counter::Window(Mutex::new(Window::default())),
                    },
                });
                self.entries.insert(key, Arc::clone(&entry));
                entry
            }
        }
    }

    fn decide(&self, limit: &Limit) -> Decision {
        let entry = self.entry(limit);
        let rate = limit.rate;
        match &entry.counter {
            Counter::Gcra(bucket) => {
                let wait = match bucket.check_n(limit.units()) {
                    Ok(Ok(state)) => {
                        let remaining = state.remaining_burst_capacity();
                        return Decision {
                            scope: limit.scope,
                            rate,
                            allowed: true,
                            remaining,
                            reset: rate.interval() * (rate.burst - remaining.min(rate.burst)),
                            retry_after: Duration::ZERO,
                        };
                    }
                    Ok(Err(not_until)) => not_until.wait_time_from(self.clock.now()),
                    // More than the whole burst: no wait lets it through.
                    Err(InsufficientCapacity(_)) => rate.window(),
                };
                Decision {
                    scope: limit.scope,
                    rate,
                    allowed: false,
                    remaining: 0,
                    reset: rate.window(),
                    retry_after: wait,
                }
            }
            Counter::Window(window) => {
                let mut window = window.lock().unwrap_or_else(PoisonError::into_inner);
                window.take(limit, since_start())
            }
        }
    }
}

impl RateStore for MemoryStore {
    fn check<'a>(&'a self, limits: &'a [Limit]) -> StoreFuture<'a, Option<Vec<Decision>>> {
        let mut decisions = Vec::with_capacity(limits.len());
        for limit in limits {
            let decision = self.decide(limit);
            let refused = !decision.allowed;
            decisions.push(decision);
            if refused {
                break;
            }
        }
        Box::pin(std::future::ready(Some(decisions)))
    }
}

fn quota(rate: Rate) -> Quota {
    let nonzero = |n: u32| NonZeroU32::new(n.max(1)).expect("at least 1");
    Quota::with_period(rate.interval())
        .unwrap_or_else(|| Quota::per_second(nonzero(rate.per_second)))
        .allow_burst(nonzero(rate.burst))
}

/// Time since this process first counted anything: the sliding windows' clock.
fn since_start() -> Duration {
    static START: LazyLock<Instant> = LazyLock::new(Instant::now);
    START.elapsed()
}

/// A sliding window's counts: the current fixed window's and the previous one's.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    index: u64,
    current: u32,
    previous: u32,
}

impl Window {
    /// Counts the check's cost ([`Limit::units`]) at `now` if the sliding window has room
    /// for all of it. The same arithmetic as the Redis script's (`redis_store::SCRIPT`).
    pub fn take(&mut self, limit: &Limit, now: Duration) -> Decision {
        let rate = limit.rate;
        let units = limit.units().get();
        let cost = f64::from(units);
        let window = rate.window().as_micros().max(1) as u64;
        let now = now.as_micros() as u64;
        let index = now / window;
        let elapsed = now - index * window;
        let (current, previous) = match index.checked_sub(self.index) {
            Some(0) => (self.current, self.previous),
            Some(1) => (0, self.current),
            _ => (0, 0),
        };
        let weight = (window - elapsed) as f64 / window as f64;
        let estimate = f64::from(previous) * weight + f64::from(current);
        let quota = f64::from(rate.burst);
        if estimate + cost <= quota {
            *self = Window {
                index,
                // No more than the burst: the estimate includes `current`.
                current: current + units,
                previous,
            };
            Decision {
                scope: limit.scope,
                rate,
                allowed: true,
                remaining: (quota - estimate - cost).floor() as u32,
                reset: Duration::from_micros(window - elapsed),
                retry_after: Duration::ZERO,
            }
        } else {
            let room = quota - cost - f64::from(current);
            // Rounded up: waiting a microsecond too little would be refused again.
            let wait = if limit.exceeds_burst() {
                // No wait lets it through: the whole window, as the script answers.
                window
            } else if room >= 0.0 && previous > 0 {
                // The previous window's weight falls until the estimate leaves room.
                let needed = ((1.0 - room / f64::from(previous)) * window as f64).ceil() as u64;
                needed - elapsed.min(needed)
            } else {
                // Not until the next window, where this window's count is the previous one.
                let needed = 1.0 - (quota - cost) / f64::from(current.max(1));
                (window - elapsed) + (needed.max(0.0) * window as f64).ceil() as u64
            };
            Decision {
                scope: limit.scope,
                rate,
                allowed: false,
                remaining: 0,
                reset: Duration::from_micros(window - elapsed),
                retry_after: Duration::from_micros(wait.max(1)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::traffic::Scope;

    fn limit(algorithm: Algorithm, per_second: u32, burst: u32) -> Limit {
        Limit {
            scope: Scope::Credential,
            key: uuid::Uuid::now_v7().to_string(),
            rate: Rate { per_second, burst },
            algorithm,
            cost: 1,
        }
    }

    fn costing(cost: u32, limit: Limit) -> Limit {
        Limit { cost, ..limit }
    }

    #[tokio::test]
    async fn a_bucket_allows_its_burst_at_once_then_refuses_with_a_wait_of_one_interval() {
        let store = MemoryStore::new();
        let limit = limit(Algorithm::Gcra, 10, 5);
        let limits = [limit];
        for expected_remaining in (0..5).rev() {
            let decision = store.check(&limits).await.unwrap().remove(0);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, expected_remaining);
        }
        let refused = store.check(&limits).await.unwrap().remove(0);
        assert!(!refused.allowed);
        assert!(refused.retry_after > Duration::ZERO);
        assert!(refused.retry_after <= Duration::from_millis(100));
    }

    #[test]
    fn a_sliding_window_allows_its_quota_per_window_and_weighs_the_previous_one() {
        let limit = limit(Algorithm::SlidingWindow, 10, 10); // 10 per second
        let mut window = Window::default();
        let at = |ms: u64| Duration::from_millis(ms);
        for n in 0..10 {
            assert!(window.take(&limit, at(1000 + n)).allowed, "request {n}");
        }
        let refused = window.take(&limit, at(1500));
        assert!(!refused.allowed);
        // Room comes back 0.1 s into the next window, when the full one weighs 0.9.
        assert_eq!(refused.retry_after, at(600));
        // Halfway through the next window the full one weighs half: 5 of 10 are left.
        let mut allowed = 0;
        while window.take(&limit, at(2500)).allowed {
            allowed += 1;
        }
        assert_eq!(allowed, 5);
        // Two windows later the counts are forgotten.
        let mut allowed = 0;
        while window.take(&limit, at(4000)).allowed {
            allowed += 1;
        }
        assert_eq!(allowed, 10);
    }

    #[tokio::test]
    async fn a_bucket_charges_a_weighted_check_its_cost_and_refuses_it_until_the_units_are_back() {
        let store = MemoryStore::new();
        let limits = [costing(4, limit(Algorithm::Gcra, 10, 10))]; // a unit every 100 ms
        let start = Instant::now();
        for expected_remaining in [6, 2] {
            let decision = store.check(&limits).await.unwrap().remove(0);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, expected_remaining);
        }
        let refused = store.check(&limits).await.unwrap().remove(0);
        let spent = start.elapsed();
        assert!(!refused.allowed);
        // 2 units are left and 4 are needed: the 2 missing come back 2 intervals after the
        // first check, so the wait is 200 ms less the time since then.
        let two_intervals = Duration::from_millis(200);
        assert!(refused.retry_after > Duration::ZERO);
        assert!(refused.retry_after <= two_intervals);
        assert!(refused.retry_after >= two_intervals.saturating_sub(spent));
    }

    #[test]
    fn a_sliding_window_charges_a_weighted_check_its_cost_with_the_same_arithmetic() {
        let limit = costing(4, limit(Algorithm::SlidingWindow, 10, 10)); // 10 per second
        let mut window = Window::default();
        let at = |ms: u64| Duration::from_millis(ms);
        assert_eq!(window.take(&limit, at(1000)).remaining, 6);
        assert_eq!(window.take(&limit, at(1001)).remaining, 2);
        let refused = window.take(&limit, at(1500));
        assert!(!refused.allowed);
        // 8 counted leave room for 4 once they weigh 6: 0.25 s into the next window.
        assert_eq!(refused.retry_after, at(750));
        let allowed = window.take(&limit, at(2250));
        assert!(allowed.allowed);
        assert_eq!(allowed.remaining, 0);
        // Now 8 × 0.75 + 4 = 10: one more unit fits once the full window weighs 5/8.
        let one = costing(1, limit);
        let refused = window.take(&one, at(2250));
        assert!(!refused.allowed);
        assert_eq!(refused.retry_after, at(125));
        assert!(window.take(&one, at(2375)).allowed);
    }

    #[tokio::test]
    async fn a_cost_above_the_burst_is_refused_with_the_whole_window_and_charges_nothing() {
        let store = MemoryStore::new();
        for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
            let whole = limit(algorithm, 10, 10);
            let too_much = costing(11, whole.clone());
            assert!(too_much.exceeds_burst() && !whole.exceeds_burst());
            let refused = store.check(&[too_much]).await.unwrap().remove(0);
            assert!(!refused.allowed, "{algorithm:?}");
            assert_eq!(refused.retry_after, Duration::from_secs(1), "{algorithm:?}");
            let all = store.check(&[costing(10, whole)]).await.unwrap().remove(0);
            assert!(all.allowed, "{algorithm:?}: the whole burst is still there");
            assert_eq!(all.remaining, 0);
        }
    }

    #[tokio::test]
    async fn a_cost_of_zero_is_charged_as_one() {
        let store = MemoryStore::new();
        for algorithm in [Algorithm::Gcra, Algorithm::SlidingWindow] {
            let free = costing(0, limit(algorithm, 10, 5));
            let decision = store.check(&[free]).await.unwrap().remove(0);
            assert!(decision.allowed);
            assert_eq!(decision.remaining, 4, "{algorithm:?}");
        }
    }
}
