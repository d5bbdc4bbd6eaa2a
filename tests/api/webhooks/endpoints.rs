//! Managing endpoints: create (secret shown once), read, list, change with If-Match,
//! delete; scopes and quota; what is refused (bad input, non-public targets when saved and
//! when sent).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::{
    error_fields, etag_of, expect_json, expect_problem, send, spawn_app, spawn_app_with,
};

#[tokio::test]
async fn an_endpoint_is_created_with_its_secret_shown_once_then_read_changed_and_deleted() {
    // Arrange
    let app = spawn_app_with(&[("TENANTRY_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")]).await;
    let tenant = app.create_tenant().await;

    // Act: create
    let response = app
        .post(
            "/v1/webhook-endpoints",
            &tenant.token,
            json!({"url": "https://hooks.example.com/a", "event_types": ["order.*"], "description": "Warehouse"}),
        )
        .await;
    let etag = etag_of(&response);
    let created = expect_json(response, StatusCode::CREATED).await;

    // Assert: the secret is a Standard Webhooks secret, shown here only
    let secret = created["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let bytes = base64_len(&secret["whsec_".len()..]);
    assert!((24..=32).contains(&bytes), "{bytes} random bytes");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["event_types"], json!(["order.*"]));
    assert_eq!(etag, "\"1\"");
    let id = created["id"].as_str().unwrap();
    let read = expect_json(
        app.get(&format!("/v1/webhook-endpoints/{id}"), &tenant.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert!(
        read.get("secret").is_none(),
        "no secret after creation: {read}"
    );
    assert_eq!(read["description"], "Warehouse");
    let listed = expect_json(
        app.get("/v1/webhook-endpoints", &tenant.token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed["items"].as_array().unwrap().len(), 1);
    assert!(
        !listed.to_string().contains("whsec_"),
        "lists show no secret"
    );

    // Act: change with a stale If-Match, then with the right one
    let path = format!("/v1/webhook-endpoints/{id}");
    let bearer = format!("Bearer {}", tenant.token);
    let stale = send(
        &app,
        Method::PATCH,
        &path,
        &[("authorization", &bearer), ("if-match", "\"7\"")],
        Some(json!({"enabled": false})),
    )
    .await;
    expect_problem(
        stale,
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    )
    .await;
    let changed = send(
        &app,
        Method::PATCH,
        &path,
        &[("authorization", &bearer), ("if-match", "\"1\"")],
        Some(json!({"enabled": false, "event_types": ["order.placed", "order.paid"], "description": null})),
    )
    .await;
    let changed = expect_json(changed, StatusCode::OK).await;
    assert_eq!(changed["enabled"], false);
    assert_eq!(
        changed["event_types"],
        json!(["order.placed", "order.paid"])
    );
    assert_eq!(changed["description"], json!(null));
    assert_eq!(changed["version"], 2);

    // Act: delete
    let deleted = app.delete(&path, &tenant.token).await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);
    expect_problem(
        app.get(&path, &tenant.token).await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let actions = app.audit_actions(tenant.id, id).await;
    assert_eq!(
        actions,
        [
            "webhook_endpoint.created",
            "webhook_endpoint.updated",
            "webhook_endpoint.deleted"
        ]
    );
}

fn base64_len(encoded: &str) -> usize {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64")
        .len()
}

#[tokio::test]
async fn bad_input_is_refused_naming_the_field_and_creates_nothing() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let cases = [
        (
            json!({"url": "ftp://example.com/x", "event_types": ["*"]}),
            "url",
        ),
        (json!({"url": "not a url", "event_types": ["*"]}), "url"),
        (
            json!({"url": "https://example.com/x", "event_types": []}),
            "event_types",
        ),
        (
            json!({"url": "https://example.com/x", "event_types": ["Order.Placed"]}),
            "event_types[0]",
        ),
        (
            json!({"url": "https://example.com/x", "event_types": ["order.*", "order*"]}),
            "event_types[1]",
        ),
        (json!({"event_types": ["*"]}), "url"),
        (
            json!({"url": "https://example.com/x", "event_types": ["*"], "description": "a\u{7}b"}),
            "description",
        ),
    ];
    for (body, field) in cases {
        let response = app
            .post("/v1/webhook-endpoints", &tenant.token, body.clone())
            .await;
        assert_eq!(
            response.status(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body} is refused"
        );
        let problem = expect_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert!(
            error_fields(&problem).contains(&field),
            "{body}: the problem names {field}: {problem}"
        );
    }
    let listed = expect_json(
        app.get("/v1/webhook-endpoints", &tenant.token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed["items"], json!([]), "nothing was created");
}

#[tokio::test]
async fn non_public_targets_are_refused_when_private_targets_are_not_allowed() {
    // Arrange: the default settings (private targets not allowed)
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;

    for url in [
        "http://127.0.0.1:8080/hook",
        "http://10.0.0.7/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9000/hook",
        "http://[::ffff:192.168.0.1]/hook",
        "http://localhost:9000/hook",
    ] {
        // Act
        let response = app
            .post(
                "/v1/webhook-endpoints",
                &tenant.token,
                json!({"url": url, "event_types": ["*"]}),
            )
            .await;

        // Assert
        let problem = expect_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "webhook_target_forbidden",
        )
        .await;
        assert_eq!(error_fields(&problem), ["url"], "{url}: {problem}");
    }
    let listed = expect_json(
        app.get("/v1/webhook-endpoints", &tenant.token).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(listed["items"], json!([]), "nothing was created");

    // A public endpoint cannot be moved to a private target either.
    let created = expect_json(
        app.post(
            "/v1/webhook-endpoints",
            &tenant.token,
            json!({"url": "https://93.184.216.34/hook", "event_types": ["*"]}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let id = created["id"].as_str().unwrap();
    let moved = app
        .patch(
            &format!("/v1/webhook-endpoints/{id}"),
            &tenant.token,
            json!({"url": "http://169.254.169.254/"}),
        )
        .await;
    expect_problem(
        moved,
        StatusCode::UNPROCESSABLE_ENTITY,
        "webhook_target_forbidden",
    )
    .await;
}

#[tokio::test]
async fn webhooks_need_their_scopes_and_count_against_the_plan() {
    let app = spawn_app_with(&[("TENANTRY_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")]).await;
    let tenant = app.create_tenant().await; // free: 2 endpoints
    let (_, member) = app.create_user(&tenant, "member").await;
    let body = json!({"url": "https://hooks.example.com/x", "event_types": ["*"]});

    expect_problem(
        app.get("/v1/webhook-endpoints", &member).await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;
    expect_problem(
        app.post("/v1/webhook-endpoints", &member, body.clone())
            .await,
        StatusCode::FORBIDDEN,
        "insufficient_scope",
    )
    .await;

    for _ in 0..2 {
        expect_json(
            app.post("/v1/webhook-endpoints", &tenant.token, body.clone())
                .await,
            StatusCode::CREATED,
        )
        .await;
    }
    expect_problem(
        app.post("/v1/webhook-endpoints", &tenant.token, body).await,
        StatusCode::FORBIDDEN,
        "quota_exceeded",
    )
    .await;
}

#[tokio::test]
async fn another_tenants_endpoint_is_not_found() {
    let app = spawn_app_with(&[("TENANTRY_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true")]).await;
    let (a, b) = (app.create_tenant().await, app.create_tenant().await);
    let created = expect_json(
        app.post(
            "/v1/webhook-endpoints",
            &a.token,
            json!({"url": "https://hooks.example.com/x", "event_types": ["*"]}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let id = created["id"].as_str().unwrap();
    for (method, path) in [
        (Method::GET, format!("/v1/webhook-endpoints/{id}")),
        (
            Method::GET,
            format!("/v1/webhook-endpoints/{id}/deliveries"),
        ),
        (
            Method::POST,
            format!("/v1/webhook-endpoints/{id}/rotate-secret"),
        ),
        (Method::POST, format!("/v1/webhook-endpoints/{id}/test")),
        (Method::DELETE, format!("/v1/webhook-endpoints/{id}")),
    ] {
        let response = app
            .request(method.clone(), &path, Some(&b.token), None)
            .await;
        expect_problem(response, StatusCode::NOT_FOUND, "not_found").await;
    }
}

#[tokio::test]
async fn a_target_that_turned_non_public_is_refused_at_send_time_and_nothing_is_sent() {
    // Arrange: a server that does not allow private targets, and two endpoints saved with
    // a public address, then pointed (behind the API's back, as DNS could) at a receiver
    // on loopback: by name and by literal.
    let app =
        super::spawn_delivering_app(&[("TENANTRY_WEBHOOK_ALLOW_PRIVATE_TARGETS", "false")]).await;
    let tenant = app.create_tenant().await;
    let receiver = super::Receiver::spawn().await;
    let port = receiver
        .url
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches("/hook");
    let mut owner = app.owner().await;
    for target in [
        format!("http://localhost:{port}/hook"),
        format!("http://127.0.0.1:{port}/hook"),
    ] {
        let (endpoint, _) =
            super::create_endpoint(&app, &tenant, "https://93.184.216.34/hook", &["*"]).await;
        sqlx::query("update webhook_endpoints set url = $1 where id = $2::uuid")
            .bind(&target)
            .bind(&endpoint)
            .execute(&mut owner)
            .await
            .unwrap();

        // Act
        let test = app
            .post(
                &format!("/v1/webhook-endpoints/{endpoint}/test"),
                &tenant.token,
                json!({}),
            )
            .await;
        expect_json(test, StatusCode::ACCEPTED).await;

        // Assert: the attempt failed without a request, naming why
        let attempt = super::eventually(
            std::time::Duration::from_secs(20),
            "a refused attempt",
            async || {
                let listed = super::deliveries(&app, &tenant, &endpoint).await;
                listed.first()?["attempts"].as_array()?.first().cloned()
            },
        )
        .await;
        assert_eq!(attempt["status_code"], json!(null), "{target}: {attempt}");
        assert!(
            attempt["error"]
                .as_str()
                .is_some_and(|e| e.contains("non-public")),
            "{target}: {attempt}"
        );
    }
    assert_eq!(receiver.count(), 0, "nothing reached the loopback receiver");
}
