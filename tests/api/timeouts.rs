//! Nothing waits for ever on the database: a request blocked on a lock gives up at the
//! lock timeout with a 409 and changes nothing; a request that times out frees its
//! connection and its place in the lock queue at its deadline; a statement cut off is a
//! 503; and start-up DDL behind a long transaction steps aside instead of stalling every
//! query queued behind it.
//!
//! Each test uses a database of its own: the limits are settings of that database's roles.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use sqlx::{Connection, PgConnection};
use tenantry::{
    db::{self, Db, Roles},
    error::ErrorKind,
};
use tokio::time::Instant;

use crate::helpers::{
    ScratchDatabase, TestApp, etag_of, expect_json, expect_problem, id, spawn_app_with, test_config,
};

/// A superuser connection to `scratch`.
async fn owner_of(scratch: &ScratchDatabase) -> PgConnection {
    PgConnection::connect(&scratch.url()).await.unwrap()
}

/// Starts the app on `scratch` with `settings`, and makes a tenant with one product;
/// returns the app, the owner's token and the product's path.
async fn shop(scratch: &ScratchDatabase, settings: &[(&str, &str)]) -> (TestApp, String, String) {
    let url = scratch.url();
    let mut overrides = vec![("DATABASE_URL", url.as_str())];
    overrides.extend_from_slice(settings);
    let app = spawn_app_with(&overrides).await;
    let tenant = app.create_tenant().await;
    let product = app.create_product(&tenant).await;
    let path = format!("/v1/products/{}", id(&product));
    (app, tenant.token, path)
}

/// Locks the product's row in a transaction of the owner's, until the transaction ends.
async fn lock_row<'c>(
    owner: &'c mut PgConnection,
    path: &str,
) -> sqlx::Transaction<'c, sqlx::Postgres> {
    let product_id: uuid::Uuid = path.rsplit('/').next().unwrap().parse().unwrap();
    let mut tx = owner.begin().await.unwrap();
    sqlx::query("select 1 from products where id = $1 for update")
        .bind(product_id)
        .execute(&mut *tx)
        .await
        .unwrap();
    tx
}

#[tokio::test]
async fn a_request_waiting_on_a_lock_gives_up_with_409_lock_timeout_and_changes_nothing() {
    // Arrange
    let scratch = ScratchDatabase::new("tenantry_locks");
    let (app, token, path) = shop(&scratch, &[("DATABASE_LOCK_TIMEOUT", "300ms")]).await;
    let mut owner = owner_of(&scratch).await;
    let before = expect_json(app.get(&path, &token).await, StatusCode::OK).await;
    let lock = lock_row(&mut owner, &path).await;

    // Act
    let blocked = app.patch(&path, &token, json!({"name": "Renamed"})).await;

    // Assert
    assert!(
        blocked.headers().contains_key("retry-after"),
        "a lock timeout says when to retry"
    );
    expect_problem(blocked, StatusCode::CONFLICT, "lock_timeout").await;
    lock.rollback().await.unwrap();
    let after = expect_json(app.get(&path, &token).await, StatusCode::OK).await;
    assert_eq!(after, before, "the refused change changed nothing");
    let retried = app.patch(&path, &token, json!({"name": "Renamed"})).await;
    assert_eq!(retried.status(), StatusCode::OK, "the retry succeeds");

    // The limits are the roles' own, in this database.
    let roles = Roles::from_config(&app.config).unwrap();
    for role in [&roles.app, &roles.platform] {
        let settings: Vec<String> = sqlx::query_scalar(
            "select unnest(s.setconfig) from pg_db_role_setting s
             join pg_roles r on r.oid = s.setrole join pg_database d on d.oid = s.setdatabase
             where r.rolname = $1 and d.datname = current_database()",
        )
        .bind(role)
        .fetch_all(&mut owner)
        .await
        .unwrap();
        for wanted in [
            "lock_timeout=300",
            "statement_timeout=10000",
            "idle_in_transaction_session_timeout=30000",
        ] {
            assert!(
                settings.iter().any(|s| s == wanted),
                "{role} runs with {wanted}; has {settings:?}"
            );
        }
    }
}

