//! The handlers, one module per resource. Each module exposes `router()`; handlers are
//! named `verb_noun`, declare the scope they need in their signature
//! (`Authorized<scope::CatalogWrite>`), extract and validate their input into the
//! application's types, call one application function, and shape the response (status,
//! `ETag`, problem). The request and response bodies they document are the API contract.

mod api_keys;
mod audit;
mod auth;
mod billing;
mod customers;
mod data_rights;
mod graphql;
mod health;
mod orders;
mod plans;
mod platform;
mod products;
mod quotas;
mod realtime;
mod tenant;
mod usage;
mod users;
mod webhooks;

use utoipa_axum::router::OpenApiRouter;

use super::AppState;

/// Every resource's routes.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .merge(health::router())
        .merge(auth::router())
        .merge(tenant::router())
        .merge(users::router())
        .merge(api_keys::router())
        .merge(products::router())
        .merge(customers::router())
        .merge(orders::router())
        .merge(audit::router())
        .merge(platform::router())
        .merge(plans::router())
        .merge(quotas::router())
        .merge(usage::router())
        .merge(billing::router())
        .merge(data_rights::router())
        .merge(realtime::router())
        .merge(webhooks::router())
        .merge(graphql::router())
}
