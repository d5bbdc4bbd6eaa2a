//! A tenant's data rights: a copy of everything it owns, and the erasure of its personal
//! data. (Erasing one customer on request is the customers' own operation:
//! `catalog::customers::erase`.)
//!
//! - [`export`] streams every row the tenant owns, table by table — every table with a
//!   `tenant_id`, found in the catalog, so a table added later is exported without a
//!   change here — as `{"table": …, "row": …}` lines, from one snapshot, under the tenant's
//!   own RLS context. Secrets are left out (password hashes, key and token hashes, the
//!   stored answers of idempotency keys, which may hold a new API key).
//! - [`erase`] removes the tenant's personal data: users' emails and password hashes,
//!   customers' emails and names, API keys (revoked, their hashes and names replaced),
//!   sessions and refresh tokens, stored answers, and the personal data of every audit
//!   event. The audit chain covers that data's digest, not the data, so it still
//!   verifies. The tenant is suspended, and the erasure is recorded in its log and the
//!   platform's.

use futures_util::TryStreamExt;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;

use crate::{
    access::Operator,
    audit::{self, AuditEvent, Author},
    error::Error,
    id::TenantId,
};

/// One exported row.
#[derive(Debug, Clone, Serialize)]
pub struct ExportedRow {
    pub table: String,
    pub row: Value,
}

/// Columns never exported: secrets, which a copy of the data must not spread.
const SECRETS: &[(&str, &[&str])] = &[
    ("users", &["password_hash"]),
    ("api_keys", &["secret_hash"]),
    ("refresh_tokens", &["secret_hash"]),
    ("idempotency_keys", &["request_hash", "response_body"]),
    ("webhook_endpoints", &["secret", "previous_secret"]),
];

/// The tables a tenant owns rows in: `tenants` (its own row) first, then every table
/// with a `tenant_id` column, by name.
async fn tenant_tables(conn: &mut PgConnection) -> Result<Vec<String>, Error> {
    let tables: Vec<String> = sqlx::query_scalar(
        "select c.relname::text
         from pg_class c
         join pg_namespace n on n.oid = c.relnamespace
         join pg_attribute a on a.attrelid = c.oid and a.attname = 'tenant_id'
                            and not a.attisdropped
         where n.nspname = 'public' and c.relkind in ('r', 'p')
         order by 1",
    )
    .fetch_all(conn)
    .await?;
    Ok(std::iter::once("tenants".to_owned())
        .chain(tables)
        .collect())
}

/// Streams every row of the tenant in `conn`'s context (a snapshot transaction) to `out`,
/// then records the export in the tenant's audit log; returns how many rows it sent. Stops
/// early, recording nothing, when the receiver goes away.
pub async fn export(
    conn: &mut PgConnection,
    operator: &Operator,
    tenant_id: TenantId,
    out: &tokio::sync::mpsc::Sender<ExportedRow>,
) -> Result<u64, Error> {
    sqlx::query("set local statement_timeout = '15min'")
        .execute(&mut *conn)
        .await?;
    let mut rows = 0u64;
    let tables = tenant_tables(conn).await?;
    for table in &tables {
        // Names from the catalog, quoted; the secrets are removed by Postgres.
        let secrets: &[&str] = SECRETS
            .iter()
            .find(|(name, _)| name == table)
            .map_or(&[], |(_, columns)| columns);
        // The columns the role may read: a table that keeps a secret from the request role
        // grants the others by column (webhook endpoints' signing secrets).
        let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
        let columns: Vec<String> = sqlx::query_scalar(
            "select attname::text from pg_attribute
             where attrelid = $1::regclass and attnum > 0 and not attisdropped
               and has_column_privilege($1::regclass, attnum, 'SELECT')
             order by attnum",
        )
        .bind(quote(table))
        .fetch_all(&mut *conn)
        .await?;
        let columns: Vec<String> = columns.iter().map(|c| quote(c)).collect();
        let statement = format!(
            "select to_jsonb(t) - $1::text[] from (select {} from {}) t",
            columns.join(", "),
            quote(table)
        );
        let mut stream = sqlx::query_scalar::<_, Value>(&statement)
            .bind(secrets)
            .fetch(&mut *conn);
        while let Some(row) = stream.try_next().await? {
            let exported = ExportedRow {
                table: table.clone(),
                row,
            };
            if out.send(exported).await.is_err() {
                return Ok(rows);
            }
            rows += 1;
        }
    }
    audit::record(
        conn,
        Author::operator(operator, tenant_id),
        AuditEvent::new("tenant.exported", "tenant", tenant_id)
            .data(serde_json::json!({"tables": tables.len(), "rows": rows})),
    )
    .await?;
    Ok(rows)
}

