//! Orders, one file per concern; the request helpers here are shared by all of them. (The
//! ones other files need too — placing an order, running a command on it — are in
//! `helpers`.)

mod concurrency;
mod idempotency;
mod lifecycle;
mod listing;
mod placing;
mod rebuild;
mod statements;

use std::collections::HashSet;

use rand::{Rng, SeedableRng, rngs::StdRng};
use reqwest::{Method, Response, StatusCode, header::IF_NONE_MATCH};
use serde_json::{Value, json};
use tenantry::tenancy::TenantId;
use uuid::Uuid;

use crate::helpers::{
    TestApp, TestTenant, all_pages, command, command_body, etag_of, expect_json, expect_problem,
    id, ids_of, json_log_lines, lines_of_request, order_request, place, place_ok, post_with_key,
    replayed, send, sigterm, spawn_app, spawn_statement_logging_server, statements_in, unique,
};

/// Creates a product with a unique SKU and the given price, currency and stock.
pub(crate) async fn product_with(
    app: &TestApp,
    tenant: &TestTenant,
    price_cents: i64,
    currency: &str,
    stock: i32,
) -> Value {
    let body = json!({
        "sku": unique("SKU"),
        "name": "Order test product",
        "price_cents": price_cents,
        "currency": currency,
        "stock": stock
    });
    expect_json(
        app.post("/v1/products", &tenant.token, body).await,
        StatusCode::CREATED,
    )
    .await
}

/// Runs a transition that must succeed; returns the order after it.
pub(crate) async fn transition_ok(
    app: &TestApp,
    tenant: &TestTenant,
    order_id: &str,
    name: &str,
    body: Value,
) -> Value {
    expect_json(
        command(app, tenant, order_id, name, body).await,
        StatusCode::OK,
    )
    .await
}

/// The order as `GET /v1/orders/{id}` shows it now.
pub(crate) async fn order(app: &TestApp, tenant: &TestTenant, order_id: &str) -> Value {
    expect_json(
        app.get(&format!("/v1/orders/{order_id}"), &tenant.token)
            .await,
        StatusCode::OK,
    )
    .await
}

/// The order's events, oldest first.
pub(crate) async fn history(app: &TestApp, tenant: &TestTenant, order_id: &str) -> Vec<Value> {
    let body = expect_json(
        app.get(&format!("/v1/orders/{order_id}/events"), &tenant.token)
            .await,
        StatusCode::OK,
    )
    .await;
    body["items"]
        .as_array()
        .unwrap_or_else(|| panic!("expected {{items: [...]}}, got {body}"))
        .clone()
}

/// The `event_type` of each event.
pub(crate) fn event_types(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e["event_type"].as_str().unwrap_or_default())
        .collect()
}

/// A product's stock as the catalog API shows it.
pub(crate) async fn stock_of(app: &TestApp, tenant: &TestTenant, product: &Value) -> i64 {
    let current = expect_json(
        app.get(&format!("/v1/products/{}", id(product)), &tenant.token)
            .await,
        StatusCode::OK,
    )
    .await;
    current["stock"]
        .as_i64()
        .unwrap_or_else(|| panic!("expected a stock on {current}"))
}

/// A product's stock as the database holds it (the database owner's view, past the API).
pub(crate) async fn stock_in_database(app: &TestApp, tenant_id: TenantId, product: &Value) -> i64 {
    let mut db = app.owner_connection().await;
    sqlx::query_scalar("select stock::bigint from products where tenant_id = $1 and id = $2")
        .bind(tenant_id.as_uuid())
        .bind(Uuid::parse_str(id(product)).unwrap())
        .fetch_one(&mut db)
        .await
        .expect("the database owner reads the product")
}

/// Asserts a 422 with `code` naming `field` among its errors.
async fn expect_invalid(response: Response, code: &str, field: &str) -> Value {
    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY, code).await;
    assert!(
        problem["errors"]
            .as_array()
            .is_some_and(|errors| errors.iter().any(|e| e["field"] == field)),
        "expected a validation error on `{field}`: {problem}"
    );
    problem
}

/// The transitions, in lifecycle order.
const TRANSITIONS: [&str; 5] = ["confirm", "pay", "ship", "deliver", "cancel"];

/// The transitions the state machine allows from a status.
fn allowed_from(status: &str) -> &'static [&'static str] {
    match status {
        "pending" => &["confirm", "cancel"],
        "confirmed" => &["pay", "cancel"],
        "paid" => &["ship", "cancel"],
        "shipped" => &["deliver"],
        "delivered" | "cancelled" => &[],
        other => panic!("unknown status {other}"),
    }
}
