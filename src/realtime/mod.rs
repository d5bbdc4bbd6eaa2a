//! Realtime delivery of committed events (Server-Sent Events, WebSocket) and ephemeral
//! messages between a tenant's clients.
//!
//! **One source, fanned out.** Each instance runs one follower of the committed-event feed
//! ([`hub::Hub::follow`]): woken by `LISTEN tenantry_feed` (a statement trigger notifies
//! at every commit that appended events), and on a timer in case a notification is lost.
//! It hands each event to this instance's subscribers of the event's tenant, and nobody
//! else's. A write on any instance reaches subscribers on every instance through the
//! database alone. Ephemeral `broadcast` messages go through Redis pub/sub ([`relay`]),
//! or stay in process without Redis.
//!
//! **Nothing missed.** An event's id is its feed position ([`Cursor`], opaque to
//! clients). A subscriber that names the last one it saw gets every later event once, in
//! feed order: a session registers for live events first, then reads what it missed from
//! the database under its tenant's RLS ([`session`]), then drops live events it already
//! sent. A subscriber whose buffer fills (it reads slower than events come) is closed
//! with a stated reason, never slowed down for others; it resumes from its last id.
//!
//! **Bounded.** Connections per tenant are the plan's `realtime_connections` ([`seats`]),
//! counted across instances in Redis; their minutes are metered. An event is built once
//! ([`Event`]) and shared by every subscriber; a subscriber's buffer holds at most
//! `TENANTRY_REALTIME_BUFFER` of them.

pub mod hub;
pub mod relay;
pub mod seats;
pub mod session;
pub mod stream;

use std::{fmt, str::FromStr, sync::Arc};

use bytes::Bytes;
use serde::Serialize;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{
    access::{Principal, Scope},
    error::Error,
    events::{
        feed::{FeedEvent, Position},
        pattern::EventTypePattern,
    },
    id::TenantId,
};

pub use hub::Hub;

/// An event's id on the wire: its feed position. Clients treat it as opaque and hand it
/// back (`Last-Event-ID`, `after`) to resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor(pub Position);

impl Cursor {
    /// The refusal of an event id this server did not give out.
    pub fn invalid() -> Error {
        Error::malformed(
            "invalid_event_id",
            "the event id to resume after is not one this server gave out; use an event's `id` as received",
        )
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.0.txid, self.0.seq)
    }
}

impl FromStr for Cursor {
    type Err = Error;

    fn from_str(value: &str) -> Result<Self, Error> {
        let invalid = Cursor::invalid;
        let (txid, seq) = value.split_once('-').ok_or_else(invalid)?;
        Ok(Cursor(Position {
            txid: txid.parse().map_err(|_| invalid())?,
            seq: seq.parse().map_err(|_| invalid())?,
        }))
    }
}

/// A committed event as subscribers receive it, serialised once for all of them.
#[derive(Debug)]
pub struct Event {
    pub tenant: TenantId,
    pub position: Position,
    pub event_type: String,
    pub stream_type: String,
    pub stream_id: Uuid,
    /// `{"id", "type", "stream_type", "stream_id", "version", "occurred_at", "data"}`.
    pub json: Bytes,
}

/// The JSON form of an [`Event`]; documented as the `RealtimeEvent` schema.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = RealtimeEvent, example = json!({
    "id": "812-4031", "type": "order.placed", "stream_type": "order",
    "stream_id": "01939a52-7f9c-7d2e-9a51-3c2b8f1e0a11", "version": 1,
    "occurred_at": "2026-12-06T10:15:00Z",
    "data": {"customer_id": "01939a52-7f9c-7d2e-9a51-3c2b8f1e0a12", "currency": "EUR", "total_cents": 2500}
}))]
pub struct WireEvent<'a> {
    /// The event's position in the feed: opaque; hand it back to resume after it.
    #[schema(value_type = String)]
    pub id: String,
    /// `<stream type>.<what happened>`: `order.placed`, `product.stock_changed`, …
    #[serde(rename = "type")]
    #[schema(value_type = String)]
    pub event_type: &'a str,
    /// `order`, `product` or `customer`.
    #[schema(value_type = String)]
    pub stream_type: &'a str,
    /// The order, product or customer the event is about.
    pub stream_id: Uuid,
    /// The stream's version after this event.
    pub version: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// What happened: the event's own fields.
    #[schema(value_type = Object)]
    pub data: &'a serde_json::Value,
}

