//! Billing: the usage of a period as lines a billing system can import, and closing a
//! period so that it never changes again.
//!
//! A line is one tenant × metric (× currency, for order value) × period, with its
//! quantity, unit and the tenant's plan. Every tenant that existed during the period (or
//! has usage billed in it) gets a line for each metric (zero when unused), and one for
//! each currency it sold in. A
//! line's id is derived from what it is about (period, tenant, metric, currency), so it is
//! the same in every export of the period: a billing system de-duplicates on it, and an
//! open period's line is replaced by the same line of a later export.
//!
//! Usage is written unbilled. [`close`] bills the period's unbilled usage (its month's,
//! and late usage of the closed months just before it), freezes its lines
//! (`billing_lines`), and every later export of it reads them, byte for byte the same.
//! Usage that arrives after the close — an API-call flush carrying the period's last
//! seconds, say — is a new unbilled count, which the next open period bills, never the
//! closed one. A period can be closed once it has ended, by the usage clock.
//!
//! Both run as the platform role, and stream: the rows come from the database as they are
//! written out, so memory does not grow with the number of tenants.

use std::fmt;

use futures_util::TryStreamExt;
use serde::Serialize;
use sqlx::{FromRow, PgConnection};
use time::{Date, Month, OffsetDateTime};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    access::Operator,
    audit::{self, AuditEvent},
    clock::Clock,
    error::Error,
    id::TenantId,
    usage::Metric,
};

/// A calendar month (UTC): `2026-11`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period(Date);

impl Period {
    /// `YYYY-MM`; `field` names the argument in the error.
    pub fn parse(text: &str, field: &str) -> Result<Self, Error> {
        let invalid = || Error::invalid(field, "must be a month such as 2026-11 (YYYY-MM)");
        let (year, month) = text.split_once('-').ok_or_else(invalid)?;
        if year.len() != 4 || month.len() != 2 {
            return Err(invalid());
        }
        let year: i32 = year.parse().map_err(|_| invalid())?;
        let month: u8 = month.parse().map_err(|_| invalid())?;
        let month = Month::try_from(month).map_err(|_| invalid())?;
        Date::from_calendar_date(year, month, 1)
            .map(Self)
            .map_err(|_| invalid())
    }

    pub fn first_day(self) -> Date {
        self.0
    }

    /// The instant the period ends: the first moment of the next month (UTC).
    pub fn end(self) -> OffsetDateTime {
        crate::plans::quota::next_month(self.0.midnight().assume_utc())
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04}-{:02}", self.0.year(), u8::from(self.0.month()))
    }
}

/// How lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// One JSON object per line.
    #[default]
    Jsonl,
    /// Comma-separated, with a header row.
    Csv,
}

impl Format {
    pub fn parse(text: &str) -> Result<Self, Error> {
        match text {
            "jsonl" => Ok(Self::Jsonl),
            "csv" => Ok(Self::Csv),
            _ => Err(Error::invalid("format", "must be csv or jsonl")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Jsonl => "jsonl",
            Self::Csv => "csv",
        }
    }

    pub fn media_type(self) -> &'static str {
        match self {
            Self::Jsonl => "application/x-ndjson",
            Self::Csv => "text/csv; charset=utf-8",
        }
    }

    /// What comes before the first line: the CSV header row.
    pub fn header(self) -> Vec<u8> {
        match self {
            Self::Jsonl => Vec::new(),
            Self::Csv => {
                b"line_id,period,tenant_id,tenant,plan,metric,currency,quantity,unit,status\n"
                    .to_vec()
            }
        }
    }

    /// One line, with its line break.
    pub fn encode(self, line: &Line) -> Vec<u8> {
        match self {
            Self::Jsonl => {
                let mut out = serde_json::to_vec(line).unwrap_or_default();
                out.push(b'\n');
                out
            }
            Self::Csv => {
                let mut writer = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(Vec::new());
                // Writing to memory cannot fail, and every field is plain text.
                let _ = writer.serialize(line);
                writer.into_inner().unwrap_or_default()
            }
        }
    }
}

