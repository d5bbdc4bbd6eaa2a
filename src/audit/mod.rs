//! The audit trail: every mutation records who did what to which resource, in the same
//! transaction as the change, so an event exists exactly when the change committed.
//!
//! This is the seam the audit-log capability builds on (reading, hash chaining,
//! verification); the table is append-only for the request role (no UPDATE or DELETE
//! grant), so a request can add history but never rewrite it.

use std::fmt::Display;

use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{
    access::{Operator, Principal},
    id::TenantId,
    observability,
};

/// One thing that happened.
pub struct AuditEvent {
    action: &'static str,
    target_type: &'static str,
    target_id: String,
    data: Value,
}

impl AuditEvent {
    /// `action` is `<resource>.<verb>` (`user.created`), stable: consumers filter on it.
    pub fn new(action: &'static str, target_type: &'static str, target_id: impl Display) -> Self {
        Self {
            action,
            target_type,
            target_id: target_id.to_string(),
            data: Value::Object(Default::default()),
        }
    }

    /// Non-secret details. Never put credentials or password material here.
    pub fn data(mut self, data: Value) -> Self {
        self.data = data;
        self
    }
}

/// Whose log an event goes into, and who acted: a tenant principal in its own tenant, or
/// the operator in the tenant it changed.
#[derive(Debug, Clone)]
pub struct Author {
    tenant_id: TenantId,
    actor: String,
}

impl Author {
    /// The operator, acting on `tenant_id`.
    pub fn operator(operator: &Operator, tenant_id: TenantId) -> Self {
        Self {
            tenant_id,
            actor: operator.actor().to_owned(),
        }
    }
}

impl Author {
    /// Someone not (yet) authenticated, in `tenant_id`: a failed login.
    pub fn anonymous(tenant_id: TenantId) -> Self {
        Self {
            tenant_id,
            actor: "anonymous".to_owned(),
        }
    }
}

impl From<&Principal> for Author {
    fn from(principal: &Principal) -> Self {
        Self {
            tenant_id: principal.tenant_id(),
            actor: principal.actor().to_string(),
        }
    }
}

/// Appends an event inside the caller's transaction, with the ids of the work in progress:
/// the request id the server minted (`request_id`) and, beside it, the correlation id the
/// client sent, if any (`client_request_id`).
#[tracing::instrument(skip_all, fields(action = event.action))]
pub async fn record(
    conn: &mut PgConnection,
    author: impl Into<Author>,
    event: AuditEvent,
) -> Result<(), sqlx::Error> {
    insert(
        conn,
        "insert into audit_events (tenant_id, id, actor, action, target_type, target_id, data, request_id, client_request_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        author.into(),
        event,
    )
    .await
}

/// Appends an event if the author's tenant exists, and writes nothing otherwise — at the
/// same cost either way, for a caller whose cost must not tell which (a failed login names
/// a tenant that may not exist). One statement both ways: the tenant row is looked up
/// under the transaction's tenant context, which shows it only when it is the author's.
/// And the commit does not wait for the write to reach disk (`synchronous_commit` off for
/// this transaction alone), since a commit that wrote nothing is not flushed and would be
/// the faster one: such an event can be lost in a crash within the WAL writer's delay
/// (200 ms by default), so use this only for events no acknowledged change depends on.
#[tracing::instrument(skip_all, fields(action = event.action))]
pub async fn record_if_tenant_exists(
    conn: &mut PgConnection,
    author: Author,
    event: AuditEvent,
) -> Result<(), sqlx::Error> {
    insert(
        conn,
        "with written as (
             insert into audit_events (tenant_id, id, actor, action, target_type, target_id, data, request_id, client_request_id)
             select $1, $2, $3, $4, $5, $6, $7, $8, $9 where exists (select from tenants where id = $1)
             returning 1
         )
         select set_config('synchronous_commit', 'off', true), (select count(*) from written)",
        author,
        event,
    )
    .await
}

async fn insert(
    conn: &mut PgConnection,
    statement: &'static str,
    author: Author,
    event: AuditEvent,
) -> Result<(), sqlx::Error> {
    sqlx::query(statement)
        .bind(author.tenant_id)
        .bind(Uuid::now_v7())
        .bind(&author.actor)
        .bind(event.action)
        .bind(event.target_type)
        .bind(&event.target_id)
        .bind(&event.data)
        .bind(observability::current_request_id())
        .bind(observability::current_client_request_id())
        .execute(conn)
        .await
        .map(drop)
}
