//! Operations: health, readiness, metrics, structured logs, graceful shutdown.

use std::time::Duration;

use futures::SinkExt;
use reqwest::StatusCode;
use serde_json::json;
use tenantry::{
    db::Db,
    http::{self, AppState},
    startup::Application,
};
use uuid::Uuid;

use crate::helpers::{
    OPERATOR_TOKEN, PASSWORD, expect_json, expect_problem, free_port, run_tenantry,
    serve_on_loopback, sigterm, spawn_app, spawn_server_process, test_config,
};

#[tokio::test]
async fn liveness_and_readiness_answer_ok_when_postgres_is_up() {
    let app = spawn_app().await;
    for path in ["/health/live", "/health/ready"] {
        let body = expect_json(
            app.client.get(app.url(path)).send().await.unwrap(),
            StatusCode::OK,
        )
        .await;
        assert_eq!(body, json!({"status": "ok"}), "{path}");
    }
}

/// Serves the API with pools pointing at a port where nothing listens (`Application::build`
/// would refuse to start: its bootstrap needs the database). Returns the base URL.
async fn serve_without_postgres() -> (String, tenantry::config::Config) {
    let config = test_config(&[(
        "DATABASE_URL",
        "postgres://postgres@127.0.0.1:1/tenantry_test",
    )]);
    let state = AppState::new(&config, Db::connect(&config).unwrap())
        .await
        .unwrap();
    (serve_on_loopback(http::app(state, &config)).await, config)
}

