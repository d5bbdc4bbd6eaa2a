//! Start-up bootstrap: create the database if missing, run the migrations, create this
//! database's login roles, apply the RLS policies and the grants, and set the roles'
//! passwords and limits.
//!
//! Safe when several instances start at once: everything runs under one advisory lock
//! taken in the cluster's maintenance database, because both `CREATE DATABASE` and roles
//! are cluster-wide and a lock taken inside the target database cannot guard its creation.
//! Idempotent: a second run finds nothing to do. Policies and grants are re-applied only
//! when `policies/`, the schema version or the role names changed, since
//! `DROP/CREATE POLICY` takes exclusive locks that would stall live traffic; and every
//! statement that takes a lock here gives up after [`DDL_LOCK_TIMEOUT`] and is retried,
//! rather than queueing behind a long transaction and stalling every query queued behind it.
//!
//! Role passwords never travel in clear text: the SCRAM-SHA-256 verifier is computed here
//! and sent instead, so neither the server's statement log nor `pg_stat_activity` ever
//! shows a password.
//!
//! Patient with a database that is not up yet (a compose stack whose Postgres is still
//! initialising, a server restarting): the first connection is retried with a growing pause
//! for up to `DATABASE_CONNECT_TIMEOUT`, as long as the failure is one that waiting can mend
//! (refused, reset, no such host yet, "the database system is starting up"). One that it
//! cannot — a wrong password, a missing role or database — ends the bootstrap at once
//! ([`ConnectError`]).
//!
//! It connects with `DATABASE_DIRECT_URL` ([`connect_options`]), never through a pooler in
//! transaction mode: the advisory lock it holds throughout is a session's, and so are
//! `CREATE DATABASE` and the migrator's own lock.
//!
//! [`bootstrap`] returns a [`BootstrapReport`] of what it did, which `tenantry migrate`
//! prints and `serve` logs.

use std::{collections::HashSet, time::Duration};

use anyhow::Context;
use secrecy::ExposeSecret;
use sha2::{Digest, Sha256};
use sqlx::{Connection, Executor, PgConnection, migrate::Migrate, postgres::PgConnectOptions};
use tokio::time::Instant;

use super::{Roles, database_name, parse_url};
use crate::{
    config::Config,
    error::{DatabaseFault, database_fault},
};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");
const POLICIES: &str = include_str!("../../policies/rls.sql");
const GRANTS: &str = include_str!("../../policies/grants.sql");
/// `pg_advisory_lock` key: "tenantry" in ASCII.
const BOOTSTRAP_LOCK: i64 = 0x74656e616e747279;
/// The roles the first migrations created and granted to, whatever the database. Where
/// this database's roles have other names, these lose every privilege here.
const LEGACY_ROLES: [&str; 2] = ["tenantry_app", "tenantry_platform"];
/// How long a bootstrap statement waits for a lock before giving up and retrying.
const DDL_LOCK_TIMEOUT: Duration = Duration::from_secs(2);
/// How many times bootstrap tries when it cannot get its locks.
const DDL_ATTEMPTS: u32 = 5;
/// The pause after the first failed connection attempt; each later pause doubles it.
const FIRST_CONNECT_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause between connection attempts.
const MAX_CONNECT_PAUSE: Duration = Duration::from_secs(5);
/// The least time one connection attempt is given before it counts as failed (a host that
/// drops packets would otherwise keep it for the kernel's two minutes), even when less of
/// `DATABASE_CONNECT_TIMEOUT` is left.
const MIN_CONNECT_ATTEMPT: Duration = Duration::from_secs(5);

/// What a bootstrap did, for `tenantry migrate` to say and `serve` to log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapReport {
    /// The database `DATABASE_DIRECT_URL` (`DATABASE_URL` unless set) names.
    pub database: String,
    /// Whether this run created the database (otherwise it existed already).
    pub database_created: bool,
    /// The request role, then the platform role, and whether this run created each.
    /// Both have their passwords and limits set again on every run.
    pub roles: Vec<RoleReport>,
    /// The migrations this run applied, oldest first, named as their files are
    /// (`0010_api_key_creators`).
    pub migrations_applied: Vec<String>,
    /// How many migrations the schema has now (every one this binary knows).
    pub migrations_total: usize,
    /// Whether the policies and grants were applied (otherwise they were current).
    pub policies_applied: bool,
}

