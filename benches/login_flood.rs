//! Login flood benchmark: `cargo bench --bench login_flood`.
//!
//! Runs the release binary (`target/release/tenantry serve`) as a separate process, on a
//! free port against the bench database, so that what `/proc` says about memory and CPU is
//! the server's alone. Twice, each with a fresh server: with the default login throttle,
//! and with throttling relaxed by configuration — every flood request comes from
//! 127.0.0.1, which the per-client throttle soon turns into cheap 429s, so the second run
//! is the one that measures the bound on argon2 itself. Each run:
//! 1. idle resident memory (`VmRSS`);
//! 2. another tenant's `GET /v1/me` latency alone: one client, back to back, on its own
//!    thread and runtime so the flood's client tasks cannot delay it (p50, p99);
//! 3. the same while `BENCH_FLOOD_CLIENTS` (200) clients send failed logins, each with
//!    another email, for `BENCH_FLOOD_SECONDS` (15), their answers counted by status;
//!
//! and prints resident memory (idle, peak `VmHWM`, after), threads, `/v1/me` p50/p99 alone
//! and under the flood with their ratio, and the server's CPU time during the flood.
//! `BENCH_SECONDS` (5) is the length of the quiet `/v1/me` phase; `DATABASE_URL` the bench
//! database (default the local `tenantry_bench`). The load client shares the machine's
//! cores with the server and Postgres.

mod support;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use serde_json::json;
use support::{ProcStatus, ServerProcess, proc_status};

const MIB: f64 = 1024.0;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Latencies of `GET /v1/me`, sorted, and how many requests failed.
struct Probe {
    latencies: Vec<Duration>,
    errors: usize,
}

impl Probe {
    fn percentile(&self, p: f64) -> Duration {
        let index = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies.get(index).copied().unwrap_or_default()
    }
}

/// One client sending `GET /v1/me` back to back for `duration`, on a thread and runtime of
/// its own.
fn probe(url: String, jwt: String, duration: Duration) -> std::thread::JoinHandle<Probe> {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the probe");
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            let deadline = Instant::now() + duration;
            let (mut latencies, mut errors) = (Vec::new(), 0);
            while Instant::now() < deadline {
                let began = Instant::now();
                match client.get(&url).bearer_auth(&jwt).send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        latencies.push(began.elapsed());
                    }
                    _ => errors += 1,
                }
            }
            latencies.sort();
            Probe { latencies, errors }
        })
    })
}

/// `clients` workers sending failed logins (each with another email) for `duration`;
/// returns the answers by status (0: no answer).
async fn flood(
    server: &ServerProcess,
    tenant: &str,
    clients: usize,
    duration: Duration,
) -> BTreeMap<u16, usize> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(clients)
        .build()
        .expect("a client");
    let (url, tenant) = (
        Arc::new(server.url("/v1/auth/login")),
        Arc::new(tenant.to_owned()),
    );
    let deadline = Instant::now() + duration;
    let workers: Vec<_> = (0..clients)
        .map(|worker| {
            let (client, url, tenant) = (client.clone(), url.clone(), tenant.clone());
            tokio::spawn(async move {
                let mut statuses = BTreeMap::<u16, usize>::new();
                let mut attempt = 0;
                while Instant::now() < deadline {
                    let body = json!({
                        "tenant": *tenant,
                        "email": format!("flood-{worker}-{attempt}@{tenant}.test"),
                        "password": "not the password, flooding",
                    });
                    let status = match client.post(url.as_str()).json(&body).send().await {
                        Ok(response) => {
                            let status = response.status().as_u16();
                            let _ = response.bytes().await;
                            status
                        }
                        Err(_) => 0,
                    };
                    *statuses.entry(status).or_default() += 1;
                    attempt += 1;
                }
                statuses
            })
        })
        .collect();
    let mut statuses = BTreeMap::new();
    for worker in workers {
        for (status, n) in worker.await.expect("a flood worker") {
            *statuses.entry(status).or_default() += n;
        }
    }
    statuses
}

struct Run {
    name: &'static str,
    idle: ProcStatus,
    after: ProcStatus,
    max_rss_kib: u64,
    max_threads: u64,
    alone: Probe,
    flooded: Probe,
    statuses: BTreeMap<u16, usize>,
    cpu: Duration,
    wall: Duration,
}