/// What an erasure changed.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Erasure {
    pub users: u64,
    pub customers: u64,
    pub api_keys: u64,
    pub sessions: u64,
    pub refresh_tokens: u64,
    pub stored_answers: u64,
    pub audit_events: u64,
}

/// Erases the personal data of `tenant_id` (see the module documentation), in the caller's
/// transaction on the database owner's connection — the one that may update audit events'
/// personal data (under `tenantry.audit_maintenance` = 'erasure', which the append-only
/// trigger checks) and delete tokens. Safe to run twice.
pub async fn erase(
    conn: &mut PgConnection,
    operator: &Operator,
    tenant_id: TenantId,
) -> Result<Erasure, Error> {
    sqlx::query(
        "select set_config('app.tenant_id', $1, true),
                set_config('tenantry.audit_maintenance', 'erasure', true)",
    )
    .bind(tenant_id.to_string())
    .execute(&mut *conn)
    .await?;
    let mut erasure = Erasure::default();
    let mut run = async |statement: &str| -> Result<u64, Error> {
        Ok(sqlx::query(statement)
            .bind(tenant_id)
            .execute(&mut *conn)
            .await?
            .rows_affected())
    };
    // Every statement names the tenant as well: the owner may be a superuser, whom row
    // level security does not hold.
    erasure.users = run("update users
         set email = 'erased+' || id || '@erased.invalid', password_hash = '!erased',
             status = 'deactivated', version = version + 1, updated_at = now()
         where tenant_id = $1 and email not like 'erased+%@erased.invalid'")
    .await?;
    erasure.customers = run("update customers
         set email = 'erased+' || id || '@erased.invalid', name = 'Erased customer',
             erased_at = now(), version = version + 1, updated_at = now()
         where tenant_id = $1 and erased_at is null")
    .await?;
    erasure.api_keys = run("update api_keys
         set secret_hash = sha256(convert_to(gen_random_uuid()::text, 'UTF8')),
             name = 'erased', revoked_at = coalesce(revoked_at, now())
         where tenant_id = $1 and name <> 'erased'")
    .await?;
    erasure.sessions = run(
        "update sessions set revoked_at = now(), revoked_reason = 'erased'
         where tenant_id = $1 and revoked_at is null",
    )
    .await?;
    erasure.refresh_tokens = run("delete from refresh_tokens where tenant_id = $1").await?;
    run("update service_tokens set revoked_at = now()
         where tenant_id = $1 and revoked_at is null")
    .await?;
    erasure.stored_answers = run("delete from idempotency_keys where tenant_id = $1").await?;
    erasure.audit_events = run("update audit_events set personal = null
         where tenant_id = $1 and personal is not null")
    .await?;
    run(
        "update tenants set status = 'suspended', version = version + 1, updated_at = now()
         where id = $1 and status <> 'suspended'",
    )
    .await?;
    sqlx::query("select set_config('tenantry.audit_maintenance', '', true)")
        .execute(&mut *conn)
        .await?;
    let data = serde_json::to_value(&erasure).unwrap_or_default();
    audit::record(
        &mut *conn,
        Author::operator(operator, tenant_id),
        AuditEvent::new("tenant.erased", "tenant", tenant_id).data(data.clone()),
    )
    .await?;
    audit::record_on_platform(
        conn,
        operator,
        AuditEvent::new("tenant.erased", "tenant", tenant_id).data(data),
    )
    .await?;
    Ok(erasure)
}
