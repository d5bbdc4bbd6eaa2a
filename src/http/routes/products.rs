//! `/v1/products`: list, create, read, change, delete (soft).

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    access::scope,
    catalog::{
        Currency, Name,
        products::{self, NewProduct, Product, ProductChanges, ProductId, Sku},
    },
    error::Error,
    http::{
        AppState,
        auth::Authorized,
        etag::{Preconditions, with_etag},
        extract::{ApiPath, ApiQuery, ValidJson},
        idempotency::{self, IdempotencyKey},
        pagination::PageParams,
        problem::Problem,
    },
    page::{Page, PageRequest},
    rule::DisplayName,
};
use crate::{cache, http::cached::read_through};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_products, create_product))
        .routes(routes!(get_product, update_product, delete_product))
}

/// Live products of the tenant, newest first (deleted ones are not listed).
#[utoipa::path(
    get, path = "/v1/products", tag = "catalog",
    params(PageParams),
    security(("bearer" = ["catalog:read"]), ("api_key" = ["catalog:read"])),
    responses((status = 200, description = "A page of products", body = Page<Product>))
)]
pub async fn list_products(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::CatalogRead>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<Product>>, Error> {
    let page = PageRequest::try_from(params)?;
    let products = state
        .db
        .read(&principal, async |tx| {
            products::list(tx, &principal, page).await
        })
        .await?;
    Ok(Json(products))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProduct {
    /// Unique among the tenant's live products.
    #[schema(value_type = Sku)]
    pub sku: String,
    #[schema(value_type = DisplayName)]
    pub name: String,
    /// Price in the currency's minor units (cents for EUR), zero or more.
    #[schema(example = 1250, minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub price_cents: i64,
    #[schema(value_type = Currency)]
    pub currency: String,
    /// Units available, 0 to 2147483647 (a 32-bit integer; the stock the API shows is
    /// 64-bit, since cancelled orders give their units back on top of it).
    #[schema(example = 40, minimum = 0, maximum = 2_147_483_647)]
    pub stock: i32,
}

impl CreateProduct {
    fn parse(self) -> Result<NewProduct, Error> {
        Ok(NewProduct {
            sku: Sku::parse(&self.sku)?,
            name: Name::parse(&self.name)?,
            price_cents: self.price_cents,
            currency: Currency::parse(&self.currency)?,
            stock: self.stock,
        })
    }
}

/// Adds a product to the catalog.
#[utoipa::path(
    post, path = "/v1/products", tag = "catalog",
    request_body = CreateProduct,
    params(IdempotencyKey),
    security(("bearer" = ["catalog:write"]), ("api_key" = ["catalog:write"])),
    responses(
        (status = 201, description = "Created", body = Product, headers(("ETag" = String), ("Idempotent-Replayed" = String, description = "`true` when this answers a retry with the same Idempotency-Key"))),
        (status = 409, description = "A live product already has this SKU (`sku_taken`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_product(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::CatalogWrite>,
    key: IdempotencyKey,
    ValidJson(body): ValidJson<CreateProduct>,
) -> Result<Response, Error> {
    let key = key.bind("POST /v1/products", &body);
    let new = body.parse()?;
    idempotency::run(&state, &principal, key, StatusCode::CREATED, async |tx| {
        let product = products::create(tx, &principal, new).await?;
        Ok((product.version, product))
    })
    .await
}

/// One product.
#[utoipa::path(
    get, path = "/v1/products/{id}", tag = "catalog",
    params(("id" = ProductId, Path, description = "Product id")),
    security(("bearer" = ["catalog:read"]), ("api_key" = ["catalog:read"])),
    responses(
        (status = 200, description = "The product", body = Product, headers(("ETag" = String))),
        (status = 304, description = "Not modified since the `If-None-Match` version"),
    )
)]
pub async fn get_product(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::CatalogRead>,
    ApiPath(id): ApiPath<ProductId>,
    preconditions: Preconditions,
) -> Result<Response, Error> {
    read_through(
        &state,
        &principal,
        &preconditions,
        cache::kind::PRODUCT,
        id.as_uuid(),
        move |state, principal| async move {
            state
                .db
                .read(&principal, async |tx| {
                    products::get(tx, &principal, id).await
                })
                .await
        },
    )
    .await
}

/// The fields to change; omitted (or `null`) fields keep their value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProduct {
    #[schema(value_type = Option<Sku>)]
    pub sku: Option<String>,
    #[schema(value_type = Option<DisplayName>)]
    pub name: Option<String>,
    #[schema(example = 1400, minimum = 0, maximum = 9_223_372_036_854_775_807_i64)]
    pub price_cents: Option<i64>,
    #[schema(value_type = Option<Currency>)]
    pub currency: Option<String>,
    /// The new stock level (absolute, not a delta), 0 to 2147483647.
    #[schema(example = 35, minimum = 0, maximum = 2_147_483_647)]
    pub stock: Option<i32>,
}

impl UpdateProduct {
    fn parse(self) -> Result<ProductChanges, Error> {
        Ok(ProductChanges {
            sku: self.sku.as_deref().map(Sku::parse).transpose()?,
            name: self.name.as_deref().map(Name::parse).transpose()?,
            price_cents: self.price_cents,
            currency: self.currency.as_deref().map(Currency::parse).transpose()?,
            stock: self.stock,
        })
    }
}

/// Changes a product. Send `If-Match` with the `ETag` you read to avoid overwriting a
/// concurrent change, such as stock taken by an order (412 if it moved on).
#[utoipa::path(
    patch, path = "/v1/products/{id}", tag = "catalog",
    params(("id" = ProductId, Path, description = "Product id")),
    request_body = UpdateProduct,
    security(("bearer" = ["catalog:write"]), ("api_key" = ["catalog:write"])),
    responses(
        (status = 200, description = "The updated product", body = Product, headers(("ETag" = String))),
        (status = 409, description = "A live product already has this SKU (`sku_taken`)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` is stale, or weak (`W/\"…\"`: it compares strongly)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_product(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::CatalogWrite>,
    ApiPath(id): ApiPath<ProductId>,
    preconditions: Preconditions,
    ValidJson(body): ValidJson<UpdateProduct>,
) -> Result<Response, Error> {
    let changes = body.parse()?;
    let product = state
        .db
        .write(&principal, async |tx| {
            products::update(tx, &principal, id, &preconditions.expected(), changes).await
        })
        .await?;
    Ok(with_etag(product.version, product))
}

/// Deletes a product: it disappears from the catalog (404, no longer listed, its SKU free
/// for reuse) while orders that bought it keep referring to it. Honours `If-Match`.
#[utoipa::path(
    delete, path = "/v1/products/{id}", tag = "catalog",
    params(("id" = ProductId, Path, description = "Product id")),
    security(("bearer" = ["catalog:write"]), ("api_key" = ["catalog:write"])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 412, description = "`If-Match` is stale, or weak (`W/\"…\"`: it compares strongly)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn delete_product(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::CatalogWrite>,
    ApiPath(id): ApiPath<ProductId>,
    preconditions: Preconditions,
) -> Result<StatusCode, Error> {
    state
        .db
        .write(&principal, async |tx| {
            products::delete(tx, &principal, id, &preconditions.expected()).await
        })
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
