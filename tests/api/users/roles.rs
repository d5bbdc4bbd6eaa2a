//! Roles: you may only grant (or touch) what you hold — a member cannot promote themselves
//! or create users, an admin cannot create, touch or demote an owner.

use reqwest::StatusCode;
use serde_json::json;

use super::user;
use crate::helpers::{PASSWORD, expect_problem, snapshot, spawn_app, unique};

#[tokio::test]
async fn a_member_cannot_promote_themselves_or_create_users() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (member_id, member_token) = app.create_user(&tenant, "member").await;
    let before = snapshot(&app, tenant.id).await;

    // Act
    let promote_self = app
        .patch(
            &format!("/v1/users/{member_id}"),
            &member_token,
            json!({"role": "admin"}),
        )
        .await;
    let create = app
        .post(
            "/v1/users",
            &member_token,
            json!({"email": format!("{}@{}.test", unique("x"), tenant.slug), "role": "viewer", "password": PASSWORD}),
        )
        .await;

    // Assert
    expect_problem(promote_self, StatusCode::FORBIDDEN, "insufficient_scope").await;
    expect_problem(create, StatusCode::FORBIDDEN, "insufficient_scope").await;
    assert_eq!(
        user(&app, &tenant, &member_id).await["role"],
        "member",
        "the member is still a member"
    );
    assert_eq!(
        snapshot(&app, tenant.id).await,
        before,
        "nothing in the tenant changed"
    );
}

#[tokio::test]
async fn an_admin_cannot_create_touch_or_demote_an_owner() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, admin_token) = app.create_user(&tenant, "admin").await;
    let owner_path = format!("/v1/users/{}", tenant.owner_id);
    let before = snapshot(&app, tenant.id).await;
    let attempts = [
        (
            "create an owner",
            app.post(
                "/v1/users",
                &admin_token,
                json!({"email": format!("{}@{}.test", unique("o"), tenant.slug), "role": "owner", "password": PASSWORD}),
            )
            .await,
        ),
        ("demote the owner", app.patch(&owner_path, &admin_token, json!({"role": "member"})).await),
        (
            "deactivate the owner by PATCH",
            app.patch(&owner_path, &admin_token, json!({"status": "deactivated"})).await,
        ),
        ("deactivate the owner by DELETE", app.delete(&owner_path, &admin_token).await),
    ];

    for (name, response) in attempts {
        // Assert
        let problem = expect_problem(response, StatusCode::FORBIDDEN, "role_escalation").await;
        assert!(
            problem["detail"].is_string(),
            "an admin trying to {name}: {problem}"
        );
    }
    let owner = user(&app, &tenant, &tenant.owner_id).await;
    assert_eq!(
        (owner["role"].as_str(), owner["status"].as_str()),
        (Some("owner"), Some("active")),
        "the owner is untouched: {owner}"
    );
    assert_eq!(
        snapshot(&app, tenant.id).await,
        before,
        "nothing in the tenant changed"
    );

    // Control: an admin may grant what they hold
    let created = app
        .post(
            "/v1/users",
            &admin_token,
            json!({"email": format!("{}@{}.test", unique("a"), tenant.slug), "role": "admin", "password": PASSWORD}),
        )
        .await;
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "an admin may create another admin"
    );
}