/// One login role in a [`BootstrapReport`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleReport {
    pub name: String,
    /// Whether this run created it (otherwise it existed already).
    pub created: bool,
}

/// Why bootstrap could not connect to the database server at all. The command line exits
/// by it: 69 (`EX_UNAVAILABLE`) for a server that never answered, 78 (`EX_CONFIG`) for one
/// that refused the owner's URL (`DATABASE_DIRECT_URL`, or `DATABASE_URL`).
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// No connection within `DATABASE_CONNECT_TIMEOUT`, every attempt failing in a way that
    /// waiting might have mended.
    #[error(
        "waited {} (DATABASE_CONNECT_TIMEOUT) for the database server at {server} to accept a connection, {attempts} attempts; the last failed with: {last}",
        humantime::format_duration(*.waited)
    )]
    Unreachable {
        /// `host:port`.
        server: String,
        waited: Duration,
        attempts: u32,
        last: sqlx::Error,
    },
    /// The server answered and refused: a wrong password, a role or database that does not
    /// exist. Not retried: waiting would not change the answer.
    #[error(
        "the database server at {server} refused a connection to its maintenance database `postgres` as the owner (DATABASE_DIRECT_URL, or DATABASE_URL when that is unset); waiting would not change that, so check that URL: {refusal}"
    )]
    Refused {
        /// `host:port`.
        server: String,
        refusal: sqlx::Error,
    },
}

/// The owner's connection options, from `DATABASE_DIRECT_URL` (`DATABASE_URL` unless set):
/// a session of its own, for the bootstrap, the command line's owner work and `LISTEN`.
/// Its database is the one bootstrapped, and names the roles. Straight to Postgres, so
/// sqlx's statement cache stays at its default here whatever `DATABASE_STATEMENT_CACHE`
/// says.
pub fn connect_options(config: &Config) -> anyhow::Result<PgConnectOptions> {
    parse_url(
        "DATABASE_DIRECT_URL",
        config.database_direct_url.expose_secret(),
    )
}

/// The pools' connection options, from `DATABASE_URL` (PgBouncer's address, when there is
/// one), with the statement cache `DATABASE_STATEMENT_CACHE` asks for; the pools put their
/// role and password in place of its user.
pub fn pool_options(config: &Config) -> anyhow::Result<PgConnectOptions> {
    Ok(
        parse_url("DATABASE_URL", config.database_url.expose_secret())?
            .statement_cache_capacity(config.database_statement_cache),
    )
}

#[tracing::instrument(skip_all)]
pub async fn bootstrap(config: &Config) -> anyhow::Result<BootstrapReport> {
    let target = connect_options(config)?;
    let roles = Roles::from_config(config)?;
    let database = database_name(&target);

    let mut maintenance = connect_patiently(
        &target.clone().database("postgres"),
        config.database_connect_timeout,
    )
    .await?;
    sqlx::query("select pg_advisory_lock($1)")
        .bind(BOOTSTRAP_LOCK)
        .execute(&mut maintenance)
        .await?;
    let result = bootstrap_locked(config, &roles, &mut maintenance, &target, &database).await;
    // Closing the session releases the lock even if the unlock fails.
    let _ = sqlx::query("select pg_advisory_unlock($1)")
        .bind(BOOTSTRAP_LOCK)
        .execute(&mut maintenance)
        .await;
    let _ = maintenance.close().await;
    result
}

