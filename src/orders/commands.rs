//! The write side: place an order, and move it through its lifecycle.
//!
//! Each command runs inside the caller's tenant transaction: it rebuilds the order from its
//! events, decides, appends the new event at the next version and updates the read models
//! ([`super::projection`]) before the transaction commits — so a client reads its own
//! writes, and nothing is acknowledged that is not committed.
//!
//! Each command counts itself in the metrics (`orders_placed_total{currency}`,
//! `orders_placed_amount_total{currency}`, `order_transitions_total{to}`) only once its
//! transaction has committed ([`TenantTx::after_commit`]): a refused or rolled-back
//! command counts nothing, whichever transport ran it.

use std::collections::{HashMap, HashSet};

use super::{
    aggregate::{Line, Order, OrderStatus, Refusal, Transition},
    projection,
    stream::{self, OrderEvent},
};
use crate::cache;
use crate::{
    access::{Principal, Scope},
    audit::{self, AuditEvent},
    catalog::{customers, products},
    db::TenantTx,
    error::{Error, FieldError},
    events,
    id::{CustomerId, OrderId, ProductId},
    plans::{LimitName, quota},
};

/// An order to place: a customer and, per product, how many.
#[derive(Debug, Clone)]
pub struct NewOrder {
    customer_id: CustomerId,
    items: Vec<Requested>,
}

impl NewOrder {
    /// Refuses a product listed twice (its quantity says how many).
    pub fn parse(customer_id: CustomerId, items: Vec<Requested>) -> Result<Self, Error> {
        let mut seen = HashSet::new();
        if let Some(index) = items.iter().position(|i| !seen.insert(i.product_id)) {
            return Err(Error::refused_field(
                "duplicate_product",
                &format!("items[{index}].product_id"),
                "each product may appear once; set its quantity",
            ));
        }
        Ok(Self { customer_id, items })
    }
}

/// A requested line, before pricing.
#[derive(Debug, Clone, Copy)]
pub struct Requested {
    pub product_id: ProductId,
    pub quantity: i32,
}

/// Places an order: prices come from the catalog inside this transaction, and stock is
/// reserved atomically — the product rows are locked in id order (so concurrent orders
/// cannot deadlock), checked, then decremented in one statement. 409 `insufficient_stock`
/// when any line lacks stock, and then nothing is reserved.
pub async fn place(
    tx: &mut TenantTx,
    principal: &Principal,
    new: NewOrder,
) -> Result<Order, Error> {
    principal.require(Scope::OrdersWrite)?;
    if !customers::exists(tx, new.customer_id).await? {
        return Err(Error::refused_field(
            "customer_not_found",
            "customer_id",
            "no such customer",
        ));
    }
    let ids: Vec<ProductId> = new.items.iter().map(|r| r.product_id).collect();
    let products: HashMap<ProductId, products::Priced> = products::lock_for_order(tx, &ids)
        .await?
        .into_iter()
        .map(|p| (p.id, p))
        .collect();

    let mut errors = Vec::new();
    let mut lines = Vec::with_capacity(new.items.len());
    for (index, item) in new.items.iter().enumerate() {
        match products.get(&item.product_id) {
            Some(product) => lines.push(Line {
                product_id: item.product_id,
                quantity: item.quantity,
                unit_price_cents: product.price_cents,
            }),
            None => errors.push(FieldError::new(
                format!("items[{index}].product_id"),
                "no such product",
            )),
        }
    }
    if !errors.is_empty() {
        return Err(Error::refused("product_not_found", errors));
    }
    let mut currencies = products.values().map(|p| p.currency.code());
    let code = currencies.next().unwrap_or_default();
    if currencies.any(|c| c != code) {
        return Err(Error::refused_field(
            "mixed_currencies",
            "items",
            "all products of an order must have the same currency",
        ));
    }
    if let Some(short) = new.items.iter().find(|r| {
        products
            .get(&r.product_id)
            .is_some_and(|p| p.stock < i64::from(r.quantity))
    }) {
        return Err(Error::conflict(
            "insufficient_stock",
            format!("not enough stock of product {}", short.product_id),
        ));
    }
    let total_cents = lines
        .iter()
        .try_fold(0i64, |sum, l| {
            l.unit_price_cents
                .checked_mul(i64::from(l.quantity))
                .and_then(|x| sum.checked_add(x))
        })
        .ok_or_else(|| {
            Error::refused_field(
                "value_out_of_range",
                "items",
                "the order total is too large",
            )
        })?;

    products::reserve(tx, &quantities(&lines)).await?;
    for line in &lines {
        tx.resource_changed(cache::kind::PRODUCT, line.product_id.as_uuid());
    }
    let event = OrderEvent::Placed {
        customer_id: new.customer_id,
        currency: code.to_owned(),
        lines,
        total_cents,
    };
    // The id first, then the time: listings turn `created_at` bounds into id bounds and
    // rely on an id never being minted after its order's creation time
    // (`queries::ID_MINTED_BEFORE_CREATION`).
    let id = OrderId::new();
    let order = Order::placed(id, &event, events::now())
        .ok_or_else(|| anyhow::anyhow!("a placed event makes an order"))?;
    record(tx, principal, Transition::PLACE, &order, &event).await?;
    // Last, so the allowance's row lock is held only until the commit.
    quota::charge(
        tx,
        principal,
        principal.tenant_id(),
        LimitName::OrdersPerMonth,
        1,
    )
    .await?;
    // A currency is an ISO 4217 code of a product that exists: a bounded label.
    let amount = u64::try_from(total_cents).unwrap_or(0);
    tx.after_commit(move || {
        metrics::counter!("orders_placed_total", "currency" => code).increment(1);
        metrics::counter!("orders_placed_amount_total", "currency" => code).increment(amount);
    });
    Ok(order)
}

