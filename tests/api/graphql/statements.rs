//! No N+1 over GraphQL: a page of orders with each order's `customer`, its lines'
//! `product` and its `events` costs the same statements for one order as for a hundred
//! (the batch loaders load each kind for the whole page at once), and no more than the
//! REST listing with `expand`.

use reqwest::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::helpers::{
    TestApp, TestTenant, expect_json, json_log_lines, lines_of_request, place_hundred_orders,
    sigterm, spawn_statement_logging_server, statements_in, unique,
};

/// The selection of every order of the page.
const LINKS: &str = "id status customer { name } items { quantity product { name } }";
const LINKS_AND_EVENTS: &str =
    "id status customer { name } items { quantity product { name } } events { eventType }";

/// The same REST bound as `orders::statements` (log lines of the request, statements and
/// the request's own line).
const REST_BOUND: usize = 12;

/// `POST /graphql` of `orders(first: first) { edges { node { selection } } }` under
/// `request_id`; returns how many orders it showed (each checked to carry its links).
async fn page_of_orders(
    app: &TestApp,
    tenant: &TestTenant,
    request_id: &str,
    first: usize,
    selection: &str,
) -> usize {
    let query = format!("{{ orders(first: {first}) {{ edges {{ node {{ {selection} }} }} }} }}");
    let response = app
        .client
        .post(app.url("/graphql"))
        .bearer_auth(&tenant.token)
        .header("x-request-id", request_id)
        .json(&json!({"query": query}))
        .send()
        .await
        .unwrap();
    let answer = expect_json(response, StatusCode::OK).await;
    assert_eq!(answer["errors"], Value::Null, "{request_id}: {answer:#}");
    let edges = answer["data"]["orders"]["edges"].as_array().unwrap();
    for edge in edges {
        let node = &edge["node"];
        assert!(node["customer"]["name"].is_string(), "{request_id}: {node}");
        assert!(
            node["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|i| i["product"]["name"].is_string()),
            "{request_id}: {node}"
        );
        if selection.contains("events") {
            assert_eq!(node["events"][0]["eventType"], "order.placed", "{node}");
        }
    }
    edges.len()
}

// Observed (debug build, 2 shared cores), statements of the request:
// - REST `GET /v1/orders?limit=100&expand=customer,items.product`: 5 (6 log lines);
// - GraphQL `orders(first: 1)` with `customer`, `items.product`: 5 (6 lines), the same as REST
//   (credential check, `order_summaries`, `order_items`, `customers`, `products`);
// - GraphQL `orders(first: 100)`, same selection: 6, 8, 10 over three runs: `customers` and
//   `products` repeated 1-4 times each;
// - with `events { eventType }`: 6 for one order, 12, 17, 23 for a hundred.
// The batch loaders (src/graphql/context.rs, `DataLoader::new`, async-graphql's default
// 1 ms delay) load whatever keys arrived within 1 ms of the first, so a page that takes
// longer than that to resolve is loaded in several batches: the count depends on timing.
#[tokio::test]
async fn a_page_of_orders_with_its_links_costs_the_same_statements_for_one_order_or_a_hundred() {
    // Arrange: the real binary logging every statement with its request; 100 orders of 10
    // customers, two lines each over 10 products.
    let log_file = std::env::temp_dir().join(format!("{}.log", unique("tenantry-gql-nplus1")));
    let (mut server, app) = spawn_statement_logging_server(&log_file).await;
    let tenant = app.create_tenant().await;
    place_hundred_orders(&app, &tenant).await;

    // Act: GraphQL pages of 1 and 100, without and with `events`; then REST's page of 100.
    let run = Uuid::now_v7().simple().to_string();
    let mut runs = Vec::new();
    for (label, selection) in [("links", LINKS), ("events", LINKS_AND_EVENTS)] {
        for first in [1, 100] {
            let request_id = format!("gql-nplus1-{label}-{first}-{run}");
            let shown = page_of_orders(&app, &tenant, &request_id, first, selection).await;
            runs.push((request_id, first, shown));
        }
    }
    let rest_request_id = format!("rest-nplus1-100-{run}");
    let response = app
        .client
        .get(app.url("/v1/orders?limit=100&expand=customer,items.product"))
        .bearer_auth(&tenant.token)
        .header("x-request-id", &rest_request_id)
        .send()
        .await
        .unwrap();
    let rest_page = expect_json(response, StatusCode::OK).await;
    sigterm(&server);
    server.wait().await.unwrap();
    let lines = json_log_lines(&log_file);
    let _ = std::fs::remove_file(&log_file);

    // Assert
    assert_eq!(
        runs.iter()
            .map(|(_, first, shown)| (*first, *shown))
            .collect::<Vec<_>>(),
        [(1, 1), (100, 100), (1, 1), (100, 100)],
        "each page shows as many orders as it asked for"
    );
    assert_eq!(rest_page["items"].as_array().unwrap().len(), 100);
    let count = |request_id: &str| {
        let of_request = lines_of_request(&lines, request_id);
        let statements: Vec<String> = statements_in(&of_request)
            .into_iter()
            .map(str::to_owned)
            .collect();
        assert!(
            statements.iter().any(|s| s.contains("order_summaries")),
            "the statements of {request_id} carry its request id; its lines: {of_request:#?}"
        );
        (of_request.len(), statements)
    };
    let counts: Vec<(usize, Vec<String>)> = runs.iter().map(|(id, ..)| count(id)).collect();
    let rest = count(&rest_request_id);
    println!(
        "GraphQL statements (log lines): links 1 → {} ({}), links 100 → {} ({}), \
         events 1 → {} ({}), events 100 → {} ({}); REST 100 with expand → {} ({})",
        counts[0].1.len(),
        counts[0].0,
        counts[1].1.len(),
        counts[1].0,
        counts[2].1.len(),
        counts[2].0,
        counts[3].1.len(),
        counts[3].0,
        rest.1.len(),
        rest.0,
    );
    for (pair, label) in [
        (&counts[0..2], "links"),
        (&counts[2..4], "links and events"),
    ] {
        let (small, large) = (&pair[0], &pair[1]);
        assert_eq!(
            small.1.len(),
            large.1.len(),
            "with {label}, a page of 100 costs as many statements as a page of 1:\n1: {:#?}\n100: {:#?}",
            small.1,
            large.1
        );
        assert!(
            large.0 <= REST_BOUND,
            "with {label}, a page takes at most {REST_BOUND} log lines, as over REST; got {}: {:#?}",
            large.0,
            large.1
        );
    }
    // Every order's `events` is one more statement for the whole page, never one per
    // order.
    assert_eq!(
        counts[3].1.len(),
        counts[1].1.len() + 1,
        "events cost one statement for the page:\nwithout: {:#?}\nwith: {:#?}",
        counts[1].1,
        counts[3].1
    );
    assert_eq!(
        counts[1].1.len(),
        rest.1.len(),
        "GraphQL's page of 100 with its links costs REST's `expand=customer,items.product`:\n\
         GraphQL: {:#?}\nREST: {:#?}",
        counts[1].1,
        rest.1
    );
}