impl Event {
    pub fn from_feed(event: &FeedEvent) -> Arc<Event> {
        let wire = WireEvent {
            id: Cursor(event.position()).to_string(),
            event_type: &event.event_type,
            stream_type: &event.stream_type,
            stream_id: event.stream_id,
            version: event.version,
            occurred_at: event.occurred_at,
            data: &event.data,
        };
        let json = serde_json::to_vec(&wire).unwrap_or_else(|_| b"{}".to_vec());
        Arc::new(Event {
            tenant: event.tenant_id,
            position: event.position(),
            event_type: event.event_type.clone(),
            stream_type: event.stream_type.clone(),
            stream_id: event.stream_id,
            json: Bytes::from(json),
        })
    }

    pub fn cursor(&self) -> Cursor {
        Cursor(self.position)
    }
}

/// The stream types events come in, each with the plural topic that names it in channels
/// and the scope that may read it.
const STREAMS: &[(&str, &str, Scope)] = &[
    ("order", "orders", Scope::OrdersRead),
    ("product", "products", Scope::CatalogRead),
    ("customer", "customers", Scope::CatalogRead),
];

/// The scope that may read events of `stream_type` (none for an unknown type: nobody).
fn reading_scope(stream_type: &str) -> Option<Scope> {
    STREAMS
        .iter()
        .find(|(stream, _, _)| *stream == stream_type)
        .map(|(_, _, scope)| *scope)
}

/// Whether `principal` may see events of `stream_type`: the scope that reads the stream's
/// resource (`orders:read` for orders, `catalog:read` for products and customers).
pub fn may_read(principal: &Principal, stream_type: &str) -> bool {
    reading_scope(stream_type).is_some_and(|scope| principal.scopes().contains(scope))
}

/// What a subscription wants: event types and, optionally, one stream.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Any of these types; every type when empty.
    pub types: Vec<EventTypePattern>,
    pub stream_id: Option<Uuid>,
    /// Confined to one stream type (a channel such as `orders` is).
    pub stream_type: Option<String>,
}

impl Filter {
    /// Event type patterns as a client wrote them (`order.*`, `product.stock_changed`, `*`);
    /// a bad one is `validation_failed` on `types`.
    pub fn parse_types<'a>(
        patterns: impl IntoIterator<Item = &'a str>,
    ) -> Result<Vec<EventTypePattern>, Error> {
        patterns
            .into_iter()
            .map(|pattern| {
                EventTypePattern::parse(pattern)
                    .map_err(|message| Error::invalid("types", format!("{pattern:?} {message}")))
            })
            .collect()
    }

    pub fn matches(&self, event: &Event) -> bool {
        self.stream_type
            .as_deref()
            .is_none_or(|stream| stream == event.stream_type)
            && self.stream_id.is_none_or(|id| id == event.stream_id)
            && (self.types.is_empty() || self.types.iter().any(|t| t.matches(&event.event_type)))
    }

    /// The stream types the database read for a catch-up may be narrowed to (`None`: all).
    pub fn stream_types(&self) -> Option<Vec<String>> {
        if let Some(stream) = &self.stream_type {
            return Some(vec![stream.clone()]);
        }
        if self.types.is_empty() {
            return None;
        }
        let mut streams = Vec::new();
        for pattern in &self.types {
            let stream = pattern.stream_type()?;
            if !streams.iter().any(|s| s == stream) {
                streams.push(stream.to_owned());
            }
        }
        Some(streams)
    }
}

