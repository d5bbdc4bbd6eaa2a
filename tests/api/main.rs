//! Integration tests: the real server on port 0 against the real Postgres.
//! Each test creates its own tenants; RLS keeps them apart, so tests run in parallel.

mod helpers;

mod api_keys;
mod auth;
mod bootstrap;
mod catalog;
mod cli;
mod errors;
mod feed;
mod health;
mod idempotency;
mod isolation;
mod openapi;
mod orders;
mod platform;
mod rls;
mod tenant_profile;
mod users;
