//! Verified credentials are remembered, and forgotten everywhere when they change: a key
//! revoked, a session ended or a tenant suspended on one instance is refused by the next
//! request on another (through Redis), and — with no Redis to tell it — once its copy
//! expires.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::json;

use super::SHARED_REDIS;
use crate::helpers::{OPERATOR_TOKEN, get_with_api_key_header, spawn_app_with, tenant_path};

#[tokio::test]
async fn a_revocation_logout_or_suspension_on_one_instance_is_seen_by_the_next_request_on_another()
{
    // Arrange: two instances sharing Redis, remembering credentials for a minute — longer
    // than the test, so only an invalidation can make them forget.
    let config = [
        ("REDIS_URL", SHARED_REDIS),
        ("TENANTRY_CREDENTIAL_CACHE_TTL", "60s"),
    ];
    let (a, b) = (spawn_app_with(&config).await, spawn_app_with(&config).await);
    wait_until_subscribed(&a).await;
    wait_until_subscribed(&b).await;
    let tenant = a.create_tenant().await;
    let (key_id, key) = a.create_api_key(&tenant, &["users:read"]).await;
    // B verifies both credentials once and remembers them.
    for _ in 0..2 {
        assert_eq!(
            get_with_api_key_header(&b, "/v1/users", &key)
                .await
                .status(),
            StatusCode::OK
        );
        assert_eq!(
            b.get("/v1/tenant", &tenant.token).await.status(),
            StatusCode::OK
        );
    }

    // Act + assert: the key revoked on A is refused by B's next request.
    let revoked = a
        .delete(&format!("/v1/api-keys/{key_id}"), &tenant.token)
        .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        get_with_api_key_header(&b, "/v1/users", &key)
            .await
            .status(),
        StatusCode::UNAUTHORIZED,
        "a key revoked on A is refused on B at once"
    );

    // A second user's session ended on A is refused by B.
    let (_, member_token) = a.create_user(&tenant, "member").await;
    assert_eq!(
        b.get("/v1/me", &member_token).await.status(),
        StatusCode::OK
    );
    let logout = a
        .request(Method::POST, "/v1/auth/logout", Some(&member_token), None)
        .await;
    assert_eq!(logout.status(), StatusCode::NO_CONTENT);
    assert_eq!(
        b.get("/v1/me", &member_token).await.status(),
        StatusCode::UNAUTHORIZED,
        "a session ended on A is refused on B at once"
    );

    // The tenant suspended through A is refused by B.
    let suspended = a
        .patch(
            &tenant_path(tenant.id),
            OPERATOR_TOKEN,
            json!({"status": "suspended"}),
        )
        .await;
    assert_eq!(suspended.status(), StatusCode::OK);
    assert_eq!(
        b.get("/v1/tenant", &tenant.token).await.status(),
        StatusCode::FORBIDDEN,
        "a tenant suspended on A is refused on B at once"
    );
}

#[tokio::test]
async fn without_redis_another_instance_sees_a_revocation_once_its_copy_expires() {
    // Arrange: two instances with no Redis between them, remembering credentials for 1 s.
    let config = [("TENANTRY_CREDENTIAL_CACHE_TTL", "1s")];
    let (a, b) = (spawn_app_with(&config).await, spawn_app_with(&config).await);
    let tenant = a.create_tenant().await;
    let (key_id, key) = a.create_api_key(&tenant, &["users:read"]).await;
    assert_eq!(
        get_with_api_key_header(&b, "/v1/users", &key)
            .await
            .status(),
        StatusCode::OK
    );

    // Act
    let revoked_at = Instant::now();
    let revoked = a
        .delete(&format!("/v1/api-keys/{key_id}"), &tenant.token)
        .await;
    assert_eq!(revoked.status(), StatusCode::NO_CONTENT);
    let on_a = get_with_api_key_header(&a, "/v1/users", &key)
        .await
        .status();
    let mut on_b = Vec::new();
    while revoked_at.elapsed() < Duration::from_secs(3) {
        let status = get_with_api_key_header(&b, "/v1/users", &key)
            .await
            .status();
        on_b.push((revoked_at.elapsed(), status));
        if status == StatusCode::UNAUTHORIZED {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Assert: A (which made the change) refuses at once; B while its copy lives (the
    // cache is really in use), and never past its time-to-live.
    assert_eq!(on_a, StatusCode::UNAUTHORIZED);
    assert_eq!(
        on_b.first().map(|(_, status)| *status),
        Some(StatusCode::OK),
        "B still trusts its copy right after the revocation: {on_b:?}"
    );
    let (refused_after, last) = *on_b.last().unwrap();
    assert_eq!(
        last,
        StatusCode::UNAUTHORIZED,
        "B refuses in the end: {on_b:?}"
    );
    assert!(
        refused_after <= Duration::from_millis(1500),
        "B refuses within the 1 s time-to-live (plus polling): {refused_after:?}"
    );
}

/// Waits until `app` hears the other instances' invalidations.
async fn wait_until_subscribed(app: &crate::helpers::TestApp) {
    for _ in 0..100 {
        if super::readiness(app).await["redis"]["invalidations_subscribed"] == true {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the instance never subscribed to invalidations");
}
