//! The operator's work across tenants: the tenant directory — create a tenant with its
//! owner, list, read, rename, change plan, suspend and reactivate.
//!
//! Every operation takes the platform transaction (the platform role's pool, never the
//! request pool) and the [`Operator`], whom `auth` verifies from the operator
//! token (HTTP) or who runs the command line. Creating a tenant writes its owner under
//! that tenant's RLS context, the same wall a tenant request meets. The HTTP API and
//! `tenantry tenant create` both call [`create_tenant`], so both behave identically.

use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use sqlx::PgConnection;
use utoipa::ToSchema;

use crate::cache;
use crate::{
    access::{Operator, Role},
    audit::{self, AuditEvent, Author},
    db::{Db, PlatformTx, table},
    error::{Error, FieldError},
    id::{TenantId, UserId},
    page::{Page, PageRequest},
    plans,
    tenancy::{Plan, Slug, Tenant, TenantStatus, parse_name, store as tenants},
    users::{self, Email, NewUser, password::Passwords},
    versioning::{self, Change, ExpectedVersion},
};

/// A tenant to create, parsed, with its owner's password already hashed.
pub struct NewTenant {
    slug: Slug,
    name: String,
    plan: Plan,
    owner: NewUser,
}

impl NewTenant {
    /// Checks slug, name, owner email and password (or generates one), and hashes it.
    /// Every field is checked before any password is hashed, and one refusal names all the
    /// fields that are wrong.
    pub async fn parse(
        passwords: &Passwords,
        slug: &str,
        name: &str,
        plan: Option<&str>,
        owner_email: &str,
        owner_password: Option<SecretString>,
    ) -> Result<Self, Error> {
        let (slug, name) = (Slug::parse(slug), parse_name(name));
        let plan = plan.map(Plan::parse).transpose();
        refuse_all([
            slug.as_ref().err().cloned(),
            name.as_ref().err().cloned(),
            plan.as_ref().err().cloned(),
            Email::parse(owner_email)
                .err()
                .map(|_| Error::invalid("owner_email", "must be a valid email address")),
            owner_password.as_ref().and_then(|password| {
                users::password::validate("owner_password", password.expose_secret()).err()
            }),
        ])?;
        let (slug, name, plan) = (slug?, name?, plan?);
        let owner = NewUser::parse(
            passwords,
            owner_email,
            "owner_email",
            Role::Owner,
            owner_password,
            "owner_password",
        )
        .await?;
        Ok(Self {
            slug,
            name,
            plan: plan.unwrap_or_else(Plan::default_plan),
            owner,
        })
    }
}

/// One validation failure naming the fields of every refusal among `refusals`, if any.
fn refuse_all(refusals: impl IntoIterator<Item = Option<Error>>) -> Result<(), Error> {
    let fields: Vec<FieldError> = refusals
        .into_iter()
        .flatten()
        .flat_map(|refusal| refusal.fields().to_vec())
        .collect();
    if fields.is_empty() {
        Ok(())
    } else {
        Err(Error::validation(fields))
    }
}

/// The owner a new tenant starts with.
#[derive(Debug, Serialize, ToSchema)]
pub struct TenantOwner {
    pub id: UserId,
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

/// Creates a tenant and its owner.
pub async fn create_tenant(
    tx: &mut PlatformTx,
    operator: &Operator,
    new: NewTenant,
) -> Result<CreatedTenant, Error> {
    plans::ensure_exists(tx, &new.plan).await?;
    let (tenant_id, owner_id) = (TenantId::new(), UserId::new());
    insert_tenant_with_owner(tx, tenant_id, &new, owner_id).await?;
    // `create_tenant()` left the transaction in the new tenant's context, where its
    // audit event belongs.
    let tenant = table::get::<Tenant>(tx, tenant_id).await?;
    audit::record(
        tx,
        Author::operator(operator, tenant.id),
        AuditEvent::new("tenant.created", "tenant", tenant.id)
            .data(serde_json::json!({"plan": tenant.plan})),
    )
    .await?;
    Ok(CreatedTenant {
        tenant,
        owner: TenantOwner {
            id: owner_id,
            email: new.owner.email().as_str().to_owned(),
            role: new.owner.role(),
        },
        owner_password: new
            .owner
            .generated_password()
            .map(|password| password.expose_secret().to_owned()),
    })
}

/// Writes a tenant and its owner through `create_tenant()`, the narrow database function
/// that is the platform role's only way to write a user: the role itself may neither read
/// nor write users, so it can never see a password hash or add a user to a tenant that
/// exists.
#[tracing::instrument(skip_all)]
async fn insert_tenant_with_owner(
    conn: &mut PgConnection,
    tenant_id: TenantId,
    new: &NewTenant,
    owner_id: UserId,
) -> Result<(), sqlx::Error> {
    sqlx::query("select create_tenant($1, $2, $3, $4, $5, $6, $7)")
        .bind(tenant_id)
        .bind(new.slug.as_str())
        .bind(&new.name)
        .bind(&new.plan)
        .bind(owner_id)
        .bind(new.owner.email().as_str())
        .bind(new.owner.password_hash())
        .execute(conn)
        .await
        .map(drop)
}

/// All tenants, newest first.
pub async fn list_tenants(
    tx: &mut PlatformTx,
    _: &Operator,
    page: PageRequest,
) -> Result<Page<Tenant>, Error> {
    table::page(tx, page).await
}

/// One tenant.
pub async fn get_tenant(tx: &mut PlatformTx, _: &Operator, id: TenantId) -> Result<Tenant, Error> {
    table::get(tx, id).await
}

/// What the operator may change about a tenant; `None` keeps a field as it is.
#[derive(Debug, Default)]
pub struct TenantChanges {
    pub name: Option<String>,
    pub plan: Option<Plan>,
    pub status: Option<TenantStatus>,
}

/// Changes a tenant's name, plan or status, if its version is still the expected one.
/// Suspension takes effect on the tenant's next request: every credential check reads the
/// status.
pub async fn update_tenant(
    tx: &mut PlatformTx,
    operator: &Operator,
    id: TenantId,
    expected: &ExpectedVersion,
    changes: TenantChanges,
) -> Result<Tenant, Error> {
    let changes = TenantChanges {
        name: changes.name.as_deref().map(parse_name).transpose()?,
        ..changes
    };
    refuse_platform_log(id)?;
    if let Some(plan) = &changes.plan {
        plans::ensure_exists(tx, plan).await?;
    }
    // The audit event is written under the tenant's own context, as its policies require.
    tx.enter_tenant(id).await?;
    // Its status and plan are read by every credential check of the tenant; its profile
    // may be cached.
    tx.credentials_changed(id);
    tx.resource_changed(id, cache::kind::TENANT, id.as_uuid());
    versioning::update(tx, Author::operator(operator, id), id, expected, changes).await
}

/// An operator's change with every field resolved.
pub struct Resolved {
    name: String,
    plan: Plan,
    status: TenantStatus,
}

impl Change for TenantChanges {
    type Resource = Tenant;
    type Id = TenantId;
    type Checked = Resolved;

