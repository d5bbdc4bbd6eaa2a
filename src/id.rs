//! Typed identifiers, all in one place because every layer names them (the tenant
//! transaction takes a `TenantId`, audit events name a `UserId`, orders point at a
//! `ProductId`). Every resource has its own type, so a `UserId` can never be passed where an
//! `ApiKeyId` is expected; all are UUIDv7 (time-ordered, so they double as pagination
//! cursors and keep b-tree inserts local). Serialised and stored as the plain UUID.

/// Declares a UUIDv7 newtype with serde, sqlx and OpenAPI support.
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident) => {
        $(#[$meta])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord,
            serde::Serialize, serde::Deserialize, sqlx::Type, utoipa::ToSchema,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        #[schema(value_type = String, format = Uuid, example = "01937a5e-7c1a-7b3e-9a52-2f0d3c4b5a69")]
        pub struct $name(uuid::Uuid);

        impl $name {
            /// A fresh, time-ordered id.
            pub fn new() -> Self {
                Self(uuid::Uuid::now_v7())
            }

            pub fn from_uuid(id: uuid::Uuid) -> Self {
                Self(id)
            }

            pub fn as_uuid(&self) -> uuid::Uuid {
                self.0
            }
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }

        impl std::str::FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                uuid::Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// Identifies a tenant.
    TenantId
);
id_type!(
    /// Identifies a user within a tenant.
    UserId
);
id_type!(
    /// Identifies a login session (a refresh-token family).
    SessionId
);
id_type!(
    /// Identifies an API key.
    ApiKeyId
);
id_type!(
    /// Identifies a product within a tenant.
    ProductId
);
id_type!(
    /// Identifies a customer within a tenant.
    CustomerId
);
id_type!(
    /// Identifies an order within a tenant (also its event stream's id).
    OrderId
);
