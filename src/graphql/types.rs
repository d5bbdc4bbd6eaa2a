//! The graph's object types: the application's domain types, shown field for field as the
//! REST API shows them (in GraphQL's camelCase), and the links between them — an order's
//! `customer`, its lines' `product` and its `events` — loaded in batches
//! ([`super::loaders`]).

use async_graphql::{
    ComplexObject, Context, Enum, ID, Json, Object, SimpleObject,
    connection::{Connection, Edge},
};
use std::sync::Arc;

use time::OffsetDateTime;

use super::{
    context::Caller,
    error::{GqlResult, to_graphql},
    loaders::Links,
};
use crate::{
    api_keys::ApiKey as DomainApiKey,
    auth::caller::Me as DomainMe,
    catalog::{customers::Customer as DomainCustomer, products::Product as DomainProduct},
    events::StoredEvent,
    orders::{ItemView, OrderView},
    page::{Page, PageRequest, cursor_after},
    tenancy::Tenant as DomainTenant,
    users::User as DomainUser,
};

/// A page of a list as a Relay connection: an edge per item with its cursor, and whether
/// another page follows (pass `pageInfo.endCursor` as `after` to get it). Lists are newest
/// first and only go forward.
pub fn connection<T, N: async_graphql::OutputType>(
    page: Page<T>,
    request: PageRequest,
    id: impl Fn(&T) -> uuid::Uuid,
    node: impl Fn(T) -> N,
) -> Connection<String, N> {
    let mut connection = Connection::new(request.before.is_some(), page.next_cursor.is_some());
    connection.edges = page
        .items
        .into_iter()
        .map(|item| Edge::new(cursor_after(id(&item)), node(item)))
        .collect();
    connection
}

/// An order's status.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::orders::OrderStatus")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
}

/// A user's role in the tenant.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::access::Role")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
    Billing,
}

/// Whether a user may sign in.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::users::UserStatus")]
pub enum UserStatus {
    Active,
    Deactivated,
}

/// Whether a tenant may use the API.
#[derive(Enum, Clone, Copy, PartialEq, Eq)]
#[graphql(remote = "crate::tenancy::TenantStatus")]
pub enum TenantStatus {
    Active,
    Suspended,
}

/// A product of the catalog (shared with the request's loader cache, not copied).
pub struct Product(Arc<DomainProduct>);

impl From<DomainProduct> for Product {
    fn from(product: DomainProduct) -> Self {
        Self(Arc::new(product))
    }
}

impl From<Arc<DomainProduct>> for Product {
    fn from(product: Arc<DomainProduct>) -> Self {
        Self(product)
    }
}

