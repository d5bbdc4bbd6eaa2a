//! Idempotency keys, the database half: claim a key and store the answer, inside the
//! command's own transaction, for any caller that lets clients retry (HTTP's
//! `Idempotency-Key` today; its header, fingerprint and replay headers live in
//! `http::idempotency`).
//!
//! The key is claimed by inserting it as the first statement of the command's transaction,
//! and the answer is stored in the same transaction before commit. So:
//! - a key exists exactly when its command committed (a failed command leaves no key, and a
//!   retry does the work);
//! - a concurrent retry's insert waits on the primary key until the first transaction
//!   ends, then finds the stored answer and replays it — the work is never done twice;
//! - the same key with a different request (another fingerprint) is refused with 422
//!   `idempotency_key_reused`.
//!
//! Keys are per tenant (RLS) and live for the configured TTL (`IDEMPOTENCY_KEY_TTL`, 24 h by
//! default); after that a key is free again, and [`purge_expired`] deletes it.

use std::time::Duration;

use serde_json::Value;
use sqlx::{PgConnection, postgres::types::PgInterval};

use crate::{
    db::{Db, TenantTx},
    error::Error,
};

/// A first answer, kept to be replayed: its status, body and the resource version (the
/// `ETag` over HTTP) when it had one.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnswer {
    pub status: u16,
    pub body: Value,
    pub version: Option<i64>,
}

/// What claiming a key found.
pub enum Claim {
    /// First use: do the work, then [`store`] the answer.
    Fresh,
    /// Seen before with the same request: answer with this, do nothing.
    Replay(StoredAnswer),
}

/// Claims `key` for a request with this `fingerprint`, or finds its stored answer. Call it
/// first in the command's transaction; `ttl` is how long the key replays.
#[tracing::instrument(skip_all)]
pub async fn claim(
    tx: &mut TenantTx,
    key: &str,
    fingerprint: &[u8],
    ttl: &PgInterval,
) -> Result<Claim, Error> {
    let tenant_id = tx.tenant_id();
    // One statement claims a new key or re-claims an expired one (an expired key is free
    // again); a live key is left alone and answers below.
    let claimed = sqlx::query(
        "insert into idempotency_keys (tenant_id, key, request_hash, response_status, response_body, expires_at)
         values ($1, $2, $3, 0, 'null', now() + $4)
         on conflict (tenant_id, key) do update set
             request_hash = excluded.request_hash, response_status = 0, response_body = 'null',
             response_version = null, created_at = now(), expires_at = excluded.expires_at
         where idempotency_keys.expires_at <= now()",
    )
    .bind(tenant_id)
    .bind(key)
    .bind(fingerprint)
    .bind(ttl)
    .execute(&mut **tx)
    .await?;
    if claimed.rows_affected() == 1 {
        return Ok(Claim::Fresh);
    }
    let (hash, status, body, version): (Vec<u8>, i16, Value, Option<i64>) = sqlx::query_as(
        "select request_hash, response_status, response_body, response_version
         from idempotency_keys where key = $1",
    )
    .bind(key)
    .fetch_one(&mut **tx)
    .await?;
    if hash != fingerprint {
        return Err(Error::unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        ));
    }
    Ok(Claim::Replay(StoredAnswer {
        status: u16::try_from(status).unwrap_or(200),
        body,
        version,
    }))
}

/// Stores the answer of a freshly claimed key, before the transaction commits.
#[tracing::instrument(skip_all)]
pub async fn store(
    conn: &mut PgConnection,
    key: &str,
    answer: &StoredAnswer,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update idempotency_keys set response_status = $2, response_body = $3, response_version = $4
         where key = $1",
    )
    .bind(key)
    .bind(i16::try_from(answer.status).unwrap_or(200))
    .bind(&answer.body)
    .bind(answer.version)
    .execute(conn)
    .await
    .map(drop)
}

/// Deletes every tenant's expired keys (as the platform role, which sees expired keys
/// only). Returns how many went.
#[tracing::instrument(skip_all)]
pub async fn purge_expired(db: &Db) -> Result<u64, Error> {
    let mut tx = db.platform().await?;
    let purged = sqlx::query("delete from idempotency_keys where expires_at <= now()")
        .execute(&mut *tx)
        .await?
        .rows_affected();
    tx.commit().await?;
    Ok(purged)
}

/// Purges expired keys every `period` until the process ends. A failed purge is logged
/// and retried at the next tick; keys that outlive their expiry are harmless meanwhile
/// (a claim treats them as free).
pub async fn purge_periodically(db: Db, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        match purge_expired(&db).await {
            Ok(0) => {}
            Ok(purged) => tracing::info!(purged, "purged expired idempotency keys"),
            Err(error) => tracing::warn!(%error, "purging expired idempotency keys failed"),
        }
    }
}
