//! `/v1/platform/usage`: a period's billing lines for every tenant (or one), streamed.

use axum::{extract::State, response::Response};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    access::Operator,
    billing::{self, Format, Line, Period},
    error::Error,
    http::{AppState, extract::ApiQuery, problem::Problem, streaming},
    platform,
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export_usage))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ExportQuery {
    /// The period: a calendar month (UTC).
    #[param(pattern = "^[0-9]{4}-(0[1-9]|1[0-2])$", example = "2026-11")]
    pub period: String,
    /// `jsonl` (default; one JSON object per line) or `csv` (with a header row).
    #[param(inline)]
    pub format: Option<Format>,
    /// Only this tenant (slug or id).
    #[param(
        min_length = 1,
        max_length = 63,
        pattern = "^[^\\u0000]*$",
        example = "acme"
    )]
    pub tenant: Option<String>,
}

/// A period's usage as billing lines: one per tenant, metric (and currency, for order
/// value) with its quantity, unit and the tenant's plan, and a `line_id` that is the same in
/// every export of the period — de-duplicate on it. A closed period (`tenantry billing
/// close`) exports the same bytes every time (`status: closed`); an open one, the usage
/// counted so far (`status: open`). Streamed as it is read; the export is recorded in the
/// platform's audit log once complete.
#[utoipa::path(
    get, path = "/v1/platform/usage", tag = "platform",
    params(ExportQuery),
    security(("operator" = [])),
    responses(
        (status = 200, description = "The period's lines, one per line (JSON, or CSV after a header row)",
            content(
                (Line = "application/x-ndjson"),
                (String = "text/csv", example = "line_id,period,tenant_id,tenant,plan,metric,currency,quantity,unit,status\n5c1f0a6e-93a4-2b7d-8e3f-0d41c2f6a9b7,2026-11,0193a4f2-8f7e-7c55-b0e4-4b3f1e9d2a61,acme,pro,api_calls,,18250,call,closed\n"),
            )),
        (status = 422, description = "No such tenant (`tenant_not_found`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn export_usage(
    State(state): State<AppState>,
    operator: Operator,
    ApiQuery(query): ApiQuery<ExportQuery>,
) -> Result<Response, Error> {
    let period = Period::parse(&query.period, "period").map_err(|_| {
        Error::malformed(
            "invalid_query",
            "invalid query parameter period: must be a month such as 2026-11 (YYYY-MM)",
        )
    })?;
    let format = query.format.unwrap_or_default();
    let tenant = match &query.tenant {
        Some(reference) => {
            let tenant = platform::find_tenant(&state.db, &operator, reference)
                .await?
                .ok_or_else(|| {
                    Error::refused_field(
                        "tenant_not_found",
                        "tenant",
                        format!("no tenant {reference:?}"),
                    )
                })?;
            Some(tenant.id)
        }
        None => None,
    };
    let (sender, lines) = tokio::sync::mpsc::channel::<Line>(64);
    tokio::spawn(async move {
        let exported = async {
            let mut tx = state.db.platform().await?;
            billing::export(&mut tx, &operator, period, tenant, format, &sender).await?;
            tx.commit().await
        };
        if let Err(error) = exported.await {
            tracing::warn!(%error, "the billing export ended early");
        }
    });
    Ok(streaming::lines(
        lines,
        format.header(),
        move |line| format.encode(line),
        format.media_type(),
    ))
}
