//! What the audit log records, and reading it.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tenantry::{
    catalog::{
        Currency, Name,
        products::{self, NewProduct, Sku},
    },
    db::{Access, Db},
};

use crate::helpers::{TestApp, TestTenant, all_pages, id, place_ok, send, spawn_app, unique};

/// The tenant's audit events, newest first, as the API lists them (every page).
async fn events(app: &TestApp, tenant: &TestTenant, query: &str) -> Vec<Value> {
    all_pages(app, tenant, &format!("/v1/audit-events{query}")).await
}

#[tokio::test]
async fn every_kind_of_mutation_records_who_did_what_with_which_credential_and_from_where() {
    // Arrange: a login (the owner's), an API key, a product, a customer, an order taken
    // through its lifecycle, a product change and a failed login.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (key_id, key) = app
        .create_api_key(
            &tenant,
            &[
                "catalog:write",
                "catalog:read",
                "orders:write",
                "orders:read",
            ],
        )
        .await;
    let customer = app.create_customer(&tenant).await;
    let product = app.create_product(&tenant).await;
    let order = place_ok(&app, &tenant, &customer, &[(&product, 1)]).await;
    let total = order["total_cents"].as_i64().unwrap();
    for (command, body) in [
        ("confirm", json!({})),
        ("pay", json!({"amount_cents": total, "reference": "pi_1"})),
    ] {
        let response = send(
            &app,
            Method::POST,
            &format!("/v1/orders/{}/{command}", id(&order)),
            &[("x-api-key", &key), ("user-agent", "audit-test/1.0")],
            Some(body),
        )
        .await;
        assert_eq!(response.status(), StatusCode::OK, "{command}");
    }
    let patched = app
        .patch(
            &format!("/v1/products/{}", id(&product)),
            &tenant.token,
            json!({"stock": 7}),
        )
        .await;
    assert_eq!(patched.status(), StatusCode::OK);
    let failed = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"tenant": tenant.slug, "email": tenant.owner_email, "password": "not the password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);

    // Act
    let logged = events(&app, &tenant, "").await;

    // Assert: one event per mutation, each with its actor and credential.
    let actions: Vec<&str> = logged
        .iter()
        .rev()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for expected in [
        "tenant.created",
        "auth.login",
        "api_key.created",
        "customer.created",
        "product.created",
        "order.placed",
        "order.confirmed",
        "order.paid",
        "product.updated",
        "auth.login_failed",
    ] {
        assert!(
            actions.contains(&expected),
            "{expected} is in the log: {actions:?}"
        );
    }
    let find = |action: &str| {
        logged
            .iter()
            .find(|e| e["action"] == action)
            .unwrap()
            .clone()
    };

    let paid = find("order.paid");
    assert_eq!(paid["actor"], format!("api_key:{key_id}"), "{paid}");
    assert_eq!(paid["credential"], format!("api_key:{key_id}"), "{paid}");
    assert_eq!(paid["target_type"], "order");
    assert_eq!(paid["target_id"], id(&order));
    assert_eq!(paid["data"]["status"], "paid", "{paid}");
    assert_eq!(paid["personal"]["user_agent"], "audit-test/1.0", "{paid}");
    assert_eq!(paid["personal"]["client_ip"], "127.0.0.1", "{paid}");
    assert!(
        paid["personal"].get("salt").is_none(),
        "the salt is not shown: {paid}"
    );
    assert!(paid["request_id"].is_string(), "{paid}");

    let updated = find("product.updated");
    assert_eq!(updated["actor"], format!("user:{}", tenant.owner_id));
    assert!(
        updated["credential"]
            .as_str()
            .unwrap()
            .starts_with("session:"),
        "a login acts with its session: {updated}"
    );
    assert_eq!(
        updated["data"]["diff"]["stock"],
        json!({"from": 9, "to": 7}),
        "a change records its diff: {updated}"
    );

    let created = find("customer.created");
    assert_eq!(
        created["personal"]["email"], customer["email"],
        "personal data apart: {created}"
    );
    assert!(created["data"].get("email").is_none(), "{created}");

    let failed = find("auth.login_failed");
    assert_eq!(failed["actor"], "anonymous");
    assert_eq!(failed["credential"], Value::Null);
    assert_eq!(failed["personal"]["email"], tenant.owner_email, "{failed}");
}