/// Connects, retrying for up to `timeout` while the server cannot be reached or is still
/// starting: a pause of [`FIRST_CONNECT_PAUSE`] after the first failure, doubling up to
/// [`MAX_CONNECT_PAUSE`], the last attempt made when the time is up. A refusal that waiting
/// cannot mend ends it at once.
async fn connect_patiently(
    options: &PgConnectOptions,
    timeout: Duration,
) -> Result<PgConnection, ConnectError> {
    let server = format!("{}:{}", options.get_host(), options.get_port());
    let started = Instant::now();
    let deadline = started + timeout;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let limit = deadline
            .saturating_duration_since(Instant::now())
            .max(MIN_CONNECT_ATTEMPT);
        let error = match tokio::time::timeout(limit, PgConnection::connect_with(options)).await {
            Ok(Ok(connection)) => {
                if attempt > 1 {
                    tracing::info!(%server, attempt, "database reachable");
                }
                return Ok(connection);
            }
            Ok(Err(error)) => error,
            Err(_) => sqlx::Error::Io(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no answer within {}", humantime::format_duration(limit)),
            )),
        };
        if !worth_waiting_for(&error) {
            return Err(ConnectError::Refused {
                server,
                refusal: error,
            });
        }
        let Some(pause) =
            connect_pause(attempt, deadline.saturating_duration_since(Instant::now()))
        else {
            return Err(ConnectError::Unreachable {
                server,
                waited: timeout,
                attempts: attempt,
                last: error,
            });
        };
        tracing::warn!(
            %server,
            attempt,
            error = %error,
            "database not reachable yet; retrying in {}",
            humantime::format_duration(pause)
        );
        tokio::time::sleep(pause).await;
    }
}

/// Whether a failed connection attempt may succeed later: the server could not be reached,
/// was starting up or shutting down (`database_fault`'s connection faults), or had no
/// connection slot free. Anything else — a wrong password (28P01), a role or database that
/// does not exist (28000, 3D000), a TLS set-up the server refuses — is not.
fn worth_waiting_for(error: &sqlx::Error) -> bool {
    database_fault(error) != DatabaseFault::Other
}

/// The pause after failed attempt number `attempt` (from 1), given `remaining` of the time
/// allowed: the doubling back-off, cut to what remains (in whole milliseconds, as the log
/// shows it) so that the last attempt comes when the time is up; `None` when no time
/// remains.
fn connect_pause(attempt: u32, remaining: Duration) -> Option<Duration> {
    let remaining = Duration::from_millis(u64::try_from(remaining.as_millis()).unwrap_or(u64::MAX));
    if remaining.is_zero() {
        return None;
    }
    let doubled = FIRST_CONNECT_PAUSE.saturating_mul(1 << attempt.saturating_sub(1).min(16));
    Some(doubled.min(MAX_CONNECT_PAUSE).min(remaining))
}

async fn bootstrap_locked(
    config: &Config,
    roles: &Roles,
    maintenance: &mut PgConnection,
    target: &PgConnectOptions,
    database: &str,
) -> anyhow::Result<BootstrapReport> {
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
        .context("connecting with DATABASE_DIRECT_URL (DATABASE_URL unless set)")?;
    owner
        .execute(format!("set lock_timeout = {}", DDL_LOCK_TIMEOUT.as_millis()).as_str())
        .await?;
    let pending = pending_migrations(&mut owner).await?;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let migrated = MIGRATOR.run(&mut owner).await.map_err(anyhow::Error::from);
        if !pause_to_retry("running migrations", attempt, &migrated).await {
            migrated.context("running migrations")?;
            break;
        }
    }
    let roles_created = create_roles(&mut owner, roles).await?;
    let mut attempt = 0;
    let policies_applied = loop {
        attempt += 1;
        let applied = apply_policies(&mut owner, roles, database).await;
        if !pause_to_retry("applying policies and grants", attempt, &applied).await {
            break applied?;
        }
    };
    configure_roles(&mut owner, config, roles, database).await?;
    owner.close().await?;
    Ok(BootstrapReport {
        database: database.to_owned(),
        database_created: !exists,
        roles: [&roles.app, &roles.platform]
            .into_iter()
            .map(|name| RoleReport {
                name: name.clone(),
                created: roles_created.contains(name),
            })
            .collect(),
        migrations_applied: pending,
        migrations_total: MIGRATOR
            .iter()
            .filter(|m| !m.migration_type.is_down_migration())
            .count(),
        policies_applied,
    })
}

