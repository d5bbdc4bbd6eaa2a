//! Idempotency keys, the database half: claim a key and store the answer, inside the
//! command's own transaction, for any caller that lets clients retry (HTTP's
//! `Idempotency-Key` today; its header, fingerprint and replay headers live in
//! `http::idempotency`).
//!
//! A key belongs to the credential that sent it (as Stripe's do): two integrations of one
//! tenant that both send `checkout-0001` each get their own answer. It is claimed by taking
//! a transaction-level advisory lock on (tenant, credential, key) as the first statement of
//! the command's transaction and looking for a stored answer; the answer is stored, under
//! that lock, just before commit. So:
//! - a key exists exactly when its command committed (a failed command leaves no key, and a
//!   retry does the work);
//! - a concurrent retry waits on the lock until the first transaction ends, then finds the
//!   stored answer and replays it — the work is never done twice;
//! - the same key with a different request (another fingerprint) is refused with 422
//!   `idempotency_key_reused`;
//! - claiming writes nothing, so the command's transaction gets its id only when the
//!   command itself first writes — after it has read the stream it appends to. The
//!   committed-event feed orders events by transaction id, and this keeps one stream's
//!   events in version order there (a write as the first statement would fix the id early,
//!   and a later transaction could then commit the stream's previous version behind it).
//!
//! Keys live for the configured TTL (`IDEMPOTENCY_KEY_TTL`, 24 h by default); after that a
//! key is free again, and [`purge_expired`] deletes it.

use std::time::Duration;

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, postgres::types::PgInterval};

use crate::{
    access::Principal,
    db::{Db, TenantTx},
    error::Error,
};

/// Checks a client's key: 1-255 printable ASCII characters.
pub fn check_key(key: &str) -> Result<(), Error> {
    if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(())
    } else {
        Err(invalid_key())
    }
}

/// The refusal of a key that is not 1-255 printable ASCII characters.
pub fn invalid_key() -> Error {
    Error::malformed(
        "invalid_idempotency_key",
        "an idempotency key must be 1-255 printable ASCII characters",
    )
}

/// What a request is, for telling a retry from a different request under the same key:
/// `request` names the operation (`POST /v1/orders`), `body` is its input.
pub fn fingerprint(request: &str, body: &impl serde::Serialize) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(request.as_bytes());
    hash.update([0]);
    hash.update(serde_json::to_vec(body).unwrap_or_default());
    hash.finalize().to_vec()
}

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
    Fresh(Claimed),
    /// Seen before with the same request: answer with this, do nothing.
    Replay(StoredAnswer),
}

/// A key claimed for a first use, held until the transaction ends.
pub struct Claimed {
    caller: String,
    key: String,
    fingerprint: Vec<u8>,
}

/// Claims `key` for the principal's request with this `fingerprint`, or finds its stored
/// answer. Call it first in the command's transaction.
#[tracing::instrument(skip_all)]
pub async fn claim(
    tx: &mut TenantTx,
    principal: &Principal,
    key: &str,
    fingerprint: &[u8],
) -> Result<Claim, Error> {
    let caller = principal.actor().to_string();
    sqlx::query("select pg_advisory_xact_lock($1)")
        .bind(lock_key(principal, &caller, key))
        .execute(&mut **tx)
        .await?;
    let stored: Option<(Vec<u8>, i16, Value, Option<i64>)> = sqlx::query_as(
        "select request_hash, response_status, response_body, response_version
         from idempotency_keys where caller = $1 and key = $2 and expires_at > now()",
    )
    .bind(&caller)
    .bind(key)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((hash, status, body, version)) = stored else {
        return Ok(Claim::Fresh(Claimed {
            caller,
            key: key.to_owned(),
            fingerprint: fingerprint.to_vec(),
        }));
    };
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

/// The advisory lock of one (tenant, credential, key): 64 bits of their hash. Two keys
/// whose hashes collide merely wait for each other.
fn lock_key(principal: &Principal, caller: &str, key: &str) -> i64 {
    let digest = Sha256::new()
        .chain_update(principal.tenant_id().as_uuid().as_bytes())
        .chain_update(caller.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(bytes)
}

/// Stores the answer of a freshly claimed key, before the transaction commits; it replays
/// for `ttl`. An expired key of the same name is taken over.
#[tracing::instrument(skip_all)]
pub async fn store(
    tx: &mut TenantTx,
    claimed: Claimed,
    answer: &StoredAnswer,
    ttl: &PgInterval,
) -> Result<(), Error> {
    let tenant_id = tx.tenant_id();
    let stored = sqlx::query(
        "insert into idempotency_keys
             (tenant_id, caller, key, request_hash, response_status, response_body, response_version, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7, now() + $8)
         on conflict (tenant_id, caller, key) do update set
             request_hash = excluded.request_hash, response_status = excluded.response_status,
             response_body = excluded.response_body, response_version = excluded.response_version,
             created_at = now(), expires_at = excluded.expires_at
         where idempotency_keys.expires_at <= now()",
    )
    .bind(tenant_id)
    .bind(&claimed.caller)
    .bind(&claimed.key)
    .bind(&claimed.fingerprint)
    .bind(i16::try_from(answer.status).unwrap_or(200))
    .bind(&answer.body)
    .bind(answer.version)
    .bind(ttl)
    .execute(&mut **tx)
    .await?;
    if stored.rows_affected() != 1 {
        // The claim's lock makes this unreachable: a live key was found by `claim`.
        return Err(Error::internal(anyhow::anyhow!(
            "an idempotency key claimed under its lock was taken meanwhile"
        )));
    }
    Ok(())
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

/// Purges expired keys every `period` until the process ends, the first time one period
/// after start (so instances starting together do not all purge at once). A failed purge
/// is logged and retried at the next tick; keys that outlive their expiry are harmless
/// meanwhile (a claim treats them as free).
pub async fn purge_periodically(db: Db, period: Duration) {
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
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

/// Ends the replays of the stored answers that mention `text` (an erased customer's id):
/// they would show personal data that no longer exists. Returns how many it ended.
pub async fn end_replays_showing(conn: &mut PgConnection, text: &str) -> Result<u64, Error> {
    let ended = sqlx::query(
        "update idempotency_keys set response_body = 'null', expires_at = now()
         where expires_at > now() and strpos(response_body::text, $1) > 0",
    )
    .bind(text)
    .execute(conn)
    .await?;
    Ok(ended.rows_affected())
}
