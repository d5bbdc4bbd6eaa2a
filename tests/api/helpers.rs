//! `spawn_app()` and typed request helpers, and every helper that more than one test file
//! uses (helpers used by one file stay private to it; a folder's own shared helpers live in
//! its `mod.rs`).
//!
//! Tests share one database (`TEST_DATABASE_URL`, default `tenantry_test` on the local
//! Postgres), bootstrapped by whichever test gets there first — the advisory lock makes
//! concurrent bootstraps safe. Every test creates its own tenants with unique slugs.
#![allow(dead_code)]

use std::collections::HashMap;

use reqwest::{
    Method, Response, StatusCode,
    header::{self, ETAG},
};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};
use tenantry::{
    access::{Role, Scope},
    auth::{
        jwt::JwtKeys,
        service_tokens::{self, IssuedServiceToken, NewServiceToken},
    },
    config::Config,
    startup::Application,
    tenancy::TenantId,
};
use uuid::Uuid;

pub const OPERATOR_TOKEN: &str = "test-operator-token-0123456789";
pub const JWT_SECRET: &str = "test-jwt-secret-0123456789abcdefghijklmnop";
pub const PASSWORD: &str = "correct horse battery staple";

pub fn database_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/tenantry_test".to_owned())
}

/// The configuration tests run with (overrides applied on top).
pub fn test_config(overrides: &[(&str, &str)]) -> Config {
    let mut vars: HashMap<String, String> = HashMap::from([
        ("DATABASE_URL".into(), database_url()),
        ("TENANTRY_LISTEN".into(), "127.0.0.1:0".into()),
        ("TENANTRY_OPERATOR_TOKEN".into(), OPERATOR_TOKEN.into()),
        ("JWT_SECRET".into(), JWT_SECRET.into()),
        (
            "TENANTRY_TOKEN_HASH_KEY".into(),
            "test-token-hash-key".into(),
        ),
        // Tests make requests faster than the free plan's rate; the rate-limit tests
        // (tests/api/traffic/) turn the limits on.
        ("TENANTRY_RATE_LIMITS".into(), "off".into()),
        // Two tests at a time, each with up to two servers, share the cluster's 100
        // connections with the scratch databases some tests make: pools smaller than a
        // production server's keep them all under it.
        // Admission as with the default pool of 20: a test's bursts queue for connections
        // rather than being shed.
        ("DATABASE_MAX_CONNECTIONS".into(), "10".into()),
        ("DATABASE_PLATFORM_MAX_CONNECTIONS".into(), "3".into()),
        ("DATABASE_CONCURRENCY_LIMIT".into(), "160".into()),
    ]);
    for (k, v) in overrides {
        vars.insert((*k).into(), (*v).into());
    }
    Config::from_lookup(|name| vars.get(name).cloned()).expect("test configuration is valid")
}

/// A fresh database name on the test cluster (the database itself is made by whatever
/// bootstraps it), dropped at the end even when an assertion fails — with the login roles
/// its bootstrap created, which outlive a database (roles are cluster-wide).
pub struct ScratchDatabase {
    pub name: String,
}

impl ScratchDatabase {
    pub fn new(prefix: &str) -> Self {
        Self {
            name: unique(prefix).replace('-', "_"),
        }
    }

    pub fn url(&self) -> String {
        let base = database_url();
        let (server, _) = base.rsplit_once('/').expect("DATABASE_URL has a database");
        format!("{server}/{}", self.name)
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let maintenance = database_url()
            .rsplit_once('/')
            .map(|(s, _)| format!("{s}/postgres"))
            .unwrap();
        // Drop runs outside any runtime guarantee: use a private one.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&maintenance).await {
                    // One statement each: several in one query would be one transaction,
                    // and DROP DATABASE refuses to run inside one.
                    for statement in [
                        format!("drop database if exists \"{name}\" with (force)"),
                        format!("drop role if exists \"{name}_app\""),
                        format!("drop role if exists \"{name}_platform\""),
                    ] {
                        if let Err(error) = sqlx::query(&statement).execute(&mut conn).await {
                            eprintln!("cleaning up the scratch database: {statement}: {error}");
                        }
                    }
                }
            });
        })
        .join()
        .ok();
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub config: Config,
}

