//! The command line: `serve`, `migrate`, `tenant create`, `token issue`, `openapi`.
//! Configuration comes from the environment (see `config`), not from flags.

use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use secrecy::SecretString;

use crate::{
    auth::{Scopes, jwt::JwtKeys, password::Passwords},
    config::Config,
    db::{self, Db},
    platform::tenants::{self, NewTenant},
    startup::Application,
    tenancy::{Plan, TenantId, store},
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

pub async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => Application::build(&config).await?.run_until_stopped().await,
        Command::Migrate => db::bootstrap(&config).await,
        Command::Openapi => {
            println!("{}", crate::http::openapi().to_pretty_json()?);
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
            let new = NewTenant {
                slug,
                name,
                plan,
                owner_email,
                owner_password: owner_password.map(SecretString::from),
            };
            let created = tenants::create(&db, &Passwords::new()?, new)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&created)?);
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
            let db = Db::connect(&config)?;
            let orders = match tenant {
                Some(tenant) => {
                    let tenant_id = resolve_tenant(&db, &tenant).await?;
                    crate::orders::projection::rebuild_tenant(&db, tenant_id).await
                }
                None => crate::orders::projection::rebuild_all(&db).await,
            }
            .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("rebuilt the read models of {orders} orders");
            Ok(())
        }
        Command::Token(TokenCommand::Issue {
            tenant,
            scopes,
            ttl,
            subject,
        }) => {
            let scopes = Scopes::parse_claim(&scopes)?;
            if scopes == Scopes::default() {
                bail!("--scopes must name at least one scope");
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

async fn resolve_tenant(db: &Db, tenant: &str) -> anyhow::Result<TenantId> {
    let mut tx = db
        .platform()
        .await
        .context("connecting as the platform role")?;
    let found = match tenant.parse::<TenantId>() {
        Ok(id) => store::find(&mut tx, id).await?.map(|t| t.id),
        Err(_) => store::id_by_slug(&mut *tx, tenant).await?,
    };
    found.with_context(|| format!("no tenant {tenant:?}"))
}
