//! `Idempotency-Key` on order commands: replay, reuse with another body, per-tenant keys,
//! and a failed command leaving its key free.

use super::*;

#[tokio::test]
async fn an_idempotency_key_replays_the_first_answer_and_never_does_the_work_twice() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let product = product_with(&app, &tenant, 1250, "EUR", 10).await;
    let body = order_request(&customer, &[(&product, 2)]);
    let key = unique("order-key");

    // Act
    let first = post_with_key(&app, &tenant, "/v1/orders", &key, body.clone()).await;
    let second = post_with_key(&app, &tenant, "/v1/orders", &key, body.clone()).await;

    // Assert: the same answer, one order, stock reserved once
    assert!(!replayed(&first), "the first request is not a replay");
    assert!(
        replayed(&second),
        "the retry says it is a replay (idempotent-replayed: true)"
    );
    let first = expect_json(first, StatusCode::CREATED).await;
    let second = expect_json(second, StatusCode::CREATED).await;
    assert_eq!(second, first, "the retry answers exactly the first body");
    let listed = all_pages(&app, &tenant, "/v1/orders").await;
    assert_eq!(listed.len(), 1, "one order only: {listed:?}");
    assert_eq!(stock_of(&app, &tenant, &product).await, 8, "reserved once");

    // Act + Assert: the same key with another body is refused
    let different = order_request(&customer, &[(&product, 3)]);
    expect_problem(
        post_with_key(&app, &tenant, "/v1/orders", &key, different).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(all_pages(&app, &tenant, "/v1/orders").await.len(), 1);
    assert_eq!(stock_of(&app, &tenant, &product).await, 8);

    // Act + Assert: keys are per tenant
    let other = app.create_tenant().await;
    let other_customer = app.create_customer(&other).await;
    let other_product = product_with(&app, &other, 100, "EUR", 10).await;
    let theirs = post_with_key(
        &app,
        &other,
        "/v1/orders",
        &key,
        order_request(&other_customer, &[(&other_product, 1)]),
    )
    .await;
    assert!(
        !replayed(&theirs),
        "another tenant's use of the key is fresh"
    );
    let theirs = expect_json(theirs, StatusCode::CREATED).await;
    assert_ne!(
        theirs["id"], first["id"],
        "another tenant gets its own order"
    );
    assert_eq!(theirs["customer_id"], other_customer["id"]);

    // Act + Assert: a failed command leaves its key unused
    let scarce = product_with(&app, &tenant, 100, "EUR", 1).await;
    let retry_key = unique("retry-key");
    let wants_two = order_request(&customer, &[(&scarce, 2)]);
    expect_problem(
        post_with_key(&app, &tenant, "/v1/orders", &retry_key, wants_two.clone()).await,
        StatusCode::CONFLICT,
        "insufficient_stock",
    )
    .await;
    assert_eq!(
        stock_of(&app, &tenant, &scarce).await,
        1,
        "nothing reserved"
    );
    expect_json(
        app.patch(
            &format!("/v1/products/{}", id(&scarce)),
            &tenant.token,
            json!({"stock": 5}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    let retried = post_with_key(&app, &tenant, "/v1/orders", &retry_key, wants_two).await;
    assert!(
        !replayed(&retried),
        "after a failure the key is free: the retry does the work"
    );
    let retried = expect_json(retried, StatusCode::CREATED).await;
    assert_eq!(retried["total_cents"], 200, "{retried}");
    assert_eq!(stock_of(&app, &tenant, &scarce).await, 3, "5 minus 2");

    // Act + Assert: transitions too
    let order_id = id(&first);
    transition_ok(&app, &tenant, order_id, "confirm", json!({})).await;
    let pay_key = unique("pay-key");
    let pay_path = format!("/v1/orders/{order_id}/pay");
    let pay = command_body("pay", first["total_cents"].as_i64().unwrap());
    let paid = post_with_key(&app, &tenant, &pay_path, &pay_key, pay.clone()).await;
    let paid_again = post_with_key(&app, &tenant, &pay_path, &pay_key, pay).await;
    assert!(
        !replayed(&paid) && replayed(&paid_again),
        "the second pay is the replay"
    );
    let paid = expect_json(paid, StatusCode::OK).await;
    let paid_again = expect_json(paid_again, StatusCode::OK).await;
    assert_eq!(
        paid_again, paid,
        "the replay answers the first payment's body"
    );
    assert_eq!(
        event_types(&history(&app, &tenant, order_id).await),
        ["order.placed", "order.confirmed", "order.paid"],
        "exactly one order.paid event"
    );
    expect_problem(
        post_with_key(
            &app,
            &tenant,
            &format!("/v1/orders/{order_id}/ship"),
            &pay_key,
            json!({}),
        )
        .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "idempotency_key_reused",
    )
    .await;
}
