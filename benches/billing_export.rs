//! Billing export benchmark: `cargo bench --bench billing_export`.
//!
//! For 1,000 and then 10,000 tenants (`BENCH_EXPORT_TENANTS`, comma-separated), each in a
//! scratch database of its own, generates a month of usage — ten billing lines per tenant:
//! API calls, orders, order value in five currencies, active users, realtime minutes and
//! webhook deliveries, each counted over `BENCH_HOURS` (24) hourly rows — and times the
//! release binary doing what an operator does at the month's end:
//! `billing export --format csv` of the open period, `billing close`, and the export of
//! the closed period. Printed: wall time and the command's peak resident memory for each,
//! which should stay flat as the tenants grow tenfold (the lines are streamed).

mod support;

use std::time::{Duration, Instant};

use sqlx::{Connection, PgConnection};

const CURRENCIES: [&str; 5] = ["EUR", "USD", "GBP", "JPY", "CHF"];

/// Runs `tenantry <args>` against `database_url`; returns its wall time and peak RSS (KiB),
/// sampled from `/proc` while it runs.
async fn timed(database_url: &str, args: &[&str]) -> anyhow::Result<(Duration, u64)> {
    let started = Instant::now();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_tenantry"))
        .args(args)
        .env("DATABASE_URL", database_url)
        .env("TENANTRY_CLOCK", "2026-12-01T00:10:00Z")
        .env("RUST_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .spawn()?;
    let pid = child.id().unwrap_or_default();
    let mut peak = 0;
    loop {
        peak = peak.max(support::proc_status(pid).peak_kib);
        if let Some(status) = child.try_wait()? {
            anyhow::ensure!(status.success(), "tenantry {args:?} failed");
            return Ok((started.elapsed(), peak));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A fresh database with `tenants` tenants and a month of their usage.
async fn generate(server: &str, name: &str, tenants: i64, hours: i64) -> anyhow::Result<String> {
    let mut maintenance = PgConnection::connect(&format!("{server}/postgres")).await?;
    sqlx::query(&format!("drop database if exists {name} with (force)"))
        .execute(&mut maintenance)
        .await?;
    let url = format!("{server}/{name}");
    timed(&url, &["migrate"]).await?;
    let mut owner = PgConnection::connect(&url).await?;
    sqlx::query(
        "insert into tenants (id, slug, name, plan)
         select gen_random_uuid(), 'bench-' || g, 'Bench tenant ' || g,
                (array['free', 'pro', 'enterprise'])[1 + g % 3]
         from generate_series(1, $1) g",
    )
    .bind(tenants)
    .execute(&mut owner)
    .await?;
    sqlx::query(
        "insert into usage_counters (tenant_id, metric, dimensions, hour, period, quantity)
         select t.id, m.metric, m.dimensions, '2026-11-02'::timestamptz + h * interval '1 hour',
                '2026-11-01', 1 + (random() * 1000)::bigint
         from tenants t
         cross join (values ('api_calls', '{\"credential\": \"api_key:bench\", \"route_group\": \"orders\", \"status_class\": \"2xx\"}'::jsonb),
                            ('orders_placed', '{}'::jsonb),
                            ('realtime_connection_minutes', '{}'::jsonb),
                            ('webhook_deliveries', '{}'::jsonb)
                     union all
                     select 'order_value', jsonb_build_object('currency', c)
                     from unnest($1::text[]) c) as m (metric, dimensions)
         cross join generate_series(0, $2 - 1) h
         where t.slug like 'bench-%'",
    )
    .bind(CURRENCIES)
    .bind(hours)
    .execute(&mut owner)
    .await?;
    sqlx::query(
        "insert into usage_active_users (tenant_id, hour, user_id, period)
         select t.id, '2026-11-02'::timestamptz + h * interval '1 hour', gen_random_uuid(), '2026-11-01'
         from tenants t cross join generate_series(0, $1 - 1) h
         where t.slug like 'bench-%'",
    )
    .bind(hours)
    .execute(&mut owner)
    .await?;
    sqlx::query("analyze").execute(&mut owner).await?;
    Ok(url)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let server = std::env::var("BENCH_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into());
    let sizes: Vec<i64> = std::env::var("BENCH_EXPORT_TENANTS")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let hours: i64 = std::env::var("BENCH_HOURS")
        .ok()
        .and_then(|h| h.parse().ok())
        .unwrap_or(24);
    println!(
        "tenantry billing export benchmark: 10 lines per tenant, {hours} hourly rows per line, release build\n"
    );
    for tenants in sizes {
        let name = format!("tenantry_billing_bench_{tenants}");
        let url = generate(&server, &name, tenants, hours).await?;
        let out = std::env::temp_dir().join(format!("{name}.csv"));
        let out = out.to_str().unwrap_or_default();
        let export = [
            "billing", "export", "--period", "2026-11", "--format", "csv", "--out", out,
        ];
        let (open, open_peak) = timed(&url, &export).await?;
        let lines = std::fs::read_to_string(out)?.lines().count() - 1;
        let (close, close_peak) = timed(&url, &["billing", "close", "--period", "2026-11"]).await?;
        let (closed, closed_peak) = timed(&url, &export).await?;
        let _ = std::fs::remove_file(out);
        println!("{tenants:>6} tenants, {lines:>7} lines");
        for (what, time, peak) in [
            ("export, open period", open, open_peak),
            ("close", close, close_peak),
            ("export, closed period", closed, closed_peak),
        ] {
            println!(
                "    {what:<24} {:>7.2} s   peak RSS {:>6.1} MiB",
                time.as_secs_f64(),
                peak as f64 / 1024.0
            );
        }
        let mut maintenance = PgConnection::connect(&format!("{server}/postgres")).await?;
        for statement in [
            format!("drop database if exists {name} with (force)"),
            format!("drop role if exists {name}_app"),
            format!("drop role if exists {name}_platform"),
        ] {
            sqlx::query(&statement).execute(&mut maintenance).await?;
        }
    }
    Ok(())
}
