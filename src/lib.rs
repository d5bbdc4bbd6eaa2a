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
//! - [`audit`]: where every mutation records what happened.
//! - [`http`]: router, middleware stack, error type, extractors.
//! - [`observability`]: logs, request spans, Prometheus metrics.

pub mod api_keys;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod http;
pub mod id;
pub mod observability;
pub mod openapi;
pub mod platform;
pub mod startup;
pub mod tenancy;
pub mod users;
