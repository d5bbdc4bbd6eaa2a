//! The `tenantry` command line that operators use alongside the API: creating a tenant,
//! issuing, listing and revoking service tokens, printing the OpenAPI document — stdout
//! holding only the result, failures exiting with their `sysexits.h` status.

use crate::helpers::{
    CliOutput, OPERATOR_TOKEN, ScratchDatabase, TestApp, TestTenant, expect_json, expect_problem,
    free_port, outcome, run_tenantry, spawn_app, spawn_app_with, tenant_path, test_config, unique,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use reqwest::StatusCode;
use serde_json::{Value, json};

/// Runs the `tenantry` binary with exactly the configuration the test server uses.
async fn tenantry_cli(app: &TestApp, args: &[&str]) -> CliOutput {
    run_tenantry(&app.config, &[], args).await
}

/// Runs the `tenantry` binary configured as the server, with `env` on top.
async fn tenantry_cli_with(app: &TestApp, env: &[(&str, &str)], args: &[&str]) -> CliOutput {
    run_tenantry(&app.config, env, args).await
}

/// Runs the `tenantry` binary against `database_url`, otherwise configured as the server.
async fn tenantry_cli_on(app: &TestApp, database_url: &str, args: &[&str]) -> CliOutput {
    run_tenantry(&app.config, &[("DATABASE_URL", database_url)], args).await
}

/// `token issue` for the tenant with `users:read`; returns the printed token.
async fn issue_token(app: &TestApp, tenant: &TestTenant, ttl: &str) -> String {
    let output = tenantry_cli(
        app,
        &[
            "token",
            "issue",
            "--tenant",
            &tenant.slug,
            "--scopes",
            "tenant:read users:read",
            "--ttl",
            ttl,
            "--subject",
            "nightly-export",
        ],
    )
    .await;
    assert!(
        output.success,
        "token issue succeeds; stderr:\n{}",
        output.stderr
    );
    output.stdout.trim().to_owned()
}

/// The `jti` claim of a JWT (read, not verified: the server verifies).
fn jti_of(token: &str) -> String {
    let payload = token
        .split('.')
        .nth(1)
        .unwrap_or_else(|| panic!("expected a JWT, got {token:?}"));
    let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    claims["jti"]
        .as_str()
        .unwrap_or_else(|| panic!("expected a jti in {claims}"))
        .to_owned()
}

/// `token list --tenant <tenant> --json`, parsed.
async fn listed_tokens(app: &TestApp, tenant: &str) -> Vec<Value> {
    let output = tenantry_cli(app, &["token", "list", "--tenant", tenant, "--json"]).await;
    assert!(
        output.success,
        "token list succeeds; stderr:\n{}",
        output.stderr
    );
    serde_json::from_str(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "token list --json prints one JSON array ({e}):\n{}",
            output.stdout
        )
    })
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

#[tokio::test]
async fn a_service_token_works_until_it_is_revoked_and_revoking_again_changes_nothing() {
    // Arrange
    // The change is made behind the server's back (SQL, or the command line with no Redis
    // to tell the server): seen at once only by a server that does not cache credentials.
    let app = spawn_app_with(&[("TENANTRY_CREDENTIAL_CACHE_TTL", "0s")]).await;
    let tenant = app.create_tenant().await;
    let token = issue_token(&app, &tenant, "10m").await;
    let jti = jti_of(&token);
    let me = expect_json(app.get("/v1/me", &token).await, StatusCode::OK).await;
    assert_eq!(
        me["tenant"]["id"],
        tenant.id.to_string(),
        "the token works before it is revoked: {me}"
    );

    // Act
    let revoked = tenantry_cli(&app, &["token", "revoke", &jti]).await;
    let after = outcome(app.get("/v1/me", &token).await).await;
    let again = tenantry_cli(&app, &["token", "revoke", &jti]).await;

    // Assert
    assert!(
        revoked.success,
        "token revoke succeeds; stderr:\n{}",
        revoked.stderr
    );
    assert!(
        revoked.stdout.contains(&jti) && revoked.stdout.contains("revoked"),
        "token revoke says what it revoked, got:\n{}",
        revoked.stdout
    );
    assert!(
        after.is_unauthenticated(),
        "the next request with the revoked token: expected 401 `unauthenticated`, got {after:?}"
    );
    assert!(
        again.success,
        "revoking again succeeds (idempotent); stderr:\n{}",
        again.stderr
    );
    assert!(
        again.stdout.contains("already revoked"),
        "revoking again says it was already revoked, got:\n{}",
        again.stdout
    );
    let listed = listed_tokens(&app, &tenant.slug).await;
    assert_eq!(listed.len(), 1, "one token: {listed:?}");
    assert!(
        listed[0]["revoked_at"].is_string(),
        "listed as revoked: {listed:?}"
    );
}

