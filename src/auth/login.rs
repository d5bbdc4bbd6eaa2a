//! Login sessions: password login, refresh-token rotation with reuse detection, logout.
//!
//! A session is one login and the family of refresh tokens descending from it (stored by
//! `users::sessions`). Each refresh consumes its token and issues the next; presenting a
//! consumed token again means two parties hold the family (one of them a thief), so the
//! whole session is revoked — and with it every access token carrying its `sid`, on their
//! next request.
//!
//! Except for a client whose answer was lost: presented again within
//! `REFRESH_TOKEN_REUSE_INTERVAL` of its exchange, and before the token it was exchanged
//! for has been used, a refresh token answers with the same pair again (as Auth0's reuse
//! interval does). Nothing secret is stored for that: the next refresh token's secret is
//! derived from the presented one under the server's key, and the access token is signed
//! again from the same claims (issued at the exchange, with the next token's id as its
//! `jti`) — both signature schemes are deterministic.

use std::net::IpAddr;

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    AuthService,
    jwt::Stamp,
    throttle::ThrottleKey,
    token::{OpaqueToken, TokenKind},
};
use crate::{
    access::{Actor, Principal},
    audit::{self, AuditEvent, Author},
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

/// A password login as a transport received it.
pub struct LoginAttempt<'a> {
    /// The tenant's slug or id.
    pub tenant: &'a str,
    pub email: &'a str,
    pub password: SecretString,
    /// The address the attempt came from, for the per-client throttle.
    pub client: IpAddr,
}

/// Why a login failed, for the audit trail and the log (never for the client, who sees
/// one `invalid_credentials` for all of them).
#[derive(Debug, Clone, Copy)]
enum Failure {
    UnknownTenant,
    UnknownUser,
    WrongPassword,
    DeactivatedUser,
}

impl Failure {
    fn as_str(self) -> &'static str {
        match self {
            Failure::UnknownTenant => "unknown_tenant",
            Failure::UnknownUser => "unknown_user",
            Failure::WrongPassword => "wrong_password",
            Failure::DeactivatedUser => "deactivated_user",
        }
    }
}

/// A tenant id no tenant has (ids are UUIDv7, never nil, and always generated): an
/// unknown tenant's credential check runs under it, finding nothing, as an unknown user's
/// does under its real tenant.
fn no_tenant() -> TenantId {
    TenantId::from_uuid(uuid::Uuid::nil())
}

