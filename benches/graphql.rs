//! GraphQL vs REST benchmark: `cargo bench --bench graphql`.
//!
//! One tenant (on a plan made for the bench, whose rate limits — a million requests a
//! second, and so a GraphQL budget of 60 million points a minute — no load here reaches:
//! the limiter runs for every request and every operation, it never refuses) with
//! `BENCH_CUSTOMERS` customers (10), `BENCH_PRODUCTS` products (50) and `BENCH_ORDERS`
//! orders (240) of one to three lines, placed through the API. Every request carries the
//! owner's login JWT. The same answer two ways:
//!
//! - **REST** `GET /v1/orders?limit=50&expand=customer,items.product`;
//! - **GraphQL** `POST /graphql` with
//!   `{ orders(first: 50) { edges { node { items { product { name } } customer { name } } } } }`
//!   (a GraphQL answer is a 200 even with `errors`: one that has any counts as an error);
//! - **the floor**: pgbench running the least SQL that gives the answer, as the request
//!   role (`benches/list_orders_expanded.sql`: one statement joining the newest 51
//!   summaries with their lines, products and customers, in a read-only tenant transaction).
//!
//! 1. **Statements per request.** A server of its own logs every SQL statement with the
//!    request it belongs to, as `tests/api/orders/statements.rs` does (`LOG_FORMAT=json`,
//!    `RUST_LOG=sqlx::query=debug,tenantry::http::middleware=info,warn`, one request
//!    connection so that sqlx's once-per-connection type lookups fall outside the counted
//!    requests). After one warm-up request each (the credential then comes from the
//!    server's cache, as under load), one REST and one GraphQL request with an
//!    `X-Request-Id` of their own; the statements counted are the log's `sqlx::query`
//!    events inside that request's span (the GraphQL loaders' too: they run in it).
//! 2. **The load.** Two servers like any other (the release binary, each a process of its
//!    own, so that `/proc/<pid>` is that transport's alone), one taking the REST load and
//!    one the GraphQL load, at `BENCH_CONCURRENCY` (32) for `BENCH_SECONDS` (10) a phase:
//!    a one-second warm-up of each, then `BENCH_ROUNDS` (2) rounds alternating which goes
//!    first (REST, GraphQL, GraphQL, REST, …) so that a drift over the run falls on both.
//!    Per phase: req/s, latency percentiles, errors, server CPU per request (utime + stime
//!    from `/proc/<pid>/stat` over the phase), resident memory.
//! 3. **The floor.** With both servers stopped, pgbench at the same concurrency.
//!
//! Then a markdown table: each transport's req/s (all its rounds pooled), p50 / p99, server
//! CPU per request, resident memory idle (after its first requests) and peak (`VmHWM`),
//! statements per request and the answer's size, beside the floor; and the ratio
//! GraphQL / REST (goal ≥ 0.8) per round and pooled. `BENCH_RATE_LIMITS=off` runs the
//! servers with `TENANTRY_RATE_LIMITS=off` instead (no limiter, no GraphQL budget).

mod support;

use std::{sync::LazyLock, time::Duration};

use serde_json::{Value, json};
use support::{Bench, ServerProcess, Stats, hammer_checked, measured, pgbench};

/// The REST request.
const REST_PATH: &str = "/v1/orders?limit=50&expand=customer,items.product";
/// The GraphQL operation: the selection of the goal, `orders(first: 50) { items { product {
/// name } } customer { name } }`, on the connection's `nodes` (as GitHub's API has them);
/// `BENCH_GRAPHQL=edges` asks through `edges { node }` instead (an `Edge` object and a
/// cursor per order more).
static QUERY: LazyLock<&'static str> = LazyLock::new(|| {
    match std::env::var("BENCH_GRAPHQL").as_deref() {
        Ok("edges") => {
            "{ orders(first: 50) { edges { node { items { product { name } } customer { name } } } } }"
        }
        _ => "{ orders(first: 50) { nodes { items { product { name } } customer { name } } } }",
    }
});
/// The body that carries [`QUERY`].
static GRAPHQL_BODY: LazyLock<String> = LazyLock::new(|| json!({ "query": *QUERY }).to_string());
/// The floor's script.
const FLOOR_SQL: &str = "list_orders_expanded.sql";
/// The goal: GraphQL's rate at least this fraction of REST's.
const GOAL: f64 = 0.8;

/// The two transports, in the order their figures are kept.
const KINDS: [&str; 2] = ["REST", "GraphQL"];
const REST: usize = 0;
const GRAPHQL: usize = 1;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

