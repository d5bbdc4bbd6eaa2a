//! Read-through caching of hot single resources (an order, a product, a customer, the
//! tenant profile): L1 in this process, L2 in Redis (when `REDIS_URL` is set), then
//! Postgres.
//!
//! What is cached is the representation a `GET` answers — its JSON bytes and its version
//! (the `ETag`) — under a [`Key`] that starts with the tenant of the verified credential,
//! never with anything the client sent: a cached value can only ever be served to the
//! tenant it was read for. Routes still check the credential's scope before they ask.
//!
//! - **L1** (moka): bounded by the bytes it holds (`TENANTRY_READ_CACHE_BYTES`), each
//!   entry kept at most `TENANTRY_READ_CACHE_TTL`. Concurrent misses of one key wait for
//!   one load (`try_get_with`): a stampede costs one query.
//! - **L2** (Redis): `tenantry:cache:{tenant}:{kind}:{id}`, the same time-to-live. A writer
//!   bumps the key's generation and deletes the value in one step (the invalidation bus
//!   does, see `shared::Bus::publish`); a reader that missed notes the generation before
//!   it reads Postgres and stores what it read only if the generation has not moved since
//!   (one script), so a slow reader never puts back a value a write has replaced.
//! - **Invalidation**: a transaction that changes a cached resource reports it
//!   (`Change::Resource`); on commit the bus drops it here (it remembers when, so a load
//!   that started before the change and finishes after it is not used either), in L2, and
//!   — through Redis pub/sub — in every other instance's L1, before the writer's answer is
//!   sent. While Redis is down (or without it, across several instances) another instance
//!   may serve a replaced value until its copy expires: the time-to-live is that bound.
//!
//! Metrics: `cache_requests_total{cache, level, result}` (hits and misses per level),
//! `cache_evictions_total{cache}` (L1 entries pushed out for room), and the bus's
//! `cache_invalidations_{sent,received}_total`.

