//! Rate limits: how many requests a credential and a tenant may make, from the tenant's
//! plan (`requests_per_second`, `request_burst`).
//!
//! A plan's rate is each credential's: a credential may make `requests_per_second` with
//! bursts of `request_burst`. The tenant as a whole may make [`TENANT_RATE_MULTIPLE`] times
//! that, so one runaway integration cannot spend everything its tenant's other credentials
//! need, and many credentials cannot multiply a tenant's allowance without bound. A limit
//! the plan leaves unset (null) is not enforced.
//!
//! Each limit is decided by one of two algorithms, chosen per limit
//! (`TENANTRY_CREDENTIAL_RATE_ALGORITHM`, `TENANTRY_TENANT_RATE_ALGORITHM`):
//! - [`Algorithm::Gcra`] (the default): a token bucket holding `burst` requests, refilled
//!   at the rate — the generic cell rate algorithm, which stores one instant per key;
//! - [`Algorithm::SlidingWindow`]: at most `burst` requests in any window of
//!   `burst / rate` seconds, estimated from the counts of the current and previous fixed
//!   windows (weighted by how much of the previous one the sliding window still covers).
//!
//! Where the counts live is a [`RateStore`]: Redis ([`redis_store::RedisStore`]: one script
//! decides every limit of a request atomically, in one round trip, so every instance
//! counts against the same limits), or this process's memory ([`memory::MemoryStore`]:
//! `governor`'s GCRA, and the sliding window), used alone without Redis and as the
//! fallback while Redis is down — when each instance then counts on its own, the limits
//! are looser by the number of instances. [`Limiter`] picks between them.
//!
//! A check charges each limit a cost ([`Limit::cost`]): one unit for a request, a query's
//! cost in points for GraphQL, so both draw on the same allowance in one decision. A rate
//! and a burst are therefore in units (a request being one). A cost above a limit's burst
//! can never be allowed, however long the caller waits: both stores refuse it without
//! counting it, and [`Limit::exceeds_burst`] tells a caller so before it asks.

pub mod memory;
pub mod redis_store;

use std::{future::Future, num::NonZeroU32, pin::Pin, sync::Arc, time::Duration};

use crate::shared::RedisLink;

/// How many times a credential's rate the tenant as a whole may make.
pub const TENANT_RATE_MULTIPLE: u32 = 4;

/// A sustained rate and the burst allowed above it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    /// Units (requests) per second, sustained (at least 1).
    pub per_second: u32,
    /// Units (requests) allowed at once (at least 1).
    pub burst: u32,
}

impl Rate {
    /// A plan's rate, if it sets one. A burst left unset is one second's worth.
    pub fn from_plan(per_second: Option<u64>, burst: Option<u64>) -> Option<Self> {
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX).max(1);
        let per_second = clamp(per_second?);
        Some(Self {
            per_second,
            burst: burst.map_or(per_second, clamp),
        })
    }

    /// This rate, `factor` times over.
    pub fn times(self, factor: u32) -> Self {
        Self {
            per_second: self.per_second.saturating_mul(factor),
            burst: self.burst.saturating_mul(factor),
        }
    }

    /// The time one unit (one request's share) of the rate takes to come back.
    pub fn interval(self) -> Duration {
        Duration::from_secs(1) / self.per_second
    }

    /// The time the whole burst takes to come back: the window of a sliding-window limit,
    /// and the `w` of its `RateLimit-Policy`.
    pub fn window(self) -> Duration {
        self.interval() * self.burst
    }
}

pub use crate::config::RateAlgorithm as Algorithm;

/// Whom a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    Credential,
    Tenant,
    /// A credential's GraphQL budget: points of operation cost per minute.
    Graphql,
}

impl Scope {
    /// The policy's name in the `RateLimit-Policy` and `RateLimit` headers.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Credential => "credential",
            Scope::Tenant => "tenant",
            Scope::Graphql => "graphql",
        }
    }
}

/// One limit a check is held to, and what the check takes from it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Limit {
    pub scope: Scope,
    /// Whose requests it counts: a credential's or a tenant's id (never client input).
    pub key: String,
    pub rate: Rate,
    pub algorithm: Algorithm,
    /// How many units this check takes from the limit: 1 for a request, a GraphQL query's
    /// cost for a query. 0 is taken as 1 (see [`Limit::units`]): every check counts.
    pub cost: u32,
}

impl Limit {
    /// The key it is counted under in a shared store: the algorithm is part of it, since
    /// the two store different things. The cost is not: every check of a credential or a
    /// tenant draws on the same counts, whatever it costs.
    pub fn store_key(&self) -> String {
        format!(
            "tenantry:rate:{}:{}:{}",
            self.algorithm.as_str(),
            self.scope.as_str(),
            self.key
        )
    }