async fn run(name: &'static str, env: &[(&str, &str)]) -> anyhow::Result<Run> {
    let quiet = Duration::from_secs(env_or("BENCH_SECONDS", 5));
    let flood_for = Duration::from_secs(env_or("BENCH_FLOOD_SECONDS", 15));
    let clients = env_or("BENCH_FLOOD_CLIENTS", 200);
    let server = ServerProcess::start(env).await?;
    let (target, _) = server.tenant("flooded").await?;
    let target = target["tenant"]["slug"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (_, bystander_jwt) = server.tenant("bystander").await?;
    let me = server.url("/v1/me");
    // Settle after start-up and set-up before measuring the idle server.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle = server.status();

    let alone = probe(me.clone(), bystander_jwt.clone(), quiet)
        .join()
        .expect("the quiet probe");

    let cpu_before = server.cpu_time();
    let began = Instant::now();
    let flooded = probe(me, bystander_jwt, flood_for);
    let sampler = {
        let pid = server.pid();
        let deadline = Instant::now() + flood_for;
        tokio::spawn(async move {
            let (mut max_rss, mut max_threads) = (0, 0);
            while Instant::now() < deadline {
                let status = proc_status(pid);
                max_rss = max_rss.max(status.rss_kib);
                max_threads = max_threads.max(status.threads);
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            (max_rss, max_threads)
        })
    };
    let statuses = flood(&server, &target, clients, flood_for).await;
    let wall = began.elapsed();
    let cpu = server.cpu_time().saturating_sub(cpu_before);
    let flooded = flooded.join().expect("the flooded probe");
    let (max_rss_kib, max_threads) = sampler.await?;
    let after = server.status();
    Ok(Run {
        name,
        idle,
        after,
        max_rss_kib,
        max_threads,
        alone,
        flooded,
        statuses,
        cpu,
        wall,
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print(run: &Run) {
    let clients: usize = env_or("BENCH_FLOOD_CLIENTS", 200);
    println!("\n{}", run.name);
    println!(
        "  resident memory    idle {:.1} MiB, peak (VmHWM) {:.1} MiB, most during the flood {:.1} MiB, after {:.1} MiB",
        run.idle.rss_kib as f64 / MIB,
        run.after.peak_kib as f64 / MIB,
        run.max_rss_kib as f64 / MIB,
        run.after.rss_kib as f64 / MIB,
    );
    println!(
        "  threads            idle {}, most during the flood {}",
        run.idle.threads, run.max_threads
    );
    println!(
        "  GET /v1/me alone   p50 {:.2} ms  p99 {:.2} ms  ({} requests, {} errors)",
        ms(run.alone.percentile(0.5)),
        ms(run.alone.percentile(0.99)),
        run.alone.latencies.len(),
        run.alone.errors
    );
    println!(
        "  GET /v1/me flooded p50 {:.2} ms  p99 {:.2} ms  ({} requests, {} errors)",
        ms(run.flooded.percentile(0.5)),
        ms(run.flooded.percentile(0.99)),
        run.flooded.latencies.len(),
        run.flooded.errors
    );
    println!(
        "  ratio flooded/alone p50 {:.2}  p99 {:.2}",
        ms(run.flooded.percentile(0.5)) / ms(run.alone.percentile(0.5)),
        ms(run.flooded.percentile(0.99)) / ms(run.alone.percentile(0.99)),
    );
    let total: usize = run.statuses.values().sum();
    let by_status: Vec<String> = run
        .statuses
        .iter()
        .map(|(status, n)| match status {
            0 => format!("no answer: {n}"),
            s => format!("{s}: {n}"),
        })
        .collect();
    println!(
        "  flood              {clients} clients, {total} logins in {:.1} s ({:.0}/s): {}",
        run.wall.as_secs_f64(),
        total as f64 / run.wall.as_secs_f64(),
        by_status.join(", ")
    );
    println!(
        "  server CPU         {:.1} s in {:.1} s of flood ({:.2} cores)",
        run.cpu.as_secs_f64(),
        run.wall.as_secs_f64(),
        run.cpu.as_secs_f64() / run.wall.as_secs_f64()
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!(
        "tenantry login flood benchmark: release binary as a separate process, {} CPUs",
        std::thread::available_parallelism().map_or(1, usize::from)
    );
    let default = run("run 1: default login throttle", &[]).await?;
    print(&default);
    let relaxed = run(
        "run 2: throttling relaxed (LOGIN_CLIENT_FREE_FAILURES and LOGIN_ACCOUNT_FREE_FAILURES = 4294967295): the hashing bound alone",
        &[
            ("LOGIN_CLIENT_FREE_FAILURES", "4294967295"),
            ("LOGIN_ACCOUNT_FREE_FAILURES", "4294967295"),
        ],
    )
    .await?;
    print(&relaxed);
    Ok(())
}
