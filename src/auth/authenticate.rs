//! Turning a presented credential into a [`Principal`]: API keys and access tokens are
//! verified here, whatever transport carried them.
//!
//! Signature and claims are checked before any query runs. Then one read-only query, under
//! the credential's tenant context, confirms what a signature cannot: the tenant exists and
//! is active, the login session is not revoked, the user is still active (and still has
//! the role the token was issued for), a service token (a JWT without a session) is
//! recorded for the tenant and neither revoked nor expired, the API key is neither revoked
//! nor expired. Each of these queries reads several capabilities' tables in one statement
//! — a deliberate exception to "each capability owns its SQL", so that a request costs one
//! round trip to authenticate.

use sqlx::FromRow;
use time::OffsetDateTime;

use super::{
    AuthService,
    token::{OpaqueToken, TokenKind},
};
use crate::{
    access::{Actor, Principal, Role, Scopes},
    db::{Access, Db, TenantTx},
    error::Error,
    id::{ApiKeyId, SessionId, TenantId, UserId},
    tenancy::TenantStatus,
    users::UserStatus,
};

/// Verifies a presented credential — an API key (`tnty_…`) or a JWT access token — and
/// returns the principal it names. 401 when it does not verify, 403 when its tenant is
/// suspended.
pub async fn authenticate(
    db: &Db,
    auth: &AuthService,
    presented: &str,
) -> Result<Principal, Error> {
    if presented.starts_with(TokenKind::ApiKey.prefix()) {
        verify_api_key(db, auth, presented).await
    } else {
        verify_access_token(db, auth, presented).await
    }
}

#[derive(FromRow)]
struct AccessCheck {
    tenant_status: TenantStatus,
    session_live: Option<bool>,
    user_id: Option<UserId>,
    user_status: Option<UserStatus>,
    role: Option<Role>,
    /// The service token's record (read only for a token without a session).
    service_subject: Option<String>,
    service_scopes: Option<Vec<String>>,
    service_revoked: Option<bool>,
    service_expired: Option<bool>,
}

async fn verify_access_token(db: &Db, auth: &AuthService, token: &str) -> Result<Principal, Error> {
    let claims = auth.jwt.verify(token).map_err(|error| {
        tracing::debug!(%error, "access token refused");
        Error::unauthenticated(format_args!(
            "invalid access token: {}",
            describe_jwt_error(&error)
        ))
    })?;
    let scopes = Scopes::parse_claim(&claims.scope)
        .map_err(|e| Error::unauthenticated(format_args!("invalid access token: {e}")))?;
    let tenant_id = TenantId::from_uuid(claims.tid);
    let session_id = claims.sid.map(SessionId::from_uuid);

    let mut tx = TenantTx::begin_for_credential_check(db, tenant_id, Access::ReadOnly).await?;
    let check: Option<AccessCheck> = sqlx::query_as(
        r#"
        select t.status as tenant_status,
               s.revoked_at is null and s.expires_at > now() as session_live,
               u.id as user_id, u.status as user_status, u.role,
               st.subject as service_subject, st.scopes as service_scopes,
               st.revoked_at is not null as service_revoked,
               st.expires_at <= now() as service_expired
        from tenants t
        left join sessions s on s.tenant_id = t.id and s.id = $2
        left join users u on u.tenant_id = s.tenant_id and u.id = s.user_id
        left join service_tokens st on st.tenant_id = t.id and st.jti = $3 and $2::uuid is null
        where t.id = $1
        "#,
    )
    .bind(tenant_id)
    .bind(session_id)
    .bind(claims.jti)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;

    let check =
        check.ok_or_else(|| Error::unauthenticated("invalid access token: unknown tenant"))?;
    if check.tenant_status == TenantStatus::Suspended {
        return Err(Error::tenant_suspended());
    }
    let Some(session_id) = session_id else {
        return service_principal(tenant_id, claims.sub, scopes, &check);
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
            Ok(Principal::verified(
                tenant_id,
                Actor::User(user_id),
                // A role change takes effect at once: never more than the current role grants.
                scopes.intersection(role.scopes()),
                Some(session_id),
            ))
        }
        _ => Err(Error::unauthenticated(
            "the session of this token has ended; log in again",
        )),
    }
}

/// A service token (no session) is trusted only as recorded by `tenantry token issue`: for
/// this tenant, under this subject, unrevoked and unexpired — a signature alone is not
/// enough. The record's scopes bound the token's, so a token re-signed with a recorded
/// `jti` cannot claim more than was issued.
fn service_principal(
    tenant_id: TenantId,
    subject: String,
    scopes: Scopes,
    check: &AccessCheck,
) -> Result<Principal, Error> {
    let recorded = check
        .service_subject
        .as_deref()
        .is_some_and(|recorded| recorded == subject);
    if !recorded {
        return Err(Error::unauthenticated(
            "this service token was never issued for this tenant (tokens minted before service tokens were recorded are refused); issue a new one",
        ));
    }
    if check.service_revoked == Some(true) {
        return Err(Error::unauthenticated(
            "this service token has been revoked",
        ));
    }
    if check.service_expired != Some(false) {
        return Err(Error::unauthenticated("this service token has expired"));
    }
    let issued: Scopes = check
        .service_scopes
        .iter()
        .flatten()
        .filter_map(|s| s.parse().ok())
        .collect();
    Ok(Principal::verified(
        tenant_id,
        Actor::Service(subject),
        scopes.intersection(issued),
        None,
    ))
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
async fn verify_api_key(db: &Db, auth: &AuthService, presented: &str) -> Result<Principal, Error> {
    let invalid = || Error::unauthenticated("invalid API key");
    let token = OpaqueToken::parse(TokenKind::ApiKey, presented).ok_or_else(invalid)?;

    let mut tx =
        TenantTx::begin_for_credential_check(db, token.tenant_id, Access::ReadOnly).await?;
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
    if !auth.hasher.verify(&token, &check.secret_hash) {
        return Err(invalid());
    }
    if check.revoked_at.is_some() {
        return Err(Error::unauthenticated("this API key has been revoked"));
    }
    if check
        .expires_at
        .is_some_and(|at| at <= OffsetDateTime::now_utc())
    {
        return Err(Error::unauthenticated("this API key has expired"));
    }
    if check.tenant_status == TenantStatus::Suspended {
        return Err(Error::tenant_suspended());
    }
    let scopes = check.scopes.iter().filter_map(|s| s.parse().ok()).collect();
    Ok(Principal::verified(
        token.tenant_id,
        Actor::ApiKey(ApiKeyId::from_uuid(token.id)),
        scopes,
        None,
    ))
}
