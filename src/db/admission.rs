//! Admission to the database: an adaptive limit on the tenant transactions open at once,
//! with a fair share per tenant.
//!
//! Every tenant transaction needs a permit ([`Admission::admit`]); without one the request
//! is refused at once — 503 `service_unavailable` with `Retry-After` — instead of queueing
//! for a connection until it times out. The limit adapts to how the database answers, in
//! the spirit of Netflix's concurrency-limits (a gradient limit): each transaction's time
//! in the database (from its connection on, so the wait for a connection is not counted)
//! is compared with the long-run average. While recent transactions take no longer than
//! [`TOLERANCE`] times it, the limit grows by one per limit's worth of completions
//! (additive increase); when they take longer, and longer than [`SLOW_FLOOR`] — Postgres is
//! slowing down, so more work at once would only queue — it shrinks by a tenth
//! (multiplicative decrease), at most once per [`DECREASE_PERIOD`], never below
//! [`MIN_LIMIT`] or above the configured maximum.
//!
//! Fairness ([`fair_share`]): while more than one tenant has transactions open, no tenant
//! may hold more than its share of the limit (the limit divided by the tenants active,
//! rounded up), so a tenant flooding the API is the one refused, not the others. A tenant
//! alone may hold all but a quarter of it, which keeps room for a tenant that arrives.
//!
//! The limit is the gauge `db_admission_limit`; refusals count in
//! `db_admission_refused_total{reason}` (`limit` or `fair_share`).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant},
};

use crate::{error::Error, id::TenantId};

/// The smallest the limit gets.
pub const MIN_LIMIT: usize = 2;
/// How much slower than the long-run average recent transactions may be before the limit
/// shrinks.
pub const TOLERANCE: f64 = 2.0;
/// The shortest time between two decreases (one slow spell is one decrease, not one per
/// transaction caught in it).
pub const DECREASE_PERIOD: Duration = Duration::from_millis(100);
/// Recent transactions slower than this never count as the database slowing down: below
/// it, a rising average is load being served (a ramp from idle, a busy minute), not a
/// stall worth refusing work for.
pub const SLOW_FLOOR: Duration = Duration::from_millis(20);
/// Transactions measured before the limit may shrink: the long-run average must mean
/// something first.
pub const WARM_UP_SAMPLES: u64 = 100;
/// How soon a refused request should try again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// Weight of each new sample in the short-run average (the last ten or so transactions).
const SHORT_WEIGHT: f64 = 0.1;
/// Weight of each new sample in the long-run average (the last thousand or so).
const LONG_WEIGHT: f64 = 0.001;

struct State {
    limit: f64,
    in_flight: usize,
    per_tenant: HashMap<TenantId, usize>,
    /// Transaction times, in seconds: recent and long-run averages.
    short: f64,
    long: f64,
    samples: u64,
    last_decrease: Instant,
}

pub struct Admission {
    state: Mutex<State>,
    max: usize,
}

impl Admission {
    /// A limit starting at `initial` and never above `max`.
    pub fn new(initial: usize, max: usize) -> Self {
        let max = max.max(MIN_LIMIT);
        let limit = initial.clamp(MIN_LIMIT, max) as f64;
        metrics::gauge!("db_admission_limit").set(limit);
        Self {
            state: Mutex::new(State {
                limit,
                in_flight: 0,
                per_tenant: HashMap::new(),
                short: 0.0,
                long: 0.0,
                samples: 0,
                last_decrease: Instant::now(),
            }),
            max,
        }
    }

    /// A permit for one transaction of `tenant`, or the 503 that refuses it.
    pub fn admit(self: &Arc<Self>, tenant: TenantId) -> Result<Permit, Error> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let limit = state.limit.floor() as usize;
        if state.in_flight >= limit {
            drop(state);
            return Err(refuse("limit"));
        }
        let held = state.per_tenant.get(&tenant).copied().unwrap_or(0);
        let others = state.per_tenant.len() - usize::from(held > 0);
        if held >= fair_share(limit, others) {
            drop(state);
            return Err(refuse("fair_share"));
        }
        state.in_flight += 1;
        *state.per_tenant.entry(tenant).or_insert(0) += 1;
        Ok(Permit {
            admission: Arc::clone(self),
            tenant,
            started: Instant::now(),
        })
    }

    fn release(&self, tenant: TenantId, took: Duration) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.in_flight = state.in_flight.saturating_sub(1);
        if let Some(held) = state.per_tenant.get_mut(&tenant) {
            *held -= 1;
            if *held == 0 {
                state.per_tenant.remove(&tenant);
            }
        }
        let sample = took.as_secs_f64();
        if state.long == 0.0 {
            (state.short, state.long) = (sample, sample);
        } else {
            state.short += SHORT_WEIGHT * (sample - state.short);
            state.long += LONG_WEIGHT * (sample - state.long);
        }
        state.samples += 1;
        let before = state.limit;
        let slowed = state.samples >= WARM_UP_SAMPLES
            && state.short > TOLERANCE * state.long
            && state.short > SLOW_FLOOR.as_secs_f64();
        if slowed {
            if state.last_decrease.elapsed() >= DECREASE_PERIOD {
                state.limit = (state.limit * 0.9).max(MIN_LIMIT as f64);
                state.last_decrease = Instant::now();
            }
        } else if state.in_flight + 1 >= state.limit.floor() as usize {
            // Only a limit in use grows: an idle server keeps the limit it has.
            state.limit = (state.limit + 1.0 / state.limit).min(self.max as f64);
        }
        if state.limit != before {
            metrics::gauge!("db_admission_limit").set(state.limit);
        }
    }

    /// The limit now (for tests and readiness).
    pub fn limit(&self) -> usize {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .limit
            .floor() as usize
    }
}

