//! Scopes, roles, and the role → scope map of `policies/roles.toml`.
//!
//! A route declares the scope it needs in its signature with [`super::Authorized`] and one
//! of the marker types below (`Authorized<scope::UsersWrite>`), so the requirement is part
//! of the handler's type and cannot be forgotten in its body.

use std::{collections::BTreeMap, fmt, str::FromStr, sync::LazyLock};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

macro_rules! scopes {
    ($($variant:ident => $name:literal),+ $(,)?) => {
        /// A permission a credential may carry.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema)]
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
}

const _: () = assert!(Scope::ALL.len() <= 32, "Scopes is a u32 bit set");

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

/// A tenant user's role.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    ToSchema,
    sqlx::Type,
)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(example = "member")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
    Billing,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
            Role::Billing => "billing",
        }
    }

    pub const ALL: &'static [Role] = &[
        Role::Owner,
        Role::Admin,
        Role::Member,
        Role::Viewer,
        Role::Billing,
    ];

    /// The scopes this role grants, from `policies/roles.toml`.
    pub fn scopes(self) -> Scopes {
        ROLE_MAP.get(&self).copied().unwrap_or_default()
    }
}

const ROLES_TOML: &str = include_str!("../../policies/roles.toml");

static ROLE_MAP: LazyLock<BTreeMap<Role, Scopes>> =
    LazyLock::new(|| load_role_map(ROLES_TOML).unwrap_or_default());

/// Validates `policies/roles.toml` (called at start-up, so a bad file stops the server).
pub fn validate_role_map() -> anyhow::Result<()> {
    load_role_map(ROLES_TOML).map(drop)
}

fn load_role_map(source: &str) -> anyhow::Result<BTreeMap<Role, Scopes>> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct File {
        roles: BTreeMap<Role, RoleEntry>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RoleEntry {
        scopes: Vec<String>,
    }
    let file: File =
        toml::from_str(source).map_err(|e| anyhow::anyhow!("policies/roles.toml: {e}"))?;
    let mut map = BTreeMap::new();
    for role in Role::ALL {
        let entry = file
            .roles
            .get(role)
            .ok_or_else(|| anyhow::anyhow!("policies/roles.toml: role {role:?} missing"))?;
        let scopes = entry
            .scopes
            .iter()
            .map(|s| s.parse::<Scope>())
            .collect::<Result<Scopes, _>>()
            .map_err(|e| anyhow::anyhow!("policies/roles.toml: {e}"))?;
        map.insert(*role, scopes);
    }
    Ok(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_role_map_is_valid_and_owner_has_everything() {
        validate_role_map().expect("policies/roles.toml is valid");
        assert_eq!(Role::Owner.scopes(), Scope::ALL.iter().copied().collect());
    }

    #[test]
    fn roles_form_the_expected_hierarchy() {
        assert!(Role::Admin.scopes().is_subset_of(Role::Owner.scopes()));
        assert!(
            !Role::Owner.scopes().is_subset_of(Role::Admin.scopes()),
            "an admin must not be able to mint an owner"
        );
        assert!(Role::Member.scopes().is_subset_of(Role::Admin.scopes()));
        assert!(
            !Role::Member.scopes().contains(Scope::UsersWrite),
            "a member must not manage users"
        );
        assert!(
            Role::Viewer
                .scopes()
                .iter()
                .all(|s| s.as_str().ends_with(":read") || s == Scope::RealtimeSubscribe)
        );
    }

    #[test]
    fn unknown_scope_in_the_file_is_refused() {
        let bad = ROLES_TOML.replacen("\"tenant:read\"", "\"tenant:reed\"", 1);
        assert!(load_role_map(&bad).is_err());
    }

    #[test]
    fn claims_round_trip_and_unknown_scopes_fail() {
        let scopes = Scopes::parse_claim("orders:read  users:write").unwrap();
        assert!(scopes.contains(Scope::OrdersRead) && scopes.contains(Scope::UsersWrite));
        assert_eq!(Scopes::parse_claim(&scopes.to_claim()).unwrap(), scopes);
        assert!(Scopes::parse_claim("orders:read root").is_err());
    }
}
