//! The command line: `serve`, `migrate`, `tenant create`, `token issue`/`list`/`revoke`,
//! `tenant export`/`erase`, `projections rebuild`, `audit verify`, `billing
//! export`/`close`, `openapi`, `healthcheck`. Configuration comes from the environment (see
//! `config`), not from flags.
//!
//! A transport like `http`: each command parses its arguments, calls the same application
//! function an HTTP handler would, and reports the outcome. A failure is the application's
//! [`Error`], printed with its code and each offending field — named by the flag the user
//! typed (`--owner-email`), not the application's field name (`owner_email`) — and its kind
//! decides the exit status ([`exit_code`], after BSD's `sysexits.h`); arguments clap itself
//! refuses exit 64 ([`EX_USAGE`]). No failure prints a backtrace: they are reports, not
//! crashes. Stdout carries only the result (a token, a JSON document, a listing, what
//! `migrate` did), so scripts can capture it; logs go to stderr.
//!
//! Service tokens are written as the database owner (`db::owner_connection`), the one
//! connection that may: no role the server holds can mint or revoke one.

use std::{
    collections::HashMap,
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    process::ExitCode,
    time::Duration,
};

use anyhow::{Context as _, anyhow};
use clap::{Parser, Subcommand};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use time::{OffsetDateTime, macros::format_description};
use uuid::Uuid;

use crate::{
    access::{Operator, Scope, Scopes},
    audit,
    auth::{
        self,
        jwt::JwtKeys,
        service_tokens::{self, NewServiceToken, Revocation, ServiceToken},
    },
    billing,
    config::Config,
    data_rights,
    db::{self, BootstrapReport, Change, ConnectError, Db},
    error::{Error, ErrorKind},
    id::TenantId,
    orders::projection,
    page::{MAX_LIMIT, PageRequest},
    platform::{self, NewTenant},
    shared::Shared,
    startup::Application,
    tenancy::Tenant,
    users::password::{HashingLimits, Passwords},
};

/// `sysexits.h`'s `EX_USAGE`: the command line itself was wrong (an unknown flag, a value
/// clap cannot parse, a plan that does not exist).
pub const EX_USAGE: u8 = 64;

#[derive(Parser)]
#[command(
    name = "tenantry",
    version,
    about = "Multi-tenant SaaS API isolated by PostgreSQL row-level security",
    after_help = "Configuration comes from the environment (DATABASE_URL, JWT_SECRET, \
                  TENANTRY_OPERATOR_TOKEN, ...), not from flags; README.md lists every \
                  variable.\n\
                  Exit statuses (sysexits.h): 0 done, 64 bad command line, 65 invalid \
                  input, 66 not found, 69 database unavailable, 70 internal error, 73 \
                  already exists, 75 try again later, 77 not permitted, 78 bad \
                  configuration."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Create the database, roles, schema and policies if missing, then serve the API on
    /// TENANTRY_LISTEN until SIGINT or SIGTERM.
    Serve,
    /// Create the database, roles, schema and policies if missing, say what was done, and
    /// exit.
    Migrate,
    /// Create tenants with their owners.
    #[command(subcommand)]
    Tenant(TenantCommand),
    /// Mint, list and revoke service tokens (signed with the configured key, recorded in
    /// the database).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Rebuild read models from the event store.
    #[command(subcommand)]
    Projections(ProjectionsCommand),
    /// Verify a tenant's audit log, and prune its oldest events (retention).
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Export a period's usage for billing, and close periods.
    #[command(subcommand)]
    Billing(BillingCommand),
    /// Print the OpenAPI document (JSON) to stdout.
    Openapi,
    /// Print the GraphQL schema (SDL) to stdout.
    GraphqlSchema,
    /// Ask the server this environment configures whether it is ready: exit 0 when GET
    /// /health/ready answers 200, 1 otherwise (a container's HEALTHCHECK).
    ///
    /// The server is the one TENANTRY_LISTEN names, asked over loopback when it listens on
    /// every address (0.0.0.0, ::), never through a proxy. Nothing is logged; why it is
    /// not ready goes to stderr.
    Healthcheck,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Recompute a tenant's audit chain from its events as they are now and report the
    /// first link that does not hold. Exits 0 when the chain holds, 65 when it is broken.
    Verify {
        /// Tenant slug or id.
        #[arg(long, value_name = "SLUG_OR_ID")]
        tenant: String,
        /// Print the verification as JSON.
        #[arg(long)]
        json: bool,
    },
    /// The retention job: delete a tenant's audit events older than a cut-off, as a prefix
    /// of its chain (sealed events only). The chain's links stay, so it still verifies.
    /// Recorded in the tenant's log.
    Prune {
        /// Tenant slug or id.
        #[arg(long, value_name = "SLUG_OR_ID")]
        tenant: String,
        /// Delete events that happened before this instant (RFC 3339).
        #[arg(long, value_name = "INSTANT")]
        before: String,
    },
}

