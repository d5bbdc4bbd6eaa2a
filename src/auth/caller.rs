//! Who the calling credential is: its tenant, its actor, the scopes it holds now and, for a
//! login session, its user (`GET /v1/me`).

use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    access::{Actor, Principal},
    db::{TenantTx, table},
    error::Error,
    tenancy::Tenant,
    users::User,
};

/// The caller, as `GET /v1/me` shows it.
#[derive(Serialize, ToSchema)]
pub struct Me {
    pub tenant: Tenant,
    /// `user`, `api_key` or `service`.
    #[schema(example = "user")]
    pub actor_type: &'static str,
    #[schema(example = "01937a5e-7c1a-7b3e-9a52-2f0d3c4b5a69")]
    pub actor_id: String,
    /// The scopes this credential holds now.
    #[schema(example = json!(["tenant:read", "users:read"]))]
    pub scopes: Vec<String>,
    /// The signed-in user, for a login session.
    pub user: Option<User>,
}

/// Describes the caller. Needs no scope: every credential may see itself.
pub async fn me(tx: &mut TenantTx, principal: &Principal) -> Result<Me, Error> {
    let tenant: Tenant = table::get(tx, principal.tenant_id()).await?;
    let user = match principal.user_id() {
        Some(id) => table::find::<User>(tx, id).await?,
        None => None,
    };
    let (actor_type, actor_id) = match principal.actor() {
        Actor::User(id) => ("user", id.to_string()),
        Actor::ApiKey(id) => ("api_key", id.to_string()),
        Actor::Service(name) => ("service", name.clone()),
    };
    Ok(Me {
        tenant,
        actor_type,
        actor_id,
        scopes: principal.scopes().to_vec(),
        user,
    })
}
