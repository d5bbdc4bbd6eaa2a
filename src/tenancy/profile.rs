//! The calling tenant's own profile: read it (`tenant:read`), rename it (`tenant:write`).

use sqlx::PgConnection;

use super::{Tenant, TenantId, parse_name, store};
use crate::cache;
use crate::{
    access::{Principal, Scope},
    audit::AuditEvent,
    db::{TenantTx, table},
    error::Error,
    versioning::{self, Change, ExpectedVersion},
};

/// The tenant of the calling credential.
pub async fn get(tx: &mut TenantTx, principal: &Principal) -> Result<Tenant, Error> {
    principal.require(Scope::TenantRead)?;
    table::get(tx, principal.tenant_id()).await
}

/// What a tenant may change about itself. Plan and status are the operator's.
#[derive(Debug, Default)]
pub struct ProfileChanges {
    pub name: Option<String>,
}

/// Renames the calling tenant, if its version is still the expected one.
pub async fn update(
    tx: &mut TenantTx,
    principal: &Principal,
    expected: &ExpectedVersion,
    changes: ProfileChanges,
) -> Result<Tenant, Error> {
    principal.require(Scope::TenantWrite)?;
    let changes = ProfileChanges {
        name: changes.name.as_deref().map(parse_name).transpose()?,
    };
    tx.resource_changed(cache::kind::TENANT, principal.tenant_id().as_uuid());
    versioning::update(
        tx,
        principal.into(),
        principal.tenant_id(),
        expected,
        changes,
    )
    .await
}

impl Change for ProfileChanges {
    type Resource = Tenant;
    type Id = TenantId;
    type Checked = String;

    /// The new name, when it differs.
    fn against(self, current: &Tenant) -> Result<Option<String>, Error> {
        Ok(self.name.filter(|name| *name != current.name))
    }

    async fn apply(name: &String, conn: &mut PgConnection, id: TenantId) -> Result<Tenant, Error> {
        Ok(store::rename(conn, id, name).await?)
    }

    fn audit_event(name: &String, id: TenantId, _: &Tenant) -> AuditEvent {
        AuditEvent::new("tenant.updated", "tenant", id).data(serde_json::json!({"name": name}))
    }
}
