//! Database access: the pools, the start-up bootstrap and the tenant-scoped transaction.
//!
//! # The RLS contract
//! Tenant data has exactly one door, [`TenantTx`]. It opens a transaction on the request
//! pool — whose role `tenantry_app` is not superuser, has no `BYPASSRLS` and owns nothing —
//! and, inside it, sets `app.tenant_id` with `set_config(.., true)`: transaction-local, so
//! it cannot leak to the next user of the pooled connection and works behind PgBouncer in
//! transaction mode. Every policy reads that variable fail-closed (policies/rls.sql): a
//! transaction that never set it sees no rows and can write none.
//!
//! This module must never hand out the request pool itself, and the tenant id it sets must
//! come from a verified credential ([`Db::tenant`] takes a [`Principal`], which only `auth`
//! makes); the one exception, [`TenantTx::begin_for_credential_check`], exists for `auth`
//! alone, which must read a tenant's rows to verify the credential that names it. The
//! architecture test (`tests/api/architecture.rs`) fails if any other module calls it.
//!
//! Cross-tenant work (the operator API, the committed-event feed, purges) uses
//! [`PlatformTx`] on a separate pool whose role may read and update the tenant directory,
//! create a tenant only through the narrow `create_tenant` database function, and writes
//! tenant rows (audit events) only under a tenant context too. It cannot read users or
//! their password hashes. Work that needs more — rebuilding read models, managing service
//! tokens — runs from the command line as the database owner ([`owner_connection`]), never
//! as a role the server holds.
//!
//! # Roles are per database
//! Postgres roles are cluster-wide, so the two login roles are named after the database
//! ([`Roles`]): a staging database on the same cluster has roles of its own, and its
//! passwords open nothing else.
//!
//! # Nothing waits for ever
//! Both roles run with `statement_timeout`, `lock_timeout` and
//! `idle_in_transaction_session_timeout` (set on the role in this database at start-up),
//! and a transaction opened under a deadline ([`with_deadline`], which the HTTP layer sets
//! to the request's timeout) is held to what is left of it: a request that timed out, or
//! whose client vanished, cannot keep a connection busy or hold row locks past its time.
//!
//! # When the database is away
//! Every connection either pool hands out goes through one gate, [`Reachability`]: once a
//! probe has found the database unreachable (after a broken connection, a terminated
//! session, or a request kept waiting for a connection), every request is answered 503 with
//! `Retry-After` at once instead of waiting the pools' 5 s acquire timeout, and
//! [`Db::ping`] (readiness) says so at once too. One probe at a time retries every 250 ms;
//! the first that connects lets traffic through again. Failures met on the way — opening,
//! committing, pinging — are translated to the application's [`Error`] here, and the
//! connection faults among them start a probe. See [`reachability`] for the rules.
//!
//! # When the database is slow
//! A tenant transaction is opened only under [`Admission`]'s adaptive limit on how many
//! are open at once (shrinking when transactions slow down, growing back when they keep
//! up), with a fair share per active tenant: past it, a request is refused at once with 503
//! and `Retry-After` rather than queued until it times out. See [`admission`].
//!
//! # Behind a pooler in transaction mode
//! Everything the pools run is inside a transaction — the tenant and platform
//! transactions, and the few statements that stand alone (resolving a slug) get one of
//! their own — because PgBouncer in transaction mode lends a client a server connection
//! for one transaction at a time: outside one, the two halves of an extended-protocol
//! statement (parse and describe, then bind and execute) may reach different servers, and
//! a bind can then run another client's statement. Nothing the pools do outlives its
//! transaction: settings are `set local` or `set_config(.., true)`, advisory locks are
//! `pg_advisory_xact_lock`. What needs a session of its own — the bootstrap's advisory
//! lock, the command line's owner work, `LISTEN` — goes to `DATABASE_DIRECT_URL`
//! ([`connect_options`]), never through the pools. With the statement cache off
//! (`DATABASE_STATEMENT_CACHE=0`), every transaction first forgets the statements left on
//! its server connection ([`FORGET_STATEMENTS`]).
//!
//! # Measured
//! Every pool connection is asked for through [`acquire`], which records how long it took
//! (`db_pool_acquire_duration_seconds{pool}`) and whether the pool had no idle connection
//! then (`db_pool_acquire_waits_total{pool}`); [`Db::record_pool_metrics`] samples both
//! pools' sizes for each scrape. `pool` is `app` (the request pool) or `platform`.
//!
//! # Copies elsewhere
//! A transaction reports what it changes that is cached outside the database
//! ([`TenantTx::changed`]); its commit hands those changes on ([`changes`]) before it
//! returns.

