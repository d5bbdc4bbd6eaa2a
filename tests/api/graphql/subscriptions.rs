//! Subscriptions over `graphql-transport-ws` (`GET /graphql` upgraded): live delivery,
//! filters, resuming after the last event seen, tenant isolation under concurrent writers,
//! authentication in the headers or in `connection_init`, scopes, and shutdown.
//!
//! A subscription that names no `after` starts at the moment its session registers, which
//! the protocol does not announce; most tests therefore subscribe with `after` set to the
//! start of the feed (`ORIGIN`) and receive what they did, whether it committed before or
//! after the session registered.

use std::{collections::HashSet, time::Duration};

use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::{self, client::IntoClientRequest};

use crate::{
    helpers::{
        TestApp, TestTenant, id, order_request, spawn_app, spawn_stoppable_app, test_config,
    },
    realtime::{Frame, PATIENCE, Shop, Socket, next_frame, send},
};

/// A position before every event: a subscription resuming after it receives the tenant's
/// whole feed (that its filter selects), then live events.
const ORIGIN: &str = "0-0";

const EVENTS: &str = "subscription($types: [String!], $streamId: ID, $after: String) { \
    events(types: $types, streamId: $streamId, after: $after) { \
    id type streamType streamId version occurredAt data } }";

/// Opens `GET /graphql` as a `graphql-transport-ws` WebSocket, with `Authorization:
/// Bearer <credential>` when given.
async fn open(app: &TestApp, credential: Option<&str>) -> Result<Socket, tungstenite::Error> {
    let url = app.url("/graphql").replacen("http", "ws", 1);
    let mut request = url.into_client_request().expect("a WebSocket request");
    let headers = request.headers_mut();
    headers.insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    if let Some(credential) = credential {
        headers.insert(
            "authorization",
            format!("Bearer {credential}").parse().unwrap(),
        );
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(socket, _)| socket)
}

/// Sends `connection_init` with `payload`; what the server answers.
async fn initialise(socket: &mut Socket, payload: Value) -> Frame {
    send(
        socket,
        json!({"type": "connection_init", "payload": payload}),
    )
    .await;
    next_frame(socket).await
}

/// A socket authenticated by its header and acknowledged.
async fn connect(app: &TestApp, credential: &str) -> Socket {
    let mut socket = open(app, Some(credential))
        .await
        .expect("the upgrade succeeds");
    acknowledged(initialise(&mut socket, json!({})).await);
    socket
}

fn acknowledged(frame: Frame) {
    match frame {
        Frame::Json(message) => assert_eq!(message["type"], "connection_ack", "{message}"),
        Frame::Closed(code, reason) => panic!("closed ({code}: {reason}) instead of an ack"),
    }
}

async fn subscribe(socket: &mut Socket, id: &str, query: &str, variables: Value) {
    send(
        socket,
        json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}}),
    )
    .await;
}

/// The next `next` payload of operation `id` (pings and other operations skipped), or
/// `None` when it completed.
async fn next_payload(socket: &mut Socket, id: &str) -> Option<Value> {
    loop {
        match next_frame(socket).await {
            Frame::Json(message) if message["id"] == id => match message["type"].as_str() {
                Some("next") => return Some(message["payload"].clone()),
                Some("complete") => return None,
                _ => panic!("unexpected message {message}"),
            },
            Frame::Json(_) => continue,
            Frame::Closed(code, reason) => panic!("the socket closed ({code}: {reason})"),
        }
    }
}

/// The next event of subscription `id`.
async fn next_event(socket: &mut Socket, id: &str) -> Value {
    let payload = next_payload(socket, id)
        .await
        .expect("the subscription delivers another event");
    assert_eq!(payload["errors"], Value::Null, "{payload}");
    payload["data"]["events"].clone()
}

/// The next event of subscription `id`, `None` if nothing came within `within`.
async fn next_event_within(socket: &mut Socket, id: &str, within: Duration) -> Option<Value> {
    tokio::time::timeout(within, next_event(socket, id))
        .await
        .ok()
}

