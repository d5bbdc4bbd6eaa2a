//! Mutations: each runs the application command of its REST twin, with its rules and
//! their codes (`insufficient_stock`, `quota_exceeded`, `amount_mismatch`,
//! `precondition_failed`, `validation_failed`), its idempotency keys, and the audit events
//! REST records.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{error_codes, graphql, product_input, rest_ids};
use crate::helpers::{
    TestApp, TestTenant, command, command_body, expect_json, id, override_limits, place_ok,
    spawn_app,
};

const PLACE: &str = "mutation($input: PlaceOrderInput!, $key: String) {
    placeOrder(input: $input, idempotencyKey: $key) { id status totalCents items { quantity } }
}";

fn order_input(customer: &Value, product: &Value, quantity: i32) -> Value {
    json!({"customerId": id(customer), "items": [{"productId": id(product), "quantity": quantity}]})
}

/// The product's stock as REST shows it now.
async fn stock(app: &TestApp, tenant: &TestTenant, product: &Value) -> i64 {
    let product = expect_json(
        app.get(&format!("/v1/products/{}", id(product)), &tenant.token)
            .await,
        StatusCode::OK,
    )
    .await;
    product["stock"].as_i64().unwrap()
}

#[tokio::test]
async fn place_order_with_an_idempotency_key_places_once_and_refuses_the_key_for_another_input() {
    // Arrange: 10 in stock.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let product = app.create_product(&tenant).await;
    let customer = app.create_customer(&tenant).await;
    let key = uuid::Uuid::new_v4().to_string();
    let input = order_input(&customer, &product, 3);

    // Act
    let first = graphql(
        &app,
        &tenant.token,
        PLACE,
        json!({"input": input, "key": key}),
    )
    .await;
    let retry = graphql(
        &app,
        &tenant.token,
        PLACE,
        json!({"input": input, "key": key}),
    )
    .await;
    let other = graphql(
        &app,
        &tenant.token,
        PLACE,
        json!({"input": order_input(&customer, &product, 4), "key": key}),
    )
    .await;

    // Assert: one order, stock reserved once; the key refused for another input.
    assert_eq!(first["errors"], Value::Null, "{first:#}");
    assert_eq!(retry["errors"], Value::Null, "{retry:#}");
    let placed = &first["data"]["placeOrder"];
    assert_eq!(placed["status"], "PENDING");
    assert_eq!(placed["totalCents"], 3 * 1250);
    assert_eq!(
        retry["data"]["placeOrder"]["id"], placed["id"],
        "the retry answers the same order"
    );
    assert_eq!(error_codes(&other), ["idempotency_key_reused"], "{other:#}");
    assert_eq!(other["data"]["placeOrder"], Value::Null, "{other:#}");
    assert_eq!(
        rest_ids(&app, &tenant.token, "/v1/orders").await,
        [placed["id"].as_str().unwrap()],
        "only one order exists"
    );
    assert_eq!(
        stock(&app, &tenant, &product).await,
        10 - 3,
        "stock reserved once"
    );
}

#[tokio::test]
async fn an_order_beyond_the_stock_is_insufficient_stock_and_reserves_nothing() {
    // Arrange: two products, one with 10 in stock and one with 10 of which 11 are asked.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let plenty = app.create_product(&tenant).await;
    let short = app.create_product(&tenant).await;
    let customer = app.create_customer(&tenant).await;
    let input = json!({"customerId": id(&customer), "items": [
        {"productId": id(&plenty), "quantity": 2},
        {"productId": id(&short), "quantity": 11},
    ]});

    // Act
    let answer = graphql(&app, &tenant.token, PLACE, json!({"input": input})).await;

    // Assert
    assert_eq!(error_codes(&answer), ["insufficient_stock"], "{answer:#}");
    assert_eq!(answer["data"]["placeOrder"], Value::Null, "{answer:#}");
    assert!(rest_ids(&app, &tenant.token, "/v1/orders").await.is_empty());
    assert_eq!(stock(&app, &tenant, &plenty).await, 10, "nothing reserved");
    assert_eq!(stock(&app, &tenant, &short).await, 10, "nothing reserved");
}

#[tokio::test]
async fn creating_products_past_the_plans_limit_is_quota_exceeded_with_its_details() {
    // Arrange: one product allowed.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    override_limits(&app, &tenant, json!({"products": 1})).await;
    let create = "mutation($input: CreateProductInput!) { createProduct(input: $input) { id } }";

    // Act
    let first = graphql(
        &app,
        &tenant.token,
        create,
        json!({"input": product_input(5)}),
    )
    .await;
    let second = graphql(
        &app,
        &tenant.token,
        create,
        json!({"input": product_input(5)}),
    )
    .await;

    // Assert
    assert_eq!(first["errors"], Value::Null, "{first:#}");
    assert_eq!(error_codes(&second), ["quota_exceeded"], "{second:#}");
    let extensions = &second["errors"][0]["extensions"];
    assert_eq!(extensions["limit_name"], "products", "{second:#}");
    assert_eq!(extensions["limit"], 1, "{second:#}");
    assert_eq!(extensions["used"], 1, "{second:#}");
    assert_eq!(second["data"]["createProduct"], Value::Null);
    assert_eq!(
        rest_ids(&app, &tenant.token, "/v1/products").await,
        [first["data"]["createProduct"]["id"].as_str().unwrap()]
    );
}