pub mod admission;
mod bootstrap;
pub mod changes;
pub mod reachability;
pub mod table;

pub use admission::Admission;
pub use bootstrap::{
    BootstrapReport, ConnectError, RoleReport, bootstrap, connect_options, pool_options,
};
pub use changes::{Change, OnCommit};
pub use reachability::Reachability;

use std::{
    future::Future,
    ops::{Deref, DerefMut},
    sync::Arc,
    time::Duration,
};

use anyhow::{Context, bail};
use secrecy::ExposeSecret;
use sqlx::{
    Connection, Executor, PgConnection, PgPool, Postgres, Transaction,
    pool::PoolConnection,
    postgres::{PgConnectOptions, PgPoolOptions},
};
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;
use tracing::Instrument;

use crate::{
    access::{Operator, Principal},
    clock::Clock,
    config::Config,
    error::Error,
    id::TenantId,
    observability::traces,
};

/// The login roles of this database: the request role, which every tenant request runs as,
/// and the platform role of the operator's cross-tenant work. Named after the database
/// unless configured (`DATABASE_APP_ROLE`, `DATABASE_PLATFORM_ROLE`): `tenantry` has
/// `tenantry_app` and `tenantry_platform`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Roles {
    pub app: String,
    pub platform: String,
}

impl Roles {
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        let database = database_name(&bootstrap::connect_options(config)?);
        let name = |given: &Option<String>, suffix: &str| {
            given
                .clone()
                .unwrap_or_else(|| format!("{database}_{suffix}"))
        };
        let roles = Self {
            app: name(&config.database_app_role, "app"),
            platform: name(&config.database_platform_role, "platform"),
        };
        for (variable, role) in [
            ("DATABASE_APP_ROLE", &roles.app),
            ("DATABASE_PLATFORM_ROLE", &roles.platform),
        ] {
            // Postgres truncates longer names silently, which could make two roles one.
            if role.is_empty() || role.len() > 63 || role.contains('\0') {
                bail!(
                    "{variable}: the role name {role:?} must be 1-63 bytes; set {variable} \
                     when the database name is long"
                );
            }
        }
        if roles.app == roles.platform {
            bail!("DATABASE_APP_ROLE and DATABASE_PLATFORM_ROLE must differ");
        }
        Ok(roles)
    }
}

/// The database a connection's options name (Postgres, like libpq, takes the user's name
/// when none is given).
pub fn database_name(options: &PgConnectOptions) -> String {
    options
        .get_database()
        .unwrap_or(options.get_username())
        .to_owned()
}

/// A connection as the database owner (`DATABASE_DIRECT_URL`, a session of its own), for
/// the command line's work that no role the server holds may do: rebuilding read models,
/// managing service tokens. Tables force row-level security on their owner too, so tenant
/// rows are still reached under a tenant context (a superuser owner bypasses it, as
/// superusers do).
pub async fn owner_connection(config: &Config) -> anyhow::Result<PgConnection> {
    PgConnection::connect_with(&bootstrap::connect_options(config)?)
        .await
        .context("connecting with DATABASE_DIRECT_URL")
}

/// Sent before `begin` when the statement cache is off (`DATABASE_STATEMENT_CACHE=0`), in
/// the same round trip. sqlx 0.8 still gives every statement it prepares a name then
/// (`sqlx_s_1`, `sqlx_s_2`, … counted per client connection) and never closes it
/// (launchbadge/sqlx#4328, fixed after 0.9.0). Straight to Postgres, a session would keep
/// every statement it ever ran; through PgBouncer in transaction mode, the next client
/// lent that server connection would find its own `sqlx_s_1` taken (42P05) — or, with the
/// cache on, bind to another client's statement of that name and run it. Forgetting them
/// as a transaction starts leaves each server connection with only the statements of the
/// transaction that holds it.
pub const FORGET_STATEMENTS: &str = "deallocate all";

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Runs `work` under a deadline: every transaction it opens is held to what is left of it
/// (Postgres cancels a statement still running then), so work whose caller gave up — a
/// request that timed out, a client that went away — frees its connection and its row
/// locks at the deadline instead of running on.
pub async fn with_deadline<F: Future>(deadline: Instant, work: F) -> F::Output {
    DEADLINE.scope(deadline, work).await
}