    fn against(self, current: &Tenant) -> Result<Option<Resolved>, Error> {
        let resolved = Resolved {
            name: self.name.unwrap_or_else(|| current.name.clone()),
            plan: self.plan.unwrap_or_else(|| current.plan.clone()),
            status: self.status.unwrap_or(current.status),
        };
        let unchanged = (resolved.name.as_str(), &resolved.plan, resolved.status)
            == (current.name.as_str(), &current.plan, current.status);
        Ok((!unchanged).then_some(resolved))
    }

    async fn apply(to: &Resolved, conn: &mut PgConnection, id: TenantId) -> Result<Tenant, Error> {
        Ok(tenants::update_admin(conn, id, &to.name, &to.plan, to.status).await?)
    }

    fn audit_event(_: &Resolved, id: TenantId, updated: &Tenant) -> AuditEvent {
        AuditEvent::new("tenant.updated", "tenant", id).data(
            serde_json::json!({"name": updated.name, "plan": updated.plan, "status": updated.status}),
        )
    }
}

/// A tenant's plan, the limits the operator set for it, and the effective ones.
pub async fn tenant_limits(
    tx: &mut PlatformTx,
    _: &Operator,
    id: TenantId,
) -> Result<plans::TenantLimits, Error> {
    plans::effective(tx, id).await
}

/// Replaces the limits the operator sets for one tenant in place of its plan's (`{}` puts
/// the tenant back on its plan's limits), audited in the tenant's log with before and after.
pub async fn override_limits(
    tx: &mut PlatformTx,
    operator: &Operator,
    id: TenantId,
    overrides: plans::Overrides,
) -> Result<plans::TenantLimits, Error> {
    refuse_platform_log(id)?;
    tx.enter_tenant(id).await?;
    let before = plans::effective(tx, id).await?;
    if before.overrides != overrides {
        tenants::set_limit_overrides(tx, id, &overrides).await?;
        // The limits are read by credential checks; the profile's version moves.
        tx.credentials_changed(id);
        tx.resource_changed(id, cache::kind::TENANT, id.as_uuid());
        plans::record_override(tx, operator, id, &before.overrides, &overrides).await?;
    }
    plans::effective(tx, id).await
}

/// The platform's own audit log is a tenant only in form: nobody may change it.
fn refuse_platform_log(id: TenantId) -> Result<(), Error> {
    if id == audit::platform_log() {
        return Err(Error::forbidden(
            "reserved_tenant",
            "this is the platform's own audit log, not a tenant to change",
        ));
    }
    Ok(())
}

/// The tenant an operator names by slug or id (the command line's `--tenant`, the
/// operator API's `tenant` parameter), if it exists: a slug through `Db::resolve_tenant`,
/// and either way the tenant's row, so that an id of no tenant is `None` too.
pub async fn find_tenant(
    db: &Db,
    _operator: &Operator,
    reference: &str,
) -> Result<Option<Tenant>, Error> {
    let Some(id) = db.resolve_tenant(reference).await? else {
        return Ok(None);
    };
    db.in_platform(async |tx| Ok::<_, Error>(table::find::<Tenant>(tx, id).await?))
        .await
}
