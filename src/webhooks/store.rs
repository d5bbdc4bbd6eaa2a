//! SQL of the webhook API (the request role, under RLS). Callers open the transaction.
//! Secrets are written here and never read: the request role may not select them.

use std::collections::HashMap;

use sqlx::PgConnection;

use super::{
    Attempt, Delivery, EndpointChanges, NewEndpoint, WebhookDeliveryId, WebhookEndpoint,
    WebhookEndpointId, signing::Secret,
};
use crate::{id::TenantId, page::PageRequest};

pub const ENDPOINT_COLUMNS: &str = "id, url, description, event_types, enabled, disabled_reason, \
     case when previous_secret_expires_at > now() then previous_secret_expires_at end \
     as previous_secret_expires_at, version, created_at, updated_at";

const DELIVERY_COLUMNS: &str = "id, endpoint_id, event_id, event_type, state, \
     attempts as attempts_made, \
     case when state = 'pending' then next_attempt_at end as next_attempt_at, \
     delivered_at, created_at, payload";

#[tracing::instrument(skip_all)]
pub async fn insert(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    new: &NewEndpoint,
    secret: &Secret,
) -> Result<WebhookEndpoint, sqlx::Error> {
    let event_types: Vec<&str> = new.event_types.iter().map(|t| t.as_str()).collect();
    sqlx::query_as(&format!(
        "insert into webhook_endpoints (tenant_id, id, url, description, event_types, secret)
         values ($1, $2, $3, $4, $5, $6) returning {ENDPOINT_COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(WebhookEndpointId::new())
    .bind(new.url.as_str())
    .bind(new.description.as_deref())
    .bind(event_types)
    .bind(secret.as_bytes())
    .fetch_one(conn)
    .await
}

/// Applies the fields that are `Some`. Enabling clears the reason a disabling gave.
#[tracing::instrument(skip_all)]
pub async fn update(
    conn: &mut PgConnection,
    id: WebhookEndpointId,
    changes: &EndpointChanges,
) -> Result<WebhookEndpoint, sqlx::Error> {
    let event_types: Option<Vec<&str>> = changes
        .event_types
        .as_ref()
        .map(|types| types.iter().map(|t| t.as_str()).collect());
    sqlx::query_as(&format!(
        "update webhook_endpoints
         set url = coalesce($2, url),
             description = case when $3 then $4 else description end,
             event_types = coalesce($5, event_types),
             enabled = coalesce($6, enabled),
             disabled_reason = case when $6 then null else disabled_reason end,
             version = version + 1, updated_at = now()
         where id = $1 and deleted_at is null
         returning {ENDPOINT_COLUMNS}"
    ))
    .bind(id)
    .bind(changes.url.as_ref().map(|url| url.as_str()))
    .bind(changes.description.is_some())
    .bind(changes.description.clone().flatten())
    .bind(event_types)
    .bind(changes.enabled)
    .fetch_one(conn)
    .await
}

/// Soft-deletes: the row stays for its deliveries.
#[tracing::instrument(skip_all)]
pub async fn soft_delete(
    conn: &mut PgConnection,
    id: WebhookEndpointId,
) -> Result<WebhookEndpoint, sqlx::Error> {
    sqlx::query_as(&format!(
        "update webhook_endpoints set deleted_at = now(), version = version + 1, updated_at = now()
         where id = $1 and deleted_at is null
         returning {ENDPOINT_COLUMNS}"
    ))
    .bind(id)
    .fetch_one(conn)
    .await
}

/// Sets a new secret; a trigger keeps the old one as `previous_secret`, which signs until
/// `overlap` from now.
#[tracing::instrument(skip_all)]
pub async fn rotate(
    conn: &mut PgConnection,
    id: WebhookEndpointId,
    secret: &Secret,
    overlap: std::time::Duration,
) -> Result<WebhookEndpoint, sqlx::Error> {
    sqlx::query_as(&format!(
        "update webhook_endpoints
         set secret = $2, previous_secret_expires_at = now() + make_interval(secs => $3),
             version = version + 1, updated_at = now()
         where id = $1 and deleted_at is null
         returning {ENDPOINT_COLUMNS}"
    ))
    .bind(id)
    .bind(secret.as_bytes())
    .bind(overlap.as_secs_f64())
    .fetch_one(conn)
    .await
}

/// How many live endpoints the tenant has (what the `webhook_endpoints` limit counts).
#[tracing::instrument(skip_all)]
pub async fn count_live(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select count(*) from webhook_endpoints where deleted_at is null")
        .fetch_one(conn)
        .await
}

#[tracing::instrument(skip_all)]
pub async fn insert_test_delivery(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    id: WebhookDeliveryId,
    endpoint_id: WebhookEndpointId,
    payload: &serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into webhook_deliveries (tenant_id, id, endpoint_id, event_type, payload)
         values ($1, $2, $3, $4, $5)",
    )
    .bind(tenant_id)
    .bind(id)
    .bind(endpoint_id)
    .bind(super::TEST_EVENT_TYPE)
    .bind(payload)
    .execute(conn)
    .await
    .map(drop)
}

#[tracing::instrument(skip_all)]
pub async fn delivery(
    conn: &mut PgConnection,
    endpoint_id: WebhookEndpointId,
    id: WebhookDeliveryId,
) -> Result<Option<Delivery>, sqlx::Error> {
    let mut delivery: Option<Delivery> = sqlx::query_as(&format!(
        "select {DELIVERY_COLUMNS} from webhook_deliveries where id = $1 and endpoint_id = $2"
    ))
    .bind(id)
    .bind(endpoint_id)
    .fetch_optional(&mut *conn)
    .await?;
    if let Some(delivery) = delivery.as_mut() {
        delivery.attempts = attempts(conn, &[id]).await?.remove(&id).unwrap_or_default();
    }
    Ok(delivery)
}

/// A page of an endpoint's deliveries, newest first (without their attempts).
#[tracing::instrument(skip_all)]
pub async fn deliveries(
    conn: &mut PgConnection,
    endpoint_id: WebhookEndpointId,
    page: PageRequest,
) -> Result<Vec<Delivery>, sqlx::Error> {
    let statement = match page.before {
        Some(_) => format!(
            "select {DELIVERY_COLUMNS} from webhook_deliveries
             where endpoint_id = $1 and id < $2 order by id desc limit $3"
        ),
        None => format!(
            "select {DELIVERY_COLUMNS} from webhook_deliveries
             where endpoint_id = $1 order by id desc limit $2"
        ),
    };
    let query = sqlx::query_as(&statement).bind(endpoint_id);
    let query = match page.before {
        Some(before) => query.bind(before),
        None => query,
    };
    query.bind(page.fetch_limit()).fetch_all(conn).await
}

/// The attempts at `ids`, oldest first, by delivery.
#[tracing::instrument(skip_all)]
pub async fn attempts(
    conn: &mut PgConnection,
    ids: &[WebhookDeliveryId],
) -> Result<HashMap<WebhookDeliveryId, Vec<Attempt>>, sqlx::Error> {
    let rows: Vec<Attempt> = sqlx::query_as(
        "select delivery_id, attempted_at, status_code, latency_ms, response_snippet, error
         from webhook_attempts where delivery_id = any($1) order by delivery_id, id",
    )
    .bind(ids)
    .fetch_all(conn)
    .await?;
    let mut by_delivery: HashMap<WebhookDeliveryId, Vec<Attempt>> = HashMap::new();
    for attempt in rows {
        by_delivery
            .entry(attempt.delivery_id)
            .or_default()
            .push(attempt);
    }
    Ok(by_delivery)
}

/// Makes a failed delivery pending again, due now, with a fresh retry schedule.
#[tracing::instrument(skip_all)]
pub async fn requeue(conn: &mut PgConnection, id: WebhookDeliveryId) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update webhook_deliveries set state = 'pending', attempts = 0, next_attempt_at = now()
         where id = $1 and state = 'failed'",
    )
    .bind(id)
    .execute(conn)
    .await
    .map(drop)
}
