//! API keys for tenant apps: create (the secret is shown once), list, read, revoke.
//!
//! The format and hashing live in `auth::token`; verification on each request in
//! `auth::authenticate`. A key's scopes are at most its creator's, and a revoked key is
//! refused on the very next request (verification reads the row every time).

pub mod store;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

pub use crate::id::ApiKeyId;
use crate::{
    access::{Grant, Principal, Scope, Scopes},
    audit::{self, AuditEvent},
    auth::token::{OpaqueToken, TokenHasher, TokenKind},
    db::{
        TenantTx,
        table::{self, Table},
    },
    error::{Error, FieldError},
    page::{Page, PageRequest},
};

/// An API key as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct ApiKey {
    pub id: ApiKeyId,
    #[schema(example = "checkout-service")]
    pub name: String,
    /// Prefix and last characters, to recognise the key.
    #[schema(example = "tnty_…x9Qa")]
    pub hint: String,
    #[schema(example = json!(["orders:read", "orders:write"]))]
    pub scopes: Vec<String>,
    /// Who created it (`user:<id>`, `api_key:<id>`, `service:<name>`).
    #[schema(example = "user:01937a5e-7c1a-7b3e-9a52-2f0d3c4b5a69")]
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl Table for ApiKey {
    type Id = ApiKeyId;
    const NAME: &'static str = "API key";
    const TABLE: &'static str = "api_keys";
    const COLUMNS: &'static str = store::COLUMNS;

    fn id(&self) -> uuid::Uuid {
        self.id.as_uuid()
    }
}

/// API keys of the tenant, newest first (revoked ones included, marked `revoked_at`).
pub async fn list(
    tx: &mut TenantTx,
    principal: &Principal,
    page: PageRequest,
) -> Result<Page<ApiKey>, Error> {
    principal.require(Scope::ApiKeysRead)?;
    table::page(tx, page).await
}

/// One API key (never its secret).
pub async fn get(tx: &mut TenantTx, principal: &Principal, id: ApiKeyId) -> Result<ApiKey, Error> {
    principal.require(Scope::ApiKeysRead)?;
    table::get(tx, id).await
}

/// An API key to create. The scopes are parsed at the edge ([`parse_scopes`]); the rest is
/// checked by [`create`], after the rule on scopes.
pub struct NewApiKey {
    pub name: String,
    pub scopes: Scopes,
    pub expires_at: Option<OffsetDateTime>,
}

/// Scope names as a set, naming each unknown one by its position (`scopes[1]`).
pub fn parse_scopes(names: &[String]) -> Result<Scopes, Error> {
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
        Err(Error::validation(errors))
    }
}

/// A created key with its secret, which exists nowhere else: show it once.
pub struct CreatedApiKey {
    pub api_key: ApiKey,
    pub secret: SecretString,
}

/// Creates an API key with at most the caller's scopes.
pub async fn create(
    tx: &mut TenantTx,
    principal: &Principal,
    hasher: &TokenHasher,
    new: NewApiKey,
) -> Result<CreatedApiKey, Error> {
    principal.require(Scope::ApiKeysWrite)?;
    principal.ensure_may_grant(Grant::Scopes(new.scopes))?;
    if new
        .expires_at
        .is_some_and(|at| at <= OffsetDateTime::now_utc())
    {
        return Err(Error::invalid("expires_at", "must be in the future"));
    }
    let name = new.name.trim();
    if name.is_empty() {
        return Err(Error::invalid("name", "must be 1-100 characters"));
    }
    let token = OpaqueToken::generate(TokenKind::ApiKey, principal.tenant_id());
    let api_key = store::insert(
        tx,
        store::NewApiKey {
            tenant_id: principal.tenant_id(),
            id: ApiKeyId::from_uuid(token.id),
            name,
            hint: &token.hint(),
            secret_hash: &hasher.hash(&token),
            scopes: new.scopes,
            created_by: &principal.actor().to_string(),
            expires_at: new.expires_at,
        },
    )
    .await?;
    audit::record(
        tx,
        principal,
        AuditEvent::new("api_key.created", "api_key", api_key.id)
            .data(serde_json::json!({"scopes": api_key.scopes})),
    )
    .await?;
    Ok(CreatedApiKey {
        api_key,
        secret: token.encode(),
    })
}

/// Revokes an API key; it is refused from the next request on. Revoking twice keeps the
/// first time (and records the second attempt).
pub async fn revoke(tx: &mut TenantTx, principal: &Principal, id: ApiKeyId) -> Result<(), Error> {
    principal.require(Scope::ApiKeysWrite)?;
    store::revoke(tx, id)
        .await?
        .ok_or_else(|| Error::not_found("API key"))?;
    audit::record(
        tx,
        principal,
        AuditEvent::new("api_key.revoked", "api_key", id),
    )
    .await?;
    Ok(())
}