/// Whether a line may still change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// The period is open: usage may still be added.
    Open,
    /// The period is closed: this is final.
    Closed,
}

/// One billing line.
#[derive(Debug, Clone, Serialize, ToSchema, FromRow)]
#[schema(example = json!({"line_id": "5c1f0a6e-93a4-2b7d-8e3f-0d41c2f6a9b7", "period": "2026-11",
    "tenant_id": "0193a4f2-8f7e-7c55-b0e4-4b3f1e9d2a61", "tenant": "acme", "plan": "pro",
    "metric": "order_value", "currency": "EUR", "quantity": 1250000, "unit": "minor_unit",
    "status": "closed"}))]
pub struct Line {
    /// The same for this tenant, metric, currency and period in every export.
    pub line_id: Uuid,
    pub period: String,
    pub tenant_id: Uuid,
    /// The tenant's slug.
    pub tenant: String,
    /// The tenant's plan (at the close, for a closed period).
    pub plan: String,
    #[schema(value_type = Metric)]
    pub metric: String,
    /// The currency of `order_value` lines (ISO 4217); empty otherwise.
    pub currency: Option<String>,
    pub quantity: i64,
    /// `call`, `order`, `minor_unit` (of `currency`), `user`, `minute`, `delivery`.
    pub unit: String,
    #[sqlx(skip)]
    pub status: Option<Status>,
}

/// A closed period.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Closed {
    pub period: String,
    #[serde(with = "time::serde::rfc3339")]
    pub closed_at: OffsetDateTime,
    pub lines: i64,
    /// False when the period had been closed already (this close changed nothing).
    pub newly_closed: bool,
}

/// What a close waits on: every writer of usage holds ROW EXCLUSIVE on `usage_counters`
/// until it commits (writers of `usage_active_users` write `usage_counters` first in their
/// transaction), which this mode waits for and holds back until the close commits; it also
/// conflicts with itself, so closes run one at a time. A writer held back writes its counts
/// unbilled afterwards, for the next close.
const CLOSE_LOCK: &str = "lock table usage_counters in share row exclusive mode";

/// The lines of a period computed from its usage: the counts it billed (`period` = `$1`,
/// once closed) and, while it is open, the unbilled counts of its window (the months up to
/// it that are closed, whose late usage it bills, and itself). `$2` is the tenant or null
/// for all, `$3` and `$4` the metrics every tenant gets a line for and their units.
const LIVE_LINES: &str = "
    with usage_window as (
        select billing_window_start($1::date) as from_hour,
               ($1::date + interval '1 month')::timestamp at time zone 'UTC' as to_hour
    ), used as (
        select u.tenant_id, u.metric,
               case when u.metric = 'order_value' then u.dimensions ->> 'currency' end
                   as currency,
               sum(u.quantity)::bigint as quantity
        from usage_counters u, usage_window w
        where (u.period = $1::date
               or (u.period = 'infinity' and u.hour >= w.from_hour and u.hour < w.to_hour))
          and ($2::uuid is null or u.tenant_id = $2)
        group by 1, 2, 3
        union all
        select a.tenant_id, 'active_users', null, count(distinct a.user_id)
        from usage_active_users a, usage_window w
        where (a.period = $1::date
               or (a.period = 'infinity' and a.hour >= w.from_hour and a.hour < w.to_hour))
          and ($2::uuid is null or a.tenant_id = $2)
        group by 1
    )
    select md5(concat_ws('/', 'tenantry-billing-line', to_char($1::date, 'YYYY-MM'), t.id,
                         m.metric, coalesce(u.currency, '')))::uuid as line_id,
           to_char($1::date, 'YYYY-MM') as period, t.id as tenant_id, t.slug as tenant,
           t.plan, m.metric, u.currency, coalesce(u.quantity, 0) as quantity, m.unit
    from tenants t
    cross join unnest($3::text[], $4::text[]) as m (metric, unit)
    left join used u on u.tenant_id = t.id and u.metric = m.metric
    left join (select distinct tenant_id from used) as active on active.tenant_id = t.id
    where t.id <> '00000000-0000-0000-0000-000000000001'
      and (t.created_at < ($1::date + interval '1 month') or active.tenant_id is not null)
      and ($2::uuid is null or t.id = $2)
      and not (m.metric = 'order_value' and u.quantity is null)
    order by t.slug, m.metric, u.currency nulls first";

