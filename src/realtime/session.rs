//! A realtime session: one subscriber's connection, whatever the transport (SSE or
//! WebSocket), from its admission to its close.
//!
//! [`Realtime::open`] admits a principal holding `realtime:subscribe`: a seat of its
//! tenant's plan ([`seats`](super::seats)), a registration with the hub, the first metered
//! minute. [`Session::next`] yields what the subscriber may see — its tenant's events that
//! its scopes read, broadcasts — and keeps the session honest meanwhile: the seat's lease
//! renewed, a minute metered every minute, the credential checked again when the bus says
//! the tenant's credentials changed and every minute (a revoked key, a suspended tenant,
//! an expired token end the session). [`Session::missed`] reads what a resuming subscriber
//! missed, from the database, under the tenant's RLS; [`super::stream`] puts the two
//! together for the transports that send one stream of events per session.

use std::{sync::Arc, time::Duration};

use secrecy::{ExposeSecret, SecretString};
use tokio::time::{Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    Broadcast, Event, Filter,
    hub::{Delivery, Hub, Registered},
    may_read,
    relay::Relay,
    seats::{self, Seat, Seats},
};
use crate::{
    access::{Principal, Scope},
    auth::{self, AuthService, Authenticated, Presented},
    config::Config,
    db::Db,
    error::Error,
    events::feed::{self, Position, Selection, Since},
    plans::{self, LimitName},
    shared::RedisLink,
    usage::{Metric, meter::Meter},
};

/// Events read from the database per catch-up statement.
const CATCH_UP_BATCH: i64 = 500;

/// How often a session's credential is checked again even when nothing announced a change
/// (an access token's expiry ends the session within this).
const REVERIFY_EVERY: Duration = Duration::from_secs(60);

/// What the realtime transports share: the hub, the relay, the seats and what admitting a
/// subscriber needs.
pub struct Realtime {
    pub hub: Arc<Hub>,
    pub relay: Arc<Relay>,
    seats: Arc<Seats>,
    meter: Arc<Meter>,
    db: Db,
    auth: Arc<AuthService>,
    /// How often an idle stream is sent a heartbeat.
    pub heartbeat: Duration,
    /// `broadcast` messages one connection may send per second.
    pub broadcasts_per_second: u32,
}

/// A credential as presented, kept to check it again while the session lives.
#[derive(Clone)]
pub struct Credential {
    /// Presented in `X-API-Key` (an API key only) rather than as a bearer credential.
    api_key_header: bool,
    secret: SecretString,
}

impl Credential {
    pub fn bearer(secret: &str) -> Self {
        Self {
            api_key_header: false,
            secret: SecretString::from(secret.to_owned()),
        }
    }

    pub fn api_key(secret: &str) -> Self {
        Self {
            api_key_header: true,
            secret: SecretString::from(secret.to_owned()),
        }
    }

    fn presented(&self) -> Presented<'_> {
        let secret = self.secret.expose_secret();
        if self.api_key_header {
            Presented::ApiKey(secret)
        } else {
            Presented::Bearer(secret)
        }
    }
}

/// Why a session ended (for the transport to say so).
#[derive(Debug)]
pub enum Closed {
    /// Events came faster than the subscriber read them; it resumes from its last id.
    SlowConsumer,
    /// The server is shutting down; resume on another instance.
    GoingAway,
    /// The credential no longer verifies or no longer allows this.
    Refused(Error),
}

impl Closed {
    /// The stable code a transport states.
    pub fn code(&self) -> &'static str {
        match self {
            Self::SlowConsumer => "slow_consumer",
            Self::GoingAway => "going_away",
            Self::Refused(error) => error.code(),
        }
    }

    /// A sentence for the client: what happened, and whether to resume.
    pub fn message(&self) -> String {
        match self {
            Self::SlowConsumer => "events came faster than this client read them; reconnect with the last event id received".to_owned(),
            Self::GoingAway => "the server is shutting down; reconnect with the last event id received".to_owned(),
            Self::Refused(error) => error.to_string(),
        }
    }
}

/// What a session yields next.
pub enum Next {
    Event(Arc<Event>),
    Broadcast(Arc<Broadcast>),
    Closed(Closed),
}

