//! Scopes over GraphQL: each field needs the scope of its REST twin; a field the
//! credential lacks the scope for is `null` with an `insufficient_scope` error (its
//! siblings still answer), and a mutation it lacks the scope for changes nothing. API keys
//! authenticate as over REST, as a bearer or in `X-API-Key`.

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{error_codes, graphql, node_ids, rest_ids};
use crate::helpers::{expect_json, expect_problem, id, place_ok, spawn_app};

const PRODUCTS: &str = "{ products(first: 50) { edges { node { id name stock } } } }";
const ORDERS: &str = "{ orders(first: 50) { edges { node { id } } } }";

#[tokio::test]
async fn a_catalog_reader_reads_products_but_not_orders_and_places_nothing() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let product = app.create_product(&tenant).await;
    let customer = app.create_customer(&tenant).await;
    let (_, key) = app.create_api_key(&tenant, &["catalog:read"]).await;

    // Act
    let products = graphql(&app, &key, PRODUCTS, json!({})).await;
    let orders = graphql(&app, &key, ORDERS, json!({})).await;
    let both = graphql(
        &app,
        &key,
        "{ products(first: 50) { edges { node { id } } } orders(first: 50) { edges { node { id } } } }",
        json!({}),
    )
    .await;
    let placed = graphql(
        &app,
        &key,
        "mutation($input: PlaceOrderInput!) { placeOrder(input: $input) { id } }",
        json!({"input": {"customerId": id(&customer), "items": [{"productId": id(&product), "quantity": 3}]}}),
    )
    .await;

    // Assert: products answer; orders are refused as REST refuses them (403
    // `insufficient_scope`).
    assert_eq!(products["errors"], Value::Null, "{products:#}");
    assert_eq!(node_ids(&products, "products"), [id(&product)]);
    assert_eq!(error_codes(&orders), ["insufficient_scope"], "{orders:#}");
    assert_eq!(orders["errors"][0]["path"], json!(["orders"]), "{orders:#}");
    assert_eq!(orders["data"]["orders"], Value::Null, "{orders:#}");
    expect_problem(
        app.get("/v1/orders", &key).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    // In one operation, the field allowed still answers beside the one refused.
    assert_eq!(error_codes(&both), ["insufficient_scope"], "{both:#}");
    assert_eq!(both["errors"][0]["path"], json!(["orders"]), "{both:#}");
    assert_eq!(node_ids(&both, "products"), [id(&product)], "{both:#}");
    assert_eq!(both["data"]["orders"], Value::Null, "{both:#}");
    // The mutation is refused and nothing is placed or reserved.
    assert_eq!(error_codes(&placed), ["insufficient_scope"], "{placed:#}");
    assert_eq!(placed["data"]["placeOrder"], Value::Null, "{placed:#}");
    assert!(rest_ids(&app, &tenant.token, "/v1/orders").await.is_empty());
    let after = expect_json(
        app.get(&format!("/v1/products/{}", id(&product)), &tenant.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        after["stock"], product["stock"],
        "nothing reserved: {after}"
    );
}

#[tokio::test]
async fn an_orders_reader_reads_orders_with_their_customer_and_products_as_rest_expands_them() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let product = app.create_product(&tenant).await;
    let customer = app.create_customer(&tenant).await;
    let order = place_ok(&app, &tenant, &customer, &[(&product, 2)]).await;
    let (_, key) = app.create_api_key(&tenant, &["orders:read"]).await;

    // Act
    let answer = graphql(
        &app,
        &key,
        "{ orders(first: 10) { edges { node { id customer { id name email } items { quantity product { id name } } } } } }",
        json!({}),
    )
    .await;
    let customers = graphql(
        &app,
        &key,
        "{ customers { edges { node { id } } } }",
        json!({}),
    )
    .await;
    let rest = expect_json(
        app.get("/v1/orders?expand=customer,items.product", &key)
            .await,
        StatusCode::OK,
    )
    .await;

    // Assert: the same order, customer and product as REST's `expand` shows with this key;
    // the customers list itself still needs `catalog:read`.
    assert_eq!(answer["errors"], Value::Null, "{answer:#}");
    let node = &answer["data"]["orders"]["edges"][0]["node"];
    let expanded = &rest["items"][0];
    assert_eq!(node["id"], order["id"]);
    assert_eq!(
        node["customer"]["id"], expanded["customer"]["id"],
        "{node} / {expanded}"
    );
    assert_eq!(node["customer"]["name"], expanded["customer"]["name"]);
    assert_eq!(node["customer"]["email"], expanded["customer"]["email"]);
    assert_eq!(node["customer"]["id"].as_str(), Some(id(&customer)));
    assert_eq!(
        node["items"][0]["product"]["id"],
        expanded["items"][0]["product"]["id"]
    );
    assert_eq!(node["items"][0]["product"]["name"], product["name"]);
    assert_eq!(
        error_codes(&customers),
        ["insufficient_scope"],
        "{customers:#}"
    );
}

#[tokio::test]
async fn an_api_key_in_x_api_key_authenticates_and_none_at_all_is_a_401() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (key_id, key) = app.create_api_key(&tenant, &["catalog:read"]).await;
    let query = json!({"query": "{ me { actorType actorId scopes } }"});

    // Act
    let with_key = app
        .client
        .post(app.url("/graphql"))
        .header("x-api-key", &key)
        .json(&query)
        .send()
        .await
        .unwrap();
    let without = app
        .client
        .post(app.url("/graphql"))
        .json(&query)
        .send()
        .await
        .unwrap();

    // Assert
    let me = expect_json(with_key, StatusCode::OK).await;
    assert_eq!(me["data"]["me"]["actorType"], "api_key", "{me:#}");
    assert_eq!(me["data"]["me"]["actorId"], key_id.as_str(), "{me:#}");
    assert_eq!(
        me["data"]["me"]["scopes"],
        json!(["catalog:read"]),
        "{me:#}"
    );
    let problem = expect_problem(without, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    assert!(problem["detail"].is_string(), "{problem}");
}