/// Moves an existing order on: confirm, pay, ship, deliver or cancel. An invalid
/// transition is 409 with a code naming the current status (`order_is_shipped`, …);
/// cancelling gives back exactly the stock the order reserved.
pub async fn transition(
    tx: &mut TenantTx,
    principal: &Principal,
    id: OrderId,
    transition: Transition,
) -> Result<Order, Error> {
    principal.require(Scope::OrdersWrite)?;
    let mut order = stream::load(tx, id, None)
        .await?
        .ok_or_else(|| Error::not_found("order"))?;
    let command = transition.name();
    let event = order.decide(transition).map_err(refusal)?;
    if let OrderEvent::Cancelled { released, .. } = &event {
        products::release(tx, &quantities(released)).await?;
        for line in released {
            tx.resource_changed(cache::kind::PRODUCT, line.product_id.as_uuid());
        }
    }
    order.apply(&event, events::now());
    record(tx, principal, command, &order, &event).await?;
    let to = order.status.as_str();
    tx.after_commit(move || {
        metrics::counter!("order_transitions_total", "to" => to).increment(1);
    });
    Ok(order)
}

/// Appends the event, updates the read models and records the audit event, in the
/// command's transaction.
async fn record(
    tx: &mut TenantTx,
    principal: &Principal,
    command: &str,
    order: &Order,
    event: &OrderEvent,
) -> Result<(), Error> {
    stream::append(tx, principal, command, order, event).await?;
    tx.resource_changed(cache::kind::ORDER, order.id.as_uuid());
    let tenant_id = tx.tenant_id();
    projection::project(tx, tenant_id, order, event).await?;
    let (_, data) = stream::encode(event)?;
    let audited = AuditEvent::new(event.kind(), "order", order.id).data(serde_json::json!({
        "version": order.version,
        "status": order.status,
        "event": data,
    }));
    audit::record(tx, principal, audited).await?;
    Ok(())
}

fn quantities(lines: &[Line]) -> Vec<(ProductId, i32)> {
    lines.iter().map(|l| (l.product_id, l.quantity)).collect()
}

/// A refused command: an invalid transition is a 409 whose code names the current status.
fn refusal(refusal: Refusal) -> Error {
    match refusal {
        Refusal::InvalidTransition { current, .. } => {
            let code = match current {
                OrderStatus::Pending => "order_is_pending",
                OrderStatus::Confirmed => "order_is_confirmed",
                OrderStatus::Paid => "order_is_paid",
                OrderStatus::Shipped => "order_is_shipped",
                OrderStatus::Delivered => "order_is_delivered",
                OrderStatus::Cancelled => "order_is_cancelled",
            };
            Error::conflict(code, refusal.to_string())
        }
        Refusal::AmountMismatch { .. } => {
            Error::refused_field("amount_mismatch", "amount_cents", refusal.to_string())
        }
    }
}
