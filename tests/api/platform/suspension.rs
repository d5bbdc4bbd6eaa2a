//! Suspension: a suspended tenant is refused everywhere, with every kind of credential and
//! at login and refresh, until reactivated; other tenants are untouched.

use reqwest::{Method, Response, StatusCode};
use serde_json::json;
use tenantry::access::Scope;

use crate::helpers::{
    OPERATOR_TOKEN, PASSWORD, TestApp, expect_json, expect_problem, get_with_api_key_header,
    spawn_app, tenant_path,
};

/// A login attempt that may fail (the helper's `login` insists on 200).
async fn try_login(app: &TestApp, slug: &str, email: &str, password: &str) -> Response {
    app.request(
        Method::POST,
        "/v1/auth/login",
        None,
        Some(&json!({"tenant": slug, "email": email, "password": password})),
    )
    .await
}

async fn set_status(app: &TestApp, id: impl std::fmt::Display, status: &str) {
    let response = app
        .patch(&tenant_path(id), OPERATOR_TOKEN, json!({"status": status}))
        .await;
    let tenant = expect_json(response, StatusCode::OK).await;
    assert_eq!(
        tenant["status"], status,
        "the operator set the status to {status}: {tenant}"
    );
}

#[tokio::test]
async fn a_suspended_tenant_is_refused_everywhere_until_reactivated() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, api_key) = app.create_api_key(&tenant, &["users:read"]).await;
    let new_key = json!({"name": "during suspension", "scopes": ["users:read"]});

    // Act
    set_status(&app, tenant.id, "suspended").await;

    // Assert: every credential and every route says tenant_suspended.
    for path in ["/v1/me", "/v1/users", "/v1/tenant"] {
        let response = app.get(path, &tenant.token).await;
        expect_problem(response, StatusCode::FORBIDDEN, "tenant_suspended").await;
    }
    expect_problem(
        app.post("/v1/api-keys", &tenant.token, new_key.clone())
            .await,
        StatusCode::FORBIDDEN,
        "tenant_suspended",
    )
    .await;
    expect_problem(
        app.get("/v1/users", &api_key).await,
        StatusCode::FORBIDDEN,
        "tenant_suspended",
    )
    .await;
    let refresh = app
        .request(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(&json!({"refresh_token": tenant.refresh_token})),
        )
        .await;
    expect_problem(refresh, StatusCode::FORBIDDEN, "tenant_suspended").await;
    let login = try_login(&app, &tenant.slug, &tenant.owner_email, PASSWORD).await;
    expect_problem(login, StatusCode::FORBIDDEN, "tenant_suspended").await;
    let wrong_password = try_login(
        &app,
        &tenant.slug,
        &tenant.owner_email,
        "not the password at all",
    )
    .await;
    expect_problem(
        wrong_password,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;

    // Act: reactivate.
    set_status(&app, tenant.id, "active").await;

    // Assert: the same credentials work again.
    for path in ["/v1/me", "/v1/users", "/v1/tenant"] {
        expect_json(app.get(path, &tenant.token).await, StatusCode::OK).await;
    }
    expect_json(
        app.post("/v1/api-keys", &tenant.token, new_key).await,
        StatusCode::CREATED,
    )
    .await;
    expect_json(app.get("/v1/users", &api_key).await, StatusCode::OK).await;
    app.login(&tenant.slug, &tenant.owner_email, PASSWORD).await;
}

#[tokio::test]
async fn suspending_a_tenant_leaves_other_tenants_untouched() {
    // Arrange
    let app = spawn_app().await;
    let suspended = app.create_tenant().await;
    let other = app.create_tenant().await;
    let (_, other_key) = app.create_api_key(&other, &["users:read"]).await;

    // Act
    set_status(&app, suspended.id, "suspended").await;

    // Assert
    expect_problem(
        app.get("/v1/me", &suspended.token).await,
        StatusCode::FORBIDDEN,
        "tenant_suspended",
    )
    .await;
    for path in ["/v1/me", "/v1/users", "/v1/tenant"] {
        expect_json(app.get(path, &other.token).await, StatusCode::OK).await;
    }
    expect_json(app.get("/v1/users", &other_key).await, StatusCode::OK).await;
    app.login(&other.slug, &other.owner_email, PASSWORD).await;
    let listed = expect_json(
        app.get(&tenant_path(other.id), OPERATOR_TOKEN).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        listed["status"], "active",
        "the other tenant stays active: {listed}"
    );
}

#[tokio::test]
async fn every_credential_of_a_suspended_tenant_is_forbidden_until_reactivated() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let bystander = app.create_tenant().await;
    let (_, api_key) = app
        .create_api_key(&tenant, &["tenant:read", "users:read"])
        .await;
    let service_token = app
        .mint_token(tenant.id, &[Scope::TenantRead, Scope::UsersRead])
        .await;
    let credentials = [
        ("owner session token", tenant.token.as_str()),
        ("API key", api_key.as_str()),
        ("operator-minted service token", service_token.as_str()),
    ];
    let paths = ["/v1/me", "/v1/users", "/v1/tenant"];
    for (name, credential) in credentials {
        for path in paths {
            let response = app.get(path, credential).await;
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "before suspension, GET {path} with the {name} succeeds"
            );
        }
    }

    // Act
    set_status(&app, tenant.id, "suspended").await;

    // Assert
    for (name, credential) in credentials {
        for path in paths {
            let problem = expect_problem(
                app.get(path, credential).await,
                StatusCode::FORBIDDEN,
                "tenant_suspended",
            )
            .await;
            assert!(
                problem["detail"].is_string(),
                "GET {path} with the {name} of a suspended tenant explains itself: {problem}"
            );
        }
    }
    let via_header = get_with_api_key_header(&app, "/v1/me", &api_key).await;
    expect_problem(via_header, StatusCode::FORBIDDEN, "tenant_suspended").await;
    let login = app
        .request(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(
                &json!({"tenant": tenant.slug, "email": tenant.owner_email, "password": PASSWORD}),
            ),
        )
        .await;
    expect_problem(login, StatusCode::FORBIDDEN, "tenant_suspended").await;
    let bystander_me = app.get("/v1/me", &bystander.token).await;
    assert_eq!(
        bystander_me.status(),
        StatusCode::OK,
        "suspending one tenant must not affect another"
    );

    // Act: reactivate
    set_status(&app, tenant.id, "active").await;

    // Assert: the same credentials work again
    for (name, credential) in credentials {
        for path in paths {
            let response = app.get(path, credential).await;
            assert_eq!(
                response.status(),
                StatusCode::OK,
                "after reactivation, GET {path} with the {name} succeeds again"
            );
        }
    }
}
