//! Least privilege, read from the catalog: each login role holds exactly the privileges
//! the code uses (a table of them, so a new grant is a new row here), the platform role
//! cannot reach users or their password hashes, and every database on a cluster has login
//! roles of its own, which open no other database.

use std::collections::BTreeSet;

use sqlx::{Connection, PgConnection};
use tenantry::db::{Roles, bootstrap};

use crate::helpers::{ScratchDatabase, spawn_app, test_config};

/// `(table, privilege)` pairs of the request role. A column list is written
/// `update(name, version, updated_at)`.
const APP: &[(&str, &str)] = &[
    ("api_keys", "insert"),
    ("api_keys", "select"),
    ("api_keys", "update"),
    ("audit_chain", "select"),
    ("audit_events", "insert"),
    ("audit_events", "select"),
    ("audit_retention", "select"),
    ("billing_lines", "select"),
    ("billing_periods", "select"),
    ("customers", "insert"),
    ("customers", "select"),
    ("customers", "update"),
    ("domain_events", "insert"),
    ("domain_events", "select"),
    ("idempotency_keys", "insert"),
    ("idempotency_keys", "select"),
    ("idempotency_keys", "update"),
    ("order_items", "insert"),
    ("order_items", "select"),
    ("order_summaries", "insert"),
    ("order_summaries", "select"),
    ("order_summaries", "update"),
    ("plans", "select"),
    ("products", "insert"),
    ("products", "select"),
    ("products", "update"),
    ("quota_counters", "insert"),
    ("quota_counters", "select"),
    ("quota_counters", "update"),
    ("refresh_tokens", "insert"),
    ("refresh_tokens", "select"),
    ("refresh_tokens", "update"),
    ("service_tokens", "select"),
    ("sessions", "insert"),
    ("sessions", "select"),
    ("sessions", "update"),
    ("tenants", "select"),
    ("tenants", "update(name, updated_at, version)"),
    ("usage_active_users", "select"),
    ("usage_counters", "insert"),
    ("usage_counters", "select"),
    ("usage_counters", "update"),
    ("users", "insert"),
    ("users", "select"),
    ("users", "update"),
    // Webhook secrets are written by the request role, never read back.
    (
        "webhook_endpoints",
        "select(created_at, deleted_at, description, disabled_reason, enabled, event_types, id, previous_secret_expires_at, tenant_id, updated_at, url, version)",
    ),
    ("webhook_endpoints", "insert"),
    ("webhook_endpoints", "update"),
    ("webhook_deliveries", "select"),
    ("webhook_deliveries", "insert"),
    (
        "webhook_deliveries",
        "update(attempts, next_attempt_at, state)",
    ),
    ("webhook_attempts", "select"),
];

/// `(table, privilege)` pairs of the platform role.
const PLATFORM: &[(&str, &str)] = &[
    ("audit_chain", "insert"),
    ("audit_chain", "select"),
    ("audit_events", "insert"),
    ("audit_events", "select"),
    ("audit_sealer", "select"),
    ("audit_sealer", "update"),
    ("billing_lines", "insert"),
    ("billing_lines", "select"),
    ("billing_periods", "insert"),
    ("billing_periods", "select"),
    ("billing_periods", "update(lines)"),
    ("domain_events", "select"),
    ("idempotency_keys", "delete"),
    ("idempotency_keys", "select"),
    ("projection_rebuilds", "select"),
    ("tenants", "select"),
    ("plans", "insert"),
    ("plans", "select"),
    ("plans", "update"),
    ("quota_counters", "insert"),
    ("quota_counters", "select"),
    ("quota_counters", "update"),
    ("usage_active_users", "insert"),
    ("usage_active_users", "select"),
    ("usage_active_users", "update(period)"),
    ("usage_counters", "insert"),
    ("usage_counters", "select"),
    ("usage_counters", "update"),
    (
        "tenants",
        "update(limit_overrides, name, plan, status, updated_at, version)",
    ),
    ("webhook_attempts", "insert"),
    ("webhook_attempts", "select"),
    ("webhook_deliveries", "insert"),
    ("webhook_deliveries", "select"),
    (
        "webhook_deliveries",
        "update(attempts, delivered_at, last_attempt_at, next_attempt_at, state)",
    ),
    ("webhook_dispatcher", "select"),
    ("webhook_dispatcher", "update"),
    ("webhook_endpoints", "select"),
    (
        "webhook_endpoints",
        "update(disabled_reason, enabled, updated_at, version)",
    ),
];

/// Every table privilege `role` holds in the connected database, table-wide or on columns.
async fn privileges(conn: &mut PgConnection, role: &str) -> BTreeSet<(String, String)> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        r#"
        select table_name::text, lower(privilege_type)
        from information_schema.role_table_grants
        where grantee = $1 and table_schema = 'public'
        union all
        select c.table_name::text,
               lower(c.privilege_type) || '(' || string_agg(c.column_name::text, ', ' order by c.column_name) || ')'
        from information_schema.column_privileges c
        where c.grantee = $1 and c.table_schema = 'public'
          and not exists (
              select 1 from information_schema.role_table_grants t
              where t.grantee = c.grantee and t.table_schema = c.table_schema
                and t.table_name = c.table_name and t.privilege_type = c.privilege_type)
        group by c.table_name, c.privilege_type
        "#,
    )
    .bind(role)
    .fetch_all(conn)
    .await
    .unwrap();
    rows.into_iter().collect()
}

fn expected(pairs: &[(&str, &str)]) -> BTreeSet<(String, String)> {
    pairs
        .iter()
        .map(|(table, privilege)| (table.to_string(), privilege.to_string()))
        .collect()
}

