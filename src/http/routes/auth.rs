//! `/v1/auth/*` (login, refresh, logout), `/v1/me` and `/.well-known/jwks.json`.

use axum::{Json, extract::State, http::StatusCode};
use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    access::Principal,
    auth::{
        caller::{self, Me},
        login::{self, LoginAttempt, TokenPair},
    },
    error::Error,
    http::{AppState, client_ip::ClientIp, extract::ValidJson, problem::Problem},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(login))
        .routes(routes!(refresh))
        .routes(routes!(logout))
        .routes(routes!(get_me))
        .routes(routes!(get_jwks))
}

/// What a login names is checked only for its length: any tenant, email and password of a
/// sane length gets the same 401 when wrong, so the shape of a guess tells nothing.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    /// The tenant's slug (or id).
    #[schema(example = "acme", min_length = 1, max_length = 100)]
    pub tenant: String,
    #[schema(example = "owner@acme.test", min_length = 1, max_length = 320)]
    pub email: String,
    #[schema(value_type = String, format = Password, example = "correct horse battery staple", min_length = 1, max_length = 1024)]
    pub password: SecretString,
}

/// Logs a user in with their tenant, email and password. Every failure is the same 401
/// `invalid_credentials`, in the same time, whether or not the account exists.
///
/// Failed logins are throttled per client address and per account (tenant and email,
/// whether or not it exists): past a few free failures each is locked out for a growing
/// delay, and any attempt meanwhile — even with the right password — is refused with 429
/// `too_many_attempts` before the password is checked. When too many password checks
/// are already running or waiting, the login is refused with 503 `password_hashing_busy`.
#[utoipa::path(
    post, path = "/v1/auth/login", tag = "auth",
    request_body = LoginRequest,
    responses(
        (status = 200, description = "Signed in", body = TokenPair),
        (status = 401, description = "Wrong tenant, email or password, or a deactivated user (`invalid_credentials`) — which one is never said", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The tenant is suspended (`tenant_suspended`)", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many failed logins from this client or for this account (`too_many_attempts`); retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds until the lock-out ends"))),
        (status = 503, description = "Too many password checks in progress (`password_hashing_busy`); retry after `Retry-After` seconds", body = Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait before retrying"))),
    )
)]
pub async fn login(
    State(state): State<AppState>,
    ClientIp(client): ClientIp,
    ValidJson(body): ValidJson<LoginRequest>,
) -> Result<Json<TokenPair>, Error> {
    login::login(
        &state.db,
        &state.auth,
        LoginAttempt {
            tenant: &body.tenant,
            email: &body.email,
            password: body.password,
            client,
        },
    )
    .await
    .map(Json)
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    /// The `refresh_token` of the last token pair.
    #[schema(
        example = "tntyrt_AZN6Xnwaez6aUi8NPEtaaQGTel58Gnszmp…",
        min_length = 1,
        max_length = 200
    )]
    pub refresh_token: String,
}

/// Exchanges a refresh token for a new token pair. Each refresh token works once; using
/// one twice revokes the whole session (theft detection) — except a retry soon after the
/// exchange (`REFRESH_TOKEN_REUSE_INTERVAL`, 30 s by default) and before the new refresh
/// token is used, which answers the same pair again, for a client whose answer was lost.
#[utoipa::path(
    post, path = "/v1/auth/refresh", tag = "auth",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "A new token pair", body = TokenPair),
        (status = 401, description = "The refresh token is malformed, unknown, expired, already used (which revokes its session) or of an ended session (`unauthenticated`)", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "The tenant is suspended (`tenant_suspended`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn refresh(
    State(state): State<AppState>,
    ValidJson(body): ValidJson<RefreshRequest>,
) -> Result<Json<TokenPair>, Error> {
    login::refresh(&state.db, &state.auth, &body.refresh_token)
        .await
        .map(Json)
}

/// Ends the session of the calling access token: its refresh tokens and access tokens
/// stop working.
#[utoipa::path(
    post, path = "/v1/auth/logout", tag = "auth",
    security(("bearer" = [])),
    responses((status = 204, description = "Logged out"))
)]
pub async fn logout(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<StatusCode, Error> {
    state
        .db
        .write(&principal, async |tx| login::logout(tx, &principal).await)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Who the calling credential is: tenant, actor and scopes.
#[utoipa::path(
    get, path = "/v1/me", tag = "auth",
    security(("bearer" = []), ("api_key" = [])),
    responses((status = 200, description = "The caller", body = Me))
)]
pub async fn get_me(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<Me>, Error> {
    let me = state
        .db
        .read(&principal, async |tx| caller::me(tx, &principal).await)
        .await?;
    Ok(Json(me))
}

#[derive(Serialize, ToSchema)]
pub struct Jwks {
    /// Public keys that verify access tokens (EdDSA). Empty while tokens are signed with a
    /// shared HS256 secret, which is never published.
    #[schema(value_type = Vec<Object>, example = json!([{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k", "alg": "EdDSA", "use": "sig"}]))]
    pub keys: Vec<serde_json::Value>,
}

/// The JSON Web Key Set for verifying access tokens.
#[utoipa::path(
    get, path = "/.well-known/jwks.json", tag = "auth",
    responses((status = 200, description = "The key set", body = Jwks))
)]
pub async fn get_jwks(State(state): State<AppState>) -> Json<Jwks> {
    Json(Jwks {
        keys: state.auth.jwt.jwks(),
    })
}
