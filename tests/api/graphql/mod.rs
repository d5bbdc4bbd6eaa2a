//! GraphQL (`/graphql`): the schema, queries, mutations, limits and subscriptions.

mod queries;
mod schema;
mod subscriptions;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{TestApp, expect_json};

/// Runs one operation as `bearer` and returns the answer (always 200 for a GraphQL
/// request).
pub async fn graphql(app: &TestApp, bearer: &str, query: &str, variables: Value) -> Value {
    let response = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(bearer)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap();
    expect_json(response, StatusCode::OK).await
}