#[tokio::test]
async fn each_role_holds_exactly_the_table_privileges_the_code_uses() {
    let app = spawn_app().await;
    let roles = app.roles();
    let mut owner = app.owner_connection().await;

    for (role, wanted) in [(&roles.app, APP), (&roles.platform, PLATFORM)] {
        let held = privileges(&mut owner, role).await;
        let wanted = expected(wanted);
        assert_eq!(
            held,
            wanted,
            "{role}: granted but not expected {:?}; expected but not granted {:?}",
            held.difference(&wanted).collect::<Vec<_>>(),
            wanted.difference(&held).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn only_the_two_roles_may_connect_and_each_executes_only_its_functions() {
    let app = spawn_app().await;
    let roles = app.roles();
    let mut owner = app.owner_connection().await;

    let public_may_connect: bool = sqlx::query_scalar(
        "select coalesce(bool_or(a.grantee = 0 and a.privilege_type = 'CONNECT'), false)
         from pg_database d, aclexplode(d.datacl) a where d.datname = current_database()",
    )
    .fetch_one(&mut owner)
    .await
    .unwrap();
    assert!(
        !public_may_connect,
        "PUBLIC must not connect to the database"
    );

    let functions = [
        "tenant_by_slug(text)",
        "create_tenant(uuid, text, text, text, uuid, text, text)",
    ];
    let expectations = [(&roles.app, [true, false]), (&roles.platform, [true, true])];
    for (role, may) in expectations {
        for (function, may) in functions.iter().zip(may) {
            let held: bool = sqlx::query_scalar("select has_function_privilege($1, $2, 'execute')")
                .bind(role)
                .bind(function)
                .fetch_one(&mut owner)
                .await
                .unwrap();
            assert_eq!(held, may, "{role} executing {function}");
        }
    }
}

#[tokio::test]
async fn the_platform_role_can_neither_read_password_hashes_nor_add_users() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let mut platform = app.platform_role_connection().await;

    let read = sqlx::query_scalar::<_, String>("select password_hash from users limit 1")
        .fetch_optional(&mut platform)
        .await;
    assert_permission_denied(read.map(drop), "reading users.password_hash");

    let mut tx = platform.begin().await.unwrap();
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(tenant.id.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    let inserted = sqlx::query(
        "insert into users (tenant_id, id, email, role, password_hash)
         values ($1, gen_random_uuid(), 'intruder@example.test', 'owner', 'x')",
    )
    .bind(tenant.id.as_uuid())
    .execute(&mut *tx)
    .await;
    assert_permission_denied(inserted.map(drop), "adding a user to an existing tenant");
}

fn assert_permission_denied(result: Result<(), sqlx::Error>, what: &str) {
    match result {
        Err(sqlx::Error::Database(db)) if db.code().as_deref() == Some("42501") => {}
        other => panic!("{what} must be refused with permission denied (42501), got {other:?}"),
    }
}

#[tokio::test]
async fn every_database_has_login_roles_of_its_own_that_open_no_other_database() {
    // Arrange: a second database on the same cluster, as a staging deployment would be.
    let app = spawn_app().await;
    let staging = ScratchDatabase::new("tenantry_staging");
    let config = test_config(&[("DATABASE_URL", staging.url().as_str())]);

    // Act
    bootstrap(&config)
        .await
        .expect("the second database bootstraps");

    // Assert: its roles are named after it, not shared with the test database's.
    let ours = app.roles();
    let theirs = Roles::from_config(&config).unwrap();
    assert_eq!(theirs.app, format!("{}_app", staging.name));
    assert_eq!(theirs.platform, format!("{}_platform", staging.name));
    assert_ne!(ours.app, theirs.app);

    // Each role may connect to its own database only.
    let mut owner = app.owner_connection().await;
    let test_database: String = sqlx::query_scalar("select current_database()::text")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    for (role, database, may) in [
        (&theirs.app, &staging.name, true),
        (&theirs.platform, &staging.name, true),
        (&theirs.app, &test_database, false),
        (&theirs.platform, &test_database, false),
        (&ours.app, &staging.name, false),
        (&ours.platform, &staging.name, false),
        // The fixed names of the first releases keep nothing in a database not theirs.
        (&"tenantry_app".to_owned(), &staging.name, false),
    ] {
        let exists: bool =
            sqlx::query_scalar("select exists (select 1 from pg_roles where rolname = $1)")
                .bind(role)
                .fetch_one(&mut owner)
                .await
                .unwrap();
        if !exists {
            continue;
        }
        let held: bool = sqlx::query_scalar("select has_database_privilege($1, $2, 'connect')")
            .bind(role)
            .bind(database)
            .fetch_one(&mut owner)
            .await
            .unwrap();
        assert_eq!(held, may, "{role} connecting to {database}");
    }
    let refused = PgConnection::connect_with(
        &tenantry::db::connect_options(&app.config)
            .unwrap()
            .username(&theirs.app)
            .password(tenantry::config::DEV_DB_ROLE_PASSWORD),
    )
    .await;
    assert!(
        refused.is_err(),
        "the staging request role must not log into the test database"
    );

    // Passwords are stored as SCRAM verifiers (sent so, never in clear text).
    for role in [&theirs.app, &theirs.platform] {
        let stored: Option<String> =
            sqlx::query_scalar("select rolpassword from pg_authid where rolname = $1")
                .bind(role)
                .fetch_one(&mut owner)
                .await
                .unwrap();
        assert!(
            stored
                .as_deref()
                .is_some_and(|p| p.starts_with("SCRAM-SHA-256$")),
            "{role}'s password is a SCRAM verifier"
        );
    }
}
