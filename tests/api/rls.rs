//! The row-level-security wall itself: the PostgreSQL system catalog says every tenant
//! table is under forced RLS with a complete policy, the request role cannot get around
//! it, and with no tenant set it sees nothing and can write nothing.

use sqlx::{Connection, Row};

use crate::helpers::spawn_app;

/// A transaction of the request role inside one tenant's context, set as the server does.
async fn tenant_transaction(
    conn: &mut sqlx::PgConnection,
    tenant: tenantry::tenancy::TenantId,
) -> sqlx::Transaction<'_, sqlx::Postgres> {
    let mut tx = conn.begin().await.unwrap();
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

#[tokio::test]
async fn every_table_with_a_tenant_id_has_forced_rls_and_a_using_and_with_check_policy() {
    let app = spawn_app().await;
    let mut conn = app.owner_connection().await;

    let tables: Vec<(String, bool, bool, i64)> = sqlx::query_as(
        r#"
        select c.relname::text, c.relrowsecurity, c.relforcerowsecurity,
               (select count(*) from pg_policy p
                 where p.polrelid = c.oid and p.polcmd = '*'
                   and p.polqual is not null and p.polwithcheck is not null
                   and pg_get_expr(p.polqual, p.polrelid) like '%current_setting(''app.tenant_id''%'
                   and pg_get_expr(p.polwithcheck, p.polrelid) like '%current_setting(''app.tenant_id''%')
        from pg_class c
        join pg_namespace n on n.oid = c.relnamespace
        where n.nspname = 'public' and c.relkind in ('r', 'p')
          and (c.relname = 'tenants' or exists (
                select 1 from pg_attribute a where a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped))
        order by 1
        "#,
    )
    .fetch_all(&mut conn)
    .await
    .unwrap();

    let names: Vec<&str> = tables.iter().map(|t| t.0.as_str()).collect();
    for expected in [
        "tenants",
        "users",
        "sessions",
        "refresh_tokens",
        "api_keys",
        "audit_events",
        "products",
        "customers",
        "service_tokens",
        "usage_counters",
        "usage_active_users",
        "billing_lines",
        "audit_retention",
        "webhook_endpoints",
        "webhook_deliveries",
        "webhook_attempts",
    ] {
        assert!(
            names.contains(&expected),
            "tenant table {expected} missing from {names:?}"
        );
    }
    let unprotected: Vec<_> = tables
        .iter()
        .filter(|(_, enabled, forced, policies)| !enabled || !forced || *policies == 0)
        .collect();
    assert!(
        unprotected.is_empty(),
        "tables without enabled+forced RLS and a tenant policy: {unprotected:?}"
    );
}

#[tokio::test]
async fn request_role_is_not_superuser_cannot_bypass_rls_owns_nothing_and_inherits_nothing() {
    let app = spawn_app().await;
    let mut conn = app.owner_connection().await;

    let roles = app.roles();
    for role in [&roles.app, &roles.platform] {
        let row = sqlx::query(
            r#"
            select r.rolsuper, r.rolbypassrls, r.rolcanlogin,
                   (select count(*) from pg_class c where c.relowner = r.oid) as owned,
                   (select count(*) from pg_auth_members m where m.member = r.oid) as memberships
            from pg_roles r where r.rolname = $1
            "#,
        )
        .bind(role)
        .fetch_one(&mut conn)
        .await
        .unwrap();
        assert!(
            !row.get::<bool, _>("rolsuper"),
            "{role} must not be superuser"
        );
        assert!(
            !row.get::<bool, _>("rolbypassrls"),
            "{role} must not have BYPASSRLS"
        );
        assert!(
            row.get::<bool, _>("rolcanlogin"),
            "{role} logs in directly, without SET ROLE"
        );
        assert_eq!(row.get::<i64, _>("owned"), 0, "{role} must own no relation");
        assert_eq!(
            row.get::<i64, _>("memberships"),
            0,
            "{role} must not be a member of any role it could SET ROLE to"
        );
    }

    // The server's pool really logs in as that role.
    let mut request = app.request_role_connection().await;
    let user: String = sqlx::query_scalar("select current_user::text")
        .fetch_one(&mut request)
        .await
        .unwrap();
    assert_eq!(user, roles.app);
}

