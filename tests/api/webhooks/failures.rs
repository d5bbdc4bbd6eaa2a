//! When receivers fail: retries until they recover (each event delivered once, in order),
//! the endpoint disabled once the schedule is used up (and audited), a manual retry, the
//! circuit breaker, and a dead endpoint that does not hold up a live one.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::json;

use super::{
    Behaviour, Receiver, create_endpoint, deliveries, eventually, order_of, place_order,
    spawn_delivering_app,
};
use crate::helpers::expect_json;

const WITHIN: Duration = Duration::from_secs(20);

#[tokio::test]
async fn failed_deliveries_are_retried_and_each_delivered_once_when_the_receiver_recovers() {
    // Arrange: the receiver fails its first three requests
    let app = spawn_delivering_app(&[]).await;
    let tenant = app.create_tenant().await;
    let receiver = Receiver::spawn().await;
    receiver.fail_first(3);
    let (endpoint, _) = create_endpoint(&app, &tenant, &receiver.url, &["order.placed"]).await;

    // Act
    let mut orders = Vec::new();
    for _ in 0..3 {
        orders.push(place_order(&app, &tenant).await);
    }

    // Assert: every delivery succeeded, the first after three failures
    let listed = eventually(WITHIN, "three successful deliveries", async || {
        let listed = deliveries(&app, &tenant, &endpoint).await;
        (listed.len() == 3 && listed.iter().all(|d| d["state"] == "succeeded")).then_some(listed)
    })
    .await;
    let oldest = &listed[2];
    let attempts = oldest["attempts"].as_array().unwrap();
    assert_eq!(
        attempts.len(),
        4,
        "three failures, then the success: {oldest}"
    );
    assert!(attempts[..3].iter().all(|a| a["status_code"] == 500));
    assert_eq!(attempts[3]["status_code"], 200);
    assert!(
        listed[..2]
            .iter()
            .all(|d| d["attempts"].as_array().unwrap().len() == 1),
        "the later deliveries waited behind the first, then went at once"
    );
    let received = receiver.received();
    assert_eq!(
        received.len(),
        6,
        "3 failed attempts + 3 deliveries, nothing more"
    );
    let delivered: Vec<String> = received[3..].iter().map(order_of).collect();
    assert_eq!(delivered, orders, "in order");
    let ids: std::collections::HashSet<&str> = received.iter().map(|r| r.id()).collect();
    assert_eq!(ids.len(), 3, "a retry keeps its webhook-id");
}

