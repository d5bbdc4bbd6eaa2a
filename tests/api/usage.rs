//! Usage metering: orders and their value counted exactly in their own transaction; API
//! calls counted in memory, flushed on shutdown, adding up across instances; the monthly
//! API-call allowance enforced from those counts; each tenant sees only its own usage.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry::{
    db::{Db, Usage},
    usage::{Metric, meter::Meter},
};

use crate::helpers::{
    OPERATOR_TOKEN, TestApp, TestTenant, error_fields, expect_json, expect_problem, place,
    place_ok, send, spawn_app, spawn_app_with, spawn_stoppable_app, test_config,
};

/// The tenant's usage report (`GET /v1/usage` with `query`) as the tenant's owner.
async fn usage(app: &TestApp, tenant: &TestTenant, query: &str) -> Value {
    expect_json(
        app.get(&format!("/v1/usage?{query}"), &tenant.token).await,
        StatusCode::OK,
    )
    .await
}

/// The series of `metric` in a report, whatever their dimensions.
fn series<'a>(report: &'a Value, metric: &str) -> Vec<&'a Value> {
    report["series"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["metric"] == metric)
        .collect()
}

fn total(report: &Value, metric: &str) -> i64 {
    series(report, metric)
        .iter()
        .map(|s| s["total"].as_i64().unwrap())
        .sum()
}

#[tokio::test]
async fn placed_orders_and_their_value_are_counted_exactly_and_refused_ones_not_at_all() {
    let app = spawn_app().await;
    let tenant = app.create_tenant_on("enterprise").await;
    let customer = app.create_customer(&tenant).await;
    let product = app.create_product(&tenant).await; // 12.50 EUR, 10 in stock

    place_ok(&app, &tenant, &customer, &[(&product, 2)]).await;
    place_ok(&app, &tenant, &customer, &[(&product, 3)]).await;
    // Refused after part of the work (not enough stock): its transaction rolls back, and
    // its count with it.
    expect_problem(
        place(&app, &tenant, &customer, &[(&product, 50)]).await,
        StatusCode::CONFLICT,
        "insufficient_stock",
    )
    .await;

    let report = usage(&app, &tenant, "granularity=hour").await;
    assert_eq!(total(&report, "orders_placed"), 2, "{report}");
    let value = series(&report, "order_value");
    assert_eq!(value.len(), 1, "one currency: {report}");
    assert_eq!(value[0]["dimensions"], json!({"currency": "EUR"}));
    assert_eq!(value[0]["total"], 5 * 1250);
    assert_eq!(value[0]["unit"], "minor_unit");
}

#[tokio::test]
async fn api_calls_counted_by_two_instances_add_up_exactly_once_both_stop() {
    // A flush interval longer than the test: everything is written by the flush that a
    // graceful shutdown makes.
    let config = test_config(&[("TENANTRY_USAGE_FLUSH_INTERVAL", "1m")]);
    let first = spawn_stoppable_app(config.clone()).await;
    let second = spawn_stoppable_app(config).await;
    let tenant = first.app.create_tenant_on("enterprise").await;
    let (key_id, key) = first
        .app
        .create_api_key(&tenant, &["tenant:read", "catalog:read"])
        .await;

    let with_key = |app: &TestApp, path: &str| {
        let request = app
            .client
            .get(app.url(path))
            .header("x-api-key", key.clone());
        async move { request.send().await.unwrap().status() }
    };
    for _ in 0..7 {
        assert_eq!(with_key(&first.app, "/v1/tenant").await, StatusCode::OK);
    }
    for _ in 0..5 {
        assert_eq!(with_key(&second.app, "/v1/products").await, StatusCode::OK);
    }
    let missing = format!("/v1/products/{}", uuid::Uuid::now_v7());
    for _ in 0..3 {
        assert_eq!(with_key(&second.app, &missing).await, StatusCode::NOT_FOUND);
    }
    first.stop().await;
    second.stop().await;

    let reader = spawn_app().await;
    let report = usage(&reader, &tenant, "metric=api_calls").await;
    let credential = format!("api_key:{key_id}");
    let calls = |group: &str, class: &str| {
        series(&report, "api_calls")
            .iter()
            .filter(|s| {
                s["dimensions"]
                    == json!({"credential": credential, "route_group": group, "status_class": class})
            })
            .map(|s| s["total"].as_i64().unwrap())
            .sum::<i64>()
    };
    assert_eq!(calls("tenant", "2xx"), 7, "{report}");
    assert_eq!(calls("products", "2xx"), 5, "{report}");
    assert_eq!(calls("products", "4xx"), 3, "{report}");
    // The owner's own calls (creating the key) are counted under the owner.
    let owner = format!("user:{}", tenant.owner_id);
    assert!(
        series(&report, "api_calls")
            .iter()
            .any(|s| s["dimensions"]["credential"] == owner.as_str()),
        "{report}"
    );
    assert!(
        series(&report, "api_calls")
            .iter()
            .all(|s| s["unit"] == "call" && s["metric"] == "api_calls"),
        "metric=api_calls reports that metric only: {report}"
    );
}

#[tokio::test]
async fn each_user_making_requests_is_one_active_user_however_often_they_call() {
    let config = test_config(&[("TENANTRY_USAGE_FLUSH_INTERVAL", "1m")]);
    let server = spawn_stoppable_app(config).await;
    let tenant = server.app.create_tenant().await;
    let (_, member) = server.app.create_user(&tenant, "member").await;
    for _ in 0..3 {
        server.app.get("/v1/me", &member).await;
        server.app.get("/v1/me", &tenant.token).await;
    }
    server.stop().await;

    let reader = spawn_app().await;
    let report = usage(&reader, &tenant, "metric=active_users&granularity=month").await;
    assert_eq!(total(&report, "active_users"), 2, "{report}");
    assert_eq!(series(&report, "active_users")[0]["unit"], "user");
}

