//! Webhook delivery benchmark: `cargo bench --bench webhooks`.
//!
//! A backlog of `BENCH_EVENTS` (500) committed events for one tenant with `BENCH_ENDPOINTS`
//! (8) endpoints, each subscribed to every event, at a receiver in this process that
//! answers 200 at once: how many deliveries a second the server makes, from the moment the
//! events commit to the last delivery. Then the same with two dead endpoints beside the
//! live ones — one whose receiver hangs past the attempt timeout, one whose port refuses
//! connections — to show that they cost the live endpoints little. Each phase has a
//! tenant of its own; the events are inserted straight into the event store as the
//! database owner (no orders: this measures delivery, not placing orders).
//!
//! Run it on a database of its own (`DATABASE_URL=…/tenantry_bench_webhooks`); other
//! settings: see `support::Bench`.

mod support;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use axum::{Router, extract::Path, http::StatusCode, routing::post};
use serde_json::json;
use support::Bench;

/// A receiver: `/hook/{n}` answers 200 at once and counts; `/dead` never answers in time.
async fn receiver(count: Arc<AtomicU64>) -> anyhow::Result<String> {
    let router = Router::new()
        .route(
            "/hook/{n}",
            post(move |Path(_n): Path<u32>| {
                let count = Arc::clone(&count);
                async move {
                    count.fetch_add(1, Ordering::Relaxed);
                    StatusCode::OK
                }
            }),
        )
        .route(
            "/dead",
            post(|| async {
                tokio::time::sleep(Duration::from_secs(600)).await;
                StatusCode::OK
            }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let base = format!("http://{}", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(base)
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One phase: a fresh tenant, its endpoints (live ones, plus `dead` URLs), a backlog of
/// events; returns the live deliveries a second and the time to deliver them all.
async fn phase(
    bench: &Bench,
    receiver: &str,
    count: &AtomicU64,
    dead: &[String],
) -> anyhow::Result<(f64, Duration, u64)> {
    let endpoints = setting("BENCH_ENDPOINTS", 8);
    let events = setting("BENCH_EVENTS", 500);
    let (created, token) = bench.tenant("webhooks").await?;
    let tenant = created["tenant"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let mut ids = Vec::new();
    let urls = (0..endpoints)
        .map(|n| format!("{receiver}/hook/{n}"))
        .chain(dead.iter().cloned());
    for url in urls {
        let endpoint = bench
            .post(
                "/v1/webhook-endpoints",
                &token,
                json!({"url": url, "event_types": ["*"]}),
            )
            .await?;
        ids.push(endpoint["id"].as_str().unwrap_or_default().to_owned());
    }
    let before = count.load(Ordering::Relaxed);
    let expected = endpoints * events;
    let mut owner = tenantry::db::owner_connection(&bench.config).await?;
    let started = Instant::now();
    sqlx::query(
        "insert into domain_events (tenant_id, stream_type, stream_id, version, event_id, event_type, data, metadata)
         select $1::uuid, 'bench', gen_random_uuid(), 1, gen_random_uuid(), 'bench.happened',
                jsonb_build_object('n', n), '{}'::jsonb
         from generate_series(1, $2) as n",
    )
    .bind(&tenant)
    .bind(i64::try_from(events)?)
    .execute(&mut owner)
    .await?;
    while count.load(Ordering::Relaxed) - before < expected {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "delivery stalled at {} of {expected}",
            count.load(Ordering::Relaxed) - before
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = started.elapsed();
    // Tidy up: the endpoints go (dead ones would otherwise be retried by later runs).
    for id in ids {
        bench
            .client
            .delete(bench.url(&format!("/v1/webhook-endpoints/{id}")))
            .bearer_auth(&token)
            .send()
            .await?;
    }
    Ok((expected as f64 / took.as_secs_f64(), took, expected))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!(
        "tenantry webhooks benchmark: a backlog of events to {} live endpoints\n",
        setting("BENCH_ENDPOINTS", 8)
    );
    let count = Arc::new(AtomicU64::new(0));
    let receiver = receiver(Arc::clone(&count)).await?;
    let bench = Bench::start_with(&[
        ("TENANTRY_WEBHOOK_ALLOW_PRIVATE_TARGETS", "true"),
        ("TENANTRY_WEBHOOK_POLL_INTERVAL", "100ms"),
        ("TENANTRY_WEBHOOK_TIMEOUT", "2s"),
        ("TENANTRY_WEBHOOK_RETRY_SCHEDULE", "1s,1s"),
        ("TENANTRY_USAGE_METERING", "on"),
    ])
    .await?;

    let (alone, alone_took, delivered) = phase(&bench, &receiver, &count, &[]).await?;
    let refused = format!("http://127.0.0.1:{}/hook", free_port()?);
    let dead = [format!("{receiver}/dead"), refused];
    let (beside, beside_took, _) = phase(&bench, &receiver, &count, &dead).await?;

    println!("{:<44} {:>12} {:>10}", "phase", "deliveries/s", "took");
    println!(
        "{:<44} {:>12.0} {:>9.2}s",
        format!("{delivered} deliveries, live endpoints only"),
        alone,
        alone_took.as_secs_f64()
    );
    println!(
        "{:<44} {:>12.0} {:>9.2}s",
        "the same beside a hanging and a refusing one",
        beside,
        beside_took.as_secs_f64()
    );
    println!(
        "\nlive deliveries/s beside dead endpoints / alone: {:.2}",
        beside / alone
    );
    Ok(())
}

/// A port on 127.0.0.1 that nothing listens on (at the moment of asking).
fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