#[tokio::test]
async fn a_ttl_beyond_the_configured_cap_is_refused_and_nothing_is_recorded() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let issue = |ttl: &'static str| {
        [
            "token",
            "issue",
            "--tenant",
            &tenant.slug,
            "--scopes",
            "users:read",
            "--ttl",
            ttl,
        ]
        .map(str::to_owned)
    };

    // Act
    let over_configured_cap = tenantry_cli_with(
        &app,
        &[("TENANTRY_SERVICE_TOKEN_MAX_TTL", "1h")],
        &issue("2h").each_ref().map(String::as_str),
    )
    .await;
    let over_default_cap = tenantry_cli(&app, &issue("31d").each_ref().map(String::as_str)).await;

    // Assert
    for (what, output, limit) in [
        ("a configured cap of 1h", &over_configured_cap, "1h"),
        ("the default cap of 30d", &over_default_cap, "30days"),
    ] {
        assert_eq!(
            output.code,
            Some(65),
            "{what}: expected exit status 65 (bad input); stdout:\n{}\nstderr:\n{}",
            output.stdout,
            output.stderr
        );
        assert!(
            output.stdout.trim().is_empty(),
            "{what}: no token is printed, got:\n{}",
            output.stdout
        );
        assert!(
            output.stderr.contains("ttl:")
                && output.stderr.contains("TENANTRY_SERVICE_TOKEN_MAX_TTL")
                && output.stderr.contains(limit),
            "{what}: the CLI names the limit that was exceeded, got:\n{}",
            output.stderr
        );
    }
    assert_eq!(
        listed_tokens(&app, &tenant.slug).await,
        Vec::<Value>::new(),
        "a refused token is not recorded"
    );
}

