//! Service tokens: access tokens without a login session, which an operator mints for
//! scripts, other services and load tests (`tenantry token issue`). Each is recorded by its
//! `jti` in `service_tokens`, with its subject, scopes and expiry, so it can be listed and
//! revoked, and verification (`authenticate`) accepts one only while its row exists for the
//! token's tenant, unrevoked and unexpired — a validly signed token that was never recorded
//! (minted with the key alone, or before tokens were recorded) is refused.
//!
//! Only the database owner writes these rows, on the command line's owner connection
//! (`db::owner_connection`): no role the server holds may create or revoke a service
//! token, and the request role may only read them, under the tenant's context, to verify
//! one. This module must never be handed a pool of the server's. Each function runs in its
//! own transaction that first enters the tenant's context (tables force row-level security
//! on their owner too) and names the tenant in every statement as well, because an owner
//! that is a superuser bypasses row-level security.

use std::time::Duration;

use secrecy::SecretString;
use serde::Serialize;
use sqlx::{Connection, FromRow, PgConnection};
use time::{OffsetDateTime, format_description::well_known::Rfc3339};
use uuid::Uuid;

use super::jwt::JwtKeys;
use crate::{
    access::{Operator, Scopes},
    audit::{self, AuditEvent, Author},
    error::Error,
    id::TenantId,
};

/// The longest subject a service token may carry (it becomes the actor `service:<subject>`
/// in audit events).
pub const MAX_SUBJECT_CHARS: usize = 200;

/// A recorded service token (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, FromRow)]
pub struct ServiceToken {
    pub jti: Uuid,
    pub tenant_id: TenantId,
    /// The token's `sub`: who uses it (`service:<subject>` in audit events).
    pub subject: String,
    pub scopes: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

const COLUMNS: &str = "jti, tenant_id, subject, scopes, created_at, expires_at, revoked_at";

/// A service token to mint.
pub struct NewServiceToken<'a> {
    pub tenant_id: TenantId,
    /// The token's `sub`: 1-200 characters, no control characters.
    pub subject: &'a str,
    /// What the token may do (the command line insists on at least one scope).
    pub scopes: Scopes,
    /// At least one second, at most the configured cap.
    pub ttl: Duration,
}

/// A minted token — shown once, stored nowhere — and its record.
pub struct IssuedServiceToken {
    pub token: SecretString,
    pub record: ServiceToken,
}

/// What [`revoke`] did.
pub enum Revocation {
    /// Revoked now: refused from the next request on.
    Revoked(ServiceToken),
    /// It had been revoked before (at its `revoked_at`); nothing changed.
    AlreadyRevoked(ServiceToken),
}

/// Mints a service token for a tenant and records it, in one transaction on the owner's
/// connection: the token exists for verification exactly when its row committed. Refuses a
/// lifetime longer than `max_ttl` (`TENANTRY_SERVICE_TOKEN_MAX_TTL`, which the message
/// names). The tenant must exist.
pub async fn issue(
    owner: &mut PgConnection,
    keys: &JwtKeys,
    operator: &Operator,
    max_ttl: Duration,
    new: NewServiceToken<'_>,
) -> Result<IssuedServiceToken, Error> {
    check_subject(new.subject)?;
    if new.ttl < Duration::from_secs(1) {
        return Err(Error::invalid("ttl", "must be at least 1s"));
    }
    if new.ttl > max_ttl {
        return Err(Error::invalid(
            "ttl",
            format!(
                "{} is longer than a service token may live: at most {} (TENANTRY_SERVICE_TOKEN_MAX_TTL)",
                humantime::format_duration(new.ttl),
                humantime::format_duration(max_ttl),
            ),
        ));
    }
    let claims = keys.claims(new.tenant_id, new.subject, new.scopes, new.ttl, None);
    let expires_at = OffsetDateTime::from_unix_timestamp(claims.exp)
        .map_err(|_| Error::invalid("ttl", "is too long"))?;
    let token = keys.sign(&claims)?;

    let mut tx = owner.begin().await?;
    enter_tenant(&mut tx, new.tenant_id).await?;
    let record: ServiceToken = sqlx::query_as(&format!(
        "insert into service_tokens (tenant_id, jti, subject, scopes, expires_at)
         values ($1, $2, $3, $4, $5) returning {COLUMNS}"
    ))
    .bind(new.tenant_id)
    .bind(claims.jti)
    .bind(new.subject)
    .bind(new.scopes.to_vec())
    .bind(expires_at)
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        Author::operator(operator, new.tenant_id),
        AuditEvent::new("service_token.issued", "service_token", record.jti).data(
            serde_json::json!({
                "subject": record.subject,
                "scopes": record.scopes,
                "expires_at": record.expires_at.format(&Rfc3339).unwrap_or_default(),
            }),
        ),
    )
    .await?;
    tx.commit().await?;
    Ok(IssuedServiceToken {
        token: SecretString::from(token),
        record,
    })
}