#[tokio::test]
async fn a_change_that_rolls_back_leaves_no_audit_event_and_one_that_commits_leaves_one() {
    // Arrange: the application function, in a transaction the test controls.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let db = Db::connect(&app.config).unwrap();
    let principal = app.principal_of(&tenant).await;
    let new = |sku: &str| NewProduct {
        sku: Sku::parse(sku).unwrap(),
        name: Name::parse("Rolled back").unwrap(),
        price_cents: 100,
        currency: Currency::parse("EUR").unwrap(),
        stock: 1,
    };
    let (rolled_back, committed) = (unique("RB"), unique("OK"));

    // Act: the same change, once rolled back and once committed.
    let mut tx = db.tenant(&principal, Access::ReadWrite).await.unwrap();
    let dropped = products::create(&mut tx, &principal, new(&rolled_back))
        .await
        .unwrap();
    drop(tx); // uncommitted: rolled back
    let mut tx = db.tenant(&principal, Access::ReadWrite).await.unwrap();
    let kept = products::create(&mut tx, &principal, new(&committed))
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // Assert
    assert_eq!(
        app.audit_actions(tenant.id, &dropped.id.to_string()).await,
        Vec::<String>::new(),
        "no event for a change that rolled back"
    );
    assert_eq!(
        app.audit_actions(tenant.id, &kept.id.to_string()).await,
        ["product.created"],
        "one event for the change that committed"
    );
}

#[tokio::test]
async fn the_log_is_filtered_paged_newest_first_and_streamed_as_ndjson() {
    // Arrange: three products, one changed twice.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let products: Vec<Value> = vec![
        app.create_product(&tenant).await,
        app.create_product(&tenant).await,
        app.create_product(&tenant).await,
    ];
    for stock in [5, 6] {
        let response = app
            .patch(
                &format!("/v1/products/{}", id(&products[0])),
                &tenant.token,
                json!({"stock": stock}),
            )
            .await;
        assert_eq!(response.status(), StatusCode::OK);
    }

    // Act + Assert: filters
    let created = events(&app, &tenant, "?action=product.created&limit=2").await;
    let ids: Vec<&str> = created
        .iter()
        .filter_map(|e| e["target_id"].as_str())
        .collect();
    assert_eq!(
        ids,
        products.iter().rev().map(id).collect::<Vec<_>>(),
        "every product.created, newest first, across pages of 2"
    );
    let about_one = events(
        &app,
        &tenant,
        &format!("?target_type=product&target_id={}", id(&products[0])),
    )
    .await;
    let actions: Vec<&str> = about_one
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    assert_eq!(
        actions,
        ["product.updated", "product.updated", "product.created"]
    );
    let by_owner = events(&app, &tenant, &format!("?actor=user:{}", tenant.owner_id)).await;
    assert!(
        by_owner
            .iter()
            .all(|e| e["actor"] == format!("user:{}", tenant.owner_id))
    );
    let none_yet = events(&app, &tenant, "?from=2999-01-01T00:00:00Z").await;
    assert!(
        none_yet.is_empty(),
        "nothing after a future time: {none_yet:?}"
    );

    // NDJSON: every matching event, one per line, without paging.
    let streamed = send(
        &app,
        Method::GET,
        "/v1/audit-events?target_type=product",
        &[
            ("authorization", &format!("Bearer {}", tenant.token)),
            ("accept", "application/x-ndjson"),
        ],
        None,
    )
    .await;
    assert_eq!(streamed.status(), StatusCode::OK);
    assert_eq!(streamed.headers()["content-type"], "application/x-ndjson");
    let text = streamed.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "3 created + 2 updated:\n{text}");
    assert_eq!(lines[0]["action"], "product.updated");
}

#[tokio::test]
async fn a_tenant_reads_only_its_own_log_and_a_viewer_not_at_all() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let other = app.create_tenant().await;
    let product = app.create_product(&other).await;

    let mine = events(&app, &tenant, "").await;
    assert!(
        mine.iter().all(|e| e["target_id"] != id(&product)),
        "another tenant's events are not listed"
    );
    let (_, viewer_token) = app.create_user(&tenant, "viewer").await;
    let refused = app.get("/v1/audit-events", &viewer_token).await;
    assert_eq!(
        refused.status(),
        StatusCode::FORBIDDEN,
        "audit:read is not a viewer's"
    );
}

#[tokio::test]
async fn an_empty_or_overlong_filter_is_refused_not_read_as_matching_nothing() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    for query in [
        "action=",
        "actor=&action=order.paid",
        &format!("target_id={}", "x".repeat(201)),
    ] {
        let response = app
            .get(&format!("/v1/audit-events?{query}"), &tenant.token)
            .await;
        let problem =
            crate::helpers::expect_problem(response, StatusCode::BAD_REQUEST, "invalid_query")
                .await;
        assert!(
            problem["detail"].as_str().unwrap().contains("characters"),
            "{query}: {problem}"
        );
    }
}
