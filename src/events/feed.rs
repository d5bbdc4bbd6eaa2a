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
#[tracing::instrument(name = "feed.poll", skip_all)]
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
#[tracing::instrument(name = "feed.poll_tenant", skip_all)]
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

/// Where "from now on" starts for a follower of the transaction's tenant (under RLS): its
/// newest event below the snapshot's `xmin`, and the snapshot itself. The position alone
/// is not enough: while any transaction in the cluster is open, the tenant's events
/// committed after that `xmin` but before this moment lie beyond the position, and only
/// the snapshot tells them (seen: already history) from events committed later.
#[tracing::instrument(skip_all)]
pub async fn now_tenant(tx: &mut TenantTx) -> Result<Since, Error> {
    let (snapshot, txid, seq): (String, Option<String>, Option<i64>) = sqlx::query_as(
        "select pg_current_snapshot()::text, head.txid::text, head.seq
         from (values (1)) as one
         left join lateral (
             select txid, seq from domain_events
             where tenant_id = (select nullif(current_setting('app.tenant_id', true), ''))::uuid
               and txid < pg_snapshot_xmin(pg_current_snapshot())
             order by tenant_id desc, txid desc, seq desc limit 1
         ) as head on true",
    )
    .fetch_one(&mut **tx)
    .await?;
    let seen = snapshot
        .parse()
        .map_err(|_| Error::internal(anyhow::anyhow!("snapshot {snapshot:?} is not one")))?;
    Ok(Since {
        last: position_of(txid.zip(seq))?,
        seen: Some(seen),
    })
}

/// Which events a follower has yet to see: those after the last it saw and, when it began
/// "from now on", those its starting [`Snapshot`] did not already see committed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Since {
    last: Position,
    seen: Option<Snapshot>,
}

impl Since {
    /// After `position` (an event the follower saw, or resumes after).
    pub fn after(position: Position) -> Self {
        Self {
            last: position,
            seen: None,
        }
    }

    /// The last event seen (or passed over).
    pub fn last(&self) -> Position {
        self.last
    }

    /// Whether the event at `position` is new to the follower.
    pub fn admits(&self, position: Position) -> bool {
        position > self.last
            && !self
                .seen
                .as_ref()
                .is_some_and(|seen| seen.saw(position.txid))
    }

    /// Records that the follower has seen (or passed over) everything up to `position`.
    pub fn advance(&mut self, position: Position) {
        self.last = self.last.max(position);
    }

    /// This, or `other` where `other` has seen further (a follower that asks again).
    pub fn merge(self, other: &Self) -> Self {
        Self {
            last: self.last.max(other.last),
            seen: self.seen.or_else(|| other.seen.clone()),
        }
    }
}

/// A PostgreSQL snapshot (`pg_current_snapshot()`, `xmin:xmax:xip,…`): which transactions
/// had committed when it was taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    xmin: u64,
    xmax: u64,
    in_progress: Vec<u64>,
}

impl Snapshot {
    /// Whether transaction `txid` had committed (or aborted) when the snapshot was taken —
    /// what `pg_visible_in_snapshot` answers, without a round trip.
    pub fn saw(&self, txid: u64) -> bool {
        txid < self.xmin || (txid < self.xmax && !self.in_progress.contains(&txid))
    }
}

impl std::str::FromStr for Snapshot {
    type Err = std::num::ParseIntError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.splitn(3, ':');
        let mut next = || parts.next().unwrap_or("");
        let (xmin, xmax, xip) = (next().parse()?, next().parse()?, next());
        let in_progress = xip
            .split(',')
            .filter(|id| !id.is_empty())
            .map(str::parse)
            .collect::<Result<_, _>>()?;
        Ok(Self {
            xmin,
            xmax,
            in_progress,
        })
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(txid: u64) -> Position {
        Position { txid, seq: 1 }
    }

    #[test]
    fn a_snapshot_parses_from_postgres_text() {
        let snapshot: Snapshot = "100:105:100,103".parse().unwrap();
        assert_eq!(
            snapshot,
            Snapshot {
                xmin: 100,
                xmax: 105,
                in_progress: vec![100, 103]
            }
        );
        let empty: Snapshot = "7:7:".parse().unwrap();
        assert!(empty.in_progress.is_empty());
        assert!("7:x:".parse::<Snapshot>().is_err());
        assert!("".parse::<Snapshot>().is_err());
    }

    #[test]
    fn a_snapshot_saw_what_had_committed_and_nothing_later() {
        let snapshot: Snapshot = "100:105:100,103".parse().unwrap();
        // Below xmin: committed. In progress: not. Between, not listed: committed.
        // At or past xmax: began after the snapshot.
        let saw: Vec<u64> = (98..107).filter(|&txid| snapshot.saw(txid)).collect();
        assert_eq!(saw, vec![98, 99, 101, 102, 104]);
    }

    #[test]
    fn a_follower_from_now_skips_what_its_snapshot_saw() {
        let mut since = Since {
            last: at(99),
            seen: Some("100:105:100,103".parse().unwrap()),
        };
        // Committed before the follower asked, past its head: already history.
        assert!(!since.admits(at(101)));
        // In progress when it asked, or begun since: new.
        assert!(since.admits(at(100)));
        assert!(since.admits(at(103)));
        assert!(since.admits(at(106)));
        since.advance(at(106));
        assert!(!since.admits(at(103)));
        assert_eq!(since.last(), at(106));
    }

    #[test]
    fn a_follower_after_an_event_takes_everything_past_it() {
        let since = Since::after(at(5));
        assert!(!since.admits(at(5)));
        assert!(since.admits(at(6)));
    }
}
