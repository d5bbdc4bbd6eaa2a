//! Per-request telemetry — the request ids, the request span, the request metrics — and the
//! per-tenant layers that follow authentication: quota notices and usage metering.
//!
//! Every request gets an id the server mints (a UUIDv7): the one on the response
//! (`X-Request-Id`), in problem bodies, the logs, audit events and domain events. A client
//! may send its own `X-Request-Id`; when it is sane (short, printable) it is kept as the
//! client's correlation id — logged as `client_request_id`, echoed in
//! `X-Client-Request-Id`, recorded beside the server's id — but never used as the server's
//! id, which a client must not be able to choose (it could reuse one, or borrow another
//! client's, to muddle the audit trail).
//!
//! Each request runs in a span carrying its request ids, method, route template (never the
//! raw path, which holds ids) and, once authenticated, its tenant id. Metrics are labelled
//! by method, route template and status — never by raw path (unbounded cardinality, and
//! paths carry ids), and never by a method outside the standard ones (a client may send
//! any token as a method; those count as `OTHER`). Credentials never reach the logs: the sensitive headers are marked so
//! in the stack (`super::app`).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use axum::{
    body::Body,
    extract::{MatchedPath, Request, State},
    http::{HeaderName, HeaderValue, Method, Response, header},
    middleware::Next,
    response::IntoResponse,
};
use tracing::{Span, field};

use super::{auth, client_ip::ClientIp};
use crate::{db, observability, plans, usage::meter::Meter};

/// The server's request id, on every response.
pub const REQUEST_ID_HEADER: &str = "x-request-id";
/// The client's own `X-Request-Id`, echoed back when it was kept.
pub const CLIENT_REQUEST_ID_HEADER: &str = "x-client-request-id";

/// A request's ids, in its extensions for the layers inside (span, problem bodies).
#[derive(Debug, Clone)]
pub struct RequestIds {
    /// Minted by the server: a UUIDv7.
    pub id: String,
    /// The client's `X-Request-Id`, when it sent a usable one.
    pub client: Option<String>,
}

/// Gives every request the ids [`RequestIds`] describes: a fresh UUIDv7, and the client's
/// `X-Request-Id` when it is 1-64 characters of letters, digits, `-`, `_` and `.` (anything
/// else is dropped, not repaired: it would end up in log lines). Both are set on the
/// request (for the span and problem bodies), made the ids of the work (for audit and
/// domain events), and sent back on the response: `X-Request-Id` the server's, and
/// `X-Client-Request-Id` the client's.
///
/// The work also learns where it came from ([`observability::Origin`]: the client's address,
/// read as [`ClientIp`] does, and its `User-Agent`), which its audit events record.
pub async fn request_id(
    State(trusted_header): State<Option<HeaderName>>,
    mut request: Request,
    next: Next,
) -> axum::response::Response {
    let client = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.as_bytes()
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(b))
        })
        .cloned();
    // Nothing inside may take the client's header for the request id.
    request.headers_mut().remove(REQUEST_ID_HEADER);
    let id = uuid::Uuid::now_v7().to_string();
    let client_id = client
        .as_ref()
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    request.extensions_mut().insert(RequestIds {
        id: id.clone(),
        client: client_id.clone(),
    });
    let origin = observability::Origin {
        client_ip: Some(
            ClientIp::of(
                request.headers(),
                request.extensions(),
                trusted_header.as_ref(),
            )
            .0
            .to_string(),
        ),
        user_agent: request
            .headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|agent| agent.chars().take(256).collect()),
    };
    let remote = observability::traces::remote_parent(&opentelemetry_http::HeaderExtractor(
        request.headers(),
    ));
    let mut response =
        observability::with_request_ids(id.clone(), client_id, origin, remote, next.run(request))
            .await;
    let headers = response.headers_mut();
    headers.insert(
        REQUEST_ID_HEADER,
        HeaderValue::from_str(&id).expect("a UUID is a valid header value"),
    );
    if let Some(client) = client {
        headers.insert(CLIENT_REQUEST_ID_HEADER, client);
    }
    response
}

pub fn make_request_span(request: &Request<Body>) -> Span {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(MatchedPath::as_str)
        .unwrap_or("unmatched");
    let ids = request.extensions().get::<RequestIds>();
    let request_id = ids.map_or("", |ids| ids.id.as_str());
    let client_request_id = ids.and_then(|ids| ids.client.as_deref());
    let method = method_label(request.method());
    let span = tracing::info_span!(
        "request",
        otel.name = format_args!("{method} {route}"),
        otel.kind = "server",
        otel.status_code = field::Empty,
        trace_id = field::Empty,
        request_id,
        client_request_id,
        method,
        route,
        tenant_id = field::Empty,
        credential = field::Empty,
        status = field::Empty,
    );
    span.record("trace_id", observability::adopt_trace(&span));
    span
}

