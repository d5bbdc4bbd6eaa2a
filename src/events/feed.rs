//! The committed-event feed: the seam through which realtime streams, cache invalidation,
//! audit and metering follow domain events.
//!
//! A subscriber keeps a [`Position`] and asks for what follows it. Two properties hold:
//! - **Only committed events, never a gap.** Each event carries its transaction's id
//!   (`xid8`) and a sequence number. A poll returns only events whose transaction id is
//!   below the `xmin` of the poll's own snapshot: every transaction that could still
//!   commit an event below that point has finished, so once the position passes an event,
//!   nothing can later appear behind it. (A `bigserial` position fails here: a writer that
//!   took number 7 but commits after 8 is visible, is skipped for good.)
//! - **Tenant scoping.** A tenant subscriber sees only its tenant's events; only a
//!   platform subscriber (no tenant) sees every tenant's. The feed reads as the platform
//!   role and filters by tenant in the query.
//!
//! Positions are plain values, so a subscriber persists one and resumes after a restart.
//!
//! The price of gap safety: delivery waits for the oldest transaction open anywhere in the
//! cluster, so one long-running transaction delays the feed (never reorders or drops it).
//! Keep request transactions short, and alert on `pg_stat_activity` transaction age.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sqlx::FromRow;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::{db::Db, error::Error, id::TenantId};

/// Where a subscriber is: the last event it has seen. `Position::default()` is the start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    pub txid: u64,
    pub seq: i64,
}

/// Who is following the feed, which decides the events it may see.
#[derive(Debug, Clone, Copy)]
pub enum Subscriber {
    /// One tenant's consumer: its own tenant's events only.
    Tenant(TenantId),
    /// Every tenant's events: for platform-level consumers only (metering, billing).
    Platform,
}

#[derive(Debug, Clone, FromRow)]
pub struct FeedEvent {
    pub tenant_id: TenantId,
    pub stream_type: String,
    pub stream_id: Uuid,
    pub version: i32,
    pub event_id: Uuid,
    pub event_type: String,
    pub data: Value,
    pub occurred_at: OffsetDateTime,
    #[sqlx(try_from = "String")]
    pub txid: TxId,
    pub seq: i64,
}

/// An `xid8`, read as text (sqlx has no `xid8` type).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TxId(pub u64);

impl TryFrom<String> for TxId {
    type Error = std::num::ParseIntError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        value.parse().map(TxId)
    }
}

impl FeedEvent {
    pub fn position(&self) -> Position {
        Position {
            txid: self.txid.0,
            seq: self.seq,
        }
    }
}

/// The committed events after `after`, oldest first, at most `limit`.
#[tracing::instrument(skip_all)]
pub async fn poll(
    db: &Db,
    subscriber: Subscriber,
    after: Position,
    limit: i64,
) -> Result<Vec<FeedEvent>, Error> {
    let tenant = match subscriber {
        Subscriber::Tenant(id) => Some(id),
        Subscriber::Platform => None,
    };
    let mut tx = db.platform().await?;
    let events = sqlx::query_as(
        r#"
        select tenant_id, stream_type, stream_id, version, event_id, event_type, data, occurred_at,
               txid::text as txid, seq
        from domain_events
        where (txid, seq) > ($1::text::xid8, $2)
          and txid < pg_snapshot_xmin(pg_current_snapshot())
          and ($3::uuid is null or tenant_id = $3)
        order by txid, seq
        limit $4
        "#,
    )
    .bind(after.txid.to_string())
    .bind(after.seq)
    .bind(tenant)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(events)
}