/// The deadline the current task's work runs under ([`with_deadline`]), if any: for work
/// that continues on another task (a batch loader) and must be held to the same deadline.
pub fn current_deadline() -> Option<Instant> {
    DEADLINE.try_with(|deadline| *deadline).ok()
}

/// Handles to both pools and their shared reachability; cheap to clone.
#[derive(Clone)]
pub struct Db {
    request: PgPool,
    platform: PgPool,
    /// The platform role on `DATABASE_DIRECT_URL`, for `LISTEN`.
    listen: PgConnectOptions,
    /// Whether each transaction first forgets the statements on its connection
    /// ([`FORGET_STATEMENTS`]): when the statement cache is off.
    forget_statements: bool,
    statement_timeout: Duration,
    reachability: Arc<Reachability>,
    usage: Usage,
    on_commit: OnCommit,
    admission: Arc<Admission>,
}

/// What a transaction needs to meter the usage it causes: the clock usage is billed by,
/// and whether metering is on at all (`TENANTRY_USAGE_METERING`).
#[derive(Debug, Clone)]
pub struct Usage {
    pub clock: Clock,
    pub metering: bool,
}

/// Whether a transaction may write. Reads run `READ ONLY`, so a bug in a GET handler cannot
/// modify anything, and a read replica could serve them later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
    /// Read-write, and every statement sees the same snapshot (`repeatable read`): for
    /// exports that must be one consistent picture across many statements.
    Snapshot,
}

impl Access {
    fn as_str(self) -> &'static str {
        match self {
            Self::ReadOnly => "read_only",
            Self::ReadWrite => "read_write",
            Self::Snapshot => "snapshot",
        }
    }
}

impl Db {
    /// Connects both pools lazily (the first request opens connections), so start-up does
    /// not fail while Postgres is briefly away; `/health/ready` reports it instead. The
    /// pools go to `DATABASE_URL` (PgBouncer, when there is one); `LISTEN` goes to
    /// `DATABASE_DIRECT_URL`.
    pub fn connect(config: &Config) -> anyhow::Result<Self> {
        let base = pool_options(config)?;
        let roles = Roles::from_config(config)?;
        let options = |role: &str, password: &str| {
            base.clone()
                .username(role)
                .password(password)
                .application_name("tenantry")
        };
        let platform_password = config.database_platform_password.expose_secret();
        let pool = |role: &str, password: &str, size: u32| {
            PgPoolOptions::new()
                .max_connections(size)
                .min_connections(0)
                .acquire_timeout(Duration::from_secs(5))
                .idle_timeout(Duration::from_secs(300))
                .connect_lazy_with(options(role, password))
        };
        let app_password = config.database_app_password.expose_secret();
        Ok(Self {
            request: pool(&roles.app, app_password, config.database_max_connections),
            platform: pool(
                &roles.platform,
                platform_password,
                config.database_platform_max_connections,
            ),
            listen: connect_options(config)?
                .username(&roles.platform)
                .password(platform_password)
                .application_name("tenantry"),
            forget_statements: config.database_statement_cache == 0,
            statement_timeout: config.database_statement_timeout,
            // Probes log in as the request role: the one every request needs.
            reachability: Reachability::new(options(&roles.app, app_password)),
            usage: Usage {
                clock: config.clock.clone(),
                metering: config.usage_metering,
            },
            on_commit: OnCommit::default(),
            // At the configured limit at first: a burst may queue for connections while
            // the database keeps up; the limit comes down only once it slows down.
            admission: Arc::new(Admission::new(
                config.database_concurrency_limit,
                config.database_concurrency_limit,
            )),
        })
    }

    /// Where the changes a committed transaction reports go: the caches and the other
    /// instances (`shared::Bus`). Set once, at start-up; until then they go nowhere.
    pub fn on_commit(&self) -> &OnCommit {
        &self.on_commit
    }