/// A GraphQL answer without `errors` (async-graphql leaves the key out when there are none).
/// The first answer with errors is printed (to stderr), once.
fn graphql_ok(body: &[u8]) -> bool {
    static SHOWN: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let ok = !body.windows(9).any(|w| w == b"\"errors\":");
    if !ok && !SHOWN.swap(true, std::sync::atomic::Ordering::Relaxed) {
        let text = String::from_utf8_lossy(body);
        let at = text.find("\"errors\":").unwrap_or(0);
        eprintln!(
            "first GraphQL answer with errors: …{}",
            text[at..].chars().take(600).collect::<String>()
        );
    }
    ok
}

/// The seeded tenant.
struct Shop {
    tenant_id: String,
    jwt: String,
}

/// A tenant on `plan` with `customers` customers, `products` products and `orders` orders
/// of one to three lines (different products), placed through the API eight at a time.
async fn seed(
    bench: &Bench,
    plan: &str,
    customers: usize,
    products: usize,
    orders: usize,
) -> anyhow::Result<Shop> {
    let (created, jwt) = bench.tenant_on("graphql-bench", plan).await?;
    let id = |v: &Value| v["id"].as_str().unwrap_or_default().to_owned();
    let mut customer_ids = Vec::new();
    for n in 1..=customers {
        let customer = bench
            .post(
                "/v1/customers",
                &jwt,
                json!({"email": format!("buyer{n}@bench.test"), "name": format!("Customer {n}")}),
            )
            .await?;
        customer_ids.push(id(&customer));
    }
    let mut product_ids = Vec::new();
    for n in 1..=products {
        let product = bench
            .post("/v1/products", &jwt, json!({"sku": format!("P{n}"), "name": format!("Product {n}"), "price_cents": 1000 + n * 10, "currency": "EUR", "stock": 100_000_000}))
            .await?;
        product_ids.push(id(&product));
    }
    for chunk in (0..orders).collect::<Vec<_>>().chunks(8) {
        let placed = futures::future::join_all(chunk.iter().map(|&k| {
            let lines = 1 + k % 3;
            let items: Vec<_> = (0..lines)
                .map(|j| {
                    let product = &product_ids[(k * 7 + j * 13) % product_ids.len()];
                    json!({"product_id": product, "quantity": 1 + (k + j) % 2})
                })
                .collect();
            let customer = &customer_ids[k % customer_ids.len()];
            bench.post(
                "/v1/orders",
                &jwt,
                json!({"customer_id": customer, "items": items}),
            )
        }))
        .await;
        for order in placed {
            order?;
        }
    }
    Ok(Shop {
        tenant_id: created["tenant"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        jwt,
    })
}

/// The request of transport `kind` to the server at `base`.
fn request(
    client: &reqwest::Client,
    base: &str,
    jwt: &str,
    kind: usize,
) -> reqwest::RequestBuilder {
    match kind {
        REST => client.get(format!("{base}{REST_PATH}")).bearer_auth(jwt),
        _ => client
            .post(format!("{base}/graphql"))
            .bearer_auth(jwt)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(GRAPHQL_BODY.as_str()),
    }
}

/// The closed-loop load of transport `kind` on `server`.
fn load(
    client: &reqwest::Client,
    server: &ServerProcess,
    jwt: &str,
    kind: usize,
    concurrency: usize,
    duration: Duration,
) -> impl std::future::Future<Output = Stats> + use<> {
    let (client, base, jwt) = (client.clone(), server.base.clone(), jwt.to_owned());
    let ok: fn(&[u8]) -> bool = if kind == GRAPHQL {
        graphql_ok
    } else {
        |_: &[u8]| true
    };
    hammer_checked(
        concurrency,
        duration,
        move |_, _| request(&client, &base, &jwt, kind),
        ok,
    )
}

/// One answer of each transport, checked to be the same orders with the same customers
/// and products (the GraphQL query here also asks for the ids); the benched answers' sizes.
async fn check_answers(
    client: &reqwest::Client,
    server: &ServerProcess,
    jwt: &str,
) -> anyhow::Result<[usize; 2]> {
    let rest: Value = request(client, &server.base, jwt, REST)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    let rest_orders = rest["items"].as_array().cloned().unwrap_or_default();
    anyhow::ensure!(
        rest_orders.len() == 50,
        "REST listed {} orders",
        rest_orders.len()
    );
    let shape = |id: &Value, customer: &Value, products: Vec<&Value>| {
        format!("{id} {customer} {products:?}")
    };
    let rest_shapes: Vec<String> = rest_orders
        .iter()
        .map(|o| {
            let products = o["items"]
                .as_array()
                .map(|items| items.iter().map(|i| &i["product"]["name"]).collect())
                .unwrap_or_default();
            shape(&o["id"], &o["customer"]["name"], products)
        })
        .collect();
    let with_ids = "{ orders(first: 50) { edges { node { id items { product { name } } customer { name } } } } }";
    let graphql: Value = client
        .post(server.url("/graphql"))
        .bearer_auth(jwt)
        .json(&json!({ "query": with_ids }))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    anyhow::ensure!(graphql.get("errors").is_none(), "GraphQL errors: {graphql}");
    let graphql_shapes: Vec<String> = graphql["data"]["orders"]["edges"]
        .as_array()
        .map(|edges| {
            edges
                .iter()
                .map(|e| {
                    let node = &e["node"];
                    let products = node["items"]
                        .as_array()
                        .map(|items| items.iter().map(|i| &i["product"]["name"]).collect())
                        .unwrap_or_default();
                    shape(&node["id"], &node["customer"]["name"], products)
                })
                .collect()
        })
        .unwrap_or_default();
    anyhow::ensure!(
        rest_shapes == graphql_shapes,
        "REST and GraphQL answer differently:\nREST {rest_shapes:#?}\nGraphQL {graphql_shapes:#?}"
    );
    let mut sizes = [0; 2];
    for kind in [REST, GRAPHQL] {
        let body = request(client, &server.base, jwt, kind)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        anyhow::ensure!(
            graphql_ok(&body),
            "{} answered with errors: {}",
            KINDS[kind],
            String::from_utf8_lossy(&body)
        );
        sizes[kind] = body.len();
    }
    Ok(sizes)
}

/// Part 1: the SQL statements one request of each transport sends, in order (see the
/// module doc). `env` is the load servers' own settings.
async fn statements_per_request(
    client: &reqwest::Client,
    jwt: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<[Vec<String>; 2]> {
    let mut all = vec![
        ("LOG_FORMAT", "json"),
        (
            "RUST_LOG",
            "sqlx::query=debug,tenantry::http::middleware=info,warn",
        ),
        ("DATABASE_MAX_CONNECTIONS", "1"),
    ];
    all.extend_from_slice(env);
    let mut server = ServerProcess::start(&all).await?;
    let run = uuid::Uuid::now_v7().simple().to_string();
    let mut ids = Vec::new();
    for kind in [REST, GRAPHQL] {
        // The warm-up: the credential is checked (and cached) here, not in the counted one.
        request(client, &server.base, jwt, kind)
            .send()
            .await?
            .error_for_status()?;
        let id = format!("graphql-bench-{}-{run}", KINDS[kind].to_lowercase());
        let body = request(client, &server.base, jwt, kind)
            .header("x-request-id", &id)
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        anyhow::ensure!(graphql_ok(&body), "{} answered with errors", KINDS[kind]);
        ids.push(id);
    }
    // SIGTERM, so that the log is written out in full before it is read.
    server.stop_with("-TERM")?;
    let lines: Vec<Value> = server
        .log()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let of_request = |id: &str| -> Vec<String> {
        lines
            .iter()
            .filter(|line| {
                line["span"]["client_request_id"] == id
                    || line["spans"]
                        .as_array()
                        .is_some_and(|spans| spans.iter().any(|s| s["client_request_id"] == id))
            })
            .filter(|l| l["target"] == "sqlx::query")
            .filter_map(|l| {
                // `summary` is truncated; short statements have only a summary.
                l["db.statement"]
                    .as_str()
                    .filter(|s| !s.trim().is_empty())
                    .or(l["summary"].as_str())
                    .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" "))
            })
            .collect()
    };
    let counted = [of_request(&ids[REST]), of_request(&ids[GRAPHQL])];
    anyhow::ensure!(
        counted
            .iter()
            .all(|s| s.iter().any(|s| s.contains("order_summaries"))),
        "the statement log does not carry the requests' statements: {counted:#?}"
    );
    Ok(counted)
}

