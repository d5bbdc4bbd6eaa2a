//! Graceful recovery: with Postgres restarted, and then stopped for 10 s, under load, the
//! service answers 503 with `Retry-After` (never a 500) and fails fast during the outage,
//! `/health/ready` says not ready, it recovers by itself within seconds of Postgres
//! returning, and every order acknowledged with 201 is in the database exactly once.
//!
//! The test runs against a throwaway cluster of its own ([`ThrowawayCluster`]), never the
//! shared Postgres, and removes it at the end — also when it fails.

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::{
    cluster::ThrowawayCluster,
    helpers::{TestApp, expect_json, id, order_request, spawn_app_with},
};

/// Concurrent clients placing orders.
const CLIENTS: usize = 6;
/// How long a client waits before retrying a 503 — more eagerly than `Retry-After` asks,
/// to keep the load on through the outage.
const RETRY_PAUSE: Duration = Duration::from_millis(100);
/// How often the readiness poller asks.
const READINESS_PERIOD: Duration = Duration::from_millis(100);
/// How long Postgres stays stopped.
const OUTAGE: Duration = Duration::from_secs(10);
/// A 503 during the outage must come well within the pools' 5 s acquire timeout.
const FAIL_FAST: Duration = Duration::from_secs(1);
/// After Postgres is back, orders and readiness must succeed within this.
const RECOVERY_LIMIT: Duration = Duration::from_secs(5);

/// Runs a blocking cluster operation off the async threads.
async fn blocking(cluster: &Arc<ThrowawayCluster>, operation: fn(&ThrowawayCluster)) {
    let cluster = Arc::clone(cluster);
    tokio::task::spawn_blocking(move || operation(&cluster))
        .await
        .expect("the cluster operation finishes");
}

// ---------------------------------------------------------------------------------------
// What the clients saw
// ---------------------------------------------------------------------------------------

/// One answer (or failure to answer), timed from the start of the test.
#[derive(Debug, Clone)]
struct Answer {
    started: Duration,
    took: Duration,
    /// `None` when no HTTP answer came at all.
    status: Option<StatusCode>,
    retry_after: bool,
}

#[derive(Default)]
struct Observed {
    orders: Vec<Answer>,
    readiness: Vec<Answer>,
    /// Idempotency key → the order id each 201 for it named.
    acknowledged: HashMap<String, Vec<String>>,
    /// Bodies of answers other than 201 and 503, for the failure message.
    unexpected: Vec<String>,
}

impl Observed {
    /// When the first request started at or after `since` succeeded (201 for orders, 200
    /// for readiness), as an offset from `since`.
    fn first_success_after(&self, since: Duration) -> (Option<Duration>, Option<Duration>) {
        let first = |answers: &[Answer], ok: StatusCode| {
            answers
                .iter()
                .filter(|a| a.started >= since && a.status == Some(ok))
                .map(|a| a.started + a.took - since)
                .min()
        };
        (
            first(&self.orders, StatusCode::CREATED),
            first(&self.readiness, StatusCode::OK),
        )
    }
}

/// Places orders one after another, each under a new `Idempotency-Key`, retrying a 503
/// with the same key until it is acknowledged, as a careful client does. Stops (after
/// finishing its current order) once `stop` is set.
async fn place_orders(
    app: Arc<TestApp>,
    token: String,
    body: Value,
    client: usize,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    observed: Arc<Mutex<Observed>>,
) {
    for sequence in 0.. {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let key = format!("recovery-{client}-{sequence}");
        loop {
            let started = epoch.elapsed();
            let sent = app
                .client
                .post(app.url("/v1/orders"))
                .bearer_auth(&token)
                .header("idempotency-key", &key)
                .json(&body)
                .send()
                .await;
            let (status, retry_after, text) = match sent {
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response.headers().contains_key("retry-after");
                    (
                        Some(status),
                        retry_after,
                        response.text().await.unwrap_or_default(),
                    )
                }
                Err(error) => (None, false, error.to_string()),
            };
            let answer = Answer {
                started,
                took: epoch.elapsed() - started,
                status,
                retry_after,
            };
            let finished = {
                let mut seen = observed.lock().unwrap();
                seen.orders.push(answer);
                match status {
                    Some(StatusCode::CREATED) => {
                        let order: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
                        seen.acknowledged
                            .entry(key.clone())
                            .or_default()
                            .push(order["id"].as_str().unwrap_or_default().to_owned());
                        true
                    }
                    Some(StatusCode::SERVICE_UNAVAILABLE) => false,
                    // Anything else is a failure of the test; the client gives up on this
                    // key (an unanswered request it retries, as a client would).
                    _ => {
                        seen.unexpected
                            .push(format!("{key} at {started:?}: {status:?} {text}"));
                        status.is_some()
                    }
                }
            };
            if finished {
                break;
            }
            tokio::time::sleep(RETRY_PAUSE).await;
        }
    }
}

