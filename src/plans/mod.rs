//! Plans and the limits they set: what a tenant may have (users, API keys, products,
//! webhook endpoints), what it may use per calendar month (orders, API calls), and how fast
//! (requests per second and burst, realtime connections).
//!
//! A plan is a name and a value for every [`LimitName`] (a number, or unlimited). `free`,
//! `pro` and `enterprise` are seeded; the operator creates and edits plans. A tenant is on
//! one plan, and the operator may override single limits for it ([`Overrides`]); its
//! effective limits ([`effective`]) are the plan's with the overrides on top.
//!
//! [`quota`] enforces them where resources are created and allowances used, exactly under
//! concurrency, and reports the 80 % and 100 % marks as they are crossed.

pub mod quota;

use std::{collections::BTreeMap, fmt};

use serde::{Deserialize, Serialize};
use sqlx::{FromRow, PgConnection};
use time::OffsetDateTime;
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        KnownFormat, ObjectBuilder, RefOr, Schema, SchemaFormat, Type,
        schema::{AdditionalProperties, SchemaType},
    },
};

use crate::{
    access::Operator,
    audit::{self, AuditEvent},
    error::Error,
    id::TenantId,
    rule::{self, TextRule, text_schema},
    versioning::ExpectedVersion,
};

/// A plan's name: 2-32 lowercase letters, digits and hyphens, starting with a letter.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct PlanName(String);

impl PlanName {
    pub const RULE: TextRule = TextRule {
        chars: 2..=32,
        pattern: Some("^[a-z][a-z0-9-]+$"),
        message: "must be 2-32 lowercase letters, digits or hyphens, starting with a letter",
        example: "pro",
        secret: false,
    };

    /// The plan a tenant is created on when none is named.
    pub fn default_plan() -> Self {
        Self("free".to_owned())
    }

    pub fn parse(value: &str) -> Result<Self, Error> {
        let ok = Self::RULE.fits(value)
            && value.starts_with(|c: char| c.is_ascii_lowercase())
            && value
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(Error::invalid("plan", Self::RULE.message))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PlanName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

text_schema!(PlanName, "PlanName", PlanName::RULE);

/// A plan's display name: 1-100 characters once trimmed, not all whitespace, no control
/// characters.
pub const DISPLAY_NAME_RULE: TextRule = TextRule {
    chars: 1..=100,
    pattern: Some(rule::PRINTABLE_TEXT),
    message: "must be 1-100 characters, not all whitespace, without control characters",
    example: "Team",
    secret: false,
};

/// The schema of a plan's display name ([`DISPLAY_NAME_RULE`]), for request fields.
pub struct PlanDisplayName;
text_schema!(PlanDisplayName, "PlanDisplayName", DISPLAY_NAME_RULE);

/// Every limit a plan sets.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum LimitName {
    /// Active users.
    Users,
    /// Live API keys (neither revoked nor expired).
    ApiKeys,
    /// Live products.
    Products,
    /// Orders placed per calendar month (UTC).
    OrdersPerMonth,
    /// API calls per calendar month (UTC).
    ApiCallsPerMonth,
    /// Sustained requests per second.
    RequestsPerSecond,
    /// Requests allowed in a burst above the sustained rate.
    RequestBurst,
    /// Realtime connections open at once.
    RealtimeConnections,
    /// Webhook endpoints.
    WebhookEndpoints,
}

/// How a limit is counted, which decides what refusing it means.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LimitKind {
    /// How many of something a tenant may have at once: exceeding it is 403.
    Count,
    /// How much a tenant may use per calendar month: exceeding it is 429 until the month
    /// ends.
    Monthly,
    /// A rate (enforced by the traffic layer).
    Rate,
}