#[derive(Subcommand)]
pub enum BillingCommand {
    /// Write one line per tenant, metric and currency of a period's usage, with quantity,
    /// unit, plan and a line id that stays the same in every export of the period. A
    /// closed period exports the same bytes every time; an open one, its usage so far.
    Export {
        /// The period: a calendar month (UTC), YYYY-MM.
        #[arg(long, value_name = "YYYY-MM")]
        period: String,
        /// csv (with a header row) or jsonl (one JSON object per line).
        #[arg(long, default_value = "jsonl", value_name = "csv|jsonl")]
        format: String,
        /// Only this tenant (slug or id).
        #[arg(long, value_name = "SLUG_OR_ID")]
        tenant: Option<String>,
        /// Write to this file (complete, or not at all) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
    /// Freeze a period that has ended: its lines are computed once and every later export
    /// reads them; usage arriving afterwards is billed in the next open period.
    Close {
        /// The period: a calendar month (UTC), YYYY-MM.
        #[arg(long, value_name = "YYYY-MM")]
        period: String,
    },
}

#[derive(Subcommand)]
pub enum ProjectionsCommand {
    /// Replay the event store into fresh order read models (all tenants, or one).
    Rebuild {
        /// Tenant slug or id; omit for every tenant.
        #[arg(long, value_name = "SLUG_OR_ID")]
        tenant: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum TenantCommand {
    /// Create a tenant and its owner (who may then log in and invite the rest).
    Create {
        /// The tenant's handle, in logins and the operator API: 3-63 lowercase letters,
        /// digits and inner hyphens.
        #[arg(long)]
        slug: String,
        /// The tenant's display name, 1-200 characters.
        #[arg(long)]
        name: String,
        /// The email address the owner logs in with.
        #[arg(long, value_name = "EMAIL")]
        owner_email: String,
        /// The owner's password, 12-128 characters. Omit it to have one generated and
        /// printed once (a password given here may show in the shell's history and the
        /// process list).
        #[arg(long, value_name = "PASSWORD")]
        owner_password: Option<String>,
        /// The tenant's plan: free, pro, enterprise, or one an operator created.
        #[arg(long, default_value = "free", value_name = "PLAN")]
        plan: String,
        /// Print the tenant, its owner and any generated password as one JSON document.
        #[arg(long)]
        json: bool,
    },
    /// Write every row the tenant owns, table by table, one JSON object per line
    /// ({"table": ..., "row": ...}), from one consistent snapshot; secrets (password,
    /// key and token hashes) are left out. Recorded in the tenant's audit log.
    Export {
        /// Tenant slug or id.
        #[arg(long, value_name = "SLUG_OR_ID")]
        tenant: String,
        /// Write to this file (complete, or not at all) instead of stdout.
        #[arg(long, value_name = "FILE")]
        out: Option<std::path::PathBuf>,
    },
    /// Erase the tenant's personal data for good: users' emails and passwords, customers'
    /// emails and names, API keys, sessions, and the personal data of its audit log (which
    /// still verifies). The tenant is suspended. Recorded in its audit log and the
    /// platform's.
    Erase {
        /// Tenant slug or id.
        #[arg(long, value_name = "SLUG_OR_ID")]
        tenant: String,
        /// The tenant's slug again, to confirm: there is no undo.
        #[arg(long, value_name = "SLUG")]
        confirm: String,
    },
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Mint a service token for a tenant (for scripts, services and load tests), record it,
    /// and print it: it works until it expires or is revoked.
    Issue {
        /// Tenant slug or id.
        #[arg(long, value_name = "SLUG_OR_ID")]
        tenant: String,
        #[arg(long, help = format!("Space-separated scopes, e.g. \"orders:read orders:write\"; any of {}", scope_names()))]
        scopes: String,
        /// Lifetime, e.g. 15m, 1h, 7d; at most TENANTRY_SERVICE_TOKEN_MAX_TTL (30d).
        #[arg(long, value_name = "DURATION", default_value = "1h", value_parser = parse_ttl)]
        ttl: Duration,
        /// The token's `sub` (the actor `service:<subject>` in audit events), 1-200
        /// printable characters.
        #[arg(long, default_value = "token-issue")]
        subject: String,
        /// Print the token with its record (jti, expiry) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// List service tokens (every tenant's, or one tenant's), newest first, revoked and
    /// expired ones included.
    List {
        /// Tenant slug or id; omit for every tenant.
        #[arg(long, value_name = "SLUG_OR_ID")]
        tenant: Option<String>,
        /// Print the tokens as a JSON array.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a service token: refused from its next request on. Revoking twice changes
    /// nothing.
    Revoke {
        /// The token's `jti` (from `token list`, or `token issue --json`).
        jti: String,
        /// The token's tenant (slug or id): the token is revoked only if it is this
        /// tenant's. Omit to look in every tenant.
        #[arg(long, value_name = "SLUG_OR_ID")]
        tenant: Option<String>,
    },
}

/// Every scope, as `--scopes` takes them.
fn scope_names() -> String {
    Scope::ALL
        .iter()
        .map(|scope| scope.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `--ttl`: a duration as `humantime` reads it, refused with an example of one.
fn parse_ttl(value: &str) -> Result<Duration, String> {
    humantime::parse_duration(value)
        .map_err(|error| format!("must be a duration such as 15m, 1h or 7d ({error})"))
}

pub async fn run(command: Command, config: Config) -> Result<(), Error> {
    match command {
        Command::Serve => Ok(Application::build(&config)
            .await?
            .run_until_stopped()
            .await?),
        Command::Migrate => {
            let report = db::bootstrap(&config).await?;
            print_out(&bootstrap_summary(&report))
        }
        Command::Openapi => {
            let spec = crate::http::openapi()
                .to_pretty_json()
                .map_err(anyhow::Error::from)?;
            println!("{spec}");
            Ok(())
        }
        Command::GraphqlSchema => {
            print!("{}", crate::graphql::sdl());
            Ok(())
        }
        Command::Healthcheck => healthcheck(&config).await,
        Command::Tenant(TenantCommand::Create {
            slug,
            name,
            owner_email,
            owner_password,
            plan,
            json,
        }) => {
            // The arguments are checked before the database is reached (or waited for).
            let new = NewTenant::parse(
                &Passwords::new(HashingLimits::from_config(&config)).await?,
                &slug,
                &name,
                Some(&plan),
                &owner_email,
                owner_password.map(SecretString::from),
            )
            .await?;
            db::bootstrap(&config).await?;
            let db = Db::connect(&config)?;
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
        Command::Tenant(TenantCommand::Export { tenant, out }) => {
            db::bootstrap(&config).await?;
            let db = Db::connect(&config)?;
            let tenant = resolve_tenant(&db, &tenant).await?;
            let operator = auth::console_operator();
            let rows = write_export(out.as_deref(), Vec::new(), ndjson_line, async |rows| {
                let mut tx = db
                    .tenant_for_operator(&operator, tenant.id, db::Access::Snapshot)
                    .await?;
                let count = data_rights::export(&mut tx, &operator, tenant.id, &rows).await?;
                drop(rows);
                tx.commit().await?;
                Ok(count)
            })
            .await?;
            eprintln!(
                "exported {} of tenant {}",
                plural(rows as usize, "row"),
                tenant.slug
            );
            Ok(())
        }
        Command::Tenant(TenantCommand::Erase { tenant, confirm }) => {
            db::bootstrap(&config).await?;
            let db = Db::connect(&config)?;
            let tenant = resolve_tenant(&db, &tenant).await?;
            if confirm != tenant.slug.as_str() {
                return Err(Error::invalid(
                    "confirm",
                    format!("must be the tenant's slug, {}", tenant.slug),
                ));
            }
            if tenant.id == audit::platform_log() {
                return Err(Error::invalid(
                    "tenant",
                    "the platform's own log is no tenant's data",
                ));
            }
            let mut owner = db::owner_connection(&config).await?;
            let mut tx = sqlx::Connection::begin(&mut owner)
                .await
                .map_err(anyhow::Error::from)?;
            let erasure = data_rights::erase(&mut tx, &auth::console_operator(), tenant.id).await?;
            tx.commit().await.map_err(anyhow::Error::from)?;
            announce(&config, Change::Tenant { tenant: tenant.id }).await;
            print_out(&format!(
                "erased the personal data of tenant {}: {}, {}, {}, {} (now suspended)\n",
                tenant.slug,
                plural(erasure.users as usize, "user"),
                plural(erasure.customers as usize, "customer"),
                plural(erasure.api_keys as usize, "API key"),
                plural(erasure.audit_events as usize, "audit event"),
            ))
        }
        Command::Projections(ProjectionsCommand::Rebuild { tenant }) => {
            db::bootstrap(&config).await?;
            let mut owner = db::owner_connection(&config).await?;
            let tenant = match tenant {
                Some(tenant) => Some(resolve_tenant(&Db::connect(&config)?, &tenant).await?.id),
                None => None,
            };
            let orders = projection::rebuild(&mut owner, tenant).await?;
            println!("rebuilt the read models of {}", plural(orders, "order"));
            Ok(())
        }
        Command::Token(command) => token(command, &config).await,
        Command::Billing(command) => billing_command(command, &config).await,
        Command::Audit(AuditCommand::Prune { tenant, before }) => {
            prune_audit_log(&config, &tenant, &before).await
        }
        Command::Audit(AuditCommand::Verify { tenant, json }) => {
            db::bootstrap(&config).await?;
            let tenant = resolve_tenant(&Db::connect(&config)?, &tenant).await?;
            let mut owner = db::owner_connection(&config).await?;
            let verification = audit::chain::verify_as_owner(&mut owner, tenant.id).await?;
            if json {
                print_out(&format!("{}\n", to_json(&verification)?))?;
            } else {
                print_out(&verification_summary(&tenant.slug, &verification))?;
            }
            match verification.broken {
                None => Ok(()),
                Some(broken) => Err(Error::unprocessable(
                    "audit_chain_broken",
                    format!(
                        "the audit log of tenant {} is broken at link {} ({})",
                        tenant.slug, broken.link, broken.reason
                    ),
                )),
            }
        }
    }
}

/// `billing export` and `billing close`, as the platform role. Each checks its arguments
/// before it reaches the database.
async fn billing_command(command: BillingCommand, config: &Config) -> Result<(), Error> {
    let operator = auth::console_operator();
    match command {
        BillingCommand::Export {
            period,
            format,
            tenant,
            out,
        } => {
            let period = billing::Period::parse(&period, "period")?;
            let format = billing::Format::parse(&format)?;
            db::bootstrap(config).await?;
            let db = Db::connect(config)?;
            let tenant = match tenant {
                Some(tenant) => Some(resolve_tenant(&db, &tenant).await?.id),
                None => None,
            };
            let encode = |line: &billing::Line| Ok(format.encode(line));
            let lines = write_export(out.as_deref(), format.header(), encode, async |lines| {
                let mut tx = db.platform().await?;
                let count =
                    billing::export(&mut tx, &operator, period, tenant, format, &lines).await?;
                drop(lines);
                tx.commit().await?;
                Ok(count)
            })
            .await?;
            eprintln!(
                "exported {} of period {period}",
                plural(lines as usize, "line")
            );
            Ok(())
        }
        BillingCommand::Close { period } => {
            let period = billing::Period::parse(&period, "period")?;
            db::bootstrap(config).await?;
            let db = Db::connect(config)?;
            let closed = db
                .in_platform(async |tx| billing::close(tx, &operator, &config.clock, period).await)
                .await?;
            if closed.newly_closed {
                print_out(&format!(
                    "closed period {}: {} frozen\n",
                    closed.period,
                    plural(closed.lines as usize, "line")
                ))
            } else {
                print_out(&format!(
                    "period {} was closed already, at {} ({}); nothing changed\n",
                    closed.period,
                    display_time(closed.closed_at),
                    plural(closed.lines as usize, "line")
                ))
            }
        }
    }
}

/// Writes an export to `out` (stdout, or a file that appears complete or not at all):
/// `produce` sends the items into the channel it is handed and returns how many it sent;
/// each is written as `encode` makes it, after `header`. A failed write drops the
/// receiver, which stops the producer; either failure leaves no file behind.
async fn write_export<T>(
    out: Option<&std::path::Path>,
    header: Vec<u8>,
    encode: impl Fn(&T) -> Result<Vec<u8>, Error>,
    produce: impl AsyncFnOnce(tokio::sync::mpsc::Sender<T>) -> Result<u64, Error>,
) -> Result<u64, Error> {
    let mut sink = ExportSink::create(out)?;
    let (items, mut receiver) = tokio::sync::mpsc::channel(256);
    let write = {
        let sink = &mut sink;
        async move {
            sink.write(&header)?;
            while let Some(item) = receiver.recv().await {
                sink.write(&encode(&item)?)?;
            }
            Ok::<_, Error>(())
        }
    };
    match tokio::join!(produce(items), write) {
        (Ok(count), Ok(())) => {
            sink.finish()?;
            Ok(count)
        }
        (Err(error), _) | (_, Err(error)) => {
            sink.abandon();
            Err(error)
        }
    }
}

/// One NDJSON line.
fn ndjson_line(value: &impl Serialize) -> Result<Vec<u8>, Error> {
    let mut line = serde_json::to_vec(value).map_err(anyhow::Error::from)?;
    line.push(b'\n');
    Ok(line)
}

/// Where `billing export` and `tenant export` write: stdout, or a file that appears complete or not at all
/// (written beside it under a temporary name, renamed when done).
enum ExportSink {
    Stdout(std::io::BufWriter<std::io::Stdout>),
    File {
        writer: std::io::BufWriter<std::fs::File>,
        partial: std::path::PathBuf,
        path: std::path::PathBuf,
    },
}

impl ExportSink {
    fn create(out: Option<&std::path::Path>) -> Result<Self, Error> {
        let Some(path) = out else {
            return Ok(Self::Stdout(std::io::BufWriter::new(std::io::stdout())));
        };
        let mut partial = path.as_os_str().to_owned();
        partial.push(".partial");
        let partial = std::path::PathBuf::from(partial);
        let file = std::fs::File::create(&partial).map_err(|e| {
            Error::invalid("out", format!("cannot write {}: {e}", partial.display()))
        })?;
        Ok(Self::File {
            writer: std::io::BufWriter::new(file),
            partial,
            path: path.to_owned(),
        })
    }

    fn write(&mut self, bytes: &[u8]) -> Result<(), Error> {
        use std::io::Write;
        let written = match self {
            Self::Stdout(out) => out.write_all(bytes),
            Self::File { writer, .. } => writer.write_all(bytes),
        };
        written.map_err(|e| Error::internal(anyhow::Error::from(e).context("writing the export")))
    }

    /// Removes the partial file of a failed export.
    fn abandon(self) {
        if let Self::File { partial, .. } = self {
            let _ = std::fs::remove_file(partial);
        }
    }

    fn finish(self) -> Result<(), Error> {
        use std::io::Write;
        let done = match self {
            Self::Stdout(mut out) => out.flush(),
            Self::File {
                writer,
                partial,
                path,
            } => writer
                .into_inner()
                .map_err(|e| e.into_error())
                .and_then(|file| file.sync_all())
                .and_then(|()| std::fs::rename(&partial, &path)),
        };
        done.map_err(|e| Error::internal(anyhow::Error::from(e).context("writing the export")))
    }
}

/// `audit prune`: the retention job, as the database owner.
async fn prune_audit_log(config: &Config, tenant: &str, before: &str) -> Result<(), Error> {
    let before = OffsetDateTime::parse(before, &time::format_description::well_known::Rfc3339)
        .map_err(|_| {
            Error::invalid(
                "before",
                "must be an RFC 3339 instant such as 2026-01-01T00:00:00Z",
            )
        })?;
    db::bootstrap(config).await?;
    let tenant = resolve_tenant(&Db::connect(config)?, tenant).await?;
    let mut owner = db::owner_connection(config).await?;
    let mut tx = sqlx::Connection::begin(&mut owner)
        .await
        .map_err(anyhow::Error::from)?;
    let pruned =
        audit::retention::prune(&mut tx, &auth::console_operator(), tenant.id, before).await?;
    tx.commit().await.map_err(anyhow::Error::from)?;
    print_out(&format!(
        "pruned {} of tenant {}; its audit log is pruned through link {}\n",
        plural(pruned.events as usize, "audit event"),
        tenant.slug,
        pruned.through_link
    ))
}

/// `audit verify` for people: whether the chain holds, how much of it, and its head.
fn verification_summary(slug: &str, verification: &audit::chain::Verification) -> String {
    let mut out = match &verification.broken {
        None => format!(
            "the audit log of tenant {slug} holds: {} verified{}",
            plural(verification.sealed as usize, "sealed event"),
            if verification.pruned > 0 {
                format!(" ({} pruned by retention)", verification.pruned)
            } else {
                String::new()
            }
        ),
        Some(broken) => format!(
            "the audit log of tenant {slug} is broken at link {} (event {}): {}; {} before it verified",
            broken.link,
            broken
                .event_id
                .map_or_else(|| "-".to_owned(), |id| id.to_string()),
            broken.reason,
            plural(verification.sealed as usize, "link")
        ),
    };
    out.push_str(&format!(
        ", {} not sealed yet\n",
        plural(verification.unsealed as usize, "event")
    ));
    if let Some(head) = &verification.head {
        out.push_str(&format!("head: link {} {}\n", head.link, head.chain_hash));
    }
    out
}

/// `token issue`, `token list`, `token revoke`: as the database owner, the one connection
/// that may write service tokens. Each checks what it can of its arguments before it
/// reaches the database.
async fn token(command: TokenCommand, config: &Config) -> Result<(), Error> {
    let operator = auth::console_operator();
    match command {
        TokenCommand::Issue {
            tenant,
            scopes,
            ttl,
            subject,
            json,
        } => {
            let scopes = Scopes::parse_claim(&scopes)
                .map_err(|e| Error::invalid("scopes", format!("{e}; any of {}", scope_names())))?;
            if scopes.is_empty() {
                return Err(Error::invalid("scopes", "must name at least one scope"));
            }
            let (db, mut owner) = connect_as_owner(config).await?;
            let tenant = resolve_tenant(&db, &tenant).await?;
            let issued = service_tokens::issue(
                &mut owner,
                &JwtKeys::from_config(config)?,
                &operator,
                config.service_token_max_ttl,
                NewServiceToken {
                    tenant_id: tenant.id,
                    subject: &subject,
                    scopes,
                    ttl,
                },
            )
            .await?;
            let token = issued.token.expose_secret();
            if json {
                #[derive(Serialize)]
                struct Issued<'a> {
                    token: &'a str,
                    tenant: &'a str,
                    #[serde(flatten)]
                    record: &'a ServiceToken,
                }
                let issued = Issued {
                    token,
                    tenant: &tenant.slug,
                    record: &issued.record,
                };
                println!("{}", to_json(&issued)?);
            } else {
                println!("{token}");
            }
            Ok(())
        }
        TokenCommand::List { tenant, json } => {
            let (db, mut owner) = connect_as_owner(config).await?;
            let (tenants, of) = match tenant {
                Some(reference) => {
                    let tenant = resolve_tenant(&db, &reference).await?;
                    let of = format!("of tenant {}", tenant.slug);
                    (vec![tenant], of)
                }
                None => {
                    let tenants = directory(&db, &operator).await?;
                    let of = format!("in {}", plural(tenants.len(), "tenant"));
                    (tenants, of)
                }
            };
            let ids: Vec<TenantId> = tenants.iter().map(|t| t.id).collect();
            let slugs: HashMap<TenantId, &str> =
                tenants.iter().map(|t| (t.id, t.slug.as_str())).collect();
            let tokens = service_tokens::list(&mut owner, &ids).await?;
            let listed: Vec<Listed> = tokens
                .iter()
                .map(|token| Listed {
                    tenant: slugs.get(&token.tenant_id).copied().unwrap_or_default(),
                    token,
                })
                .collect();
            if json {
                print_out(&format!("{}\n", to_json(&listed)?))
            } else {
                print_out(&token_table(&listed, &of, OffsetDateTime::now_utc()))
            }
        }
        TokenCommand::Revoke { jti, tenant } => {
            let jti: Uuid = jti
                .parse()
                .map_err(|_| Error::invalid("jti", "must be a token's jti, a UUID"))?;
            let (db, mut owner) = connect_as_owner(config).await?;
            let tenants = match tenant {
                Some(reference) => vec![resolve_tenant(&db, &reference).await?],
                None => directory(&db, &operator).await?,
            };
            let ids: Vec<TenantId> = tenants.iter().map(|t| t.id).collect();
            let found = service_tokens::locate(&mut owner, &ids, jti)
                .await?
                .ok_or_else(|| Error::not_found("service token"))?;
            let slug = tenants
                .iter()
                .find(|t| t.id == found.tenant_id)
                .map_or("", |t| t.slug.as_str());
            match service_tokens::revoke(&mut owner, &operator, found.tenant_id, jti).await? {
                Revocation::Revoked(token) => {
                    announce(
                        config,
                        Change::Credentials {
                            tenant: found.tenant_id,
                        },
                    )
                    .await;
                    println!(
                        "revoked service token {jti} of tenant {slug} (subject {}); it is refused from its next request on",
                        token.subject
                    )
                }
                Revocation::AlreadyRevoked(token) => println!(
                    "service token {jti} of tenant {slug} was already revoked at {}; nothing changed",
                    token.revoked_at.map(display_time).unwrap_or_default()
                ),
            }
            Ok(())
        }
    }
}

/// Tells the servers what a command changed, through Redis when `REDIS_URL` is set: they
/// drop what they cached of it at once. Without Redis they cannot be told, and see the
/// change when those copies expire (`TENANTRY_CREDENTIAL_CACHE_TTL`,
/// `TENANTRY_READ_CACHE_TTL`).
async fn announce(config: &Config, change: Change) {
    let Some(url) = &config.redis_url else {
        return;
    };
    match Shared::from_url(Some(url.expose_secret())) {
        Ok(shared) => shared.bus().publish(vec![change]).await,
        Err(error) => tracing::warn!(%error, "could not tell the servers through Redis"),
    }
}

/// Bootstraps, then connects as the token commands need: the pools (to resolve tenants,
/// as the platform role) and the database owner (to read and write service tokens).
async fn connect_as_owner(config: &Config) -> Result<(Db, sqlx::PgConnection), Error> {
    db::bootstrap(config).await?;
    Ok((Db::connect(config)?, db::owner_connection(config).await?))
}

/// A service token as `token list` shows it: with its tenant's slug.
#[derive(Serialize)]
struct Listed<'a> {
    tenant: &'a str,
    #[serde(flatten)]
    token: &'a ServiceToken,
}

/// `token list` for people: a count, then one aligned row per token.
fn token_table(tokens: &[Listed], of: &str, now: OffsetDateTime) -> String {
    let mut out = String::new();
    if tokens.is_empty() {
        let _ = writeln!(out, "no service tokens {of}");
        return out;
    }
    let _ = writeln!(out, "{} {of}", plural(tokens.len(), "service token"));
    let header = [
        "JTI", "TENANT", "SUBJECT", "SCOPES", "CREATED", "EXPIRES", "STATUS",
    ]
    .map(str::to_owned);
    let rows: Vec<[String; 7]> = tokens
        .iter()
        .map(|Listed { tenant, token }| {
            let status = match token.revoked_at {
                Some(at) => format!("revoked {}", display_time(at)),
                None if token.expires_at <= now => "expired".to_owned(),
                None => "active".to_owned(),
            };
            [
                token.jti.to_string(),
                (*tenant).to_owned(),
                token.subject.clone(),
                token.scopes.join(" "),
                display_time(token.created_at),
                display_time(token.expires_at),
                status,
            ]
        })
        .collect();
    let mut widths = header.each_ref().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        let _ = writeln!(out, "{}", line.trim_end());
    }
    out
}

/// What `migrate` did, one line per step: the database, each role, the migrations, the
/// policies.
fn bootstrap_summary(report: &BootstrapReport) -> String {
    let mut out = String::new();
    let created = |created: bool| {
        if created {
            "created"
        } else {
            "already existed"
        }
    };
    let _ = writeln!(
        out,
        "database {}: {}",
        report.database,
        created(report.database_created)
    );
    for role in &report.roles {
        let set = if role.created {
            ""
        } else {
            "; password and limits set"
        };
        let _ = writeln!(out, "role {}: {}{set}", role.name, created(role.created));
    }
    let migrations = match report.migrations_applied.as_slice() {
        [] => format!(
            "schema up to date ({})",
            plural(report.migrations_total, "migration")
        ),
        applied => format!(
            "applied {} ({})",
            plural(applied.len(), "migration"),
            applied.join(", ")
        ),
    };
    let _ = writeln!(out, "{migrations}");
    let _ = writeln!(
        out,
        "policies and grants {}",
        if report.policies_applied {
            "applied"
        } else {
            "up to date"
        }
    );
    out
}

/// How long `healthcheck` waits for the server's answer.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// `healthcheck`: GET /health/ready from the server `config` describes, on this machine.
/// Anything but a 200 within [`PROBE_TIMEOUT`] is an error saying what happened.
async fn healthcheck(config: &Config) -> Result<(), Error> {
    let url = format!("http://{}/health/ready", probe_address(config.listen));
    let client = reqwest::Client::builder()
        // The probe is for this server: never through a proxy the environment names.
        .no_proxy()
        .timeout(PROBE_TIMEOUT)
        .build()
        .map_err(anyhow::Error::from)?;
    let response = client
        .get(&url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    match response.status() {
        reqwest::StatusCode::OK => print_out("ready\n"),
        status => Err(anyhow!("GET {url} answered {status}").into()),
    }
}

/// Where a probe on this machine reaches a server listening on `listen`: that address, or
/// loopback for the unspecified ones (`0.0.0.0`, `::`), which listen on every address.
fn probe_address(listen: SocketAddr) -> SocketAddr {
    let ip = match listen.ip() {
        IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, listen.port())
}

/// "no tenants", "1 tenant", "2 tenants".
fn plural(count: usize, noun: &str) -> String {
    match count {
        0 => format!("no {noun}s"),
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// A time to the second, in UTC: `2026-12-01 21:51:49Z`.
fn display_time(at: OffsetDateTime) -> String {
    at.format(format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second]Z"
    ))
    .unwrap_or_default()
}

/// Writes `text` to stdout. A reader that has stopped reading (`token list | head`) is no
/// failure: what it wanted, it has (`println!` would panic instead).
fn print_out(text: &str) -> Result<(), Error> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(error) if error.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::internal(
            anyhow::Error::from(error).context("writing to stdout"),
        )),
        _ => Ok(()),
    }
}

fn to_json(value: &impl Serialize) -> Result<String, Error> {
    Ok(serde_json::to_string_pretty(value).map_err(anyhow::Error::from)?)
}

/// Every tenant in the directory, newest first, read page by page as the platform role
/// (which may read the directory; the owner may not, under row-level security).
async fn directory(db: &Db, operator: &Operator) -> Result<Vec<Tenant>, Error> {
    db.in_platform(async |tx| {
        let mut tenants: Vec<Tenant> = Vec::new();
        loop {
            let page = PageRequest {
                limit: MAX_LIMIT,
                before: tenants.last().map(|t| t.id.as_uuid()),
            };
            let page = platform::list_tenants(tx, operator, page).await?;
            let last = page.next_cursor.is_none();
            tenants.extend(page.items);
            if last {
                return Ok::<_, Error>(tenants);
            }
        }
    })
    .await
}

/// The tenant `reference` (slug or id) names, if it exists.
async fn resolve_tenant(db: &Db, reference: &str) -> Result<Tenant, Error> {
    platform::find_tenant(db, &auth::console_operator(), reference)
        .await?
        .ok_or_else(|| Error::invalid("tenant", format!("no tenant {reference:?}")))
}

/// Prints a failure on stderr — what failed, its code, each offending argument with the
/// rule it broke, and the retry hint — and returns the exit status it calls for. An
/// internal error is printed with its chain of causes (`Error`'s `Display`), never a
/// backtrace.
pub fn report(error: &Error) -> ExitCode {
    let connect = error.cause().and_then(connect_failure);
    let code = error.code();
    match (connect, error.fields()) {
        // Says what it waited for and why it stopped; `internal_error` would mislead.
        (Some(_), _) => eprintln!("error: {error}"),
        (None, []) => eprintln!("error: {error} ({code})"),
        (None, [_]) => eprintln!("error: an argument is invalid ({code})"),
        (None, fields) => eprintln!("error: {} arguments are invalid ({code})", fields.len()),
    }
    for field in error.fields() {
        eprintln!("  {}: {}", flag(&field.field), field.message);
    }
    if let Some(after) = error.retry_after() {
        eprintln!("  retry in {}s", after.as_secs().max(1));
    }
    ExitCode::from(match connect {
        // EX_UNAVAILABLE: the database server never came up; try again later.
        Some(ConnectError::Unreachable { .. }) => 69,
        // EX_CONFIG: it answered and refused DATABASE_URL.
        Some(ConnectError::Refused { .. }) => 78,
        None => exit_code(error.kind()),
    })
}

/// The argument a user typed for an input field the application names: each flag is its
/// field's name in kebab case (`owner_email` is `--owner-email`), as clap derives it; the
/// one positional argument is `<JTI>`.
fn flag(field: &str) -> String {
    match field {
        "jti" => "<JTI>".to_owned(),
        field => format!("--{}", field.replace('_', "-")),
    }
}

/// The start-up connection failure behind an internal error, if that is what it is.
fn connect_failure(cause: &anyhow::Error) -> Option<&ConnectError> {
    cause.chain().find_map(|cause| cause.downcast_ref())
}

/// `sysexits.h` statuses: what a script calling `tenantry` can act on.
pub fn exit_code(kind: ErrorKind) -> u8 {
    match kind {
        // EX_DATAERR: the input was wrong.
        ErrorKind::Malformed
        | ErrorKind::Invalid
        | ErrorKind::UnsupportedMediaType
        | ErrorKind::MethodNotAllowed
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
    fn the_probe_reaches_a_server_on_every_address_over_loopback() {
        for (listen, probed) in [
            ("0.0.0.0:8080", "127.0.0.1:8080"),
            ("[::]:8080", "[::1]:8080"),
            ("127.0.0.1:9000", "127.0.0.1:9000"),
            ("10.0.0.5:8080", "10.0.0.5:8080"),
            ("[::1]:8080", "[::1]:8080"),
        ] {
            assert_eq!(
                probe_address(listen.parse().unwrap()).to_string(),
                probed,
                "{listen}"
            );
        }
    }

    #[test]
    fn counts_are_plural_except_for_one() {
        assert_eq!(plural(0, "service token"), "no service tokens");
        assert_eq!(plural(1, "service token"), "1 service token");
        assert_eq!(plural(2, "tenant"), "2 tenants");
    }

    #[test]
    fn the_token_table_aligns_its_columns_and_says_which_tokens_are_live() {
        let at = |s: i64| OffsetDateTime::from_unix_timestamp(1_800_000_000 + s).unwrap();
        let token = |subject: &str, expires: i64, revoked: Option<i64>| ServiceToken {
            jti: Uuid::now_v7(),
            tenant_id: TenantId::new(),
            subject: subject.to_owned(),
            scopes: vec!["tenant:read".to_owned(), "users:read".to_owned()],
            created_at: at(0),
            expires_at: at(expires),
            revoked_at: revoked.map(at),
        };
        let tokens = [
            token("nightly-export", 3600, None),
            token("a", 60, None),
            token("b", 3600, Some(10)),
        ];
        let listed: Vec<Listed> = tokens
            .iter()
            .map(|token| Listed {
                tenant: "acme",
                token,
            })
            .collect();

        let table = token_table(&listed, "of tenant acme", at(120));

        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines[0], "3 service tokens of tenant acme", "{table}");
        assert_eq!(lines.len(), 5, "a count, a header, three rows:\n{table}");
        let column = |line: &str| line.find("acme");
        assert!(
            lines[2..].iter().all(|l| column(l) == column(lines[2]))
                && column(lines[2]) == lines[1].find("TENANT"),
            "the tenant column is aligned:\n{table}"
        );
        assert!(lines[2].ends_with("active"), "{table}");
        assert!(lines[3].ends_with("expired"), "{table}");
        assert!(
            lines[4].ends_with("revoked 2027-01-15 08:00:10Z"),
            "{table}"
        );
        assert_eq!(
            token_table(&[], "of tenant acme", at(0)),
            "no service tokens of tenant acme\n"
        );
    }

    #[test]
    fn every_command_and_argument_says_what_it_is_for() {
        fn walk(command: &clap::Command, path: &str, missing: &mut Vec<String>) {
            if command.get_about().is_none() {
                missing.push(path.to_owned());
            }
            for arg in command.get_arguments() {
                if arg.get_help().is_none() {
                    missing.push(format!("{path} {}", arg.get_id()));
                }
            }
            for sub in command.get_subcommands() {
                walk(sub, &format!("{path} {}", sub.get_name()), missing);
            }
        }
        let mut missing = Vec::new();
        walk(
            &<Cli as clap::CommandFactory>::command(),
            "tenantry",
            &mut missing,
        );
        assert!(missing.is_empty(), "without help text: {missing:?}");
    }

    #[test]
    fn every_field_the_application_names_is_reported_as_a_flag_the_command_has() {
        let cli = <Cli as clap::CommandFactory>::command();
        for (command, fields) in [
            (
                ["tenant", "create"],
                &["slug", "name", "owner_email", "owner_password"][..],
            ),
            (
                ["token", "issue"],
                &["tenant", "scopes", "ttl", "subject"][..],
            ),
            (["token", "revoke"], &["jti", "tenant"][..]),
        ] {
            let sub = command
                .iter()
                .fold(&cli, |c, name| c.find_subcommand(name).unwrap());
            let typed: Vec<String> = sub
                .get_arguments()
                .map(|arg| match arg.get_long() {
                    Some(long) => format!("--{long}"),
                    None => format!("<{}>", arg.get_id().as_str().to_uppercase()),
                })
                .collect();
            for field in fields {
                assert!(
                    typed.contains(&flag(field)),
                    "{command:?}: {field} is reported as {}, which is none of {typed:?}",
                    flag(field)
                );
            }
        }
    }

    #[test]
    fn migrate_says_what_it_did_in_words_that_agree_with_the_counts() {
        let role = |name: &str, created| db::RoleReport {
            name: name.to_owned(),
            created,
        };
        let fresh = BootstrapReport {
            database: "shop".to_owned(),
            database_created: true,
            roles: vec![role("shop_app", true), role("shop_platform", true)],
            migrations_applied: vec!["0001_foundation".to_owned()],
            migrations_total: 1,
            policies_applied: true,
        };
        assert_eq!(
            bootstrap_summary(&fresh),
            "database shop: created\n\
             role shop_app: created\n\
             role shop_platform: created\n\
             applied 1 migration (0001_foundation)\n\
             policies and grants applied\n"
        );
        let again = BootstrapReport {
            database_created: false,
            roles: vec![role("shop_app", false), role("shop_platform", false)],
            migrations_applied: vec![],
            migrations_total: 11,
            policies_applied: false,
            ..fresh
        };
        assert_eq!(
            bootstrap_summary(&again),
            "database shop: already existed\n\
             role shop_app: already existed; password and limits set\n\
             role shop_platform: already existed; password and limits set\n\
             schema up to date (11 migrations)\n\
             policies and grants up to date\n"
        );
    }

    #[test]
    fn input_errors_and_outages_exit_differently() {
        assert_eq!(exit_code(Error::invalid("--scopes", "x").kind()), 65);
        assert_eq!(exit_code(Error::conflict("slug_taken", "x").kind()), 73);
        assert_eq!(exit_code(ErrorKind::Unavailable), 69);
        assert_eq!(exit_code(ErrorKind::RateLimited), 75);
        assert_eq!(exit_code(ErrorKind::Internal), 70);
    }
}
