//! Failed logins are throttled per account (tenant and email) and per client address: past
//! a few free failures each key is locked out for a growing delay, refused with 429
//! `too_many_attempts` and `Retry-After` before any password is hashed, the same whether or
//! not the account exists. A lock-out ends by itself, locks out no one else, and a
//! successful login clears its account's count.

use std::time::Duration;

use reqwest::{Response, StatusCode};
use serde_json::json;
use uuid::Uuid;

use super::attempt_login;
use crate::helpers::{
    PASSWORD, TestApp, expect_json, expect_problem, json_log_lines, lines_of_request, outcome,
    sigterm, spawn_app_with, spawn_server_process, unique,
};

const WRONG: &str = "not the right password";

/// The whole seconds of a response's `Retry-After` (panics when it has none).
fn retry_after(response: &Response) -> u64 {
    response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "expected a Retry-After of whole seconds on the {} answer, got {:?}",
                response.status(),
                response.headers().get("retry-after")
            )
        })
}

/// Creates a user with `email` and the test password in the tenant of `owner_token`.
async fn user_with_email(app: &TestApp, owner_token: &str, email: &str) {
    expect_json(
        app.post(
            "/v1/users",
            owner_token,
            json!({"email": email, "role": "member", "password": PASSWORD}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
}

#[tokio::test]
async fn a_locked_account_is_refused_with_429_before_any_password_is_hashed() {
    // Arrange: the real binary, logging every argon2 computation with its request id, with
    // two free failures per account and a lock-out that outlasts the test.
    let log_file = std::env::temp_dir().join(format!("{}.log", unique("tenantry-lockout")));
    let (mut server, app) = spawn_server_process(
        &[
            ("LOG_FORMAT", "json"),
            (
                "RUST_LOG",
                "tenantry::users::password=debug,tenantry::http::middleware=info,warn",
            ),
            ("LOGIN_ACCOUNT_FREE_FAILURES", "2"),
            ("LOGIN_LOCKOUT_BASE", "10m"),
        ],
        &log_file,
    )
    .await;
    let tenant = app.create_tenant().await;
    let unknown_email = format!("nobody@{}.test", tenant.slug);
    let run = Uuid::now_v7().simple().to_string();

    // Act: two free failures and a third that starts the lock-out, for the owner and for
    // an email no user has; then the owner's right password.
    let mut failures = Vec::new();
    for (account, email) in [("owner", &tenant.owner_email), ("nobody", &unknown_email)] {
        for n in 0..3 {
            let request_id = format!("fail-{n}-{account}-{run}");
            let response = attempt_login(
                &app,
                &tenant.slug,
                email,
                WRONG,
                &[("x-request-id", &request_id)],
            )
            .await;
            failures.push((request_id, outcome(response).await));
        }
    }
    let mut refusals = Vec::new();
    for (account, email, password) in [
        ("owner", &tenant.owner_email, PASSWORD),
        ("nobody", &unknown_email, WRONG),
    ] {
        let request_id = format!("locked-{account}-{run}");
        let response = attempt_login(
            &app,
            &tenant.slug,
            email,
            password,
            &[("x-request-id", &request_id)],
        )
        .await;
        let seconds = retry_after(&response);
        let problem =
            expect_problem(response, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
        refusals.push((request_id, seconds, problem));
    }
    sigterm(&server);
    server.wait().await.unwrap();
    let lines = json_log_lines(&log_file);
    let _ = std::fs::remove_file(&log_file);

    // Assert
    for (request_id, failure) in &failures {
        assert_eq!(
            (failure.status, failure.code.as_deref()),
            (StatusCode::UNAUTHORIZED, Some("invalid_credentials")),
            "{request_id}: the failures before and at the lock-out are ordinary 401s"
        );
    }
    let argon2_runs = |request_id: &str| {
        lines_of_request(&lines, request_id)
            .iter()
            .filter(|l| l["message"] == "argon2 computed")
            .count()
    };
    for (request_id, _) in &failures {
        assert_eq!(
            argon2_runs(request_id),
            1,
            "{request_id}: a failed login that is not throttled costs one argon2 computation; its lines: {:#?}",
            lines_of_request(&lines, request_id)
        );
    }
    for (request_id, seconds, _) in &refusals {
        assert!(
            !lines_of_request(&lines, request_id).is_empty(),
            "{request_id}: the log has the refused request's own lines"
        );
        assert_eq!(
            argon2_runs(request_id),
            0,
            "{request_id}: a refusal computes no argon2 hash; its lines: {:#?}",
            lines_of_request(&lines, request_id)
        );
        assert!(
            (1..=600).contains(seconds),
            "{request_id}: Retry-After is the rest of the 10-minute lock-out, got {seconds}"
        );
    }
    let strip = |problem: &serde_json::Value| {
        let mut problem = problem.clone();
        problem["request_id"] = serde_json::Value::Null;
        problem["trace_id"] = serde_json::Value::Null;
        problem
    };
    assert_eq!(
        strip(&refusals[0].2),
        strip(&refusals[1].2),
        "a locked account that exists and one that does not are refused alike"
    );
}

#[tokio::test]
async fn a_lock_out_ends_after_its_delay_and_locks_out_no_other_account() {
    // Arrange: two free failures, then a one-second lock-out.
    let app = spawn_app_with(&[
        ("LOGIN_ACCOUNT_FREE_FAILURES", "2"),
        ("LOGIN_LOCKOUT_BASE", "1s"),
    ])
    .await;
    let tenant = app.create_tenant().await;
    let colleague = format!("{}@{}.test", unique("colleague"), tenant.slug);
    user_with_email(&app, &tenant.token, &colleague).await;
    let other = app.create_tenant().await;
    user_with_email(&app, &other.token, &tenant.owner_email).await;

    // Act
    let mut failures = Vec::new();
    for _ in 0..3 {
        let response = attempt_login(&app, &tenant.slug, &tenant.owner_email, WRONG, &[]).await;
        failures.push(response.status());
    }
    let locked = attempt_login(&app, &tenant.slug, &tenant.owner_email, PASSWORD, &[]).await;
    let wait = retry_after(&locked);
    expect_problem(locked, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
    let colleague_login = attempt_login(&app, &tenant.slug, &colleague, PASSWORD, &[]).await;
    let other_tenant_login =
        attempt_login(&app, &other.slug, &tenant.owner_email, PASSWORD, &[]).await;
    tokio::time::sleep(Duration::from_secs(wait) + Duration::from_millis(100)).await;
    let after_the_delay =
        attempt_login(&app, &tenant.slug, &tenant.owner_email, PASSWORD, &[]).await;
    let after_the_success =
        attempt_login(&app, &tenant.slug, &tenant.owner_email, WRONG, &[]).await;

    // Assert
    assert_eq!(
        failures,
        [StatusCode::UNAUTHORIZED; 3],
        "the failures up to the lock-out are 401s"
    );
    assert!(
        (1..=2).contains(&wait),
        "Retry-After covers the one-second lock-out, got {wait}"
    );
    expect_json(colleague_login, StatusCode::OK).await;
    expect_json(other_tenant_login, StatusCode::OK).await;
    expect_json(after_the_delay, StatusCode::OK).await;
    expect_problem(
        after_the_success,
        StatusCode::UNAUTHORIZED,
        "invalid_credentials",
    )
    .await;
}

#[tokio::test]
async fn many_failed_logins_from_one_client_lock_that_client_out_across_emails() {
    // Arrange: a trusted proxy names the client in X-Forwarded-For; three free failures
    // per client, and accounts that never lock.
    let app = spawn_app_with(&[
        ("TENANTRY_CLIENT_IP_HEADER", "x-forwarded-for"),
        ("LOGIN_CLIENT_FREE_FAILURES", "3"),
        ("LOGIN_ACCOUNT_FREE_FAILURES", "1000"),
        ("LOGIN_LOCKOUT_BASE", "10m"),
    ])
    .await;
    let tenant = app.create_tenant().await;
    let attacker = [("x-forwarded-for", "198.51.100.1, 203.0.113.7")];
    let bystander = [("x-forwarded-for", "198.51.100.1, 203.0.113.8")];

    // Act: four failures, each for another email, from one client.
    let mut failures = Vec::new();
    for _ in 0..4 {
        let email = format!("{}@{}.test", unique("guess"), tenant.slug);
        let response = attempt_login(&app, &tenant.slug, &email, WRONG, &attacker).await;
        failures.push(response.status());
    }
    let attacker_with_the_right_password =
        attempt_login(&app, &tenant.slug, &tenant.owner_email, PASSWORD, &attacker).await;
    let bystander_login = attempt_login(
        &app,
        &tenant.slug,
        &tenant.owner_email,
        PASSWORD,
        &bystander,
    )
    .await;

    // Assert
    assert_eq!(
        failures,
        [StatusCode::UNAUTHORIZED; 4],
        "the failures up to the client's lock-out are 401s"
    );
    assert!(
        retry_after(&attacker_with_the_right_password) > 0,
        "the client's refusal says when to retry"
    );
    expect_problem(
        attacker_with_the_right_password,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_attempts",
    )
    .await;
    expect_json(bystander_login, StatusCode::OK).await;
}

#[tokio::test]
async fn without_a_trusted_proxy_the_forwarded_for_header_is_ignored() {
    // Arrange: the default (no client address header), two free failures per client.
    let app = spawn_app_with(&[
        ("LOGIN_CLIENT_FREE_FAILURES", "2"),
        ("LOGIN_ACCOUNT_FREE_FAILURES", "1000"),
        ("LOGIN_LOCKOUT_BASE", "10m"),
    ])
    .await;
    let tenant = app.create_tenant().await;

    // Act: each failure claims to come from another address.
    let mut failures = Vec::new();
    for n in 0..3 {
        let email = format!("{}@{}.test", unique("guess"), tenant.slug);
        let forged = format!("203.0.113.{n}");
        let response = attempt_login(
            &app,
            &tenant.slug,
            &email,
            WRONG,
            &[("x-forwarded-for", &forged)],
        )
        .await;
        failures.push(response.status());
    }
    let next = attempt_login(
        &app,
        &tenant.slug,
        &tenant.owner_email,
        PASSWORD,
        &[("x-forwarded-for", "203.0.113.99")],
    )
    .await;

    // Assert
    assert_eq!(failures, [StatusCode::UNAUTHORIZED; 3], "three failures");
    expect_problem(next, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
}

#[tokio::test]
async fn instances_sharing_redis_count_an_accounts_failures_together() {
    // Arrange: two servers on one Redis, two free failures per account, a long lock-out.
    let config = [
        ("REDIS_URL", "redis://127.0.0.1:6379"),
        ("LOGIN_ACCOUNT_FREE_FAILURES", "2"),
        ("LOGIN_LOCKOUT_BASE", "10m"),
    ];
    let (a, b) = (spawn_app_with(&config).await, spawn_app_with(&config).await);
    let tenant = a.create_tenant().await;

    // Act: the failures alternate between the instances; then the right password on B.
    let mut failures = Vec::new();
    for app in [&a, &b, &a] {
        let response = attempt_login(app, &tenant.slug, &tenant.owner_email, WRONG, &[]).await;
        failures.push(response.status());
    }
    let locked = attempt_login(&b, &tenant.slug, &tenant.owner_email, PASSWORD, &[]).await;

    // Assert: B saw one failure itself, yet knows the account is locked out.
    assert_eq!(failures, [StatusCode::UNAUTHORIZED; 3]);
    expect_problem(locked, StatusCode::TOO_MANY_REQUESTS, "too_many_attempts").await;
}
