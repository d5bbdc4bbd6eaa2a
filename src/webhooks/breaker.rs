//! A circuit breaker per failing endpoint, in process (`failsafe`).
//!
//! An endpoint gets a breaker at its first failed attempt, and loses it at its next
//! success (so the map holds failing endpoints only). After `failures` failed attempts in a
//! row the breaker opens: the sender leaves the endpoint out of its rounds — its deliveries
//! wait, without using up their retries — until the back-off has passed; then the breaker
//! is half-open and the endpoint's next delivery is the probe. A success closes it; a
//! failure opens it again for a longer back-off. The gauges `webhook_breaker_open` and
//! `webhook_breaker_half_open` count this server's breakers in each state.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicI64, AtomicU8, Ordering},
    },
    time::Duration,
};

use failsafe::{
    StateMachine,
    failure_policy::{self, ConsecutiveFailures},
};
use rand::Rng;
use uuid::Uuid;

/// Breaker states, as the watch keeps them.
const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

/// How many breakers are open and half-open, published as gauges.
#[derive(Debug, Default)]
struct BreakerCounts {
    open: AtomicI64,
    half_open: AtomicI64,
}

impl BreakerCounts {
    fn count(&self, state: u8) -> Option<&AtomicI64> {
        match state {
            OPEN => Some(&self.open),
            HALF_OPEN => Some(&self.half_open),
            _ => None,
        }
    }

    fn publish(&self) {
        metrics::gauge!("webhook_breaker_open").set(self.open.load(Ordering::Relaxed) as f64);
        metrics::gauge!("webhook_breaker_half_open")
            .set(self.half_open.load(Ordering::Relaxed) as f64);
    }
}

/// Follows one endpoint's breaker: keeps the counts and gauges of every state.
#[derive(Clone)]
struct BreakerWatch {
    state: Arc<AtomicU8>,
    counts: Arc<BreakerCounts>,
}

impl BreakerWatch {
    fn enter(&self, state: u8) {
        let before = self.state.swap(state, Ordering::Relaxed);
        if before == state {
            return;
        }
        if let Some(count) = self.counts.count(before) {
            count.fetch_sub(1, Ordering::Relaxed);
        }
        if let Some(count) = self.counts.count(state) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.counts.publish();
    }
}

impl failsafe::Instrument for BreakerWatch {
    fn on_call_rejected(&self) {}
    fn on_open(&self) {
        self.enter(OPEN);
    }
    fn on_half_open(&self) {
        self.enter(HALF_OPEN);
    }
    fn on_closed(&self) {
        self.enter(CLOSED);
    }
}

/// An open breaker's waits before a probe: doubling from `min` up to `max`, each drawn
/// between half of it and all of it (equal jitter), to the millisecond (`failsafe`'s own
/// back-offs count whole seconds, and jitter 1 s into nothing).
#[derive(Debug, Clone)]
pub struct BreakerBackoff {
    next: Duration,
    max: Duration,
}

impl BreakerBackoff {
    pub fn new(min: Duration, max: Duration) -> Self {
        Self { next: min, max }
    }
}

impl Iterator for BreakerBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let current = self.next.min(self.max);
        self.next = current.saturating_mul(2).min(self.max);
        let half = u64::try_from(current.as_millis() / 2).unwrap_or(u64::MAX);
        Some(Duration::from_millis(
            half + rand::rng().random_range(0..=half),
        ))
    }
}

type Breaker = StateMachine<ConsecutiveFailures<BreakerBackoff>, BreakerWatch>;

/// The breakers of one sender, by endpoint.
pub struct Breakers {
    failures: u32,
    backoff: (Duration, Duration),
    breakers: Mutex<HashMap<Uuid, (Breaker, BreakerWatch)>>,
    counts: Arc<BreakerCounts>,
}

