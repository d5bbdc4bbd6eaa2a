//! A tenant's quotas at a glance (`GET /v1/quotas`): every limit of its plan, with its own
//! overrides applied, what the tenant uses of it now, and when a monthly allowance resets.
//!
//! It reads what each capability counts (users, API keys, products, webhook endpoints)
//! through that
//! capability's own store, and the monthly allowances from `plans::quota` (API calls as of
//! the usage meter's last flush, a few seconds behind); a limit whose use nothing measures
//! yet (rates, realtime connections) shows its value with `used` null.

use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::{
    access::{Principal, Scope},
    api_keys,
    catalog::products,
    db::TenantTx,
    error::Error,
    plans::{self, LimitKind, LimitName, quota},
    users, webhooks,
};

/// One limit and its use.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"name": "orders_per_month", "kind": "monthly", "limit": 1000,
    "used": 812, "remaining": 188, "resets_at": "2027-01-01T00:00:00Z"}))]
pub struct Quota {
    pub name: LimitName,
    pub kind: LimitKind,
    /// `null`: unlimited.
    pub limit: Option<u64>,
    /// `null` where use is not measured (rates, realtime connections, webhooks).
    pub used: Option<u64>,
    /// `limit - used`, when both are known.
    pub remaining: Option<u64>,
    /// When a monthly allowance starts again (the next first of the month, UTC).
    #[serde(with = "time::serde::rfc3339::option")]
    pub resets_at: Option<OffsetDateTime>,
}

/// The tenant's plan and every limit with its use.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Quotas {
    #[schema(value_type = String, example = "free")]
    pub plan: plans::PlanName,
    /// The limits the operator set for this tenant in place of its plan's.
    pub overrides: plans::Overrides,
    pub quotas: Vec<Quota>,
}

/// The caller's tenant's quotas (`usage:read`).
pub async fn overview(tx: &mut TenantTx, principal: &Principal) -> Result<Quotas, Error> {
    principal.require(Scope::UsageRead)?;
    let tenant_id = principal.tenant_id();
    let limits = plans::effective(tx, tenant_id).await?;
    let now = OffsetDateTime::now_utc();
    let mut quotas = Vec::new();
    for name in LimitName::ALL {
        let counted = |rows: i64| Some(u64::try_from(rows).unwrap_or(0));
        let used = match name {
            LimitName::Users => counted(users::store::count_active(tx).await?),
            LimitName::ApiKeys => counted(api_keys::store::count_live(tx).await?),
            LimitName::Products => counted(products::store::count_live(tx).await?),
            LimitName::WebhookEndpoints => counted(webhooks::count_live(tx).await?),
            LimitName::OrdersPerMonth | LimitName::ApiCallsPerMonth => {
                Some(quota::used_this_month(tx, tenant_id, name).await?)
            }
            _ => None,
        };
        let limit = limits.limits.get(name);
        quotas.push(Quota {
            name,
            kind: name.kind(),
            limit,
            used,
            remaining: limit
                .zip(used)
                .map(|(limit, used)| limit.saturating_sub(used)),
            resets_at: (name.kind() == LimitKind::Monthly).then(|| quota::next_month(now)),
        });
    }
    Ok(Quotas {
        plan: limits.plan,
        overrides: limits.overrides,
        quotas,
    })
}
