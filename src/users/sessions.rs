//! SQL for a user's login sessions and their refresh tokens.
//!
//! A session is one login and the family of refresh tokens descending from it; revoking it
//! (logout, refresh-token reuse, the user's deactivation) ends every token of the family
//! and every access token carrying its id. The flows that use these rows — login, refresh
//! with reuse detection, logout — are in `auth::login`; this module only stores them.

use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use super::{UserId, UserStatus};
use crate::{
    access::Role,
    id::{SessionId, TenantId},
    tenancy::TenantStatus,
};

#[tracing::instrument(skip_all)]
pub async fn insert(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    id: SessionId,
    user_id: UserId,
    expires_at: OffsetDateTime,
) -> Result<(), sqlx::Error> {
    sqlx::query("insert into sessions (tenant_id, id, user_id, expires_at) values ($1, $2, $3, $4)")
        .bind(tenant_id)
        .bind(id)
        .bind(user_id)
        .bind(expires_at)
        .execute(conn)
        .await
        .map(drop)
}

/// A refresh token about to be stored: its id and the keyed hash of its secret.
pub struct NewRefreshToken<'a> {
    pub tenant_id: TenantId,
    pub id: Uuid,
    pub session_id: SessionId,
    pub secret_hash: &'a [u8],
    pub expires_at: OffsetDateTime,
}

#[tracing::instrument(skip_all)]
pub async fn insert_refresh_token(
    conn: &mut PgConnection,
    token: NewRefreshToken<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query("insert into refresh_tokens (tenant_id, id, session_id, secret_hash, expires_at) values ($1, $2, $3, $4, $5)")
        .bind(token.tenant_id)
        .bind(token.id)
        .bind(token.session_id)
        .bind(token.secret_hash)
        .bind(token.expires_at)
        .execute(conn)
        .await
        .map(drop)
}

/// A refresh token with everything its exchange checks, in one row.
#[derive(Debug, FromRow)]
pub struct RefreshRecord {
    pub secret_hash: Vec<u8>,
    pub used_at: Option<OffsetDateTime>,
    /// The token it was exchanged for, once used.
    pub replaced_by: Option<Uuid>,
    /// Whether that token has been exchanged in turn.
    pub successor_used: bool,
    pub expires_at: OffsetDateTime,
    pub session_id: SessionId,
    pub session_live: bool,
    pub user_id: UserId,
    pub user_status: UserStatus,
    pub role: Role,
    pub tenant_status: TenantStatus,
}

/// Reads a refresh token with its session, user and tenant, locking the token's row: two
/// concurrent refreshes with one token serialise, and the second sees the first's
/// `used_at` — reuse, as it should be.
#[tracing::instrument(skip_all)]
pub async fn lock_refresh_token(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    id: Uuid,
) -> Result<Option<RefreshRecord>, sqlx::Error> {
    sqlx::query_as(
        r#"
        select r.secret_hash, r.used_at, r.replaced_by, n.used_at is not null as successor_used,
               r.expires_at, r.session_id,
               s.revoked_at is null and s.expires_at > now() as session_live,
               u.id as user_id, u.status as user_status, u.role, t.status as tenant_status
        from refresh_tokens r
        join sessions s on s.tenant_id = r.tenant_id and s.id = r.session_id
        join users u on u.tenant_id = s.tenant_id and u.id = s.user_id
        join tenants t on t.id = r.tenant_id
        left join refresh_tokens n on n.tenant_id = r.tenant_id and n.id = r.replaced_by
        where r.tenant_id = $1 and r.id = $2
        for update of r
        "#,
    )
    .bind(tenant_id)
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Marks a refresh token consumed, exchanged for `successor` (already stored); returns
/// when.
#[tracing::instrument(skip_all)]
pub async fn use_refresh_token(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    id: Uuid,
    successor: Uuid,
) -> Result<OffsetDateTime, sqlx::Error> {
    sqlx::query_scalar(
        "update refresh_tokens set used_at = now(), replaced_by = $3
         where tenant_id = $1 and id = $2 returning used_at",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(successor)
    .fetch_one(conn)
    .await
}

/// Ends one session (logout, refresh-token reuse).
#[tracing::instrument(skip_all)]
pub async fn revoke(
    conn: &mut PgConnection,
    session_id: SessionId,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("update sessions set revoked_at = now(), revoked_reason = $2 where id = $1 and revoked_at is null")
        .bind(session_id)
        .bind(reason)
        .execute(conn)
        .await
        .map(drop)
}

/// Ends every live session of a user (deactivation).
#[tracing::instrument(skip_all)]
pub async fn revoke_all_of(
    conn: &mut PgConnection,
    user_id: UserId,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("update sessions set revoked_at = now(), revoked_reason = $2 where user_id = $1 and revoked_at is null")
        .bind(user_id)
        .bind(reason)
        .execute(conn)
        .await
        .map(drop)
}
