//! Integration tests: the real server on port 0 against the real Postgres.
//! Each test creates its own tenants; RLS keeps them apart, so tests run in parallel.

mod helpers;

mod authz;
mod bootstrap;
mod catalog;
mod cli;
mod credentials;
mod errors;
mod feed;
mod health;
mod idempotency;
mod isolation;
mod jwks;
mod openapi;
mod orders;
mod platform;
mod rls;
mod sessions;
mod tenant_profile;
