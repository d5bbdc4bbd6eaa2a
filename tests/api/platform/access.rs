//! Who may call the operator API: only the operator token, never a tenant's credential.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    OPERATOR_TOKEN, PASSWORD, TENANTS, expect_json, expect_problem, send, spawn_app, tenant_path,
    unique,
};

#[tokio::test]
async fn operator_routes_refuse_every_tenant_credential_and_a_wrong_token() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, api_key) = app.create_api_key(&tenant, &["users:read"]).await;
    let service_token = app
        .mint_token(tenant.id, &[tenantry::access::Scope::TenantRead])
        .await;
    let owner_bearer = format!("Bearer {}", tenant.token);
    let key_bearer = format!("Bearer {api_key}");
    let service_bearer = format!("Bearer {service_token}");
    let wrong_operator = format!("Bearer {OPERATOR_TOKEN}x");
    let basic = format!("Basic {OPERATOR_TOKEN}");
    let refused: [(&str, Vec<(&str, &str)>); 7] = [
        (
            "the tenant owner's JWT",
            vec![("authorization", &owner_bearer)],
        ),
        ("an API key as bearer", vec![("authorization", &key_bearer)]),
        ("an API key as X-API-Key", vec![("x-api-key", &api_key)]),
        (
            "a minted service token",
            vec![("authorization", &service_bearer)],
        ),
        ("no credential", vec![]),
        (
            "a wrong operator token",
            vec![("authorization", &wrong_operator)],
        ),
        (
            "the operator token under another scheme",
            vec![("authorization", &basic)],
        ),
    ];

    for (what, headers) in refused {
        // Act
        let list = send(&app, Method::GET, TENANTS, &headers, None).await;
        let read_own = send(&app, Method::GET, &tenant_path(tenant.id), &headers, None).await;
        let unsuspend_attempt = send(
            &app,
            Method::PATCH,
            &tenant_path(tenant.id),
            &headers,
            Some(json!({"plan": "enterprise"})),
        )
        .await;

        // Assert
        for (route, response) in [
            ("list", list),
            ("read", read_own),
            ("patch", unsuspend_attempt),
        ] {
            assert!(
                response.headers().get("www-authenticate").is_some(),
                "{what} on {route}: a 401 names the scheme in WWW-Authenticate"
            );
            let problem =
                expect_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
            assert!(
                problem["detail"].is_string(),
                "{what} on {route}: {problem}"
            );
        }
    }
    let after = expect_json(
        app.get(&tenant_path(tenant.id), OPERATOR_TOKEN).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        after["plan"], "free",
        "no refused request changed the plan: {after}"
    );
}

#[tokio::test]
async fn a_tenant_owner_cannot_create_tenants_through_the_operator_api() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let slug = unique("sneaky");
    let body = json!({"slug": slug, "name": "Sneaky", "owner_email": "a@sneaky.test", "owner_password": PASSWORD});

    // Act
    let refused = app.post(TENANTS, &tenant.token, body.clone()).await;

    // Assert: refused, and nothing was created (the slug is still free).
    expect_problem(refused, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    expect_json(
        app.post(TENANTS, OPERATOR_TOKEN, body).await,
        StatusCode::CREATED,
    )
    .await;
}