#[tokio::test]
async fn a_tenant_sees_its_own_usage_and_none_of_another_tenants() {
    let app = spawn_app().await;
    let (busy, quiet) = (
        app.create_tenant_on("enterprise").await,
        app.create_tenant().await,
    );
    let customer = app.create_customer(&busy).await;
    let product = app.create_product(&busy).await;
    place_ok(&app, &busy, &customer, &[(&product, 1)]).await;

    let report = usage(&app, &quiet, "").await;
    assert_eq!(total(&report, "orders_placed"), 0, "{report}");
    assert_eq!(total(&usage(&app, &busy, "").await, "orders_placed"), 1);
}

#[tokio::test]
async fn the_hooks_for_realtime_minutes_and_webhook_deliveries_are_written_by_the_flush() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let db = Db::connect(&app.config).unwrap();
    let meter = Meter::new(Usage {
        clock: app.config.clock.clone(),
        metering: true,
    });
    meter.add(tenant.id, Metric::RealtimeConnectionMinutes, json!({}), 90);
    meter.add(tenant.id, Metric::WebhookDeliveries, json!({}), 4);
    meter.add(tenant.id, Metric::WebhookDeliveries, json!({}), 1);
    meter.flush(&db).await.unwrap();

    let report = usage(&app, &tenant, "").await;
    assert_eq!(total(&report, "realtime_connection_minutes"), 90);
    assert_eq!(total(&report, "webhook_deliveries"), 5);
    assert_eq!(
        series(&report, "realtime_connection_minutes")[0]["unit"],
        "minute"
    );
}

#[tokio::test]
async fn past_its_monthly_api_call_allowance_a_tenant_is_refused_with_429_until_the_month_ends() {
    let app = spawn_app_with(&[("TENANTRY_USAGE_FLUSH_INTERVAL", "100ms")]).await;
    let tenant = app.create_tenant().await;
    expect_json(
        send(
            &app,
            Method::PUT,
            &format!("/v1/platform/tenants/{}/limits", tenant.id),
            &[("authorization", &format!("Bearer {OPERATOR_TOKEN}"))],
            Some(json!({"api_calls_per_month": 20})),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    // Calls until refused. The allowance is enforced from the last flush plus what this
    // server counted since, so the refusal comes at the 20th call or, if a flush was in
    // flight, a few after.
    let mut answered = 0;
    let refusal = loop {
        let response = app.get("/v1/tenant", &tenant.token).await;
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            break response;
        }
        assert_eq!(response.status(), StatusCode::OK);
        answered += 1;
        assert!(answered <= 40, "never refused");
        // Let a flush happen now and then, as it would under real traffic.
        if answered % 5 == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(150)).await;
        }
    };
    assert!(answered >= 15, "refused too early, after {answered}");
    assert!(refusal.headers().contains_key("retry-after"));
    let problem = expect_problem(refusal, StatusCode::TOO_MANY_REQUESTS, "quota_exceeded").await;
    assert_eq!(problem["limit_name"], "api_calls_per_month", "{problem}");
    assert_eq!(problem["limit"], 20);
    assert!(problem["used"].as_u64().unwrap() >= 20, "{problem}");
    assert!(problem["resets_at"].is_string());

    // Its quotas (and usage) stay readable, and once flushed show the calls counted.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let quotas = expect_json(app.get("/v1/quotas", &tenant.token).await, StatusCode::OK).await;
    let calls = quotas["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "api_calls_per_month")
        .unwrap()
        .clone();
    assert_eq!(calls["limit"], 20);
    assert!(calls["used"].as_u64().unwrap() >= 20, "{calls}");
    assert_eq!(calls["remaining"], 0, "{calls}");
    // Reaching 80 % and 100 % was audited by the flush that counted them.
    let mut owner = app.owner_connection().await;
    let crossings: Vec<(String, Value)> = sqlx::query_as(
        "select actor, data from audit_events
         where tenant_id = $1 and action = 'quota.threshold_reached' order by id",
    )
    .bind(tenant.id.as_uuid())
    .fetch_all(&mut owner)
    .await
    .unwrap();
    let thresholds: Vec<&Value> = crossings
        .iter()
        .map(|(_, data)| &data["threshold_percent"])
        .collect();
    assert_eq!(thresholds, [&json!(80), &json!(100)], "{crossings:?}");
    assert!(crossings.iter().all(|(actor, data)| actor == "system"
        && data["limit"] == "api_calls_per_month"
        && data["of"] == 20));
}

#[tokio::test]
async fn a_span_that_ends_before_it_starts_or_is_too_long_for_its_buckets_is_refused() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let backwards = expect_problem(
        app.get(
            "/v1/usage?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z",
            &tenant.token,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "invalid_span",
    )
    .await;
    assert_eq!(error_fields(&backwards), ["from"]);
    let too_long = expect_problem(
        app.get(
            "/v1/usage?from=2026-01-01T00:00:00Z&to=2026-11-01T00:00:00Z&granularity=hour",
            &tenant.token,
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "span_too_long",
    )
    .await;
    assert_eq!(error_fields(&too_long), ["to"]);
    // `to` alone, at the first moment of a month: the span is the month before it.
    let december = usage(&app, &tenant, "to=2027-01-01T00:00:00Z").await;
    assert_eq!(december["from"], "2026-12-01T00:00:00Z");
    expect_problem(
        app.get("/v1/usage?granularity=week", &tenant.token).await,
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
}
