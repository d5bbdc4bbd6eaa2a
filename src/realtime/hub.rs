//! The hub: this instance's one follower of the committed-event feed, and the registry of
//! its realtime subscribers, by tenant.
//!
//! The follower ([`Hub::follow`]) reads the feed as the platform role, from the feed's
//! head at start-up, whenever a commit notifies `tenantry_feed` and on a timer. Each event
//! is built once and handed to the registrations of its own tenant only — a
//! registration is made for a principal's tenant and filed under it, so no event can
//! reach another tenant's subscriber.
//!
//! A registration's buffer is bounded. When an event finds it full, the subscriber is
//! too slow: its registration is dropped at once (so it holds no more memory, however many
//! events it goes on missing), it is told why as soon as it reads again, and its
//! connection is cut after [`OVERFLOW_GRACE`] if it never does.
//!
//! How far behind the follower is, is measured apart from it ([`Hub::measure_lag`], every
//! [`LAG_SAMPLE_PERIOD`]): the committed events after its position, counted and aged in
//! the database, as `events_feed_lag_events` and `events_feed_lag_seconds`. A follower that
//! is stuck, or held back by an old open transaction, is seen growing there; one that keeps
//! up shows zero.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use sqlx::postgres::PgListener;
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::{Broadcast, Event};
use crate::{
    db::{Change, Db},
    events::feed::{self, Position, Subscriber},
    id::TenantId,
};

/// The channel commits that append events notify (`migrations/0017_realtime.sql`).
pub const FEED_CHANNEL: &str = "tenantry_feed";

/// Events read from the feed per statement.
const BATCH: i64 = 1000;

/// How often the follower's lag is measured.
pub const LAG_SAMPLE_PERIOD: Duration = Duration::from_secs(5);

/// How long a subscriber that overflowed has to read the reason before its connection is
/// cut.
pub const OVERFLOW_GRACE: Duration = Duration::from_secs(5);

/// The first wait before reading the feed again when a notification found nothing yet
/// (the notified commit is behind an older transaction still open); it doubles up to the
/// poll interval.
const RETRY_AFTER_NOTIFY: Duration = Duration::from_millis(5);

/// What a registration receives.
#[derive(Debug, Clone)]
pub enum Delivery {
    Event(Arc<Event>),
    Broadcast(Arc<Broadcast>),
    /// Something about the tenant's credentials changed: check the subscriber's again.
    Recheck,
    /// The server is shutting down.
    GoingAway,
}

struct Registration {
    sender: mpsc::Sender<Delivery>,
    /// Cuts the subscriber's connection.
    close: CancellationToken,
    overflowed: Arc<AtomicBool>,
    /// Cancelled when the subscriber goes: a connection that outlives its stream (an SSE
    /// client reusing it) is not cut.
    gone: CancellationToken,
}

#[derive(Default)]
struct Inner {
    /// The position of the last event handed out: a new registration receives every event
    /// after it.
    position: Position,
    /// The follower has read the feed's head (before that, `position` means nothing).
    following: bool,
    tenants: HashMap<TenantId, HashMap<u64, Registration>>,
    next_id: u64,
}

pub struct Hub {
    inner: Mutex<Inner>,
    buffer: usize,
    poll_interval: Duration,
    /// Registrations alive (for the drain at shutdown).
    live: AtomicUsize,
    gone: Notify,
    stopping: CancellationToken,
    /// Woken after events were handed out (other followers of the feed: webhooks).
    wakers: Mutex<Vec<Arc<Notify>>>,
}

/// A subscriber's place in the hub; dropping it unregisters.
pub struct Registered {
    hub: Arc<Hub>,
    tenant: TenantId,
    id: u64,
    /// What the hub hands this subscriber.
    pub receiver: mpsc::Receiver<Delivery>,
    /// Every event after this one arrives through `receiver`.
    pub start: Position,
    overflowed: Arc<AtomicBool>,
    gone: CancellationToken,
}

impl Registered {
    /// Whether the hub dropped this subscriber for reading too slowly.
    pub fn overflowed(&self) -> bool {
        self.overflowed.load(Ordering::Relaxed)
    }
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.gone.cancel();
        let mut inner = self.hub.inner();
        if let Some(registrations) = inner.tenants.get_mut(&self.tenant) {
            registrations.remove(&self.id);
            if registrations.is_empty() {
                inner.tenants.remove(&self.tenant);
            }
        }
        drop(inner);
        self.hub.live.fetch_sub(1, Ordering::Relaxed);
        metrics::gauge!("realtime_subscribers").decrement(1.0);
        self.hub.gone.notify_waiters();
    }
}

