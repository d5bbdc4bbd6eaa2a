//! An endpoint's deliveries as the API shows them, with their attempts; a test event;
//! re-queueing a failed delivery. (Enqueueing the feed's events is `dispatch`'s, sending
//! is `send`'s.)

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{TEST_EVENT_TYPE, WebhookDeliveryId, WebhookEndpoint, WebhookEndpointId, store};
use crate::{
    access::{Principal, Scope},
    audit::{self, AuditEvent},
    db::{TenantTx, table},
    error::Error,
    page::{Page, PageRequest},
};

/// Enqueues a `webhook.test` event for this endpoint alone (behind its pending
/// deliveries). The caller wakes the sender once this commits.
pub async fn send_test(
    tx: &mut TenantTx,
    principal: &Principal,
    id: WebhookEndpointId,
) -> Result<Delivery, Error> {
    principal.require(Scope::WebhooksWrite)?;
    let endpoint: WebhookEndpoint = table::get(tx, id).await?;
    if !endpoint.enabled {
        return Err(Error::conflict(
            "webhook_endpoint_disabled",
            "the endpoint is disabled; enable it first",
        ));
    }
    let delivery_id = WebhookDeliveryId::new();
    let payload = serde_json::json!({
        "type": TEST_EVENT_TYPE,
        "timestamp": now_rfc3339(),
        "data": {"endpoint_id": endpoint.id},
    });
    store::insert_test_delivery(
        tx,
        principal.tenant_id(),
        delivery_id,
        endpoint.id,
        &payload,
    )
    .await?;
    audit::record(
        tx,
        principal,
        AuditEvent::new("webhook_endpoint.tested", "webhook_endpoint", endpoint.id)
            .data(serde_json::json!({"delivery_id": delivery_id})),
    )
    .await?;
    store::delivery(tx, endpoint.id, delivery_id)
        .await?
        .ok_or_else(|| Error::not_found("webhook_delivery"))
}

/// An endpoint's deliveries, newest first, each with its attempts.
pub async fn list_deliveries(
    tx: &mut TenantTx,
    principal: &Principal,
    id: WebhookEndpointId,
    page: PageRequest,
) -> Result<Page<Delivery>, Error> {
    principal.require(Scope::WebhooksRead)?;
    let _: WebhookEndpoint = table::get(tx, id).await?;
    let rows = store::deliveries(tx, id, page).await?;
    let mut page = Page::from_rows(rows, page, |d: &Delivery| d.id.as_uuid());
    let ids: Vec<WebhookDeliveryId> = page.items.iter().map(|d| d.id).collect();
    let mut attempts = store::attempts(tx, &ids).await?;
    for delivery in &mut page.items {
        delivery.attempts = attempts.remove(&delivery.id).unwrap_or_default();
    }
    Ok(page)
}

/// Re-queues a failed delivery, due now. The caller wakes the sender once this commits.
pub async fn retry_delivery(
    tx: &mut TenantTx,
    principal: &Principal,
    id: WebhookEndpointId,
    delivery_id: WebhookDeliveryId,
) -> Result<Delivery, Error> {
    principal.require(Scope::WebhooksWrite)?;
    let _: WebhookEndpoint = table::get(tx, id).await?;
    let delivery = store::delivery(tx, id, delivery_id)
        .await?
        .ok_or_else(|| Error::not_found("webhook_delivery"))?;
    if delivery.state != DeliveryState::Failed {
        return Err(Error::conflict(
            "delivery_not_failed",
            "only a failed delivery can be retried; this one is pending or succeeded",
        ));
    }
    store::requeue(tx, delivery_id).await?;
    audit::record(
        tx,
        principal,
        AuditEvent::new("webhook_delivery.retried", "webhook_delivery", delivery_id)
            .data(serde_json::json!({"endpoint_id": id})),
    )
    .await?;
    store::delivery(tx, id, delivery_id)
        .await?
        .ok_or_else(|| Error::not_found("webhook_delivery"))
}

/// Where a delivery is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
pub enum DeliveryState {
    /// Not delivered yet: waiting for its turn, its first attempt or a retry.
    Pending,
    /// A 2xx answer was received.
    Succeeded,
    /// Every attempt of the retry schedule failed (and its endpoint was disabled);
    /// `POST …/retry` re-queues it.
    Failed,
}

/// One delivery of one event to one endpoint.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Delivery {
    /// Also the `webhook-id` header: the same on every attempt.
    pub id: WebhookDeliveryId,
    pub endpoint_id: WebhookEndpointId,
    /// The feed event delivered (absent for a `webhook.test` event).
    #[schema(example = "01937a5e-7c1a-7b3e-9a52-2f0d3c4b5a70")]
    pub event_id: Option<uuid::Uuid>,
    #[schema(example = "order.placed")]
    pub event_type: String,
    pub state: DeliveryState,
    /// Attempts made so far.
    #[schema(example = 1)]
    pub attempts_made: i32,
    /// When the next attempt is due, while pending.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub next_attempt_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub delivered_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// The body sent (the same on every attempt).
    #[schema(value_type = Object, example = json!({"type": "order.placed", "timestamp": "2026-12-06T10:00:00Z", "data": {"order_id": "01937a5e-7c1a-7b3e-9a52-2f0d3c4b5a71"}}))]
    pub payload: serde_json::Value,
    /// Every attempt, oldest first.
    #[sqlx(skip)]
    pub attempts: Vec<Attempt>,
}

/// One attempt at a delivery.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Attempt {
    #[serde(with = "time::serde::rfc3339")]
    pub attempted_at: OffsetDateTime,
    /// The receiver's HTTP status, if it answered.
    #[schema(example = 200)]
    pub status_code: Option<i32>,
    /// From sending the request to the end of the answer (or the failure).
    #[schema(example = 84)]
    pub latency_ms: i32,
    /// The start of the receiver's answer (at most 1 KiB).
    #[schema(example = "ok")]
    pub response_snippet: Option<String>,
    /// Why the attempt failed without an answer (timeout, refused target, connection).
    #[schema(example = json!(null))]
    pub error: Option<String>,
    #[serde(skip)]
    pub delivery_id: WebhookDeliveryId,
}

fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
