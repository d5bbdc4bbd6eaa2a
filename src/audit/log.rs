//! Reading the audit log: a tenant's events, newest first, filtered by actor, action,
//! target and time, a page at a time or streamed whole.

use futures_util::TryStreamExt;
use serde::Serialize;
use serde_json::Value;
use sqlx::{FromRow, PgConnection, Postgres, QueryBuilder};
use time::OffsetDateTime;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    access::{Operator, Principal, Scope},
    error::Error,
    id,
    page::{Page, PageRequest},
};

/// An audit event as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema, FromRow)]
#[schema(example = json!({
    "id": "0193a4f2-8f7e-7c55-b0e4-4b3f1e9d2a61",
    "occurred_at": "2026-12-06T10:00:00Z",
    "actor": "user:0193a4f2-8f7e-7c55-b0e4-4b3f1e9d2a60",
    "credential": "session:0193a4f2-8f7e-7c55-b0e4-4b3f1e9d2a5f",
    "action": "product.updated",
    "target_type": "product",
    "target_id": "0193a4f2-8f7e-7c55-b0e4-4b3f1e9d2a5e",
    "data": {"sku": "MUG-BLUE-330", "diff": {"stock": {"from": 40, "to": 35}}},
    "personal": {"client_ip": "203.0.113.7", "user_agent": "curl/8.5.0"},
    "request_id": "0193a4f2-8f7e-7c55-b0e4-4b3f1e9d2a5d",
    "client_request_id": null
}))]
pub struct AuditRecord {
    pub id: Uuid,
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// `user:<id>`, `api_key:<id>`, `service:<name>`, `operator` or `anonymous`.
    pub actor: String,
    /// `session:<id>`, `api_key:<id>`, `service_token:<jti>`, `operator_token`.
    pub credential: Option<String>,
    /// `<resource>.<verb>`: `user.created`, `order.paid`, `auth.login_failed`, …
    pub action: String,
    pub target_type: String,
    pub target_id: String,
    /// Details; a change has a `diff` of each changed field (`from`, `to`).
    pub data: Value,
    /// Personal data (emails, names, the client's address and user agent); `null` once
    /// erased. Not covered by the chain except through its digest.
    pub personal: Option<Value>,
    pub request_id: Option<String>,
    pub client_request_id: Option<String>,
}

/// What to list: every field optional.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target_type: Option<String>,
    pub target_id: Option<String>,
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
}

const COLUMNS: &str = "select id, occurred_at, actor, credential, action, target_type, target_id, \
     data, personal - 'salt' as personal, request_id, client_request_id from audit_events";

/// The statement for `filter`, built from the filters present (never a catch-all that
/// Postgres could plan generically as a scan): `where tenant_id = … and …`, newest first,
/// at most `limit` rows. Public so that a plan test can `EXPLAIN` it.
pub fn list_statement<'a>(
    tenant_id: id::TenantId,
    filter: &'a Filter,
    before: Option<Uuid>,
    limit: Option<i64>,
) -> QueryBuilder<'a, Postgres> {
    let mut query = QueryBuilder::new(COLUMNS);
    query.push(" where tenant_id = ").push_bind(tenant_id);
    if let Some(actor) = &filter.actor {
        query.push(" and actor = ").push_bind(actor);
    }
    if let Some(action) = &filter.action {
        query.push(" and action = ").push_bind(action);
    }
    if let Some(target_type) = &filter.target_type {
        query.push(" and target_type = ").push_bind(target_type);
    }
    if let Some(target_id) = &filter.target_id {
        query.push(" and target_id = ").push_bind(target_id);
    }
    // Ids are UUIDv7: a time range is an id range, which the indexes (all ending in `id`)
    // walk in order.
    if let Some(from) = filter.from {
        query
            .push(" and id >= ")
            .push_bind(id::v7_lower_bound(from));
    }
    if let Some(to) = filter.to {
        query.push(" and id < ").push_bind(id::v7_lower_bound(to));
    }
    if let Some(before) = before {
        query.push(" and id < ").push_bind(before);
    }
    query.push(" order by id desc");
    if let Some(limit) = limit {
        query.push(" limit ").push_bind(limit);
    }
    query
}

/// A page of the caller's tenant's audit events, newest first (`audit:read`).
#[tracing::instrument(skip_all)]
pub async fn list(
    conn: &mut PgConnection,
    principal: &Principal,
    filter: &Filter,
    page: PageRequest,
) -> Result<Page<AuditRecord>, Error> {
    principal.require(Scope::AuditRead)?;
    page_of(conn, principal.tenant_id(), filter, page).await
}

/// A page of the platform's own audit log (plans, billing closes and exports, tenant
/// erasures), newest first, for the operator.
pub async fn list_platform(
    conn: &mut PgConnection,
    _operator: &Operator,
    filter: &Filter,
    page: PageRequest,
) -> Result<Page<AuditRecord>, Error> {
    page_of(conn, super::platform_log(), filter, page).await
}

async fn page_of(
    conn: &mut PgConnection,
    tenant_id: id::TenantId,
    filter: &Filter,
    page: PageRequest,
) -> Result<Page<AuditRecord>, Error> {
    let mut query = list_statement(tenant_id, filter, page.before, Some(page.fetch_limit()));
    let rows: Vec<AuditRecord> = query.build_query_as().fetch_all(conn).await?;
    Ok(Page::from_rows(rows, page, |r| r.id))
}

/// Sends every matching event of the caller's tenant, newest first, to `out` as it is
/// read (constant memory, for an export; a full channel slows the reading), until the
/// receiver goes away. Returns how many it sent.
pub async fn export(
    conn: &mut PgConnection,
    principal: &Principal,
    filter: &Filter,
    out: &tokio::sync::mpsc::Sender<AuditRecord>,
) -> Result<u64, Error> {
    principal.require(Scope::AuditRead)?;
    let mut query = list_statement(principal.tenant_id(), filter, None, None);
    let mut rows = query.build_query_as::<AuditRecord>().fetch(conn);
    let mut count = 0;
    while let Some(record) = rows.try_next().await? {
        if out.send(record).await.is_err() {
            break;
        }
        count += 1;
    }
    Ok(count)
}
