//! `GET/PATCH /v1/tenant`: the authenticated tenant's own profile.

use axum::{extract::State, response::Response};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    access::scope,
    error::Error,
    http::{
        AppState,
        auth::Authorized,
        etag::{Preconditions, with_etag},
        extract::ValidJson,
        problem::Problem,
    },
    rule::DisplayName,
    tenancy::{
        Tenant,
        profile::{self, ProfileChanges},
    },
};
use crate::{cache, http::cached::read_through};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(get_tenant, update_tenant))
}

/// The tenant of the calling credential.
#[utoipa::path(
    get, path = "/v1/tenant", tag = "tenant",
    security(("bearer" = ["tenant:read"]), ("api_key" = ["tenant:read"])),
    responses(
        (status = 200, description = "The tenant", body = Tenant, headers(("ETag" = String))),
        (status = 304, description = "Not modified since the `If-None-Match` version"),
    )
)]
pub async fn get_tenant(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::TenantRead>,
    preconditions: Preconditions,
) -> Result<Response, Error> {
    read_through(
        &state,
        &principal,
        &preconditions,
        cache::kind::TENANT,
        principal.tenant_id().as_uuid(),
        |state, principal| async move {
            state
                .db
                .read(&principal, async |tx| profile::get(tx, &principal).await)
                .await
        },
    )
    .await
}

/// The fields to change; omitted (or `null`) fields keep their value.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// New display name.
    #[schema(value_type = Option<DisplayName>)]
    pub name: Option<String>,
}

/// Renames the tenant. Send `If-Match` with the `ETag` you read to avoid overwriting a
/// concurrent change (412 if it moved on). Plan and status are the operator's to change.
#[utoipa::path(
    patch, path = "/v1/tenant", tag = "tenant",
    security(("bearer" = ["tenant:write"]), ("api_key" = ["tenant:write"])),
    request_body = UpdateTenant,
    responses(
        (status = 200, description = "The updated tenant", body = Tenant, headers(("ETag" = String))),
        (status = 412, description = "`If-Match` is stale, or weak (`W/\"…\"`: it compares strongly)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_tenant(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::TenantWrite>,
    preconditions: Preconditions,
    ValidJson(body): ValidJson<UpdateTenant>,
) -> Result<Response, Error> {
    let changes = ProfileChanges { name: body.name };
    let tenant = state
        .db
        .write(&principal, async |tx| {
            profile::update(tx, &principal, &preconditions.expected(), changes).await
        })
        .await?;
    Ok(with_etag(tenant.version, tenant))
}
