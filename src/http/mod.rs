//! The HTTP transport: application state, the router, the middleware stack, and the
//! handlers ([`routes`], one module per resource). Handlers extract, call one application
//! function, and shape the response; everything they know about the domain they learn from
//! the capability modules, which know nothing of HTTP. [`server`] serves the router on
//! connections: header and idle timeouts, the connection cap, the shutdown deadline.
//!
//! Middleware, outermost first — each layer sees what the layers inside it produce:
//! 1. sensitive headers marked (never logged), then the request ids: the server's own
//!    (a UUIDv7, `X-Request-Id` on the response) and the client's `X-Request-Id` when it
//!    sent a sane one (kept beside it, echoed as `X-Client-Request-Id`);
//! 2. trace span per request (request ids, method, route template, tenant id once known);
//! 3. problem rendering: every error response leaves as problem+json with the request id;
//! 4. metrics: count and latency by method, route template and status;
//! 5. panic catcher, timeout (which the request's database transactions are held to as
//!    well), body-size limit;
//! 6. authentication ([`auth::authenticate`]): the request's tenant credential verified
//!    and its principal (or the refusal) left in the request extensions;
//! 7. rate limiting ([`rate_limit`]): an authenticated request over its credential's or
//!    its tenant's rate is refused (429 `rate_limited`, `Retry-After`); every answer says
//!    where it stands (`RateLimit-Policy`, `RateLimit`);
//! 8. quota notices (`middleware::quota_notices`): a response that took a limit of the
//!    tenant's plan to 80 % or 100 % says so in a header;
//! 9. usage metering (`middleware::meter_usage`): an authenticated request past its
//!    tenant's monthly API-call allowance is refused (429); every other one is counted
//!    (`usage::meter`) with its credential, route group and status class. These sit
//!    inside authentication so they know the tenant and the credential, inside the problem
//!    layer so their refusals are problems too, and inside metrics so refused requests are
//!    counted; a rate-limited request is refused before it is metered;
//! 10. the routes, whose extractors ask for the principal and the scope they need.

pub mod auth;
pub mod body_schema;
pub mod cached;
pub mod client_ip;
pub mod etag;
pub mod extract;
pub mod idempotency;
pub mod middleware;
pub mod openapi;
pub mod pagination;
pub mod problem;
pub mod rate_limit;
pub mod routes;
pub mod server;
pub mod streaming;

use std::sync::Arc;

use axum::{
    Router,
    extract::FromRef,
    http::{HeaderName, StatusCode, header},
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

use crate::{
    auth::{AuthService, OperatorToken},
    cache::ReadCache,
    config::Config,
    db::Db,
    observability,
    realtime::session::Realtime,
    shared::Shared,
    traffic::Limiter,
    usage::{meter::Meter, top::TopTenants},
};

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
    /// The usage counted in memory until it is flushed (API calls, active users).
    pub meter: Arc<Meter>,
    /// The header a trusted proxy names the client in (`TENANTRY_CLIENT_IP_HEADER`);
    /// `None`: the TCP peer is the client ([`client_ip`]).
    pub client_ip_header: Option<HeaderName>,
    /// What the instances share (Redis, when configured) and the invalidation bus.
    pub shared: Shared,
    pub rate_limiting: Arc<rate_limit::RateLimiting>,
    /// Hot single reads, cached (`cache`).
    pub reads: Arc<ReadCache>,
    /// Realtime streams: the feed's follower, subscribers, broadcasts, seats.
    pub realtime: Arc<Realtime>,
    /// Outbound webhooks: their settings, and the bells that wake their workers.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
    /// The GraphQL schema (`/graphql`), and the limits it holds operations to.
    pub graphql: crate::graphql::ApiSchema,
    pub graphql_settings: crate::graphql::Settings,
    /// The top-N tenant gauges, appended to each scrape of `/metrics`.
    pub top_tenants: Arc<TopTenants>,
}

