//! `/v1/quotas`: the tenant's limits and what it uses of them.

use axum::{Json, extract::State};
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    access::scope,
    error::Error,
    http::{AppState, auth::Authorized},
    quotas::{self, Quotas},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_quotas))
}

/// Every limit of the tenant's plan (with the operator's overrides for this tenant), what
/// the tenant uses of it now, and when a monthly allowance resets. A create past a count
/// is refused with 403 `quota_exceeded`, a use past a monthly allowance with 429
/// `quota_exceeded` until `resets_at`; the request that reaches 80 % or 100 % of a limit
/// carries a `Tenantry-Quota-Warning` header.
#[utoipa::path(
    get, path = "/v1/quotas", tag = "tenant",
    security(("bearer" = ["usage:read"]), ("api_key" = ["usage:read"])),
    responses((status = 200, description = "The tenant's plan and quotas", body = Quotas))
)]
pub async fn get_quotas(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::UsageRead>,
) -> Result<Json<Quotas>, Error> {
    let quotas = state
        .db
        .read(&principal, async |tx| {
            quotas::overview(tx, &principal).await
        })
        .await?;
    Ok(Json(quotas))
}