/// A closed period's frozen lines, in the same order.
const FROZEN_LINES: &str = "
    select line_id, to_char(period, 'YYYY-MM') as period, tenant_id, tenant_slug as tenant,
           plan, metric, currency, quantity, unit
    from billing_lines
    where period = $1::date and ($2::uuid is null or tenant_id = $2)
    order by tenant_slug, metric, currency nulls first";

fn metrics_and_units() -> (Vec<&'static str>, Vec<&'static str>) {
    Metric::ALL.iter().map(|m| (m.as_str(), m.unit())).unzip()
}

/// Whether `period` is closed.
pub async fn is_closed(conn: &mut PgConnection, period: Period) -> Result<bool, Error> {
    Ok(
        sqlx::query_scalar("select exists (select from billing_periods where period = $1)")
            .bind(period.first_day())
            .fetch_one(conn)
            .await?,
    )
}

/// Streams the lines of `period` (of one tenant, or all) to `out`, in the platform
/// transaction `conn`, and records the export in the platform's audit log; returns how
/// many lines it sent. It stops early, recording nothing, when the receiver goes away.
pub async fn export(
    conn: &mut PgConnection,
    operator: &Operator,
    period: Period,
    tenant: Option<TenantId>,
    format: Format,
    out: &tokio::sync::mpsc::Sender<Line>,
) -> Result<u64, Error> {
    // One snapshot for the whole export, so it is one consistent picture of the period;
    // and time to stream it to a slow reader (the roles' statement timeout is for requests).
    sqlx::query("set transaction isolation level repeatable read")
        .execute(&mut *conn)
        .await?;
    sqlx::query("set local statement_timeout = '15min'")
        .execute(&mut *conn)
        .await?;
    let closed = is_closed(conn, period).await?;
    let (metrics, units) = metrics_and_units();
    let status = if closed { Status::Closed } else { Status::Open };
    let mut count = 0u64;
    {
        let query = if closed {
            sqlx::query_as::<_, Line>(FROZEN_LINES)
                .bind(period.first_day())
                .bind(tenant)
        } else {
            sqlx::query_as::<_, Line>(LIVE_LINES)
                .bind(period.first_day())
                .bind(tenant)
                .bind(&metrics)
                .bind(&units)
        };
        let mut rows = query.fetch(&mut *conn);
        while let Some(mut line) = rows.try_next().await? {
            line.status = Some(status);
            if out.send(line).await.is_err() {
                return Ok(count);
            }
            count += 1;
        }
    }
    audit::record_on_platform(
        conn,
        operator,
        AuditEvent::new("billing.exported", "billing_period", period).data(serde_json::json!({
            "period": period.to_string(), "format": format.as_str(),
            "tenant_id": tenant, "lines": count, "status": status,
        })),
    )
    .await?;
    Ok(count)
}

