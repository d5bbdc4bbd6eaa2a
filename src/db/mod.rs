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

mod bootstrap;
pub mod table;

pub use bootstrap::{bootstrap, connect_options};

use std::{
    ops::{Deref, DerefMut},
    time::Duration,
};

use anyhow::Context;
use secrecy::ExposeSecret;
use sqlx::{PgConnection, PgPool, Postgres, Transaction, postgres::PgPoolOptions};

use crate::{access::Principal, config::Config, id::TenantId};

/// The request role: every tenant request runs as this login role.
pub const APP_ROLE: &str = "tenantry_app";
/// The platform role: operator API and billing export.
pub const PLATFORM_ROLE: &str = "tenantry_platform";

/// Handles to both pools; cheap to clone.
#[derive(Clone)]
pub struct Db {
    request: PgPool,
    platform: PgPool,
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
        let pool = |role: &str, password: &str, size: u32| {
            PgPoolOptions::new()
                .max_connections(size)
                .min_connections(0)
                .acquire_timeout(Duration::from_secs(5))
                .idle_timeout(Duration::from_secs(300))
                .connect_lazy_with(
                    base.clone()
                        .username(role)
                        .password(password)
                        .application_name("tenantry"),
                )
        };
        Ok(Self {
            request: pool(
                APP_ROLE,
                config.database_app_password.expose_secret(),
                config.database_max_connections,
            ),
            platform: pool(
                PLATFORM_ROLE,
                config.database_platform_password.expose_secret(),
                4,
            ),
        })
    }

    /// Readiness: can the request role reach the database?
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        sqlx::query("select 1")
            .execute(&self.request)
            .await
            .map(drop)
    }

    /// Opens a transaction that sees the principal's tenant and nothing else — the door.
    /// The caller commits it; [`Db::read`] and [`Db::write`] do both for a unit of work.
    pub async fn tenant(
        &self,
        principal: &Principal,
        access: Access,
    ) -> Result<TenantTx, sqlx::Error> {
        TenantTx::open(&self.request, principal.tenant_id(), access).await
    }

    /// The tenant a login or an operator names, by id or by slug: an id as given (it is
    /// checked by what reads under it), a slug through the narrow `tenant_by_slug`
    /// database function — the one question the request role may ask before any credential
    /// is verified, since without a tenant context RLS shows it no tenant row.
    pub async fn resolve_tenant(&self, reference: &str) -> Result<Option<TenantId>, sqlx::Error> {
        if let Ok(id) = reference.parse::<TenantId>() {
            return Ok(Some(id));
        }
        sqlx::query_scalar("select tenant_by_slug($1)")
            .bind(reference)
            .fetch_one(&self.request)
            .await
    }

    /// Runs `work` in a read-only transaction of the principal's tenant and commits it.
    pub async fn read<T, E: From<sqlx::Error>>(
        &self,
        principal: &Principal,
        work: impl AsyncFnOnce(&mut TenantTx) -> Result<T, E>,
    ) -> Result<T, E> {
        self.run(principal, Access::ReadOnly, work).await
    }

    /// Runs `work` in a transaction of the principal's tenant and commits it: nothing is
    /// acknowledged before it is committed, and nothing is committed after a failure.
    pub async fn write<T, E: From<sqlx::Error>>(
        &self,
        principal: &Principal,
        work: impl AsyncFnOnce(&mut TenantTx) -> Result<T, E>,
    ) -> Result<T, E> {
        self.run(principal, Access::ReadWrite, work).await
    }

    async fn run<T, E: From<sqlx::Error>>(
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
    pub async fn in_platform<T, E: From<sqlx::Error>>(
        &self,
        work: impl AsyncFnOnce(&mut PlatformTx) -> Result<T, E>,
    ) -> Result<T, E> {
        let mut tx = self.platform().await?;
        let value = work(&mut tx).await?;
        tx.commit().await?;
        Ok(value)
    }

    /// Opens a transaction of the platform role; the caller commits it.
    pub async fn platform(&self) -> Result<PlatformTx, sqlx::Error> {
        Ok(PlatformTx {
            tx: self.platform.begin().await?,
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
}

impl TenantTx {
    async fn open(pool: &PgPool, tenant_id: TenantId, access: Access) -> Result<Self, sqlx::Error> {
        // BEGIN and the tenant setting travel as one simple query: one round trip, and the
        // transaction never exists without its tenant. Formatting the id into SQL is safe:
        // a `TenantId` is a UUID, and its text form is only hex digits and hyphens.
        let begin = match access {
            Access::ReadOnly => "begin read only",
            Access::ReadWrite => "begin",
        };
        let statement = format!("{begin}; select set_config('app.tenant_id', '{tenant_id}', true)");
        let tx = pool.begin_with(statement).await?;
        Ok(Self { tx, tenant_id })
    }

    /// Opens a tenant transaction for a tenant named by a credential that is not verified
    /// yet (login, refresh, API-key lookup). Only `auth` may call this, and only to verify
    /// that credential: nothing read here reaches a client unless verification succeeds.
    pub(crate) async fn begin_for_credential_check(
        db: &Db,
        tenant_id: TenantId,
        access: Access,
    ) -> Result<Self, sqlx::Error> {
        Self::open(&db.request, tenant_id, access).await
    }

    pub fn tenant_id(&self) -> TenantId {
        self.tenant_id
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
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

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
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
