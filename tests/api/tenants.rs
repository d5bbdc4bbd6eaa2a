//! The operator API (`/v1/platform/tenants`), suspension, the tenant's own profile
//! (`/v1/tenant`), and the `tenantry` command line that operators use alongside them.

use std::collections::HashSet;

use reqwest::{
    Method, Response, StatusCode,
    header::{IF_MATCH, IF_NONE_MATCH},
};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    OPERATOR_TOKEN, PASSWORD, TestApp, database_url, etag_of, expect_json, expect_problem, send,
    spawn_app, unique,
};

const TENANTS: &str = "/v1/platform/tenants";

fn tenant_path(id: impl std::fmt::Display) -> String {
    format!("{TENANTS}/{id}")
}

/// A login attempt that may fail (the helper's `login` insists on 200).
async fn try_login(app: &TestApp, slug: &str, email: &str, password: &str) -> Response {
    app.request(
        Method::POST,
        "/v1/auth/login",
        None,
        Some(&json!({"tenant": slug, "email": email, "password": password})),
    )
    .await
}

async fn set_status(app: &TestApp, id: impl std::fmt::Display, status: &str) {
    let response = app
        .patch(&tenant_path(id), OPERATOR_TOKEN, json!({"status": status}))
        .await;
    let tenant = expect_json(response, StatusCode::OK).await;
    assert_eq!(
        tenant["status"], status,
        "the operator set the status to {status}: {tenant}"
    );
}

// ---------------------------------------------------------------------------------------
// Creating tenants
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn an_operator_creates_a_tenant_with_its_owner() {
    // Arrange
    let app = spawn_app().await;
    let slug = unique("acme");
    let owner_email = format!("owner@{slug}.test");

    // Act
    let response = app
        .post(TENANTS, OPERATOR_TOKEN, json!({"slug": slug, "name": "Acme Corp", "owner_email": owner_email, "owner_password": PASSWORD}))
        .await;

    // Assert
    let created = expect_json(response, StatusCode::CREATED).await;
    let tenant = &created["tenant"];
    assert!(
        tenant["id"]
            .as_str()
            .is_some_and(|id| id.parse::<Uuid>().is_ok()),
        "tenant.id is a UUID: {created}"
    );
    assert_eq!(tenant["slug"], slug, "tenant.slug: {created}");
    assert_eq!(tenant["name"], "Acme Corp", "tenant.name: {created}");
    assert_eq!(
        tenant["plan"], "free",
        "the plan defaults to free: {created}"
    );
    assert_eq!(
        tenant["status"], "active",
        "a new tenant is active: {created}"
    );
    assert_eq!(
        tenant["version"], 1,
        "a new tenant is at version 1: {created}"
    );
    assert!(
        tenant["created_at"].is_string() && tenant["updated_at"].is_string(),
        "timestamps present: {created}"
    );
    let owner = &created["owner"];
    assert!(
        owner["id"]
            .as_str()
            .is_some_and(|id| id.parse::<Uuid>().is_ok()),
        "owner.id is a UUID: {created}"
    );
    assert_eq!(owner["email"], owner_email, "owner.email: {created}");
    assert_eq!(owner["role"], "owner", "owner.role: {created}");
    assert!(
        created.get("owner_password").is_none(),
        "a chosen password is never echoed back: {created}"
    );
    assert!(
        owner.get("password_hash").is_none(),
        "no hash leaks: {created}"
    );
    app.login(&slug, &owner_email, PASSWORD).await;
}