/// One batch of what a subscriber missed.
pub struct Missed {
    /// The events it may see, in feed order.
    pub events: Vec<Arc<Event>>,
    /// Where the next batch starts (past events read and filtered out too).
    pub next: Position,
    /// Nothing more was there to read.
    pub done: bool,
}

impl Realtime {
    /// The realtime side of a server: its hub (not yet following: see [`Hub::follow`]),
    /// its relay and its seats, in Redis when `redis` is given.
    pub fn new(
        config: &Config,
        db: Db,
        auth: Arc<AuthService>,
        meter: Arc<Meter>,
        redis: Option<Arc<RedisLink>>,
    ) -> Self {
        let hub = Arc::new(Hub::new(config.realtime_buffer, config.feed_poll_interval));
        Self {
            relay: Arc::new(Relay::new(Arc::clone(&hub), redis.clone())),
            seats: Arc::new(Seats::new(redis)),
            hub,
            meter,
            db,
            auth,
            heartbeat: config.realtime_heartbeat,
            broadcasts_per_second: config.realtime_broadcasts_per_second,
        }
    }

    /// Verifies `credential` as every request's is verified (from `auth::cache` when it
    /// was checked seconds ago), whatever its scopes.
    pub async fn verify(&self, credential: &Credential) -> Result<Authenticated, Error> {
        auth::authenticate(&self.db, &self.auth, credential.presented()).await
    }

    /// Verifies `credential`, and asks for `realtime:subscribe`.
    pub async fn authenticate(&self, credential: &Credential) -> Result<Principal, Error> {
        let authenticated = self.verify(credential).await?;
        authenticated.principal.require(Scope::RealtimeSubscribe)?;
        Ok(authenticated.principal)
    }

    /// Admits `principal` as a subscriber over `transport` (`sse`, `websocket`): 403
    /// `quota_exceeded` when its tenant has every seat of its plan taken, 503 while the
    /// server shuts down. `close` cuts the connection (used if it stops reading).
    pub async fn open(
        self: &Arc<Self>,
        principal: Principal,
        credential: Credential,
        close: CancellationToken,
        transport: &'static str,
    ) -> Result<Session, Error> {
        principal.require(Scope::RealtimeSubscribe)?;
        let going_away = || {
            Error::unavailable(
                "this instance (it is shutting down)",
                Duration::from_secs(1),
            )
        };
        if self.hub.stopping() {
            return Err(going_away());
        }
        let tenant = principal.tenant_id();
        let limits = self
            .db
            .read(&principal, async |tx| plans::effective(tx, tenant).await)
            .await?;
        let seat = self
            .seats
            .take(tenant, limits.limits.get(LimitName::RealtimeConnections))
            .await?;
        let registered = self.hub.register(tenant, close).ok_or_else(going_away)?;
        let dimensions = serde_json::json!({ "transport": transport });
        // A started minute counts.
        self.meter.add(
            tenant,
            Metric::RealtimeConnectionMinutes,
            dimensions.clone(),
            1,
        );
        metrics::counter!("realtime_sessions_total", "transport" => transport).increment(1);
        metrics::gauge!("realtime_connections", "transport" => transport).increment(1.0);
        let interval = |period: Duration| {
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
            interval
        };
        Ok(Session {
            id: Uuid::now_v7(),
            realtime: Arc::clone(self),
            principal,
            credential,
            registered,
            _seat: seat,
            renew: interval(seats::LEASE / 3),
            minute: interval(Duration::from_secs(60)),
            reverify: interval(REVERIFY_EVERY),
            dimensions,
            transport,
        })
    }
}

pub struct Session {
    /// The connection's id (a broadcast is not sent back to the connection that sent it).
    pub id: Uuid,
    realtime: Arc<Realtime>,
    principal: Principal,
    credential: Credential,
    registered: Registered,
    _seat: Seat,
    renew: Interval,
    minute: Interval,
    reverify: Interval,
    dimensions: serde_json::Value,
    /// `sse`, `websocket` or `graphql`: the `transport` of `realtime_connections`, which
    /// counts the session until it is dropped.
    transport: &'static str,
}

