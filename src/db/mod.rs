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
//! Cross-tenant work (the operator API) uses [`PlatformTx`] on a separate pool whose role,
//! `tenantry_platform`, may manage the tenant directory but writes tenant rows only under a
//! tenant context too.
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

mod bootstrap;
pub mod reachability;
pub mod table;

pub use bootstrap::{bootstrap, connect_options};
pub use reachability::Reachability;

use std::{
    ops::{Deref, DerefMut},
    sync::Arc,
    time::Duration,
};

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::{PgConnection, PgPool, Postgres, Transaction, postgres::PgPoolOptions};

use crate::{access::Principal, config::Config, error::Error, id::TenantId};

/// The request role: every tenant request runs as this login role.
pub const APP_ROLE: &str = "tenantry_app";
/// The platform role: operator API and billing export.
pub const PLATFORM_ROLE: &str = "tenantry_platform";

/// Handles to both pools and their shared reachability; cheap to clone.
#[derive(Clone)]
pub struct Db {
    request: PgPool,
    platform: PgPool,
    reachability: Arc<Reachability>,
}

/// Whether a transaction may write. Reads run `READ ONLY`, so a bug in a GET handler cannot
/// modify anything, and a read replica could serve them later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    ReadOnly,
    ReadWrite,
}

impl Db {
    /// Connects both pools lazily (the first request opens connections), so start-up does
    /// not fail while Postgres is briefly away; `/health/ready` reports it instead.
    pub fn connect(config: &Config) -> anyhow::Result<Self> {
        let base = connect_options(config)?;
        let options = |role: &str, password: &str| {
            base.clone()
                .username(role)
                .password(password)
                .application_name("tenantry")
        };
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
            request: pool(APP_ROLE, app_password, config.database_max_connections),
            platform: pool(
                PLATFORM_ROLE,
                config.database_platform_password.expose_secret(),
                4,
            ),
            // Probes log in as the request role: the one every request needs.
            reachability: Reachability::new(options(APP_ROLE, app_password)),
        })
    }

    /// Readiness: can the request role reach the database? Answers at once while the
    /// database is known to be down.
    pub async fn ping(&self) -> Result<(), Error> {
        let mut connection = self.reachability.connection(self.request.acquire()).await?;
        sqlx::query("select 1")
            .execute(&mut *connection)
            .await
            .map(drop)
            .map_err(|error| self.reachability.observe(error))
    }

    /// Opens a transaction that sees the principal's tenant and nothing else — the door.
    /// The caller commits it; [`Db::read`] and [`Db::write`] do both for a unit of work.
    pub async fn tenant(&self, principal: &Principal, access: Access) -> Result<TenantTx, Error> {
        TenantTx::open(self, principal.tenant_id(), access).await
    }

    /// The tenant a login or an operator names, by id or by slug: an id as given (it is
    /// checked by what reads under it), a slug through the narrow `tenant_by_slug`
    /// database function — the one question the request role may ask before any credential
    /// is verified, since without a tenant context RLS shows it no tenant row.
    pub async fn resolve_tenant(&self, reference: &str) -> Result<Option<TenantId>, Error> {
        if let Ok(id) = reference.parse::<TenantId>() {
            return Ok(Some(id));
        }
        let mut connection = self.reachability.connection(self.request.acquire()).await?;
        sqlx::query_scalar("select tenant_by_slug($1)")
            .bind(reference)
            .fetch_one(&mut *connection)
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
        let value = work(&mut tx).await?;
        tx.commit().await?;
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
            .connection(self.platform.acquire())
            .await?;
        let tx = Transaction::begin(connection, None)
            .await
            .map_err(|error| self.reachability.observe(error))?;
        Ok(PlatformTx {
            tx,
            reachability: Arc::clone(&self.reachability),
        })
    }

    /// Closes both pools (graceful shutdown).
    pub async fn close(&self) {
        tokio::join!(self.request.close(), self.platform.close());
    }
}

/// A transaction in which the database shows one tenant's rows and nothing else.
pub struct TenantTx {
    tx: Transaction<'static, Postgres>,
    tenant_id: TenantId,
    reachability: Arc<Reachability>,
}

impl TenantTx {
    async fn open(db: &Db, tenant_id: TenantId, access: Access) -> Result<Self, Error> {
        // BEGIN and the tenant setting travel as one simple query: one round trip, and the
        // transaction never exists without its tenant. Formatting the id into SQL is safe:
        // a `TenantId` is a UUID, and its text form is only hex digits and hyphens.
        let begin = match access {
            Access::ReadOnly => "begin read only",
            Access::ReadWrite => "begin",
        };
        let statement = format!("{begin}; select set_config('app.tenant_id', '{tenant_id}', true)");
        // Only the wait for a connection is cut short when the database is found down;
        // once BEGIN is sent, it runs to its end, so no connection goes back to the pool
        // with half a transaction on it.
        let connection = db.reachability.connection(db.request.acquire()).await?;
        let tx = Transaction::begin(connection, Some(statement.into()))
            .await
            .map_err(|error| db.reachability.observe(error))?;
        Ok(Self {
            tx,
            tenant_id,
            reachability: Arc::clone(&db.reachability),
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

    /// Commits. A failure here may leave the outcome unknown to the caller (the commit
    /// may have landed before the connection broke), which is why commands that must not
    /// run twice carry an idempotency key.
    pub async fn commit(self) -> Result<(), Error> {
        let reachability = self.reachability;
        self.tx
            .commit()
            .await
            .map_err(|error| reachability.observe(error))
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
    reachability: Arc<Reachability>,
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

    pub async fn commit(self) -> Result<(), Error> {
        let reachability = self.reachability;
        self.tx
            .commit()
            .await
            .map_err(|error| reachability.observe(error))
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
pub(crate) fn parse_url(url: &str) -> anyhow::Result<sqlx::postgres::PgConnectOptions> {
    url.parse()
        .context("DATABASE_URL is not a valid postgres:// URL")
}
