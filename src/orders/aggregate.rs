//! The order aggregate: state rebuilt from events, and decisions that turn a command into
//! new events. Pure — no I/O — so the state machine is tested without a database.
//!
//! ```text
//! pending ──confirm──▶ confirmed ──pay──▶ paid ──ship──▶ shipped ──deliver──▶ delivered
//!    │                    │                 │
//!    └──────cancel────────┴──────cancel─────┘──▶ cancelled   (never after shipping)
//! ```

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::stream::OrderEvent;
use crate::id::{CustomerId, OrderId, ProductId};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema, sqlx::Type)]
#[serde(rename_all = "snake_case")]
#[sqlx(type_name = "text", rename_all = "snake_case")]
#[schema(example = "confirmed")]
pub enum OrderStatus {
    Pending,
    Confirmed,
    Paid,
    Shipped,
    Delivered,
    Cancelled,
}

impl OrderStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Confirmed => "confirmed",
            Self::Paid => "paid",
            Self::Shipped => "shipped",
            Self::Delivered => "delivered",
            Self::Cancelled => "cancelled",
        }
    }
}

/// One order line, priced when the order was placed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Line {
    pub product_id: ProductId,
    #[schema(example = 2)]
    pub quantity: i32,
    #[schema(example = 1250)]
    pub unit_price_cents: i64,
}

/// An order as its events left it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Order {
    pub id: OrderId,
    pub customer_id: CustomerId,
    pub status: OrderStatus,
    pub currency: String,
    pub lines: Vec<Line>,
    pub total_cents: i64,
    pub payment_reference: Option<String>,
    pub cancel_reason: Option<String>,
    /// Number of events applied: the stream version.
    pub version: i32,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the order is {}; it cannot be {attempted}", current.as_str())]
    InvalidTransition {
        current: OrderStatus,
        attempted: &'static str,
    },
    #[error("the payment of {paid} does not equal the order total {total}")]
    AmountMismatch { paid: i64, total: i64 },
}

/// A state change asked of an existing order.
#[derive(Debug, Clone)]
pub enum Transition {
    Confirm,
    Pay {
        amount_cents: i64,
        reference: String,
    },
    Ship,
    Deliver,
    Cancel {
        reason: String,
    },
}

impl Transition {
    /// The command that places an order, as event metadata names it.
    pub const PLACE: &'static str = "order.place";

    /// The command's name in event metadata.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Confirm => "order.confirm",
            Self::Pay { .. } => "order.pay",
            Self::Ship => "order.ship",
            Self::Deliver => "order.deliver",
            Self::Cancel { .. } => "order.cancel",
        }
    }
}

impl Order {
    /// The order created by its first event.
    pub fn placed(id: OrderId, event: &OrderEvent, at: OffsetDateTime) -> Option<Self> {
        let OrderEvent::Placed {
            customer_id,
            currency,
            lines,
            total_cents,
        } = event
        else {
            return None;
        };
        Some(Self {
            id,
            customer_id: *customer_id,
            status: OrderStatus::Pending,
            currency: currency.clone(),
            lines: lines.clone(),
            total_cents: *total_cents,
            payment_reference: None,
            cancel_reason: None,
            version: 1,
            created_at: at,
            updated_at: at,
        })
    }

    /// Rebuilds an order from its stream, oldest first.
    pub fn replay<'a>(
        id: OrderId,
        events: impl IntoIterator<Item = (&'a OrderEvent, OffsetDateTime)>,
    ) -> Option<Self> {
        let mut events = events.into_iter();
        let (first, at) = events.next()?;
        let mut order = Self::placed(id, first, at)?;
        for (event, at) in events {
            order.apply(event, at);
        }
        Some(order)
    }

    pub fn apply(&mut self, event: &OrderEvent, at: OffsetDateTime) {
        match event {
            OrderEvent::Placed { .. } => {}
            OrderEvent::Confirmed {} => self.status = OrderStatus::Confirmed,
            OrderEvent::Paid { reference, .. } => {
                self.status = OrderStatus::Paid;
                self.payment_reference = Some(reference.clone());
            }
            OrderEvent::Shipped {} => self.status = OrderStatus::Shipped,
            OrderEvent::Delivered {} => self.status = OrderStatus::Delivered,
            OrderEvent::Cancelled { reason, .. } => {
                self.status = OrderStatus::Cancelled;
                self.cancel_reason = Some(reason.clone());
            }
        }
        self.version += 1;
        self.updated_at = at;
    }

