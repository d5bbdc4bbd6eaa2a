//! Products: domain types, persistence, the operations on them (list, read, create,
//! change, delete) and what orders need of them (lock, reserve, release, load).
//!
//! A product's SKU is unique among the tenant's live products (the `products_sku_key`
//! partial index); deleting a product is a soft delete, so its SKU can be reused while the
//! row stays for the orders that reference it.

pub mod store;

use std::collections::HashMap;

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::{Currency, Name};
use crate::cache;
pub use crate::id::ProductId;
use crate::{
    access::{Principal, Scope},
    audit::{self, AuditEvent},
    db::{
        TenantTx,
        table::{self, Table},
    },
    error::Error,
    page::{Page, PageRequest},
    plans::{LimitName, quota},
    rule::{self, text_schema},
    versioning::{self, Change, ExpectedVersion, Versioned},
};

/// A stock-keeping unit: 1-64 ASCII letters, digits, `.`, `_` or `-`. Case matters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sku(String);

impl Sku {
    pub const RULE: rule::TextRule = rule::TextRule {
        chars: 1..=64,
        pattern: Some("^[A-Za-z0-9._-]+$"),
        message: "must be 1-64 letters, digits, dots, underscores or hyphens",
        example: "MUG-BLUE-330",
        secret: false,
    };

    pub fn parse(value: &str) -> Result<Self, Error> {
        let ok = Self::RULE.fits(value)
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(Error::invalid("sku", Self::RULE.message))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_schema!(Sku, "Sku", Sku::RULE);

/// A product as the API shows it. The catalog shows live products only; an order's
/// `expand=items.product` also shows a deleted one, with its `deleted_at`.
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
    /// Units available to order; orders reserve from it. A 64-bit integer: it is set to
    /// at most 2^31 - 1, but cancelled orders give their units back on top of it.
    #[schema(example = 40, minimum = 0)]
    pub stock: i64,
    /// Incremented on every change; also the `ETag`.
    #[schema(example = 1)]
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// When the product was deleted; only ever set on a product embedded in an order.
    #[serde(
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub deleted_at: Option<OffsetDateTime>,
}

impl Table for Product {
    type Id = ProductId;
    const NAME: &'static str = "product";
    const TABLE: &'static str = "products";
    const COLUMNS: &'static str = store::COLUMNS;
    /// A deleted product is gone from the catalog.
    const VISIBLE: &'static str = "deleted_at is null";

    fn id(&self) -> uuid::Uuid {
        self.id.as_uuid()
    }
}

impl Versioned for Product {
    fn version(&self) -> i64 {
        self.version
    }
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

/// Live products of the tenant, newest first (deleted ones are not listed).
pub async fn list(
    tx: &mut TenantTx,
    principal: &Principal,
    page: PageRequest,
) -> Result<Page<Product>, Error> {
    principal.require(Scope::CatalogRead)?;
    table::page(tx, page).await
}

/// One live product.
pub async fn get(
    tx: &mut TenantTx,
    principal: &Principal,
    id: ProductId,
) -> Result<Product, Error> {
    principal.require(Scope::CatalogRead)?;
    table::get(tx, id).await
}

/// Adds a product to the catalog.
pub async fn create(
    tx: &mut TenantTx,
    principal: &Principal,
    new: NewProduct,
) -> Result<Product, Error> {
    principal.require(Scope::CatalogWrite)?;
    quota::admit(
        tx,
        principal,
        principal.tenant_id(),
        LimitName::Products,
        async |conn| store::count_live(conn).await,
    )
    .await?;
    let product = store::insert(tx, principal.tenant_id(), &new).await?;
    audit::record(
        tx,
        principal,
        AuditEvent::new("product.created", "product", product.id)
            .data(serde_json::json!({"sku": product.sku})),
    )
    .await?;
    Ok(product)
}

/// Changes a product, if its version is still the expected one.
pub async fn update(
    tx: &mut TenantTx,
    principal: &Principal,
    id: ProductId,
    expected: &ExpectedVersion,
    changes: ProductChanges,
) -> Result<Product, Error> {
    principal.require(Scope::CatalogWrite)?;
    tx.resource_changed(cache::kind::PRODUCT, id.as_uuid());
    versioning::update(tx, principal.into(), id, expected, changes).await
}

/// Deletes a product (softly: orders keep pointing at it), if its version is still the
/// expected one.
pub async fn delete(
    tx: &mut TenantTx,
    principal: &Principal,
    id: ProductId,
    expected: &ExpectedVersion,
) -> Result<(), Error> {
    principal.require(Scope::CatalogWrite)?;
    tx.resource_changed(cache::kind::PRODUCT, id.as_uuid());
    versioning::update(tx, principal.into(), id, expected, Deletion)
        .await
        .map(drop)
}

impl Change for ProductChanges {
    type Resource = Product;
    type Id = ProductId;
    type Checked = Self;