    /// `begin` as sent: after [`FORGET_STATEMENTS`] when the statement cache is off, and
    /// with `set local statement_timeout` to what is left of the current deadline, if
    /// there is one and it is shorter than the roles' own limit.
    fn begin_statement(&self, begin: &str) -> String {
        let left = DEADLINE
            .try_with(|deadline| deadline.saturating_duration_since(Instant::now()))
            .ok()
            .filter(|left| *left < self.statement_timeout);
        let begin = if self.forget_statements {
            format!("{FORGET_STATEMENTS}; {begin}")
        } else {
            begin.to_owned()
        };
        match left {
            // At least 1 ms: Postgres reads 0 as "no limit".
            Some(left) => format!(
                "{begin}; set local statement_timeout = {}",
                left.as_millis().max(1)
            ),
            None => begin,
        }
    }

    /// Readiness: can the request role reach the database? Answers at once while the
    /// database is known to be down. A simple query (one message, nothing prepared), so it
    /// needs no transaction behind a pooler.
    pub async fn ping(&self) -> Result<(), Error> {
        let mut connection = self
            .reachability
            .connection(acquire(&self.request, APP_POOL))
            .await?;
        connection
            .execute("select 1")
            .await
            .map(drop)
            .map_err(|error| self.reachability.observe(error))
    }

    /// Opens a transaction that sees the principal's tenant and nothing else — the door.
    /// The caller commits it; [`Db::read`] and [`Db::write`] do both for a unit of work.
    pub async fn tenant(&self, principal: &Principal, access: Access) -> Result<TenantTx, Error> {
        TenantTx::open(self, principal.tenant_id(), access).await
    }

    /// Opens a transaction in the context of a tenant the operator names (its data
    /// export): the same door, opened by the operator's credential instead of the tenant's.
    pub async fn tenant_for_operator(
        &self,
        _operator: &Operator,
        tenant_id: TenantId,
        access: Access,
    ) -> Result<TenantTx, Error> {
        TenantTx::open(self, tenant_id, access).await
    }

    /// The tenant a login or an operator names, by id or by slug: an id as given (it is
    /// checked by what reads under it), a slug through the narrow `tenant_by_slug`
    /// database function — the one question the request role may ask before any credential
    /// is verified, since without a tenant context RLS shows it no tenant row. In a
    /// read-only transaction of its own, as everything on the pools is (see the module
    /// docs); dropping it queues its `rollback` for the pool's check of the returned
    /// connection.
    pub async fn resolve_tenant(&self, reference: &str) -> Result<Option<TenantId>, Error> {
        if let Ok(id) = reference.parse::<TenantId>() {
            return Ok(Some(id));
        }
        let connection = self
            .reachability
            .connection(acquire(&self.request, APP_POOL))
            .await?;
        let begin = self.begin_statement("begin read only");
        let mut tx = Transaction::begin(connection, Some(begin.into()))
            .await
            .map_err(|error| self.reachability.observe(error))?;
        sqlx::query_scalar("select tenant_by_slug($1)")
            .bind(reference)
            .fetch_one(&mut *tx)
            .await
            .map_err(|error| self.reachability.observe(error))
    }

    /// Runs `work` in a read-only transaction of the principal's tenant and commits it.
    pub async fn read<T, E: From<Error>>(
        &self,
        principal: &Principal,
        work: impl AsyncFnOnce(&mut TenantTx) -> Result<T, E>,
    ) -> Result<T, E> {
        self.run(principal, Access::ReadOnly, work).await
    }

    /// Runs `work` in a transaction of the principal's tenant and commits it: nothing is
    /// acknowledged before it is committed, and nothing is committed after a failure.
    pub async fn write<T, E: From<Error>>(
        &self,
        principal: &Principal,
        work: impl AsyncFnOnce(&mut TenantTx) -> Result<T, E>,
    ) -> Result<T, E> {
        self.run(principal, Access::ReadWrite, work).await
    }

    async fn run<T, E: From<Error>>(
        &self,
        principal: &Principal,
        access: Access,
        work: impl AsyncFnOnce(&mut TenantTx) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut tx = self.tenant(principal, access).await?;
        let span = tx.span.clone();
        let value = work(&mut tx).instrument(span).await?;
        if access == Access::ReadOnly {
            // A read-only transaction has nothing to commit: dropping it queues its
            // `rollback`, which travels with the pool's check of the returned connection
            // instead of costing a round trip of its own.
            drop(tx);
        } else {
            tx.commit().await?;
        }
        Ok(value)
    }

