//! The tamper-evident chain over each tenant's audit events.
//!
//! **Sealing.** Writers never wait for the chain: an audit event is written with the change
//! it records, and a sealer ([`seal`], run every `TENANTRY_AUDIT_SEAL_INTERVAL` by each
//! server, one at a time across instances by an advisory lock) follows the committed audit
//! events in position order — only those below its snapshot's `xmin`, so one committed late
//! is sealed in its turn, never skipped — and appends each to its tenant's chain as the next
//! link:
//!
//! ```text
//! event_hash(n) = sha256("tenantry.audit.v1" ‖ fields of the event, each length-prefixed)
//! chain_hash(n) = sha256(chain_hash(n - 1) ‖ event_hash(n)),   chain_hash(0) = 32 zero bytes
//! ```
//!
//! The fields, in order ([`Chained::encode`]): tenant id and event id (16 bytes each), the
//! time in microseconds since 1970 (8 bytes, big-endian), then actor, credential, action,
//! target type, target id, data (the `jsonb`'s text), request id, client request id and the
//! personal data's digest, each as a presence byte (0 absent, 1 present), a 4-byte
//! big-endian length and the bytes. An event stays unsealed for at most one interval plus
//! the age of the oldest transaction open in the cluster at the time (the sealer, like the
//! feed, waits for it).
//!
//! **Personal data** is chained by its digest only (`sha256` of the stored, salted text),
//! so erasing it (setting `personal` to null) leaves every hash as it was, while changing
//! it is still detected as long as it is there.
//!
//! **Verification** ([`verify`]) walks a tenant's chain in link order, recomputes every
//! hash from the events as they are now, and names the first link that does not hold.
//! The chain proves the log was not changed *after* sealing by anyone who could not also
//! rewrite the chain; against someone who can rewrite both tables, compare the head hash
//! [`Verification::head`] with a copy kept elsewhere.

use std::time::Duration;

use futures_util::TryStreamExt;
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    access::{Principal, Scope},
    db::Db,
    error::Error,
    id::TenantId,
};

/// What an event hash starts with: names the encoding, so a later one can be told apart.
const DOMAIN: &[u8] = b"tenantry.audit.v1";

/// `chain_hash(0)`: what the first link of every tenant's chain follows.
pub const GENESIS: [u8; 32] = [0; 32];

/// How many events one sealing round chains at most.
const SEAL_BATCH: i64 = 1000;

/// `pg_try_advisory_xact_lock` key of the sealer: one round at a time, cluster-wide.
const SEALER_LOCK: i64 = 0x7465_6e61_7564_6974; // "tenaudit"

/// The fields of an audit event the chain covers, as read back from the table.
#[derive(Debug, Clone, FromRow)]
pub struct Chained {
    pub tenant_id: TenantId,
    pub id: Uuid,
    pub occurred_at: OffsetDateTime,
    pub actor: String,
    pub credential: Option<String>,
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    /// The `jsonb` as Postgres prints it (its normal form).
    pub data: String,
    pub request_id: Option<String>,
    pub client_request_id: Option<String>,
    pub personal_digest: Option<Vec<u8>>,
}

/// The columns of [`Chained`], for the statements that read them (`e` is `audit_events`).
const CHAINED_COLUMNS: &str = "e.tenant_id, e.id, e.occurred_at, e.actor, e.credential, e.action, \
     e.target_type, e.target_id, e.data::text as data, e.request_id, e.client_request_id, \
     e.personal_digest";

impl Chained {
    /// The bytes the event hash is taken of (see the module's documentation).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.data.len());
        out.extend_from_slice(self.tenant_id.as_uuid().as_bytes());
        out.extend_from_slice(self.id.as_bytes());
        let micros = (self.occurred_at.unix_timestamp_nanos() / 1_000) as i64;
        out.extend_from_slice(&micros.to_be_bytes());
        let fields: [Option<&[u8]>; 9] = [
            Some(self.actor.as_bytes()),
            self.credential.as_deref().map(str::as_bytes),
            Some(self.action.as_bytes()),
            Some(self.target_type.as_bytes()),
            Some(self.target_id.as_bytes()),
            Some(self.data.as_bytes()),
            self.request_id.as_deref().map(str::as_bytes),
            self.client_request_id.as_deref().map(str::as_bytes),
            self.personal_digest.as_deref(),
        ];
        for field in fields {
            match field {
                None => out.push(0),
                Some(bytes) => {
                    out.push(1);
                    out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
                    out.extend_from_slice(bytes);
                }
            }
        }
        out
    }

    pub fn hash(&self) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(DOMAIN);
        hasher.update(self.encode());
        hasher.finalize().into()
    }
}

