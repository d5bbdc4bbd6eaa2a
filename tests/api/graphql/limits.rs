//! What an operation may cost, and the requests that are not GraphQL at all: depth and
//! complexity limits refused before any resolver runs (so 100 aliased mutations create
//! nothing), the per-credential budget of points with `rate_limited` and `Retry-After`, an
//! operation costing more than the whole budget (`query_too_costly`), batches (at most
//! 10 operations, each charged), mutations over GET (405), bodies that are not JSON (415)
//! or not GraphQL (400), and introspection turned off.

use std::time::Instant;

use reqwest::{StatusCode, header};
use serde_json::{Value, json};

use super::{error_codes, graphql, post_graphql, rest_ids};
use crate::helpers::{
    TestApp, TestTenant, expect_json, expect_problem, override_limits, spawn_app, spawn_app_with,
};

/// An operation of a few points at `rps = 1` (a budget of 60): 200 orders, two fields each.
const ORDERS_200: &str = "{ orders(first: 200) { edges { node { id status } } } }";

/// A server with rate limits on, and a tenant whose credentials may make one request a
/// second (a GraphQL budget of 60 points a minute) in bursts of 1000 REST requests, so
/// only the GraphQL budget can refuse.
async fn one_request_a_second(overrides: &[(&str, &str)]) -> (TestApp, TestTenant) {
    let mut config = vec![("TENANTRY_RATE_LIMITS", "on")];
    config.extend_from_slice(overrides);
    let app = spawn_app_with(&config).await;
    let tenant = app.create_tenant().await;
    override_limits(
        &app,
        &tenant,
        json!({"requests_per_second": 1, "request_burst": 1000}),
    )
    .await;
    (app, tenant)
}

fn cost(answer: &Value) -> (u64, u64, u64) {
    let cost = &answer["extensions"]["cost"];
    (
        cost["points"]
            .as_u64()
            .unwrap_or_else(|| panic!("{answer:#}")),
        cost["budget"]
            .as_u64()
            .unwrap_or_else(|| panic!("{answer:#}")),
        cost["remaining"]
            .as_u64()
            .unwrap_or_else(|| panic!("{answer:#}")),
    )
}

/// A refill of the budget between two answers: at most one point a second elapsed.
fn refill_bound(since: Instant) -> u64 {
    since.elapsed().as_secs() + 1
}

#[tokio::test]
async fn an_operation_nested_too_deep_is_refused_before_it_runs() {
    // Arrange: 13 levels, through introspection (the only way this schema nests so deep).
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let thirteen = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { \
                    ofType { ofType { ofType { ofType { name } } } } } } } } } } } } }";
    let twelve = "{ __schema { types { fields { type { ofType { ofType { ofType { ofType { \
                  ofType { ofType { ofType { name } } } } } } } } } } } }";

    // Act
    let refused = graphql(&app, &tenant.token, thirteen, json!({})).await;
    let allowed = graphql(&app, &tenant.token, twelve, json!({})).await;

    // Assert
    assert_eq!(error_codes(&refused), ["query_too_deep"], "{refused:#}");
    assert_eq!(refused["data"], Value::Null, "nothing ran: {refused:#}");
    assert_eq!(
        allowed["errors"],
        Value::Null,
        "12 levels are allowed: {allowed:#}"
    );
}

#[tokio::test]
async fn an_operation_too_complex_is_refused_before_it_runs() {
    // Arrange: 200 orders with a dozen fields each, twice over (aliases count each time).
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let node = "id status totalCents currency version createdAt customerId customer { id name } \
                items { quantity product { id name } }";
    let query = format!(
        "{{ a: orders(first: 200) {{ edges {{ node {{ {node} }} }} }} \
           b: orders(first: 200) {{ edges {{ node {{ {node} }} }} }} }}"
    );

    // Act
    let refused = graphql(&app, &tenant.token, &query, json!({})).await;
    let one = graphql(
        &app,
        &tenant.token,
        &format!("{{ orders(first: 100) {{ edges {{ node {{ {node} }} }} }} }}"),
        json!({}),
    )
    .await;

    // Assert
    assert_eq!(error_codes(&refused), ["query_too_complex"], "{refused:#}");
    assert_eq!(refused["data"], Value::Null, "nothing ran: {refused:#}");
    assert_eq!(one["errors"], Value::Null, "{one:#}");
    let complexity = one["extensions"]["cost"]["complexity"].as_u64().unwrap();
    assert!(complexity <= 5000, "{one:#}");
    assert_eq!(
        one["extensions"]["cost"]["points"].as_u64().unwrap(),
        complexity.div_ceil(100),
        "a point per hundred of complexity: {one:#}"
    );
}

