//! What a failed login leaves behind: an `auth.login_failed` audit event in its tenant when
//! the tenant exists (with the email, never the password), nothing in any tenant when it
//! does not — and the same SQL statements either way, so an unknown tenant costs what an
//! unknown user does.

use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use super::attempt_login;
use crate::helpers::{
    PASSWORD, expect_json, expect_problem, json_log_lines, lines_of_request, sigterm, spawn_app,
    spawn_statement_logging_server, statements_in, unique,
};

const WRONG: &str = "not the right password, secret-4711";

#[tokio::test]
async fn a_failed_login_is_audited_in_its_tenant_without_the_password() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let unknown_email = format!("nobody@{}.test", tenant.slug);
    let run = Uuid::now_v7().simple().to_string();
    let cases = [
        (
            "wrong-password",
            tenant.slug.clone(),
            tenant.owner_email.clone(),
        ),
        ("unknown-user", tenant.slug.clone(), unknown_email.clone()),
        (
            "unknown-tenant",
            unique("nobody"),
            tenant.owner_email.clone(),
        ),
    ];

    // Act
    for (label, tenant_ref, email) in &cases {
        let request_id = format!("{label}-{run}");
        let response = attempt_login(
            &app,
            tenant_ref,
            email,
            WRONG,
            &[("x-request-id", &request_id)],
        )
        .await;
        expect_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
    }
    expect_json(
        attempt_login(&app, &tenant.slug, &tenant.owner_email, PASSWORD, &[]).await,
        StatusCode::OK,
    )
    .await;

    // Assert
    let mut db = app.owner_connection().await;
    let audited = |request_id: String| {
        sqlx::query_as::<_, (Uuid, String, String, String, Value, String)>(
            "select tenant_id, actor, action, target_type, personal, row_to_json(a)::text
             from audit_events a where client_request_id = $1",
        )
        .bind(request_id)
    };
    for (label, _, email) in &cases[..2] {
        let rows = audited(format!("{label}-{run}"))
            .fetch_all(&mut db)
            .await
            .unwrap();
        assert_eq!(rows.len(), 1, "{label}: one audit event: {rows:?}");
        let (tenant_id, _, action, target_type, personal, row) = &rows[0];
        assert_eq!(
            (*tenant_id, action.as_str(), target_type.as_str()),
            (tenant.id.as_uuid(), "auth.login_failed", "login"),
            "{label}: an auth.login_failed event in the tenant: {row}"
        );
        assert_eq!(
            personal["email"], *email,
            "{label}: the event names the email, as personal data: {row}"
        );
        assert!(
            !row.contains(WRONG) && !row.contains(PASSWORD) && !row.contains("$argon2"),
            "{label}: no password or hash in the event: {row}"
        );
    }
    let unknown_tenant = audited(format!("unknown-tenant-{run}"))
        .fetch_all(&mut db)
        .await
        .unwrap();
    assert!(
        unknown_tenant.is_empty(),
        "a login to a tenant that does not exist writes no audit event: {unknown_tenant:?}"
    );
}

#[tokio::test]
async fn an_unknown_tenant_costs_the_same_statements_as_an_unknown_user() {
    // Arrange: the real binary logging every statement with its request, on one
    // connection (warm-up logins take the per-connection type lookups).
    let log_file = std::env::temp_dir().join(format!("{}.log", unique("tenantry-samepath")));
    let (mut server, app) = spawn_statement_logging_server(&log_file).await;
    let tenant = app.create_tenant().await;
    let run = Uuid::now_v7().simple().to_string();
    let cases = [
        (
            "unknown-user",
            tenant.slug.clone(),
            format!("nobody@{}.test", tenant.slug),
        ),
        (
            "unknown-tenant",
            unique("nobody"),
            tenant.owner_email.clone(),
        ),
    ];

    // Act: each kind twice, the first as warm-up.
    for round in ["warm-up", "measured"] {
        for (label, tenant_ref, email) in &cases {
            let request_id = format!("{round}-{label}-{run}");
            let response = attempt_login(
                &app,
                tenant_ref,
                email,
                WRONG,
                &[("x-request-id", &request_id)],
            )
            .await;
            expect_problem(response, StatusCode::UNAUTHORIZED, "invalid_credentials").await;
        }
    }
    sigterm(&server);
    server.wait().await.unwrap();
    let lines = json_log_lines(&log_file);
    let _ = std::fs::remove_file(&log_file);

    // Assert
    let statements: Vec<Vec<&str>> = cases
        .iter()
        .map(|(label, _, _)| {
            statements_in(&lines_of_request(
                &lines,
                &format!("measured-{label}-{run}"),
            ))
        })
        .collect();
    assert!(
        statements[0].iter().any(|s| s.contains("from users")),
        "an unknown user is looked up: {:#?}",
        statements[0]
    );
    assert_eq!(
        statements[0].len(),
        statements[1].len(),
        "an unknown tenant runs as many statements as an unknown user:\nunknown user: {:#?}\nunknown tenant: {:#?}",
        statements[0],
        statements[1]
    );
    assert_eq!(
        statements[0], statements[1],
        "and the same ones, in the same order"
    );
}
