//! `Idempotency-Key` beyond orders: catalog creates replay too, a replay carries the first
//! answer's `ETag`, keys expire after `IDEMPOTENCY_KEY_TTL` and expired keys are purged.
//! (Orders' replay, per-tenant keys and racing retries are in `orders::idempotency` and
//! `orders::concurrency`.)

use reqwest::StatusCode;
use serde_json::{Value, json};
use tenantry::{db::Db, idempotency, tenancy::TenantId};

use crate::helpers::{
    TestApp, TestTenant, all_pages, etag_of, expect_json, expect_problem, post_with_key, replayed,
    spawn_app, spawn_app_with, unique,
};

/// How many keys a tenant holds, as the database owner sees them.
async fn keys_of(app: &TestApp, tenant_id: TenantId) -> i64 {
    sqlx::query_scalar("select count(*) from idempotency_keys where tenant_id = $1")
        .bind(tenant_id.as_uuid())
        .fetch_one(&mut app.owner_connection().await)
        .await
        .expect("the owner counts keys")
}

/// Moves every key of a tenant past its expiry (time cannot be waited out in a test).
async fn expire_keys_of(app: &TestApp, tenant_id: TenantId) {
    sqlx::query(
        "update idempotency_keys set expires_at = now() - interval '1 second' where tenant_id = $1",
    )
    .bind(tenant_id.as_uuid())
    .execute(&mut app.owner_connection().await)
    .await
    .expect("the owner expires keys");
}

/// A new customer's body, with a unique email.
fn new_customer(name: &str) -> Value {
    json!({"email": format!("{}@example.test", unique("c")), "name": name})
}

/// Creates a customer under a fresh `Idempotency-Key`.
async fn create_customer_with_a_key(app: &TestApp, tenant: &TestTenant) -> Value {
    let key = unique("key");
    expect_json(
        post_with_key(app, tenant, "/v1/customers", &key, new_customer("Ada")).await,
        StatusCode::CREATED,
    )
    .await
}

#[tokio::test]
async fn catalog_creates_replay_the_first_answer_with_its_etag() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let product = json!({
        "sku": unique("SKU"), "name": "Mug", "price_cents": 900, "currency": "EUR", "stock": 3
    });
    let customer = new_customer("Ada");

    for (path, body) in [("/v1/products", product), ("/v1/customers", customer)] {
        let key = unique("create");

        let first = post_with_key(&app, &tenant, path, &key, body.clone()).await;
        let second = post_with_key(&app, &tenant, path, &key, body.clone()).await;

        assert!(
            !replayed(&first) && replayed(&second),
            "{path}: the retry is the replay"
        );
        let (first_tag, second_tag) = (etag_of(&first), etag_of(&second));
        assert_eq!(
            second_tag, first_tag,
            "{path}: the replay has the first ETag"
        );
        let first = expect_json(first, StatusCode::CREATED).await;
        let second = expect_json(second, StatusCode::CREATED).await;
        assert_eq!(second, first, "{path}: the replay is the first body");
        assert_eq!(
            all_pages(&app, &tenant, path).await.len(),
            1,
            "{path}: created once"
        );

        // The same key on a different request is refused and creates nothing.
        let mut other = body.clone();
        other["name"] = json!("Something else");
        expect_problem(
            post_with_key(&app, &tenant, path, &key, other).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
        )
        .await;
        assert_eq!(
            all_pages(&app, &tenant, path).await.len(),
            1,
            "{path}: still one"
        );
    }
}

#[tokio::test]
async fn an_invalid_key_is_refused_before_anything_is_created() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let body = new_customer("Ada");

    for key in ["tab\there", &"k".repeat(256)] {
        expect_problem(
            post_with_key(&app, &tenant, "/v1/customers", key, body.clone()).await,
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
        )
        .await;
    }
    assert_eq!(all_pages(&app, &tenant, "/v1/customers").await.len(), 0);
    assert_eq!(keys_of(&app, tenant.id).await, 0);
}

#[tokio::test]
async fn an_expired_key_is_free_again() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let key = unique("expiring");
    let first: Value = expect_json(
        post_with_key(&app, &tenant, "/v1/customers", &key, new_customer("First")).await,
        StatusCode::CREATED,
    )
    .await;

    expire_keys_of(&app, tenant.id).await;
    let again = post_with_key(&app, &tenant, "/v1/customers", &key, new_customer("Second")).await;

    assert!(!replayed(&again), "an expired key does the work again");
    let again = expect_json(again, StatusCode::CREATED).await;
    assert_ne!(again["id"], first["id"], "a new customer: {again}");
    assert_eq!(all_pages(&app, &tenant, "/v1/customers").await.len(), 2);
    assert_eq!(
        keys_of(&app, tenant.id).await,
        1,
        "the key was re-claimed, not added"
    );
}