impl LimitName {
    pub const ALL: [LimitName; 9] = [
        Self::Users,
        Self::ApiKeys,
        Self::Products,
        Self::OrdersPerMonth,
        Self::ApiCallsPerMonth,
        Self::RequestsPerSecond,
        Self::RequestBurst,
        Self::RealtimeConnections,
        Self::WebhookEndpoints,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Users => "users",
            Self::ApiKeys => "api_keys",
            Self::Products => "products",
            Self::OrdersPerMonth => "orders_per_month",
            Self::ApiCallsPerMonth => "api_calls_per_month",
            Self::RequestsPerSecond => "requests_per_second",
            Self::RequestBurst => "request_burst",
            Self::RealtimeConnections => "realtime_connections",
            Self::WebhookEndpoints => "webhook_endpoints",
        }
    }

    /// What the limit counts, for people.
    pub fn description(self) -> &'static str {
        match self {
            Self::Users => "Active users.",
            Self::ApiKeys => "Live API keys (neither revoked nor expired).",
            Self::Products => "Live products.",
            Self::OrdersPerMonth => "Orders placed per calendar month (UTC).",
            Self::ApiCallsPerMonth => "API calls per calendar month (UTC).",
            Self::RequestsPerSecond => "Sustained requests per second.",
            Self::RequestBurst => "Requests allowed in a burst above the sustained rate.",
            Self::RealtimeConnections => "Realtime connections open at once.",
            Self::WebhookEndpoints => "Webhook endpoints.",
        }
    }

    pub fn kind(self) -> LimitKind {
        match self {
            Self::Users
            | Self::ApiKeys
            | Self::Products
            | Self::WebhookEndpoints
            | Self::RealtimeConnections => LimitKind::Count,
            Self::OrdersPerMonth | Self::ApiCallsPerMonth => LimitKind::Monthly,
            Self::RequestsPerSecond | Self::RequestBurst => LimitKind::Rate,
        }
    }
}

impl fmt::Display for LimitName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A limit's value: a number, or `None` for unlimited.
pub type Limit = Option<u64>;

/// A value for every limit (a plan's, or a tenant's effective ones). Unknown names in the
/// stored JSON are ignored; a missing one is unlimited (the API requires every one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    pub users: Limit,
    pub api_keys: Limit,
    pub products: Limit,
    pub orders_per_month: Limit,
    pub api_calls_per_month: Limit,
    pub requests_per_second: Limit,
    pub request_burst: Limit,
    pub realtime_connections: Limit,
    pub webhook_endpoints: Limit,
}

impl Limits {
    pub fn get(&self, name: LimitName) -> Limit {
        match name {
            LimitName::Users => self.users,
            LimitName::ApiKeys => self.api_keys,
            LimitName::Products => self.products,
            LimitName::OrdersPerMonth => self.orders_per_month,
            LimitName::ApiCallsPerMonth => self.api_calls_per_month,
            LimitName::RequestsPerSecond => self.requests_per_second,
            LimitName::RequestBurst => self.request_burst,
            LimitName::RealtimeConnections => self.realtime_connections,
            LimitName::WebhookEndpoints => self.webhook_endpoints,
        }
    }

    fn set(&mut self, name: LimitName, value: Limit) {
        let slot = match name {
            LimitName::Users => &mut self.users,
            LimitName::ApiKeys => &mut self.api_keys,
            LimitName::Products => &mut self.products,
            LimitName::OrdersPerMonth => &mut self.orders_per_month,
            LimitName::ApiCallsPerMonth => &mut self.api_calls_per_month,
            LimitName::RequestsPerSecond => &mut self.requests_per_second,
            LimitName::RequestBurst => &mut self.request_burst,
            LimitName::RealtimeConnections => &mut self.realtime_connections,
            LimitName::WebhookEndpoints => &mut self.webhook_endpoints,
        };
        *slot = value;
    }

    /// These limits with `overrides` on top.
    pub fn with(mut self, overrides: &Overrides) -> Self {
        for (name, value) in &overrides.0 {
            self.set(*name, *value);
        }
        self
    }
}

/// The limits an operator set for one tenant in place of its plan's: a name with a number
/// or `null` (unlimited) replaces the plan's value; a name absent leaves it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Overrides(pub BTreeMap<LimitName, Limit>);

/// The schema of a set of limits, by name: each a non-negative integer or `null`
/// (unlimited); every name `required` or none; no other names.
fn limits_schema(required: bool, description: &str, example: serde_json::Value) -> Schema {
    let mut object = ObjectBuilder::new()
        .schema_type(SchemaType::Type(Type::Object))
        .description(Some(description))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .examples([example]);
    for name in LimitName::ALL {
        let value = ObjectBuilder::new()
            .schema_type(SchemaType::from_iter([Type::Integer, Type::Null]))
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
            .minimum(Some(0))
            .maximum(Some(i64::MAX))
            .description(Some(name.description()));
        object = object.property(name.as_str(), value);
        if required {
            object = object.required(name.as_str());
        }
    }
    Schema::Object(object.build())
}

impl PartialSchema for Limits {
    fn schema() -> RefOr<Schema> {
        limits_schema(
            true,
            "A value for every limit: a number, or null for unlimited.",
            serde_json::json!({"users": 5, "api_keys": 5, "products": 100,
                "orders_per_month": 1000, "api_calls_per_month": 100000,
                "requests_per_second": 10, "request_burst": 20, "realtime_connections": 5,
                "webhook_endpoints": 2}),
        )
        .into()
    }
}

