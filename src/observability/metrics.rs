//! The Prometheus recorder, and the catalog of every metric it serves.
//!
//! What is measured is decided where it happens: each module records its own metrics with
//! the `metrics` macros (`http::middleware` counts requests, `db` times pool acquisitions,
//! `orders` counts committed orders, …). This module installs the process-wide recorder,
//! hands out the handle that renders it, and holds [`FAMILIES`], the one list of every
//! metric family with its type, unit, description and — for histograms — its buckets. When
//! the recorder is installed, [`describe`] gives each family its `# HELP` line and the
//! counters whose label values are known in advance (every `outcome`, every `decision`,
//! both pools) are registered at zero, so a dashboard panel has a series before the first
//! event. A new metric is a new entry in [`FAMILIES`] and a new row in the README's metrics
//! table (`tests/api/metrics.rs` fails on a family missing from either).
//!
//! # Labels are bounded
//! Every label value is a time series the recorder keeps for the life of the process, so
//! no label may take a value a client chooses or one per tenant: labels are route
//! templates, method names (anything unknown is `OTHER`), status codes, limit names,
//! outcomes, currencies (ISO 4217 codes of products that exist), pool names. The one
//! exception is the top-N tenant gauges (`usage::top`), which are not in this recorder at
//! all: they are rendered at each scrape from a snapshot of at most N tenants, so a tenant
//! that leaves the top N leaves the output.
//!
//! # Histogram samples
//! The recorder keeps every histogram sample until it is drained — by a scrape of
//! `/metrics`, or by [`upkeep_periodically`], which the server runs so that memory stays
//! flat when nobody scrapes (without it, each request held on to its latency sample: about
//! 18 bytes a request, for ever).

use std::{fmt::Write as _, sync::OnceLock, time::Duration};

use metrics::Unit;
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// What kind of metric a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// One metric family: its name as rendered, its type, what it means.
#[derive(Debug)]
pub struct Family {
    pub name: &'static str,
    pub kind: Kind,
    /// Documentation only: names carry their unit already (`_seconds`, `_bytes`), and the
    /// recorder adds no suffix.
    pub unit: Option<Unit>,
    pub help: &'static str,
    /// The buckets of a histogram (upper bounds); empty for counters and gauges.
    pub buckets: &'static [f64],
    /// The label sets registered at zero on start-up, one per series.
    pub zero: &'static [&'static [(&'static str, &'static str)]],
}

/// Request latency: from a millisecond to the request timeout's range.
const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Waiting for a pool connection: microseconds when one is idle, up to the 5 s acquire
/// timeout when the pool is exhausted.
const ACQUIRE_BUCKETS: &[f64] = &[
    0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
];
/// A single SQL statement: sub-millisecond point reads to the 10 s statement timeout.
const STATEMENT_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];
/// Background work that writes in batches (the usage flush).
const BATCH_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];
/// From an event's commit to its hand-out: milliseconds normally, up to a minute behind a
/// long transaction.
const FEED_LAG_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];
/// One webhook attempt, up to `TENANTRY_WEBHOOK_TIMEOUT` (at most a minute).
const WEBHOOK_BUCKETS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 15.0, 30.0, 60.0,
];
/// Rebuilding read models: a second for a small tenant to an hour for everything.
const REBUILD_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
];

const NONE: &[(&str, &str)] = &[];

