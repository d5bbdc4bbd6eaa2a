//! State shared by every instance: Redis when `REDIS_URL` is set, behind a circuit breaker,
//! and the invalidation bus that carries committed changes to every instance's caches.
//!
//! Redis is optional. Without it an instance keeps everything in process (one node, zero
//! set-up). With it, rate limits are counted once for all instances ([`crate::traffic`]) and
//! a change committed on one instance drops the copies cached on all of them ([`Bus`]).
//! While Redis is down, each user of it falls back to its in-process half: limits are
//! counted per instance (looser), and a change reaches the other instances only when their
//! copies expire (each cache states its bound). Nothing is answered 5xx for want of Redis.
//!
//! [`RedisLink::run`] goes through a circuit breaker (`failsafe`): after
//! [`BREAKER_FAILURES`] failures in a row it opens and every call is skipped at once — a
//! dead Redis costs a flag check per request, not a connect or response timeout — until
//! a jittered, exponentially growing back-off has passed and one call may try again. Its
//! state is the gauge `redis_breaker_state` (0 closed, 1 half-open, 2 open) and part of
//! `/health/ready`'s details. `redis_up{configured}` says whether Redis answers: 1 once a
//! call succeeds, 0 once one fails or is skipped; without `REDIS_URL` it is exported too,
//! as `redis_up{configured="false"} 0`, so "Redis is not answering" and "there is no
//! Redis" are told apart rather than both being a missing series.

mod bus;

pub use bus::{Bus, INVALIDATION_CHANNEL};

use uuid::Uuid;

use crate::id::TenantId;

/// Where L2 of the read cache keeps a resource's representation.
pub fn cache_key(tenant: TenantId, kind: &str, id: Uuid) -> String {
    format!("tenantry:cache:{tenant}:{kind}:{id}")
}

/// The pattern matching every [`cache_key`] of `tenant`.
pub fn cache_keys_of(tenant: TenantId) -> String {
    format!("tenantry:cache:{tenant}:*")
}

/// The generation of [`cache_key`]'s value: bumped by every write of the resource, so a
/// reader that loaded before the write cannot store what it read after it.
pub fn cache_generation_key(tenant: TenantId, kind: &str, id: Uuid) -> String {
    format!("tenantry:cache-generation:{tenant}:{kind}:{id}")
}

use std::{
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU8, Ordering},
    },
    time::Duration,
};

use failsafe::{
    StateMachine,
    backoff::{self, EqualJittered},
    failure_policy::{self, ConsecutiveFailures},
};
use redis::{
    RedisResult,
    aio::{ConnectionManager, ConnectionManagerConfig},
};
use tracing::Instrument;

/// Failures in a row that open the breaker.
pub const BREAKER_FAILURES: u32 = 3;
/// The back-off of an open breaker: from this (`failsafe` takes whole seconds)…
const BREAKER_MIN_BACKOFF: Duration = Duration::from_secs(1);
/// …doubling up to this, each with jitter.
const BREAKER_MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long a Redis command or connection attempt may take before it counts as failed.
const REDIS_TIMEOUT: Duration = Duration::from_millis(250);

/// The breaker's state, as the gauge and readiness report it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed = 0,
    HalfOpen = 1,
    Open = 2,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::HalfOpen => "half_open",
            BreakerState::Open => "open",
        }
    }
}

/// Follows the breaker's transitions: the gauge, a log line, and the state for readiness;
/// and whether the last call succeeded (`redis_up`).
#[derive(Debug, Clone, Default)]
struct BreakerWatch(Arc<AtomicU8>, Arc<AtomicBool>);

impl BreakerWatch {
    /// Notes whether the last call succeeded; touches the gauge only when that changes
    /// (this is on every request's path).
    fn up(&self, up: bool) {
        if self.1.swap(up, Ordering::Relaxed) != up {
            metrics::gauge!("redis_up", "configured" => "true").set(if up { 1.0 } else { 0.0 });
        }
    }

    fn set(&self, state: BreakerState) {
        let before = self.0.swap(state as u8, Ordering::Relaxed);
        metrics::gauge!("redis_breaker_state").set(f64::from(state as u8));
        if before != state as u8 {
            match state {
                BreakerState::Open => tracing::warn!(
                    "Redis is failing: its circuit breaker is open; rate limits, caches and invalidations use this instance's memory until it recovers"
                ),
                BreakerState::HalfOpen => tracing::info!("trying Redis again (breaker half-open)"),
                BreakerState::Closed => tracing::info!("Redis answers again (breaker closed)"),
            }
        }
    }

    fn get(&self) -> BreakerState {
        match self.0.load(Ordering::Relaxed) {
            0 => BreakerState::Closed,
            1 => BreakerState::HalfOpen,
            _ => BreakerState::Open,
        }
    }
}

impl failsafe::Instrument for BreakerWatch {
    fn on_call_rejected(&self) {
        metrics::counter!("redis_calls_skipped_total").increment(1);
        self.up(false);
    }
    fn on_open(&self) {
        self.set(BreakerState::Open);
    }
    fn on_half_open(&self) {
        self.set(BreakerState::HalfOpen);
    }
    fn on_closed(&self) {
        self.set(BreakerState::Closed);
    }
}

type Breaker = StateMachine<ConsecutiveFailures<EqualJittered>, BreakerWatch>;

/// The link to Redis: a multiplexed connection that reconnects by itself, behind the
/// circuit breaker.
pub struct RedisLink {
    client: redis::Client,
    connection: ConnectionManager,
    breaker: Breaker,
    watch: BreakerWatch,
}

