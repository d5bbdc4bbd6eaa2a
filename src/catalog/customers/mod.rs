//! Customers: domain types, persistence, the operations on them (list, read, create,
//! change) and what orders need of them (load).
//!
//! A customer's email is unique within the tenant (`customers_email_key`), normalised as
//! a user's is ([`crate::users::Email`]). Customers are not deleted: orders refer to them.

pub mod store;

use std::collections::HashMap;

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::Name;
use crate::cache;
pub use crate::id::CustomerId;
use crate::{
    access::{Principal, Scope},
    audit::{self, AuditEvent},
    db::{
        TenantTx,
        table::{self, Table},
    },
    error::Error,
    page::{Page, PageRequest},
    users::Email,
    versioning::{self, Change, ExpectedVersion, Versioned},
};

/// A customer as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Customer {
    pub id: CustomerId,
    #[schema(example = "grace@example.test")]
    pub email: String,
    #[schema(example = "Grace Hopper")]
    pub name: String,
    /// Incremented on every change; also the `ETag`.
    #[schema(example = 1)]
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When the customer's personal data was erased (`POST /v1/customers/{id}/erase`);
    /// its email and name are placeholders since. Null while it is not.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime, example = json!(null))]
    pub erased_at: Option<OffsetDateTime>,
}

impl Table for Customer {
    type Id = CustomerId;
    const NAME: &'static str = "customer";
    const TABLE: &'static str = "customers";
    const COLUMNS: &'static str = store::COLUMNS;

    fn id(&self) -> uuid::Uuid {
        self.id.as_uuid()
    }
}

impl Versioned for Customer {
    fn version(&self) -> i64 {
        self.version
    }
}

/// A customer to create, parsed.
#[derive(Debug)]
pub struct NewCustomer {
    pub email: Email,
    pub name: Name,
}

/// The fields a PATCH changes, parsed; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct CustomerChanges {
    pub email: Option<Email>,
    pub name: Option<Name>,
}

impl CustomerChanges {
    /// The names of the fields that change, for the audit trail (never their values:
    /// a customer's email and name are personal data).
    pub fn fields(&self) -> Vec<&'static str> {
        [
            ("email", self.email.is_some()),
            ("name", self.name.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, changed)| changed.then_some(field))
        .collect()
    }
}

/// Customers of the tenant, newest first.
pub async fn list(
    tx: &mut TenantTx,
    principal: &Principal,
    page: PageRequest,
) -> Result<Page<Customer>, Error> {
    principal.require(Scope::CatalogRead)?;
    table::page(tx, page).await
}

/// One customer.
pub async fn get(
    tx: &mut TenantTx,
    principal: &Principal,
    id: CustomerId,
) -> Result<Customer, Error> {
    principal.require(Scope::CatalogRead)?;
    table::get(tx, id).await
}

/// Adds a customer.
pub async fn create(
    tx: &mut TenantTx,
    principal: &Principal,
    new: NewCustomer,
) -> Result<Customer, Error> {
    principal.require(Scope::CatalogWrite)?;
    let customer = store::insert(tx, principal.tenant_id(), &new).await?;
    audit::record(
        tx,
        principal,
        AuditEvent::new("customer.created", "customer", customer.id)
            .personal(serde_json::json!({"email": customer.email, "name": customer.name})),
    )
    .await?;
    Ok(customer)
}

/// Changes a customer, if its version is still the expected one.
pub async fn update(
    tx: &mut TenantTx,
    principal: &Principal,
    id: CustomerId,
    expected: &ExpectedVersion,
    changes: CustomerChanges,
) -> Result<Customer, Error> {
    principal.require(Scope::CatalogWrite)?;
    tx.resource_changed(cache::kind::CUSTOMER, id.as_uuid());
    versioning::update(tx, principal.into(), id, expected, changes).await
}

impl Change for CustomerChanges {
    type Resource = Customer;
    type Id = CustomerId;
    type Checked = Self;
    const PERSONAL_FIELDS: &'static [&'static str] = &["email", "name"];

    fn against(self, current: &Customer) -> Result<Option<Self>, Error> {
        if current.erased_at.is_some() {
            return Err(Error::conflict(
                "customer_erased",
                "this customer's personal data was erased; it cannot be changed",
            ));
        }
        let changes = Self {
            email: self.email.filter(|email| email.as_str() != current.email),
            name: self.name.filter(|name| name.as_str() != current.name),
        };
        Ok((!changes.fields().is_empty()).then_some(changes))
    }

    async fn apply(
        changes: &Self,
        conn: &mut PgConnection,
        id: CustomerId,
    ) -> Result<Customer, Error> {
        Ok(store::update(conn, id, changes).await?)
    }

    /// Names the changed fields, never their values: a customer's email and name are
    /// personal data.
    fn audit_event(changes: &Self, id: CustomerId, _: &Customer) -> AuditEvent {
        AuditEvent::new("customer.updated", "customer", id)
            .data(serde_json::json!({"changed": changes.fields()}))
    }
}

/// Erases a customer's personal data on request: its email and name are replaced, the
/// personal data of the audit events about it is erased (the chain still verifies), and
/// replays of earlier answers that showed it are ended. Recorded as `customer.erased`.
/// Erasing an erased customer changes nothing.
pub async fn erase(
    tx: &mut TenantTx,
    principal: &Principal,
    id: CustomerId,
) -> Result<Customer, Error> {
    principal.require(Scope::CatalogWrite)?;
    let current = table::lock::<Customer>(tx, id)
        .await?
        .ok_or_else(|| Error::not_found(Customer::NAME))?;
    if current.erased_at.is_some() {
        return Ok(current);
    }
    let erased = store::erase(tx, id).await?;
    tx.resource_changed(cache::kind::CUSTOMER, id.as_uuid());
    let events: i64 = sqlx::query_scalar("select erase_audit_personal_data('customer', $1)")
        .bind(id.to_string())
        .fetch_one(&mut **tx)
        .await?;
    let replays = crate::idempotency::end_replays_showing(tx, &id.to_string()).await?;
    audit::record(
        tx,
        principal,
        AuditEvent::new("customer.erased", "customer", id).data(serde_json::json!({
            "audit_events_erased": events, "replays_ended": replays,
        })),
    )
    .await?;
    Ok(erased)
}

/// Whether the tenant has this customer.
pub async fn exists(conn: &mut PgConnection, id: CustomerId) -> Result<bool, sqlx::Error> {
    Ok(table::find::<Customer>(conn, id).await?.is_some())
}

/// Customers by id, in one statement.
pub async fn load(
    conn: &mut PgConnection,
    ids: &[CustomerId],
) -> Result<HashMap<CustomerId, Customer>, sqlx::Error> {
    let rows = table::find_many::<Customer>(conn, ids).await?;
    Ok(rows.into_iter().map(|c| (c.id, c)).collect())
}