/// The code of the error that ends subscription `id` (it then completes).
async fn ending_code(socket: &mut Socket, id: &str) -> String {
    let payload = next_payload(socket, id)
        .await
        .expect("an error before completing");
    let code = payload["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("an error with a code, not {payload}"))
        .to_owned();
    assert_eq!(
        next_payload(socket, id).await,
        None,
        "then the subscription completes"
    );
    code
}

/// The next `n` `order.placed` events' order ids, other events skipped.
async fn placed(socket: &mut Socket, id: &str, n: usize) -> Vec<String> {
    let mut orders = Vec::new();
    while orders.len() < n {
        let event = next_event(socket, id).await;
        if event["type"] == "order.placed" {
            orders.push(event["streamId"].as_str().unwrap().to_owned());
        }
    }
    orders
}

#[tokio::test]
async fn order_events_placed_over_rest_arrive_live_with_the_fields_of_the_rest_event() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let shop = Shop::open(&app, &tenant).await;
    let mut socket = connect(&app, &tenant.token).await;
    subscribe(&mut socket, "1", EVENTS, json!({"types": ["order.*"]})).await;

    // Act: order until the subscription, registered at a moment it does not announce,
    // receives one; then one more.
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let mut ordered = Vec::new();
    let first = loop {
        ordered.push(shop.order(&app, &tenant).await);
        if let Some(event) = next_event_within(&mut socket, "1", Duration::from_millis(300)).await {
            break event;
        }
        assert!(tokio::time::Instant::now() < deadline, "no event arrived");
    };
    let live = shop.order(&app, &tenant).await;
    // Orders placed while the first event was on its way arrive before the live one.
    let next = loop {
        let event = next_event(&mut socket, "1").await;
        if !ordered.iter().any(|o| event["streamId"] == o.as_str()) {
            break event;
        }
    };

    // Assert
    assert!(
        ordered.iter().any(|o| first["streamId"] == o.as_str()),
        "{first}"
    );
    assert_eq!(next["type"], "order.placed");
    assert_eq!(
        next["streamId"],
        live.as_str(),
        "each order as it is placed"
    );
    assert_eq!(next["streamType"], "order");
    assert_eq!(next["version"], 1);
    assert_eq!(next["data"]["total_cents"], 1250);
    assert!(next["occurredAt"].is_string());
    assert!(
        next["id"].as_str().unwrap().contains('-'),
        "an opaque cursor"
    );
}

