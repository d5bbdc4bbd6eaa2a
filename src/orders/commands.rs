//! Commands: each runs inside the caller's tenant transaction, appends its event at the
//! expected version and updates the read model before the transaction commits — so a
//! client reads its own writes, and nothing is acknowledged that is not committed.

use std::collections::HashMap;

use uuid::Uuid;

use super::{
    aggregate::{Command, Line, Order, OrderEvent, OrderStatus, Refusal},
    store,
};
use crate::{
    auth::Principal,
    db::TenantTx,
    events::{self, NewEvent},
    http::error::{ApiError, FieldError},
};

pub const STREAM_TYPE: &str = "order";

/// A requested line before pricing.
pub struct Requested {
    pub product_id: Uuid,
    pub quantity: i32,
}

/// Places an order: prices come from the catalog inside this transaction, and stock is
/// reserved atomically — the product rows are locked in id order (so concurrent orders
/// cannot deadlock), checked, then decremented in one statement.
pub async fn place(
    tx: &mut TenantTx,
    principal: &Principal,
    customer_id: Uuid,
    requested: &[Requested],
) -> Result<Order, ApiError> {
    let customer: Option<(Uuid,)> = sqlx::query_as("select id from customers where id = $1")
        .bind(customer_id)
        .fetch_optional(&mut **tx)
        .await?;
    if customer.is_none() {
        return Err(ApiError::invalid("customer_id", "no such customer"));
    }
    let ids: Vec<Uuid> = requested.iter().map(|r| r.product_id).collect();
    let rows: Vec<(Uuid, i64, String, i32)> = sqlx::query_as(
        "select id, price_cents, currency, stock from products where id = any($1) and deleted_at is null order by id for update",
    )
    .bind(&ids)
    .fetch_all(&mut **tx)
    .await?;
    let products: HashMap<Uuid, (i64, String, i32)> = rows
        .into_iter()
        .map(|(id, p, c, s)| (id, (p, c, s)))
        .collect();

    let mut errors = Vec::new();
    let mut lines = Vec::with_capacity(requested.len());
    for (index, item) in requested.iter().enumerate() {
        match products.get(&item.product_id) {
            Some((price, _, _)) => lines.push(Line {
                product_id: item.product_id,
                quantity: item.quantity,
                unit_price_cents: *price,
            }),
            None => errors.push(FieldError::new(
                format!("items[{index}].product_id"),
                "no such product",
            )),
        }
    }
    if !errors.is_empty() {
        return Err(ApiError::Validation(errors));
    }
    let mut currencies = products.values().map(|(_, currency, _)| currency.as_str());
    let currency = currencies.next().unwrap_or_default().to_owned();
    if currencies.any(|c| c != currency) {
        return Err(ApiError::invalid(
            "items",
            "all products of an order must have the same currency",
        ));
    }
    if let Some(short) = requested.iter().find(|r| {
        products
            .get(&r.product_id)
            .is_some_and(|(_, _, stock)| *stock < r.quantity)
    }) {
        return Err(ApiError::conflict(
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
        .ok_or_else(|| ApiError::invalid("items", "the order total is too large"))?;

    adjust_stock(tx, &lines, -1).await?;
    let event = OrderEvent::Placed {
        customer_id,
        currency,
        lines,
        total_cents,
    };
    let order = Order::placed(Uuid::now_v7(), &event, events::now())
        .expect("a placed event makes an order");
    append(tx, principal, Command::PLACE, &order, &event).await?;
    let tenant_id = tx.tenant_id();
    store::project(tx, tenant_id, &order).await?;
    store::project_lines(tx, tenant_id, &order).await?;
    Ok(order)
}

/// Runs a state change on an existing order.
pub async fn execute(
    tx: &mut TenantTx,
    principal: &Principal,
    order_id: Uuid,
    command: Command,
) -> Result<Order, ApiError> {
    let mut order = load(tx, order_id, None)
        .await?
        .ok_or(ApiError::NotFound("order"))?;
    let name = command.name();
    let event = order.decide(command).map_err(refusal)?;
    if let OrderEvent::Cancelled { released, .. } = &event {
        // Same lock order as placing (by product id), so the two never deadlock.
        let ids: Vec<Uuid> = released.iter().map(|l| l.product_id).collect();
        sqlx::query("select id from products where id = any($1) order by id for update")
            .bind(&ids)
            .execute(&mut **tx)
            .await?;
        adjust_stock(tx, released, 1).await?;
    }
    order.apply(&event, events::now());
    append(tx, principal, name, &order, &event).await?;
    let tenant_id = tx.tenant_id();
    store::project(tx, tenant_id, &order).await?;
    Ok(order)
}

/// Rebuilds an order from its events, up to a version when given.
pub async fn load(
    tx: &mut TenantTx,
    order_id: Uuid,
    up_to_version: Option<i32>,
) -> Result<Option<Order>, ApiError> {
    let stored = events::load(tx, order_id, up_to_version).await?;
    let decoded = stored
        .iter()
        .map(|e| decode(&e.event_type, &e.data).map(|event| (event, e.occurred_at)))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Order::replay(
        order_id,
        decoded.iter().map(|(e, at)| (e, *at)),
    ))
}

/// Reads a stored event back into the domain type.
pub fn decode(event_type: &str, data: &serde_json::Value) -> Result<OrderEvent, ApiError> {
    let short = event_type.strip_prefix("order.").unwrap_or(event_type);
    serde_json::from_value(serde_json::json!({"type": short, "data": data}))
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("undecodable {event_type} event: {e}")))
}

async fn append(
    tx: &mut TenantTx,
    principal: &Principal,
    command: &str,
    order: &Order,
    event: &OrderEvent,
) -> Result<(), ApiError> {
    let data = match serde_json::to_value(event).map_err(anyhow::Error::from)? {
        serde_json::Value::Object(mut tagged) => tagged.remove("data").unwrap_or_default(),
        _ => serde_json::Value::Null,
    };
    let new = NewEvent {
        stream_type: STREAM_TYPE,
        stream_id: order.id,
        version: order.version,
        event_type: event.type_name(),
        occurred_at: order.updated_at,
        data,
        metadata: events::metadata(principal, command),
    };
    let tenant_id = tx.tenant_id();
    events::append(tx, tenant_id, &[new]).await?;
    Ok(())
}

/// Moves stock by `sign × quantity` for each line, in one statement. The caller holds the
/// product rows' locks (taken in id order).
async fn adjust_stock(tx: &mut TenantTx, lines: &[Line], sign: i32) -> Result<(), sqlx::Error> {
    let ids: Vec<Uuid> = lines.iter().map(|l| l.product_id).collect();
    let deltas: Vec<i32> = lines.iter().map(|l| sign * l.quantity).collect();
    sqlx::query(
        "update products p set stock = p.stock + d.delta, version = p.version + 1, updated_at = now()
         from unnest($1::uuid[], $2::int[]) as d(id, delta) where p.id = d.id",
    )
    .bind(ids)
    .bind(deltas)
    .execute(&mut **tx)
    .await
    .map(drop)
}

/// A refused command: an invalid transition is a 409 whose code names the current status.
fn refusal(refusal: Refusal) -> ApiError {
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
            ApiError::conflict(code, refusal.to_string())
        }
        Refusal::AmountMismatch { .. } => ApiError::invalid("amount_cents", refusal.to_string()),
    }
}
