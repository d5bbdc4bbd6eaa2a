//! Rate limits from the tenant's plan: the headers every answer carries, the 429 past the
//! burst, and one limit shared by two instances through Redis — with either algorithm.

use std::time::Instant;

use futures::future::join_all;
use reqwest::StatusCode;

use super::{SHARED_REDIS, set_rate};
use crate::helpers::{expect_problem, override_limits, spawn_app, spawn_app_with};

#[tokio::test]
async fn past_its_burst_a_credential_is_refused_with_429_retry_after_and_the_limit_headers() {
    // Arrange: one request a second with bursts of 3 (the tenant may make 4 times that).
    let app = spawn_app_with(&[("TENANTRY_RATE_LIMITS", "on")]).await;
    let tenant = app.create_tenant().await;
    set_rate(&app, &tenant, 1, 3).await;

    // Act: back to back, faster than one a second.
    let mut answers = Vec::new();
    for _ in 0..4 {
        answers.push(app.get("/v1/tenant", &tenant.token).await);
    }

    // Assert
    let refused = answers.pop().unwrap();
    for (n, answer) in answers.iter().enumerate() {
        assert_eq!(
            answer.status(),
            StatusCode::OK,
            "request {n} is within the burst"
        );
        assert_eq!(
            answer.headers()["ratelimit-policy"],
            "\"credential\";q=3;w=3, \"tenant\";q=12;w=3"
        );
        assert_eq!(
            answer.headers()["ratelimit"].to_str().unwrap(),
            format!("\"credential\";r={};t={}", 2 - n, n + 1),
            "request {n}"
        );
    }
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(refused.headers()["retry-after"], "1");
    assert!(
        refused.headers()["ratelimit"]
            .to_str()
            .unwrap()
            .starts_with("\"credential\";r=0;"),
        "{:?}",
        refused.headers()
    );
    let problem = expect_problem(refused, StatusCode::TOO_MANY_REQUESTS, "rate_limited").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("credential"),
        "{problem}"
    );
}

#[tokio::test]
async fn a_plan_without_a_rate_limits_nothing_and_sends_no_headers() {
    let app = spawn_app_with(&[("TENANTRY_RATE_LIMITS", "on")]).await;
    let tenant = app.create_tenant().await;
    override_limits(
        &app,
        &tenant,
        serde_json::json!({"requests_per_second": null, "request_burst": null}),
    )
    .await;

    for _ in 0..30 {
        let answer = app.get("/v1/tenant", &tenant.token).await;
        assert_eq!(answer.status(), StatusCode::OK);
        assert!(answer.headers().get("ratelimit").is_none());
    }
}

#[tokio::test]
async fn with_rate_limits_off_nothing_is_refused() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    set_rate(&app, &tenant, 1, 1).await;
    for _ in 0..5 {
        assert_eq!(
            app.get("/v1/tenant", &tenant.token).await.status(),
            StatusCode::OK
        );
    }
}

#[tokio::test]
async fn two_instances_sharing_redis_enforce_one_limit_with_either_algorithm() {
    for algorithm in ["gcra", "sliding-window"] {
        // Arrange: two servers on one database and one Redis; a tenant allowed 2 a second
        // with bursts of 6.
        let config = [
            ("TENANTRY_RATE_LIMITS", "on"),
            ("REDIS_URL", SHARED_REDIS),
            ("TENANTRY_CREDENTIAL_RATE_ALGORITHM", algorithm),
            ("TENANTRY_TENANT_RATE_ALGORITHM", algorithm),
        ];
        let (a, b) = (spawn_app_with(&config).await, spawn_app_with(&config).await);
        let tenant = a.create_tenant().await;
        set_rate(&a, &tenant, 2, 6).await;

        // Act: 40 requests at once, half to each instance.
        let started = Instant::now();
        let statuses = join_all((0..40).map(|n| {
            let app = if n % 2 == 0 { &a } else { &b };
            let token = &tenant.token;
            async move { app.get("/v1/tenant", token).await.status() }
        }))
        .await;
        let elapsed = started.elapsed().as_secs_f64();

        // Assert: across both, no more than the burst and what the rate refilled meanwhile.
        let accepted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        let refused = statuses
            .iter()
            .filter(|s| **s == StatusCode::TOO_MANY_REQUESTS)
            .count();
        assert_eq!(
            accepted + refused,
            40,
            "{algorithm}: only 200s and 429s: {statuses:?}"
        );
        let bound = 6 + (2.0 * elapsed).ceil() as usize;
        assert!(
            (6..=bound).contains(&accepted),
            "{algorithm}: {accepted} accepted across two instances in {elapsed:.2} s; the \
             shared limit allows 6 at once plus 2 a second (at most {bound})"
        );
    }
}