/// Password login. Every failure — unknown tenant, unknown user, deactivated user, wrong
/// password — is the same 401 after the same statements and the same single argon2
/// verification, so neither the answer nor its cost tells which accounts (or tenants)
/// exist.
///
/// In order: the client's throttle (no SQL, no argon2), the tenant named, the account's
/// throttle, a hashing slot (503 when there is none), both throttles again, the credential
/// check, the argon2 verification. A failure is counted against both throttle keys, recorded as an
/// `auth.login_failed` audit event when the tenant exists (with the email when it is one,
/// never the password) and logged; a success clears the account's count.
pub async fn login(
    db: &Db,
    auth: &AuthService,
    attempt: LoginAttempt<'_>,
) -> Result<TokenPair, Error> {
    let client = ThrottleKey::client(attempt.client);
    auth.throttle.check(client).await?;
    let tenant_id = db.resolve_tenant(attempt.tenant).await?;
    let account = ThrottleKey::account(
        &tenant_id.map_or_else(
            || format!("?{}", attempt.tenant.trim()),
            |id| id.to_string(),
        ),
        attempt.email,
    );
    auth.throttle.check(account).await?;
    let slot = auth.passwords.slot().await?;
    // Again once the slot is ours: a lock-out that began while this attempt waited for it
    // (another attempt's failure) stops it here, before argon2 — else every attempt
    // queued when a lock-out ends would still be hashed. The slot is freed first, so the
    // refusal's hold does not keep it.
    if let Some(lockout) = auth.throttle.lockout(&[client, account]).await? {
        drop(slot);
        return Err(auth.throttle.refuse(lockout).await);
    }
    auth.throttle.admitted();

    let email = Email::parse(attempt.email).ok();
    let lookup = tenant_id.unwrap_or_else(no_tenant);
    let mut tx = TenantTx::begin_for_credential_check(db, lookup, Access::ReadOnly).await?;
    let user =
        users::find_for_login(&mut tx, email.as_ref().unwrap_or(&Email::unmatchable())).await?;
    let tenant_status = table::find::<Tenant>(&mut tx, lookup)
        .await?
        .map(|t| t.status);
    tx.commit().await?;
    let verified = slot
        .verify(
            attempt.password,
            user.as_ref().map(|u| u.password_hash.clone()),
        )
        .await?;

    let outcome = match (tenant_status, user) {
        (None, _) => Err(Failure::UnknownTenant),
        (_, None) => Err(Failure::UnknownUser),
        (_, Some(_)) if !verified => Err(Failure::WrongPassword),
        (_, Some(user)) if user.status != UserStatus::Active => Err(Failure::DeactivatedUser),
        (Some(status), Some(user)) => Ok((status, user)),
    };
    let (tenant_status, user) = match outcome {
        Ok(found) => found,
        Err(failure) => {
            let failed = FailedLogin {
                tenant_id: lookup,
                email: email.as_ref(),
                keys: [client, account],
                client: attempt.client,
                failure,
            };
            return Err(failed.record(db, auth).await);
        }
    };
    auth.throttle.succeeded(account).await?;
    if tenant_status == TenantStatus::Suspended {
        return Err(Error::tenant_suspended());
    }
    let tenant_id = lookup;

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
    let issued = Stamp {
        iat: OffsetDateTime::now_utc().unix_timestamp(),
        jti: Uuid::now_v7(),
    };
    token_pair(auth, &principal, refresh_token, issued)
}

/// A failed login, and what it leaves behind.
struct FailedLogin<'a> {
    /// The tenant named, or [`no_tenant`].
    tenant_id: TenantId,
    /// The email, when it is one.
    email: Option<&'a Email>,
    /// The client's and the account's throttle keys.
    keys: [ThrottleKey; 2],
    client: IpAddr,
    failure: Failure,
}