#[tokio::test]
async fn a_request_that_times_out_leaves_the_lock_queue_at_its_deadline() {
    // Arrange: locks and statements may wait a minute, the request a second.
    let scratch = ScratchDatabase::new("tenantry_deadline");
    let (app, token, path) = shop(
        &scratch,
        &[
            ("TENANTRY_REQUEST_TIMEOUT", "1s"),
            ("DATABASE_LOCK_TIMEOUT", "60s"),
            ("DATABASE_STATEMENT_TIMEOUT", "60s"),
        ],
    )
    .await;
    let roles = Roles::from_config(&app.config).unwrap();
    let mut owner = owner_of(&scratch).await;
    let mut watcher = owner_of(&scratch).await;
    let lock = lock_row(&mut owner, &path).await;

    // Act
    let timed_out = app.patch(&path, &token, json!({"name": "Renamed"})).await;
    // The deadline cuts both at once: whichever answers first — the request's timeout, or
    // the database cancelling the statement held to it — the client is told to try later.
    let answer = (timed_out.status(), timed_out.text().await.unwrap());
    assert!(
        [StatusCode::REQUEST_TIMEOUT, StatusCode::SERVICE_UNAVAILABLE].contains(&answer.0)
            && (answer.1.contains("request_timeout") || answer.1.contains("statement_timeout")),
        "expected 408 request_timeout or 503 statement_timeout, got {answer:?}"
    );

    // Assert: the server's session stops waiting for the lock at the deadline, not when
    // the lock is released or a minute has passed.
    let mut waiting = async || -> i64 {
        sqlx::query_scalar(
            "select count(*) from pg_stat_activity
             where usename = $1 and datname = current_database() and wait_event_type = 'Lock'",
        )
        .bind(&roles.app)
        .fetch_one(&mut watcher)
        .await
        .unwrap()
    };
    let give_up = Instant::now() + Duration::from_secs(3);
    let mut still_waiting = waiting().await;
    while still_waiting > 0 && Instant::now() < give_up {
        tokio::time::sleep(Duration::from_millis(100)).await;
        still_waiting = waiting().await;
    }
    assert_eq!(
        still_waiting, 0,
        "a request past its deadline must not keep waiting for a row lock"
    );
    lock.rollback().await.unwrap();
    let product = app.get(&path, &token).await;
    let version = etag_of(&product);
    assert_eq!(version, "\"1\"", "the timed-out change changed nothing");
}

#[tokio::test]
async fn a_statement_cut_off_by_its_deadline_is_a_503_statement_timeout() {
    let config = test_config(&[]);
    let db = Db::connect(&config).unwrap();

    let result = db::with_deadline(Instant::now() + Duration::from_millis(200), async {
        let mut tx = db.platform().await?;
        sqlx::query("select pg_sleep(5)").execute(&mut *tx).await?;
        tx.commit().await
    })
    .await;

    let error = result.expect_err("the statement is cancelled");
    assert_eq!(
        (error.kind(), error.code()),
        (ErrorKind::Unavailable, "statement_timeout"),
        "{error}"
    );
    assert!(error.retry_after().is_some(), "a 503 says when to retry");
}

#[tokio::test]
async fn start_up_ddl_behind_a_long_transaction_steps_aside_for_other_queries() {
    // Arrange: a bootstrapped database whose policies must be applied again (as after an
    // upgrade), and a long transaction reading the tenants table.
    let scratch = ScratchDatabase::new("tenantry_ddl");
    let config = test_config(&[("DATABASE_URL", scratch.url().as_str())]);
    db::bootstrap(&config).await.expect("first bootstrap");
    let mut owner = owner_of(&scratch).await;
    sqlx::query("update tenantry_policy_state set fingerprint = 'stale'")
        .execute(&mut owner)
        .await
        .unwrap();
    let mut long = owner_of(&scratch).await;
    let mut reading = long.begin().await.unwrap();
    sqlx::query("select count(*) from tenants")
        .execute(&mut *reading)
        .await
        .unwrap();

    // Act: bootstrap queues for an exclusive lock on tenants; a reader arrives after it.
    let upgrade = db::bootstrap(&config);
    let meanwhile = async {
        let give_up = Instant::now() + Duration::from_secs(5);
        while !ddl_is_queued_on_tenants(&mut owner).await {
            assert!(
                Instant::now() < give_up,
                "bootstrap never queued for its lock"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let began = Instant::now();
        let mut reader = owner_of(&scratch).await;
        // Bounded, so that a failure of what is tested cannot hang the test: the long
        // transaction ends only after the reader is through.
        let read = sqlx::raw_sql("set statement_timeout = '5s'; select count(*) from tenants")
            .execute(&mut reader)
            .await;
        let reader_waited = began.elapsed();
        assert!(
            read.is_ok(),
            "the reader was stuck behind start-up DDL: {read:?}"
        );
        tokio::time::sleep(Duration::from_secs(6).saturating_sub(began.elapsed())).await;
        reading.commit().await.unwrap();
        reader_waited
    };
    let (upgraded, reader_waited) = tokio::join!(upgrade, meanwhile);

    // Assert: the reader did not wait for the long transaction (six seconds), because the
    // DDL gave up its place in the queue; and the DDL got through once it ended.
    assert!(
        reader_waited < Duration::from_secs(4),
        "a query behind start-up DDL waited {reader_waited:?}"
    );
    upgraded.expect("bootstrap retries and succeeds once the long transaction ends");
    let fingerprint: String = sqlx::query_scalar("select fingerprint from tenantry_policy_state")
        .fetch_one(&mut owner)
        .await
        .unwrap();
    assert_ne!(fingerprint, "stale", "the policies were applied again");
}

async fn ddl_is_queued_on_tenants(conn: &mut PgConnection) -> bool {
    sqlx::query_scalar(
        "select exists (select 1 from pg_locks where not granted and relation = 'tenants'::regclass)",
    )
    .fetch_one(conn)
    .await
    .unwrap()
}
