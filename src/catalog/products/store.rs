//! SQL for products. Callers open the transaction; RLS decides what it can see. Every
//! query here skips soft-deleted rows — to the catalog, a deleted product does not exist —
//! except the ones orders use for what they bought ([`lock_any`], [`find_many`]).

use sqlx::PgConnection;

use super::{NewProduct, Priced, Product, ProductChanges, ProductId};
use crate::id::TenantId;

pub const COLUMNS: &str =
    "id, sku, name, price_cents, currency, stock, version, created_at, updated_at, deleted_at";

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
    .bind(i64::from(product.stock))
    .fetch_one(conn)
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
    .bind(changes.stock.map(i64::from))
    .fetch_one(conn)
    .await
}

/// Soft-deletes: the row stays for the orders that reference it.
#[tracing::instrument(skip_all)]
pub async fn soft_delete(conn: &mut PgConnection, id: ProductId) -> Result<Product, sqlx::Error> {
    sqlx::query_as(&format!(
        "update products set deleted_at = now(), version = version + 1, updated_at = now()
         where id = $1 and deleted_at is null
         returning {COLUMNS}"
    ))
    .bind(id)
    .fetch_one(conn)
    .await
}

/// Locks the live products among `ids`, in id order, and reads what pricing needs.
#[tracing::instrument(skip_all)]
pub async fn lock_live(
    conn: &mut PgConnection,
    ids: &[ProductId],
) -> Result<Vec<Priced>, sqlx::Error> {
    sqlx::query_as(
        "select id, price_cents, currency, stock from products
         where id = any($1) and deleted_at is null order by id for update",
    )
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// Locks the products among `ids`, deleted ones too, in id order.
#[tracing::instrument(skip_all)]
pub async fn lock_any(conn: &mut PgConnection, ids: &[ProductId]) -> Result<(), sqlx::Error> {
    sqlx::query("select id from products where id = any($1) order by id for update")
        .bind(ids)
        .execute(conn)
        .await
        .map(drop)
}

/// Adds each delta to its product's stock, in one statement. Stock is `bigint`, so a
/// 32-bit delta cannot take it out of range.
#[tracing::instrument(skip_all)]
pub async fn move_stock(
    conn: &mut PgConnection,
    deltas: impl Iterator<Item = (ProductId, i32)>,
) -> Result<(), sqlx::Error> {
    let (ids, deltas): (Vec<ProductId>, Vec<i32>) = deltas.unzip();
    sqlx::query(
        "update products p set stock = p.stock + d.delta, version = p.version + 1, updated_at = now()
         from unnest($1::uuid[], $2::int[]) as d(id, delta) where p.id = d.id",
    )
    .bind(ids)
    .bind(deltas)
    .execute(conn)
    .await
    .map(drop)
}

/// Products by id, deleted ones included.
#[tracing::instrument(skip_all)]
pub async fn find_many_with_deleted(
    conn: &mut PgConnection,
    ids: &[ProductId],
) -> Result<Vec<Product>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {COLUMNS} from products where id = any($1)"
    ))
    .bind(ids)
    .fetch_all(conn)
    .await
}

/// How many live products the tenant has (what the `products` limit counts).
#[tracing::instrument(skip_all)]
pub async fn count_live(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(*) from products where deleted_at is null")
        .fetch_one(conn)
        .await
}