/// A tenant with a logged-in owner.
pub struct TestTenant {
    pub id: TenantId,
    pub slug: String,
    pub owner_id: String,
    pub owner_email: String,
    /// The owner's access token (from a real login).
    pub token: String,
    pub refresh_token: String,
}

pub async fn spawn_app() -> TestApp {
    spawn_app_with(&[]).await
}

pub async fn spawn_app_with(overrides: &[(&str, &str)]) -> TestApp {
    if std::env::var("TEST_LOG").is_ok() {
        tenantry::observability::init_tracing(tenantry::config::LogFormat::Text, false);
    }
    let config = test_config(overrides);
    let app = Application::build(&config)
        .await
        .expect("the application starts");
    let address = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until(std::future::pending()));
    TestApp {
        address,
        client: reqwest::Client::new(),
        config,
    }
}

/// A server that stops gracefully when asked, as SIGTERM stops the binary: [`StoppableApp::stop`]
/// returns once it has drained and written what it still held (metered usage).
pub struct StoppableApp {
    pub app: TestApp,
    stop: tokio::sync::oneshot::Sender<()>,
    stopped: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl StoppableApp {
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.stopped
            .await
            .expect("the server task ends")
            .expect("the server stops cleanly");
    }
}

pub async fn spawn_stoppable_app(config: Config) -> StoppableApp {
    let app = Application::build(&config)
        .await
        .expect("the application starts");
    let address = format!("http://{}", app.local_addr());
    let (stop, stopping) = tokio::sync::oneshot::channel::<()>();
    let stopped = tokio::spawn(app.run_until(async {
        let _ = stopping.await;
    }));
    StoppableApp {
        app: TestApp {
            address,
            client: reqwest::Client::new(),
            config,
        },
        stop,
        stopped,
    }
}