    /// Runs `work` in a transaction of the platform role (the operator's work across
    /// tenants) and commits it.
    pub async fn in_platform<T, E: From<Error>>(
        &self,
        work: impl AsyncFnOnce(&mut PlatformTx) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut tx = self.platform().await?;
        let value = work(&mut tx).await?;
        tx.commit().await?;
        Ok(value)
    }

    /// Opens a transaction of the platform role; the caller commits it.
    pub async fn platform(&self) -> Result<PlatformTx, Error> {
        let connection = self
            .reachability
            .connection(acquire(&self.platform, PLATFORM_POOL))
            .await?;
        let span =
            tracing::debug_span!(target: traces::TARGET, "db.transaction", role = "platform");
        let tx = Transaction::begin(connection, Some(self.begin_statement("begin").into()))
            .instrument(span.clone())
            .await
            .map_err(|error| self.reachability.observe(error))?;
        Ok(PlatformTx {
            tx,
            span,
            reachability: Arc::clone(&self.reachability),
            changes: Vec::new(),
            on_commit: self.on_commit.clone(),
        })
    }

    /// A connection of the platform role listening on `channel` (`LISTEN`), in a pool of
    /// its own (a listener holds its connection for good, which would take one of the
    /// platform pool's few); it reconnects by itself after a failure. It goes to
    /// `DATABASE_DIRECT_URL`: `LISTEN` belongs to a session, and through a pooler in
    /// transaction mode the server connection that ran it would be lent to other clients
    /// and its notifications lost.
    pub async fn listen(&self, channel: &str) -> Result<sqlx::postgres::PgListener, sqlx::Error> {
        let own = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy_with(self.listen.clone());
        let mut listener = sqlx::postgres::PgListener::connect_with(&own).await?;
        listener.listen(channel).await?;
        Ok(listener)
    }

    /// The clock usage is metered by, and whether metering is on.
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// Sets the pool gauges (`db_pool_connections{pool, state}`,
    /// `db_pool_max_connections{pool}`) to what the pools hold now: called before each
    /// scrape is rendered.
    pub fn record_pool_metrics(&self) {
        for (pool, label) in [(&self.request, APP_POOL), (&self.platform, PLATFORM_POOL)] {
            let size = pool.size() as usize;
            let idle = pool.num_idle().min(size);
            metrics::gauge!("db_pool_connections", "pool" => label, "state" => "in_use")
                .set((size - idle) as f64);
            metrics::gauge!("db_pool_connections", "pool" => label, "state" => "idle")
                .set(idle as f64);
            metrics::gauge!("db_pool_max_connections", "pool" => label)
                .set(f64::from(pool.options().get_max_connections()));
        }
    }

    /// Closes both pools (graceful shutdown).
    pub async fn close(&self) {
        tokio::join!(self.request.close(), self.platform.close());
    }
}

/// The `pool` label of the request pool's metrics.
const APP_POOL: &str = "app";
/// The `pool` label of the platform pool's metrics.
const PLATFORM_POOL: &str = "platform";

/// A connection from `pool`, timed: the wait is recorded in
/// `db_pool_acquire_duration_seconds{pool}`, and counted in
/// `db_pool_acquire_waits_total{pool}` when no connection was idle as it began (it then
/// waited for one to be returned, or for a new one to be opened).
async fn acquire(
    pool: &PgPool,
    label: &'static str,
) -> Result<PoolConnection<Postgres>, sqlx::Error> {
    let waits = pool.num_idle() == 0;
    let started = std::time::Instant::now();
    let acquired = pool.acquire().await;
    metrics::histogram!("db_pool_acquire_duration_seconds", "pool" => label)
        .record(started.elapsed());
    if waits {
        metrics::counter!("db_pool_acquire_waits_total", "pool" => label).increment(1);
    }
    acquired
}

/// Planner settings of every read-only tenant transaction. The planner cannot know which
/// tenant a statement will see (the setting is read as it runs), so it estimates rows for
/// an average tenant — a handful, among many small ones — and then "fetch every match and
/// sort" looks as cheap as walking an index in order and stopping at the limit; for a big
/// tenant it is ruinous. Every read here is shaped for an index in the order it returns, so
/// sorting is priced out (a sort that no index can replace still happens). Public so the
/// plan tests explain under exactly these settings.
pub const READ_ONLY_SETTINGS: &str = "set local enable_sort = off";

