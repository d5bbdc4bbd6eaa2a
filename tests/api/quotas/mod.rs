//! Plans and quotas: limits hold exactly under concurrency, refusals say which limit and
//! when it resets, crossings of 80 % and 100 % are visible, and the operator manages plans
//! and per-tenant overrides.

mod limits;
mod plans;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{OPERATOR_TOKEN, TestApp, TestTenant, expect_json, send};

/// Sets `tenant`'s limit overrides (the whole set) through the operator API.
async fn override_limits(app: &TestApp, tenant: &TestTenant, overrides: Value) -> Value {
    expect_json(
        send(
            app,
            Method::PUT,
            &format!("/v1/platform/tenants/{}/limits", tenant.id),
            &[("authorization", &format!("Bearer {OPERATOR_TOKEN}"))],
            Some(overrides),
        )
        .await,
        StatusCode::OK,
    )
    .await
}

/// The tenant's quota of `name`, as `GET /v1/quotas` shows it.
async fn quota(app: &TestApp, tenant: &TestTenant, name: &str) -> Value {
    let quotas = expect_json(app.get("/v1/quotas", &tenant.token).await, StatusCode::OK).await;
    quotas["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} is listed: {quotas}"))
}

/// A product body with a fresh SKU.
fn product(n: usize, stock: i64) -> Value {
    json!({"sku": format!("Q-{n}-{}", uuid::Uuid::now_v7().simple()), "name": "Quota",
           "price_cents": 100, "currency": "EUR", "stock": stock})
}