/// The migrations this database has yet to apply, named as their files are. Read before
/// running them, under the bootstrap lock, so they are exactly the ones the run applies.
async fn pending_migrations(owner: &mut PgConnection) -> anyhow::Result<Vec<String>> {
    owner
        .ensure_migrations_table()
        .await
        .context("creating the migrations table")?;
    let applied: HashSet<i64> = owner
        .list_applied_migrations()
        .await
        .context("reading the applied migrations")?
        .into_iter()
        .map(|m| m.version)
        .collect();
    Ok(MIGRATOR
        .iter()
        .filter(|m| !m.migration_type.is_down_migration() && !applied.contains(&m.version))
        .map(|m| migration_name(m.version, &m.description))
        .collect())
}

/// A migration's name as its file has it: sqlx keeps `0010_api_key_creators.sql` as version
/// 10 and the description "api key creators".
fn migration_name(version: i64, description: &str) -> String {
    format!("{version:04}_{}", description.replace(' ', "_"))
}

/// Whether a failed step should run again: when it failed because a lock was held too
/// long by someone else, and it has not used its attempts, this waits a growing pause and
/// says yes. Success and any other failure say no.
async fn pause_to_retry<T>(what: &str, attempt: u32, result: &anyhow::Result<T>) -> bool {
    match result {
        Err(error) if attempt < DDL_ATTEMPTS && is_lock_timeout(error) => {
            let pause = Duration::from_millis(500) * attempt;
            tracing::warn!(what, attempt, ?pause, "a lock is held elsewhere; retrying");
            tokio::time::sleep(pause).await;
            true
        }
        _ => false,
    }
}

fn is_lock_timeout(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let database = match cause.downcast_ref::<sqlx::Error>() {
            Some(sqlx::Error::Database(database)) => Some(database),
            _ => match cause.downcast_ref::<sqlx::migrate::MigrateError>() {
                Some(sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(database))) => {
                    Some(database)
                }
                _ => None,
            },
        };
        database.is_some_and(|db| db.code().as_deref() == Some("55P03"))
    })
}

/// Creates this database's login roles if missing: not superuser, no `BYPASSRLS`, no
/// role or database creation, inheriting nothing. Another database's bootstrap may be
/// creating the same names at once only if they were configured alike; both succeed (and
/// only the one that made a role reports it created). Returns the roles this run created.
async fn create_roles(owner: &mut PgConnection, roles: &Roles) -> anyhow::Result<Vec<String>> {
    let mut created_here = Vec::new();
    for role in [&roles.app, &roles.platform] {
        let exists: bool =
            sqlx::query_scalar("select exists (select 1 from pg_roles where rolname = $1)")
                .bind(role)
                .fetch_one(&mut *owner)
                .await?;
        if exists {
            continue;
        }
        tracing::info!(role, "creating role");
        let created = owner
            .execute(
                format!(
                    "create role {} login nosuperuser nocreatedb nocreaterole noinherit nobypassrls",
                    quote_ident(role)
                )
                .as_str(),
            )
            .await;
        match created {
            Err(sqlx::Error::Database(db))
                if matches!(db.code().as_deref(), Some("42710" | "23505")) => {}
            other => {
                other.with_context(|| format!("creating role {role}"))?;
                created_here.push(role.clone());
            }
        }
    }
    Ok(created_here)
}

/// The policy and grant files with this deployment's names in place of their variables.
fn policy_sql(roles: &Roles, database: &str) -> String {
    let substitute = |sql: &str| {
        sql.replace(":\"database\"", &quote_ident(database))
            .replace(":\"app_role\"", &quote_ident(&roles.app))
            .replace(":\"platform_role\"", &quote_ident(&roles.platform))
    };
    format!("{}\n{}", substitute(POLICIES), substitute(GRANTS))
}

