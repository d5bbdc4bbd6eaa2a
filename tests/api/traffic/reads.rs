//! The read cache: a warm `If-None-Match` is answered 304 without a statement; a cached
//! value is never served to another tenant; a write on one instance is seen by the next
//! read on another; and stock moved by an order shows on the product at once.

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use super::SHARED_REDIS;
use crate::helpers::{
    TestApp, TestTenant, command, expect_json, id, json_log_lines, lines_of_request, place_ok,
    sigterm, spawn_app_with, spawn_statement_logging_server_with, statements_in, unique,
};

#[tokio::test]
async fn a_warm_read_and_its_304_cost_no_statement() {
    // Arrange
    let (log_file, mut server, app, tenant, path) = logged_server_with_an_order("reads").await;
    let run = Uuid::now_v7().simple().to_string();

    // Act: a cold read, a warm one, and a conditional one naming the current version.
    let mut etag = String::new();
    let mut statuses = Vec::new();
    for step in ["cold", "warm", "conditional"] {
        let mut request = app
            .client
            .get(app.url(&path))
            .bearer_auth(&tenant.token)
            .header("x-request-id", format!("{step}-{run}"));
        if step == "conditional" {
            request = request.header("if-none-match", &etag);
        }
        let response = request.send().await.unwrap();
        statuses.push(response.status());
        if step == "cold" {
            etag = response.headers()["etag"].to_str().unwrap().to_owned();
        }
    }
    sigterm(&server);
    server.wait().await.unwrap();
    let lines = json_log_lines(&log_file);
    let _ = std::fs::remove_file(&log_file);

    // Assert
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::OK, StatusCode::NOT_MODIFIED]
    );
    let statements = |step: &str| {
        statements_in(&lines_of_request(&lines, &format!("{step}-{run}")))
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert!(
        statements("cold")
            .iter()
            .any(|s| s.contains("order_summaries")),
        "the cold read reads the database: {:?}",
        statements("cold")
    );
    assert_eq!(statements("warm"), Vec::<String>::new(), "the warm read");
    assert_eq!(statements("conditional"), Vec::<String>::new(), "the 304");
}

