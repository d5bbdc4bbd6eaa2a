//! Logs, correlation ids and the metrics recorder — set up once, used by every layer.
//!
//! [`init_tracing`] is the one place telemetry is set up: an env filter (`RUST_LOG`), text
//! or JSON logs (`LOG_FORMAT`). [`with_request_ids`] scopes a unit of work (an HTTP request
//! today; a job or a socket message tomorrow) to its ids, which audit events and domain
//! events record: [`current_request_id`], the id the server minted for the work — the only
//! id the server vouches for, unique to it — and [`current_client_request_id`], the
//! correlation id the client sent, kept beside it (clients may reuse one, or send another
//! client's). Credentials never reach the logs: no code logs a token, key, password or
//! hash.
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

/// The ids a unit of work is known by, and where it came from.
#[derive(Debug, Clone)]
struct RequestIds {
    /// Minted by the server (a UUIDv7).
    id: String,
    /// Sent by the client, when it sent a usable one.
    client: Option<String>,
    origin: Origin,
}

/// Where a unit of work came from, for its audit events (personal data: recorded where it
/// can be erased, never in logs).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// The client's address, as far as the server trusts it.
    pub client_ip: Option<String>,
    /// The client's `User-Agent`, at most 256 characters.
    pub user_agent: Option<String>,
}

tokio::task_local! {
    static REQUEST_IDS: RequestIds;
}

/// Runs `work` as the request `id` (which the server minted), with the client's own
/// correlation id when it sent one, and where it came from.
pub async fn with_request_ids<F: Future>(
    id: String,
    client: Option<String>,
    origin: Origin,
    work: F,
) -> F::Output {
    REQUEST_IDS
        .scope(RequestIds { id, client, origin }, work)
        .await
}

/// Where the work in progress came from (empty outside a request).
pub fn current_origin() -> Origin {
    REQUEST_IDS
        .try_with(|ids| ids.origin.clone())
        .unwrap_or_default()
}

/// The server's id of the work in progress, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_IDS
        .try_with(|ids| ids.id.clone())
        .ok()
        .filter(|id| !id.is_empty())
}

/// The correlation id the client sent for the work in progress, if it sent one.
pub fn current_client_request_id() -> Option<String> {
    REQUEST_IDS
        .try_with(|ids| ids.client.clone())
        .ok()
        .flatten()
        .filter(|id| !id.is_empty())
}
