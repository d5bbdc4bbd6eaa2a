//! An order's event stream: the events, their codec, and reading and appending them.
//!
//! Each event is stored as its type (`order.placed`, …) and its fields as JSON `data`; the
//! type strings are a public contract (`GET /v1/orders/{id}/events`, the feed), written
//! once, on the variants below, and never change meaning. [`encode`] and [`decode`] are the
//! only way between an [`OrderEvent`] and a stored event.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use super::aggregate::{Line, Order};
use crate::{
    access::Principal,
    db::TenantTx,
    error::Error,
    events::{self, NewEvent},
    id::{CustomerId, OrderId},
};

/// The stream type of every order's events.
pub const STREAM_TYPE: &str = "order";

/// What happened to an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", content = "data")]
pub enum OrderEvent {
    #[serde(rename = "order.placed")]
    Placed {
        customer_id: CustomerId,
        currency: String,
        lines: Vec<Line>,
        total_cents: i64,
    },
    #[serde(rename = "order.confirmed")]
    Confirmed {},
    #[serde(rename = "order.paid")]
    Paid {
        amount_cents: i64,
        reference: String,
    },
    #[serde(rename = "order.shipped")]
    Shipped {},
    #[serde(rename = "order.delivered")]
    Delivered {},
    /// `released` is the stock given back: exactly what was reserved.
    #[serde(rename = "order.cancelled")]
    Cancelled { reason: String, released: Vec<Line> },
}

impl OrderEvent {
    /// The event's type (`order.placed`, …), as its serde name says.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Placed { .. } => "order.placed",
            Self::Confirmed {} => "order.confirmed",
            Self::Paid { .. } => "order.paid",
            Self::Shipped {} => "order.shipped",
            Self::Delivered {} => "order.delivered",
            Self::Cancelled { .. } => "order.cancelled",
        }
    }
}

/// An event as stored: its type and its data.
pub fn encode(event: &OrderEvent) -> Result<(String, Value), Error> {
    let tagged = serde_json::to_value(event).map_err(anyhow::Error::from)?;
    let Value::Object(mut tagged) = tagged else {
        return Err(Error::internal(anyhow::anyhow!(
            "an order event must encode as an object"
        )));
    };
    match (tagged.remove("type"), tagged.remove("data")) {
        (Some(Value::String(event_type)), Some(data)) => Ok((event_type, data)),
        _ => Err(Error::internal(anyhow::anyhow!(
            "an order event must encode with a type and data"
        ))),
    }
}

/// A stored event read back.
pub fn decode(event_type: &str, data: &Value) -> Result<OrderEvent, Error> {
    OrderEvent::deserialize(serde_json::json!({"type": event_type, "data": data}))
        .map_err(|e| Error::internal(anyhow::anyhow!("undecodable {event_type} event: {e}")))
}

/// Appends `event`, which made `order` what it is, at the order's version: the primary key
/// turns a concurrent append of the same version into 409 `concurrent_modification`.
pub async fn append(
    tx: &mut TenantTx,
    principal: &Principal,
    command: &str,
    order: &Order,
    event: &OrderEvent,
) -> Result<(), Error> {
    let (event_type, data) = encode(event)?;
    let new = NewEvent {
        stream_type: STREAM_TYPE,
        stream_id: order.id.as_uuid(),
        version: order.version,
        event_type,
        occurred_at: order.updated_at,
        data,
        metadata: events::metadata(principal, command),
    };
    let tenant_id = tx.tenant_id();
    events::append(tx, tenant_id, &[new]).await?;
    Ok(())
}

/// An order rebuilt from its events, up to a version when given; `None` when it has none.
pub async fn load(
    tx: &mut TenantTx,
    id: OrderId,
    up_to_version: Option<i32>,
) -> Result<Option<Order>, Error> {
    let stored = events::load(tx, id.as_uuid(), up_to_version).await?;
    let decoded = decode_all(
        stored
            .iter()
            .map(|e| (&e.event_type, &e.data, e.occurred_at)),
    )?;
    Ok(Order::replay(id, decoded.iter().map(|(e, at)| (e, *at))))
}

/// Decodes a run of stored events, with when each happened.
pub fn decode_all<'a>(
    stored: impl Iterator<Item = (&'a String, &'a Value, OffsetDateTime)>,
) -> Result<Vec<(OrderEvent, OffsetDateTime)>, Error> {
    stored
        .map(|(event_type, data, at)| decode(event_type, data).map(|event| (event, at)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::id::ProductId;

    #[test]
    fn events_are_stored_as_their_type_and_their_fields() {
        let placed = OrderEvent::Placed {
            customer_id: CustomerId::new(),
            currency: "EUR".into(),
            lines: vec![Line {
                product_id: ProductId::new(),
                quantity: 2,
                unit_price_cents: 500,
            }],
            total_cents: 1000,
        };
        let (event_type, data) = encode(&placed).unwrap();
        assert_eq!(event_type, "order.placed");
        assert_eq!(data["total_cents"], 1000);
        assert_eq!(decode(&event_type, &data).unwrap(), placed);

        let (event_type, data) = encode(&OrderEvent::Confirmed {}).unwrap();
        assert_eq!(
            (event_type.as_str(), data),
            ("order.confirmed", serde_json::json!({}))
        );
    }

    #[test]
    fn an_unknown_type_does_not_decode() {
        assert!(decode("order.teleported", &serde_json::json!({})).is_err());
        assert!(decode("confirmed", &serde_json::json!({})).is_err());
    }
}
