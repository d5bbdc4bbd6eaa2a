//! `GET /v1/events`: live delivery on every instance, resuming exactly after the last event
//! seen, filters, tenant isolation under concurrent writers, slow consumers and revocation.

use std::{collections::HashSet, time::Duration};

use reqwest::StatusCode;
use serde_json::json;

use super::{PATIENCE, Shop, SseClient, placed};
use tenantry::id::TenantId;

use crate::helpers::{
    TestApp, expect_problem, id, spawn_app, spawn_app_with, spawn_stoppable_app, test_config,
};

#[tokio::test]
async fn a_subscriber_receives_its_tenants_committed_events_as_they_happen() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let shop = Shop::open(&app, &tenant).await;
    let mut stream = SseClient::connect(&app, &tenant.token, "", None).await;

    let order = shop.order(&app, &tenant).await;

    let events = stream.events(2).await;
    let types: Vec<&str> = events.iter().map(|e| e.event.as_str()).collect();
    assert_eq!(
        types,
        ["product.stock_changed", "order.placed"],
        "the stock the order took, then the order, in commit order"
    );
    let placed = &events[1];
    assert_eq!(placed.data["type"], "order.placed");
    assert_eq!(placed.data["stream_id"], order.as_str());
    assert_eq!(placed.data["stream_type"], "order");
    assert_eq!(placed.data["version"], 1);
    assert_eq!(placed.data["data"]["total_cents"], 1250);
    assert_eq!(
        placed.id.as_deref(),
        placed.data["id"].as_str(),
        "the SSE id is the event's id"
    );
    assert_eq!(events[0].data["data"]["stock_delta"], -1);
    assert_eq!(events[0].data["stream_id"], id(&shop.product));
}

#[tokio::test]
async fn a_write_on_one_instance_reaches_a_subscriber_on_another() {
    let a = spawn_app().await;
    let b = spawn_app().await;
    let tenant = a.create_tenant().await;
    let shop = Shop::open(&a, &tenant).await;
    let mut on_b = SseClient::connect(&b, &tenant.token, "?types=order.*", None).await;

    let order = shop.order(&a, &tenant).await;

    let event = on_b.next_event().await;
    assert_eq!(event.event, "order.placed");
    assert_eq!(event.data["stream_id"], order.as_str());
}

#[tokio::test]
async fn resuming_after_a_disconnect_delivers_every_missed_event_once_in_order() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let shop = Shop::open(&app, &tenant).await;
    let mut stream = SseClient::connect(&app, &tenant.token, "?types=order.placed", None).await;
    let first = shop.order(&app, &tenant).await;
    let seen = stream.next_event().await;
    assert_eq!(seen.data["stream_id"], first.as_str());
    drop(stream);

    let mut missed = Vec::new();
    for _ in 0..12 {
        missed.push(shop.order(&app, &tenant).await);
    }
    let mut resumed = SseClient::connect(
        &app,
        &tenant.token,
        "?types=order.placed",
        seen.id.as_deref(),
    )
    .await;
    let replayed = resumed.events(12).await;
    assert_eq!(
        placed(&replayed),
        missed,
        "every missed order once, in commit order"
    );

    let live = shop.order(&app, &tenant).await;
    let next = resumed.next_event().await;
    assert_eq!(
        next.data["stream_id"],
        live.as_str(),
        "then live, with nothing repeated"
    );
    assert!(
        resumed
            .next_event_within(Duration::from_millis(500))
            .await
            .is_none_or(|e| e.event != "order.placed"),
        "nothing arrives twice"
    );
}

