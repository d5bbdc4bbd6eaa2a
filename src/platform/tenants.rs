//! Tenant lifecycle for operators: used by the platform routes and by `tenantry tenant
//! create`, so both behave identically.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use utoipa::ToSchema;

use crate::{
    audit::{self, AuditEvent},
    auth::{
        Role,
        password::{self, Passwords},
    },
    db::Db,
    http::error::ApiError,
    tenancy::{Plan, Slug, Tenant, TenantId, TenantStatus, parse_name, store as tenants},
    users::{Email, User, store as users},
};

pub const OPERATOR_ACTOR: &str = "operator";

pub struct NewTenant {
    pub slug: String,
    pub name: String,
    pub plan: Option<Plan>,
    pub owner_email: String,
    pub owner_password: Option<SecretString>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TenantOwner {
    pub id: crate::users::UserId,
    #[schema(example = "owner@acme.test")]
    pub email: String,
    pub role: Role,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreatedTenant {
    pub tenant: Tenant,
    pub owner: TenantOwner,
    /// The owner's generated password, present only when none was given. Shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(example = "Zb4l8Qk1v2T9xYpq3RmN0c")]
    pub owner_password: Option<String>,
}

/// Creates a tenant and its owner in one transaction.
pub async fn create(
    db: &Db,
    passwords: &Passwords,
    new: NewTenant,
) -> Result<CreatedTenant, ApiError> {
    let slug = Slug::parse(&new.slug)?;
    let name = parse_name(&new.name)?;
    let email = Email::parse(&new.owner_email)
        .map_err(|_| ApiError::invalid("owner_email", "must be a valid email address"))?;
    let (password, generated) = match new.owner_password {
        Some(given) => {
            password::validate("owner_password", given.expose_secret())?;
            (given, false)
        }
        None => (password::generate(), true),
    };
    let shown = generated.then(|| password.expose_secret().to_owned());
    let hash = passwords.hash(password).await?;

    let mut tx = db.platform().await?;
    let tenant = tenants::insert(
        &mut tx,
        TenantId::new(),
        &slug,
        &name,
        new.plan.unwrap_or(Plan::Free),
    )
    .await?;
    tx.enter_tenant(tenant.id).await?;
    let owner: User = users::insert(&mut tx, tenant.id, &email, Role::Owner, &hash).await?;
    audit::record_as(
        &mut tx,
        tenant.id,
        OPERATOR_ACTOR,
        AuditEvent::new("tenant.created", "tenant", tenant.id),
    )
    .await?;
    tx.commit().await?;
    Ok(CreatedTenant {
        tenant,
        owner: TenantOwner {
            id: owner.id,
            email: owner.email,
            role: owner.role,
        },
        owner_password: shown,
    })
}

pub struct TenantChanges {
    pub name: Option<String>,
    pub plan: Option<Plan>,
    pub status: Option<TenantStatus>,
}

/// Changes a tenant's name, plan or status. Suspension takes effect on the tenant's next
/// request: every credential check reads the status.
pub async fn update(
    db: &Db,
    id: TenantId,
    changes: TenantChanges,
    preconditions: &crate::http::etag::Preconditions,
) -> Result<Tenant, ApiError> {
    let name = changes.name.as_deref().map(parse_name).transpose()?;
    let mut tx = db.platform().await?;
    let current = tenants::find_for_update(&mut tx, id)
        .await?
        .ok_or(ApiError::NotFound("tenant"))?;
    preconditions.check_write(current.version)?;
    let name = name.unwrap_or_else(|| current.name.clone());
    let plan = changes.plan.unwrap_or(current.plan);
    let status = changes.status.unwrap_or(current.status);
    if (name.as_str(), plan, status) == (current.name.as_str(), current.plan, current.status) {
        return Ok(current);
    }
    let updated = tenants::update_admin(&mut tx, id, &name, plan, status).await?;
    tx.enter_tenant(id).await?;
    let data =
        serde_json::json!({"name": updated.name, "plan": updated.plan, "status": updated.status});
    audit::record_as(
        &mut tx,
        id,
        OPERATOR_ACTOR,
        AuditEvent::new("tenant.updated", "tenant", id).data(data),
    )
    .await?;
    tx.commit().await?;
    Ok(updated)
}
