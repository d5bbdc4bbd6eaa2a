//! `GET/PATCH /v1/tenant`: the authenticated tenant's own profile.

use axum::response::Response;
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use validator::Validate;

use super::{Tenant, parse_name, store};
use crate::{
    audit::{self, AuditEvent},
    auth::{Authorized, scope},
    db::Access,
    http::{
        AppState,
        error::ApiError,
        etag::{Preconditions, with_etag},
        extract::ValidJson,
    },
};

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
    state: axum::extract::State<AppState>,
    Authorized(principal, ..): Authorized<scope::TenantRead>,
    preconditions: Preconditions,
) -> Result<Response, ApiError> {
    let mut tx = state.db.tenant(&principal, Access::ReadOnly).await?;
    let tenant = store::find(&mut tx, principal.tenant_id())
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    tx.commit().await?;
    Ok(preconditions.read_response(tenant.version, tenant))
}

#[derive(Debug, Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTenant {
    /// New display name.
    #[schema(example = "Acme Corporation")]
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
        (status = 412, description = "`If-Match` is stale", body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_tenant(
    state: axum::extract::State<AppState>,
    Authorized(principal, ..): Authorized<scope::TenantWrite>,
    preconditions: Preconditions,
    ValidJson(body): ValidJson<UpdateTenant>,
) -> Result<Response, ApiError> {
    let name = body.name.as_deref().map(parse_name).transpose()?;
    let mut tx = state.db.tenant(&principal, Access::ReadWrite).await?;
    let current = store::find_for_update(&mut tx, principal.tenant_id())
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    preconditions.check_write(current.version)?;
    let updated = match name {
        Some(name) if name != current.name => {
            let updated = store::rename(&mut tx, principal.tenant_id(), &name).await?;
            audit::record(
                &mut tx,
                &principal,
                AuditEvent::new("tenant.updated", "tenant", updated.id)
                    .data(serde_json::json!({"name": name})),
            )
            .await?;
            updated
        }
        _ => current,
    };
    tx.commit().await?;
    Ok(with_etag(updated.version, updated))
}
