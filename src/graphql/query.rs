//! The query root: what a tenant app may read, each field calling the application function
//! its REST twin calls (so it needs the same scope), in the request's read transaction.

use std::sync::Arc;

use async_graphql::{Context, ID, Object, connection::Connection};
use time::OffsetDateTime;

use super::{
    context::Caller,
    error::{GqlResult, parse_id, to_graphql},
    loaders,
    types::{ApiKey, Customer, Me, Order, OrderStatus, Product, Tenant, User, connection},
};
use crate::{
    api_keys,
    auth::caller,
    catalog::{customers, products},
    id::{ApiKeyId, CustomerId, OrderId, ProductId, UserId},
    orders::queries::{self, Expand, Filter},
    page::PageRequest,
    tenancy::profile,
    users,
};

/// The page a connection's `first` and `after` ask for (at most 200 items, 50 when
/// `first` is not given).
fn page(first: Option<i32>, after: Option<&str>) -> GqlResult<PageRequest> {
    let limit = first.map(|n| u32::try_from(n).unwrap_or(0));
    PageRequest::parse(limit, after).map_err(to_graphql)
}

/// The fields of the query root that are connections: each counts its selection `first`
/// times (`super::cost`).
pub const CONNECTIONS: &[&str] = &["products", "customers", "orders", "users", "apiKeys"];

pub struct Query;

#[Object]
impl Query {
    /// The caller's tenant. Needs `tenant:read`.
    async fn tenant(&self, ctx: &Context<'_>) -> GqlResult<Tenant> {
        let tenant = Caller::of(ctx)
            .read(async |tx, principal| profile::get(tx, principal).await)
            .await?;
        Ok(Tenant(tenant))
    }

    /// The caller: its tenant, who it is and what it may do. Needs no scope.
    async fn me(&self, ctx: &Context<'_>) -> GqlResult<Me> {
        let me = Caller::of(ctx)
            .read(async |tx, principal| caller::me(tx, principal).await)
            .await?;
        Ok(me.into())
    }

    /// Live products, newest first. Needs `catalog:read`.
    async fn products(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(minimum = 1, maximum = 200))] first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<Connection<String, Product>> {
        let request = page(first, after.as_deref())?;
        let page = Caller::of(ctx)
            .read(async |tx, principal| products::list(tx, principal, request).await)
            .await?;
        Ok(connection(page, request, |p| p.id.as_uuid(), Product::from))
    }

    /// One live product; null if the tenant has none with this id. Needs `catalog:read`.
    async fn product(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Product>> {
        let id: ProductId = parse_id(&id, "id")?;
        let product = Caller::of(ctx)
            .find(async |tx, principal| products::get(tx, principal, id).await)
            .await?;
        Ok(product.map(Product::from))
    }

    /// Customers, newest first. Needs `catalog:read`.
    async fn customers(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(minimum = 1, maximum = 200))] first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<Connection<String, Customer>> {
        let request = page(first, after.as_deref())?;
        let page = Caller::of(ctx)
            .read(async |tx, principal| customers::list(tx, principal, request).await)
            .await?;
        Ok(connection(
            page,
            request,
            |c| c.id.as_uuid(),
            Customer::from,
        ))
    }

    /// One customer; null if the tenant has none with this id. Needs `catalog:read`.
    async fn customer(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Customer>> {
        let id: CustomerId = parse_id(&id, "id")?;
        let customer = Caller::of(ctx)
            .find(async |tx, principal| customers::get(tx, principal, id).await)
            .await?;
        Ok(customer.map(Customer::from))
    }

    /// Orders, newest first, with the REST list's filters. Needs `orders:read`. An order's
    /// `customer`, `items { product }` and `events` are loaded for the whole page at once.
    #[allow(clippy::too_many_arguments)]
    async fn orders(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(minimum = 1, maximum = 200))] first: Option<i32>,
        after: Option<String>,
        status: Option<OrderStatus>,
        customer_id: Option<ID>,
        #[graphql(desc = "Orders created at or after this time.")] created_from: Option<
            OffsetDateTime,
        >,
        #[graphql(desc = "Orders created before this time.")] created_to: Option<OffsetDateTime>,
    ) -> GqlResult<Connection<String, Order>> {
        let request = page(first, after.as_deref())?;
        let filter = Filter {
            status: status.map(Into::into),
            customer_id: customer_id
                .map(|id| parse_id::<CustomerId>(&id, "customerId"))
                .transpose()?,
            created_from,
            created_to,
        };
        let page = Caller::of(ctx)
            .read(async |tx, principal| {
                queries::list(tx, principal, &filter, request, Expand::default()).await
            })
            .await?;
        let selection = ctx.look_ahead();
        let nodes = [
            selection.field("edges").field("node"),
            selection.field("nodes"),
        ];
        let links = loaders::load_order_links(ctx, &nodes, &page.items).await?;
        Caller::of(ctx).done_reading().await;
        Ok(connection(
            page,
            request,
            |o| o.id.as_uuid(),
            |view| Order(view, Arc::clone(&links)),
        ))
    }

    /// One order as it is now; null if the tenant has none with this id. Needs
    /// `orders:read`.
    async fn order(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<Order>> {
        let id: OrderId = parse_id(&id, "id")?;
        let order = Caller::of(ctx)
            .find(async |tx, principal| {
                queries::get(tx, principal, id, None, Expand::default()).await
            })
            .await?;
        let Some(order) = order else {
            return Ok(None);
        };
        let links =
            loaders::load_order_links(ctx, &[ctx.look_ahead()], std::slice::from_ref(&order))
                .await?;
        Caller::of(ctx).done_reading().await;
        Ok(Some(Order(order, links)))
    }

    /// Users of the tenant, newest first. Needs `users:read`.
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(minimum = 1, maximum = 200))] first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<Connection<String, User>> {
        let request = page(first, after.as_deref())?;
        let page = Caller::of(ctx)
            .read(async |tx, principal| users::list(tx, principal, request).await)
            .await?;
        Ok(connection(page, request, |u| u.id.as_uuid(), User))
    }

    /// One user; null if the tenant has none with this id. Needs `users:read`.
    async fn user(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<User>> {
        let id: UserId = parse_id(&id, "id")?;
        let user = Caller::of(ctx)
            .find(async |tx, principal| users::get(tx, principal, id).await)
            .await?;
        Ok(user.map(User))
    }

    /// API keys of the tenant, newest first (revoked ones too). Needs `api_keys:read`.
    async fn api_keys(
        &self,
        ctx: &Context<'_>,
        #[graphql(validator(minimum = 1, maximum = 200))] first: Option<i32>,
        after: Option<String>,
    ) -> GqlResult<Connection<String, ApiKey>> {
        let request = page(first, after.as_deref())?;
        let page = Caller::of(ctx)
            .read(async |tx, principal| api_keys::list(tx, principal, request).await)
            .await?;
        Ok(connection(page, request, |k| k.id.as_uuid(), ApiKey))
    }

    /// One API key; null if the tenant has none with this id. Needs `api_keys:read`.
    async fn api_key(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Option<ApiKey>> {
        let id: ApiKeyId = parse_id(&id, "id")?;
        let key = Caller::of(ctx)
            .find(async |tx, principal| api_keys::get(tx, principal, id).await)
            .await?;
        Ok(key.map(ApiKey))
    }
}