    fn against(self, current: &Product) -> Result<Option<Self>, Error> {
        let changes = Self {
            sku: self.sku.filter(|sku| sku.as_str() != current.sku),
            name: self.name.filter(|name| name.as_str() != current.name),
            price_cents: self.price_cents.filter(|p| *p != current.price_cents),
            currency: self.currency.filter(|c| *c != current.currency),
            stock: self.stock.filter(|s| i64::from(*s) != current.stock),
        };
        Ok((!changes.fields().is_empty()).then_some(changes))
    }

    async fn apply(
        changes: &Self,
        conn: &mut PgConnection,
        id: ProductId,
    ) -> Result<Product, Error> {
        Ok(store::update(conn, id, changes).await?)
    }

    fn audit_event(changes: &Self, id: ProductId, updated: &Product) -> AuditEvent {
        AuditEvent::new("product.updated", "product", id)
            .data(serde_json::json!({"sku": updated.sku, "changed": changes.fields()}))
    }
}

/// Deleting a product, as a versioned change: locked, checked against the expected
/// version, audited like any other.
struct Deletion;

impl Change for Deletion {
    type Resource = Product;
    type Id = ProductId;
    /// The SKU it had, for the audit trail.
    type Checked = String;

    fn against(self, current: &Product) -> Result<Option<String>, Error> {
        Ok(Some(current.sku.clone()))
    }

    async fn apply(_: &String, conn: &mut PgConnection, id: ProductId) -> Result<Product, Error> {
        Ok(store::soft_delete(conn, id).await?)
    }

    fn audit_event(sku: &String, id: ProductId, _: &Product) -> AuditEvent {
        AuditEvent::new("product.deleted", "product", id).data(serde_json::json!({"sku": sku}))
    }
}

/// A live product as an order prices it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Priced {
    pub id: ProductId,
    pub price_cents: i64,
    pub currency: Currency,
    pub stock: i64,
}

/// Locks the live products among `ids` in id order — the one lock order of every stock
/// movement, so concurrent orders and cancellations never deadlock — and returns them
/// priced. Missing or deleted products are simply absent.
pub async fn lock_for_order(
    conn: &mut PgConnection,
    ids: &[ProductId],
) -> Result<Vec<Priced>, sqlx::Error> {
    store::lock_live(conn, ids).await
}

/// Takes each `(product, quantity)` out of stock, in one statement. The caller holds the
/// products' locks ([`lock_for_order`]) and has checked the stock.
pub async fn reserve(
    conn: &mut PgConnection,
    items: &[(ProductId, i32)],
) -> Result<(), sqlx::Error> {
    store::move_stock(conn, items.iter().map(|(id, quantity)| (*id, -quantity))).await
}

/// Gives each `(product, quantity)` back to stock, in one statement, after locking the
/// products (deleted ones too: their stock still counts) in id order.
pub async fn release(
    conn: &mut PgConnection,
    items: &[(ProductId, i32)],
) -> Result<(), sqlx::Error> {
    let ids: Vec<ProductId> = items.iter().map(|(id, _)| *id).collect();
    store::lock_any(conn, &ids).await?;
    store::move_stock(conn, items.iter().copied()).await
}

/// Products by id, deleted ones included (an order keeps pointing at what was bought), in
/// one statement.
pub async fn load(
    conn: &mut PgConnection,
    ids: &[ProductId],
) -> Result<HashMap<ProductId, Product>, sqlx::Error> {
    let rows = store::find_many_with_deleted(conn, ids).await?;
    Ok(rows.into_iter().map(|p| (p.id, p)).collect())
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

    #[test]
    fn the_sku_schema_admits_only_skus_parse_accepts() {
        rule::conformance::schema_admits_only_what_parse_accepts(
            &Sku::RULE,
            &[
                "A",
                "MUG-BLUE-330",
                "ümlaut",
                "a b",
                &"x".repeat(64),
                &"x".repeat(65),
            ],
            |value| Sku::parse(value).is_ok(),
        );
    }
}