/// A transaction in which the database shows one tenant's rows and nothing else.
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    tenant_id: TenantId,
    reachability: Arc<Reachability>,
    usage: Usage,
    changes: Vec<Change>,
    on_commit: OnCommit,
    /// Run once the transaction has committed ([`TenantTx::after_commit`]).
    after_commit: Vec<Box<dyn FnOnce() + Send + Sync>>,
    /// Held until the transaction ends: its place under the admission limit.
    _permit: admission::Permit,
    /// The transaction's span in a trace, from `BEGIN` to its end (`observability::traces`).
    span: tracing::Span,
}

impl TenantTx {
    async fn open(db: &Db, tenant_id: TenantId, access: Access) -> Result<Self, Error> {
        // BEGIN, the deadline and the tenant setting travel as one simple query: one round
        // trip, and the transaction never exists without its tenant. Formatting the id into
        // SQL is safe: a `TenantId` is a UUID, and its text form is only hex digits and
        // hyphens.
        let begin = db.begin_statement(&match access {
            Access::ReadOnly => format!("begin read only; {READ_ONLY_SETTINGS}"),
            Access::ReadWrite => "begin".to_owned(),
            Access::Snapshot => "begin isolation level repeatable read".to_owned(),
        });
        let mut statement =
            format!("{begin}; select set_config('app.tenant_id', '{tenant_id}', true)");
        // What the database's metering trigger needs to know, said only when it is not the
        // default (metering on, the system clock): nothing to send in production. An RFC
        // 3339 instant is digits, `-`, `:`, `.`, `T`, `Z` and `+`: safe to format in.
        if !db.usage.metering {
            statement.push_str(", set_config('tenantry.usage_metering', 'off', true)");
        }
        if db.usage.clock.is_manual()
            && let Ok(at) = db.usage.clock.now().format(&Rfc3339)
        {
            statement.push_str(&format!(
                ", set_config('tenantry.usage_clock', '{at}', true)"
            ));
        }
        let span = tracing::debug_span!(
            target: traces::TARGET,
            "db.transaction",
            role = "request",
            tenant_id = %tenant_id,
            access = access.as_str(),
        );
        // Refused at once, before waiting for anything, when the database is at its limit.
        let mut permit = db.admission.admit(tenant_id)?;
        // Only the wait for a connection is cut short when the database is found down;
        // once BEGIN is sent, it runs to its end, so no connection goes back to the pool
        // with half a transaction on it.
        let connection = db
            .reachability
            .connection(acquire(&db.request, APP_POOL))
            .instrument(span.clone())
            .await?;
        permit.connected();
        let tx = Transaction::begin(connection, Some(statement.into()))
            .instrument(span.clone())
            .await
            .map_err(|error| db.reachability.observe(error))?;
        Ok(Self {
            tx,
            tenant_id,
            reachability: Arc::clone(&db.reachability),
            changes: Vec::new(),
            on_commit: db.on_commit.clone(),
            after_commit: Vec::new(),
            _permit: permit,
            usage: db.usage.clone(),
            span,
        })
    }

    /// Opens a tenant transaction for a tenant named by a credential that is not verified
    /// yet (login, refresh, API-key lookup). Only `auth` may call this, and only to verify
    /// that credential: nothing read here reaches a client unless verification succeeds.
    pub(crate) async fn begin_for_credential_check(
        db: &Db,
        tenant_id: TenantId,
        access: Access,
    ) -> Result<Self, Error> {
        Self::open(db, tenant_id, access).await
    }

    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    /// The transaction's span: work run in it (`.instrument(tx.span())`) is traced as the
    /// transaction's, as [`Db::read`] and [`Db::write`] do.
    pub fn span(&self) -> tracing::Span {
        self.span.clone()
    }

    /// How the usage this transaction causes is metered.
    pub fn usage(&self) -> &Usage {
        &self.usage
    }

    /// Reports that this transaction changes something copied outside the database (a
    /// cached credential or resource): once it commits, every copy is dropped — here and
    /// on every other instance — before [`TenantTx::commit`] returns.
    pub fn changed(&mut self, change: Change) {
        if !self.changes.contains(&change) {
            self.changes.push(change);
        }
    }

