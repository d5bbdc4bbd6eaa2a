//! Usage metering benchmark: `cargo bench --bench metering`.
//!
//! 1. **What metering costs.** Two servers on the same database, one metering (the
//!    default) and one with `TENANTRY_USAGE_METERING=off`, take the orders benchmark's
//!    placement (`POST /v1/orders`, each counted in its own transaction) and read
//!    (`GET /v1/orders/{id}`, counted in memory) loads in turn: a warm-up of each, then
//!    `BENCH_ROUNDS` (4) rounds alternating which goes first (on-off, off-on, …), so that
//!    drift over the run falls on both alike. Printed: each phase, and the median ratio
//!    on / off per load.
//! 2. **What a crash loses.** A metering server with the default flush interval (5 s) takes
//!    `GET /v1/tenant` with an API key for 8 s and is then killed (SIGKILL); the calls it
//!    answered are compared with the calls the database holds for that key. Then the same
//!    with SIGTERM, which must lose nothing.
//!
//! Settings: see `support::Bench`; `BENCH_TENANTS` (default 4).

mod support;

use std::{sync::Arc, time::Duration};

use serde_json::{Value, json};
use support::{Bench, ServerProcess, Stats, hammer, measured, newest_orders};

struct Shop {
    key: String,
    customer_id: String,
    products: Vec<String>,
    orders: Vec<String>,
}

/// A tenant with an API key, a customer and 20 products, through `server`.
async fn shop(client: &reqwest::Client, server: &ServerProcess) -> anyhow::Result<Shop> {
    let (_, jwt) = server.tenant("metering-bench").await?;
    let post = |path: &str, body: Value| {
        let request = client.post(server.url(path)).bearer_auth(&jwt).json(&body);
        async move {
            anyhow::Ok(
                request
                    .send()
                    .await?
                    .error_for_status()?
                    .json::<Value>()
                    .await?,
            )
        }
    };
    let key = post(
        "/v1/api-keys",
        json!({"name": "bench", "scopes": ["orders:read", "orders:write", "tenant:read"]}),
    )
    .await?;
    let customer = post(
        "/v1/customers",
        json!({"email": "buyer@bench.test", "name": "Buyer"}),
    )
    .await?;
    let mut products = Vec::new();
    for n in 1..=20 {
        let product = post("/v1/products", json!({"sku": format!("P{n}"), "name": format!("Product {n}"), "price_cents": 1000, "currency": "EUR", "stock": 100_000_000})).await?;
        products.push(product["id"].as_str().unwrap_or_default().to_owned());
    }
    Ok(Shop {
        key: key["key"].as_str().unwrap_or_default().to_owned(),
        customer_id: customer["id"].as_str().unwrap_or_default().to_owned(),
        products,
        orders: Vec::new(),
    })
}

async fn place_orders(
    bench: &Bench,
    server: &ServerProcess,
    shops: &Arc<Vec<Shop>>,
    name: &str,
) -> Stats {
    let (client, url, s) = (
        bench.client.clone(),
        server.url("/v1/orders"),
        shops.clone(),
    );
    measured(
        server,
        name,
        hammer(bench.concurrency, bench.duration, move |worker, iteration| {
            let shop = &s[worker % s.len()];
            let product = &shop.products[(worker * 7 + iteration) % shop.products.len()];
            client
                .post(&url)
                .header("x-api-key", &shop.key)
                .json(&json!({"customer_id": shop.customer_id, "items": [{"product_id": product, "quantity": 1}]}))
        }),
    )
    .await
}

async fn read_orders(
    bench: &Bench,
    server: &ServerProcess,
    shops: &Arc<Vec<Shop>>,
    name: &str,
) -> Stats {
    let (client, base, s) = (bench.client.clone(), server.base.clone(), shops.clone());
    measured(
        server,
        name,
        hammer(
            bench.concurrency,
            bench.duration,
            move |worker, iteration| {
                let shop = &s[worker % s.len()];
                let id = &shop.orders[(worker * 13 + iteration) % shop.orders.len().max(1)];
                client
                    .get(format!("{base}/v1/orders/{id}"))
                    .header("x-api-key", &shop.key)
            },
        ),
    )
    .await
}

