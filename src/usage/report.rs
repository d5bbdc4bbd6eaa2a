//! A tenant's usage over a span, bucketed by hour, day or month (`GET /v1/usage`): one
//! series per metric and dimensions, each with its non-empty buckets and its total.
//! It reads under the tenant's RLS context like every tenant read, so a tenant sees its own
//! usage and nothing else. Buckets are UTC; the usage of a bucket cut by `from` or `to` is
//! the part inside the span.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::{Duration, OffsetDateTime};
use utoipa::ToSchema;

use super::Metric;
use crate::{
    access::{Principal, Scope},
    db::TenantTx,
    error::Error,
    plans::quota,
};

/// How usage is bucketed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Granularity {
    Hour,
    #[default]
    Day,
    Month,
}

impl Granularity {
    fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Month => "month",
        }
    }

    /// The longest span a request may ask for at this granularity.
    fn max_span(self) -> Duration {
        match self {
            Self::Hour => Duration::days(31),
            Self::Day => Duration::days(366),
            Self::Month => Duration::days(366 * 10),
        }
    }
}

/// What to report.
#[derive(Debug, Clone)]
pub struct Span {
    pub from: Option<OffsetDateTime>,
    pub to: Option<OffsetDateTime>,
    pub granularity: Granularity,
    pub metric: Option<Metric>,
}

/// One bucket's usage.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Point {
    /// The start of the bucket (UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub start: OffsetDateTime,
    pub quantity: i64,
}

/// A metric with one set of dimensions over the span.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"metric": "api_calls", "unit": "call",
    "dimensions": {"credential": "api_key:0192f0c5-7a6e-7cc3-9f7e-3b5c3f1d2a10",
                   "route_group": "orders", "status_class": "2xx"},
    "total": 1520, "points": [{"start": "2026-11-02T00:00:00Z", "quantity": 1520}]}))]
pub struct Series {
    pub metric: Metric,
    /// What a quantity counts (`call`, `order`, `minor_unit` of `dimensions.currency`, …).
    pub unit: &'static str,
    /// `api_calls`: `credential` (`api_key:<id>`, `user:<id>`, `service_token:<jti>`),
    /// `route_group` and `status_class`; `order_value`: `currency`; otherwise empty.
    #[schema(value_type = Object)]
    pub dimensions: Value,
    /// The whole span's usage: the sum of the points, except for `active_users`, where it
    /// counts each user once.
    pub total: i64,
    /// The buckets with usage, oldest first.
    pub points: Vec<Point>,
}

/// The tenant's usage over a span.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct UsageReport {
    #[serde(with = "time::serde::rfc3339")]
    pub from: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub to: OffsetDateTime,
    pub granularity: Granularity,
    pub series: Vec<Series>,
}

/// The caller's tenant's usage over `span` (`usage:read`). `to` defaults to now, `from`
/// to the start of the month (UTC) `to` falls in.
pub async fn report(
    tx: &mut TenantTx,
    principal: &Principal,
    span: Span,
) -> Result<UsageReport, Error> {
    principal.require(Scope::UsageRead)?;
    let now = tx.usage().clock.now();
    let to = span.to.unwrap_or(now);
    // The month `to` falls in (the month before, when `to` is the first moment of one).
    let from = span.from.unwrap_or_else(|| {
        quota::month_start(to - Duration::microseconds(1))
            .with_time(time::Time::MIDNIGHT)
            .assume_utc()
    });
    if from >= to {
        return Err(Error::refused_field(
            "invalid_span",
            "from",
            "must be before `to`",
        ));
    }
    if to - from > span.granularity.max_span() {
        return Err(Error::refused_field(
            "span_too_long",
            "to",
            format!(
                "a span at granularity {} may be at most {} days",
                span.granularity.as_str(),
                span.granularity.max_span().whole_days()
            ),
        ));
    }
    let granularity = span.granularity.as_str();
    let metric = span.metric.map(Metric::as_str);
    let rows: Vec<(String, Value, OffsetDateTime, i64)> = sqlx::query_as(
        "select metric, dimensions, date_trunc($3, hour, 'UTC') as bucket,
                sum(quantity)::bigint
         from usage_counters
         where hour >= date_trunc('hour', $1::timestamptz, 'UTC') and hour < $2
           and ($4::text is null or metric = $4)
         group by metric, dimensions, bucket
         order by metric, dimensions, bucket",
    )
    .bind(from)
    .bind(to)
    .bind(granularity)
    .bind(metric)
    .fetch_all(&mut **tx)
    .await?;
    let mut series: Vec<Series> = Vec::new();
    for (name, dimensions, start, quantity) in rows {
        let Some(metric) = Metric::parse(&name) else {
            continue;
        };
        let point = Point { start, quantity };
        match series.last_mut() {
            Some(last) if last.metric == metric && last.dimensions == dimensions => {
                last.total += quantity;
                last.points.push(point);
            }
            _ => series.push(Series {
                metric,
                unit: metric.unit(),
                dimensions,
                total: quantity,
                points: vec![point],
            }),
        }
    }
    if span.metric.is_none_or(|m| m == Metric::ActiveUsers) {
        let points: Vec<(OffsetDateTime, i64)> = sqlx::query_as(
            "select date_trunc($3, hour, 'UTC') as bucket, count(distinct user_id)
             from usage_active_users
             where hour >= date_trunc('hour', $1::timestamptz, 'UTC') and hour < $2
             group by bucket order by bucket",
        )
        .bind(from)
        .bind(to)
        .bind(granularity)
        .fetch_all(&mut **tx)
        .await?;
        if !points.is_empty() {
            let total: i64 = sqlx::query_scalar(
                "select count(distinct user_id) from usage_active_users
                 where hour >= date_trunc('hour', $1::timestamptz, 'UTC') and hour < $2",
            )
            .bind(from)
            .bind(to)
            .fetch_one(&mut **tx)
            .await?;
            series.push(Series {
                metric: Metric::ActiveUsers,
                unit: Metric::ActiveUsers.unit(),
                dimensions: Value::Object(Default::default()),
                total,
                points: points
                    .into_iter()
                    .map(|(start, quantity)| Point { start, quantity })
                    .collect(),
            });
        }
    }
    series.sort_by_key(|s| s.metric);
    Ok(UsageReport {
        from,
        to,
        granularity: span.granularity,
        series,
    })
}
