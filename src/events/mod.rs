//! The event store: append-only streams of domain events, and the committed-event feed.
//!
//! Appends go into the caller's tenant transaction, with the expected version as the next
//! row of the stream: the primary key `(tenant_id, stream_id, version)` turns a concurrent
//! append into a unique violation, which the API reports as 409 `concurrent_modification`
//! — never a lost update. The request role may insert and read events, never update or
//! delete them (no grant).
//!
//! [`feed`] lets other capabilities follow committed events from a resumable position;
//! [`pattern`] is how they name the event types they want.

pub mod feed;
pub mod pattern;

use serde_json::Value;
use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{access::Principal, id::TenantId, observability};

/// An event about to be appended.
pub struct NewEvent {
    pub stream_type: &'static str,
    pub stream_id: Uuid,
    /// The version this event gives the stream: the current version + 1.
    pub version: i32,
    /// `<stream type>.<what happened>`, e.g. `order.placed`.
    pub event_type: String,
    /// When it happened: from [`now`], so what the aggregate saw is what is stored.
    pub occurred_at: OffsetDateTime,
    pub data: Value,
    pub metadata: Value,
}

/// The current time at the database's precision (microseconds), so a value computed
/// here equals the same value read back.
pub fn now() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_microsecond(now.microsecond()).unwrap_or(now)
}

/// An event as stored.
#[derive(Debug, Clone, FromRow)]
pub struct StoredEvent {
    pub event_id: Uuid,
    pub stream_id: Uuid,
    pub version: i32,
    pub event_type: String,
    pub data: Value,
    pub metadata: Value,
    pub occurred_at: OffsetDateTime,
}

/// Where an event came from, for its metadata:
/// - `actor`: who (`user:<id>` or `api_key:<id>`);
/// - `command`: what they asked for (`order.confirm`);
/// - `request_id`: the id the server minted for the request, which every event of it
///   shares, also in the logs and on the response (`X-Request-Id`);
/// - `client_request_id`: the correlation id the client sent (its `X-Request-Id`), or
///   null; the client's to choose, so never relied on to be unique;
/// - `causation_id`: the message that caused this event. For an API command that is the
///   request itself; an event caused by another event (a process reacting to the feed)
///   will name that event's id here.
pub fn metadata(principal: &Principal, command: &str) -> Value {
    let request_id = observability::current_request_id();
    serde_json::json!({
        "actor": principal.actor().to_string(),
        "command": command,
        "request_id": request_id,
        "client_request_id": observability::current_client_request_id(),
        "causation_id": request_id,
    })
}

/// Appends events in one statement. Fails with the `domain_events_pkey` violation when
/// another writer appended the same version first.
#[tracing::instrument(skip_all, fields(events = events.len()))]
pub async fn append(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    events: &[NewEvent],
) -> Result<(), sqlx::Error> {
    let mut builder = sqlx::QueryBuilder::new(
        "insert into domain_events (tenant_id, stream_type, stream_id, version, event_id, event_type, occurred_at, data, metadata) ",
    );
    builder.push_values(events, |mut row, event| {
        row.push_bind(tenant_id)
            .push_bind(event.stream_type)
            .push_bind(event.stream_id)
            .push_bind(event.version)
            .push_bind(Uuid::now_v7())
            .push_bind(&event.event_type)
            .push_bind(event.occurred_at)
            .push_bind(&event.data)
            .push_bind(&event.metadata);
    });
    builder.build().execute(conn).await.map(drop)
}

/// Every stream of one type in one tenant, each stream's events oldest first and the
/// streams in id order: what a rebuild replays. The tenant is named in the query, not left
/// to RLS, because the platform role (which rebuilds) may read every tenant's events.
#[tracing::instrument(skip_all)]
pub async fn load_streams(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    stream_type: &str,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as(
        "select event_id, stream_id, version, event_type, data, metadata, occurred_at
         from domain_events where tenant_id = $1 and stream_type = $2 order by stream_id, version",
    )
    .bind(tenant_id)
    .bind(stream_type)
    .fetch_all(conn)
    .await
}

/// The events of several streams, each oldest first, in one statement.
#[tracing::instrument(skip_all)]
pub async fn load_many(
    conn: &mut PgConnection,
    stream_ids: &[Uuid],
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    sqlx::query_as(
        "select event_id, stream_id, version, event_type, data, metadata, occurred_at
         from domain_events where stream_id = any($1) order by stream_id, version",
    )
    .bind(stream_ids)
    .fetch_all(conn)
    .await
}

/// A stream's events, oldest first, up to `up_to_version` when given.
#[tracing::instrument(skip_all)]
pub async fn load(
    conn: &mut PgConnection,
    stream_id: Uuid,
    up_to_version: Option<i32>,
) -> Result<Vec<StoredEvent>, sqlx::Error> {
    let statement = load_statement(up_to_version.is_some());
    let query = sqlx::query_as(statement).bind(stream_id);
    let query = match up_to_version {
        Some(version) => query.bind(version),
        None => query,
    };
    query.fetch_all(conn).await
}

/// The statement [`load`] sends: `$1` is the stream, `$2` the last version when bounded. One
/// text per shape rather than a catch-all, so each keeps its own index-ordered plan. Public
/// so that a test can `EXPLAIN` exactly what is sent.
pub fn load_statement(up_to_version: bool) -> &'static str {
    if up_to_version {
        "select event_id, stream_id, version, event_type, data, metadata, occurred_at
         from domain_events where stream_id = $1 and version <= $2 order by version"
    } else {
        "select event_id, stream_id, version, event_type, data, metadata, occurred_at
         from domain_events where stream_id = $1 order by version"
    }
}