#[tokio::test]
async fn omitting_the_owner_password_returns_a_generated_one_that_logs_in() {
    // Arrange
    let app = spawn_app().await;
    let slug = unique("gen");
    let owner_email = format!("owner@{slug}.test");

    // Act
    let response = app
        .post(TENANTS, OPERATOR_TOKEN, json!({"slug": slug, "name": "Generated", "plan": "enterprise", "owner_email": owner_email}))
        .await;

    // Assert
    let created = expect_json(response, StatusCode::CREATED).await;
    assert_eq!(
        created["tenant"]["plan"], "enterprise",
        "the requested plan is kept: {created}"
    );
    let password = created["owner_password"]
        .as_str()
        .expect("a generated owner_password is returned")
        .to_owned();
    assert!(
        password.len() >= 12,
        "the generated password is at least 12 characters, got {}",
        password.len()
    );
    let tokens = app.login(&slug, &owner_email, &password).await;
    assert!(
        tokens["access_token"].is_string(),
        "the generated password logs in: {tokens}"
    );
    let fetched = expect_json(
        app.get(
            &tenant_path(created["tenant"]["id"].as_str().unwrap()),
            OPERATOR_TOKEN,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert!(
        fetched.get("owner_password").is_none(),
        "the password is shown only once, at creation: {fetched}"
    );
}

#[tokio::test]
async fn a_taken_slug_is_a_conflict() {
    // Arrange
    let app = spawn_app().await;
    let existing = app.create_tenant().await;

    // Act
    let response = app
        .post(
            TENANTS,
            OPERATOR_TOKEN,
            json!({"slug": existing.slug, "name": "Impostor", "owner_email": "someone@else.test", "owner_password": PASSWORD}),
        )
        .await;

    // Assert
    expect_problem(response, StatusCode::CONFLICT, "slug_taken").await;
    let original = expect_json(
        app.get(&tenant_path(existing.id), OPERATOR_TOKEN).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        original["name"], "Test tenant",
        "the existing tenant is untouched: {original}"
    );
}

#[tokio::test]
async fn an_invalid_slug_email_or_password_is_refused_naming_the_field() {
    // Arrange
    let app = spawn_app().await;
    let valid = |slug: &str| json!({"slug": slug, "name": "Bad", "owner_email": "owner@bad.test", "owner_password": PASSWORD});
    let mut cases: Vec<(String, Value, &str)> = [
        "ab",
        "-acme",
        "acme-",
        "Acme",
        "ac me",
        "acme_1",
        "",
        &"x".repeat(64),
        "ünï",
    ]
    .into_iter()
    .map(|slug| (format!("slug {slug:?}"), valid(slug), "slug"))
    .collect();
    let mut bad_email = valid(&unique("ok"));
    bad_email["owner_email"] = json!("not-an-email");
    cases.push((
        "owner_email not an email".to_owned(),
        bad_email,
        "owner_email",
    ));
    let mut short_password = valid(&unique("ok"));
    short_password["owner_password"] = json!("short");
    cases.push((
        "owner_password too short".to_owned(),
        short_password,
        "owner_password",
    ));
    let mut blank_name = valid(&unique("ok"));
    blank_name["name"] = json!("   ");
    cases.push(("blank name".to_owned(), blank_name, "name"));

    for (what, body, field) in cases {
        // Act
        let response = app.post(TENANTS, OPERATOR_TOKEN, body).await;

        // Assert
        let problem = expect_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        let fields: Vec<&str> = problem["errors"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e["field"].as_str())
            .collect();
        assert_eq!(
            fields,
            vec![field],
            "{what}: expected one error for `{field}`: {problem}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Reading, listing and changing tenants
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_operator_list_pages_newest_first_by_cursor_without_duplicates() {
    // Arrange: three tenants, created in order (ids are time-ordered).
    let app = spawn_app().await;
    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(app.create_tenant().await.id.to_string());
    }

    // Act: page one at a time until all three have been seen. Tenants other tests create
    // meanwhile are newer, so they can only appear before ours.
    let mut seen = HashSet::new();
    let mut ours_in_order = Vec::new();
    let mut previous: Option<String> = None;
    let mut cursor: Option<String> = None;
    for _ in 0..2000 {
        let path = match &cursor {
            Some(cursor) => format!("{TENANTS}?limit=1&cursor={cursor}"),
            None => format!("{TENANTS}?limit=1"),
        };
        let page = expect_json(app.get(&path, OPERATOR_TOKEN).await, StatusCode::OK).await;
        let items = page["items"].as_array().expect("a page has items");
        assert_eq!(
            items.len(),
            1,
            "limit=1 gives exactly one item while more remain: {page}"
        );
        let id = items[0]["id"].as_str().expect("items have ids").to_owned();
        assert!(seen.insert(id.clone()), "tenant {id} appeared on two pages");
        if let Some(previous) = &previous {
            assert!(id < *previous, "newest first: {id} came after {previous}");
        }
        if created.contains(&id) {
            ours_in_order.push(id.clone());
        }
        if ours_in_order.len() == created.len() {
            break;
        }
        previous = Some(id);
        cursor = Some(
            page["next_cursor"]
                .as_str()
                .expect("a next_cursor while older tenants remain")
                .to_owned(),
        );
    }

    // Assert
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(
        ours_in_order, newest_first,
        "all three tenants were listed, newest first"
    );
}

#[tokio::test]
async fn the_operator_list_refuses_a_bad_limit_or_cursor() {
    // Arrange
    let app = spawn_app().await;

    for (query, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=201", "invalid_limit"),
        ("limit=abc", "invalid_query"),
        ("cursor=nope", "invalid_cursor"),
    ] {
        // Act
        let response = app.get(&format!("{TENANTS}?{query}"), OPERATOR_TOKEN).await;

        // Assert
        expect_problem(response, StatusCode::BAD_REQUEST, code).await;
    }
}

#[tokio::test]
async fn the_operator_reads_one_tenant_and_an_unknown_id_is_not_found() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;

    // Act
    let found = app.get(&tenant_path(tenant.id), OPERATOR_TOKEN).await;
    let unknown = app.get(&tenant_path(Uuid::now_v7()), OPERATOR_TOKEN).await;
    let malformed = app.get(&tenant_path("not-a-uuid"), OPERATOR_TOKEN).await;

    // Assert
    let etag = etag_of(&found);
    let body = expect_json(found, StatusCode::OK).await;
    assert_eq!(
        body["id"],
        tenant.id.to_string(),
        "the requested tenant: {body}"
    );
    assert_eq!(body["slug"], tenant.slug, "its slug: {body}");
    assert_eq!(
        etag,
        format!("\"{}\"", body["version"]),
        "the ETag is the version"
    );
    expect_problem(unknown, StatusCode::NOT_FOUND, "not_found").await;
    expect_problem(malformed, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn the_operator_changes_a_tenant_plan() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let before = expect_json(
        app.get(&tenant_path(tenant.id), OPERATOR_TOKEN).await,
        StatusCode::OK,
    )
    .await;

    // Act
    let response = app
        .patch(
            &tenant_path(tenant.id),
            OPERATOR_TOKEN,
            json!({"plan": "pro"}),
        )
        .await;
    let bogus = app
        .patch(
            &tenant_path(tenant.id),
            OPERATOR_TOKEN,
            json!({"plan": "platinum"}),
        )
        .await;

    // Assert
    let etag = etag_of(&response);
    let updated = expect_json(response, StatusCode::OK).await;
    assert_eq!(updated["plan"], "pro", "the plan changed: {updated}");
    assert_eq!(
        updated["version"],
        before["version"].as_i64().unwrap() + 1,
        "the version moved on: {updated}"
    );
    assert_eq!(
        etag,
        format!("\"{}\"", updated["version"]),
        "the ETag follows the version"
    );
    assert_eq!(
        updated["name"], before["name"],
        "the name is untouched: {updated}"
    );
    let problem =
        expect_problem(bogus, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed").await;
    assert_eq!(
        problem["errors"][0]["field"], "plan",
        "an unknown plan names the field: {problem}"
    );
    let me = expect_json(app.get("/v1/me", &tenant.token).await, StatusCode::OK).await;
    assert_eq!(
        me["tenant"]["plan"], "pro",
        "the tenant sees its new plan: {me}"
    );
}

// ---------------------------------------------------------------------------------------
// Who may call the operator API
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn operator_routes_refuse_every_tenant_credential_and_a_wrong_token() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, api_key) = app.create_api_key(&tenant, &["users:read"]).await;
    let service_token = app.mint_token(tenant.id, &[tenantry::auth::Scope::TenantRead]);
    let owner_bearer = format!("Bearer {}", tenant.token);
    let key_bearer = format!("Bearer {api_key}");
    let service_bearer = format!("Bearer {service_token}");
    let wrong_operator = format!("Bearer {OPERATOR_TOKEN}x");
    let basic = format!("Basic {OPERATOR_TOKEN}");
    let refused: [(&str, Vec<(&str, &str)>); 7] = [
        (
            "the tenant owner's JWT",
            vec![("authorization", &owner_bearer)],
        ),
        ("an API key as bearer", vec![("authorization", &key_bearer)]),
        ("an API key as X-API-Key", vec![("x-api-key", &api_key)]),
        (
            "a minted service token",
            vec![("authorization", &service_bearer)],
        ),
        ("no credential", vec![]),
        (
            "a wrong operator token",
            vec![("authorization", &wrong_operator)],
        ),
        (
            "the operator token under another scheme",
            vec![("authorization", &basic)],
        ),
    ];

    for (what, headers) in refused {
        // Act
        let list = send(&app, Method::GET, TENANTS, &headers, None).await;
        let read_own = send(&app, Method::GET, &tenant_path(tenant.id), &headers, None).await;
        let unsuspend_attempt = send(
            &app,
            Method::PATCH,
            &tenant_path(tenant.id),
            &headers,
            Some(json!({"plan": "enterprise"})),
        )
        .await;

        // Assert
        for (route, response) in [
            ("list", list),
            ("read", read_own),
            ("patch", unsuspend_attempt),
        ] {
            assert!(
                response.headers().get("www-authenticate").is_some(),
                "{what} on {route}: a 401 names the scheme in WWW-Authenticate"
            );
            let problem =
                expect_problem(response, StatusCode::UNAUTHORIZED, "unauthenticated").await;
            assert!(
                problem["detail"].is_string(),
                "{what} on {route}: {problem}"
            );
        }
    }
    let after = expect_json(
        app.get(&tenant_path(tenant.id), OPERATOR_TOKEN).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        after["plan"], "free",
        "no refused request changed the plan: {after}"
    );
}

#[tokio::test]
async fn a_tenant_owner_cannot_create_tenants_through_the_operator_api() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let slug = unique("sneaky");
    let body = json!({"slug": slug, "name": "Sneaky", "owner_email": "a@sneaky.test", "owner_password": PASSWORD});

    // Act
    let refused = app.post(TENANTS, &tenant.token, body.clone()).await;

    // Assert: refused, and nothing was created (the slug is still free).
    expect_problem(refused, StatusCode::UNAUTHORIZED, "unauthenticated").await;
    expect_json(
        app.post(TENANTS, OPERATOR_TOKEN, body).await,
        StatusCode::CREATED,
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// Suspension
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_suspended_tenant_is_refused_everywhere_until_reactivated() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, api_key) = app.create_api_key(&tenant, &["users:read"]).await;
    let new_key = json!({"name": "during suspension", "scopes": ["users:read"]});

    // Act
    set_status(&app, tenant.id, "suspended").await;

    // Assert: every credential and every route says tenant_suspended.
    for path in ["/v1/me", "/v1/users", "/v1/tenant"] {
        let response = app.get(path, &tenant.token).await;
        expect_problem(response, StatusCode::FORBIDDEN, "tenant_suspended").await;
    }
    expect_problem(
        app.post("/v1/api-keys", &tenant.token, new_key.clone())
            .await,
        StatusCode::FORBIDDEN,
        "tenant_suspended",
    )
    .await;
    expect_problem(
        app.get("/v1/users", &api_key).await,
        StatusCode::FORBIDDEN,
        "tenant_suspended",
    )
    .await;
    let refresh = app
        .request(
            Method::POST,
            "/v1/auth/refresh",
            None,
            Some(&json!({"refresh_token": tenant.refresh_token})),
        )
        .await;
    expect_problem(refresh, StatusCode::FORBIDDEN, "tenant_suspended").await;
    let login = try_login(&app, &tenant.slug, &tenant.owner_email, PASSWORD).await;
    expect_problem(login, StatusCode::FORBIDDEN, "tenant_suspended").await;
    let wrong_password = try_login(
        &app,
        &tenant.slug,
        &tenant.owner_email,
        "not the password at all",
    )
    .await;
    expect_problem(
        wrong_password,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;

    // Act: reactivate.
    set_status(&app, tenant.id, "active").await;

    // Assert: the same credentials work again.
    for path in ["/v1/me", "/v1/users", "/v1/tenant"] {
        expect_json(app.get(path, &tenant.token).await, StatusCode::OK).await;
    }
    expect_json(
        app.post("/v1/api-keys", &tenant.token, new_key).await,
        StatusCode::CREATED,
    )
    .await;
    expect_json(app.get("/v1/users", &api_key).await, StatusCode::OK).await;
    app.login(&tenant.slug, &tenant.owner_email, PASSWORD).await;
}

#[tokio::test]
async fn suspending_a_tenant_leaves_other_tenants_untouched() {
    // Arrange
    let app = spawn_app().await;
    let suspended = app.create_tenant().await;
    let other = app.create_tenant().await;
    let (_, other_key) = app.create_api_key(&other, &["users:read"]).await;

    // Act
    set_status(&app, suspended.id, "suspended").await;

    // Assert
    expect_problem(
        app.get("/v1/me", &suspended.token).await,
        StatusCode::FORBIDDEN,
        "tenant_suspended",
    )
    .await;
    for path in ["/v1/me", "/v1/users", "/v1/tenant"] {
        expect_json(app.get(path, &other.token).await, StatusCode::OK).await;
    }
    expect_json(app.get("/v1/users", &other_key).await, StatusCode::OK).await;
    app.login(&other.slug, &other.owner_email, PASSWORD).await;
    let listed = expect_json(
        app.get(&tenant_path(other.id), OPERATOR_TOKEN).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        listed["status"], "active",
        "the other tenant stays active: {listed}"
    );
}

// ---------------------------------------------------------------------------------------
// The tenant's own profile
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn the_tenant_profile_has_an_etag_and_if_none_match_gives_304() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let first = app.get("/v1/tenant", &tenant.token).await;
    let etag = etag_of(&first);
    let profile = expect_json(first, StatusCode::OK).await;
    assert_eq!(
        profile["id"],
        tenant.id.to_string(),
        "the caller's own tenant: {profile}"
    );

    // Act
    let auth = format!("Bearer {}", tenant.token);
    let not_modified = send(
        &app,
        Method::GET,
        "/v1/tenant",
        &[("authorization", &auth), ("if-none-match", &etag)],
        None,
    )
    .await;
    let stale = send(
        &app,
        Method::GET,
        "/v1/tenant",
        &[("authorization", &auth), ("if-none-match", "\"999999\"")],
        None,
    )
    .await;

    // Assert
    assert_eq!(
        not_modified.status(),
        StatusCode::NOT_MODIFIED,
        "If-None-Match with the current ETag"
    );
    assert_eq!(etag_of(&not_modified), etag, "the 304 repeats the ETag");
    assert!(
        not_modified.bytes().await.unwrap().is_empty(),
        "a 304 has no body"
    );
    assert_eq!(
        stale.status(),
        StatusCode::OK,
        "If-None-Match with another version gets the body"
    );
}

#[tokio::test]
async fn a_rename_with_a_stale_if_match_is_refused_and_changes_nothing() {
    // Arrange: read, then let the version move on with a first rename.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let stale_etag = etag_of(&app.get("/v1/tenant", &tenant.token).await);
    let auth = format!("Bearer {}", tenant.token);
    let first = send(
        &app,
        Method::PATCH,
        "/v1/tenant",
        &[("authorization", &auth), (IF_MATCH.as_str(), &stale_etag)],
        Some(json!({"name": "First"})),
    )
    .await;
    expect_json(first, StatusCode::OK).await;

    // Act
    let second = send(
        &app,
        Method::PATCH,
        "/v1/tenant",
        &[("authorization", &auth), (IF_MATCH.as_str(), &stale_etag)],
        Some(json!({"name": "Second"})),
    )
    .await;

    // Assert
    expect_problem(
        second,
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
    )
    .await;
    let profile = expect_json(app.get("/v1/tenant", &tenant.token).await, StatusCode::OK).await;
    assert_eq!(
        profile["name"], "First",
        "the refused rename changed nothing: {profile}"
    );
}

#[tokio::test]
async fn a_rename_with_the_current_etag_succeeds_and_moves_the_etag() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let etag = etag_of(&app.get("/v1/tenant", &tenant.token).await);
    let auth = format!("Bearer {}", tenant.token);

    // Act
    let renamed = send(
        &app,
        Method::PATCH,
        "/v1/tenant",
        &[("authorization", &auth), (IF_MATCH.as_str(), &etag)],
        Some(json!({"name": "  Renamed Co  "})),
    )
    .await;

    // Assert
    let new_etag = etag_of(&renamed);
    let body = expect_json(renamed, StatusCode::OK).await;
    assert_eq!(
        body["name"], "Renamed Co",
        "the name is trimmed and stored: {body}"
    );
    assert_ne!(new_etag, etag, "a change moves the ETag");
    let reread = app.get("/v1/tenant", &tenant.token).await;
    assert_eq!(
        etag_of(&reread),
        new_etag,
        "a fresh read carries the new ETag"
    );
    let operator_view = expect_json(
        app.get(&tenant_path(tenant.id), OPERATOR_TOKEN).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        operator_view["name"], "Renamed Co",
        "the operator sees the new name: {operator_view}"
    );
    let old_tag_again = send(
        &app,
        Method::GET,
        "/v1/tenant",
        &[("authorization", &auth), (IF_NONE_MATCH.as_str(), &etag)],
        None,
    )
    .await;
    assert_eq!(
        old_tag_again.status(),
        StatusCode::OK,
        "the old ETag no longer matches"
    );
}

#[tokio::test]
async fn a_tenant_cannot_change_its_own_plan_or_status() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;

    for (field, body) in [
        ("plan", json!({"plan": "enterprise"})),
        ("status", json!({"status": "active"})),
        ("plan", json!({"name": "X", "plan": "pro"})),
    ] {
        // Act
        let response = app.patch("/v1/tenant", &tenant.token, body.clone()).await;

        // Assert
        let problem = expect_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        let mentioned = problem["errors"].as_array().into_iter().flatten().any(|e| {
            e["field"] == field || e["message"].as_str().is_some_and(|m| m.contains(field))
        });
        assert!(
            mentioned,
            "the refusal of {body} names `{field}`: {problem}"
        );
    }
    let profile = expect_json(
        app.get(&tenant_path(tenant.id), OPERATOR_TOKEN).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        (&profile["plan"], &profile["status"], &profile["name"]),
        (&json!("free"), &json!("active"), &json!("Test tenant")),
        "nothing changed: {profile}"
    );
}