impl Breakers {
    /// Breakers that open after `failures` in a row and back off from `backoff.0` to
    /// `backoff.1`.
    pub fn new(failures: u32, backoff: (Duration, Duration)) -> Self {
        let counts = Arc::new(BreakerCounts::default());
        counts.publish();
        Self {
            failures,
            backoff,
            breakers: Mutex::new(HashMap::new()),
            counts,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Uuid, (Breaker, BreakerWatch)>> {
        self.breakers.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Endpoints whose breaker refuses a call now (asking lets an open one whose back-off
    /// has passed become half-open, so its next delivery is the probe).
    pub fn refusing(&self) -> Vec<Uuid> {
        self.lock()
            .iter()
            .filter(|(_, (breaker, _))| !breaker.is_call_permitted())
            .map(|(endpoint, _)| *endpoint)
            .collect()
    }

    /// Records an attempt's outcome for `endpoint`.
    pub fn saw(&self, endpoint: Uuid, succeeded: bool) {
        let mut breakers = self.lock();
        if succeeded {
            if let Some((breaker, watch)) = breakers.remove(&endpoint) {
                breaker.on_success();
                // Forgotten while closed: its count must not keep it as open.
                watch.enter(CLOSED);
            }
            return;
        }
        let (min, max) = self.backoff;
        let (breaker, _) = breakers.entry(endpoint).or_insert_with(|| {
            let watch = BreakerWatch {
                state: Arc::new(AtomicU8::new(CLOSED)),
                counts: Arc::clone(&self.counts),
            };
            let breaker = failsafe::Config::new()
                .failure_policy(failure_policy::consecutive_failures(
                    self.failures,
                    BreakerBackoff::new(min, max),
                ))
                .instrument(watch.clone())
                .build();
            (breaker, watch)
        });
        breaker.on_error();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_backs_off_doubling_with_equal_jitter_up_to_its_maximum() {
        let mut backoff = BreakerBackoff::new(Duration::from_secs(1), Duration::from_secs(4));
        let waits: Vec<Duration> = backoff.by_ref().take(4).collect();
        let bounds = [(500, 1000), (1000, 2000), (2000, 4000), (2000, 4000)];
        for (wait, (low, high)) in waits.iter().zip(bounds) {
            assert!(
                *wait >= Duration::from_millis(low) && *wait <= Duration::from_millis(high),
                "{wait:?} within {low}..={high} ms"
            );
        }
    }

    #[tokio::test]
    async fn a_breaker_opens_after_failures_in_a_row_probes_after_its_back_off_and_closes() {
        let counts = Arc::new(BreakerCounts::default());
        let watch = BreakerWatch {
            state: Arc::new(AtomicU8::new(CLOSED)),
            counts: Arc::clone(&counts),
        };
        let breaker: Breaker = failsafe::Config::new()
            .failure_policy(failure_policy::consecutive_failures(
                2,
                BreakerBackoff::new(Duration::from_millis(40), Duration::from_millis(40)),
            ))
            .instrument(watch.clone())
            .build();
        breaker.on_error();
        assert!(breaker.is_call_permitted(), "one failure leaves it closed");
        breaker.on_error();
        assert!(!breaker.is_call_permitted(), "two in a row open it");
        assert_eq!(counts.open.load(Ordering::Relaxed), 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(breaker.is_call_permitted(), "after the back-off, a probe");
        assert_eq!(counts.open.load(Ordering::Relaxed), 0);
        assert_eq!(counts.half_open.load(Ordering::Relaxed), 1);
        breaker.on_success();
        assert_eq!(counts.half_open.load(Ordering::Relaxed), 0, "closed again");
        assert!(breaker.is_call_permitted());
    }

    #[tokio::test]
    async fn an_endpoint_is_left_out_while_its_breaker_is_open_and_forgotten_once_it_succeeds() {
        let breakers = Breakers::new(2, (Duration::from_millis(40), Duration::from_millis(40)));
        let (dead, alive) = (Uuid::now_v7(), Uuid::now_v7());
        breakers.saw(dead, false);
        breakers.saw(alive, true);
        assert!(
            breakers.refusing().is_empty(),
            "one failure refuses nothing"
        );
        breakers.saw(dead, false);
        assert_eq!(breakers.refusing(), [dead]);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            breakers.refusing().is_empty(),
            "half-open: the probe may go"
        );
        breakers.saw(dead, true);
        assert!(breakers.lock().is_empty(), "a success forgets the breaker");
        assert_eq!(breakers.counts.open.load(Ordering::Relaxed), 0);
        assert_eq!(breakers.counts.half_open.load(Ordering::Relaxed), 0);
    }
}