impl Hub {
    pub fn new(buffer: usize, poll_interval: Duration) -> Self {
        Self {
            inner: Mutex::new(Inner::default()),
            buffer,
            poll_interval,
            live: AtomicUsize::new(0),
            gone: Notify::new(),
            stopping: CancellationToken::new(),
            wakers: Mutex::new(Vec::new()),
        }
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The position of the last event handed out.
    fn position(&self) -> Position {
        self.inner().position
    }

    /// Whether the server is shutting down (new subscribers are refused).
    pub fn stopping(&self) -> bool {
        self.stopping.is_cancelled()
    }

    /// Completes once the server is shutting down (for a connection that outlives its
    /// subscribers, to close itself).
    pub async fn stopped(&self) {
        self.stopping.cancelled().await;
    }

    /// Registers a subscriber of `tenant`; `close` cuts its connection if it overflows and
    /// then never reads. `None` once the server is shutting down.
    pub fn register(
        self: &Arc<Self>,
        tenant: TenantId,
        close: CancellationToken,
    ) -> Option<Registered> {
        if self.stopping() {
            return None;
        }
        let (sender, receiver) = mpsc::channel(self.buffer);
        let overflowed = Arc::new(AtomicBool::new(false));
        let gone = CancellationToken::new();
        let mut inner = self.inner();
        let id = inner.next_id;
        inner.next_id += 1;
        let start = inner.position;
        inner.tenants.entry(tenant).or_default().insert(
            id,
            Registration {
                sender,
                close,
                overflowed: Arc::clone(&overflowed),
                gone: gone.clone(),
            },
        );
        drop(inner);
        self.live.fetch_add(1, Ordering::Relaxed);
        metrics::gauge!("realtime_subscribers").increment(1.0);
        Some(Registered {
            hub: Arc::clone(self),
            tenant,
            id,
            receiver,
            start,
            overflowed,
            gone,
        })
    }

    /// Wakes `notify` whenever events were handed out.
    pub fn wake_on_events(&self, notify: Arc<Notify>) {
        self.wakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(notify);
    }

    /// Hands committed events, in feed order, to their tenants' subscribers.
    fn hand_out(&self, events: &[feed::FeedEvent]) {
        let Some(last) = events.last() else {
            return;
        };
        let now = time::OffsetDateTime::now_utc();
        let mut inner = self.inner();
        for event in events {
            if let Some(registrations) = inner.tenants.get_mut(&event.tenant_id) {
                let event = Event::from_feed(event);
                offer(registrations, &Delivery::Event(event));
            }
            let lag = (now - event.occurred_at).as_seconds_f64().max(0.0);
            metrics::histogram!("realtime_feed_lag_seconds").record(lag);
        }
        inner.position = last.position();
        drop(inner);
        metrics::counter!("realtime_feed_events_total").increment(events.len() as u64);
        for waker in self
            .wakers
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
        {
            waker.notify_one();
        }
    }

    /// Hands a client's broadcast to this instance's subscribers of its tenant.
    pub fn broadcast(&self, broadcast: Arc<Broadcast>) {
        let mut inner = self.inner();
        if let Some(registrations) = inner.tenants.get_mut(&broadcast.tenant) {
            offer(registrations, &Delivery::Broadcast(broadcast));
        }
    }

    /// Asks the subscribers whose credentials `change` may have invalidated to check them
    /// again (a revoked key, a suspended tenant close their streams within moments).
    pub fn recheck(&self, change: &Change) {
        let mut inner = self.inner();
        match change {
            Change::Credentials { tenant } | Change::Tenant { tenant } => {
                if let Some(registrations) = inner.tenants.get_mut(tenant) {
                    offer(registrations, &Delivery::Recheck);
                }
            }
            Change::AllCredentials | Change::Everything => {
                for registrations in inner.tenants.values_mut() {
                    offer(registrations, &Delivery::Recheck);
                }
            }
            Change::Resource { .. } => {}
        }
    }

    /// Refuses new subscribers and tells every current one to go (they resume elsewhere).
    pub fn shut_down(&self) {
        self.stopping.cancel();
        let mut inner = self.inner();
        for registrations in inner.tenants.values_mut() {
            offer(registrations, &Delivery::GoingAway);
        }
    }

    /// Waits until every subscriber has gone, or `deadline` has passed.
    pub async fn drained(&self, deadline: Duration) {
        let _ = tokio::time::timeout(deadline, async {
            loop {
                let gone = self.gone.notified();
                if self.live.load(Ordering::Relaxed) == 0 {
                    return;
                }
                gone.await;
            }
        })
        .await;
    }

    /// Follows the committed-event feed until shutdown, handing every event to its tenant's
    /// subscribers here.
    pub async fn follow(self: Arc<Self>, db: Db) {
        let mut failures = 0u32;
        let start = loop {
            match feed::head(&db).await {
                Ok(head) => break head,
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, "realtime: reading the feed's head failed; retrying");
                    tokio::select! {
                        () = self.stopping.cancelled() => return,
                        () = tokio::time::sleep(backoff(failures)) => {}
                    }
                }
            }
        };
        {
            let mut inner = self.inner();
            inner.position = start;
            inner.following = true;
        }
        let mut listener: Option<PgListener> = None;
        let mut retry: Option<Duration> = None;
        loop {
            if listener.is_none() {
                match db.listen(FEED_CHANNEL).await {
                    Ok(listening) => listener = Some(listening),
                    Err(error) => {
                        tracing::warn!(%error, "realtime: cannot LISTEN for commits; polling the feed every interval")
                    }
                }
            }
            let wait = retry.unwrap_or(self.poll_interval);
            let notified = tokio::select! {
                () = self.stopping.cancelled() => return,
                () = tokio::time::sleep(wait) => false,
                received = notification(&mut listener) => {
                    if let Err(error) = received {
                        tracing::warn!(%error, "realtime: lost the LISTEN connection; reconnecting");
                        listener = None;
                    }
                    true
                }
            };
            match self.read_feed(&db).await {
                Ok(0) if notified => retry = Some(RETRY_AFTER_NOTIFY),
                Ok(0) => {
                    retry = retry
                        .map(|r| r * 2)
                        .filter(|next| *next < self.poll_interval);
                }
                Ok(_) => {
                    failures = 0;
                    retry = None;
                }
                Err(error) => {
                    failures += 1;
                    tracing::warn!(%error, "realtime: reading the feed failed; retrying");
                    retry = Some(backoff(failures));
                }
            }
        }
    }

    /// Measures every `period`, until shutdown, how far behind the follower is: the
    /// committed events after its position (`events_feed_lag_events`) and the age of the
    /// oldest of them (`events_feed_lag_seconds`), both 0 when it is caught up. A failed
    /// measurement leaves the gauges as they were.
    pub async fn measure_lag(self: Arc<Self>, db: Db, period: Duration) {
        let mut ticks = tokio::time::interval(period);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = self.stopping.cancelled() => return,
                _ = ticks.tick() => {}
            }
            let (following, position) = {
                let inner = self.inner();
                (inner.following, inner.position)
            };
            if !following {
                continue;
            }
            match feed::backlog(&db, position).await {
                Ok((events, age)) => {
                    metrics::gauge!("events_feed_lag_events").set(events as f64);
                    metrics::gauge!("events_feed_lag_seconds").set(age.as_secs_f64());
                }
                Err(error) => tracing::debug!(%error, "realtime: measuring the feed's lag failed"),
            }
        }
    }

    /// Reads everything committed since the last position and hands it out; the number of
    /// events.
    async fn read_feed(&self, db: &Db) -> Result<usize, crate::error::Error> {
        let mut total = 0;
        loop {
            let after = self.position();
            let events = feed::poll(db, Subscriber::Platform, after, BATCH).await?;
            self.hand_out(&events);
            total += events.len();
            if events.len() < BATCH as usize {
                return Ok(total);
            }
        }
    }
}