// ---------------------------------------------------------------------------------------
// The command line
// ---------------------------------------------------------------------------------------

struct CliOutput {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs the `tenantry` binary with exactly the configuration the test server uses.
async fn tenantry_cli(app: &TestApp, args: &[&str]) -> CliOutput {
    tenantry_cli_on(app, &database_url(), args).await
}

/// Runs the `tenantry` binary against `database_url`, otherwise configured as the server.
async fn tenantry_cli_on(app: &TestApp, database_url: &str, args: &[&str]) -> CliOutput {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(args)
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("JWT_SECRET", app.config.jwt_secret.expose_secret())
        .env(
            "TENANTRY_TOKEN_HASH_KEY",
            app.config.token_hash_key.expose_secret(),
        )
        .env(
            "TENANTRY_OPERATOR_TOKEN",
            app.config.operator_token.expose_secret(),
        )
        .output()
        .await
        .expect("the tenantry binary runs");
    CliOutput {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn the_cli_creates_a_tenant_whose_owner_can_log_in() {
    // Arrange
    let app = spawn_app().await;
    let slug = unique("cli");
    let owner_email = format!("a@{slug}.test");

    // Act
    let output = tenantry_cli(
        &app,
        &[
            "tenant",
            "create",
            "--slug",
            &slug,
            "--name",
            "X",
            "--owner-email",
            &owner_email,
            "--json",
        ],
    )
    .await;

    // Assert
    assert!(
        output.success,
        "tenant create succeeds; stderr:\n{}\nstdout:\n{}",
        output.stderr, output.stdout
    );
    let created: Value = serde_json::from_str(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "--json prints exactly one JSON document on stdout ({e}):\n{}",
            output.stdout
        )
    });
    assert_eq!(
        created["tenant"]["slug"], slug,
        "the tenant as created: {created}"
    );
    assert_eq!(created["owner"]["role"], "owner", "its owner: {created}");
    let password = created["owner_password"]
        .as_str()
        .expect("a generated owner_password is printed once");
    let id = created["tenant"]["id"].as_str().expect("the tenant id");
    let via_api = expect_json(
        app.get(&tenant_path(id), OPERATOR_TOKEN).await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        via_api["slug"], slug,
        "the operator API sees the CLI's tenant: {via_api}"
    );
    let tokens = app.login(&slug, &owner_email, password).await;
    assert!(
        tokens["access_token"].is_string(),
        "the owner logs in with the printed password: {tokens}"
    );

    // And a second create with the same slug fails cleanly.
    let again = tenantry_cli(
        &app,
        &[
            "tenant",
            "create",
            "--slug",
            &slug,
            "--name",
            "X",
            "--owner-email",
            &owner_email,
            "--json",
        ],
    )
    .await;
    assert!(
        !again.success,
        "a taken slug makes the CLI fail; stdout:\n{}",
        again.stdout
    );
    assert!(
        again.stderr.contains("slug"),
        "the CLI says the slug is taken; stderr:\n{}",
        again.stderr
    );
}

#[tokio::test]
async fn the_cli_prints_only_json_on_stdout_even_when_it_bootstraps_a_fresh_database() {
    // Arrange: a database that does not exist yet, so the CLI creates and migrates it
    // (and has something to log) before creating the tenant.
    let app = spawn_app().await;
    let database = format!("tenantry_cli_{}", Uuid::new_v4().simple());
    let (base, _) = database_url()
        .rsplit_once('/')
        .map(|(b, d)| (b.to_owned(), d.to_owned()))
        .expect("a database URL with a path");
    let fresh_url = format!("{base}/{database}");
    let slug = unique("fresh");

    // Act
    let output = tenantry_cli_on(
        &app,
        &fresh_url,
        &[
            "tenant",
            "create",
            "--slug",
            &slug,
            "--name",
            "Fresh",
            "--owner-email",
            "a@fresh.test",
            "--json",
        ],
    )
    .await;
    let mut owner = app.owner_connection().await;
    let dropped = sqlx::query(&format!("drop database if exists {database} with (force)"))
        .execute(&mut owner)
        .await;

    // Assert
    assert!(
        output.success,
        "tenant create succeeds on a fresh database; stderr:\n{}",
        output.stderr
    );
    let created: Result<Value, _> = serde_json::from_str(&output.stdout);
    assert!(
        created
            .as_ref()
            .is_ok_and(|c| c["tenant"]["slug"] == slug.as_str()),
        "stdout holds only the JSON document (logs belong on stderr), got:\n{}",
        output.stdout
    );
    dropped.expect("the scratch database is dropped");
}

#[tokio::test]
async fn the_cli_issues_a_token_limited_to_its_scopes() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;

