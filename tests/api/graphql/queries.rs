//! Queries: the tenant's data as a graph, read through the same application functions as
//! REST.

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{expect_json, id, place_ok, spawn_app};

use super::graphql;

#[tokio::test]
async fn an_order_page_shows_its_customer_and_its_lines_products() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = app.create_product(&tenant).await;
    let order = place_ok(&app, &tenant, &customer, &[(&product, 2)]).await;

    // Act
    let answer = graphql(
        &app,
        &tenant.token,
        "query($first: Int) { orders(first: $first) { edges { cursor node { id status totalCents customer { id name } items { quantity product { id name } } } } pageInfo { hasNextPage endCursor } } }",
        json!({"first": 10}),
    )
    .await;

    // Assert
    assert_eq!(answer["errors"], Value::Null, "{answer:#}");
    let edges = answer["data"]["orders"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1);
    let node = &edges[0]["node"];
    assert_eq!(node["id"], order["id"]);
    assert_eq!(node["status"], "PENDING");
    assert_eq!(node["customer"]["id"].as_str(), Some(id(&customer)));
    assert_eq!(node["items"][0]["quantity"], 2);
    assert_eq!(node["items"][0]["product"]["name"], product["name"]);
    assert_eq!(answer["data"]["orders"]["pageInfo"]["hasNextPage"], false);
    assert!(answer["extensions"]["cost"]["points"].as_u64().unwrap() >= 1);
}

#[tokio::test]
async fn an_unauthenticated_request_is_a_401_problem() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/graphql"))
        .json(&json!({"query": "{ me { actorType } }"}))
        .send()
        .await
        .unwrap();
    let _ = expect_json(response, StatusCode::UNAUTHORIZED).await;
}
