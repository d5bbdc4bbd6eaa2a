//! Login sessions: password login, refresh-token rotation with reuse detection, logout.
//!
//! A session is one login and the family of refresh tokens descending from it. Each refresh
//! consumes its token and issues the next; presenting a consumed token again means two
//! parties hold the family (one of them a thief), so the whole session is revoked — and
//! with it every access token carrying its `sid`, on their next request.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{
    AuthService, Principal, Role,
    token::{OpaqueToken, TokenKind},
};
use crate::{
    audit::{self, AuditEvent},
    db::{Access, Db, TenantTx},
    http::error::ApiError,
    tenancy::{TenantId, TenantStatus, store as tenants},
    users::{Email, UserId, UserStatus},
};

crate::id_type!(
    /// Identifies a login session (a refresh-token family).
    SessionId
);

/// What login and refresh return.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenPair {
    /// A short-lived JWT for `Authorization: Bearer`.
    #[schema(example = "eyJ0eXAiOiJKV1QiLCJhbGciOiJIUzI1NiJ9…")]
    pub access_token: String,
    #[schema(example = "Bearer")]
    pub token_type: &'static str,
    /// Seconds until `access_token` expires.
    #[schema(example = 900)]
    pub expires_in: u64,
    /// Single-use: exchange it at `/v1/auth/refresh` for a new pair.
    #[schema(value_type = String, example = "tntyrt_AZN6Xnwaez6aUi8NPEtaaQGTel58Gnszmp…")]
    #[serde(serialize_with = "expose")]
    pub refresh_token: SecretString,
}

fn expose<S: serde::Serializer>(secret: &SecretString, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(secret.expose_secret())
}

#[derive(FromRow)]
struct LoginUser {
    id: UserId,
    password_hash: String,
    status: UserStatus,
    role: Role,
}

/// Password login. Every failure — unknown tenant, unknown user, deactivated user, wrong
/// password — is the same 401 after the same single argon2 verification, so neither the
/// answer nor its timing tells which accounts exist.
pub async fn login(
    db: &Db,
    auth: &AuthService,
    tenant: &str,
    email: &str,
    password: SecretString,
) -> Result<TokenPair, ApiError> {
    let tenant_id = match tenant.parse::<TenantId>() {
        Ok(id) => Some(id),
        Err(_) => db.resolve_slug(tenant).await?,
    };
    let user = match (tenant_id, Email::parse(email)) {
        (Some(tenant_id), Ok(email)) => {
            let mut tx =
                TenantTx::begin_for_credential_check(db, tenant_id, Access::ReadOnly).await?;
            let user: Option<LoginUser> = sqlx::query_as(
                "select id, password_hash, status, role from users where email = $1",
            )
            .bind(email.as_str())
            .fetch_optional(&mut *tx)
            .await?;
            let status = tenants::find(&mut tx, tenant_id).await?.map(|t| t.status);
            tx.commit().await?;
            user.map(|u| (u, status))
        }
        _ => None,
    };
    let verified = auth
        .passwords
        .verify(
            password,
            user.as_ref().map(|(u, _)| u.password_hash.clone()),
        )
        .await?;
    let Some((user, tenant_status)) =
        user.filter(|(u, _)| verified && u.status == UserStatus::Active)
    else {
        return Err(ApiError::InvalidCredentials);
    };
    if tenant_status == Some(TenantStatus::Suspended) {
        return Err(ApiError::TenantSuspended);
    }
    let tenant_id = tenant_id.ok_or(ApiError::InvalidCredentials)?;

    let mut tx = TenantTx::begin_for_credential_check(db, tenant_id, Access::ReadWrite).await?;
    let session_id = SessionId::new();
    let expires_at = OffsetDateTime::now_utc() + auth.refresh_token_ttl;
    sqlx::query(
        "insert into sessions (tenant_id, id, user_id, expires_at) values ($1, $2, $3, $4)",
    )
    .bind(tenant_id)
    .bind(session_id)
    .bind(user.id)
    .bind(expires_at)
    .execute(&mut *tx)
    .await?;
    let refresh_token =
        insert_refresh_token(&mut tx, auth, tenant_id, session_id, expires_at).await?;
    let principal = Principal {
        tenant_id,
        actor: super::Actor::User(user.id),
        scopes: user.role.scopes(),
        session_id: Some(session_id),
    };
    audit::record(
        &mut tx,
        &principal,
        AuditEvent::new("auth.login", "session", session_id),
    )
    .await?;
    tx.commit().await?;
    token_pair(auth, &principal, refresh_token)
}

#[derive(FromRow)]
struct RefreshRow {
    secret_hash: Vec<u8>,
    used_at: Option<OffsetDateTime>,
    expires_at: OffsetDateTime,
    session_id: SessionId,
    session_live: bool,
    user_id: UserId,
    user_status: UserStatus,
    role: Role,
    tenant_status: TenantStatus,
}

