//! Verified credentials, remembered for a few seconds so that a request does not open a
//! transaction just to check its credential.
//!
//! What the database said about a credential — its tenant's status and rate, the session's
//! or key's state, the user's role — is kept in process (moka: at most [`CAPACITY`]
//! entries, each for `TENANTRY_CREDENTIAL_CACHE_TTL` less up to a fifth of it, so entries
//! loaded together do not expire together), keyed by tenant and credential id. Signatures,
//! token expiry and an API key's secret are still checked on every request; only the rows
//! are remembered. An entry never outlives what it says by itself: it is dropped when the
//! earliest expiry it read (a key's, a session's) passes.
//!
//! A change to any of those rows is a `Change::Credentials` of its tenant (or
//! `AllCredentials`, for a plan) reported by the transaction that makes it. The bus
//! delivers it here — on this instance when the transaction commits, on the others through
//! Redis — and from then on every entry of that tenant loaded before the change is ignored.
//! Comparing load times rather than removing entries also covers a check that read the
//! database before the change and finishes after it: its entry is born stale. So while the
//! bus carries changes, a revocation is seen by the very next request on every instance;
//! when it cannot (Redis down), by the end of the time-to-live.

use std::{
    collections::HashMap,
    sync::{PoisonError, RwLock},
    time::{Duration, Instant},
};

use time::OffsetDateTime;
use uuid::Uuid;

use super::authenticate::Authenticated;
use crate::{db::Change, error::Error, id::TenantId};

/// The most credentials remembered.
pub const CAPACITY: u64 = 100_000;

/// Which credential an entry is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CredentialKey {
    /// An access token, by its `jti`.
    Token { tenant: TenantId, jti: Uuid },
    /// An API key, by its id.
    ApiKey { tenant: TenantId, id: Uuid },
}

impl CredentialKey {
    fn tenant(&self) -> TenantId {
        match self {
            CredentialKey::Token { tenant, .. } | CredentialKey::ApiKey { tenant, .. } => *tenant,
        }
    }
}

/// What was concluded about a credential, and the facts it rests on.
#[derive(Clone)]
pub struct Verified {
    /// The API key's stored secret hash, checked against the presented key on every use.
    pub secret_hash: Option<Vec<u8>>,
    pub outcome: Result<Authenticated, Error>,
    /// When the outcome would change by itself (a key or session expiring).
    pub stale_at: Option<OffsetDateTime>,
}

#[derive(Clone)]
struct Entry {
    loaded_at: Instant,
    verified: Verified,
}

/// When a tenant's (or every tenant's) credentials last changed.
#[derive(Default)]
struct Changes {
    all: Option<Instant>,
    tenants: HashMap<TenantId, Instant>,
}

pub struct CredentialCache {
    entries: Option<moka::sync::Cache<CredentialKey, Entry>>,
    ttl: Duration,
    changes: RwLock<Changes>,
}

/// Each entry's own time-to-live: the configured one, less up to a fifth of it at random.
struct Jittered(Duration);

impl moka::Expiry<CredentialKey, Entry> for Jittered {
    fn expire_after_create(&self, _: &CredentialKey, _: &Entry, _: Instant) -> Option<Duration> {
        Some(self.0.mul_f64(rand::random_range(0.8..=1.0)))
    }
}