/// `chain_hash(n)` from `chain_hash(n - 1)` and `event_hash(n)`.
pub fn link(previous: &[u8], event_hash: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(previous);
    hasher.update(event_hash);
    hasher.finalize().into()
}

#[derive(FromRow)]
struct Unsealed {
    #[sqlx(flatten)]
    event: Chained,
    txid: String,
    seq: i64,
}

/// One sealing round: chains the committed audit events that follow the sealer's position
/// (at most [`SEAL_BATCH`]), as the platform role, in one transaction. Returns how many it
/// sealed; 0 also when another instance's sealer holds the lock.
#[tracing::instrument(skip_all)]
pub async fn seal(db: &Db) -> Result<usize, Error> {
    db.in_platform(async |tx| {
        let locked: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
            .bind(SEALER_LOCK)
            .fetch_one(&mut **tx)
            .await?;
        if !locked {
            return Ok::<_, Error>(0);
        }
        let (txid, seq): (String, i64) =
            sqlx::query_as("select txid::text, seq from audit_sealer for update")
                .fetch_one(&mut **tx)
                .await?;
        let events: Vec<Unsealed> = sqlx::query_as(&format!(
            "select {CHAINED_COLUMNS}, e.txid::text as txid, e.seq
             from audit_events e
             where (e.txid, e.seq) > ($1::text::xid8, $2)
               and e.txid < pg_snapshot_xmin(pg_current_snapshot())
             order by e.txid, e.seq
             limit $3"
        ))
        .bind(&txid)
        .bind(seq)
        .bind(SEAL_BATCH)
        .fetch_all(&mut **tx)
        .await?;
        let Some(last) = events.last() else {
            return Ok(0);
        };
        let (last_txid, last_seq) = (last.txid.clone(), last.seq);

        let mut tenants: Vec<TenantId> = events.iter().map(|e| e.event.tenant_id).collect();
        tenants.sort_unstable();
        tenants.dedup();
        let heads: Vec<(TenantId, i64, Vec<u8>)> = sqlx::query_as(
            "select distinct on (tenant_id) tenant_id, link, chain_hash
             from audit_chain where tenant_id = any($1)
             order by tenant_id, link desc",
        )
        .bind(&tenants)
        .fetch_all(&mut **tx)
        .await?;
        let mut heads: std::collections::HashMap<TenantId, (i64, Vec<u8>)> = heads
            .into_iter()
            .map(|(tenant, link, hash)| (tenant, (link, hash)))
            .collect();

        let mut rows = Rows::default();
        for Unsealed { event, .. } in &events {
            let head = heads
                .entry(event.tenant_id)
                .or_insert_with(|| (0, GENESIS.to_vec()));
            let event_hash = event.hash();
            let chain_hash = link(&head.1, &event_hash);
            *head = (head.0 + 1, chain_hash.to_vec());
            rows.push(event, head.0, event_hash, chain_hash);
        }
        sqlx::query(
            "insert into audit_chain (tenant_id, link, event_id, event_hash, chain_hash)
             select * from unnest($1::uuid[], $2::bigint[], $3::uuid[], $4::bytea[], $5::bytea[])",
        )
        .bind(&rows.tenants)
        .bind(&rows.links)
        .bind(&rows.events)
        .bind(&rows.event_hashes)
        .bind(&rows.chain_hashes)
        .execute(&mut **tx)
        .await?;
        sqlx::query("update audit_sealer set txid = $1::text::xid8, seq = $2")
            .bind(&last_txid)
            .bind(last_seq)
            .execute(&mut **tx)
            .await?;
        Ok(events.len())
    })
    .await
}

/// New links, as columns for one `unnest` insert.
#[derive(Default)]
struct Rows {
    tenants: Vec<TenantId>,
    links: Vec<i64>,
    events: Vec<Uuid>,
    event_hashes: Vec<Vec<u8>>,
    chain_hashes: Vec<Vec<u8>>,
}

impl Rows {
    fn push(&mut self, event: &Chained, link: i64, event_hash: [u8; 32], chain_hash: [u8; 32]) {
        self.tenants.push(event.tenant_id);
        self.links.push(link);
        self.events.push(event.id);
        self.event_hashes.push(event_hash.to_vec());
        self.chain_hashes.push(chain_hash.to_vec());
    }
}

/// Seals every `interval` until the process ends, catching up in full rounds when behind.
/// A failed round (the database away) is logged and retried at the next tick.
pub async fn run_sealer(db: Db, interval: Duration) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        loop {
            match seal(&db).await {
                Ok(sealed) if sealed as i64 == SEAL_BATCH => continue,
                Ok(_) => break,
                Err(error) => {
                    tracing::warn!(%error, "sealing the audit log failed; retrying");
                    break;
                }
            }
        }
    }
}

