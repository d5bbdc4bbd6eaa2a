//! Limits hold under concurrency, and say so.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use super::{override_limits, product, quota};
use crate::helpers::{expect_json, expect_problem, id, order_request, place, place_ok, spawn_app};

/// Sends `count` requests at once; returns how many got each status, and the bodies.
async fn all_at_once(
    requests: impl IntoIterator<Item = reqwest::RequestBuilder>,
) -> (BTreeMap<u16, usize>, Vec<(u16, Value, Option<String>)>) {
    let sent = requests.into_iter().map(|r| async move {
        let response = r.send().await.expect("the server answers");
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let body: Value = response.json().await.unwrap_or(Value::Null);
        (status, body, retry_after)
    });
    let answers = futures::future::join_all(sent).await;
    let mut counts = BTreeMap::new();
    for (status, ..) in &answers {
        *counts.entry(*status).or_insert(0) += 1;
    }
    (counts, answers)
}

#[tokio::test]
async fn fifty_parallel_creates_against_a_limit_of_ten_let_exactly_ten_through() {
    // Arrange: products limited to 10 for this tenant.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    override_limits(&app, &tenant, json!({"products": 10})).await;

    // Act
    let requests = (0..50).map(|n| {
        app.client
            .post(app.url("/v1/products"))
            .bearer_auth(&tenant.token)
            .json(&product(n, 1))
    });
    let (counts, answers) = all_at_once(requests).await;

    // Assert: exactly 10 created; every other a 403 saying which limit, its value and use.
    assert_eq!(
        counts,
        BTreeMap::from([(201, 10), (403, 40)]),
        "{answers:?}"
    );
    let refused = answers.iter().find(|(status, ..)| *status == 403).unwrap();
    assert_eq!(refused.1["code"], "quota_exceeded");
    assert_eq!(refused.1["limit_name"], "products");
    assert_eq!(refused.1["limit"], 10);
    assert_eq!(refused.1["used"], 10);
    assert_eq!(
        refused.1["resets_at"],
        Value::Null,
        "a count does not reset"
    );
    let listed = quota(&app, &tenant, "products").await;
    assert_eq!(listed["used"], 10, "{listed}");
    assert_eq!(listed["remaining"], 0, "{listed}");
}

#[tokio::test]
async fn fifty_parallel_orders_against_a_monthly_allowance_of_ten_place_exactly_ten() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    override_limits(&app, &tenant, json!({"orders_per_month": 10})).await;
    let customer = app.create_customer(&tenant).await;
    let stocked = expect_json(
        app.post("/v1/products", &tenant.token, product(0, 1000))
            .await,
        StatusCode::CREATED,
    )
    .await;

    // Act
    let requests = (0..50).map(|_| {
        app.client
            .post(app.url("/v1/orders"))
            .bearer_auth(&tenant.token)
            .json(&order_request(&customer, &[(&stocked, 1)]))
    });
    let (counts, answers) = all_at_once(requests).await;

    // Assert: 10 placed, 40 refused with 429 until the month ends.
    assert_eq!(
        counts,
        BTreeMap::from([(201, 10), (429, 40)]),
        "{answers:?}"
    );
    let (_, refused, retry_after) = answers.iter().find(|(s, ..)| *s == 429).unwrap();
    assert_eq!(refused["code"], "quota_exceeded");
    assert_eq!(refused["limit_name"], "orders_per_month");
    assert!(
        refused["resets_at"]
            .as_str()
            .unwrap()
            .ends_with("-01T00:00:00Z"),
        "{refused}"
    );
    assert!(
        retry_after
            .as_deref()
            .and_then(|s| s.parse::<u64>().ok())
            .is_some_and(|s| s > 0),
        "429 says when to retry: {retry_after:?}"
    );
    let listed = quota(&app, &tenant, "orders_per_month").await;
    assert_eq!(
        (listed["used"].clone(), listed["limit"].clone()),
        (json!(10), json!(10))
    );
    let orders = expect_json(
        app.get("/v1/orders?limit=200", &tenant.token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        orders["items"].as_array().unwrap().len(),
        10,
        "the orders themselves"
    );
}

