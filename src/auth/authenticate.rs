//! Turning a request's credential into a [`Principal`].
//!
//! Signature and claims are checked before any query runs. Then one read-only query, under
//! the credential's tenant context, confirms what a signature cannot: the tenant exists and
//! is active, the login session is not revoked, the user is still active (and still has
//! the role the token was issued for), the API key is neither revoked nor expired.

use axum::http::{HeaderMap, header};
use sqlx::FromRow;
use time::OffsetDateTime;

use super::{
    Actor, Principal, Role, Scopes,
    session::SessionId,
    token::{OpaqueToken, TokenKind},
};
use crate::{
    api_keys::ApiKeyId,
    db::{Access, TenantTx},
    http::{AppState, error::ApiError},
    tenancy::{TenantId, TenantStatus},
    users::{UserId, UserStatus},
};

pub(super) async fn authenticate(
    headers: &HeaderMap,
    state: &AppState,
) -> Result<Principal, ApiError> {
    let credential = credential(headers)?;
    if credential.starts_with(TokenKind::ApiKey.prefix()) {
        verify_api_key(credential, state).await
    } else {
        verify_access_token(credential, state).await
    }
}

/// `X-API-Key: <key>` or `Authorization: Bearer <credential>`.
fn credential(headers: &HeaderMap) -> Result<&str, ApiError> {
    if let Some(key) = headers.get("x-api-key") {
        return key
            .to_str()
            .map(str::trim)
            .map_err(|_| ApiError::Unauthenticated("malformed X-API-Key header".into()));
    }
    let value = headers
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::Unauthenticated(
                "send `Authorization: Bearer <token>` or `X-API-Key: <key>`".into(),
            )
        })?
        .to_str()
        .map_err(|_| ApiError::Unauthenticated("malformed Authorization header".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(token.trim())
        }
        _ => Err(ApiError::Unauthenticated(
            "the Authorization scheme must be Bearer".into(),
        )),
    }
}

#[derive(FromRow)]
struct AccessCheck {
    tenant_status: TenantStatus,
    session_live: Option<bool>,
    user_id: Option<UserId>,
    user_status: Option<UserStatus>,
    role: Option<Role>,
}

async fn verify_access_token(token: &str, state: &AppState) -> Result<Principal, ApiError> {
    let claims = state.auth.jwt.verify(token).map_err(|error| {
        tracing::debug!(%error, "access token refused");
        ApiError::Unauthenticated(
            format!("invalid access token: {}", describe_jwt_error(&error)).into(),
        )
    })?;
    let scopes = Scopes::parse_claim(&claims.scope)
        .map_err(|e| ApiError::Unauthenticated(format!("invalid access token: {e}").into()))?;
    let tenant_id = TenantId::from_uuid(claims.tid);
    let session_id = claims.sid.map(SessionId::from_uuid);

    let mut tx =
        TenantTx::begin_for_credential_check(&state.db, tenant_id, Access::ReadOnly).await?;
    let check: Option<AccessCheck> = sqlx::query_as(
        r#"
        select t.status as tenant_status,
               s.revoked_at is null and s.expires_at > now() as session_live,
               u.id as user_id, u.status as user_status, u.role
        from tenants t
        left join sessions s on s.tenant_id = t.id and s.id = $2
        left join users u on u.tenant_id = s.tenant_id and u.id = s.user_id
        where t.id = $1
        "#,
    )
    .bind(tenant_id)
    .bind(session_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;

    let check = check
        .ok_or_else(|| ApiError::Unauthenticated("invalid access token: unknown tenant".into()))?;
    if check.tenant_status == TenantStatus::Suspended {
        return Err(ApiError::TenantSuspended);
    }
    let Some(session_id) = session_id else {
        // Minted by an operator with the signing key: trusted for its lifetime.
        return Ok(Principal {
            tenant_id,
            actor: Actor::Service(claims.sub),
            scopes,
            session_id: None,
        });
    };
    match (
        check.session_live,
        check.user_id,
        check.user_status,
        check.role,
    ) {
        (Some(true), Some(user_id), Some(UserStatus::Active), Some(role))
            if user_id.to_string() == claims.sub =>
        {
            Ok(Principal {
                tenant_id,
                actor: Actor::User(user_id),
                // A role change takes effect at once: never more than the current role grants.
                scopes: scopes.intersection(role.scopes()),
                session_id: Some(session_id),
            })
        }
        _ => Err(ApiError::Unauthenticated(
            "the session of this token has ended; log in again".into(),
        )),
    }
}

fn describe_jwt_error(error: &jsonwebtoken::errors::Error) -> &'static str {
    use jsonwebtoken::errors::ErrorKind;
    match error.kind() {
        ErrorKind::ExpiredSignature => "expired",
        ErrorKind::ImmatureSignature => "not yet valid",
        ErrorKind::InvalidIssuer => "wrong issuer",
        ErrorKind::InvalidAudience => "wrong audience",
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => "algorithm not accepted",
        ErrorKind::InvalidSignature => "bad signature",
        ErrorKind::MissingRequiredClaim(_) | ErrorKind::Json(_) => "missing or malformed claims",
        _ => "malformed token",
    }
}

#[derive(FromRow)]
struct KeyCheck {
    tenant_status: TenantStatus,
    secret_hash: Vec<u8>,
    scopes: Vec<String>,
    expires_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
}

/// API keys are verified here: parsed, looked up by `(tenant, id)` under the tenant's RLS
/// context, the secret's HMAC compared in constant time, then revocation and expiry.
async fn verify_api_key(presented: &str, state: &AppState) -> Result<Principal, ApiError> {
    let invalid = || ApiError::Unauthenticated("invalid API key".into());
    let token = OpaqueToken::parse(TokenKind::ApiKey, presented).ok_or_else(invalid)?;

    let mut tx =
        TenantTx::begin_for_credential_check(&state.db, token.tenant_id, Access::ReadOnly).await?;
    let check: Option<KeyCheck> = sqlx::query_as(
        r#"
        select t.status as tenant_status, k.secret_hash, k.scopes, k.expires_at, k.revoked_at
        from api_keys k join tenants t on t.id = k.tenant_id
        where k.tenant_id = $1 and k.id = $2
        "#,
    )
    .bind(token.tenant_id)
    .bind(token.id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;

    let check = check.ok_or_else(invalid)?;
    if !state.auth.hasher.verify(&token, &check.secret_hash) {
        return Err(invalid());
    }
    if check.revoked_at.is_some() {
        return Err(ApiError::Unauthenticated(
            "this API key has been revoked".into(),
        ));
    }
    if check
        .expires_at
        .is_some_and(|at| at <= OffsetDateTime::now_utc())
    {
        return Err(ApiError::Unauthenticated("this API key has expired".into()));
    }
    if check.tenant_status == TenantStatus::Suspended {
        return Err(ApiError::TenantSuspended);
    }
    let scopes = check.scopes.iter().filter_map(|s| s.parse().ok()).collect();
    Ok(Principal {
        tenant_id: token.tenant_id,
        actor: Actor::ApiKey(ApiKeyId::from_uuid(token.id)),
        scopes,
        session_id: None,
    })
}
