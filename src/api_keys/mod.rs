//! API keys for tenant apps: create (the secret is shown once), list, read, revoke, and
//! take over.
//!
//! The format and hashing live in `auth::token`; verification on each request in
//! `auth::authenticate`. A revoked key is refused on the very next request (verification
//! reads the row every time).
//!
//! Every key answers to its creator — a user of the tenant, or another key, which answers
//! to its own creator, up to a user — recorded as a real reference. A key is created with
//! at most its creator's scopes, and holds at most the creator's *current* scopes on every
//! request: demote the user and their keys shrink, deactivate them (or revoke the parent
//! key) and the keys stop working — until someone who holds all of a key's scopes takes it
//! over ([`take_over`]), as an owner does to keep an integration running. An operator's
//! service token answers to no user of the tenant, so it cannot create keys. Revoking a key
//! takes every scope it holds, like granting them.

pub mod store;

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

pub use crate::id::ApiKeyId;
use crate::{
    access::{Actor, Grant, Principal, Scope, Scopes},
    audit::{self, AuditEvent},
    auth::token::{OpaqueToken, TokenHasher, TokenKind},
    db::{
        TenantTx,
        table::{self, Table},
    },
    error::{Error, FieldError},
    id::UserId,
    page::{Page, PageRequest},
    plans::{LimitName, quota},
    rule::{self, TextRule, text_schema},
};

/// An API key's name: 1-100 characters once trimmed, not all whitespace, no control
/// characters.
pub const NAME_RULE: TextRule = TextRule {
    chars: 1..=100,
    pattern: Some(rule::PRINTABLE_TEXT),
    message: "must be 1-100 characters, not all whitespace, without control characters",
    example: "checkout-service",
    secret: false,
};

/// The schema of an API key's name ([`NAME_RULE`]), for request fields that take one.
pub struct ApiKeyName;
text_schema!(ApiKeyName, "ApiKeyName", NAME_RULE);

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
    /// Who created it, or last took it over (`user:<id>` or `api_key:<id>`).
    #[schema(example = "user:01937a5e-7c1a-7b3e-9a52-2f0d3c4b5a69")]
    pub created_by: String,
    /// The user it answers to, when a user created it (or took it over).
    #[serde(rename = "created_by_user_id")]
    pub created_by_user: Option<UserId>,
    /// The key it answers to, when another key created it.
    #[serde(rename = "created_by_key_id")]
    pub created_by_key: Option<ApiKeyId>,
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

/// Whom a key created by `principal` answers to: a user, or the key itself.
fn creator(principal: &Principal) -> Result<store::Creator, Error> {
    match principal.actor() {
        Actor::User(id) => Ok(store::Creator::User(*id)),
        Actor::ApiKey(id) => Ok(store::Creator::Key(*id)),
        Actor::Service(_) => Err(Error::forbidden(
            "creator_required",
            "an API key answers to a user of the tenant: create it with a user's login or \
             with another API key, not with an operator's service token",
        )),
    }
}

/// Creates an API key with at most the caller's scopes.
pub async fn create(
    tx: &mut TenantTx,
    principal: &Principal,
    hasher: &TokenHasher,
    new: NewApiKey,
) -> Result<CreatedApiKey, Error> {
    principal.require(Scope::ApiKeysWrite)?;
    let creator = creator(principal)?;
    principal.ensure_may_grant(Grant::Scopes(new.scopes))?;
    if new
        .expires_at
        .is_some_and(|at| at <= OffsetDateTime::now_utc())
    {
        return Err(Error::refused_field(
            "expiry_in_past",
            "expires_at",
            "must be in the future",
        ));
    }
    let name = new.name.trim();
    if !NAME_RULE.fits(name) || !rule::is_printable_text(name) {
        return Err(Error::invalid("name", NAME_RULE.message));
    }
    quota::admit(
        tx,
        principal,
        principal.tenant_id(),
        LimitName::ApiKeys,
        async |conn| store::count_live(conn).await,
    )
    .await?;
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
            creator,
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

/// Revokes an API key; it is refused from the next request on. It takes every scope the
/// key holds (a key is as much power taken away as given). Revoking twice keeps the first
/// time (and records the second attempt).
pub async fn revoke(tx: &mut TenantTx, principal: &Principal, id: ApiKeyId) -> Result<(), Error> {
    principal.require(Scope::ApiKeysWrite)?;
    let key = table::get::<ApiKey>(tx, id).await?;
    ensure_holds_all_of(principal, &key, "revoke")?;
    store::revoke(tx, id)
        .await?
        .ok_or_else(|| Error::not_found("API key"))?;
    tx.credentials_changed();
    audit::record(
        tx,
        principal,
        AuditEvent::new("api_key.revoked", "api_key", id),
    )
    .await?;
    Ok(())
}

/// Makes the calling user the key's creator, so it answers to them from now on: how an
/// owner keeps an integration running when the user who made its key leaves (or the key
/// that made it is revoked). Only a user may take a key over — a key answers to people,
/// and no credential can change whom it answers to itself — and only one who holds every
/// scope of the key. A revoked key stays revoked.
pub async fn take_over(
    tx: &mut TenantTx,
    principal: &Principal,
    id: ApiKeyId,
) -> Result<ApiKey, Error> {
    principal.require(Scope::ApiKeysWrite)?;
    let key = table::lock::<ApiKey>(tx, id)
        .await?
        .ok_or_else(|| Error::not_found(ApiKey::NAME))?;
    let Some(user) = principal.user_id() else {
        return Err(Error::forbidden(
            "user_required",
            "only a user can take an API key over: use a login's access token",
        ));
    };
    if key.revoked_at.is_some() {
        return Err(Error::conflict(
            "api_key_revoked",
            "this API key is revoked; create a new one instead",
        ));
    }
    ensure_holds_all_of(principal, &key, "take over")?;
    let taken = store::take_over(tx, id, user, &principal.actor().to_string()).await?;
    tx.credentials_changed();
    audit::record(
        tx,
        principal,
        AuditEvent::new("api_key.taken_over", "api_key", id)
            .data(serde_json::json!({"from": key.created_by, "to": taken.created_by})),
    )
    .await?;
    Ok(taken)
}

/// Refuses (403 `scope_escalation`) unless the caller holds every scope of `key`: whoever
/// revokes or takes over a key wields the power it carries.
fn ensure_holds_all_of(principal: &Principal, key: &ApiKey, action: &str) -> Result<(), Error> {
    let scopes = parse_scopes(&key.scopes)?;
    let missing = scopes.difference(principal.scopes());
    if missing.is_empty() {
        return Ok(());
    }
    Err(Error::forbidden(
        "scope_escalation",
        format!(
            "to {action} this API key you must hold every scope it holds; you lack: {}",
            missing.to_claim()
        ),
    ))
}
