//! Creating tenants: each with its owner, a generated owner password when none is given,
//! a taken slug a conflict, and invalid fields refused naming every one of them at once.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    OPERATOR_TOKEN, PASSWORD, TENANTS, error_fields, expect_json, expect_problem, spawn_app,
    tenant_path, unique,
};

#[tokio::test]
async fn an_operator_creates_a_tenant_with_its_owner() {
    // Arrange
    let app = spawn_app().await;
    let slug = unique("acme");
    let owner_email = format!("owner@{slug}.test");

    // Act
    let response = app
        .post(TENANTS, OPERATOR_TOKEN, json!({"slug": slug, "name": "Acme Corp", "owner_email": owner_email, "owner_password": PASSWORD}))
        .await;

    // Assert
    let created = expect_json(response, StatusCode::CREATED).await;
    let tenant = &created["tenant"];
    assert!(
        tenant["id"]
            .as_str()
            .is_some_and(|id| id.parse::<Uuid>().is_ok()),
        "tenant.id is a UUID: {created}"
    );
    assert_eq!(tenant["slug"], slug, "tenant.slug: {created}");
    assert_eq!(tenant["name"], "Acme Corp", "tenant.name: {created}");
    assert_eq!(
        tenant["plan"], "free",
        "the plan defaults to free: {created}"
    );
    assert_eq!(
        tenant["status"], "active",
        "a new tenant is active: {created}"
    );
    assert_eq!(
        tenant["version"], 1,
        "a new tenant is at version 1: {created}"
    );
    assert!(
        tenant["created_at"].is_string() && tenant["updated_at"].is_string(),
        "timestamps present: {created}"
    );
    let owner = &created["owner"];
    assert!(
        owner["id"]
            .as_str()
            .is_some_and(|id| id.parse::<Uuid>().is_ok()),
        "owner.id is a UUID: {created}"
    );
    assert_eq!(owner["email"], owner_email, "owner.email: {created}");
    assert_eq!(owner["role"], "owner", "owner.role: {created}");
    assert!(
        created.get("owner_password").is_none(),
        "a chosen password is never echoed back: {created}"
    );
    assert!(
        owner.get("password_hash").is_none(),
        "no hash leaks: {created}"
    );
    app.login(&slug, &owner_email, PASSWORD).await;
}

#[tokio::test]
async fn omitting_the_owner_password_returns_a_generated_one_that_logs_in() {
    // Arrange
    let app = spawn_app().await;
    let slug = unique("gen");
    let owner_email = format!("owner@{slug}.test");

    // Act
    let response = app
        .post(TENANTS, OPERATOR_TOKEN, json!({"slug": slug, "name": "Generated", "plan": "enterprise", "owner_email": owner_email}))
        .await;

    // Assert
    let created = expect_json(response, StatusCode::CREATED).await;
    assert_eq!(
        created["tenant"]["plan"], "enterprise",
        "the requested plan is kept: {created}"
    );
    let password = created["owner_password"]
        .as_str()
        .expect("a generated owner_password is returned")
        .to_owned();
    assert!(
        password.len() >= 12,
        "the generated password is at least 12 characters, got {}",
        password.len()
    );
    let tokens = app.login(&slug, &owner_email, &password).await;
    assert!(
        tokens["access_token"].is_string(),
        "the generated password logs in: {tokens}"
    );
    let fetched = expect_json(
        app.get(
            &tenant_path(created["tenant"]["id"].as_str().unwrap()),
            OPERATOR_TOKEN,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(
        fetched.get("owner_password").is_none(),
        "the password is shown only once, at creation: {fetched}"
    );
}

#[tokio::test]
async fn a_taken_slug_is_a_conflict() {
    // Arrange
    let app = spawn_app().await;
    let existing = app.create_tenant().await;

    // Act
    let response = app
        .post(
            TENANTS,
            OPERATOR_TOKEN,
            json!({"slug": existing.slug, "name": "Impostor", "owner_email": "someone@else.test", "owner_password": PASSWORD}),
        )
        .await;

    // Assert
    expect_problem(response, StatusCode::CONFLICT, "slug_taken").await;
    let original = expect_json(
        app.get(&tenant_path(existing.id), OPERATOR_TOKEN).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        original["name"], "Test tenant",
        "the existing tenant is untouched: {original}"
    );
}

#[tokio::test]
async fn an_invalid_slug_email_or_password_is_refused_naming_the_field() {
    // Arrange
    let app = spawn_app().await;
    let valid = |slug: &str| json!({"slug": slug, "name": "Bad", "owner_email": "owner@bad.test", "owner_password": PASSWORD});
    let mut cases: Vec<(String, Value, &str)> = [
        "ab",
        "-acme",
        "acme-",
        "Acme",
        "ac me",
        "acme_1",
        "",
        &"x".repeat(64),
        "ünï",
    ]
    .into_iter()
    .map(|slug| (format!("slug {slug:?}"), valid(slug), "slug"))
    .collect();
    let mut bad_email = valid(&unique("ok"));
    bad_email["owner_email"] = json!("not-an-email");
    cases.push((
        "owner_email not an email".to_owned(),
        bad_email,
        "owner_email",
    ));
    let mut short_password = valid(&unique("ok"));
    short_password["owner_password"] = json!("short");
    cases.push((
        "owner_password too short".to_owned(),
        short_password,
        "owner_password",
    ));
    let mut blank_name = valid(&unique("ok"));
    blank_name["name"] = json!("   ");
    cases.push(("blank name".to_owned(), blank_name, "name"));

    for (what, body, field) in cases {
        // Act
        let response = app.post(TENANTS, OPERATOR_TOKEN, body).await;

        // Assert
        let problem = expect_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(
            error_fields(&problem),
            vec![field],
            "{what}: expected one error for `{field}`: {problem}"
        );
    }
}

#[tokio::test]
async fn every_invalid_field_is_named_in_one_refusal() {
    // Arrange
    let app = spawn_app().await;
    let body =
        json!({"slug": "-Bad", "name": " ", "owner_email": "nope", "owner_password": "short"});

    // Act
    let response = app.post(TENANTS, OPERATOR_TOKEN, body).await;

    // Assert
    let problem = expect_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(
        error_fields(&problem),
        ["name", "owner_email", "owner_password", "slug"],
        "one refusal names all four fields (in order), so a client fixes them in one go: {problem}"
    );
}
