//! An API key answers to whoever created it — a user, or a key that answers to a user —
//! and holds at most that creator's *current* scopes: it shrinks when the user is demoted,
//! stops when the user is deactivated or the parent key revoked, and works again once a
//! user holding its scopes takes it over. Revoking a key, or taking it over, takes every
//! scope it holds; only a user takes a key over, and a service token creates none.

use std::collections::BTreeSet;

use reqwest::StatusCode;
use serde_json::{Value, json};
use tenantry::access::Scope;

use crate::helpers::{TestApp, TestTenant, expect_json, expect_problem, outcome, spawn_app};

/// Creates a key with `scopes` using `credential`; returns (id, secret).
async fn key_from(app: &TestApp, credential: &str, scopes: &[&str]) -> (String, String) {
    let created = expect_json(
        app.post(
            "/v1/api-keys",
            credential,
            json!({"name": "integration", "scopes": scopes}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    (
        created["id"].as_str().unwrap().to_owned(),
        created["key"].as_str().unwrap().to_owned(),
    )
}

/// The scopes `GET /v1/me` says a credential holds now.
async fn scopes_now(app: &TestApp, credential: &str) -> BTreeSet<String> {
    let me = expect_json(app.get("/v1/me", credential).await, StatusCode::OK).await;
    me["scopes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_owned())
        .collect()
}

fn set(scopes: &[&str]) -> BTreeSet<String> {
    scopes.iter().map(|s| s.to_string()).collect()
}

async fn take_over(app: &TestApp, credential: &str, key_id: &str) -> reqwest::Response {
    app.post(
        &format!("/v1/api-keys/{key_id}/take-over"),
        credential,
        json!({}),
    )
    .await
}

async fn refused_because(app: &TestApp, key: &str) -> String {
    let refused = outcome(app.get("/v1/me", key).await).await;
    assert!(
        refused.is_unauthenticated(),
        "expected the key to be refused with 401: {refused:?}"
    );
    refused.detail.unwrap_or_default()
}

#[tokio::test]
async fn a_key_shrinks_with_its_creators_role() {
    // Arrange: an admin's key with a scope a member lacks.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (admin_id, admin_token) = app.create_user(&tenant, "admin").await;
    let (_, key) = key_from(&app, &admin_token, &["users:read", "users:write"]).await;
    assert_eq!(
        scopes_now(&app, &key).await,
        set(&["users:read", "users:write"])
    );

    // Act: the owner demotes the admin to member.
    expect_json(
        app.patch(
            &format!("/v1/users/{admin_id}"),
            &tenant.token,
            json!({"role": "member"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    // Assert
    assert_eq!(
        scopes_now(&app, &key).await,
        set(&["users:read"]),
        "the key holds no more than its creator holds now"
    );
    let email = format!("new@{}.test", tenant.slug);
    expect_problem(
        app.post(
            "/v1/users",
            &key,
            json!({"email": email, "role": "viewer", "password": "correct horse battery"}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
}

#[tokio::test]
async fn deactivating_the_creator_stops_their_keys_until_an_owner_takes_them_over() {
    // Arrange: an admin's key, and a key that key created.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (admin_id, admin_token) = app.create_user(&tenant, "admin").await;
    let (key_id, key) = key_from(&app, &admin_token, &["api_keys:write", "orders:read"]).await;
    let (_, child) = key_from(&app, &key, &["orders:read"]).await;

    // Act: the admin is deactivated.
    let deactivated = app
        .delete(&format!("/v1/users/{admin_id}"), &tenant.token)
        .await;
    assert!(
        deactivated.status().is_success(),
        "{}",
        deactivated.status()
    );

    // Assert: both keys stop, saying why.
    assert!(
        refused_because(&app, &key).await.contains("deactivated"),
        "the key names its deactivated user"
    );
    refused_because(&app, &child).await;

    // Act: the owner takes the admin's key over.
    let taken = expect_json(
        take_over(&app, &tenant.token, &key_id).await,
        StatusCode::OK,
    )
    .await;

    // Assert: it answers to the owner now, and works again — and so does its child.
    assert_eq!(taken["created_by"], format!("user:{}", tenant.owner_id));
    assert_eq!(taken["created_by_user_id"], tenant.owner_id.as_str());
    assert_eq!(taken["created_by_key_id"], Value::Null);
    assert_eq!(
        scopes_now(&app, &key).await,
        set(&["api_keys:write", "orders:read"])
    );
    assert_eq!(scopes_now(&app, &child).await, set(&["orders:read"]));
    assert_eq!(
        app.audit_actions(tenant.id, &key_id).await,
        ["api_key.created", "api_key.taken_over"]
    );
}

#[tokio::test]
async fn revoking_a_key_stops_the_keys_it_created() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (parent_id, parent) =
        key_from(&app, &tenant.token, &["api_keys:write", "orders:read"]).await;
    let (_, child) = key_from(&app, &parent, &["orders:read"]).await;
    assert_eq!(scopes_now(&app, &child).await, set(&["orders:read"]));

    let revoked = app
        .delete(&format!("/v1/api-keys/{parent_id}"), &tenant.token)
        .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);

    assert!(
        refused_because(&app, &child).await.contains("revoked"),
        "a key whose parent is revoked is refused, saying why"
    );
}

#[tokio::test]
async fn revoking_or_taking_over_a_key_takes_every_scope_it_holds_and_a_user() {
    // Arrange: the owner's key with a scope admins lack (tenant:write).
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, admin_token) = app.create_user(&tenant, "admin").await;
    let (key_id, key) = key_from(&app, &tenant.token, &["tenant:read", "tenant:write"]).await;
    let (_, key_manager) = key_from(
        &app,
        &tenant.token,
        &["api_keys:write", "tenant:read", "tenant:write"],
    )
    .await;
    let revoke = |credential: String| {
        let app = &app;
        let path = format!("/v1/api-keys/{key_id}");
        async move { app.delete(&path, &credential).await }
    };

    // Act + Assert: an admin may neither revoke it nor take it over.
    let problem = expect_problem(
        revoke(admin_token.clone()).await,
        StatusCode::FORBIDDEN,
        "scope_escalation",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("tenant:write")),
        "the refusal names the scope the admin lacks: {problem}"
    );
    expect_problem(
        take_over(&app, &admin_token, &key_id).await,
        StatusCode::FORBIDDEN,
        "scope_escalation",
    )
    .await;
    // A key holding every scope still cannot take a key over: only a user can.
    expect_problem(
        take_over(&app, &key_manager, &key_id).await,
        StatusCode::FORBIDDEN,
        "user_required",
    )
    .await;
    assert_eq!(
        scopes_now(&app, &key).await,
        set(&["tenant:read", "tenant:write"]),
        "the key is untouched"
    );

    // The owner holds them all: revoking works, and a revoked key cannot be taken over.
    assert_eq!(
        revoke(tenant.token.clone()).await.status(),
        StatusCode::NO_CONTENT
    );
    expect_problem(
        take_over(&app, &tenant.token, &key_id).await,
        StatusCode::CONFLICT,
        "api_key_revoked",
    )
    .await;
}

#[tokio::test]
async fn a_service_token_cannot_create_an_api_key() {
    let app = spawn_app().await;
    let tenant: TestTenant = app.create_tenant().await;
    let token = app
        .mint_token(tenant.id, &[Scope::ApiKeysWrite, Scope::OrdersRead])
        .await;

    expect_problem(
        app.post(
            "/v1/api-keys",
            &token,
            json!({"name": "from a service", "scopes": ["orders:read"]}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "creator_required",
    )
    .await;
}