/// Closes `period`: refuses (409 `period_not_ended`) until it has ended by `clock`; waits
/// for the usage writers under way, freezes its lines, and records the close in the
/// platform's audit log. Closing a closed period changes nothing and says so.
pub async fn close(
    conn: &mut PgConnection,
    operator: &Operator,
    clock: &Clock,
    period: Period,
) -> Result<Closed, Error> {
    let now = clock.now();
    if now < period.end() {
        return Err(Error::conflict(
            "period_not_ended",
            format!(
                "the period {period} ends at {}; it can be closed after that",
                period.end().date()
            ),
        ));
    }
    sqlx::query(CLOSE_LOCK).execute(&mut *conn).await?;
    let existing: Option<(OffsetDateTime, i64)> =
        sqlx::query_as("select closed_at, lines from billing_periods where period = $1")
            .bind(period.first_day())
            .fetch_optional(&mut *conn)
            .await?;
    if let Some((closed_at, lines)) = existing {
        return Ok(Closed {
            period: period.to_string(),
            closed_at,
            lines,
            newly_closed: false,
        });
    }
    sqlx::query("insert into billing_periods (period, closed_at, lines) values ($1, $2, 0)")
        .bind(period.first_day())
        .bind(now)
        .execute(&mut *conn)
        .await?;
    // Bill the period's unbilled usage: from now on nothing is added to these counts.
    for table in ["usage_counters", "usage_active_users"] {
        sqlx::query(&format!(
            "update {table} set period = $1
             where period = 'infinity'
               and hour >= billing_window_start($1)
               and hour < ($1 + interval '1 month')::timestamp at time zone 'UTC'"
        ))
        .bind(period.first_day())
        .execute(&mut *conn)
        .await?;
    }
    let (metrics, units) = metrics_and_units();
    let lines = sqlx::query(&format!(
        "insert into billing_lines (line_id, period, tenant_id, tenant_slug, plan, metric,
                                    currency, quantity, unit)
         select line_id, $1, tenant_id, tenant, plan, metric, currency, quantity, unit
         from ({LIVE_LINES}) as live"
    ))
    .bind(period.first_day())
    .bind(None::<TenantId>)
    .bind(&metrics)
    .bind(&units)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    let lines = i64::try_from(lines).unwrap_or(i64::MAX);
    sqlx::query("update billing_periods set lines = $2 where period = $1")
        .bind(period.first_day())
        .bind(lines)
        .execute(&mut *conn)
        .await?;
    audit::record_on_platform(
        conn,
        operator,
        AuditEvent::new("billing.period_closed", "billing_period", period)
            .data(serde_json::json!({"period": period.to_string(), "lines": lines})),
    )
    .await?;
    Ok(Closed {
        period: period.to_string(),
        closed_at: now,
        lines,
        newly_closed: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_is_a_month_written_yyyy_mm() {
        let period = Period::parse("2026-11", "period").unwrap();
        assert_eq!(period.to_string(), "2026-11");
        assert_eq!(period.end(), time::macros::datetime!(2026-12-01 0:00 UTC));
        for bad in [
            "2026-13",
            "2026-1",
            "26-11",
            "2026/11",
            "2026-11-01",
            "",
            "november",
        ] {
            assert!(Period::parse(bad, "period").is_err(), "{bad}");
        }
    }

    #[test]
    fn csv_lines_quote_what_needs_quoting_and_match_the_header() {
        let line = Line {
            line_id: Uuid::nil(),
            period: "2026-11".into(),
            tenant_id: Uuid::nil(),
            tenant: "acme".into(),
            plan: "pro".into(),
            metric: "order_value".into(),
            currency: Some("EUR".into()),
            quantity: 1250,
            unit: "minor_unit".into(),
            status: Some(Status::Closed),
        };
        let csv = String::from_utf8(Format::Csv.encode(&line)).unwrap();
        assert_eq!(
            csv,
            "00000000-0000-0000-0000-000000000000,2026-11,00000000-0000-0000-0000-000000000000,acme,pro,order_value,EUR,1250,minor_unit,closed\n"
        );
        let header = String::from_utf8(Format::Csv.header()).unwrap();
        assert_eq!(header.split(',').count(), csv.split(',').count());
        let json: serde_json::Value = serde_json::from_slice(&Format::Jsonl.encode(&line)).unwrap();
        assert_eq!(json["quantity"], 1250);
        assert_eq!(json["status"], "closed");
    }
}