#[tokio::test]
async fn token_list_shows_a_tenants_issued_and_revoked_tokens_and_no_other_tenants() {
    // Arrange
    let app = spawn_app().await;
    let (tenant, other) = (app.create_tenant().await, app.create_tenant().await);
    let kept = jti_of(&issue_token(&app, &tenant, "1h").await);
    let revoked = jti_of(&issue_token(&app, &tenant, "2h").await);
    let others = jti_of(&issue_token(&app, &other, "1h").await);
    let revocation = tenantry_cli(&app, &["token", "revoke", &revoked]).await;
    assert!(revocation.success, "{}", revocation.stderr);

    // Act
    let listed = listed_tokens(&app, &tenant.slug).await;
    let by_id = listed_tokens(&app, &tenant.id.to_string()).await;
    let text = tenantry_cli(&app, &["token", "list", "--tenant", &other.slug]).await;
    let everyone = tenantry_cli(&app, &["token", "list", "--json"]).await;

    // Assert
    let jtis: Vec<&str> = listed.iter().map(|t| t["jti"].as_str().unwrap()).collect();
    assert_eq!(
        jtis,
        [revoked.as_str(), kept.as_str()],
        "the tenant's tokens, newest first, and not the other tenant's: {listed:?}"
    );
    assert_eq!(by_id, listed, "a tenant is named by slug or by id alike");
    let newest = &listed[0];
    assert_eq!(newest["tenant_id"], tenant.id.to_string(), "{newest}");
    assert_eq!(newest["tenant"], tenant.slug, "{newest}");
    assert_eq!(newest["subject"], "nightly-export", "{newest}");
    assert_eq!(
        newest["scopes"],
        json!(["tenant:read", "users:read"]),
        "{newest}"
    );
    for field in ["created_at", "expires_at", "revoked_at"] {
        assert!(newest[field].is_string(), "{field} is set: {newest}");
    }
    assert!(
        listed[1]["revoked_at"].is_null(),
        "the kept token is not revoked: {listed:?}"
    );

    assert!(text.success, "{}", text.stderr);
    assert!(
        text.stdout.contains(&others)
            && !text.stdout.contains(&kept)
            && text.stdout.contains("1 service token")
            && !text.stdout.contains("1 service tokens"),
        "the other tenant's one token, counted in the singular, got:\n{}",
        text.stdout
    );
    assert!(everyone.success, "{}", everyone.stderr);
    let everyone: Vec<Value> = serde_json::from_str(&everyone.stdout).unwrap();
    for jti in [&kept, &revoked, &others] {
        assert!(
            everyone.iter().any(|t| t["jti"] == jti.as_str()),
            "token list without --tenant lists every tenant's tokens, {jti} among them"
        );
    }
}

#[tokio::test]
async fn a_token_cannot_be_revoked_through_another_tenant_nor_an_unknown_jti() {
    // Arrange
    // The change is made behind the server's back (SQL, or the command line with no Redis
    // to tell the server): seen at once only by a server that does not cache credentials.
    let app = spawn_app_with(&[("TENANTRY_CREDENTIAL_CACHE_TTL", "0s")]).await;
    let (tenant, other) = (app.create_tenant().await, app.create_tenant().await);
    let token = issue_token(&app, &tenant, "1h").await;
    let jti = jti_of(&token);

    // Act
    let wrong_tenant =
        tenantry_cli(&app, &["token", "revoke", &jti, "--tenant", &other.slug]).await;
    let unknown = tenantry_cli(
        &app,
        &["token", "revoke", &uuid::Uuid::now_v7().to_string()],
    )
    .await;
    let malformed = tenantry_cli(&app, &["token", "revoke", "not-a-jti"]).await;

    // Assert
    for (what, output, code) in [
        ("another tenant's name", &wrong_tenant, 66),
        ("an unknown jti", &unknown, 66),
        ("a jti that is no UUID", &malformed, 65),
    ] {
        assert_eq!(
            output.code,
            Some(code),
            "{what}: expected exit status {code}; stdout:\n{}\nstderr:\n{}",
            output.stdout,
            output.stderr
        );
    }
    expect_json(app.get("/v1/me", &token).await, StatusCode::OK).await;
    assert!(
        listed_tokens(&app, &tenant.slug).await[0]["revoked_at"].is_null(),
        "the token is not revoked"
    );

    // And through its own tenant's name it is revoked.
    let right_tenant =
        tenantry_cli(&app, &["token", "revoke", &jti, "--tenant", &tenant.slug]).await;
    assert!(right_tenant.success, "{}", right_tenant.stderr);
    let after = outcome(app.get("/v1/me", &token).await).await;
    assert!(
        after.is_unauthenticated(),
        "revoked through its own tenant: expected 401 `unauthenticated`, got {after:?}"
    );
}

