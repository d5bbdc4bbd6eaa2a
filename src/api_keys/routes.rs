//! `/v1/api-keys`: create, list, read, revoke.

use axum::{
    Json,
    extract::State,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use validator::Validate;

use super::{ApiKey, ApiKeyId, store};
use crate::{
    audit::{self, AuditEvent},
    auth::{
        Authorized, Scope, Scopes, scope,
        token::{OpaqueToken, TokenKind},
    },
    db::Access,
    http::{
        AppState,
        error::{ApiError, FieldError},
        extract::{ApiPath, ApiQuery, ValidJson},
        pagination::{Page, PageParams, PageRequest},
    },
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(get_api_key, revoke_api_key))
}

/// API keys of the tenant, newest first (revoked ones included, marked `revoked_at`).
#[utoipa::path(
    get, path = "/v1/api-keys", tag = "api-keys",
    params(PageParams),
    security(("bearer" = ["api_keys:read"]), ("api_key" = ["api_keys:read"])),
    responses((status = 200, description = "A page of API keys", body = Page<ApiKey>))
)]
pub async fn list_api_keys(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::ApiKeysRead>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<ApiKey>>, ApiError> {
    let page = PageRequest::try_from(params)?;
    let mut tx = state.db.tenant(&principal, Access::ReadOnly).await?;
    let rows = store::list(&mut tx, page).await?;
    tx.commit().await?;
    Ok(Json(Page::from_rows(rows, page, |k| k.id.as_uuid())))
}

#[derive(Deserialize, Validate, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    #[schema(example = "checkout-service")]
    #[validate(length(min = 1, max = 100, message = "must be 1-100 characters"))]
    pub name: String,
    /// At most the caller's own scopes.
    #[schema(example = json!(["orders:read", "orders:write"]))]
    #[validate(length(min = 1, max = 32, message = "must list 1-32 scopes"))]
    pub scopes: Vec<String>,
    /// Optional expiry, in the future (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = "2027-01-01T00:00:00Z")]
    pub expires_at: Option<OffsetDateTime>,
}

#[derive(Serialize, ToSchema)]
pub struct CreatedApiKey {
    #[serde(flatten)]
    pub api_key: ApiKey,
    /// The secret key. Shown only in this response: store it now.
    #[schema(example = "tnty_AZN6Xnwaez6aUi8NPEtaaQGTel58Gnszmp…")]
    pub key: String,
}

/// Creates an API key with at most the caller's scopes. The `key` is shown only here.
#[utoipa::path(
    post, path = "/v1/api-keys", tag = "api-keys",
    request_body = CreateApiKey,
    security(("bearer" = ["api_keys:write"]), ("api_key" = ["api_keys:write"])),
    responses((status = 201, description = "Created; `key` is the secret", body = CreatedApiKey))
)]
pub async fn create_api_key(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::ApiKeysWrite>,
    ValidJson(body): ValidJson<CreateApiKey>,
) -> Result<Response, ApiError> {
    let scopes = parse_scopes(&body.scopes)?;
    if !scopes.is_subset_of(principal.scopes()) {
        let extra: Vec<_> = scopes
            .iter()
            .filter(|s| !principal.scopes().contains(*s))
            .map(Scope::as_str)
            .collect();
        return Err(ApiError::forbidden(
            "scope_escalation",
            format!(
                "you cannot grant scopes you do not hold: {}",
                extra.join(" ")
            ),
        ));
    }
    if body
        .expires_at
        .is_some_and(|at| at <= OffsetDateTime::now_utc())
    {
        return Err(ApiError::invalid("expires_at", "must be in the future"));
    }
    let name = body.name.trim();
    if name.is_empty() {
        return Err(ApiError::invalid("name", "must be 1-100 characters"));
    }

    let token = OpaqueToken::generate(TokenKind::ApiKey, principal.tenant_id());
    let mut tx = state.db.tenant(&principal, Access::ReadWrite).await?;
    let api_key = store::insert(
        &mut tx,
        store::NewApiKey {
            tenant_id: principal.tenant_id(),
            id: ApiKeyId::from_uuid(token.id),
            name,
            hint: &token.hint(),
            secret_hash: &state.auth.hasher.hash(&token),
            scopes,
            created_by: &principal.actor().to_string(),
            expires_at: body.expires_at,
        },
    )
    .await?;
    audit::record(
        &mut tx,
        &principal,
        AuditEvent::new("api_key.created", "api_key", api_key.id)
            .data(serde_json::json!({"scopes": api_key.scopes})),
    )
    .await?;
    tx.commit().await?;
    let key = token.encode().expose_secret().to_owned();
    Ok((StatusCode::CREATED, Json(CreatedApiKey { api_key, key })).into_response())
}

fn parse_scopes(names: &[String]) -> Result<Scopes, ApiError> {
    let mut errors = Vec::new();
    let scopes = names
        .iter()
        .enumerate()
        .filter_map(|(i, name)| match name.parse::<Scope>() {
            Ok(scope) => Some(scope),
            Err(e) => {
                errors.push(FieldError::new(format!("scopes[{i}]"), e.to_string()));
                None
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(scopes)
    } else {
        Err(ApiError::Validation(errors))
    }
}

/// One API key (without its secret).
#[utoipa::path(
    get, path = "/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = ApiKeyId, Path, description = "API key id")),
    security(("bearer" = ["api_keys:read"]), ("api_key" = ["api_keys:read"])),
    responses((status = 200, description = "The API key", body = ApiKey))
)]
pub async fn get_api_key(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::ApiKeysRead>,
    ApiPath(id): ApiPath<ApiKeyId>,
) -> Result<Json<ApiKey>, ApiError> {
    let mut tx = state.db.tenant(&principal, Access::ReadOnly).await?;
    let key = store::find(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("API key"))?;
    tx.commit().await?;
    Ok(Json(key))
}

/// Revokes an API key; it is refused from the next request on. Idempotent.
#[utoipa::path(
    delete, path = "/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = ApiKeyId, Path, description = "API key id")),
    security(("bearer" = ["api_keys:write"]), ("api_key" = ["api_keys:write"])),
    responses((status = 204, description = "Revoked"))
)]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::ApiKeysWrite>,
    ApiPath(id): ApiPath<ApiKeyId>,
) -> Result<StatusCode, ApiError> {
    let mut tx = state.db.tenant(&principal, Access::ReadWrite).await?;
    store::revoke(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("API key"))?;
    audit::record(
        &mut tx,
        &principal,
        AuditEvent::new("api_key.revoked", "api_key", id),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