/// Every metric family the recorder serves, with its description. The process metrics of
/// `metrics-process` are described by that crate (in [`describe`]); the top-N tenant
/// gauges by `usage::top`, which renders them.
pub const FAMILIES: &[Family] = &[
    // HTTP (`http::middleware`).
    Family {
        name: "http_requests_total",
        kind: Kind::Counter,
        unit: None,
        help: "HTTP requests answered, by method (OTHER for a non-standard one), route template (unmatched when no route matched) and status.",
        buckets: &[],
        zero: &[],
    },
    Family {
        name: "http_request_duration_seconds",
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time from a request reaching the metrics layer to its response head, by method, route template and status.",
        buckets: LATENCY_BUCKETS,
        zero: &[],
    },
    Family {
        name: "http_requests_in_flight",
        kind: Kind::Gauge,
        unit: None,
        help: "HTTP requests being served now (a WebSocket or event stream counts until its upgrade or its response head).",
        buckets: &[],
        zero: &[NONE],
    },
    // Database pools (`db`).
    Family {
        name: "db_pool_connections",
        kind: Kind::Gauge,
        unit: None,
        help: "Connections a database pool holds, by pool (app: tenant requests; platform: operator API, feed, background work) and state (in_use, idle); sampled at each scrape.",
        buckets: &[],
        zero: &[],
    },
    Family {
        name: "db_pool_max_connections",
        kind: Kind::Gauge,
        unit: None,
        help: "The most connections a database pool may hold (DATABASE_MAX_CONNECTIONS, DATABASE_PLATFORM_MAX_CONNECTIONS).",
        buckets: &[],
        zero: &[],
    },
    Family {
        name: "db_pool_acquire_duration_seconds",
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time taken to get a connection from a pool (including opening one), by pool.",
        buckets: ACQUIRE_BUCKETS,
        zero: &[],
    },
    Family {
        name: "db_pool_acquire_waits_total",
        kind: Kind::Counter,
        unit: None,
        help: "Connection requests that found no idle connection in the pool (they waited for one to be returned or opened), by pool.",
        buckets: &[],
        zero: &[&[("pool", "app")], &[("pool", "platform")]],
    },
    Family {
        // Recorded with the statement spans (tracing); described here with the others.
        name: "db_statement_duration_seconds",
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time a SQL statement took, by operation (its first keyword: select, insert, update, delete, with, set, begin, commit, other).",
        buckets: STATEMENT_BUCKETS,
        zero: &[],
    },
    Family {
        name: "db_admission_limit",
        kind: Kind::Gauge,
        unit: None,
        help: "The adaptive limit on tenant transactions open at once (it shrinks when transactions slow down).",
        buckets: &[],
        zero: &[],
    },
    Family {
        name: "db_admission_refused_total",
        kind: Kind::Counter,
        unit: None,
        help: "Tenant transactions refused with 503 at the admission limit, by reason (limit: every place taken; fair_share: the tenant holds its share).",
        buckets: &[],
        zero: &[&[("reason", "limit")], &[("reason", "fair_share")]],
    },
    // Orders, quotas, rate limits.
    Family {
        name: "orders_placed_total",
        kind: Kind::Counter,
        unit: None,
        help: "Orders placed and committed, by currency.",
        buckets: &[],
        zero: &[],
    },
    Family {
        name: "orders_placed_amount_total",
        kind: Kind::Counter,
        unit: None,
        help: "Sum of the totals of the orders placed and committed, in the currency's minor units (cents), by currency.",
        buckets: &[],
        zero: &[],
    },
    Family {
        name: "order_transitions_total",
        kind: Kind::Counter,
        unit: None,
        help: "Order transitions committed, by the status reached (confirmed, paid, shipped, delivered, cancelled).",
        buckets: &[],
        zero: &[
            &[("to", "confirmed")],
            &[("to", "paid")],
            &[("to", "shipped")],
            &[("to", "delivered")],
            &[("to", "cancelled")],
        ],
    },
    Family {
        name: "projection_rebuilds_total",
        kind: Kind::Counter,
        unit: None,
        help: "Read-model rebuilds run by `tenantry projections rebuild` (recorded in the database, read every refresh), by projection and outcome (ok, error).",
        buckets: &[],
        zero: &[
            &[("projection", "orders"), ("outcome", "ok")],
            &[("projection", "orders"), ("outcome", "error")],
        ],
    },
    Family {
        name: "projection_rebuild_duration_seconds",
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time a read-model rebuild took, by projection.",
        buckets: REBUILD_BUCKETS,
        zero: &[],
    },
    Family {
        name: "quota_refusals_total",
        kind: Kind::Counter,
        unit: None,
        help: "Requests refused with quota_exceeded (REST, GraphQL and realtime alike), by the plan limit reached.",
        buckets: &[],
        zero: &[
            &[("limit", "users")],
            &[("limit", "api_keys")],
            &[("limit", "products")],
            &[("limit", "orders_per_month")],
            &[("limit", "api_calls_per_month")],
            &[("limit", "realtime_connections")],
            &[("limit", "webhook_endpoints")],
        ],
    },
    Family {
        name: "tenant_quota_thresholds_total",
        kind: Kind::Counter,
        unit: None,
        help: "Uses that took a plan limit to 80 % or 100 %, by limit and threshold.",
        buckets: &[],
        zero: &[
            &[("limit", "users"), ("threshold", "80")],
            &[("limit", "users"), ("threshold", "100")],
            &[("limit", "api_keys"), ("threshold", "80")],
            &[("limit", "api_keys"), ("threshold", "100")],
            &[("limit", "products"), ("threshold", "80")],
            &[("limit", "products"), ("threshold", "100")],
            &[("limit", "orders_per_month"), ("threshold", "80")],
            &[("limit", "orders_per_month"), ("threshold", "100")],
            &[("limit", "api_calls_per_month"), ("threshold", "80")],
            &[("limit", "api_calls_per_month"), ("threshold", "100")],
            &[("limit", "webhook_endpoints"), ("threshold", "80")],
            &[("limit", "webhook_endpoints"), ("threshold", "100")],
        ],
    },
    Family {
        name: "rate_limit_decisions_total",
        kind: Kind::Counter,
        unit: None,
        help: "Rate-limit decisions, one per limit a check is held to, by limit (credential, tenant, graphql, login) and decision (allowed, limited).",
        buckets: &[],
        zero: &[
            &[("limit", "credential"), ("decision", "allowed")],
            &[("limit", "credential"), ("decision", "limited")],
            &[("limit", "tenant"), ("decision", "allowed")],
            &[("limit", "tenant"), ("decision", "limited")],
            &[("limit", "graphql"), ("decision", "allowed")],
            &[("limit", "graphql"), ("decision", "limited")],
            &[("limit", "login"), ("decision", "allowed")],
            &[("limit", "login"), ("decision", "limited")],
        ],
    },
    Family {
        name: "rate_limited_requests_total",
        kind: Kind::Counter,
        unit: None,
        help: "Requests and GraphQL operations refused with 429 rate_limited, by the first limit that refused (credential, tenant, graphql).",
        buckets: &[],
        zero: &[
            &[("limit", "credential")],
            &[("limit", "tenant")],
            &[("limit", "graphql")],
        ],
    },
    Family {
        name: "rate_limit_fallbacks_total",
        kind: Kind::Counter,
        unit: None,
        help: "Rate-limit checks decided in this process's memory because Redis did not answer.",
        buckets: &[],
        zero: &[NONE],
    },
    // Caches and Redis.
    Family {
        name: "cache_requests_total",
        kind: Kind::Counter,
        unit: None,
        help: "Cache look-ups, by cache (credentials, reads), level (l1: this process, l2: Redis) and result (hit, miss).",
        buckets: &[],
        zero: &[
            &[("cache", "credentials"), ("level", "l1"), ("result", "hit")],
            &[
                ("cache", "credentials"),
                ("level", "l1"),
                ("result", "miss"),
            ],
            &[("cache", "reads"), ("level", "l1"), ("result", "hit")],
            &[("cache", "reads"), ("level", "l1"), ("result", "miss")],
            &[("cache", "reads"), ("level", "l2"), ("result", "hit")],
            &[("cache", "reads"), ("level", "l2"), ("result", "miss")],
        ],
    },
    Family {
        name: "cache_evictions_total",
        kind: Kind::Counter,
        unit: None,
        help: "Values evicted from the in-process read cache for want of room (TENANTRY_READ_CACHE_BYTES), by cache.",
        buckets: &[],
        zero: &[&[("cache", "reads")]],
    },
    Family {
        name: "cache_invalidations_sent_total",
        kind: Kind::Counter,
        unit: None,
        help: "Committed changes published to the other instances (Redis pub/sub).",
        buckets: &[],
        zero: &[NONE],
    },
    Family {
        name: "cache_invalidations_unsent_total",
        kind: Kind::Counter,
        unit: None,
        help: "Batches of committed changes that could not be published (Redis away); the other instances' copies expire instead.",
        buckets: &[],
        zero: &[NONE],
    },
    Family {
        name: "cache_invalidations_received_total",
        kind: Kind::Counter,
        unit: None,
        help: "Changes received from other instances and applied to this one's caches.",
        buckets: &[],
        zero: &[NONE],
    },
    Family {
        name: "redis_up",
        kind: Kind::Gauge,
        unit: None,
        help: "1 while Redis answers (its last call succeeded), 0 otherwise; configured=\"false\" (always 0) when REDIS_URL is not set.",
        buckets: &[],
        zero: &[],
    },
    Family {
        name: "redis_breaker_state",
        kind: Kind::Gauge,
        unit: None,
        help: "The circuit breaker around Redis: 0 closed (in use), 1 half-open (being tried), 2 open (skipped). Absent without REDIS_URL.",
        buckets: &[],
        zero: &[],
    },
    Family {
        name: "redis_calls_skipped_total",
        kind: Kind::Counter,
        unit: None,
        help: "Redis calls skipped because the breaker was open (the caller used its in-process fallback).",
        buckets: &[],
        zero: &[NONE],
    },
    Family {
        name: "redis_errors_total",
        kind: Kind::Counter,
        unit: None,
        help: "Redis calls that failed or timed out.",
        buckets: &[],
        zero: &[NONE],
    },
    // Login and passwords.
    Family {
        name: "login_throttled_total",
        kind: Kind::Counter,
        unit: None,
        help: "Logins refused with 429 too_many_attempts, by the key locked out (client, account).",
        buckets: &[],
        zero: &[&[("key", "client")], &[("key", "account")]],
    },
    Family {
        name: "password_hash_computations_total",
        kind: Kind::Counter,
        unit: None,
        help: "argon2 computations, by computation (hash, verify).",
        buckets: &[],
        zero: &[&[("computation", "hash")], &[("computation", "verify")]],
    },
    Family {
        name: "password_hashing_busy_total",
        kind: Kind::Counter,
        unit: None,
        help: "Callers refused with 503 password_hashing_busy: the queue for a hashing slot was full, or the wait too long.",
        buckets: &[],
        zero: &[NONE],
    },
    Family {
        name: "password_hash_queue_depth",
        kind: Kind::Gauge,
        unit: None,
        help: "Callers waiting now for an argon2 slot.",
        buckets: &[],
        zero: &[NONE],
    },
    Family {
        name: "password_hash_queue_capacity",
        kind: Kind::Gauge,
        unit: None,
        help: "The most callers that may wait for an argon2 slot (PASSWORD_HASH_QUEUE); beyond them 503.",
        buckets: &[],
        zero: &[],
    },
    // Usage metering.
    Family {
        name: "usage_flush_duration_seconds",
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time a flush of the usage counted in memory took.",
        buckets: BATCH_BUCKETS,
        zero: &[],
    },
    Family {
        name: "usage_flushes_total",
        kind: Kind::Counter,
        unit: None,
        help: "Flushes of the usage counted in memory, by outcome (ok, error: the counts are kept for the next).",
        buckets: &[],
        zero: &[&[("outcome", "ok")], &[("outcome", "error")]],
    },
    Family {
        name: "usage_unflushed_calls",
        kind: Kind::Gauge,
        unit: None,
        help: "API calls counted in memory and not yet written (a crash would lose them).",
        buckets: &[],
        zero: &[],
    },
    // Realtime and the event feed.
    Family {
        name: "events_feed_lag_seconds",
        kind: Kind::Gauge,
        unit: Some(Unit::Seconds),
        help: "Age of the oldest committed event the realtime follower has not taken yet; 0 when it is caught up.",
        buckets: &[],
        zero: &[NONE],
    },
    Family {
        name: "events_feed_lag_events",
        kind: Kind::Gauge,
        unit: None,
        help: "Committed events the realtime follower has not taken yet (counted up to 100000).",
        buckets: &[],
        zero: &[NONE],
    },
    Family {
        name: "realtime_feed_lag_seconds",
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time from an event's transaction start to its hand-out to this instance's subscribers.",
        buckets: FEED_LAG_BUCKETS,
        zero: &[],
    },
    Family {
        name: "realtime_feed_events_total",
        kind: Kind::Counter,
        unit: None,
        help: "Committed events the realtime follower took from the feed.",
        buckets: &[],
        zero: &[NONE],
    },
    Family {
        name: "realtime_subscribers",
        kind: Kind::Gauge,
        unit: None,
        help: "Subscribers registered with this instance's realtime hub.",
        buckets: &[],
        zero: &[NONE],
    },
    Family {
        name: "realtime_connections",
        kind: Kind::Gauge,
        unit: None,
        help: "Realtime sessions open now, by transport (sse, websocket, graphql).",
        buckets: &[],
        zero: &[
            &[("transport", "sse")],
            &[("transport", "websocket")],
            &[("transport", "graphql")],
        ],
    },
    Family {
        name: "realtime_sessions_total",
        kind: Kind::Counter,
        unit: None,
        help: "Realtime sessions opened, by transport (sse, websocket, graphql).",
        buckets: &[],
        zero: &[
            &[("transport", "sse")],
            &[("transport", "websocket")],
            &[("transport", "graphql")],
        ],
    },
    Family {
        name: "realtime_overflows_total",
        kind: Kind::Counter,
        unit: None,
        help: "Realtime subscribers dropped for reading too slowly (their buffer was full).",
        buckets: &[],
        zero: &[NONE],
    },
    Family {
        name: "realtime_broadcasts_total",
        kind: Kind::Counter,
        unit: None,
        help: "Client broadcasts relayed to this instance's subscribers.",
        buckets: &[],
        zero: &[NONE],
    },
    // Webhooks.
    Family {
        name: "webhook_attempt_duration_seconds",
        kind: Kind::Histogram,
        unit: Some(Unit::Seconds),
        help: "Time a webhook delivery attempt took (connect, send, answer).",
        buckets: WEBHOOK_BUCKETS,
        zero: &[],
    },
    Family {
        name: "webhook_deliveries_total",
        kind: Kind::Counter,
        unit: None,
        help: "Webhook delivery attempts settled, by outcome (succeeded, retry_scheduled, failed: retries exhausted).",
        buckets: &[],
        zero: &[
            &[("outcome", "succeeded")],
            &[("outcome", "retry_scheduled")],
            &[("outcome", "failed")],
        ],
    },
    Family {
        name: "webhook_queue_depth",
        kind: Kind::Gauge,
        unit: None,
        help: "Webhook deliveries pending, across every endpoint.",
        buckets: &[],
        zero: &[],
    },
    Family {
        name: "webhook_queue_depth_max_endpoint",
        kind: Kind::Gauge,
        unit: None,
        help: "Webhook deliveries pending for the endpoint with the most.",
        buckets: &[],
        zero: &[],
    },
    Family {
        name: "webhook_breaker_open",
        kind: Kind::Gauge,
        unit: None,
        help: "Webhook endpoints whose circuit breaker is open (attempts held back).",
        buckets: &[],
        zero: &[],
    },
    Family {
        name: "webhook_breaker_half_open",
        kind: Kind::Gauge,
        unit: None,
        help: "Webhook endpoints whose circuit breaker is half-open (a probe attempt allowed).",
        buckets: &[],
        zero: &[],
    },
    // The build.
    Family {
        name: "tenantry_build_info",
        kind: Kind::Gauge,
        unit: None,
        help: "Always 1; the version label says which build this process runs.",
        buckets: &[],
        zero: &[],
    },
];

