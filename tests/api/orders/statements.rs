//! No N+1: a page with `expand` costs the same statements whatever its size.

use super::*;
use crate::helpers::place_hundred_orders;

#[tokio::test]
async fn listing_with_expand_costs_the_same_statements_for_one_order_or_a_hundred() {
    // Arrange: the real binary logging every statement with its request.
    let log_file = std::env::temp_dir().join(format!("{}.log", unique("tenantry-nplus1")));
    let (mut server, app) = spawn_statement_logging_server(&log_file).await;
    let tenant = app.create_tenant().await;
    place_hundred_orders(&app, &tenant).await;

    // Act
    let run = Uuid::now_v7().simple().to_string();
    let mut sizes = Vec::new();
    for (label, limit) in [("small", 1), ("large", 100)] {
        let request_id = format!("nplus1-{label}-{run}");
        let response = app
            .client
            .get(app.url(&format!(
                "/v1/orders?limit={limit}&expand=customer,items.product"
            )))
            .bearer_auth(&tenant.token)
            .header("x-request-id", &request_id)
            .send()
            .await
            .unwrap();
        let page = expect_json(response, StatusCode::OK).await;
        let items = page["items"].as_array().unwrap();
        assert!(
            items.iter().all(|o| o["customer"].is_object()
                && o["items"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .all(|i| i["product"].is_object())),
            "the {label} page is expanded"
        );
        sizes.push((request_id, items.len()));
    }
    sigterm(&server);
    server.wait().await.unwrap();
    let lines = json_log_lines(&log_file);
    let _ = std::fs::remove_file(&log_file);

    // Assert
    assert_eq!(
        sizes.iter().map(|(_, n)| *n).collect::<Vec<_>>(),
        [1, 100],
        "one order, then a hundred"
    );
    let mut counts = Vec::new();
    for (request_id, _) in &sizes {
        let of_request = lines_of_request(&lines, request_id);
        let statements = statements_in(&of_request);
        assert!(
            statements.iter().any(|s| s.contains("order_summaries")),
            "the statement events of {request_id} carry its request id; its lines: {of_request:#?}"
        );
        counts.push((of_request.len(), statements));
    }
    let (small, large) = (&counts[0], &counts[1]);
    assert_eq!(
        small.0, large.0,
        "a page of 100 costs as many log lines (statements) as a page of 1:\n1: {:#?}\n100: {:#?}",
        small.1, large.1
    );
    assert!(
        large.0 <= 12,
        "a listing with expand takes at most 12 lines, got {}: {:#?}",
        large.0,
        large.1
    );
}
