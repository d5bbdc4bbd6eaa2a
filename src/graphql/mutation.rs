//! The mutation root: everything REST can change, each field calling the same application
//! function as its REST twin — the same scope, rules, audit events, quotas and metering —
//! in a transaction of its own that is committed before the field answers. Mutations run
//! one after another, as GraphQL requires; one that fails changes nothing and does not stop
//! the next.
//!
//! Each mutation costs [`super::cost::MUTATION_COMPLEXITY`] on top of what it selects, so a request of
//! many aliased mutations costs what as many REST requests do, and a request of more than
//! the complexity limit allows is refused before any of them runs.

use async_graphql::{Context, ID, InputObject, Object, SimpleObject};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use time::OffsetDateTime;

use super::{
    context::Caller,
    error::{GqlResult, parse_id, to_graphql},
    loaders,
    types::{ApiKey, Customer, Order, Product, Role, Tenant, User, UserStatus},
};
use crate::{
    api_keys::{self, NewApiKey},
    catalog::{
        Currency, Name,
        customers::{self, CustomerChanges, NewCustomer},
        products::{self, NewProduct, ProductChanges, Sku},
    },
    error::Error,
    id::{ApiKeyId, CustomerId, OrderId, ProductId, UserId},
    orders::{
        self, NewOrder, OrderView, Requested, Transition,
        queries::{self, Expand},
    },
    tenancy::profile::{self, ProfileChanges},
    users::{self, CreatedUser as DomainCreatedUser, NewUser, UserChanges},
    versioning::ExpectedVersion,
};

/// `expectedVersion` as the application's expectation: the version the client last saw,
/// or anything when it sends none (REST's `If-Match`).
fn expected(version: Option<i64>) -> ExpectedVersion {
    version.map_or(ExpectedVersion::Any, |v| ExpectedVersion::OneOf(vec![v]))
}

/// A number the REST schema bounds below by zero.
fn non_negative<T: PartialOrd + Default>(value: T, field: &str) -> Result<T, Error> {
    if value < T::default() {
        return Err(Error::invalid(field, "must be at least 0"));
    }
    Ok(value)
}

#[derive(InputObject, Serialize)]
pub struct CreateProductInput {
    /// 1-64 letters, digits, dots, underscores or hyphens; unique among live products.
    pub sku: String,
    pub name: String,
    /// In the currency's minor units.
    pub price_cents: i64,
    /// An ISO 4217 code, such as `EUR`.
    pub currency: String,
    pub stock: i32,
}

impl CreateProductInput {
    fn parse(&self) -> Result<NewProduct, Error> {
        Ok(NewProduct {
            sku: Sku::parse(&self.sku)?,
            name: Name::parse(&self.name)?,
            price_cents: non_negative(self.price_cents, "priceCents")?,
            currency: Currency::parse(&self.currency)?,
            stock: non_negative(self.stock, "stock")?,
        })
    }
}

/// The fields to change; those left out stay as they are.
#[derive(InputObject)]
pub struct UpdateProductInput {
    pub sku: Option<String>,
    pub name: Option<String>,
    pub price_cents: Option<i64>,
    pub currency: Option<String>,
    pub stock: Option<i32>,
}

impl UpdateProductInput {
    fn parse(&self) -> Result<ProductChanges, Error> {
        Ok(ProductChanges {
            sku: self.sku.as_deref().map(Sku::parse).transpose()?,
            name: self.name.as_deref().map(Name::parse).transpose()?,
            price_cents: self
                .price_cents
                .map(|p| non_negative(p, "priceCents"))
                .transpose()?,
            currency: self.currency.as_deref().map(Currency::parse).transpose()?,
            stock: self.stock.map(|s| non_negative(s, "stock")).transpose()?,
        })
    }
}

#[derive(InputObject, Serialize)]
pub struct CreateCustomerInput {
    pub email: String,
    pub name: String,
}

