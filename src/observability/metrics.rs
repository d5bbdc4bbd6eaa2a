//! The Prometheus recorder. What is measured is decided where it happens (the HTTP
//! middleware records `http_requests_total` and `http_request_duration_seconds`); this
//! module installs the process-wide recorder and hands out the handle that renders it.
//!
//! The recorder keeps every histogram sample until it is drained — by a scrape of
//! `/metrics`, or by [`upkeep_periodically`], which the server runs so that memory stays
//! flat when nobody scrapes (without it, each request held on to its latency sample: about
//! 18 bytes a request, for ever).

use std::{sync::OnceLock, time::Duration};

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The process-wide recorder (a process has one global recorder; several `Application`s
/// in one test binary share it).
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new()
                .set_buckets_for_metric(
                    Matcher::Full("http_request_duration_seconds".into()),
                    LATENCY_BUCKETS,
                )
                .expect("bucket list is non-empty")
                .build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder was installed first; ours then stays unused.
            let _ = metrics::set_global_recorder(recorder);
            handle
        })
        .clone()
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
