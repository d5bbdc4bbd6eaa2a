//! SQL for API keys.

use sqlx::PgConnection;
use time::OffsetDateTime;

use super::{ApiKey, ApiKeyId};
use crate::{
    access::Scopes,
    id::{TenantId, UserId},
};

pub const COLUMNS: &str = "id, name, hint, scopes, created_by, created_by_user, created_by_key, expires_at, revoked_at, created_at";

/// Whom a key answers to.
#[derive(Debug, Clone, Copy)]
pub enum Creator {
    User(UserId),
    Key(ApiKeyId),
}

pub struct NewApiKey<'a> {
    pub tenant_id: TenantId,
    pub id: ApiKeyId,
    pub name: &'a str,
    pub hint: &'a str,
    pub secret_hash: &'a [u8],
    pub scopes: Scopes,
    pub created_by: &'a str,
    pub creator: Creator,
    pub expires_at: Option<OffsetDateTime>,
}

#[tracing::instrument(skip_all)]
pub async fn insert(conn: &mut PgConnection, key: NewApiKey<'_>) -> Result<ApiKey, sqlx::Error> {
    sqlx::query_as(&format!(
        "insert into api_keys (tenant_id, id, name, hint, secret_hash, scopes, created_by, created_by_user, created_by_key, expires_at)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) returning {COLUMNS}"
    ))
    .bind(key.tenant_id)
    .bind(key.id)
    .bind(key.name)
    .bind(key.hint)
    .bind(key.secret_hash)
    .bind(key.scopes.to_vec())
    .bind(key.created_by)
    .bind(match key.creator {
        Creator::User(id) => Some(id),
        Creator::Key(_) => None,
    })
    .bind(match key.creator {
        Creator::Key(id) => Some(id),
        Creator::User(_) => None,
    })
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

/// Makes `user` the key's creator (`created_by` is how listings name them).
#[tracing::instrument(skip_all)]
pub async fn take_over(
    conn: &mut PgConnection,
    id: ApiKeyId,
    user: UserId,
    created_by: &str,
) -> Result<ApiKey, sqlx::Error> {
    sqlx::query_as(&format!(
        "update api_keys set created_by_user = $2, created_by_key = null, created_by = $3
         where id = $1 returning {COLUMNS}"
    ))
    .bind(id)
    .bind(user)
    .bind(created_by)
    .fetch_one(conn)
    .await
}

/// How many live keys (neither revoked nor expired) the tenant has (what the `api_keys`
/// limit counts).
#[tracing::instrument(skip_all)]
pub async fn count_live(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "select count(*) from api_keys where revoked_at is null and (expires_at is null or expires_at > now())",
    )
    .fetch_one(conn)
    .await
}
