//! Orders, built with event sourcing and CQRS, split by job:
//!
//! - [`aggregate`]: the order state machine — rebuilt from events, deciding what a
//!   transition does (pure, no I/O).
//! - [`stream`]: the events, their codec (one type string per event) and the order's
//!   stream in the event store.
//! - [`commands`]: the write side — place (prices from the catalog, stock reserved
//!   atomically) and the transitions; each appends at the expected version and projects in
//!   the same transaction.
//! - [`projection`]: the read models, written by one function on the live path and by the
//!   rebuild.
//! - [`queries`]: the read side — now, as of a version, lists, history, `expand`.
//!
//! Orders reach the catalog only through what it offers them (`catalog::products`,
//! `catalog::customers`), never through SQL of their own.

pub mod aggregate;
pub mod commands;
pub mod projection;
pub mod queries;
pub mod stream;

pub use crate::id::OrderId;
pub use aggregate::{Order, OrderStatus, Transition};
pub use commands::{NewOrder, Requested, place, transition};

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{
    catalog::{Customer, Product},
    id::{CustomerId, ProductId},
    versioning::Versioned,
};
use aggregate::Line;

impl Versioned for OrderView {
    fn version(&self) -> i64 {
        i64::from(self.version)
    }
}

/// An order as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OrderView {
    pub id: OrderId,
    pub customer_id: CustomerId,
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
    /// The customer, as `GET /v1/customers/{id}` shows it: with `expand=customer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub customer: Option<Customer>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItemView {
    pub product_id: ProductId,
    #[schema(example = 2)]
    pub quantity: i32,
    #[schema(example = 1250)]
    pub unit_price_cents: i64,
    /// The product, as `GET /v1/products/{id}` shows it (with `deleted_at` if it has been
    /// deleted since): with `expand=items.product`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub product: Option<Product>,
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
