//! Load benchmark: `cargo bench --bench load`.
//!
//! Starts the real server in-process against the local Postgres, then, side by side in one
//! run and with the same client concurrency:
//! 1. `GET /health/live` (the HTTP stack alone),
//! 2. `GET /v1/me` with a login JWT (credential check + one tenant read: 2 transactions),
//! 3. `GET /v1/me` with an API key,
//! 4. pgbench running the same SQL as (2) as the request role (`benches/load.sql`), when
//!    pgbench is installed,
//!
//! and prints requests/s, p50 and p99 latency, and the ratios. It also times logins for an
//! unknown user and for a wrong password, which must cost the same (no user enumeration).
//!
//! Environment: `BENCH_SECONDS` (per phase, default 5), `BENCH_CONCURRENCY` (default 32),
//! `DATABASE_URL` (default the local `tenantry_bench` database).

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tenantry::{config::Config, startup::Application};

const PASSWORD: &str = "correct horse battery staple";

struct Stats {
    requests: usize,
    errors: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
}

impl Stats {
    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    fn percentile(&self, p: f64) -> Duration {
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(index).copied().unwrap_or_default()
    }

    fn print(&self, name: &str) {
        println!(
            "{name:<28} {:>9.0} req/s   p50 {:>7.2} ms   p99 {:>7.2} ms   errors {}",
            self.rps(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.errors
        );
    }
}

async fn hammer(
    client: &reqwest::Client,
    url: &str,
    header: Option<(&str, &str)>,
    concurrency: usize,
    duration: Duration,
) -> Stats {
    let deadline = Instant::now() + duration;
    let start = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|_| {
            let (client, url) = (client.clone(), url.to_owned());
            let header = header.map(|(k, v)| (k.to_owned(), v.to_owned()));
            tokio::spawn(async move {
                let (mut latencies, mut errors) = (Vec::new(), 0);
                while Instant::now() < deadline {
                    let mut request = client.get(&url);
                    if let Some((k, v)) = &header {
                        request = request.header(k, v);
                    }
                    let began = Instant::now();
                    match request.send().await {
                        Ok(r) if r.status().is_success() => {
                            let _ = r.bytes().await;
                            latencies.push(began.elapsed());
                        }
                        _ => errors += 1,
                    }
                }
                (latencies, errors)
            })
        })
        .collect();
    let mut stats = Stats {
        requests: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    for task in tasks {
        let (latencies, errors) = task.await.expect("load task");
        stats.errors += errors;
        stats.latencies.extend(latencies);
    }
    stats.elapsed = start.elapsed();
    stats.requests = stats.latencies.len();
    stats.latencies.sort();
    stats
}

/// Runs pgbench with `benches/load.sql`; returns transactions (= API requests) per second.
fn pgbench(
    config: &Config,
    vars: &[(&str, String)],
    concurrency: usize,
    seconds: u64,
) -> Option<f64> {
    let options = tenantry::db::connect_options(config).ok()?;
    let mut command = std::process::Command::new("pgbench");
    command
        .args([
            "-n",
            "-M",
            "prepared",
            "-f",
            concat!(env!("CARGO_MANIFEST_DIR"), "/benches/load.sql"),
        ])
        .args([
            "-c",
            &concurrency.to_string(),
            "-j",
            "2",
            "-T",
            &seconds.to_string(),
        ])
        .args([
            "-h",
            options.get_host(),
            "-p",
            &options.get_port().to_string(),
            "-U",
            tenantry::db::APP_ROLE,
        ])
        .env("PGPASSWORD", tenantry::config::DEV_DB_ROLE_PASSWORD);
    for (name, value) in vars {
        command.args(["-D", &format!("{name}={value}")]);
    }
    command.arg(options.get_database().unwrap_or("tenantry"));
    let output = command.output().ok()?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        eprintln!(
            "pgbench failed: {}",
            stderr
                .lines()
                .find(|l| l.contains("ERROR"))
                .unwrap_or_default()
        );
        return None;
    }
    let text = String::from_utf8_lossy(&output.stdout);
    let tps_line = text.lines().find(|l| l.starts_with("tps = "))?;
    tps_line
        .trim_start_matches("tps = ")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

async fn time_login(client: &reqwest::Client, base: &str, tenant: &str, email: &str) -> Duration {
    let start = Instant::now();
    let response = client
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"tenant": tenant, "email": email, "password": "definitely the wrong one"}))
        .send()
        .await
        .expect("login answers");
    assert_eq!(response.status(), 401);
    start.elapsed()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let concurrency: usize = std::env::var("BENCH_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(32);
    let database_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/tenantry_bench".into());
    let config = Config::from_lookup(|name| match name {
        "DATABASE_URL" => Some(database_url.clone()),
        "TENANTRY_LISTEN" => Some("127.0.0.1:0".into()),
        "DATABASE_MAX_CONNECTIONS" => Some(concurrency.to_string()),
        _ => None,
    })?;
    let app = Application::build(&config).await?;
    let base = format!("http://{}", app.local_addr());
    tokio::spawn(app.run_until(std::future::pending()));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()?;

    // Arrange: a tenant, a logged-in owner, an API key.
    let slug = format!("bench-{}", &uuid::Uuid::new_v4().simple().to_string()[..10]);
    let owner_email = format!("owner@{slug}.test");
    let operator = tenantry::config::DEV_OPERATOR_TOKEN;
    let created: Value = client
        .post(format!("{base}/v1/platform/tenants"))
        .bearer_auth(operator)
        .json(&json!({"slug": slug, "name": "Bench", "owner_email": owner_email, "owner_password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let tokens: Value = client
        .post(format!("{base}/v1/auth/login"))
        .json(&json!({"tenant": slug, "email": owner_email, "password": PASSWORD}))
        .send()
        .await?
        .json()
        .await?;
    let jwt = tokens["access_token"]
        .as_str()
        .expect("access token")
        .to_owned();
    let key: Value = client
        .post(format!("{base}/v1/api-keys"))
        .bearer_auth(&jwt)
        .json(&json!({"name": "bench", "scopes": ["tenant:read"]}))
        .send()
        .await?
        .json()
        .await?;
    let api_key = key["key"].as_str().expect("api key").to_owned();
    let claims: Value = {
        use base64::Engine;
        let payload = jwt.split('.').nth(1).expect("jwt payload");
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?
    };

    println!(
        "tenantry load benchmark: {concurrency} concurrent clients, {seconds} s per phase, release build\n"
    );
    let duration = Duration::from_secs(seconds);
    let bearer = format!("Bearer {jwt}");
    let live = hammer(
        &client,
        &format!("{base}/health/live"),
        None,
        concurrency,
        duration,
    )
    .await;
    live.print("GET /health/live");
    let me_jwt = hammer(
        &client,
        &format!("{base}/v1/me"),
        Some(("authorization", &bearer)),
        concurrency,
        duration,
    )
    .await;
    me_jwt.print("GET /v1/me (JWT)");
    let me_key = hammer(
        &client,
        &format!("{base}/v1/me"),
        Some(("x-api-key", &api_key)),
        concurrency,
        duration,
    )
    .await;
    me_key.print("GET /v1/me (API key)");
    let vars = [
        (
            "tid",
            created["tenant"]["id"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
        ),
        ("sid", claims["sid"].as_str().unwrap_or_default().to_owned()),
        ("uid", claims["sub"].as_str().unwrap_or_default().to_owned()),
    ];
    let pg = pgbench(&config, &vars, concurrency, seconds);
    match pg {
        Some(tps) => println!(
            "{:<28} {tps:>9.0} req/s   (same SQL as GET /v1/me with a JWT)",
            "pgbench benches/load.sql"
        ),
        None => println!("pgbench not available or failed: skipped"),
    }

    println!("\nratios");
    println!(
        "  /v1/me (JWT) / /health/live     {:.2}",
        me_jwt.rps() / live.rps()
    );
    println!(
        "  /v1/me (API key) / /health/live {:.2}",
        me_key.rps() / live.rps()
    );
    if let Some(tps) = pg {
        println!(
            "  /v1/me (JWT) / pgbench          {:.2}",
            me_jwt.rps() / tps
        );
    }

    // Alternate the two kinds so that neither gets a warmer machine.
    let logins = 40;
    let (mut unknown, mut wrong) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..logins {
        unknown += time_login(&client, &base, &slug, "nobody@nowhere.test").await;
        wrong += time_login(&client, &base, &slug, &owner_email).await;
    }
    let (unknown, wrong) = (unknown / logins, wrong / logins);
    println!("\nlogin, mean of {logins} alternating sequential attempts each");
    println!("  unknown user     {:>7.2} ms", unknown.as_secs_f64() * 1e3);
    println!("  wrong password   {:>7.2} ms", wrong.as_secs_f64() * 1e3);
    println!(
        "  ratio            {:.2}",
        unknown.as_secs_f64() / wrong.as_secs_f64()
    );
    Ok(())
}
