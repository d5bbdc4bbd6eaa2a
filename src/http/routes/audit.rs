//! `/v1/audit-events`: the tenant's audit log — a page at a time, or streamed whole as
//! NDJSON — and the verification of its hash chain.

use axum::{
    Json,
    extract::State,
    http::{HeaderMap, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use time::OffsetDateTime;
use utoipa::IntoParams;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::{
    access::{Operator, Principal, scope},
    audit::{
        self,
        chain::{self, Verification},
        log::{self, AuditRecord, Filter},
    },
    db::Access,
    error::Error,
    http::{
        AppState,
        auth::Authorized,
        extract::ApiQuery,
        streaming::{self, NDJSON},
    },
    page::{Cursor, Page, PageRequest},
};

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_audit_events))
        .routes(routes!(verify_audit_events))
        .routes(routes!(list_platform_audit_events))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AuditQuery {
    /// Only this actor's events (`user:<id>`, `api_key:<id>`, `service:<name>`,
    /// `operator`, `anonymous`).
    #[param(
        min_length = 1,
        max_length = 200,
        pattern = "^[^\\u0000]*$",
        example = "operator"
    )]
    pub actor: Option<String>,
    /// Only this action (`user.created`, `order.paid`, `auth.login_failed`, …).
    #[param(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000]*$",
        example = "order.paid"
    )]
    pub action: Option<String>,
    /// Only events about this kind of resource (`user`, `order`, `api_key`, …).
    #[param(
        min_length = 1,
        max_length = 100,
        pattern = "^[^\\u0000]*$",
        example = "order"
    )]
    pub target_type: Option<String>,
    /// Only events about this resource.
    #[param(min_length = 1, max_length = 200, pattern = "^[^\\u0000]*$")]
    pub target_id: Option<String>,
    /// Events at or after this time (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub from: Option<OffsetDateTime>,
    /// Events before this time (RFC 3339).
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub to: Option<OffsetDateTime>,
    /// Items per page, 1-200 (default 50); ignored by an NDJSON export.
    #[param(minimum = 1, maximum = 200, example = 50)]
    pub limit: Option<u32>,
    #[param(value_type = Option<Cursor>)]
    pub cursor: Option<String>,
}

impl AuditQuery {
    /// The filter, once each text parameter is within the bounds the spec publishes.
    fn filter(&self) -> Result<Filter, Error> {
        let text = |name: &str, value: &Option<String>, max: usize| match value {
            Some(value) if value.is_empty() || value.chars().count() > max => {
                Err(Error::malformed(
                    "invalid_query",
                    format!("invalid query parameter {name}: must be 1-{max} characters"),
                ))
            }
            value => Ok(value.clone()),
        };
        Ok(Filter {
            actor: text("actor", &self.actor, 200)?,
            action: text("action", &self.action, 100)?,
            target_type: text("target_type", &self.target_type, 100)?,
            target_id: text("target_id", &self.target_id, 200)?,
            from: self.from,
            to: self.to,
        })
    }
}

/// The tenant's audit events, newest first, filtered by actor, action, target and time.
/// Every mutation is here, written in the same transaction as the change: who (actor and
/// credential), what (action, target, details with a before/after `diff`), the request ids,
/// and the personal data (client address, user agent, emails) apart, where it can be
/// erased. Send `Accept: application/x-ndjson` to stream every matching event, one per
/// line, instead of a page.
#[utoipa::path(
    get, path = "/v1/audit-events", tag = "audit",
    params(AuditQuery),
    security(("bearer" = ["audit:read"]), ("api_key" = ["audit:read"])),
    responses(
        (status = 200, description = "A page of events, or with `Accept: application/x-ndjson` every matching event, one JSON object per line",
            content(
                (Page<AuditRecord> = "application/json"),
                (AuditRecord = "application/x-ndjson"),
            )),
    )
)]
pub async fn list_audit_events(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::AuditRead>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Response, Error> {
    let filter = query.filter()?;
    if wants_ndjson(&headers) {
        return Ok(stream_ndjson(state, principal, filter));
    }
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let events = state
        .db
        .read(&principal, async |tx| {
            log::list(tx, &principal, &filter, page).await
        })
        .await?;
    Ok(Json(events).into_response())
}

fn wants_ndjson(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|media| media.split(';').next().unwrap_or("").trim() == NDJSON)
}

/// Streams the export as it is read (`http::streaming`).
fn stream_ndjson(state: AppState, principal: Principal, filter: Filter) -> Response {
    let (records, receiver) = tokio::sync::mpsc::channel::<AuditRecord>(64);
    tokio::spawn(async move {
        let exported = async {
            let mut tx = state.db.tenant(&principal, Access::ReadOnly).await?;
            log::export(&mut tx, &principal, &filter, &records).await?;
            tx.commit().await?;
            Ok::<_, Error>(())
        };
        if let Err(error) = exported.await {
            tracing::warn!(%error, "the audit export ended early");
        }
    });
    streaming::lines(receiver, Vec::new(), streaming::ndjson_line, NDJSON)
}

/// Recomputes the tenant's audit chain from its events as they are now and reports the
/// first link that does not hold: an event changed (`event_altered`), its personal data
/// changed (`personal_data_altered`), an event deleted (`event_missing`), a link changed
/// (`chain_altered`) or removed (`link_missing`). Events written within the last sealing
/// interval are not chained yet (`unsealed`). Keep the `head` hash elsewhere to detect a
/// rewrite of the whole chain.
#[utoipa::path(
    get, path = "/v1/audit-events/verify", tag = "audit",
    security(("bearer" = ["audit:read"]), ("api_key" = ["audit:read"])),
    responses((status = 200, description = "The verification; `verified` is false and `broken` names the first bad link when the chain does not hold", body = Verification))
)]
pub async fn verify_audit_events(
    State(state): State<AppState>,
    Authorized(principal, ..): Authorized<scope::AuditRead>,
) -> Result<Json<Verification>, Error> {
    let verification = state
        .db
        .read(&principal, async |tx| {
            chain::verify_for(tx, &principal).await
        })
        .await?;
    Ok(Json(verification))
}

/// The platform's own audit log, newest first, with the same filters and cursor as a
/// tenant's: what belongs to no tenant — plans created and changed, billing periods closed
/// and exported, tenants erased. Chained and verified like a tenant's
/// (`tenantry audit verify --tenant platform`).
#[utoipa::path(
    get, path = "/v1/platform/audit-events", tag = "platform",
    params(AuditQuery),
    security(("operator" = [])),
    responses((status = 200, description = "A page of the platform's audit events", body = Page<AuditRecord>))
)]
pub async fn list_platform_audit_events(
    State(state): State<AppState>,
    operator: Operator,
    ApiQuery(query): ApiQuery<AuditQuery>,
) -> Result<Json<Page<AuditRecord>>, Error> {
    let filter = query.filter()?;
    let page = PageRequest::parse(query.limit, query.cursor.as_deref())?;
    let mut tx = state
        .db
        .tenant_for_operator(&operator, audit::platform_log(), Access::ReadOnly)
        .await?;
    let events = log::list_platform(&mut tx, &operator, &filter, page).await?;
    tx.commit().await?;
    Ok(Json(events))
}
