//! Every list query keeps an index-ordered plan once Postgres switches its prepared statement
//! to the generic plan (after five executions), whatever filters it carries: the plan walks
//! an index in the requested order and stops at the limit — no sort, no scan of everything
//! the tenant owns. A catch-all statement (`$1 is null or status = $1 …`) fails this: its
//! generic plan bitmap-scans all of the tenant's orders and sorts them.
//!
//! The statements are the ones the server sends (`orders::queries::list_statement`,
//! `db::table::page_statement`, and `events::load_statement` for an order's history),
//! prepared as the request role inside a tenant that owns thousands of rows — among a
//! thousand small tenants, so the planner expects few rows per tenant, the case in which a
//! sort of everything the tenant has looks cheap to it — and explained with
//! `plan_cache_mode = force_generic_plan`.

use serde_json::Value;
use sqlx::{Connection, PgConnection, Postgres, Transaction};
use tenantry::{
    api_keys::ApiKey,
    auth::authenticate::{ACCESS_TOKEN_CHECK, API_KEY_CHECK},
    catalog::{customers::Customer, products::Product},
    db::table::{Table, page_statement},
    events::load_statement,
    id::{CustomerId, v7_lower_bound},
    orders::{
        OrderStatus,
        queries::{Filter, ID_MINTED_BEFORE_CREATION, list_statement},
    },
    tenancy::Tenant,
    users::User,
};
use time::macros::datetime;
use uuid::Uuid;

use tenantry::audit::log::{Filter as AuditFilter, list_statement as audit_list_statement};

use crate::helpers::{TestApp, spawn_app};

#[tokio::test]
async fn every_order_list_filter_combination_has_an_index_ordered_generic_plan() {
    let app = spawn_app().await;
    let mut db = app.owner_connection().await;
    let (mut tx, _) = seeded(&app, &mut db).await;

    for mask in 0..32u8 {
        let has = |bit: u8| mask & (1 << bit) != 0;
        let filter = Filter {
            status: has(0).then_some(OrderStatus::Paid),
            customer_id: has(1).then(CustomerId::new),
            created_from: has(2).then_some(datetime!(2026-01-01 0:00 UTC)),
            created_to: has(3).then_some(datetime!(2027-01-01 0:00 UTC)),
        };
        let before = has(4).then(Uuid::now_v7);
        let sql = list_statement(&filter, before, 21).into_sql();
        // The parameters, in the order `list_statement` binds them.
        let mut arguments = Vec::new();
        if filter.status.is_some() {
            arguments.push("'paid'".to_owned());
        }
        if let Some(customer) = filter.customer_id {
            arguments.push(format!("'{customer}'"));
        }
        if let Some(from) = filter.created_from {
            let bound = v7_lower_bound(from - ID_MINTED_BEFORE_CREATION);
            arguments.push(format!("'{bound}'"));
            arguments.push("'2026-01-01T00:00:00Z'".to_owned());
        }
        if let Some(to) = filter.created_to {
            arguments.push(format!("'{}'", v7_lower_bound(to)));
            arguments.push("'2027-01-01T00:00:00Z'".to_owned());
        }
        if let Some(before) = before {
            arguments.push(format!("'{before}'"));
        }
        arguments.push("21".to_owned());

        let plan = explain_generic(&mut tx, &sql, &arguments).await;
        let what = format!("filters {filter:?}, cursor {before:?}: {sql}");
        assert_index_ordered_page(&plan, "order_summaries", &what);
        // And the walk is bounded by the filters, not filtering every order of the
        // tenant: an id bound (a time range, a cursor) starts or stops the walk, and an
        // equality filter picks the index it walks.
        let conditions = index_conditions(&plan);
        if filter.created_from.is_some() || filter.created_to.is_some() || before.is_some() {
            assert!(
                conditions.contains("(id >") || conditions.contains("(id <"),
                "{what}: the id bound is not an index condition: {conditions}"
            );
        }
        if filter.status.is_some() || filter.customer_id.is_some() {
            assert!(
                conditions.contains("(status = ") || conditions.contains("(customer_id = "),
                "{what}: no equality filter is an index condition: {conditions}"
            );
        }
    }
}

