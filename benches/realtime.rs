//! Realtime benchmark: `cargo bench --bench realtime`.
//!
//! `BENCH_SUBSCRIBERS` (1000) Server-Sent Event streams (`GET /v1/events?types=order.placed`)
//! spread over `BENCH_TENANTS` (10) tenants, held open against the release server while
//! orders are placed at a steady `BENCH_ORDER_RATE` (50) a second, round-robin over the
//! tenants, for `BENCH_SECONDS`. Every subscriber of the order's tenant receives it.
//!
//! Printed: the latency to each subscriber's receipt, p50/p99/max over every delivery,
//! from two points that bracket the commit: the event's time (`occurred_at`, taken inside
//! the placing transaction, before its commit — an upper bound) and the moment the bench
//! got the `201` (after the commit — a lower bound, 0 when the event came first); the server's resident memory before the
//! streams, with them open and idle, and its peak, and from those the memory per idle
//! connection; the server's CPU time per delivered event.

mod support;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use futures_util::StreamExt;
use serde_json::{Value, json};
use support::Bench;
use time::OffsetDateTime;
use tokio::time::Instant;

fn setting(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

struct Shop {
    token: String,
    customer: Value,
    product: Value,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let subscribers = setting("BENCH_SUBSCRIBERS", 1000);
    let tenants = setting("BENCH_TENANTS", 10);
    let rate = setting("BENCH_ORDER_RATE", 50);
    // The bench holds a socket per subscriber.
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let bench = Bench::start().await?;
    let mut shops = Vec::new();
    for _ in 0..tenants {
        let (_, token) = bench.tenant("realtime").await?;
        let customer = bench
            .post(
                "/v1/customers",
                &token,
                json!({"email": "buyer@bench.test", "name": "Buyer"}),
            )
            .await?;
        let product = bench
            .post(
                "/v1/products",
                &token,
                json!({"sku": "P1", "name": "Product", "price_cents": 1000, "currency": "EUR", "stock": 1_000_000}),
            )
            .await?;
        shops.push(Shop {
            token,
            customer,
            product,
        });
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = bench.server.status();

    // One client per stream: each holds its own connection.
    // (order id, occurred_at, received) of every delivery.
    let deliveries = Arc::new(Mutex::new(
        Vec::<(String, OffsetDateTime, OffsetDateTime)>::new(),
    ));
    let mut streams = Vec::new();
    for n in 0..subscribers {
        let shop = &shops[n % tenants];
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        let response = client
            .get(bench.url("/v1/events?types=order.placed"))
            .bearer_auth(&shop.token)
            .send()
            .await?
            .error_for_status()?;
        let deliveries = Arc::clone(&deliveries);
        streams.push(tokio::spawn(async move {
            let mut body = response.bytes_stream();
            let mut buffer = String::new();
            while let Some(Ok(chunk)) = body.next().await {
                let received = OffsetDateTime::now_utc();
                buffer.push_str(&String::from_utf8_lossy(&chunk));
                while let Some(end) = buffer.find("\n\n") {
                    let block: String = buffer.drain(..end + 2).collect();
                    let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) else {
                        continue;
                    };
                    let Ok(event) = serde_json::from_str::<Value>(data) else {
                        continue;
                    };
                    let occurred = event["occurred_at"].as_str().and_then(|at| {
                        OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339)
                            .ok()
                    });
                    if let (Some(occurred), Some(order)) = (occurred, event["stream_id"].as_str()) {
                        deliveries
                            .lock()
                            .unwrap()
                            .push((order.to_owned(), occurred, received));
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let idle = bench.server.status();

    let cpu = bench.server.cpu_time();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
    let mut placed = 0usize;
    let mut failed = 0usize;
    let mut acknowledged = std::collections::HashMap::new();
    while started.elapsed() < bench.duration {
        tick.tick().await;
        let shop = &shops[placed % tenants];
        let order = json!({"customer_id": shop.customer["id"], "items": [{"product_id": shop.product["id"], "quantity": 1}]});
        match bench.post("/v1/orders", &shop.token, order).await {
            Ok(order) => {
                placed += 1;
                let id = order["id"].as_str().unwrap_or_default().to_owned();
                acknowledged.insert(id, OffsetDateTime::now_utc());
            }
            Err(_) => failed += 1,
        }
    }
    // Let the last deliveries land.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let cpu = bench.server.cpu_time().saturating_sub(cpu);
    let peak = bench.server.status();
    for stream in &streams {
        stream.abort();
    }

    let deliveries = deliveries.lock().unwrap().clone();
    let duration = |from: OffsetDateTime, to: OffsetDateTime| {
        Duration::from_secs_f64((to - from).max(time::Duration::ZERO).as_seconds_f64())
    };
    let mut from_event: Vec<Duration> = deliveries
        .iter()
        .map(|(_, occurred, received)| duration(*occurred, *received))
        .collect();
    let mut from_ack: Vec<Duration> = deliveries
        .iter()
        .filter_map(|(order, _, received)| {
            acknowledged.get(order).map(|ack| duration(*ack, *received))
        })
        .collect();
    from_event.sort();
    from_ack.sort();
    let percentile = |latencies: &[Duration], p: f64| {
        let index = ((latencies.len().max(1) - 1) as f64 * p).round() as usize;
        latencies.get(index).copied().unwrap_or_default()
    };
    let latencies = &from_event;
    let expected = placed * subscribers / tenants;
    let per_connection_kib =
        idle.rss_kib.saturating_sub(before.rss_kib) as f64 / subscribers.max(1) as f64;
    println!();
    println!(
        "{subscribers} SSE subscribers over {tenants} tenants; {placed} orders placed at {rate}/s ({failed} failed)"
    );
    println!(
        "deliveries: {} of {expected} expected ({:.1} %)",
        latencies.len(),
        100.0 * latencies.len() as f64 / expected.max(1) as f64
    );
    println!();
    println!("| measure | value | goal |");
    println!("| --- | ---: | --- |");
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    for (name, latencies) in [("event time", &from_event), ("201 received", &from_ack)] {
        let p99 = percentile(latencies, 0.99);
        println!(
            "| {name} → receipt p50 / p99 / max | {:.1} / {:.1} / {:.1} ms | p99 ≤ 100 ms{} |",
            ms(percentile(latencies, 0.5)),
            ms(p99),
            ms(percentile(latencies, 1.0)),
            if p99 <= Duration::from_millis(100) {
                " ✓"
            } else {
                " ✗"
            }
        );
    }
    println!(
        "| resident memory per idle connection | {per_connection_kib:.1} KiB | ≤ 32 KiB{} |",
        if per_connection_kib <= 32.0 {
            " ✓"
        } else {
            " ✗"
        }
    );
    println!(
        "| RSS before / with {subscribers} idle streams / peak | {:.1} / {:.1} / {:.1} MiB | |",
        before.rss_kib as f64 / 1024.0,
        idle.rss_kib as f64 / 1024.0,
        peak.peak_kib as f64 / 1024.0
    );
    println!(
        "| server CPU per delivered event (placing included) | {:.0} µs | |",
        cpu.as_secs_f64() * 1e6 / latencies.len().max(1) as f64
    );
    Ok(())
}
