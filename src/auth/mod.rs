//! Who is calling: credentials in, a [`Principal`] out.
//!
//! Every tenant route receives a `Principal` (or [`Authorized`], which also checks one
//! scope) from the request's credential: a JWT access token or an API key, as
//! `Authorization: Bearer <credential>` or `X-API-Key: <key>`. The tenant id of a request
//! comes from the verified credential only. Status codes follow DESIGN.md: 401 when the
//! credential is missing or invalid, 403 when it is valid but not allowed (or its tenant is
//! suspended), 404 for another tenant's resource.
//!
//! - API keys are verified in [`authenticate`] (`verify_api_key`), JWTs in [`jwt`],
//!   passwords in [`password`]; login, refresh and logout live in [`session`].

mod authenticate;
pub mod jwt;
pub mod password;
mod routes;
pub mod scope;
pub mod session;
pub mod token;

pub use routes::router;
pub use scope::{Role, Scope, Scopes};

use std::{fmt, marker::PhantomData, time::Duration};

use axum::{extract::FromRequestParts, http::request::Parts};

use crate::{
    api_keys::ApiKeyId,
    config::Config,
    http::{AppState, error::ApiError},
    tenancy::TenantId,
    users::UserId,
};
use jwt::JwtKeys;
use password::Passwords;
use scope::RequiredScope;
use session::SessionId;
use token::TokenHasher;

/// The authenticated caller of a tenant route.
///
/// Only `auth` constructs one, from a verified credential: the fields are private to it
/// and readable elsewhere through accessors, so no handler can make up a principal for another
/// tenant and open that tenant's transaction.
#[derive(Debug, Clone)]
pub struct Principal {
    tenant_id: TenantId,
    actor: Actor,
    scopes: Scopes,
    session_id: Option<SessionId>,
}

/// Who acts: recorded in audit events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Actor {
    User(UserId),
    ApiKey(ApiKeyId),
    /// A token minted by an operator with `tenantry token issue`.
    Service(String),
}

impl fmt::Display for Actor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Actor::User(id) => write!(f, "user:{id}"),
            Actor::ApiKey(id) => write!(f, "api_key:{id}"),
            Actor::Service(name) => write!(f, "service:{name}"),
        }
    }
}

impl Principal {
    /// The tenant of the verified credential.
    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    pub fn actor(&self) -> &Actor {
        &self.actor
    }

    pub fn scopes(&self) -> Scopes {
        self.scopes
    }

    /// The login session of a user's access token (absent for API keys and minted tokens).
    pub fn session_id(&self) -> Option<SessionId> {
        self.session_id
    }

    pub fn require(&self, scope: Scope) -> Result<(), ApiError> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                "insufficient_scope",
                format!("this credential lacks the `{scope}` scope"),
            ))
        }
    }

    pub fn user_id(&self) -> Option<UserId> {
        match self.actor {
            Actor::User(id) => Some(id),
            _ => None,
        }
    }
}

/// The keys and settings credentials are checked and issued with.
pub struct AuthService {
    pub jwt: JwtKeys,
    pub hasher: TokenHasher,
    pub passwords: Passwords,
    pub access_token_ttl: Duration,
    pub refresh_token_ttl: Duration,
}

impl AuthService {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        scope::validate_role_map()?;
        Ok(Self {
            jwt: JwtKeys::from_config(config)?,
            hasher: TokenHasher::new(config.token_hash_key.clone()),
            passwords: Passwords::new()?,
            access_token_ttl: config.access_token_ttl,
            refresh_token_ttl: config.refresh_token_ttl,
        })
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        if let Some(principal) = parts.extensions.get::<Principal>() {
            return Ok(principal.clone());
        }
        let principal = authenticate::authenticate(&parts.headers, state).await?;
        tracing::Span::current().record("tenant_id", tracing::field::display(principal.tenant_id));
        parts.extensions.insert(principal.clone());
        Ok(principal)
    }
}

/// A principal that holds the scope `S` — the route's declared requirement.
pub struct Authorized<S: RequiredScope>(pub Principal, pub PhantomData<S>);

impl<S: RequiredScope> FromRequestParts<AppState> for Authorized<S> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let principal = Principal::from_request_parts(parts, state).await?;
        principal.require(S::SCOPE)?;
        Ok(Self(principal, PhantomData))
    }
}
