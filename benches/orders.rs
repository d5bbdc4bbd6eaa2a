//! Orders benchmark: `cargo bench --bench orders`.
//!
//! Several tenants (`BENCH_TENANTS`, default 4), each with a customer and 20 products, all
//! on one plan made for the bench whose rate limits (a million requests a second) no load
//! here reaches: the limiter runs for every request, as it does on any plan with a rate, but
//! never refuses. Every request carries its tenant owner's login JWT. `BENCH_CONCURRENCY`
//! clients spread over the tenants. The server is the release binary in a process of its
//! own, so that the CPU time and resident memory `/proc` gives are the server's alone.
//!
//! 1. **The phases**, on one server (default settings: rate limits on, counted in process;
//!    read cache on): place orders (`POST /v1/orders`, three lines of three different
//!    products, one of each); read them back (`GET /v1/orders/{id}`, up to 200 different
//!    orders a tenant, the credential warm in the server's cache) twice — with the order
//!    not cached, on a second server like the first but with the read cache off
//!    (`TENANTRY_READ_CACHE_TTL=0s`, up for that phase alone), and with the read cache on;
//!    list the newest 50 (`GET /v1/orders?limit=50`); and `GET /health/live`, what the HTTP
//!    stack and the load client alone cost at the same concurrency. After each: req/s,
//!    latency percentiles, non-2xx answers (429s counted apart), server CPU per request,
//!    resident memory.
//! 2. **The floors.** pgbench runs, one process per tenant at the same total concurrency,
//!    the *least* SQL that produces the same answer — not the SQL the server sends:
//!    `benches/get_order.sql`, `benches/list_orders.sql`, `benches/place_order.sql` (each
//!    says what it leaves out and why). None checks a credential: a warm server answers
//!    that from its cache, and it is not part of the answer. A floor is what Postgres alone
//!    gives on this machine for that answer; API / floor is how much of it the server keeps.
//! 3. **What the rate limiter costs.** Three fresh servers on the same database —
//!    `TENANTRY_RATE_LIMITS=off`, on (counted in process), and on with `REDIS_URL` (one Lua
//!    script per request in Redis; the bench counts them) — take the `GET /v1/orders/{id}`
//!    load in turn: a warm-up of each, then `BENCH_ROUNDS` (3) rounds, each starting with
//!    the next server (off, on, Redis; then on, Redis, off; …) so that a drift over the run
//!    falls on all alike. Per round the ratio on / off; the median of those is the figure.
//!    Their read cache is at its default (on: the cheapest request, where the limiter
//!    weighs most) unless `BENCH_LIMITER_READ_CACHE=off`. The first server is stopped
//!    before, and the three share Postgres's connections: their pools are sized to fit
//!    `max_connections`.
//!
//! Then the goals table (markdown): each goal, the figures it is judged on, and whether it
//! is met — by how much it is missed when not. Last, the run fails if any phase was
//! refused with 429 (the plan's limits were meant to be out of reach).
//! Settings: see `support::Bench`; `BENCH_TENANTS` (4), `BENCH_ROUNDS` (3),
//! `BENCH_LIMITER_READ_CACHE` (on), `REDIS_URL` (`redis://127.0.0.1:6379`, for part 3).

mod support;

use std::{future::Future, sync::Arc, time::Duration};

use serde_json::json;
use support::{Bench, ServerProcess, Stats, hammer, measured, newest_orders, pgbench};

/// One tenant, as the load sees it.
struct Shop {
    tenant_id: String,
    /// The owner's access token from login: the credential of every request.
    jwt: String,
    /// An API key that reads orders: what `newest_orders` takes.
    key: String,
    customer_id: String,
    products: Vec<String>,
}

/// A tenant on `plan` with an API key, a customer and 20 products (skus `P1`..`P20`).
async fn shop(bench: &Bench, plan: &str) -> anyhow::Result<Shop> {
    let (created, jwt) = bench.tenant_on("orders-bench", plan).await?;
    let key = bench
        .post(
            "/v1/api-keys",
            &jwt,
            json!({"name": "bench", "scopes": ["orders:read"]}),
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
        jwt,
        key: key["key"].as_str().unwrap_or_default().to_owned(),
        customer_id: customer["id"].as_str().unwrap_or_default().to_owned(),
        products,
    })
}