#[tokio::test]
async fn an_exhausted_schedule_disables_the_endpoint_and_a_manual_retry_delivers_later() {
    // Arrange: two retries, so three attempts in all
    let app = spawn_delivering_app(&[("TENANTRY_WEBHOOK_RETRY_SCHEDULE", "50ms,50ms")]).await;
    let tenant = app.create_tenant().await;
    let receiver = Receiver::spawn().await;
    receiver.behave(Behaviour::Fail);
    let (endpoint, _) = create_endpoint(&app, &tenant, &receiver.url, &["order.*"]).await;

    // Act
    place_order(&app, &tenant).await;

    // Assert: failed after three attempts, the endpoint disabled with a reason, audited
    let failed = eventually(WITHIN, "the delivery to fail", async || {
        let listed = deliveries(&app, &tenant, &endpoint).await;
        (listed.first()?["state"] == "failed").then(|| listed[0].clone())
    })
    .await;
    assert_eq!(failed["attempts"].as_array().unwrap().len(), 3);
    assert_eq!(receiver.count(), 3);
    let shown = expect_json(
        app.get(&format!("/v1/webhook-endpoints/{endpoint}"), &tenant.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(shown["enabled"], false);
    assert!(
        shown["disabled_reason"]
            .as_str()
            .is_some_and(|r| r.contains("3 attempts")),
        "{shown}"
    );
    let actions = app.audit_actions(&tenant, &endpoint).await;
    assert!(
        actions.contains(&"webhook_endpoint.disabled".to_owned()),
        "{actions:?}"
    );

    // Act: the receiver recovers; the tenant enables the endpoint and retries
    receiver.behave(Behaviour::Succeed);
    let delivery = failed["id"].as_str().unwrap();
    let retry = format!("/v1/webhook-endpoints/{endpoint}/deliveries/{delivery}/retry");
    expect_json(
        app.patch(
            &format!("/v1/webhook-endpoints/{endpoint}"),
            &tenant.token,
            json!({"enabled": true}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let requeued = expect_json(
        app.post(&retry, &tenant.token, json!({})).await,
        StatusCode::ACCEPTED,
    )
    .await;
    assert_eq!(requeued["state"], "pending");

    // Assert
    eventually(WITHIN, "the retried delivery to succeed", async || {
        let listed = deliveries(&app, &tenant, &endpoint).await;
        (listed.first()?["state"] == "succeeded").then_some(())
    })
    .await;
    assert_eq!(receiver.count(), 4);
    let shown = expect_json(
        app.get(&format!("/v1/webhook-endpoints/{endpoint}"), &tenant.token)
            .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(shown["disabled_reason"], json!(null));
    // A delivery that succeeded is not retried.
    let again = app.post(&retry, &tenant.token, json!({})).await;
    crate::helpers::expect_problem(again, StatusCode::CONFLICT, "delivery_not_failed").await;
}

#[tokio::test]
async fn the_breaker_opens_after_failures_in_a_row_stops_sending_and_closes_after_a_probe() {
    // Arrange: the breaker opens after 2 failures and probes after 1 s; retries are due
    // every few ms meanwhile
    let app = spawn_delivering_app(&[
        ("TENANTRY_WEBHOOK_BREAKER_FAILURES", "2"),
        ("TENANTRY_WEBHOOK_BREAKER_BACKOFF", "1s..1s"),
        (
            "TENANTRY_WEBHOOK_RETRY_SCHEDULE",
            "10ms,10ms,10ms,10ms,10ms,10ms,10ms,10ms",
        ),
    ])
    .await;
    let tenant = app.create_tenant().await;
    let receiver = Receiver::spawn().await;
    receiver.behave(Behaviour::Fail);
    let (endpoint, _) = create_endpoint(&app, &tenant, &receiver.url, &["order.*"]).await;

    // Act
    place_order(&app, &tenant).await;

    // Assert: two attempts, then silence while the breaker is open (the retries that
    // fall due meanwhile wait, using none of the schedule)
    eventually(WITHIN, "two failed attempts", async || {
        (receiver.count() >= 2).then_some(())
    })
    .await;
    let opened = Instant::now();
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.count(), 2, "the open breaker sends nothing");

    // The probe fails: open again. Then the receiver recovers, and the next probe delivers.
    eventually(WITHIN, "a probe", async || {
        (receiver.count() >= 3).then_some(())
    })
    .await;
    assert!(
        opened.elapsed() >= Duration::from_millis(400),
        "the probe waited for the back-off"
    );
    receiver.behave(Behaviour::Succeed);
    eventually(
        WITHIN,
        "the delivery after the breaker closed",
        async || {
            let listed = deliveries(&app, &tenant, &endpoint).await;
            (listed.first()?["state"] == "succeeded").then_some(())
        },
    )
    .await;
    assert_eq!(
        receiver.count(),
        4,
        "two failures, a failed probe, the delivery"
    );

    // Closed again: the next event goes at once.
    place_order(&app, &tenant).await;
    eventually(
        Duration::from_millis(900),
        "the next event, before any back-off",
        async || (receiver.count() >= 5).then_some(()),
    )
    .await;
}

#[tokio::test]
async fn a_dead_endpoint_does_not_delay_another_endpoints_deliveries() {
    // Arrange: one receiver hangs past the 2 s attempt timeout, another answers at once
    let app = spawn_delivering_app(&[]).await;
    let tenant = app.create_tenant().await;
    let (dead, live) = (Receiver::spawn().await, Receiver::spawn().await);
    dead.behave(Behaviour::Hang);
    create_endpoint(&app, &tenant, &dead.url, &["order.*"]).await;
    create_endpoint(&app, &tenant, &live.url, &["order.*"]).await;

    // Act
    let started = Instant::now();
    for _ in 0..5 {
        place_order(&app, &tenant).await;
    }

    // Assert: the live endpoint has all five while the dead one is still on its first
    eventually(WITHIN, "five deliveries to the live endpoint", async || {
        (live.count() >= 5).then_some(())
    })
    .await;
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "took {:?}",
        started.elapsed()
    );
    let stuck: std::collections::HashSet<String> =
        dead.received().iter().map(|r| r.id().to_owned()).collect();
    assert_eq!(
        stuck.len(),
        1,
        "the dead endpoint is still on its first delivery; the rest wait in its own queue"
    );
}
