//! The HTTP surface: application state, the router, and the middleware stack.
//!
//! Middleware, outermost first — each layer sees what the layers inside it produce:
//! 1. request id (`X-Request-Id`: kept if the client sent a sane one, else a UUIDv7),
//!    propagated to the response;
//! 2. trace span per request (request id, method, route template, tenant id once known);
//! 3. problem rendering: every error response leaves as problem+json with the request id;
//! 4. metrics: count and latency by method, route template and status;
//! 5. panic catcher, timeout, body-size limit;
//! 6. (to come, per request and tenant) rate limiting, then usage metering — they slot in
//!    here, inside the problem layer so their refusals are problems too and inside metrics
//!    so refused requests are counted;
//! 7. the routes, whose extractors authenticate and authorise.

pub mod error;
pub mod etag;
pub mod extract;
mod health;
pub mod idempotency;
pub mod pagination;
pub mod problem;

use std::sync::Arc;

use axum::{
    Router,
    extract::FromRef,
    http::{HeaderName, StatusCode, header},
    middleware,
};
use metrics_exporter_prometheus::PrometheusHandle;
use sqlx::postgres::types::PgInterval;
use tower::ServiceBuilder;
use tower_http::{
    catch_panic::CatchPanicLayer, sensitive_headers::SetSensitiveRequestHeadersLayer,
    timeout::TimeoutLayer, trace::TraceLayer,
};
use utoipa::openapi::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_swagger_ui::SwaggerUi;

use crate::{auth::AuthService, config::Config, db::Db, observability, platform::OperatorToken};

/// Shared handles, cheap to clone into every request.
#[derive(Clone, FromRef)]
pub struct AppState {
    pub db: Db,
    pub auth: Arc<AuthService>,
    pub operator: OperatorToken,
    pub metrics: PrometheusHandle,
    /// How long an `Idempotency-Key` replays its first answer, as the interval its claim
    /// adds to `now()` (converted once here, so a bad value stops start-up).
    pub idempotency_ttl: PgInterval,
}

impl AppState {
    pub fn new(config: &Config, db: Db) -> anyhow::Result<Self> {
        Ok(Self {
            db,
            auth: Arc::new(AuthService::from_config(config)?),
            operator: OperatorToken::new(&config.operator_token),
            metrics: observability::metrics::handle(),
            idempotency_ttl: PgInterval::try_from(config.idempotency_key_ttl)
                .map_err(|e| anyhow::anyhow!("IDEMPOTENCY_KEY_TTL: {e}"))?,
        })
    }
}

/// Every documented route, with its OpenAPI description. The spec is derived from the
/// same router that serves requests, so a route cannot exist undocumented.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(crate::openapi::ApiDoc::base())
        .merge(health::router())
        .merge(crate::auth::router())
        .merge(crate::tenancy::router())
        .merge(crate::users::router())
        .merge(crate::api_keys::router())
        .merge(crate::catalog::router())
        .merge(crate::orders::router())
        .merge(crate::platform::router())
}

/// The full application: routes, docs, fallback and middleware.
pub fn app(state: AppState, config: &Config) -> Router {
    let (router, spec) = api_router().split_for_parts();
    let spec = crate::openapi::finish(spec);
    router
        .merge(SwaggerUi::new("/docs").url("/openapi.json", spec))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .with_state(state)
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                    HeaderName::from_static("x-api-key"),
                ]))
                .layer(middleware::from_fn(observability::request_id))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(observability::make_request_span)
                        .on_response(observability::on_response),
                )
                .layer(middleware::from_fn(problem::render_problems))
                .layer(middleware::from_fn(observability::metrics::track_requests))
                .layer(CatchPanicLayer::custom(problem::panic_response))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    config.request_timeout,
                ))
                .layer(axum::extract::DefaultBodyLimit::max(config.max_body_bytes)),
        )
}

/// The OpenAPI document with its finishing touches (security schemes, error responses).
pub fn openapi() -> OpenApi {
    crate::openapi::finish(api_router().into_openapi())
}