#[tokio::test]
async fn a_hundred_aliased_mutations_are_refused_as_too_complex_and_create_nothing() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let mutations: String = (0..100)
        .map(|n| {
            format!(
                "m{n}: createProduct(input: {{sku: \"{}\", name: \"Alias {n}\", priceCents: 100, \
                 currency: \"EUR\", stock: 1}}) {{ id }}\n",
                crate::helpers::unique("ALIAS")
            )
        })
        .collect();
    let query = format!("mutation {{ {mutations} }}");

    // Act
    let answer = graphql(&app, &tenant.token, &query, json!({})).await;

    // Assert
    assert_eq!(error_codes(&answer), ["query_too_complex"], "{answer:#}");
    assert_eq!(answer["data"], Value::Null, "{answer:#}");
    assert!(
        rest_ids(&app, &tenant.token, "/v1/products?limit=200")
            .await
            .is_empty(),
        "not one of the mutations ran"
    );
}

#[tokio::test]
async fn past_its_budget_a_credential_is_rate_limited_with_retry_after() {
    // Arrange: a budget of 60 points a minute.
    let (app, tenant) = one_request_a_second(&[]).await;

    // Act: the same operation until refused.
    let mut answers = Vec::new();
    let mut last = Instant::now();
    let refused = loop {
        let response = post_graphql(&app, &tenant.token, &json!({"query": ORDERS_200})).await;
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .map(|v| v.to_str().unwrap().to_owned());
        let answer = expect_json(response, StatusCode::OK).await;
        if answer["errors"] != Value::Null {
            break (answer, retry_after);
        }
        assert!(
            retry_after.is_none(),
            "no Retry-After on an answer: {answer:#}"
        );
        answers.push((answer, refill_bound(last)));
        last = Instant::now();
        assert!(
            answers.len() <= 60,
            "a budget of 60 points is spent by 60 operations"
        );
    };

    // Assert: each answer took its points from the budget, until it had too few left.
    let (points, budget, first_remaining) = cost(&answers[0].0);
    assert_eq!(budget, 60, "requests_per_second × 60: {:#}", answers[0].0);
    assert!(
        points > 1,
        "200 orders cost more than a point: {:#}",
        answers[0].0
    );
    assert_eq!(first_remaining, budget - points, "{:#}", answers[0].0);
    assert!(
        answers.len() >= 2,
        "the budget held more than one operation"
    );
    for pair in answers.windows(2) {
        let (before, after) = (cost(&pair[0].0).2, cost(&pair[1].0).2);
        let refill = pair[1].1;
        assert!(
            before - points <= after && after <= before - points + refill,
            "remaining went {before} → {after}; it takes {points} points (and refills at most \
             {refill} meanwhile)"
        );
    }
    let (answer, retry_after) = refused;
    assert_eq!(error_codes(&answer), ["rate_limited"], "{answer:#}");
    assert_eq!(answer["data"], Value::Null, "nothing ran: {answer:#}");
    let seconds = answer["errors"][0]["extensions"]["retry_after_seconds"]
        .as_u64()
        .unwrap_or_else(|| panic!("retry_after_seconds: {answer:#}"));
    assert!((1..=points).contains(&seconds), "{answer:#}");
    assert_eq!(
        retry_after,
        Some(seconds.to_string()),
        "the Retry-After header says the same"
    );
    assert!(
        cost(&answer).2 < points,
        "refused for lack of points: {answer:#}"
    );
}

