//! Login sessions: token pairs, refresh-token rotation and reuse detection, concurrent
//! refreshes, logout, and user changes (deactivation, role) reaching live tokens at once.

use reqwest::{Method, Response, StatusCode};
use serde_json::{Value, json};
use tenantry::access::Scope;

use super::{Pair, expect_unauthenticated, login, refresh};
use crate::helpers::{
    PASSWORD, TestApp, TestTenant, expect_json, expect_problem, spawn_app, spawn_app_with, unique,
};

// ---------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------

async fn logout(app: &TestApp, bearer: &str) -> Response {
    app.request(Method::POST, "/v1/auth/logout", Some(bearer), None)
        .await
}

/// Creates a user with `role` and logs them in; returns (user id, email, token pair).
async fn user_with_session(
    app: &TestApp,
    tenant: &TestTenant,
    role: &str,
) -> (String, String, Pair) {
    let email = format!("{}@{}.test", unique(role), tenant.slug);
    let created = expect_json(
        app.post(
            "/v1/users",
            &tenant.token,
            json!({"email": email, "role": role, "password": PASSWORD}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let pair = login(app, &tenant.slug, &email).await;
    (created["id"].as_str().unwrap().to_owned(), email, pair)
}

// ---------------------------------------------------------------------------------------
// Login and refresh
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn login_returns_a_working_token_pair() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;

    // Act
    let tokens = app.login(&tenant.slug, &tenant.owner_email, PASSWORD).await;

    // Assert
    assert_eq!(
        tokens["token_type"], "Bearer",
        "the token type is Bearer: {tokens}"
    );
    assert!(
        tokens["expires_in"].as_u64().is_some_and(|s| s > 0),
        "expires_in is a positive number of seconds: {tokens}"
    );
    let pair = Pair::from_json(&tokens);
    assert!(
        pair.refresh.starts_with("tntyrt_"),
        "refresh tokens carry the tntyrt_ prefix: {}",
        pair.refresh
    );
    assert_eq!(
        pair.access.split('.').count(),
        3,
        "the access token is a JWT: {}",
        pair.access
    );
    let me = expect_json(app.get("/v1/me", &pair.access).await, StatusCode::OK).await;
    assert_eq!(me["actor_type"], "user", "the caller is a user: {me}");
    assert_eq!(
        me["actor_id"],
        tenant.owner_id.as_str(),
        "the caller is the owner: {me}"
    );
    assert_eq!(
        me["user"]["email"],
        tenant.owner_email.as_str(),
        "/v1/me shows the user: {me}"
    );
    assert_eq!(
        me["tenant"]["id"],
        tenant.id.to_string(),
        "the token is for the tenant logged into: {me}"
    );
    let every_scope: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
    assert_eq!(
        me["scopes"],
        json!(every_scope),
        "an owner holds every scope: {me}"
    );
    let refreshed = refresh(&app, &pair.refresh).await;
    assert_eq!(
        refreshed.status(),
        StatusCode::OK,
        "the refresh token works"
    );
}

#[tokio::test]
async fn the_tenant_may_be_named_by_id_at_login() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;

    // Act
    let pair = login(&app, &tenant.id.to_string(), &tenant.owner_email).await;

    // Assert
    let me = expect_json(app.get("/v1/me", &pair.access).await, StatusCode::OK).await;
    assert_eq!(
        me["tenant"]["slug"],
        tenant.slug.as_str(),
        "login by tenant id reaches the same tenant: {me}"
    );
}

#[tokio::test]
async fn refresh_rotates_the_refresh_token_and_refuses_the_old_one() {
    // Arrange: no reuse window (within one, a retry gets its pair again: refresh_retries)
    let app = spawn_app_with(&[("REFRESH_TOKEN_REUSE_INTERVAL", "0s")]).await;
    let tenant = app.create_tenant().await;
    let first = login(&app, &tenant.slug, &tenant.owner_email).await;

    // Act
    let rotated =
        Pair::from_json(&expect_json(refresh(&app, &first.refresh).await, StatusCode::OK).await);

    // Assert
    assert_ne!(
        rotated.refresh, first.refresh,
        "refresh issues a new refresh token"
    );
    assert_ne!(
        rotated.access, first.access,
        "refresh issues a new access token"
    );
    let me = expect_json(app.get("/v1/me", &rotated.access).await, StatusCode::OK).await;
    assert_eq!(
        me["actor_id"],
        tenant.owner_id.as_str(),
        "the new access token is the same user's: {me}"
    );
    expect_unauthenticated(
        refresh(&app, &first.refresh).await,
        "the refresh token that was already exchanged",
    )
    .await;
}

#[tokio::test]
async fn reusing_a_refresh_token_revokes_the_whole_family() {
    // Arrange: login → r1; r1 → r2; r2 → r3 (the legitimate client is at r3 / a3)
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let first = login(&app, &tenant.slug, &tenant.owner_email).await;
    let second =
        Pair::from_json(&expect_json(refresh(&app, &first.refresh).await, StatusCode::OK).await);
    let third =
        Pair::from_json(&expect_json(refresh(&app, &second.refresh).await, StatusCode::OK).await);
    assert_eq!(
        app.get("/v1/me", &third.access).await.status(),
        StatusCode::OK,
        "the newest access token works before the reuse"
    );
    let unrelated = login(&app, &tenant.slug, &tenant.owner_email).await;

    // Act: a thief replays r1
    let replay = refresh(&app, &first.refresh).await;

    // Assert
    expect_unauthenticated(replay, "the replayed refresh token").await;
    expect_unauthenticated(
        refresh(&app, &third.refresh).await,
        "the newest refresh token of the reused family",
    )
    .await;
    for (name, access) in [
        ("the access token from the latest refresh", &third.access),
        ("the access token from the first refresh", &second.access),
        ("the access token from the login", &first.access),
    ] {
        expect_unauthenticated(app.get("/v1/me", access).await, name).await;
    }
    assert_eq!(
        app.get("/v1/me", &unrelated.access).await.status(),
        StatusCode::OK,
        "another session of the same user is not affected"
    );
    let mut db = app.owner_connection().await;
    let reasons: Vec<Option<String>> = sqlx::query_scalar(
        "select revoked_reason from sessions where tenant_id = $1 and revoked_at is not null",
    )
    .bind(tenant.id.as_uuid())
    .fetch_all(&mut db)
    .await
    .expect("sessions are readable by the database owner");
    assert_eq!(
        reasons,
        vec![Some("refresh_token_reuse".to_owned())],
        "exactly one session is revoked, for refresh-token reuse"
    );
    let audited: Vec<String> = sqlx::query_scalar(
        "select action from audit_events where tenant_id = $1 and action like 'auth.refresh%'",
    )
    .bind(tenant.id.as_uuid())
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(
        audited,
        ["auth.refresh_token_reused"],
        "the reuse is an audit event"
    );
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_let_at_most_one_succeed() {
    // Repeated, since a race that loses only sometimes must still never double-spend.
    // No reuse window: within one the loser gets the winner's pair (refresh_retries).
    let app = spawn_app_with(&[("REFRESH_TOKEN_REUSE_INTERVAL", "0s")]).await;
    let tenant = app.create_tenant().await;
    for round in 0..5 {
        // Arrange
        let pair = login(&app, &tenant.slug, &tenant.owner_email).await;

        // Act
        let (a, b) = futures::join!(refresh(&app, &pair.refresh), refresh(&app, &pair.refresh));

        // Assert
        let mut winners = Vec::new();
        for response in [a, b] {
            let status = response.status();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            match status {
                StatusCode::OK => winners.push(Pair::from_json(&body)),
                StatusCode::UNAUTHORIZED => assert_eq!(
                    body["code"], "unauthenticated",
                    "round {round}: the losing refresh is `unauthenticated`: {body}"
                ),
                other => panic!("round {round}: expected 200 or 401, got {other}: {body}"),
            }
        }
        assert!(
            winners.len() <= 1,
            "round {round}: one refresh token was exchanged {} times",
            winners.len()
        );
        // The loser presented an already-used token: reuse, so the family ends — including
        // whatever the winner received.
        for winner in &winners {
            expect_unauthenticated(
                refresh(&app, &winner.refresh).await,
                &format!("round {round}: the winner's refresh token after a concurrent reuse"),
            )
            .await;
        }
        expect_unauthenticated(
            refresh(&app, &pair.refresh).await,
            &format!("round {round}: the contested refresh token afterwards"),
        )
        .await;
    }
}

#[tokio::test]
async fn malformed_refresh_tokens_are_unauthenticated() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, api_key) = app.create_api_key(&tenant, &["tenant:read"]).await;
    let cases = [
        ("garbage", "not-a-token".to_owned()),
        ("prefix only", "tntyrt_".to_owned()),
        ("an API key", api_key.clone()),
        (
            "an API key relabelled as a refresh token",
            api_key.replacen("tnty_", "tntyrt_", 1),
        ),
        ("a refresh token with its last character changed", {
            let mut chars: Vec<char> = tenant.refresh_token.chars().collect();
            let last = chars.last_mut().unwrap();
            *last = if *last == 'A' { 'Q' } else { 'A' };
            chars.into_iter().collect()
        }),
    ];

    for (name, token) in &cases {
        // Act
        let response = refresh(&app, token).await;

        // Assert
        expect_unauthenticated(response, name).await;
    }
    assert_eq!(
        refresh(&app, &tenant.refresh_token).await.status(),
        StatusCode::OK,
        "the genuine refresh token still works: none of the above counted as its reuse"
    );
}

