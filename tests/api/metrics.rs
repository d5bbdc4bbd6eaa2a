//! `/metrics`: every family served has its `# HELP` and `# TYPE`, every one is in the
//! README's metrics table and every row of that table is a metric the code records; and
//! the metrics show exactly what an exercise did — on a server process of its own, over a
//! database of its own, since the tests of one binary share one recorder and one database.

use std::{
    collections::{BTreeMap, BTreeSet},
    path::Path,
    time::Duration,
};

use reqwest::StatusCode;
use serde_json::json;

use crate::{
    helpers::{
        ScratchDatabase, TestApp, TestTenant, expect_json, expect_problem, id, override_limits,
        place, place_ok, run_tenantry, spawn_app, spawn_server_process, test_config, unique,
    },
    realtime::SseClient,
};

const README: &str = include_str!("../../README.md");

/// How long a test waits for what a background task refreshes (every 200 ms here).
const PATIENCE: Duration = Duration::from_secs(15);

/// One scrape of `/metrics`.
struct Scrape(String);

impl Scrape {
    async fn of(app: &TestApp) -> Self {
        let response = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("the server answers");
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-type"]
                .to_str()
                .unwrap()
                .starts_with("text/plain"),
            "the Prometheus text format"
        );
        Self(response.text().await.unwrap())
    }

    /// Each family in the scrape, with its `# TYPE` (`None` when it has none) and whether
    /// it has a `# HELP` line.
    fn families(&self) -> BTreeMap<String, (Option<String>, bool)> {
        let mut families: BTreeMap<String, (Option<String>, bool)> = BTreeMap::new();
        for line in self.0.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let (name, kind) = rest.split_once(' ').expect("# TYPE name type");
                families.entry(name.to_owned()).or_default().0 = Some(kind.to_owned());
            } else if let Some(rest) = line.strip_prefix("# HELP ") {
                let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
                assert!(!help.trim().is_empty(), "{name}'s help says something");
                families.entry(name.to_owned()).or_default().1 = true;
            }
        }
        let typed: BTreeMap<String, Option<String>> = families
            .iter()
            .map(|(name, (kind, _))| (name.clone(), kind.clone()))
            .collect();
        for line in self
            .0
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
        {
            let name = line.split(['{', ' ']).next().unwrap();
            let family = ["_bucket", "_sum", "_count"]
                .iter()
                .filter_map(|suffix| name.strip_suffix(suffix))
                .find(|base| {
                    typed.get(*base).is_some_and(|kind| {
                        matches!(kind.as_deref(), Some("histogram") | Some("summary"))
                    })
                })
                .unwrap_or(name);
            families.entry(family.to_owned()).or_default();
        }
        families
    }

    /// The value of one series, named exactly as rendered (`name{label="value",…}`).
    fn value(&self, series: &str) -> Option<f64> {
        self.0.lines().find_map(|line| {
            let value = line.strip_prefix(series)?.strip_prefix(' ')?;
            Some(
                value
                    .parse()
                    .unwrap_or_else(|_| panic!("{line}: not a number")),
            )
        })
    }

    /// [`Scrape::value`], which must be there.
    fn get(&self, series: &str) -> f64 {
        self.value(series).unwrap_or_else(|| {
            let name = series.split('{').next().unwrap();
            let lines: Vec<&str> = self.0.lines().filter(|l| l.contains(name)).collect();
            panic!(
                "{series} expected in /metrics; its family:\n{}",
                lines.join("\n")
            )
        })
    }

    /// The series of family `name` (sample lines).
    fn series(&self, name: &str) -> Vec<&str> {
        self.0
            .lines()
            .filter(|l| l.starts_with(&format!("{name}{{")) || l.starts_with(&format!("{name} ")))
            .collect()
    }
}

/// The metric names in the first column of the README's metrics table.
fn readme_metrics() -> Vec<String> {
    let section = README
        .split_once("\n### Metrics\n")
        .expect("the README has a Metrics section")
        .1;
    let section = section.split("\n#").next().unwrap();
    let names: Vec<String> = section
        .lines()
        .filter_map(|line| line.strip_prefix("| `"))
        .map(|rest| rest.split('`').next().unwrap().to_owned())
        .collect();
    assert!(names.len() > 30, "the table lists the metrics: {names:?}");
    names
}