/// The fields to change; those left out stay as they are.
#[derive(InputObject)]
pub struct UpdateCustomerInput {
    pub email: Option<String>,
    pub name: Option<String>,
}

#[derive(InputObject, Serialize)]
pub struct PlaceOrderInput {
    pub customer_id: ID,
    /// 1-100 lines.
    pub items: Vec<OrderItemInput>,
}

#[derive(InputObject, Serialize)]
pub struct OrderItemInput {
    pub product_id: ID,
    /// 1-10000.
    pub quantity: i32,
}

impl PlaceOrderInput {
    fn parse(&self) -> GqlResult<NewOrder> {
        let customer_id: CustomerId = parse_id(&self.customer_id, "customerId")?;
        let mut requested = Vec::with_capacity(self.items.len());
        for (i, item) in self.items.iter().enumerate() {
            requested.push(Requested {
                product_id: parse_id::<ProductId>(
                    &item.product_id,
                    &format!("items[{i}].productId"),
                )?,
                quantity: item.quantity,
            });
        }
        NewOrder::parse(customer_id, requested).map_err(to_graphql)
    }
}

#[derive(InputObject)]
pub struct CreateUserInput {
    /// Unique within the tenant; stored trimmed and in lower case.
    pub email: String,
    /// No more powerful than the caller's own.
    pub role: Role,
    /// Leave it out to have one generated and returned once.
    #[graphql(secret)]
    pub password: Option<String>,
}

/// A created user, with the generated password when none was given (shown once).
#[derive(SimpleObject)]
pub struct CreatedUser {
    pub user: User,
    pub password: Option<String>,
}

impl From<DomainCreatedUser> for CreatedUser {
    fn from(created: DomainCreatedUser) -> Self {
        Self {
            user: User(created.user),
            password: created
                .generated_password
                .map(|password| password.expose_secret().to_owned()),
        }
    }
}

/// The fields to change; those left out stay as they are.
#[derive(InputObject)]
pub struct UpdateUserInput {
    pub role: Option<Role>,
    pub status: Option<UserStatus>,
}

#[derive(InputObject)]
pub struct CreateApiKeyInput {
    pub name: String,
    /// At most the caller's own scopes.
    pub scopes: Vec<String>,
    /// Optional expiry, in the future.
    pub expires_at: Option<OffsetDateTime>,
}

/// A created API key with its secret `key`, shown only here: store it now.
#[derive(SimpleObject)]
pub struct CreatedApiKey {
    pub api_key: ApiKey,
    pub key: String,
}

#[derive(InputObject)]
pub struct UpdateTenantInput {
    pub name: Option<String>,
}

/// What a deletion answers: the id of what is gone.
#[derive(SimpleObject)]
pub struct Deleted {
    pub id: ID,
}

pub struct Mutation;

impl Mutation {
    /// An order transition, under the client's idempotency key when it sent one.
    async fn transition(
        ctx: &Context<'_>,
        id: &ID,
        name: &str,
        idempotency_key: Option<String>,
        input: &impl Serialize,
        transition: Transition,
    ) -> GqlResult<Order> {
        let id: OrderId = parse_id(id, "id")?;
        let order = Caller::of(ctx)
            .write_once(
                idempotency_key,
                &format!("{name}Order {id}"),
                input,
                async |tx, principal| {
                    let order = orders::transition(tx, principal, id, transition).await?;
                    Ok(OrderView::from(&order))
                },
                |order| order.id.as_uuid(),
                async |tx, principal, id| replay_order(tx, principal, id).await,
            )
            .await?;
        answer_order(ctx, order).await
    }
}

/// A mutation's order, with the links its selection asks for loaded at once.
async fn answer_order(ctx: &Context<'_>, order: OrderView) -> GqlResult<Order> {
    let links =
        loaders::load_order_links(ctx, &[ctx.look_ahead()], std::slice::from_ref(&order)).await?;
    Ok(Order(order, links))
}

