//! Who may do what: the [`Principal`] every tenant operation takes, the platform
//! [`Operator`], scopes and roles, and the one rule for handing out permissions — nobody
//! grants what they do not hold ([`Principal::ensure_may_grant`]).
//!
//! These are plain values, shared by every layer: the tenant transaction is opened from a
//! `Principal` (`db`), audit events and domain events name its [`Actor`], and each
//! application function checks the scope it needs with [`Principal::require`], whichever
//! transport called it.
//!
//! A `Principal` is made only by `auth`, from a credential it has verified (the
//! architecture test holds every other module to that): the tenant of a request comes from
//! its verified credential, never from anything the client controls.

mod role;
pub mod scope;

pub use role::{Role, validate_role_map};
pub use scope::{RequiredScope, Scope, Scopes, UnknownScope};

use std::fmt;

use crate::{
    error::Error,
    id::{ApiKeyId, SessionId, TenantId, UserId},
};

/// The verified caller of a tenant operation.
#[derive(Debug, Clone)]
pub struct Principal {
    tenant_id: TenantId,
    actor: Actor,
    scopes: Scopes,
    session_id: Option<SessionId>,
    /// The `jti` of a service token (`tenantry token issue`).
    token_id: Option<uuid::Uuid>,
}

/// Who acts: recorded in audit events and in domain events' metadata.
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

/// What a caller hands out: scopes (to an API key) or a role (to a user).
#[derive(Debug, Clone, Copy)]
pub enum Grant {
    Scopes(Scopes),
    Role(Role),
}

impl Principal {
    /// A principal for a credential that `auth` has just verified. Nothing else calls this.
    pub(crate) fn verified(
        tenant_id: TenantId,
        actor: Actor,
        scopes: Scopes,
        session_id: Option<SessionId>,
    ) -> Self {
        Self {
            tenant_id,
            actor,
            scopes,
            session_id,
            token_id: None,
        }
    }

    /// The same principal, known to act with the service token `jti`.
    pub(crate) fn with_token_id(mut self, jti: uuid::Uuid) -> Self {
        self.token_id = Some(jti);
        self
    }

    /// The credential it acted with, as audit events record it: `session:<id>` (a user's
    /// login), `api_key:<id>`, `service_token:<jti>`.
    pub fn credential(&self) -> Option<String> {
        match (&self.actor, self.session_id, self.token_id) {
            (_, Some(session), _) => Some(format!("session:{session}")),
            (Actor::ApiKey(key), ..) => Some(format!("api_key:{key}")),
            (_, _, Some(jti)) => Some(format!("service_token:{jti}")),
            _ => None,
        }
    }

    /// The kind of credential it acted with, for spans and logs (never the credential):
    /// `user`, `api_key` or `service_token`.
    pub fn credential_kind(&self) -> &'static str {
        match self.actor {
            Actor::User(_) => "user",
            Actor::ApiKey(_) => "api_key",
            Actor::Service(_) => "service_token",
        }
    }

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

    pub fn user_id(&self) -> Option<UserId> {
        match self.actor {
            Actor::User(id) => Some(id),
            _ => None,
        }
    }

    /// Refuses (403 `insufficient_scope`) unless the credential holds `scope`.
    pub fn require(&self, scope: Scope) -> Result<(), Error> {
        if self.scopes.contains(scope) {
            Ok(())
        } else {
            Err(Error::forbidden(
                "insufficient_scope",
                format!("this credential lacks the `{scope}` scope"),
            ))
        }
    }

    /// Nobody grants what they do not hold: the caller may give an API key `scopes`, or
    /// assign a role (or touch a user who has it), only when it holds every scope of it.
    /// So a member cannot make themselves admin, and an admin cannot mint or demote an owner.
    pub fn ensure_may_grant(&self, grant: Grant) -> Result<(), Error> {
        let wanted = match grant {
            Grant::Scopes(scopes) => scopes,
            Grant::Role(role) => role.scopes(),
        };
        let missing = wanted.difference(self.scopes);
        if missing.is_empty() {
            return Ok(());
        }
        Err(match grant {
            Grant::Scopes(_) => Error::forbidden(
                "scope_escalation",
                format!(
                    "you cannot grant scopes you do not hold: {}",
                    missing.to_claim()
                ),
            ),
            Grant::Role(role) => Error::forbidden(
                "role_escalation",
                format!("the `{}` role has scopes you do not hold", role.as_str()),
            ),
        })
    }
}

/// The platform operator: the caller of cross-tenant operations (the tenant directory).
/// `auth` makes one from the operator token; the CLI, whose user holds the database
/// owner's credentials, acts as the operator by construction.
#[derive(Debug, Clone, Copy)]
pub struct Operator(());

impl Operator {
    /// The operator, once its credential has been verified (or for the CLI).
    pub(crate) fn verified() -> Self {
        Self(())
    }

    /// How audit events name the operator.
    pub fn actor(&self) -> &'static str {
        "operator"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn principal(scopes: &str) -> Principal {
        Principal::verified(
            TenantId::new(),
            Actor::Service("test".into()),
            Scopes::parse_claim(scopes).unwrap(),
            None,
        )
    }

    #[test]
    fn granting_scopes_names_the_ones_the_caller_lacks() {
        let caller = principal("orders:read users:read");
        let wanted = Scopes::parse_claim("orders:read users:write api_keys:write").unwrap();
        let error = caller.ensure_may_grant(Grant::Scopes(wanted)).unwrap_err();
        assert_eq!(error.code(), "scope_escalation");
        assert!(
            error.message().ends_with("users:write api_keys:write"),
            "{}",
            error.message()
        );
        let held = Scopes::parse_claim("orders:read").unwrap();
        assert!(caller.ensure_may_grant(Grant::Scopes(held)).is_ok());
    }

    #[test]
    fn granting_a_role_needs_every_scope_of_it() {
        let admin = principal(&Role::Admin.scopes().to_claim());
        assert!(admin.ensure_may_grant(Grant::Role(Role::Member)).is_ok());
        let error = admin
            .ensure_may_grant(Grant::Role(Role::Owner))
            .unwrap_err();
        assert_eq!(error.code(), "role_escalation");
    }
}