// ---------------------------------------------------------------------------------------
// Logout
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn logout_ends_the_session_for_both_tokens() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let pair = login(&app, &tenant.slug, &tenant.owner_email).await;
    assert_eq!(
        app.get("/v1/me", &pair.access).await.status(),
        StatusCode::OK,
        "the session works"
    );

    // Act
    let response = logout(&app, &pair.access).await;

    // Assert
    assert_eq!(
        response.status(),
        StatusCode::NO_CONTENT,
        "logout answers 204"
    );
    expect_unauthenticated(
        app.get("/v1/me", &pair.access).await,
        "the logged-out access token",
    )
    .await;
    expect_unauthenticated(
        refresh(&app, &pair.refresh).await,
        "the logged-out refresh token",
    )
    .await;
    expect_unauthenticated(logout(&app, &pair.access).await, "logging out twice").await;
    assert_eq!(
        app.get("/v1/me", &tenant.token).await.status(),
        StatusCode::OK,
        "the owner's other session is not affected"
    );
}

#[tokio::test]
async fn logout_without_a_session_is_refused_as_no_session() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, api_key) = app.create_api_key(&tenant, &["tenant:read"]).await;
    let service_token = app.mint_token(tenant.id, &[Scope::TenantRead]).await;

    for (name, credential) in [
        ("API key", &api_key),
        ("operator-minted token", &service_token),
    ] {
        // Act
        let response = logout(&app, credential).await;

        // Assert
        let problem = expect_problem(response, StatusCode::BAD_REQUEST, "no_session").await;
        assert!(
            problem["detail"].is_string(),
            "{name}: the problem explains itself: {problem}"
        );
        assert_eq!(
            app.get("/v1/me", credential).await.status(),
            StatusCode::OK,
            "{name}: still works after the refused logout"
        );
    }
    expect_unauthenticated(
        app.request(Method::POST, "/v1/auth/logout", None, None)
            .await,
        "logout without any credential",
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// User changes reach live tokens
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn deactivating_a_user_ends_their_existing_tokens_at_once() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (user_id, email, pair) = user_with_session(&app, &tenant, "admin").await;
    assert_eq!(
        app.get("/v1/me", &pair.access).await.status(),
        StatusCode::OK,
        "the admin's token works"
    );

    // Act
    let response = app
        .delete(&format!("/v1/users/{user_id}"), &tenant.token)
        .await;
    assert_eq!(
        response.status(),
        StatusCode::NO_CONTENT,
        "deactivation answers 204"
    );

    // Assert
    expect_unauthenticated(
        app.get("/v1/me", &pair.access).await,
        "the deactivated user's access token",
    )
    .await;
    expect_unauthenticated(
        app.get("/v1/users", &pair.access).await,
        "the deactivated user's access token on /v1/users",
    )
    .await;
    expect_unauthenticated(
        refresh(&app, &pair.refresh).await,
        "the deactivated user's refresh token",
    )
    .await;
    let login = app
        .request(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(&json!({"tenant": tenant.slug, "email": email, "password": PASSWORD})),
        )
        .await;
    expect_problem(login, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
}

#[tokio::test]
async fn reactivating_a_user_does_not_revive_their_old_session() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (user_id, email, pair) = user_with_session(&app, &tenant, "member").await;
    let path = format!("/v1/users/{user_id}");
    assert_eq!(
        app.delete(&path, &tenant.token).await.status(),
        StatusCode::NO_CONTENT,
        "deactivated"
    );

    // Act
    let reactivated = app
        .patch(&path, &tenant.token, json!({"status": "active"}))
        .await;
    assert_eq!(reactivated.status(), StatusCode::OK, "reactivated");

    // Assert
    expect_unauthenticated(
        app.get("/v1/me", &pair.access).await,
        "an access token from before the deactivation",
    )
    .await;
    expect_unauthenticated(
        refresh(&app, &pair.refresh).await,
        "a refresh token from before the deactivation",
    )
    .await;
    let fresh = login(&app, &tenant.slug, &email).await;
    assert_eq!(
        app.get("/v1/me", &fresh.access).await.status(),
        StatusCode::OK,
        "a new login works"
    );
}

