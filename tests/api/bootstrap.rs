//! Start-up bootstrap on an empty cluster database: concurrent instances are safe, and a
//! second run is a no-op.

use sqlx::{Connection, PgConnection};
use tenantry::db::bootstrap;

use crate::helpers::{ScratchDatabase, test_config};

#[tokio::test]
async fn two_instances_bootstrapping_a_missing_database_at_once_both_succeed() {
    let scratch = ScratchDatabase::new("tenantry_scratch");
    let url = scratch.url();
    let config = test_config(&[("DATABASE_URL", url.as_str())]);

    let (first, second) = tokio::join!(bootstrap(&config), bootstrap(&config));
    first.expect("first instance bootstraps");
    second.expect("second instance bootstraps concurrently");
    bootstrap(&config).await.expect("a third run is a no-op");

    let mut conn = PgConnection::connect(&url).await.unwrap();
    let migrations: i64 = sqlx::query_scalar("select count(*) from _sqlx_migrations where success")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    let policies: i64 =
        sqlx::query_scalar("select count(*) from pg_policy where polname = 'tenant_isolation'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(
        migrations,
        std::fs::read_dir("migrations").unwrap().count() as i64,
        "every migration applied once"
    );
    assert!(policies >= 6, "tenant policies applied, found {policies}");
}

#[tokio::test]
async fn a_scratch_database_and_its_roles_are_gone_once_the_test_lets_go_of_it() {
    // Tests that make databases of their own must not leave them (or the cluster-wide
    // roles their bootstrap made) behind.
    let scratch = ScratchDatabase::new("tenantry_scratch");
    let name = scratch.name.clone();
    bootstrap(&test_config(&[("DATABASE_URL", scratch.url().as_str())]))
        .await
        .expect("the scratch database bootstraps");

    drop(scratch);

    let mut conn = PgConnection::connect(&crate::helpers::database_url())
        .await
        .unwrap();
    let left: i64 = sqlx::query_scalar(
        "select (select count(*) from pg_database where datname = $1)
              + (select count(*) from pg_roles where rolname in ($1 || '_app', $1 || '_platform'))",
    )
    .bind(&name)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(left, 0, "{name} and its roles are dropped");
}
