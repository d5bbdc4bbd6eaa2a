//! Login sessions: password login, refresh-token rotation with reuse detection, logout.
//!
//! A session is one login and the family of refresh tokens descending from it (stored by
//! `users::sessions`). Each refresh consumes its token and issues the next; presenting a
//! consumed token again means two parties hold the family (one of them a thief), so the
//! whole session is revoked — and with it every access token carrying its `sid`, on their
//! next request.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{
    AuthService,
    token::{OpaqueToken, TokenKind},
};
use crate::{
    access::{Actor, Principal},
    audit::{self, AuditEvent},
    db::{Access, Db, TenantTx, table},
    error::Error,
    id::{SessionId, TenantId},
    tenancy::{Tenant, TenantStatus},
    users::{
        Email, UserStatus,
        sessions::{self, NewRefreshToken},
        store as users,
    },
};

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

/// Password login; `tenant` is the tenant's slug or id. Every failure — unknown tenant,
/// unknown user, deactivated user, wrong password — is the same 401 after the same single
/// argon2 verification, so neither the answer nor its timing tells which accounts exist.
pub async fn login(
    db: &Db,
    auth: &AuthService,
    tenant: &str,
    email: &str,
    password: SecretString,
) -> Result<TokenPair, Error> {
    let tenant_id = db.resolve_tenant(tenant).await?;
    let user = match (tenant_id, Email::parse(email)) {
        (Some(tenant_id), Ok(email)) => {
            let mut tx =
                TenantTx::begin_for_credential_check(db, tenant_id, Access::ReadOnly).await?;
            let user = users::find_for_login(&mut tx, &email).await?;
            let status = table::find::<Tenant>(&mut tx, tenant_id)
                .await?
                .map(|t| t.status);
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
        return Err(Error::invalid_credentials());
    };
    if tenant_status == Some(TenantStatus::Suspended) {
        return Err(Error::tenant_suspended());
    }
    let tenant_id = tenant_id.ok_or_else(Error::invalid_credentials)?;

    let mut tx = TenantTx::begin_for_credential_check(db, tenant_id, Access::ReadWrite).await?;
    let session_id = SessionId::new();
    let expires_at = OffsetDateTime::now_utc() + auth.refresh_token_ttl;
    sessions::insert(&mut tx, tenant_id, session_id, user.id, expires_at).await?;
    let refresh_token =
        issue_refresh_token(&mut tx, auth, tenant_id, session_id, expires_at).await?;
    let principal = Principal::verified(
        tenant_id,
        Actor::User(user.id),
        user.role.scopes(),
        Some(session_id),
    );
    audit::record(
        &mut tx,
        &principal,
        AuditEvent::new("auth.login", "session", session_id),
    )
    .await?;
    tx.commit().await?;
    token_pair(auth, &principal, refresh_token)
}

/// Exchanges a refresh token for a new pair, consuming it.
pub async fn refresh(db: &Db, auth: &AuthService, presented: &str) -> Result<TokenPair, Error> {
    let invalid = || Error::unauthenticated("invalid refresh token");
    let token = OpaqueToken::parse(TokenKind::Refresh, presented).ok_or_else(invalid)?;

    let mut tx =
        TenantTx::begin_for_credential_check(db, token.tenant_id, Access::ReadWrite).await?;
    let row = sessions::lock_refresh_token(&mut tx, token.tenant_id, token.id)
        .await?
        .filter(|row| auth.hasher.verify(&token, &row.secret_hash))
        .ok_or_else(invalid)?;

    if row.used_at.is_some() {
        if row.session_live {
            sessions::revoke(&mut tx, row.session_id, "refresh_token_reuse").await?;
            tracing::warn!(session_id = %row.session_id, "refresh token reused; session revoked");
            tx.commit().await?;
        }
        return Err(Error::unauthenticated(
            "this refresh token was already used; the session has been revoked",
        ));
    }
    if !row.session_live
        || row.expires_at <= OffsetDateTime::now_utc()
        || row.user_status != UserStatus::Active
    {
        return Err(Error::unauthenticated(
            "the session has ended; log in again",
        ));
    }
    if row.tenant_status == TenantStatus::Suspended {
        return Err(Error::tenant_suspended());
    }
    sessions::use_refresh_token(&mut tx, token.tenant_id, token.id).await?;
    let next = issue_refresh_token(
        &mut tx,
        auth,
        token.tenant_id,
        row.session_id,
        row.expires_at,
    )
    .await?;
    tx.commit().await?;
    let principal = Principal::verified(
        token.tenant_id,
        Actor::User(row.user_id),
        row.role.scopes(),
        Some(row.session_id),
    );
    token_pair(auth, &principal, next)
}

/// Ends the caller's session: its refresh tokens and access tokens stop working.
pub async fn logout(tx: &mut TenantTx, principal: &Principal) -> Result<(), Error> {
    let session_id = principal.session_id().ok_or_else(|| {
        Error::malformed(
            "no_session",
            "only a login session's access token can log out; revoke API keys instead",
        )
    })?;
    sessions::revoke(tx, session_id, "logout").await?;
    audit::record(
        tx,
        principal,
        AuditEvent::new("auth.logout", "session", session_id),
    )
    .await?;
    Ok(())
}

async fn issue_refresh_token(
    conn: &mut PgConnection,
    auth: &AuthService,
    tenant_id: TenantId,
    session_id: SessionId,
    expires_at: OffsetDateTime,
) -> Result<SecretString, Error> {
    let token = OpaqueToken::generate(TokenKind::Refresh, tenant_id);
    sessions::insert_refresh_token(
        conn,
        NewRefreshToken {
            tenant_id,
            id: token.id,
            session_id,
            secret_hash: &auth.hasher.hash(&token),
            expires_at,
        },
    )
    .await?;
    Ok(token.encode())
}

fn token_pair(
    auth: &AuthService,
    principal: &Principal,
    refresh_token: SecretString,
) -> Result<TokenPair, Error> {
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
