//! The command line: `serve`, `migrate`, `tenant create`, `token issue`, `projections
//! rebuild`, `openapi`. Configuration comes from the environment (see `config`), not from
//! flags.
//!
//! A transport like `http`: each command parses its arguments, calls the same application
//! function an HTTP handler would, and reports the outcome. A failure is the application's
//! [`Error`], printed with its code and each offending field, and its kind decides the exit
//! status ([`exit_code`], after BSD's `sysexits.h`).

use std::{process::ExitCode, time::Duration};

use clap::{Parser, Subcommand};
use secrecy::SecretString;

use crate::{
    access::Scopes,
    auth::{self, jwt::JwtKeys},
    config::Config,
    db::{self, Db, table},
    error::{Error, ErrorKind},
    id::TenantId,
    orders::projection,
    platform::{self, NewTenant},
    startup::Application,
    tenancy::{Plan, Tenant},
    users::password::{HashingLimits, Passwords},
};

#[derive(Parser)]
#[command(
    name = "tenantry",
    version,
    about = "Multi-tenant SaaS API isolated by PostgreSQL row-level security"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create the database, roles, schema and policies if missing, then serve the API.
    Serve,
    /// Create the database, roles, schema and policies if missing, then exit.
    Migrate,
    /// Manage tenants.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Mint tokens with the configured signing key.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Rebuild read models from the event store.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Print the OpenAPI document (JSON) to stdout.
    Openapi,
}