async fn replay_order(
    tx: &mut crate::db::TenantTx,
    principal: &crate::access::Principal,
    id: uuid::Uuid,
) -> Result<OrderView, Error> {
    queries::get(
        tx,
        principal,
        OrderId::from_uuid(id),
        None,
        Expand::default(),
    )
    .await
}

#[Object]
impl Mutation {
    /// Adds a product to the catalog. Needs `catalog:write`; counts against the plan's
    /// `products`. `idempotencyKey` makes a retry safe.
    async fn create_product(
        &self,
        ctx: &Context<'_>,
        input: CreateProductInput,
        idempotency_key: Option<String>,
    ) -> GqlResult<Product> {
        let new = input.parse().map_err(to_graphql)?;
        let product = Caller::of(ctx)
            .write_once(
                idempotency_key,
                "createProduct",
                &input,
                async |tx, principal| products::create(tx, principal, new).await,
                |product| product.id.as_uuid(),
                async |tx, principal, id| {
                    products::get(tx, principal, ProductId::from_uuid(id)).await
                },
            )
            .await?;
        Ok(product.into())
    }

    /// Changes a product, only if it is still at `expectedVersion` when one is given
    /// (`precondition_failed` otherwise). Needs `catalog:write`.
    async fn update_product(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateProductInput,
        expected_version: Option<i64>,
    ) -> GqlResult<Product> {
        let id: ProductId = parse_id(&id, "id")?;
        let changes = input.parse().map_err(to_graphql)?;
        let expected = expected(expected_version);
        let product = Caller::of(ctx)
            .write(async |tx, principal| {
                products::update(tx, principal, id, &expected, changes).await
            })
            .await?;
        Ok(product.into())
    }

    /// Deletes a product (orders keep showing it). Needs `catalog:write`.
    async fn delete_product(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: Option<i64>,
    ) -> GqlResult<Deleted> {
        let product: ProductId = parse_id(&id, "id")?;
        let expected = expected(expected_version);
        Caller::of(ctx)
            .write(async |tx, principal| products::delete(tx, principal, product, &expected).await)
            .await?;
        Ok(Deleted { id })
    }

    /// Adds a customer. Needs `catalog:write`. `idempotencyKey` makes a retry safe.
    async fn create_customer(
        &self,
        ctx: &Context<'_>,
        input: CreateCustomerInput,
        idempotency_key: Option<String>,
    ) -> GqlResult<Customer> {
        let new = NewCustomer {
            email: crate::users::Email::parse(&input.email).map_err(to_graphql)?,
            name: Name::parse(&input.name).map_err(to_graphql)?,
        };
        let customer = Caller::of(ctx)
            .write_once(
                idempotency_key,
                "createCustomer",
                &input,
                async |tx, principal| customers::create(tx, principal, new).await,
                |customer| customer.id.as_uuid(),
                async |tx, principal, id| {
                    customers::get(tx, principal, CustomerId::from_uuid(id)).await
                },
            )
            .await?;
        Ok(customer.into())
    }

    /// Changes a customer, only if it is still at `expectedVersion` when one is given.
    /// Needs `catalog:write`.
    async fn update_customer(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateCustomerInput,
        expected_version: Option<i64>,
    ) -> GqlResult<Customer> {
        let id: CustomerId = parse_id(&id, "id")?;
        let changes = CustomerChanges {
            email: input
                .email
                .as_deref()
                .map(crate::users::Email::parse)
                .transpose()
                .map_err(to_graphql)?,
            name: input
                .name
                .as_deref()
                .map(Name::parse)
                .transpose()
                .map_err(to_graphql)?,
        };
        let expected = expected(expected_version);
        let customer = Caller::of(ctx)
            .write(async |tx, principal| {
                customers::update(tx, principal, id, &expected, changes).await
            })
            .await?;
        Ok(customer.into())
    }

