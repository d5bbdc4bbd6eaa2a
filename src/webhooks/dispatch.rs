//! The dispatcher: from the committed-event feed to pending deliveries.
//!
//! It follows the feed for every tenant ([`feed::poll`] as the platform subscriber) from the
//! position stored in `webhook_dispatcher`, and for each event inserts one pending delivery
//! per enabled endpoint of the event's tenant that subscribes to its type and existed when
//! it occurred — and moves the stored position past the event, in the same transaction.
//! So an event is enqueued exactly once: a crash before the commit leaves both undone, and
//! the next round starts from the same position. The feed is gap-safe, so no event
//! committed late is skipped.
//!
//! One dispatcher runs at a time across instances: a round holds a transaction-level
//! advisory lock from reading the position to committing the new one; an instance that
//! does not get it skips the round.
//!
//! Deliveries are inserted in feed order, and their `seq` (an identity) follows the insert
//! order, which is what the sender orders an endpoint's deliveries by.

use std::{collections::HashSet, sync::Arc, time::Duration};

use time::format_description::well_known::Rfc3339;
use tokio::sync::Notify;

use super::{WebhookDeliveryId, matches};
use crate::{
    db::Db,
    error::Error,
    events::feed::{self, FeedEvent, Position, Subscriber},
    id::TenantId,
};

/// `pg_try_advisory_xact_lock` key of the dispatcher: one round at a time, cluster-wide.
const DISPATCHER_LOCK: i64 = 0x7465_6e77_6864_7370; // "tenwhdsp"
/// How many events one round takes at most.
const BATCH: i64 = 500;

/// An endpoint as the dispatcher matches events against it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Subscription {
    pub tenant_id: TenantId,
    pub id: uuid::Uuid,
    pub event_types: Vec<String>,
    pub created_at: time::OffsetDateTime,
}

/// A delivery to enqueue.
#[derive(Debug, Clone, PartialEq)]
pub struct Planned {
    pub tenant_id: TenantId,
    pub endpoint_id: uuid::Uuid,
    pub event_id: uuid::Uuid,
    pub event_type: String,
}

/// The deliveries `events` make, in feed order and, per event, in endpoint order: each
/// event to every subscription of its tenant that matches its type and existed when it
/// occurred.
pub fn plan(events: &[FeedEvent], subscriptions: &[Subscription]) -> Vec<Planned> {
    let mut planned = Vec::new();
    for event in events {
        for subscription in subscriptions {
            let wanted = subscription.tenant_id == event.tenant_id
                && subscription.created_at <= event.occurred_at
                && subscription
                    .event_types
                    .iter()
                    .any(|pattern| matches(pattern, &event.event_type));
            if wanted {
                planned.push(Planned {
                    tenant_id: event.tenant_id,
                    endpoint_id: subscription.id,
                    event_id: event.event_id,
                    event_type: event.event_type.clone(),
                });
            }
        }
    }
    planned
}

/// The body of an event's delivery: `{type, timestamp, data}`, as the Standard Webhooks
/// specification shapes it; `data` carries the event, its stream and version.
pub fn payload(event: &FeedEvent) -> serde_json::Value {
    serde_json::json!({
        "type": event.event_type,
        "timestamp": event.occurred_at.format(&Rfc3339).unwrap_or_default(),
        "data": {
            "event_id": event.event_id,
            "stream_type": event.stream_type,
            "stream_id": event.stream_id,
            "version": event.version,
            "event": event.data,
        },
    })
}

