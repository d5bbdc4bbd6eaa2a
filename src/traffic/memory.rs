//! Rate limits counted in this process's memory: `governor`'s GCRA per key, and the sliding
//! window. At most [`CAPACITY`] keys are kept; a key unused for [`IDLE`] is forgotten (its
//! limit is back to full long before then).
//!
//! Unlike the Redis store, which decides every limit of a request before it counts any,
//! this store counts limit by limit: a request the tenant limit refuses has still used one
//! of its credential's requests. The credential's limit is the smaller one, so that rarely
//! matters.

use std::{
    num::NonZeroU32,
    sync::{Arc, LazyLock, Mutex, PoisonError},
    time::{Duration, Instant},
};

use governor::{
    Quota, RateLimiter,
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
            Counter::Gcra(bucket) => match bucket.check() {
                Ok(state) => {
                    let remaining = state.remaining_burst_capacity();
                    Decision {
                        scope: limit.scope,
                        rate,
                        allowed: true,
                        remaining,
                        reset: rate.interval() * (rate.burst - remaining.min(rate.burst)),
                        retry_after: Duration::ZERO,
                    }
                }
                Err(not_until) => {
                    let wait = not_until.wait_time_from(self.clock.now());
                    Decision {
                        scope: limit.scope,
                        rate,
                        allowed: false,
                        remaining: 0,
                        reset: rate.window(),
                        retry_after: wait,
                    }
                }
            },
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
    /// Counts one request at `now` if the sliding window has room for it. The same
    /// arithmetic as the Redis script's (`redis_store::SCRIPT`).
    pub fn take(&mut self, limit: &Limit, now: Duration) -> Decision {
        let rate = limit.rate;
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
        if estimate + 1.0 <= quota {
            *self = Window {
                index,
                current: current + 1,
                previous,
            };
            Decision {
                scope: limit.scope,
                rate,
                allowed: true,
                remaining: (quota - estimate - 1.0).floor() as u32,
                reset: Duration::from_micros(window - elapsed),
                retry_after: Duration::ZERO,
            }
        } else {
            let room = quota - 1.0 - f64::from(current);
            // Rounded up: waiting a microsecond too little would be refused again.
            let wait = if room >= 0.0 && previous > 0 {
                // The previous window's weight falls until the estimate leaves room.
                let needed = ((1.0 - room / f64::from(previous)) * window as f64).ceil() as u64;
                needed - elapsed.min(needed)
            } else {
                // Not until the next window, where this window's count is the previous one.
                let needed = 1.0 - (quota - 1.0) / f64::from(current.max(1));
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
        }
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
}
