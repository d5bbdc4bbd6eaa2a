//! Tenant users: domain types, persistence and `/v1/users`.
//!
//! Role changes follow one rule (with API keys' scopes following the same one): you may
//! only grant what you hold. A caller may assign a role, or touch a user, only when that
//! role's scopes are a subset of the caller's — so a member cannot make themselves admin,
//! an admin cannot mint or demote an owner — and nobody changes their own role or status.
//! A tenant always keeps at least one active owner.

mod routes;
pub mod store;

pub use routes::router;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;
use validator::ValidateEmail;

use crate::{auth::Role, http::error::ApiError};

crate::id_type!(
    /// Identifies a user within a tenant.
    UserId
);

/// A normalised (trimmed, lower-case) email address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        let email = value.trim().to_lowercase();
        if email.len() > 254 || !email.validate_email() {
            return Err(ApiError::invalid("email", "must be a valid email address"));
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(example = "active")]
pub enum UserStatus {
    Active,
    Deactivated,
}

/// A user as the API shows it (never the password hash).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct User {
    pub id: UserId,
    #[schema(example = "ada@acme.test")]
    pub email: String,
    pub role: Role,
    pub status: UserStatus,
    #[schema(example = 1)]
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_are_normalised_and_checked() {
        assert_eq!(
            Email::parse("  Ada@Acme.TEST ").unwrap().as_str(),
            "ada@acme.test"
        );
        for bad in ["", "ada", "ada@", "@acme.test", "a b@acme.test"] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
    }
}