/// Applies the policies and grants unless the ones in force are these; says whether it did.
async fn apply_policies(
    owner: &mut PgConnection,
    roles: &Roles,
    database: &str,
) -> anyhow::Result<bool> {
    let schema_version = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
    let sql = policy_sql(roles, database);
    let fingerprint = format!("{schema_version}:{:x}", Sha256::digest(&sql));

    owner
        .execute("create table if not exists tenantry_policy_state (id int primary key check (id = 1), fingerprint text not null)")
        .await?;
    let applied: Option<String> =
        sqlx::query_scalar("select fingerprint from tenantry_policy_state where id = 1")
            .fetch_optional(&mut *owner)
            .await?;
    if applied.as_deref() == Some(fingerprint.as_str()) {
        return Ok(false);
    }
    tracing::info!("applying row-level security policies and grants");
    let mut tx = owner.begin().await?;
    tx.execute(sql.as_str())
        .await
        .context("applying policies/rls.sql and policies/grants.sql")?;
    revoke_legacy_roles(&mut tx, roles, database).await?;
    sqlx::query("insert into tenantry_policy_state (id, fingerprint) values (1, $1) on conflict (id) do update set fingerprint = excluded.fingerprint")
        .bind(&fingerprint)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// The first migrations granted to fixed role names, which every database on a cluster
/// shared. Where this database's roles are named otherwise, those names keep nothing here.
async fn revoke_legacy_roles(
    conn: &mut PgConnection,
    roles: &Roles,
    database: &str,
) -> anyhow::Result<()> {
    for legacy in LEGACY_ROLES {
        if legacy == roles.app || legacy == roles.platform {
            continue;
        }
        let exists: bool =
            sqlx::query_scalar("select exists (select 1 from pg_roles where rolname = $1)")
                .bind(legacy)
                .fetch_one(&mut *conn)
                .await?;
        if !exists {
            continue;
        }
        let role = quote_ident(legacy);
        conn.execute(
            format!(
                "revoke all on all tables in schema public from {role};
                 revoke all on all sequences in schema public from {role};
                 revoke all on all functions in schema public from {role};
                 revoke all on schema public from {role};
                 revoke all on database {} from {role};",
                quote_ident(database)
            )
            .as_str(),
        )
        .await
        .with_context(|| format!("revoking the privileges of {legacy}"))?;
    }
    Ok(())
}

/// Sets each role's password (as its SCRAM verifier) and its limits in this database.
async fn configure_roles(
    owner: &mut PgConnection,
    config: &Config,
    roles: &Roles,
    database: &str,
) -> anyhow::Result<()> {
    let millis = |limit: Duration| u64::try_from(limit.as_millis()).unwrap_or(u64::MAX);
    let settings = [
        (
            "statement_timeout",
            millis(config.database_statement_timeout).to_string(),
        ),
        (
            "lock_timeout",
            millis(config.database_lock_timeout).to_string(),
        ),
        (
            "idle_in_transaction_session_timeout",
            millis(config.database_idle_in_transaction_timeout).to_string(),
        ),
        // The server probes a connection whose peer went quiet (seconds), and checks during
        // a long query that the client is still there (milliseconds), so a vanished
        // instance's session, and its locks, do not outlive it by the kernel's hours.
        ("tcp_keepalives_idle", "30".to_owned()),
        ("tcp_keepalives_interval", "10".to_owned()),
        ("client_connection_check_interval", "5000".to_owned()),
        // No JIT: these roles run short statements that finish long before JIT would have
        // compiled them (tens to hundreds of milliseconds), and read transactions price
        // sorts out (`db::READ_ONLY_SETTINGS`), which would push a statement that must
        // still sort past JIT's cost thresholds.
        ("jit", "off".to_owned()),
    ];
    for (role, password) in [
        (&roles.app, config.database_app_password.expose_secret()),
        (
            &roles.platform,
            config.database_platform_password.expose_secret(),
        ),
    ] {
        owner
            .execute(password_statement(role, password).as_str())
            .await
            .with_context(|| format!("setting the password of {role}"))?;
        for (setting, value) in &settings {
            // `client_connection_check_interval` is new in Postgres 14.
            let known: bool =
                sqlx::query_scalar("select exists (select 1 from pg_settings where name = $1)")
                    .bind(setting)
                    .fetch_one(&mut *owner)
                    .await?;
            if !known {
                continue;
            }
            owner
                .execute(
                    format!(
                        "alter role {} in database {} set {setting} = {value}",
                        quote_ident(role),
                        quote_ident(database)
                    )
                    .as_str(),
                )
                .await
                .with_context(|| format!("setting {setting} of {role}"))?;
        }
    }
    Ok(())
}

/// `alter role … password '<SCRAM-SHA-256 verifier>'`: Postgres stores a verifier it is
/// given as it is, so the password itself is never in the statement.
fn password_statement(role: &str, password: &str) -> String {
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
    format!(
        "alter role {} password {}",
        quote_ident(role),
        quote_literal(&verifier)
    )
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
    fn connection_attempts_back_off_doubling_up_to_5_s_and_stop_when_the_time_is_up() {
        let long = Duration::from_secs(600);
        let pauses: Vec<u64> = (1..=8)
            .map(|attempt| connect_pause(attempt, long).unwrap().as_millis() as u64)
            .collect();
        assert_eq!(pauses, [250, 500, 1000, 2000, 4000, 5000, 5000, 5000]);
        assert_eq!(
            connect_pause(3, Duration::from_micros(300_900)),
            Some(Duration::from_millis(300)),
            "the last pause ends when the time does, for one last attempt then"
        );
        assert_eq!(connect_pause(1, Duration::ZERO), None);
        assert_eq!(connect_pause(1, Duration::from_micros(999)), None);
        assert_eq!(
            connect_pause(u32::MAX, long),
            Some(MAX_CONNECT_PAUSE),
            "no overflow however many attempts"
        );
    }

    #[test]
    fn only_failures_that_waiting_can_mend_are_retried() {
        let io = |kind: std::io::ErrorKind| sqlx::Error::Io(kind.into());
        assert!(worth_waiting_for(&io(
            std::io::ErrorKind::ConnectionRefused
        )));
        assert!(worth_waiting_for(&io(std::io::ErrorKind::ConnectionReset)));
        assert!(!worth_waiting_for(&sqlx::Error::Configuration(
            "bad sslmode".into()
        )));
    }

    #[test]
    fn migrations_are_named_as_their_files() {
        assert_eq!(
            migration_name(10, "api key creators"),
            "0010_api_key_creators"
        );
        let first = MIGRATOR.iter().next().expect("migrations");
        assert_eq!(
            migration_name(first.version, &first.description),
            "0001_foundation"
        );
    }

    #[test]
    fn quoting_doubles_the_quote_character() {
        assert_eq!(quote_ident("we\"ird"), "\"we\"\"ird\"");
        assert_eq!(quote_literal("it's"), "'it''s'");
    }

    #[test]
    fn a_role_password_is_sent_as_its_scram_verifier_only() {
        let statement = password_statement("tenantry_app", "correct horse battery staple");
        assert!(
            !statement.contains("correct horse"),
            "the password must not be in {statement}"
        );
        assert!(
            statement.starts_with("alter role \"tenantry_app\" password 'SCRAM-SHA-256$4096:"),
            "{statement}"
        );
    }

    #[test]
    fn policies_and_grants_name_this_deployments_roles_and_no_other() {
        let roles = Roles {
            app: "staging_app".into(),
            platform: "staging_platform".into(),
        };
        let sql = policy_sql(&roles, "staging");
        assert!(!sql.contains(":\""), "every variable is substituted");
        assert!(!sql.contains("tenantry_app") && !sql.contains("tenantry_platform"));
        assert!(sql.contains("to \"staging_platform\""));
        assert!(sql.contains("on database \"staging\""));
    }
}