    // Act
    let output = tenantry_cli(
        &app,
        &[
            "token",
            "issue",
            "--tenant",
            &tenant.slug,
            "--scopes",
            "users:read",
            "--ttl",
            "5m",
        ],
    )
    .await;

    // Assert
    assert!(
        output.success,
        "token issue succeeds; stderr:\n{}",
        output.stderr
    );
    let token = output.stdout.trim();
    assert_eq!(
        token.split('.').count(),
        3,
        "stdout is one JWT, got:\n{}",
        output.stdout
    );
    expect_json(app.get("/v1/users", token).await, StatusCode::OK).await;
    let write = app
        .post(
            "/v1/users",
            token,
            json!({"email": format!("x@{}.test", tenant.slug), "role": "member"}),
        )
        .await;
    expect_problem(write, StatusCode::FORBIDDEN, "insufficient_scope").await;
    let me = expect_json(app.get("/v1/me", token).await, StatusCode::OK).await;
    assert_eq!(
        me["tenant"]["id"],
        tenant.id.to_string(),
        "the token is for the named tenant: {me}"
    );
    assert_eq!(
        me["scopes"],
        json!(["users:read"]),
        "and holds only the requested scope: {me}"
    );
}

#[tokio::test]
async fn the_cli_refuses_to_issue_a_token_for_an_unknown_tenant() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let output = tenantry_cli(
        &app,
        &[
            "token",
            "issue",
            "--tenant",
            &unique("nobody"),
            "--scopes",
            "users:read",
        ],
    )
    .await;

    // Assert
    assert!(
        !output.success,
        "an unknown tenant makes token issue fail; stdout:\n{}",
        output.stdout
    );
    assert!(
        output.stdout.trim().is_empty(),
        "no token is printed, got:\n{}",
        output.stdout
    );
}

#[tokio::test]
async fn the_cli_prints_the_openapi_document() {
    // Arrange
    let app = spawn_app().await;

    // Act
    let output = tenantry_cli(&app, &["openapi"]).await;

    // Assert
    assert!(
        output.success,
        "openapi succeeds; stderr:\n{}",
        output.stderr
    );
    assert!(
        output.stdout.contains("\"/v1/users\""),
        "the document lists /v1/users"
    );
    let printed: Value = serde_json::from_str(&output.stdout).expect("stdout is JSON");
    let in_process: Value =
        serde_json::from_str(&tenantry::http::openapi().to_json().unwrap()).unwrap();
    assert_eq!(
        printed, in_process,
        "the CLI prints the same document the server serves"
    );
}
