//! Audit chaining benchmark: `cargo bench --bench audit`.
//!
//! Audited writes for one tenant — `POST /v1/customers`, each a row and its audit event in
//! one transaction — from `BENCH_CONCURRENCY` (32) clients, side by side in one run:
//! 1. with the sealer chaining the audit log every second (the default), then how long after
//!    the load stopped the last event was sealed;
//! 2. with sealing off in that server (`TENANTRY_AUDIT_SEAL_INTERVAL=0s`), the chain's cost
//!    taken away.
//!
//! Writers never wait for the chain, so the two should be alike; the figure to watch is
//! the sealing lag (how long an event stays unsealed under load). The backlog phase 2
//! leaves unsealed is chained by the next server that seals. Settings: see `support::Bench`.

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sqlx::PgConnection;
use support::{Bench, Stats, hammer};

/// Audit events not chained yet: every tenant's, or one tenant's (as the database owner,
/// which the bench database's owner, `postgres`, reads across tenants).
async fn unsealed(owner: &mut PgConnection, tenant: Option<&str>) -> anyhow::Result<i64> {
    Ok(sqlx::query_scalar(
        "select count(*) from audit_events e
         where ($1::uuid is null or e.tenant_id = $1::uuid)
           and not exists (select from audit_chain c where c.tenant_id = e.tenant_id and c.event_id = e.id)",
    )
    .bind(tenant)
    .fetch_one(owner)
    .await?)
}

/// Loads `bench` with audited writes for one new tenant; returns the load's figures, the
/// tenant's id and the owner's token.
async fn audited_writes(bench: &Bench, name: &str) -> anyhow::Result<(Stats, String, String)> {
    let (created, token) = bench.tenant("audit").await?;
    let tenant = created["tenant"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (client, url, bearer) = (
        bench.client.clone(),
        bench.url("/v1/customers"),
        token.clone(),
    );
    let run = uuid::Uuid::now_v7().simple().to_string();
    let stats = bench
        .measured(
            name,
            hammer(bench.concurrency, bench.duration, move |worker, n| {
                client.post(&url).bearer_auth(&bearer).json(
                    &json!({"email": format!("c{worker}-{n}-{run}@bench.test"), "name": "Bench"}),
                )
            }),
        )
        .await;
    Ok((stats, tenant, token))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    println!("tenantry audit benchmark: audited writes (POST /v1/customers) for one tenant\n");

    let with_chain = Bench::start_with(&[("TENANTRY_AUDIT_SEAL_INTERVAL", "1s")]).await?;
    // Earlier runs may have left events unsealed (phase 2 does): let the sealer catch up
    // first, so that phase 1 measures this load's sealing only.
    let mut owner = tenantry::db::owner_connection(&with_chain.config).await?;
    while unsealed(&mut owner, None).await? > 0 {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (chained, tenant, token) =
        audited_writes(&with_chain, "with the chain (sealing every 1 s)").await?;
    let stopped = Instant::now();
    let behind = unsealed(&mut owner, Some(&tenant)).await?;
    while unsealed(&mut owner, Some(&tenant)).await? > 0 {
        anyhow::ensure!(
            stopped.elapsed() < Duration::from_secs(120),
            "sealing fell behind"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let lag = stopped.elapsed();
    let verification: Value = with_chain
        .client
        .get(with_chain.url("/v1/audit-events/verify"))
        .bearer_auth(&token)
        .send()
        .await?
        .json()
        .await?;
    anyhow::ensure!(
        verification["verified"] == true,
        "the chain holds: {verification}"
    );
    println!(
        "{:<32} {behind} events unsealed when the load stopped; the last sealed {:.2} s later; {} sealed events verified",
        "",
        lag.as_secs_f64(),
        verification["sealed"]
    );
    drop(with_chain);

    let without_chain = Bench::start_with(&[("TENANTRY_AUDIT_SEAL_INTERVAL", "0s")]).await?;
    let (unchained, ..) = audited_writes(&without_chain, "without the chain (sealing off)").await?;
    drop(without_chain);

    println!(
        "\naudited writes/s with the chain / without: {:.0} / {:.0} = {:.2}",
        chained.rps(),
        unchained.rps(),
        chained.rps() / unchained.rps()
    );
    Ok(())
}
