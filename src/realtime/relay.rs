//! Ephemeral `broadcast` messages between a tenant's clients, on every instance.
//!
//! With Redis, a message is published on [`BROADCAST_CHANNEL`] and every instance —
//! this one included — hands it to its subscribers of the message's tenant when it
//! arrives. Without Redis (or while this instance cannot reach it) a message reaches this
//! instance's subscribers only. Messages are not stored: one sent while a client is away
//! is not replayed to it.

use std::sync::{
    Arc,
    atomic::{AtomicBool, Ordering},
};

use super::{Broadcast, Hub};
use crate::shared::{self, RedisLink};

/// The Redis channel broadcasts travel on between instances.
pub const BROADCAST_CHANNEL: &str = "tenantry:broadcasts";

pub struct Relay {
    hub: Arc<Hub>,
    redis: Option<Arc<RedisLink>>,
    listening: AtomicBool,
}

impl Relay {
    pub fn new(hub: Arc<Hub>, redis: Option<Arc<RedisLink>>) -> Self {
        Self {
            hub,
            redis,
            listening: AtomicBool::new(false),
        }
    }

    /// Sends `broadcast` to its channel's subscribers on every instance it can reach.
    pub async fn send(&self, broadcast: Broadcast) {
        metrics::counter!("realtime_broadcasts_total").increment(1);
        if let Some(redis) = self
            .redis
            .as_ref()
            .filter(|_| self.listening.load(Ordering::Relaxed))
            && let Ok(payload) = serde_json::to_vec(&broadcast)
        {
            let published = redis
                .run(async |connection| {
                    redis::cmd("PUBLISH")
                        .arg(BROADCAST_CHANNEL)
                        .arg(&payload)
                        .query_async::<i64>(connection)
                        .await
                })
                .await;
            // Published: it comes back to this instance through the subscription too.
            if published.is_some() {
                return;
            }
        }
        self.hub.broadcast(Arc::new(broadcast));
    }

    /// Follows the other instances' broadcasts for as long as the process runs (returns at
    /// once without Redis).
    pub async fn listen(self: Arc<Self>) {
        let Some(redis) = self.redis.clone() else {
            return;
        };
        shared::follow_channel(
            &redis,
            BROADCAST_CHANNEL,
            &self.listening,
            || {},
            |payload| match serde_json::from_slice::<Broadcast>(payload) {
                Ok(broadcast) => self.hub.broadcast(Arc::new(broadcast)),
                Err(_) => tracing::warn!("ignored a malformed broadcast message"),
            },
        )
        .await;
    }
}