impl AppState {
    /// The state of a server; makes the dummy password hash, so it takes a moment.
    pub async fn new(config: &Config, db: Db) -> anyhow::Result<Self> {
        let shared = Shared::from_url(
            config
                .redis_url
                .as_ref()
                .map(secrecy::ExposeSecret::expose_secret),
        )?;
        let auth = Arc::new(AuthService::from_config(config, shared.redis().cloned()).await?);
        // Committed changes go to the bus, which drops the copies they make stale here
        // and tells the other instances.
        db.on_commit().deliver_to(shared.bus().clone());
        let credentials = Arc::clone(&auth.credentials);
        shared
            .bus()
            .subscribe(move |change| credentials.apply(change));
        let reads = Arc::new(ReadCache::new(
            config.read_cache_ttl,
            config.read_cache_bytes,
            shared.redis().cloned(),
        ));
        let cached = Arc::clone(&reads);
        shared.bus().subscribe(move |change| cached.apply(change));
        let meter = Arc::new(Meter::new(db.usage().clone()));
        let realtime = Arc::new(Realtime::new(
            config,
            db.clone(),
            Arc::clone(&auth),
            Arc::clone(&meter),
            shared.redis().cloned(),
        ));
        // After the credential cache's handler: a stream checks its credential again
        // once the stale copy is gone.
        let hub = Arc::clone(&realtime.hub);
        shared.bus().subscribe(move |change| hub.recheck(change));
        let rate_limiting = Arc::new(rate_limit::RateLimiting::new(
            config,
            Limiter::new(shared.redis().cloned()),
        ));
        Ok(Self {
            db: db.clone(),
            auth,
            shared,
            rate_limiting,
            reads,
            webhooks: Arc::new(crate::webhooks::Webhooks::new(config.webhooks.clone())),
            graphql: crate::graphql::schema(&config.graphql),
            graphql_settings: config.graphql.clone(),
            operator: OperatorToken::new(&config.operator_token),
            metrics: observability::metrics::handle(),
            top_tenants: Arc::new(TopTenants::new(config.metrics_top_tenants)),
            meter,
            realtime,
            idempotency_ttl: PgInterval::try_from(config.idempotency_key_ttl)
                .map_err(|e| anyhow::anyhow!("IDEMPOTENCY_KEY_TTL: {e}"))?,
            client_ip_header: config
                .client_ip_header
                .as_deref()
                .map(HeaderName::try_from)
                .transpose()
                .map_err(|e| anyhow::anyhow!("TENANTRY_CLIENT_IP_HEADER: {e}"))?,
        })
    }
}

/// Every documented route, with its OpenAPI description. The spec is derived from the
/// same router that serves requests, so a route cannot exist undocumented.
pub fn api_router() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::base()).merge(routes::router())
}

/// The full application: routes, docs, fallback and middleware.
pub fn app(state: AppState, config: &Config) -> Router {
    let (router, spec) = api_router().split_for_parts();
    let spec = openapi::finish(spec);
    body_schema::prepare(&spec);
    router
        .merge(SwaggerUi::new("/docs").url("/openapi.json", spec))
        .fallback(|| async { StatusCode::NOT_FOUND })
        .layer(
            ServiceBuilder::new()
                .layer(SetSensitiveRequestHeadersLayer::new([
                    header::AUTHORIZATION,
                    header::COOKIE,
                    HeaderName::from_static("x-api-key"),
                ]))
                .layer(axum::middleware::from_fn_with_state(
                    state.client_ip_header.clone(),
                    middleware::request_id,
                ))
                .layer(
                    TraceLayer::new_for_http()
                        .make_span_with(middleware::make_request_span)
                        .on_response(middleware::on_response),
                )
                .layer(axum::middleware::from_fn(problem::render_problems))
                .layer(axum::middleware::from_fn(middleware::track_requests))
                .layer(CatchPanicLayer::custom(problem::panic_response))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    config.request_timeout,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    config.request_timeout,
                    middleware::database_deadline,
                ))
                .layer(axum::extract::DefaultBodyLimit::max(config.max_body_bytes))
                .layer(axum::middleware::from_fn_with_state(
                    state.clone(),
                    auth::authenticate,
                ))
                .layer(axum::middleware::from_fn_with_state(
                    state.rate_limiting.clone(),
                    rate_limit::rate_limit,
                ))
                .layer(axum::middleware::from_fn(middleware::quota_notices))
                .layer(axum::middleware::from_fn_with_state(
                    state.meter.clone(),
                    middleware::meter_usage,
                )),
        )
        .with_state(state)
}

/// The OpenAPI document with its finishing touches (security schemes, error responses).
pub fn openapi() -> OpenApi {
    openapi::finish(api_router().into_openapi())
}
