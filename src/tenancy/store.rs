//! SQL for tenants. Each function takes the connection of a transaction its caller opened
//! (tenant or platform), so the RLS context is decided by the caller's door.

use sqlx::PgConnection;

use super::{Plan, Tenant, TenantId, TenantStatus};

pub const COLUMNS: &str = "id, slug, name, plan, status, version, created_at, updated_at";

#[tracing::instrument(skip_all)]
pub async fn rename(
    conn: &mut PgConnection,
    id: TenantId,
    name: &str,
) -> Result<Tenant, sqlx::Error> {
    sqlx::query_as(&format!(
        "update tenants set name = $2, version = version + 1, updated_at = now() where id = $1 returning {COLUMNS}"
    ))
    .bind(id)
    .bind(name)
    .fetch_one(conn)
    .await
}

/// Operator update of plan and status (platform role only).
#[tracing::instrument(skip_all)]
pub async fn update_admin(
    conn: &mut PgConnection,
    id: TenantId,
    name: &str,
    plan: &Plan,
    status: TenantStatus,
) -> Result<Tenant, sqlx::Error> {
    sqlx::query_as(&format!(
        "update tenants set name = $2, plan = $3, status = $4, version = version + 1, updated_at = now()
         where id = $1 returning {COLUMNS}"
    ))
    .bind(id)
    .bind(name)
    .bind(plan)
    .bind(status)
    .fetch_one(conn)
    .await
}

/// Replaces a tenant's limit overrides (platform role only), as a change of the tenant.
#[tracing::instrument(skip_all)]
pub async fn set_limit_overrides(
    conn: &mut PgConnection,
    id: TenantId,
    overrides: &crate::plans::Overrides,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update tenants set limit_overrides = $2, version = version + 1, updated_at = now() where id = $1",
    )
    .bind(id)
    .bind(sqlx::types::Json(overrides))
    .execute(conn)
    .await
    .map(drop)
}