/// Every `.rs` file under `dir`, as text.
fn sources(dir: &Path, into: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).unwrap();
            into.push((path.display().to_string(), text));
        }
    }
}

#[tokio::test]
async fn every_served_metric_is_described_and_in_the_readme_and_every_listed_one_is_recorded() {
    // Arrange: a server that has served a few requests, an order among them.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let product = app.create_product(&tenant).await;
    let customer = app.create_customer(&tenant).await;
    place_ok(&app, &tenant, &customer, &[(&product, 1)]).await;
    app.get("/v1/users", &tenant.token).await;

    // Act
    let scrape = Scrape::of(&app).await;

    // Assert: described and typed.
    let families = scrape.families();
    for (name, (kind, help)) in &families {
        assert!(kind.is_some(), "{name} has no # TYPE line");
        assert!(help, "{name} has no # HELP line");
    }
    for expected in [
        "tenantry_build_info",
        "process_resident_memory_bytes",
        "http_requests_in_flight",
        "db_pool_connections",
        "orders_placed_total",
        "rate_limit_decisions_total",
        "redis_up",
        "events_feed_lag_seconds",
        "tenant_top_api_calls",
    ] {
        assert!(families.contains_key(expected), "{expected} is served");
    }
    assert_eq!(
        families["http_request_duration_seconds"].0.as_deref(),
        Some("histogram"),
        "latencies have buckets, not quantiles"
    );

    // Assert: the README lists every family served…
    let listed = readme_metrics();
    let listed_set: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
    assert_eq!(listed.len(), listed_set.len(), "each metric listed once");
    let unlisted: Vec<&String> = families
        .keys()
        .filter(|name| !listed_set.contains(name.as_str()))
        .collect();
    assert!(
        unlisted.is_empty(),
        "served but missing from the README's metrics table: {unlisted:?}"
    );
    // …and nothing the code does not record: each row is served, or named in the source
    // where it is recorded (the catalog of descriptions does not count).
    let mut code = Vec::new();
    sources(
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
        &mut code,
    );
    let catalog = Path::new("src/observability/metrics.rs");
    let unrecorded: Vec<&String> = listed
        .iter()
        .filter(|name| !families.contains_key(name.as_str()))
        .filter(|name| {
            !code.iter().any(|(path, text)| {
                !path.ends_with(catalog.to_str().unwrap()) && text.contains(&format!("\"{name}\""))
            })
        })
        .collect();
    assert!(
        unrecorded.is_empty(),
        "listed in the README but recorded nowhere: {unrecorded:?}"
    );
}

/// A tenant on the pro plan (rates to spare), logged in once.
async fn pro_tenant(app: &TestApp) -> TestTenant {
    app.create_tenant_on("pro").await
}

