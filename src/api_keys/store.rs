//! SQL for API keys.

use sqlx::PgConnection;
use time::OffsetDateTime;

use super::{ApiKey, ApiKeyId};
use crate::{access::Scopes, id::TenantId};

pub const COLUMNS: &str = "id, name, hint, scopes, created_by, expires_at, revoked_at, created_at";

pub struct NewApiKey<'a> {
    pub tenant_id: TenantId,
    pub id: ApiKeyId,
    pub name: &'a str,
    pub hint: &'a str,
    pub secret_hash: &'a [u8],
    pub scopes: Scopes,
    pub created_by: &'a str,
    pub expires_at: Option<OffsetDateTime>,
}

#[tracing::instrument(skip_all)]
pub async fn insert(conn: &mut PgConnection, key: NewApiKey<'_>) -> Result<ApiKey, sqlx::Error> {
    sqlx::query_as(&format!(
        "insert into api_keys (tenant_id, id, name, hint, secret_hash, scopes, created_by, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8) returning {COLUMNS}"
    ))
    .bind(key.tenant_id)
    .bind(key.id)
    .bind(key.name)
    .bind(key.hint)
    .bind(key.secret_hash)
    .bind(key.scopes.to_vec())
    .bind(key.created_by)
    .bind(key.expires_at)
    .fetch_one(conn)
    .await
}

/// Revokes a key; `None` when no such key is visible. Revoking twice keeps the first time.
#[tracing::instrument(skip_all)]
pub async fn revoke(conn: &mut PgConnection, id: ApiKeyId) -> Result<Option<ApiKey>, sqlx::Error> {
    sqlx::query_as(&format!(
        "update api_keys set revoked_at = coalesce(revoked_at, now()) where id = $1 returning {COLUMNS}"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}