#[tokio::test]
async fn an_order_goes_through_its_lifecycle_with_the_history_and_audit_rest_gives_it() {
    // Arrange: one order placed over GraphQL, its twin over REST.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let product = app.create_product(&tenant).await;
    let customer = app.create_customer(&tenant).await;
    let placed = graphql(
        &app,
        &tenant.token,
        PLACE,
        json!({"input": order_input(&customer, &product, 2)}),
    )
    .await;
    assert_eq!(placed["errors"], Value::Null, "{placed:#}");
    let order = placed["data"]["placeOrder"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let total = placed["data"]["placeOrder"]["totalCents"].as_i64().unwrap();
    let twin = place_ok(&app, &tenant, &customer, &[(&product, 2)]).await;

    // Act: confirm, pay the wrong amount, pay, ship, deliver; REST does the same to the twin.
    let run = |query: &'static str, variables: Value| {
        let (app, token) = (&app, &tenant.token);
        async move { graphql(app, token, query, variables).await }
    };
    let confirmed = run(
        "mutation($id: ID!) { confirmOrder(id: $id) { status } }",
        json!({"id": order}),
    )
    .await;
    let pay = "mutation($id: ID!, $amount: Int!) { payOrder(id: $id, amountCents: $amount, reference: \"pi_gql\") { status paymentReference } }";
    let mismatched = run(pay, json!({"id": order, "amount": total - 1})).await;
    let paid = run(pay, json!({"id": order, "amount": total})).await;
    let shipped = run(
        "mutation($id: ID!) { shipOrder(id: $id) { status } }",
        json!({"id": order}),
    )
    .await;
    let delivered = run(
        "mutation($id: ID!) { deliverOrder(id: $id) { status } }",
        json!({"id": order}),
    )
    .await;
    let after = run(
        "query($id: ID!) { order(id: $id) { status version events { eventType } } }",
        json!({"id": order}),
    )
    .await;
    for name in ["confirm", "pay", "ship", "deliver"] {
        let response = command(&app, &tenant, id(&twin), name, command_body(name, total)).await;
        expect_json(response, StatusCode::OK).await;
    }

    // Assert
    assert_eq!(
        confirmed["data"]["confirmOrder"]["status"], "CONFIRMED",
        "{confirmed:#}"
    );
    assert_eq!(
        error_codes(&mismatched),
        ["amount_mismatch"],
        "{mismatched:#}"
    );
    assert_eq!(
        mismatched["errors"][0]["extensions"]["errors"][0]["field"], "amount_cents",
        "{mismatched:#}"
    );
    assert_eq!(mismatched["data"]["payOrder"], Value::Null);
    assert_eq!(paid["data"]["payOrder"]["status"], "PAID", "{paid:#}");
    assert_eq!(paid["data"]["payOrder"]["paymentReference"], "pi_gql");
    assert_eq!(
        shipped["data"]["shipOrder"]["status"], "SHIPPED",
        "{shipped:#}"
    );
    assert_eq!(
        delivered["data"]["deliverOrder"]["status"], "DELIVERED",
        "{delivered:#}"
    );
    let history: Vec<&str> = after["data"]["order"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["eventType"].as_str().unwrap())
        .collect();
    assert_eq!(
        history,
        [
            "order.placed",
            "order.confirmed",
            "order.paid",
            "order.shipped",
            "order.delivered"
        ],
        "the refused payment left no event: {after:#}"
    );
    assert_eq!(after["data"]["order"]["version"], 5);
    let rest_history = expect_json(
        app.get(&format!("/v1/orders/{}/events", id(&twin)), &tenant.token)
            .await,
        StatusCode::OK,
    )
    .await;
    let rest_types: Vec<&str> = rest_history["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(history, rest_types, "the same history as over REST");
    let audited = app.audit_actions(tenant.id, &order).await;
    assert!(!audited.is_empty(), "the GraphQL commands are audited");
    assert_eq!(
        audited,
        app.audit_actions(tenant.id, id(&twin)).await,
        "the same audit actions as the REST twin's"
    );
}

#[tokio::test]
async fn a_stale_expected_version_is_precondition_failed_and_an_id_that_is_not_a_uuid_is_invalid() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let product = app.create_product(&tenant).await;
    let version = product["version"].as_i64().unwrap();
    let update = "mutation($id: ID!, $version: Int) { updateProduct(id: $id, input: {stock: 3}, expectedVersion: $version) { stock version } }";

    // Act
    let stale = graphql(
        &app,
        &tenant.token,
        update,
        json!({"id": id(&product), "version": version - 1}),
    )
    .await;
    let current = graphql(
        &app,
        &tenant.token,
        update,
        json!({"id": id(&product), "version": version}),
    )
    .await;
    let not_an_id = graphql(
        &app,
        &tenant.token,
        "{ product(id: \"not-a-uuid\") { id } }",
        json!({}),
    )
    .await;
    let not_an_id_mutation = graphql(
        &app,
        &tenant.token,
        "mutation { deleteProduct(id: \"42\") { id } }",
        json!({}),
    )
    .await;

    // Assert
    assert_eq!(error_codes(&stale), ["precondition_failed"], "{stale:#}");
    assert_eq!(current["errors"], Value::Null, "{current:#}");
    assert_eq!(current["data"]["updateProduct"]["stock"], 3);
    assert_eq!(current["data"]["updateProduct"]["version"], version + 1);
    assert_eq!(
        error_codes(&not_an_id),
        ["validation_failed"],
        "{not_an_id:#}"
    );
    assert_eq!(not_an_id["data"]["product"], Value::Null);
    assert_eq!(
        error_codes(&not_an_id_mutation),
        ["validation_failed"],
        "{not_an_id_mutation:#}"
    );
    assert_eq!(
        rest_ids(&app, &tenant.token, "/v1/products").await,
        [id(&product)]
    );
}