/// The process-wide recorder (a process has one global recorder; several `Application`s
/// in one test binary share it). Installing it describes every family and registers the
/// known series at zero.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let mut builder = PrometheusBuilder::new();
            for family in FAMILIES.iter().filter(|f| f.kind == Kind::Histogram) {
                builder = builder
                    .set_buckets_for_metric(Matcher::Full(family.name.into()), family.buckets)
                    .expect("every histogram has buckets");
            }
            let recorder = builder.build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; ours then stays unused.
            if metrics::set_global_recorder(recorder).is_ok() {
                describe();
                register_known_series();
            }
            handle
        })
        .clone()
}

/// Gives every family its description (the `# HELP` line), in one place.
fn describe() {
    for family in FAMILIES {
        let (name, help) = (family.name, family.help);
        match (family.kind, family.unit) {
            (Kind::Counter, Some(unit)) => metrics::describe_counter!(name, unit, help),
            (Kind::Counter, None) => metrics::describe_counter!(name, help),
            (Kind::Gauge, Some(unit)) => metrics::describe_gauge!(name, unit, help),
            (Kind::Gauge, None) => metrics::describe_gauge!(name, help),
            (Kind::Histogram, Some(unit)) => metrics::describe_histogram!(name, unit, help),
            (Kind::Histogram, None) => metrics::describe_histogram!(name, help),
        }
    }
    process_collector().describe();
}

