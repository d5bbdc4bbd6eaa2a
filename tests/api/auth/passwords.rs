//! Passwords and login: passwords are stored as argon2id with OWASP's parameters, and login
//! failures reveal nothing about which accounts exist.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry::tenancy::TenantId;

use crate::helpers::{PASSWORD, expect_json, outcome, spawn_app, unique};

#[tokio::test]
async fn passwords_are_stored_as_argon2id_with_owasp_parameters() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    app.create_user(&tenant, "member").await;
    let generated = expect_json(
        app.post(
            "/v1/users",
            &tenant.token,
            json!({"email": format!("{}@{}.test", unique("gen"), tenant.slug), "role": "viewer"}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let generated_password = generated["password"]
        .as_str()
        .expect("a generated password is shown once")
        .to_owned();
    let mut db = app.owner_connection().await;

    // Act
    let hashes: Vec<String> =
        sqlx::query_scalar("select password_hash from users where tenant_id = $1")
            .bind(tenant.id.as_uuid())
            .fetch_all(&mut db)
            .await
            .expect("users are readable by the database owner");

    // Assert
    assert_eq!(hashes.len(), 3, "owner, member and viewer each have a hash");
    for hash in &hashes {
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "argon2id with m=19456, t=2, p=1: {hash}"
        );
        assert!(
            !hash.contains(PASSWORD) && !hash.contains(&generated_password),
            "no password appears in its hash: {hash}"
        );
    }
    let unique_hashes: std::collections::HashSet<_> = hashes.iter().collect();
    assert_eq!(
        unique_hashes.len(),
        hashes.len(),
        "equal passwords get different salts, so different hashes"
    );
}

#[tokio::test]
async fn login_failures_are_indistinguishable() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let deactivated_email = format!("{}@{}.test", unique("gone"), tenant.slug);
    let created = expect_json(
        app.post(
            "/v1/users",
            &tenant.token,
            json!({"email": deactivated_email, "role": "member", "password": PASSWORD}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let deactivate = app
        .delete(
            &format!("/v1/users/{}", created["id"].as_str().unwrap()),
            &tenant.token,
        )
        .await;
    assert_eq!(
        deactivate.status(),
        StatusCode::NO_CONTENT,
        "the user is deactivated"
    );

    let cases: [(&str, Value); 6] = [
        (
            "unknown tenant slug",
            json!({"tenant": unique("nobody"), "email": tenant.owner_email, "password": PASSWORD}),
        ),
        (
            "unknown tenant id",
            json!({"tenant": TenantId::new().to_string(), "email": tenant.owner_email, "password": PASSWORD}),
        ),
        (
            "unknown email",
            json!({"tenant": tenant.slug, "email": format!("nobody@{}.test", tenant.slug), "password": PASSWORD}),
        ),
        (
            "wrong password",
            json!({"tenant": tenant.slug, "email": tenant.owner_email, "password": "not the right password"}),
        ),
        (
            "deactivated user with the right password",
            json!({"tenant": tenant.slug, "email": deactivated_email, "password": PASSWORD}),
        ),
        (
            "the owner's email in another tenant",
            json!({"tenant": app.create_tenant().await.slug, "email": tenant.owner_email, "password": PASSWORD}),
        ),
    ];

    // Act
    let mut outcomes = Vec::new();
    for (name, body) in &cases {
        let response = app
            .request(Method::POST, "/v1/auth/login", None, Some(body))
            .await;
        outcomes.push((*name, outcome(response).await));
    }

    // Assert
    let (_, first) = &outcomes[0];
    assert_eq!(
        first.status,
        StatusCode::UNAUTHORIZED,
        "a failed login is 401: {first:?}"
    );
    assert_eq!(
        first.code.as_deref(),
        Some("invalid_credentials"),
        "a failed login is `invalid_credentials`: {first:?}"
    );
    assert!(
        first.detail.is_some(),
        "the problem has a detail: {first:?}"
    );
    for (name, outcome) in &outcomes {
        assert_eq!(
            outcome, first,
            "`{name}` must fail exactly like `{}` (status, code, detail, headers)",
            outcomes[0].0
        );
    }
    let control = app.login(&tenant.slug, &tenant.owner_email, PASSWORD).await;
    assert!(
        control["access_token"].is_string(),
        "the right credentials still log in, so the failures were about the inputs"
    );
}
