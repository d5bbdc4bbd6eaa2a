//! Scopes: the permissions a credential carries, as a bit set.
//!
//! Each scope also has a marker type (`scope::UsersWrite`) so a transport can name a
//! requirement in a type — the HTTP handlers' `Authorized<scope::UsersWrite>` — and have it
//! checked before the handler's body runs.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Serialize};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{ObjectBuilder, RefOr, Type, schema::Schema},
};

macro_rules! scopes {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// A permission a credential may carry.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        pub enum Scope {
            $(#[serde(rename = $name)] $variant),+
        }

        impl Scope {
            pub const ALL: &'static [Scope] = &[$(Scope::$variant),+];

            pub fn as_str(self) -> &'static str {
                match self { $(Scope::$variant => $name),+ }
            }
        }

        impl FromStr for Scope {
            type Err = UnknownScope;
            fn from_str(s: &str) -> Result<Self, UnknownScope> {
                match s { $($name => Ok(Scope::$variant),)+ _ => Err(UnknownScope(s.to_owned())) }
            }
        }

        $(
            #[doc = concat!("Route requirement: `", $name, "`.")]
            pub struct $variant;
            impl RequiredScope for $variant {
                const SCOPE: Scope = Scope::$variant;
            }
        )+
    };
}

/// Implemented by the marker types that name a route's required scope.
pub trait RequiredScope {
    const SCOPE: Scope;
}

scopes! {
    TenantRead => "tenant:read",
    TenantWrite => "tenant:write",
    UsersRead => "users:read",
    UsersWrite => "users:write",
    ApiKeysRead => "api_keys:read",
    ApiKeysWrite => "api_keys:write",
    CatalogRead => "catalog:read",
    CatalogWrite => "catalog:write",
    OrdersRead => "orders:read",
    OrdersWrite => "orders:write",
    AuditRead => "audit:read",
    UsageRead => "usage:read",
    RealtimeSubscribe => "realtime:subscribe",
    WebhooksRead => "webhooks:read",
    WebhooksWrite => "webhooks:write",
}

const _: () = assert!(Scope::ALL.len() <= 32, "Scopes is a u32 bit set");

/// The scope names, as the wire has them (written by hand: a derive would read the names
/// the macro above passes it as hidden groups, and publish the variants' Rust names).
impl PartialSchema for Scope {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some("A permission a credential may carry."))
            .enum_values(Some(Scope::ALL.iter().map(|s| s.as_str())))
            .examples(["orders:read"])
            .into()
    }
}

impl ToSchema for Scope {}

#[derive(Debug, thiserror::Error)]
#[error("unknown scope {0:?}")]
pub struct UnknownScope(pub String);

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A set of scopes (a bit set: subset checks are one instruction).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Scopes(u32);

impl Scopes {
    /// A fieldless enum's discriminant is its position: bit n is the n-th scope.
    fn bit(scope: Scope) -> u32 {
        1 << scope as u32
    }

    pub fn contains(self, scope: Scope) -> bool {
        self.0 & Self::bit(scope) != 0
    }

    pub fn is_subset_of(self, other: Scopes) -> bool {
        self.0 & !other.0 == 0
    }

    pub fn intersection(self, other: Scopes) -> Scopes {
        Scopes(self.0 & other.0)
    }

    /// The scopes of `self` that `other` lacks.
    pub fn difference(self, other: Scopes) -> Scopes {
        Scopes(self.0 & !other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn iter(self) -> impl Iterator<Item = Scope> {
        Scope::ALL
            .iter()
            .copied()
            .filter(move |s| self.contains(*s))
    }

    /// Space-separated, as in the JWT `scope` claim.
    pub fn to_claim(self) -> String {
        self.iter().map(Scope::as_str).collect::<Vec<_>>().join(" ")
    }

    /// Parses a space-separated scope claim.
    pub fn parse_claim(claim: &str) -> Result<Scopes, UnknownScope> {
        claim.split_whitespace().map(str::parse).collect()
    }

    pub fn to_vec(self) -> Vec<String> {
        self.iter().map(|s| s.as_str().to_owned()).collect()
    }
}

impl FromIterator<Scope> for Scopes {
    fn from_iter<I: IntoIterator<Item = Scope>>(iter: I) -> Self {
        Scopes(iter.into_iter().fold(0, |bits, s| bits | Self::bit(s)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_round_trip_and_unknown_scopes_fail() {
        let scopes = Scopes::parse_claim("orders:read  users:write").unwrap();
        assert!(scopes.contains(Scope::OrdersRead) && scopes.contains(Scope::UsersWrite));
        assert_eq!(Scopes::parse_claim(&scopes.to_claim()).unwrap(), scopes);
        assert!(Scopes::parse_claim("orders:read root").is_err());
    }

    #[test]
    fn difference_is_what_the_other_set_lacks() {
        let mine = Scopes::parse_claim("orders:read users:read").unwrap();
        let wanted = Scopes::parse_claim("orders:read users:write").unwrap();
        assert_eq!(wanted.difference(mine).to_claim(), "users:write");
        assert!(mine.difference(mine).is_empty());
    }
}
