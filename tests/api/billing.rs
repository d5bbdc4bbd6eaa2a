//! Billing export and close: a line per tenant × metric × period with a stable id; a
//! closed period re-exports byte for byte, and usage arriving after the close lands in the
//! next open period. Each test closes periods, which are platform-wide, so each runs on a
//! scratch database of its own, with the usage clock set by hand.

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection;
use time::macros::datetime;

use crate::helpers::{
    OPERATOR_TOKEN, ScratchDatabase, expect_problem, place_ok, run_tenantry, spawn_stoppable_app,
    test_config,
};

/// Parses a JSON-lines export.
fn jsonl(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| serde_json::from_str(line).expect("each line is JSON"))
        .collect()
}

/// The quantity of `metric` (and `currency`) in `lines`.
fn quantity(lines: &[Value], metric: &str, currency: Option<&str>) -> i64 {
    let matching: Vec<&Value> = lines
        .iter()
        .filter(|l| l["metric"] == metric && l["currency"].as_str() == currency)
        .collect();
    assert_eq!(matching.len(), 1, "one {metric} line: {lines:?}");
    matching[0]["quantity"].as_i64().unwrap()
}

#[tokio::test]
async fn a_closed_period_re_exports_byte_for_byte_and_late_usage_is_billed_in_the_next_one() {
    let scratch = ScratchDatabase::new("billing");
    let url = scratch.url();
    let config = test_config(&[
        ("DATABASE_URL", url.as_str()),
        ("TENANTRY_CLOCK", "2026-11-15T12:00:00Z"),
        ("TENANTRY_USAGE_FLUSH_INTERVAL", "1m"),
    ]);
    let clock = config.clock.clone();
    let server = spawn_stoppable_app(config.clone()).await;
    let app = &server.app;
    let tenant = app.create_tenant_on("pro").await;
    let customer = app.create_customer(&tenant).await;
    let product = app.create_product(&tenant).await; // 12.50 EUR
    place_ok(app, &tenant, &customer, &[(&product, 2)]).await;
    clock.set(datetime!(2026-11-30 23:59:30 UTC));
    place_ok(app, &tenant, &customer, &[(&product, 1)]).await;

    // Not before the period has ended.
    let early = run_tenantry(
        &config,
        &[("TENANTRY_CLOCK", "2026-11-30T23:59:59Z")],
        &["billing", "close", "--period", "2026-11"],
    )
    .await;
    assert_eq!(early.code, Some(73), "{}", early.stderr);
    assert!(
        early.stderr.contains("period_not_ended"),
        "{}",
        early.stderr
    );

    let after_the_month = [("TENANTRY_CLOCK", "2026-12-01T00:05:00Z")];
    let closed = run_tenantry(
        &config,
        &after_the_month,
        &["billing", "close", "--period", "2026-11"],
    )
    .await;
    assert!(closed.success, "{}", closed.stderr);
    assert!(
        closed.stdout.starts_with("closed period 2026-11"),
        "{}",
        closed.stdout
    );
    let again = run_tenantry(
        &config,
        &after_the_month,
        &["billing", "close", "--period", "2026-11"],
    )
    .await;
    assert!(again.success, "{}", again.stderr);
    assert!(
        again.stdout.contains("was closed already"),
        "{}",
        again.stdout
    );

    let dir = std::env::temp_dir().join(scratch.name.clone());
    std::fs::create_dir_all(&dir).unwrap();
    let export = |format: &'static str, period: &'static str, file: &str| {
        let out = dir.join(file);
        let config = config.clone();
        async move {
            let done = run_tenantry(
                &config,
                &[],
                &[
                    "billing",
                    "export",
                    "--period",
                    period,
                    "--format",
                    format,
                    "--out",
                    out.to_str().unwrap(),
                ],
            )
            .await;
            assert!(done.success, "{}", done.stderr);
            std::fs::read(&out).unwrap()
        }
    };
    let first_csv = export("csv", "2026-11", "first.csv").await;
    let november =
        jsonl(&String::from_utf8(export("jsonl", "2026-11", "nov.jsonl").await).unwrap());
    let ours: Vec<Value> = november
        .iter()
        .filter(|l| l["tenant"] == tenant.slug.as_str())
        .cloned()
        .collect();
    assert_eq!(quantity(&ours, "orders_placed", None), 2);
    assert_eq!(quantity(&ours, "order_value", Some("EUR")), 3 * 1250);
    // The API calls are still in the server's memory: they were not in November's usage
    // when it closed.
    assert_eq!(quantity(&ours, "api_calls", None), 0);
    assert!(
        ours.iter()
            .all(|l| l["plan"] == "pro" && l["period"] == "2026-11" && l["status"] == "closed")
    );

    // Late usage: the server's clock still says November.
    place_ok(app, &tenant, &customer, &[(&product, 4)]).await;
    server.stop().await; // writes the API calls, of November hours

    assert_eq!(
        export("csv", "2026-11", "second.csv").await,
        first_csv,
        "a closed period exports the same bytes"
    );
    let december =
        jsonl(&String::from_utf8(export("jsonl", "2026-12", "dec.jsonl").await).unwrap());
    let late: Vec<Value> = december
        .iter()
        .filter(|l| l["tenant"] == tenant.slug.as_str())
        .cloned()
        .collect();
    assert_eq!(quantity(&late, "orders_placed", None), 1);
    assert_eq!(quantity(&late, "order_value", Some("EUR")), 4 * 1250);
    // Creating the customer and the product, and the three orders.
    assert_eq!(quantity(&late, "api_calls", None), 5, "{late:?}");
    assert_eq!(quantity(&late, "active_users", None), 1, "the owner");
    assert!(late.iter().all(|l| l["status"] == "open"));
    // A line is the same line in every export of its period.
    let ids = |lines: &[Value]| {
        lines
            .iter()
            .map(|l| l["line_id"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    let december_again =
        jsonl(&String::from_utf8(export("jsonl", "2026-12", "dec2.jsonl").await).unwrap());
    assert_eq!(ids(&december), ids(&december_again));
    assert!(ids(&ours).iter().all(|id| !ids(&late).contains(id)));

    // The operator route streams the same bytes as the command.
    let reader = spawn_stoppable_app(config.clone()).await;
    let response = reader
        .app
        .client
        .get(
            reader
                .app
                .url("/v1/platform/usage?period=2026-11&format=csv"),
        )
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["content-type"],
        "text/csv; charset=utf-8"
    );
    assert_eq!(
        response.bytes().await.unwrap().as_ref(),
        first_csv.as_slice()
    );

    // The tenant's own view is by time: the late order happened in November.
    let usage: Value = reader
        .app
        .get(
            "/v1/usage?from=2026-11-01T00:00:00Z&to=2026-12-01T00:00:00Z&metric=orders_placed&granularity=month",
            &tenant.token,
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(usage["series"][0]["total"], 3, "{usage}");

    // The close and every export are in the platform's audit log.
    let mut owner = sqlx::PgConnection::connect(&url).await.unwrap();
    let actions: Vec<String> = sqlx::query_scalar(
        "select action from audit_events
         where tenant_id = '00000000-0000-0000-0000-000000000001' and action like 'billing.%'
         order by id",
    )
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert_eq!(
        actions.first().map(String::as_str),
        Some("billing.period_closed")
    );
    assert_eq!(
        actions.iter().filter(|a| *a == "billing.exported").count(),
        6,
        "{actions:?}"
    );
    reader.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn a_period_or_format_that_is_not_one_is_refused_before_anything_is_read() {
    let scratch = ScratchDatabase::new("billing_args");
    let url = scratch.url();
    let config = test_config(&[("DATABASE_URL", url.as_str())]);
    for (args, field) in [
        (
            &["billing", "export", "--period", "2026-13"][..],
            "--period",
        ),
        (
            &[
                "billing", "export", "--period", "2026-11", "--format", "xml",
            ][..],
            "--format",
        ),
        (
            &["billing", "close", "--period", "November"][..],
            "--period",
        ),
        (
            &[
                "billing",
                "export",
                "--period",
                "2026-11",
                "--tenant",
                "no-such-tenant",
            ][..],
            "--tenant",
        ),
    ] {
        let refused = run_tenantry(&config, &[], args).await;
        assert_eq!(refused.code, Some(65), "{args:?}: {}", refused.stderr);
        assert!(
            refused.stderr.contains(field),
            "{args:?}: {}",
            refused.stderr
        );
    }

    let server = spawn_stoppable_app(config.clone()).await;
    let get = |path: &'static str| {
        server
            .app
            .client
            .get(server.app.url(path))
            .bearer_auth(OPERATOR_TOKEN)
            .send()
    };
    expect_problem(
        get("/v1/platform/usage?period=2026-13").await.unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    expect_problem(
        get("/v1/platform/usage?period=2026-11&format=xml")
            .await
            .unwrap(),
        StatusCode::BAD_REQUEST,
        "invalid_query",
    )
    .await;
    let unauthenticated = server
        .app
        .client
        .get(server.app.url("/v1/platform/usage?period=2026-11"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthenticated.status(), StatusCode::UNAUTHORIZED);
    server.stop().await;
}

#[tokio::test]
async fn orders_placed_while_the_period_closes_are_each_billed_once_in_one_period_or_the_next() {
    let scratch = ScratchDatabase::new("billing_race");
    let url = scratch.url();
    let config = test_config(&[
        ("DATABASE_URL", url.as_str()),
        ("TENANTRY_CLOCK", "2026-11-30T23:59:00Z"),
    ]);
    let server = spawn_stoppable_app(config.clone()).await;
    let tenant = server.app.create_tenant_on("enterprise").await;
    let customer = server.app.create_customer(&tenant).await;
    let product = server.app.create_product(&tenant).await;
    let (_, key) = server.app.create_api_key(&tenant, &["orders:write"]).await;

    let restock = serde_json::json!({"stock": 1_000_000});
    let restocked = server
        .app
        .patch(
            &format!("/v1/products/{}", product["id"].as_str().unwrap()),
            &tenant.token,
            restock,
        )
        .await;
    assert_eq!(restocked.status(), StatusCode::OK);
    // Eight clients place orders back to back (with the server's clock in November)
    // until told to stop; the period closes in the middle of it.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let workers: Vec<_> = (0..8)
        .map(|_| {
            let (client, url, key, stop) = (
                server.app.client.clone(),
                server.app.url("/v1/orders"),
                key.clone(),
                stop.clone(),
            );
            let body = serde_json::json!({"customer_id": customer["id"],
                "items": [{"product_id": product["id"], "quantity": 1}]});
            tokio::spawn(async move {
                let mut placed = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let response = client
                        .post(&url)
                        .header("x-api-key", &key)
                        .json(&body)
                        .send()
                        .await
                        .unwrap();
                    assert_eq!(response.status(), StatusCode::CREATED);
                    placed += 1;
                }
                placed
            })
        })
        .collect();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let closed = run_tenantry(
        &config,
        &[("TENANTRY_CLOCK", "2026-12-01T00:00:01Z")],
        &["billing", "close", "--period", "2026-11"],
    )
    .await;
    assert!(closed.success, "{}", closed.stderr);
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut placed = 0;
    for worker in workers {
        placed += worker.await.unwrap();
    }

    let export = |period: &'static str| {
        let config = config.clone();
        let slug = tenant.slug.clone();
        async move {
            let done = run_tenantry(
                &config,
                &[],
                &["billing", "export", "--period", period, "--tenant", &slug],
            )
            .await;
            assert!(done.success, "{}", done.stderr);
            done.stdout
        }
    };
    let november = export("2026-11").await;
    let december = export("2026-12").await;
    let in_november = quantity(&jsonl(&november), "orders_placed", None);
    let in_december = quantity(&jsonl(&december), "orders_placed", None);
    assert!(
        in_november > 0 && in_december > 0,
        "the close fell in the middle: {in_november} + {in_december}"
    );
    assert_eq!(
        in_november + in_december,
        placed,
        "every order billed exactly once"
    );
    assert_eq!(
        export("2026-11").await,
        november,
        "the closed period stays as it closed"
    );
    server.stop().await;
}