/// The outcome of verifying one tenant's chain.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "verified": true, "sealed": 1284, "pruned": 0, "unsealed": 2,
    "head": {"link": 1284, "chain_hash": "9f2c…"}, "broken": null
}))]
pub struct Verification {
    /// Every sealed link holds.
    pub verified: bool,
    /// Links checked (the tenant's sealed events).
    pub sealed: i64,
    /// Of those, links whose events the retention job pruned (`tenantry audit prune`): their
    /// hashes still chain, their events are gone on purpose.
    pub pruned: i64,
    /// Events not chained yet (written within the last sealing interval, or waiting for an
    /// older transaction to finish).
    pub unsealed: i64,
    /// The last link and its chain hash (hex): keep a copy elsewhere to detect a rewrite of
    /// the whole chain.
    pub head: Option<Head>,
    /// The first link that does not hold, if any.
    pub broken: Option<BrokenLink>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Head {
    pub link: i64,
    pub chain_hash: String,
}

/// Where the chain breaks, and how.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BrokenLink {
    pub link: i64,
    /// The event the link seals (absent when the link itself is missing).
    pub event_id: Option<Uuid>,
    /// `event_altered` (the event's chained fields changed), `personal_data_altered` (its
    /// personal data no longer matches the digest the chain covers), `event_missing` (the
    /// sealed event is gone), `chain_altered` (the link's hashes were changed),
    /// `link_missing` (a link is gone: the chain skips from one number to a later one).
    pub reason: &'static str,
}

#[derive(FromRow)]
struct LinkRow {
    link: i64,
    event_id: Uuid,
    event_hash: Vec<u8>,
    chain_hash: Vec<u8>,
    present: bool,
    /// The digest of the personal data as stored now (null when erased or never there).
    personal_now: Option<Vec<u8>>,
    #[sqlx(flatten)]
    event: ChainedOrNull,
}

/// [`Chained`] read through a left join: every column may be null.
#[derive(FromRow)]
struct ChainedOrNull {
    tenant_id: Option<TenantId>,
    id: Option<Uuid>,
    occurred_at: Option<OffsetDateTime>,
    actor: Option<String>,
    credential: Option<String>,
    action: Option<String>,
    target_type: Option<String>,
    target_id: Option<String>,
    data: Option<String>,
    request_id: Option<String>,
    client_request_id: Option<String>,
    personal_digest: Option<Vec<u8>>,
}

impl ChainedOrNull {
    fn to_chained(&self) -> Option<Chained> {
        Some(Chained {
            tenant_id: self.tenant_id?,
            id: self.id?,
            occurred_at: self.occurred_at?,
            actor: self.actor.clone()?,
            credential: self.credential.clone(),
            action: self.action.clone()?,
            target_type: self.target_type.clone()?,
            target_id: self.target_id.clone()?,
            data: self.data.clone()?,
            request_id: self.request_id.clone(),
            client_request_id: self.client_request_id.clone(),
            personal_digest: self.personal_digest.clone(),
        })
    }
}

/// [`verify`] for the caller's own tenant (`audit:read`).
pub async fn verify_for(
    conn: &mut PgConnection,
    principal: &Principal,
) -> Result<Verification, Error> {
    principal.require(Scope::AuditRead)?;
    verify(conn, principal.tenant_id()).await
}

/// [`verify`] as the database owner (the command line): in a transaction of its own under
/// the tenant's context, which the owner needs when it is not a superuser (RLS is forced).
pub async fn verify_as_owner(
    owner: &mut PgConnection,
    tenant_id: TenantId,
) -> Result<Verification, Error> {
    use sqlx::Connection;
    let mut tx = owner.begin().await?;
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(tenant_id.to_string())
        .execute(&mut *tx)
        .await?;
    let verification = verify(&mut tx, tenant_id).await?;
    tx.commit().await?;
    Ok(verification)
}

