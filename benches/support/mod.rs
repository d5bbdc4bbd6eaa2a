//! What the benchmarks share: the release binary serving as a separate process on the
//! local Postgres (so that what `/proc` says about memory and CPU is the server's alone), a
//! closed-loop load generator with latency percentiles, and pgbench as the baseline.
#![allow(dead_code)]

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::{Value, json};
use tenantry::config::Config;

pub const PASSWORD: &str = "correct horse battery staple";

/// A running server and the load settings (`BENCH_SECONDS`, `BENCH_CONCURRENCY`,
/// `DATABASE_URL`, default the local `tenantry_bench` database).
pub struct Bench {
    pub base: String,
    pub client: reqwest::Client,
    /// The server's configuration as the bench sees it (pgbench connects with it).
    pub config: Config,
    pub concurrency: usize,
    pub duration: Duration,
    pub server: ServerProcess,
}

impl Bench {
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// Starts the server with `overrides` on top of the bench configuration.
    pub async fn start_with(overrides: &[(&str, &str)]) -> anyhow::Result<Self> {
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
        let pool = concurrency.to_string();
        let mut env = vec![("DATABASE_MAX_CONNECTIONS", pool.as_str())];
        env.extend_from_slice(overrides);
        let config = Config::from_lookup(|name| match name {
            "DATABASE_URL" => Some(database_url.clone()),
            _ => env
                .iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned()),
        })?;
        let server = ServerProcess::start(&env).await?;
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(concurrency)
            .build()?;
        Ok(Self {
            base: server.base.clone(),
            client,
            config,
            concurrency,
            duration: Duration::from_secs(seconds),
            server,
        })
    }

    /// Runs `phase` against this bench's server (see [`measured`]).
    pub async fn measured(&self, name: &str, phase: impl Future<Output = Stats>) -> Stats {
        measured(&self.server, name, phase).await
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Creates a tenant; returns its created JSON and the owner's access token.
    pub async fn tenant(&self, prefix: &str) -> anyhow::Result<(Value, String)> {
        tenant_at(&self.client, &self.base, prefix).await
    }

    /// Creates a tenant on `plan`; returns its created JSON and the owner's access token.
    pub async fn tenant_on(&self, prefix: &str, plan: &str) -> anyhow::Result<(Value, String)> {
        tenant_on_plan_at(&self.client, &self.base, prefix, plan).await
    }

    /// Creates a plan whose rate limits no bench reaches (see [`unthrottled_plan_at`]).
    pub async fn unthrottled_plan(&self) -> anyhow::Result<String> {
        unthrottled_plan_at(&self.client, &self.base).await
    }

    /// POSTs JSON with a bearer credential and returns the JSON answer.
    pub async fn post(&self, path: &str, bearer: &str, body: Value) -> anyhow::Result<Value> {
        Ok(self
            .client
            .post(self.url(path))
            .bearer_auth(bearer)
            .json(&body)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?)
    }
}

/// Runs `phase`, then prints `server`'s resources over it: resident memory after it and
/// its peak so far, and CPU time per request (also kept in [`Stats::server_cpu`]).
pub async fn measured(
    server: &ServerProcess,
    name: &str,
    phase: impl Future<Output = Stats>,
) -> Stats {
    let cpu = server.cpu_time();
    let mut stats = phase.await;
    stats.server_cpu = server.cpu_time().saturating_sub(cpu);
    stats.print(name);
    let status = server.status();
    println!(
        "{:<32} server CPU {:>6.0} µs/request   RSS {:>6.1} MiB (peak {:.1} MiB)",
        "",
        stats.cpu_per_request_us(),
        status.rss_kib as f64 / 1024.0,
        status.peak_kib as f64 / 1024.0,
    );
    stats
}