#[tokio::test]
async fn a_cached_order_is_never_served_to_another_tenant() {
    let app = spawn_app_with(&[("TENANTRY_READ_CACHE_TTL", "60s")]).await;
    let (owner, other) = (app.create_tenant().await, app.create_tenant().await);
    let customer = app.create_customer(&owner).await;
    let product = app.create_product(&owner).await;
    let order = place_ok(&app, &owner, &customer, &[(&product, 1)]).await;
    for path in [
        format!("/v1/orders/{}", id(&order)),
        format!("/v1/products/{}", id(&product)),
        format!("/v1/customers/{}", id(&customer)),
    ] {
        // Warm for its tenant…
        for _ in 0..2 {
            assert_eq!(app.get(&path, &owner.token).await.status(), StatusCode::OK);
        }
        // …and still unknown to the other.
        assert_eq!(
            app.get(&path, &other.token).await.status(),
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }
}

#[tokio::test]
async fn after_a_write_on_one_instance_the_next_read_on_another_sees_it() {
    // Arrange: two instances sharing Redis, caching for a minute — longer than the test.
    let config = [
        ("REDIS_URL", SHARED_REDIS),
        ("TENANTRY_READ_CACHE_TTL", "60s"),
    ];
    let (a, b) = (spawn_app_with(&config).await, spawn_app_with(&config).await);
    let tenant = a.create_tenant().await;
    let customer = a.create_customer(&tenant).await;
    let product = a.create_product(&tenant).await;
    let order = place_ok(&a, &tenant, &customer, &[(&product, 1)]).await;
    let product_path = format!("/v1/products/{}", id(&product));
    let order_path = format!("/v1/orders/{}", id(&order));

    // Act + assert: each write on A is read back on B (warm) at once, twenty times over.
    for n in 0..20 {
        let name = format!("Renamed {n}");
        for app in [&a, &b] {
            expect_json(app.get(&product_path, &tenant.token).await, StatusCode::OK).await;
        }
        let renamed = a
            .patch(&product_path, &tenant.token, json!({"name": name}))
            .await;
        assert_eq!(renamed.status(), StatusCode::OK);
        let on_b = expect_json(b.get(&product_path, &tenant.token).await, StatusCode::OK).await;
        assert_eq!(on_b["name"], name.as_str(), "write {n} read on B");
    }
    expect_json(b.get(&order_path, &tenant.token).await, StatusCode::OK).await;
    let confirmed = command(&a, &tenant, id(&order), "confirm", json!({})).await;
    assert_eq!(confirmed.status(), StatusCode::OK);
    let on_b = expect_json(b.get(&order_path, &tenant.token).await, StatusCode::OK).await;
    assert_eq!(on_b["status"], "confirmed");
}

#[tokio::test]
async fn stock_moved_by_orders_shows_on_the_cached_product_at_once() {
    let app = spawn_app_with(&[("TENANTRY_READ_CACHE_TTL", "60s")]).await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = app.create_product(&tenant).await;
    let path = format!("/v1/products/{}", id(&product));
    let stock = |body: serde_json::Value| body["stock"].as_i64().unwrap();
    let before = stock(expect_json(app.get(&path, &tenant.token).await, StatusCode::OK).await);

    let order = place_ok(&app, &tenant, &customer, &[(&product, 3)]).await;
    let after_order = stock(expect_json(app.get(&path, &tenant.token).await, StatusCode::OK).await);
    let cancelled = command(
        &app,
        &tenant,
        id(&order),
        "cancel",
        json!({"reason": "test"}),
    )
    .await;
    assert_eq!(cancelled.status(), StatusCode::OK);
    let after_cancel =
        stock(expect_json(app.get(&path, &tenant.token).await, StatusCode::OK).await);

    assert_eq!((after_order, after_cancel), (before - 3, before));
}

#[tokio::test]
async fn concurrent_misses_of_one_order_cost_one_read() {
    // Arrange: the order's placement dropped it from the cache: the next read is a miss.
    let (log_file, mut server, app, tenant, path) = logged_server_with_an_order("flight").await;
    let run = Uuid::now_v7().simple().to_string();

    // Act: 20 reads at once.
    let statuses = futures::future::join_all((0..20).map(|n| {
        let request = app
            .client
            .get(app.url(&path))
            .bearer_auth(&tenant.token)
            .header("x-request-id", format!("flight-{n}-{run}"));
        async move { request.send().await.unwrap().status() }
    }))
    .await;
    sigterm(&server);
    server.wait().await.unwrap();
    let lines = json_log_lines(&log_file);
    let _ = std::fs::remove_file(&log_file);

    // Assert
    assert!(
        statuses.iter().all(|s| *s == StatusCode::OK),
        "{statuses:?}"
    );
    let reads: usize = (0..20)
        .map(|n| {
            statements_in(&lines_of_request(&lines, &format!("flight-{n}-{run}")))
                .into_iter()
                .filter(|s| s.contains("order_summaries"))
                .count()
        })
        .sum();
    assert_eq!(reads, 1, "twenty concurrent misses, one read of the order");
}

/// The real binary logging every statement with its request (caching reads and credentials
/// for a minute), with a tenant that has placed one order: the log file, the server, the
/// app, the tenant and the order's path.
async fn logged_server_with_an_order(
    name: &str,
) -> (
    std::path::PathBuf,
    tokio::process::Child,
    TestApp,
    TestTenant,
    String,
) {
    let log_file =
        std::env::temp_dir().join(format!("{}.log", unique(&format!("tenantry-{name}"))));
    let (server, app) = spawn_statement_logging_server_with(
        &[
            ("TENANTRY_READ_CACHE_TTL", "60s"),
            ("TENANTRY_CREDENTIAL_CACHE_TTL", "60s"),
        ],
        &log_file,
    )
    .await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = app.create_product(&tenant).await;
    let order = place_ok(&app, &tenant, &customer, &[(&product, 1)]).await;
    let path = format!("/v1/orders/{}", id(&order));
    (log_file, server, app, tenant, path)
}
