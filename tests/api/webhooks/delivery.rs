//! Delivery: signed as Standard Webhooks says, in feed order per endpoint, to the
//! endpoints of the event's own tenant only, and a test event to one endpoint alone.

use std::time::Duration;

use reqwest::StatusCode;

use super::{
    Receiver, create_endpoint, deliveries, eventually, order_of, place_order, spawn_delivering_app,
};
use crate::helpers::{command, command_body, expect_json};

const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test]
async fn an_event_is_delivered_signed_verifiably_and_metered() {
    // Arrange: usage written every 100 ms
    let app = spawn_delivering_app(&[("TENANTRY_USAGE_FLUSH_INTERVAL", "100ms")]).await;
    let tenant = app.create_tenant().await;
    let receiver = Receiver::spawn().await;
    let (endpoint, secret) = create_endpoint(&app, &tenant, &receiver.url, &["order.*"]).await;

    // Act
    let order = place_order(&app, &tenant).await;

    // Assert
    let received = eventually(WITHIN, "the order.placed delivery", async || {
        receiver.received().into_iter().next()
    })
    .await;
    assert!(received.verifies_with(&secret), "the signature verifies");
    assert!(
        received.header("webhook-signature").starts_with("v1,"),
        "{}",
        received.header("webhook-signature")
    );
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let sent_at: i64 = received.header("webhook-timestamp").parse().unwrap();
    assert!((now - sent_at).abs() < 60, "the timestamp is the attempt's");
    assert_eq!(received.header("content-type"), "application/json");
    let body = received.json();
    assert_eq!(body["type"], "order.placed");
    assert_eq!(order_of(&received), order);
    let listed = eventually(WITHIN, "the delivery to succeed", async || {
        let listed = deliveries(&app, &tenant, &endpoint).await;
        (listed.first()?["state"] == "succeeded").then_some(listed)
    })
    .await;
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0]["id"],
        received.id(),
        "webhook-id is the delivery's id"
    );
    let attempts = listed[0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 1);
    assert_eq!(attempts[0]["status_code"], 200);
    assert_eq!(attempts[0]["response_snippet"], "ok");
    assert!(attempts[0]["latency_ms"].as_i64().unwrap() >= 0);
    // The delivery is metered for the tenant.
    eventually(
        WITHIN,
        "one webhook delivery in the usage report",
        async || {
            let response = app
                .get("/v1/usage?metric=webhook_deliveries", &tenant.token)
                .await;
            let report = expect_json(response, StatusCode::OK).await;
            let delivered: i64 = report["series"]
                .as_array()?
                .iter()
                .filter_map(|s| s["total"].as_i64())
                .sum();
            (delivered == 1).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn each_endpoint_receives_its_events_in_feed_order() {
    // Arrange: two endpoints, one for every order event, one for payments only
    let app = spawn_delivering_app(&[]).await;
    let tenant = app.create_tenant_on("pro").await;
    let (all, paid) = (Receiver::spawn().await, Receiver::spawn().await);
    create_endpoint(&app, &tenant, &all.url, &["order.*"]).await;
    create_endpoint(&app, &tenant, &paid.url, &["order.paid"]).await;

    // Act: three orders, each placed, confirmed and paid, interleaved
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(place_order(&app, &tenant).await);
    }
    for name in ["confirm", "pay"] {
        for order in &orders {
            let total = 1250;
            let response = command(&app, &tenant, order, name, command_body(name, total)).await;
            expect_json(response, StatusCode::OK).await;
        }
    }

    // Assert: the receivers saw the feed's order, event by event
    let mut owner = app.owner().await;
    let feed: Vec<(String, uuid::Uuid)> = sqlx::query_as(
        "select event_type, event_id from domain_events where tenant_id = $1 and stream_type = 'order' order by txid, seq",
    )
    .bind(tenant.id.as_uuid())
    .fetch_all(&mut owner)
    .await
    .unwrap();
    assert_eq!(feed.len(), 9);
    let event_ids = |received: Vec<super::Received>| -> Vec<String> {
        received
            .iter()
            .map(|r| r.json()["data"]["event_id"].as_str().unwrap().to_owned())
            .collect()
    };
    let got_all = eventually(WITHIN, "all nine events", async || {
        let got = all.received();
        (got.len() >= 9).then_some(got)
    })
    .await;
    let expected: Vec<String> = feed.iter().map(|(_, id)| id.to_string()).collect();
    assert_eq!(
        event_ids(got_all),
        expected,
        "every event, in feed order, once"
    );
    let got_paid = eventually(WITHIN, "the three payments", async || {
        let got = paid.received();
        (got.len() >= 3).then_some(got)
    })
    .await;
    let expected_paid: Vec<String> = feed
        .iter()
        .filter(|(event_type, _)| event_type == "order.paid")
        .map(|(_, id)| id.to_string())
        .collect();
    assert_eq!(event_ids(got_paid), expected_paid);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(all.count(), 9, "nothing is delivered twice");
    assert_eq!(paid.count(), 3);
}

#[tokio::test]
async fn an_endpoint_gets_only_its_own_tenants_events() {
    // Arrange
    let app = spawn_delivering_app(&[]).await;
    let (a, b) = (app.create_tenant().await, app.create_tenant().await);
    let (to_a, to_b) = (Receiver::spawn().await, Receiver::spawn().await);
    create_endpoint(&app, &a, &to_a.url, &["order.*"]).await;
    create_endpoint(&app, &b, &to_b.url, &["order.*"]).await;

    // Act
    let order_a = place_order(&app, &a).await;
    let order_b = place_order(&app, &b).await;

    // Assert
    for (receiver, order) in [(&to_a, &order_a), (&to_b, &order_b)] {
        let received = eventually(WITHIN, "the tenant's own order", async || {
            receiver.received().into_iter().next()
        })
        .await;
        assert_eq!(&order_of(&received), order);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(to_a.count(), 1, "A's endpoint got A's event only");
    assert_eq!(to_b.count(), 1, "B's endpoint got B's event only");
}

#[tokio::test]
async fn a_test_event_goes_to_that_endpoint_alone() {
    // Arrange
    let app = spawn_delivering_app(&[]).await;
    let tenant = app.create_tenant().await;
    let (tested, other) = (Receiver::spawn().await, Receiver::spawn().await);
    let (endpoint, secret) = create_endpoint(&app, &tenant, &tested.url, &["order.*"]).await;
    create_endpoint(&app, &tenant, &other.url, &["order.*"]).await;

    // Act
    let response = app
        .post(
            &format!("/v1/webhook-endpoints/{endpoint}/test"),
            &tenant.token,
            serde_json::json!({}),
        )
        .await;
    let delivery = expect_json(response, StatusCode::ACCEPTED).await;

    // Assert
    assert_eq!(delivery["event_type"], "webhook.test");
    assert_eq!(delivery["state"], "pending");
    let received = eventually(WITHIN, "the test event", async || {
        tested.received().into_iter().next()
    })
    .await;
    assert_eq!(received.json()["type"], "webhook.test");
    assert_eq!(received.id(), delivery["id"]);
    assert!(received.verifies_with(&secret));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(other.count(), 0, "the other endpoint got nothing");
}

#[tokio::test]
async fn events_committed_concurrently_are_each_delivered_once_in_feed_order() {
    // Arrange: a product and customer to order with, an endpoint for orders placed
    let app = spawn_delivering_app(&[]).await;
    let tenant = app.create_tenant_on("pro").await;
    let receiver = Receiver::spawn().await;
    create_endpoint(&app, &tenant, &receiver.url, &["order.placed"]).await;
    let product = expect_json(
        app.post(
            "/v1/products",
            &tenant.token,
            serde_json::json!({"sku": "CONC-1", "name": "Mug", "price_cents": 100, "currency": "EUR", "stock": 1000}),
        )
        .await,
        StatusCode::CREATED,
    )
    .await;
    let customer = app.create_customer(&tenant).await;

    // Act: twenty orders placed at once, their transactions overlapping
    let items = [(&product, 1)];
    let placed = futures::future::join_all(
        (0..20).map(|_| crate::helpers::place_ok(&app, &tenant, &customer, &items)),
    )
    .await;

    // Assert: twenty deliveries, one per order, in the feed's commit order
    let got = eventually(WITHIN, "twenty deliveries", async || {
        let got = receiver.received();
        (got.len() >= 20).then_some(got)
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.count(), 20, "each event once");
    let mut owner = app.owner().await;
    let feed: Vec<uuid::Uuid> = sqlx::query_scalar(
        "select stream_id from domain_events where tenant_id = $1 and stream_type = 'order' order by txid, seq",
    )
    .bind(tenant.id.as_uuid())
    .fetch_all(&mut owner)
    .await
    .unwrap();
    let delivered: Vec<String> = got.iter().map(order_of).collect();
    let expected: Vec<String> = feed.iter().map(uuid::Uuid::to_string).collect();
    assert_eq!(delivered, expected);
    let mut orders: Vec<String> = placed
        .iter()
        .map(|o| o["id"].as_str().unwrap().to_owned())
        .collect();
    orders.sort();
    let mut sorted = delivered.clone();
    sorted.sort();
    assert_eq!(sorted, orders, "every placed order, none other");
}