#[tokio::test]
async fn a_demotion_takes_effect_on_existing_tokens_at_once() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (user_id, _, pair) = user_with_session(&app, &tenant, "admin").await;
    assert_eq!(
        app.get("/v1/users", &pair.access).await.status(),
        StatusCode::OK,
        "as an admin, the user may list users"
    );

    // Act
    let demoted = expect_json(
        app.patch(
            &format!("/v1/users/{user_id}"),
            &tenant.token,
            json!({"role": "viewer"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(demoted["role"], "viewer", "the role changed: {demoted}");

    // Assert
    expect_problem(
        app.get("/v1/users", &pair.access).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    expect_problem(
        app.post(
            "/v1/api-keys",
            &pair.access,
            json!({"name": "k", "scopes": ["tenant:read"]}),
        )
        .await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    let me = expect_json(app.get("/v1/me", &pair.access).await, StatusCode::OK).await;
    assert_eq!(
        me["scopes"],
        json!([
            "tenant:read",
            "catalog:read",
            "orders:read",
            "realtime:subscribe"
        ]),
        "the existing token now holds only the viewer's scopes: {me}"
    );
    let refreshed =
        Pair::from_json(&expect_json(refresh(&app, &pair.refresh).await, StatusCode::OK).await);
    expect_problem(
        app.get("/v1/users", &refreshed.access).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
}

#[tokio::test]
async fn a_promotion_needs_a_new_token_to_take_effect() {
    // A token never holds more than it was issued with: the role only narrows it.
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (user_id, _, pair) = user_with_session(&app, &tenant, "viewer").await;
    expect_problem(
        app.get("/v1/users", &pair.access).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;

    // Act
    let promoted = app
        .patch(
            &format!("/v1/users/{user_id}"),
            &tenant.token,
            json!({"role": "admin"}),
        )
        .await;
    assert_eq!(
        promoted.status(),
        StatusCode::OK,
        "the owner promotes the viewer to admin"
    );

    // Assert
    expect_problem(
        app.get("/v1/users", &pair.access).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    let refreshed =
        Pair::from_json(&expect_json(refresh(&app, &pair.refresh).await, StatusCode::OK).await);
    assert_eq!(
        app.get("/v1/users", &refreshed.access).await.status(),
        StatusCode::OK,
        "a token issued after the promotion carries the admin's scopes"
    );
}
