//! Usage metering: what each tenant used, by metric, hour and billing period.
//!
//! Two ways in, by how exact a count must be and what it may cost:
//! - **Derived from domain events, in their transaction**: an order placed and its value
//!   are counted by a trigger on the event store (`meter_domain_event`, in
//!   `migrations/0014_usage_and_billing.sql`) as the `order.placed` event is appended, so
//!   the count commits or rolls back with the order — exact — at no extra round trip. Each
//!   database backend adds to a row of its own (a backend runs one transaction at a time),
//!   so concurrent orders never queue on a counter's row lock. The tenant transaction tells
//!   it the usage clock when that is manual, and when metering is off (`db::TenantTx`).
//! - **In memory, flushed in batches** ([`meter::Meter`]): API calls (by credential, route
//!   group and status class) and active users are counted in the process and written every
//!   `TENANTRY_USAGE_FLUSH_INTERVAL` in one statement for all tenants, adding to what is
//!   stored — so several instances add up — and on graceful shutdown. A crash loses at most
//!   one interval's calls. The hooks for realtime connection-minutes and webhook deliveries
//!   count the same way ([`meter::Meter::add`]).
//!
//! Counts are written unbilled; closing a billing period bills them (`billing`), and
//! nothing is added to a billed count again, so a closed period never changes.
//! [`report`] answers `GET /v1/usage`; [`top`] serves the heaviest tenants as metrics.

pub mod meter;
pub mod report;
pub mod top;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

/// What is metered.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Authenticated API requests, by credential, route group and status class.
    ApiCalls,
    /// Orders placed.
    OrdersPlaced,
    /// The value of the orders placed, in the minor unit of each currency.
    OrderValue,
    /// Distinct users who made a request.
    ActiveUsers,
    /// Minutes realtime connections were open.
    RealtimeConnectionMinutes,
    /// Webhook deliveries made (a receiver answered 2xx).
    WebhookDeliveries,
}

impl Metric {
    pub const ALL: [Metric; 6] = [
        Self::ApiCalls,
        Self::OrdersPlaced,
        Self::OrderValue,
        Self::ActiveUsers,
        Self::RealtimeConnectionMinutes,
        Self::WebhookDeliveries,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiCalls => "api_calls",
            Self::OrdersPlaced => "orders_placed",
            Self::OrderValue => "order_value",
            Self::ActiveUsers => "active_users",
            Self::RealtimeConnectionMinutes => "realtime_connection_minutes",
            Self::WebhookDeliveries => "webhook_deliveries",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|m| m.as_str() == name)
    }

    /// What a quantity of it counts.
    pub fn unit(self) -> &'static str {
        match self {
            Self::ApiCalls => "call",
            Self::OrdersPlaced => "order",
            Self::OrderValue => "minor_unit",
            Self::ActiveUsers => "user",
            Self::RealtimeConnectionMinutes => "minute",
            Self::WebhookDeliveries => "delivery",
        }
    }
}

impl std::fmt::Display for Metric {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The start of the UTC hour `at` is in: usage is stored by the hour.
pub fn hour_of(at: OffsetDateTime) -> OffsetDateTime {
    let at = at.to_offset(time::UtcOffset::UTC);
    at.replace_time(time::Time::from_hms(at.hour(), 0, 0).unwrap_or(time::Time::MIDNIGHT))
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    #[test]
    fn usage_is_stored_by_the_utc_hour() {
        assert_eq!(
            hour_of(datetime!(2026-11-30 23:59:59.999 UTC)),
            datetime!(2026-11-30 23:00 UTC)
        );
        assert_eq!(
            hour_of(datetime!(2026-12-01 01:30 +02:00)),
            datetime!(2026-11-30 23:00 UTC)
        );
    }

    #[test]
    fn every_metric_has_a_name_it_parses_back_from_and_a_unit() {
        for metric in Metric::ALL {
            assert_eq!(Metric::parse(metric.as_str()), Some(metric));
            assert!(!metric.unit().is_empty());
        }
        assert_eq!(Metric::parse("bogus"), None);
    }
}
