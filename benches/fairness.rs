//! Fairness benchmark: `cargo bench --bench fairness`.
//!
//! Does one tenant flooding the API take what another needs? A quiet tenant reads a page
//! of its orders (`GET /v1/orders?limit=10`, an API key; uncached, so every request is a
//! database transaction) at a steady `BENCH_QUIET_RATE` (50) requests a second — open
//! loop: each request sent on schedule, whether or not the last one was answered — for
//! `BENCH_SECONDS`:
//! 1. alone;
//! 2. while a noisy tenant on the same plan (`pro`: 100 requests a second per credential)
//!    sends the same request from `BENCH_CONCURRENCY` (32) clients back to back, many
//!    times its rate: its excess is refused (429) by the rate limiter;
//! 3. while the noisy tenant floods on a plan with no effective rate limit, so only the
//!    admission limit's fair share and the machine itself stand between them.
//!
//! Printed per phase: the quiet tenant's success rate, median and p99 latency, and the
//! noisy tenant's accepted and refused requests a second; then the quiet tenant's p99 in
//! phases 2 and 3 as a multiple of phase 1's.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Bench, Stats, hammer};
use tokio::time::Instant;

/// A tenant with an API key and a few orders to list.
async fn tenant(bench: &Bench, plan: &str) -> anyhow::Result<String> {
    let (_, jwt) = bench.tenant_on("fairness", plan).await?;
    let key = bench
        .post(
            "/v1/api-keys",
            &jwt,
            json!({"name": "bench", "scopes": ["orders:read", "orders:write"]}),
        )
        .await?;
    let customer = bench
        .post(
            "/v1/customers",
            &jwt,
            json!({"email": "buyer@bench.test", "name": "Buyer"}),
        )
        .await?;
    let product = bench
        .post(
            "/v1/products",
            &jwt,
            json!({"sku": "P1", "name": "Product", "price_cents": 1000, "currency": "EUR", "stock": 1_000_000}),
        )
        .await?;
    for _ in 0..10 {
        bench
            .post(
                "/v1/orders",
                &jwt,
                json!({"customer_id": customer["id"], "items": [{"product_id": product["id"], "quantity": 1}]}),
            )
            .await?;
    }
    Ok(key["key"].as_str().unwrap_or_default().to_owned())
}

/// What the quiet tenant saw in one phase.
struct Quiet {
    sent: usize,
    ok: usize,
    latencies: Vec<Duration>,
}

impl Quiet {
    fn percentile(&self, p: f64) -> Duration {
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(index).copied().unwrap_or_default()
    }

    fn success(&self) -> f64 {
        self.ok as f64 / self.sent.max(1) as f64
    }
}

/// Open-loop load: `rate` requests a second for `duration`, each on its own task.
async fn steady(
    client: reqwest::Client,
    url: String,
    key: String,
    rate: u32,
    duration: Duration,
) -> Quiet {
    let mut ticks = tokio::time::interval(Duration::from_secs(1) / rate);
    let deadline = Instant::now() + duration;
    let mut sent = Vec::new();
    while Instant::now() < deadline {
        ticks.tick().await;
        let request = client.get(&url).header("x-api-key", &key);
        sent.push(tokio::spawn(async move {
            let began = Instant::now();
            let ok = match request.send().await {
                Ok(response) => {
                    let ok = response.status().is_success();
                    let _ = response.bytes().await;
                    ok
                }
                Err(_) => false,
            };
            (ok, began.elapsed())
        }));
    }
    let mut quiet = Quiet {
        sent: sent.len(),
        ok: 0,
        latencies: Vec::new(),
    };
    for request in sent {
        if let Ok((ok, took)) = request.await {
            quiet.ok += usize::from(ok);
            quiet.latencies.push(took);
        }
    }
    quiet.latencies.sort_unstable();
    quiet
}

fn flood(bench: &Bench, key: String) -> impl Future<Output = Stats> + use<> {
    let (client, url) = (bench.client.clone(), bench.url("/v1/orders?limit=10"));
    hammer(bench.concurrency, bench.duration, move |_, _| {
        client.get(&url).header("x-api-key", &key)
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    let rate: u32 = std::env::var("BENCH_QUIET_RATE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(50);
    let unthrottled = bench.unthrottled_plan().await?;
    let quiet_key = tenant(&bench, "pro").await?;
    let noisy_pro = tenant(&bench, "pro").await?;
    let noisy_unthrottled = tenant(&bench, &unthrottled).await?;
    println!(
        "tenantry fairness benchmark: a quiet tenant at {rate} req/s, a noisy one at {} clients back to back, {} s per phase, release build\n",
        bench.concurrency,
        bench.duration.as_secs()
    );
    let quiet = || {
        steady(
            bench.client.clone(),
            bench.url("/v1/orders?limit=10"),
            quiet_key.clone(),
            rate,
            bench.duration,
        )
    };
    let _warm_up = quiet().await;

    let alone = quiet().await;
    let (with_pro, noisy_on_pro) = tokio::join!(quiet(), flood(&bench, noisy_pro));
    let (with_unthrottled, noisy_unlimited) =
        tokio::join!(quiet(), flood(&bench, noisy_unthrottled));

    println!(
        "| phase | quiet: success | quiet: p50 | quiet: p99 | noisy: accepted/s | noisy: refused/s |"
    );
    println!("| --- | ---: | ---: | ---: | ---: | ---: |");
    let seconds = bench.duration.as_secs_f64();
    for (phase, quiet, noisy) in [
        ("quiet tenant alone", &alone, None),
        (
            "noisy tenant on `pro` (rate-limited)",
            &with_pro,
            Some(&noisy_on_pro),
        ),
        (
            "noisy tenant with no rate limit",
            &with_unthrottled,
            Some(&noisy_unlimited),
        ),
    ] {
        let (accepted, refused) = noisy.map_or(("—".into(), "—".into()), |n: &Stats| {
            (
                format!("{:.0}", n.requests as f64 / seconds),
                format!("{:.0}", n.errors as f64 / seconds),
            )
        });
        println!(
            "| {phase} | {:.1} % | {:.1} ms | {:.1} ms | {accepted} | {refused} |",
            quiet.success() * 100.0,
            quiet.percentile(0.5).as_secs_f64() * 1e3,
            quiet.percentile(0.99).as_secs_f64() * 1e3,
        );
    }
    let ratio = |q: &Quiet| q.percentile(0.99).as_secs_f64() / alone.percentile(0.99).as_secs_f64();
    println!(
        "\nquiet tenant's p99 against alone: {:.2}× beside a rate-limited flood, {:.2}× beside an unlimited one",
        ratio(&with_pro),
        ratio(&with_unthrottled)
    );
    let status = bench.server.status();
    println!(
        "server: RSS {:.1} MiB, peak {:.1} MiB",
        status.rss_kib as f64 / 1024.0,
        status.peak_kib as f64 / 1024.0
    );
    Ok(())
}
