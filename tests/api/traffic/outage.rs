//! Redis dying and coming back under load: no request fails for it. While it is down the
//! circuit breaker is open (readiness says so, and stays ready), limits are counted in
//! process and still refuse with 429; once it is back, they are counted in Redis again.

use std::time::Duration;

use reqwest::StatusCode;

use super::{ThrowawayRedis, readiness, set_rate};
use crate::helpers::{TestApp, TestTenant, spawn_app_with};

#[tokio::test]
async fn redis_stopped_and_restarted_mid_run_costs_no_request_a_5xx() {
    // Arrange: a server on a Redis of the test's own; a busy tenant with room to spare and
    // a tight one (bursts of 3, one a second).
    let mut redis = ThrowawayRedis::start();
    let url = redis.url();
    let app = spawn_app_with(&[("TENANTRY_RATE_LIMITS", "on"), ("REDIS_URL", &url)]).await;
    let busy = app.create_tenant().await;
    // A slow rate with a deep burst: never refused here, and each request moves the
    // tenant's stored instant 25 ms ahead, so its key outlives the phase in Redis.
    set_rate(&app, &busy, 10, 10_000).await;
    let tight = app.create_tenant().await;
    set_rate(&app, &tight, 1, 3).await;

    // Act + assert, phase by phase.
    let up = load(&app, &busy, 50).await;
    assert_eq!(readiness(&app).await["redis"]["breaker"], "closed");
    let counted_in_redis = redis
        .cli(&["--scan", "--pattern", "tenantry:rate:*"])
        .unwrap_or_default();
    assert!(
        counted_in_redis.contains(&busy.id.to_string()),
        "while Redis is up the limits are counted there: {counted_in_redis:?}"
    );

    redis.kill();
    let down = load(&app, &busy, 50).await;
    let ready = readiness(&app).await;
    assert_eq!(ready["status"], "ok", "still ready without Redis: {ready}");
    assert_eq!(ready["redis"]["breaker"], "open", "{ready}");
    let tight_statuses: Vec<StatusCode> = {
        let mut statuses = Vec::new();
        for _ in 0..6 {
            statuses.push(app.get("/v1/tenant", &tight.token).await.status());
        }
        statuses
    };

    redis.restart();
    let mut closed_again = false;
    for _ in 0..150 {
        // Traffic is what tries Redis again once the breaker's back-off ends.
        load(&app, &busy, 5).await;
        if readiness(&app).await["redis"]["breaker"] == "closed" {
            closed_again = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = load(&app, &busy, 50).await;

    for (phase, statuses) in [("up", &up), ("down", &down), ("back", &back)] {
        assert!(
            statuses.iter().all(|s| *s == StatusCode::OK),
            "Redis {phase}: every request answered 200: {statuses:?}"
        );
    }
    assert_eq!(
        tight_statuses[..3],
        [StatusCode::OK; 3],
        "the burst is allowed"
    );
    assert!(
        tight_statuses[3..].contains(&StatusCode::TOO_MANY_REQUESTS),
        "with Redis down the limit still holds, counted in process: {tight_statuses:?}"
    );
    assert!(closed_again, "the breaker closes once Redis is back");
    let counted_again = redis
        .cli(&["--scan", "--pattern", "tenantry:rate:*"])
        .unwrap_or_default();
    assert!(
        counted_again.contains(&busy.id.to_string()),
        "once Redis is back the limits are counted there again: {counted_again:?}"
    );
}

/// `n` requests of `tenant`, one after another; their statuses.
async fn load(app: &TestApp, tenant: &TestTenant, n: usize) -> Vec<StatusCode> {
    let mut statuses = Vec::with_capacity(n);
    for _ in 0..n {
        statuses.push(app.get("/v1/tenant", &tenant.token).await.status());
    }
    statuses
}