#[Object]
impl Product {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn sku(&self) -> &str {
        &self.0.sku
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Price in the currency's minor units (cents for EUR; yen for JPY).
    async fn price_cents(&self) -> i64 {
        self.0.price_cents
    }
    /// An ISO 4217 code, such as `EUR`.
    async fn currency(&self) -> &str {
        self.0.currency.code()
    }
    /// Units available to order.
    async fn stock(&self) -> i64 {
        self.0.stock
    }
    /// Incremented on every change: pass it as `expectedVersion` to change the product
    /// only if nobody else did since.
    async fn version(&self) -> i64 {
        self.0.version
    }
    async fn created_at(&self) -> OffsetDateTime {
        self.0.created_at
    }
    async fn updated_at(&self) -> OffsetDateTime {
        self.0.updated_at
    }
    /// When it was deleted; only ever set on a product an order line shows.
    async fn deleted_at(&self) -> Option<OffsetDateTime> {
        self.0.deleted_at
    }
}

/// A customer of the tenant (shared with the request's loader cache, not copied).
pub struct Customer(Arc<DomainCustomer>);

impl From<DomainCustomer> for Customer {
    fn from(customer: DomainCustomer) -> Self {
        Self(Arc::new(customer))
    }
}

impl From<Arc<DomainCustomer>> for Customer {
    fn from(customer: Arc<DomainCustomer>) -> Self {
        Self(customer)
    }
}

#[Object]
impl Customer {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Incremented on every change (`expectedVersion`).
    async fn version(&self) -> i64 {
        self.0.version
    }
    async fn created_at(&self) -> OffsetDateTime {
        self.0.created_at
    }
    async fn updated_at(&self) -> OffsetDateTime {
        self.0.updated_at
    }
    /// When its personal data was erased (its email and name are placeholders since).
    async fn erased_at(&self) -> Option<OffsetDateTime> {
        self.0.erased_at
    }
}

/// An order, as its read model shows it now, with the links its selection asked for,
/// loaded for it and its page together ([`Links`]).
pub struct Order(pub OrderView, pub Arc<Links>);

impl Order {
    /// An order whose links are loaded when a field asks for them.
    pub fn unlinked(view: OrderView) -> Self {
        Self(view, Arc::default())
    }
}

#[Object]
impl Order {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn status(&self) -> OrderStatus {
        self.0.status.into()
    }
    /// Sum of quantity × unit price, in minor units of `currency`.
    async fn total_cents(&self) -> i64 {
        self.0.total_cents
    }
    async fn currency(&self) -> &str {
        &self.0.currency
    }
    async fn payment_reference(&self) -> Option<&str> {
        self.0.payment_reference.as_deref()
    }
    async fn cancel_reason(&self) -> Option<&str> {
        self.0.cancel_reason.as_deref()
    }
    /// Number of events in the order's history.
    async fn version(&self) -> i32 {
        self.0.version
    }
    async fn created_at(&self) -> OffsetDateTime {
        self.0.created_at
    }
    async fn updated_at(&self) -> OffsetDateTime {
        self.0.updated_at
    }
    async fn customer_id(&self) -> ID {
        ID(self.0.customer_id.to_string())
    }
    /// The customer who placed it (loaded with every other order's in one statement).
    async fn customer(&self, ctx: &Context<'_>) -> GqlResult<Option<Customer>> {
        let id = self.0.customer_id;
        if let Some(customer) = self.1.customers.get(&id) {
            return Ok(Some(Customer::from(Arc::clone(customer))));
        }
        let loaded = Caller::of(ctx).customers.load_one(id).await;
        Ok(loaded.map_err(to_graphql)?.map(Customer::from))
    }
    /// Its lines, in the order they were placed.
    async fn items(&self) -> Vec<OrderItem> {
        let links = &self.1;
        self.0
            .items
            .iter()
            .map(|item| OrderItem(item.clone(), Arc::clone(links)))
            .collect()
    }
    /// Its history, oldest first (loaded with every other order's in one statement).
    async fn events(&self, ctx: &Context<'_>) -> GqlResult<Vec<OrderEvent>> {
        let history = match self.1.histories.get(&self.0.id) {
            Some(history) => Some(history.clone()),
            None => {
                let loaded = Caller::of(ctx).histories.load_one(self.0.id).await;
                loaded.map_err(to_graphql)?
            }
        };
        Ok(history
            .unwrap_or_default()
            .into_iter()
            .map(OrderEvent::from)
            .collect())
    }
}

/// One line of an order, with its order's links.
pub struct OrderItem(ItemView, Arc<Links>);

#[Object]
impl OrderItem {
    async fn product_id(&self) -> ID {
        ID(self.0.product_id.to_string())
    }
    async fn quantity(&self) -> i32 {
        self.0.quantity
    }
    /// The price it was ordered at, in minor units.
    async fn unit_price_cents(&self) -> i64 {
        self.0.unit_price_cents
    }
    /// The product (also once deleted, with its `deletedAt`), loaded with every other
    /// line's in one statement.
    async fn product(&self, ctx: &Context<'_>) -> GqlResult<Option<Product>> {
        let id = self.0.product_id;
        if let Some(product) = self.1.products.get(&id) {
            return Ok(Some(Product::from(Arc::clone(product))));
        }
        let loaded = Caller::of(ctx).products.load_one(id).await;
        Ok(loaded.map_err(to_graphql)?.map(Product::from))
    }
}

/// One event of an order's history.
#[derive(SimpleObject)]
pub struct OrderEvent {
    pub event_id: ID,
    pub version: i32,
    /// `order.placed`, `order.confirmed`, …
    pub event_type: String,
    pub data: Json<serde_json::Value>,
    /// Who, what command, in which request, caused by what.
    pub metadata: Json<serde_json::Value>,
    pub occurred_at: OffsetDateTime,
}

impl From<StoredEvent> for OrderEvent {
    fn from(event: StoredEvent) -> Self {
        Self {
            event_id: ID(event.event_id.to_string()),
            version: event.version,
            event_type: event.event_type,
            data: Json(event.data),
            metadata: Json(event.metadata),
            occurred_at: event.occurred_at,
        }
    }
}

/// The tenant.
pub struct Tenant(pub DomainTenant);

#[Object]
impl Tenant {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn slug(&self) -> &str {
        &self.0.slug
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The plan it is on.
    async fn plan(&self) -> &str {
        self.0.plan.as_str()
    }
    async fn status(&self) -> TenantStatus {
        self.0.status.into()
    }
    /// Incremented on every change (`expectedVersion`).
    async fn version(&self) -> i64 {
        self.0.version
    }
    async fn created_at(&self) -> OffsetDateTime {
        self.0.created_at
    }
    async fn updated_at(&self) -> OffsetDateTime {
        self.0.updated_at
    }
}

/// The caller: its tenant, who it is, and what it may do.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct Me {
    /// `user`, `api_key` or `service`.
    pub actor_type: &'static str,
    pub actor_id: String,
    /// The scopes this credential holds now.
    pub scopes: Vec<String>,
    /// The signed-in user, for a login session.
    pub user: Option<User>,
    #[graphql(skip)]
    pub tenant: DomainTenant,
}

#[ComplexObject]
impl Me {
    async fn tenant(&self) -> Tenant {
        Tenant(self.tenant.clone())
    }
}

impl From<DomainMe> for Me {
    fn from(me: DomainMe) -> Self {
        Self {
            actor_type: me.actor_type,
            actor_id: me.actor_id,
            scopes: me.scopes,
            user: me.user.map(User),
            tenant: me.tenant,
        }
    }
}

/// A user of the tenant (never a password hash).
pub struct User(pub DomainUser);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn role(&self) -> Role {
        self.0.role.into()
    }
    async fn status(&self) -> UserStatus {
        self.0.status.into()
    }
    /// Incremented on every change (`expectedVersion`).
    async fn version(&self) -> i64 {
        self.0.version
    }
    async fn created_at(&self) -> OffsetDateTime {
        self.0.created_at
    }
    async fn updated_at(&self) -> OffsetDateTime {
        self.0.updated_at
    }
}

/// An API key (never its secret).
pub struct ApiKey(pub DomainApiKey);

#[Object]
impl ApiKey {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Prefix and last characters, to recognise the key.
    async fn hint(&self) -> &str {
        &self.0.hint
    }
    async fn scopes(&self) -> &[String] {
        &self.0.scopes
    }
    /// Who created it, or last took it over (`user:<id>` or `api_key:<id>`).
    async fn created_by(&self) -> &str {
        &self.0.created_by
    }
    async fn expires_at(&self) -> Option<OffsetDateTime> {
        self.0.expires_at
    }
    async fn revoked_at(&self) -> Option<OffsetDateTime> {
        self.0.revoked_at
    }
    async fn created_at(&self) -> OffsetDateTime {
        self.0.created_at
    }
}
