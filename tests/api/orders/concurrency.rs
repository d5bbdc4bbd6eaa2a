//! Orders under concurrency: stock is never oversold, a stream version is appended once,
//! racing retries with one `Idempotency-Key` do the work once, and a command held up at
//! its key cannot reorder its order's events in the feed.

use std::{collections::HashSet, time::Duration};

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

/// Sessions of `role` in the test database waiting for a lock.
async fn waiting_on_locks(conn: &mut sqlx::PgConnection, role: &str) -> i64 {
    sqlx::query_scalar(
        "select count(*) from pg_stat_activity
         where usename = $1 and datname = current_database() and wait_event_type = 'Lock'",
    )
    .bind(role)
    .fetch_one(conn)
    .await
    .unwrap()
}

/// Waits until at least `count` sessions of the request role wait for a lock, or `within`.
async fn until_waiting(app: &TestApp, count: i64, within: Duration) -> bool {
    let role = app.roles().app;
    let mut watcher = app.owner_connection().await;
    let give_up = tokio::time::Instant::now() + within;
    while tokio::time::Instant::now() < give_up {
        if waiting_on_locks(&mut watcher, &role).await >= count {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_command_held_up_at_its_idempotency_key_keeps_the_feed_in_version_order() {
    // Arrange: an order, and another transaction holding, uncommitted, the idempotency key
    // the slow command will use — so that command is held up at its key while another
    // command of the same order runs. (That the claim itself fixes no transaction id is
    // `idempotency::claiming_a_key_writes_nothing…`; this is the whole path end to end.)
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = product_with(&app, &tenant, 500, "EUR", 10).await;
    let placed = place_ok(&app, &tenant, &customer, &[(&product, 1)]).await;
    let order_id = id(&placed).to_owned();
    let key = unique("held-up");
    let mut holder = app.owner_connection().await;
    let mut holding = sqlx::Connection::begin(&mut holder).await.unwrap();
    sqlx::query(
        "insert into idempotency_keys (tenant_id, caller, key, request_hash, response_status, response_body, expires_at)
         values ($1, $2, $3, '\\x00', 0, 'null', now() + interval '1 hour')",
    )
    .bind(tenant.id.as_uuid())
    .bind(format!("user:{}", tenant.owner_id))
    .bind(&key)
    .execute(&mut *holding)
    .await
    .unwrap();

    // Act: the keyed cancel starts first and is held up; an unkeyed confirm of the same
    // order runs meanwhile; then the key is let go.
    let cancel_path = format!("/v1/orders/{order_id}/cancel");
    let bearer = format!("Bearer {}", tenant.token);
    let cancelling = tokio::spawn({
        let (app_url, bearer, key) = (app.url(&cancel_path), bearer.clone(), key.clone());
        let client = app.client.clone();
        async move {
            client
                .post(app_url)
                .header("authorization", bearer)
                .header("idempotency-key", key)
                .json(&json!({"reason": "changed my mind"}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    assert!(
        until_waiting(&app, 1, Duration::from_secs(10)).await,
        "the keyed cancel waits on the held key"
    );
    let confirming = tokio::spawn({
        let (app_url, bearer) = (app.url(&format!("/v1/orders/{order_id}/confirm")), bearer);
        let client = app.client.clone();
        async move {
            client
                .post(app_url)
                .header("authorization", bearer)
                .json(&json!({}))
                .send()
                .await
                .unwrap()
                .status()
        }
    });
    // The confirm either completes or queues behind the cancel; give it the time to do so.
    until_waiting(&app, 2, Duration::from_secs(2)).await;
    holding.rollback().await.unwrap();
    let (cancelled, confirmed) = (cancelling.await.unwrap(), confirming.await.unwrap());

    // Assert: whatever each got, the order's events reach the feed in version order.
    let db = tenantry::db::Db::connect(&app.config).unwrap();
    let expected = history(&app, &tenant, &order_id).await.len();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(10);
    let mut versions = Vec::new();
    while versions.len() < expected && tokio::time::Instant::now() < give_up {
        let events = tenantry::events::feed::poll(
            &db,
            tenantry::events::feed::Subscriber::Tenant(tenant.id),
            Default::default(),
            100,
        )
        .await
        .unwrap();
        versions = events
            .iter()
            .filter(|e| e.stream_id.to_string() == order_id)
            .map(|e| e.version)
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        versions,
        (1..=expected as i32).collect::<Vec<_>>(),
        "the feed delivers one order's events in version order (cancel {cancelled}, confirm {confirmed})"
    );
    assert!(
        [StatusCode::OK, StatusCode::CONFLICT].contains(&cancelled)
            && [StatusCode::OK, StatusCode::CONFLICT].contains(&confirmed),
        "each command commits or is refused as a conflict: cancel {cancelled}, confirm {confirmed}"
    );
}
