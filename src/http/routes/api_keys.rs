//! `/v1/api-keys`: create, list, read, revoke, take over.

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

use crate::{
    access::{Scope, scope},
    api_keys::{self, ApiKey, ApiKeyId, ApiKeyName, NewApiKey},
    error::Error,
    http::{
        AppState,
        auth::Authorized,
        extract::{ApiPath, ApiQuery, ValidJson},
        pagination::PageParams,
        problem::Problem,
    },
    page::{Page, PageRequest},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_api_keys, create_api_key))
        .routes(routes!(get_api_key, revoke_api_key))
        .routes(routes!(take_over_api_key))
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
) -> Result<Json<Page<ApiKey>>, Error> {
    let page = PageRequest::try_from(params)?;
    let keys = state
        .db
        .read(&principal, async |tx| {
            api_keys::list(tx, &principal, page).await
        })
        .await?;
    Ok(Json(keys))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    #[schema(value_type = ApiKeyName)]
    pub name: String,
    /// At most the caller's own scopes.
    #[schema(value_type = Vec<Scope>, example = json!(["orders:read", "orders:write"]), min_items = 1, max_items = 32)]
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

/// Creates an API key with at most the caller's scopes. The `key` is shown only here. The
/// key answers to its creator (a user, or the key creating it): on every request it holds
/// at most the creator's current scopes, and stops working while the creator is
/// deactivated or revoked (see `take-over`).
#[utoipa::path(
    post, path = "/v1/api-keys", tag = "api-keys",
    request_body = CreateApiKey,
    security(("bearer" = ["api_keys:write"]), ("api_key" = ["api_keys:write"])),
    responses(
        (status = 201, description = "Created; `key` is the secret", body = CreatedApiKey),
        (status = 403, description = "A scope the caller does not hold (`scope_escalation`); a service token, which cannot create keys (`creator_required`)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`expires_at` is not in the future (`expiry_in_past`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_api_key(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::ApiKeysWrite>,
    ValidJson(body): ValidJson<CreateApiKey>,
) -> Result<Response, Error> {
    let new = NewApiKey {
        name: body.name,
        scopes: api_keys::parse_scopes(&body.scopes)?,
        expires_at: body.expires_at,
    };
    let created = state
        .db
        .write(&principal, async |tx| {
            api_keys::create(tx, &principal, &state.auth.hasher, new).await
        })
        .await?;
    let body = CreatedApiKey {
        api_key: created.api_key,
        key: created.secret.expose_secret().to_owned(),
    };
    Ok((StatusCode::CREATED, Json(body)).into_response())
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
) -> Result<Json<ApiKey>, Error> {
    let key = state
        .db
        .read(&principal, async |tx| {
            api_keys::get(tx, &principal, id).await
        })
        .await?;
    Ok(Json(key))
}

/// Revokes an API key; it is refused from the next request on, and so are the keys it
/// created. Idempotent. The caller must hold every scope of the key.
#[utoipa::path(
    delete, path = "/v1/api-keys/{id}", tag = "api-keys",
    params(("id" = ApiKeyId, Path, description = "API key id")),
    security(("bearer" = ["api_keys:write"]), ("api_key" = ["api_keys:write"])),
    responses(
        (status = 204, description = "Revoked"),
        (status = 403, description = "The caller lacks a scope of the key (`scope_escalation`): revoking takes every scope it holds", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn revoke_api_key(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::ApiKeysWrite>,
    ApiPath(id): ApiPath<ApiKeyId>,
) -> Result<StatusCode, Error> {
    state
        .db
        .write(&principal, async |tx| {
            api_keys::revoke(tx, &principal, id).await
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Makes the calling user the key's creator: the key answers to them from now on, with at
/// most their scopes. How an owner keeps an integration running when the user who created
/// its key is deactivated (or the key that created it is revoked): such a key is refused
/// until someone takes it over. The caller must be a user (not a key or a service token)
/// holding every scope of the key.
#[utoipa::path(
    post, path = "/v1/api-keys/{id}/take-over", tag = "api-keys",
    params(("id" = ApiKeyId, Path, description = "API key id")),
    security(("bearer" = ["api_keys:write"])),
    responses(
        (status = 200, description = "Taken over: it answers to the caller now", body = ApiKey),
        (status = 403, description = "Not a user (`user_required`), or lacking a scope of the key (`scope_escalation`)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The key is revoked (`api_key_revoked`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn take_over_api_key(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::ApiKeysWrite>,
    ApiPath(id): ApiPath<ApiKeyId>,
) -> Result<Json<ApiKey>, Error> {
    let key = state
        .db
        .write(&principal, async |tx| {
            api_keys::take_over(tx, &principal, id).await
        })
        .await?;
    Ok(Json(key))
}
