//! The tenant's own profile (`/v1/tenant`): its ETag and `If-None-Match`, a rename guarded
//! by `If-Match`, and a tenant cannot change its own plan or status.

use reqwest::{
    Method, StatusCode,
    header::{IF_MATCH, IF_NONE_MATCH},
};
use serde_json::json;

use crate::helpers::{
    OPERATOR_TOKEN, etag_of, expect_json, expect_problem, send, spawn_app, tenant_path,
};

#[tokio::test]
async fn the_tenant_profile_has_an_etag_and_if_none_match_gives_304() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let first = app.get("/v1/tenant", &tenant.token).await;
    let etag = etag_of(&first);
    let profile = expect_json(first, StatusCode::OK).await;
    assert_eq!(
        profile["id"],
        tenant.id.to_string(),
        "the caller's own tenant: {profile}"
    );

    // Act
    let auth = format!("Bearer {}", tenant.token);
    let not_modified = send(
        &app,
        Method::GET,
        "/v1/tenant",
        &[("authorization", &auth), ("if-none-match", &etag)],
        None,
    )
    .await;
    let stale = send(
        &app,
        Method::GET,
        "/v1/tenant",
        &[("authorization", &auth), ("if-none-match", "\"999999\"")],
        None,
    )
    .await;

    // Assert
    assert_eq!(
        not_modified.status(),
        StatusCode::NOT_MODIFIED,
        "If-None-Match with the current ETag"
    );
    assert_eq!(etag_of(&not_modified), etag, "the 304 repeats the ETag");
    assert!(
        not_modified.bytes().await.unwrap().is_empty(),
        "a 304 has no body"
    );
    assert_eq!(
        stale.status(),
        StatusCode::OK,
        "If-None-Match with another version gets the body"
    );
}

#[tokio::test]
async fn a_rename_with_a_stale_if_match_is_refused_and_changes_nothing() {
    // Arrange: read, then let the version move on with a first rename.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let stale_etag = etag_of(&app.get("/v1/tenant", &tenant.token).await);
    let auth = format!("Bearer {}", tenant.token);
    let first = send(
        &app,
        Method::PATCH,
        "/v1/tenant",
        &[("authorization", &auth), (IF_MATCH.as_str(), &stale_etag)],
        Some(json!({"name": "First"})),
    )
    .await;
    expect_json(first, StatusCode::OK).await;

    // Act
    let second = send(
        &app,
        Method::PATCH,
        "/v1/tenant",
        &[("authorization", &auth), (IF_MATCH.as_str(), &stale_etag)],
        Some(json!({"name": "Second"})),
    )
    .await;

    // Assert
    expect_problem(
        second,
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    )
    .await;
    let profile = expect_json(app.get("/v1/tenant", &tenant.token).await, StatusCode::OK).await;
    assert_eq!(
        profile["name"], "First",
        "the refused rename changed nothing: {profile}"
    );
}

#[tokio::test]
async fn a_rename_with_the_current_etag_succeeds_and_moves_the_etag() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let etag = etag_of(&app.get("/v1/tenant", &tenant.token).await);
    let auth = format!("Bearer {}", tenant.token);

    // Act
    let renamed = send(
        &app,
        Method::PATCH,
        "/v1/tenant",
        &[("authorization", &auth), (IF_MATCH.as_str(), &etag)],
        Some(json!({"name": "  Renamed Co  "})),
    )
    .await;

    // Assert
    let new_etag = etag_of(&renamed);
    let body = expect_json(renamed, StatusCode::OK).await;
    assert_eq!(
        body["name"], "Renamed Co",
        "the name is trimmed and stored: {body}"
    );
    assert_ne!(new_etag, etag, "a change moves the ETag");
    let reread = app.get("/v1/tenant", &tenant.token).await;
    assert_eq!(
        etag_of(&reread),
        new_etag,
        "a fresh read carries the new ETag"
    );
    let operator_view = expect_json(
        app.get(&tenant_path(tenant.id), OPERATOR_TOKEN).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        operator_view["name"], "Renamed Co",
        "the operator sees the new name: {operator_view}"
    );
    let old_tag_again = send(
        &app,
        Method::GET,
        "/v1/tenant",
        &[("authorization", &auth), (IF_NONE_MATCH.as_str(), &etag)],
        None,
    )
    .await;
    assert_eq!(
        old_tag_again.status(),
        StatusCode::OK,
        "the old ETag no longer matches"
    );
}

#[tokio::test]
async fn a_tenant_cannot_change_its_own_plan_or_status() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;

    for (field, body) in [
        ("plan", json!({"plan": "enterprise"})),
        ("status", json!({"status": "active"})),
        ("plan", json!({"name": "X", "plan": "pro"})),
    ] {
        // Act
        let response = app.patch("/v1/tenant", &tenant.token, body.clone()).await;

        // Assert
        let problem = expect_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        let mentioned = problem["errors"].as_array().into_iter().flatten().any(|e| {
            e["field"] == field || e["message"].as_str().is_some_and(|m| m.contains(field))
        });
        assert!(
            mentioned,
            "the refusal of {body} names `{field}`: {problem}"
        );
    }
    let profile = expect_json(
        app.get(&tenant_path(tenant.id), OPERATOR_TOKEN).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&profile["plan"], &profile["status"], &profile["name"]),
        (&json!("free"), &json!("active"), &json!("Test tenant")),
        "nothing changed: {profile}"
    );
}
