//! `/v1/platform/plans`: the plans tenants are on, and the limits each sets (the operator
//! token).

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    access::Operator,
    db::Change,
    error::Error,
    http::{
        AppState,
        etag::{Preconditions, with_etag},
        extract::{ApiPath, ValidJson},
        problem::Problem,
    },
    plans::{self, Limits, NewPlan, Overrides, Plan, PlanChanges, PlanDisplayName, PlanName},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_plans, create_plan))
        .routes(routes!(get_plan, update_plan))
}

/// Every plan, by name.
#[utoipa::path(
    get, path = "/v1/platform/plans", tag = "platform",
    security(("operator" = [])),
    responses((status = 200, description = "The plans", body = Vec<Plan>))
)]
pub async fn list_plans(
    State(state): State<AppState>,
    operator: Operator,
) -> Result<Json<Vec<Plan>>, Error> {
    let plans = state
        .db
        .in_platform(async |tx| plans::list(tx, &operator).await)
        .await?;
    Ok(Json(plans))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePlan {
    #[schema(value_type = PlanName)]
    pub name: String,
    #[schema(value_type = PlanDisplayName)]
    pub display_name: String,
    pub limits: Limits,
}

/// Creates a plan, with a value for every limit. Tenants may be put on it at once.
#[utoipa::path(
    post, path = "/v1/platform/plans", tag = "platform",
    request_body = CreatePlan,
    security(("operator" = [])),
    responses(
        (status = 201, description = "Created", body = Plan),
        (status = 409, description = "A plan has this name (`plan_exists`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_plan(
    State(state): State<AppState>,
    operator: Operator,
    ValidJson(body): ValidJson<CreatePlan>,
) -> Result<Response, Error> {
    let new = NewPlan {
        name: PlanName::parse(&body.name)?,
        display_name: body.display_name,
        limits: body.limits,
    };
    let plan = state
        .db
        .in_platform(async |tx| plans::create(tx, &operator, new).await)
        .await?;
    Ok((StatusCode::CREATED, Json(plan)).into_response())
}

/// One plan.
#[utoipa::path(
    get, path = "/v1/platform/plans/{plan}", tag = "platform",
    params(("plan" = PlanName, Path, description = "Plan name")),
    security(("operator" = [])),
    responses((status = 200, description = "The plan", body = Plan, headers(("ETag" = String))))
)]
pub async fn get_plan(
    State(state): State<AppState>,
    operator: Operator,
    ApiPath(name): ApiPath<String>,
    preconditions: Preconditions,
) -> Result<Response, Error> {
    let name = PlanName::parse(&name).map_err(|_| Error::not_found("plan"))?;
    let plan = state
        .db
        .in_platform(async |tx| plans::get(tx, &operator, &name).await)
        .await?;
    Ok(preconditions.read_response(plan.version, plan))
}

/// The fields to change; omitted (or `null`) fields keep their value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePlan {
    #[schema(value_type = Option<PlanDisplayName>)]
    pub display_name: Option<String>,
    /// The limits to change (the others keep their value).
    pub limits: Option<Overrides>,
}

/// Changes a plan's display name or limits: every tenant on the plan has the new limits
/// from its next request on. Send `If-Match` with the `ETag` you read.
#[utoipa::path(
    patch, path = "/v1/platform/plans/{plan}", tag = "platform",
    params(("plan" = PlanName, Path, description = "Plan name")),
    request_body = UpdatePlan,
    security(("operator" = [])),
    responses(
        (status = 200, description = "The plan now", body = Plan, headers(("ETag" = String))),
        (status = 412, description = "`If-Match` is stale (`precondition_failed`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_plan(
    State(state): State<AppState>,
    operator: Operator,
    ApiPath(name): ApiPath<String>,
    preconditions: Preconditions,
    ValidJson(body): ValidJson<UpdatePlan>,
) -> Result<Response, Error> {
    let name = PlanName::parse(&name).map_err(|_| Error::not_found("plan"))?;
    let changes = PlanChanges {
        display_name: body.display_name,
        limits: body.limits,
    };
    let plan = state
        .db
        .in_platform(async |tx| {
            // Every tenant's credential check reads its plan's rate limits.
            tx.changed(Change::AllCredentials);
            plans::update(tx, &operator, &name, &preconditions.expected(), changes).await
        })
        .await?;
    Ok(with_etag(plan.version, plan))
}
