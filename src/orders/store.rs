//! SQL for the order read models: the projection (written in the same transaction as each
//! append) and the queries, which batch-load related rows with `= any($1)` so a page costs
//! the same number of statements whatever its size.

use std::collections::HashMap;

use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;
use uuid::Uuid;

use super::aggregate::{Line, Order, OrderStatus};
use crate::tenancy::TenantId;

/// Writes (or overwrites) an order's summary row: the live path after each append, and
/// the rebuild after emptying the read models.
#[tracing::instrument(skip_all)]
pub async fn project(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    order: &Order,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        r#"
        insert into order_summaries
            (tenant_id, id, customer_id, status, currency, total_cents, payment_reference, cancel_reason, version, created_at, updated_at)
        values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
        on conflict (tenant_id, id) do update set
            status = excluded.status, payment_reference = excluded.payment_reference,
            cancel_reason = excluded.cancel_reason, version = excluded.version, updated_at = excluded.updated_at
        "#,
    )
    .bind(tenant_id)
    .bind(order.id)
    .bind(order.customer_id)
    .bind(order.status)
    .bind(&order.currency)
    .bind(order.total_cents)
    .bind(&order.payment_reference)
    .bind(&order.cancel_reason)
    .bind(order.version)
    .bind(order.created_at)
    .bind(order.updated_at)
    .execute(conn)
    .await
    .map(drop)
}

/// Writes an order's lines (once, when it is placed: lines never change).
#[tracing::instrument(skip_all)]
pub async fn project_lines(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    order: &Order,
) -> Result<(), sqlx::Error> {
    let products: Vec<Uuid> = order.lines.iter().map(|l| l.product_id).collect();
    let quantities: Vec<i32> = order.lines.iter().map(|l| l.quantity).collect();
    let prices: Vec<i64> = order.lines.iter().map(|l| l.unit_price_cents).collect();
    sqlx::query(
        r#"
        insert into order_items (tenant_id, order_id, line, product_id, quantity, unit_price_cents)
        select $1, $2, l.n, l.product_id, l.quantity, l.price
        from unnest($3::uuid[], $4::int[], $5::bigint[]) with ordinality as l(product_id, quantity, price, n)
        "#,
    )
    .bind(tenant_id)
    .bind(order.id)
    .bind(products)
    .bind(quantities)
    .bind(prices)
    .execute(conn)
    .await
    .map(drop)
}

#[derive(Debug, Clone, FromRow)]
pub struct SummaryRow {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    pub currency: String,
    pub total_cents: i64,
    pub payment_reference: Option<String>,
    pub cancel_reason: Option<String>,
    pub version: i32,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

const SUMMARY: &str = "id, customer_id, status, currency, total_cents, payment_reference, cancel_reason, version, created_at, updated_at";

#[tracing::instrument(skip_all)]
pub async fn find(conn: &mut PgConnection, id: Uuid) -> Result<Option<SummaryRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {SUMMARY} from order_summaries where id = $1"
    ))
    .bind(id)
    .fetch_optional(conn)
    .await
}

/// List filters; all optional.
#[derive(Debug, Default)]
pub struct Filter {
    pub status: Option<OrderStatus>,
    pub customer_id: Option<Uuid>,
    pub created_from: Option<OffsetDateTime>,
    pub created_to: Option<OffsetDateTime>,
}

/// A page of summaries, newest first (ids are UUIDv7, so id order is creation order).
#[tracing::instrument(skip_all)]
pub async fn list(
    conn: &mut PgConnection,
    filter: &Filter,
    before: Option<Uuid>,
    limit: i64,
) -> Result<Vec<SummaryRow>, sqlx::Error> {
    sqlx::query_as(&format!(
        "select {SUMMARY} from order_summaries
         where ($1::text is null or status = $1)
           and ($2::uuid is null or customer_id = $2)
           and ($3::timestamptz is null or created_at >= $3)
           and ($4::timestamptz is null or created_at < $4)
           and ($5::uuid is null or id < $5)
         order by id desc limit $6"
    ))
    .bind(filter.status)
    .bind(filter.customer_id)
    .bind(filter.created_from)
    .bind(filter.created_to)
    .bind(before)
    .bind(limit)
    .fetch_all(conn)
    .await
}

/// The lines of many orders in one statement.
#[tracing::instrument(skip_all)]
pub async fn lines_of(
    conn: &mut PgConnection,
    order_ids: &[Uuid],
) -> Result<HashMap<Uuid, Vec<Line>>, sqlx::Error> {
    let rows: Vec<(Uuid, Uuid, i32, i64)> = sqlx::query_as(
        "select order_id, product_id, quantity, unit_price_cents from order_items where order_id = any($1) order by order_id, line",
    )
    .bind(order_ids)
    .fetch_all(conn)
    .await?;
    let mut lines: HashMap<Uuid, Vec<Line>> = HashMap::new();
    for (order_id, product_id, quantity, unit_price_cents) in rows {
        lines.entry(order_id).or_default().push(Line {
            product_id,
            quantity,
            unit_price_cents,
        });
    }
    Ok(lines)
}

/// Customers for `expand=customer`, in one statement.
#[tracing::instrument(skip_all)]
pub async fn customers(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, serde_json::Value>, sqlx::Error> {
    let rows: Vec<(Uuid, serde_json::Value)> = sqlx::query_as(
        "select id, jsonb_build_object('id', id, 'email', email, 'name', name) from customers where id = any($1)",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Products for `expand=items.product`, in one statement (deleted ones too: an order keeps
/// pointing at what was bought).
#[tracing::instrument(skip_all)]
pub async fn products(
    conn: &mut PgConnection,
    ids: &[Uuid],
) -> Result<HashMap<Uuid, serde_json::Value>, sqlx::Error> {
    let rows: Vec<(Uuid, serde_json::Value)> = sqlx::query_as(
        "select id, jsonb_build_object('id', id, 'sku', sku, 'name', name, 'price_cents', price_cents, 'currency', currency)
         from products where id = any($1)",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    Ok(rows.into_iter().collect())
}
