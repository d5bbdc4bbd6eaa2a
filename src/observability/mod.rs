//! Logs, correlation ids and the metrics recorder — set up once, used by every layer.
//!
//! [`init_tracing`] is the one place telemetry is set up: an env filter (`RUST_LOG`), text
//! or JSON logs (`LOG_FORMAT`). [`with_request_id`] scopes a unit of work (an HTTP request
//! today; a job or a socket message tomorrow) to a correlation id, which audit events and
//! domain events record through [`current_request_id`]. Credentials never reach the logs:
//! no code logs a token, key, password or hash.
//!
//! The HTTP middleware that gives each request its id, span and metrics lives with the
//! transport (`http::middleware`); this module knows nothing of HTTP.

pub mod metrics;

use std::future::Future;

use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::config::LogFormat;

/// Installs the global subscriber. Safe to call more than once (later calls are no-ops).
/// Logs go to stderr: stdout carries command output (`tenant create --json`, `openapi`).
pub fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn,tower_http=warn"));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = match format {
        LogFormat::Json => registry
            .with(
                tracing_subscriber::fmt::layer()
                    .with_writer(std::io::stderr)
                    .json()
                    .flatten_event(true)
                    .with_current_span(true),
            )
            .try_init(),
        LogFormat::Text => registry
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .try_init(),
    };
}

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Runs `work` with `id` as its correlation id.
pub async fn with_request_id<F: Future>(id: String, work: F) -> F::Output {
    REQUEST_ID.scope(id, work).await
}

/// The correlation id of the work in progress, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID
        .try_with(Clone::clone)
        .ok()
        .filter(|id| !id.is_empty())
}