#[tokio::test]
async fn token_issue_json_prints_the_token_with_its_record() {
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
            "tenant:read",
            "--ttl",
            "2h",
            "--subject",
            "billing-sync",
            "--json",
        ],
    )
    .await;

    // Assert
    assert!(
        output.success,
        "token issue succeeds; stderr:\n{}",
        output.stderr
    );
    let issued: Value = serde_json::from_str(&output.stdout)
        .unwrap_or_else(|e| panic!("--json prints one JSON document ({e}):\n{}", output.stdout));
    let token = issued["token"].as_str().expect("the token");
    assert_eq!(
        issued["jti"],
        jti_of(token),
        "the token's own jti: {issued}"
    );
    assert_eq!(issued["tenant"], tenant.slug, "{issued}");
    assert_eq!(issued["tenant_id"], tenant.id.to_string(), "{issued}");
    assert_eq!(issued["subject"], "billing-sync", "{issued}");
    assert_eq!(issued["scopes"], json!(["tenant:read"]), "{issued}");
    assert!(issued["revoked_at"].is_null(), "{issued}");
    let lifetime = time::OffsetDateTime::parse(
        issued["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap()
        - time::OffsetDateTime::parse(
            issued["created_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
    assert!(
        (lifetime.whole_seconds() - 2 * 3600).abs() <= 5,
        "expires 2h after it was created: {issued}"
    );
    let me = expect_json(app.get("/v1/me", token).await, StatusCode::OK).await;
    assert_eq!(
        (me["actor_type"].as_str(), me["actor_id"].as_str()),
        (Some("service"), Some("billing-sync")),
        "{me}"
    );
    assert_eq!(
        listed_tokens(&app, &tenant.slug).await[0]["jti"],
        issued["jti"],
        "recorded as printed"
    );
}

// ---------------------------------------------------------------------------------------
// The command line explains itself: what failed, by the flag the user typed, and how to
// call it
// ---------------------------------------------------------------------------------------

/// The lines of `text` that start with two spaces: the per-argument lines of a report.
fn indented(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("  ")).collect()
}

#[tokio::test]
async fn tenant_create_names_every_bad_flag_with_its_rule_at_once() {
    // Arrange
    let config = test_config(&[]);

    // Act
    let output = run_tenantry(
        &config,
        &[],
        &[
            "tenant",
            "create",
            "--slug=-Not_A_Slug",
            "--name",
            "   ",
            "--owner-email",
            "not-an-email",
            "--owner-password",
            "short",
        ],
    )
    .await;

    // Assert
    assert_eq!(
        output.code,
        Some(65),
        "expected exit status 65 (invalid input); stderr:\n{}",
        output.stderr
    );
    assert!(
        output.stdout.is_empty(),
        "nothing on stdout: {}",
        output.stdout
    );
    assert_eq!(
        output.stderr.lines().next(),
        Some("error: 4 arguments are invalid (validation_failed)"),
        "the first line says what failed, in words; stderr:\n{}",
        output.stderr
    );
    assert_eq!(
        indented(&output.stderr),
        [
            "  --slug: must be 3-63 lowercase letters, digits or hyphens, not starting or ending with a hyphen",
            "  --name: must be 1-200 characters, not all whitespace, without control characters",
            "  --owner-email: must be a valid email address",
            "  --owner-password: must be 12-128 characters",
        ],
        "one line per flag, named as typed, with its rule; stderr:\n{}",
        output.stderr
    );
}

#[tokio::test]
async fn token_issue_names_the_flag_and_rule_of_bad_scopes_and_lifetimes() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let issue = |scopes: &'static str, ttl: &'static str| {
        [
            "token",
            "issue",
            "--tenant",
            &tenant.slug,
            "--scopes",
            scopes,
            "--ttl",
            ttl,
        ]
        .map(str::to_owned)
    };
    let run =
        async |args: [String; 8]| tenantry_cli(&app, &args.each_ref().map(String::as_str)).await;

    // Act
    let unknown_scope = run(issue("orders:read root", "1h")).await;
    let no_scope = run(issue("  ", "1h")).await;
    let zero_ttl = run(issue("orders:read", "0s")).await;
    let unreadable_ttl = run(issue("orders:read", "soon")).await;

    // Assert
    for (what, output, code, says) in [
        (
            "an unknown scope",
            &unknown_scope,
            65,
            "  --scopes: unknown scope \"root\"; any of tenant:read, tenant:write,",
        ),
        (
            "no scope",
            &no_scope,
            65,
            "  --scopes: must name at least one scope",
        ),
        ("a zero ttl", &zero_ttl, 65, "  --ttl: must be at least 1s"),
        (
            "a ttl that is no duration",
            &unreadable_ttl,
            64,
            "error: invalid value 'soon' for '--ttl <DURATION>': must be a duration such as 15m, 1h or 7d",
        ),
    ] {
        assert_eq!(
            output.code,
            Some(code),
            "{what}: expected exit status {code}; stderr:\n{}",
            output.stderr
        );
        assert!(
            output.stderr.lines().any(|l| l.starts_with(says)),
            "{what}: expected a line starting {says:?}; stderr:\n{}",
            output.stderr
        );
        assert!(
            output.stdout.is_empty(),
            "{what}: no token: {}",
            output.stdout
        );
    }
}

#[tokio::test]
async fn a_plan_that_does_not_exist_is_refused_with_the_plans_that_do() {
    // Act
    let output = run_tenantry(
        &test_config(&[]),
        &[],
        &[
            "tenant",
            "create",
            "--slug",
            &unique("plan"),
            "--name",
            "Gold",
            "--owner-email",
            "owner@gold.test",
            "--plan",
            "gold",
        ],
    )
    .await;

    // Assert: plans are data (an operator creates them), so the database says which exist.
    assert_eq!(
        output.code,
        Some(65),
        "expected exit status 65 (bad input); stderr:\n{}",
        output.stderr
    );
    assert!(
        output
            .stderr
            .contains("--plan: no such plan; the plans are enterprise, free, pro"),
        "the refusal names the flag and lists the plans; stderr:\n{}",
        output.stderr
    );
}

#[tokio::test]
async fn migrate_says_what_it_did_and_the_second_time_that_the_schema_is_up_to_date() {
    // Arrange
    let scratch = ScratchDatabase::new("tenantry_migrate");
    let config = test_config(&[("DATABASE_URL", &scratch.url())]);
    let name = &scratch.name;
    let mut migrations: Vec<String> = std::fs::read_dir("migrations")
        .unwrap()
        .map(|entry| {
            let path = entry.unwrap().path();
            path.file_stem().unwrap().to_string_lossy().into_owned()
        })
        .collect();
    migrations.sort();

    // Act
    let first = run_tenantry(&config, &[], &["migrate"]).await;
    let second = run_tenantry(&config, &[], &["migrate"]).await;

    // Assert
    assert!(
        first.success,
        "the first migrate succeeds:\n{}",
        first.stderr
    );
    assert_eq!(
        first.stdout,
        format!(
            "database {name}: created\n\
             role {name}_app: created\n\
             role {name}_platform: created\n\
             applied {} migrations ({})\n\
             policies and grants applied\n",
            migrations.len(),
            migrations.join(", ")
        ),
        "the first migrate says it created everything"
    );
    assert!(
        second.success,
        "the second migrate succeeds:\n{}",
        second.stderr
    );
    assert_eq!(
        second.stdout,
        format!(
            "database {name}: already existed\n\
             role {name}_app: already existed; password and limits set\n\
             role {name}_platform: already existed; password and limits set\n\
             schema up to date ({} migrations)\n\
             policies and grants up to date\n",
            migrations.len()
        ),
        "the second migrate says there was nothing to do but set the roles' passwords"
    );
}

#[tokio::test]
async fn help_lists_the_plans_and_describes_every_command_and_flag() {
    // Arrange
    let config = test_config(&[]);
    let pages = [
        &["--help"][..],
        &["tenant", "--help"],
        &["tenant", "create", "--help"],
        &["token", "--help"],
        &["token", "issue", "--help"],
        &["token", "list", "--help"],
        &["token", "revoke", "--help"],
        &["projections", "rebuild", "--help"],
        &["audit", "--help"],
        &["audit", "verify", "--help"],
        &["migrate", "--help"],
        &["serve", "--help"],
    ];

    for args in pages {
        // Act
        let output = run_tenantry(&config, &[], args).await;

        // Assert
        assert!(
            output.success && output.stderr.is_empty(),
            "{args:?} prints help on stdout and succeeds; stderr:\n{}",
            output.stderr
        );
        // Entries of the Commands, Arguments and Options sections: a name, then two or
        // more spaces, then what it is for.
        let undescribed: Vec<&str> = indented(&output.stdout)
            .into_iter()
            .filter(|line| line.trim().split("  ").filter(|s| !s.is_empty()).count() < 2)
            .collect();
        assert!(
            undescribed.is_empty(),
            "{args:?}: every entry has help text, not {undescribed:?}:\n{}",
            output.stdout
        );
    }
    let create = run_tenantry(&config, &[], &["tenant", "create", "--help"]).await;
    let plan = create
        .stdout
        .lines()
        .find(|line| line.trim_start().starts_with("--plan <PLAN>"))
        .unwrap_or_else(|| panic!("tenant create --help has --plan:\n{}", create.stdout));
    let described = create
        .stdout
        .split("--plan <PLAN>")
        .nth(1)
        .unwrap_or_default()
        .split("\n  -")
        .next()
        .unwrap_or_default()
        .to_owned();
    assert!(
        described.contains("free, pro, enterprise") && described.contains("[default: free]"),
        "--plan names the seeded plans and its default: {plan}{described}"
    );
}

/// A failing run of the command line, and the exit status it should end with.
struct Failing<'a> {
    what: &'a str,
    env: Vec<(&'a str, &'a str)>,
    args: &'a [&'a str],
    code: i32,
}

