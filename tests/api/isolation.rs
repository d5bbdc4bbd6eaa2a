//! Cross-tenant attempts fail as "not found" and change nothing.
//!
//! One row per route that takes an id: a new route with an id is covered by adding a row.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestTenant, expect_json, expect_problem, place_ok, spawn_app};

/// Tenant B's resources, which tenant A will try to reach.
struct Victim {
    tenant: TestTenant,
    user_id: String,
    api_key_id: String,
    api_key: String,
    product: Value,
    customer: Value,
    /// An order of `customer` (for another product, so `product` stays as created).
    order: Value,
}

async fn victim(app: &TestApp) -> Victim {
    let tenant = app.create_tenant().await;
    let (user_id, _) = app.create_user(&tenant, "member").await;
    let (api_key_id, api_key) = app
        .create_api_key(&tenant, &["tenant:read", "users:read"])
        .await;
    let product = app.create_product(&tenant).await;
    let customer = app.create_customer(&tenant).await;
    let ordered = app.create_product(&tenant).await;
    let order = place_ok(app, &tenant, &customer, &[(&ordered, 1)]).await;
    Victim {
        tenant,
        user_id,
        api_key_id,
        api_key,
        product,
        customer,
        order,
    }
}

fn cross_tenant_routes(v: &Victim) -> Vec<(Method, String, Option<Value>)> {
    vec![
        (Method::GET, format!("/v1/users/{}", v.user_id), None),
        (
            Method::PATCH,
            format!("/v1/users/{}", v.user_id),
            Some(json!({"role": "viewer"})),
        ),
        (Method::DELETE, format!("/v1/users/{}", v.user_id), None),
        (Method::GET, format!("/v1/api-keys/{}", v.api_key_id), None),
        (
            Method::DELETE,
            format!("/v1/api-keys/{}", v.api_key_id),
            None,
        ),
        (
            Method::POST,
            format!("/v1/api-keys/{}/take-over", v.api_key_id),
            Some(json!({})),
        ),
        (
            Method::GET,
            format!("/v1/products/{}", v.product["id"].as_str().unwrap()),
            None,
        ),
        (
            Method::PATCH,
            format!("/v1/products/{}", v.product["id"].as_str().unwrap()),
            Some(json!({"stock": 0, "price_cents": 1})),
        ),
        (
            Method::DELETE,
            format!("/v1/products/{}", v.product["id"].as_str().unwrap()),
            None,
        ),
        (
            Method::GET,
            format!("/v1/customers/{}", v.customer["id"].as_str().unwrap()),
            None,
        ),
        (
            Method::PATCH,
            format!("/v1/customers/{}", v.customer["id"].as_str().unwrap()),
            Some(json!({"name": "Taken over"})),
        ),
        (
            Method::POST,
            format!("/v1/customers/{}/erase", v.customer["id"].as_str().unwrap()),
            Some(json!({})),
        ),
        (
            Method::GET,
            format!("/v1/orders/{}", v.order["id"].as_str().unwrap()),
            None,
        ),
        (
            Method::GET,
            format!("/v1/orders/{}/events", v.order["id"].as_str().unwrap()),
            None,
        ),
        (
            Method::POST,
            format!("/v1/orders/{}/confirm", v.order["id"].as_str().unwrap()),
            Some(json!({})),
        ),
        (
            Method::POST,
            format!("/v1/orders/{}/cancel", v.order["id"].as_str().unwrap()),
            Some(json!({"reason": "x"})),
        ),
    ]
}

