//! Rebuilding the order read models from the event store (`tenantry projections rebuild`):
//! for each tenant, under that tenant's context, the read models are emptied and every
//! order stream replayed through the same projection SQL the live path uses
//! ([`store::project`]). The result must equal the live projection; a test checks it
//! after a random mix of commands.
//!
//! The platform role reads every tenant's events (the feed's policy), so the event query
//! must name the tenant: RLS alone would not keep other tenants' orders out.
//!
//! Commands may run during a rebuild. A transition waits on the row lock the rebuild's
//! delete holds and then upserts over the rebuilt row, so it is not lost; an order placed
//! after the rebuild read the events keeps the rows its own transaction wrote; an order
//! placed in between makes the rebuild's insert of its items collide, and the rebuild fails
//! (rolled back, nothing changed) and can simply be run again. It never ends wrong.

use std::collections::BTreeMap;

use uuid::Uuid;

use super::{aggregate::Order, commands, store};
use crate::{db::Db, http::error::ApiError, tenancy::TenantId};

/// Rebuilds every tenant's order read models; returns the number of orders projected.
pub async fn rebuild_all(db: &Db) -> Result<usize, ApiError> {
    let mut tx = db.platform().await?;
    let tenants: Vec<(TenantId,)> = sqlx::query_as("select id from tenants order by id")
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    let mut total = 0;
    for (tenant_id,) in tenants {
        total += rebuild_tenant(db, tenant_id).await?;
    }
    Ok(total)
}

/// Rebuilds one tenant's order read models in one transaction.
pub async fn rebuild_tenant(db: &Db, tenant_id: TenantId) -> Result<usize, ApiError> {
    let mut tx = db.platform().await?;
    tx.enter_tenant(tenant_id).await?;
    sqlx::query("delete from order_items")
        .execute(&mut *tx)
        .await?;
    sqlx::query("delete from order_summaries")
        .execute(&mut *tx)
        .await?;
    let rows: Vec<(Uuid, String, serde_json::Value, time::OffsetDateTime)> = sqlx::query_as(
        "select stream_id, event_type, data, occurred_at from domain_events where tenant_id = $1 and stream_type = $2 order by stream_id, version",
    )
    .bind(tenant_id)
    .bind(commands::STREAM_TYPE)
    .fetch_all(&mut *tx)
    .await?;
    let mut streams: BTreeMap<Uuid, Vec<_>> = BTreeMap::new();
    for (stream_id, event_type, data, at) in rows {
        streams
            .entry(stream_id)
            .or_default()
            .push((commands::decode(&event_type, &data)?, at));
    }
    let count = streams.len();
    for (id, events) in streams {
        if let Some(order) = Order::replay(id, events.iter().map(|(e, at)| (e, *at))) {
            store::project(&mut tx, tenant_id, &order).await?;
            store::project_lines(&mut tx, tenant_id, &order).await?;
        }
    }
    tx.commit().await?;
    Ok(count)
}