    /// Erases a customer's personal data (its orders stay). Needs `catalog:write`.
    async fn erase_customer(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Customer> {
        let id: CustomerId = parse_id(&id, "id")?;
        let customer = Caller::of(ctx)
            .write(async |tx, principal| customers::erase(tx, principal, id).await)
            .await?;
        Ok(customer.into())
    }

    /// Places an order: prices come from the catalog, stock is reserved, the total is
    /// computed here (`insufficient_stock` when a product lacks it; nothing is reserved
    /// then). Needs `orders:write`; counts against the plan's `orders_per_month`.
    /// `idempotencyKey` makes a retry safe.
    async fn place_order(
        &self,
        ctx: &Context<'_>,
        input: PlaceOrderInput,
        idempotency_key: Option<String>,
    ) -> GqlResult<Order> {
        let new = input.parse()?;
        let order = Caller::of(ctx)
            .write_once(
                idempotency_key,
                "placeOrder",
                &input,
                async |tx, principal| {
                    let order = orders::place(tx, principal, new).await?;
                    Ok(OrderView::from(&order))
                },
                |order| order.id.as_uuid(),
                async |tx, principal, id| replay_order(tx, principal, id).await,
            )
            .await?;
        answer_order(ctx, order).await
    }

    /// Confirms a pending order. Needs `orders:write`.
    async fn confirm_order(
        &self,
        ctx: &Context<'_>,
        id: ID,
        idempotency_key: Option<String>,
    ) -> GqlResult<Order> {
        Self::transition(
            ctx,
            &id,
            "confirm",
            idempotency_key,
            &(),
            Transition::Confirm,
        )
        .await
    }

    /// Records the payment of a confirmed order; `amountCents` must equal its total
    /// (`amount_mismatch`). Needs `orders:write`.
    async fn pay_order(
        &self,
        ctx: &Context<'_>,
        id: ID,
        amount_cents: i64,
        reference: String,
        idempotency_key: Option<String>,
    ) -> GqlResult<Order> {
        if !(1..=200).contains(&reference.chars().count()) {
            return Err(to_graphql(Error::invalid(
                "reference",
                "must be 1-200 characters",
            )));
        }
        let input = (amount_cents, &reference);
        let transition = Transition::Pay {
            amount_cents: non_negative(amount_cents, "amountCents").map_err(to_graphql)?,
            reference: reference.clone(),
        };
        Self::transition(ctx, &id, "pay", idempotency_key, &input, transition).await
    }

    /// Ships a paid order. Needs `orders:write`.
    async fn ship_order(
        &self,
        ctx: &Context<'_>,
        id: ID,
        idempotency_key: Option<String>,
    ) -> GqlResult<Order> {
        Self::transition(ctx, &id, "ship", idempotency_key, &(), Transition::Ship).await
    }

    /// Marks a shipped order delivered. Needs `orders:write`.
    async fn deliver_order(
        &self,
        ctx: &Context<'_>,
        id: ID,
        idempotency_key: Option<String>,
    ) -> GqlResult<Order> {
        Self::transition(
            ctx,
            &id,
            "deliver",
            idempotency_key,
            &(),
            Transition::Deliver,
        )
        .await
    }

    /// Cancels an order that has not shipped, releasing its reserved stock. Needs
    /// `orders:write`.
    async fn cancel_order(
        &self,
        ctx: &Context<'_>,
        id: ID,
        reason: String,
        idempotency_key: Option<String>,
    ) -> GqlResult<Order> {
        if !(1..=500).contains(&reason.chars().count()) {
            return Err(to_graphql(Error::invalid(
                "reason",
                "must be 1-500 characters",
            )));
        }
        let transition = Transition::Cancel {
            reason: reason.clone(),
        };
        Self::transition(ctx, &id, "cancel", idempotency_key, &reason, transition).await
    }

    /// Creates a user with a role no more powerful than the caller's. Needs
    /// `users:write`; counts against the plan's `users`.
    async fn create_user(
        &self,
        ctx: &Context<'_>,
        input: CreateUserInput,
    ) -> GqlResult<CreatedUser> {
        let caller = Caller::of(ctx);
        let new = NewUser::parse(
            &caller.auth.passwords,
            &input.email,
            "email",
            input.role.into(),
            input.password.map(SecretString::from),
            "password",
        )
        .await
        .map_err(to_graphql)?;
        let created = caller
            .write(async |tx, principal| users::create(tx, principal, new).await)
            .await?;
        Ok(created.into())
    }

    /// Changes another user's role or status (deactivation ends their sessions). Needs
    /// `users:write`.
    async fn update_user(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: UpdateUserInput,
        expected_version: Option<i64>,
    ) -> GqlResult<User> {
        let id: UserId = parse_id(&id, "id")?;
        let changes = UserChanges {
            role: input.role.map(Into::into),
            status: input.status.map(Into::into),
        };
        let expected = expected(expected_version);
        let user = Caller::of(ctx)
            .write(async |tx, principal| users::update(tx, principal, id, &expected, changes).await)
            .await?;
        Ok(User(user))
    }

    /// Deactivates a user (REST's `DELETE /v1/users/{id}`): their sessions end, the record
    /// stays. Needs `users:write`.
    async fn deactivate_user(
        &self,
        ctx: &Context<'_>,
        id: ID,
        expected_version: Option<i64>,
    ) -> GqlResult<User> {
        let id: UserId = parse_id(&id, "id")?;
        let expected = expected(expected_version);
        let user = Caller::of(ctx)
            .write(async |tx, principal| users::deactivate(tx, principal, id, &expected).await)
            .await?;
        Ok(User(user))
    }

    /// Creates an API key with at most the caller's scopes; its `key` is shown only
    /// here. Needs `api_keys:write`; counts against the plan's `api_keys`.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
    ) -> GqlResult<CreatedApiKey> {
        let caller = Caller::of(ctx);
        let new = NewApiKey {
            name: input.name,
            scopes: api_keys::parse_scopes(&input.scopes).map_err(to_graphql)?,
            expires_at: input.expires_at,
        };
        let created = caller
            .write(async |tx, principal| {
                api_keys::create(tx, principal, &caller.auth.hasher, new).await
            })
            .await?;
        Ok(CreatedApiKey {
            api_key: ApiKey(created.api_key),
            key: created.secret.expose_secret().to_owned(),
        })
    }