#[tokio::test]
async fn rust_backtrace_1_prints_no_backtrace_for_any_failure() {
    // Arrange: failures of each kind a user meets — bad input, a bad command line, a bad
    // configuration, a database that is not there.
    let config = test_config(&[]);
    let nowhere = format!("postgres://postgres@127.0.0.1:{}/tenantry", free_port());
    let cases = [
        Failing {
            what: "a required flag left out",
            env: vec![],
            args: &["tenant", "create", "--slug", "NO", "--name", "x"],
            code: 64,
        },
        Failing {
            what: "invalid input",
            env: vec![],
            args: &[
                "tenant",
                "create",
                "--slug",
                "NO",
                "--name",
                "x",
                "--owner-email",
                "a@b.test",
            ],
            code: 65,
        },
        Failing {
            what: "a short JWT_SECRET",
            env: vec![("JWT_SECRET", "short")],
            args: &["migrate"],
            code: 78,
        },
        Failing {
            what: "no database server",
            env: vec![
                ("DATABASE_URL", nowhere.as_str()),
                ("DATABASE_CONNECT_TIMEOUT", "0s"),
            ],
            args: &["migrate"],
            code: 69,
        },
    ];

    for Failing {
        what,
        mut env,
        args,
        code,
    } in cases
    {
        // Act
        env.extend([("RUST_BACKTRACE", "1"), ("RUST_LIB_BACKTRACE", "1")]);
        let output = run_tenantry(&config, &env, args).await;

        // Assert
        assert_eq!(
            output.code,
            Some(code),
            "{what}: expected exit status {code}; stderr:\n{}",
            output.stderr
        );
        let stderr = output.stderr.to_lowercase();
        assert!(
            stderr.starts_with("error: ")
                && !stderr.contains("backtrace")
                && !stderr.contains("panicked"),
            "{what}: an error, no backtrace; stderr:\n{}",
            output.stderr
        );
    }
}
