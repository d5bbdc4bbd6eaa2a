//! Load benchmark: `cargo bench --bench load`.
//!
//! Starts the release binary as a separate process against the local Postgres, then, side
//! by side in one run and with the same client concurrency (each phase with the server's
//! CPU time per request and resident memory):
//! 1. `GET /health/live` (the HTTP stack alone),
//! 2. `GET /v1/me` with a login JWT (credential check + one tenant read: 2 transactions),
//! 3. `GET /v1/me` with an API key,
//! 4. pgbench running the same SQL as (2) as the request role (`benches/load.sql`),
//!
//! and prints requests/s, latency percentiles and the ratios. It also times logins for an
//! unknown user, an unknown tenant and a wrong password, which must cost the same (no user
//! or tenant enumeration); the login throttle is relaxed for that, since 120 failed logins
//! from one client would otherwise be locked out. Settings: see `support::Bench`.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{Bench, hammer, pgbench};

async fn time_login(bench: &Bench, tenant: &str, email: &str) -> Duration {
    let start = Instant::now();
    let response = bench
        .client
        .post(bench.url("/v1/auth/login"))
        .json(&json!({"tenant": tenant, "email": email, "password": "definitely the wrong one"}))
        .send()
        .await
        .expect("login answers");
    assert_eq!(response.status(), 401);
    start.elapsed()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bench = Bench::start_with(&[
        ("LOGIN_CLIENT_FREE_FAILURES", "1000000"),
        ("LOGIN_ACCOUNT_FREE_FAILURES", "1000000"),
    ])
    .await?;
    let (created, jwt) = bench.tenant("bench").await?;
    let key = bench
        .post(
            "/v1/api-keys",
            &jwt,
            json!({"name": "bench", "scopes": ["tenant:read"]}),
        )
        .await?;
    let api_key = key["key"].as_str().expect("api key").to_owned();
    let claims: Value = {
        use base64::Engine;
        let payload = jwt.split('.').nth(1).expect("jwt payload");
        serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload)?)?
    };
    let (concurrency, duration) = (bench.concurrency, bench.duration);
    println!(
        "tenantry load benchmark: {concurrency} concurrent clients, {} s per phase, release build\n",
        duration.as_secs()
    );

    let idle = bench.server.status();
    println!(
        "server idle: RSS {:.1} MiB, {} threads\n",
        idle.rss_kib as f64 / 1024.0,
        idle.threads
    );
    let (client, url) = (bench.client.clone(), bench.url("/health/live"));
    let live = bench
        .measured(
            "GET /health/live",
            hammer(concurrency, duration, move |_, _| client.get(&url)),
        )
        .await;
    let (client, url, bearer) = (bench.client.clone(), bench.url("/v1/me"), jwt.clone());
    let me_jwt = bench
        .measured(
            "GET /v1/me (JWT)",
            hammer(concurrency, duration, move |_, _| {
                client.get(&url).bearer_auth(&bearer)
            }),
        )
        .await;
    let (client, url, key) = (bench.client.clone(), bench.url("/v1/me"), api_key.clone());
    let me_key = bench
        .measured(
            "GET /v1/me (API key)",
            hammer(concurrency, duration, move |_, _| {
                client.get(&url).header("x-api-key", &key)
            }),
        )
        .await;
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
        ("jti", claims["jti"].as_str().unwrap_or_default().to_owned()),
    ];
    let pg = pgbench(
        &bench.config,
        "load.sql",
        &vars,
        concurrency,
        duration.as_secs(),
    );
    if let Some(tps) = pg {
        println!(
            "{:<32} {tps:>8.0} req/s   (same SQL as GET /v1/me with a JWT)",
            "pgbench benches/load.sql"
        );
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
    let slug = created["tenant"]["slug"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let owner = created["owner"]["email"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let logins = 40;
    let (mut unknown, mut no_tenant, mut wrong) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for _ in 0..logins {
        unknown += time_login(&bench, &slug, "nobody@nowhere.test").await;
        no_tenant += time_login(&bench, "no-such-tenant-anywhere", &owner).await;
        wrong += time_login(&bench, &slug, &owner).await;
    }
    let (unknown, no_tenant, wrong) = (unknown / logins, no_tenant / logins, wrong / logins);
    println!("\nlogin, mean of {logins} alternating sequential attempts each");
    println!("  unknown user     {:>7.2} ms", unknown.as_secs_f64() * 1e3);
    println!(
        "  unknown tenant   {:>7.2} ms",
        no_tenant.as_secs_f64() * 1e3
    );
    println!("  wrong password   {:>7.2} ms", wrong.as_secs_f64() * 1e3);
    println!(
        "  ratio unknown user / wrong password   {:.2}",
        unknown.as_secs_f64() / wrong.as_secs_f64()
    );
    println!(
        "  ratio unknown tenant / unknown user   {:.2}",
        no_tenant.as_secs_f64() / unknown.as_secs_f64()
    );
    Ok(())
}