#[tokio::test]
async fn filters_select_types_by_prefix_and_one_stream() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let shop = Shop::open(&app, &tenant).await;
    let watched = shop.order(&app, &tenant).await;
    let mut socket = connect(&app, &tenant.token).await;
    subscribe(
        &mut socket,
        "orders",
        EVENTS,
        json!({"types": ["order.*"], "streamId": watched, "after": ORIGIN}),
    )
    .await;

    // Act
    let other = shop.order(&app, &tenant).await;
    for order in [&other, &watched] {
        let response = app
            .post(
                &format!("/v1/orders/{order}/confirm"),
                &tenant.token,
                json!({}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    // Assert: the watched order's events, and neither the other order's nor the stock's.
    let placed = next_event(&mut socket, "orders").await;
    assert_eq!(
        (placed["type"].as_str(), placed["streamId"].as_str()),
        (Some("order.placed"), Some(watched.as_str()))
    );
    let confirmed = next_event(&mut socket, "orders").await;
    assert_eq!(
        (confirmed["type"].as_str(), confirmed["streamId"].as_str()),
        (Some("order.confirmed"), Some(watched.as_str())),
        "the other order's confirmation, committed before, never came"
    );
}

#[tokio::test]
async fn resuming_after_the_last_event_received_delivers_each_missed_event_once_in_order_then_live()
{
    // Arrange: a subscription that received one event, then went away
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let shop = Shop::open(&app, &tenant).await;
    let first = shop.order(&app, &tenant).await;
    let mut socket = connect(&app, &tenant.token).await;
    let types = json!(["order.placed"]);
    subscribe(
        &mut socket,
        "1",
        EVENTS,
        json!({"types": types, "after": ORIGIN}),
    )
    .await;
    let seen = next_event(&mut socket, "1").await;
    assert_eq!(seen["streamId"], first.as_str());
    drop(socket);
    let mut missed = Vec::new();
    for _ in 0..6 {
        missed.push(shop.order(&app, &tenant).await);
    }

    // Act
    let mut socket = connect(&app, &tenant.token).await;
    subscribe(
        &mut socket,
        "2",
        EVENTS,
        json!({"types": types, "after": seen["id"]}),
    )
    .await;
    let replayed = placed(&mut socket, "2", missed.len()).await;
    let live = shop.order(&app, &tenant).await;
    let next = next_event(&mut socket, "2").await;

    // Assert
    assert_eq!(replayed, missed, "every missed order once, in commit order");
    assert_eq!(
        next["streamId"],
        live.as_str(),
        "then live, nothing repeated"
    );
    assert!(
        next_event_within(&mut socket, "2", Duration::from_millis(300))
            .await
            .is_none(),
        "nothing arrives twice"
    );
}

#[tokio::test]
async fn each_subscriber_receives_its_own_tenants_events_only_under_concurrent_writers() {
    // Arrange
    const ORDERS: usize = 10;
    let app = spawn_app().await;
    let mut tenants: Vec<(TestTenant, Shop, Socket)> = Vec::new();
    for _ in 0..2 {
        let tenant = app.create_tenant().await;
        let shop = Shop::open(&app, &tenant).await;
        let mut socket = connect(&app, &tenant.token).await;
        subscribe(
            &mut socket,
            "1",
            EVENTS,
            json!({"types": ["order.placed"], "after": ORIGIN}),
        )
        .await;
        tenants.push((tenant, shop, socket));
    }

    // Act: both tenants order at once
    let mut writers = Vec::new();
    for (tenant, shop, _) in &tenants {
        let app = TestApp {
            address: app.address.clone(),
            client: app.client.clone(),
            config: app.config.clone(),
        };
        let (token, customer, product) = (
            tenant.token.clone(),
            shop.customer.clone(),
            shop.product.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut placed = Vec::new();
            for _ in 0..ORDERS {
                let response = app
                    .post(
                        "/v1/orders",
                        &token,
                        order_request(&customer, &[(&product, 1)]),
                    )
                    .await;
                let order: Value = response.json().await.unwrap();
                placed.push(id(&order).to_owned());
            }
            placed
        }));
    }
    let mut written = Vec::new();
    for writer in writers {
        written.push(writer.await.unwrap());
    }

    // Assert
    for ((tenant, _, socket), orders) in tenants.iter_mut().zip(written) {
        let received = placed(socket, "1", ORDERS).await;
        let mine: HashSet<&String> = orders.iter().collect();
        assert!(
            received.iter().all(|order| mine.contains(order)),
            "tenant {} received another tenant's order",
            tenant.slug
        );
        assert_eq!(received, orders, "every order of its own, in commit order");
        assert!(
            next_event_within(socket, "1", Duration::from_millis(300))
                .await
                .is_none(),
            "and nothing else"
        );
    }
}

