//! Orders: placing against the catalog, the lifecycle and its history, listing with
//! `expand`, `Idempotency-Key`, rebuilding the read models from the event store, and the
//! number of statements a page costs.
//!
//! The request helpers at the top are shared with `order_concurrency`.

use std::collections::HashSet;

use futures::future::join_all;
use rand::{Rng, SeedableRng, rngs::StdRng};
use reqwest::{Method, Response, StatusCode, header::IF_NONE_MATCH};
use serde_json::{Value, json};
use tenantry::tenancy::TenantId;
use uuid::Uuid;

use crate::helpers::{
    TestApp, TestTenant, etag_of, expect_json, expect_problem, post_with_key, replayed, send,
    sigterm, spawn_app, spawn_server_process, unique,
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

/// The `id` of an API object.
pub(crate) fn id(object: &Value) -> &str {
    object["id"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an object with an id, got {object}"))
}

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

/// The body of `POST /v1/orders`.
pub(crate) fn order_request(customer: &Value, items: &[(&Value, i32)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(product, quantity)| json!({"product_id": id(product), "quantity": quantity}))
        .collect();
    json!({"customer_id": id(customer), "items": items})
}

/// `POST /v1/orders` as the tenant's owner.
pub(crate) async fn place(
    app: &TestApp,
    tenant: &TestTenant,
    customer: &Value,
    items: &[(&Value, i32)],
) -> Response {
    app.post("/v1/orders", &tenant.token, order_request(customer, items))
        .await
}

/// Places an order and returns it (panics unless 201).
pub(crate) async fn place_ok(
    app: &TestApp,
    tenant: &TestTenant,
    customer: &Value,
    items: &[(&Value, i32)],
) -> Value {
    expect_json(
        place(app, tenant, customer, items).await,
        StatusCode::CREATED,
    )
    .await
}

/// `POST /v1/orders/{id}/{name}` (`confirm`, `pay`, …) as the tenant's owner.
pub(crate) async fn command(
    app: &TestApp,
    tenant: &TestTenant,
    order_id: &str,
    name: &str,
    body: Value,
) -> Response {
    app.post(
        &format!("/v1/orders/{order_id}/{name}"),
        &tenant.token,
        body,
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

/// The body a transition needs; `pay` pays `total_cents`.
pub(crate) fn command_body(name: &str, total_cents: i64) -> Value {
    match name {
        "pay" => json!({"amount_cents": total_cents, "reference": "pi_test"}),
        "cancel" => json!({"reason": "the customer changed their mind"}),
        _ => json!({}),
    }
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
pub(crate) async fn stock_in_database(app: &TestApp, tenant_id: TenantId, product: &Value) -> i32 {
    let mut db = app.owner_connection().await;
    sqlx::query_scalar("select stock from products where tenant_id = $1 and id = $2")
        .bind(tenant_id.as_uuid())
        .bind(Uuid::parse_str(id(product)).unwrap())
        .fetch_one(&mut db)
        .await
        .expect("the database owner reads the product")
}

/// Every page of `path` (which has no `cursor` yet), in the order the API gives them.
pub(crate) async fn all_pages(app: &TestApp, tenant: &TestTenant, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let separator = if path.contains('?') { '&' } else { '?' };
    for _ in 0..1000 {
        let url = match &cursor {
            Some(c) => format!("{path}{separator}cursor={c}"),
            None => path.to_owned(),
        };
        let page = expect_json(app.get(&url, &tenant.token).await, StatusCode::OK).await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
    panic!("{path}: the cursor never reached a last page");
}

/// The ids of a list answer's items.
fn ids_of(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("expected a page, got {page}"))
        .iter()
        .map(|o| id(o).to_owned())
        .collect()
}

/// Asserts a 422 `validation_failed` naming `field` among its errors.
async fn expect_invalid(response: Response, field: &str) -> Value {
    let problem = expect_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
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

// ---------------------------------------------------------------------------------------
// Placing
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn placing_prices_from_the_catalog_reserves_stock_and_reads_back_the_same() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let mug = product_with(&app, &tenant, 1250, "EUR", 10).await;
    let tee = product_with(&app, &tenant, 399, "EUR", 5).await;

    // Act
    let response = place(&app, &tenant, &customer, &[(&mug, 2), (&tee, 3)]).await;
    let etag = etag_of(&response);
    let placed = expect_json(response, StatusCode::CREATED).await;

    // Assert: prices and currency come from the catalog; the total is computed
    assert_eq!(
        placed["status"], "pending",
        "a new order is pending: {placed}"
    );
    assert_eq!(placed["version"], 1, "a new order has one event: {placed}");
    assert_eq!(placed["customer_id"], customer["id"], "{placed}");
    assert_eq!(placed["currency"], "EUR", "{placed}");
    assert_eq!(
        placed["total_cents"],
        2 * 1250 + 3 * 399,
        "the total is quantity × catalog price, summed: {placed}"
    );
    assert_eq!(
        placed["items"],
        json!([
            {"product_id": mug["id"], "quantity": 2, "unit_price_cents": 1250},
            {"product_id": tee["id"], "quantity": 3, "unit_price_cents": 399},
        ]),
        "the lines carry the catalog prices, in request order"
    );
    assert!(
        placed["created_at"].is_string() && placed["created_at"] == placed["updated_at"],
        "a new order was created and last updated at the same instant: {placed}"
    );
    assert_eq!(etag, "\"1\"", "the ETag is the version");

    // Assert: stock is reserved
    assert_eq!(stock_of(&app, &tenant, &mug).await, 8, "10 mugs minus 2");
    assert_eq!(stock_of(&app, &tenant, &tee).await, 2, "5 tees minus 3");

    // Assert: reads back equal, with the same ETag; If-None-Match answers 304
    let path = format!("/v1/orders/{}", id(&placed));
    let read = app.get(&path, &tenant.token).await;
    assert_eq!(etag_of(&read), etag, "GET carries the same ETag as the 201");
    let read = expect_json(read, StatusCode::OK).await;
    assert_eq!(read, placed, "GET shows exactly the 201 body");
    let bearer = format!("Bearer {}", tenant.token);
    let not_modified = send(
        &app,
        Method::GET,
        &path,
        &[("authorization", &bearer), (IF_NONE_MATCH.as_str(), &etag)],
        None,
    )
    .await;
    assert_eq!(
        not_modified.status(),
        StatusCode::NOT_MODIFIED,
        "If-None-Match with the current ETag is answered 304"
    );
    assert!(
        not_modified.text().await.unwrap().is_empty(),
        "a 304 has no body"
    );
    let stale = send(
        &app,
        Method::GET,
        &path,
        &[
            ("authorization", &bearer),
            (IF_NONE_MATCH.as_str(), "\"0\""),
        ],
        None,
    )
    .await;
    assert_eq!(
        stale.status(),
        StatusCode::OK,
        "If-None-Match with another version gets the order"
    );

    // Assert: a later price change does not reprice the order
    expect_json(
        app.patch(
            &format!("/v1/products/{}", id(&mug)),
            &tenant.token,
            json!({"price_cents": 9999}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        order(&app, &tenant, id(&placed)).await,
        placed,
        "the order keeps the prices it was placed at"
    );
}

// ---------------------------------------------------------------------------------------
// Lifecycle and history
// ---------------------------------------------------------------------------------------

/// Sends every transition the status does not allow and asserts each is refused with
/// 409 `order_is_<status>`, leaving the order as it was.
async fn assert_out_of_order_commands_refused(
    app: &TestApp,
    tenant: &TestTenant,
    order_id: &str,
    status: &str,
) {
    let before = order(app, tenant, order_id).await;
    assert_eq!(before["status"], status, "the order is {status}: {before}");
    let total = before["total_cents"].as_i64().unwrap();
    let code = format!("order_is_{status}");
    for name in TRANSITIONS
        .iter()
        .filter(|name| !allowed_from(status).contains(name))
    {
        let response = command(app, tenant, order_id, name, command_body(name, total)).await;
        let problem = expect_problem(response, StatusCode::CONFLICT, &code).await;
        assert!(
            problem["detail"].is_string(),
            "{name} on a {status} order: {problem}"
        );
    }
    assert_eq!(
        order(app, tenant, order_id).await,
        before,
        "refused commands leave the {status} order unchanged"
    );
}

#[tokio::test]
async fn an_order_walks_its_lifecycle_and_every_out_of_order_command_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = product_with(&app, &tenant, 1250, "EUR", 10).await;
    let placed = place_ok(&app, &tenant, &customer, &[(&product, 2)]).await;
    let order_id = id(&placed);
    let total = placed["total_cents"].as_i64().unwrap();
    assert_eq!(total, 2500);

    // Act + Assert: from each status, everything but the allowed commands is refused;
    // then the next step of the happy path moves it on
    let path = [
        ("pending", Some(("confirm", "confirmed"))),
        ("confirmed", Some(("pay", "paid"))),
        ("paid", Some(("ship", "shipped"))),
        ("shipped", Some(("deliver", "delivered"))),
        ("delivered", None),
    ];
    for (version, (status, next)) in (1..).zip(path) {
        assert_out_of_order_commands_refused(&app, &tenant, order_id, status).await;

        if status == "confirmed" {
            // A payment that does not equal the total is refused, naming the field.
            let before = order(&app, &tenant, order_id).await;
            let wrong = command(
                &app,
                &tenant,
                order_id,
                "pay",
                json!({"amount_cents": total - 1, "reference": "pi_short"}),
            )
            .await;
            expect_invalid(wrong, "amount_cents").await;
            assert_eq!(
                order(&app, &tenant, order_id).await,
                before,
                "a refused payment changes nothing"
            );
        }
        if status == "shipped" {
            expect_problem(
                command(&app, &tenant, order_id, "cancel", command_body("cancel", 0)).await,
                StatusCode::CONFLICT,
                "order_is_shipped",
            )
            .await;
        }

        let Some((name, new_status)) = next else {
            continue;
        };
        let moved = transition_ok(&app, &tenant, order_id, name, command_body(name, total)).await;
        assert_eq!(
            (moved["status"].as_str(), moved["version"].as_i64()),
            (Some(new_status), Some(version + 1)),
            "{name} on a {status} order makes it {new_status} at version {}: {moved}",
            version + 1
        );
        assert_eq!(
            order(&app, &tenant, order_id).await,
            moved,
            "GET after {name} shows what {name} answered"
        );
    }
    let delivered = order(&app, &tenant, order_id).await;
    assert_eq!(delivered["payment_reference"], "pi_test", "{delivered}");

    // Assert: the history, oldest first, versions 1..n, with who did it
    let events = history(&app, &tenant, order_id).await;
    assert_eq!(
        event_types(&events),
        [
            "order.placed",
            "order.confirmed",
            "order.paid",
            "order.shipped",
            "order.delivered"
        ],
        "one event per successful command, in order"
    );
    let versions: Vec<i64> = events
        .iter()
        .map(|e| e["version"].as_i64().unwrap())
        .collect();
    assert_eq!(
        versions,
        [1, 2, 3, 4, 5],
        "versions count from 1 without gaps"
    );
    let actor = format!("user:{}", tenant.owner_id);
    let commands = [
        "order.place",
        "order.confirm",
        "order.pay",
        "order.ship",
        "order.deliver",
    ];
    for (event, command) in events.iter().zip(commands) {
        assert_eq!(event["metadata"]["actor"], actor, "who did it: {event}");
        assert_eq!(
            event["metadata"]["command"], command,
            "what was asked: {event}"
        );
        assert!(
            event["metadata"]["request_id"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "in which request: {event}"
        );
        assert_eq!(
            event["metadata"]["causation_id"], event["metadata"]["request_id"],
            "caused by its request: {event}"
        );
        assert!(event["occurred_at"].is_string(), "when: {event}");
    }
    let event_ids: HashSet<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(event_ids.len(), events.len(), "every event has its own id");
    assert_eq!(
        events[2]["data"],
        json!({"amount_cents": 2500, "reference": "pi_test"}),
        "the payment event records what was paid"
    );
    assert_eq!(events[0]["data"]["total_cents"], 2500, "{}", events[0]);

    // Assert: each past state, rebuilt from the events
    for (version, status) in (1..).zip(["pending", "confirmed", "paid", "shipped", "delivered"]) {
        let past = expect_json(
            app.get(
                &format!("/v1/orders/{order_id}?as_of_version={version}"),
                &tenant.token,
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(
            (past["status"].as_str(), past["version"].as_i64()),
            (Some(status), Some(version)),
            "as_of_version={version}: {past}"
        );
        assert_eq!(past["id"], placed["id"]);
        assert_eq!(past["items"], placed["items"], "the lines never change");
    }
    let rebuilt_now = expect_json(
        app.get(
            &format!("/v1/orders/{order_id}?as_of_version=5"),
            &tenant.token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        rebuilt_now, delivered,
        "the latest version rebuilt from events equals the read model"
    );
    expect_problem(
        app.get(
            &format!("/v1/orders/{order_id}?as_of_version=6"),
            &tenant.token,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_problem(
        app.get(
            &format!("/v1/orders/{order_id}?as_of_version=0"),
            &tenant.token,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_version",
    )
    .await;

    // Act + Assert: a cancelled order refuses everything
    let other = place_ok(&app, &tenant, &customer, &[(&product, 1)]).await;
    let cancelled = transition_ok(
        &app,
        &tenant,
        id(&other),
        "cancel",
        command_body("cancel", 0),
    )
    .await;
    assert_eq!(
        (
            cancelled["status"].as_str(),
            cancelled["cancel_reason"].as_str()
        ),
        (Some("cancelled"), Some("the customer changed their mind")),
        "{cancelled}"
    );
    assert_out_of_order_commands_refused(&app, &tenant, id(&other), "cancelled").await;
}

#[tokio::test]
async fn an_event_names_the_request_that_caused_it() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = product_with(&app, &tenant, 500, "EUR", 5).await;
    let placed = place_ok(&app, &tenant, &customer, &[(&product, 1)]).await;
    let request_id = unique("req");

    let bearer = format!("Bearer {}", tenant.token);
    let confirmed = send(
        &app,
        Method::POST,
        &format!("/v1/orders/{}/confirm", id(&placed)),
        &[("authorization", &bearer), ("x-request-id", &request_id)],
        Some(json!({})),
    )
    .await;

    assert_eq!(
        confirmed.headers()["x-request-id"],
        request_id.as_str(),
        "the client's request id is kept"
    );
    expect_json(confirmed, StatusCode::OK).await;
    let events = history(&app, &tenant, id(&placed)).await;
    let confirm = &events[1]["metadata"];
    assert_eq!(confirm["command"], "order.confirm", "{confirm}");
    assert_eq!(confirm["request_id"], request_id.as_str(), "{confirm}");
    assert_eq!(confirm["causation_id"], request_id.as_str(), "{confirm}");
    assert_ne!(
        events[0]["metadata"]["request_id"],
        request_id.as_str(),
        "the placement came from another request"
    );
}

#[tokio::test]
async fn cancelling_releases_exactly_the_reserved_stock() {
    // Arrange: two products; one order reserves 3 and 2, another reserves 1 more
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let mug = product_with(&app, &tenant, 1250, "EUR", 10).await;
    let tee = product_with(&app, &tenant, 800, "EUR", 10).await;
    let cancelled = place_ok(&app, &tenant, &customer, &[(&mug, 3), (&tee, 2)]).await;
    place_ok(&app, &tenant, &customer, &[(&mug, 1)]).await;
    assert_eq!(
        (
            stock_of(&app, &tenant, &mug).await,
            stock_of(&app, &tenant, &tee).await
        ),
        (6, 8),
        "both orders reserved their quantities"
    );

    // Act
    let response = command(
        &app,
        &tenant,
        id(&cancelled),
        "cancel",
        command_body("cancel", 0),
    )
    .await;

    // Assert
    let after = expect_json(response, StatusCode::OK).await;
    assert_eq!(after["status"], "cancelled", "{after}");
    assert_eq!(
        (
            stock_of(&app, &tenant, &mug).await,
            stock_of(&app, &tenant, &tee).await
        ),
        (9, 10),
        "the cancelled order's 3 mugs and 2 tees are back; the other order's mug is not"
    );
    let events = history(&app, &tenant, id(&cancelled)).await;
    assert_eq!(event_types(&events), ["order.placed", "order.cancelled"]);
    assert_eq!(
        events[1]["data"]["released"], cancelled["items"],
        "the cancellation records exactly the reserved lines"
    );

    // Act + Assert: cancelling twice releases nothing more
    expect_problem(
        command(
            &app,
            &tenant,
            id(&cancelled),
            "cancel",
            command_body("cancel", 0),
        )
        .await,
        StatusCode::CONFLICT,
        "order_is_cancelled",
    )
    .await;
    assert_eq!(
        (
            stock_in_database(&app, tenant.id, &mug).await,
            stock_in_database(&app, tenant.id, &tee).await
        ),
        (9, 10),
        "a refused second cancel leaves the stock alone"
    );
}

#[tokio::test]
async fn invalid_orders_are_refused_naming_the_field_and_reserve_nothing() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let other_tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let eur = product_with(&app, &tenant, 1250, "EUR", 10).await;
    let eur_too = product_with(&app, &tenant, 500, "EUR", 10).await;
    let usd = product_with(&app, &tenant, 700, "USD", 10).await;
    let deleted = product_with(&app, &tenant, 100, "EUR", 10).await;
    let response = app
        .delete(&format!("/v1/products/{}", id(&deleted)), &tenant.token)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "product deleted");
    let foreign_customer = app.create_customer(&other_tenant).await;
    let foreign_product = product_with(&app, &other_tenant, 100, "EUR", 10).await;
    let unknown = json!({"id": Uuid::now_v7().to_string()});

    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "an unknown customer",
            order_request(&unknown, &[(&eur, 1)]),
            "customer_id",
        ),
        (
            "another tenant's customer",
            order_request(&foreign_customer, &[(&eur, 1)]),
            "customer_id",
        ),
        (
            "an unknown product",
            order_request(&customer, &[(&unknown, 1)]),
            "items[0].product_id",
        ),
        (
            "another tenant's product",
            order_request(&customer, &[(&eur, 1), (&foreign_product, 1)]),
            "items[1].product_id",
        ),
        (
            "a deleted product",
            order_request(&customer, &[(&deleted, 1)]),
            "items[0].product_id",
        ),
        (
            "the same product twice",
            order_request(&customer, &[(&eur, 1), (&eur, 2)]),
            "items[1].product_id",
        ),
        (
            "a quantity of 0",
            order_request(&customer, &[(&eur, 0)]),
            "items[0].quantity",
        ),
        (
            "a negative quantity",
            order_request(&customer, &[(&eur_too, 1), (&eur, -1)]),
            "items[1].quantity",
        ),
        ("no items", order_request(&customer, &[]), "items"),
        (
            "products in two currencies",
            order_request(&customer, &[(&eur, 1), (&usd, 1)]),
            "items",
        ),
    ];

    for (name, body, field) in cases {
        // Act
        let response = app.post("/v1/orders", &tenant.token, body).await;

        // Assert
        let problem = expect_invalid(response, field).await;
        assert!(
            problem["detail"].is_string(),
            "an order with {name}: {problem}"
        );
    }
    let listed = expect_json(app.get("/v1/orders", &tenant.token).await, StatusCode::OK).await;
    assert_eq!(
        listed["items"],
        json!([]),
        "no refused order was placed: {listed}"
    );
    for product in [&eur, &eur_too, &usd] {
        assert_eq!(
            stock_of(&app, &tenant, product).await,
            10,
            "no refused order reserved stock of {}",
            product["sku"]
        );
    }
    assert_eq!(
        stock_in_database(&app, tenant.id, &deleted).await,
        10,
        "the deleted product's stock is untouched"
    );
    assert_eq!(
        stock_of(&app, &other_tenant, &foreign_product).await,
        10,
        "the other tenant's stock is untouched"
    );
}

// ---------------------------------------------------------------------------------------
// Listing
// ---------------------------------------------------------------------------------------

fn query_value(value: &Value) -> String {
    form_urlencoded::byte_serialize(value.as_str().unwrap().as_bytes()).collect()
}

#[tokio::test]
async fn orders_are_listed_newest_first_filtered_paged_and_expanded() {
    // Arrange: five orders of two customers; two confirmed, one cancelled
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let ada = app.create_customer(&tenant).await;
    let bob = app.create_customer(&tenant).await;
    let mug = product_with(&app, &tenant, 1250, "EUR", 100).await;
    let tee = product_with(&app, &tenant, 800, "EUR", 100).await;
    let mut orders = Vec::new();
    for (customer, items) in [
        (&ada, vec![(&mug, 1)]),
        (&bob, vec![(&mug, 2), (&tee, 1)]),
        (&ada, vec![(&tee, 3)]),
        (&bob, vec![(&tee, 1)]),
        (&ada, vec![(&mug, 1), (&tee, 1)]),
    ] {
        orders.push(place_ok(&app, &tenant, customer, &items).await);
    }
    for (index, name) in [(1, "confirm"), (3, "confirm"), (4, "cancel")] {
        orders[index] = transition_ok(
            &app,
            &tenant,
            id(&orders[index]),
            name,
            command_body(name, 0),
        )
        .await;
    }
    let ids = |indexes: &[usize]| -> Vec<String> {
        indexes.iter().map(|&i| id(&orders[i]).to_owned()).collect()
    };
    let list = |query: String| {
        let app = &app;
        let token = tenant.token.clone();
        async move {
            let path = format!("/v1/orders{query}");
            let page = expect_json(app.get(&path, &token).await, StatusCode::OK).await;
            (path, page)
        }
    };

    // Act + Assert: filters
    let from = query_value(&orders[1]["created_at"]);
    let to = query_value(&orders[3]["created_at"]);
    for (query, expected) in [
        (String::new(), ids(&[4, 3, 2, 1, 0])),
        ("?status=pending".to_owned(), ids(&[2, 0])),
        ("?status=confirmed".to_owned(), ids(&[3, 1])),
        ("?status=cancelled".to_owned(), ids(&[4])),
        ("?status=delivered".to_owned(), vec![]),
        (format!("?customer_id={}", id(&bob)), ids(&[3, 1])),
        (
            format!("?customer_id={}&status=pending", id(&ada)),
            ids(&[2, 0]),
        ),
        (
            format!("?created_from={from}&created_to={to}"),
            ids(&[2, 1]),
        ),
        (format!("?created_from={from}"), ids(&[4, 3, 2, 1])),
        (format!("?created_to={to}"), ids(&[2, 1, 0])),
    ] {
        let (path, page) = list(query).await;
        assert_eq!(ids_of(&page), expected, "GET {path}, newest first");
    }
    let (_, everything) = list(String::new()).await;
    for (listed, current) in everything["items"]
        .as_array()
        .unwrap()
        .iter()
        .zip(orders.iter().rev())
    {
        assert_eq!(
            listed, current,
            "a listed order equals the order as its last command answered"
        );
        assert!(
            listed.get("customer").is_none()
                && listed["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|i| i.get("product").is_none()),
            "nothing is embedded without expand: {listed}"
        );
    }

    // Act + Assert: pages of two, newest first, without duplicates or gaps
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut sizes = Vec::new();
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=2&cursor={c}"),
            None => "?limit=2".to_owned(),
        };
        let (_, page) = list(query).await;
        sizes.push(page["items"].as_array().unwrap().len());
        seen.extend(ids_of(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(sizes, [2, 2, 1], "five orders in pages of two");
    assert_eq!(
        seen,
        ids(&[4, 3, 2, 1, 0]),
        "paging visits every order once, newest first"
    );
    let (_, first_pending) = list("?status=pending&limit=1".to_owned()).await;
    let cursor = first_pending["next_cursor"].as_str().unwrap();
    let (_, second_pending) = list(format!("?status=pending&limit=1&cursor={cursor}")).await;
    assert_eq!(
        (ids_of(&first_pending), ids_of(&second_pending)),
        (ids(&[2]), ids(&[0])),
        "paging a filtered list keeps the filter"
    );
    assert!(
        second_pending["next_cursor"].is_null(),
        "the last filtered page has no cursor: {second_pending}"
    );

    // Act + Assert: expand embeds the customer and each line's product
    let (path, expanded) = list("?expand=customer,items.product".to_owned()).await;
    let expanded = expanded["items"].as_array().unwrap();
    assert_eq!(expanded.len(), 5, "GET {path}");
    for order in expanded {
        let customer = if order["customer_id"] == ada["id"] {
            &ada
        } else {
            &bob
        };
        assert_eq!(
            order["customer"],
            json!({"id": customer["id"], "email": customer["email"], "name": customer["name"]}),
            "the order's own customer is embedded: {order}"
        );
        for item in order["items"].as_array().unwrap() {
            let product = if item["product_id"] == mug["id"] {
                &mug
            } else {
                &tee
            };
            assert_eq!(
                item["product"],
                json!({
                    "id": product["id"],
                    "sku": product["sku"],
                    "name": product["name"],
                    "price_cents": product["price_cents"],
                    "currency": product["currency"],
                }),
                "each line embeds its product: {order}"
            );
        }
    }
    let one = expect_json(
        app.get(
            &format!("/v1/orders/{}?expand=customer", id(&orders[1])),
            &tenant.token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        one["customer"]["id"], bob["id"],
        "GET one order expands too: {one}"
    );

    // Act + Assert: an unknown expansion is a 400
    for path in [
        "/v1/orders?expand=customer,payments".to_owned(),
        format!("/v1/orders/{}?expand=items.customer", id(&orders[0])),
    ] {
        expect_problem(
            app.get(&path, &tenant.token).await,
            StatusCode::BAD_REQUEST,
            "invalid_expand",
        )
        .await;
    }
}

// ---------------------------------------------------------------------------------------
// Idempotency
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_never_does_the_work_twice() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = product_with(&app, &tenant, 1250, "EUR", 10).await;
    let body = order_request(&customer, &[(&product, 2)]);
    let key = unique("order-key");

    // Act
    let first = post_with_key(&app, &tenant, "/v1/orders", &key, body.clone()).await;
    let second = post_with_key(&app, &tenant, "/v1/orders", &key, body.clone()).await;

    // Assert: the same answer, one order, stock reserved once
    assert!(!replayed(&first), "the first request is not a replay");
    assert!(
        replayed(&second),
        "the retry says it is a replay (idempotent-replayed: true)"
    );
    let first = expect_json(first, StatusCode::CREATED).await;
    let second = expect_json(second, StatusCode::CREATED).await;
    assert_eq!(second, first, "the retry answers exactly the first body");
    let listed = all_pages(&app, &tenant, "/v1/orders").await;
    assert_eq!(listed.len(), 1, "one order only: {listed:?}");
    assert_eq!(stock_of(&app, &tenant, &product).await, 8, "reserved once");

    // Act + Assert: the same key with another body is refused
    let different = order_request(&customer, &[(&product, 3)]);
    expect_problem(
        post_with_key(&app, &tenant, "/v1/orders", &key, different).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(all_pages(&app, &tenant, "/v1/orders").await.len(), 1);
    assert_eq!(stock_of(&app, &tenant, &product).await, 8);

    // Act + Assert: keys are per tenant
    let other = app.create_tenant().await;
    let other_customer = app.create_customer(&other).await;
    let other_product = product_with(&app, &other, 100, "EUR", 10).await;
    let theirs = post_with_key(
        &app,
        &other,
        "/v1/orders",
        &key,
        order_request(&other_customer, &[(&other_product, 1)]),
    )
    .await;
    assert!(
        !replayed(&theirs),
        "another tenant's use of the key is fresh"
    );
    let theirs = expect_json(theirs, StatusCode::CREATED).await;
    assert_ne!(
        theirs["id"], first["id"],
        "another tenant gets its own order"
    );
    assert_eq!(theirs["customer_id"], other_customer["id"]);

    // Act + Assert: a failed command leaves its key unused
    let scarce = product_with(&app, &tenant, 100, "EUR", 1).await;
    let retry_key = unique("retry-key");
    let wants_two = order_request(&customer, &[(&scarce, 2)]);
    expect_problem(
        post_with_key(&app, &tenant, "/v1/orders", &retry_key, wants_two.clone()).await,
        StatusCode::CONFLICT,
        "insufficient_stock",
    )
    .await;
    assert_eq!(
        stock_of(&app, &tenant, &scarce).await,
        1,
        "nothing reserved"
    );
    expect_json(
        app.patch(
            &format!("/v1/products/{}", id(&scarce)),
            &tenant.token,
            json!({"stock": 5}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let retried = post_with_key(&app, &tenant, "/v1/orders", &retry_key, wants_two).await;
    assert!(
        !replayed(&retried),
        "after a failure the key is free: the retry does the work"
    );
    let retried = expect_json(retried, StatusCode::CREATED).await;
    assert_eq!(retried["total_cents"], 200, "{retried}");
    assert_eq!(stock_of(&app, &tenant, &scarce).await, 3, "5 minus 2");

    // Act + Assert: transitions too
    let order_id = id(&first);
    transition_ok(&app, &tenant, order_id, "confirm", json!({})).await;
    let pay_key = unique("pay-key");
    let pay_path = format!("/v1/orders/{order_id}/pay");
    let pay = command_body("pay", first["total_cents"].as_i64().unwrap());
    let paid = post_with_key(&app, &tenant, &pay_path, &pay_key, pay.clone()).await;
    let paid_again = post_with_key(&app, &tenant, &pay_path, &pay_key, pay).await;
    assert!(
        !replayed(&paid) && replayed(&paid_again),
        "the second pay is the replay"
    );
    let paid = expect_json(paid, StatusCode::OK).await;
    let paid_again = expect_json(paid_again, StatusCode::OK).await;
    assert_eq!(
        paid_again, paid,
        "the replay answers the first payment's body"
    );
    assert_eq!(
        event_types(&history(&app, &tenant, order_id).await),
        ["order.placed", "order.confirmed", "order.paid"],
        "exactly one order.paid event"
    );
    expect_problem(
        post_with_key(
            &app,
            &tenant,
            &format!("/v1/orders/{order_id}/ship"),
            &pay_key,
            json!({}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// CQRS: the read models are a function of the events
// ---------------------------------------------------------------------------------------

/// One tenant's order read models, as the database owner sees them, in a stable order.
async fn read_models(app: &TestApp, tenant_id: TenantId) -> (Vec<String>, Vec<String>) {
    let mut db = app.owner_connection().await;
    let summaries = sqlx::query_scalar(
        "select row_to_json(s)::text from order_summaries s where tenant_id = $1 order by id",
    )
    .bind(tenant_id.as_uuid())
    .fetch_all(&mut db)
    .await
    .expect("the database owner reads order_summaries");
    let items = sqlx::query_scalar(
        "select row_to_json(i)::text from order_items i where tenant_id = $1 order by order_id, line",
    )
    .bind(tenant_id.as_uuid())
    .fetch_all(&mut db)
    .await
    .expect("the database owner reads order_items");
    (summaries, items)
}

/// Runs `orders` random orders with random transitions (some invalid, some wrongly paid)
/// in the tenant; every answer must be a success or a client error.
async fn random_mix(app: &TestApp, tenant: &TestTenant, seed: u64, orders: usize) {
    let mut rng = StdRng::seed_from_u64(seed);
    let customers = [
        app.create_customer(tenant).await,
        app.create_customer(tenant).await,
    ];
    let mut products = Vec::new();
    for price in [250, 1250, 4999] {
        products.push(product_with(app, tenant, price, "EUR", 1000).await);
    }
    for _ in 0..orders {
        let customer = &customers[rng.random_range(0..customers.len())];
        let first = rng.random_range(0..products.len());
        let count = rng.random_range(1..=products.len());
        let items: Vec<(&Value, i32)> = (0..count)
            .map(|n| {
                (
                    &products[(first + n) % products.len()],
                    rng.random_range(1..=5),
                )
            })
            .collect();
        let placed = place_ok(app, tenant, customer, &items).await;
        let total = placed["total_cents"].as_i64().unwrap();
        for _ in 0..rng.random_range(0..=5) {
            let name = TRANSITIONS[rng.random_range(0..TRANSITIONS.len())];
            let mut body = command_body(name, total);
            if name == "pay" && rng.random_bool(0.2) {
                body["amount_cents"] = json!(total + 1);
            }
            let response = command(app, tenant, id(&placed), name, body).await;
            let status = response.status();
            assert!(
                [
                    StatusCode::OK,
                    StatusCode::CONFLICT,
                    StatusCode::UNPROCESSABLE_ENTITY
                ]
                .contains(&status),
                "seed {seed}: {name} answered {status}: {}",
                response.text().await.unwrap_or_default()
            );
        }
    }
}

#[tokio::test]
async fn rebuilding_the_read_models_from_events_reproduces_them_exactly() {
    // Arrange: a random mix of commands in one tenant (TEST_SEED reproduces a run), and
    // another tenant with an order of its own that a rebuild must not touch
    let seed = std::env::var("TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random::<u64>);
    eprintln!("order mix seed: {seed} (set TEST_SEED={seed} to replay it)");
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    random_mix(&app, &tenant, seed, 15).await;
    let bystander = app.create_tenant().await;
    let bystander_customer = app.create_customer(&bystander).await;
    let bystander_product = app.create_product(&bystander).await;
    place_ok(
        &app,
        &bystander,
        &bystander_customer,
        &[(&bystander_product, 1)],
    )
    .await;
    let live = read_models(&app, tenant.id).await;
    let bystander_before = read_models(&app, bystander.id).await;
    assert_eq!(live.0.len(), 15, "seed {seed}: fifteen orders projected");

    // A damaged read model, which the rebuild must repair.
    let mut db = app.owner_connection().await;
    sqlx::query(
        "update order_summaries set status = 'delivered', version = 99 where tenant_id = $1 and id = (select id from order_summaries where tenant_id = $1 order by id limit 1)",
    )
    .bind(tenant.id.as_uuid())
    .execute(&mut db)
    .await
    .unwrap();
    assert_ne!(read_models(&app, tenant.id).await, live);

    // Act
    let db = tenantry::db::Db::connect(&app.config).unwrap();
    let rebuilt = tenantry::orders::projection::rebuild_tenant(&db, tenant.id)
        .await
        .unwrap_or_else(|e| panic!("seed {seed}: the rebuild fails: {e}"));

    // Assert
    assert_eq!(
        rebuilt, 15,
        "seed {seed}: the rebuild replays fifteen streams"
    );
    let after = read_models(&app, tenant.id).await;
    assert_eq!(
        after.0, live.0,
        "seed {seed}: order_summaries rebuilt from events equal the live projection"
    );
    assert_eq!(
        after.1, live.1,
        "seed {seed}: order_items rebuilt from events equal the live projection"
    );
    assert_eq!(
        read_models(&app, bystander.id).await,
        bystander_before,
        "rebuilding one tenant leaves another tenant's read models alone"
    );

    // Act + Assert: the CLI does the same
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(["projections", "rebuild", "--tenant", &tenant.slug])
        .env_clear()
        .env("DATABASE_URL", crate::helpers::database_url())
        .env("JWT_SECRET", crate::helpers::JWT_SECRET)
        .env("TENANTRY_TOKEN_HASH_KEY", "test-token-hash-key")
        .env("TENANTRY_OPERATOR_TOKEN", crate::helpers::OPERATOR_TOKEN)
        .output()
        .await
        .expect("the tenantry binary runs");
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert!(
        output.status.success(),
        "`tenantry projections rebuild --tenant` exits 0; got {}\nstdout:\n{stdout}\nstderr:\n{stderr}",
        output.status
    );
    assert!(
        stdout.contains("15 orders"),
        "the CLI reports the orders it rebuilt: {stdout}"
    );
    assert_eq!(
        read_models(&app, tenant.id).await,
        live,
        "seed {seed}: the CLI rebuild equals the live projection too"
    );
}

// ---------------------------------------------------------------------------------------
// No N+1: a page costs the same statements whatever its size
// ---------------------------------------------------------------------------------------

/// The log lines of one request: those whose request span (`span`, or any entry of the
/// `spans` list when an inner span is current) carries `request_id`.
fn lines_of_request<'a>(lines: &'a [Value], request_id: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|line| {
            line["span"]["request_id"] == request_id
                || line["spans"]
                    .as_array()
                    .is_some_and(|spans| spans.iter().any(|s| s["request_id"] == request_id))
        })
        .collect()
}

#[tokio::test]
async fn listing_with_expand_costs_the_same_statements_for_one_order_or_a_hundred() {
    // Arrange: the real binary logging every statement. `RUST_LOG=sqlx::query=debug,warn`
    // alone disables the INFO `request` span (target `tenantry::observability`), and
    // statement events then carry no request id at all, so that span is enabled too.
    // One request connection: sqlx resolves a type's OID once per connection (`select
    // $1::regtype::oid`), which would otherwise count against whichever request happens
    // to get a fresh connection.
    let log_file = std::env::temp_dir().join(format!("{}.log", unique("tenantry-nplus1")));
    let (mut server, app) = spawn_server_process(
        &[
            ("LOG_FORMAT", "json"),
            (
                "RUST_LOG",
                "sqlx::query=debug,tenantry::observability=info,warn",
            ),
            ("DATABASE_MAX_CONNECTIONS", "1"),
        ],
        &log_file,
    )
    .await;
    let tenant = app.create_tenant().await;
    let mut customers = Vec::new();
    let mut products = Vec::new();
    for _ in 0..10 {
        customers.push(app.create_customer(&tenant).await);
        products.push(product_with(&app, &tenant, 100, "EUR", 1000).await);
    }
    for batch in 0..10 {
        let placed = join_all((0..10).map(|n| {
            let customer = &customers[n];
            let items = [(&products[n], 1), (&products[(n + 1 + batch % 9) % 10], 2)];
            let app = &app;
            let tenant = &tenant;
            async move { place(app, tenant, customer, &items).await.status() }
        }))
        .await;
        assert!(
            placed.iter().all(|s| *s == StatusCode::CREATED),
            "orders placed: {placed:?}"
        );
    }

    // Act
    let run = Uuid::now_v7().simple().to_string();
    let mut sizes = Vec::new();
    for (label, limit) in [("small", 1), ("large", 100)] {
        let request_id = format!("nplus1-{label}-{run}");
        let response = app
            .client
            .get(app.url(&format!(
                "/v1/orders?limit={limit}&expand=customer,items.product"
            )))
            .bearer_auth(&tenant.token)
            .header("x-request-id", &request_id)
            .send()
            .await
            .unwrap();
        let page = expect_json(response, StatusCode::OK).await;
        let items = page["items"].as_array().unwrap();
        assert!(
            items.iter().all(|o| o["customer"].is_object()
                && o["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|i| i["product"].is_object())),
            "the {label} page is expanded"
        );
        sizes.push((request_id, items.len()));
    }
    sigterm(&server);
    server.wait().await.unwrap();
    let text = std::fs::read_to_string(&log_file).unwrap();
    let _ = std::fs::remove_file(&log_file);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON log line: {l}")))
        .collect();

    // Assert
    assert_eq!(
        sizes.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        [1, 100],
        "one order, then a hundred"
    );
    let mut counts = Vec::new();
    for (request_id, _) in &sizes {
        let of_request = lines_of_request(&lines, request_id);
        let statements: Vec<&str> = of_request
            .iter()
            .filter(|l| l["target"] == "sqlx::query")
            .filter_map(|l| {
                // `summary` is truncated; short statements have only a summary.
                l["db.statement"]
                    .as_str()
                    .filter(|s| !s.trim().is_empty())
                    .or(l["summary"].as_str())
                    .map(str::trim)
            })
            .collect();
        assert!(
            statements.iter().any(|s| s.contains("order_summaries")),
            "the statement events of {request_id} carry its request id; its lines: {of_request:#?}"
        );
        counts.push((of_request.len(), statements));
    }
    let (small, large) = (&counts[0], &counts[1]);
    assert_eq!(
        small.0, large.0,
        "a page of 100 costs as many log lines (statements) as a page of 1:\n1: {:#?}\n100: {:#?}",
        small.1, large.1
    );
    assert!(
        large.0 <= 12,
        "a listing with expand takes at most 12 lines, got {}: {:#?}",
        large.0,
        large.1
    );
}
