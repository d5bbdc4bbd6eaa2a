//! Placing an order: prices from the catalog, stock reserved, the same order read back;
//! invalid orders refused, reserving nothing.

use super::*;

#[tokio::test]
async fn placing_prices_from_the_catalog_reserves_stock_and_reads_back_the_same() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let mug = product_with(&app, &tenant, 1250, "EUR", 10).await;
    let tee = product_with(&app, &tenant, 399, "EUR", 5).await;

    // Act
    let response = place(&app, &tenant, &customer, &[(&mug, 2), (&tee, 3)]).await;
    let etag = etag_of(&response);
    let placed = expect_json(response, StatusCode::CREATED).await;

    // Assert: prices and currency come from the catalog; the total is computed
    assert_eq!(
        placed["status"], "pending",
        "a new order is pending: {placed}"
    );
    assert_eq!(placed["version"], 1, "a new order has one event: {placed}");
    assert_eq!(placed["customer_id"], customer["id"], "{placed}");
    assert_eq!(placed["currency"], "EUR", "{placed}");
    assert_eq!(
        placed["total_cents"],
        2 * 1250 + 3 * 399,
        "the total is quantity × catalog price, summed: {placed}"
    );
    assert_eq!(
        placed["items"],
        json!([
            {"product_id": mug["id"], "quantity": 2, "unit_price_cents": 1250},
            {"product_id": tee["id"], "quantity": 3, "unit_price_cents": 399},
        ]),
        "the lines carry the catalog prices, in request order"
    );
    assert!(
        placed["created_at"].is_string() && placed["created_at"] == placed["updated_at"],
        "a new order was created and last updated at the same instant: {placed}"
    );
    assert_eq!(etag, "\"1\"", "the ETag is the version");

    // Assert: stock is reserved
    assert_eq!(stock_of(&app, &tenant, &mug).await, 8, "10 mugs minus 2");
    assert_eq!(stock_of(&app, &tenant, &tee).await, 2, "5 tees minus 3");

    // Assert: reads back equal, with the same ETag; If-None-Match answers 304
    let path = format!("/v1/orders/{}", id(&placed));
    let read = app.get(&path, &tenant.token).await;
    assert_eq!(etag_of(&read), etag, "GET carries the same ETag as the 201");
    let read = expect_json(read, StatusCode::OK).await;
    assert_eq!(read, placed, "GET shows exactly the 201 body");
    let bearer = format!("Bearer {}", tenant.token);
    let not_modified = send(
        &app,
        Method::GET,
        &path,
        &[("authorization", &bearer), (IF_NONE_MATCH.as_str(), &etag)],
        None,
    )
    .await;
    assert_eq!(
        not_modified.status(),
        StatusCode::NOT_MODIFIED,
        "If-None-Match with the current ETag is answered 304"
    );
    assert!(
        not_modified.text().await.unwrap().is_empty(),
        "a 304 has no body"
    );
    let stale = send(
        &app,
        Method::GET,
        &path,
        &[
            ("authorization", &bearer),
            (IF_NONE_MATCH.as_str(), "\"0\""),
        ],
        None,
    )
    .await;
    assert_eq!(
        stale.status(),
        StatusCode::OK,
        "If-None-Match with another version gets the order"
    );

    // Assert: a later price change does not reprice the order
    expect_json(
        app.patch(
            &format!("/v1/products/{}", id(&mug)),
            &tenant.token,
            json!({"price_cents": 9999}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        order(&app, &tenant, id(&placed)).await,
        placed,
        "the order keeps the prices it was placed at"
    );
}

#[tokio::test]
async fn invalid_orders_are_refused_naming_the_field_and_reserve_nothing() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let other_tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let eur = product_with(&app, &tenant, 1250, "EUR", 10).await;
    let eur_too = product_with(&app, &tenant, 500, "EUR", 10).await;
    let usd = product_with(&app, &tenant, 700, "USD", 10).await;
    let deleted = product_with(&app, &tenant, 100, "EUR", 10).await;
    let response = app
        .delete(&format!("/v1/products/{}", id(&deleted)), &tenant.token)
        .await;
    assert_eq!(response.status(), StatusCode::NO_CONTENT, "product deleted");
    let foreign_customer = app.create_customer(&other_tenant).await;
    let foreign_product = product_with(&app, &other_tenant, 100, "EUR", 10).await;
    let unknown = json!({"id": Uuid::now_v7().to_string()});

    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "an unknown customer",
            order_request(&unknown, &[(&eur, 1)]),
            "customer_id",
            "customer_not_found",
        ),
        (
            "another tenant's customer",
            order_request(&foreign_customer, &[(&eur, 1)]),
            "customer_id",
            "customer_not_found",
        ),
        (
            "an unknown product",
            order_request(&customer, &[(&unknown, 1)]),
            "items[0].product_id",
            "product_not_found",
        ),
        (
            "another tenant's product",
            order_request(&customer, &[(&eur, 1), (&foreign_product, 1)]),
            "items[1].product_id",
            "product_not_found",
        ),
        (
            "a deleted product",
            order_request(&customer, &[(&deleted, 1)]),
            "items[0].product_id",
            "product_not_found",
        ),
        (
            "the same product twice",
            order_request(&customer, &[(&eur, 1), (&eur, 2)]),
            "items[1].product_id",
            "duplicate_product",
        ),
        (
            "a quantity of 0",
            order_request(&customer, &[(&eur, 0)]),
            "items[0].quantity",
            "validation_failed",
        ),
        (
            "a negative quantity",
            order_request(&customer, &[(&eur_too, 1), (&eur, -1)]),
            "items[1].quantity",
            "validation_failed",
        ),
        (
            "no items",
            order_request(&customer, &[]),
            "items",
            "validation_failed",
        ),
        (
            "products in two currencies",
            order_request(&customer, &[(&eur, 1), (&usd, 1)]),
            "items",
            "mixed_currencies",
        ),
    ];

    for (name, body, field, code) in cases {
        // Act
        let response = app.post("/v1/orders", &tenant.token, body).await;

        // Assert
        let problem = expect_invalid(response, code, field).await;
        assert!(
            problem["detail"].is_string(),
            "an order with {name}: {problem}"
        );
    }
    let listed = expect_json(app.get("/v1/orders", &tenant.token).await, StatusCode::OK).await;
    assert_eq!(
        listed["items"],
        json!([]),
        "no refused order was placed: {listed}"
    );
    for product in [&eur, &eur_too, &usd] {
        assert_eq!(
            stock_of(&app, &tenant, product).await,
            10,
            "no refused order reserved stock of {}",
            product["sku"]
        );
    }
    assert_eq!(
        stock_in_database(&app, tenant.id, &deleted).await,
        10,
        "the deleted product's stock is untouched"
    );
    assert_eq!(
        stock_of(&app, &other_tenant, &foreign_product).await,
        10,
        "the other tenant's stock is untouched"
    );
}
