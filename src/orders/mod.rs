//! Orders, built with event sourcing and CQRS.
//!
//! - [`aggregate`]: the order state machine, rebuilt from events (pure).
//! - [`commands`]: place (prices from the catalog, stock reserved atomically) and the
//!   transitions; each appends to the event store at the expected version and updates
//!   the read model in the same transaction.
//! - [`store`]: the read models queries read, with batch loading for `expand`.
//! - [`projection`]: rebuilding the read models from the event store.

pub mod aggregate;
pub mod commands;
pub mod projection;
mod routes;
pub mod store;

pub use routes::router;

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use aggregate::{Line, Order, OrderStatus};

/// An order as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderView {
    pub id: Uuid,
    pub customer_id: Uuid,
    pub status: OrderStatus,
    /// Sum of quantity × unit price, in minor units of `currency`.
    #[schema(example = 2500)]
    pub total_cents: i64,
    #[schema(example = "EUR")]
    pub currency: String,
    pub items: Vec<ItemView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "pi_3PqR2x")]
    pub payment_reference: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cancel_reason: Option<String>,
    /// Number of events in the order's history; also the `ETag`.
    #[schema(example = 1)]
    pub version: i32,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// With `expand=customer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, example = json!({"id": "01937a5e-7c1a-7b3e-9a52-2f0d3c4b5a69", "email": "ada@example.test", "name": "Ada"}))]
    pub customer: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItemView {
    pub product_id: Uuid,
    #[schema(example = 2)]
    pub quantity: i32,
    #[schema(example = 1250)]
    pub unit_price_cents: i64,
    /// With `expand=items.product`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, example = json!({"id": "01937a5e-7c1a-7b3e-9a52-2f0d3c4b5a70", "sku": "TEE-M", "name": "T-shirt", "price_cents": 1250, "currency": "EUR"}))]
    pub product: Option<serde_json::Value>,
}

impl From<&Line> for ItemView {
    fn from(line: &Line) -> Self {
        Self {
            product_id: line.product_id,
            quantity: line.quantity,
            unit_price_cents: line.unit_price_cents,
            product: None,
        }
    }
}

impl From<&Order> for OrderView {
    fn from(order: &Order) -> Self {
        Self {
            id: order.id,
            customer_id: order.customer_id,
            status: order.status,
            total_cents: order.total_cents,
            currency: order.currency.clone(),
            items: order.lines.iter().map(ItemView::from).collect(),
            payment_reference: order.payment_reference.clone(),
            cancel_reason: order.cancel_reason.clone(),
            version: order.version,
            created_at: order.created_at,
            updated_at: order.updated_at,
            customer: None,
        }
    }
}

impl OrderView {
    fn from_summary(row: store::SummaryRow, lines: &[Line]) -> Self {
        Self {
            id: row.id,
            customer_id: row.customer_id,
            status: row.status,
            total_cents: row.total_cents,
            currency: row.currency,
            items: lines.iter().map(ItemView::from).collect(),
            payment_reference: row.payment_reference,
            cancel_reason: row.cancel_reason,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
            customer: None,
        }
    }
}
