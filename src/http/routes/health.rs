//! Liveness, readiness and the Prometheus scrape endpoint. Unauthenticated by design:
//! they reveal nothing about tenants beyond the slugs of the top-N heaviest
//! (`TENANTRY_METRICS_TOP_TENANTS`, 0 to name none); keep `/metrics` off the public
//! network, as one does with any scrape endpoint.

use std::time::Duration;

use axum::{Json, extract::State, http::header, response::IntoResponse};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    error::Error,
    http::{AppState, problem::Problem},
    observability,
};

/// When a load balancer should ask again after a failed readiness check.
const READY_RETRY_AFTER: Duration = Duration::from_secs(2);

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(live))
        .routes(routes!(ready))
        .routes(routes!(metrics))
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    #[schema(example = "ok")]
    pub status: &'static str,
}

/// Readiness, with the state of the optional dependencies (which never make it fail).
#[derive(Serialize, ToSchema)]
pub struct Readiness {
    #[schema(example = "ok")]
    pub status: &'static str,
    /// Present when `REDIS_URL` is set. Redis is optional: while it is down the instance
    /// keeps serving, counting rate limits in its own memory, so it stays ready.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redis: Option<RedisReadiness>,
}

#[derive(Serialize, ToSchema)]
pub struct RedisReadiness {
    /// The circuit breaker around Redis: `closed` (in use), `open` (failing: skipped
    /// until its back-off ends), `half_open` (being tried again).
    #[schema(example = "closed")]
    pub breaker: &'static str,
    /// Whether this instance hears the others' invalidations now.
    #[schema(example = true)]
    pub invalidations_subscribed: bool,
}

/// The process is up (it does not check dependencies: restarting would not fix them).
#[utoipa::path(get, path = "/health/live", tag = "health", responses((status = 200, body = Health)))]
pub async fn live() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The instance can serve: Postgres answers within two seconds. 503 otherwise, so a load
/// balancer stops sending traffic here — at once while the database is known to be down
/// (then every other request is answered 503 at once too, until a probe reaches it).
/// Redis, when configured, is reported (its circuit breaker) but never makes it fail.
#[utoipa::path(
    get, path = "/health/ready", tag = "health",
    responses(
        (status = 200, body = Readiness),
        (status = 503, description = "Postgres is unreachable", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait before asking again"))),
    )
)]
pub async fn ready(State(state): State<AppState>) -> Result<Json<Readiness>, Error> {
    match tokio::time::timeout(Duration::from_secs(2), state.db.ping()).await {
        Ok(Ok(())) => Ok(Json(Readiness {
            status: "ok",
            redis: state.shared.breaker_state().map(|breaker| RedisReadiness {
                breaker: breaker.as_str(),
                invalidations_subscribed: state.shared.bus().listening(),
            }),
        })),
        Ok(Err(error)) => {
            tracing::warn!(%error, "readiness check failed");
            Err(Error::unavailable("the database", READY_RETRY_AFTER))
        }
        Err(_) => Err(Error::unavailable("the database", READY_RETRY_AFTER)),
    }
}

/// Prometheus metrics in the text exposition format.
#[utoipa::path(
    get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", body = String, content_type = "text/plain"))
)]
pub async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    // Every family is listed in the README's Metrics section. What is sampled rather than
    // recorded as it happens is read now.
    observability::metrics::collect_process();
    state.db.record_pool_metrics();
    let mut body = state.metrics.render();
    state.top_tenants.append_to(&mut body);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}