#[tokio::test]
async fn readiness_fails_with_503_when_postgres_is_unreachable() {
    let (address, _) = serve_without_postgres().await;
    let address = address.trim_start_matches("http://").to_owned();
    let client = reqwest::Client::new();

    let ready = client
        .get(format!("http://{address}/health/ready"))
        .send()
        .await
        .unwrap();
    expect_problem(
        ready,
        StatusCode::SERVICE_UNAVAILABLE,
        "service_unavailable",
    )
    .await;
    let live = client
        .get(format!("http://{address}/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        live.status(),
        StatusCode::OK,
        "liveness does not depend on Postgres"
    );
}

/// The port of a server's base URL (`http://127.0.0.1:PORT`).
fn port_of(address: &str) -> String {
    address.rsplit_once(':').expect("a port").1.to_owned()
}

#[tokio::test]
async fn healthcheck_exits_0_when_the_server_it_is_configured_for_is_ready() {
    let app = spawn_app().await;
    let port = port_of(&app.address);
    // On loopback, and on every address (probed over loopback), as in the container.
    for env in [
        vec![("TENANTRY_LISTEN", format!("127.0.0.1:{port}"))],
        vec![
            ("TENANTRY_LISTEN", format!("0.0.0.0:{port}")),
            ("TENANTRY_ALLOW_DEV_SECRETS", "true".to_owned()),
        ],
    ] {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let output = run_tenantry(&app.config, &env, &["healthcheck"]).await;
        assert_eq!(output.code, Some(0), "{env:?}: {}", output.stderr);
        assert_eq!(output.stdout, "ready\n", "{env:?}");
        assert_eq!(output.stderr, "", "{env:?}: a probe logs nothing");
    }
}

#[tokio::test]
async fn healthcheck_exits_1_when_the_server_is_not_ready_or_not_there() {
    // Not ready: a server whose database is unreachable answers /health/ready with 503.
    let (address, config) = serve_without_postgres().await;
    let listen = format!("127.0.0.1:{}", port_of(&address));
    let output = run_tenantry(&config, &[("TENANTRY_LISTEN", &listen)], &["healthcheck"]).await;
    assert_eq!(output.code, Some(1), "{}", output.stderr);
    assert_eq!(output.stdout, "");
    assert!(
        output.stderr.starts_with("not ready: GET http://")
            && output.stderr.contains("/health/ready answered 503"),
        "says what it asked and what it was answered: {}",
        output.stderr
    );

    // Not there: nothing listens on the port.
    let listen = format!("127.0.0.1:{}", free_port());
    let output = run_tenantry(&config, &[("TENANTRY_LISTEN", &listen)], &["healthcheck"]).await;
    assert_eq!(output.code, Some(1), "{}", output.stderr);
    assert!(
        output
            .stderr
            .starts_with(&format!("not ready: GET http://{listen}/health/ready: ")),
        "{}",
        output.stderr
    );
}

#[tokio::test]
async fn while_postgres_is_unreachable_every_kind_of_request_fails_fast_with_503_and_retry_after() {
    // Arrange: no database; one request of each path to it — a tenant credential check
    // (request pool), a login (its tenant lookup), the operator API (platform pool) and
    // readiness. The pools' acquire timeout is 5 s; failing fast means far less.
    let (address, config) = serve_without_postgres().await;
    let client = reqwest::Client::new();
    let token = tenantry::auth::jwt::JwtKeys::from_config(&config)
        .unwrap()
        .issue(
            tenantry::tenancy::TenantId::new(),
            "test",
            [tenantry::access::Scope::TenantRead].into_iter().collect(),
            Duration::from_secs(300),
            None,
        )
        .unwrap();
    let requests = || {
        [
            (
                "GET /v1/tenant",
                client
                    .get(format!("{address}/v1/tenant"))
                    .bearer_auth(&token),
            ),
            (
                "POST /v1/auth/login",
                client
                    .post(format!("{address}/v1/auth/login"))
                    .json(&json!({"tenant": "acme", "email": "a@acme.test", "password": PASSWORD})),
            ),
            (
                "GET /v1/platform/tenants",
                client
                    .get(format!("{address}/v1/platform/tenants"))
                    .bearer_auth(OPERATOR_TOKEN),
            ),
            (
                "GET /health/ready",
                client.get(format!("{address}/health/ready")),
            ),
        ]
    };

    // Act + Assert: three rounds; the first may spend a moment learning that Postgres is
    // gone, none may wait for the pool's timeout
    for round in 0..3 {
        for (what, request) in requests() {
            let started = std::time::Instant::now();
            let response = request.send().await.expect("the server answers");
            let elapsed = started.elapsed();
            let retry_after = response
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            expect_problem(
                response,
                StatusCode::SERVICE_UNAVAILABLE,
                "service_unavailable",
            )
            .await;
            assert!(
                retry_after.is_some_and(|seconds| seconds >= 1),
                "{what}: expected a Retry-After of at least a second, got {retry_after:?}"
            );
            let limit = if round == 0 {
                Duration::from_millis(1500)
            } else {
                Duration::from_millis(500)
            };
            assert!(
                elapsed < limit,
                "{what} (round {round}): expected a 503 within {limit:?}, it took {elapsed:?}"
            );
        }
    }
}

#[tokio::test]
async fn metrics_are_labelled_by_route_template_never_by_raw_path() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let id = Uuid::now_v7();
    app.get(&format!("/v1/users/{id}"), &tenant.token).await;

    let metrics = app.metrics().await;
    assert!(
        metrics
            .contains(r#"http_requests_total{method="GET",route="/v1/users/{id}",status="404"}"#),
        "request counter by method, route template and status expected in:\n{metrics}"
    );
    assert!(
        metrics.contains("http_request_duration_seconds_bucket{"),
        "latency histogram expected"
    );
    assert!(
        !metrics.contains(&id.to_string()),
        "a raw path (with its id) leaked into metric labels"
    );
}

#[tokio::test]
async fn a_made_up_method_is_counted_as_other_never_under_its_own_name() {
    let app = spawn_app().await;
    // Unique to this run, so no other test can have produced the label.
    let made_up = format!("BREW{}", Uuid::new_v4().simple()).to_uppercase();
    let method = reqwest::Method::from_bytes(made_up.as_bytes()).unwrap();
    let response = app
        .client
        .request(method, app.url("/health/live"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);

    let metrics = app.metrics().await;
    assert!(
        metrics
            .contains(r#"http_requests_total{method="OTHER",route="/health/live",status="405"}"#),
        "a made-up method counted under method=\"OTHER\" expected in:\n{metrics}"
    );
    assert!(
        !metrics.contains(&made_up),
        "the made-up method {made_up} became a metric label"
    );
}

#[tokio::test]
async fn shutdown_drains_a_request_already_in_flight() {
    let config = test_config(&[]);
    let app = Application::build(&config).await.unwrap();
    let address = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(app.run_until(async move {
        let _ = stopped.await;
    }));

    let client = reqwest::Client::new();
    let response = login_in_flight_across(&client, &format!("{address}/v1/auth/login"), || {
        stop.send(()).unwrap()
    })
    .await;
    expect_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stops once drained")
        .unwrap()
        .unwrap();
    assert!(
        client
            .get(format!("{address}/health/live"))
            .send()
            .await
            .is_err(),
        "no new connections after shutdown"
    );
}

/// Sends a login whose body is still arriving when `stop` is called, finishes the body
/// after the stop, and returns the answer: a drained request is answered, not cut off.
async fn login_in_flight_across(
    client: &reqwest::Client,
    url: &str,
    stop: impl FnOnce(),
) -> reqwest::Response {
    let (mut body_tx, body_rx) =
        futures::channel::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let in_flight = tokio::spawn(
        client
            .post(url)
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(body_rx))
            .send(),
    );
    body_tx
        .send(Ok(br#"{"tenant": "no-such-tenant", "#.to_vec()))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    body_tx
        .send(Ok(
            br#""email": "a@b.test", "password": "not the password"}"#.to_vec(),
        ))
        .await
        .unwrap();
    drop(body_tx);
    in_flight
        .await
        .unwrap()
        .expect("the in-flight request is answered after the stop signal, not cut off")
}

#[tokio::test]
async fn json_logs_at_trace_level_never_contain_passwords_tokens_or_keys() {
    let log_file =
        std::env::temp_dir().join(format!("{}.log", crate::helpers::unique("tenantry-logs")));
    let (mut server, app) =
        spawn_server_process(&[("LOG_FORMAT", "json"), ("RUST_LOG", "trace")], &log_file).await;

    let tenant = app.create_tenant().await;
    let (_, key) = app.create_api_key(&tenant, &["tenant:read"]).await;
    app.client
        .get(app.url("/v1/me"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    app.get("/v1/me", &key).await;
    app.get("/v1/me", &tenant.token).await;
    app.get("/v1/me", "garbage-token-value").await;
    let refreshed = app
        .request(
            reqwest::Method::POST,
            "/v1/auth/refresh",
            None,
            Some(&json!({"refresh_token": tenant.refresh_token})),
        )
        .await;
    assert_eq!(refreshed.status(), StatusCode::OK);
    sigterm(&server);
    server.wait().await.unwrap();

    let text = std::fs::read_to_string(&log_file).unwrap();
    let _ = std::fs::remove_file(&log_file);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not a JSON log line: {l}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["message"] == "request finished" && l["span"]["request_id"].is_string()),
        "structured request logs with the request id expected"
    );
    let key_secret = &key[key.len() - 20..];
    for (what, secret) in [
        ("password", crate::helpers::PASSWORD),
        ("API key", key.as_str()),
        ("API key secret part", key_secret),
        ("access token", tenant.token.as_str()),
        ("refresh token", tenant.refresh_token.as_str()),
        ("operator token", crate::helpers::OPERATOR_TOKEN),
        ("JWT secret", crate::helpers::JWT_SECRET),
        ("argon2 hash", "$argon2id$"),
    ] {
        assert!(!text.contains(secret), "the logs contain a {what}");
    }
}

#[tokio::test]
async fn the_binary_drains_an_in_flight_request_on_sigterm_and_exits_cleanly() {
    let log_file = std::env::temp_dir().join(format!(
        "{}.log",
        crate::helpers::unique("tenantry-sigterm")
    ));
    let (mut server, app) = spawn_server_process(&[], &log_file).await;

    let response =
        login_in_flight_across(&app.client, &app.url("/v1/auth/login"), || sigterm(&server)).await;
    expect_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    let status = tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("exits after draining")
        .unwrap();
    let _ = std::fs::remove_file(&log_file);
    assert!(status.success(), "clean exit after SIGTERM, got {status}");
}
