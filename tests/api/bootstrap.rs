//! Start-up bootstrap on an empty cluster database: concurrent instances are safe, and a
//! second run is a no-op.

use sqlx::{Connection, PgConnection};
use tenantry::db::bootstrap;

use crate::helpers::{database_url, test_config, unique};

/// A fresh database name, dropped at the end even when an assertion fails.
struct ScratchDatabase {
    name: String,
}

impl ScratchDatabase {
    fn new() -> Self {
        Self {
            name: unique("tenantry_scratch").replace('-', "_"),
        }
    }

    fn url(&self) -> String {
        let base = database_url();
        let (server, _) = base.rsplit_once('/').expect("DATABASE_URL has a database");
        format!("{server}/{}", self.name)
    }
}

impl Drop for ScratchDatabase {
    fn drop(&mut self) {
        let name = self.name.clone();
        let maintenance = database_url()
            .rsplit_once('/')
            .map(|(s, _)| format!("{s}/postgres"))
            .unwrap();
        // Drop runs outside any runtime guarantee: use a private one.
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Runtime::new().unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = PgConnection::connect(&maintenance).await {
                    let _ =
                        sqlx::query(&format!("drop database if exists \"{name}\" with (force)"))
                            .execute(&mut conn)
                            .await;
                }
            });
        })
        .join()
        .ok();
    }
}

#[tokio::test]
async fn two_instances_bootstrapping_a_missing_database_at_once_both_succeed() {
    let scratch = ScratchDatabase::new();
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
