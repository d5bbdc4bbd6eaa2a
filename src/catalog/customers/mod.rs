//! Customers: domain types, persistence and `/v1/customers`.
//!
//! A customer's email is unique within the tenant (`customers_email_key`), normalised as
//! a user's is ([`crate::users::Email`]). Customers are not deleted: orders refer to them.

mod routes;
pub mod store;

pub use routes::router;

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::Name;
use crate::users::Email;

crate::id_type!(
    /// Identifies a customer within a tenant.
    CustomerId
);

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
    /// Drops the fields that already hold the requested value, so that a PATCH which
    /// changes nothing neither bumps the version nor records an event.
    pub fn against(self, current: &Customer) -> Self {
        Self {
            email: self.email.filter(|email| email.as_str() != current.email),
            name: self.name.filter(|name| name.as_str() != current.name),
        }
    }

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