impl RedisLink {
    /// Prepares the link without connecting: start-up never waits for Redis, and a Redis
    /// that is down at start is one whose breaker opens on first use.
    pub fn new(url: &str) -> anyhow::Result<Self> {
        let client = redis::Client::open(url).map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
        let connection = ConnectionManager::new_lazy_with_config(
            client.clone(),
            ConnectionManagerConfig::new()
                .set_connection_timeout(Some(REDIS_TIMEOUT))
                .set_response_timeout(Some(REDIS_TIMEOUT))
                .set_number_of_retries(1)
                .set_max_delay(REDIS_TIMEOUT),
        )
        .map_err(|e| anyhow::anyhow!("REDIS_URL: {e}"))?;
        let watch = BreakerWatch::default();
        watch.set(BreakerState::Closed);
        // Up until a call says otherwise, as the breaker is closed until then.
        metrics::gauge!("redis_up", "configured" => "true").set(1.0);
        watch.1.store(true, Ordering::Relaxed);
        let breaker = failsafe::Config::new()
            .failure_policy(failure_policy::consecutive_failures(
                BREAKER_FAILURES,
                backoff::equal_jittered(BREAKER_MIN_BACKOFF, BREAKER_MAX_BACKOFF),
            ))
            .instrument(watch.clone())
            .build();
        Ok(Self {
            client,
            connection,
            breaker,
            watch,
        })
    }

    /// Runs `command` on Redis unless the breaker is open. `None` when it was skipped or
    /// failed (the failure counts towards opening the breaker): the caller falls back to
    /// its in-process half.
    pub async fn run<T>(
        &self,
        command: impl AsyncFnOnce(&mut ConnectionManager) -> RedisResult<T>,
    ) -> Option<T> {
        if !self.breaker.is_call_permitted() {
            return None;
        }
        let mut connection = self.connection.clone();
        let span = tracing::debug_span!(
            target: crate::observability::traces::TARGET,
            "redis",
            otel.kind = "client",
            db.system.name = "redis",
        );
        match command(&mut connection).instrument(span).await {
            Ok(value) => {
                self.breaker.on_success();
                self.watch.up(true);
                Some(value)
            }
            Err(error) => {
                tracing::debug!(%error, "Redis command failed");
                metrics::counter!("redis_errors_total").increment(1);
                self.breaker.on_error();
                self.watch.up(false);
                None
            }
        }
    }

    /// The breaker's state now.
    pub fn breaker_state(&self) -> BreakerState {
        self.watch.get()
    }

    /// The client, for connections of their own (a subscription).
    pub fn client(&self) -> &redis::Client {
        &self.client
    }
}

/// What an instance shares: the Redis link when configured, and the invalidation bus.
#[derive(Clone)]
pub struct Shared {
    redis: Option<Arc<RedisLink>>,
    bus: Arc<Bus>,
}

impl Shared {
    /// From `REDIS_URL`: Redis when set, this process alone otherwise.
    pub fn from_url(url: Option<&str>) -> anyhow::Result<Self> {
        let redis = url.map(RedisLink::new).transpose()?.map(Arc::new);
        if redis.is_none() {
            metrics::gauge!("redis_up", "configured" => "false").set(0.0);
        }
        let bus = Arc::new(Bus::new(redis.clone()));
        Ok(Self { redis, bus })
    }

    /// This process alone.
    pub fn in_process() -> Self {
        Self {
            redis: None,
            bus: Arc::new(Bus::new(None)),
        }
    }

    pub fn redis(&self) -> Option<&Arc<RedisLink>> {
        self.redis.as_ref()
    }

    pub fn bus(&self) -> &Arc<Bus> {
        &self.bus
    }

    /// The breaker's state, when Redis is configured.
    pub fn breaker_state(&self) -> Option<BreakerState> {
        self.redis.as_ref().map(|redis| redis.breaker_state())
    }
}

/// The longest wait between attempts to subscribe to a channel again.
const MAX_RESUBSCRIBE_DELAY: Duration = Duration::from_secs(5);

/// Follows Redis pub/sub `channel` for as long as the process runs: `subscribed` is called
/// whenever a subscription starts (at first, and after every reconnection: messages sent
/// meanwhile were missed), `message` with each message's payload. `listening` says whether
/// a subscription is up.
pub async fn follow_channel(
    redis: &RedisLink,
    channel: &str,
    listening: &std::sync::atomic::AtomicBool,
    mut subscribed: impl FnMut(),
    mut message: impl FnMut(&[u8]),
) {
    use futures_util::StreamExt;

    let mut delay = Duration::from_millis(100);
    loop {
        let subscribe = async {
            let mut subscription = redis.client().get_async_pubsub().await?;
            subscription.subscribe(channel).await?;
            anyhow::Ok(subscription)
        };
        match tokio::time::timeout(Duration::from_secs(1), subscribe).await {
            Ok(Ok(mut subscription)) => {
                delay = Duration::from_millis(100);
                listening.store(true, Ordering::Relaxed);
                tracing::debug!(channel, "following a Redis channel");
                subscribed();
                let mut messages = subscription.on_message();
                while let Some(received) = messages.next().await {
                    message(received.get_payload_bytes());
                }
                listening.store(false, Ordering::Relaxed);
                tracing::warn!(
                    channel,
                    "lost the subscription to a Redis channel; subscribing again"
                );
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, channel, "subscribing to a Redis channel failed")
            }
            Err(_) => tracing::debug!(channel, "subscribing to a Redis channel timed out"),
        }
        let jitter = rand::random_range(0.5..1.0);
        tokio::time::sleep(delay.mul_f64(jitter)).await;
        delay = (delay * 2).min(MAX_RESUBSCRIBE_DELAY);
    }
}