    /// Reports that this transaction changes the `kind` resource `id` of its tenant, which
    /// may be cached (as [`TenantTx::changed`]).
    pub fn resource_changed(&mut self, kind: &str, id: uuid::Uuid) {
        self.changed(Change::Resource {
            tenant: self.tenant_id,
            kind: kind.to_owned(),
            id,
        });
    }

    /// Reports that this transaction changes what its tenant's credential checks read: an
    /// API key, a session, a user's role or status (as [`TenantTx::changed`]).
    pub fn credentials_changed(&mut self) {
        self.changed(Change::Credentials {
            tenant: self.tenant_id,
        });
    }

    /// Runs `done` once this transaction has committed, and never if it does not: for what
    /// must count only what happened (a placed order's metrics), whichever transport
    /// commits the work.
    pub fn after_commit(&mut self, done: impl FnOnce() + Send + Sync + 'static) {
        self.after_commit.push(Box::new(done));
    }

    /// Commits, then drops every copy of what it [`changed`](TenantTx::changed) and runs
    /// what waited for the commit ([`TenantTx::after_commit`]). A failure here may leave
    /// the outcome unknown to the caller (the commit may have landed before the connection
    /// broke), which is why commands that must not run twice carry an idempotency key.
    pub async fn commit(self) -> Result<(), Error> {
        let reachability = self.reachability;
        self.tx
            .commit()
            .instrument(self.span)
            .await
            .map_err(|error| reachability.observe(error))?;
        self.on_commit.committed(self.changes).await;
        for done in self.after_commit {
            done();
        }
        Ok(())
    }
}

impl Deref for TenantTx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for TenantTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

/// A transaction of the platform role, for operator work across tenants.
pub struct PlatformTx {
    tx: Transaction<'static, Postgres>,
    span: tracing::Span,
    reachability: Arc<Reachability>,
    changes: Vec<Change>,
    on_commit: OnCommit,
}

impl PlatformTx {
    /// Enters one tenant's context for the rest of this transaction (e.g. to create a new
    /// tenant's owner under the same policies a tenant request obeys).
    pub async fn enter_tenant(&mut self, tenant_id: TenantId) -> Result<(), sqlx::Error> {
        sqlx::query("select set_config('app.tenant_id', $1, true)")
            .bind(tenant_id.to_string())
            .execute(&mut *self.tx)
            .await
            .map(drop)
    }

    /// As [`TenantTx::changed`].
    pub fn changed(&mut self, change: Change) {
        if !self.changes.contains(&change) {
            self.changes.push(change);
        }
    }

    /// Reports that this transaction changes what the credential checks of `tenant` read
    /// (as [`TenantTx::changed`]).
    pub fn credentials_changed(&mut self, tenant: TenantId) {
        self.changed(Change::Credentials { tenant });
    }

    /// Reports that this transaction changes the `kind` resource `id` of `tenant`, which
    /// may be cached (as [`TenantTx::changed`]).
    pub fn resource_changed(&mut self, tenant: TenantId, kind: &str, id: uuid::Uuid) {
        self.changed(Change::Resource {
            tenant,
            kind: kind.to_owned(),
            id,
        });
    }

    /// Commits, then drops every copy of what it [`changed`](PlatformTx::changed).
    pub async fn commit(self) -> Result<(), Error> {
        let reachability = self.reachability;
        self.tx
            .commit()
            .instrument(self.span)
            .await
            .map_err(|error| reachability.observe(error))?;
        self.on_commit.committed(self.changes).await;
        Ok(())
    }
}

impl Deref for PlatformTx {
    type Target = PgConnection;
    fn deref(&self) -> &PgConnection {
        &self.tx
    }
}

impl DerefMut for PlatformTx {
    fn deref_mut(&mut self) -> &mut PgConnection {
        &mut self.tx
    }
}

/// Parses a database URL into connect options, naming the variable on failure.
pub(crate) fn parse_url(
    variable: &str,
    url: &str,
) -> anyhow::Result<sqlx::postgres::PgConnectOptions> {
    url.parse()
        .with_context(|| format!("{variable} is not a valid postgres:// URL"))
}