#[tokio::test]
async fn every_audit_log_filter_combination_has_an_index_ordered_generic_plan() {
    let app = spawn_app().await;
    let mut db = app.owner_connection().await;
    let (mut tx, tenant) = seeded(&app, &mut db).await;
    let tenant = tenantry::id::TenantId::from_uuid(tenant);

    for mask in 0..128u8 {
        let has = |bit: u8| mask & (1 << bit) != 0;
        let filter = AuditFilter {
            actor: has(0).then(|| "user:x".to_owned()),
            action: has(1).then(|| "order.paid".to_owned()),
            target_type: has(2).then(|| "order".to_owned()),
            target_id: has(3).then(|| "x".to_owned()),
            from: has(4).then_some(datetime!(2026-01-01 0:00 UTC)),
            to: has(5).then_some(datetime!(2027-01-01 0:00 UTC)),
        };
        let before = has(6).then(Uuid::now_v7);
        let sql = audit_list_statement(tenant, &filter, before, Some(21)).into_sql();
        // The parameters, in the order `list_statement` binds them.
        let mut arguments = vec![format!("'{tenant}'")];
        for text in [
            &filter.actor,
            &filter.action,
            &filter.target_type,
            &filter.target_id,
        ]
        .into_iter()
        .flatten()
        {
            arguments.push(format!("'{text}'"));
        }
        for bound in [filter.from, filter.to].into_iter().flatten() {
            arguments.push(format!("'{}'", v7_lower_bound(bound)));
        }
        if let Some(before) = before {
            arguments.push(format!("'{before}'"));
        }
        arguments.push("21".to_owned());

        let plan = explain_generic(&mut tx, &sql, &arguments).await;
        let what = format!("filters {filter:?}, cursor {before:?}: {sql}");
        assert_index_ordered_page(&plan, "audit_events", &what);
    }
}

/// Every index condition of a plan, joined.
fn index_conditions(plan: &Value) -> String {
    let mut nodes = Vec::new();
    collect(plan, &mut nodes);
    nodes
        .iter()
        .filter_map(|node| node["Index Cond"].as_str())
        .collect::<Vec<_>>()
        .join(" ")
}

#[tokio::test]
async fn every_paged_resource_list_has_an_index_ordered_generic_plan() {
    let app = spawn_app().await;
    let mut db = app.owner_connection().await;
    let (mut tx, _) = seeded(&app, &mut db).await;

    for cursor in [false, true] {
        check_page::<User>(&mut tx, cursor).await;
        check_page::<ApiKey>(&mut tx, cursor).await;
        check_page::<Product>(&mut tx, cursor).await;
        check_page::<Customer>(&mut tx, cursor).await;
    }
}

#[tokio::test]
async fn an_order_history_has_an_index_ordered_generic_plan() {
    let app = spawn_app().await;
    let mut db = app.owner_connection().await;
    let (mut tx, _) = seeded(&app, &mut db).await;

    let stream = format!("'{}'", Uuid::now_v7());
    for (bounded, arguments) in [
        (false, vec![stream.clone()]),
        (true, vec![stream, "3".into()]),
    ] {
        let sql = load_statement(bounded);
        let plan = explain_generic(&mut tx, sql, &arguments).await;
        assert_index_ordered(&plan, "domain_events", sql);
    }
}

#[tokio::test]
async fn credential_checks_reach_every_row_by_primary_key_whatever_the_tenants_size() {
    // A credential is checked on every request: a plan that read all of a tenant's users,
    // sessions or keys would make every request slower as the tenant grows.
    let app = spawn_app().await;
    let mut db = app.owner_connection().await;
    let (mut tx, tenant) = seeded(&app, &mut db).await;
    let (tenant, id) = (format!("'{tenant}'"), format!("'{}'", Uuid::now_v7()));

    for (name, sql, arguments) in [
        (
            "a login token",
            ACCESS_TOKEN_CHECK,
            vec![tenant.clone(), id.clone(), id.clone()],
        ),
        (
            "a service token",
            ACCESS_TOKEN_CHECK,
            vec![tenant.clone(), "null".to_owned(), id.clone()],
        ),
        (
            "an API key",
            API_KEY_CHECK,
            vec![tenant.clone(), id.clone(), "16".to_owned()],
        ),
    ] {
        let plan = explain_generic(&mut tx, sql, &arguments).await;
        let mut nodes = Vec::new();
        collect(&plan, &mut nodes);
        for node in &nodes {
            let kind = node["Node Type"].as_str().unwrap_or_default();
            assert!(
                !["Sort", "Seq Scan", "Bitmap Heap Scan", "Hash Join"].contains(&kind),
                "checking {name}: a {kind} node reads more than the rows it needs\n{plan:#}"
            );
        }
    }
}

