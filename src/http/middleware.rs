//! Per-request telemetry: the request id, the request span, and the request metrics.
//!
//! Each request runs in a span carrying its request id, method, route template (never the
//! raw path, which holds ids) and, once authenticated, its tenant id. Metrics are labelled
//! by method, route template and status — never by raw path (unbounded cardinality, and
//! paths carry ids), and never by a method outside the standard ones (a client may send
//! any token as a method; those count as `OTHER`). Credentials never reach the logs: the sensitive headers are marked so
//! in the stack (`super::app`).

use std::time::{Duration, Instant};

use axum::{
    body::Body,
    extract::{MatchedPath, Request, State},
    http::{HeaderValue, Method, Response},
    middleware::Next,
};
use tracing::{Span, field};

use crate::{db, observability};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Gives every request an id: the client's `X-Request-Id` when it is short and printable
/// (so clients can correlate), otherwise a fresh UUIDv7. The id is set on the request (for
/// the trace span and problem bodies), made the correlation id of the work (for audit and
/// domain events), and echoed on the response.
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
    let mut response = observability::with_request_id(id, next.run(request)).await;
    response.headers_mut().insert(REQUEST_ID_HEADER, value);
    response
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

/// Counts each request and records its latency, by method, route template and status.
pub async fn track_requests(request: Request, next: Next) -> axum::response::Response {
    let start = Instant::now();
    let method = method_label(request.method()).to_owned();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let response = next.run(request).await;
    let labels = [
        ("method", method),
        ("route", route),
        ("status", response.status().as_u16().to_string()),
    ];
    metrics::counter!("http_requests_total", &labels).increment(1);
    metrics::histogram!("http_request_duration_seconds", &labels)
        .record(start.elapsed().as_secs_f64());
    response
}

/// The `method` label of a request: a standard method's name, else `OTHER`. Every label
/// value is a time series kept for the life of the process, so a client must not be able
/// to mint them by sending made-up methods.
pub fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        "OPTIONS" => "OPTIONS",
        "TRACE" => "TRACE",
        "CONNECT" => "CONNECT",
        _ => "OTHER",
    }
}

/// Holds the request's database work to the request timeout: a transaction it opens is told
/// how long it has left, so when the timeout answers 408 Postgres also cancels whatever
/// statement is still running and its locks go with it (`db::with_deadline`).
pub async fn database_deadline(
    State(timeout): State<Duration>,
    request: Request,
    next: Next,
) -> axum::response::Response {
    db::with_deadline(tokio::time::Instant::now() + timeout, next.run(request)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_methods_label_as_themselves_and_anything_else_as_other() {
        for method in [
            Method::GET,
            Method::HEAD,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
            Method::OPTIONS,
            Method::TRACE,
            Method::CONNECT,
        ] {
            assert_eq!(method_label(&method), method.as_str());
        }
        for made_up in ["FOO", "get", "PROPFIND", "BREW"] {
            let method = Method::from_bytes(made_up.as_bytes()).unwrap();
            assert_eq!(method_label(&method), "OTHER", "{made_up}");
        }
    }
}