impl ToSchema for Limits {}

impl PartialSchema for Overrides {
    fn schema() -> RefOr<Schema> {
        limits_schema(
            false,
            "Limits in place of the plan's: a number, or null for unlimited; a limit left \
             out is the plan's.",
            serde_json::json!({"users": 50, "orders_per_month": null}),
        )
        .into()
    }
}

impl ToSchema for Overrides {}

/// A plan as the operator API shows it.
#[derive(Debug, Clone, Serialize, ToSchema, FromRow)]
pub struct Plan {
    #[schema(value_type = String, example = "pro")]
    pub name: PlanName,
    #[schema(example = "Pro")]
    pub display_name: String,
    #[sqlx(json)]
    pub limits: Limits,
    #[schema(example = 1)]
    pub version: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

const PLAN_COLUMNS: &str = "name, display_name, limits, version, created_at, updated_at";

/// Every plan, by name.
#[tracing::instrument(skip_all)]
pub async fn list(conn: &mut PgConnection, _: &Operator) -> Result<Vec<Plan>, Error> {
    Ok(
        sqlx::query_as(&format!("select {PLAN_COLUMNS} from plans order by name"))
            .fetch_all(conn)
            .await?,
    )
}

/// One plan.
#[tracing::instrument(skip_all)]
pub async fn get(conn: &mut PgConnection, _: &Operator, name: &PlanName) -> Result<Plan, Error> {
    sqlx::query_as(&format!("select {PLAN_COLUMNS} from plans where name = $1"))
        .bind(name)
        .fetch_optional(conn)
        .await?
        .ok_or_else(|| Error::not_found("plan"))
}

/// A plan to create: a name, a display name and every limit.
pub struct NewPlan {
    pub name: PlanName,
    pub display_name: String,
    pub limits: Limits,
}

/// Creates a plan (409 `plan_exists` when the name is taken), recorded in the platform's
/// audit log.
#[tracing::instrument(skip_all)]
pub async fn create(
    conn: &mut PgConnection,
    operator: &Operator,
    new: NewPlan,
) -> Result<Plan, Error> {
    let display_name = display_name(&new.display_name)?;
    let limits = serde_json::to_value(&new.limits).map_err(anyhow::Error::from)?;
    let plan: Plan = sqlx::query_as(&format!(
        "insert into plans (name, display_name, limits) values ($1, $2, $3) returning {PLAN_COLUMNS}"
    ))
    .bind(&new.name)
    .bind(display_name)
    .bind(&limits)
    .fetch_one(&mut *conn)
    .await?;
    audit::record_on_platform(
        conn,
        operator,
        AuditEvent::new("plan.created", "plan", &plan.name)
            .data(serde_json::json!({"display_name": plan.display_name, "limits": limits})),
    )
    .await?;
    Ok(plan)
}

/// What the operator changes about a plan; `None` keeps it. `limits` replaces single
/// limits (a name with a number or `null`); names absent keep their value.
#[derive(Debug, Default)]
pub struct PlanChanges {
    pub display_name: Option<String>,
    pub limits: Option<Overrides>,
}

/// Changes a plan: every tenant on it has the new limits from its next request on.
#[tracing::instrument(skip_all)]
pub async fn update(
    conn: &mut PgConnection,
    operator: &Operator,
    name: &PlanName,
    expected: &ExpectedVersion,
    changes: PlanChanges,
) -> Result<Plan, Error> {
    let current: Plan = sqlx::query_as(&format!(
        "select {PLAN_COLUMNS} from plans where name = $1 for update"
    ))
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| Error::not_found("plan"))?;
    expected.check(current.version)?;
    let display_name = match &changes.display_name {
        Some(given) => display_name(given)?,
        None => current.display_name.clone(),
    };
    let limits = match &changes.limits {
        Some(changed) => current.limits.clone().with(changed),
        None => current.limits.clone(),
    };
    if display_name == current.display_name && limits == current.limits {
        return Ok(current);
    }
    let updated: Plan = sqlx::query_as(&format!(
        "update plans set display_name = $2, limits = $3, version = version + 1, updated_at = now()
         where name = $1 returning {PLAN_COLUMNS}"
    ))
    .bind(name)
    .bind(display_name)
    .bind(serde_json::to_value(&limits).map_err(anyhow::Error::from)?)
    .fetch_one(&mut *conn)
    .await?;
    let event = AuditEvent::new("plan.updated", "plan", name).diff(
        &serde_json::to_value(&current).map_err(anyhow::Error::from)?,
        &serde_json::to_value(&updated).map_err(anyhow::Error::from)?,
        &[],
    );
    audit::record_on_platform(conn, operator, event).await?;
    Ok(updated)
}

