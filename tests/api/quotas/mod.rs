//! Plans and quotas: limits hold exactly under concurrency, refusals say which limit and
//! when it resets, crossings of 80 % and 100 % are visible, and the operator manages plans
//! and per-tenant overrides.

mod limits;
mod plans;

use reqwest::StatusCode;
use serde_json::{Value, json};

pub use crate::helpers::override_limits;
use crate::helpers::{TestApp, TestTenant, expect_json};

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
