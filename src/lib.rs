//! tenantry: a multi-tenant SaaS API in which PostgreSQL row-level security keeps every
//! tenant's data apart.
//!
//! The map (`ARCHITECTURE.md` tells the whole story), from the bottom layer up:
//! - foundation, shared by every layer: [`config`], [`error`] (the one error type, free of
//!   any transport), [`id`] (typed ids), [`page`] (cursor pagination), [`rule`] (input rules,
//!   declared once for `parse` and the OpenAPI schema), [`observability`]
//!   (logs, correlation ids, the metrics recorder), [`access`] (the [`access::Principal`],
//!   scopes, roles, the grant rule);
//! - [`db`]: the pools, start-up bootstrap and the tenant-scoped transaction — the only
//!   door to tenant data;
//! - shared mechanisms: [`audit`] (every mutation's audit event), [`events`] (the event
//!   store and the committed-event feed), [`versioning`] (optimistic concurrency and the
//!   one versioned-update sequence), [`idempotency`] (idempotency keys), [`shared`] (Redis
//!   behind a circuit breaker, and the invalidation bus), [`traffic`] (rate limits),
//!   [`cache`] (hot single reads, in process and in Redis);
//! - capabilities, each with its domain types, its SQL and its application functions:
//!   [`tenancy`], [`users`], [`api_keys`], [`auth`] (verifying and issuing credentials),
//!   [`catalog`], [`orders`], [`platform`] (the operator's tenant directory), [`webhooks`]
//!   (outbound webhooks: endpoints, signed deliveries in feed order, retries);
//! - transports: [`http`] (router, middleware, handlers, OpenAPI) and [`cli`], assembled by
//!   [`startup`].
//!
//! Dependencies point down this list, never up, and no two modules import each other;
//! `tests/api/architecture.rs` fails the build's tests otherwise.

pub mod access;
pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod cache;
pub mod catalog;
pub mod cli;
pub mod clock;
pub mod config;
pub mod data_rights;
pub mod db;
pub mod error;
pub mod events;
pub mod graphql;
pub mod http;
pub mod id;
pub mod idempotency;
pub mod observability;
pub mod orders;
pub mod page;
pub mod plans;
pub mod platform;
pub mod quotas;
pub mod realtime;
pub mod rule;
pub mod shared;
pub mod startup;
pub mod tenancy;
pub mod traffic;
pub mod usage;
pub mod users;
pub mod versioning;
pub mod webhooks;
