//! The operator's plans and per-tenant overrides, and their audit trail.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use uuid::Uuid;

use super::{override_limits, quota};
use crate::helpers::{
    OPERATOR_TOKEN, expect_json, expect_problem, send, spawn_app, tenant_path, unique,
};

const PLANS: &str = "/v1/platform/plans";

fn operator() -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {OPERATOR_TOKEN}"))]
}

async fn operator_send(
    app: &crate::helpers::TestApp,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> reqwest::Response {
    let [(name, value)] = operator();
    send(app, method, path, &[(name, &value)], body).await
}

fn limits(users: u64) -> Value {
    json!({"users": users, "api_keys": 3, "products": 20, "orders_per_month": 100,
           "api_calls_per_month": 10000, "requests_per_second": 5, "request_burst": 10,
           "realtime_connections": 2, "webhook_endpoints": 1})
}

#[tokio::test]
async fn the_operator_creates_a_plan_moves_a_tenant_onto_it_and_changes_it() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let name = unique("team").replace('_', "-");

    // Act: create, assign, change.
    let created = expect_json(
        operator_send(
            &app,
            Method::POST,
            PLANS,
            Some(json!({"name": name, "display_name": "Team", "limits": limits(3)})),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    expect_json(
        operator_send(
            &app,
            Method::PATCH,
            &tenant_path(tenant.id),
            Some(json!({"plan": name})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let before_change = quota(&app, &tenant, "users").await;
    expect_json(
        operator_send(
            &app,
            Method::PATCH,
            &format!("{PLANS}/{name}"),
            Some(json!({"limits": {"users": 7}})),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let after_change = quota(&app, &tenant, "users").await;

    // Assert
    assert_eq!(created["limits"]["users"], 3, "{created}");
    assert_eq!(before_change["limit"], 3);
    assert_eq!(
        after_change["limit"], 7,
        "a plan's change applies at once: {after_change}"
    );
    let listed = expect_json(
        operator_send(&app, Method::GET, PLANS, None).await,
        StatusCode::OK,
    )
    .await;
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
    for seeded in ["free", "pro", "enterprise"] {
        assert!(names.contains(&seeded), "{seeded} is seeded: {names:?}");
    }
    let taken = operator_send(
        &app,
        Method::POST,
        PLANS,
        Some(json!({"name": name, "display_name": "Again", "limits": limits(1)})),
    )
    .await;
    expect_problem(taken, StatusCode::CONFLICT, "plan_exists").await;
    let partial = operator_send(&app, Method::POST, PLANS, Some(json!({"name": unique("p").replace('_', "-"), "display_name": "Partial", "limits": {"users": 1}}))).await;
    let problem = expect_problem(
        partial,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert!(
        problem["errors"].as_array().unwrap().len() >= 8,
        "every missing limit is named: {problem}"
    );

    // Plan changes are in the platform's own audit log.
    let mut db = app.owner_connection().await;
    let actions: Vec<String> = sqlx::query_scalar(
        "select action from audit_events where tenant_id = $1 and target_id = $2 order by id",
    )
    .bind(Uuid::from_u128(1))
    .bind(&name)
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(actions, ["plan.created", "plan.updated"]);
}

#[tokio::test]
async fn an_override_changes_one_limit_of_one_tenant_and_is_audited_in_its_log() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let other = app.create_tenant().await;

    let limits = override_limits(&app, &tenant, json!({"users": 50, "products": null})).await;

    assert_eq!(limits["plan"], "free");
    assert_eq!(limits["overrides"], json!({"products": null, "users": 50}));
    assert_eq!(limits["limits"]["users"], 50);
    assert_eq!(
        limits["limits"]["products"],
        Value::Null,
        "null is unlimited"
    );
    assert_eq!(limits["limits"]["api_keys"], 5, "the rest is the plan's");
    assert_eq!(
        quota(&app, &other, "users").await["limit"],
        5,
        "another tenant is untouched"
    );
    let audited = app.audit_actions(tenant.id, &tenant.id.to_string()).await;
    assert!(
        audited.contains(&"tenant.limits_overridden".to_owned()),
        "{audited:?}"
    );

    let unknown = operator_send(
        &app,
        Method::PUT,
        &format!("/v1/platform/tenants/{}/limits", tenant.id),
        Some(json!({"seats": 3})),
    )
    .await;
    expect_problem(
        unknown,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let back = override_limits(&app, &tenant, json!({})).await;
    assert_eq!(back["limits"]["users"], 5, "{{}} puts it back on its plan");
}

#[tokio::test]
async fn the_operator_reads_plan_changes_in_the_platforms_own_audit_log() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    // Named like the other tests' plans, after the seeded ones: tests elsewhere expect the
    // list of plans to begin "enterprise, free, pro".
    let name = unique("team").replace('_', "-");
    expect_json(
        operator_send(
            &app,
            Method::POST,
            PLANS,
            Some(json!({"name": name, "display_name": "Logged", "limits": limits(2)})),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;

    let path = format!("/v1/platform/audit-events?action=plan.created&target_id={name}");
    let page = expect_json(
        operator_send(&app, Method::GET, &path, None).await,
        StatusCode::OK,
    )
    .await;
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{page}");
    assert_eq!(items[0]["actor"], "operator");
    assert_eq!(items[0]["credential"], "operator_token");
    // A tenant's credential does not open the platform's log.
    let refused = app.get(&path, &tenant.token).await;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
}
