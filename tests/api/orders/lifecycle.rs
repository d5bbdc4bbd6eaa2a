//! The lifecycle: transitions, refusals naming the current status, history and
//! `as_of_version`, causation, and the stock a cancel gives back.

use super::*;

/// Sends every transition the status does not allow and asserts each is refused with
/// 409 `order_is_<status>`, leaving the order as it was.
async fn assert_out_of_order_commands_refused(
    app: &TestApp,
    tenant: &TestTenant,
    order_id: &str,
    status: &str,
) {
    let before = order(app, tenant, order_id).await;
    assert_eq!(before["status"], status, "the order is {status}: {before}");
    let total = before["total_cents"].as_i64().unwrap();
    let code = format!("order_is_{status}");
    for name in TRANSITIONS
        .iter()
        .filter(|name| !allowed_from(status).contains(name))
    {
        let response = command(app, tenant, order_id, name, command_body(name, total)).await;
        let problem = expect_problem(response, StatusCode::CONFLICT, &code).await;
        assert!(
            problem["detail"].is_string(),
            "{name} on a {status} order: {problem}"
        );
    }
    assert_eq!(
        order(app, tenant, order_id).await,
        before,
        "refused commands leave the {status} order unchanged"
    );
}

#[tokio::test]
async fn an_order_walks_its_lifecycle_and_every_out_of_order_command_is_refused() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = product_with(&app, &tenant, 1250, "EUR", 10).await;
    let placed = place_ok(&app, &tenant, &customer, &[(&product, 2)]).await;
    let order_id = id(&placed);
    let total = placed["total_cents"].as_i64().unwrap();
    assert_eq!(total, 2500);

    // Act + Assert: from each status, everything but the allowed commands is refused;
    // then the next step of the happy path moves it on
    let path = [
        ("pending", Some(("confirm", "confirmed"))),
        ("confirmed", Some(("pay", "paid"))),
        ("paid", Some(("ship", "shipped"))),
        ("shipped", Some(("deliver", "delivered"))),
        ("delivered", None),
    ];
    for (version, (status, next)) in (1..).zip(path) {
        assert_out_of_order_commands_refused(&app, &tenant, order_id, status).await;

        if status == "confirmed" {
            // A payment that does not equal the total is refused, naming the field.
            let before = order(&app, &tenant, order_id).await;
            let wrong = command(
                &app,
                &tenant,
                order_id,
                "pay",
                json!({"amount_cents": total - 1, "reference": "pi_short"}),
            )
            .await;
            expect_invalid(wrong, "amount_mismatch", "amount_cents").await;
            assert_eq!(
                order(&app, &tenant, order_id).await,
                before,
                "a refused payment changes nothing"
            );
        }
        if status == "shipped" {
            expect_problem(
                command(&app, &tenant, order_id, "cancel", command_body("cancel", 0)).await,
                StatusCode::CONFLICT,
                "order_is_shipped",
            )
            .await;
        }

        let Some((name, new_status)) = next else {
            continue;
        };
        let moved = transition_ok(&app, &tenant, order_id, name, command_body(name, total)).await;
        assert_eq!(
            (moved["status"].as_str(), moved["version"].as_i64()),
            (Some(new_status), Some(version + 1)),
            "{name} on a {status} order makes it {new_status} at version {}: {moved}",
            version + 1
        );
        assert_eq!(
            order(&app, &tenant, order_id).await,
            moved,
            "GET after {name} shows what {name} answered"
        );
    }
    let delivered = order(&app, &tenant, order_id).await;
    assert_eq!(delivered["payment_reference"], "pi_test", "{delivered}");

    // Assert: the history, oldest first, versions 1..n, with who did it
    let events = history(&app, &tenant, order_id).await;
    assert_eq!(
        event_types(&events),
        [
            "order.placed",
            "order.confirmed",
            "order.paid",
            "order.shipped",
            "order.delivered"
        ],
        "one event per successful command, in order"
    );
    let versions: Vec<i64> = events
        .iter()
        .map(|e| e["version"].as_i64().unwrap())
        .collect();
    assert_eq!(
        versions,
        [1, 2, 3, 4, 5],
        "versions count from 1 without gaps"
    );
    let actor = format!("user:{}", tenant.owner_id);
    let commands = [
        "order.place",
        "order.confirm",
        "order.pay",
        "order.ship",
        "order.deliver",
    ];
    for (event, command) in events.iter().zip(commands) {
        assert_eq!(event["metadata"]["actor"], actor, "who did it: {event}");
        assert_eq!(
            event["metadata"]["command"], command,
            "what was asked: {event}"
        );
        assert!(
            event["metadata"]["request_id"]
                .as_str()
                .is_some_and(|r| !r.is_empty()),
            "in which request: {event}"
        );
        assert_eq!(
            event["metadata"]["causation_id"], event["metadata"]["request_id"],
            "caused by its request: {event}"
        );
        assert!(event["occurred_at"].is_string(), "when: {event}");
    }
    let event_ids: HashSet<&str> = events
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(event_ids.len(), events.len(), "every event has its own id");
    assert_eq!(
        events[2]["data"],
        json!({"amount_cents": 2500, "reference": "pi_test"}),
        "the payment event records what was paid"
    );
    assert_eq!(events[0]["data"]["total_cents"], 2500, "{}", events[0]);

    // Assert: each past state, rebuilt from the events
    for (version, status) in (1..).zip(["pending", "confirmed", "paid", "shipped", "delivered"]) {
        let past = expect_json(
            app.get(
                &format!("/v1/orders/{order_id}?as_of_version={version}"),
                &tenant.token,
            )
            .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(
            (past["status"].as_str(), past["version"].as_i64()),
            (Some(status), Some(version)),
            "as_of_version={version}: {past}"
        );
        assert_eq!(past["id"], placed["id"]);
        assert_eq!(past["items"], placed["items"], "the lines never change");
    }
    let rebuilt_now = expect_json(
        app.get(
            &format!("/v1/orders/{order_id}?as_of_version=5"),
            &tenant.token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        rebuilt_now, delivered,
        "the latest version rebuilt from events equals the read model"
    );
    expect_problem(
        app.get(
            &format!("/v1/orders/{order_id}?as_of_version=6"),
            &tenant.token,
        )
        .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    expect_problem(
        app.get(
            &format!("/v1/orders/{order_id}?as_of_version=0"),
            &tenant.token,
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_version",
    )
    .await;

    // Act + Assert: a cancelled order refuses everything
    let other = place_ok(&app, &tenant, &customer, &[(&product, 1)]).await;
    let cancelled = transition_ok(
        &app,
        &tenant,
        id(&other),
        "cancel",
        command_body("cancel", 0),
    )
    .await;
    assert_eq!(
        (
            cancelled["status"].as_str(),
            cancelled["cancel_reason"].as_str()
        ),
        (Some("cancelled"), Some("the customer changed their mind")),
        "{cancelled}"
    );
    assert_out_of_order_commands_refused(&app, &tenant, id(&other), "cancelled").await;
}

#[tokio::test]
async fn an_event_names_the_request_that_caused_it() {
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = product_with(&app, &tenant, 500, "EUR", 5).await;
    let placed = place_ok(&app, &tenant, &customer, &[(&product, 1)]).await;
    let client_request_id = unique("req");

    let bearer = format!("Bearer {}", tenant.token);
    let confirmed = send(
        &app,
        Method::POST,
        &format!("/v1/orders/{}/confirm", id(&placed)),
        &[
            ("authorization", &bearer),
            ("x-request-id", &client_request_id),
        ],
        Some(json!({})),
    )
    .await;

    let request_id = confirmed.headers()["x-request-id"]
        .to_str()
        .expect("the server's request id is text")
        .to_owned();
    assert_ne!(
        request_id, client_request_id,
        "the server mints its own request id"
    );
    assert_eq!(
        confirmed.headers()["x-client-request-id"],
        client_request_id.as_str(),
        "the client's request id is echoed as its own"
    );
    expect_json(confirmed, StatusCode::OK).await;
    let events = history(&app, &tenant, id(&placed)).await;
    let confirm = &events[1]["metadata"];
    assert_eq!(confirm["command"], "order.confirm", "{confirm}");
    assert_eq!(confirm["request_id"], request_id.as_str(), "{confirm}");
    assert_eq!(confirm["causation_id"], request_id.as_str(), "{confirm}");
    assert_eq!(
        confirm["client_request_id"],
        client_request_id.as_str(),
        "{confirm}"
    );
    assert_ne!(
        events[0]["metadata"]["request_id"],
        request_id.as_str(),
        "the placement came from another request"
    );
}

#[tokio::test]
async fn cancelling_releases_exactly_the_reserved_stock() {
    // Arrange: two products; one order reserves 3 and 2, another reserves 1 more
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let mug = product_with(&app, &tenant, 1250, "EUR", 10).await;
    let tee = product_with(&app, &tenant, 800, "EUR", 10).await;
    let cancelled = place_ok(&app, &tenant, &customer, &[(&mug, 3), (&tee, 2)]).await;
    place_ok(&app, &tenant, &customer, &[(&mug, 1)]).await;
    assert_eq!(
        (
            stock_of(&app, &tenant, &mug).await,
            stock_of(&app, &tenant, &tee).await
        ),
        (6, 8),
        "both orders reserved their quantities"
    );

    // Act
    let response = command(
        &app,
        &tenant,
        id(&cancelled),
        "cancel",
        command_body("cancel", 0),
    )
    .await;

    // Assert
    let after = expect_json(response, StatusCode::OK).await;
    assert_eq!(after["status"], "cancelled", "{after}");
    assert_eq!(
        (
            stock_of(&app, &tenant, &mug).await,
            stock_of(&app, &tenant, &tee).await
        ),
        (9, 10),
        "the cancelled order's 3 mugs and 2 tees are back; the other order's mug is not"
    );
    let events = history(&app, &tenant, id(&cancelled)).await;
    assert_eq!(event_types(&events), ["order.placed", "order.cancelled"]);
    assert_eq!(
        events[1]["data"]["released"], cancelled["items"],
        "the cancellation records exactly the reserved lines"
    );

    // Act + Assert: cancelling twice releases nothing more
    expect_problem(
        command(
            &app,
            &tenant,
            id(&cancelled),
            "cancel",
            command_body("cancel", 0),
        )
        .await,
        StatusCode::CONFLICT,
        "order_is_cancelled",
    )
    .await;
    assert_eq!(
        (
            stock_in_database(&app, tenant.id, &mug).await,
            stock_in_database(&app, tenant.id, &tee).await
        ),
        (9, 10),
        "a refused second cancel leaves the stock alone"
    );
}

#[tokio::test]
async fn cancelling_an_order_whose_product_stock_is_near_the_32_bit_limit_gives_it_back_exactly() {
    // Arrange: a product at the largest stock the API accepts, minus what an order takes;
    // the order reserves 2, then the stock is raised back to the limit, so giving the 2 back
    // takes it past 2^31 - 1.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let limit = i64::from(i32::MAX);
    let product = product_with(&app, &tenant, 100, "EUR", i32::MAX).await;
    let placed = place_ok(&app, &tenant, &customer, &[(&product, 2)]).await;
    assert_eq!(stock_of(&app, &tenant, &product).await, limit - 2);
    expect_json(
        app.patch(
            &format!("/v1/products/{}", id(&product)),
            &tenant.token,
            json!({"stock": i32::MAX}),
        )
        .await,
        StatusCode::OK,
    )
    .await;

    // Act
    let response = command(
        &app,
        &tenant,
        id(&placed),
        "cancel",
        command_body("cancel", 0),
    )
    .await;

    // Assert: cancelled, and the 2 units are back on top of the limit, exactly
    let after = expect_json(response, StatusCode::OK).await;
    assert_eq!(after["status"], "cancelled", "{after}");
    assert_eq!(
        stock_of(&app, &tenant, &product).await,
        limit + 2,
        "the API shows the stock past 2^31 - 1"
    );
    assert_eq!(
        stock_in_database(&app, tenant.id, &product).await,
        limit + 2,
        "the database holds the stock past 2^31 - 1"
    );
    // A stock past the limit is still an ordinary stock: orders take from it.
    place_ok(&app, &tenant, &customer, &[(&product, 5)]).await;
    assert_eq!(stock_of(&app, &tenant, &product).await, limit - 3);
}