/// The next notification (or a lost connection); never completes without a listener.
async fn notification(listener: &mut Option<PgListener>) -> Result<(), sqlx::Error> {
    match listener {
        // `None`: the connection was lost; the next call reconnects. Read the feed now:
        // what it missed meanwhile was not notified.
        Some(listener) => listener.try_recv().await.map(drop),
        None => std::future::pending().await,
    }
}

fn backoff(failures: u32) -> Duration {
    Duration::from_millis(100 * 2u64.pow(failures.min(6))).min(Duration::from_secs(5))
}

/// Offers `delivery` to each registration; one whose buffer is full is dropped as too slow.
fn offer(registrations: &mut HashMap<u64, Registration>, delivery: &Delivery) {
    registrations.retain(|_, registration| {
        match registration.sender.try_send(delivery.clone()) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                registration.overflowed.store(true, Ordering::Relaxed);
                metrics::counter!("realtime_overflows_total").increment(1);
                let close = registration.close.clone();
                let gone = registration.gone.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        () = tokio::time::sleep(OVERFLOW_GRACE) => close.cancel(),
                        () = gone.cancelled() => {}
                    }
                });
                false
            }
            // The subscriber is going; its `Registered` removes the entry.
            Err(mpsc::error::TrySendError::Closed(_)) => true,
        }
    });
}
