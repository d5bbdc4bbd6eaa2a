//! Integration tests: the real server on port 0 against the real Postgres (and one test,
//! `architecture`, that reads `src/` itself).
//! Each test creates its own tenants; RLS keeps them apart, so tests run in parallel.
//!
//! A folder per resource (`auth`, `users`, `api_keys`, `platform`, `catalog`, `orders`),
//! one file per concern inside it; single files for the tenant profile, the CLI and what
//! cuts across resources (the RLS wall, isolation, errors, OpenAPI, health, metrics,
//! bootstrap, idempotency, the event feed, connections, request ids, recovery from a
//! database outage and start-up before the database is up, both on a throwaway cluster;
//! the server behind a throwaway PgBouncer in transaction mode, `pgbouncer`; and the docker
//! compose stack's files). Helpers shared between files are in `helpers`, the throwaway
//! cluster in `cluster`.

mod cluster;
mod helpers;

mod api_keys;
mod architecture;
mod audit;
mod auth;
mod billing;
mod bodies;
mod bootstrap;
mod catalog;
mod cli;
mod compose;
mod connections;
mod data_rights;
mod errors;
mod feed;
mod graphql;
mod health;
mod idempotency;
mod isolation;
mod metrics;
mod openapi;
mod orders;
mod pgbouncer;
mod plans;
mod platform;
mod privileges;
mod quotas;
mod readme;
mod realtime;
mod recovery;
mod request_ids;
mod rls;
mod startup;
mod tenant_profile;
mod timeouts;
mod traces;
mod traffic;
mod usage;
mod users;
mod webhooks;
