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

use crate::auth::Principal;

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

/// Appends an event for the principal's tenant inside the caller's transaction.
#[tracing::instrument(skip_all, fields(action = event.action))]
pub async fn record(
    conn: &mut PgConnection,
    principal: &Principal,
    event: AuditEvent,
) -> Result<(), sqlx::Error> {
    record_as(
        conn,
        principal.tenant_id(),
        &principal.actor().to_string(),
        event,
    )
    .await
}

/// Appends an event for an actor that is not a tenant principal (the operator).
pub async fn record_as(
    conn: &mut PgConnection,
    tenant_id: crate::tenancy::TenantId,
    actor: &str,
    event: AuditEvent,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "insert into audit_events (tenant_id, id, actor, action, target_type, target_id, data, request_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(tenant_id)
    .bind(Uuid::now_v7())
    .bind(actor)
    .bind(event.action)
    .bind(event.target_type)
    .bind(&event.target_id)
    .bind(&event.data)
    .bind(crate::observability::current_request_id())
    .execute(conn)
    .await
    .map(drop)
}
