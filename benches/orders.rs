//! Orders benchmark: `cargo bench --bench orders`.
//!
//! Several tenants, each with an API key, a customer and 20 products; `BENCH_CONCURRENCY`
//! clients spread over the tenants place orders (`POST /v1/orders`, one line each), then
//! read them back (`GET /v1/orders/{id}`) and list them (`GET /v1/orders?limit=50`). The
//! server is the release binary in a process of its own: after each phase the bench prints
//! its CPU time per request and its resident memory (now and at peak). Side by side, pgbench runs the same SQL as a
//! placement (`benches/place_order.sql`) and as a read (`benches/get_order.sql`), one
//! pgbench per tenant at the same total concurrency, and the ratios are printed.
//! Settings: see `support::Bench`; `BENCH_TENANTS` (default 4).

mod support;

use std::sync::Arc;

use serde_json::json;
use support::{Bench, hammer, newest_orders, pgbench};

struct Shop {
    tenant_id: String,
    key: String,
    key_id: String,
    customer_id: String,
    products: Vec<String>,
}

async fn shop(bench: &Bench) -> anyhow::Result<Shop> {
    let (created, jwt) = bench.tenant("orders-bench").await?;
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
    let mut products = Vec::new();
    for n in 1..=20 {
        let product = bench
            .post("/v1/products", &jwt, json!({"sku": format!("P{n}"), "name": format!("Product {n}"), "price_cents": 1000, "currency": "EUR", "stock": 100_000_000}))
            .await?;
        products.push(product["id"].as_str().unwrap_or_default().to_owned());
    }
    Ok(Shop {
        tenant_id: created["tenant"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        key: key["key"].as_str().unwrap_or_default().to_owned(),
        key_id: key["id"].as_str().unwrap_or_default().to_owned(),
        customer_id: customer["id"].as_str().unwrap_or_default().to_owned(),
        products,
    })
}

/// Runs `script` in one pgbench per tenant at once, `clients` each; the summed rate, or
/// `None` when any of them failed. Every script gets `tid` and `kid`; `vars` adds more.
fn pgbench_per_tenant(
    bench: &Bench,
    shops: &[Shop],
    script: &'static str,
    clients: usize,
    seconds: u64,
    vars: impl Fn(&Shop, usize) -> Vec<(&'static str, String)>,
) -> Option<f64> {
    let runs: Vec<_> = shops
        .iter()
        .enumerate()
        .map(|(tenant, shop)| {
            let mut all = vec![
                ("tid", shop.tenant_id.clone()),
                ("kid", shop.key_id.clone()),
            ];
            all.extend(vars(shop, tenant));
            let config = bench.config.clone();
            std::thread::spawn(move || pgbench(&config, script, &all, clients, seconds))
        })
        .collect();
    runs.into_iter().map(|run| run.join().ok().flatten()).sum()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bench = Bench::start().await?;
    let tenants: usize = std::env::var("BENCH_TENANTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let mut shops = Vec::new();
    for _ in 0..tenants {
        shops.push(shop(&bench).await?);
    }
    let shops = Arc::new(shops);
    let (concurrency, duration) = (bench.concurrency, bench.duration);
    println!(
        "tenantry orders benchmark: {tenants} tenants, {concurrency} concurrent clients, {} s per phase, release build\n",
        duration.as_secs()
    );

    let idle = bench.server.status();
    println!(
        "server idle after seeding: RSS {:.1} MiB (peak so far {:.1} MiB), {} threads\n",
        idle.rss_kib as f64 / 1024.0,
        idle.peak_kib as f64 / 1024.0,
        idle.threads
    );

    let (client, url, s) = (bench.client.clone(), bench.url("/v1/orders"), shops.clone());
    let create = bench
        .measured(
            "POST /v1/orders",
            hammer(concurrency, duration, move |worker, iteration| {
                let shop = &s[worker % s.len()];
                let product = &shop.products[(worker * 7 + iteration) % shop.products.len()];
                client
                    .post(&url)
                    .header("x-api-key", &shop.key)
                    .json(&json!({"customer_id": shop.customer_id, "items": [{"product_id": product, "quantity": 1}]}))
            }),
        )
        .await;

    // The orders to read: the newest page of each tenant.
    let mut ids: Vec<Vec<String>> = Vec::new();
    for shop in shops.iter() {
        ids.push(newest_orders(&bench.client, &bench.base, &shop.key).await?);
    }
    let ids = Arc::new(ids);
    let (client, base, s, order_ids) = (
        bench.client.clone(),
        bench.base.clone(),
        shops.clone(),
        ids.clone(),
    );
    let get = bench
        .measured(
            "GET /v1/orders/{id}",
            hammer(concurrency, duration, move |worker, iteration| {
                let tenant = worker % s.len();
                let orders = &order_ids[tenant];
                let id = &orders[(worker * 13 + iteration) % orders.len().max(1)];
                client
                    .get(format!("{base}/v1/orders/{id}"))
                    .header("x-api-key", &s[tenant].key)
            }),
        )
        .await;
    let (client, url, s) = (
        bench.client.clone(),
        bench.url("/v1/orders?limit=50"),
        shops.clone(),
    );
    bench
        .measured(
            "GET /v1/orders?limit=50",
            hammer(concurrency, duration, move |worker, _| {
                client
                    .get(&url)
                    .header("x-api-key", &s[worker % s.len()].key)
            }),
        )
        .await;
    let end = bench.server.status();
    println!(
        "\nserver after the load: RSS {:.1} MiB, peak {:.1} MiB, {} threads",
        end.rss_kib as f64 / 1024.0,
        end.peak_kib as f64 / 1024.0,
        end.threads
    );

    // pgbench: one process per tenant, the same total concurrency, all at once.
    let per_tenant = (concurrency / tenants).max(1);
    let seconds = duration.as_secs();
    let placed = pgbench_per_tenant(
        &bench,
        &shops,
        "place_order.sql",
        per_tenant,
        seconds,
        |shop, _| vec![("cid", shop.customer_id.clone())],
    );
    let read = pgbench_per_tenant(
        &bench,
        &shops,
        "get_order.sql",
        per_tenant,
        seconds,
        |_, tenant| vec![("oid", ids[tenant].first().cloned().unwrap_or_default())],
    );
    let mut ratios = Vec::new();
    for (tps, script, route, api) in [
        (placed, "place_order.sql", "POST /v1/orders", &create),
        (read, "get_order.sql", "GET /v1/orders/{id}", &get),
    ] {
        let Some(tps) = tps else { continue };
        println!(
            "{:<32} {tps:>8.0} req/s   (same SQL as {route}, {tenants} × {per_tenant} clients)",
            format!("pgbench benches/{script}")
        );
        ratios.push(format!(
            "  {:<30} {:.2}",
            format!("{route} / pgbench"),
            api.rps() / tps
        ));
    }
    if !ratios.is_empty() {
        println!("\nratios\n{}", ratios.join("\n"));
    }
    Ok(())
}