fn display_name(value: &str) -> Result<String, Error> {
    let name = value.trim();
    if !DISPLAY_NAME_RULE.fits(name) || !rule::is_printable_text(name) {
        return Err(Error::invalid("display_name", DISPLAY_NAME_RULE.message));
    }
    Ok(name.to_owned())
}

/// Refuses (422 `plan_not_found`, naming the plans there are) a plan that does not exist.
pub async fn ensure_exists(conn: &mut PgConnection, name: &PlanName) -> Result<(), Error> {
    let names: Vec<String> = sqlx::query_scalar("select name from plans order by name")
        .fetch_all(conn)
        .await?;
    if names.iter().any(|n| n == name.as_str()) {
        return Ok(());
    }
    Err(Error::refused_field(
        "plan_not_found",
        "plan",
        format!("no such plan; the plans are {}", names.join(", ")),
    ))
}

/// A tenant's plan, its overrides, and the effective limits.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TenantLimits {
    #[schema(value_type = String, example = "pro")]
    pub plan: PlanName,
    pub overrides: Overrides,
    pub limits: Limits,
}

/// The effective limits of `tenant_id`: its plan's with its overrides on top. Reads the
/// tenant row, so it runs in the tenant's transaction (or the platform's).
#[tracing::instrument(skip_all)]
pub async fn effective(
    conn: &mut PgConnection,
    tenant_id: TenantId,
) -> Result<TenantLimits, Error> {
    let (plan, limits, overrides): (
        PlanName,
        sqlx::types::Json<Limits>,
        sqlx::types::Json<Overrides>,
    ) = sqlx::query_as(
        "select t.plan, p.limits, t.limit_overrides
             from tenants t join plans p on p.name = t.plan where t.id = $1",
    )
    .bind(tenant_id)
    .fetch_optional(conn)
    .await?
    .ok_or_else(|| Error::not_found("tenant"))?;
    Ok(TenantLimits {
        plan,
        limits: limits.0.with(&overrides.0),
        overrides: overrides.0,
    })
}

/// Records a plan change in the log of `tenant_id` (whose limits it changes).
pub async fn record_override(
    conn: &mut PgConnection,
    operator: &Operator,
    tenant_id: TenantId,
    before: &Overrides,
    after: &Overrides,
) -> Result<(), Error> {
    audit::record(
        conn,
        audit::Author::operator(operator, tenant_id),
        AuditEvent::new("tenant.limits_overridden", "tenant", tenant_id)
            .data(serde_json::json!({"diff": {"limit_overrides": {"from": before, "to": after}}})),
    )
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_single_limits_and_null_means_unlimited() {
        let plan = Limits {
            users: Some(5),
            products: Some(100),
            ..Default::default()
        };
        let overrides: Overrides =
            serde_json::from_value(serde_json::json!({"users": 50, "products": null})).unwrap();
        let effective = plan.with(&overrides);
        assert_eq!(effective.users, Some(50));
        assert_eq!(effective.products, None);
        assert_eq!(effective.api_keys, None);
    }

    #[test]
    fn every_limit_has_its_wire_name() {
        for name in LimitName::ALL {
            assert_eq!(
                serde_json::to_value(name).unwrap(),
                serde_json::Value::from(name.as_str())
            );
        }
    }

    #[test]
    fn the_display_name_schema_admits_only_names_the_check_accepts() {
        crate::rule::conformance::schema_admits_only_what_parse_accepts(
            &DISPLAY_NAME_RULE,
            &[
                "Team",
                " Pro ",
                "",
                " ",
                "a\tb",
                &"n".repeat(100),
                &"n".repeat(101),
            ],
            |value| display_name(value).is_ok(),
        );
    }

    #[test]
    fn the_plan_name_schema_admits_only_names_parse_accepts() {
        crate::rule::conformance::schema_admits_only_what_parse_accepts(
            &PlanName::RULE,
            &[
                "free",
                "pro",
                "team-2",
                "2x",
                "-a",
                "a",
                "Pro",
                &"p".repeat(32),
                &"p".repeat(33),
            ],
            |value| PlanName::parse(value).is_ok(),
        );
    }
}
