//! The subscription root: the tenant's committed events as they happen, over the
//! WebSocket `GET /graphql` upgrades to (`graphql-transport-ws`).
//!
//! A subscription is a realtime session like a `/v1/events` stream, and follows its rules
//! because it is one ([`realtime::stream`]): it needs `realtime:subscribe`, carries only
//! the stream types the credential reads (`orders:read`, `catalog:read`), takes a seat of
//! the plan's `realtime_connections`, is metered in connection minutes (transport
//! `graphql`), and its credential is checked again while it lives. Naming the last event
//! received in `after` delivers every event committed after it once, in order, then the
//! live ones. When the session closes, the stream's last item is an error with the reason
//! under `extensions.code` (`slow_consumer`, `going_away`, or the credential's refusal),
//! and the subscription completes.

use std::sync::Arc;

use async_graphql::{Context, ErrorExtensions, ID, Json, SimpleObject};
use futures_util::{Stream, StreamExt};
use serde::Deserialize;
use time::OffsetDateTime;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::{
    context::Caller,
    error::{GqlResult, parse_id, to_graphql},
};
use crate::{
    access::Scope,
    error::Error,
    realtime::{
        Cursor, Event, Filter,
        session::{Credential, Realtime},
        stream::{self, Ended, Resume},
    },
};

/// What a connection that serves subscriptions gives each of its operations: the
/// credential to open sessions with (each session checks it again as it lives), the
/// connection's cut (a subscriber that overflowed and stopped reading), and the count of
/// its open streams.
#[derive(Clone)]
pub struct Subscriber {
    pub realtime: Arc<Realtime>,
    pub credential: Credential,
    pub close: CancellationToken,
    pub streams: Streams,
}

/// How many event streams a connection has open: at shutdown it waits for each to say
/// `going_away` before closing the socket.
#[derive(Clone)]
pub struct Streams(Arc<watch::Sender<usize>>);

impl Default for Streams {
    fn default() -> Self {
        Self(Arc::new(watch::Sender::new(0)))
    }
}

impl Streams {
    fn opened(&self) -> OpenStream {
        self.0.send_modify(|open| *open += 1);
        OpenStream(self.clone())
    }

    /// Completes when no stream is open.
    pub async fn ended(&self) {
        let mut open = self.0.subscribe();
        let _ = open.wait_for(|open| *open == 0).await;
    }
}

/// One open stream, counted until dropped.
struct OpenStream(Streams);

impl Drop for OpenStream {
    fn drop(&mut self) {
        self.0.0.send_modify(|open| *open = open.saturating_sub(1));
    }
}

/// A committed event, as `/v1/events` sends it (the `RealtimeEvent` of the REST API).
#[derive(SimpleObject)]
pub struct RealtimeEvent {
    /// The event's position in the feed: opaque; pass it as `after` to resume after it.
    id: String,
    /// `<stream type>.<what happened>`: `order.placed`, `product.stock_changed`, …
    #[graphql(name = "type")]
    event_type: String,
    /// `order`, `product` or `customer`.
    stream_type: String,
    /// The order, product or customer the event is about.
    stream_id: ID,
    /// The stream's version after this event.
    version: i32,
    occurred_at: OffsetDateTime,
    /// What happened: the event's own fields.
    data: Json<serde_json::Value>,
}

/// The part of an event's shared JSON its [`Event`] does not hold apart.
#[derive(Deserialize)]
struct Body {
    version: i32,
    #[serde(with = "time::serde::rfc3339")]
    occurred_at: OffsetDateTime,
    data: serde_json::Value,
}

impl RealtimeEvent {
    fn of(event: &Event) -> GqlResult<Self> {
        let body: Body = serde_json::from_slice(&event.json)
            .map_err(|e| to_graphql(Error::internal(anyhow::anyhow!("an event's JSON: {e}"))))?;
        Ok(Self {
            id: event.cursor().to_string(),
            event_type: event.event_type.clone(),
            stream_type: event.stream_type.clone(),
            stream_id: ID(event.stream_id.to_string()),
            version: body.version,
            occurred_at: body.occurred_at,
            data: Json(body.data),
        })
    }
}

pub struct Subscription;

#[async_graphql::Subscription]
impl Subscription {
    /// The tenant's committed events as they happen, in commit order: order events
    /// (`order.placed`, `order.paid`, …; need `orders:read`), product and customer events
    /// (`product.stock_changed`, `customer.created`, …; need `catalog:read`). Needs
    /// `realtime:subscribe`, and one of the plan's `realtime_connections` while open.
    ///
    /// `after`: the `id` of the last event received — every event committed after it
    /// arrives once, in order, then the live ones. The stream ends with an error whose
    /// `extensions.code` says why: `slow_consumer` (resume with `after`), `going_away` (the
    /// server shuts down; resume with `after`), or the credential's refusal
    /// (`unauthenticated`, `tenant_suspended`, …).
    async fn events(
        &self,
        ctx: &Context<'_>,
        #[graphql(
            desc = "Only these event types: types (`order.paid`), prefixes (`order.*`) \
                          or `*`. Every type the credential may read when absent."
        )]
        types: Option<Vec<String>>,
        #[graphql(desc = "Only this stream's events: one order's, product's or customer's id.")]
        stream_id: Option<ID>,
        #[graphql(desc = "Resume after this event id (an event's `id` as received).")]
        after: Option<String>,
    ) -> Result<impl Stream<Item = GqlResult<RealtimeEvent>> + use<>, async_graphql::Error> {
        let principal = &Caller::of(ctx).principal;
        let Some(subscriber) = ctx.data_opt::<Subscriber>() else {
            return Err(to_graphql(Error::malformed(
                "upgrade_required",
                "subscriptions are served over a WebSocket: `GET /graphql` with \
                 `Sec-WebSocket-Protocol: graphql-transport-ws`",
            )));
        };
        principal
            .require(Scope::RealtimeSubscribe)
            .map_err(to_graphql)?;
        let filter = Filter {
            types: Filter::parse_types(types.iter().flatten().map(String::as_str))
                .map_err(to_graphql)?,
            stream_id: stream_id
                .as_ref()
                .map(|id| parse_id::<Uuid>(id, "streamId"))
                .transpose()?,
            stream_type: None,
        };
        let after = after
            .as_deref()
            .map(|after| after.trim().parse::<Cursor>())
            .transpose()
            .map_err(to_graphql)?;
        let session = subscriber
            .realtime
            .open(
                principal.clone(),
                subscriber.credential.clone(),
                subscriber.close.clone(),
                "graphql",
            )
            .await
            .map_err(to_graphql)?;
        let resume = Resume::from(&session, after).await.map_err(to_graphql)?;
        let open = subscriber.streams.opened();
        Ok(stream::events(session, filter, resume).map(move |item| {
            let _counted = &open;
            match item {
                Ok(event) => RealtimeEvent::of(&event),
                Err(ended) => Err(ended_error(ended)),
            }
        }))
    }
}

/// Why a stream ended, as its last GraphQL error.
fn ended_error(ended: Ended) -> async_graphql::Error {
    let (code, message) = (ended.code(), ended.message());
    match ended.into_error() {
        Some(error) => to_graphql(error),
        None => async_graphql::Error::new(message).extend_with(|_, e| e.set("code", code)),
    }
}
