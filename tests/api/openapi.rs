//! The OpenAPI document is complete, served, and committed up to date.

use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{expect_json, spawn_app};

const COMMITTED: &str = include_str!("../../openapi/openapi.json");

#[test]
fn the_committed_spec_matches_the_code() {
    let generated = tenantry::http::openapi().to_pretty_json().unwrap();
    assert!(
        generated.trim() == COMMITTED.trim(),
        "openapi/openapi.json is stale: run `cargo run -- openapi > openapi/openapi.json`"
    );
}

#[test]
fn every_operation_documents_its_errors_and_every_secured_one_names_a_defined_scheme() {
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    let schemes = spec["components"]["securitySchemes"]
        .as_object()
        .expect("security schemes");
    for name in ["bearer", "api_key", "operator"] {
        assert!(schemes.contains_key(name), "security scheme {name} missing");
    }
    let mut operations = 0;
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            operations += 1;
            let responses = operation["responses"].as_object().unwrap();
            assert!(
                responses.contains_key("500"),
                "{method} {path} lacks a documented 500"
            );
            assert!(
                responses
                    .keys()
                    .any(|s| s.starts_with('2') || s.starts_with('3')),
                "{method} {path} lacks a success response"
            );
            if let Some(security) = operation["security"].as_array() {
                for requirement in security {
                    for scheme in requirement.as_object().unwrap().keys() {
                        assert!(
                            schemes.contains_key(scheme),
                            "{method} {path} uses undefined scheme {scheme}"
                        );
                    }
                }
                assert!(
                    responses.contains_key("401") && responses.contains_key("403"),
                    "{method} {path} lacks 401/403"
                );
            }
            if operation["requestBody"].is_object() {
                assert!(
                    responses.contains_key("422"),
                    "{method} {path} has a body but no 422"
                );
            }
            if operation["security"].is_array() || operation["requestBody"].is_object() {
                assert!(
                    responses
                        .get("503")
                        .is_some_and(|r| r["headers"]["Retry-After"].is_object()),
                    "{method} {path} reaches the database but documents no 503 with Retry-After"
                );
            }
        }
    }
    assert!(
        operations >= 20,
        "expected every route documented, found {operations} operations"
    );
}

#[tokio::test]
async fn the_spec_and_swagger_ui_are_served() {
    let app = spawn_app().await;
    let served = expect_json(
        app.client
            .get(app.url("/openapi.json"))
            .send()
            .await
            .unwrap(),
        StatusCode::OK,
    )
    .await;
    assert_eq!(
        served,
        serde_json::from_str::<Value>(COMMITTED).unwrap(),
        "/openapi.json serves the committed document"
    );

    let docs = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), StatusCode::OK);
    assert!(
        docs.text().await.unwrap().contains("swagger-ui"),
        "Swagger UI page expected at /docs/"
    );
    let bundle = app
        .client
        .get(app.url("/docs/swagger-ui-bundle.js"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        bundle.status(),
        StatusCode::OK,
        "Swagger UI assets are vendored, not fetched from the internet"
    );
}
