//! SQL for customers. Callers open the transaction; RLS decides what it can see.

use sqlx::PgConnection;

use super::{Customer, CustomerChanges, CustomerId, NewCustomer};
use crate::id::TenantId;

pub const COLUMNS: &str = "id, email, name, version, created_at, updated_at, erased_at";

#[tracing::instrument(skip_all)]
pub async fn insert(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    customer: &NewCustomer,
) -> Result<Customer, sqlx::Error> {
    sqlx::query_as(&format!(
        "insert into customers (tenant_id, id, email, name) values ($1, $2, $3, $4) returning {COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(CustomerId::new())
    .bind(customer.email.as_str())
    .bind(customer.name.as_str())
    .fetch_one(conn)
    .await
}

/// Applies the fields that are `Some`; the others keep their value.
#[tracing::instrument(skip_all)]
pub async fn update(
    conn: &mut PgConnection,
    id: CustomerId,
    changes: &CustomerChanges,
) -> Result<Customer, sqlx::Error> {
    sqlx::query_as(&format!(
        "update customers
         set email = coalesce($2, email), name = coalesce($3, name),
             version = version + 1, updated_at = now()
         where id = $1
         returning {COLUMNS}"
    ))
    .bind(id)
    .bind(changes.email.as_ref().map(|email| email.as_str()))
    .bind(changes.name.as_ref().map(|name| name.as_str()))
    .fetch_one(conn)
    .await
}

/// Replaces an erased customer's email and name (the row stays: orders refer to it).
#[tracing::instrument(skip_all)]
pub async fn erase(conn: &mut PgConnection, id: CustomerId) -> Result<Customer, sqlx::Error> {
    sqlx::query_as(&format!(
        "update customers
         set email = 'erased+' || id || '@erased.invalid', name = 'Erased customer',
             erased_at = now(), version = version + 1, updated_at = now()
         where id = $1
         returning {COLUMNS}"
    ))
    .bind(id)
    .fetch_one(conn)
    .await
}