/// Registers the series whose label values are known at zero, and the build's.
fn register_known_series() {
    for family in FAMILIES {
        for labels in family.zero {
            match family.kind {
                Kind::Counter => metrics::counter!(family.name, *labels).increment(0),
                Kind::Gauge => metrics::gauge!(family.name, *labels).increment(0.0),
                Kind::Histogram => {}
            }
        }
    }
    metrics::gauge!("tenantry_build_info", "version" => env!("CARGO_PKG_VERSION")).set(1.0);
}

fn process_collector() -> &'static metrics_process::Collector {
    static COLLECTOR: OnceLock<metrics_process::Collector> = OnceLock::new();
    COLLECTOR.get_or_init(metrics_process::Collector::default)
}

/// Reads this process's CPU time, memory, descriptors and threads into their gauges (the
/// `/metrics` handler calls it before rendering; a few reads of `/proc`).
pub fn collect_process() {
    process_collector().collect();
}

/// How often histogram samples are drained into their buckets when nobody scrapes (what
/// the exporter's own upkeep task uses).
pub const UPKEEP_PERIOD: Duration = Duration::from_secs(5);

/// Drains histogram samples every `period` until the process ends.
pub async fn upkeep_periodically(period: Duration) {
    let handle = handle();
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        handle.run_upkeep();
    }
}

