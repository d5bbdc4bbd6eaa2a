//! `Idempotency-Key` on POST commands.
//!
//! The key is claimed by inserting it as the first statement of the command's own
//! transaction, and the answer is stored in the same transaction before commit. So:
//! - a key exists exactly when its command committed (a failed command leaves no key, and
//!   a retry does the work);
//! - a concurrent retry's insert waits on the primary key until the first transaction
//!   ends, then finds the stored answer and replays it — the work is never done twice;
//! - the same key with a different request is 422 `idempotency_key_reused`.
//!
//! Keys are per tenant (RLS) and expire after 24 hours.

use axum::{extract::FromRequestParts, http::request::Parts};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;

use crate::{http::error::ApiError, tenancy::TenantId};

const TTL: &str = "24 hours";

/// The `Idempotency-Key` header, if sent: 1-255 printable ASCII characters.
pub struct IdempotencyKey(pub Option<String>);

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

/// What a request is, for telling a retry from a different request under the same key.
pub fn fingerprint(method_and_path: &str, body: &impl serde::Serialize) -> Vec<u8> {
    let mut hash = Sha256::new();
    hash.update(method_and_path.as_bytes());
    hash.update([0]);
    hash.update(serde_json::to_vec(body).unwrap_or_default());
    hash.finalize().to_vec()
}

pub enum Claim {
    /// First use: do the work, then [`store`] the answer.
    Fresh,
    /// Seen before: answer with this.
    Replay {
        status: u16,
        body: serde_json::Value,
    },
}

#[tracing::instrument(skip_all)]
pub async fn claim(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    key: &str,
    fingerprint: &[u8],
) -> Result<Claim, ApiError> {
    // An expired key is free again.
    sqlx::query("delete from idempotency_keys where key = $1 and expires_at <= now()")
        .bind(key)
        .execute(&mut *conn)
        .await?;
    let claimed = sqlx::query(&format!(
        "insert into idempotency_keys (tenant_id, key, request_hash, response_status, response_body, expires_at)
         values ($1, $2, $3, 0, 'null', now() + interval '{TTL}') on conflict (tenant_id, key) do nothing"
    ))
    .bind(tenant_id)
    .bind(key)
    .bind(fingerprint)
    .execute(&mut *conn)
    .await?;
    if claimed.rows_affected() == 1 {
        return Ok(Claim::Fresh);
    }
    let (hash, status, body): (Vec<u8>, i16, serde_json::Value) = sqlx::query_as(
        "select request_hash, response_status, response_body from idempotency_keys where key = $1",
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
    })
}

#[tracing::instrument(skip_all)]
pub async fn store(
    conn: &mut PgConnection,
    key: &str,
    status: u16,
    body: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update idempotency_keys set response_status = $2, response_body = $3 where key = $1",
    )
    .bind(key)
    .bind(i16::try_from(status).unwrap_or(200))
    .bind(body)
    .execute(conn)
    .await
    .map(drop)
}
