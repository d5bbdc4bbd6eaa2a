//! `/v1/platform/tenants/{tenant_id}/export`: every row a tenant owns, for the operator.

use axum::{extract::State, response::Response};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    access::Operator,
    data_rights,
    db::{Access, table},
    error::Error,
    http::{AppState, extract::ApiPath, streaming},
    tenancy::{Tenant, TenantId},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(export_tenant))
}

/// One line of a tenant's export.
#[derive(Serialize, ToSchema)]
#[schema(example = json!({"table": "customers", "row": {"tenant_id": "0193a4f2-8f7e-7c55-b0e4-4b3f1e9d2a61",
    "id": "0193a4f2-8f7e-7c55-b0e4-4b3f1e9d2a62", "email": "grace@example.test", "name": "Grace Hopper",
    "version": 1, "created_at": "2026-11-02T09:30:00+00:00", "updated_at": "2026-11-02T09:30:00+00:00",
    "erased_at": null}}))]
pub struct ExportLine {
    /// The table the row is from (`tenants` first, then the others by name).
    pub table: String,
    /// The row, column by column; secrets (password, key and token hashes) left out.
    #[schema(value_type = Object)]
    pub row: serde_json::Value,
}

/// Every row the tenant owns, table by table, one JSON object per line, from one
/// consistent snapshot: the tenant's copy of its data (`tenantry tenant export` writes
/// the same). Secrets are left out. Streamed as it is read; recorded in the tenant's audit
/// log (`tenant.exported`) once complete.
#[utoipa::path(
    get, path = "/v1/platform/tenants/{tenant_id}/export", tag = "platform",
    params(("tenant_id" = TenantId, Path, description = "Tenant id")),
    security(("operator" = [])),
    responses(
        (status = 200, description = "The tenant's rows, one per line", content((ExportLine = "application/x-ndjson"))),
    )
)]
pub async fn export_tenant(
    State(state): State<AppState>,
    operator: Operator,
    ApiPath(id): ApiPath<TenantId>,
) -> Result<Response, Error> {
    state
        .db
        .in_platform(async |tx| table::get::<Tenant>(tx, id).await)
        .await?;
    let (rows, receiver) = tokio::sync::mpsc::channel(64);
    tokio::spawn(async move {
        let exported = async {
            let mut tx = state
                .db
                .tenant_for_operator(&operator, id, Access::Snapshot)
                .await?;
            data_rights::export(&mut tx, &operator, id, &rows).await?;
            tx.commit().await
        };
        if let Err(error) = exported.await {
            tracing::warn!(%error, "the tenant export ended early");
        }
    });
    Ok(streaming::lines(
        receiver,
        Vec::new(),
        streaming::ndjson_line,
        streaming::NDJSON,
    ))
}
