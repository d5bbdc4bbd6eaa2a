//! When the database slows down, requests past the admission limit are refused at once
//! with 503 and `Retry-After`, instead of queueing until they time out.

use std::time::{Duration, Instant};

use futures::future::join_all;
use reqwest::StatusCode;
use sqlx::{Connection, PgConnection};

use crate::helpers::{database_url, id, place_ok, spawn_app_with};

#[tokio::test]
async fn while_postgres_is_stuck_requests_past_the_limit_are_shed_at_once() {
    // Arrange: at most 8 transactions at once on a pool of 2 connections; an order whose
    // read model a test connection then locks, so every read of it waits.
    let app = spawn_app_with(&[
        ("DATABASE_MAX_CONNECTIONS", "2"),
        ("DATABASE_CONCURRENCY_LIMIT", "8"),
        ("TENANTRY_READ_CACHE_TTL", "0s"),
    ])
    .await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = app.create_product(&tenant).await;
    let order = place_ok(&app, &tenant, &customer, &[(&product, 1)]).await;
    let path = format!("/v1/orders/{}", id(&order));
    assert_eq!(app.get(&path, &tenant.token).await.status(), StatusCode::OK);
    let mut blocker = PgConnection::connect(&database_url()).await.unwrap();
    sqlx::query("begin").execute(&mut blocker).await.unwrap();
    sqlx::query("lock table order_summaries in access exclusive mode")
        .execute(&mut blocker)
        .await
        .unwrap();

    // Act: 40 reads at once; the lock is let go after two seconds.
    let started = Instant::now();
    let reads = join_all((0..40).map(|_| {
        let (app, path, token) = (&app, &path, &tenant.token);
        async move {
            let response = app.get(path, token).await;
            let retry_after = response.headers().get("retry-after").cloned();
            (response.status(), retry_after, started.elapsed())
        }
    }));
    let release = async {
        tokio::time::sleep(Duration::from_secs(2)).await;
        sqlx::query("rollback").execute(&mut blocker).await.unwrap();
        started.elapsed()
    };
    let (answers, released_at) = tokio::join!(reads, release);

    // Assert
    let shed: Vec<_> = answers
        .iter()
        .filter(|(status, ..)| *status == StatusCode::SERVICE_UNAVAILABLE)
        .collect();
    let served = answers
        .iter()
        .filter(|(status, ..)| *status == StatusCode::OK)
        .count();
    assert_eq!(
        shed.len() + served,
        40,
        "every read is either served or shed: {answers:?}"
    );
    assert!(
        (30..=38).contains(&shed.len()),
        "past the 8 admitted, the reads are shed: {} shed",
        shed.len()
    );
    for (_, retry_after, at) in &shed {
        assert!(retry_after.is_some(), "a shed read says when to retry");
        assert!(
            *at < released_at,
            "shed at once ({at:?}), not after the database came back ({released_at:?})"
        );
    }
}