/// A TCP port on 127.0.0.1 that nothing listens on (at the moment of asking).
/// Serves `router` on a free port of 127.0.0.1 for the rest of the test; answers its
/// `http://` base URL (a stand-in for a peer: a webhook receiver, a trace collector).
pub async fn serve_on_loopback(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    url
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}",
        Uuid::new_v4()
            .simple()
            .to_string()
            .get(..12)
            .unwrap_or_default()
    )
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.address, path)
    }

    /// Sends a request with an optional bearer credential and JSON body.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        bearer: Option<&str>,
        body: Option<&Value>,
    ) -> Response {
        let mut request = self.client.request(method, self.url(path));
        if let Some(token) = bearer {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        request.send().await.expect("the server answers")
    }

    pub async fn get(&self, path: &str, bearer: &str) -> Response {
        self.request(Method::GET, path, Some(bearer), None).await
    }

    pub async fn post(&self, path: &str, bearer: &str, body: Value) -> Response {
        self.request(Method::POST, path, Some(bearer), Some(&body))
            .await
    }

    pub async fn patch(&self, path: &str, bearer: &str, body: Value) -> Response {
        self.request(Method::PATCH, path, Some(bearer), Some(&body))
            .await
    }

    pub async fn delete(&self, path: &str, bearer: &str) -> Response {
        self.request(Method::DELETE, path, Some(bearer), None).await
    }

    /// Creates a tenant through the operator API and logs its owner in.
    pub async fn create_tenant(&self) -> TestTenant {
        self.create_tenant_on("free").await
    }

    /// Creates a tenant on `plan` through the operator API and logs its owner in.
    pub async fn create_tenant_on(&self, plan: &str) -> TestTenant {
        let slug = unique("t");
        let owner_email = format!("owner@{slug}.test");
        let response = self
            .post(
                "/v1/platform/tenants",
                OPERATOR_TOKEN,
                json!({"slug": slug, "name": "Test tenant", "plan": plan, "owner_email": owner_email, "owner_password": PASSWORD}),
            )
            .await;
        let created = expect_json(response, StatusCode::CREATED).await;
        let id: TenantId = created["tenant"]["id"].as_str().unwrap().parse().unwrap();
        let owner_id = created["owner"]["id"].as_str().unwrap().to_owned();
        let tokens = self.login(&slug, &owner_email, PASSWORD).await;
        TestTenant {
            id,
            slug,
            owner_id,
            owner_email,
            token: tokens["access_token"].as_str().unwrap().to_owned(),
            refresh_token: tokens["refresh_token"].as_str().unwrap().to_owned(),
        }
    }

    /// Logs in and returns the token pair (panics unless 200).
    pub async fn login(&self, tenant: &str, email: &str, password: &str) -> Value {
        let response = self
            .request(
                Method::POST,
                "/v1/auth/login",
                None,
                Some(&json!({"tenant": tenant, "email": email, "password": password})),
            )
            .await;
        expect_json(response, StatusCode::OK).await
    }

    /// Creates a user with `role` in the tenant and returns (user id, access token).
    pub async fn create_user(&self, tenant: &TestTenant, role: &str) -> (String, String) {
        let email = format!("{}@{}.test", unique(role), tenant.slug);
        let response = self
            .post(
                "/v1/users",
                &tenant.token,
                json!({"email": email, "role": role, "password": PASSWORD}),
            )
            .await;
        let user = expect_json(response, StatusCode::CREATED).await;
        let tokens = self.login(&tenant.slug, &email, PASSWORD).await;
        (
            user["id"].as_str().unwrap().to_owned(),
            tokens["access_token"].as_str().unwrap().to_owned(),
        )
    }

    /// Creates an API key with `scopes` and returns (key id, secret key).
    pub async fn create_api_key(&self, tenant: &TestTenant, scopes: &[&str]) -> (String, String) {
        let response = self
            .post(
                "/v1/api-keys",
                &tenant.token,
                json!({"name": "test key", "scopes": scopes}),
            )
            .await;
        let key = expect_json(response, StatusCode::CREATED).await;
        (
            key["id"].as_str().unwrap().to_owned(),
            key["key"].as_str().unwrap().to_owned(),
        )
    }

    /// Creates a product with a unique SKU (12.50 EUR, 10 in stock) and returns it.
    pub async fn create_product(&self, tenant: &TestTenant) -> Value {
        let body = json!({
            "sku": unique("SKU"),
            "name": "Test product",
            "price_cents": 1250,
            "currency": "EUR",
            "stock": 10
        });
        let response = self.post("/v1/products", &tenant.token, body).await;
        expect_json(response, StatusCode::CREATED).await
    }

    /// Creates a customer with a unique email and returns it.
    pub async fn create_customer(&self, tenant: &TestTenant) -> Value {
        let body = json!({
            "email": format!("{}@{}.test", unique("customer"), tenant.slug),
            "name": "Test customer"
        });
        let response = self.post("/v1/customers", &tenant.token, body).await;
        expect_json(response, StatusCode::CREATED).await
    }

    /// Mints a service token as `tenantry token issue` does: signed with the server's key
    /// and recorded (and audited) as the database owner, so the server accepts it. Mint
    /// before taking a [`snapshot`]: issuing writes an audit event.
    pub async fn mint_token(&self, tenant_id: TenantId, scopes: &[Scope]) -> String {
        let issued = self.issue_service_token(tenant_id, "test", scopes).await;
        issued.token.expose_secret().to_owned()
    }

    /// [`mint_token`](Self::mint_token) with its record (`jti`, expiry), for tests that
    /// need them; the token lives five minutes.
    pub async fn issue_service_token(
        &self,
        tenant_id: TenantId,
        subject: &str,
        scopes: &[Scope],
    ) -> IssuedServiceToken {
        let mut owner = self.owner_connection().await;
        service_tokens::issue(
            &mut owner,
            &JwtKeys::from_config(&self.config).expect("keys load"),
            &tenantry::auth::console_operator(),
            self.config.service_token_max_ttl,
            NewServiceToken {
                tenant_id,
                subject,
                scopes: scopes.iter().copied().collect(),
                ttl: std::time::Duration::from_secs(300),
            },
        )
        .await
        .expect("the service token is issued")
    }

    /// The principal the server makes of `tenant`'s owner's token, for calling the
    /// application layer directly.
    pub async fn principal_of(&self, tenant: &TestTenant) -> tenantry::access::Principal {
        let db = tenantry::db::Db::connect(&self.config).unwrap();
        let auth = tenantry::auth::AuthService::from_config(&self.config, None)
            .await
            .unwrap();
        tenantry::auth::authenticate(&db, &auth, tenantry::auth::Presented::Bearer(&tenant.token))
            .await
            .unwrap()
            .principal
    }

    /// What `/metrics` shows now.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("the server answers")
            .text()
            .await
            .expect("the metrics are text")
    }

    /// The audit actions recorded against one resource, oldest first.
    pub async fn audit_actions(&self, tenant_id: TenantId, target_id: &str) -> Vec<String> {
        let mut db = self.owner_connection().await;
        sqlx::query_scalar(
            "select action from audit_events where tenant_id = $1 and target_id = $2 order by id",
        )
        .bind(tenant_id.as_uuid())
        .bind(target_id)
        .fetch_all(&mut db)
        .await
        .expect("the database owner reads audit events")
    }

    /// A superuser connection to the test database, for checks the API cannot make.
    pub async fn owner_connection(&self) -> PgConnection {
        PgConnection::connect(&database_url())
            .await
            .expect("owner connects")
    }

    /// This database's login roles, as the server names them.
    pub fn roles(&self) -> tenantry::db::Roles {
        tenantry::db::Roles::from_config(&self.config).expect("role names")
    }

    /// A connection as the request role, exactly as the server's pool logs in.
    pub async fn request_role_connection(&self) -> PgConnection {
        self.role_connection(&self.roles().app).await
    }

    /// A connection as the platform role, exactly as the server's platform pool logs in.
    pub async fn platform_role_connection(&self) -> PgConnection {
        self.role_connection(&self.roles().platform).await
    }

    async fn role_connection(&self, role: &str) -> PgConnection {
        let options = tenantry::db::connect_options(&self.config)
            .unwrap()
            .username(role)
            .password(tenantry::config::DEV_DB_ROLE_PASSWORD);
        PgConnection::connect_with(&options)
            .await
            .unwrap_or_else(|e| panic!("{role} connects: {e}"))
    }
}