/// The phases of one transport pooled: requests, time, latencies and server CPU summed.
fn pooled(phases: &[Stats]) -> Stats {
    let mut latencies: Vec<Duration> = phases
        .iter()
        .flat_map(|s| s.latencies.iter().copied())
        .collect();
    latencies.sort();
    Stats {
        requests: phases.iter().map(|s| s.requests).sum(),
        errors: phases.iter().map(|s| s.errors).sum(),
        throttled: phases.iter().map(|s| s.throttled).sum(),
        elapsed: phases.iter().map(|s| s.elapsed).sum(),
        latencies,
        server_cpu: phases.iter().map(|s| s.server_cpu).sum(),
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let limits = if std::env::var("BENCH_RATE_LIMITS").as_deref() == Ok("off") {
        "off"
    } else {
        "on"
    };
    let server_env = [("ACCESS_TOKEN_TTL", "2h"), ("TENANTRY_RATE_LIMITS", limits)];
    let bench = Bench::start_with(&server_env).await?;
    let customers = env_or("BENCH_CUSTOMERS", 10usize).max(1);
    let products = env_or("BENCH_PRODUCTS", 50usize).max(3);
    let orders = env_or("BENCH_ORDERS", 240usize).max(51);
    let rounds = env_or("BENCH_ROUNDS", 2usize).max(1);
    // Unlike the other benches, 10 s a phase unless `BENCH_SECONDS` says otherwise.
    let duration = Duration::from_secs(env_or("BENCH_SECONDS", 10));
    let concurrency = bench.concurrency;
    let plan = bench.unthrottled_plan().await?;
    let seeding = std::time::Instant::now();
    let shop = seed(&bench, &plan, customers, products, orders).await?;
    println!(
        "tenantry GraphQL benchmark: one tenant on plan {plan} (rate limits {limits}; 1 000 000/s), {customers} customers, {products} products, {orders} orders of 1-3 lines (seeded in {:.1} s), login JWT, {concurrency} concurrent clients, {} s per phase, {rounds} rounds, release build",
        seeding.elapsed().as_secs_f64(),
        duration.as_secs()
    );
    println!("GraphQL: {}", *QUERY);
    println!("load average at the start: {}\n", load_average());
    let Bench {
        client,
        config,
        server: seeding_server,
        ..
    } = bench;
    let sizes = check_answers(&client, &seeding_server, &shop.jwt).await?;
    drop(seeding_server);

    // 1. Statements per request.
    let statements = statements_per_request(&client, &shop.jwt, &server_env).await?;
    for kind in [REST, GRAPHQL] {
        println!(
            "{} sends {} statements (credential warm):",
            KINDS[kind],
            statements[kind].len()
        );
        for statement in &statements[kind] {
            let short: String = statement.chars().take(110).collect();
            println!(
                "    {short}{}",
                if short.len() < statement.len() {
                    "…"
                } else {
                    ""
                }
            );
        }
    }
    println!();

    // 2. The load: one server per transport.
    let pool = concurrency.to_string();
    let mut env = server_env.to_vec();
    env.push(("DATABASE_MAX_CONNECTIONS", &pool));
    let servers = [
        ServerProcess::start(&env).await?,
        ServerProcess::start(&env).await?,
    ];
    let mut idle = Vec::new();
    for kind in [REST, GRAPHQL] {
        // The first requests: the credential cached, the schema's first use.
        for _ in 0..3 {
            request(&client, &servers[kind].base, &shop.jwt, kind)
                .send()
                .await?
                .error_for_status()?;
        }
        let status = servers[kind].status();
        println!(
            "{:<8} server idle: RSS {:.1} MiB (peak so far {:.1} MiB), {} threads",
            KINDS[kind],
            mib(status.rss_kib),
            mib(status.peak_kib),
            status.threads
        );
        idle.push(status);
    }
    println!();
    let run = |kind: usize, seconds: Duration| {
        load(
            &client,
            &servers[kind],
            &shop.jwt,
            kind,
            concurrency,
            seconds,
        )
    };
    for kind in [REST, GRAPHQL] {
        let name = format!("{} warm-up (1 s)", KINDS[kind]);
        measured(&servers[kind], &name, run(kind, Duration::from_secs(1))).await;
    }
    let mut phases: [Vec<Stats>; 2] = Default::default();
    for round in 0..rounds {
        let order = if round % 2 == 0 {
            [REST, GRAPHQL]
        } else {
            [GRAPHQL, REST]
        };
        for kind in order {
            let name = format!("{} #{} (load {})", KINDS[kind], round + 1, load_average());
            let stats = measured(&servers[kind], &name, run(kind, duration)).await;
            phases[kind].push(stats);
        }
    }
    let peak = [servers[REST].status(), servers[GRAPHQL].status()];
    drop(servers);
    println!("\nload average after the API phases: {}\n", load_average());

    // 3. The floor.
    let floor = pgbench(
        &config,
        FLOOR_SQL,
        &[("tid", shop.tenant_id.clone())],
        concurrency,
        duration.as_secs(),
    );
    println!(
        "pgbench benches/{FLOOR_SQL}: {} ({concurrency} clients, load {})\n",
        floor.map_or("failed".into(), |t| format!("{t:.0} tx/s")),
        load_average()
    );

    // The figures.
    let all = [pooled(&phases[REST]), pooled(&phases[GRAPHQL])];
    let per_round: Vec<f64> = phases[GRAPHQL]
        .iter()
        .zip(&phases[REST])
        .map(|(g, r)| g.rps() / r.rps())
        .collect();
    let ratio = all[GRAPHQL].rps() / all[REST].rps();
    let of_floor = |kind: usize| {
        floor.map_or("—".into(), |f| {
            format!("{:.2}× the floor", all[kind].rps() / f)
        })
    };
    let rounds_rps = |kind: usize| {
        phases[kind]
            .iter()
            .map(|s| format!("{:.0}", s.rps()))
            .collect::<Vec<_>>()
            .join(" / ")
    };
    println!("## GraphQL vs REST\n");
    println!(
        "| {concurrency} clients, {} s × {rounds} rounds each | REST `GET {REST_PATH}` | GraphQL `POST /graphql` | pgbench floor (`{FLOOR_SQL}`) |",
        duration.as_secs()
    );
    println!("| --- | ---: | ---: | ---: |");
    println!(
        "| requests/s (pooled over the rounds) | {:.0} | {:.0} | {} |",
        all[REST].rps(),
        all[GRAPHQL].rps(),
        floor.map_or("failed".into(), |f| format!("{f:.0}"))
    );
    println!(
        "| requests/s per round | {} | {} | |",
        rounds_rps(REST),
        rounds_rps(GRAPHQL)
    );
    println!(
        "| of the floor | {} | {} | 1 |",
        of_floor(REST),
        of_floor(GRAPHQL)
    );
    println!(
        "| latency p50 / p99 | {:.2} / {:.2} ms | {:.2} / {:.2} ms | |",
        ms(all[REST].percentile(0.5)),
        ms(all[REST].percentile(0.99)),
        ms(all[GRAPHQL].percentile(0.5)),
        ms(all[GRAPHQL].percentile(0.99)),
    );
    println!(
        "| server CPU / answered request | {:.0} µs | {:.0} µs | |",
        all[REST].cpu_per_request_us(),
        all[GRAPHQL].cpu_per_request_us()
    );
    let per_attempt =
        |s: &Stats| s.server_cpu.as_secs_f64() * 1e6 / (s.requests + s.errors).max(1) as f64;
    println!(
        "| server CPU / request sent (answered or refused) | {:.0} µs | {:.0} µs | |",
        per_attempt(&all[REST]),
        per_attempt(&all[GRAPHQL])
    );
    println!(
        "| server RSS idle → peak (`VmHWM`) | {:.1} → {:.1} MiB | {:.1} → {:.1} MiB | |",
        mib(idle[REST].rss_kib),
        mib(peak[REST].peak_kib),
        mib(idle[GRAPHQL].rss_kib),
        mib(peak[GRAPHQL].peak_kib)
    );
    println!(
        "| SQL statements / request (credential warm) | {} | {} | 1 (+ `begin`, `set_config`, `commit`) |",
        statements[REST].len(),
        statements[GRAPHQL].len()
    );
    println!(
        "| answer size | {:.1} KiB | {:.1} KiB | |",
        sizes[REST] as f64 / 1024.0,
        sizes[GRAPHQL] as f64 / 1024.0
    );
    println!(
        "| errors (non-2xx, GraphQL `errors`) | {} | {} | |",
        all[REST].errors, all[GRAPHQL].errors
    );
    println!(
        "\nGraphQL / REST: **{ratio:.2}×** pooled (per round: {}); goal ≥ {GOAL:.2}×: {}",
        per_round
            .iter()
            .map(|r| format!("{r:.2}"))
            .collect::<Vec<_>>()
            .join(", "),
        if ratio >= GOAL {
            "met".to_owned()
        } else {
            format!("**not met**, {:.0} % short", (1.0 - ratio / GOAL) * 100.0)
        }
    );
    println!("load average at the end: {}", load_average());
    if all.iter().any(|s| s.errors > 0) {
        // Not a failure of the bench: on a busy machine the database admission limit
        // (src/db/admission.rs) comes down as transactions slow, and refuses at once (503,
        // or a GraphQL `service_unavailable` error). Only answered requests are counted.
        println!(
            "errors: {} REST, {} GraphQL — refusals when the database admission limit came down (the first GraphQL one is on stderr); req/s counts answered requests only",
            all[REST].errors, all[GRAPHQL].errors
        );
    }
    anyhow::ensure!(
        all.iter().all(|s| s.throttled == 0),
        "429s: the bench plan's rate limits were reached"
    );
    Ok(())
}