pub fn on_response(response: &Response<Body>, latency: Duration, span: &Span) {
    span.record("status", response.status().as_u16());
    if response.status().is_server_error() {
        span.record("otel.status_code", "error");
    }
    tracing::info!(
        latency_ms = latency.as_secs_f64() * 1000.0,
        status = response.status().as_u16(),
        "request finished"
    );
}

/// Counts each request and records its latency, by method, route template and status,
/// and keeps `http_requests_in_flight` (decremented however the request ends, a client
/// that went away included).
pub async fn track_requests(request: Request, next: Next) -> axum::response::Response {
    let _in_flight = InFlight::enter();
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

/// One request counted in `http_requests_in_flight` until dropped.
struct InFlight;

impl InFlight {
    fn enter() -> Self {
        metrics::gauge!("http_requests_in_flight").increment(1.0);
        Self
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        metrics::gauge!("http_requests_in_flight").decrement(1.0);
    }
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

/// The header a response carries for each limit its request took to 80 % or 100 %:
/// `orders_per_month; threshold=80; used=800; limit=1000`.
pub const QUOTA_WARNING_HEADER: &str = "tenantry-quota-warning";

/// Shows what the quota checks inside a request noticed: a successful response that took a
/// limit to 80 % or 100 % says so in a `Tenantry-Quota-Warning` header, and the crossing
/// is counted in `tenant_quota_thresholds_total{limit, threshold}` (labels bounded: the
/// limit names and two thresholds, never a tenant). A refused request changed nothing and
/// says nothing.
pub async fn quota_notices(request: Request, next: Next) -> axum::response::Response {
    let (mut response, notices) = plans::quota::collect_notices(next.run(request)).await;
    if response.status().is_success() {
        for notice in notices {
            metrics::counter!(
                "tenant_quota_thresholds_total",
                "limit" => notice.limit.as_str(),
                "threshold" => notice.threshold.to_string()
            )
            .increment(1);
            let value = format!(
                "{}; threshold={}; used={}; limit={}",
                notice.limit, notice.threshold, notice.used, notice.of
            );
            if let Ok(value) = HeaderValue::from_str(&value) {
                response.headers_mut().append(QUOTA_WARNING_HEADER, value);
            }
        }
    }
    response
}

/// Meters an authenticated request (`usage::meter`): refuses it with 429
/// `quota_exceeded` when its tenant's monthly API-call allowance is used up, and otherwise
/// counts it, once answered, under its credential, route group and status class. Reading
/// the quotas and the usage stays allowed (and counted) past the allowance, so a tenant can
/// see why it is refused. Requests with no verified credential (health checks, login, the
/// operator API, refused credentials) belong to no tenant and are not metered.
pub async fn meter_usage(
    State(meter): State<Arc<Meter>>,
    request: Request,
    next: Next,
) -> axum::response::Response {
    let Some(principal) = auth::verified_principal(request.extensions()).cloned() else {
        return next.run(request).await;
    };
    let route = request.extensions().get::<MatchedPath>();
    let group = route_group(route.map(MatchedPath::as_str)).to_owned();
    if !ALWAYS_ADMITTED.contains(&group.as_str())
        && let Err(refused) = meter.admit_call(principal.tenant_id())
    {
        return refused.into_response();
    }
    let response = next.run(request).await;
    meter.api_call(&principal, &group, response.status().as_u16());
    response
}

/// The route groups a tenant past its API-call allowance may still call.
const ALWAYS_ADMITTED: &[&str] = &["quotas", "usage"];

/// The route group of a matched route: its first segment after the version
/// (`/v1/orders/{id}/confirm` is `orders`); `other` for a request no route matched.
fn route_group(route: Option<&str>) -> &str {
    route
        .and_then(|path| path.strip_prefix("/v1/"))
        .and_then(|rest| rest.split('/').next())
        .filter(|group| !group.is_empty())
        .unwrap_or("other")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_route_group_is_the_first_segment_after_the_version() {
        for (route, group) in [
            ("/v1/orders/{id}/confirm", "orders"),
            ("/v1/orders", "orders"),
            ("/v1/api-keys/{id}", "api-keys"),
            ("/v1/me", "me"),
            ("/health/live", "other"),
        ] {
            assert_eq!(route_group(Some(route)), group, "{route}");
        }
        assert_eq!(route_group(None), "other");
    }

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