    /// The units the stores charge: the cost, or 1 for a cost of 0.
    pub fn units(&self) -> NonZeroU32 {
        NonZeroU32::new(self.cost).unwrap_or(NonZeroU32::MIN)
    }

    /// Whether the cost is more than the limit's whole burst: such a check is always
    /// refused, and no wait helps (its `retry_after` is only the whole window, see
    /// [`Decision::retry_after`]). A caller can tell it apart before charging.
    pub fn exceeds_burst(&self) -> bool {
        self.units().get() > self.rate.burst
    }
}

/// What one limit said about one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub scope: Scope,
    pub rate: Rate,
    pub allowed: bool,
    /// Units still allowed at once after this check (0 when refused).
    pub remaining: u32,
    /// Until the limit is back to its full burst.
    pub reset: Duration,
    /// Until the refused check would be allowed (zero when allowed). A cost above the
    /// burst is never allowed ([`Limit::exceeds_burst`]): it is told the limit's whole
    /// window ([`Rate::window`]), so a client reading only `Retry-After` still gets a
    /// finite answer, though no wait lets that cost through.
    pub retry_after: Duration,
}

/// The limits' verdict on a check: allowed only when every limit allows it.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub decisions: Vec<Decision>,
}

impl Verdict {
    pub fn allowed(&self) -> bool {
        self.decisions.iter().all(|d| d.allowed)
    }

    /// The limit closest to refusing (what the `RateLimit` header reports).
    pub fn tightest(&self) -> Option<&Decision> {
        self.decisions
            .iter()
            .min_by_key(|d| (d.allowed, d.remaining))
    }

    /// How long a refused check should wait: until every refusing limit allows it.
    pub fn retry_after(&self) -> Duration {
        self.decisions
            .iter()
            .filter(|d| !d.allowed)
            .map(|d| d.retry_after)
            .max()
            .unwrap_or_default()
    }
}

/// What a store's check returns: boxed so the store can be chosen at start-up.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Where the counts live. A store decides every limit of a check together; `None` means
/// it could not decide (a shared store that is unreachable).
pub trait RateStore: Send + Sync {
    fn check<'a>(&'a self, limits: &'a [Limit]) -> StoreFuture<'a, Option<Vec<Decision>>>;
}

/// The rate limiter: the shared store when there is one and it answers, this process's
/// memory otherwise.
pub struct Limiter {
    shared: Option<Box<dyn RateStore>>,
    local: memory::MemoryStore,
}

impl Limiter {
    pub fn new(redis: Option<Arc<RedisLink>>) -> Self {
        Self {
            shared: redis
                .map(|link| Box::new(redis_store::RedisStore::new(link)) as Box<dyn RateStore>),
            local: memory::MemoryStore::new(),
        }
    }

    /// Decides `limits` for one check (charging each its cost when every limit allows it).
    /// Each limit's decision is counted in `rate_limit_decisions_total{limit, decision}`.
    pub async fn check(&self, limits: &[Limit]) -> Verdict {
        let verdict = self.decide(limits).await;
        for decision in &verdict.decisions {
            let outcome = if decision.allowed {
                "allowed"
            } else {
                "limited"
            };
            metrics::counter!(
                "rate_limit_decisions_total",
                "limit" => decision.scope.as_str(),
                "decision" => outcome
            )
            .increment(1);
        }
        verdict
    }

    async fn decide(&self, limits: &[Limit]) -> Verdict {
        if let Some(shared) = &self.shared {
            if let Some(decisions) = shared.check(limits).await {
                return Verdict { decisions };
            }
            metrics::counter!("rate_limit_fallbacks_total").increment(1);
        }
        let decisions = self
            .local
            .check(limits)
            .await
            .expect("the in-process store always decides");
        Verdict { decisions }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_rate_without_a_burst_allows_one_seconds_worth_at_once() {
        assert_eq!(Rate::from_plan(None, Some(20)), None);
        assert_eq!(
            Rate::from_plan(Some(10), None),
            Some(Rate {
                per_second: 10,
                burst: 10
            })
        );
        let rate = Rate::from_plan(Some(10), Some(20)).unwrap();
        assert_eq!(rate.window(), Duration::from_secs(2));
        assert_eq!(rate.times(4).per_second, 40);
        assert_eq!(Rate::from_plan(Some(0), Some(0)).unwrap().burst, 1);
    }

    #[test]
    fn a_cost_is_at_least_one_unit_and_is_no_part_of_the_key() {
        let limit = |cost| Limit {
            scope: Scope::Tenant,
            key: "t".into(),
            rate: Rate {
                per_second: 10,
                burst: 10,
            },
            algorithm: Algorithm::Gcra,
            cost,
        };
        assert_eq!(limit(0).units().get(), 1);
        assert_eq!(limit(7).units().get(), 7);
        assert_eq!(limit(1).store_key(), limit(7).store_key());
        assert!(!limit(10).exceeds_burst());
        assert!(limit(11).exceeds_burst());
    }
}
