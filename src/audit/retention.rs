//! Retention: removing the oldest part of a tenant's audit log, the one change to it the
//! append-only trigger allows besides erasure (`tenantry.audit_maintenance` = 'retention').
//!
//! [`prune`] deletes the events of the longest prefix of the tenant's chain whose events
//! all happened before a cut-off, and moves the tenant's retention horizon
//! (`audit_retention`) to that prefix's last link. The links themselves stay — 32-byte
//! hashes — so the chain from its first link to its head still verifies
//! (`chain::verify` checks a pruned link as a link, and counts it as `pruned`); an event
//! missing beyond the horizon is still `event_missing`. Unsealed events are never pruned.
//! The prune is recorded in the tenant's log (`audit.pruned`), which the chain then covers.

use serde::Serialize;
use sqlx::PgConnection;
use time::OffsetDateTime;

use super::{AuditEvent, Author};
use crate::{access::Operator, error::Error, id::TenantId};

/// What a prune did.
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    /// The tenant's retention horizon now (0: nothing pruned, ever).
    pub through_link: i64,
    /// Events deleted by this prune.
    pub events: u64,
}

/// Prunes `tenant_id`'s audit events that happened before `before` (see the module
/// documentation), in the caller's transaction on the database owner's connection — the
/// one that may delete audit events, under the retention job's setting.
pub async fn prune(
    conn: &mut PgConnection,
    operator: &Operator,
    tenant_id: TenantId,
    before: OffsetDateTime,
) -> Result<Pruned, Error> {
    sqlx::query(
        "select set_config('app.tenant_id', $1, true),
                set_config('tenantry.audit_maintenance', 'retention', true)",
    )
    .bind(tenant_id.to_string())
    .execute(&mut *conn)
    .await?;
    // The last link of the longest prefix whose events are all older than the cut-off:
    // just before the first link whose event is newer (or still there and newer), else the
    // head. Every statement names the tenant: the owner may be a superuser.
    let through_link: i64 = sqlx::query_scalar(
        "select greatest(
             coalesce((select through_link from audit_retention where tenant_id = $1), 0),
             coalesce(
                 (select min(c.link) - 1 from audit_chain c
                  join audit_events e on e.tenant_id = c.tenant_id and e.id = c.event_id
                  where c.tenant_id = $1 and e.occurred_at >= $2),
                 (select max(link) from audit_chain where tenant_id = $1),
                 0))",
    )
    .bind(tenant_id)
    .bind(before)
    .fetch_one(&mut *conn)
    .await?;
    let mut pruned = Pruned {
        through_link,
        events: 0,
    };
    if through_link > 0 {
        pruned.events = sqlx::query(
            "delete from audit_events e using audit_chain c
             where c.tenant_id = $1 and c.link <= $2
               and e.tenant_id = c.tenant_id and e.id = c.event_id",
        )
        .bind(tenant_id)
        .bind(through_link)
        .execute(&mut *conn)
        .await?
        .rows_affected();
        sqlx::query(
            "insert into audit_retention (tenant_id, through_link) values ($1, $2)
             on conflict (tenant_id) do update
             set through_link = excluded.through_link, pruned_at = now()",
        )
        .bind(tenant_id)
        .bind(through_link)
        .execute(&mut *conn)
        .await?;
    }
    sqlx::query("select set_config('tenantry.audit_maintenance', '', true)")
        .execute(&mut *conn)
        .await?;
    if pruned.events > 0 {
        super::record(
            conn,
            Author::operator(operator, tenant_id),
            AuditEvent::new("audit.pruned", "tenant", tenant_id).data(serde_json::json!({
                "before": before.format(&time::format_description::well_known::Rfc3339)
                    .unwrap_or_default(),
                "through_link": pruned.through_link,
                "events": pruned.events,
            })),
        )
        .await?;
    }
    Ok(pruned)
}
