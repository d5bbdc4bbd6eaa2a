//! `/v1/customers`: list, create, read, change, and erase on request.

use axum::{Json, extract::State, http::StatusCode, response::Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    access::scope,
    catalog::{
        Name,
        customers::{self, Customer, CustomerChanges, CustomerId, NewCustomer},
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
    users::Email,
};
use crate::{cache, http::cached::read_through};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_customers, create_customer))
        .routes(routes!(get_customer, update_customer))
        .routes(routes!(erase_customer))
}

/// Customers of the tenant, newest first.
#[utoipa::path(
    get, path = "/v1/customers", tag = "catalog",
    params(PageParams),
    security(("bearer" = ["catalog:read"]), ("api_key" = ["catalog:read"])),
    responses((status = 200, description = "A page of customers", body = Page<Customer>))
)]
pub async fn list_customers(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::CatalogRead>,
    ApiQuery(params): ApiQuery<PageParams>,
) -> Result<Json<Page<Customer>>, Error> {
    let page = PageRequest::try_from(params)?;
    let customers = state
        .db
        .read(&principal, async |tx| {
            customers::list(tx, &principal, page).await
        })
        .await?;
    Ok(Json(customers))
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCustomer {
    /// Unique within the tenant; stored trimmed and in lower case.
    #[schema(value_type = Email)]
    pub email: String,
    #[schema(value_type = DisplayName)]
    pub name: String,
}

impl CreateCustomer {
    fn parse(self) -> Result<NewCustomer, Error> {
        Ok(NewCustomer {
            email: Email::parse(&self.email)?,
            name: Name::parse(&self.name)?,
        })
    }
}

/// Adds a customer.
#[utoipa::path(
    post, path = "/v1/customers", tag = "catalog",
    request_body = CreateCustomer,
    params(IdempotencyKey),
    security(("bearer" = ["catalog:write"]), ("api_key" = ["catalog:write"])),
    responses(
        (status = 201, description = "Created", body = Customer, headers(("ETag" = String), ("Idempotent-Replayed" = String, description = "`true` when this answers a retry with the same Idempotency-Key"))),
        (status = 409, description = "A customer already has this email (`email_taken`)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn create_customer(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::CatalogWrite>,
    key: IdempotencyKey,
    ValidJson(body): ValidJson<CreateCustomer>,
) -> Result<Response, Error> {
    let key = key.bind("POST /v1/customers", &body);
    let new = body.parse()?;
    idempotency::run(&state, &principal, key, StatusCode::CREATED, async |tx| {
        let customer = customers::create(tx, &principal, new).await?;
        Ok((customer.version, customer))
    })
    .await
}

/// One customer.
#[utoipa::path(
    get, path = "/v1/customers/{id}", tag = "catalog",
    params(("id" = CustomerId, Path, description = "Customer id")),
    security(("bearer" = ["catalog:read"]), ("api_key" = ["catalog:read"])),
    responses(
        (status = 200, description = "The customer", body = Customer, headers(("ETag" = String))),
        (status = 304, description = "Not modified since the `If-None-Match` version"),
    )
)]
pub async fn get_customer(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::CatalogRead>,
    ApiPath(id): ApiPath<CustomerId>,
    preconditions: Preconditions,
) -> Result<Response, Error> {
    read_through(
        &state,
        &principal,
        &preconditions,
        cache::kind::CUSTOMER,
        id.as_uuid(),
        move |state, principal| async move {
            state
                .db
                .read(&principal, async |tx| {
                    customers::get(tx, &principal, id).await
                })
                .await
        },
    )
    .await
}

/// The fields to change; omitted (or `null`) fields keep their value.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateCustomer {
    #[schema(value_type = Option<Email>)]
    pub email: Option<String>,
    #[schema(value_type = Option<DisplayName>)]
    pub name: Option<String>,
}

impl UpdateCustomer {
    fn parse(self) -> Result<CustomerChanges, Error> {
        Ok(CustomerChanges {
            email: self.email.as_deref().map(Email::parse).transpose()?,
            name: self.name.as_deref().map(Name::parse).transpose()?,
        })
    }
}

/// Changes a customer. Send `If-Match` with the `ETag` you read to avoid overwriting a
/// concurrent change (412 if it moved on).
#[utoipa::path(
    patch, path = "/v1/customers/{id}", tag = "catalog",
    params(("id" = CustomerId, Path, description = "Customer id")),
    request_body = UpdateCustomer,
    security(("bearer" = ["catalog:write"]), ("api_key" = ["catalog:write"])),
    responses(
        (status = 200, description = "The updated customer", body = Customer, headers(("ETag" = String))),
        (status = 409, description = "A customer already has this email (`email_taken`), or this customer's personal data was erased (`customer_erased`)", body = Problem, content_type = "application/problem+json"),
        (status = 412, description = "`If-Match` is stale, or weak (`W/\"…\"`: it compares strongly)", body = Problem, content_type = "application/problem+json"),
    )
)]
pub async fn update_customer(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::CatalogWrite>,
    ApiPath(id): ApiPath<CustomerId>,
    preconditions: Preconditions,
    ValidJson(body): ValidJson<UpdateCustomer>,
) -> Result<Response, Error> {
    let changes = body.parse()?;
    let customer = state
        .db
        .write(&principal, async |tx| {
            customers::update(tx, &principal, id, &preconditions.expected(), changes).await
        })
        .await?;
    Ok(with_etag(customer.version, customer))
}

/// Erases a customer's personal data, as a data-protection request requires: its email and
/// name are replaced by placeholders (the customer stays, since orders refer to it), the
/// personal data of the audit events about it is erased while the audit chain still
/// verifies, and earlier answers that showed it are no longer replayed. Recorded in the
/// audit log as `customer.erased`. Erasing an erased customer changes nothing; an erased
/// customer cannot be changed (409 `customer_erased`).
#[utoipa::path(
    post, path = "/v1/customers/{id}/erase", tag = "catalog",
    params(("id" = CustomerId, Path, description = "Customer id")),
    security(("bearer" = ["catalog:write"]), ("api_key" = ["catalog:write"])),
    responses(
        (status = 200, description = "The customer, erased", body = Customer, headers(("ETag" = String))),
    )
)]
pub async fn erase_customer(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::CatalogWrite>,
    ApiPath(id): ApiPath<CustomerId>,
) -> Result<Response, Error> {
    let customer = state
        .db
        .write(&principal, async |tx| {
            customers::erase(tx, &principal, id).await
        })
        .await?;
    Ok(with_etag(customer.version, customer))
}
