//! Tenant roles and the role → scope map of `policies/roles.toml`, loaded once and
//! validated at start-up (an unknown scope or a missing role stops the server).

use std::{collections::BTreeMap, sync::LazyLock};

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::{Scope, Scopes};

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
}
