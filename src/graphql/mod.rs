//! The GraphQL transport: the application layer as a graph (`async-graphql`), served at
//! `/graphql` by `http::routes::graphql`.
//!
//! - [`query`] and [`mutation`] are the roots: each field calls the application function
//!   its REST twin calls, with the same scope, rules, audit events, quotas and metering;
//! - [`subscription`] is the third: the tenant's events as a realtime session, the same as
//!   a `/v1/events` stream, over the WebSocket `/graphql` upgrades to;
//! - [`context`] is what one request's resolvers share: the verified caller, its tenant's
//!   read transaction, and the batch [`loaders`] (an order's `customer`, `items.product`
//!   and `events` cost one statement per kind for a whole page, never one per order);
//! - [`cost`] refuses an operation too deep, too complex or over its budget before it
//!   runs, and reports every operation's cost;
//! - [`error`] gives every error the `extensions.code` its REST problem has.
//!
//! The schema's SDL is committed (`openapi/schema.graphql`, written by
//! `tenantry graphql-schema`); a test fails when it drifts from the code.

pub mod context;
pub mod cost;
pub mod error;
mod loaders;
pub mod mutation;
pub mod query;
pub mod subscription;
pub mod types;

use async_graphql::Schema;

pub use context::Caller;
pub use cost::{Budget, Settings};

/// The schema served.
pub type ApiSchema = Schema<query::Query, mutation::Mutation, subscription::Subscription>;

/// Builds the schema. Its limits are held by [`cost::run`], before an operation reaches
/// it; with introspection off, the schema also answers `__schema` with nothing.
pub fn schema(settings: &Settings) -> ApiSchema {
    let builder = Schema::build(query::Query, mutation::Mutation, subscription::Subscription);
    if settings.introspection {
        builder.finish()
    } else {
        builder.disable_introspection().finish()
    }
}

/// The schema's SDL, as committed in `openapi/schema.graphql`.
pub fn sdl() -> String {
    schema(&Settings::default()).sdl()
}