/// The ids of the newest orders (up to 200) the API key `key` sees, through `base`.
pub async fn newest_orders(
    client: &reqwest::Client,
    base: &str,
    key: &str,
) -> anyhow::Result<Vec<String>> {
    let page: Value = client
        .get(format!("{base}/v1/orders?limit=200"))
        .header("x-api-key", key)
        .send()
        .await?
        .json()
        .await?;
    Ok(page["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|o| o["id"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default())
}

pub struct Stats {
    /// Answered with a 2xx.
    pub requests: usize,
    /// Anything else: a non-2xx status (429s included) or no answer.
    pub errors: usize,
    /// Of the errors, those answered 429 (a rate limit refused them).
    pub throttled: usize,
    pub elapsed: Duration,
    pub latencies: Vec<Duration>,
    /// The server's CPU time (user + system) over the phase, when [`measured`] ran it.
    pub server_cpu: Duration,
}

impl Stats {
    pub fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }

    /// The server's CPU time per answered request, µs (0 unless [`measured`] ran it).
    pub fn cpu_per_request_us(&self) -> f64 {
        self.server_cpu.as_secs_f64() * 1e6 / self.requests.max(1) as f64
    }

    pub fn percentile(&self, p: f64) -> Duration {
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(index).copied().unwrap_or_default()
    }

    pub fn print(&self, name: &str) {
        println!(
            "{name:<32} {:>8.0} req/s   p50 {:>7.2} ms   p90 {:>7.2} ms   p99 {:>7.2} ms   errors {} (429: {})",
            self.rps(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.90).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.errors,
            self.throttled
        );
    }
}

/// Closed-loop load: `concurrency` workers send `request(worker, iteration)` back to back
/// for `duration`; a 2xx counts, anything else is an error (and a 429 is also counted as
/// throttled).
pub async fn hammer<F>(concurrency: usize, duration: Duration, request: F) -> Stats
where
    F: Fn(usize, usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    hammer_checked(concurrency, duration, request, |_| true).await
}

/// [`hammer`], where a 2xx counts only if `answer_ok` says its body is a success too (a
/// GraphQL answer is a 200 whether or not it carries `errors`); any other is an error.
pub async fn hammer_checked<F>(
    concurrency: usize,
    duration: Duration,
    request: F,
    answer_ok: fn(&[u8]) -> bool,
) -> Stats
where
    F: Fn(usize, usize) -> reqwest::RequestBuilder + Send + Sync + 'static,
{
    let request = Arc::new(request);
    let deadline = Instant::now() + duration;
    let start = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let request = request.clone();
            tokio::spawn(async move {
                let (mut latencies, mut errors, mut throttled) = (Vec::new(), 0, 0);
                let mut iteration = 0;
                while Instant::now() < deadline {
                    let began = Instant::now();
                    match request(worker, iteration).send().await {
                        Ok(r) if r.status().is_success() => match r.bytes().await {
                            Ok(body) if answer_ok(&body) => latencies.push(began.elapsed()),
                            _ => errors += 1,
                        },
                        Ok(r) => {
                            if r.status() == reqwest::StatusCode::TOO_MANY_REQUESTS {
                                throttled += 1;
                            }
                            let _ = r.bytes().await;
                            errors += 1;
                        }
                        Err(_) => errors += 1,
                    }
                    iteration += 1;
                }
                (latencies, errors, throttled)
            })
        })
        .collect();
    let mut stats = Stats {
        requests: 0,
        errors: 0,
        throttled: 0,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
        server_cpu: Duration::ZERO,
    };
    for worker in workers {
        let (latencies, errors, throttled) = worker.await.expect("load worker");
        stats.errors += errors;
        stats.throttled += throttled;
        stats.latencies.extend(latencies);
    }
    stats.elapsed = start.elapsed();
    stats.requests = stats.latencies.len();
    stats.latencies.sort();
    stats
}

/// Runs pgbench (prepared statements, as the request role) with a script from `benches/`;
/// returns transactions per second, or `None` (with the reason on stderr) when it fails.
pub fn pgbench(
    config: &Config,
    script: &str,
    vars: &[(&str, String)],
    clients: usize,
    seconds: u64,
) -> Option<f64> {
    let options = tenantry::db::connect_options(config).ok()?;
    let script = format!("{}/benches/{script}", env!("CARGO_MANIFEST_DIR"));
    let mut command = std::process::Command::new("pgbench");
    command
        .args(["-n", "-M", "prepared", "-f", &script])
        .args([
            "-c",
            &clients.to_string(),
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
            &tenantry::db::Roles::from_config(config).ok()?.app,
        ])
        .env("PGPASSWORD", tenantry::config::DEV_DB_ROLE_PASSWORD);
    for (name, value) in vars {
        command.args(["-D", &format!("{name}={value}")]);
    }
    // Options before the database name: pgbench stops parsing options at the first operand.
    command.arg(options.get_database().unwrap_or("tenantry"));
    let output = match command.output() {
        Ok(output) => output,
        Err(error) => {
            eprintln!("pgbench could not run: {error}");
            return None;
        }
    };
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
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .lines()
        .find(|l| l.starts_with("tps = "))?
        .trim_start_matches("tps = ")
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// The real binary (`target/release/tenantry serve`) as a separate process on a free port,
/// so that what `/proc` says about it is the server's alone. Killed when dropped.
pub struct ServerProcess {
    pub base: String,
    pub client: reqwest::Client,
    child: std::process::Child,
    log_file: std::path::PathBuf,
}

/// What `/proc/<pid>/status` says about a process's memory and threads.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcStatus {
    /// Resident memory now, KiB (`VmRSS`).
    pub rss_kib: u64,
    /// The most it was ever resident, KiB (`VmHWM`).
    pub peak_kib: u64,
    pub threads: u64,
}

