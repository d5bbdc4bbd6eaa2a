//! The order read models (`order_summaries`, `order_items`), written by one function,
//! [`project`], on both paths that write them:
//! - **live**: each command projects in the transaction that appends its event, so a
//!   client reads its own writes;
//! - **rebuild** (`tenantry projections rebuild`, as the database owner): for each tenant,
//!   under that tenant's context, the read models are emptied and every order stream
//!   replayed and projected.
//!   The result must equal the live projection; a test checks it after a random mix of
//!   commands.
//!
//! Commands may run during a rebuild. A transition waits on the row lock the rebuild's
//! delete holds and then upserts over the rebuilt row, so it is not lost; an order placed
//! after the rebuild read the events keeps the rows its own transaction wrote; an order
//! placed in between makes the rebuild's insert of its items collide, and the rebuild fails
//! (rolled back, nothing changed) and can simply be run again. It never ends wrong.
//!
//! Each run of the command is recorded in `projection_rebuilds` ([`rebuild`]): the command
//! runs in a process of its own, whose metrics no scrape would ever see, so a server reads
//! the runs recorded since it last looked ([`report_rebuilds`]) and counts them in
//! `projection_rebuilds_total{projection, outcome}` and
//! `projection_rebuild_duration_seconds{projection}`.

use std::collections::BTreeMap;

use sqlx::{Connection, PgConnection};
use time::OffsetDateTime;

use super::{
    aggregate::Order,
    stream::{self, OrderEvent, STREAM_TYPE},
};
use crate::{
    db::Db,
    error::Error,
    events,
    id::{OrderId, ProductId, TenantId},
};

/// Brings the read models up to date with `order`, which `event` has just made what it
/// is: the summary always; the items once, with the event that placed the order (lines
/// never change).
pub async fn project(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    order: &Order,
    event: &OrderEvent,
) -> Result<(), sqlx::Error> {
    upsert_summary(conn, tenant_id, order).await?;
    if let OrderEvent::Placed { .. } = event {
        insert_items(conn, tenant_id, order).await?;
    }
    Ok(())
}

/// The `projection` these read models are recorded and measured under.
pub const PROJECTION: &str = "orders";

/// Rebuilds one tenant's read models, or every tenant's (`tenant` none), and records the
/// run in `projection_rebuilds` whatever its outcome; returns the number of orders
/// projected. A run whose record cannot be written still answers its own outcome (the
/// failure to record is logged).
pub async fn rebuild(owner: &mut PgConnection, tenant: Option<TenantId>) -> Result<usize, Error> {
    let started_at = OffsetDateTime::now_utc();
    let started = std::time::Instant::now();
    let rebuilt = match tenant {
        Some(tenant_id) => rebuild_tenant(owner, tenant_id).await,
        None => rebuild_all(owner).await,
    };
    // Both ends by this process's clock, the length by its monotonic one.
    let finished_at = started_at + started.elapsed();
    let recorded = sqlx::query(
        "insert into projection_rebuilds (projection, outcome, started_at, finished_at, orders)
         values ($1, $2, $3, $4, $5)",
    )
    .bind(PROJECTION)
    .bind(if rebuilt.is_ok() { "ok" } else { "error" })
    .bind(started_at)
    .bind(finished_at)
    .bind(rebuilt.as_ref().ok().map(|&orders| orders as i64))
    .execute(&mut *owner)
    .await;
    if let Err(error) = recorded {
        tracing::warn!(%error, "recording the rebuild in projection_rebuilds failed");
    }
    rebuilt
}

/// Counts the rebuilds recorded after the run `after` (an id of `projection_rebuilds`) in
/// the metrics, as the platform role; returns the last id counted (`after` when there was
/// none). A server starts from 0, so its counters hold every run ever recorded.
pub async fn report_rebuilds(db: &Db, after: i64) -> Result<i64, Error> {
    let runs: Vec<(i64, String, String, f64)> = db
        .in_platform(async |tx| {
            Ok::<_, Error>(
                sqlx::query_as(
                    "select id, projection, outcome,
                            extract(epoch from finished_at - started_at)::float8
                     from projection_rebuilds where id > $1 order by id",
                )
                .bind(after)
                .fetch_all(&mut **tx)
                .await?,
            )
        })
        .await?;
    let mut last = after;
    for (id, projection, outcome, seconds) in runs {
        // Labels from the database are held to the values this code writes.
        let projection = if projection == PROJECTION {
            PROJECTION
        } else {
            "other"
        };
        let outcome = if outcome == "ok" { "ok" } else { "error" };
        metrics::counter!(
            "projection_rebuilds_total",
            "projection" => projection,
            "outcome" => outcome
        )
        .increment(1);
        metrics::histogram!("projection_rebuild_duration_seconds", "projection" => projection)
            .record(seconds.max(0.0));
        last = id;
    }
    Ok(last)
}

/// Rebuilds every tenant's order read models; returns the number of orders projected.
///
/// `owner` is the database owner's connection (`tenantry projections rebuild`): no role
/// the server holds may delete read models. Each tenant is rebuilt in its own transaction,
/// under its own context, and every statement names the tenant too, so an owner that
/// bypasses row-level security (a superuser) still touches that tenant alone.
pub async fn rebuild_all(owner: &mut PgConnection) -> Result<usize, Error> {
    let tenants: Vec<TenantId> = sqlx::query_scalar("select id from tenants order by id")
        .fetch_all(&mut *owner)
        .await?;
    let mut total = 0;
    for tenant_id in tenants {
        total += rebuild_tenant(owner, tenant_id).await?;
    }
    Ok(total)
}

/// Rebuilds one tenant's order read models in one transaction on the owner's connection
/// (see [`rebuild_all`]); returns the number of orders projected.
pub async fn rebuild_tenant(owner: &mut PgConnection, tenant_id: TenantId) -> Result<usize, Error> {
    let mut tx = owner.begin().await?;
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(tenant_id.to_string())
        .execute(&mut *tx)
        .await?;
    sqlx::query("delete from order_items where tenant_id = $1")
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
    sqlx::query("delete from order_summaries where tenant_id = $1")
        .bind(tenant_id)
        .execute(&mut *tx)
        .await?;
    let stored = events::load_streams(&mut tx, tenant_id, STREAM_TYPE).await?;
    let mut streams: BTreeMap<OrderId, Vec<_>> = BTreeMap::new();
    for event in &stored {
        streams
            .entry(OrderId::from_uuid(event.stream_id))
            .or_default()
            .push((&event.event_type, &event.data, event.occurred_at));
    }
    let count = streams.len();
    for (id, stored) in streams {
        let events = stream::decode_all(stored.into_iter())?;
        let order = Order::replay(id, events.iter().map(|(e, at)| (e, *at)));
        if let (Some(order), Some((placed, _))) = (order, events.first()) {
            project(&mut tx, tenant_id, &order, placed).await?;
        }
    }
    tx.commit().await?;
    Ok(count)
}

#[tracing::instrument(skip_all)]
async fn upsert_summary(
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

#[tracing::instrument(skip_all)]
async fn insert_items(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    order: &Order,
) -> Result<(), sqlx::Error> {
    let products: Vec<ProductId> = order.lines.iter().map(|l| l.product_id).collect();
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
