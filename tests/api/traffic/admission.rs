//! When the database slows down, requests past the admission limit are refused at once
//! with 503 and `Retry-After`, instead of queueing until they time out; and a tenant
//! flooding it is held to its share while another is served.

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

#[tokio::test]
async fn a_tenant_flooding_the_database_is_refused_while_another_is_served() {
    // Arrange: at most 8 transactions at once; a noisy tenant's product row held by a test
    // connection, so its writes wait; credentials verified once already.
    let app = spawn_app_with(&[
        ("DATABASE_MAX_CONNECTIONS", "8"),
        ("DATABASE_CONCURRENCY_LIMIT", "8"),
        ("TENANTRY_READ_CACHE_TTL", "0s"),
    ])
    .await;
    let (noisy, quiet) = (app.create_tenant().await, app.create_tenant().await);
    let noisy_product = format!("/v1/products/{}", id(&app.create_product(&noisy).await));
    let quiet_product = format!("/v1/products/{}", id(&app.create_product(&quiet).await));
    for (tenant, path) in [(&noisy, &noisy_product), (&quiet, &quiet_product)] {
        assert_eq!(app.get(path, &tenant.token).await.status(), StatusCode::OK);
    }
    let mut blocker = PgConnection::connect(&database_url()).await.unwrap();
    sqlx::query("begin").execute(&mut blocker).await.unwrap();
    let product_id: uuid::Uuid = noisy_product.rsplit('/').next().unwrap().parse().unwrap();
    sqlx::query("select 1 from products where id = $1 for update")
        .bind(product_id)
        .execute(&mut blocker)
        .await
        .unwrap();

    // Act: 20 writes of the noisy tenant at once; meanwhile the quiet tenant reads, then
    // the row is let go.
    let writes = join_all((0..20).map(|n| {
        let (app, path, token) = (&app, &noisy_product, &noisy.token);
        async move {
            app.patch(
                path,
                token,
                serde_json::json!({"name": format!("Renamed {n}")}),
            )
            .await
            .status()
        }
    }));
    let reads = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut statuses = Vec::new();
        for _ in 0..5 {
            statuses.push(app.get(&quiet_product, &quiet.token).await.status());
        }
        sqlx::query("rollback").execute(&mut blocker).await.unwrap();
        statuses
    };
    let (writes, reads) = tokio::join!(writes, reads);

    // Assert: the quiet tenant is served throughout; the flood is cut to its share.
    assert_eq!(reads, [StatusCode::OK; 5], "the quiet tenant's reads");
    let written = writes.iter().filter(|s| **s == StatusCode::OK).count();
    let shed = writes
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!(written + shed, 20, "{writes:?}");
    assert!(
        (1..=6).contains(&written),
        "the noisy tenant holds at most 6 of 8 places alone: {written} written"
    );
}
