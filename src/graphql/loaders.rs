//! The request's batch loaders: an order's `customer`, its lines' `product` and its
//! `events`, loaded in one statement per kind through the request's own read transaction
//! (so in its tenant, and nowhere else).
//!
//! A page of orders loads what its selection asks for up front, for the whole page at once
//! ([`prime_order_links`]), and the fields then find it in the loaders' caches. Waiting
//! for the fields to gather (the loaders' own batching window) would split a page into as
//! many batches as the window happened to cut it into, and the count of statements would
//! depend on timing. The caches live as long as the request, and a mutation empties them
//! (`Caller::write`): what a field returns is never older than the request, nor than a
//! change it made.

use std::{collections::HashMap, sync::Arc};

use async_graphql::{Context, dataloader::Loader};

use super::{
    context::{Caller, Reader},
    error::{GqlResult, to_graphql},
};
use crate::{
    catalog::{
        customers::{self, Customer},
        products::{self, Product},
    },
    error::Error,
    events::StoredEvent,
    id::{CustomerId, OrderId, ProductId},
    orders::{OrderView, queries},
};

/// Loads the links a connection of orders selects (`customer`, `items { product }`,
/// `events`), for all of `orders` at once: one statement per kind selected, whatever the
/// page's size.
pub async fn prime_order_links(ctx: &Context<'_>, orders: &[OrderView]) -> GqlResult<()> {
    let selection = ctx.look_ahead();
    let (edges, nodes) = (
        selection.field("edges").field("node"),
        selection.field("nodes"),
    );
    let selects = |field: &str| edges.field(field).exists() || nodes.field(field).exists();
    let products = edges.field("items").field("product").exists()
        || nodes.field("items").field("product").exists();
    let caller = Caller::of(ctx);
    let (customers, products, histories) = tokio::join!(
        async {
            if selects("customer") {
                let ids = distinct(orders.iter().map(|o| o.customer_id));
                caller.customers.load_many(ids).await.map(drop)
            } else {
                Ok(())
            }
        },
        async {
            if products {
                let ids = distinct(
                    orders
                        .iter()
                        .flat_map(|o| o.items.iter().map(|i| i.product_id)),
                );
                caller.products.load_many(ids).await.map(drop)
            } else {
                Ok(())
            }
        },
        async {
            if selects("events") {
                caller
                    .histories
                    .load_many(orders.iter().map(|o| o.id))
                    .await
                    .map(drop)
            } else {
                Ok(())
            }
        },
    );
    customers.and(products).and(histories).map_err(to_graphql)
}

fn distinct<T: Eq + std::hash::Hash>(ids: impl Iterator<Item = T>) -> Vec<T> {
    ids.collect::<std::collections::HashSet<_>>()
        .into_iter()
        .collect()
}

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
