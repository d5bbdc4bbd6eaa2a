//! Request bodies and credentials as a careless client sends them: actions without a body,
//! bodies with several mistakes, values of the wrong type, a malformed API key — each
//! answered with a problem that names every field and says what to do, in words rather
//! than Rust's.

use reqwest::{Method, StatusCode, header::CONTENT_TYPE};
use serde_json::{Value, json};

use crate::helpers::{
    TestApp, TestTenant, expect_json, expect_problem, get_with_api_key_header, id, place_ok, send,
    spawn_app,
};

/// Sends `body` as raw bytes with the given content type (or none), with the owner's token.
async fn raw(
    app: &TestApp,
    tenant: &TestTenant,
    path: &str,
    content_type: Option<&str>,
    body: &'static str,
) -> reqwest::Response {
    let mut request = app
        .client
        .post(app.url(path))
        .bearer_auth(&tenant.token)
        .body(body);
    if let Some(content_type) = content_type {
        request = request.header(CONTENT_TYPE, content_type);
    }
    request.send().await.expect("the server answers")
}

/// `(field, message)` of each error in a 422 problem.
fn field_errors(problem: &Value) -> Vec<(String, String)> {
    problem["errors"]
        .as_array()
        .expect("a 422 lists its errors")
        .iter()
        .map(|e| {
            (
                e["field"].as_str().unwrap().to_owned(),
                e["message"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn actions_that_take_no_fields_accept_no_body_an_empty_one_or_an_empty_object() {
    // Arrange: three orders, one confirmed each way; a product with stock for them.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = app.create_product(&tenant).await;

    for (how, content_type, body) in [
        ("no body and no Content-Type (curl -X POST)", None, ""),
        ("an empty JSON body", Some("application/json"), ""),
        ("{}", Some("application/json"), "{}"),
        ("an empty body with another type", Some("text/plain"), ""),
    ] {
        let order = place_ok(&app, &tenant, &customer, &[(&product, 1)]).await;
        let path = format!("/v1/orders/{}/confirm", id(&order));

        // Act
        let confirmed = expect_json(
            raw(&app, &tenant, &path, content_type, body).await,
            StatusCode::OK,
        )
        .await;

        // Assert
        assert_eq!(confirmed["status"], "confirmed", "confirm with {how}");
    }
}

#[tokio::test]
async fn a_body_of_the_wrong_type_is_415_naming_the_type_to_send_and_changes_nothing() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = app.create_product(&tenant).await;
    let order = place_ok(&app, &tenant, &customer, &[(&product, 1)]).await;
    let path = format!("/v1/orders/{}/confirm", id(&order));

    for content_type in [None, Some("text/plain")] {
        let problem = expect_problem(
            raw(&app, &tenant, &path, content_type, "{}").await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        )
        .await;
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("Content-Type: application/json"),
            "the 415 says what to send: {problem}"
        );
    }
    let order = expect_json(
        app.get(&format!("/v1/orders/{}", id(&order)), &tenant.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(order["status"], "pending", "nothing changed");
}

#[tokio::test]
async fn a_command_sent_without_its_body_is_told_every_required_field() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;

    let problem = expect_problem(
        raw(&app, &tenant, "/v1/products", None, "").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    let expected: Vec<(String, String)> = ["currency", "name", "price_cents", "sku", "stock"]
        .iter()
        .map(|f| ((*f).to_owned(), "is required".to_owned()))
        .collect();
    assert_eq!(field_errors(&problem), expected, "{problem}");
}

#[tokio::test]
async fn every_mistake_in_a_body_is_reported_at_once_naming_its_field_in_plain_words() {
    // Arrange: a product body with five mistakes, one of each kind.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let body = json!({
        "sku": "has spaces",
        "name": "",
        "price_cents": "12.50",
        "currency": "usd",
        "stock": -1,
        "colour": "blue"
    });

    // Act
    let problem = expect_problem(
        app.post("/v1/products", &tenant.token, body).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;

    // Assert: every field, each once, in words a person acts on, never a Rust type name.
    let errors = field_errors(&problem);
    let fields: Vec<&str> = errors.iter().map(|(f, _)| f.as_str()).collect();
    assert_eq!(
        fields,
        ["colour", "currency", "name", "price_cents", "sku", "stock"],
        "{problem}"
    );
    let message = |field: &str| {
        errors
            .iter()
            .find(|(f, _)| f == field)
            .map(|(_, m)| m.as_str())
            .unwrap()
    };
    assert_eq!(message("colour"), "is not a field of this request");
    assert_eq!(message("price_cents"), "must be an integer");
    assert_eq!(message("stock"), "must be at least 0");
    assert!(message("sku").contains("letters, digits"), "{problem}");
    assert!(message("currency").contains("ISO 4217"), "{problem}");
    assert!(message("name").starts_with("must be 1-200"), "{problem}");
    let text = problem.to_string();
    for rust in ["i64", "i32", "u32", "String", "struct", "expected"] {
        assert!(!text.contains(rust), "no Rust words ({rust}): {problem}");
    }
    for (field, _) in &errors {
        assert!(
            problem["detail"].as_str().unwrap().contains(field.as_str()),
            "the detail names {field} too: {problem}"
        );
    }
}

#[tokio::test]
async fn a_nested_mistake_is_named_by_its_path_and_an_integral_float_is_an_integer() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = app.create_product(&tenant).await;

    let problem = expect_problem(
        app.post(
            "/v1/orders",
            &tenant.token,
            json!({"customer_id": customer["id"], "items": [
                {"product_id": product["id"], "quantity": 1},
                {"product_id": "not-a-uuid", "quantity": 0},
                {"quantity": true}
            ]}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
    assert_eq!(
        field_errors(&problem),
        [
            ("items[1].product_id", "must be a UUID"),
            ("items[1].quantity", "must be at least 1"),
            ("items[2].product_id", "is required"),
            ("items[2].quantity", "must be an integer"),
        ]
        .map(|(f, m)| (f.to_owned(), m.to_owned())),
        "{problem}"
    );

    // JSON Schema counts 2.0 as the integer 2, and so does the server.
    let placed = expect_json(
        app.post(
            "/v1/orders",
            &tenant.token,
            json!({"customer_id": customer["id"], "items": [
                {"product_id": product["id"], "quantity": 2.0}
            ]}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    assert_eq!(placed["items"][0]["quantity"], 2);
}

#[tokio::test]
async fn a_malformed_credential_is_called_what_it_was_taken_for() {
    let app = spawn_app().await;

    // An X-API-Key holding something that is not an API key (`null` after a failed step).
    let problem = expect_problem(
        get_with_api_key_header(&app, "/v1/me", "null").await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("API key") && detail.contains("tnty_") && !detail.contains("token"),
        "an X-API-Key is an API key, not an access token: {detail}"
    );

    // A bearer credential that is neither a JWT nor an API key.
    let problem = expect_problem(
        send(
            &app,
            Method::GET,
            "/v1/me",
            &[("authorization", "Bearer null")],
            None,
        )
        .await,
        StatusCode::UNAUTHORIZED,
        "unauthenticated",
    )
    .await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.contains("neither an access token") && detail.contains("API key"),
        "{detail}"
    );
}

#[tokio::test]
async fn query_parameters_of_the_wrong_shape_are_named_in_plain_words() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;

    for (query, expected) in [
        (
            "limit=ten",
            "invalid query parameter limit: must be an integer",
        ),
        (
            "customer_id=nope",
            "invalid query parameter customer_id: must be a UUID",
        ),
    ] {
        let problem = expect_problem(
            app.get(&format!("/v1/orders?{query}"), &tenant.token).await,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        )
        .await;
        assert_eq!(problem["detail"], expected, "{query}: {problem}");
    }
}
