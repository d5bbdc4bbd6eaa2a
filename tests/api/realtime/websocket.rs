//! `GET /v1/realtime`: authentication (header or first message, never the URL), channels
//! with resume, broadcasts between instances, errors with stable codes, and closing codes.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite;

use super::{Frame, Shop, next_frame, open_socket, receive, receive_type, send, subscribe};
use crate::{
    helpers::{expect_problem, spawn_app, spawn_app_with, spawn_stoppable_app, test_config},
    traffic::SHARED_REDIS,
};

#[tokio::test]
async fn an_app_authenticated_by_header_receives_the_events_of_its_channels() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let shop = Shop::open(&app, &tenant).await;
    let mut socket = open_socket(&app, Some(&tenant.token))
        .await
        .expect("the upgrade succeeds");
    let ready = receive(&mut socket).await;
    assert_eq!(ready["type"], "ready");
    assert_eq!(ready["tenant_id"], tenant.id.to_string());
    subscribe(&mut socket, "orders", None).await;

    let order = shop.order(&app, &tenant).await;

    let message = receive_type(&mut socket, "event").await;
    assert_eq!(message["channel"], "orders");
    assert_eq!(message["event"]["type"], "order.placed");
    assert_eq!(message["event"]["stream_id"], order.as_str());

    // One order's channel: only that order's events.
    subscribe(&mut socket, &format!("orders:{order}"), None).await;
    send(
        &mut socket,
        json!({"type": "unsubscribe", "channel": "orders", "ref": "u"}),
    )
    .await;
    assert_eq!(receive_type(&mut socket, "ack").await["op"], "unsubscribe");
    let other = shop.order(&app, &tenant).await;
    let response = app
        .post(
            &format!("/v1/orders/{order}/confirm"),
            &tenant.token,
            json!({}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let message = receive_type(&mut socket, "event").await;
    assert_eq!(message["channel"], format!("orders:{order}"));
    assert_eq!(message["event"]["type"], "order.confirmed");
    assert_ne!(message["event"]["stream_id"], other.as_str());
}

#[tokio::test]
async fn a_browser_authenticates_with_its_first_message_and_never_in_the_url() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;

    let mut socket = open_socket(&app, None).await.expect("the upgrade succeeds");
    send(
        &mut socket,
        json!({"type": "subscribe", "channel": "orders"}),
    )
    .await;
    assert_eq!(receive(&mut socket).await["code"], "auth_required");
    send(&mut socket, json!({"type": "auth", "token": tenant.token})).await;
    assert_eq!(receive(&mut socket).await["type"], "ready");
    subscribe(&mut socket, "orders", None).await;

    let mut refused = open_socket(&app, None).await.expect("the upgrade succeeds");
    send(
        &mut refused,
        json!({"type": "auth", "token": "tnty_not-a-key"}),
    )
    .await;
    match next_frame(&mut refused).await {
        Frame::Closed(code, reason) => {
            assert_eq!(code, 4001);
            assert_eq!(reason, "unauthenticated");
        }
        Frame::Json(message) => panic!("a bad credential is refused, not {message}"),
    }

    let url = app.url(&format!("/v1/realtime?access_token={}", tenant.token));
    let response = app.client.get(url).send().await.unwrap();
    expect_problem(response, StatusCode::BAD_REQUEST, "token_in_query").await;

    let response = app
        .client
        .get(app.url("/v1/realtime"))
        .bearer_auth(&tenant.token)
        .send()
        .await
        .unwrap();
    expect_problem(response, StatusCode::BAD_REQUEST, "upgrade_required").await;
}