#[tokio::test]
async fn an_operation_costing_more_than_the_whole_budget_is_too_costly_and_charges_nothing() {
    // Arrange: a budget of 60 points; complexity allowed up to 10 000 so that an operation
    // can cost more than 60 points (5 000, the default, is 50).
    let (app, tenant) = one_request_a_second(&[("TENANTRY_GRAPHQL_MAX_COMPLEXITY", "10000")]).await;
    let node = "id sku name priceCents currency stock version createdAt updatedAt";
    let costly = format!(
        "{{ a: products(first: 200) {{ edges {{ cursor node {{ {node} }} }} }} \
           b: products(first: 200) {{ edges {{ cursor node {{ {node} }} }} }} \
           c: products(first: 200) {{ edges {{ cursor node {{ {node} }} }} }} }}"
    );

    // Act
    let refused = graphql(&app, &tenant.token, &costly, json!({})).await;
    let cheap = graphql(&app, &tenant.token, "{ me { actorType } }", json!({})).await;

    // Assert
    assert_eq!(error_codes(&refused), ["query_too_costly"], "{refused:#}");
    assert_eq!(refused["data"], Value::Null, "{refused:#}");
    let (points, budget, _) = cost(&refused);
    assert!(points > budget, "{refused:#}");
    assert_eq!(cheap["errors"], Value::Null, "{cheap:#}");
    assert_eq!(
        cost(&cheap),
        (1, 60, 59),
        "the refused operation took nothing from the budget: {cheap:#}"
    );
}

#[tokio::test]
async fn a_batch_of_more_than_ten_operations_is_a_400_problem() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let batch = |n: usize| Value::Array(vec![json!({"query": "{ me { actorType } }"}); n]);

    // Act
    let ten = post_graphql(&app, &tenant.token, &batch(10)).await;
    let eleven = post_graphql(&app, &tenant.token, &batch(11)).await;

    // Assert
    let answers = expect_json(ten, StatusCode::OK).await;
    assert_eq!(answers.as_array().map(Vec::len), Some(10), "{answers:#}");
    assert!(
        answers
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["data"]["me"]["actorType"] == "user")
    );
    expect_problem(eleven, StatusCode::UNPROCESSABLE_ENTITY, "batch_too_large").await;
}

#[tokio::test]
async fn every_operation_of_a_batch_is_charged() {
    // Arrange: a budget of 60 points; five operations of a few points each.
    let (app, tenant) = one_request_a_second(&[]).await;
    let query = "{ products(first: 200) { edges { node { id } } } }";
    let batch = Value::Array(vec![json!({"query": query}); 5]);

    // Act
    let started = Instant::now();
    let response = post_graphql(&app, &tenant.token, &batch).await;
    let refill = refill_bound(started);
    let answers = expect_json(response, StatusCode::OK).await;

    // Assert: each took its points, one after another.
    let answers = answers.as_array().unwrap();
    assert_eq!(answers.len(), 5);
    let (points, budget, _) = cost(&answers[0]);
    assert!(points > 1, "{:#}", answers[0]);
    assert!(5 * points <= budget, "the batch fits the budget");
    for (n, answer) in answers.iter().enumerate() {
        assert_eq!(answer["errors"], Value::Null, "{answer:#}");
        let spent = (n as u64 + 1) * points;
        let remaining = cost(answer).2;
        assert!(
            budget - spent <= remaining && remaining <= budget - spent + refill,
            "after operation {n} of the batch, {remaining} of {budget} points remain; \
             {spent} were spent"
        );
    }
}