/// The service tokens of these tenants, newest first, revoked and expired ones included.
/// One transaction, one statement per tenant, each under its tenant's context: the owner
/// reads one tenant's rows at a time, as row-level security lets it.
pub async fn list(
    owner: &mut PgConnection,
    tenants: &[TenantId],
) -> Result<Vec<ServiceToken>, Error> {
    let mut tx = owner.begin().await?;
    let mut tokens = Vec::new();
    for &tenant_id in tenants {
        enter_tenant(&mut tx, tenant_id).await?;
        let of_tenant: Vec<ServiceToken> = sqlx::query_as(&format!(
            "select {COLUMNS} from service_tokens where tenant_id = $1"
        ))
        .bind(tenant_id)
        .fetch_all(&mut *tx)
        .await?;
        tokens.extend(of_tenant);
    }
    tx.commit().await?;
    tokens.sort_by_key(|t| std::cmp::Reverse((t.created_at, t.jti)));
    Ok(tokens)
}

/// The token `jti` among these tenants' tokens, looked for one tenant at a time (as
/// [`list`] does); `None` when none of them has it.
pub async fn locate(
    owner: &mut PgConnection,
    tenants: &[TenantId],
    jti: Uuid,
) -> Result<Option<ServiceToken>, Error> {
    let mut tx = owner.begin().await?;
    for &tenant_id in tenants {
        enter_tenant(&mut tx, tenant_id).await?;
        let found: Option<ServiceToken> = sqlx::query_as(&format!(
            "select {COLUMNS} from service_tokens where tenant_id = $1 and jti = $2"
        ))
        .bind(tenant_id)
        .bind(jti)
        .fetch_optional(&mut *tx)
        .await?;
        if found.is_some() {
            tx.commit().await?;
            return Ok(found);
        }
    }
    tx.commit().await?;
    Ok(None)
}

/// Revokes the tenant's token `jti`: refused from the next request on. Revoking twice keeps
/// the first time and changes nothing; a `jti` the tenant has no token of is not found.
pub async fn revoke(
    owner: &mut PgConnection,
    operator: &Operator,
    tenant_id: TenantId,
    jti: Uuid,
) -> Result<Revocation, Error> {
    let mut tx = owner.begin().await?;
    enter_tenant(&mut tx, tenant_id).await?;
    let current: ServiceToken = sqlx::query_as(&format!(
        "select {COLUMNS} from service_tokens where tenant_id = $1 and jti = $2 for update"
    ))
    .bind(tenant_id)
    .bind(jti)
    .fetch_optional(&mut *tx)
    .await?
    .ok_or_else(|| Error::not_found("service token"))?;
    if current.revoked_at.is_some() {
        tx.commit().await?;
        return Ok(Revocation::AlreadyRevoked(current));
    }
    let revoked: ServiceToken = sqlx::query_as(&format!(
        "update service_tokens set revoked_at = now() where tenant_id = $1 and jti = $2 returning {COLUMNS}"
    ))
    .bind(tenant_id)
    .bind(jti)
    .fetch_one(&mut *tx)
    .await?;
    audit::record(
        &mut tx,
        Author::operator(operator, tenant_id),
        AuditEvent::new("service_token.revoked", "service_token", jti),
    )
    .await?;
    tx.commit().await?;
    Ok(Revocation::Revoked(revoked))
}

/// A subject is shown in audit events and logs: printable, 1-200 characters.
fn check_subject(subject: &str) -> Result<(), Error> {
    let length = subject.chars().count();
    if length == 0 || length > MAX_SUBJECT_CHARS {
        return Err(Error::invalid(
            "subject",
            format!("must be 1-{MAX_SUBJECT_CHARS} characters"),
        ));
    }
    if subject.chars().any(char::is_control) {
        return Err(Error::invalid(
            "subject",
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Enters the tenant's context for the rest of the owner's transaction.
async fn enter_tenant(conn: &mut PgConnection, tenant_id: TenantId) -> Result<(), sqlx::Error> {
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(tenant_id.to_string())
        .execute(conn)
        .await
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subject_is_printable_and_at_most_200_characters() {
        assert!(check_subject("nightly-export").is_ok());
        assert!(check_subject(&"é".repeat(MAX_SUBJECT_CHARS)).is_ok());
        for bad in [
            String::new(),
            "x".repeat(MAX_SUBJECT_CHARS + 1),
            "two\nlines".to_owned(),
            "nul\0".to_owned(),
        ] {
            assert!(
                check_subject(&bad).is_err_and(|e| e.fields()[0].field == "subject"),
                "{bad:?} must be refused"
            );
        }
    }
}