    /// Revokes an API key at once. Needs `api_keys:write`.
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> GqlResult<Deleted> {
        let key: ApiKeyId = parse_id(&id, "id")?;
        Caller::of(ctx)
            .write(async |tx, principal| api_keys::revoke(tx, principal, key).await)
            .await?;
        Ok(Deleted { id })
    }

    /// Makes the caller the key's creator, so it answers to them (a key whose creator
    /// left). Needs `api_keys:write`.
    async fn take_over_api_key(&self, ctx: &Context<'_>, id: ID) -> GqlResult<ApiKey> {
        let id: ApiKeyId = parse_id(&id, "id")?;
        let key = Caller::of(ctx)
            .write(async |tx, principal| api_keys::take_over(tx, principal, id).await)
            .await?;
        Ok(ApiKey(key))
    }

    /// Renames the tenant, only if it is still at `expectedVersion` when one is given.
    /// Needs `tenant:write`.
    async fn update_tenant(
        &self,
        ctx: &Context<'_>,
        input: UpdateTenantInput,
        expected_version: Option<i64>,
    ) -> GqlResult<Tenant> {
        let expected = expected(expected_version);
        let changes = ProfileChanges { name: input.name };
        let tenant = Caller::of(ctx)
            .write(async |tx, principal| profile::update(tx, principal, &expected, changes).await)
            .await?;
        Ok(Tenant(tenant))
    }
}