/// Asserts the status and returns the JSON body, showing the body on mismatch.
pub async fn expect_json(response: Response, status: StatusCode) -> Value {
    let actual = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(actual, status, "expected {status}, got {actual}: {body}");
    serde_json::from_str(&body).unwrap_or(Value::Null)
}

/// Asserts a problem+json answer with the given status and code; returns the problem.
pub async fn expect_problem(response: Response, status: StatusCode, code: &str) -> Value {
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let problem = expect_json(response, status).await;
    assert_eq!(
        content_type, "application/problem+json",
        "problem content type for {problem}"
    );
    assert_eq!(problem["code"], code, "problem code: {problem}");
    assert_eq!(
        problem["status"],
        status.as_u16(),
        "problem status: {problem}"
    );
    assert!(
        problem["request_id"]
            .as_str()
            .is_some_and(|id| !id.is_empty()),
        "problem carries a request_id: {problem}"
    );
    problem
}

/// The fields a 422 problem names, in its order.
pub fn error_fields(problem: &Value) -> Vec<&str> {
    problem["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["field"].as_str())
        .collect()
}

/// Sends a request with arbitrary headers, for what the bearer-only helpers cannot say
/// (`If-Match`, `If-None-Match`, `X-API-Key`, …).
pub async fn send(
    app: &TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> Response {
    let mut request = app.client.request(method, app.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().await.expect("the server answers")
}

/// Sets `tenant`'s limit overrides (the whole set) through the operator API; the limits
/// in force afterwards.
pub async fn override_limits(app: &TestApp, tenant: &TestTenant, overrides: Value) -> Value {
    expect_json(
        send(
            app,
            Method::PUT,
            &format!("/v1/platform/tenants/{}/limits", tenant.id),
            &[("authorization", &format!("Bearer {OPERATOR_TOKEN}"))],
            Some(overrides),
        )
        .await,
        StatusCode::OK,
    )
    .await
}

/// Sends a POST with an `Idempotency-Key`.
pub async fn post_with_key(
    app: &TestApp,
    tenant: &TestTenant,
    path: &str,
    key: &str,
    body: Value,
) -> Response {
    let bearer = format!("Bearer {}", tenant.token);
    send(
        app,
        Method::POST,
        path,
        &[("authorization", &bearer), ("idempotency-key", key)],
        Some(body),
    )
    .await
}

/// Whether the answer is a replay of an earlier one under the same `Idempotency-Key`.
pub fn replayed(response: &Response) -> bool {
    response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true")
}

/// Every page of `path` (which has no `cursor` yet), in the order the API gives them.
pub async fn all_pages(app: &TestApp, tenant: &TestTenant, path: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    let separator = if path.contains('?') { '&' } else { '?' };
    for _ in 0..1000 {
        let url = match &cursor {
            Some(c) => format!("{path}{separator}cursor={c}"),
            None => path.to_owned(),
        };
        let page = expect_json(app.get(&url, &tenant.token).await, StatusCode::OK).await;
        items.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return items,
        }
    }
    panic!("{path}: the cursor never reached a last page");
}

/// The `ETag` header of a response (panics when there is none).
pub fn etag_of(response: &Response) -> String {
    response
        .headers()
        .get(ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| {
            panic!(
                "expected an ETag header on {} {}",
                response.status(),
                response.url()
            )
        })
}

/// What a run of the `tenantry` binary printed, and how it ended.
pub struct CliOutput {
    pub success: bool,
    /// The exit status (`None` when killed by a signal).
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

/// Runs the `tenantry` binary to its end with `config`'s database and secrets, `env` on
/// top, and nothing else of the test's environment (no `RUST_LOG` or `RUST_BACKTRACE`
/// unless `env` sets them).
pub async fn run_tenantry(config: &Config, env: &[(&str, &str)], args: &[&str]) -> CliOutput {
    let output = tenantry_command(config)
        .args(args)
        .envs(env.iter().copied())
        .output()
        .await
        .expect("the tenantry binary runs");
    CliOutput {
        success: output.status.success(),
        code: output.status.code(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The `tenantry` binary, configured with `config`'s database and secrets and nothing
/// else of the test's environment.
pub fn tenantry_command(config: &Config) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"));
    command
        .env_clear()
        .env("DATABASE_URL", config.database_url.expose_secret())
        .env("JWT_SECRET", config.jwt_secret.expose_secret())
        .env(
            "TENANTRY_TOKEN_HASH_KEY",
            config.token_hash_key.expose_secret(),
        )
        .env(
            "TENANTRY_OPERATOR_TOKEN",
            config.operator_token.expose_secret(),
        );
    command
}

/// Runs the real binary (`serve`) on a free port with the test configuration plus `env`,
/// its output going to `log_file`; returns once it is ready.
pub async fn spawn_server_process(
    env: &[(&str, &str)],
    log_file: &std::path::Path,
) -> (tokio::process::Child, TestApp) {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"));
    command.arg("serve");
    start_server_process(command, env, log_file).await
}

/// [`spawn_server_process`] logging, as JSON to `log_file`, every SQL statement with the
/// request it belongs to, on a single request connection: sqlx resolves a type's OID once
/// per connection (`select $1::regtype::oid`), which would otherwise count against whichever
/// request happens to get a fresh one. (`RUST_LOG=sqlx::query=debug,warn` alone would
/// disable the INFO `request` span, target `tenantry::http::middleware`, and statements
/// would then carry no request at all, so that span is enabled too.) Read the lines back
/// with [`log_lines`], a request's with [`lines_of_request`].
pub async fn spawn_statement_logging_server(
    log_file: &std::path::Path,
) -> (tokio::process::Child, TestApp) {
    // Every request's own credential check is counted, never a cached one.
    spawn_statement_logging_server_with(&[("TENANTRY_CREDENTIAL_CACHE_TTL", "0s")], log_file).await
}

/// [`spawn_statement_logging_server`] with `env` on top (credentials cached as `env` says).
pub async fn spawn_statement_logging_server_with(
    env: &[(&str, &str)],
    log_file: &std::path::Path,
) -> (tokio::process::Child, TestApp) {
    let mut all = vec![
        ("LOG_FORMAT", "json"),
        (
            "RUST_LOG",
            "sqlx::query=debug,tenantry::http::middleware=info,warn",
        ),
        ("DATABASE_MAX_CONNECTIONS", "1"),
    ];
    all.extend_from_slice(env);
    spawn_server_process(&all, log_file).await
}

/// [`spawn_server_process`], with the process's limit on open descriptors (soft and hard)
/// set to `descriptors` by the shell that starts it.
pub async fn spawn_server_process_with_descriptor_limit(
    descriptors: u32,
    env: &[(&str, &str)],
    log_file: &std::path::Path,
) -> (tokio::process::Child, TestApp) {
    let mut command = tokio::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!("ulimit -n {descriptors} && exec \"$0\" serve"))
        .arg(env!("CARGO_BIN_EXE_tenantry"));
    start_server_process(command, env, log_file).await
}

async fn start_server_process(
    mut command: tokio::process::Command,
    env: &[(&str, &str)],
    log_file: &std::path::Path,
) -> (tokio::process::Child, TestApp) {
    let port = free_port();
    let log = std::fs::File::create(log_file).unwrap();
    command
        .env("DATABASE_URL", database_url())
        .env("TENANTRY_LISTEN", format!("127.0.0.1:{port}"))
        .env("JWT_SECRET", JWT_SECRET)
        .env("TENANTRY_OPERATOR_TOKEN", OPERATOR_TOKEN)
        .env("TENANTRY_TOKEN_HASH_KEY", "test-token-hash-key")
        .env("TENANTRY_RATE_LIMITS", "off")
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .kill_on_drop(true);
    for (name, value) in env {
        command.env(name, value);
    }
    let server = command.spawn().expect("the binary starts");
    let app = TestApp {
        address: format!("http://127.0.0.1:{port}"),
        client: reqwest::Client::new(),
        config: test_config(&[]),
    };
    for _ in 0..100 {
        if app
            .client
            .get(app.url("/health/ready"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return (server, app);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!(
        "the server did not become ready; its log: {}",
        std::fs::read_to_string(log_file).unwrap_or_default()
    );
}

/// The lines of a JSON log written by a server from [`spawn_server_process`] with
/// `LOG_FORMAT=json`.
pub fn json_log_lines(log_file: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(log_file)
        .unwrap_or_else(|e| panic!("the server log {} is readable: {e}", log_file.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON log line: {l}")))
        .collect()
}

/// The log lines of one request: those whose request span (`span`, or any entry of the
/// `spans` list when an inner span is current) carries the client's `client_request_id`
/// (the `X-Request-Id` the test sent; the server's own request id is one it mints).
pub fn lines_of_request<'a>(lines: &'a [Value], client_request_id: &str) -> Vec<&'a Value> {
    lines
        .iter()
        .filter(|line| {
            line["span"]["client_request_id"] == client_request_id
                || line["spans"].as_array().is_some_and(|spans| {
                    spans
                        .iter()
                        .any(|s| s["client_request_id"] == client_request_id)
                })
        })
        .collect()
}

/// The SQL statements among `lines` (logged with `RUST_LOG=sqlx::query=debug`), in order.
pub fn statements_in<'a>(lines: &[&'a Value]) -> Vec<&'a str> {
    lines
        .iter()
        .filter(|l| l["target"] == "sqlx::query")
        .filter_map(|l| {
            // `summary` is truncated; short statements have only a summary.
            l["db.statement"]
                .as_str()
                .filter(|s| !s.trim().is_empty())
                .or(l["summary"].as_str())
                .map(str::trim)
        })
        .collect()
}

/// Sends SIGTERM to a server started by [`spawn_server_process`].
pub fn sigterm(server: &tokio::process::Child) {
    let pid = server.id().expect("running").to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
}

// ---------------------------------------------------------------------------------------
// Orders (used by `orders` and by tests that need an order to act on)
// ---------------------------------------------------------------------------------------

/// The `id` of an API object.
pub fn id(object: &Value) -> &str {
    object["id"]
        .as_str()
        .unwrap_or_else(|| panic!("expected an object with an id, got {object}"))
}

/// The ids of a list answer's items, in order.
pub fn ids_of(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("expected a page, got {page}"))
        .iter()
        .map(|item| id(item).to_owned())
        .collect()
}

/// The body of `POST /v1/orders`.
pub fn order_request(customer: &Value, items: &[(&Value, i32)]) -> Value {
    let items: Vec<Value> = items
        .iter()
        .map(|(product, quantity)| json!({"product_id": id(product), "quantity": quantity}))
        .collect();
    json!({"customer_id": id(customer), "items": items})
}

/// `POST /v1/orders` as the tenant's owner.
pub async fn place(
    app: &TestApp,
    tenant: &TestTenant,
    customer: &Value,
    items: &[(&Value, i32)],
) -> Response {
    app.post("/v1/orders", &tenant.token, order_request(customer, items))
        .await
}

/// Places an order and returns it (panics unless 201).
pub async fn place_ok(
    app: &TestApp,
    tenant: &TestTenant,
    customer: &Value,
    items: &[(&Value, i32)],
) -> Value {
    expect_json(
        place(app, tenant, customer, items).await,
        StatusCode::CREATED,
    )
    .await
}

/// `POST /v1/orders/{id}/{name}` (`confirm`, `pay`, …) as the tenant's owner.
pub async fn command(
    app: &TestApp,
    tenant: &TestTenant,
    order_id: &str,
    name: &str,
    body: Value,
) -> Response {
    app.post(
        &format!("/v1/orders/{order_id}/{name}"),
        &tenant.token,
        body,
    )
    .await
}

/// The body a transition needs; `pay` pays `total_cents`.
pub fn command_body(name: &str, total_cents: i64) -> Value {
    match name {
        "pay" => json!({"amount_cents": total_cents, "reference": "pi_test"}),
        "cancel" => json!({"reason": "the customer changed their mind"}),
        _ => json!({}),
    }
}

// ---------------------------------------------------------------------------------------
// The operator API (used by `platform`, `tenant_profile` and `cli`)
// ---------------------------------------------------------------------------------------

/// The operator API's tenants collection.
pub const TENANTS: &str = "/v1/platform/tenants";

/// One tenant in the operator API.
pub fn tenant_path(id: impl std::fmt::Display) -> String {
    format!("{TENANTS}/{id}")
}

// ---------------------------------------------------------------------------------------
// Credentials (used by `auth`, `api_keys` and `platform`)
// ---------------------------------------------------------------------------------------

/// What a response said, kept for comparison and for failure messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: StatusCode,
    pub code: Option<String>,
    pub detail: Option<String>,
    pub content_type: Option<String>,
    pub www_authenticate: Option<String>,
}

/// What `response` said (its body read to the end).
pub async fn outcome(response: Response) -> Outcome {
    let header_text = |name: header::HeaderName| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let content_type = header_text(header::CONTENT_TYPE);
    let www_authenticate = header_text(header::WWW_AUTHENTICATE);
    let status = response.status();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    Outcome {
        status,
        code: body["code"].as_str().map(str::to_owned),
        detail: body["detail"].as_str().map(str::to_owned),
        content_type,
        www_authenticate,
    }
}

impl Outcome {
    /// True for a 401 `unauthenticated` problem that asks for a Bearer credential.
    pub fn is_unauthenticated(&self) -> bool {
        self.status == StatusCode::UNAUTHORIZED
            && self.code.as_deref() == Some("unauthenticated")
            && self.content_type.as_deref() == Some("application/problem+json")
            && self.www_authenticate.as_deref() == Some("Bearer")
    }
}

/// `GET path` with `X-API-Key`.
pub async fn get_with_api_key_header(app: &TestApp, path: &str, key: &str) -> Response {
    app.client
        .get(app.url(path))
        .header("x-api-key", key)
        .send()
        .await
        .expect("the server answers")
}

// ---------------------------------------------------------------------------------------
// Authorisation (used by `auth`, `users` and `api_keys`)
// ---------------------------------------------------------------------------------------

/// Everything a tenant's requests could change, as the database holds it.
pub async fn snapshot(app: &TestApp, tenant_id: TenantId) -> String {
    let mut db = app.owner_connection().await;
    sqlx::query_scalar(
        r#"
        select json_build_object(
            'tenant', (select row_to_json(t) from tenants t where t.id = $1),
            'users', (select json_agg(u order by u.id) from users u where u.tenant_id = $1),
            'api_keys', (select json_agg(k order by k.id) from api_keys k where k.tenant_id = $1),
            'sessions', (select json_agg(s order by s.id) from sessions s where s.tenant_id = $1),
            'products', (select json_agg(p order by p.id) from products p where p.tenant_id = $1),
            'customers', (select json_agg(c order by c.id) from customers c where c.tenant_id = $1),
            'orders', (select json_agg(o order by o.id) from order_summaries o where o.tenant_id = $1),
            'order_events', (select count(*) from domain_events e where e.tenant_id = $1),
            'audit_events', (select count(*) from audit_events a where a.tenant_id = $1)
        )::text
        "#,
    )
    .bind(tenant_id.as_uuid())
    .fetch_one(&mut db)
    .await
    .expect("the database owner reads the tenant's rows")
}

/// The scopes a role holds.
pub fn scopes_of(role: Role) -> Vec<Scope> {
    role.scopes().iter().collect()
}

/// A hundred orders of ten customers, two lines each over ten products (stock to spare),
/// placed ten at a time: what the statement-count tests page through.
pub async fn place_hundred_orders(app: &TestApp, tenant: &TestTenant) {
    let mut customers = Vec::new();
    let mut products = Vec::new();
    for _ in 0..10 {
        customers.push(app.create_customer(tenant).await);
        let body = json!({"sku": unique("SKU"), "name": "Paged product", "price_cents": 100,
                          "currency": "EUR", "stock": 1000});
        products.push(
            expect_json(
                app.post("/v1/products", &tenant.token, body).await,
                StatusCode::CREATED,
            )
            .await,
        );
    }
    for batch in 0..10 {
        let placed = futures::future::join_all((0..10).map(|n| {
            let customer = &customers[n];
            let items = [(&products[n], 1), (&products[(n + 1 + batch % 9) % 10], 2)];
            async move { place(app, tenant, customer, &items).await.status() }
        }))
        .await;
        assert!(
            placed.iter().all(|s| *s == StatusCode::CREATED),
            "orders placed: {placed:?}"
        );
    }
}