/// Asks `/health/ready` every [`READINESS_PERIOD`] until `stop` is set.
async fn poll_readiness(
    app: Arc<TestApp>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
    observed: Arc<Mutex<Observed>>,
) {
    while !stop.load(Ordering::Relaxed) {
        let started = epoch.elapsed();
        let sent = app.client.get(app.url("/health/ready")).send().await;
        let answer = Answer {
            started,
            took: epoch.elapsed() - started,
            status: sent.as_ref().ok().map(|r| r.status()),
            retry_after: sent
                .as_ref()
                .is_ok_and(|r| r.headers().contains_key("retry-after")),
        };
        observed.lock().unwrap().readiness.push(answer);
        tokio::time::sleep(READINESS_PERIOD).await;
    }
}

/// Waits until both an order and readiness have succeeded with requests started after
/// `since`; returns how long after `since` each did.
async fn recovery_after(
    observed: &Mutex<Observed>,
    since: Duration,
    what: &str,
) -> (Duration, Duration) {
    let deadline = Instant::now() + RECOVERY_LIMIT * 3;
    loop {
        if let (Some(orders), Some(ready)) = observed.lock().unwrap().first_success_after(since) {
            return (orders, ready);
        }
        assert!(
            Instant::now() < deadline,
            "{what}: the service did not recover within {:?} of Postgres returning",
            RECOVERY_LIMIT * 3
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn counts_by_status(answers: &[Answer]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for answer in answers {
        let status = answer
            .status
            .map_or_else(|| "no answer".to_owned(), |s| s.as_u16().to_string());
        *counts.entry(status).or_default() += 1;
    }
    counts
}

// ---------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn under_load_a_postgres_restart_and_a_10_s_outage_give_503s_never_500s_and_lose_no_order() {
    // Arrange: a cluster of our own, the app on it, a tenant with a customer and a product
    // with plenty of stock, and clients placing orders while readiness is polled.
    let cluster = Arc::new(
        tokio::task::spawn_blocking(ThrowawayCluster::create)
            .await
            .unwrap(),
    );
    let database_url = cluster.url("tenantry_recovery");
    let app = Arc::new(spawn_app_with(&[("DATABASE_URL", &database_url)]).await);
    // Unlimited orders: the load places more than the free plan's monthly allowance.
    let tenant = app.create_tenant_on("enterprise").await;
    let customer = expect_json(
        app.post(
            "/v1/customers",
            &tenant.token,
            json!({"email": "recovery@example.test", "name": "Recovery"}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let initial_stock: i32 = 1_000_000;
    let product = expect_json(
        app.post(
            "/v1/products",
            &tenant.token,
            json!({"sku": "RECOVERY-1", "name": "Recovery", "price_cents": 100, "currency": "EUR", "stock": initial_stock}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let body = order_request(&customer, &[(&product, 1)]);

    let epoch = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let observed = Arc::new(Mutex::new(Observed::default()));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|client| {
            tokio::spawn(place_orders(
                Arc::clone(&app),
                tenant.token.clone(),
                body.clone(),
                client,
                epoch,
                Arc::clone(&stop),
                Arc::clone(&observed),
            ))
        })
        .collect();
    let poller = tokio::spawn(poll_readiness(
        Arc::clone(&app),
        epoch,
        Arc::clone(&stop),
        Arc::clone(&observed),
    ));
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Act (a): a restart, every session terminated
    blocking(&cluster, ThrowawayCluster::restart).await;
    let restarted = epoch.elapsed();
    let (restart_orders, restart_ready) =
        recovery_after(&observed, restarted, "after the restart").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Act (b): an outage of 10 s
    blocking(&cluster, ThrowawayCluster::stop).await;
    let stopped = epoch.elapsed();
    tokio::time::sleep(OUTAGE).await;
    let restarting = epoch.elapsed();
    blocking(&cluster, ThrowawayCluster::start).await;
    let returned = epoch.elapsed();
    let (outage_orders, outage_ready) =
        recovery_after(&observed, returned, "after the outage").await;
    tokio::time::sleep(Duration::from_secs(2)).await;

    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.expect("a client finishes its last order");
    }
    poller.await.unwrap();

    // Assert: what the clients saw
    let seen = std::mem::take(&mut *observed.lock().unwrap());
    let unavailable: Vec<&Answer> = seen
        .orders
        .iter()
        .chain(&seen.readiness)
        .filter(|a| a.status == Some(StatusCode::SERVICE_UNAVAILABLE))
        .collect();
    // Requests started once the server had been gone for half a second, and before it was
    // started again: by then the service knows, and says so at once.
    let in_outage = |a: &&Answer| {
        a.started >= stopped + Duration::from_millis(500) && a.started + a.took <= restarting
    };
    let outage_orders_seen: Vec<&Answer> = seen.orders.iter().filter(in_outage).collect();
    let outage_ready_seen: Vec<&Answer> = seen.readiness.iter().filter(in_outage).collect();
    let slowest_outage_503 = outage_orders_seen
        .iter()
        .chain(&outage_ready_seen)
        .map(|a| a.took)
        .max()
        .unwrap_or_default();
    let slowest_503 = unavailable.iter().map(|a| a.took).max().unwrap_or_default();
    println!(
        "recovery: orders by status {:?}; readiness by status {:?}; slowest 503 {:?}; \
         during the outage {} order attempts and {} readiness checks, slowest answer {:?}; \
         recovered after the restart in {:?} (orders) / {:?} (readiness), \
         after the outage in {:?} (orders) / {:?} (readiness); {} orders acknowledged",
        counts_by_status(&seen.orders),
        counts_by_status(&seen.readiness),
        slowest_503,
        outage_orders_seen.len(),
        outage_ready_seen.len(),
        slowest_outage_503,
        restart_orders,
        restart_ready,
        outage_orders,
        outage_ready,
        seen.acknowledged.len(),
    );

    assert!(
        seen.unexpected.is_empty(),
        "expected only 201 and 503 for orders, got:\n{}",
        seen.unexpected.join("\n")
    );
    let odd_readiness: Vec<&Answer> = seen
        .readiness
        .iter()
        .filter(|a| {
            !matches!(
                a.status,
                Some(StatusCode::OK | StatusCode::SERVICE_UNAVAILABLE)
            )
        })
        .collect();
    assert!(
        odd_readiness.is_empty(),
        "expected readiness to answer 200 or 503 only, got {odd_readiness:?}"
    );
    let without_retry_after = unavailable.iter().filter(|a| !a.retry_after).count();
    assert_eq!(
        without_retry_after, 0,
        "expected every 503 to carry Retry-After; {without_retry_after} did not"
    );
    assert!(
        outage_orders_seen.len() >= CLIENTS * 10 && outage_ready_seen.len() >= 10,
        "expected the clients to keep trying through the outage, saw {} orders and {} readiness checks",
        outage_orders_seen.len(),
        outage_ready_seen.len()
    );
    let succeeded_in_outage: Vec<&&Answer> = outage_orders_seen
        .iter()
        .chain(&outage_ready_seen)
        .filter(|a| a.status != Some(StatusCode::SERVICE_UNAVAILABLE))
        .collect();
    assert!(
        succeeded_in_outage.is_empty(),
        "expected 503 for everything while Postgres was stopped, got {succeeded_in_outage:?}"
    );
    assert!(
        slowest_outage_503 < FAIL_FAST,
        "expected every 503 during the outage within {FAIL_FAST:?}, the slowest took {slowest_outage_503:?}"
    );
    for (what, orders, ready) in [
        ("the restart", restart_orders, restart_ready),
        ("the outage", outage_orders, outage_ready),
    ] {
        assert!(
            orders < RECOVERY_LIMIT && ready < RECOVERY_LIMIT,
            "expected orders and readiness to succeed within {RECOVERY_LIMIT:?} of Postgres \
             returning after {what}, took {orders:?} and {ready:?}"
        );
    }

    // Assert: every acknowledged order is in the database exactly once, under its key
    let mut answers_per_key = HashMap::new();
    for (key, ids) in &seen.acknowledged {
        let distinct: HashSet<&String> = ids.iter().collect();
        assert_eq!(
            distinct.len(),
            1,
            "expected every 201 for key {key} to name one order, got {ids:?}"
        );
        answers_per_key.insert(key.clone(), ids[0].clone());
    }
    let acknowledged: HashSet<String> = answers_per_key.values().cloned().collect();
    assert_eq!(
        acknowledged.len(),
        answers_per_key.len(),
        "expected no two keys to be acknowledged with the same order"
    );

    let mut db = PgConnection::connect(&database_url)
        .await
        .expect("the superuser connects to the throwaway cluster");
    let tenant_id = tenant.id.as_uuid();
    let stored: Vec<String> =
        sqlx::query_scalar("select id::text from order_summaries where tenant_id = $1")
            .bind(tenant_id)
            .fetch_all(&mut db)
            .await
            .unwrap();
    let stored: HashSet<String> = stored.into_iter().collect();
    let placed_events: Vec<(String, i64)> = sqlx::query_as(
        "select stream_id::text, count(*) from domain_events
         where tenant_id = $1 and event_type = 'order.placed' group by stream_id",
    )
    .bind(tenant_id)
    .fetch_all(&mut db)
    .await
    .unwrap();
    let keys: Vec<(String, Option<String>)> = sqlx::query_as(
        "select key, response_body->>'id' from idempotency_keys where tenant_id = $1",
    )
    .bind(tenant_id)
    .fetch_all(&mut db)
    .await
    .unwrap();
    let stock: i64 = sqlx::query_scalar(
        "select stock::bigint from products where tenant_id = $1 and id = $2::uuid",
    )
    .bind(tenant_id)
    .bind(id(&product))
    .fetch_one(&mut db)
    .await
    .unwrap();

    let missing: Vec<&String> = acknowledged.difference(&stored).collect();
    let unacknowledged: Vec<&String> = stored.difference(&acknowledged).collect();
    assert!(
        missing.is_empty() && unacknowledged.is_empty(),
        "expected the stored orders to be exactly the acknowledged ones: {} acknowledged but \
         missing {missing:?}; {} stored but never acknowledged {unacknowledged:?}",
        acknowledged.len(),
        stored.len()
    );
    let placed_twice: Vec<&(String, i64)> = placed_events.iter().filter(|(_, n)| *n != 1).collect();
    assert!(
        placed_twice.is_empty() && placed_events.len() == stored.len(),
        "expected exactly one order.placed event per order, got {placed_twice:?} \
         ({} streams for {} orders)",
        placed_events.len(),
        stored.len()
    );
    let stored_keys: HashMap<String, Option<String>> = keys.into_iter().collect();
    assert_eq!(
        stored_keys.len(),
        answers_per_key.len(),
        "expected one stored idempotency key per acknowledged key"
    );
    for (key, order_id) in &answers_per_key {
        assert_eq!(
            stored_keys.get(key).cloned().flatten().as_ref(),
            Some(order_id),
            "expected key {key} to have placed exactly the acknowledged order"
        );
    }
    assert_eq!(
        stock,
        i64::from(initial_stock) - stored.len() as i64,
        "expected each order to have reserved its one unit exactly once"
    );
}
