//! Start-up bootstrap: create the database if missing, run the migrations (tables, roles,
//! grants), apply the RLS policies, and set the login roles' passwords.
//!
//! Safe when several instances start at once: everything runs under one advisory lock
//! taken in the cluster's maintenance database, because both `CREATE DATABASE` and roles
//! are cluster-wide and a lock taken inside the target database cannot guard its creation.
//! Idempotent: a second run finds nothing to do. Policies are re-applied only when
//! `policies/rls.sql` or the schema version changed, since `DROP/CREATE POLICY` takes
//! exclusive locks that would stall live traffic.

use anyhow::Context;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use sqlx::{Connection, Executor, PgConnection, postgres::PgConnectOptions};

use super::{APP_ROLE, PLATFORM_ROLE, parse_url};
use crate::config::Config;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
const POLICIES: &str = include_str!("../../policies/rls.sql");
/// `pg_advisory_lock` key: "tenantry" in ASCII.
const BOOTSTRAP_LOCK: i64 = 0x74656e616e747279;

/// The owner connection options from `DATABASE_URL`.
pub fn connect_options(config: &Config) -> anyhow::Result<PgConnectOptions> {
    parse_url(config.database_url.expose_secret())
}

#[tracing::instrument(skip_all)]
pub async fn bootstrap(config: &Config) -> anyhow::Result<()> {
    let target = connect_options(config)?;
    let database = target.get_database().unwrap_or("postgres").to_owned();

    let mut maintenance = PgConnection::connect_with(&target.clone().database("postgres"))
        .await
        .context("connecting to the maintenance database `postgres` with DATABASE_URL")?;
    sqlx::query("select pg_advisory_lock($1)")
        .bind(BOOTSTRAP_LOCK)
        .execute(&mut maintenance)
        .await?;
    let result = bootstrap_locked(config, &mut maintenance, &target, &database).await;
    // Closing the session releases the lock even if the unlock fails.
    let _ = sqlx::query("select pg_advisory_unlock($1)")
        .bind(BOOTSTRAP_LOCK)
        .execute(&mut maintenance)
        .await;
    let _ = maintenance.close().await;
    result
}

async fn bootstrap_locked(
    config: &Config,
    maintenance: &mut PgConnection,
    target: &PgConnectOptions,
    database: &str,
) -> anyhow::Result<()> {
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(database)
            .fetch_one(&mut *maintenance)
            .await?;
    if !exists {
        tracing::info!(database, "creating database");
        maintenance
            .execute(format!("create database {}", quote_ident(database)).as_str())
            .await
            .with_context(|| format!("creating database {database}"))?;
    }

    let mut owner = PgConnection::connect_with(target)
        .await
        .context("connecting with DATABASE_URL")?;
    MIGRATOR
        .run(&mut owner)
        .await
        .context("running migrations")?;
    apply_policies(&mut owner).await?;
    for (role, password) in [
        (APP_ROLE, config.database_app_password.expose_secret()),
        (
            PLATFORM_ROLE,
            config.database_platform_password.expose_secret(),
        ),
    ] {
        let statement = format!(
            "alter role {} password {}",
            quote_ident(role),
            quote_literal(password)
        );
        owner
            .execute(statement.as_str())
            .await
            .with_context(|| format!("setting the password of {role}"))?;
    }
    owner
        .execute(
            format!(
                "grant connect on database {} to {APP_ROLE}, {PLATFORM_ROLE}",
                quote_ident(database)
            )
            .as_str(),
        )
        .await?;
    owner.close().await?;
    Ok(())
}

async fn apply_policies(owner: &mut PgConnection) -> anyhow::Result<()> {
    let schema_version = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let fingerprint = format!("{schema_version}:{:x}", Sha256::digest(POLICIES));

    owner
        .execute("create table if not exists tenantry_policy_state (id int primary key check (id = 1), fingerprint text not null)")
        .await?;
    let applied: Option<String> =
        sqlx::query_scalar("select fingerprint from tenantry_policy_state where id = 1")
            .fetch_optional(&mut *owner)
            .await?;
    if applied.as_deref() == Some(fingerprint.as_str()) {
        return Ok(());
    }
    tracing::info!("applying row-level security policies");
    let mut tx = owner.begin().await?;
    tx.execute(POLICIES)
        .await
        .context("applying policies/rls.sql")?;
    sqlx::query("insert into tenantry_policy_state (id, fingerprint) values (1, $1) on conflict (id) do update set fingerprint = excluded.fingerprint")
        .bind(&fingerprint)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn quote_literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_doubles_the_quote_character() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }
}