/// The `GET /v1/orders/{id}` load on the server at `base`: each worker reads its tenant's
/// orders (`orders[tenant]`) in turn, with the tenant owner's JWT.
fn read_orders(
    client: &reqwest::Client,
    base: &str,
    shops: &Arc<Vec<Shop>>,
    orders: &Arc<Vec<Vec<String>>>,
    concurrency: usize,
    duration: Duration,
) -> impl Future<Output = Stats> + use<> {
    let (client, base, shops, orders) = (
        client.clone(),
        base.to_owned(),
        shops.clone(),
        orders.clone(),
    );
    hammer(concurrency, duration, move |worker, iteration| {
        let tenant = worker % shops.len();
        let ids = &orders[tenant];
        let id = &ids[(worker * 13 + iteration) % ids.len().max(1)];
        client
            .get(format!("{base}/v1/orders/{id}"))
            .bearer_auth(&shops[tenant].jwt)
    })
}

/// Runs `script` in one pgbench per tenant at once, `clients` each; the summed rate, or
/// `None` when any of them failed. Every script gets `tid`; `vars` adds more.
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
            let mut all = vec![("tid", shop.tenant_id.clone())];
            all.extend(vars(shop, tenant));
            let config = bench.config.clone();
            std::thread::spawn(move || pgbench(&config, script, &all, clients, seconds))
        })
        .collect();
    runs.into_iter().map(|run| run.join().ok().flatten()).sum()
}