#[tokio::test]
async fn refused_and_rolled_back_orders_do_not_count_against_the_allowance() {
    // Arrange: an allowance of 3, and a product with stock for 2.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    override_limits(&app, &tenant, json!({"orders_per_month": 3})).await;
    let customer = app.create_customer(&tenant).await;
    let scarce = expect_json(
        app.post("/v1/products", &tenant.token, product(1, 2)).await,
        StatusCode::CREATED,
    )
    .await;

    // Act: 2 placed, then 3 refused for want of stock (each rolled back whole).
    for _ in 0..2 {
        place_ok(&app, &tenant, &customer, &[(&scarce, 1)]).await;
    }
    for _ in 0..3 {
        expect_problem(
            place(&app, &tenant, &customer, &[(&scarce, 1)]).await,
            StatusCode::CONFLICT,
            "insufficient_stock",
        )
        .await;
    }

    // Assert: the count is the 2 that committed, and the third fits.
    assert_eq!(quota(&app, &tenant, "orders_per_month").await["used"], 2);
    let restocked = app
        .patch(
            &format!("/v1/products/{}", id(&scarce)),
            &tenant.token,
            json!({"stock": 5}),
        )
        .await;
    assert_eq!(restocked.status(), StatusCode::OK);
    place_ok(&app, &tenant, &customer, &[(&scarce, 1)]).await;
    expect_problem(
        place(&app, &tenant, &customer, &[(&scarce, 1)]).await,
        StatusCode::TOO_MANY_REQUESTS,
        "quota_exceeded",
    )
    .await;
    assert_eq!(quota(&app, &tenant, "orders_per_month").await["used"], 3);
}

#[tokio::test]
async fn reaching_80_and_100_percent_is_a_header_an_audit_event_and_a_metric() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    override_limits(&app, &tenant, json!({"products": 5})).await;

    // Act: five products, one at a time; the header of each.
    let mut warnings = Vec::new();
    for n in 0..5 {
        let response = app.post("/v1/products", &tenant.token, product(n, 1)).await;
        assert_eq!(response.status(), StatusCode::CREATED);
        warnings.push(
            response
                .headers()
                .get_all("tenantry-quota-warning")
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>(),
        );
    }

    // Assert: the 4th reaches 80 %, the 5th 100 %; the others say nothing.
    assert_eq!(
        warnings,
        vec![
            vec![],
            vec![],
            vec![],
            vec!["products; threshold=80; used=4; limit=5".to_owned()],
            vec!["products; threshold=100; used=5; limit=5".to_owned()],
        ]
    );
    let mut db = app.owner_connection().await;
    let audited: Vec<Value> = sqlx::query_scalar(
        "select data from audit_events where tenant_id = $1 and action = 'quota.threshold_reached' order by id",
    )
    .bind(tenant.id.as_uuid())
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(
        audited,
        vec![
            json!({"limit": "products", "threshold_percent": 80, "used": 4, "of": 5}),
            json!({"limit": "products", "threshold_percent": 100, "used": 5, "of": 5}),
        ]
    );
    // Registered at 0 on start-up: counted means above it.
    let metrics = app.metrics().await;
    assert!(
        metrics.lines().any(|l| l
            .strip_prefix(r#"tenant_quota_thresholds_total{limit="products",threshold="100"} "#)
            .is_some_and(|value| value.parse::<f64>().is_ok_and(|v| v >= 1.0))),
        "the crossing is counted, by limit and threshold only:\n{}",
        metrics
            .lines()
            .filter(|l| l.contains("quota"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[tokio::test]
async fn every_limit_is_listed_with_its_use_and_a_reactivated_user_counts_again() {
    // Arrange: the free plan allows 5 users; the owner and 4 more.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(app.create_user(&tenant, "viewer").await.0);
    }
    let quotas = expect_json(app.get("/v1/quotas", &tenant.token).await, StatusCode::OK).await;

    // Assert: every limit, with its use where it is measured.
    assert_eq!(quotas["plan"], "free");
    let names: Vec<&str> = quotas["quotas"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|q| q["name"].as_str())
        .collect();
    assert_eq!(
        names,
        [
            "users",
            "api_keys",
            "products",
            "orders_per_month",
            "api_calls_per_month",
            "requests_per_second",
            "request_burst",
            "realtime_connections",
            "webhook_endpoints"
        ]
    );
    assert_eq!(quota(&app, &tenant, "users").await["used"], 5);

    // A sixth is refused; deactivating one makes room; reactivating it past the limit is
    // refused too.
    let sixth = app
        .post(
            "/v1/users",
            &tenant.token,
            json!({"email": "sixth@q.test", "role": "viewer"}),
        )
        .await;
    expect_problem(sixth, StatusCode::FORBIDDEN, "quota_exceeded").await;
    let deactivated = app
        .delete(&format!("/v1/users/{}", ids[0]), &tenant.token)
        .await;
    assert!(
        deactivated.status().is_success(),
        "{}",
        deactivated.status()
    );
    app.create_user(&tenant, "viewer").await;
    let back = app
        .patch(
            &format!("/v1/users/{}", ids[0]),
            &tenant.token,
            json!({"status": "active"}),
        )
        .await;
    expect_problem(back, StatusCode::FORBIDDEN, "quota_exceeded").await;
}