impl Drop for Session {
    fn drop(&mut self) {
        metrics::gauge!("realtime_connections", "transport" => self.transport).decrement(1.0);
    }
}

impl Session {
    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// Where a subscriber that names no event to resume after starts: after the later of
    /// the tenant's newest committed event and where the hub was at registration (every
    /// event after that arrives live), skipping what the tenant had committed by the time
    /// it asked. Nothing committed before the subscriber asked is sent, however far the hub
    /// lags or whatever else the cluster has open; nothing after it is missed.
    pub async fn now(&self) -> Result<Since, Error> {
        let now = self
            .realtime
            .db
            .read(&self.principal, async |tx| feed::now_tenant(tx).await)
            .await?;
        Ok(now.merge(&Since::after(self.registered.start)))
    }

    pub fn realtime(&self) -> &Arc<Realtime> {
        &self.realtime
    }

    /// The next thing to send, or why the session is over. Cancel-safe: nothing is lost
    /// when the future is dropped before it completes.
    pub async fn next(&mut self) -> Next {
        loop {
            tokio::select! {
                delivery = self.registered.receiver.recv() => match delivery {
                    Some(Delivery::Event(event)) => {
                        if may_read(&self.principal, &event.stream_type) {
                            return Next::Event(event);
                        }
                    }
                    Some(Delivery::Broadcast(broadcast)) => return Next::Broadcast(broadcast),
                    Some(Delivery::Recheck) => {
                        if let Err(refused) = self.verify().await {
                            return Next::Closed(Closed::Refused(refused));
                        }
                    }
                    Some(Delivery::GoingAway) => return Next::Closed(Closed::GoingAway),
                    None if self.registered.overflowed() => return Next::Closed(Closed::SlowConsumer),
                    None => return Next::Closed(Closed::GoingAway),
                },
                _ = self.renew.tick() => self._seat.renew().await,
                _ = self.minute.tick() => self.realtime.meter.add(
                    self.principal.tenant_id(),
                    Metric::RealtimeConnectionMinutes,
                    self.dimensions.clone(),
                    1,
                ),
                _ = self.reverify.tick() => {
                    if let Err(refused) = self.verify().await {
                        return Next::Closed(Closed::Refused(refused));
                    }
                }
            }
        }
    }

    /// Checks the session's credential again; the principal is replaced by what it now
    /// verifies as (its scopes may have narrowed).
    async fn verify(&mut self) -> Result<(), Error> {
        match self.realtime.authenticate(&self.credential).await {
            Ok(principal) => {
                self.principal = principal;
                Ok(())
            }
            // The database being away says nothing about the credential: keep going.
            Err(error) if error.kind() == crate::error::ErrorKind::Unavailable => Ok(()),
            Err(error) => Err(error),
        }
    }

    /// Replaces the session's credential (a client refreshing its access token): it must
    /// verify, and name the same tenant.
    pub async fn replace_credential(&mut self, credential: Credential) -> Result<(), Error> {
        let principal = self.realtime.authenticate(&credential).await?;
        if principal.tenant_id() != self.principal.tenant_id() {
            return Err(Error::forbidden(
                "tenant_mismatch",
                "a connection stays with the tenant it was opened for; open another for this one",
            ));
        }
        self.principal = principal;
        self.credential = credential;
        Ok(())
    }

    /// One batch of the events after `after` that `filter` selects and the principal may
    /// read, from the database, under the tenant's RLS.
    pub async fn missed(&self, filter: &Filter, after: Position) -> Result<Missed, Error> {
        let selection = Selection {
            stream_types: filter.stream_types(),
            stream_id: filter.stream_id,
        };
        let read = self
            .realtime
            .db
            .read(&self.principal, async |tx| {
                feed::poll_tenant(tx, &selection, after, CATCH_UP_BATCH).await
            })
            .await?;
        let done = read.len() < CATCH_UP_BATCH as usize;
        let next = read.last().map_or(after, feed::FeedEvent::position);
        let events = read
            .iter()
            .map(Event::from_feed)
            .filter(|event| may_read(&self.principal, &event.stream_type) && filter.matches(event))
            .collect();
        Ok(Missed { events, next, done })
    }
}
