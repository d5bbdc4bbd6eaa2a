//! SQL for customers. Callers open the transaction; RLS decides what it can see.

use sqlx::PgConnection;

use super::{Customer, CustomerChanges, CustomerId, NewCustomer};
use crate::{id::TenantId, page::PageRequest};

const COLUMNS: &str = "id, email, name, version, created_at, updated_at";

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

#[tracing::instrument(skip_all)]
pub async fn find(
    conn: &mut PgConnection,
    id: CustomerId,
) -> Result<Option<Customer>, sqlx::Error> {
    sqlx::query_as(&format!("select {COLUMNS} from customers where id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await
}

/// Locks the row for a read-modify-write.
#[tracing::instrument(skip_all)]
pub async fn find_for_update(
    conn: &mut PgConnection,
    id: CustomerId,
) -> Result<Option<Customer>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from customers where id = $1 for update"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

#[tracing::instrument(skip_all)]
pub async fn list(
    conn: &mut PgConnection,
    page: PageRequest,
) -> Result<Vec<Customer>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from customers where ($1::uuid is null or id < $1) order by id desc limit $2"
    ))
    .bind(page.before)
    .bind(page.fetch_limit())
    .fetch_all(conn)
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

/// Customers by id.
#[tracing::instrument(skip_all)]
pub async fn find_many(
    conn: &mut PgConnection,
    ids: &[CustomerId],
) -> Result<Vec<Customer>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from customers where id = any($1)"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await
}
