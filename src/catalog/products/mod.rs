//! Products: domain types, persistence and `/v1/products`.
//!
//! A product's SKU is unique among the tenant's live products (the `products_sku_key`
//! partial index); deleting a product is a soft delete, so its SKU can be reused while the
//! row stays for the orders that reference it.

mod routes;
pub mod store;

pub use routes::router;

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{Currency, Name};
use crate::http::error::ApiError;

crate::id_type!(
    /// Identifies a product within a tenant.
    ProductId
);

/// A stock-keeping unit: 1-64 ASCII letters, digits, `.`, `_` or `-`. Case matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sku(String);

impl Sku {
    pub fn parse(value: &str) -> Result<Self, ApiError> {
        let ok = (1..=64).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(ApiError::invalid(
                "sku",
                "must be 1-64 letters, digits, dots, underscores or hyphens",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A product as the API shows it (live products only: deleted ones are never returned).
#[derive(Debug, Clone, Serialize, ToSchema, sqlx::FromRow)]
pub struct Product {
    pub id: ProductId,
    #[schema(example = "MUG-BLUE-330")]
    pub sku: String,
    #[schema(example = "Blue mug, 330 ml")]
    pub name: String,
    /// Price in the currency's minor units (cents for EUR; yen for JPY).
    #[schema(example = 1250, minimum = 0)]
    pub price_cents: i64,
    pub currency: Currency,
    /// Units available to order; orders reserve from it.
    #[schema(example = 40, minimum = 0)]
    pub stock: i32,
    /// Incremented on every change; also the `ETag`.
    #[schema(example = 1)]
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

/// A product to create, parsed.
#[derive(Debug)]
pub struct NewProduct {
    pub sku: Sku,
    pub name: Name,
    pub price_cents: i64,
    pub currency: Currency,
    pub stock: i32,
}

/// The fields a PATCH changes, parsed; `None` leaves a field as it is.
#[derive(Debug, Default)]
pub struct ProductChanges {
    pub sku: Option<Sku>,
    pub name: Option<Name>,
    pub price_cents: Option<i64>,
    pub currency: Option<Currency>,
    pub stock: Option<i32>,
}

impl ProductChanges {
    /// Drops the fields that already hold the requested value, so that a PATCH which
    /// changes nothing neither bumps the version nor records an event.
    pub fn against(self, current: &Product) -> Self {
        Self {
            sku: self.sku.filter(|sku| sku.as_str() != current.sku),
            name: self.name.filter(|name| name.as_str() != current.name),
            price_cents: self.price_cents.filter(|p| *p != current.price_cents),
            currency: self.currency.filter(|c| *c != current.currency),
            stock: self.stock.filter(|s| *s != current.stock),
        }
    }

    /// The names of the fields that change, for the audit trail.
    pub fn fields(&self) -> Vec<&'static str> {
        [
            ("sku", self.sku.is_some()),
            ("name", self.name.is_some()),
            ("price_cents", self.price_cents.is_some()),
            ("currency", self.currency.is_some()),
            ("stock", self.stock.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, changed)| changed.then_some(field))
        .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skus_follow_the_documented_shape() {
        for ok in ["A", "MUG-BLUE-330", "sku_1.2", &"x".repeat(64)] {
            assert_eq!(Sku::parse(ok).unwrap().as_str(), ok);
        }
        for bad in ["", "has space", "ümlaut", "a/b", "a\u{0}", &"x".repeat(65)] {
            assert!(Sku::parse(bad).is_err(), "{bad:?}");
        }
    }
}
