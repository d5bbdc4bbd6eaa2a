//! The request's batch loaders: every `customer`, `product` and `events` field a query
//! selects across a list is collected and loaded in one statement per kind, through the
//! request's own read transaction (so in its tenant, and nowhere else). A loader lives as
//! long as its request and caches nothing: what it returns is never older than the
//! request.

use std::{collections::HashMap, sync::Arc};

use async_graphql::dataloader::Loader;

use super::context::Reader;
use crate::{
    catalog::{
        customers::{self, Customer},
        products::{self, Product},
    },
    error::Error,
    events::StoredEvent,
    id::{CustomerId, OrderId, ProductId},
    orders::queries,
};

/// Customers by id (an order's `customer`).
pub struct Customers(pub Arc<Reader>);

impl Loader<CustomerId> for Customers {
    type Value = Customer;
    type Error = Error;

    async fn load(&self, ids: &[CustomerId]) -> Result<HashMap<CustomerId, Customer>, Error> {
        self.0
            .read(async |tx, _| Ok(customers::load(tx, ids).await?))
            .await
    }
}

/// Products by id, deleted ones too (an order line's `product`).
pub struct Products(pub Arc<Reader>);

impl Loader<ProductId> for Products {
    type Value = Product;
    type Error = Error;

    async fn load(&self, ids: &[ProductId]) -> Result<HashMap<ProductId, Product>, Error> {
        self.0
            .read(async |tx, _| Ok(products::load(tx, ids).await?))
            .await
    }
}

/// Orders' histories by order id (an order's `events`).
pub struct OrderHistories(pub Arc<Reader>);

impl Loader<OrderId> for OrderHistories {
    type Value = Vec<StoredEvent>;
    type Error = Error;

    async fn load(&self, ids: &[OrderId]) -> Result<HashMap<OrderId, Vec<StoredEvent>>, Error> {
        self.0
            .read(async |tx, principal| queries::histories(tx, principal, ids).await)
            .await
    }
}