#[tokio::test]
async fn a_get_runs_queries_but_refuses_mutations_with_405_and_changes_nothing() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let mutation = format!(
        "mutation {{ createProduct(input: {{sku: \"{}\", name: \"Via GET\", priceCents: 1, \
         currency: \"EUR\", stock: 1}}) {{ id }} }}",
        crate::helpers::unique("GET")
    );
    let get = |query: String, operation: Option<&'static str>| {
        let mut params = vec![("query", query)];
        if let Some(name) = operation {
            params.push(("operationName", name.to_owned()));
        }
        app.client
            .get(app.url("/graphql"))
            .bearer_auth(&tenant.token)
            .query(&params)
            .send()
    };

    // Act
    let query = get("{ me { actorType } }".into(), None).await.unwrap();
    let refused = get(mutation.clone(), None).await.unwrap();
    let named = get(
        format!(
            "query Q {{ me {{ actorType }} }} {}",
            mutation.replacen("mutation", "mutation M", 1)
        ),
        Some("M"),
    )
    .await
    .unwrap();

    // Assert
    let answer = expect_json(query, StatusCode::OK).await;
    assert_eq!(answer["data"]["me"]["actorType"], "user", "{answer:#}");
    assert_eq!(
        refused
            .headers()
            .get(header::ALLOW)
            .map(|v| v.to_str().unwrap()),
        Some("GET, POST")
    );
    expect_problem(
        refused,
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
    )
    .await;
    expect_problem(named, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed").await;
    assert!(
        rest_ids(&app, &tenant.token, "/v1/products")
            .await
            .is_empty(),
        "nothing was created"
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_415_and_json_that_is_not_a_request_is_400() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let post = |content_type: &'static str, body: &'static str| {
        app.client
            .post(app.url("/graphql"))
            .bearer_auth(&tenant.token)
            .header(header::CONTENT_TYPE, content_type)
            .body(body)
            .send()
    };

    // Act
    let text = post("text/plain", "{ me { actorType } }").await.unwrap();
    let form = post("application/x-www-form-urlencoded", "query=%7B%20me%20%7D")
        .await
        .unwrap();
    let broken = post("application/json", "{\"query\": ").await.unwrap();
    let not_a_string = post("application/json", "{\"query\": 42}").await.unwrap();

    // Assert
    expect_problem(
        text,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    expect_problem(
        form,
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
    )
    .await;
    expect_problem(broken, StatusCode::BAD_REQUEST, "invalid_graphql_request").await;
    expect_problem(
        not_a_string,
        StatusCode::BAD_REQUEST,
        "invalid_graphql_request",
    )
    .await;
}

#[tokio::test]
async fn a_request_without_a_query_is_a_400_problem() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;

    // Act
    let empty = post_graphql(&app, &tenant.token, &json!({})).await;
    let other = post_graphql(&app, &tenant.token, &json!({"nope": 1})).await;
    let get = app
        .client
        .get(app.url("/graphql"))
        .bearer_auth(&tenant.token)
        .send()
        .await
        .unwrap();

    // Assert: "A request that is not a GraphQL request at all (no JSON, no `query`) is a
    // 400 problem" (the route's documentation); a URL without its `query` parameter is
    // refused as every route's query string is.
    expect_problem(empty, StatusCode::BAD_REQUEST, "invalid_graphql_request").await;
    expect_problem(other, StatusCode::BAD_REQUEST, "invalid_graphql_request").await;
    expect_problem(get, StatusCode::BAD_REQUEST, "invalid_query").await;
}

#[tokio::test]
async fn introspection_answers_by_default_and_not_when_turned_off() {
    // Arrange
    let on = spawn_app().await;
    let off = spawn_app_with(&[("TENANTRY_GRAPHQL_INTROSPECTION", "off")]).await;
    let (on_tenant, off_tenant) = (on.create_tenant().await, off.create_tenant().await);
    let query = "{ __schema { types { name } } }";

    // Act
    let shown = graphql(&on, &on_tenant.token, query, json!({})).await;
    let hidden = graphql(&off, &off_tenant.token, query, json!({})).await;
    let still_works = graphql(&off, &off_tenant.token, "{ me { actorType } }", json!({})).await;

    // Assert
    assert_eq!(shown["errors"], Value::Null, "{shown:#}");
    let names: Vec<&str> = shown["data"]["__schema"]["types"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["name"].as_str())
        .collect();
    assert!(
        names.contains(&"Order") && names.contains(&"Mutation"),
        "{names:?}"
    );
    // Off, nothing of the schema is shown (and the error says why: see
    // `introspection_turned_off_says_so_with_an_error`).
    assert_eq!(
        hidden["data"]["__schema"],
        Value::Null,
        "no schema shown: {hidden:#}"
    );
    assert!(!hidden.to_string().contains("\"Order\""), "{hidden:#}");
    assert_eq!(
        still_works["data"]["me"]["actorType"], "user",
        "{still_works:#}"
    );
}

#[tokio::test]
async fn introspection_turned_off_says_so_with_an_error() {
    // Arrange
    let app = spawn_app_with(&[("TENANTRY_GRAPHQL_INTROSPECTION", "off")]).await;
    let tenant = app.create_tenant().await;

    // Act
    let schema = graphql(
        &app,
        &tenant.token,
        "{ __schema { types { name } } }",
        json!({}),
    )
    .await;
    let one_type = graphql(
        &app,
        &tenant.token,
        "{ __type(name: \"Order\") { name } }",
        json!({}),
    )
    .await;

    // Assert
    for answer in [&schema, &one_type] {
        assert_eq!(
            answer["errors"][0]["extensions"]["code"], "introspection_disabled",
            "introspection off answers with an error: {answer:#}"
        );
        assert_eq!(answer["data"], Value::Null, "{answer:#}");
    }
}
