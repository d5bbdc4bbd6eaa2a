//! The request's batch loaders: an order's `customer`, its lines' `product` and its
//! `events`, loaded in one statement per kind through the request's own read transaction
//! (so in its tenant, and nowhere else).
//!
//! Wherever orders are answered (a page, one order, a mutation's result), what their
//! selection asks for is loaded up front, for all of them at once
//! ([`prime_order_links`]), and the fields then find it in the loaders' caches. The
//! loaders therefore load at once instead of waiting for fields to gather: a batching
//! window would add its wait to every request, and split a page into as many batches as
//! it happened to cut it into, so that the count of statements would depend on timing. The caches live as long as the request, and a mutation empties them
//! (`Caller::write`): what a field returns is never older than the request, nor than a
//! change it made.

use std::{collections::HashMap, sync::Arc};

use async_graphql::{Context, Lookahead, dataloader::Loader};

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

/// What a set of orders links to, loaded for all of them at once: their customers, their
/// lines' products and their histories, each as far as the selection asked.
#[derive(Default)]
pub struct Links {
    pub customers: HashMap<CustomerId, Arc<Customer>>,
    pub products: HashMap<ProductId, Arc<Product>>,
    pub histories: HashMap<OrderId, Vec<StoredEvent>>,
}

/// Loads the links `selections` (each the selection of an order: a connection's
/// `edges.node` and `nodes`, or one order's) ask of `orders` — `customer`,
/// `items { product }`, `events` — for all of them at once, through the request's loaders:
/// one statement per kind selected, whatever their number.
pub async fn load_order_links(
    ctx: &Context<'_>,
    selections: &[Lookahead<'_>],
    orders: &[OrderView],
) -> GqlResult<Arc<Links>> {
    let selects = |path: &[&str]| {
        selections.iter().any(|selection| {
            let mut at = selection.field(path[0]);
            for field in &path[1..] {
                at = at.field(field);
            }
            at.exists()
        })
    };
    // The loaders' own batch functions, called here on the request's task: the keys are
    // all known, so there is nothing to gather, and no task to hand the work to and wake
    // the request from. One after another, as they share the request's transaction.
    let caller = Caller::of(ctx);
    let customers = if selects(&["customer"]) {
        let ids = distinct(orders.iter().map(|o| o.customer_id));
        caller.customers.loader().load(&ids).await
    } else {
        Ok(HashMap::new())
    };
    let products = if selects(&["items", "product"]) {
        let lines = orders.iter().flat_map(|o| o.items.iter());
        let ids = distinct(lines.map(|line| line.product_id));
        caller.products.loader().load(&ids).await
    } else {
        Ok(HashMap::new())
    };
    let histories = if selects(&["events"]) {
        let ids: Vec<OrderId> = orders.iter().map(|o| o.id).collect();
        caller.histories.loader().load(&ids).await
    } else {
        Ok(HashMap::new())
    };
    Ok(Arc::new(Links {
        customers: customers.map_err(to_graphql)?,
        products: products.map_err(to_graphql)?,
        histories: histories.map_err(to_graphql)?,
    }))
}

fn distinct<T: Eq + std::hash::Hash>(ids: impl Iterator<Item = T>) -> Vec<T> {
    ids.collect::<std::collections::HashSet<_>>()
        .into_iter()
        .collect()
}

/// Customers by id (an order's `customer`).
pub struct Customers(pub Arc<Reader>);

impl Loader<CustomerId> for Customers {
    type Value = Arc<Customer>;
    type Error = Error;

    async fn load(&self, ids: &[CustomerId]) -> Result<HashMap<CustomerId, Arc<Customer>>, Error> {
        let loaded = self
            .0
            .read(async |tx, _| Ok(customers::load(tx, ids).await?))
            .await?;
        Ok(loaded
            .into_iter()
            .map(|(id, c)| (id, Arc::new(c)))
            .collect())
    }
}

/// Products by id, deleted ones too (an order line's `product`).
pub struct Products(pub Arc<Reader>);

impl Loader<ProductId> for Products {
    type Value = Arc<Product>;
    type Error = Error;

    async fn load(&self, ids: &[ProductId]) -> Result<HashMap<ProductId, Arc<Product>>, Error> {
        let loaded = self
            .0
            .read(async |tx, _| Ok(products::load(tx, ids).await?))
            .await?;
        Ok(loaded
            .into_iter()
            .map(|(id, p)| (id, Arc::new(p)))
            .collect())
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