/// Recomputes `tenant_id`'s chain from its events as they are now, streaming (constant
/// memory whatever the log's size), and reports the first link that does not hold. Runs on
/// any connection that sees the tenant's rows (its tenant transaction, or the owner's
/// under its context).
#[tracing::instrument(skip_all)]
pub async fn verify(conn: &mut PgConnection, tenant_id: TenantId) -> Result<Verification, Error> {
    let unsealed: i64 = sqlx::query_scalar(
        "select count(*) from audit_events e
         where e.tenant_id = $1
           and not exists (select from audit_chain c where c.tenant_id = e.tenant_id and c.event_id = e.id)",
    )
    .bind(tenant_id)
    .fetch_one(&mut *conn)
    .await?;

    let statement = format!(
        "select c.link, c.event_id, c.event_hash, c.chain_hash, e.id is not null as present,
                case when e.personal is null then null
                     else sha256(convert_to(e.personal::text, 'UTF8')) end as personal_now,
                {CHAINED_COLUMNS}
         from audit_chain c
         left join audit_events e on e.tenant_id = c.tenant_id and e.id = c.event_id
         where c.tenant_id = $1
         order by c.link"
    );
    let horizon: i64 = sqlx::query_scalar(
        "select coalesce((select through_link from audit_retention where tenant_id = $1), 0)",
    )
    .bind(tenant_id)
    .fetch_one(&mut *conn)
    .await?;
    let mut links = sqlx::query_as::<_, LinkRow>(&statement)
        .bind(tenant_id)
        .fetch(&mut *conn);
    let mut previous = GENESIS.to_vec();
    let mut sealed = 0;
    let mut pruned = 0;
    let mut head = None;
    let mut broken = None;
    while let Some(row) = links.try_next().await? {
        let expected = sealed + 1;
        let was_pruned = !row.present && row.link <= horizon;
        if let Some(reason) = check(&row, expected, &previous, was_pruned) {
            broken = Some(BrokenLink {
                link: if reason == "link_missing" {
                    expected
                } else {
                    row.link
                },
                event_id: (reason != "link_missing").then_some(row.event_id),
                reason,
            });
            break;
        }
        sealed += 1;
        pruned += i64::from(was_pruned);
        head = Some(Head {
            link: row.link,
            chain_hash: super::hex(&row.chain_hash),
        });
        previous = row.chain_hash;
    }
    Ok(Verification {
        verified: broken.is_none(),
        sealed,
        pruned,
        unsealed,
        head,
        broken,
    })
}

/// What is wrong with link `row`, expected to be link `expected` after `previous`. A link
/// whose event was `pruned` by the retention job is checked as a link only.
fn check(row: &LinkRow, expected: i64, previous: &[u8], pruned: bool) -> Option<&'static str> {
    if row.link != expected {
        return Some("link_missing");
    }
    if pruned {
        return (link(previous, &row.event_hash).as_slice() != row.chain_hash)
            .then_some("chain_altered");
    }
    if !row.present {
        return Some("event_missing");
    }
    if row
        .personal_now
        .as_ref()
        .is_some_and(|now| Some(now) != row.event.personal_digest.as_ref())
    {
        return Some("personal_data_altered");
    }
    let Some(event) = row.event.to_chained() else {
        return Some("event_missing");
    };
    if event.hash().as_slice() != row.event_hash {
        return Some("event_altered");
    }
    if link(previous, &row.event_hash).as_slice() != row.chain_hash {
        return Some("chain_altered");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> Chained {
        Chained {
            tenant_id: TenantId::from_uuid(Uuid::from_u128(1)),
            id: Uuid::from_u128(2),
            occurred_at: OffsetDateTime::from_unix_timestamp_nanos(1_800_000_000_123_456_000)
                .unwrap(),
            actor: "user:x".into(),
            credential: None,
            action: "user.created".into(),
            target_type: "user".into(),
            target_id: "y".into(),
            data: "{}".into(),
            request_id: Some("r".into()),
            client_request_id: None,
            personal_digest: None,
        }
    }

    #[test]
    fn every_chained_field_changes_the_event_hash() {
        let base = event().hash();
        let mut changed = Vec::new();
        let mut e = event();
        e.actor = "user:z".into();
        changed.push(e.hash());
        let mut e = event();
        e.credential = Some(String::new());
        changed.push(e.hash());
        let mut e = event();
        e.data = "{\"a\": 1}".into();
        changed.push(e.hash());
        let mut e = event();
        e.occurred_at += time::Duration::microseconds(1);
        changed.push(e.hash());
        let mut e = event();
        e.personal_digest = Some(vec![0; 32]);
        changed.push(e.hash());
        // Moving a byte from one field to the next is a different event too.
        let mut e = event();
        e.target_type = "use".into();
        e.target_id = "ry".into();
        changed.push(e.hash());
        for (i, hash) in changed.iter().enumerate() {
            assert_ne!(*hash, base, "change {i} went unnoticed");
        }
        assert_eq!(event().hash(), base, "the hash is a function of the fields");
    }

    #[test]
    fn a_link_depends_on_everything_before_it() {
        let one = link(&GENESIS, &[1; 32]);
        let two = link(&one, &[2; 32]);
        assert_ne!(two, link(&link(&GENESIS, &[9; 32]), &[2; 32]));
        assert_eq!(two, link(&link(&GENESIS, &[1; 32]), &[2; 32]));
    }
}
