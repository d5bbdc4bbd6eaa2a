//! Users: an email is taken once per tenant, nobody grants or touches a role they do not
//! hold, a tenant always keeps an active owner, and nobody changes their own role or
//! status. The helper here is shared by the files below.

mod creating;
mod owners;
mod roles;

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{TestApp, TestTenant, expect_json};

/// A user as `GET /v1/users/{id}` shows it now.
pub(super) async fn user(app: &TestApp, tenant: &TestTenant, id: &str) -> Value {
    expect_json(
        app.get(&format!("/v1/users/{id}"), &tenant.token).await,
        StatusCode::OK,
    )
    .await
}