use std::{
    future::Future,
    sync::{
        Arc, PoisonError, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use bytes::Bytes;
use tracing::Instrument;
use uuid::Uuid;

use crate::{
    db::Change,
    error::Error,
    id::TenantId,
    observability::traces,
    shared::{RedisLink, cache_generation_key, cache_key},
};

/// What a cache entry is: the kinds of resource cached, as `Change::Resource` names them.
pub mod kind {
    pub const ORDER: &str = "order";
    pub const PRODUCT: &str = "product";
    pub const CUSTOMER: &str = "customer";
    pub const TENANT: &str = "tenant";
}

/// A cached resource: the verified tenant first, then what it is.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub tenant: TenantId,
    pub kind: &'static str,
    pub id: Uuid,
}

/// One cached representation.
#[derive(Debug, Clone)]
pub struct Cached {
    /// The resource's version: its `ETag`.
    pub version: i64,
    /// The JSON the route answers.
    pub body: Bytes,
    /// When the read that produced it began.
    loaded_at: Instant,
}

/// The script that stores a value in L2 only if its key's generation is still the one
/// read before the value was loaded: `KEYS[1]` the value, `KEYS[2]` the generation;
/// `ARGV`: the generation seen (`""` for none), the value, its time-to-live (ms).
const FILL: &str = r#"
local generation = redis.call('GET', KEYS[2]) or ''
if generation ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
return 1
"#;

/// When keys were last changed, so loads begun before a change are not used after it.
#[derive(Default)]
struct Changes {
    everything: Option<Instant>,
    /// Tenants all of whose resources changed (an erasure), and when.
    tenants: std::collections::HashMap<TenantId, Instant>,
}

pub struct ReadCache {
    l1: Option<moka::future::Cache<Key, Arc<Cached>>>,
    /// Keys changed within the last time-to-live, and when.
    changed: moka::sync::Cache<Key, Instant>,
    changes: RwLock<Changes>,
    redis: Option<Arc<RedisLink>>,
    fill: redis::Script,
    ttl: Duration,
}

impl ReadCache {
    /// A cache keeping each value for `ttl` (zero: none at all) in at most `bytes` of L1,
    /// and in Redis when `redis` is given.
    pub fn new(ttl: Duration, bytes: u64, redis: Option<Arc<RedisLink>>) -> Self {
        let l1 = (!ttl.is_zero()).then(|| {
            moka::future::Cache::builder()
                .max_capacity(bytes)
                .weigher(|key: &Key, value: &Arc<Cached>| {
                    let size = std::mem::size_of_val(key) + value.body.len() + 64;
                    u32::try_from(size).unwrap_or(u32::MAX)
                })
                .time_to_live(ttl)
                .eviction_listener(|_, _, cause| {
                    if cause == moka::notification::RemovalCause::Size {
                        metrics::counter!("cache_evictions_total", "cache" => "reads").increment(1);
                    }
                })
                .build()
        });
        Self {
            l1,
            changed: moka::sync::Cache::builder()
                .max_capacity(1_000_000)
                .time_to_live(ttl.max(Duration::from_secs(1)) * 2)
                .build(),
            changes: RwLock::new(Changes::default()),
            redis: redis.filter(|_| !ttl.is_zero()),
            fill: redis::Script::new(FILL),
            ttl,
        }
    }

    /// The cached representation of `key`, or what `load` reads (then cached). `load`
    /// answers the version and the JSON; it may be called twice when a change lands while
    /// it runs (the first answer may predate the change, so it is not used).
    pub async fn get_or_load<F, Fut>(&self, key: Key, load: F) -> Result<Arc<Cached>, Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(i64, Bytes), Error>>,
    {
        let span = tracing::debug_span!(
            target: traces::TARGET,
            "cache.get",
            cache.kind = key.kind,
            cache.l1 = tracing::field::Empty,
            cache.l2 = tracing::field::Empty,
        );
        self.lookup(key, load).instrument(span).await
    }

    async fn lookup<F, Fut>(&self, key: Key, load: F) -> Result<Arc<Cached>, Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(i64, Bytes), Error>>,
    {
        let Some(l1) = &self.l1 else {
            return fresh(&load).await;
        };
        // A value read before a change that has landed since is dropped and read again
        // (and cached, read after the change); should another change land during that
        // read too, the value is read once more without caching it.
        for _ in 0..2 {
            let loaded = AtomicBool::new(false);
            let cached = l1
                .try_get_with(key.clone(), async {
                    loaded.store(true, Ordering::Relaxed);
                    self.load_through_l2(&key, &load).await.map(Arc::new)
                })
                .await
                .map_err(|error| (*error).clone())?;
            let result = if loaded.load(Ordering::Relaxed) {
                "miss"
            } else {
                "hit"
            };
            count("l1", result);
            if !self.changed_since(&key, cached.loaded_at) {
                return Ok(cached);
            }
            l1.invalidate(&key).await;
        }
        fresh(&load).await
    }

    async fn load_through_l2<F, Fut>(&self, key: &Key, load: &F) -> Result<Cached, Error>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = Result<(i64, Bytes), Error>>,
    {
        let loaded_at = Instant::now();
        let Some(redis) = &self.redis else {
            return fresh(load).await.map(Arc::unwrap_or_clone);
        };
        let (value_key, generation_key) = (
            cache_key(key.tenant, key.kind, key.id),
            cache_generation_key(key.tenant, key.kind, key.id),
        );
        let stored = redis
            .run(async |connection| {
                redis::cmd("MGET")
                    .arg(&value_key)
                    .arg(&generation_key)
                    .query_async::<(Option<Vec<u8>>, Option<String>)>(connection)
                    .await
            })
            .await;
        if let Some((Some(value), _)) = &stored
            && let Some(cached) = decode(value, loaded_at)
        {
            count("l2", "hit");
            return Ok(cached);
        }
        count("l2", "miss");
        let (version, body) = load().await?;
        if let Some((_, generation)) = stored {
            let value = encode(version, &body);
            let mut fill = self.fill.prepare_invoke();
            fill.key(&value_key)
                .key(&generation_key)
                .arg(generation.unwrap_or_default())
                .arg(value)
                .arg(self.ttl.as_millis() as u64);
            redis
                .run(async |connection| fill.invoke_async::<i64>(connection).await)
                .await;
        }
        Ok(Cached {
            version,
            body,
            loaded_at,
        })
    }

    fn changed_since(&self, key: &Key, loaded_at: Instant) -> bool {
        let changed_before = |at: Option<Instant>| at.is_some_and(|at| at >= loaded_at);
        {
            let changes = self.changes.read().unwrap_or_else(PoisonError::into_inner);
            if changed_before(changes.everything)
                || changed_before(changes.tenants.get(&key.tenant).copied())
            {
                return true;
            }
        }
        changed_before(self.changed.get(key))
    }

    /// Forgets what `change` makes stale (the bus calls this for every change, this
    /// instance's and the others').
    pub fn apply(&self, change: &Change) {
        let now = Instant::now();
        match change {
            Change::Resource { tenant, kind, id } => {
                let Some(kind) = known_kind(kind) else { return };
                let key = Key {
                    tenant: *tenant,
                    kind,
                    id: *id,
                };
                // Marked first, so a concurrent read cannot use the old entry meanwhile;
                // the entry itself is dropped lazily, by the next read of it.
                self.changed.insert(key, now);
            }
            Change::Tenant { tenant } => {
                self.changes
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .tenants
                    .insert(*tenant, now);
            }
            Change::Everything => {
                self.changes
                    .write()
                    .unwrap_or_else(PoisonError::into_inner)
                    .everything = Some(now);
                if let Some(l1) = &self.l1 {
                    l1.invalidate_all();
                }
            }
            Change::Credentials { .. } | Change::AllCredentials => {}
        }
    }
}

/// The kinds this cache holds, as the `'static` names its keys use.
fn known_kind(kind: &str) -> Option<&'static str> {
    [kind::ORDER, kind::PRODUCT, kind::CUSTOMER, kind::TENANT]
        .into_iter()
        .find(|known| *known == kind)
}