#[tokio::test]
async fn a_refused_credential_in_the_header_is_an_http_answer_before_any_upgrade() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, no_realtime) = app.create_api_key(&tenant, &["orders:read"]).await;
    match open_socket(&app, Some(&no_realtime)).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 403),
        other => panic!("refused with 403, not {:?}", other.map(|_| ())),
    }
    match open_socket(&app, Some("tnty_bogus")).await {
        Err(tungstenite::Error::Http(response)) => assert_eq!(response.status(), 401),
        other => panic!("refused with 401, not {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn a_subscription_resumes_after_the_last_event_seen_exactly_once_in_order() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let shop = Shop::open(&app, &tenant).await;
    let mut socket = open_socket(&app, Some(&tenant.token)).await.unwrap();
    receive_type(&mut socket, "ready").await;
    subscribe(&mut socket, "orders", None).await;
    shop.order(&app, &tenant).await;
    let seen = receive_type(&mut socket, "event").await;
    drop(socket);

    let mut missed = Vec::new();
    for _ in 0..5 {
        missed.push(shop.order(&app, &tenant).await);
    }
    let mut socket = open_socket(&app, Some(&tenant.token)).await.unwrap();
    receive_type(&mut socket, "ready").await;
    subscribe(&mut socket, "orders", seen["event"]["id"].as_str()).await;
    let mut replayed = Vec::new();
    for _ in 0..5 {
        let event = receive_type(&mut socket, "event").await;
        assert_eq!(event["event"]["type"], "order.placed");
        replayed.push(event["event"]["stream_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(replayed, missed);

    let live = shop.order(&app, &tenant).await;
    let event = receive_type(&mut socket, "event").await;
    assert_eq!(
        event["event"]["stream_id"],
        live.as_str(),
        "then live, nothing repeated"
    );
}

#[tokio::test]
async fn bad_messages_get_errors_with_stable_codes_and_the_connection_stays() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (_, catalog_only) = app
        .create_api_key(&tenant, &["realtime:subscribe", "catalog:read"])
        .await;
    let mut socket = open_socket(&app, Some(&catalog_only)).await.unwrap();
    receive_type(&mut socket, "ready").await;

    let cases = [
        (json!("not an object"), "malformed_message"),
        (json!({"type": "dance", "ref": 1}), "unknown_message_type"),
        (json!({"type": "subscribe", "ref": 2}), "malformed_message"),
        (
            json!({"type": "subscribe", "channel": "Orders!", "ref": 3}),
            "validation_failed",
        ),
        (
            json!({"type": "subscribe", "channel": "orders", "ref": 4}),
            "insufficient_scope",
        ),
        (
            json!({"type": "subscribe", "channel": "products", "after": "nope", "ref": 5}),
            "invalid_event_id",
        ),
        (
            json!({"type": "subscribe", "channel": "products:not-an-id", "ref": 6}),
            "validation_failed",
        ),
        (
            json!({"type": "unsubscribe", "channel": "products", "ref": 7}),
            "not_subscribed",
        ),
    ];
    for (message, code) in cases {
        let reference = message.get("ref").cloned();
        send(&mut socket, message.clone()).await;
        let error = receive(&mut socket).await;
        assert_eq!(error["type"], "error", "{message}");
        assert_eq!(error["code"], code, "{message}: {error}");
        if let Some(reference) = reference {
            assert_eq!(error["ref"], reference);
        }
    }
    send(&mut socket, json!({"type": "ping", "ref": "p"})).await;
    let pong = receive(&mut socket).await;
    assert_eq!(pong, json!({"type": "pong", "ref": "p"}));
}

#[tokio::test]
async fn broadcasts_reach_the_channels_subscribers_on_every_instance_but_not_the_sender() {
    let a = spawn_app_with(&[("REDIS_URL", SHARED_REDIS)]).await;
    let b = spawn_app_with(&[("REDIS_URL", SHARED_REDIS)]).await;
    let tenant = a.create_tenant().await;
    let stranger = a.create_tenant().await;
    let mut sender = open_socket(&a, Some(&tenant.token)).await.unwrap();
    let mut listener = open_socket(&b, Some(&tenant.token)).await.unwrap();
    let mut outsider = open_socket(&b, Some(&stranger.token)).await.unwrap();
    for socket in [&mut sender, &mut listener, &mut outsider] {
        receive_type(socket, "ready").await;
        subscribe(socket, "room:lobby", None).await;
    }
    // Redis subscriptions start with the server; wait until a broadcast gets through.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let received = loop {
        send(&mut sender, json!({"type": "broadcast", "channel": "room:lobby", "data": {"hello": "there"}, "ref": "b"})).await;
        assert_eq!(receive_type(&mut sender, "ack").await["op"], "broadcast");
        match tokio::time::timeout(
            Duration::from_millis(500),
            receive_type(&mut listener, "broadcast"),
        )
        .await
        {
            Ok(message) => break message,
            Err(_) if tokio::time::Instant::now() < deadline => continue,
            Err(_) => panic!("the broadcast never reached the other instance"),
        }
    };
    assert_eq!(
        received,
        json!({"type": "broadcast", "channel": "room:lobby", "data": {"hello": "there"}})
    );
    send(&mut outsider, json!({"type": "ping", "ref": "o"})).await;
    assert_eq!(
        receive(&mut outsider).await["type"],
        "pong",
        "another tenant's subscriber of the same channel name hears nothing"
    );
    send(&mut sender, json!({"type": "ping", "ref": "s"})).await;
    assert_eq!(
        receive(&mut sender).await["type"],
        "pong",
        "nor does the sender"
    );
}

#[tokio::test]
async fn broadcasts_are_rate_limited_per_connection() {
    let app = spawn_app_with(&[("TENANTRY_REALTIME_BROADCASTS_PER_SECOND", "2")]).await;
    let tenant = app.create_tenant().await;
    let mut socket = open_socket(&app, Some(&tenant.token)).await.unwrap();
    receive_type(&mut socket, "ready").await;
    let mut limited = None;
    for n in 0..10 {
        send(
            &mut socket,
            json!({"type": "broadcast", "channel": "room", "data": n, "ref": n}),
        )
        .await;
        let answer = receive(&mut socket).await;
        if answer["type"] == "error" {
            limited = Some((n, answer));
            break;
        }
    }
    let (n, error) = limited.expect("the burst runs out");
    assert_eq!(n, 4, "a burst of twice the rate");
    assert_eq!(error["code"], "rate_limited");
    assert!(error["retry_after_ms"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn shutdown_closes_sockets_with_going_away() {
    let stoppable = spawn_stoppable_app(test_config(&[])).await;
    let tenant = stoppable.app.create_tenant().await;
    let mut socket = open_socket(&stoppable.app, Some(&tenant.token))
        .await
        .unwrap();
    receive_type(&mut socket, "ready").await;
    let stopping = tokio::spawn(stoppable.stop());
    match next_frame(&mut socket).await {
        Frame::Closed(code, reason) => {
            assert_eq!(code, 1001);
            assert_eq!(reason, "going_away");
        }
        Frame::Json(message) => panic!("closed with 1001, not {message}"),
    }
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn revoking_the_credential_closes_its_socket_within_seconds() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (key_id, key) = app
        .create_api_key(&tenant, &["realtime:subscribe", "orders:read"])
        .await;
    let mut socket = open_socket(&app, Some(&key)).await.unwrap();
    receive_type(&mut socket, "ready").await;
    let response = app
        .delete(&format!("/v1/api-keys/{key_id}"), &tenant.token)
        .await;
    assert!(response.status().is_success());
    let closed = tokio::time::timeout(Duration::from_secs(5), next_frame(&mut socket))
        .await
        .unwrap();
    match closed {
        Frame::Closed(code, reason) => {
            assert_eq!((code, reason.as_str()), (4001, "unauthenticated"))
        }
        Frame::Json(message) => panic!("closed, not {message}"),
    }
}
