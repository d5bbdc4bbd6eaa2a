//! `/v1/products`: the catalog's products, their validation, SKU uniqueness, conditional
//! requests, soft deletion and pagination.

use reqwest::{
    Method, StatusCode,
    header::{IF_MATCH, IF_NONE_MATCH},
};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, TestTenant, etag_of, expect_json, expect_problem, send, spawn_app, unique,
};

fn product_path(product: &Value) -> String {
    format!(
        "/v1/products/{}",
        product["id"].as_str().expect("a product has an id")
    )
}

fn keys(value: &Value) -> Vec<&str> {
    let mut keys: Vec<&str> = value
        .as_object()
        .expect("an object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    keys
}

async fn list_ids(app: &TestApp, tenant: &TestTenant) -> Vec<String> {
    let page = expect_json(
        app.get("/v1/products?limit=200", &tenant.token).await,
        StatusCode::OK,
    )
    .await;
    page["items"]
        .as_array()
        .expect("a page has items")
        .iter()
        .map(|p| p["id"].as_str().expect("an id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_created_product_is_returned_with_its_etag_and_reads_back_the_same() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let sku = unique("MUG");

    // Act
    let response = app
        .post(
            "/v1/products",
            &tenant.token,
            json!({"sku": sku, "name": "  Blue mug ", "price_cents": 1250, "currency": "EUR", "stock": 40}),
        )
        .await;
    let etag = etag_of(&response);
    let created = expect_json(response, StatusCode::CREATED).await;

    // Assert
    assert_eq!(
        keys(&created),
        [
            "created_at",
            "currency",
            "id",
            "name",
            "price_cents",
            "sku",
            "stock",
            "updated_at",
            "version"
        ],
        "exactly the documented fields: {created}"
    );
    assert_eq!(created["sku"], sku.as_str());
    assert_eq!(created["name"], "Blue mug", "the name is trimmed");
    assert_eq!(created["price_cents"], 1250);
    assert_eq!(created["currency"], "EUR");
    assert_eq!(created["stock"], 40);
    assert_eq!(created["version"], 1);
    assert_eq!(etag, "\"1\"", "the ETag is the version");
    assert!(
        created["id"]
            .as_str()
            .and_then(|id| id.parse::<uuid::Uuid>().ok())
            .is_some_and(|id| id.get_version_num() == 7),
        "ids are UUIDv7: {created}"
    );
    let created_at = created["created_at"].as_str().unwrap();
    assert!(
        time::OffsetDateTime::parse(created_at, &time::format_description::well_known::Rfc3339)
            .is_ok(),
        "created_at is RFC 3339: {created_at}"
    );

    let read = app.get(&product_path(&created), &tenant.token).await;
    assert_eq!(etag_of(&read), "\"1\"");
    assert_eq!(
        expect_json(read, StatusCode::OK).await,
        created,
        "GET returns what POST did"
    );
    assert_eq!(
        app.audit_actions(tenant.id, created["id"].as_str().unwrap())
            .await,
        ["product.created"]
    );
}

#[tokio::test]
async fn a_patch_changes_only_the_given_fields_bumps_the_version_and_is_audited() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let product = app.create_product(&tenant).await;
    let path = product_path(&product);

    // Act
    let response = app
        .patch(
            &path,
            &tenant.token,
            json!({"price_cents": 1400, "stock": 0, "name": null}),
        )
        .await;
    let etag = etag_of(&response);
    let updated = expect_json(response, StatusCode::OK).await;

    // Assert
    assert_eq!(updated["price_cents"], 1400);
    assert_eq!(updated["stock"], 0, "stock may be set to zero");
    assert_eq!(updated["version"], 2);
    assert_eq!(etag, "\"2\"");
    for unchanged in ["id", "sku", "name", "currency", "created_at"] {
        assert_eq!(
            updated[unchanged], product[unchanged],
            "{unchanged} is unchanged: {updated}"
        );
    }
    assert_eq!(
        expect_json(app.get(&path, &tenant.token).await, StatusCode::OK).await,
        updated,
        "the change is stored"
    );
    assert_eq!(
        app.audit_actions(tenant.id, product["id"].as_str().unwrap())
            .await,
        ["product.created", "product.updated"]
    );
}

#[tokio::test]
async fn a_patch_that_changes_nothing_keeps_the_version_and_records_nothing() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let product = app.create_product(&tenant).await;

    // Act
    let same =
        json!({"sku": product["sku"], "price_cents": product["price_cents"], "currency": "EUR"});
    let response = app
        .patch(&product_path(&product), &tenant.token, same)
        .await;

    // Assert
    assert_eq!(expect_json(response, StatusCode::OK).await, product);
    assert_eq!(
        app.audit_actions(tenant.id, product["id"].as_str().unwrap())
            .await,
        ["product.created"],
        "no event for a no-op"
    );
}

#[tokio::test]
async fn invalid_product_fields_are_refused_with_422_naming_the_field() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let existing = app.create_product(&tenant).await;
    let valid = json!({"sku": "VALID-1", "name": "Valid", "price_cents": 100, "currency": "EUR", "stock": 1});
    let with = |field: &str, value: Value| {
        let mut body = valid.clone();
        body[field] = value;
        body
    };
    let cases = [
        ("sku", with("sku", json!("has space"))),
        ("sku", with("sku", json!(""))),
        ("sku", with("sku", json!("x".repeat(65)))),
        ("name", with("name", json!("   "))),
        ("name", with("name", json!("n".repeat(201)))),
        ("name", with("name", json!("nul\u{0}byte"))),
        ("price_cents", with("price_cents", json!(-1))),
        ("price_cents", with("price_cents", json!(12.5))),
        ("currency", with("currency", json!("ABC"))),
        ("currency", with("currency", json!("usd"))),
        ("currency", with("currency", json!("XAU"))),
        ("stock", with("stock", json!(-1))),
        ("stock", with("stock", json!(i64::from(i32::MAX) + 1))),
    ];

    for (field, body) in cases {
        // Act
        let created = app.post("/v1/products", &tenant.token, body.clone()).await;
        let patched = app
            .patch(
                &product_path(&existing),
                &tenant.token,
                json!({field: body[field]}),
            )
            .await;

        // Assert
        for (what, response) in [("POST", created), ("PATCH", patched)] {
            let problem = expect_problem(
                response,
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
            )
            .await;
            assert_eq!(
                problem["errors"][0]["field"], field,
                "{what} with {body}: the problem names `{field}`: {problem}"
            );
        }
    }
    let unknown = app
        .patch(
            &product_path(&existing),
            &tenant.token,
            json!({"colour": "blue"}),
        )
        .await;
    expect_problem(
        unknown,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(
        list_ids(&app, &tenant).await,
        [existing["id"].as_str().unwrap()],
        "nothing was created"
    );
    assert_eq!(
        expect_json(
            app.get(&product_path(&existing), &tenant.token).await,
            StatusCode::OK
        )
        .await,
        existing,
        "nothing was changed"
    );
}

#[tokio::test]
async fn a_taken_sku_is_a_conflict_and_other_tenants_may_use_it() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let first = app.create_product(&tenant).await;
    let second = app.create_product(&tenant).await;
    let body = json!({"sku": first["sku"], "name": "Copy", "price_cents": 1, "currency": "USD", "stock": 1});

    // Act
    let duplicate = app.post("/v1/products", &tenant.token, body.clone()).await;
    let renamed_onto = app
        .patch(
            &product_path(&second),
            &tenant.token,
            json!({"sku": first["sku"]}),
        )
        .await;
    let other_tenant = app.create_tenant().await;
    let elsewhere = app.post("/v1/products", &other_tenant.token, body).await;

    // Assert
    expect_problem(duplicate, StatusCode::CONFLICT, "sku_taken").await;
    expect_problem(renamed_onto, StatusCode::CONFLICT, "sku_taken").await;
    expect_json(elsewhere, StatusCode::CREATED).await;
    assert_eq!(
        expect_json(
            app.get(&product_path(&second), &tenant.token).await,
            StatusCode::OK
        )
        .await,
        second,
        "the refused PATCH changed nothing"
    );
}

