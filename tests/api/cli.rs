//! The `tenantry` command line that operators use alongside the API: creating a tenant,
//! issuing a token, printing the OpenAPI document — stdout holding only the result.

use crate::helpers::{
    OPERATOR_TOKEN, ScratchDatabase, TestApp, database_url, expect_json, expect_problem, spawn_app,
    tenant_path, unique,
};
use reqwest::StatusCode;
use secrecy::ExposeSecret;
use serde_json::{Value, json};

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
    let fresh = ScratchDatabase::new("tenantry_cli");
    let slug = unique("fresh");

    // Act
    let output = tenantry_cli_on(
        &app,
        &fresh.url(),
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
