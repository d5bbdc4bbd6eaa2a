//! Listing: filters, cursor pages newest first, `expand`, and validation of the request.

use super::*;

fn query_value(value: &Value) -> String {
    form_urlencoded::byte_serialize(value.as_str().unwrap().as_bytes()).collect()
}

#[tokio::test]
async fn orders_are_listed_newest_first_filtered_paged_and_expanded() {
    // Arrange: five orders of two customers; two confirmed, one cancelled
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let ada = app.create_customer(&tenant).await;
    let bob = app.create_customer(&tenant).await;
    let mug = product_with(&app, &tenant, 1250, "EUR", 100).await;
    let tee = product_with(&app, &tenant, 800, "EUR", 100).await;
    let mut orders = Vec::new();
    for (customer, items) in [
        (&ada, vec![(&mug, 1)]),
        (&bob, vec![(&mug, 2), (&tee, 1)]),
        (&ada, vec![(&tee, 3)]),
        (&bob, vec![(&tee, 1)]),
        (&ada, vec![(&mug, 1), (&tee, 1)]),
    ] {
        orders.push(place_ok(&app, &tenant, customer, &items).await);
    }
    for (index, name) in [(1, "confirm"), (3, "confirm"), (4, "cancel")] {
        orders[index] = transition_ok(
            &app,
            &tenant,
            id(&orders[index]),
            name,
            command_body(name, 0),
        )
        .await;
    }
    let ids = |indexes: &[usize]| -> Vec<String> {
        indexes.iter().map(|&i| id(&orders[i]).to_owned()).collect()
    };
    let list = |query: String| {
        let app = &app;
        let token = tenant.token.clone();
        async move {
            let path = format!("/v1/orders{query}");
            let page = expect_json(app.get(&path, &token).await, StatusCode::OK).await;
            (path, page)
        }
    };

    // Act + Assert: filters
    let from = query_value(&orders[1]["created_at"]);
    let to = query_value(&orders[3]["created_at"]);
    for (query, expected) in [
        (String::new(), ids(&[4, 3, 2, 1, 0])),
        ("?status=pending".to_owned(), ids(&[2, 0])),
        ("?status=confirmed".to_owned(), ids(&[3, 1])),
        ("?status=cancelled".to_owned(), ids(&[4])),
        ("?status=delivered".to_owned(), vec![]),
        (format!("?customer_id={}", id(&bob)), ids(&[3, 1])),
        (
            format!("?customer_id={}&status=pending", id(&ada)),
            ids(&[2, 0]),
        ),
        (
            format!("?created_from={from}&created_to={to}"),
            ids(&[2, 1]),
        ),
        (format!("?created_from={from}"), ids(&[4, 3, 2, 1])),
        (format!("?created_to={to}"), ids(&[2, 1, 0])),
    ] {
        let (path, page) = list(query).await;
        assert_eq!(ids_of(&page), expected, "GET {path}, newest first");
    }
    let (_, everything) = list(String::new()).await;
    for (listed, current) in everything["items"]
        .as_array()
        .unwrap()
        .iter()
        .zip(orders.iter().rev())
    {
        assert_eq!(
            listed, current,
            "a listed order equals the order as its last command answered"
        );
        assert!(
            listed.get("customer").is_none()
                && listed["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|i| i.get("product").is_none()),
            "nothing is embedded without expand: {listed}"
        );
    }

    // Act + Assert: pages of two, newest first, without duplicates or gaps
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut sizes = Vec::new();
    loop {
        let query = match &cursor {
            Some(c) => format!("?limit=2&cursor={c}"),
            None => "?limit=2".to_owned(),
        };
        let (_, page) = list(query).await;
        sizes.push(page["items"].as_array().unwrap().len());
        seen.extend(ids_of(&page));
        match page["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => break,
        }
    }
    assert_eq!(sizes, [2, 2, 1], "five orders in pages of two");
    assert_eq!(
        seen,
        ids(&[4, 3, 2, 1, 0]),
        "paging visits every order once, newest first"
    );
    let (_, first_pending) = list("?status=pending&limit=1".to_owned()).await;
    let cursor = first_pending["next_cursor"].as_str().unwrap();
    let (_, second_pending) = list(format!("?status=pending&limit=1&cursor={cursor}")).await;
    assert_eq!(
        (ids_of(&first_pending), ids_of(&second_pending)),
        (ids(&[2]), ids(&[0])),
        "paging a filtered list keeps the filter"
    );
    assert!(
        second_pending["next_cursor"].is_null(),
        "the last filtered page has no cursor: {second_pending}"
    );

    // Act + Assert: expand embeds the customer and each line's product, each exactly as
    // the catalog shows it now (the products' stock has moved since they were created)
    let (path, expanded) = list("?expand=customer,items.product".to_owned()).await;
    let expanded = expanded["items"].as_array().unwrap();
    assert_eq!(expanded.len(), 5, "GET {path}");
    let now = |path: String| {
        let app = &app;
        let token = tenant.token.clone();
        async move { expect_json(app.get(&path, &token).await, StatusCode::OK).await }
    };
    let (ada, bob) = (
        now(format!("/v1/customers/{}", id(&ada))).await,
        now(format!("/v1/customers/{}", id(&bob))).await,
    );
    let (mug, tee) = (
        now(format!("/v1/products/{}", id(&mug))).await,
        now(format!("/v1/products/{}", id(&tee))).await,
    );
    for order in expanded {
        let customer = if order["customer_id"] == ada["id"] {
            &ada
        } else {
            &bob
        };
        assert_eq!(
            &order["customer"], customer,
            "the order's own customer is embedded: {order}"
        );
        for item in order["items"].as_array().unwrap() {
            let product = if item["product_id"] == mug["id"] {
                &mug
            } else {
                &tee
            };
            assert_eq!(
                &item["product"], product,
                "each line embeds its product: {order}"
            );
        }
    }
    let one = expect_json(
        app.get(
            &format!("/v1/orders/{}?expand=customer", id(&orders[1])),
            &tenant.token,
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        one["customer"]["id"], bob["id"],
        "GET one order expands too: {one}"
    );

    // Act + Assert: an unknown expansion is a 400
    for path in [
        "/v1/orders?expand=customer,payments".to_owned(),
        format!("/v1/orders/{}?expand=items.customer", id(&orders[0])),
    ] {
        expect_problem(
            app.get(&path, &tenant.token).await,
            StatusCode::BAD_REQUEST,
            "invalid_expand",
        )
        .await;
    }
}

#[tokio::test]
async fn an_order_embeds_a_product_deleted_since_with_its_deletion_time() {
    // Arrange: an order for a product that is then deleted from the catalog
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let customer = app.create_customer(&tenant).await;
    let mug = product_with(&app, &tenant, 1250, "EUR", 5).await;
    let order = place_ok(&app, &tenant, &customer, &[(&mug, 1)]).await;
    let deleted = app
        .delete(&format!("/v1/products/{}", id(&mug)), &tenant.token)
        .await;
    assert_eq!(deleted.status(), StatusCode::NO_CONTENT);

    // Act
    let path = format!("/v1/orders/{}?expand=items.product", id(&order));
    let expanded = expect_json(app.get(&path, &tenant.token).await, StatusCode::OK).await;

    // Assert: the catalog no longer shows it, the order still does, marked deleted
    expect_problem(
        app.get(&format!("/v1/products/{}", id(&mug)), &tenant.token)
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    )
    .await;
    let product = &expanded["items"][0]["product"];
    assert_eq!(product["id"], mug["id"], "GET {path}: {expanded}");
    assert_eq!(product["sku"], mug["sku"], "GET {path}: {expanded}");
    assert!(
        product["deleted_at"].is_string(),
        "a deleted product carries deleted_at: {expanded}"
    );
    let listed = expect_json(app.get("/v1/products", &tenant.token).await, StatusCode::OK).await;
    assert!(
        listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .all(|p| p.get("deleted_at").is_none()),
        "live products never show deleted_at: {listed}"
    );
}
