//! `Idempotency-Key` on POST commands (catalog creates, order placement and transitions).
//!
//! The key is claimed by inserting it as the first statement of the command's own
//! transaction, and the answer is stored in the same transaction before commit. So:
//! - a key exists exactly when its command committed (a failed command leaves no key, and
//!   a retry does the work);
//! - a concurrent retry's insert waits on the primary key until the first transaction
//!   ends, then finds the stored answer and replays it — the work is never done twice;
//! - the same key with a different request is 422 `idempotency_key_reused`.
//!
//! Keys are per tenant (RLS) and live `IDEMPOTENCY_KEY_TTL` (24 h by default); after
//! that a key is free again, and [`purge_expired`] deletes it.

use std::{future::Future, pin::Pin, time::Duration};

use axum::{
    Json,
    extract::FromRequestParts,
    http::{HeaderValue, StatusCode, request::Parts},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::{PgConnection, postgres::types::PgInterval};

use super::{AppState, error::ApiError, etag::with_etag};
use crate::{
    auth::Principal,
    db::{Access, Db, TenantTx},
    tenancy::TenantId,
};

/// Marks a replayed answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// The `Idempotency-Key` header, if sent: 1-255 printable ASCII characters.
pub struct IdempotencyKey(Option<String>);

impl<S: Send + Sync> FromRequestParts<S> for IdempotencyKey {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        let Some(value) = parts.headers.get("idempotency-key") else {
            return Ok(Self(None));
        };
        match value.to_str() {
            Ok(key)
                if (1..=255).contains(&key.len()) && key.bytes().all(|b| b.is_ascii_graphic()) =>
            {
                Ok(Self(Some(key.to_owned())))
            }
            _ => Err(ApiError::bad_request(
                "invalid_idempotency_key",
                "Idempotency-Key must be 1-255 printable ASCII characters",
            )),
        }
    }
}

impl IdempotencyKey {
    /// Ties the key to the request it came with: `request` names it (`POST /v1/orders`)
    /// and, with `body`, tells a retry from a different request under the same key.
    pub fn bind(self, request: &str, body: &impl Serialize) -> Option<BoundKey> {
        self.0.map(|key| BoundKey {
            key,
            fingerprint: fingerprint(request, body),
        })
    }
}

/// An `Idempotency-Key` with the fingerprint of its request.
pub struct BoundKey {
    key: String,
    fingerprint: Vec<u8>,
}

/// What a command produced: the resource's version (its `ETag`) and its representation.
pub type Versioned<T> = (i64, T);

/// A command run inside the transaction that also claims the key.
pub type Command<'t, T> = Pin<Box<dyn Future<Output = Result<Versioned<T>, ApiError>> + Send + 't>>;

/// Runs a POST command that the client may retry under an `Idempotency-Key`: claims the
/// key, runs the command, stores its answer and commits — one transaction. Answers
/// `status` with the body and its `ETag`.
pub async fn run<T, F>(
    state: &AppState,
    principal: &Principal,
    key: Option<BoundKey>,
    status: StatusCode,
    command: F,
) -> Result<Response, ApiError>
where
    T: Serialize,
    F: for<'t> FnOnce(&'t mut TenantTx, &'t Principal) -> Command<'t, T>,
{
    let mut tx = state.db.tenant(principal, Access::ReadWrite).await?;
    let Some(key) = key else {
        let (version, value) = command(&mut tx, principal).await?;
        tx.commit().await?;
        return Ok((status, with_etag(version, value)).into_response());
    };
    let BoundKey { key, fingerprint } = key;
    let tenant_id = principal.tenant_id();
    let claim = claim(
        &mut tx,
        tenant_id,
        &key,
        &fingerprint,
        &state.idempotency_ttl,
    )
    .await?;
    if let Claim::Replay {
        status,
        body,
        version,
    } = claim
    {
        tx.commit().await?;
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
        let mut response = match version {
            Some(version) => with_etag(version, body),
            None => Json(body).into_response(),
        };
        response
            .headers_mut()
            .insert(REPLAYED_HEADER, HeaderValue::from_static("true"));
        return Ok((status, response).into_response());
    }
    let (version, value) = command(&mut tx, principal).await?;
    let body = serde_json::to_value(&value).map_err(anyhow::Error::from)?;
    store(&mut tx, &key, status, &body, version).await?;
    tx.commit().await?;
    Ok((status, with_etag(version, body)).into_response())
}

/// What a request is, for telling a retry from a different request under the same key.
fn fingerprint(request: &str, body: &impl Serialize) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(request.as_bytes());
    hash.update([0]);
    hash.update(serde_json::to_vec(body).unwrap_or_default());
    hash.finalize().to_vec()
}

enum Claim {
    /// First use: do the work, then [`store`] the answer.
    Fresh,
    /// Seen before: answer with this.
    Replay {
        status: u16,
        body: serde_json::Value,
        version: Option<i64>,
    },
}

#[tracing::instrument(skip_all)]
async fn claim(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    key: &str,
    fingerprint: &[u8],
    ttl: &PgInterval,
) -> Result<Claim, ApiError> {
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
    .execute(&mut *conn)
    .await?;
    if claimed.rows_affected() == 1 {
        return Ok(Claim::Fresh);
    }
    let (hash, status, body, version): (Vec<u8>, i16, serde_json::Value, Option<i64>) =
        sqlx::query_as(
            "select request_hash, response_status, response_body, response_version
             from idempotency_keys where key = $1",
        )
        .bind(key)
        .fetch_one(&mut *conn)
        .await?;
    if hash != fingerprint {
        return Err(ApiError::unprocessable(
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        ));
    }
    Ok(Claim::Replay {
        status: u16::try_from(status).unwrap_or(200),
        body,
        version,
    })
}

#[tracing::instrument(skip_all)]
async fn store(
    conn: &mut PgConnection,
    key: &str,
    status: StatusCode,
    body: &serde_json::Value,
    version: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update idempotency_keys set response_status = $2, response_body = $3, response_version = $4
         where key = $1",
    )
    .bind(key)
    .bind(i16::try_from(status.as_u16()).unwrap_or(200))
    .bind(body)
    .bind(version)
    .execute(conn)
    .await
    .map(drop)
}

/// Deletes every tenant's expired keys (as the platform role, which sees expired keys
/// only). Returns how many went.
#[tracing::instrument(skip_all)]
pub async fn purge_expired(db: &Db) -> Result<u64, sqlx::Error> {
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