    /// Decides what a command does to this order.
    pub fn decide(&self, command: Transition) -> Result<OrderEvent, Refusal> {
        use OrderStatus as S;
        let refuse = |attempted| {
            Err(Refusal::InvalidTransition {
                current: self.status,
                attempted,
            })
        };
        match (command, self.status) {
            (Transition::Confirm, S::Pending) => Ok(OrderEvent::Confirmed {}),
            (Transition::Confirm, _) => refuse("confirmed"),
            (
                Transition::Pay {
                    amount_cents,
                    reference,
                },
                S::Confirmed,
            ) => {
                if amount_cents != self.total_cents {
                    return Err(Refusal::AmountMismatch {
                        paid: amount_cents,
                        total: self.total_cents,
                    });
                }
                Ok(OrderEvent::Paid {
                    amount_cents,
                    reference,
                })
            }
            (Transition::Pay { .. }, _) => refuse("paid"),
            (Transition::Ship, S::Paid) => Ok(OrderEvent::Shipped {}),
            (Transition::Ship, _) => refuse("shipped"),
            (Transition::Deliver, S::Shipped) => Ok(OrderEvent::Delivered {}),
            (Transition::Deliver, _) => refuse("delivered"),
            (Transition::Cancel { reason }, S::Pending | S::Confirmed | S::Paid) => {
                Ok(OrderEvent::Cancelled {
                    reason,
                    released: self.lines.clone(),
                })
            }
            (Transition::Cancel { .. }, _) => refuse("cancelled"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::orders::stream;

    fn placed() -> Order {
        let lines = vec![
            Line {
                product_id: ProductId::new(),
                quantity: 2,
                unit_price_cents: 500,
            },
            Line {
                product_id: ProductId::new(),
                quantity: 1,
                unit_price_cents: 250,
            },
        ];
        let event = OrderEvent::Placed {
            customer_id: CustomerId::new(),
            currency: "EUR".into(),
            lines,
            total_cents: 1250,
        };
        Order::placed(OrderId::new(), &event, OffsetDateTime::now_utc()).unwrap()
    }

    fn run(order: &mut Order, command: Transition) -> Result<(), Refusal> {
        let event = order.decide(command)?;
        order.apply(&event, OffsetDateTime::now_utc());
        Ok(())
    }

    #[test]
    fn the_happy_path_walks_every_status_and_counts_versions() {
        let mut order = placed();
        run(&mut order, Transition::Confirm).unwrap();
        run(
            &mut order,
            Transition::Pay {
                amount_cents: 1250,
                reference: "pi_1".into(),
            },
        )
        .unwrap();
        run(&mut order, Transition::Ship).unwrap();
        run(&mut order, Transition::Deliver).unwrap();
        assert_eq!(order.status, OrderStatus::Delivered);
        assert_eq!(order.version, 5);
        assert_eq!(order.payment_reference.as_deref(), Some("pi_1"));
    }

    #[test]
    fn every_out_of_order_command_is_refused_naming_the_current_status() {
        let commands = || {
            vec![
                Transition::Confirm,
                Transition::Pay {
                    amount_cents: 1250,
                    reference: "r".into(),
                },
                Transition::Ship,
                Transition::Deliver,
                Transition::Cancel { reason: "r".into() },
            ]
        };
        // From each reachable status, exactly the allowed commands pass.
        let allowed: &[(OrderStatus, &[usize])] = &[
            (OrderStatus::Pending, &[0, 4]),
            (OrderStatus::Confirmed, &[1, 4]),
            (OrderStatus::Paid, &[2, 4]),
            (OrderStatus::Shipped, &[3]),
            (OrderStatus::Delivered, &[]),
            (OrderStatus::Cancelled, &[]),
        ];
        for (status, ok) in allowed {
            for (index, command) in commands().into_iter().enumerate() {
                let order = Order {
                    status: *status,
                    ..placed()
                };
                match order.decide(command) {
                    Ok(_) => assert!(
                        ok.contains(&index),
                        "command {index} must be refused from {status:?}"
                    ),
                    Err(Refusal::InvalidTransition { current, .. }) => {
                        assert!(
                            !ok.contains(&index),
                            "command {index} must pass from {status:?}"
                        );
                        assert_eq!(current, *status);
                    }
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
        }
    }

    #[test]
    fn payment_must_equal_the_total() {
        let mut order = placed();
        run(&mut order, Transition::Confirm).unwrap();
        let refused = order.decide(Transition::Pay {
            amount_cents: 1249,
            reference: "r".into(),
        });
        assert_eq!(
            refused,
            Err(Refusal::AmountMismatch {
                paid: 1249,
                total: 1250
            })
        );
    }

    #[test]
    fn cancelling_releases_exactly_the_reserved_lines() {
        let order = placed();
        let OrderEvent::Cancelled { released, .. } = order
            .decide(Transition::Cancel {
                reason: "changed mind".into(),
            })
            .unwrap()
        else {
            panic!("expected a cancellation");
        };
        assert_eq!(released, order.lines);
    }

    #[test]
    fn replay_rebuilds_the_same_order_and_events_round_trip_through_the_codec() {
        let mut live = placed();
        let first = OrderEvent::Placed {
            customer_id: live.customer_id,
            currency: live.currency.clone(),
            lines: live.lines.clone(),
            total_cents: live.total_cents,
        };
        let mut events = vec![(first, live.created_at)];
        for command in [
            Transition::Confirm,
            Transition::Cancel { reason: "x".into() },
        ] {
            let event = live.decide(command).unwrap();
            live.apply(&event, live.created_at);
            events.push((event, live.created_at));
        }
        let stored: Vec<(OrderEvent, OffsetDateTime)> = events
            .iter()
            .map(|(e, at)| {
                let (event_type, data) = stream::encode(e).unwrap();
                (stream::decode(&event_type, &data).unwrap(), *at)
            })
            .collect();
        let rebuilt = Order::replay(live.id, stored.iter().map(|(e, at)| (e, *at))).unwrap();
        assert_eq!(rebuilt, live);
    }
}
