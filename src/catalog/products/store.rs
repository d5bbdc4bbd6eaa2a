//! SQL for products. Callers open the transaction; RLS decides what it can see. Every
//! query here skips soft-deleted rows: to the API, a deleted product does not exist.

use sqlx::PgConnection;

use super::{NewProduct, Product, ProductChanges, ProductId};
use crate::{http::pagination::PageRequest, tenancy::TenantId};

const COLUMNS: &str =
    "id, sku, name, price_cents, currency, stock, version, created_at, updated_at";

#[tracing::instrument(skip_all)]
pub async fn insert(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    product: &NewProduct,
) -> Result<Product, sqlx::Error> {
    sqlx::query_as(&format!(
        "insert into products (tenant_id, id, sku, name, price_cents, currency, stock)
         values ($1, $2, $3, $4, $5, $6, $7) returning {COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(ProductId::new())
    .bind(product.sku.as_str())
    .bind(product.name.as_str())
    .bind(product.price_cents)
    .bind(product.currency)
    .bind(product.stock)
    .fetch_one(conn)
    .await
}

#[tracing::instrument(skip_all)]
pub async fn find(conn: &mut PgConnection, id: ProductId) -> Result<Option<Product>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from products where id = $1 and deleted_at is null"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// Locks the row for a read-modify-write.
#[tracing::instrument(skip_all)]
pub async fn find_for_update(
    conn: &mut PgConnection,
    id: ProductId,
) -> Result<Option<Product>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from products where id = $1 and deleted_at is null for update"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

#[tracing::instrument(skip_all)]
pub async fn list(conn: &mut PgConnection, page: PageRequest) -> Result<Vec<Product>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from products
         where deleted_at is null and ($1::uuid is null or id < $1)
         order by id desc limit $2"
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
    id: ProductId,
    changes: &ProductChanges,
) -> Result<Product, sqlx::Error> {
    sqlx::query_as(&format!(
        "update products
         set sku = coalesce($2, sku), name = coalesce($3, name),
             price_cents = coalesce($4, price_cents), currency = coalesce($5, currency),
             stock = coalesce($6, stock), version = version + 1, updated_at = now()
         where id = $1 and deleted_at is null
         returning {COLUMNS}"
    ))
    .bind(id)
    .bind(changes.sku.as_ref().map(|sku| sku.as_str()))
    .bind(changes.name.as_ref().map(|name| name.as_str()))
    .bind(changes.price_cents)
    .bind(changes.currency)
    .bind(changes.stock)
    .fetch_one(conn)
    .await
}

/// Soft-deletes: the row stays for the orders that reference it.
#[tracing::instrument(skip_all)]
pub async fn soft_delete(conn: &mut PgConnection, id: ProductId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update products set deleted_at = now(), version = version + 1, updated_at = now()
         where id = $1 and deleted_at is null",
    )
    .bind(id)
    .execute(conn)
    .await
    .map(drop)
}