/// One round: the next events after the stored position, their deliveries enqueued and
/// the position moved, in one transaction. Returns how many events it took (0 when another
/// instance holds the lock) and how many deliveries it enqueued.
#[tracing::instrument(skip_all)]
pub async fn dispatch(db: &Db) -> Result<(usize, usize), Error> {
    let mut tx = db.platform().await?;
    let locked: bool = sqlx::query_scalar("select pg_try_advisory_xact_lock($1)")
        .bind(DISPATCHER_LOCK)
        .fetch_one(&mut *tx)
        .await?;
    if !locked {
        return Ok((0, 0));
    }
    let (txid, seq): (String, i64) =
        sqlx::query_as("select txid::text, seq from webhook_dispatcher")
            .fetch_one(&mut *tx)
            .await?;
    let after = Position {
        txid: txid.parse().unwrap_or_default(),
        seq,
    };
    let events = feed::poll(db, Subscriber::Platform, after, BATCH).await?;
    let Some(last) = events.last().map(FeedEvent::position) else {
        return Ok((0, 0));
    };
    let tenants: Vec<TenantId> = events
        .iter()
        .map(|e| e.tenant_id)
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let subscriptions: Vec<Subscription> = sqlx::query_as(
        "select tenant_id, id, event_types, created_at from webhook_endpoints
         where tenant_id = any($1) and enabled and deleted_at is null
         order by tenant_id, id",
    )
    .bind(&tenants)
    .fetch_all(&mut *tx)
    .await?;
    let planned = plan(&events, &subscriptions);
    if !planned.is_empty() {
        let payloads: std::collections::HashMap<uuid::Uuid, serde_json::Value> = events
            .iter()
            .map(|event| (event.event_id, payload(event)))
            .collect();
        let count = planned.len();
        let mut tenant_ids = Vec::with_capacity(count);
        let mut ids = Vec::with_capacity(count);
        let mut endpoint_ids = Vec::with_capacity(count);
        let mut event_ids = Vec::with_capacity(count);
        let mut types = Vec::with_capacity(count);
        let mut bodies = Vec::with_capacity(count);
        for delivery in &planned {
            tenant_ids.push(delivery.tenant_id);
            ids.push(WebhookDeliveryId::new());
            endpoint_ids.push(delivery.endpoint_id);
            event_ids.push(delivery.event_id);
            types.push(delivery.event_type.as_str());
            bodies.push(
                payloads
                    .get(&delivery.event_id)
                    .cloned()
                    .unwrap_or_default(),
            );
        }
        // `with ordinality … order by` keeps the planned order, which `seq` follows.
        sqlx::query(
            "insert into webhook_deliveries (tenant_id, id, endpoint_id, event_id, event_type, payload)
             select t, i, e, ev, ty, p
             from unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::text[], $6::jsonb[])
                  with ordinality as d(t, i, e, ev, ty, p, n)
             order by n",
        )
        .bind(&tenant_ids)
        .bind(&ids)
        .bind(&endpoint_ids)
        .bind(&event_ids)
        .bind(&types)
        .bind(&bodies)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query("update webhook_dispatcher set txid = $1::text::xid8, seq = $2")
        .bind(last.txid.to_string())
        .bind(last.seq)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok((events.len(), planned.len()))
}

/// Dispatches whenever `wake` is rung, and every `interval` otherwise, catching up in full
/// rounds when behind; rings `enqueued` when a round enqueued deliveries. A failed round
/// (the database away) is logged and retried at the next tick. Runs until aborted.
pub async fn run(db: Db, interval: Duration, wake: Arc<Notify>, enqueued: Arc<Notify>) {
    loop {
        loop {
            match dispatch(&db).await {
                Ok((events, deliveries)) => {
                    if deliveries > 0 {
                        enqueued.notify_one();
                    }
                    if events as i64 != BATCH {
                        break;
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "dispatching webhook deliveries failed; retrying");
                    break;
                }
            }
        }
        tokio::select! {
            () = wake.notified() => {}
            () = tokio::time::sleep(interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::feed::TxId;
    use time::OffsetDateTime;

    fn event(tenant: TenantId, event_type: &str, at: OffsetDateTime, seq: i64) -> FeedEvent {
        FeedEvent {
            tenant_id: tenant,
            stream_type: "order".into(),
            stream_id: uuid::Uuid::now_v7(),
            version: 1,
            event_id: uuid::Uuid::now_v7(),
            event_type: event_type.into(),
            data: serde_json::json!({}),
            occurred_at: at,
            txid: TxId(10),
            seq,
        }
    }

    fn subscription(tenant: TenantId, types: &[&str], at: OffsetDateTime) -> Subscription {
        Subscription {
            tenant_id: tenant,
            id: uuid::Uuid::now_v7(),
            event_types: types.iter().map(|t| (*t).to_owned()).collect(),
            created_at: at,
        }
    }

    #[test]
    fn each_event_goes_to_its_own_tenants_matching_endpoints_in_feed_order() {
        let (a, b) = (TenantId::new(), TenantId::new());
        let t0 = OffsetDateTime::now_utc();
        let later = t0 + time::Duration::seconds(1);
        let all_of_a = subscription(a, &["*"], t0);
        let paid_of_a = subscription(a, &["order.paid"], t0);
        let orders_of_b = subscription(b, &["order.*"], t0);
        let too_new = subscription(a, &["*"], later + time::Duration::seconds(1));
        let events = [
            event(a, "order.placed", later, 1),
            event(b, "order.placed", later, 2),
            event(a, "order.paid", later, 3),
        ];
        let planned = plan(
            &events,
            &[
                all_of_a.clone(),
                paid_of_a.clone(),
                orders_of_b.clone(),
                too_new,
            ],
        );
        let got: Vec<(uuid::Uuid, uuid::Uuid)> = planned
            .iter()
            .map(|p| (p.event_id, p.endpoint_id))
            .collect();
        assert_eq!(
            got,
            vec![
                (events[0].event_id, all_of_a.id),
                (events[1].event_id, orders_of_b.id),
                (events[2].event_id, all_of_a.id),
                (events[2].event_id, paid_of_a.id),
            ],
            "in feed order; only the tenant's own endpoints; none created after the event"
        );
    }

    #[test]
    fn a_payload_carries_the_type_the_time_and_the_event() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let event = event(TenantId::new(), "order.placed", at, 1);
        let body = payload(&event);
        assert_eq!(body["type"], "order.placed");
        assert_eq!(body["timestamp"], "1970-01-01T00:00:00Z");
        assert_eq!(body["data"]["event_id"], event.event_id.to_string());
    }
}