#[tokio::test]
async fn resuming_with_the_after_parameter_works_like_last_event_id_and_refuses_strange_ids() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let shop = Shop::open(&app, &tenant).await;
    let mut stream = SseClient::connect(&app, &tenant.token, "?types=order.*", None).await;
    shop.order(&app, &tenant).await;
    let seen = stream.next_event().await;
    drop(stream);
    let missed = shop.order(&app, &tenant).await;

    let after = seen.id.unwrap();
    let mut resumed = SseClient::connect(
        &app,
        &tenant.token,
        &format!("?types=order.*&after={after}"),
        None,
    )
    .await;
    assert_eq!(
        resumed.next_event().await.data["stream_id"],
        missed.as_str()
    );

    for bad in ["x", "12", "1-2-3"] {
        let response = SseClient::request(&app, &tenant.token, "", Some(bad)).await;
        expect_problem(response, StatusCode::BAD_REQUEST, "invalid_event_id").await;
    }
    let response = SseClient::request(&app, &tenant.token, "?types=Order", None).await;
    expect_problem(
        response,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn filters_select_types_by_prefix_and_one_stream() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let shop = Shop::open(&app, &tenant).await;
    let other = app.create_product(&tenant).await;
    let query = format!("?types=product.*&stream_id={}", id(&shop.product));
    let mut stream = SseClient::connect(&app, &tenant.token, &query, None).await;

    let response = app
        .client
        .patch(app.url(&format!("/v1/products/{}", id(&other))))
        .bearer_auth(&tenant.token)
        .header("If-Match", "\"1\"")
        .json(&json!({"name": "Another name"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    shop.order(&app, &tenant).await;

    let event = stream.next_event().await;
    assert_eq!(
        event.event, "product.stock_changed",
        "neither the other product nor the order"
    );
    assert_eq!(event.data["stream_id"], id(&shop.product));
}

#[tokio::test]
async fn a_stream_from_now_sends_nothing_committed_before_it_even_while_another_transaction_is_open()
 {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    // A transaction open elsewhere in the cluster, with an id: the feed's snapshots now
    // have an xmin below every event committed after it.
    let mut holder = app.owner_connection().await;
    sqlx::query("begin").execute(&mut holder).await.unwrap();
    sqlx::query("select pg_current_xact_id()")
        .execute(&mut holder)
        .await
        .unwrap();
    let before = app.create_product(&tenant).await;
    let mut stream = SseClient::connect(&app, &tenant.token, "?types=product.created", None).await;
    let after = app.create_product(&tenant).await;
    // Nothing past the open transaction is handed out until it ends.
    sqlx::query("rollback").execute(&mut holder).await.unwrap();

    let first = stream.next_event().await;
    assert_eq!(
        first.data["stream_id"], after["id"],
        "the product created before the stream began ({}) is history, not news",
        before["id"]
    );
}

#[tokio::test]
async fn events_need_the_scope_that_reads_their_resource() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let shop = Shop::open(&app, &tenant).await;
    let (_, catalog_only) = app
        .create_api_key(&tenant, &["realtime:subscribe", "catalog:read"])
        .await;
    let (_, no_realtime) = app.create_api_key(&tenant, &["orders:read"]).await;
    let response = SseClient::request(&app, &no_realtime, "", None).await;
    expect_problem(response, StatusCode::FORBIDDEN, "insufficient_scope").await;

    let mut stream = SseClient::connect(&app, &catalog_only, "", None).await;
    shop.order(&app, &tenant).await;
    let event = stream.next_event().await;
    assert_eq!(event.event, "product.stock_changed");
    assert!(
        stream
            .next_event_within(Duration::from_millis(500))
            .await
            .is_none(),
        "no order event reaches a credential without orders:read"
    );
}

#[tokio::test]
async fn each_subscriber_receives_its_own_tenants_events_and_all_of_them_under_concurrent_writers()
{
    let app = spawn_app().await;
    const TENANTS: usize = 4;
    const ORDERS: usize = 15;
    let mut tenants = Vec::new();
    for _ in 0..TENANTS {
        let tenant = app.create_tenant().await;
        let shop = Shop::open(&app, &tenant).await;
        let stream = SseClient::connect(&app, &tenant.token, "?types=order.placed", None).await;
        tenants.push((tenant, shop, stream));
    }
    let mut writers = Vec::new();
    for (tenant, shop, _) in &tenants {
        let app = TestApp {
            address: app.address.clone(),
            client: app.client.clone(),
            config: app.config.clone(),
        };
        let token = tenant.token.clone();
        let customer = shop.customer.clone();
        let product = shop.product.clone();
        writers.push(tokio::spawn(async move {
            let mut placed = Vec::new();
            for _ in 0..ORDERS {
                let response = app
                    .post(
                        "/v1/orders",
                        &token,
                        crate::helpers::order_request(&customer, &[(&product, 1)]),
                    )
                    .await;
                let order: serde_json::Value = response.json().await.unwrap();
                placed.push(order["id"].as_str().unwrap().to_owned());
            }
            placed
        }));
    }
    let mut written = Vec::new();
    for writer in writers {
        written.push(writer.await.unwrap());
    }
    for ((tenant, _, stream), orders) in tenants.iter_mut().zip(written) {
        let received = placed(&stream.events(ORDERS).await);
        let mine: HashSet<&String> = orders.iter().collect();
        assert!(
            received.iter().all(|order| mine.contains(order)),
            "tenant {} received another tenant's order",
            tenant.slug
        );
        assert_eq!(received, orders, "every order of its own, in commit order");
        assert!(
            stream
                .next_event_within(Duration::from_millis(300))
                .await
                .is_none(),
            "and nothing else"
        );
    }
}

/// A client that asks for the stream and then reads nothing: its socket's receive buffer
/// is kept small, so the server's writes to it soon block.
async fn stalled_stream(app: &TestApp, token: &str, query: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address: std::net::SocketAddr = app.address.trim_start_matches("http://").parse().unwrap();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(address).await.unwrap();
    let request = format!(
        "GET /v1/events{query} HTTP/1.1\r\nHost: {address}\r\nAuthorization: Bearer {token}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !String::from_utf8_lossy(&head).contains(": connected") {
        let mut byte = [0u8; 256];
        let n = stream.read(&mut byte).await.unwrap();
        assert!(n > 0, "the stream opens");
        head.extend_from_slice(&byte[..n]);
    }
    assert!(String::from_utf8_lossy(&head).starts_with("HTTP/1.1 200"));
    stream
}

/// Appends `count` product events of about 4 KiB each to the tenant's feed, as the catalog's
/// trigger would, in one transaction.
async fn append_large_events(app: &TestApp, tenant: TenantId, count: i32) {
    let mut db = app.owner_connection().await;
    sqlx::query(
        "insert into domain_events (tenant_id, stream_type, stream_id, version, event_id, event_type, data, metadata)
         select $1, 'product', gen_random_uuid(), 1, gen_random_uuid(), 'product.updated',
                jsonb_build_object('pad', repeat('x', 4000)), '{}'
         from generate_series(1, $2)",
    )
    .bind(tenant.as_uuid())
    .bind(count)
    .execute(&mut db)
    .await
    .unwrap();
}

#[tokio::test]
async fn a_slow_consumer_is_closed_with_a_reason_without_holding_up_the_others() {
    use tokio::io::AsyncReadExt;
    let app = spawn_app_with(&[("TENANTRY_REALTIME_BUFFER", "16")]).await;
    let tenant = app.create_tenant_on("enterprise").await;
    let query = "?types=product.updated";
    let mut fast = SseClient::connect(&app, &tenant.token, query, None).await;
    let mut slow = stalled_stream(&app, &tenant.token, query).await;

    // 6 MiB of events (more than the kernel buffers of a stalled socket hold), ten at a time: the fast subscriber keeps up, the stalled one cannot.
    let (rounds, per_round) = (150, 10);
    let mut ids = Vec::new();
    for _ in 0..rounds {
        append_large_events(&app, tenant.id, per_round).await;
        for event in fast.events(per_round as usize).await {
            ids.push(event.id.unwrap());
        }
    }
    assert_eq!(
        ids.len(),
        rounds * per_round as usize,
        "the fast subscriber got every event"
    );

    // The stalled one, read at last (within the grace the server gives it), got what fitted
    // in its buffers, then the reason, then the end of the response (the last chunk).
    let mut received = Vec::new();
    let ended = tokio::time::timeout(PATIENCE, async {
        let mut chunk = vec![0u8; 64 * 1024];
        while !received.ends_with(b"\r\n0\r\n\r\n") {
            let n = slow.read(&mut chunk).await.unwrap();
            if n == 0 {
                break;
            }
            received.extend_from_slice(&chunk[..n]);
        }
    })
    .await;
    assert!(ended.is_ok(), "the server ends the stalled stream");
    let received = String::from_utf8_lossy(&received);
    let got = received.matches("event: product.updated").count();
    assert!(
        got < ids.len(),
        "it overflowed ({got} of {} arrived)",
        ids.len()
    );
    assert!(received.contains("event: close"), "the reason is stated");
    assert!(received.contains("slow_consumer"));

    // Resuming from its last event loses nothing.
    let last = received
        .lines()
        .rev()
        .find_map(|line| line.strip_prefix("id: "))
        .map(str::to_owned);
    assert_eq!(
        last.as_ref(),
        ids.get(got.wrapping_sub(1)),
        "what it got came in order"
    );
    let mut resumed = SseClient::connect(&app, &tenant.token, query, last.as_deref()).await;
    let rest: Vec<String> = resumed
        .events(ids.len() - got)
        .await
        .into_iter()
        .map(|e| e.id.unwrap())
        .collect();
    assert_eq!(rest, ids[got..]);
}

#[tokio::test]
async fn revoking_the_key_or_suspending_the_tenant_ends_its_streams_within_seconds() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let (key_id, key) = app
        .create_api_key(&tenant, &["realtime:subscribe", "orders:read"])
        .await;
    let mut by_key = SseClient::connect(&app, &key, "", None).await;
    let mut by_owner = SseClient::connect(&app, &tenant.token, "", None).await;

    let response = app
        .delete(&format!("/v1/api-keys/{key_id}"), &tenant.token)
        .await;
    assert!(response.status().is_success(), "{}", response.status());
    let close = tokio::time::timeout(Duration::from_secs(5), by_key.next_event())
        .await
        .expect("the stream ends within seconds");
    assert_eq!(close.event, "close");
    assert_eq!(close.data["code"], "unauthenticated");

    let response = app
        .patch(
            &crate::helpers::tenant_path(tenant.id),
            crate::helpers::OPERATOR_TOKEN,
            json!({"status": "suspended"}),
        )
        .await;
    assert_eq!(response.status(), StatusCode::OK);
    let close = tokio::time::timeout(Duration::from_secs(5), by_owner.next_event())
        .await
        .expect("the stream ends within seconds");
    assert_eq!(close.event, "close");
    assert_eq!(close.data["code"], "tenant_suspended");
}

#[tokio::test]
async fn shutting_down_ends_streams_with_going_away_and_they_resume_elsewhere() {
    let stoppable = spawn_stoppable_app(test_config(&[])).await;
    let other = spawn_app().await;
    let app = &stoppable.app;
    let tenant = app.create_tenant().await;
    let shop = Shop::open(app, &tenant).await;
    let mut stream = SseClient::connect(app, &tenant.token, "?types=order.placed", None).await;
    shop.order(app, &tenant).await;
    let seen = stream.next_event().await;

    let stopping = tokio::spawn(stoppable.stop());
    let close = stream.next_event().await;
    assert_eq!(close.event, "close");
    assert_eq!(close.data["code"], "going_away");
    assert!(
        stream.ends_within(PATIENCE).await,
        "the stream ends after the reason"
    );
    tokio::time::timeout(Duration::from_secs(10), stopping)
        .await
        .expect("shutdown is not held up by the stream")
        .unwrap();

    let missed = shop.order(&other, &tenant).await;
    let mut resumed = SseClient::connect(
        &other,
        &tenant.token,
        "?types=order.placed",
        seen.id.as_deref(),
    )
    .await;
    assert_eq!(
        resumed.next_event().await.data["stream_id"],
        missed.as_str()
    );
}
