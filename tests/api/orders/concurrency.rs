//! Orders under concurrency: stock is never oversold, a stream version is appended once,
//! and racing retries with one `Idempotency-Key` do the work once.

use std::collections::HashSet;

use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry::tenancy::TenantId;
use uuid::Uuid;

use crate::{
    helpers::{
        TestApp, all_pages, command, command_body, id, order_request, place, place_ok, send,
        spawn_app, unique,
    },
    orders::{
        event_types, history, order, product_with, stock_in_database, stock_of, transition_ok,
    },
};

/// Status and body (JSON, or the raw text when it is not JSON) of each answer.
async fn answers(responses: Vec<reqwest::Response>) -> Vec<(StatusCode, Value)> {
    let mut out = Vec::with_capacity(responses.len());
    for response in responses {
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        out.push((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ));
    }
    out
}

/// Units of `product` held by orders that are not cancelled, as the read model says.
async fn reserved_in_database(app: &TestApp, tenant_id: TenantId, product: &Value) -> i64 {
    let mut db = app.owner_connection().await;
    sqlx::query_scalar(
        "select coalesce(sum(i.quantity), 0)::bigint from order_items i
         join order_summaries s on s.tenant_id = i.tenant_id and s.id = i.order_id
         where i.tenant_id = $1 and i.product_id = $2 and s.status <> 'cancelled'",
    )
    .bind(tenant_id.as_uuid())
    .bind(Uuid::parse_str(id(product)).unwrap())
    .fetch_one(&mut db)
    .await
    .expect("the database owner reads order items")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn a_hundred_concurrent_orders_for_ten_in_stock_sell_exactly_ten() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = product_with(&app, &tenant, 500, "EUR", 10).await;

    // Act
    let one = [(&product, 1)];
    let responses = join_all((0..100).map(|_| place(&app, &tenant, &customer, &one))).await;
    let answers = answers(responses).await;

    // Assert: exactly ten placed, ninety refused for stock, nothing else
    let server_errors: Vec<&(StatusCode, Value)> = answers
        .iter()
        .filter(|(status, _)| status.is_server_error())
        .collect();
    assert!(
        server_errors.is_empty(),
        "no 5xx expected: {server_errors:#?}"
    );
    let placed: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .map(|(_, body)| body)
        .collect();
    let out_of_stock = answers
        .iter()
        .filter(|(status, body)| {
            *status == StatusCode::CONFLICT && body["code"] == "insufficient_stock"
        })
        .count();
    assert_eq!(
        (placed.len(), out_of_stock),
        (10, 90),
        "10 × 201 and 90 × 409 insufficient_stock expected; got {:?}",
        answers
            .iter()
            .map(|(s, b)| (s.as_u16(), b["code"].clone()))
            .collect::<Vec<_>>()
    );
    let distinct: HashSet<&str> = placed.iter().map(|o| id(o)).collect();
    assert_eq!(distinct.len(), 10, "ten distinct orders");
    assert_eq!(
        stock_of(&app, &tenant, &product).await,
        0,
        "sold out, not below"
    );
    assert_eq!(
        stock_in_database(&app, tenant.id, &product).await,
        0,
        "the database holds stock 0, never negative"
    );
    assert_eq!(
        reserved_in_database(&app, tenant.id, &product).await,
        10,
        "the orders hold exactly the ten units the stock lost"
    );
    assert_eq!(all_pages(&app, &tenant, "/v1/orders").await.len(), 10);

    // Act: cancel three of them
    for order in placed.iter().take(3) {
        transition_ok(
            &app,
            &tenant,
            id(order),
            "cancel",
            command_body("cancel", 0),
        )
        .await;
    }

    // Assert
    assert_eq!(
        stock_of(&app, &tenant, &product).await,
        3,
        "three cancelled orders give back three units"
    );
    assert_eq!(stock_in_database(&app, tenant.id, &product).await, 3);
    assert_eq!(reserved_in_database(&app, tenant.id, &product).await, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn of_ten_concurrent_confirms_exactly_one_wins() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = product_with(&app, &tenant, 500, "EUR", 10).await;
    let placed = place_ok(&app, &tenant, &customer, &[(&product, 1)]).await;
    let order_id = id(&placed);

    // Act
    let responses =
        join_all((0..10).map(|_| command(&app, &tenant, order_id, "confirm", json!({})))).await;
    let answers = answers(responses).await;

    // Assert
    let winners = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::OK)
        .count();
    let losers: Vec<&(StatusCode, Value)> = answers
        .iter()
        .filter(|(status, _)| *status != StatusCode::OK)
        .collect();
    assert_eq!(winners, 1, "exactly one confirm succeeds: {answers:#?}");
    for (status, body) in &losers {
        assert!(
            *status == StatusCode::CONFLICT
                && (body["code"] == "concurrent_modification"
                    || body["code"] == "order_is_confirmed"),
            "a losing confirm is 409 concurrent_modification or order_is_confirmed, got {status}: {body}"
        );
    }
    assert_eq!(
        event_types(&history(&app, &tenant, order_id).await),
        ["order.placed", "order.confirmed"],
        "exactly one confirmation was recorded"
    );
    let current = order(&app, &tenant, order_id).await;
    assert_eq!(
        (current["status"].as_str(), current["version"].as_i64()),
        (Some("confirmed"), Some(2)),
        "{current}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn racing_retries_with_one_idempotency_key_place_one_order() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = product_with(&app, &tenant, 500, "EUR", 10).await;
    let body = order_request(&customer, &[(&product, 2)]);
    let key = unique("racing-key");
    let bearer = format!("Bearer {}", tenant.token);
    let headers = [
        ("authorization", bearer.as_str()),
        ("idempotency-key", key.as_str()),
    ];

    // Act
    let responses = join_all((0..10).map(|_| {
        send(
            &app,
            Method::POST,
            "/v1/orders",
            &headers,
            Some(body.clone()),
        )
    }))
    .await;
    let replays = responses
        .iter()
        .filter(|r| {
            r.headers()
                .get("idempotent-replayed")
                .is_some_and(|v| v == "true")
        })
        .count();
    let answers = answers(responses).await;

    // Assert
    assert!(
        answers
            .iter()
            .all(|(status, _)| *status == StatusCode::CREATED),
        "every racing retry is answered 201: {answers:#?}"
    );
    let first = &answers[0].1;
    assert!(
        answers.iter().all(|(_, body)| body == first),
        "every racing retry gets the same body: {answers:#?}"
    );
    assert_eq!(replays, 9, "one did the work, nine replayed it");
    let listed = all_pages(&app, &tenant, "/v1/orders").await;
    assert_eq!(
        listed.iter().map(id).collect::<Vec<_>>(),
        [id(first)],
        "exactly one order"
    );
    assert_eq!(
        stock_of(&app, &tenant, &product).await,
        8,
        "stock reserved once"
    );
    assert_eq!(
        history(&app, &tenant, id(first)).await.len(),
        1,
        "one order.placed event"
    );
}
