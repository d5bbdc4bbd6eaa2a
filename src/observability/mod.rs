//! Logs, request spans and metrics.
//!
//! [`init_tracing`] is the one place telemetry is set up: an env filter (`RUST_LOG`), text
//! or JSON logs (`LOG_FORMAT`). Each request runs in a span carrying its request id,
//! method, route template (never the raw path, which holds ids) and, once authenticated,
//! its tenant id. Credentials never reach the logs: the sensitive headers are marked so,
//! and no code logs a token, key, password or hash.

pub mod metrics;

use std::time::Duration;

use axum::{
    body::Body,
    extract::{MatchedPath, Request},
    http::{HeaderValue, Response},
    middleware::Next,
};
use tracing::{Span, field};
use tracing_subscriber::{EnvFilter, layer::SubscriberExt, util::SubscriberInitExt};

use crate::{config::LogFormat, http::problem::REQUEST_ID_HEADER};

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

pub fn make_request_span(request: &Request<Body>) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("unmatched");
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        request_id,
        method = %request.method(),
        route,
        tenant_id = field::Empty,
        status = field::Empty,
    )
}

pub fn on_response(response: &Response<Body>, latency: Duration, span: &Span) {
    span.record("status", response.status().as_u16());
    tracing::info!(
        latency_ms = latency.as_secs_f64() * 1000.0,
        status = response.status().as_u16(),
        "request finished"
    );
}

tokio::task_local! {
    static REQUEST_ID: String;
}

/// Gives every request an id: the client's `X-Request-Id` when it is short and printable
/// (so clients can correlate), otherwise a fresh UUIDv7. The id is set on the request (for
/// the trace span and problem bodies), scoped to the task (for audit events), and echoed
/// on the response.
pub async fn request_id(mut request: Request, next: Next) -> axum::response::Response {
    let given = request.headers().get(REQUEST_ID_HEADER).filter(|v| {
        !v.is_empty()
            && v.len() <= 64
            && v.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
    });
    let value = match given {
        Some(value) => value.clone(),
        None => HeaderValue::from_str(&uuid::Uuid::now_v7().to_string())
            .expect("a UUID is a valid header value"),
    };
    request
        .headers_mut()
        .insert(REQUEST_ID_HEADER, value.clone());
    let id = value.to_str().unwrap_or_default().to_owned();
    let mut response = REQUEST_ID.scope(id, next.run(request)).await;
    response.headers_mut().insert(REQUEST_ID_HEADER, value);
    response
}

/// The current request's id, if running inside a request.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID
        .try_with(Clone::clone)
        .ok()
        .filter(|id| !id.is_empty())
}