#[tokio::test]
async fn keys_live_for_the_configured_ttl() {
    let app = spawn_app_with(&[("IDEMPOTENCY_KEY_TTL", "2h")]).await;
    let tenant = app.create_tenant().await;
    create_customer_with_a_key(&app, &tenant).await;

    let lifetime: f64 = sqlx::query_scalar(
        "select extract(epoch from expires_at - created_at)::float8 from idempotency_keys where tenant_id = $1",
    )
    .bind(tenant.id.as_uuid())
    .fetch_one(&mut app.owner_connection().await)
    .await
    .unwrap();
    assert!(
        (lifetime - 7200.0).abs() < 5.0,
        "a key lives IDEMPOTENCY_KEY_TTL (2h = 7200 s), not {lifetime} s"
    );
}

#[tokio::test]
async fn the_purge_deletes_expired_keys_of_every_tenant_and_no_live_one() {
    let app = spawn_app().await;
    let (stale, live) = (app.create_tenant().await, app.create_tenant().await);
    for tenant in [&stale, &live] {
        for _ in 0..2 {
            create_customer_with_a_key(&app, tenant).await;
        }
    }
    expire_keys_of(&app, stale.id).await;

    let db = Db::connect(&app.config).unwrap();
    let purged = idempotency::purge_expired(&db)
        .await
        .expect("the purge runs");

    assert!(
        purged >= 2,
        "at least this test's two expired keys went: {purged}"
    );
    assert_eq!(keys_of(&app, stale.id).await, 0, "expired keys are gone");
    assert_eq!(keys_of(&app, live.id).await, 2, "live keys stay");
}

#[tokio::test]
async fn the_platform_role_sees_no_live_key() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    create_customer_with_a_key(&app, &tenant).await;

    let db = Db::connect(&app.config).unwrap();
    let mut tx = db.platform().await.unwrap();
    let visible: i64 =
        sqlx::query_scalar("select count(*) from idempotency_keys where tenant_id = $1")
            .bind(tenant.id.as_uuid())
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    let rewritten = sqlx::query("update idempotency_keys set response_status = 500")
        .execute(&mut *tx)
        .await;

    assert_eq!(visible, 0, "the platform role sees expired keys only");
    assert!(
        rewritten.is_err(),
        "the platform role may not update keys: {rewritten:?}"
    );
}

#[tokio::test]
async fn two_credentials_of_one_tenant_sending_the_same_key_each_get_their_own_answer() {
    // Arrange: two integrations of one tenant (the owner's session, and an app's API key)
    // that happen to pick the same key for different requests.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, api_key) = app
        .create_api_key(&tenant, &["catalog:read", "catalog:write"])
        .await;
    let key = unique("checkout-0001");
    let send_as = |credential: String, body: Value| {
        let app = &app;
        let key = key.clone();
        async move {
            crate::helpers::send(
                app,
                reqwest::Method::POST,
                "/v1/customers",
                &[
                    ("authorization", &format!("Bearer {credential}")),
                    ("idempotency-key", &key),
                ],
                Some(body),
            )
            .await
        }
    };
    let (ada, grace) = (new_customer("Ada"), new_customer("Grace"));

    // Act
    let owners = send_as(tenant.token.clone(), ada.clone()).await;
    let apps = send_as(api_key.clone(), grace.clone()).await;
    let owners_again = send_as(tenant.token.clone(), ada).await;
    let apps_again = send_as(api_key.clone(), grace).await;

    // Assert: each credential's first use did its own work; each retry replays its own.
    assert!(
        !replayed(&owners) && !replayed(&apps),
        "both first uses are fresh"
    );
    assert!(
        replayed(&owners_again) && replayed(&apps_again),
        "both retries replay"
    );
    let owners = expect_json(owners, StatusCode::CREATED).await;
    let apps = expect_json(apps, StatusCode::CREATED).await;
    assert_eq!(owners["name"], "Ada");
    assert_eq!(
        apps["name"], "Grace",
        "the app got its own answer, not the owner's"
    );
    assert_eq!(expect_json(owners_again, StatusCode::CREATED).await, owners);
    assert_eq!(expect_json(apps_again, StatusCode::CREATED).await, apps);
    assert_eq!(keys_of(&app, tenant.id).await, 2, "one key per credential");
}

#[tokio::test]
async fn claiming_a_key_writes_nothing_so_a_command_gets_its_transaction_id_when_it_writes() {
    // The committed-event feed orders events by transaction id. A command's id must
    // therefore be fixed only by its own first write, after it has read the stream it
    // appends to — never early, by the claim of its key (a later transaction could then
    // commit the stream's previous version behind it).
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let db = Db::connect(&app.config).unwrap();
    let principal = app.principal_of(&tenant).await;
    let mut tx = db
        .tenant(&principal, tenantry::db::Access::ReadWrite)
        .await
        .unwrap();

    let claim = idempotency::claim(&mut tx, &principal, &unique("key"), b"request")
        .await
        .unwrap();

    assert!(
        matches!(claim, idempotency::Claim::Fresh(_)),
        "a new key is fresh"
    );
    let assigned: Option<String> =
        sqlx::query_scalar("select pg_current_xact_id_if_assigned()::text")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
    assert_eq!(
        assigned, None,
        "claiming a key must not give the transaction its id"
    );
}