/// Ids as a Postgres array literal, `{a,b,…}` (a pgbench variable).
fn pg_array(ids: &[String]) -> String {
    format!("{{{}}}", ids.join(","))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Lua scripts Redis has run so far (`EVAL`, `EVALSHA`, `FCALL`, from `INFO commandstats`
/// through `redis-cli`), to show that the Redis server's limiter did count there; `None`
/// when Redis cannot say.
fn redis_scripts_run(url: &str) -> Option<u64> {
    let output = std::process::Command::new("redis-cli")
        .args(["-u", url, "info", "commandstats"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let calls: u64 = text
        .lines()
        .filter(|l| {
            ["cmdstat_eval:", "cmdstat_evalsha:", "cmdstat_fcall:"]
                .iter()
                .any(|c| l.starts_with(c))
        })
        .filter_map(|l| {
            l.split_once("calls=")?
                .1
                .split(',')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    output.status.success().then_some(calls)
}

/// What one goal is judged on.
enum Target {
    /// A ratio of rates, at least this.
    RatioAtLeast(f64),
    /// Server CPU per request, at most this many µs.
    CpuAtMost(f64),
    /// A cost, 1 − the ratio (on / off), at most this fraction.
    CostAtMost(f64),
}

/// How the goal is written in the table: `≥ 0.60×`, `≤ 100 µs`, `cost ≤ 5 %`.
impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::RatioAtLeast(ratio) => write!(f, "≥ {ratio:.2}×"),
            Target::CpuAtMost(us) => write!(f, "≤ {us:.0} µs"),
            Target::CostAtMost(cost) => write!(f, "cost ≤ {:.0} %", cost * 100.0),
        }
    }
}

/// A row of the goals table. A ratio goal that is missed says by how much the ratio falls
/// short of it (1 − ratio / goal); a cost goal, how many points the cost is over.
struct Goal {
    scenario: String,
    api: f64,
    floor: Option<f64>,
    /// The ratio judged: API / floor, or a median of per-round ratios.
    ratio: Option<f64>,
    target: Target,
    cpu_us: Option<f64>,
}

impl Goal {
    /// `yes`, or `no` and by how much it is missed; `n/a` without a figure.
    fn verdict(&self) -> String {
        match self.target {
            Target::RatioAtLeast(want) => match self.ratio {
                None => "n/a (floor failed)".into(),
                Some(r) if r >= want => "yes".into(),
                Some(r) => format!("**no**: {:.0} % short", (1.0 - r / want) * 100.0),
            },
            Target::CostAtMost(limit) => match self.ratio {
                None => "n/a".into(),
                Some(r) if 1.0 - r <= limit => format!("yes: costs {:.1} %", (1.0 - r) * 100.0),
                Some(r) => format!(
                    "**no**: costs {:.1} %, {:.1} points over",
                    (1.0 - r) * 100.0,
                    (1.0 - r - limit) * 100.0
                ),
            },
            Target::CpuAtMost(limit) => match self.cpu_us {
                None => "n/a".into(),
                Some(c) if c <= limit => "yes".into(),
                Some(c) => format!("**no**: {:.1}× the limit", c / limit),
            },
        }
    }

    fn row(&self) -> String {
        let or_dash = |v: Option<String>| v.unwrap_or_else(|| "—".into());
        let floor = match (&self.target, self.floor) {
            (Target::CpuAtMost(_), _) => "—".into(),
            (_, Some(f)) => format!("{f:.0}"),
            (_, None) => "failed".into(),
        };
        let ratio = match self.target {
            Target::RatioAtLeast(_) | Target::CostAtMost(_) => {
                or_dash(self.ratio.map(|r| format!("{r:.2}×")))
            }
            Target::CpuAtMost(_) => "—".into(),
        };
        format!(
            "| {} | {:.0} | {floor} | {ratio} | {} | {} | {} |",
            self.scenario,
            self.api,
            self.target,
            self.verdict(),
            or_dash(self.cpu_us.map(|c| format!("{c:.0}"))),
        )
    }
}

/// The three servers of part 3, in the order their figures are kept: rate limits off, on
/// (counted in process), on with Redis.
const LIMITER_CONFIGS: [&str; 3] = ["off", "on", "on+redis"];

/// Part 3's figures: per configuration, each round's req/s and server CPU µs/request.
struct LimiterRounds {
    rps: [Vec<f64>; 3],
    cpu: [Vec<f64>; 3],
    /// Lua scripts Redis ran during the Redis server's measured rounds, and the requests
    /// it answered then.
    redis_scripts: Option<u64>,
    redis_requests: usize,
}

impl LimiterRounds {
    /// The median over the rounds of `config`'s req/s / the off server's.
    fn median_ratio(&self, config: usize) -> f64 {
        median(
            self.rps[config]
                .iter()
                .zip(&self.rps[0])
                .map(|(on, off)| on / off)
                .collect(),
        )
    }
}

/// Part 3: three servers, one per limiter configuration, take the `GET /v1/orders/{id}`
/// load in alternating rounds (see the module doc). Every measured phase is also pushed
/// onto `phases` for the 429 check.
#[allow(clippy::too_many_arguments)]
async fn limiter_rounds(
    client: &reqwest::Client,
    shops: &Arc<Vec<Shop>>,
    orders: &Arc<Vec<Vec<String>>>,
    concurrency: usize,
    duration: Duration,
    rounds: usize,
    pool: usize,
    redis_url: &str,
    read_cache: bool,
    phases: &mut Vec<(String, Stats)>,
) -> anyhow::Result<LimiterRounds> {
    let pool = pool.to_string();
    // An empty REDIS_URL is unset: the first two count in process whatever the bench's
    // own environment says. With Redis, the read cache also keeps its second level there
    // and the invalidation bus runs through it: the server as it would run with Redis.
    let limiter = [
        [("TENANTRY_RATE_LIMITS", "off"), ("REDIS_URL", "")],
        [("TENANTRY_RATE_LIMITS", "on"), ("REDIS_URL", "")],
        [("TENANTRY_RATE_LIMITS", "on"), ("REDIS_URL", redis_url)],
    ];
    let mut servers = Vec::new();
    for pair in &limiter {
        let mut env = pair.to_vec();
        env.push(("DATABASE_MAX_CONNECTIONS", &pool));
        if !read_cache {
            env.push(("TENANTRY_READ_CACHE_TTL", "0s"));
        }
        servers.push(ServerProcess::start(&env).await?);
    }
    for (server, config) in servers.iter().zip(LIMITER_CONFIGS) {
        // One request each, to show the configurations differ: the limiter's policy header
        // is there when it runs.
        let shop = &shops[0];
        let answer = client
            .get(server.url(&format!("/v1/orders/{}", orders[0][0])))
            .bearer_auth(&shop.jwt)
            .send()
            .await?;
        let idle = server.status();
        println!(
            "server limits {config:<8} idle: RSS {:.1} MiB   {} → RateLimit-Policy: {}",
            mib(idle.rss_kib),
            answer.status(),
            answer
                .headers()
                .get("ratelimit-policy")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("(none)")
        );
    }
    println!();
    let load = |which: usize| {
        read_orders(
            client,
            &servers[which].base,
            shops,
            orders,
            concurrency,
            duration,
        )
    };
    for (which, config) in LIMITER_CONFIGS.iter().enumerate() {
        let name = format!("GET /v1/orders/{{id}} {config} warm-up");
        let stats = measured(&servers[which], &name, load(which)).await;
        phases.push((name, stats));
    }
    let mut figures = LimiterRounds {
        rps: Default::default(),
        cpu: Default::default(),
        redis_scripts: Some(0),
        redis_requests: 0,
    };
    for round in 0..rounds {
        for k in 0..3 {
            let which = (round + k) % 3;
            let name = format!(
                "GET /v1/orders/{{id}} {} #{}",
                LIMITER_CONFIGS[which],
                round + 1
            );
            let scripts_before = if which == 2 {
                redis_scripts_run(redis_url)
            } else {
                None
            };
            let stats = measured(&servers[which], &name, load(which)).await;
            if which == 2 {
                let ran = scripts_before
                    .zip(redis_scripts_run(redis_url))
                    .map(|(before, after)| after.saturating_sub(before));
                figures.redis_scripts = figures.redis_scripts.zip(ran).map(|(a, b)| a + b);
                figures.redis_requests += stats.requests + stats.errors;
            }
            figures.rps[which].push(stats.rps());
            figures.cpu[which].push(stats.cpu_per_request_us());
            phases.push((name, stats));
        }
    }
    println!();
    for (server, config) in servers.iter().zip(LIMITER_CONFIGS) {
        let end = server.status();
        println!(
            "server limits {config:<8} after its rounds: RSS {:.1} MiB, peak {:.1} MiB",
            mib(end.rss_kib),
            mib(end.peak_kib)
        );
    }
    Ok(figures)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // Tokens for the whole run: the default 15 minutes may not last a long one.
    let bench = Bench::start_with(&[("ACCESS_TOKEN_TTL", "2h")]).await?;
    let tenants: usize = std::env::var("BENCH_TENANTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4);
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3)
        .max(1);
    let redis_url = std::env::var("REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    // Part 3's servers with the read cache at its default (on), or off.
    let limiter_read_cache = std::env::var("BENCH_LIMITER_READ_CACHE").as_deref() != Ok("off");
    let plan = bench.unthrottled_plan().await?;
    let mut shops = Vec::new();
    for _ in 0..tenants {
        shops.push(shop(&bench, &plan).await?);
    }
    let shops = Arc::new(shops);
    let (concurrency, duration) = (bench.concurrency, bench.duration);
    println!(
        "tenantry orders benchmark: {tenants} tenants on plan {plan} (rate limits 1 000 000/s), login JWTs, {concurrency} concurrent clients, {} s per phase, release build\n",
        duration.as_secs()
    );

    let idle = bench.server.status();
    println!(
        "server idle after seeding: RSS {:.1} MiB (peak so far {:.1} MiB), {} threads\n",
        mib(idle.rss_kib),
        mib(idle.peak_kib),
        idle.threads
    );

    // Every measured phase, for the 429 check at the end.
    let mut phases: Vec<(String, Stats)> = Vec::new();

    // 1. The phases.
    let (client, url, s) = (bench.client.clone(), bench.url("/v1/orders"), shops.clone());
    let create = bench
        .measured(
            "POST /v1/orders (3 lines)",
            hammer(concurrency, duration, move |worker, iteration| {
                let shop = &s[worker % s.len()];
                // Three different products, one of each, moving on with every order.
                let first = worker * 7 + iteration;
                let items: Vec<_> = (0..3)
                    .map(|k| {
                        let product = &shop.products[(first + k) % shop.products.len()];
                        json!({"product_id": product, "quantity": 1})
                    })
                    .collect();
                client
                    .post(&url)
                    .bearer_auth(&shop.jwt)
                    .json(&json!({"customer_id": shop.customer_id, "items": items}))
            }),
        )
        .await;

    // The orders to read: the newest 200 of each tenant (three lines each).
    let mut ids: Vec<Vec<String>> = Vec::new();
    for shop in shops.iter() {
        let newest = newest_orders(&bench.client, &bench.base, &shop.key).await?;
        anyhow::ensure!(
            newest.len() >= 51,
            "a tenant has only {} orders to read",
            newest.len()
        );
        ids.push(newest);
    }
    let ids = Arc::new(ids);
    // The read with the order not cached: a second server, like the first but with the
    // read cache off, started for this phase alone (and stopped after it, so that its pool
    // leaves Postgres's connections to the rest). Its first second is a warm-up: its
    // credential cache fills and its pool opens its connections.
    let uncached_server = ServerProcess::start(&[
        ("DATABASE_MAX_CONNECTIONS", &concurrency.to_string()),
        ("TENANTRY_READ_CACHE_TTL", "0s"),
    ])
    .await?;
    let uncached_idle = uncached_server.status();
    read_orders(
        &bench.client,
        &uncached_server.base,
        &shops,
        &ids,
        concurrency,
        Duration::from_secs(1),
    )
    .await;
    let get = measured(
        &uncached_server,
        "GET /v1/orders/{id} cache off",
        read_orders(
            &bench.client,
            &uncached_server.base,
            &shops,
            &ids,
            concurrency,
            duration,
        ),
    )
    .await;
    let uncached_end = uncached_server.status();
    drop(uncached_server);
    // The same read on the first server, read cache on (its default).
    let get_cached = bench
        .measured(
            "GET /v1/orders/{id} cache on",
            read_orders(
                &bench.client,
                &bench.base,
                &shops,
                &ids,
                concurrency,
                duration,
            ),
        )
        .await;
    let (client, url, s) = (
        bench.client.clone(),
        bench.url("/v1/orders?limit=50"),
        shops.clone(),
    );
    let list = bench
        .measured(
            "GET /v1/orders?limit=50",
            hammer(concurrency, duration, move |worker, _| {
                client.get(&url).bearer_auth(&s[worker % s.len()].jwt)
            }),
        )
        .await;
    let (client, url) = (bench.client.clone(), bench.url("/health/live"));
    let live = bench
        .measured(
            "GET /health/live",
            hammer(concurrency, duration, move |_, _| client.get(&url)),
        )
        .await;
    let end = bench.server.status();
    println!(
        "\nserver after the load: RSS {:.1} MiB, peak {:.1} MiB, {} threads\n",
        mib(end.rss_kib),
        mib(end.peak_kib),
        end.threads
    );

    // 2. The floors: one pgbench per tenant, the same total concurrency, all at once. The
    // reads first, while the newest orders are still those the API read and listed.
    let per_tenant = (concurrency / tenants).max(1);
    let seconds = duration.as_secs();
    let read_floor = pgbench_per_tenant(
        &bench,
        &shops,
        "get_order.sql",
        per_tenant,
        seconds,
        |_, tenant| vec![("oid", ids[tenant][0].clone())],
    );
    let list_floor = pgbench_per_tenant(
        &bench,
        &shops,
        "list_orders.sql",
        per_tenant,
        seconds,
        |_, tenant| vec![("ids", pg_array(&ids[tenant][..51]))],
    );
    let place_floor = pgbench_per_tenant(
        &bench,
        &shops,
        "place_order.sql",
        per_tenant,
        seconds,
        |shop, _| {
            vec![
                ("cid", shop.customer_id.clone()),
                ("products", pg_array(&shop.products)),
            ]
        },
    );
    for (tps, script) in [
        (read_floor, "get_order.sql"),
        (list_floor, "list_orders.sql"),
        (place_floor, "place_order.sql"),
    ] {
        let rate = tps.map_or("failed".into(), |t| format!("{t:>8.0} tx/s"));
        println!(
            "{:<32} {rate}   ({tenants} × {per_tenant} clients)",
            format!("pgbench benches/{script}")
        );
    }
    println!();

    // 3. The rate limiter's cost, on three fresh servers. The first server goes first: its
    // pool's connections would crowd theirs out of Postgres's `max_connections`.
    let mut owner = tenantry::db::owner_connection(&bench.config).await?;
    let max_connections: usize =
        sqlx::query_scalar::<_, String>("select current_setting('max_connections')")
            .fetch_one(&mut owner)
            .await?
            .parse()?;
    drop(owner);
    // Per server: its request pool and its platform pool (4); 10 left for everyone else.
    let pool = concurrency.min(
        (max_connections.saturating_sub(10) / 3)
            .saturating_sub(4)
            .max(2),
    );
    let client = bench.client.clone();
    drop(bench.server);
    println!(
        "rate limiter: three servers, request pools of {pool} (max_connections {max_connections}), read cache {}, {rounds} rounds after a warm-up\n",
        if limiter_read_cache { "on" } else { "off" }
    );
    let limiter = limiter_rounds(
        &client,
        &shops,
        &ids,
        concurrency,
        duration,
        rounds,
        pool,
        &redis_url,
        limiter_read_cache,
        &mut phases,
    )
    .await?;
    println!("\nrate limiter, req/s per round (off / on in process / on with Redis):");
    for round in 0..rounds {
        println!(
            "  #{}  {:>7.0} / {:>7.0} / {:>7.0}   on/off {:.3}, Redis/off {:.3}",
            round + 1,
            limiter.rps[0][round],
            limiter.rps[1][round],
            limiter.rps[2][round],
            limiter.rps[1][round] / limiter.rps[0][round],
            limiter.rps[2][round] / limiter.rps[0][round],
        );
    }
    match limiter.redis_scripts {
        Some(scripts) => println!(
            "  Redis ran {scripts} Lua scripts during the Redis server's rounds, which answered {} requests",
            limiter.redis_requests
        ),
        None => println!("  (redis-cli could not say how many scripts Redis ran)"),
    }

    // The goals table.
    let ratio = |api: &Stats, floor: Option<f64>| floor.map(|f| api.rps() / f);
    let goals = [
        Goal {
            scenario: "`GET /v1/orders/{id}` (JWT, credentials warm, order not cached) vs pgbench `get_order.sql`"
                .into(),
            api: get.rps(),
            floor: read_floor,
            ratio: ratio(&get, read_floor),
            target: Target::RatioAtLeast(0.6),
            cpu_us: Some(get.cpu_per_request_us()),
        },
        Goal {
            scenario: "`GET /v1/orders/{id}` (JWT, order not cached): server CPU per request"
                .into(),
            api: get.rps(),
            floor: None,
            ratio: None,
            target: Target::CpuAtMost(100.0),
            cpu_us: Some(get.cpu_per_request_us()),
        },
        Goal {
            scenario: "`GET /v1/orders?limit=50` (JWT) vs pgbench `list_orders.sql`".into(),
            api: list.rps(),
            floor: list_floor,
            ratio: ratio(&list, list_floor),
            target: Target::RatioAtLeast(0.6),
            cpu_us: Some(list.cpu_per_request_us()),
        },
        Goal {
            scenario: "`POST /v1/orders`, 3 lines (JWT) vs pgbench `place_order.sql`".into(),
            api: create.rps(),
            floor: place_floor,
            ratio: ratio(&create, place_floor),
            target: Target::RatioAtLeast(0.7),
            cpu_us: Some(create.cpu_per_request_us()),
        },
        Goal {
            scenario: "`GET /v1/orders/{id}` (order not cached: read cache off) vs `/health/live`"
                .into(),
            api: get.rps(),
            floor: Some(live.rps()),
            ratio: Some(get.rps() / live.rps()),
            target: Target::RatioAtLeast(0.8),
            cpu_us: Some(get.cpu_per_request_us()),
        },
        Goal {
            scenario: "`GET /v1/orders/{id}` (read cache on, the default) vs `/health/live`"
                .into(),
            api: get_cached.rps(),
            floor: Some(live.rps()),
            ratio: Some(get_cached.rps() / live.rps()),
            target: Target::RatioAtLeast(0.8),
            cpu_us: Some(get_cached.cpu_per_request_us()),
        },
        Goal {
            scenario: format!(
                "rate limits on (in process) vs off, `GET /v1/orders/{{id}}` (read cache {}), median of {rounds}",
                if limiter_read_cache { "on" } else { "off" }
            ),
            api: median(limiter.rps[1].clone()),
            floor: Some(median(limiter.rps[0].clone())),
            ratio: Some(limiter.median_ratio(1)),
            target: Target::CostAtMost(0.05),
            cpu_us: Some(median(limiter.cpu[1].clone())),
        },
        Goal {
            scenario: format!(
                "rate limits on (Redis) vs off, `GET /v1/orders/{{id}}` (read cache {}), median of {rounds}",
                if limiter_read_cache { "on" } else { "off" }
            ),
            api: median(limiter.rps[2].clone()),
            floor: Some(median(limiter.rps[0].clone())),
            ratio: Some(limiter.median_ratio(2)),
            target: Target::CostAtMost(0.10),
            cpu_us: Some(median(limiter.cpu[2].clone())),
        },
    ];
    println!("\n## Goals\n");
    println!("| scenario | API req/s | floor req/s | ratio | goal | met? | server CPU µs/req |");
    println!("| --- | ---: | ---: | ---: | --- | --- | ---: |");
    for goal in &goals {
        println!("{}", goal.row());
    }
    println!(
        "\nfloor req/s: pgbench's transactions per second running the least SQL for the answer (`benches/*.sql`: no credential check; the POST floor writes no audit event and runs no allowance statement, which the server does); for `/health/live` its req/s; for the limiter rows the `off` server's median req/s (its CPU: {:.0} µs/request)",
        median(limiter.cpu[0].clone())
    );
    println!(
        "memory: first server {:.1} MiB idle after seeding, peak {:.1} MiB over its phases; read-cache-off server {:.1} MiB idle, peak {:.1} MiB",
        mib(idle.rss_kib),
        mib(end.peak_kib),
        mib(uncached_idle.rss_kib),
        mib(uncached_end.peak_kib)
    );

    // Nothing may have been refused by a rate limit.
    let mut all = vec![
        ("POST /v1/orders (3 lines)".to_owned(), create),
        ("GET /v1/orders/{id} cache off".to_owned(), get),
        ("GET /v1/orders/{id} cache on".to_owned(), get_cached),
        ("GET /v1/orders?limit=50".to_owned(), list),
        ("GET /health/live".to_owned(), live),
    ];
    all.append(&mut phases);
    let throttled: Vec<_> = all.iter().filter(|(_, s)| s.throttled > 0).collect();
    let failed: usize = all.iter().map(|(_, s)| s.errors).sum();
    if throttled.is_empty() {
        println!(
            "429s: none in any of the {} phases (non-2xx answers or failures, all phases: {failed})",
            all.len()
        );
    } else {
        for (name, stats) in &throttled {
            println!("429s: {} in {name}", stats.throttled);
        }
    }
    anyhow::ensure!(
        throttled.is_empty(),
        "{} phases had 429s: the bench plan's limits were reached",
        throttled.len()
    );
    Ok(())
}
