//! Rate limiting as a layer: every authenticated request is held to its credential's and
//! its tenant's limits (`traffic`), and answered with where it stands.
//!
//! Responses carry the IETF draft's headers (draft-ietf-httpapi-ratelimit-headers):
//! `RateLimit-Policy` names each limit with its quota `q` (the burst) and window `w` (the
//! seconds the whole burst takes to come back); `RateLimit` gives, for the limit closest
//! to refusing, the requests `r` still allowed at once and the seconds `t` until it is
//! full again:
//!
//! ```text
//! RateLimit-Policy: "credential";q=20;w=2, "tenant";q=80;w=2
//! RateLimit: "credential";r=19;t=1
//! ```
//!
//! A refused request is answered 429 `rate_limited` with `Retry-After`, changes nothing,
//! and is not metered. The refusal is held until the limit would let the request through
//! (at most [`REFUSAL_HOLD`]; at most [`MAX_HELD_REFUSALS`] at once, beyond which they are
//! answered at once), as refused logins are: a client that ignores `Retry-After` and
//! retries at once then costs the server a refusal per connection per hold, not tens of
//! thousands a second of CPU that other tenants need. Requests without a verified credential are not limited here (login
//! has its own throttle; health checks and the operator API are not tenants' traffic).

use std::{sync::Arc, time::Duration};

use axum::{
    extract::{Request, State},
    http::{HeaderMap, HeaderValue},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::auth;
use crate::{
    config::Config,
    error::{Error, whole_seconds},
    traffic::{Algorithm, Limit, Limiter, Scope, TENANT_RATE_MULTIPLE, Verdict},
};

pub const RATE_LIMIT_POLICY: &str = "ratelimit-policy";
pub const RATE_LIMIT: &str = "ratelimit";

/// The longest a refusal is held before it is answered.
pub const REFUSAL_HOLD: Duration = Duration::from_secs(1);
/// The most refusals held at once; the hold spares the server a busy loop, it must not
/// become a queue of its own.
pub const MAX_HELD_REFUSALS: usize = 1024;

/// The limiter and how each limit decides.
pub struct RateLimiting {
    /// Shared with GraphQL, whose operations' costs it counts too.
    pub limiter: Arc<Limiter>,
    pub enabled: bool,
    pub credential: Algorithm,
    pub tenant: Algorithm,
    held: tokio::sync::Semaphore,
}

impl RateLimiting {
    pub fn new(config: &Config, limiter: Limiter) -> Self {
        Self {
            limiter: Arc::new(limiter),
            enabled: config.rate_limits,
            credential: config.credential_rate_algorithm,
            tenant: config.tenant_rate_algorithm,
            held: tokio::sync::Semaphore::new(MAX_HELD_REFUSALS),
        }
    }
}

/// The layer: see the module's documentation.
pub async fn rate_limit(
    State(limiting): State<Arc<RateLimiting>>,
    request: Request,
    next: Next,
) -> Response {
    let limits = match auth::verified(request.extensions()) {
        Some(verified) if limiting.enabled => {
            let Some(rate) = verified.rate else {
                return next.run(request).await;
            };
            let principal = &verified.principal;
            let mut limits = Vec::with_capacity(2);
            if let Some(credential) = principal.credential() {
                limits.push(Limit {
                    scope: Scope::Credential,
                    key: credential,
                    rate,
                    algorithm: limiting.credential,
                    cost: 1,
                });
            }
            limits.push(Limit {
                scope: Scope::Tenant,
                key: principal.tenant_id().to_string(),
                rate: rate.times(TENANT_RATE_MULTIPLE),
                algorithm: limiting.tenant,
                cost: 1,
            });
            limits
        }
        _ => return next.run(request).await,
    };
    let verdict = limiting.limiter.check(&limits).await;
    let mut response = if verdict.allowed() {
        next.run(request).await
    } else {
        let which = verdict
            .decisions
            .iter()
            .find(|d| !d.allowed)
            .map_or("tenant", |d| d.scope.as_str());
        metrics::counter!("rate_limited_requests_total", "limit" => which).increment(1);
        let wait = verdict.retry_after();
        let held = match limiting.held.try_acquire() {
            Ok(_permit) => {
                let hold = wait.min(REFUSAL_HOLD);
                tokio::time::sleep(hold).await;
                hold
            }
            Err(_) => Duration::ZERO,
        };
        Error::rate_limited(which, wait.saturating_sub(held)).into_response()
    };
    describe(response.headers_mut(), &limits, &verdict);
    response
}

/// Writes `RateLimit-Policy` and `RateLimit` for `verdict`.
fn describe(headers: &mut HeaderMap, limits: &[Limit], verdict: &Verdict) {
    let policy = limits
        .iter()
        .map(|limit| {
            format!(
                "\"{}\";q={};w={}",
                limit.scope.as_str(),
                limit.rate.burst,
                whole_seconds(limit.rate.window()).max(1)
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    if let Ok(value) = HeaderValue::from_str(&policy) {
        headers.insert(RATE_LIMIT_POLICY, value);
    }
    if let Some(tightest) = verdict.tightest() {
        let value = format!(
            "\"{}\";r={};t={}",
            tightest.scope.as_str(),
            tightest.remaining,
            whole_seconds(tightest.reset)
        );
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(RATE_LIMIT, value);
        }
    }
}