/// A channel of the WebSocket protocol: `<topic>` or `<topic>:<key>`. The topics `orders`,
/// `products` and `customers` carry those streams' events (`orders:<id>` one order's);
/// any channel carries clients' `broadcast` messages.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Channel(String);

impl Channel {
    pub fn parse(value: &str) -> Result<Self, Error> {
        let invalid = || {
            Error::invalid(
                "channel",
                "a channel is a topic of 1-32 lowercase letters, digits, `_` or `-`, optionally followed by `:` and a key of 1-64 letters, digits, `_`, `-` or `.`",
            )
        };
        let (topic, key) = match value.split_once(':') {
            Some((topic, key)) => (topic, Some(key)),
            None => (value, None),
        };
        let topic_ok = (1..=32).contains(&topic.len())
            && topic
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-');
        let key_ok = key.is_none_or(|key| {
            (1..=64).contains(&key.len())
                && key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
        });
        if topic_ok && key_ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(invalid())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The events this channel carries, if it carries any: `orders` → every order event,
    /// `orders:<id>` → that order's. Refused when the principal may not read them, or the
    /// key of an event topic is not an id.
    pub fn events(&self, principal: &Principal) -> Result<Option<Filter>, Error> {
        let (topic, key) = match self.0.split_once(':') {
            Some((topic, key)) => (topic, Some(key)),
            None => (self.0.as_str(), None),
        };
        let Some((stream, _, scope)) = STREAMS.iter().find(|(_, t, _)| *t == topic) else {
            return Ok(None);
        };
        principal.require(*scope)?;
        let stream_id = key
            .map(|key| {
                key.parse::<Uuid>().map_err(|_| {
                    Error::invalid(
                        "channel",
                        format!("`{topic}:<id>` takes the id of one of your {topic}"),
                    )
                })
            })
            .transpose()?;
        Ok(Some(Filter {
            types: Vec::new(),
            stream_id,
            stream_type: Some((*stream).to_owned()),
        }))
    }
}

/// An ephemeral message from a client to a channel of its tenant: not stored, delivered to
/// the channel's subscribers connected at that moment, on every instance.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub struct Broadcast {
    pub tenant: TenantId,
    pub channel: String,
    /// The connection that sent it, which does not receive it back.
    pub origin: Uuid,
    /// `{"type": "broadcast", "channel", "data"}`, as subscribers receive it.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let cursor = Cursor(Position {
            txid: 812,
            seq: 4031,
        });
        assert_eq!(cursor.to_string(), "812-4031");
        assert_eq!("812-4031".parse::<Cursor>().unwrap(), cursor);
        for bad in ["", "812", "a-1", "1-b", "1-2-3", "-1-2"] {
            assert!(bad.parse::<Cursor>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_filter_narrows_the_catch_up_to_the_streams_its_types_name() {
        let filter = Filter {
            types: vec![
                EventTypePattern::parse("order.*").unwrap(),
                EventTypePattern::parse("product.stock_changed").unwrap(),
            ],
            ..Filter::default()
        };
        assert_eq!(
            filter.stream_types(),
            Some(vec!["order".to_owned(), "product".to_owned()])
        );
        let everything = Filter {
            types: vec![EventTypePattern::parse("*").unwrap()],
            ..Filter::default()
        };
        assert_eq!(everything.stream_types(), None);
    }

    #[test]
    fn channels_have_a_topic_and_an_optional_key() {
        for ok in ["orders", "orders:0193", "room-1:lobby.main", "a"] {
            assert!(Channel::parse(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            "",
            "Orders",
            "orders:",
            ":x",
            "a:b:c",
            &"x".repeat(33),
            "r:a b",
        ] {
            assert!(Channel::parse(bad).is_err(), "{bad:?}");
        }
    }
}