#[tokio::test]
async fn the_operator_tenant_list_has_an_index_ordered_generic_plan() {
    let app = spawn_app().await;
    let mut db = app.owner_connection().await;
    let mut tx = db.begin().await.unwrap();
    sqlx::query(
        "insert into tenants (id, slug, name)
         select gen_random_uuid(), 'plans-' || replace(gen_random_uuid()::text, '-', ''), 'Plans'
         from generate_series(1, 3000)",
    )
    .execute(&mut *tx)
    .await
    .unwrap();
    sqlx::raw_sql(&format!(
        "analyze tenants; set local role {}",
        app.roles().platform
    ))
    .execute(&mut *tx)
    .await
    .unwrap();
    for cursor in [false, true] {
        let sql = page_statement::<Tenant>(cursor);
        let plan = explain_generic(&mut tx, &sql, &page_arguments(cursor)).await;
        assert_index_ordered_page(&plan, "tenants", &sql);
    }
}

async fn check_page<T: Table>(conn: &mut PgConnection, cursor: bool) {
    let sql = page_statement::<T>(cursor);
    let plan = explain_generic(conn, &sql, &page_arguments(cursor)).await;
    assert_index_ordered_page(&plan, T::TABLE, &sql);
}

fn page_arguments(cursor: bool) -> Vec<String> {
    let mut arguments = Vec::new();
    if cursor {
        arguments.push(format!("'{}'", Uuid::now_v7()));
    }
    arguments.push("21".to_owned());
    arguments
}

/// The plan of `sql` with `arguments`, with the generic plan forced.
async fn explain_generic(conn: &mut PgConnection, sql: &str, arguments: &[String]) -> Value {
    sqlx::raw_sql(&format!(
        "set local plan_cache_mode = force_generic_plan; prepare list_under_test as {sql}"
    ))
    .execute(&mut *conn)
    .await
    .unwrap_or_else(|e| panic!("preparing {sql}: {e}"));
    let plan: Value = sqlx::query_scalar(&format!(
        "explain (format json) execute list_under_test({})",
        arguments.join(", ")
    ))
    .fetch_one(&mut *conn)
    .await
    .unwrap();
    sqlx::raw_sql("deallocate list_under_test")
        .execute(&mut *conn)
        .await
        .unwrap();
    plan[0]["Plan"].clone()
}

/// The plan reads `table` through an index, in index order (no sort node anywhere), under
/// a limit — so it stops after a page's rows whatever the tenant's size.
fn assert_index_ordered_page(plan: &Value, table: &str, what: &str) {
    assert_eq!(plan["Node Type"], "Limit", "{what}\n{plan:#}");
    assert_index_ordered(plan, table, what);
}

/// The plan reads `table` through an index, in index order: no sort node anywhere, no
/// sequential or bitmap scan.
fn assert_index_ordered(plan: &Value, table: &str, what: &str) {
    let mut nodes = Vec::new();
    collect(plan, &mut nodes);
    for node in &nodes {
        let kind = node["Node Type"].as_str().unwrap_or_default();
        assert!(
            !["Sort", "Incremental Sort", "Seq Scan", "Bitmap Heap Scan"].contains(&kind),
            "{what}: a {kind} node\n{plan:#}"
        );
    }
    assert!(
        nodes
            .iter()
            .any(|node| node["Node Type"] == "Index Scan" && node["Relation Name"] == table),
        "{what}: no index scan of {table}\n{plan:#}"
    );
}

fn collect<'a>(node: &'a Value, into: &mut Vec<&'a Value>) {
    into.push(node);
    for child in node["Plans"].as_array().into_iter().flatten() {
        collect(child, into);
    }
}

