//! GraphQL (`/graphql`): the schema, queries, mutations, scopes, cost limits, the
//! statements a page costs, and subscriptions. (Cross-tenant isolation over GraphQL is in `isolation`, next
//! to the REST table it mirrors.)

mod limits;
mod mutations;
mod queries;
mod schema;
mod scopes;
mod statements;
mod subscriptions;

use reqwest::{Response, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, expect_json};

/// Runs one operation as `bearer` and returns the answer (always 200 for a GraphQL
/// request).
pub async fn graphql(app: &TestApp, bearer: &str, query: &str, variables: Value) -> Value {
    let response = post_graphql(
        app,
        bearer,
        &json!({"query": query, "variables": variables}),
    )
    .await;
    expect_json(response, StatusCode::OK).await
}

/// `POST /graphql` with `body` (one operation, or an array of them) as `bearer`.
pub async fn post_graphql(app: &TestApp, bearer: &str, body: &Value) -> Response {
    app.client
        .post(app.url("/graphql"))
        .bearer_auth(bearer)
        .json(body)
        .send()
        .await
        .expect("the server answers")
}

/// The `extensions.code` of every error of an answer, in order.
pub fn error_codes(answer: &Value) -> Vec<&str> {
    answer["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["extensions"]["code"].as_str().unwrap_or("<no code>"))
        .collect()
}

/// The ids of a connection's nodes (`data.<field>.edges[].node.id`).
pub fn node_ids<'a>(answer: &'a Value, field: &str) -> Vec<&'a str> {
    answer["data"][field]["edges"]
        .as_array()
        .unwrap_or_else(|| panic!("data.{field} is a connection: {answer:#}"))
        .iter()
        .map(|e| e["node"]["id"].as_str().expect("a node id"))
        .collect()
}

/// The ids of `GET path`'s items, as `bearer` sees them over REST.
pub async fn rest_ids(app: &TestApp, bearer: &str, path: &str) -> Vec<String> {
    let page = expect_json(app.get(path, bearer).await, StatusCode::OK).await;
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("{path} lists items: {page}"))
        .iter()
        .map(|i| i["id"].as_str().unwrap().to_owned())
        .collect()
}

/// A `createProduct` input, with a fresh SKU.
pub fn product_input(stock: i32) -> Value {
    json!({
        "sku": crate::helpers::unique("GQL"),
        "name": "GraphQL product",
        "priceCents": 1250,
        "currency": "EUR",
        "stock": stock
    })
}