impl CredentialCache {
    /// Remembers credentials for `ttl` (zero: not at all).
    pub fn new(ttl: Duration) -> Self {
        let entries = (!ttl.is_zero()).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(CAPACITY)
                .expire_after(Jittered(ttl))
                .build()
        });
        Self {
            entries,
            ttl,
            changes: RwLock::new(Changes::default()),
        }
    }

    /// The remembered verification of `key`, if it is still good.
    pub fn get(&self, key: &CredentialKey) -> Option<Verified> {
        let entry = self.entries.as_ref()?.get(key);
        let fresh = entry.filter(|entry| {
            !self.changed_since(key.tenant(), entry.loaded_at)
                && entry
                    .verified
                    .stale_at
                    .is_none_or(|at| OffsetDateTime::now_utc() < at)
        });
        metrics::counter!(
            "cache_requests_total",
            "cache" => "credentials", "level" => "l1",
            "result" => if fresh.is_some() { "hit" } else { "miss" }
        )
        .increment(1);
        fresh.map(|entry| entry.verified)
    }

    /// Remembers what a check that started at `loaded_at` concluded.
    pub fn insert(&self, key: CredentialKey, loaded_at: Instant, verified: Verified) {
        if let Some(entries) = &self.entries
            && !self.changed_since(key.tenant(), loaded_at)
        {
            entries.insert(
                key,
                Entry {
                    loaded_at,
                    verified,
                },
            );
        }
    }

    fn changed_since(&self, tenant: TenantId, loaded_at: Instant) -> bool {
        let changes = self.changes.read().unwrap_or_else(PoisonError::into_inner);
        changes.all.is_some_and(|at| at >= loaded_at)
            || changes
                .tenants
                .get(&tenant)
                .is_some_and(|at| *at >= loaded_at)
    }

    /// Forgets what `change` makes stale.
    pub fn apply(&self, change: &Change) {
        let now = Instant::now();
        let mut changes = self.changes.write().unwrap_or_else(PoisonError::into_inner);
        match change {
            Change::Credentials { tenant } | Change::Tenant { tenant } => {
                // Changes older than any entry can be are forgotten, so the map stays
                // as small as the number of tenants that changed within one lifetime.
                if changes.tenants.len() >= 10_000 {
                    let ttl = self.ttl;
                    changes
                        .tenants
                        .retain(|_, at| now.duration_since(*at) < ttl);
                }
                changes.tenants.insert(*tenant, now);
            }
            Change::AllCredentials | Change::Everything => changes.all = Some(now),
            Change::Resource { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access::{Actor, Principal, Scope};

    fn verified(tenant: TenantId) -> Verified {
        Verified {
            secret_hash: None,
            outcome: Ok(Authenticated {
                principal: Principal::verified(
                    tenant,
                    Actor::Service("s".into()),
                    Vec::<Scope>::new().into_iter().collect(),
                    None,
                ),
                rate: None,
            }),
            stale_at: None,
        }
    }

    #[test]
    fn a_change_to_a_tenant_forgets_its_credentials_and_a_check_that_raced_it() {
        let cache = CredentialCache::new(Duration::from_secs(60));
        let (a, b) = (TenantId::new(), TenantId::new());
        let key = |tenant| CredentialKey::Token {
            tenant,
            jti: Uuid::now_v7(),
        };
        let (key_a, key_b) = (key(a), key(b));
        let before = Instant::now();
        cache.insert(key_a, before, verified(a));
        cache.insert(key_b, before, verified(b));
        assert!(cache.get(&key_a).is_some());

        cache.apply(&Change::Credentials { tenant: a });
        assert!(
            cache.get(&key_a).is_none(),
            "changed tenant's entry is stale"
        );
        assert!(
            cache.get(&key_b).is_some(),
            "another tenant's entry is kept"
        );
        // A check that read the database before the change lands after it: not kept.
        cache.insert(key_a, before, verified(a));
        assert!(cache.get(&key_a).is_none());
        cache.insert(key_a, Instant::now(), verified(a));
        assert!(cache.get(&key_a).is_some());

        cache.apply(&Change::AllCredentials);
        assert!(cache.get(&key_a).is_none() && cache.get(&key_b).is_none());
    }

    #[test]
    fn an_entry_is_not_used_past_the_expiry_it_read() {
        let cache = CredentialCache::new(Duration::from_secs(60));
        let tenant = TenantId::new();
        let key = CredentialKey::ApiKey {
            tenant,
            id: Uuid::now_v7(),
        };
        let mut expired = verified(tenant);
        expired.stale_at = Some(OffsetDateTime::now_utc() - time::Duration::seconds(1));
        cache.insert(key, Instant::now(), expired);
        assert!(cache.get(&key).is_none());
    }
}