#[derive(Subcommand)]
pub enum ProjectionsCommand {
    /// Replay the event store into fresh order read models (all tenants, or one).
    Rebuild {
        /// Tenant slug or id; omit for every tenant.
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and its owner.
    Create {
        #[arg(long)]
        slug: String,
        #[arg(long)]
        name: String,
        #[arg(long)]
        owner_email: String,
        /// Omit to generate one (printed once).
        #[arg(long)]
        owner_password: Option<String>,
        #[arg(long, value_parser = parse_plan)]
        plan: Option<Plan>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Print an access token for a tenant (for operators and load tests).
    Issue {
        /// Tenant slug or id.
        #[arg(long)]
        tenant: String,
        /// Space-separated scopes, e.g. "orders:read orders:write".
        #[arg(long)]
        scopes: String,
        /// Lifetime, e.g. 15m, 1h, 7d.
        #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
        ttl: Duration,
        /// The token's `sub`.
        #[arg(long, default_value = "token-issue")]
        subject: String,
    },
}

fn parse_plan(value: &str) -> Result<Plan, String> {
    serde_json::from_value(serde_json::Value::String(value.to_owned()))
        .map_err(|_| "plan must be free, pro or enterprise".to_owned())
}

pub async fn run(command: Command, config: Config) -> Result<(), Error> {
    match command {
        Command::Serve => Ok(Application::build(&config)
            .await?
            .run_until_stopped()
            .await?),
        Command::Migrate => Ok(db::bootstrap(&config).await?),
        Command::Openapi => {
            let spec = crate::http::openapi()
                .to_pretty_json()
                .map_err(anyhow::Error::from)?;
            println!("{spec}");
            Ok(())
        }
        Command::Tenant(TenantCommand::Create {
            slug,
            name,
            owner_email,
            owner_password,
            plan,
            json,
        }) => {
            db::bootstrap(&config).await?;
            let db = Db::connect(&config)?;
            let new = NewTenant::parse(
                &Passwords::new(HashingLimits::from_config(&config)).await?,
                &slug,
                &name,
                plan,
                &owner_email,
                owner_password.map(SecretString::from),
            )
            .await?;
            let operator = auth::console_operator();
            let created = db
                .in_platform(async |tx| platform::create_tenant(tx, &operator, new).await)
                .await?;
            if json {
                let json = serde_json::to_string_pretty(&created).map_err(anyhow::Error::from)?;
                println!("{json}");
            } else {
                println!(
                    "tenant {} ({}) created; owner {}",
                    created.tenant.slug, created.tenant.id, created.owner.email
                );
                if let Some(password) = created.owner_password {
                    println!("owner password (shown once): {password}");
                }
            }
            Ok(())
        }
        Command::Projections(ProjectionsCommand::Rebuild { tenant }) => {
            db::bootstrap(&config).await?;
            let mut owner = db::owner_connection(&config).await?;
            let orders = match tenant {
                Some(tenant) => {
                    let tenant_id = resolve_tenant(&Db::connect(&config)?, &tenant).await?;
                    projection::rebuild_tenant(&mut owner, tenant_id).await?
                }
                None => projection::rebuild_all(&mut owner).await?,
            };
            println!("rebuilt the read models of {orders} orders");
            Ok(())
        }
        Command::Token(TokenCommand::Issue {
            tenant,
            scopes,
            ttl,
            subject,
        }) => {
            let scopes = Scopes::parse_claim(&scopes)
                .map_err(|e| Error::invalid("--scopes", e.to_string()))?;
            if scopes == Scopes::default() {
                return Err(Error::invalid("--scopes", "must name at least one scope"));
            }
            let db = Db::connect(&config)?;
            let tenant_id = resolve_tenant(&db, &tenant).await?;
            let token =
                JwtKeys::from_config(&config)?.issue(tenant_id, &subject, scopes, ttl, None)?;
            println!("{token}");
            Ok(())
        }
    }
}

/// The tenant `reference` (slug or id) names, if it exists.
async fn resolve_tenant(db: &Db, reference: &str) -> Result<TenantId, Error> {
    let no_such_tenant = || Error::invalid("--tenant", format!("no tenant {reference:?}"));
    let id = db
        .resolve_tenant(reference)
        .await?
        .ok_or_else(no_such_tenant)?;
    let tenant = db
        .in_platform(async |tx| Ok::<_, Error>(table::find::<Tenant>(tx, id).await?))
        .await?;
    tenant.map(|t| t.id).ok_or_else(no_such_tenant)
}

/// Prints a failure on stderr — its message, code, fields and retry hint — and returns the
/// exit status its kind calls for.
pub fn report(error: &Error) -> ExitCode {
    eprintln!("error: {error} ({})", error.code());
    for field in error.fields() {
        eprintln!("  {}: {}", field.field, field.message);
    }
    if let Some(after) = error.retry_after() {
        eprintln!("  retry in {}s", after.as_secs().max(1));
    }
    ExitCode::from(exit_code(error.kind()))
}

/// `sysexits.h` statuses: what a script calling `tenantry` can act on.
pub fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        // EX_DATAERR: the input was wrong.
        ErrorKind::Malformed
        | ErrorKind::Invalid
        | ErrorKind::UnsupportedMediaType
        | ErrorKind::TooLarge => 65,
        // EX_NOINPUT: what the input names does not exist.
        ErrorKind::NotFound => 66,
        // EX_CANTCREAT: it exists already, or changed meanwhile.
        ErrorKind::Conflict | ErrorKind::VersionMismatch => 73,
        // EX_NOPERM.
        ErrorKind::Unauthenticated | ErrorKind::Forbidden => 77,
        // EX_UNAVAILABLE: try again later.
        ErrorKind::Unavailable => 69,
        // EX_TEMPFAIL: refused for now; try again after the retry hint.
        ErrorKind::RateLimited => 75,
        // EX_SOFTWARE.
        ErrorKind::Internal => 70,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn input_errors_and_outages_exit_differently() {
        assert_eq!(exit_code(Error::invalid("--scopes", "x").kind()), 65);
        assert_eq!(exit_code(Error::conflict("slug_taken", "x").kind()), 73);
        assert_eq!(exit_code(ErrorKind::Unavailable), 69);
        assert_eq!(exit_code(ErrorKind::RateLimited), 75);
        assert_eq!(exit_code(ErrorKind::Internal), 70);
    }
}
