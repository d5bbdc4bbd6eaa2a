//! tenantry: a multi-tenant SaaS API in which PostgreSQL row-level security keeps every
//! tenant's data apart.
//!
//! The map, one folder per capability:
//! - [`db`]: the pools, start-up bootstrap (database, roles, schema, policies) and the
//!   tenant-scoped transaction — the only door to tenant data.
//! - [`auth`]: credentials (JWT, API keys, passwords), the [`auth::Principal`] every
//!   handler receives, scopes and roles, login / refresh / logout.
//! - [`tenancy`], [`users`], [`api_keys`]: the tenant admin's resources.
//! - [`platform`]: the operator API across tenants.
//! - [`catalog`]: products and customers, what tenant apps sell and to whom.
//! - [`audit`]: where every mutation records what happened.
//! - [`orders`]: event-sourced orders with CQRS read models; [`events`]: the event
//!   store and the committed-event feed other capabilities follow.
//! - [`http`]: router, middleware stack, error type, extractors.
//! - [`observability`]: logs, request spans, Prometheus metrics.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod db;
pub mod events;
pub mod http;
pub mod id;
pub mod observability;
pub mod openapi;
pub mod orders;
pub mod platform;
pub mod startup;
pub mod tenancy;
pub mod users;