/// A gauge family written in the Prometheus text format, for values kept outside the
/// recorder (a snapshot rendered at each scrape): its `# HELP` and `# TYPE` lines first,
/// then one line per [`GaugeFamily::sample`].
pub struct GaugeFamily<'a> {
    out: &'a mut String,
    name: &'a str,
}

impl<'a> GaugeFamily<'a> {
    pub fn new(out: &'a mut String, name: &'a str, help: &str) -> Self {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        Self { out, name }
    }

    /// One series: its labels and value.
    pub fn sample(&mut self, labels: &[(&str, &str)], value: f64) {
        self.out.push_str(self.name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (label, value)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                self.out.push_str(label);
                self.out.push_str("=\"");
                for c in value.chars() {
                    match c {
                        '\\' => self.out.push_str("\\\\"),
                        '"' => self.out.push_str("\\\""),
                        '\n' => self.out.push_str("\\n"),
                        c => self.out.push(c),
                    }
                }
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_named_once_and_histograms_have_buckets() {
        let mut names = std::collections::HashSet::new();
        for family in FAMILIES {
            assert!(names.insert(family.name), "{} listed twice", family.name);
            assert_eq!(
                family.kind == Kind::Histogram,
                !family.buckets.is_empty(),
                "{}: buckets for histograms only, and every histogram has some",
                family.name
            );
            assert!(
                family.buckets.windows(2).all(|w| w[0] < w[1]),
                "{}: buckets ascend",
                family.name
            );
            assert!(
                family.kind != Kind::Counter || family.name.ends_with("_total"),
                "{}: a counter's name ends in _total",
                family.name
            );
            assert!(
                family.help.ends_with('.'),
                "{}: help is a sentence",
                family.name
            );
        }
    }

    #[test]
    fn a_gauge_family_escapes_label_values_and_help() {
        let mut out = String::new();
        let mut family = GaugeFamily::new(&mut out, "x_ratio", "a \\ b\nc");
        family.sample(&[("tenant", "a\"b\\c\nd"), ("limit", "users")], 0.5);
        family.sample(&[], 2.0);
        assert_eq!(
            out,
            "# HELP x_ratio a \\\\ b\\nc\n# TYPE x_ratio gauge\n\
             x_ratio{tenant=\"a\\\"b\\\\c\\nd\",limit=\"users\"} 0.5\nx_ratio 2\n"
        );
    }
}