/// Exchanges a refresh token for a new pair, consuming it.
pub async fn refresh(db: &Db, auth: &AuthService, presented: &str) -> Result<TokenPair, ApiError> {
    let invalid = || ApiError::Unauthenticated("invalid refresh token".into());
    let token = OpaqueToken::parse(TokenKind::Refresh, presented).ok_or_else(invalid)?;

    let mut tx =
        TenantTx::begin_for_credential_check(db, token.tenant_id, Access::ReadWrite).await?;
    // FOR UPDATE of the token row: two concurrent refreshes with one token serialise, and
    // the second sees the first's `used_at` — reuse, as it should be.
    let row: Option<RefreshRow> = sqlx::query_as(
        r#"
        select r.secret_hash, r.used_at, r.expires_at, r.session_id,
               s.revoked_at is null and s.expires_at > now() as session_live,
               u.id as user_id, u.status as user_status, u.role, t.status as tenant_status
        from refresh_tokens r
        join sessions s on s.tenant_id = r.tenant_id and s.id = r.session_id
        join users u on u.tenant_id = s.tenant_id and u.id = s.user_id
        join tenants t on t.id = r.tenant_id
        where r.tenant_id = $1 and r.id = $2
        for update of r
        "#,
    )
    .bind(token.tenant_id)
    .bind(token.id)
    .fetch_optional(&mut *tx)
    .await?;
    let row = row
        .filter(|row| auth.hasher.verify(&token, &row.secret_hash))
        .ok_or_else(invalid)?;

    if row.used_at.is_some() {
        if row.session_live {
            revoke_session(&mut tx, row.session_id, "refresh_token_reuse").await?;
            tracing::warn!(session_id = %row.session_id, "refresh token reused; session revoked");
            tx.commit().await?;
        }
        return Err(ApiError::Unauthenticated(
            "this refresh token was already used; the session has been revoked".into(),
        ));
    }
    if !row.session_live
        || row.expires_at <= OffsetDateTime::now_utc()
        || row.user_status != UserStatus::Active
    {
        return Err(ApiError::Unauthenticated(
            "the session has ended; log in again".into(),
        ));
    }
    if row.tenant_status == TenantStatus::Suspended {
        return Err(ApiError::TenantSuspended);
    }
    sqlx::query("update refresh_tokens set used_at = now() where tenant_id = $1 and id = $2")
        .bind(token.tenant_id)
        .bind(token.id)
        .execute(&mut *tx)
        .await?;
    let next = insert_refresh_token(
        &mut tx,
        auth,
        token.tenant_id,
        row.session_id,
        row.expires_at,
    )
    .await?;
    tx.commit().await?;
    let principal = Principal {
        tenant_id: token.tenant_id,
        actor: super::Actor::User(row.user_id),
        scopes: row.role.scopes(),
        session_id: Some(row.session_id),
    };
    token_pair(auth, &principal, next)
}

/// Ends the caller's session: its refresh tokens and access tokens stop working.
pub async fn logout(db: &Db, principal: &Principal) -> Result<(), ApiError> {
    let session_id = principal.session_id().ok_or_else(|| {
        ApiError::bad_request(
            "no_session",
            "only a login session's access token can log out; revoke API keys instead",
        )
    })?;
    let mut tx = db.tenant(principal, Access::ReadWrite).await?;
    revoke_session(&mut tx, session_id, "logout").await?;
    audit::record(
        &mut tx,
        principal,
        AuditEvent::new("auth.logout", "session", session_id),
    )
    .await?;
    tx.commit().await?;
    Ok(())
}

pub async fn revoke_session(
    conn: &mut PgConnection,
    session_id: SessionId,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("update sessions set revoked_at = now(), revoked_reason = $2 where id = $1 and revoked_at is null")
        .bind(session_id)
        .bind(reason)
        .execute(conn)
        .await
        .map(drop)
}

/// Revokes every live session of a user (deactivation).
pub async fn revoke_user_sessions(
    conn: &mut PgConnection,
    user_id: UserId,
    reason: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query("update sessions set revoked_at = now(), revoked_reason = $2 where user_id = $1 and revoked_at is null")
        .bind(user_id)
        .bind(reason)
        .execute(conn)
        .await
        .map(drop)
}

async fn insert_refresh_token(
    conn: &mut PgConnection,
    auth: &AuthService,
    tenant_id: TenantId,
    session_id: SessionId,
    expires_at: OffsetDateTime,
) -> Result<SecretString, ApiError> {
    let token = OpaqueToken::generate(TokenKind::Refresh, tenant_id);
    sqlx::query("insert into refresh_tokens (tenant_id, id, session_id, secret_hash, expires_at) values ($1, $2, $3, $4, $5)")
        .bind(tenant_id)
        .bind(token.id)
        .bind(session_id)
        .bind(auth.hasher.hash(&token))
        .bind(expires_at)
        .execute(conn)
        .await?;
    Ok(token.encode())
}

fn token_pair(
    auth: &AuthService,
    principal: &Principal,
    refresh_token: SecretString,
) -> Result<TokenPair, ApiError> {
    let user_id = principal
        .user_id()
        .ok_or_else(|| anyhow::anyhow!("session principal without a user"))?;
    let access_token = auth.jwt.issue(
        principal.tenant_id(),
        &user_id.to_string(),
        principal.scopes(),
        auth.access_token_ttl,
        principal.session_id().map(|s| s.as_uuid()),
    )?;
    Ok(TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in: auth.access_token_ttl.as_secs(),
        refresh_token,
    })
}