/// Runs `load` on the metering server (`servers[0]`) and the other, after an unmeasured
/// warm-up of each, `rounds` times, alternating which goes first (on-off, off-on, …) so
/// that a drift over the run (caches filling, tables growing) falls on both alike; returns
/// each round's on / off ratio of requests per second.
async fn on_off(
    servers: [&ServerProcess; 2],
    rounds: usize,
    load: impl AsyncFn(&ServerProcess, String) -> Stats,
) -> Vec<f64> {
    for (server, name) in servers.iter().zip(["on  warm-up", "off warm-up"]) {
        load(server, name.to_owned()).await;
    }
    let mut ratios = Vec::new();
    for round in 1..=rounds {
        let mut rps = [0.0; 2];
        let order = if round % 2 == 1 { [0, 1] } else { [1, 0] };
        for which in order {
            let name = format!("{} #{round}", ["on ", "off"][which]);
            rps[which] = load(servers[which], name).await.rps();
        }
        ratios.push(rps[0] / rps[1]);
    }
    ratios
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// API calls the database holds for the API key `key_id`.
async fn recorded_calls(bench: &Bench, key_id: &str) -> anyhow::Result<i64> {
    let mut owner = tenantry::db::owner_connection(&bench.config).await?;
    Ok(sqlx::query_scalar(
        "select coalesce(sum(quantity), 0)::bigint from usage_counters
         where metric = 'api_calls' and dimensions ->> 'credential' = $1",
    )
    .bind(format!("api_key:{key_id}"))
    .fetch_one(&mut owner)
    .await?)
}

/// Loads a fresh metering server for 8 s, stops it with `signal`, and returns the calls it
/// answered and the calls the database holds.
async fn calls_kept(bench: &Bench, signal: &str) -> anyhow::Result<(u64, i64)> {
    let mut server = ServerProcess::start(&[]).await?;
    let (_, jwt) = server.tenant("metering-crash").await?;
    let key: Value = bench
        .client
        .post(server.url("/v1/api-keys"))
        .bearer_auth(&jwt)
        .json(&json!({"name": "crash", "scopes": ["tenant:read"]}))
        .send()
        .await?
        .json()
        .await?;
    let (client, url, secret) = (
        bench.client.clone(),
        server.url("/v1/tenant"),
        key["key"].as_str().unwrap_or_default().to_owned(),
    );
    let stats = hammer(bench.concurrency, Duration::from_secs(8), move |_, _| {
        client.get(&url).header("x-api-key", &secret)
    })
    .await;
    // SIGTERM: the server exits after its shutdown flush.
    server.stop_with(signal)?;
    drop(server);
    let recorded = recorded_calls(bench, key["id"].as_str().unwrap_or_default()).await?;
    anyhow::ensure!(stats.errors == 0, "{} calls failed", stats.errors);
    Ok((stats.requests as u64, recorded))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    let off = ServerProcess::start(&[
        ("TENANTRY_USAGE_METERING", "off"),
        ("DATABASE_MAX_CONNECTIONS", &bench.concurrency.to_string()),
    ])
    .await?;
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let tenants: usize = std::env::var("BENCH_TENANTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    println!(
        "tenantry metering benchmark: {tenants} tenants, {} concurrent clients, {} s per phase, {rounds} rounds on/off, release build\n",
        bench.concurrency,
        bench.duration.as_secs()
    );
    let mut shops = Vec::new();
    for _ in 0..tenants {
        shops.push(shop(&bench.client, &bench.server).await?);
    }
    let shops = Arc::new(shops);

    let servers = [&bench.server, &off];
    let placing = on_off(servers, rounds, async |server, name| {
        place_orders(&bench, server, &shops, &format!("POST /v1/orders {name}")).await
    })
    .await;
    // The orders to read: the newest page of each tenant.
    let mut shops = Arc::try_unwrap(shops).map_err(|_| anyhow::anyhow!("shops still shared"))?;
    for shop in &mut shops {
        shop.orders = newest_orders(&bench.client, &bench.base, &shop.key).await?;
    }
    let shops = Arc::new(shops);
    let reading = on_off(servers, rounds, async |server, name| {
        read_orders(
            &bench,
            server,
            &shops,
            &format!("GET /v1/orders/{{id}} {name}"),
        )
        .await
    })
    .await;
    drop(off);
    println!(
        "\nmetering on / off (median of {rounds} rounds)\n  POST /v1/orders        {:.3}\n  GET /v1/orders/{{id}}    {:.3}",
        median(placing),
        median(reading)
    );

    println!("\nwhat a crash loses (flush interval 5 s, 8 s of GET /v1/tenant)");
    for signal in ["-KILL", "-TERM"] {
        let (answered, recorded) = calls_kept(&bench, signal).await?;
        let lost = answered as i64 - recorded;
        println!(
            "  kill {signal:<6} {answered:>7} calls answered, {recorded:>7} recorded, {lost:>6} lost ({:.1} s of this load)",
            lost as f64 / (answered as f64 / 8.0)
        );
    }
    Ok(())
}
