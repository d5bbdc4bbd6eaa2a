//! An API key holds at most its creator's scopes, whether a user or another key creates it.

use reqwest::StatusCode;
use serde_json::json;
use tenantry::access::{Role, Scope};

use crate::helpers::{TestApp, TestTenant, expect_json, expect_problem, scopes_of, spawn_app};

async fn api_key_count(app: &TestApp, tenant: &TestTenant) -> usize {
    let page = expect_json(app.get("/v1/api-keys", &tenant.token).await, StatusCode::OK).await;
    page["items"].as_array().expect("a page has items").len()
}

#[tokio::test]
async fn an_api_key_cannot_be_created_with_scopes_its_creator_lacks() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, admin_token) = app.create_user(&tenant, "admin").await;
    let (_, member_token) = app.create_user(&tenant, "member").await;
    let keys_before = api_key_count(&app, &tenant).await;
    let request = |scopes: &[&str]| json!({"name": "escalation attempt", "scopes": scopes});

    // Act + Assert: an admin lacks tenant:write
    let problem = expect_problem(
        app.post(
            "/v1/api-keys",
            &admin_token,
            request(&["tenant:read", "tenant:write"]),
        )
        .await,
        StatusCode::FORBIDDEN,
        "scope_escalation",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("tenant:write") && !d.contains("tenant:read")),
        "the problem names exactly the scope the admin lacks: {problem}"
    );

    // Act + Assert: a token with api_keys:write but not users:write (as a member would hold)
    let member_plus_keys: Vec<Scope> = scopes_of(Role::Member)
        .into_iter()
        .chain([Scope::ApiKeysWrite])
        .collect();
    let token = app.mint_token(tenant.id, &member_plus_keys).await;
    expect_problem(
        app.post("/v1/api-keys", &token, request(&["users:write"]))
            .await,
        StatusCode::FORBIDDEN,
        "scope_escalation",
    )
    .await;

    // Act + Assert: a real member may not create keys at all
    expect_problem(
        app.post("/v1/api-keys", &member_token, request(&["users:write"]))
            .await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;

    assert_eq!(
        api_key_count(&app, &tenant).await,
        keys_before,
        "no key was created"
    );

    // Control: within the creator's scopes it works
    let created = app
        .post(
            "/v1/api-keys",
            &admin_token,
            request(&["users:write", "tenant:read"]),
        )
        .await;
    assert_eq!(
        created.status(),
        StatusCode::CREATED,
        "an admin may create a key with scopes they hold"
    );
}

#[tokio::test]
async fn an_api_key_cannot_mint_a_key_with_more_scopes_than_itself() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, parent) = app
        .create_api_key(&tenant, &["api_keys:write", "orders:read"])
        .await;
    let keys_before = api_key_count(&app, &tenant).await;

    for (name, scopes) in [
        ("a sibling scope", vec!["orders:write"]),
        (
            "its scopes plus one",
            vec!["api_keys:write", "orders:read", "orders:write"],
        ),
        (
            "everything",
            Scope::ALL.iter().map(|s| s.as_str()).collect(),
        ),
    ] {
        // Act
        let response = app
            .post(
                "/v1/api-keys",
                &parent,
                json!({"name": "child", "scopes": scopes}),
            )
            .await;

        // Assert
        expect_problem(response, StatusCode::FORBIDDEN, "scope_escalation").await;
        assert_eq!(
            api_key_count(&app, &tenant).await,
            keys_before,
            "asking for {name}: no key was created"
        );
    }

    // Control: a subset of its own scopes is allowed, and the child holds exactly those
    let child = expect_json(
        app.post(
            "/v1/api-keys",
            &parent,
            json!({"name": "child", "scopes": ["orders:read"]}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let child_key = child["key"].as_str().unwrap();
    let me = expect_json(app.get("/v1/me", child_key).await, StatusCode::OK).await;
    assert_eq!(
        me["scopes"],
        json!(["orders:read"]),
        "the child key holds what it was given: {me}"
    );
    assert!(
        child["created_by"]
            .as_str()
            .is_some_and(|c| c.starts_with("api_key:")),
        "the child records the key that created it: {child}"
    );
}
