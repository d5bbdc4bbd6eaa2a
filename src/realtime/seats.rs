//! Seats: the realtime connections a tenant has open, against its plan's
//! `realtime_connections`.
//!
//! With Redis the count is shared by every instance: a sorted set per tenant of the open
//! connections, each scored with the time its lease ends. A connection renews its lease
//! while it lives ([`LEASE`], renewed every third of it) and removes itself when it
//! closes; one that died with its instance falls out when its lease ends. One script
//! takes a seat: it drops expired leases, counts, and adds the new one only below the
//! limit — two instances cannot both take the last seat.
//!
//! Without Redis, or while it cannot be reached, each instance counts its own connections
//! (so across N instances a tenant may briefly hold up to N times its limit).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use uuid::Uuid;

use crate::{error::Error, id::TenantId, shared::RedisLink};

/// How long a connection's seat is held without renewal.
pub const LEASE: Duration = Duration::from_secs(60);

/// Takes a seat if the tenant has one free: drops expired leases, counts the rest, adds
/// this connection's. Returns the seats in use after it, or -1 - used when refused.
const TAKE: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now_ms)
local used = redis.call('ZCARD', KEYS[1])
if used >= tonumber(ARGV[2]) then
  return -1 - used
end
redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[1]), ARGV[3])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return used + 1
";

/// Extends a seat's lease (only if it is still held).
const RENEW: &str = r"
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('ZADD', KEYS[1], 'XX', now_ms + tonumber(ARGV[1]), ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[1])
return 1
";

fn key(tenant: TenantId) -> String {
    format!("tenantry:realtime:{tenant}")
}

pub struct Seats {
    redis: Option<Arc<RedisLink>>,
    take: redis::Script,
    renew: redis::Script,
    local: Mutex<HashMap<TenantId, u64>>,
}

/// Where a seat is held.
enum Held {
    /// The plan sets no limit: nothing to count.
    Unlimited,
    Redis {
        redis: Arc<RedisLink>,
        id: Uuid,
    },
    Local,
}

/// A held seat; dropping it frees the seat.
pub struct Seat {
    seats: Arc<Seats>,
    tenant: TenantId,
    held: Held,
}

impl Seats {
    pub fn new(redis: Option<Arc<RedisLink>>) -> Self {
        Self {
            redis,
            take: redis::Script::new(TAKE),
            renew: redis::Script::new(RENEW),
            local: Mutex::new(HashMap::new()),
        }
    }

    fn local(&self) -> std::sync::MutexGuard<'_, HashMap<TenantId, u64>> {
        self.local
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Takes one of `tenant`'s `limit` seats (`None`: unlimited), or refuses with 403
    /// `quota_exceeded` naming `realtime_connections`.
    pub async fn take(
        self: &Arc<Self>,
        tenant: TenantId,
        limit: Option<u64>,
    ) -> Result<Seat, Error> {
        let seat = |held| Seat {
            seats: Arc::clone(self),
            tenant,
            held,
        };
        let Some(limit) = limit else {
            return Ok(seat(Held::Unlimited));
        };
        if let Some(redis) = &self.redis {
            let id = Uuid::now_v7();
            let taken = redis
                .run(async |connection| {
                    self.take
                        .key(key(tenant))
                        .arg(LEASE.as_millis() as u64)
                        .arg(limit)
                        .arg(id.to_string())
                        .invoke_async::<i64>(connection)
                        .await
                })
                .await;
            match taken {
                Some(used) if used > 0 => {
                    return Ok(seat(Held::Redis {
                        redis: Arc::clone(redis),
                        id,
                    }));
                }
                Some(refused) => return Err(exceeded(limit, (-1 - refused).unsigned_abs())),
                // Redis is away: count here.
                None => {}
            }
        }
        let mut local = self.local();
        let used = local.entry(tenant).or_default();
        if *used >= limit {
            return Err(exceeded(limit, *used));
        }
        *used += 1;
        Ok(seat(Held::Local))
    }
}

fn exceeded(limit: u64, used: u64) -> Error {
    Error::quota_exceeded("realtime_connections", limit, used, None)
}

impl Seat {
    /// Extends the seat's lease; call it every third of [`LEASE`].
    pub async fn renew(&self) {
        if let Held::Redis { redis, id } = &self.held {
            redis
                .run(async |connection| {
                    self.seats
                        .renew
                        .key(key(self.tenant))
                        .arg(LEASE.as_millis() as u64)
                        .arg(id.to_string())
                        .invoke_async::<i64>(connection)
                        .await
                })
                .await;
        }
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        match std::mem::replace(&mut self.held, Held::Unlimited) {
            Held::Unlimited => {}
            Held::Local => {
                let mut local = self.seats.local();
                if let Some(used) = local.get_mut(&self.tenant) {
                    *used = used.saturating_sub(1);
                    if *used == 0 {
                        local.remove(&self.tenant);
                    }
                }
            }
            Held::Redis { redis, id } => {
                let tenant = self.tenant;
                // Freed in the background; if this fails the lease runs out instead.
                if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                    runtime.spawn(async move {
                        redis
                            .run(async |connection| {
                                redis::cmd("ZREM")
                                    .arg(key(tenant))
                                    .arg(id.to_string())
                                    .query_async::<i64>(connection)
                                    .await
                            })
                            .await;
                    });
                }
            }
        }
    }
}