#[tokio::test]
async fn another_tenants_ids_are_not_found_and_nothing_changes() {
    let app = spawn_app().await;
    let attacker = app.create_tenant().await;
    let (_, attacker_key) = app
        .create_api_key(
            &attacker,
            &[
                "users:read",
                "users:write",
                "api_keys:read",
                "api_keys:write",
                "catalog:read",
                "catalog:write",
                "orders:read",
                "orders:write",
            ],
        )
        .await;
    let v = victim(&app).await;

    for credential in [attacker.token.as_str(), attacker_key.as_str()] {
        for (method, path, body) in cross_tenant_routes(&v) {
            let response = app
                .request(method.clone(), &path, Some(credential), body.as_ref())
                .await;
            expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
        }
    }

    // Nothing changed on B's side.
    let user = expect_json(
        app.get(&format!("/v1/users/{}", v.user_id), &v.tenant.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (user["role"].as_str(), user["status"].as_str()),
        (Some("member"), Some("active")),
        "B's user untouched: {user}"
    );
    let key = expect_json(
        app.get(&format!("/v1/api-keys/{}", v.api_key_id), &v.tenant.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(
        key["revoked_at"].is_null(),
        "B's key must not be revoked: {key}"
    );
    expect_json(app.get("/v1/me", &v.api_key).await, StatusCode::OK).await;
    for (path, before) in [
        (
            format!("/v1/products/{}", v.product["id"].as_str().unwrap()),
            &v.product,
        ),
        (
            format!("/v1/customers/{}", v.customer["id"].as_str().unwrap()),
            &v.customer,
        ),
        (
            format!("/v1/orders/{}", v.order["id"].as_str().unwrap()),
            &v.order,
        ),
    ] {
        let after = expect_json(app.get(&path, &v.tenant.token).await, StatusCode::OK).await;
        assert_eq!(&after, before, "B's {path} untouched");
    }
}

#[tokio::test]
async fn lists_never_show_another_tenants_rows() {
    let app = spawn_app().await;
    let a = app.create_tenant().await;
    let v = victim(&app).await;

    // A's own rows, among them a product with B's SKU: SKUs are unique per tenant only.
    app.create_api_key(&a, &["tenant:read"]).await;
    let shared_sku = json!({"sku": v.product["sku"], "name": "A's own", "price_cents": 1, "currency": "EUR", "stock": 1});
    expect_json(
        app.post("/v1/products", &a.token, shared_sku).await,
        StatusCode::CREATED,
    )
    .await;
    app.create_customer(&a).await;
    let own_customer = app.create_customer(&a).await;
    let own_product = app.create_product(&a).await;
    place_ok(&app, &a, &own_customer, &[(&own_product, 1)]).await;

    for path in [
        "/v1/users?limit=200",
        "/v1/api-keys?limit=200",
        "/v1/products?limit=200",
        "/v1/customers?limit=200",
        "/v1/orders?limit=200",
    ] {
        let page = expect_json(app.get(path, &a.token).await, StatusCode::OK).await;
        let ids: Vec<&str> = page["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|i| i["id"].as_str())
            .collect();
        assert!(!ids.is_empty(), "{path} shows the caller's own rows");
        for foreign in [
            v.user_id.as_str(),
            v.api_key_id.as_str(),
            v.tenant.owner_id.as_str(),
            v.product["id"].as_str().unwrap(),
            v.customer["id"].as_str().unwrap(),
            v.order["id"].as_str().unwrap(),
        ] {
            assert!(
                !ids.contains(&foreign),
                "{path} leaked {foreign} of another tenant"
            );
        }
        assert!(page["items"].as_array().unwrap().iter().all(|i| {
            i["email"]
                .as_str()
                .is_none_or(|e| !e.ends_with(&format!("{}.test", v.tenant.slug)))
        }));
    }
    let me = expect_json(app.get("/v1/tenant", &a.token).await, StatusCode::OK).await;
    assert_eq!(
        me["id"],
        a.id.to_string(),
        "GET /v1/tenant shows the caller's tenant only"
    );
}

#[tokio::test]
async fn the_tenant_comes_from_the_credential_never_from_client_headers_or_query() {
    let app = spawn_app().await;
    let a = app.create_tenant().await;
    let v = victim(&app).await;

    let response = app
        .client
        .get(app.url(&format!(
            "/v1/tenant?tenant_id={}&tid={}",
            v.tenant.id, v.tenant.id
        )))
        .bearer_auth(&a.token)
        .header("X-Tenant-Id", v.tenant.id.to_string())
        .send()
        .await
        .unwrap();
    let tenant = expect_json(response, StatusCode::OK).await;
    assert_eq!(tenant["id"], a.id.to_string());
}
