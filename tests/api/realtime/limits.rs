//! Seats: the plan's `realtime_connections` bounds the streams a tenant has open, on one
//! instance or several (through Redis); connection minutes are metered.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;

use super::{SseClient, open_socket, receive_type};
use crate::{
    helpers::{expect_json, expect_problem, override_limits, spawn_app, spawn_app_with},
    traffic::SHARED_REDIS,
};

#[tokio::test]
async fn a_tenant_may_hold_as_many_streams_as_its_plan_allows() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    override_limits(&app, &tenant, json!({"realtime_connections": 2})).await;
    let first = SseClient::connect(&app, &tenant.token, "", None).await;
    let mut second = open_socket(&app, Some(&tenant.token)).await.unwrap();
    receive_type(&mut second, "ready").await;

    let response = SseClient::request(&app, &tenant.token, "", None).await;
    let problem = expect_problem(response, StatusCode::FORBIDDEN, "quota_exceeded").await;
    assert_eq!(problem["limit_name"], "realtime_connections");
    assert_eq!(problem["limit"], 2);

    drop(first);
    // The seat is given back once the server notices the stream is gone.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = SseClient::request(&app, &tenant.token, "", None).await;
        if response.status() == StatusCode::OK {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the seat comes back"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn seats_are_counted_across_instances_through_redis() {
    let a = spawn_app_with(&[("REDIS_URL", SHARED_REDIS)]).await;
    let b = spawn_app_with(&[("REDIS_URL", SHARED_REDIS)]).await;
    let tenant = a.create_tenant().await;
    override_limits(&a, &tenant, json!({"realtime_connections": 1})).await;
    let _held = SseClient::connect(&a, &tenant.token, "", None).await;
    let response = SseClient::request(&b, &tenant.token, "", None).await;
    expect_problem(response, StatusCode::FORBIDDEN, "quota_exceeded").await;
}

#[tokio::test]
async fn connection_minutes_are_metered() {
    let app = spawn_app_with(&[("TENANTRY_USAGE_FLUSH_INTERVAL", "100ms")]).await;
    let tenant = app.create_tenant().await;
    let _stream = SseClient::connect(&app, &tenant.token, "", None).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let response = app
            .get(
                "/v1/usage?metric=realtime_connection_minutes",
                &tenant.token,
            )
            .await;
        let usage = expect_json(response, StatusCode::OK).await;
        let series = usage["series"].as_array().cloned().unwrap_or_default();
        if let Some(series) = series.first() {
            assert_eq!(series["dimensions"], json!({"transport": "sse"}));
            assert_eq!(series["total"], 1, "the started minute counts: {usage}");
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the minute is metered: {usage}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
