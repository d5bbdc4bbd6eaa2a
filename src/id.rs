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

/// The least UUIDv7 minted at or after `at` (to the millisecond a UUIDv7 carries): every id
/// minted from then on sorts at or above it, every id minted before sorts below. Turns a
/// time bound into an id bound, so a time-filtered list can walk the id index it is sorted
/// by. Times before 1970 map to the least v7 id, times past the 48-bit range to the greatest.
pub fn v7_lower_bound(at: time::OffsetDateTime) -> uuid::Uuid {
    const NANOS_PER_MILLI: i128 = 1_000_000;
    let millis = (at.unix_timestamp_nanos() + NANOS_PER_MILLI - 1).div_euclid(NANOS_PER_MILLI);
    let millis = u64::try_from(millis.clamp(0, (1 << 48) - 1)).unwrap_or_default();
    uuid::Builder::from_unix_timestamp_millis(millis, &[0; 10]).into_uuid()
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
id_type!(
    /// Identifies a webhook endpoint within a tenant.
    WebhookEndpointId
);
id_type!(
    /// Identifies one delivery of an event to a webhook endpoint (its `webhook-id`).
    WebhookDeliveryId
);

#[cfg(test)]
mod tests {
    use super::*;
    use time::{Duration, OffsetDateTime};

    #[test]
    fn the_v7_lower_bound_of_a_time_splits_ids_minted_before_and_after_it() {
        let before = uuid::Uuid::now_v7();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let at = OffsetDateTime::now_utc();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let after = uuid::Uuid::now_v7();
        let bound = v7_lower_bound(at);
        assert!(
            before < bound,
            "{before} was minted before {at}: below {bound}"
        );
        assert!(
            after >= bound,
            "{after} was minted after {at}: at or above {bound}"
        );
        assert_eq!(bound.get_version_num(), 7);
    }

    #[test]
    fn the_v7_lower_bound_of_a_millisecond_is_its_first_id() {
        let at = time::macros::datetime!(2026-12-01 10:00:00.005 UTC);
        let bound = v7_lower_bound(at);
        let millis = |id: uuid::Uuid| id.get_timestamp().map(|t| t.to_unix()).unwrap();
        assert_eq!(millis(bound), (at.unix_timestamp() as u64, 5_000_000));
        // A time inside a millisecond rounds up: ids of that millisecond may precede it.
        let inside = v7_lower_bound(at + Duration::microseconds(1));
        assert_eq!(millis(inside), (at.unix_timestamp() as u64, 6_000_000));
        assert_eq!(
            v7_lower_bound(OffsetDateTime::UNIX_EPOCH - Duration::days(1)),
            v7_lower_bound(OffsetDateTime::UNIX_EPOCH)
        );
    }
}
