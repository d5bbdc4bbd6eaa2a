//! SQL for users. Callers open the transaction; RLS decides what it can see.

use sqlx::PgConnection;

use super::{Email, User, UserId, UserStatus};
use crate::{access::Role, id::TenantId};

pub const COLUMNS: &str = "id, email, role, status, version, created_at, updated_at";

#[tracing::instrument(skip_all)]
pub async fn insert(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    email: &Email,
    role: Role,
    password_hash: &str,
) -> Result<User, sqlx::Error> {
    sqlx::query_as(&format!(
        "insert into users (tenant_id, id, email, role, password_hash) values ($1, $2, $3, $4, $5) returning {COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(UserId::new())
    .bind(email.as_str())
    .bind(role)
    .bind(password_hash)
    .fetch_one(conn)
    .await
}

/// The user a login names, with what verifying the password needs.
#[derive(Debug, sqlx::FromRow)]
pub struct LoginUser {
    pub id: UserId,
    pub password_hash: String,
    pub status: UserStatus,
    pub role: Role,
}

#[tracing::instrument(skip_all)]
pub async fn find_for_login(
    conn: &mut PgConnection,
    email: &Email,
) -> Result<Option<LoginUser>, sqlx::Error> {
    sqlx::query_as("select id, password_hash, status, role from users where email = $1")
        .bind(email.as_str())
        .fetch_optional(conn)
        .await
}

#[tracing::instrument(skip_all)]
pub async fn update(
    conn: &mut PgConnection,
    id: UserId,
    role: Role,
    status: UserStatus,
) -> Result<User, sqlx::Error> {
    sqlx::query_as(&format!(
        "update users set role = $2, status = $3, version = version + 1, updated_at = now() where id = $1 returning {COLUMNS}"
    ))
    .bind(id)
    .bind(role)
    .bind(status)
    .fetch_one(conn)
    .await
}

/// Active owners, locked, so two concurrent demotions cannot both pass the last-owner check.
#[tracing::instrument(skip_all)]
pub async fn lock_active_owners(conn: &mut PgConnection) -> Result<Vec<UserId>, sqlx::Error> {
    sqlx::query_scalar(
        "select id from users where role = 'owner' and status = 'active' order by id for update",
    )
    .fetch_all(conn)
    .await
}

/// How many active users the tenant has (what the `users` limit counts).
#[tracing::instrument(skip_all)]
pub async fn count_active(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(*) from users where status = 'active'")
        .fetch_one(conn)
        .await
}