/// An owner transaction in which a new tenant owns thousands of orders, users, keys,
/// products and customers (written directly: only their number matters), with statistics
/// that count them, switched to the request role inside that tenant, with the settings of
/// the server's read-only transactions. It is never
/// committed, so no other test sees these rows.
async fn seeded<'c>(app: &TestApp, db: &'c mut PgConnection) -> (Transaction<'c, Postgres>, Uuid) {
    let tenant = app.create_tenant().await.id.as_uuid();
    let mut tx = db.begin().await.unwrap();
    let statements = [
        // Many small tenants besides, as in a real deployment (and in the test database,
        // where every test makes its own): the planner then expects a few rows per tenant,
        // which is when a sort of "everything the tenant has" looks cheap to it.
        "insert into tenants (id, slug, name)
         select gen_random_uuid(), 'plans-' || replace(gen_random_uuid()::text, '-', ''), 'Small'
         from generate_series(1, 1000)",
        "insert into customers (tenant_id, id, email, name)
         select t.id, gen_random_uuid(), 'small@plans.test', 'Small'
         from tenants t where t.name = 'Small' and t.slug like 'plans-%'",
        "insert into order_summaries (tenant_id, id, customer_id, status, currency, total_cents,
                                      version, created_at, updated_at)
         select c.tenant_id, gen_random_uuid(), c.id, 'paid', 'EUR', 100, 1, now(), now()
         from customers c, generate_series(1, 3)
         where c.email = 'small@plans.test' and c.tenant_id <> $1",
        "insert into customers (tenant_id, id, email, name)
         select $1, gen_random_uuid(), 'c' || n || '@plans.test', 'Customer ' || n
         from generate_series(1, 200) n",
        "insert into products (tenant_id, id, sku, name, price_cents, currency, stock)
         select $1, gen_random_uuid(), 'SKU-' || n, 'Product ' || n, 100, 'EUR', 10
         from generate_series(1, 2000) n",
        "insert into users (tenant_id, id, email, role, password_hash)
         select $1, gen_random_uuid(), 'u' || n || '@plans.test', 'member', 'not a hash'
         from generate_series(1, 2000) n",
        "insert into api_keys (tenant_id, id, name, hint, secret_hash, scopes, created_by,
                               created_by_user)
         select $1, gen_random_uuid(), 'key ' || n, 'hint', '\\x00', '{}', 'plans',
                (select id from users where tenant_id = $1 limit 1)
         from generate_series(1, 2000) n",
        "insert into order_summaries (tenant_id, id, customer_id, status, currency, total_cents,
                                      version, created_at, updated_at)
         select $1, gen_random_uuid(), c.id,
                (array['pending', 'confirmed', 'paid', 'shipped', 'cancelled'])[1 + n % 5],
                'EUR', 100, 1, now() - n * interval '1 minute', now()
         from generate_series(1, 6000) n
         join lateral (select id from customers where tenant_id = $1 offset n % 200 limit 1) c on true",
        "insert into sessions (tenant_id, id, user_id, expires_at)
         select $1, gen_random_uuid(), u.id, now() + interval '1 day'
         from users u where u.tenant_id = $1",
        "insert into service_tokens (tenant_id, jti, subject, scopes, expires_at)
         select $1, gen_random_uuid(), 'plans', '{}', now() + interval '1 day'
         from generate_series(1, 2000)",
        "insert into audit_events (tenant_id, id, actor, action, target_type, target_id)
         select $1, gen_random_uuid(), 'user:' || (n % 7), (array['order.paid', 'product.created'])[1 + n % 2],
                (array['order', 'product'])[1 + n % 2], 'target-' || (n % 500)
         from generate_series(1, 20000) n",
        "insert into domain_events (tenant_id, stream_type, stream_id, version, event_id,
                                    event_type, data, metadata)
         select $1, 'order', o.id, v, gen_random_uuid(), 'order.placed',
                jsonb_build_object('currency', 'EUR', 'total_cents', 100), '{}'
         from order_summaries o, generate_series(1, 3) v where o.tenant_id = $1",
    ];
    for statement in statements {
        let query = sqlx::query(statement);
        let query = if statement.contains("$1") {
            query.bind(tenant)
        } else {
            query
        };
        query.execute(&mut *tx).await.unwrap();
    }
    sqlx::raw_sql(&format!(
        "analyze customers, products, users, api_keys, order_summaries, domain_events,
                 sessions, service_tokens, audit_events;
         set local role {};
         {}; select set_config('app.tenant_id', '{tenant}', true)",
        app.roles().app,
        tenantry::db::READ_ONLY_SETTINGS
    ))
    .execute(&mut *tx)
    .await
    .unwrap();
    (tx, tenant)
}