impl FailedLogin<'_> {
    /// Counts the failure against the client and the account, writes the audit event in
    /// the tenant if there is one (one statement either way, so the cost is the same),
    /// logs it, and returns the refusal.
    async fn record(self, db: &Db, auth: &AuthService) -> Error {
        match self.write(db, auth).await {
            Ok(lockout_seconds) => {
                let tenant_id = (self.tenant_id != no_tenant())
                    .then_some(tracing::field::display(self.tenant_id));
                let (client, reason) = (self.client, self.failure.as_str());
                match lockout_seconds {
                    Some(seconds) => tracing::warn!(
                        tenant_id,
                        %client,
                        reason,
                        locked_out_for_seconds = seconds,
                        "login failed; lock-out started"
                    ),
                    None => tracing::info!(tenant_id, %client, reason, "login failed"),
                }
                Error::invalid_credentials()
            }
            Err(error) => error,
        }
    }

    async fn write(&self, db: &Db, auth: &AuthService) -> Result<Option<u64>, Error> {
        let lockout = auth.throttle.failed(&self.keys).await?;
        let lockout_seconds = lockout.map(crate::error::whole_seconds);
        // Only a valid address is recorded: what does not parse as one may be a password
        // typed into the wrong field.
        // The email and the client's address are personal data (erasable); the address is
        // also the one the throttle counted, which may differ from the request's origin.
        let email = self.email.map(Email::as_str);
        let event = AuditEvent::new("auth.login_failed", "login", self.tenant_id)
            .data(serde_json::json!({
                "reason": self.failure.as_str(),
                "locked_out_for_seconds": lockout_seconds,
            }))
            .personal(serde_json::json!({
                "email": email,
                "throttled_address": self.client.to_string(),
            }));
        let mut tx =
            TenantTx::begin_for_credential_check(db, self.tenant_id, Access::ReadWrite).await?;
        audit::record_if_tenant_exists(&mut tx, Author::anonymous(self.tenant_id), event).await?;
        tx.commit().await?;
        Ok(lockout_seconds)
    }
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

    let principal = Principal::verified(
        token.tenant_id,
        Actor::User(row.user_id),
        row.role.scopes(),
        Some(row.session_id),
    );
    let now = OffsetDateTime::now_utc();
    let session_usable = row.session_live
        && row.expires_at > now
        && row.user_status == UserStatus::Active
        && row.tenant_status == TenantStatus::Active;
    if let Some(used_at) = row.used_at {
        // Presented again soon after its exchange, before the token it was exchanged for
        // was used: the client never got the answer. Answer it again, the same pair.
        let reuse_interval = time::Duration::try_from(auth.refresh_token_reuse_interval)
            .unwrap_or(time::Duration::MAX);
        let retry = row
            .replaced_by
            .filter(|_| !row.successor_used && session_usable && now - used_at <= reuse_interval);
        if let Some(successor) = retry {
            tx.commit().await?;
            let next = auth.hasher.successor(&token, successor);
            return token_pair(auth, &principal, next.encode(), stamp(used_at, successor));
        }
        if row.session_live {
            sessions::revoke(&mut tx, row.session_id, "refresh_token_reuse").await?;
            tx.credentials_changed();
            audit::record(
                &mut tx,
                &principal,
                AuditEvent::new("auth.refresh_token_reused", "session", row.session_id)
                    .data(serde_json::json!({"session_revoked": true})),
            )
            .await?;
            tracing::warn!(session_id = %row.session_id, "refresh token reused; session revoked");
            tx.commit().await?;
        }
        return Err(Error::unauthenticated(
            "this refresh token was already used; the session has been revoked",
        ));
    }
    if !session_usable {
        if row.tenant_status == TenantStatus::Suspended {
            return Err(Error::tenant_suspended());
        }
        return Err(Error::unauthenticated(
            "the session has ended; log in again",
        ));
    }
    // The successor's secret is derived from this token's, so a retry can re-derive it.
    let successor = Uuid::now_v7();
    let next = auth.hasher.successor(&token, successor);
    sessions::insert_refresh_token(
        &mut tx,
        NewRefreshToken {
            tenant_id: token.tenant_id,
            id: successor,
            session_id: row.session_id,
            secret_hash: &auth.hasher.hash(&next),
            expires_at: row.expires_at,
        },
    )
    .await?;
    let used_at =
        sessions::use_refresh_token(&mut tx, token.tenant_id, token.id, successor).await?;
    tx.commit().await?;
    token_pair(auth, &principal, next.encode(), stamp(used_at, successor))
}

/// The access token of an exchange: issued when the refresh token was used, with the
/// successor's id, so answering the exchange again signs the very same token.
fn stamp(used_at: OffsetDateTime, successor: Uuid) -> Stamp {
    Stamp {
        iat: used_at.unix_timestamp(),
        jti: successor,
    }
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
    tx.credentials_changed();
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
    stamp: Stamp,
) -> Result<TokenPair, Error> {
    let user_id = principal
        .user_id()
        .ok_or_else(|| anyhow::anyhow!("session principal without a user"))?;
    let access_token = auth.jwt.sign(&auth.jwt.stamped_claims(
        principal.tenant_id(),
        &user_id.to_string(),
        principal.scopes(),
        auth.access_token_ttl,
        principal.session_id().map(|s| s.as_uuid()),
        stamp,
    ))?;
    Ok(TokenPair {
        access_token,
        token_type: "Bearer",
        expires_in: auth.access_token_ttl.as_secs(),
        refresh_token,
    })
}
