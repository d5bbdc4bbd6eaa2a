//! Creating users: an email is taken once per tenant, whatever its case.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::{PASSWORD, expect_json, expect_problem, spawn_app};

#[tokio::test]
async fn creating_a_user_with_a_taken_email_is_a_conflict() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let user = json!({"email": format!("twice@{}.test", tenant.slug), "role": "member", "password": PASSWORD});
    expect_json(
        app.post("/v1/users", &tenant.token, user.clone()).await,
        StatusCode::CREATED,
    )
    .await;

    // Act
    let again = app.post("/v1/users", &tenant.token, user).await;
    let again_other_case = app
        .post(
            "/v1/users",
            &tenant.token,
            json!({"email": format!("TWICE@{}.test", tenant.slug), "role": "viewer"}),
        )
        .await;

    // Assert
    expect_problem(again, StatusCode::CONFLICT, "email_taken").await;
    expect_problem(again_other_case, StatusCode::CONFLICT, "email_taken").await;
}
