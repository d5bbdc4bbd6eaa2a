//! An API key's lifetime: refused on the next request once revoked or expired, and never
//! created already expired.

use reqwest::StatusCode;
use serde_json::json;

use super::key_uuid;
use crate::helpers::{
    expect_json, expect_problem, get_with_api_key_header, outcome, spawn_app, spawn_app_with,
};

#[tokio::test]
async fn revoked_api_key_is_refused_on_next_request() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (key_id, key) = app.create_api_key(&tenant, &["tenant:read"]).await;
    assert_eq!(
        app.get("/v1/tenant", &key).await.status(),
        StatusCode::OK,
        "the key works before revocation"
    );

    // Act
    let revoke = app
        .delete(&format!("/v1/api-keys/{key_id}"), &tenant.token)
        .await;
    assert_eq!(
        revoke.status(),
        StatusCode::NO_CONTENT,
        "revocation succeeds"
    );

    // Assert
    let as_bearer = outcome(app.get("/v1/tenant", &key).await).await;
    assert!(
        as_bearer.is_unauthenticated(),
        "a revoked key used as Bearer: expected 401 `unauthenticated`, got {as_bearer:?}"
    );
    let as_header = outcome(get_with_api_key_header(&app, "/v1/tenant", &key).await).await;
    assert!(
        as_header.is_unauthenticated(),
        "a revoked key used as X-API-Key: expected 401 `unauthenticated`, got {as_header:?}"
    );
    let listed = expect_json(
        app.get(&format!("/v1/api-keys/{key_id}"), &tenant.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(
        listed["revoked_at"].is_string(),
        "the revoked key is listed with revoked_at: {listed}"
    );
}

#[tokio::test]
async fn expired_api_key_is_refused() {
    // Arrange
    // The change is made behind the server's back (SQL, or the command line with no Redis
    // to tell the server): seen at once only by a server that does not cache credentials.
    let app = spawn_app_with(&[("TENANTRY_CREDENTIAL_CACHE_TTL", "0s")]).await;
    let tenant = app.create_tenant().await;
    let in_an_hour = time::OffsetDateTime::now_utc() + time::Duration::hours(1);
    let created = expect_json(
        app.post(
            "/v1/api-keys",
            &tenant.token,
            json!({
                "name": "short-lived",
                "scopes": ["tenant:read"],
                "expires_at": in_an_hour.format(&time::format_description::well_known::Rfc3339).unwrap(),
            }),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let key_id = created["id"].as_str().unwrap().to_owned();
    let key = created["key"].as_str().unwrap().to_owned();
    assert_eq!(
        app.get("/v1/tenant", &key).await.status(),
        StatusCode::OK,
        "the key works before it expires"
    );

    // Act: let it expire (the API refuses a past expiry, so move it in the database)
    let mut db = app.owner_connection().await;
    let updated =
        sqlx::query("update api_keys set expires_at = now() - interval '1 minute' where id = $1")
            .bind(key_uuid(&key_id))
            .execute(&mut db)
            .await
            .expect("the expiry moves into the past");
    assert_eq!(
        updated.rows_affected(),
        1,
        "exactly the key's row is updated"
    );

    // Assert
    let outcome = outcome(app.get("/v1/tenant", &key).await).await;
    assert!(
        outcome.is_unauthenticated(),
        "an expired key: expected 401 `unauthenticated`, got {outcome:?}"
    );
}

#[tokio::test]
async fn an_api_key_cannot_be_created_already_expired() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let a_minute_ago = time::OffsetDateTime::now_utc() - time::Duration::minutes(1);

    // Act
    let response = app
        .post(
            "/v1/api-keys",
            &tenant.token,
            json!({
                "name": "born expired",
                "scopes": ["tenant:read"],
                "expires_at": a_minute_ago.format(&time::format_description::well_known::Rfc3339).unwrap(),
            }),
        )
        .await;

    // Assert
    let problem =
        expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY, "expiry_in_past").await;
    assert_eq!(
        problem["errors"][0]["field"], "expires_at",
        "the failure names expires_at: {problem}"
    );
}
