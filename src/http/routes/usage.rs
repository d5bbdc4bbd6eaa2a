//! `/v1/usage`: what the tenant used, by metric, bucketed by hour, day or month.

use axum::{Json, extract::State};
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    access::scope,
    error::Error,
    http::{AppState, auth::Authorized, extract::ApiQuery, problem::Problem},
    usage::{
        Metric,
        report::{self, Granularity, Span, UsageReport},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_usage))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct UsageQuery {
    /// Usage at or after this time (RFC 3339). Default: the start of the month (UTC) `to`
    /// falls in.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime, example = "2026-11-01T00:00:00Z")]
    pub from: Option<OffsetDateTime>,
    /// Usage before this time (RFC 3339). Default: now.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime, example = "2026-12-01T00:00:00Z")]
    pub to: Option<OffsetDateTime>,
    /// The bucket size (UTC): `hour` (spans up to 31 days), `day` (default; up to 366
    /// days) or `month` (up to ten years).
    #[param(inline)]
    pub granularity: Option<Granularity>,
    /// Only this metric.
    #[param(inline)]
    pub metric: Option<Metric>,
}

/// The tenant's usage from `from` to `to`: one series per metric and dimensions (API calls
/// by credential, route group and status class; order value by currency), each with its
/// non-empty buckets and total. Orders and their value are counted in the transaction that
/// places the order; API calls and active users are counted by each server in memory and
/// written every few seconds (`TENANTRY_USAGE_FLUSH_INTERVAL`), so the latest calls may
/// not show yet.
#[utoipa::path(
    get, path = "/v1/usage", tag = "tenant",
    params(UsageQuery),
    security(("bearer" = ["usage:read"]), ("api_key" = ["usage:read"])),
    responses(
        (status = 200, description = "The tenant's usage over the span", body = UsageReport),
        (status = 422, description = "`from` is not before `to` (`invalid_span`), or the span is longer than its granularity allows (`span_too_long`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn get_usage(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::UsageRead>,
    ApiQuery(query): ApiQuery<UsageQuery>,
) -> Result<Json<UsageReport>, Error> {
    let span = Span {
        from: query.from,
        to: query.to,
        granularity: query.granularity.unwrap_or_default(),
        metric: query.metric,
    };
    let usage = state
        .db
        .read(&principal, async |tx| {
            report::report(tx, &principal, span).await
        })
        .await?;
    Ok(Json(usage))
}