/// Polls `/metrics` until `done` holds, or fails saying what it waited for.
async fn eventually(app: &TestApp, what: &str, done: impl Fn(&Scrape) -> bool) -> Scrape {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let scrape = Scrape::of(app).await;
        if done(&scrape) {
            return scrape;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {PATIENCE:?} for {what}; /metrics:\n{}",
            scrape.0
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_server_of_its_own_shows_exactly_what_it_was_asked_to_do() {
    // Arrange: a server process of its own (its own recorder), on a database of its own
    // (the only tenants are this test's), with rate limits and Redis on and the database
    // metrics refreshed every 200 ms.
    let database = ScratchDatabase::new("metrics");
    let log = std::env::temp_dir().join(format!("{}.log", unique("metrics")));
    let (_server, app) = spawn_server_process(
        &[
            ("DATABASE_URL", &database.url()),
            ("REDIS_URL", "redis://127.0.0.1:6379"),
            ("TENANTRY_RATE_LIMITS", "on"),
            ("TENANTRY_METRICS_TOP_TENANTS", "3"),
            ("TENANTRY_METRICS_REFRESH_INTERVAL", "200ms"),
            ("TENANTRY_USAGE_FLUSH_INTERVAL", "100ms"),
            ("DATABASE_MAX_CONNECTIONS", "7"),
            ("PASSWORD_HASH_QUEUE", "17"),
        ],
        &log,
    )
    .await;
    let before = Scrape::of(&app).await;
    assert_eq!(
        before.get(&format!(
            "tenantry_build_info{{version=\"{}\"}}",
            env!("CARGO_PKG_VERSION")
        )),
        1.0
    );
    assert_eq!(before.get("redis_up{configured=\"true\"}"), 1.0);
    assert_eq!(before.get("db_pool_max_connections{pool=\"app\"}"), 7.0);
    assert_eq!(
        before.get("db_pool_max_connections{pool=\"platform\"}"),
        8.0
    );
    assert_eq!(before.get("password_hash_queue_capacity"), 17.0);
    assert!(before.get("process_resident_memory_bytes") > 0.0);
    assert!(before.get("process_open_fds") > 0.0);
    // Known series are there before anything happened, at zero.
    for series in [
        "order_transitions_total{to=\"paid\"}",
        "quota_refusals_total{limit=\"orders_per_month\"}",
        "rate_limit_decisions_total{limit=\"tenant\",decision=\"limited\"}",
        "projection_rebuilds_total{projection=\"orders\",outcome=\"ok\"}",
        "cache_evictions_total{cache=\"reads\"}",
        "usage_flushes_total{outcome=\"error\"}",
        "realtime_connections{transport=\"sse\"}",
    ] {
        assert_eq!(before.get(series), 0.0, "{series} at start-up");
    }

    // Act: one tenant places three orders of 12.50 EUR × 1, 2, 1 (5 000 cents) against an
    // allowance of three, is refused a fourth, confirms one and cancels another, and
    // opens an event stream: nine requests in all. Three more tenants make 3, 2 and 1.
    let tenant = pro_tenant(&app).await;
    override_limits(&app, &tenant, json!({"orders_per_month": 3})).await;
    let product = app.create_product(&tenant).await;
    let customer = app.create_customer(&tenant).await;
    let first = place_ok(&app, &tenant, &customer, &[(&product, 1)]).await;
    let second = place_ok(&app, &tenant, &customer, &[(&product, 2)]).await;
    place_ok(&app, &tenant, &customer, &[(&product, 1)]).await;
    expect_problem(
        place(&app, &tenant, &customer, &[(&product, 1)]).await,
        StatusCode::TOO_MANY_REQUESTS,
        "quota_exceeded",
    )
    .await;
    let confirm = format!("/v1/orders/{}/confirm", id(&first));
    expect_json(
        app.post(&confirm, &tenant.token, json!({})).await,
        StatusCode::OK,
    )
    .await;
    let cancel = format!("/v1/orders/{}/cancel", id(&second));
    expect_json(
        app.post(&cancel, &tenant.token, json!({"reason": "changed my mind"}))
            .await,
        StatusCode::OK,
    )
    .await;
    let stream = SseClient::connect(&app, &tenant.token, "", None).await;
    let streaming = Scrape::of(&app).await;
    drop(stream);
    let mut others = Vec::new();
    for calls in [3, 2, 1] {
        let other = pro_tenant(&app).await;
        for _ in 0..calls {
            expect_json(app.get("/v1/users", &other.token).await, StatusCode::OK).await;
        }
        others.push(other);
    }

    // Assert: what was committed, refused and decided.
    assert_eq!(
        streaming.get("realtime_connections{transport=\"sse\"}"),
        1.0
    );
    assert_eq!(
        streaming.get("realtime_sessions_total{transport=\"sse\"}"),
        1.0
    );
    let after = eventually(&app, "the event stream's session to close", |s| {
        s.value("realtime_connections{transport=\"sse\"}") == Some(0.0)
    })
    .await;
    assert_eq!(after.get("orders_placed_total{currency=\"EUR\"}"), 3.0);
    assert_eq!(
        after.get("orders_placed_amount_total{currency=\"EUR\"}"),
        5000.0
    );
    assert_eq!(after.get("order_transitions_total{to=\"confirmed\"}"), 1.0);
    assert_eq!(after.get("order_transitions_total{to=\"cancelled\"}"), 1.0);
    assert_eq!(after.get("order_transitions_total{to=\"paid\"}"), 0.0);
    assert_eq!(
        after.get("quota_refusals_total{limit=\"orders_per_month\"}"),
        1.0
    );
    for threshold in ["80", "100"] {
        assert_eq!(
            after.get(&format!(
                "tenant_quota_thresholds_total{{limit=\"orders_per_month\",threshold=\"{threshold}\"}}"
            )),
            1.0,
            "the third order of three took the allowance past {threshold} %"
        );
    }
    // Four logins (one per tenant), each let through by the throttle.
    assert_eq!(
        after.get("rate_limit_decisions_total{limit=\"login\",decision=\"allowed\"}"),
        4.0
    );
    // 9 + 3 + 2 + 1 authenticated requests, each checked against its tenant's limit.
    assert_eq!(
        after.get("rate_limit_decisions_total{limit=\"tenant\",decision=\"allowed\"}"),
        15.0
    );
    assert_eq!(
        after.get("rate_limit_decisions_total{limit=\"tenant\",decision=\"limited\"}"),
        0.0
    );
    // The scrape itself is the one request in flight.
    assert_eq!(after.get("http_requests_in_flight"), 1.0);
    assert!(after.get("db_pool_acquire_duration_seconds_count{pool=\"app\"}") >= 15.0);
    assert!(
        after.get("db_pool_acquire_waits_total{pool=\"app\"}") >= 1.0,
        "the first request found the pool empty"
    );
    let held = after.get("db_pool_connections{pool=\"app\",state=\"in_use\"}")
        + after.get("db_pool_connections{pool=\"app\",state=\"idle\"}");
    assert!(
        (1.0..=7.0).contains(&held),
        "the pool holds {held} connections"
    );
    // Assert: the follower takes every event (once no transaction anywhere on the cluster
    // holds the feed back) and is then caught up.
    eventually(
        &app,
        "the feed's follower to take the three orders placed, the confirmation and the cancellation, and be caught up",
        |s| {
            s.value("realtime_feed_events_total")
                .is_some_and(|events| events >= 5.0)
                && s.value("events_feed_lag_events") == Some(0.0)
                && s.value("events_feed_lag_seconds") == Some(0.0)
        },
    )
    .await;

    // Assert: the top-N gauges name the heaviest three.
    let calls = |t: &TestTenant| format!("tenant_top_api_calls{{tenant=\"{}\"}}", t.slug);
    let top = eventually(&app, "the top-N snapshot of every call", |s| {
        s.value(&calls(&tenant)) == Some(9.0) && s.value(&calls(&others[1])) == Some(2.0)
    })
    .await;
    assert_eq!(top.get(&calls(&others[0])), 3.0);
    assert_eq!(
        top.series("tenant_top_api_calls").len(),
        3,
        "at most TENANTRY_METRICS_TOP_TENANTS series: {:?}",
        top.series("tenant_top_api_calls")
    );
    assert_eq!(
        top.value(&calls(&others[2])),
        None,
        "the fourth tenant is not in the top three"
    );
    assert_eq!(
        top.get(&format!(
            "tenant_top_quota_used_ratio{{tenant=\"{}\",limit=\"orders_per_month\"}}",
            tenant.slug
        )),
        1.0,
        "three orders of an allowance of three"
    );
    assert!(top.series("tenant_top_quota_used_ratio").len() <= 3);

    // Act: a rebuild of the tenant's read models, by the command line.
    let cli = run_tenantry(
        &test_config(&[("DATABASE_URL", &database.url())]),
        &[],
        &["projections", "rebuild", "--tenant", &tenant.slug],
    )
    .await;
    assert!(cli.success, "the rebuild runs: {}", cli.stderr);

    // Assert: the server reads the run the command recorded.
    eventually(&app, "the recorded rebuild", |s| {
        s.value("projection_rebuilds_total{projection=\"orders\",outcome=\"ok\"}") == Some(1.0)
            && s.value("projection_rebuild_duration_seconds_count{projection=\"orders\"}")
                == Some(1.0)
    })
    .await;
    let _ = std::fs::remove_file(&log);
}