#[tokio::test]
async fn a_deleted_product_is_gone_from_the_api_but_its_row_stays_and_its_sku_is_free() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let product = app.create_product(&tenant).await;
    let kept = app.create_product(&tenant).await;
    let path = product_path(&product);
    let id = product["id"].as_str().unwrap();

    // Act
    let deleted = app.delete(&path, &tenant.token).await;

    // Assert
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    expect_problem(
        app.get(&path, &tenant.token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_problem(
        app.patch(&path, &tenant.token, json!({"stock": 5})).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_problem(
        app.delete(&path, &tenant.token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    assert_eq!(
        list_ids(&app, &tenant).await,
        [kept["id"].as_str().unwrap()],
        "only the live product is listed"
    );
    assert_eq!(
        app.audit_actions(tenant.id, id).await,
        ["product.created", "product.deleted"]
    );
    let mut db = app.owner_connection().await;
    let deleted_at_set: bool =
        sqlx::query_scalar("select deleted_at is not null from products where id = $1::uuid")
            .bind(id)
            .fetch_one(&mut db)
            .await
            .expect("the row is still there for the orders that reference it");
    assert!(deleted_at_set, "a delete is a soft delete");

    let reused = app
        .post(
            "/v1/products",
            &tenant.token,
            json!({"sku": product["sku"], "name": "Successor", "price_cents": 1, "currency": "EUR", "stock": 1}),
        )
        .await;
    let successor = expect_json(reused, StatusCode::CREATED).await;
    assert_ne!(
        successor["id"], product["id"],
        "a new product with the old SKU"
    );
}

#[tokio::test]
async fn get_with_the_current_etag_in_if_none_match_is_not_modified() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let product = app.create_product(&tenant).await;
    let path = product_path(&product);
    let auth = format!("Bearer {}", tenant.token);

    // Act
    let current = send(
        &app,
        Method::GET,
        &path,
        &[("authorization", &auth), (IF_NONE_MATCH.as_str(), "\"1\"")],
        None,
    )
    .await;
    let other = send(
        &app,
        Method::GET,
        &path,
        &[("authorization", &auth), (IF_NONE_MATCH.as_str(), "\"7\"")],
        None,
    )
    .await;

    // Assert
    assert_eq!(
        current.status(),
        StatusCode::NOT_MODIFIED,
        "the client's copy is current"
    );
    assert_eq!(etag_of(&current), "\"1\"", "the 304 repeats the ETag");
    assert!(
        current.bytes().await.unwrap().is_empty(),
        "a 304 has no body"
    );
    assert_eq!(expect_json(other, StatusCode::OK).await, product);
}

#[tokio::test]
async fn a_write_with_a_stale_if_match_is_refused_with_412_and_changes_nothing() {
    // Arrange: read version 1, then let the product move on to version 2
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let product = app.create_product(&tenant).await;
    let path = product_path(&product);
    let auth = format!("Bearer {}", tenant.token);
    let moved_on = send(
        &app,
        Method::PATCH,
        &path,
        &[("authorization", &auth), (IF_MATCH.as_str(), "\"1\"")],
        Some(json!({"stock": 9})),
    )
    .await;
    let current = expect_json(moved_on, StatusCode::OK).await;

    // Act
    let stale_patch = send(
        &app,
        Method::PATCH,
        &path,
        &[("authorization", &auth), (IF_MATCH.as_str(), "\"1\"")],
        Some(json!({"stock": 100})),
    )
    .await;
    let stale_delete = send(
        &app,
        Method::DELETE,
        &path,
        &[("authorization", &auth), (IF_MATCH.as_str(), "\"1\"")],
        None,
    )
    .await;

    // Assert
    expect_problem(
        stale_patch,
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    )
    .await;
    expect_problem(
        stale_delete,
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    )
    .await;
    assert_eq!(
        expect_json(app.get(&path, &tenant.token).await, StatusCode::OK).await,
        current,
        "the refused writes changed nothing"
    );
    let fresh_delete = send(
        &app,
        Method::DELETE,
        &path,
        &[("authorization", &auth), (IF_MATCH.as_str(), "\"2\"")],
        None,
    )
    .await;
    assert_eq!(
        fresh_delete.status(),
        StatusCode::NO_CONTENT,
        "the current ETag is accepted"
    );
}

#[tokio::test]
async fn a_write_with_a_weak_if_match_is_refused_with_412_even_for_the_current_version() {
    // Arrange: a product at version 1, whose ETag is "1"
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let product = app.create_product(&tenant).await;
    let path = product_path(&product);
    let auth = format!("Bearer {}", tenant.token);

    // Act: If-Match compares strongly (RFC 9110), so W/"1" matches nothing
    let weak_patch = send(
        &app,
        Method::PATCH,
        &path,
        &[("authorization", &auth), (IF_MATCH.as_str(), "W/\"1\"")],
        Some(json!({"stock": 100})),
    )
    .await;
    let weak_delete = send(
        &app,
        Method::DELETE,
        &path,
        &[("authorization", &auth), (IF_MATCH.as_str(), "W/\"1\"")],
        None,
    )
    .await;

    // Assert
    let problem = expect_problem(
        weak_patch,
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    )
    .await;
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("weak")),
        "the detail says that weak tags never match: {problem}"
    );
    expect_problem(
        weak_delete,
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    )
    .await;
    assert_eq!(
        expect_json(app.get(&path, &tenant.token).await, StatusCode::OK).await,
        product,
        "the refused writes changed nothing"
    );
    let weak_read = send(
        &app,
        Method::GET,
        &path,
        &[
            ("authorization", &auth),
            (IF_NONE_MATCH.as_str(), "W/\"1\""),
        ],
        None,
    )
    .await;
    assert_eq!(
        weak_read.status(),
        StatusCode::NOT_MODIFIED,
        "If-None-Match keeps weak comparison: W/\"1\" is the current version"
    );
}

#[tokio::test]
async fn products_are_listed_newest_first_one_page_at_a_time() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(app.create_product(&tenant).await);
    }
    let deleted = app.create_product(&tenant).await;
    app.delete(&product_path(&deleted), &tenant.token).await;

    // Act: walk the pages
    let mut seen = Vec::new();
    let mut path = "/v1/products?limit=1".to_owned();
    let last_page = loop {
        let page = expect_json(app.get(&path, &tenant.token).await, StatusCode::OK).await;
        let items = page["items"].as_array().expect("a page has items");
        assert!(items.len() <= 1, "limit=1 gives at most one item: {page}");
        seen.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/products?limit=1&cursor={cursor}"),
            None => break page,
        }
        assert!(seen.len() <= 3, "pagination must end");
    };

    // Assert
    created.reverse();
    assert_eq!(seen, created, "every live product once, newest first");
    assert!(
        last_page["next_cursor"].is_null(),
        "the last page has no cursor: {last_page}"
    );
}
