//! `/v1/customers`: the catalog's customers, their validation, email uniqueness,
//! conditional requests and pagination.

use reqwest::{
    Method, StatusCode,
    header::{IF_MATCH, IF_NONE_MATCH},
};
use serde_json::{Value, json};

use crate::helpers::{etag_of, expect_json, expect_problem, send, spawn_app, unique};

fn customer_path(customer: &Value) -> String {
    format!(
        "/v1/customers/{}",
        customer["id"].as_str().expect("a customer has an id")
    )
}

#[tokio::test]
async fn a_created_customer_is_returned_normalised_with_its_etag_and_reads_back_the_same() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let email = format!("{}@Example.TEST", unique("Grace"));

    // Act
    let response = app
        .post(
            "/v1/customers",
            &tenant.token,
            json!({"email": format!(" {email} "), "name": " Grace Hopper "}),
        )
        .await;
    let etag = etag_of(&response);
    let created = expect_json(response, StatusCode::CREATED).await;

    // Assert
    let mut keys: Vec<&str> = created
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "created_at",
            "email",
            "erased_at",
            "id",
            "name",
            "updated_at",
            "version"
        ],
        "exactly the documented fields: {created}"
    );
    assert_eq!(
        created["email"],
        email.to_lowercase(),
        "the email is trimmed and lower-cased"
    );
    assert_eq!(created["name"], "Grace Hopper", "the name is trimmed");
    assert_eq!(created["version"], 1);
    assert_eq!(etag, "\"1\"", "the ETag is the version");

    let read = app.get(&customer_path(&created), &tenant.token).await;
    assert_eq!(etag_of(&read), "\"1\"");
    assert_eq!(
        expect_json(read, StatusCode::OK).await,
        created,
        "GET returns what POST did"
    );
    assert_eq!(
        app.audit_actions(tenant.id, created["id"].as_str().unwrap())
            .await,
        ["customer.created"]
    );
}

#[tokio::test]
async fn a_patch_changes_only_the_given_fields_bumps_the_version_and_is_audited() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let path = customer_path(&customer);

    // Act
    let response = app
        .patch(&path, &tenant.token, json!({"name": "Rear Admiral Hopper"}))
        .await;
    let etag = etag_of(&response);
    let updated = expect_json(response, StatusCode::OK).await;
    let no_op = app
        .patch(&path, &tenant.token, json!({"email": customer["email"]}))
        .await;

    // Assert
    assert_eq!(updated["name"], "Rear Admiral Hopper");
    assert_eq!(
        updated["email"], customer["email"],
        "the email is unchanged"
    );
    assert_eq!(updated["version"], 2);
    assert_eq!(etag, "\"2\"");
    assert_eq!(
        expect_json(no_op, StatusCode::OK).await,
        updated,
        "a PATCH to the same value changes nothing"
    );
    assert_eq!(
        expect_json(app.get(&path, &tenant.token).await, StatusCode::OK).await,
        updated,
        "the change is stored"
    );
    assert_eq!(
        app.audit_actions(tenant.id, customer["id"].as_str().unwrap())
            .await,
        ["customer.created", "customer.updated"]
    );
}

#[tokio::test]
async fn invalid_customer_fields_are_refused_with_422_naming_the_field() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let existing = app.create_customer(&tenant).await;
    let cases = [
        ("email", json!({"email": "not-an-email", "name": "Valid"})),
        ("email", json!({"email": "", "name": "Valid"})),
        ("email", json!({"email": 42, "name": "Valid"})),
        ("name", json!({"email": "valid@example.test", "name": ""})),
        (
            "name",
            json!({"email": "valid@example.test", "name": "n".repeat(201)}),
        ),
    ];

    for (field, body) in cases {
        // Act
        let created = app.post("/v1/customers", &tenant.token, body.clone()).await;
        let patched = app
            .patch(
                &customer_path(&existing),
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
    let missing = app
        .post("/v1/customers", &tenant.token, json!({"name": "No email"}))
        .await;
    expect_problem(
        missing,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    let page = expect_json(
        app.get("/v1/customers", &tenant.token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        page["items"],
        json!([existing]),
        "nothing was created or changed: {page}"
    );
}

#[tokio::test]
async fn a_taken_email_is_a_conflict_whatever_its_case() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let first = app.create_customer(&tenant).await;
    let second = app.create_customer(&tenant).await;
    let shouted = first["email"].as_str().unwrap().to_uppercase();

    // Act
    let duplicate = app
        .post(
            "/v1/customers",
            &tenant.token,
            json!({"email": shouted, "name": "Copy"}),
        )
        .await;
    let changed_onto = app
        .patch(
            &customer_path(&second),
            &tenant.token,
            json!({"email": first["email"]}),
        )
        .await;

    // Assert
    expect_problem(duplicate, StatusCode::CONFLICT, "email_taken").await;
    expect_problem(changed_onto, StatusCode::CONFLICT, "email_taken").await;
    assert_eq!(
        expect_json(
            app.get(&customer_path(&second), &tenant.token).await,
            StatusCode::OK
        )
        .await,
        second,
        "the refused PATCH changed nothing"
    );
}

#[tokio::test]
async fn conditional_requests_give_304_on_a_current_etag_and_412_on_a_stale_one() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let path = customer_path(&customer);
    let auth = format!("Bearer {}", tenant.token);

    // Act
    let not_modified = send(
        &app,
        Method::GET,
        &path,
        &[("authorization", &auth), (IF_NONE_MATCH.as_str(), "\"1\"")],
        None,
    )
    .await;
    let if_match = [
        ("authorization", auth.as_str()),
        (IF_MATCH.as_str(), "\"1\""),
    ];
    let first = send(
        &app,
        Method::PATCH,
        &path,
        &if_match,
        Some(json!({"name": "First"})),
    )
    .await;
    let stale = send(
        &app,
        Method::PATCH,
        &path,
        &if_match,
        Some(json!({"name": "Second"})),
    )
    .await;

    // Assert
    assert_eq!(not_modified.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(etag_of(&not_modified), "\"1\"", "the 304 repeats the ETag");
    let current = expect_json(first, StatusCode::OK).await;
    expect_problem(
        stale,
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    )
    .await;
    assert_eq!(
        expect_json(app.get(&path, &tenant.token).await, StatusCode::OK).await,
        current,
        "the refused PATCH changed nothing"
    );
    assert_eq!(current["name"], "First");
}

#[tokio::test]
async fn an_unknown_customer_is_not_found() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let path = format!("/v1/customers/{}", uuid::Uuid::now_v7());

    expect_problem(
        app.get(&path, &tenant.token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_problem(
        app.patch(&path, &tenant.token, json!({"name": "Ghost"}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
}

#[tokio::test]
async fn customers_are_listed_newest_first_one_page_at_a_time() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(app.create_customer(&tenant).await);
    }

    // Act: walk the pages
    let mut seen = Vec::new();
    let mut path = "/v1/customers?limit=1".to_owned();
    loop {
        let page = expect_json(app.get(&path, &tenant.token).await, StatusCode::OK).await;
        let items = page["items"].as_array().expect("a page has items");
        assert!(items.len() <= 1, "limit=1 gives at most one item: {page}");
        seen.extend(items.iter().cloned());
        match page["next_cursor"].as_str() {
            Some(cursor) => path = format!("/v1/customers?limit=1&cursor={cursor}"),
            None => break,
        }
        assert!(seen.len() <= 3, "pagination must end");
    }

    // Assert
    created.reverse();
    assert_eq!(seen, created, "every customer once, newest first");
}