impl ServerProcess {
    /// Starts the server against the bench database (`DATABASE_URL`, default the local
    /// `tenantry_bench`) with `env` on top of the defaults, and waits until it is ready.
    pub async fn start(env: &[(&str, &str)]) -> anyhow::Result<Self> {
        let database_url = std::env::var("DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/tenantry_bench".into());
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let log_file = std::env::temp_dir().join(format!(
            "tenantry-bench-{}.log",
            uuid::Uuid::new_v4().simple()
        ));
        let log = std::fs::File::create(&log_file)?;
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_tenantry"));
        command
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("TENANTRY_LISTEN", format!("127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdout(log.try_clone()?)
            .stderr(log);
        for (name, value) in env {
            command.env(name, value);
        }
        let child = command.spawn()?;
        let server = Self {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            child,
            log_file,
        };
        for _ in 0..300 {
            let ready = server
                .client
                .get(server.url("/health/ready"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if ready {
                return Ok(server);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!(
            "the server did not become ready; its log: {}",
            std::fs::read_to_string(&server.log_file).unwrap_or_default()
        )
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Memory and threads now.
    pub fn status(&self) -> ProcStatus {
        proc_status(self.pid())
    }

    /// CPU time the server has used so far (user + system), from `/proc/<pid>/stat`.
    pub fn cpu_time(&self) -> Duration {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the command name (which is in parentheses and may hold spaces):
        // state is the first, utime the 12th and stime the 13th.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .map(|(_, rest)| rest.split_whitespace().collect())
            .unwrap_or_default();
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Duration::from_secs_f64((ticks(11) + ticks(12)) as f64 / clock_ticks_per_second())
    }

    /// Creates a tenant; returns its created JSON and the owner's access token.
    pub async fn tenant(&self, prefix: &str) -> anyhow::Result<(Value, String)> {
        tenant_at(&self.client, &self.base, prefix).await
    }

    /// What the server has written to its output so far (its log).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// Sends `signal` (`-KILL`, `-TERM`) and waits for the process to end.
    pub fn stop_with(&mut self, signal: &str) -> anyhow::Result<()> {
        std::process::Command::new("kill")
            .args([signal, &self.pid().to_string()])
            .status()?;
        self.child.wait()?;
        Ok(())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log_file);
    }
}

/// What `/proc/<pid>/status` says now (zeros for a process that is gone).
pub fn proc_status(pid: u32) -> ProcStatus {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    ProcStatus {
        rss_kib: field("VmRSS:"),
        peak_kib: field("VmHWM:"),
        threads: field("Threads:"),
    }
}

/// `getconf CLK_TCK` (the unit of `/proc/<pid>/stat`'s times), 100 when it cannot say.
fn clock_ticks_per_second() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// Creates a tenant through the operator API of the server at `base`, logs its owner in,
/// and returns the created JSON and the owner's access token. On a plan of its own with no
/// limit and rates no bench reaches ([`unthrottled_plan_at`]): the benches place more
/// orders than a smaller plan's monthly allowance, and at more requests a second than
/// even enterprise's rate.
pub async fn tenant_at(
    client: &reqwest::Client,
    base: &str,
    prefix: &str,
) -> anyhow::Result<(Value, String)> {
    let plan = unthrottled_plan_at(client, base).await?;
    tenant_on_plan_at(client, base, prefix, &plan).await
}

/// Creates a plan through the operator API of the server at `base` with no limit at all
/// but rate limits (`requests_per_second`, `request_burst`) of a million, which no bench
/// on one machine reaches: the limiter still runs for every request (as it does for any
/// plan with a rate), it just never refuses. Returns the plan's name (`team-bench-…`).
pub async fn unthrottled_plan_at(client: &reqwest::Client, base: &str) -> anyhow::Result<String> {
    let name = format!(
        "team-bench-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let response = client
        .post(format!("{base}/v1/platform/plans"))
        .bearer_auth(tenantry::config::DEV_OPERATOR_TOKEN)
        .json(&json!({
            "name": name,
            "display_name": "Bench",
            "limits": {
                "users": null, "api_keys": null, "products": null, "orders_per_month": null,
                "api_calls_per_month": null, "requests_per_second": 1_000_000,
                "request_burst": 1_000_000, "realtime_connections": null, "webhook_endpoints": null,
            },
        }))
        .send()
        .await?;
    let status = response.status();
    anyhow::ensure!(
        status.is_success(),
        "creating plan {name}: {status} {}",
        response.text().await.unwrap_or_default()
    );
    Ok(name)
}

/// [`tenant_at`] on `plan`.
pub async fn tenant_on_plan_at(
    client: &reqwest::Client,
    base: &str,
    prefix: &str,
    plan: &str,
) -> anyhow::Result<(Value, String)> {
    let slug = format!(
        "{prefix}-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..10]
    );
    let owner_email = format!("owner@{slug}.test");
    let created: Value = client
        .post(format!("{base}/v1/platform/tenants"))
        .bearer_auth(tenantry::config::DEV_OPERATOR_TOKEN)
        .json(&json!({"slug": slug, "name": "Bench", "plan": plan, "owner_email": owner_email, "owner_password": PASSWORD}))
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
        .ok_or_else(|| anyhow::anyhow!("login failed: {tokens}"))?
        .to_owned();
    Ok((created, jwt))
}
