//! Reading, listing and changing tenants: cursor pages newest first, one tenant by id, and
//! a change of plan.

use std::collections::HashSet;

use reqwest::StatusCode;
use serde_json::json;
use uuid::Uuid;

use crate::helpers::{
    OPERATOR_TOKEN, TENANTS, etag_of, expect_json, expect_problem, spawn_app, tenant_path,
};

#[tokio::test]
async fn the_operator_list_pages_newest_first_by_cursor_without_duplicates() {
    // Arrange: three tenants, created in order (ids are time-ordered).
    let app = spawn_app().await;
    let mut created = Vec::new();
    for _ in 0..3 {
        created.push(app.create_tenant().await.id.to_string());
    }

    // Act: page one at a time until all three have been seen. Tenants other tests create
    // meanwhile are newer, so they can only appear before ours.
    let mut seen = HashSet::new();
    let mut ours_in_order = Vec::new();
    let mut previous: Option<String> = None;
    let mut cursor: Option<String> = None;
    for _ in 0..2000 {
        let path = match &cursor {
            Some(cursor) => format!("{TENANTS}?limit=1&cursor={cursor}"),
            None => format!("{TENANTS}?limit=1"),
        };
        let page = expect_json(app.get(&path, OPERATOR_TOKEN).await, StatusCode::OK).await;
        let items = page["items"].as_array().expect("a page has items");
        assert_eq!(
            items.len(),
            1,
            "limit=1 gives exactly one item while more remain: {page}"
        );
        let id = items[0]["id"].as_str().expect("items have ids").to_owned();
        assert!(seen.insert(id.clone()), "tenant {id} appeared on two pages");
        if let Some(previous) = &previous {
            assert!(id < *previous, "newest first: {id} came after {previous}");
        }
        if created.contains(&id) {
            ours_in_order.push(id.clone());
        }
        if ours_in_order.len() == created.len() {
            break;
        }
        previous = Some(id);
        cursor = Some(
            page["next_cursor"]
                .as_str()
                .expect("a next_cursor while older tenants remain")
                .to_owned(),
        );
    }

    // Assert
    let newest_first: Vec<String> = created.iter().rev().cloned().collect();
    assert_eq!(
        ours_in_order, newest_first,
        "all three tenants were listed, newest first"
    );
}

#[tokio::test]
async fn the_operator_list_refuses_a_bad_limit_or_cursor() {
    // Arrange
    let app = spawn_app().await;

    for (query, code) in [
        ("limit=0", "invalid_limit"),
        ("limit=201", "invalid_limit"),
        ("limit=abc", "invalid_query"),
        ("cursor=nope", "invalid_cursor"),
    ] {
        // Act
        let response = app.get(&format!("{TENANTS}?{query}"), OPERATOR_TOKEN).await;

        // Assert
        expect_problem(response, StatusCode::BAD_REQUEST, code).await;
    }
}

#[tokio::test]
async fn the_operator_reads_one_tenant_and_an_unknown_id_is_not_found() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;

    // Act
    let found = app.get(&tenant_path(tenant.id), OPERATOR_TOKEN).await;
    let unknown = app.get(&tenant_path(Uuid::now_v7()), OPERATOR_TOKEN).await;
    let malformed = app.get(&tenant_path("not-a-uuid"), OPERATOR_TOKEN).await;

    // Assert
    let etag = etag_of(&found);
    let body = expect_json(found, StatusCode::OK).await;
    assert_eq!(
        body["id"],
        tenant.id.to_string(),
        "the requested tenant: {body}"
    );
    assert_eq!(body["slug"], tenant.slug, "its slug: {body}");
    assert_eq!(
        etag,
        format!("\"{}\"", body["version"]),
        "the ETag is the version"
    );
    expect_problem(unknown, StatusCode::NOT_FOUND, "not_found").await;
    expect_problem(malformed, StatusCode::NOT_FOUND, "not_found").await;
}

#[tokio::test]
async fn the_operator_changes_a_tenant_plan() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let before = expect_json(
        app.get(&tenant_path(tenant.id), OPERATOR_TOKEN).await,
        StatusCode::OK,
    )
    .await;

    // Act
    let response = app
        .patch(
            &tenant_path(tenant.id),
            OPERATOR_TOKEN,
            json!({"plan": "pro"}),
        )
        .await;
    let bogus = app
        .patch(
            &tenant_path(tenant.id),
            OPERATOR_TOKEN,
            json!({"plan": "platinum"}),
        )
        .await;

    // Assert
    let etag = etag_of(&response);
    let updated = expect_json(response, StatusCode::OK).await;
    assert_eq!(updated["plan"], "pro", "the plan changed: {updated}");
    assert_eq!(
        updated["version"],
        before["version"].as_i64().unwrap() + 1,
        "the version moved on: {updated}"
    );
    assert_eq!(
        etag,
        format!("\"{}\"", updated["version"]),
        "the ETag follows the version"
    );
    assert_eq!(
        updated["name"], before["name"],
        "the name is untouched: {updated}"
    );
    let problem = expect_problem(bogus, StatusCode::UNPROCESSABLE_ENTITY, "plan_not_found").await;
    assert_eq!(
        problem["errors"][0]["field"], "plan",
        "an unknown plan names the field: {problem}"
    );
    assert!(
        problem["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("enterprise, free, pro"),
        "and lists the plans there are: {problem}"
    );
    let me = expect_json(app.get("/v1/me", &tenant.token).await, StatusCode::OK).await;
    assert_eq!(
        me["tenant"]["plan"], "pro",
        "the tenant sees its new plan: {me}"
    );
}
