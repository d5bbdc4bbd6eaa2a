//! The invalidation bus: committed changes reach this instance's caches at once, and every
//! other instance's through Redis pub/sub.
//!
//! A transaction's changes are delivered here before its `commit` returns ([`Bus`] is the
//! database's change receiver); the read cache's values in Redis are dropped and the
//! changes published on [`INVALIDATION_CHANNEL`] in the same round trip,
//! so by the time the request that made them is answered, Redis has handed the message to
//! every subscribed instance's connection. Each instance follows the channel
//! ([`Bus::listen`]); whenever its subscription starts — at start-up and after every
//! reconnection — it drops everything it caches ([`Change::Everything`]), since it may have
//! missed messages meanwhile. While it cannot subscribe, copies it holds live until they
//! expire: each cache's time-to-live is its staleness bound during a Redis outage.

use std::{
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::RedisLink;
use crate::db::{Change, changes::ChangeReceiver};

/// The Redis channel the instances tell each other their committed changes on.
pub const INVALIDATION_CHANNEL: &str = "tenantry:invalidations";

/// How long a cached resource's generation outlives its last write: far longer than any
/// read that could race the write.
const GENERATION_TTL: Duration = Duration::from_secs(3600);

type Handler = Arc<dyn Fn(&Change) + Send + Sync>;

/// One published batch: the changes of one commit, and who committed them.
#[derive(Serialize, Deserialize)]
struct Message {
    from: Uuid,
    changes: Vec<Change>,
}

pub struct Bus {
    /// This instance, so that it skips its own messages (it applied them already).
    instance: Uuid,
    redis: Option<Arc<RedisLink>>,
    handlers: RwLock<Vec<Handler>>,
    listening: AtomicBool,
}

impl Bus {
    pub(super) fn new(redis: Option<Arc<RedisLink>>) -> Self {
        Self {
            instance: Uuid::now_v7(),
            redis,
            handlers: RwLock::new(Vec::new()),
            listening: AtomicBool::new(false),
        }
    }

    /// Calls `handler` with every change, this instance's and the others'.
    pub fn subscribe(&self, handler: impl Fn(&Change) + Send + Sync + 'static) {
        self.handlers
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Arc::new(handler));
    }

    /// Whether this instance is hearing the others' changes now (always true without Redis:
    /// there are no others).
    pub fn listening(&self) -> bool {
        self.redis.is_none() || self.listening.load(Ordering::Relaxed)
    }

    fn deliver(&self, changes: &[Change]) {
        let handlers = self
            .handlers
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for change in changes {
            for handler in &handlers {
                handler(change);
            }
        }
    }

    /// Drops what `changes` make stale in Redis and tells the other instances (when Redis
    /// is configured and its breaker lets the message through), then applies them here.
    /// Redis first: once a change is applied here, no read may find the old value in
    /// Redis and cache it here again as new.
    pub async fn publish(&self, changes: Vec<Change>) {
        let Some(redis) = &self.redis else {
            self.deliver(&changes);
            return;
        };
        metrics::counter!("cache_invalidations_sent_total").increment(changes.len() as u64);
        let message = Message {
            from: self.instance,
            changes,
        };
        let Ok(payload) = serde_json::to_string(&message) else {
            self.deliver(&message.changes);
            return;
        };
        // One round trip: the cached values in Redis dropped (and their generations
        // bumped, so a read already under way cannot put them back), then the message.
        let mut pipe = redis::pipe();
        pipe.atomic();
        for change in &message.changes {
            if let Change::Resource { tenant, kind, id } = change {
                let generation = super::cache_generation_key(*tenant, kind, *id);
                pipe.cmd("INCR").arg(&generation).ignore();
                pipe.cmd("PEXPIRE")
                    .arg(&generation)
                    .arg(GENERATION_TTL.as_millis() as u64)
                    .ignore();
                pipe.cmd("DEL")
                    .arg(super::cache_key(*tenant, kind, *id))
                    .ignore();
            }
        }
        pipe.cmd("PUBLISH")
            .arg(INVALIDATION_CHANNEL)
            .arg(&payload)
            .ignore();
        for change in &message.changes {
            if let Change::Tenant { tenant } = change {
                forget_tenant(redis, *tenant).await;
            }
        }
        let sent = redis
            .run(async |connection| pipe.query_async::<()>(connection).await)
            .await;
        if sent.is_none() {
            metrics::counter!("cache_invalidations_unsent_total").increment(1);
        }
        self.deliver(&message.changes);
    }

    /// Follows the other instances' changes for as long as the process runs (returns at
    /// once without Redis).
    pub async fn listen(self: Arc<Self>) {
        let Some(redis) = self.redis.clone() else {
            return;
        };
        super::follow_channel(
            &redis,
            INVALIDATION_CHANNEL,
            &self.listening,
            || self.deliver(&[Change::Everything]),
            |payload| self.received(payload),
        )
        .await;
    }

    fn received(&self, payload: &[u8]) {
        let Ok(message) = serde_json::from_slice::<Message>(payload) else {
            tracing::warn!("ignored a malformed invalidation message");
            return;
        };
        if message.from == self.instance {
            return;
        }
        metrics::counter!("cache_invalidations_received_total")
            .increment(message.changes.len() as u64);
        self.deliver(&message.changes);
    }
}

/// Deletes every cached value of `tenant` from Redis (an erasure: rare, so a scan).
async fn forget_tenant(redis: &RedisLink, tenant: crate::id::TenantId) {
    let pattern = super::cache_keys_of(tenant);
    redis
        .run(async |connection| {
            let mut cursor: u64 = 0;
            loop {
                let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(1000)
                    .query_async(connection)
                    .await?;
                if !keys.is_empty() {
                    redis::cmd("DEL")
                        .arg(&keys)
                        .query_async::<i64>(connection)
                        .await?;
                }
                if next == 0 {
                    return Ok(());
                }
                cursor = next;
            }
        })
        .await;
}

impl ChangeReceiver for Bus {
    fn committed(
        &self,
        changes: Vec<Change>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + '_>> {
        Box::pin(self.publish(changes))
    }
}