/// The most transactions one tenant may hold under `limit` while `others` tenants hold
/// some: an equal share (rounded up) — and when it is alone, all but a quarter, so that a
/// tenant arriving beside a flood finds room and from then on the flood gets its share.
pub fn fair_share(limit: usize, others: usize) -> usize {
    if others == 0 {
        (limit - limit / 4).max(1)
    } else {
        limit.div_ceil(others + 1)
    }
}

fn refuse(reason: &'static str) -> Error {
    metrics::counter!("db_admission_refused_total", "reason" => reason).increment(1);
    Error::unavailable("the database (at its concurrency limit)", RETRY_AFTER)
}

/// One admitted transaction; dropping it (commit, rollback, failure) lets another in.
pub struct Permit {
    admission: Arc<Admission>,
    tenant: TenantId,
    started: Instant,
}

impl Permit {
    /// The transaction has its connection: its time in the database starts now.
    pub fn connected(&mut self) {
        self.started = Instant::now();
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.admission.release(self.tenant, self.started.elapsed());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_its_limit_a_transaction_is_refused_at_once() {
        let admission = Arc::new(Admission::new(4, 10));
        let tenants: Vec<TenantId> = (0..4).map(|_| TenantId::new()).collect();
        let permits: Vec<_> = tenants
            .iter()
            .map(|t| admission.admit(*t).unwrap())
            .collect();
        let refused = admission.admit(TenantId::new()).err().unwrap();
        assert_eq!(refused.code(), "service_unavailable");
        assert_eq!(refused.retry_after(), Some(RETRY_AFTER));
        drop(permits);
        assert!(admission.admit(tenants[0]).is_ok());
    }

    #[test]
    fn a_tenant_alone_leaves_a_quarter_for_whoever_arrives() {
        let admission = Arc::new(Admission::new(8, 8));
        let (noisy, quiet) = (TenantId::new(), TenantId::new());
        let held: Vec<_> = std::iter::from_fn(|| admission.admit(noisy).ok())
            .take(100)
            .collect();
        assert_eq!(held.len(), 6);
        assert!(admission.admit(quiet).is_ok());
    }

    #[test]
    fn while_others_are_active_a_tenant_holds_at_most_its_share() {
        let admission = Arc::new(Admission::new(8, 8));
        let (noisy, quiet) = (TenantId::new(), TenantId::new());
        let _quiet = admission.admit(quiet).unwrap();
        // Two tenants active: four each.
        let noisy_permits: Vec<_> = (0..4).map(|_| admission.admit(noisy).unwrap()).collect();
        assert!(
            admission.admit(noisy).is_err(),
            "the noisy tenant is at its half"
        );
        assert!(
            admission.admit(quiet).is_ok(),
            "the quiet one still gets in"
        );
        assert_eq!(noisy_permits.len(), 4);
    }

    #[test]
    fn the_limit_shrinks_when_transactions_slow_down_and_grows_back_when_used() {
        let admission = Admission::new(20, 40);
        let tenant = TenantId::new();
        let run = |took: Duration, n: usize| {
            for _ in 0..n {
                let mut state = admission.state.lock().unwrap();
                state.in_flight += 1;
                *state.per_tenant.entry(tenant).or_insert(0) += 1;
                state.limit = state.limit.max(1.0);
                let in_flight_at_limit = state.limit.floor() as usize - 1;
                state.in_flight = state.in_flight.max(in_flight_at_limit);
                state.last_decrease = Instant::now() - DECREASE_PERIOD;
                drop(state);
                admission.release(tenant, took);
            }
        };
        run(Duration::from_millis(2), 1000);
        let steady = admission.limit();
        run(Duration::from_millis(50), 20);
        let slowed = admission.limit();
        run(Duration::from_millis(2), 2000);
        let recovered = admission.limit();
        assert!(slowed < steady, "{steady} → {slowed}");
        assert!(recovered > slowed, "{slowed} → {recovered}");
        assert!(slowed >= MIN_LIMIT && recovered <= 40);
    }
}