#[tokio::test]
async fn a_browser_authenticates_in_connection_init_and_a_bad_credential_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, key) = app
        .create_api_key(
            &tenant,
            &["realtime:subscribe", "orders:read", "catalog:read"],
        )
        .await;

    // Act + Assert: a token, a key, then queries and mutations over the socket too
    for payload in [
        json!({"authorization": format!("Bearer {}", tenant.token)}),
        json!({"apiKey": key}),
    ] {
        let mut socket = open(&app, None).await.expect("the upgrade succeeds");
        acknowledged(initialise(&mut socket, payload).await);
        subscribe(&mut socket, "q", "{ me { tenant { id } } }", json!({})).await;
        let answer = next_payload(&mut socket, "q").await.expect("an answer");
        assert_eq!(
            answer["data"]["me"]["tenant"]["id"],
            tenant.id.to_string(),
            "{answer}"
        );
        assert_eq!(
            next_payload(&mut socket, "q").await,
            None,
            "a query completes"
        );
    }

    // Act + Assert: refused credentials close the socket with 4403 and the refusal's code
    for payload in [json!({"authorization": "Bearer tnty_not-a-key"}), json!({})] {
        let mut socket = open(&app, None).await.expect("the upgrade succeeds");
        match initialise(&mut socket, payload.clone()).await {
            Frame::Closed(code, reason) => {
                assert_eq!((code, reason.as_str()), (4403, "unauthenticated"))
            }
            Frame::Json(message) => panic!("{payload} is refused, not answered {message}"),
        }
    }

    // Act + Assert: a credential in the header is refused before any upgrade, and never in
    // the URL
    match open(&app, Some("tnty_bogus")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("refused with 401, not {:?}", other.map(|_| ())),
    }
    let url = app
        .url(&format!("/graphql?access_token={}", tenant.token))
        .replacen("http", "ws", 1);
    let mut request = url.into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    match tokio_tungstenite::connect_async(request).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 400),
        other => panic!("refused with 400, not {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn refusals_before_streaming_are_errors_with_the_rest_codes() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, no_realtime) = app.create_api_key(&tenant, &["orders:read"]).await;
    let mut scopeless = connect(&app, &no_realtime).await;
    let mut socket = connect(&app, &tenant.token).await;

    // Act + Assert
    subscribe(&mut scopeless, "1", EVENTS, json!({})).await;
    assert_eq!(ending_code(&mut scopeless, "1").await, "insufficient_scope");
    let cases = [
        (json!({"after": "nope"}), "invalid_event_id"),
        (json!({"types": ["Order"]}), "validation_failed"),
        (json!({"streamId": "not-an-id"}), "validation_failed"),
    ];
    for (n, (variables, code)) in cases.into_iter().enumerate() {
        let id = n.to_string();
        subscribe(&mut socket, &id, EVENTS, variables.clone()).await;
        assert_eq!(ending_code(&mut socket, &id).await, code, "{variables}");
    }
}

#[tokio::test]
async fn a_key_without_orders_read_never_receives_order_events() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let shop = Shop::open(&app, &tenant).await;
    let (_, catalog_only) = app
        .create_api_key(&tenant, &["realtime:subscribe", "catalog:read"])
        .await;
    let mut socket = connect(&app, &catalog_only).await;
    subscribe(&mut socket, "1", EVENTS, json!({"after": ORIGIN})).await;

    // Act: an order, then a later product change
    shop.order(&app, &tenant).await;
    let product = app
        .get(
            &format!("/v1/products/{}", id(&shop.product)),
            &tenant.token,
        )
        .await;
    let version = product.headers()["etag"].clone();
    let response = app
        .client
        .patch(app.url(&format!("/v1/products/{}", id(&shop.product))))
        .bearer_auth(&tenant.token)
        .header("If-Match", version)
        .json(&json!({"name": "Renamed"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // Assert: everything up to the rename, none of it an order's
    let mut types = Vec::new();
    loop {
        let event = next_event(&mut socket, "1").await;
        types.push(event["type"].as_str().unwrap().to_owned());
        if event["type"] == "product.updated" && event["data"].to_string().contains("Renamed") {
            break;
        }
    }
    assert!(
        types.contains(&"product.stock_changed".to_owned()),
        "{types:?}"
    );
    assert!(types.iter().all(|t| !t.starts_with("order.")), "{types:?}");
}

#[tokio::test]
async fn shutting_down_ends_subscriptions_with_going_away_then_closes_the_socket() {
    // Arrange
    let stoppable = spawn_stoppable_app(test_config(&[])).await;
    let app = &stoppable.app;
    let tenant = app.create_tenant().await;
    let shop = Shop::open(app, &tenant).await;
    shop.order(app, &tenant).await;
    let mut socket = connect(app, &tenant.token).await;
    subscribe(
        &mut socket,
        "1",
        EVENTS,
        json!({"types": ["order.placed"], "after": ORIGIN}),
    )
    .await;
    next_event(&mut socket, "1").await;

    // Act
    let stopping = tokio::spawn(stoppable.stop());

    // Assert
    assert_eq!(ending_code(&mut socket, "1").await, "going_away");
    match next_frame(&mut socket).await {
        Frame::Closed(code, reason) => assert_eq!((code, reason.as_str()), (1001, "going_away")),
        Frame::Json(message) => panic!("closed with 1001, not {message}"),
    }
    tokio::time::timeout(PATIENCE, stopping)
        .await
        .expect("shutdown is not held up by the socket")
        .unwrap();
}
