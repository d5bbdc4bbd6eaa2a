//! API keys for tenant apps: create (the secret is shown once), list, read, revoke.
//!
//! The format and hashing live in `auth::token`; verification on each request in
//! `auth::authenticate`. A key's scopes are at most its creator's, and a revoked key is
//! refused on the very next request (verification reads the row every time).

mod routes;
pub mod store;

pub use routes::router;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

crate::id_type!(
    /// Identifies an API key.
    ApiKeyId
);

/// An API key as listed (never its secret).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, sqlx::FromRow)]
pub struct ApiKey {
    pub id: ApiKeyId,
    #[schema(example = "checkout-service")]
    pub name: String,
    /// Prefix and last characters, to recognise the key.
    #[schema(example = "tnty_…x9Qa")]
    pub hint: String,
    #[schema(example = json!(["orders:read", "orders:write"]))]
    pub scopes: Vec<String>,
    /// Who created it (`user:<id>`, `api_key:<id>`, `service:<name>`).
    #[schema(example = "user:01937a5e-7c1a-7b3e-9a52-2f0d3c4b5a69")]
    pub created_by: String,
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}
