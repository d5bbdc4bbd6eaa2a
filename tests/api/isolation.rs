//! Cross-tenant attempts fail as "not found" and change nothing, over REST and GraphQL.
//!
//! One row per route that takes an id, and one per GraphQL field that takes one: a new
//! route or field with an id is covered by adding a row. Over GraphQL a single object of
//! another tenant is `null` (as one that does not exist), a connection never shows its
//! rows, and a mutation on it fails with the code its REST twin gives.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    graphql::{error_codes, graphql, node_ids},
    helpers::{TestApp, TestTenant, expect_json, expect_problem, id, place_ok, spawn_app},
};

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
    assert_untouched(&app, &v).await;
}

/// B's user, key, product, customer and order are as they were made (read with B's
/// credentials over REST).
async fn assert_untouched(app: &TestApp, v: &Victim) {
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
    assert_eq!(
        key["created_by"],
        format!("user:{}", v.tenant.owner_id),
        "B's key must not be taken over: {key}"
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

/// What a GraphQL operation carrying B's ids must answer.
#[derive(Debug)]
enum Answer {
    /// `data.<field>` is null, without an error: the tenant has no such object.
    Null(&'static str),
    /// `data.<field>` is a connection showing none of B's ids.
    NoneOfB(&'static str),
    /// `data.<field>` is an empty connection.
    Empty(&'static str),
    /// `data.<field>` is null and the only error has this code (the REST twin's).
    Refused(&'static str, &'static str),
}

/// A's own customer and product, for the orders A tries to place with B's.
struct Own {
    customer: Value,
    product: Value,
}

fn cross_tenant_operations(v: &Victim, own: &Own) -> Vec<(String, Answer)> {
    use Answer::{Empty, NoneOfB, Null, Refused};
    let (user, key) = (&v.user_id, &v.api_key_id);
    let (product, customer, order) = (id(&v.product), id(&v.customer), id(&v.order));
    let total = &v.order["total_cents"];
    let (own_customer, own_product) = (id(&own.customer), id(&own.product));
    vec![
        // Single objects: null, as one that does not exist.
        (
            format!(r#"{{ user(id: "{user}") {{ id email }} }}"#),
            Null("user"),
        ),
        (
            format!(r#"{{ apiKey(id: "{key}") {{ id }} }}"#),
            Null("apiKey"),
        ),
        (
            format!(r#"{{ product(id: "{product}") {{ id stock }} }}"#),
            Null("product"),
        ),
        (
            format!(r#"{{ customer(id: "{customer}") {{ id email }} }}"#),
            Null("customer"),
        ),
        (
            format!(
                r#"{{ order(id: "{order}") {{ id customer {{ name }} events {{ eventType }} }} }}"#
            ),
            Null("order"),
        ),
        // Connections: none of B's rows.
        (
            "{ users(first: 200) { edges { node { id } } } }".into(),
            NoneOfB("users"),
        ),
        (
            "{ apiKeys(first: 200) { edges { node { id } } } }".into(),
            NoneOfB("apiKeys"),
        ),
        (
            "{ products(first: 200) { edges { node { id } } } }".into(),
            NoneOfB("products"),
        ),
        (
            "{ customers(first: 200) { edges { node { id } } } }".into(),
            NoneOfB("customers"),
        ),
        (
            "{ orders(first: 200) { edges { node { id } } } }".into(),
            NoneOfB("orders"),
        ),
        (
            format!(
                r#"{{ orders(first: 200, customerId: "{customer}") {{ edges {{ node {{ id }} }} }} }}"#
            ),
            Empty("orders"),
        ),
        // Mutations: refused as over REST, changing nothing.
        (
            format!(
                r#"mutation {{ updateProduct(id: "{product}", input: {{stock: 0, priceCents: 1}}) {{ id }} }}"#
            ),
            Refused("updateProduct", "not_found"),
        ),
        (
            format!(r#"mutation {{ deleteProduct(id: "{product}") {{ id }} }}"#),
            Refused("deleteProduct", "not_found"),
        ),
        (
            format!(
                r#"mutation {{ updateCustomer(id: "{customer}", input: {{name: "Taken over"}}) {{ id }} }}"#
            ),
            Refused("updateCustomer", "not_found"),
        ),
        (
            format!(r#"mutation {{ eraseCustomer(id: "{customer}") {{ id }} }}"#),
            Refused("eraseCustomer", "not_found"),
        ),
        (
            format!(r#"mutation {{ confirmOrder(id: "{order}") {{ id }} }}"#),
            Refused("confirmOrder", "not_found"),
        ),
        (
            format!(
                r#"mutation {{ payOrder(id: "{order}", amountCents: {total}, reference: "pi_x") {{ id }} }}"#
            ),
            Refused("payOrder", "not_found"),
        ),
        (
            format!(r#"mutation {{ shipOrder(id: "{order}") {{ id }} }}"#),
            Refused("shipOrder", "not_found"),
        ),
        (
            format!(r#"mutation {{ deliverOrder(id: "{order}") {{ id }} }}"#),
            Refused("deliverOrder", "not_found"),
        ),
        (
            format!(r#"mutation {{ cancelOrder(id: "{order}", reason: "x") {{ id }} }}"#),
            Refused("cancelOrder", "not_found"),
        ),
        (
            format!(
                r#"mutation {{ cancelOrder(id: "{order}", reason: "x", idempotencyKey: "{}") {{ id }} }}"#,
                uuid::Uuid::new_v4()
            ),
            Refused("cancelOrder", "not_found"),
        ),
        // Placing an order with B's customer or B's product: REST's 422 codes.
        (
            format!(
                r#"mutation {{ placeOrder(input: {{customerId: "{customer}", items: [{{productId: "{own_product}", quantity: 1}}]}}) {{ id }} }}"#
            ),
            Refused("placeOrder", "customer_not_found"),
        ),
        (
            format!(
                r#"mutation {{ placeOrder(input: {{customerId: "{own_customer}", items: [{{productId: "{product}", quantity: 1}}]}}) {{ id }} }}"#
            ),
            Refused("placeOrder", "product_not_found"),
        ),
        (
            format!(r#"mutation {{ updateUser(id: "{user}", input: {{role: VIEWER}}) {{ id }} }}"#),
            Refused("updateUser", "not_found"),
        ),
        (
            format!(r#"mutation {{ deactivateUser(id: "{user}") {{ id }} }}"#),
            Refused("deactivateUser", "not_found"),
        ),
        (
            format!(r#"mutation {{ revokeApiKey(id: "{key}") {{ id }} }}"#),
            Refused("revokeApiKey", "not_found"),
        ),
        (
            format!(r#"mutation {{ takeOverApiKey(id: "{key}") {{ id }} }}"#),
            Refused("takeOverApiKey", "not_found"),
        ),
    ]
}

/// The REST rows' answers to the REST twins of [`cross_tenant_operations`], for
/// comparison: placing an order with B's customer or product is 422 with these codes.
async fn rest_place_refusals(app: &TestApp, attacker: &TestTenant, v: &Victim, own: &Own) {
    for (customer, product, code) in [
        (&v.customer, &own.product, "customer_not_found"),
        (&own.customer, &v.product, "product_not_found"),
    ] {
        let response = crate::helpers::place(app, attacker, customer, &[(product, 1)]).await;
        expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY, code).await;
    }
}

#[tokio::test]
async fn graphql_with_another_tenants_ids_finds_nothing_and_changes_nothing() {
    // Arrange
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
    let own = Own {
        customer: app.create_customer(&attacker).await,
        product: app.create_product(&attacker).await,
    };
    place_ok(&app, &attacker, &own.customer, &[(&own.product, 1)]).await;
    let v = victim(&app).await;
    let b_ids = [
        v.user_id.as_str(),
        v.api_key_id.as_str(),
        v.tenant.owner_id.as_str(),
        id(&v.product),
        id(&v.customer),
        id(&v.order),
    ];
    rest_place_refusals(&app, &attacker, &v, &own).await;

    // Act / Assert: every row, with each of A's credentials.
    for credential in [attacker.token.as_str(), attacker_key.as_str()] {
        for (operation, expected) in cross_tenant_operations(&v, &own) {
            let answer = graphql(&app, credential, &operation, json!({})).await;
            let context = format!("{operation}\n→ {answer:#}");
            match expected {
                Answer::Null(field) => {
                    assert_eq!(answer["errors"], Value::Null, "no error: {context}");
                    assert!(
                        answer["data"]
                            .as_object()
                            .is_some_and(|d| d.contains_key(field)),
                        "data.{field} is there: {context}"
                    );
                    assert_eq!(answer["data"][field], Value::Null, "{context}");
                }
                Answer::NoneOfB(field) => {
                    assert_eq!(answer["errors"], Value::Null, "no error: {context}");
                    let ids = node_ids(&answer, field);
                    assert!(!ids.is_empty(), "A sees its own {field}: {context}");
                    for foreign in b_ids {
                        assert!(!ids.contains(&foreign), "leaked {foreign}: {context}");
                    }
                }
                Answer::Empty(field) => {
                    assert_eq!(answer["errors"], Value::Null, "no error: {context}");
                    assert_eq!(node_ids(&answer, field), Vec::<&str>::new(), "{context}");
                }
                Answer::Refused(field, code) => {
                    assert_eq!(error_codes(&answer), [code], "{context}");
                    assert_eq!(answer["errors"][0]["path"], json!([field]), "{context}");
                    assert_eq!(answer["data"][field], Value::Null, "{context}");
                }
            }
        }
    }

    // Assert: nothing changed on B's side, nor was anything placed from A's side.
    assert_untouched(&app, &v).await;
    let a_orders = expect_json(
        app.get("/v1/orders?limit=200", &attacker.token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        a_orders["items"].as_array().unwrap().len(),
        1,
        "A has only the order it placed itself: {a_orders}"
    );
}

#[tokio::test]
async fn graphql_nested_links_of_a_tenants_orders_never_reach_another_tenants_rows() {
    // Arrange: A and B each with a customer, a product and orders.
    let app = spawn_app().await;
    let a = app.create_tenant().await;
    let v = victim(&app).await;
    let customer = app.create_customer(&a).await;
    let product = app.create_product(&a).await;
    for _ in 0..3 {
        place_ok(&app, &a, &customer, &[(&product, 1)]).await;
    }

    // Act
    let answer = graphql(
        &app,
        &a.token,
        "{ orders(first: 200) { edges { node { id customerId customer { id email } \
           items { productId product { id } } events { eventType metadata } } } } }",
        json!({}),
    )
    .await;

    // Assert: three orders, every link A's own, never B's.
    assert_eq!(answer["errors"], Value::Null, "{answer:#}");
    let edges = answer["data"]["orders"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 3, "{answer:#}");
    for edge in edges {
        let node = &edge["node"];
        assert_eq!(node["customerId"].as_str(), Some(id(&customer)), "{node}");
        assert_eq!(
            node["customer"]["id"].as_str(),
            Some(id(&customer)),
            "{node}"
        );
        assert_ne!(node["customer"]["id"], v.customer["id"], "{node}");
        assert!(
            node["customer"]["email"]
                .as_str()
                .is_some_and(|e| !e.ends_with(&format!("{}.test", v.tenant.slug))),
            "{node}"
        );
        for item in node["items"].as_array().unwrap() {
            assert_eq!(item["product"]["id"].as_str(), Some(id(&product)), "{node}");
        }
        let events = node["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "only the order's own history: {node}");
    }
    assert!(
        !answer.to_string().contains(id(&v.order)) && !answer.to_string().contains(id(&v.customer)),
        "nothing of B's anywhere in the answer: {answer:#}"
    );
}