#[tokio::test]
async fn with_no_tenant_set_the_request_role_sees_zero_rows_and_cannot_insert() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await; // guarantees rows exist in every table below
    app.create_product(&tenant).await;
    app.create_customer(&tenant).await;
    let mut conn = app.request_role_connection().await;

    for table in [
        "tenants",
        "users",
        "sessions",
        "refresh_tokens",
        "api_keys",
        "audit_events",
        "products",
        "customers",
        "usage_counters",
        "usage_active_users",
    ] {
        let count: i64 = sqlx::query_scalar(&format!("select count(*) from {table}"))
            .fetch_one(&mut conn)
            .await
            .unwrap();
        assert_eq!(
            count, 0,
            "{table} must show no rows without a tenant context"
        );
    }
    let insert = sqlx::query("insert into users (tenant_id, id, email, role, password_hash) values ($1, gen_random_uuid(), 'x@y.test', 'owner', 'x')")
        .bind(tenant.id)
        .execute(&mut conn)
        .await;
    let error = insert.expect_err("an insert without tenant context must be refused");
    assert_eq!(
        error.as_database_error().and_then(|e| e.code()).as_deref(),
        Some("42501"),
        "RLS violation expected: {error}"
    );
}

#[tokio::test]
async fn the_tenant_context_ends_with_its_transaction_and_fails_closed_afterwards() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let mut conn = app.request_role_connection().await;

    let mut tx = tenant_transaction(&mut conn, tenant.id).await;
    let inside: i64 = sqlx::query_scalar("select count(*) from users")
        .fetch_one(&mut *tx)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // Same session afterwards: the setting reverted to '' — which must mean "no rows", not an error.
    let setting: Option<String> =
        sqlx::query_scalar("select current_setting('app.tenant_id', true)")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let after: i64 = sqlx::query_scalar("select count(*) from users")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        inside, 1,
        "the tenant sees its owner inside the transaction"
    );
    assert_eq!(
        setting.as_deref().unwrap_or(""),
        "",
        "the setting must not outlive the transaction"
    );
    assert_eq!(
        after, 0,
        "after the transaction the connection sees nothing"
    );
}

#[tokio::test]
async fn a_tenant_context_cannot_write_rows_for_another_tenant() {
    let app = spawn_app().await;
    let (a, b) = (app.create_tenant().await, app.create_tenant().await);
    let mut conn = app.request_role_connection().await;
    let mut tx = tenant_transaction(&mut conn, a.id).await;

    let result = sqlx::query("insert into users (tenant_id, id, email, role, password_hash) values ($1, gen_random_uuid(), 'spy@x.test', 'owner', 'x')")
        .bind(b.id)
        .execute(&mut *tx)
        .await;
    assert!(
        result.is_err(),
        "WITH CHECK must refuse a row of another tenant"
    );
}

#[tokio::test]
async fn the_request_role_cannot_rewrite_history_or_change_its_plan() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let mut conn = app.request_role_connection().await;

    for statement in [
        "update audit_events set action = 'forged'",
        "delete from audit_events",
        "update tenants set plan = 'enterprise'",
        "update tenants set status = 'active'",
        "delete from users",
    ] {
        let mut tx = tenant_transaction(&mut conn, tenant.id).await;
        let error = sqlx::query(statement)
            .execute(&mut *tx)
            .await
            .expect_err(statement);
        assert_eq!(
            error.as_database_error().and_then(|e| e.code()).as_deref(),
            Some("42501"),
            "{statement}: permission denied expected, got {error}"
        );
        tx.rollback().await.unwrap();
    }
}
