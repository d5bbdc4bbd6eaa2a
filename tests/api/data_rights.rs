//! Tenant data rights: a tenant's export holds every row of every table it owns and no
//! secret; erasing one customer, or a whole tenant, removes the personal data while the
//! audit chain still verifies, and is recorded.

use std::collections::BTreeMap;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::{
    audit::{verified_when_sealed, verify_now},
    helpers::{
        OPERATOR_TOKEN, PASSWORD, TestApp, TestTenant, expect_json, expect_problem, id, place_ok,
        run_tenantry, spawn_app,
    },
};

/// The operator's export of `tenant`, parsed.
async fn export(app: &TestApp, tenant: &TestTenant) -> (String, Vec<Value>) {
    let response = app
        .client
        .get(app.url(&format!("/v1/platform/tenants/{}/export", tenant.id)))
        .bearer_auth(OPERATOR_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let lines = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    (text, lines)
}

/// How many rows the tenant has in each of its tables, counted by the superuser.
async fn rows_per_table(app: &TestApp, tenant: &TestTenant) -> BTreeMap<String, i64> {
    let mut db = app.owner_connection().await;
    let tables: Vec<String> = sqlx::query_scalar(
        "select c.relname::text from pg_class c
         join pg_namespace n on n.oid = c.relnamespace
         join pg_attribute a on a.attrelid = c.oid and a.attname = 'tenant_id' and not a.attisdropped
         where n.nspname = 'public' and c.relkind = 'r'",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let mut counts = BTreeMap::from([("tenants".to_owned(), 1)]);
    for table in tables {
        let count: i64 = sqlx::query_scalar(&format!(
            "select count(*) from {table} where tenant_id = $1"
        ))
        .bind(tenant.id.as_uuid())
        .fetch_one(&mut db)
        .await
        .unwrap();
        if count > 0 {
            counts.insert(table, count);
        }
    }
    counts
}

/// A tenant with a bit of everything: a member, an API key, a customer with an order.
async fn busy_tenant(app: &TestApp) -> (TestTenant, String, Value) {
    let tenant = app.create_tenant().await;
    app.create_user(&tenant, "member").await;
    let (_, key) = app.create_api_key(&tenant, &["catalog:read"]).await;
    let customer = app.create_customer(&tenant).await;
    let product = app.create_product(&tenant).await;
    place_ok(app, &tenant, &customer, &[(&product, 1)]).await;
    (tenant, key, customer)
}

#[tokio::test]
async fn a_tenant_export_holds_every_row_of_every_table_it_owns_and_no_secret() {
    let app = spawn_app().await;
    let (tenant, key, customer) = busy_tenant(&app).await;
    let other = app.create_tenant().await;
    let others_customer = app.create_customer(&other).await;
    verified_when_sealed(&app, &tenant).await; // the audit chain has rows too

    let expected = rows_per_table(&app, &tenant).await;
    let (text, lines) = export(&app, &tenant).await;
    let mut exported: BTreeMap<String, i64> = BTreeMap::new();
    for line in &lines {
        *exported
            .entry(line["table"].as_str().unwrap().to_owned())
            .or_default() += 1;
        if line["table"] != "tenants" {
            assert_eq!(line["row"]["tenant_id"], tenant.id.to_string(), "{line}");
        }
    }
    assert_eq!(
        exported, expected,
        "every row of every table, table by table"
    );
    assert_eq!(lines[0]["table"], "tenants");
    assert_eq!(lines[0]["row"]["slug"], tenant.slug.as_str());
    assert!(text.contains(customer["email"].as_str().unwrap()));
    for secret in [
        "password_hash",
        "secret_hash",
        "response_body",
        "request_hash",
    ] {
        assert!(
            !text.contains(&format!("\"{secret}\"")),
            "{secret} exported"
        );
    }
    assert!(!text.contains(&key), "the API key itself is nowhere");
    assert!(
        !text.contains(id(&others_customer)),
        "nothing of another tenant"
    );

    // The command line writes the same tables, and both exports are in the audit log.
    let out = std::env::temp_dir().join(format!("{}.jsonl", tenant.slug));
    let done = run_tenantry(
        &app.config,
        &[],
        &[
            "tenant",
            "export",
            "--tenant",
            &tenant.slug,
            "--out",
            out.to_str().unwrap(),
        ],
    )
    .await;
    assert!(done.success, "{}", done.stderr);
    let file = std::fs::read_to_string(&out).unwrap();
    std::fs::remove_file(&out).unwrap();
    assert!(file.lines().count() >= lines.len());
    assert!(file.contains(customer["email"].as_str().unwrap()));
    let actions = app.audit_actions(tenant.id, &tenant.id.to_string()).await;
    assert_eq!(
        actions.iter().filter(|a| *a == "tenant.exported").count(),
        2,
        "{actions:?}"
    );
}

#[tokio::test]
async fn erasing_a_customer_replaces_its_personal_data_everywhere_and_the_chain_still_verifies() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let kept = app.create_customer(&tenant).await;
    let customer_id = id(&customer).to_owned();
    let email = customer["email"].as_str().unwrap().to_owned();
    expect_json(
        app.patch(
            &format!("/v1/customers/{customer_id}"),
            &tenant.token,
            json!({"name": "Grace B. Hopper"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let product = app.create_product(&tenant).await;
    place_ok(&app, &tenant, &customer, &[(&product, 1)]).await;
    verified_when_sealed(&app, &tenant).await;

    let erased = expect_json(
        app.post(
            &format!("/v1/customers/{customer_id}/erase"),
            &tenant.token,
            json!({}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        erased["email"],
        format!("erased+{customer_id}@erased.invalid")
    );
    assert_eq!(erased["name"], "Erased customer");
    assert!(erased["erased_at"].is_string());
    // Twice is once.
    let again = expect_json(
        app.post(
            &format!("/v1/customers/{customer_id}/erase"),
            &tenant.token,
            json!({}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(again["version"], erased["version"]);
    expect_problem(
        app.patch(
            &format!("/v1/customers/{customer_id}"),
            &tenant.token,
            json!({"name": "Back again"}),
        )
        .await,
        StatusCode::CONFLICT,
        "customer_erased",
    )
    .await;

    // Nowhere in the tenant's rows any more: not in the customer, the audit log or the
    // stored answers. The other customer is as it was.
    let mut db = app.owner_connection().await;
    let mentions: i64 = sqlx::query_scalar(
        "select (select count(*) from customers where email = $2 or name like 'Grace B.%')
              + (select count(*) from audit_events where tenant_id = $1
                   and (personal::text like '%' || $2 || '%' or personal::text like '%Grace B.%'))
              + (select count(*) from idempotency_keys where tenant_id = $1
                   and response_body::text like '%' || $2 || '%')",
    )
    .bind(tenant.id.as_uuid())
    .bind(&email)
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(mentions, 0);
    let still = expect_json(
        app.get(&format!("/v1/customers/{}", id(&kept)), &tenant.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(still["email"], kept["email"]);

    let verification = verify_now(&app, &tenant).await;
    assert_eq!(verification["verified"], true, "{verification}");
    assert_eq!(verified_when_sealed(&app, &tenant).await["verified"], true);
    let actions = app.audit_actions(tenant.id, &customer_id).await;
    assert_eq!(
        actions.last().map(String::as_str),
        Some("customer.erased"),
        "{actions:?}"
    );
}

#[tokio::test]
async fn erasing_a_tenant_removes_its_personal_data_keeps_its_chain_verifiable_and_is_recorded() {
    let app = spawn_app().await;
    let (tenant, key, customer) = busy_tenant(&app).await;
    // A failed login: the email tried is personal data in the audit log.
    let failed = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"tenant": tenant.slug, "email": tenant.owner_email, "password": "not the password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), StatusCode::UNAUTHORIZED);
    verified_when_sealed(&app, &tenant).await;

    let unconfirmed = run_tenantry(
        &app.config,
        &[],
        &[
            "tenant",
            "erase",
            "--tenant",
            &tenant.slug,
            "--confirm",
            "someone-else",
        ],
    )
    .await;
    assert_eq!(unconfirmed.code, Some(65), "{}", unconfirmed.stderr);
    assert!(
        unconfirmed.stderr.contains("--confirm"),
        "{}",
        unconfirmed.stderr
    );

    let erased = run_tenantry(
        &app.config,
        &[],
        &[
            "tenant",
            "erase",
            "--tenant",
            &tenant.slug,
            "--confirm",
            &tenant.slug,
        ],
    )
    .await;
    assert!(erased.success, "{}", erased.stderr);
    assert!(erased.stdout.contains("2 users"), "{}", erased.stdout);

    // The chain still verifies, every link of it.
    let verified = run_tenantry(
        &app.config,
        &[],
        &["audit", "verify", "--tenant", &tenant.slug],
    )
    .await;
    assert!(verified.success, "{}{}", verified.stdout, verified.stderr);
    assert!(verified.stdout.contains("holds"), "{}", verified.stdout);

    // No personal data is left in anything the tenant owns.
    let (text, _) = export(&app, &tenant).await;
    for personal in [
        tenant.owner_email.as_str(),
        customer["email"].as_str().unwrap(),
        customer["name"].as_str().unwrap(),
        "test key",
    ] {
        assert!(!text.contains(personal), "{personal} is still there");
    }
    let mut db = app.owner_connection().await;
    let personal: i64 = sqlx::query_scalar(
        "select count(*) from audit_events where tenant_id = $1 and personal is not null
           and action <> 'tenant.exported'",
    )
    .bind(tenant.id.as_uuid())
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(personal, 0);
    let status: String = sqlx::query_scalar("select status from tenants where id = $1")
        .bind(tenant.id.as_uuid())
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(status, "suspended");

    // No credential of the tenant works any more (a failed login is new data, so this
    // comes after the checks above).
    let login = app
        .client
        .post(app.url("/v1/auth/login"))
        .json(&json!({"tenant": tenant.slug, "email": tenant.owner_email, "password": PASSWORD}))
        .send()
        .await
        .unwrap();
    assert!(login.status().is_client_error(), "{}", login.status());
    let with_key = app
        .client
        .get(app.url("/v1/products"))
        .header("x-api-key", &key)
        .send()
        .await
        .unwrap();
    assert!(with_key.status().is_client_error());

    // Recorded in the tenant's log and the platform's.
    let target = tenant.id.to_string();
    let actions = app.audit_actions(tenant.id, &target).await;
    assert!(actions.contains(&"tenant.erased".to_owned()), "{actions:?}");
    let platform = app
        .audit_actions(tenantry::audit::platform_log(), &target)
        .await;
    assert!(
        platform.contains(&"tenant.erased".to_owned()),
        "{platform:?}"
    );
}
