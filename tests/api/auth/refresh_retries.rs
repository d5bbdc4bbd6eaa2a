//! A client whose refresh answer was lost retries with the same refresh token: within the
//! reuse interval, and before the new refresh token is used, it gets the very same pair
//! again and the session lives on. Later, or after the new token was used, the retry is
//! reuse and ends the session.

use reqwest::StatusCode;

use super::{Pair, expect_unauthenticated, login, refresh};
use crate::helpers::{TestApp, expect_json, spawn_app, spawn_app_with};

async fn refreshed(app: &TestApp, refresh_token: &str) -> Pair {
    Pair::from_json(&expect_json(refresh(app, refresh_token).await, StatusCode::OK).await)
}

#[tokio::test]
async fn a_retried_refresh_within_the_reuse_interval_gets_the_same_pair() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let first = login(&app, &tenant.slug, &tenant.owner_email).await;
    let answered = refreshed(&app, &first.refresh).await;

    // Act: the answer was lost; the client tries again with the same token.
    let retried = refreshed(&app, &first.refresh).await;

    // Assert: the same pair, byte for byte, and a live session.
    assert_eq!(retried.refresh, answered.refresh, "the same refresh token");
    assert_eq!(retried.access, answered.access, "the same access token");
    assert_eq!(
        app.get("/v1/me", &retried.access).await.status(),
        StatusCode::OK,
        "the pair works"
    );
    let next = refreshed(&app, &retried.refresh).await;
    assert_eq!(
        app.get("/v1/me", &next.access).await.status(),
        StatusCode::OK,
        "the session goes on"
    );
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_get_one_pair() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    for round in 0..5 {
        let pair = login(&app, &tenant.slug, &tenant.owner_email).await;

        let (a, b) = futures::join!(refresh(&app, &pair.refresh), refresh(&app, &pair.refresh));

        let a = Pair::from_json(&expect_json(a, StatusCode::OK).await);
        let b = Pair::from_json(&expect_json(b, StatusCode::OK).await);
        assert_eq!(
            (&a.access, &a.refresh),
            (&b.access, &b.refresh),
            "round {round}: both exchanges of one token answer one pair"
        );
        assert_eq!(app.get("/v1/me", &a.access).await.status(), StatusCode::OK);
    }
}

#[tokio::test]
async fn a_retry_after_the_new_refresh_token_was_used_ends_the_session() {
    // Arrange: r0 → r1, and r1 → r2: the client has moved on.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let first = login(&app, &tenant.slug, &tenant.owner_email).await;
    let second = refreshed(&app, &first.refresh).await;
    let third = refreshed(&app, &second.refresh).await;

    // Act: r0 again, well within the interval.
    let replay = refresh(&app, &first.refresh).await;

    // Assert
    expect_unauthenticated(replay, "r0 after its successor was used").await;
    expect_unauthenticated(
        app.get("/v1/me", &third.access).await,
        "the newest access token of the revoked session",
    )
    .await;
}

#[tokio::test]
async fn a_retry_after_the_reuse_interval_ends_the_session() {
    // Arrange: an exchange that happened longer ago than the interval.
    let app = spawn_app_with(&[("REFRESH_TOKEN_REUSE_INTERVAL", "30s")]).await;
    let tenant = app.create_tenant().await;
    let first = login(&app, &tenant.slug, &tenant.owner_email).await;
    let second = refreshed(&app, &first.refresh).await;
    sqlx::query(
        "update refresh_tokens set used_at = used_at - interval '31 seconds'
         where tenant_id = $1 and used_at is not null",
    )
    .bind(tenant.id.as_uuid())
    .execute(&mut app.owner_connection().await)
    .await
    .unwrap();

    // Act
    let late = refresh(&app, &first.refresh).await;

    // Assert
    expect_unauthenticated(late, "r0 retried after the reuse interval").await;
    expect_unauthenticated(
        app.get("/v1/me", &second.access).await,
        "the session is revoked",
    )
    .await;
}
