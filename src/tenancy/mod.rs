//! Tenants: the domain types, their persistence, and the tenant's own profile
//! ([`profile`]: read it, rename it). The operator's work across tenants (create, plan,
//! suspend) is in `platform`.
//!
//! A tenant reads and renames itself through its own RLS context; its plan and status are
//! the operator's to change (the request role has no UPDATE grant on those columns).

pub mod profile;
pub mod store;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

pub use crate::id::TenantId;
use crate::{
    db::table::Table,
    error::Error,
    rule::{self, TextRule, text_schema},
    versioning::Versioned,
};

/// A tenant's URL-safe unique handle: 3-63 lowercase letters, digits and inner hyphens.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Slug(String);

impl Slug {
    pub const RULE: TextRule = TextRule {
        chars: 3..=63,
        pattern: Some("^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$"),
        message: "must be 3-63 lowercase letters, digits or hyphens, not starting or ending with a hyphen",
        example: "acme",
        secret: false,
    };

    pub fn parse(value: &str) -> Result<Self, Error> {
        let ok = Self::RULE.fits(value)
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !value.starts_with('-')
            && !value.ends_with('-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(Error::invalid("slug", Self::RULE.message))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_schema!(Slug, "Slug", Slug::RULE);

/// A tenant's display name ([`rule::NAME`]): 1-200 characters after trimming, no control
/// characters.
pub fn parse_name(value: &str) -> Result<String, Error> {
    let name = value.trim();
    if !rule::NAME.fits(name) || !rule::is_printable_text(name) {
        return Err(Error::invalid("name", rule::NAME.message));
    }
    Ok(name.to_owned())
}

/// The plan a tenant is on (see `plans`).
pub use crate::plans::PlanName as Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(example = "active")]
pub enum TenantStatus {
    Active,
    Suspended,
}

/// A tenant as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct Tenant {
    pub id: TenantId,
    #[schema(example = "acme")]
    pub slug: String,
    #[schema(example = "Acme Corp")]
    pub name: String,
    #[schema(value_type = String, example = "pro")]
    pub plan: Plan,
    pub status: TenantStatus,
    /// Incremented on every change; also the `ETag`.
    #[schema(example = 1)]
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Table for Tenant {
    type Id = TenantId;
    const NAME: &'static str = "tenant";
    const TABLE: &'static str = "tenants";
    const COLUMNS: &'static str = store::COLUMNS;

    fn id(&self) -> uuid::Uuid {
        self.id.as_uuid()
    }
}

impl Versioned for Tenant {
    fn version(&self) -> i64 {
        self.version
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_the_documented_shape() {
        for ok in ["acme", "a-1", "abc", "x".repeat(63).as_str()] {
            assert!(Slug::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "ab",
            "-acme",
            "acme-",
            "Acme",
            "ac me",
            "acme_1",
            "",
            &"x".repeat(64),
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_slug_schema_admits_only_slugs_parse_accepts() {
        rule::conformance::schema_admits_only_what_parse_accepts(
            &Slug::RULE,
            &[
                "acme",
                "a-1",
                "a--b",
                "ab",
                "-acme",
                "acme-",
                "Acme",
                &"x".repeat(63),
            ],
            |value| Slug::parse(value).is_ok(),
        );
    }

    #[test]
    fn names_are_trimmed_and_bounded() {
        assert_eq!(parse_name("  Acme ").unwrap(), "Acme");
        assert!(parse_name("   ").is_err());
        assert!(parse_name(&"n".repeat(201)).is_err());
    }
}
