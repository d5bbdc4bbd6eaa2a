//! Request ids: the server mints its own (a UUIDv7) for every request — the one on the
//! response's `X-Request-Id`, in problem bodies, audit events and domain events' metadata —
//! and a sane `X-Request-Id` a client sends is kept beside it as the client's correlation
//! id (`X-Client-Request-Id` on the response, `client_request_id` in audit events and event
//! metadata), never taken for the server's.

use reqwest::{Method, Response, StatusCode, header::HeaderValue};
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp, expect_json, expect_problem, id, order_request, send, spawn_app, unique,
};

/// A response header as text, if present.
fn header(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

/// The server's request id on a response, asserted to be a UUIDv7 the server minted.
fn server_request_id(response: &Response) -> Uuid {
    let value = header(response, "x-request-id").unwrap_or_default();
    let id: Uuid = value
        .parse()
        .unwrap_or_else(|_| panic!("expected a UUID in X-Request-Id, got {value:?}"));
    assert_eq!(
        id.get_version_num(),
        7,
        "expected a UUIDv7 request id, got {id}"
    );
    id
}

async fn get_with_request_id(app: &TestApp, path: &str, value: HeaderValue) -> Response {
    app.client
        .get(app.url(path))
        .header("x-request-id", value)
        .send()
        .await
        .expect("the server answers")
}

#[tokio::test]
async fn every_response_carries_a_request_id_the_server_minted() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let success = app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .unwrap();
    let failure = app.client.get(app.url("/v1/nope")).send().await.unwrap();

    // Assert
    server_request_id(&success);
    assert_eq!(
        header(&success, "x-client-request-id"),
        None,
        "no client id was sent, so none is echoed"
    );
    let minted = server_request_id(&failure);
    let problem = expect_problem(failure, StatusCode::NOT_FOUND, "route_not_found").await;
    assert_eq!(
        problem["request_id"],
        minted.to_string(),
        "the problem quotes the server's request id: {problem}"
    );
}

#[tokio::test]
async fn a_client_request_id_is_echoed_as_the_client_id_and_never_becomes_the_servers() {
    // Arrange
    let app = spawn_app().await;
    let client_id = format!("client-{}", Uuid::new_v4().simple());

    for path in ["/health/live", "/v1/nope"] {
        // Act
        let response =
            get_with_request_id(&app, path, HeaderValue::from_str(&client_id).unwrap()).await;

        // Assert
        let minted = server_request_id(&response);
        assert_ne!(
            minted.to_string(),
            client_id,
            "{path}: the server's id is its own"
        );
        assert_eq!(
            header(&response, "x-client-request-id").as_deref(),
            Some(client_id.as_str()),
            "{path}: the client's id is echoed in X-Client-Request-Id"
        );
        if response.status() == StatusCode::NOT_FOUND {
            let problem = expect_problem(response, StatusCode::NOT_FOUND, "route_not_found").await;
            assert_eq!(
                problem["request_id"],
                minted.to_string(),
                "{path}: the problem quotes the server's id, not the client's: {problem}"
            );
        }
    }
}

#[tokio::test]
async fn an_unusable_client_request_id_is_not_echoed() {
    // Arrange: empty, too long, with characters a log line should not carry, not UTF-8.
    let app = spawn_app().await;
    let unusable_ids = [
        HeaderValue::from_static(""),
        HeaderValue::from_str(&"x".repeat(65)).unwrap(),
        HeaderValue::from_static("has spaces; and=symbols"),
        HeaderValue::from_bytes(b"caf\xe9-\xff").unwrap(),
    ];

    for unusable in unusable_ids {
        // Act
        let response = get_with_request_id(&app, "/v1/nope", unusable.clone()).await;

        // Assert
        let minted = server_request_id(&response);
        assert_eq!(
            header(&response, "x-client-request-id"),
            None,
            "{unusable:?} is not kept as the client's id"
        );
        let problem = expect_problem(response, StatusCode::NOT_FOUND, "route_not_found").await;
        assert_eq!(
            problem["request_id"],
            minted.to_string(),
            "the problem quotes the server's id: {problem}"
        );
    }
}

#[tokio::test]
async fn audit_events_record_the_servers_request_id_beside_the_clients() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let auth = format!("Bearer {}", tenant.token);
    let client_id = unique("checkout-retry");

    // Act
    let created = send(
        &app,
        Method::POST,
        "/v1/products",
        &[("authorization", &auth), ("x-request-id", &client_id)],
        Some(json!({
            "sku": unique("SKU"), "name": "Mug", "price_cents": 900, "currency": "EUR", "stock": 3
        })),
    )
    .await;
    let minted = server_request_id(&created);
    let product = expect_json(created, StatusCode::CREATED).await;

    // Assert
    let mut db = app.owner_connection().await;
    let recorded: Vec<(Option<String>, Option<String>)> = sqlx::query_as(
        "select request_id, client_request_id from audit_events
         where tenant_id = $1 and target_id = $2",
    )
    .bind(tenant.id.as_uuid())
    .bind(id(&product))
    .fetch_all(&mut db)
    .await
    .expect("the owner reads audit events");
    assert_eq!(
        recorded,
        vec![(Some(minted.to_string()), Some(client_id.clone()))],
        "one audit event, with the server's request id and the client's beside it"
    );
}

#[tokio::test]
async fn domain_events_carry_the_servers_request_id_and_the_clients_in_their_metadata() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = app.create_product(&tenant).await;
    let auth = format!("Bearer {}", tenant.token);
    let client_id = unique("checkout");

    // Act
    let placed = send(
        &app,
        Method::POST,
        "/v1/orders",
        &[("authorization", &auth), ("x-request-id", &client_id)],
        Some(order_request(&customer, &[(&product, 1)])),
    )
    .await;
    let minted = server_request_id(&placed);
    let order = expect_json(placed, StatusCode::CREATED).await;
    let history = expect_json(
        app.get(&format!("/v1/orders/{}/events", id(&order)), &tenant.token)
            .await,
        StatusCode::OK,
    )
    .await;

    // Assert
    let events = history["items"]
        .as_array()
        .unwrap_or_else(|| panic!("expected the order's events, got {history}"));
    assert_eq!(events.len(), 1, "one event: {history}");
    let metadata = &events[0]["metadata"];
    let expected: Value = json!(minted.to_string());
    assert_eq!(
        metadata["request_id"], expected,
        "the server's request id: {metadata}"
    );
    assert_eq!(
        metadata["causation_id"], expected,
        "caused by the server's request: {metadata}"
    );
    assert_eq!(
        metadata["client_request_id"],
        json!(client_id),
        "the client's id beside it: {metadata}"
    );
}
