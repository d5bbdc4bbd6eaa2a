//! `/v1/platform/tenants`: the operator API (the operator token, never a tenant credential).

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    access::Operator,
    error::Error,
    http::{
        AppState,
        etag::{Preconditions, with_etag},
        extract::{ApiPath, ApiQuery, ValidJson},
        pagination::PageParams,
        problem::Problem,
    },
    page::{Page, PageRequest},
    plans::{Overrides, TenantLimits},
    platform::{self, CreatedTenant, NewTenant, TenantChanges},
    rule::DisplayName,
    tenancy::{Plan, Slug, Tenant, TenantId, TenantStatus},
    users::{Email, password::NewPassword},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_tenants, create_tenant))
        .routes(routes!(get_tenant, update_tenant))
        .routes(routes!(get_tenant_limits, override_tenant_limits))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTenant {
    /// Unique across tenants; names the tenant at login.
    #[schema(value_type = Slug)]
    pub slug: String,
    #[schema(value_type = DisplayName)]
    pub name: String,
    /// `free` when omitted; one of the plans (`GET /v1/platform/plans`).
    #[schema(value_type = Option<Plan>)]
    pub plan: Option<String>,
    #[schema(value_type = Email)]
    pub owner_email: String,
    /// Omit it to have one generated and returned once.
    #[schema(value_type = Option<NewPassword>)]
    pub owner_password: Option<SecretString>,
}

/// Creates a tenant and its owner.
#[utoipa::path(
    post, path = "/v1/platform/tenants", tag = "platform",
    request_body = CreateTenant,
    security(("operator" = [])),
    responses(
        (status = 201, description = "Created", body = CreatedTenant),
        (status = 409, description = "Slug taken (`slug_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No such plan (`plan_not_found`)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Too many password hashes in progress (`password_hashing_busy`); retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn create_tenant(
    State(state): State<AppState>,
    operator: Operator,
    ValidJson(body): ValidJson<CreateTenant>,
) -> Result<Response, Error> {
    let new = NewTenant::parse(
        &state.auth.passwords,
        &body.slug,
        &body.name,
        body.plan.as_deref(),
        &body.owner_email,
        body.owner_password,
    )
    .await?;
    let created = state
        .db
        .in_platform(async |tx| platform::create_tenant(tx, &operator, new).await)
        .await?;
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

/// All tenants, newest first.
#[utoipa::path(
    get, path = "/v1/platform/tenants", tag = "platform",
    params(PageParams),
    security(("operator" = [])),
    responses((status = 200, description = "A page of tenants", body = Page<Tenant>))
)]
pub async fn list_tenants(
    State(state): State<AppState>,
    operator: Operator,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<Tenant>>, Error> {
    let page = PageRequest::try_from(params)?;
    let tenants = state
        .db
        .in_platform(async |tx| platform::list_tenants(tx, &operator, page).await)
        .await?;
    Ok(Json(tenants))
}

/// One tenant.
#[utoipa::path(
    get, path = "/v1/platform/tenants/{tenant_id}", tag = "platform",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    security(("operator" = [])),
    responses((status = 200, description = "The tenant", body = Tenant, headers(("ETag" = String))))
)]
pub async fn get_tenant(
    State(state): State<AppState>,
    operator: Operator,
    ApiPath(id): ApiPath<TenantId>,
    preconditions: Preconditions,
) -> Result<Response, Error> {
    let tenant = state
        .db
        .in_platform(async |tx| platform::get_tenant(tx, &operator, id).await)
        .await?;
    Ok(preconditions.read_response(tenant.version, tenant))
}

/// The fields to change; omitted (or `null`) fields keep their value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenantAsOperator {
    #[schema(value_type = Option<DisplayName>)]
    pub name: Option<String>,
    /// One of the plans (`GET /v1/platform/plans`).
    #[schema(value_type = Option<Plan>)]
    pub plan: Option<String>,
    /// `suspended` refuses every credential of the tenant with 403 `tenant_suspended`.
    pub status: Option<TenantStatus>,
}

/// Changes a tenant's name, plan or status (suspend / reactivate).
#[utoipa::path(
    patch, path = "/v1/platform/tenants/{tenant_id}", tag = "platform",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    request_body = UpdateTenantAsOperator,
    security(("operator" = [])),
    responses(
        (status = 200, description = "The updated tenant", body = Tenant, headers(("ETag" = String))),
        (status = 412, description = "`If-Match` is stale, or weak (`W/\"…\"`: it compares strongly)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The platform's own audit log, which is not a tenant to change (`reserved_tenant`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "No such plan (`plan_not_found`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_tenant(
    State(state): State<AppState>,
    operator: Operator,
    ApiPath(id): ApiPath<TenantId>,
    preconditions: Preconditions,
    ValidJson(body): ValidJson<UpdateTenantAsOperator>,
) -> Result<Response, Error> {
    let changes = TenantChanges {
        name: body.name,
        plan: body.plan.as_deref().map(Plan::parse).transpose()?,
        status: body.status,
    };
    let tenant = state
        .db
        .in_platform(async |tx| {
            platform::update_tenant(tx, &operator, id, &preconditions.expected(), changes).await
        })
        .await?;
    Ok(with_etag(tenant.version, tenant))
}

/// A tenant's plan, the limits the operator set for it, and its effective limits.
#[utoipa::path(
    get, path = "/v1/platform/tenants/{tenant_id}/limits", tag = "platform",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    security(("operator" = [])),
    responses((status = 200, description = "The tenant's limits", body = TenantLimits))
)]
pub async fn get_tenant_limits(
    State(state): State<AppState>,
    operator: Operator,
    ApiPath(id): ApiPath<TenantId>,
) -> Result<Json<TenantLimits>, Error> {
    let limits = state
        .db
        .in_platform(async |tx| platform::tenant_limits(tx, &operator, id).await)
        .await?;
    Ok(Json(limits))
}

/// Sets the limits of one tenant that differ from its plan's (the whole set: `{}` puts the
/// tenant back on its plan's limits). A number, or `null` for unlimited. Takes effect on
/// the tenant's next request; recorded in the tenant's audit log with before and after.
#[utoipa::path(
    put, path = "/v1/platform/tenants/{tenant_id}/limits", tag = "platform",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    request_body = Overrides,
    security(("operator" = [])),
    responses(
        (status = 200, description = "The tenant's limits now", body = TenantLimits),
        (status = 403, description = "The platform's own audit log, which is not a tenant to change (`reserved_tenant`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn override_tenant_limits(
    State(state): State<AppState>,
    operator: Operator,
    ApiPath(id): ApiPath<TenantId>,
    ValidJson(overrides): ValidJson<Overrides>,
) -> Result<Json<TenantLimits>, Error> {
    let limits = state
        .db
        .in_platform(async |tx| platform::override_limits(tx, &operator, id, overrides).await)
        .await?;
    Ok(Json(limits))
}
