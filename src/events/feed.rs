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

use crate::{
    db::{Db, TenantTx},
    error::Error,
    id::TenantId,
};

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

/// The columns of a [`FeedEvent`], as every feed read selects them.
const COLUMNS: &str = "tenant_id, stream_type, stream_id, version, event_id, event_type, data, \
                       occurred_at, txid::text as txid, seq";

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
    let events = sqlx::query_as(&format!(
        "select {COLUMNS} from domain_events
         where (txid, seq) > ($1::text::xid8, $2)
           and txid < pg_snapshot_xmin(pg_current_snapshot())
           and ($3::uuid is null or tenant_id = $3)
         order by txid, seq
         limit $4"
    ))
    .bind(after.txid.to_string())
    .bind(after.seq)
    .bind(tenant)
    .bind(limit)
    .fetch_all(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(events)
}

/// The most committed events [`backlog`] counts: beyond it a follower is far behind
/// whatever the exact number, and counting on would cost a scan of the whole backlog.
pub const BACKLOG_COUNTED: i64 = 100_000;

/// The committed events after `after` that a follower has not taken yet — including those
/// a poll cannot return yet because an older transaction is still open — as how many (up
/// to [`BACKLOG_COUNTED`]) and how long ago the oldest of them happened (zero when there is
/// none). One index range scan of `domain_events_feed_idx`, as the platform role.
#[tracing::instrument(skip_all)]
pub async fn backlog(db: &Db, after: Position) -> Result<(u64, std::time::Duration), Error> {
    let mut tx = db.platform().await?;
    let (count, age): (i64, Option<f64>) = sqlx::query_as(
        "select count(*), extract(epoch from now() - min(occurred_at))::float8
         from (select occurred_at from domain_events
               where (txid, seq) > ($1::text::xid8, $2)
               order by txid, seq
               limit $3) as behind",
    )
    .bind(after.txid.to_string())
    .bind(after.seq)
    .bind(BACKLOG_COUNTED)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    let age =
        std::time::Duration::try_from_secs_f64(age.unwrap_or(0.0).max(0.0)).unwrap_or_default();
    Ok((u64::try_from(count).unwrap_or(0), age))
}

/// Which of a tenant's events a reader wants: every one, or those of some stream types,
/// or of one stream.
#[derive(Debug, Clone, Default)]
pub struct Selection {
    /// Only streams of these types (`order`, `product`); all when `None`.
    pub stream_types: Option<Vec<String>>,
    pub stream_id: Option<Uuid>,
}

/// The committed events of the transaction's tenant after `after` that `selection` names,
/// oldest first, at most `limit` — read under the tenant's RLS, as every tenant read is
/// (the database keeps other tenants' events out; the query names the tenant's setting too,
/// only so that the plan walks the tenant's own index, `domain_events_tenant_feed_idx`).
#[tracing::instrument(skip_all)]
pub async fn poll_tenant(
    tx: &mut TenantTx,
    selection: &Selection,
    after: Position,
    limit: i64,
) -> Result<Vec<FeedEvent>, Error> {
    Ok(sqlx::query_as(&format!(
        "select {COLUMNS} from domain_events
         where tenant_id = (select nullif(current_setting('app.tenant_id', true), ''))::uuid
           and (txid, seq) > ($1::text::xid8, $2)
           and txid < pg_snapshot_xmin(pg_current_snapshot())
           and ($3::text[] is null or stream_type = any($3))
           and ($4::uuid is null or stream_id = $4)
         order by tenant_id, txid, seq
         limit $5"
    ))
    .bind(after.txid.to_string())
    .bind(after.seq)
    .bind(selection.stream_types.as_deref())
    .bind(selection.stream_id)
    .bind(limit)
    .fetch_all(&mut **tx)
    .await?)
}

/// The newest committed event of any tenant (for the platform role).
const HEAD: &str = "select txid::text, seq from domain_events
                    where txid < pg_snapshot_xmin(pg_current_snapshot())
                    order by txid desc, seq desc limit 1";

/// The position of the newest committed event of any tenant: where a follower that wants
/// only what happens from now on starts.
#[tracing::instrument(skip_all)]
pub async fn head(db: &Db) -> Result<Position, Error> {
    let mut tx = db.platform().await?;
    let head = sqlx::query_as(HEAD).fetch_optional(&mut *tx).await?;
    tx.commit().await?;
    position_of(head)
}

/// The position of the newest committed event of the transaction's tenant (under RLS).
#[tracing::instrument(skip_all)]
pub async fn head_tenant(tx: &mut TenantTx) -> Result<Position, Error> {
    let head = sqlx::query_as(
        "select txid::text, seq from domain_events
         where tenant_id = (select nullif(current_setting('app.tenant_id', true), ''))::uuid
           and txid < pg_snapshot_xmin(pg_current_snapshot())
         order by tenant_id desc, txid desc, seq desc limit 1",
    )
    .fetch_optional(&mut **tx)
    .await?;
    position_of(head)
}

fn position_of(head: Option<(String, i64)>) -> Result<Position, Error> {
    Ok(match head {
        Some((txid, seq)) => Position {
            txid: txid
                .parse()
                .map_err(|_| Error::internal(anyhow::anyhow!("xid8 {txid:?} is not a number")))?,
            seq,
        },
        None => Position::default(),
    })
}