async fn fresh<F, Fut>(load: &F) -> Result<Arc<Cached>, Error>
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<(i64, Bytes), Error>>,
{
    let loaded_at = Instant::now();
    let (version, body) = load().await?;
    Ok(Arc::new(Cached {
        version,
        body,
        loaded_at,
    }))
}

fn count(level: &'static str, result: &'static str) {
    if traces::exporting() {
        let field = if level == "l1" {
            "cache.l1"
        } else {
            "cache.l2"
        };
        tracing::Span::current().record(field, result);
    }
    metrics::counter!("cache_requests_total", "cache" => "reads", "level" => level, "result" => result)
        .increment(1);
}

/// L2's format: the version, a newline, the JSON.
fn encode(version: i64, body: &[u8]) -> Vec<u8> {
    let mut value = format!("{version}\n").into_bytes();
    value.extend_from_slice(body);
    value
}

fn decode(value: &[u8], loaded_at: Instant) -> Option<Cached> {
    let newline = value.iter().position(|b| *b == b'\n')?;
    let version = std::str::from_utf8(&value[..newline]).ok()?.parse().ok()?;
    Some(Cached {
        version,
        body: Bytes::copy_from_slice(&value[newline + 1..]),
        loaded_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn key(tenant: TenantId) -> Key {
        Key {
            tenant,
            kind: kind::ORDER,
            id: Uuid::nil(),
        }
    }

    #[tokio::test]
    async fn concurrent_misses_of_one_key_cost_one_load() {
        let cache = ReadCache::new(Duration::from_secs(60), 1 << 20, None);
        let loads = AtomicUsize::new(0);
        let key = key(TenantId::new());
        let load = || async {
            loads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(50)).await;
            Ok((1, Bytes::from_static(b"{}")))
        };
        let answers =
            futures_util::future::join_all((0..20).map(|_| cache.get_or_load(key.clone(), load)))
                .await;
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().is_ok_and(|c| c.version == 1))
        );
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_change_drops_the_value_and_a_load_that_raced_it() {
        let cache = ReadCache::new(Duration::from_secs(60), 1 << 20, None);
        let tenant = TenantId::new();
        let version = AtomicUsize::new(1);
        let load = || async { Ok((version.load(Ordering::SeqCst) as i64, Bytes::new())) };
        assert_eq!(
            cache.get_or_load(key(tenant), load).await.unwrap().version,
            1
        );

        version.store(2, Ordering::SeqCst);
        assert_eq!(
            cache.get_or_load(key(tenant), load).await.unwrap().version,
            1,
            "served from the cache until a change is reported"
        );
        cache.apply(&Change::Resource {
            tenant,
            kind: kind::ORDER.to_owned(),
            id: Uuid::nil(),
        });
        assert_eq!(
            cache.get_or_load(key(tenant), load).await.unwrap().version,
            2
        );
        // Another tenant's key for the same id is another entry altogether.
        version.store(9, Ordering::SeqCst);
        assert_eq!(
            cache
                .get_or_load(key(TenantId::new()), load)
                .await
                .unwrap()
                .version,
            9
        );
        assert_eq!(
            cache.get_or_load(key(tenant), load).await.unwrap().version,
            2
        );
    }
}
