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
                    .any(|s| s.starts_with('2') || s.starts_with('3') || s == "101"),
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

/// Every place a spec object may carry an example, with the schema it must satisfy.
struct Illustrated<'a> {
    at: String,
    schema: &'a Value,
    example: &'a Value,
}

/// The examples of a schema and of every schema inside it (properties, items, branches).
fn schema_examples<'a>(at: &str, schema: &'a Value, out: &mut Vec<Illustrated<'a>>) {
    let Some(object) = schema.as_object() else {
        return;
    };
    if let Some(example) = object.get("example") {
        out.push(Illustrated {
            at: at.to_owned(),
            schema,
            example,
        });
    }
    for example in object
        .get("examples")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        out.push(Illustrated {
            at: at.to_owned(),
            schema,
            example,
        });
    }
    for (name, property) in object
        .get("properties")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        schema_examples(&format!("{at}.{name}"), property, out);
    }
    if let Some(items) = object.get("items") {
        schema_examples(&format!("{at}[]"), items, out);
    }
    for key in ["oneOf", "anyOf", "allOf"] {
        for (i, branch) in object
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            schema_examples(&format!("{at}/{key}/{i}"), branch, out);
        }
    }
}

/// The examples of media types (a request body's, a response's): `example` and each of
/// `examples`.
fn content_examples<'a>(at: &str, content: &'a Value, out: &mut Vec<Illustrated<'a>>) {
    for (media, content) in content.as_object().into_iter().flatten() {
        let schema = &content["schema"];
        if let Some(example) = content.get("example") {
            out.push(Illustrated {
                at: format!("{at} {media}"),
                schema,
                example,
            });
        }
        for (name, example) in content["examples"].as_object().into_iter().flatten() {
            out.push(Illustrated {
                at: format!("{at} {media} ({name})"),
                schema,
                example: &example["value"],
            });
        }
        schema_examples(&format!("{at} {media} schema"), schema, out);
    }
}

/// Every `"code"` the server can answer with: the string literals of `src/` (a code in
/// the spec that appears nowhere in the code is made up).
fn string_literals_of_src() -> String {
    fn read(dir: &std::path::Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                read(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(path).unwrap());
            }
        }
    }
    let mut source = String::new();
    read(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut source,
    );
    source
}

#[test]
fn every_example_satisfies_its_schema_and_every_problem_example_its_status_and_code() {
    // Arrange: the committed spec, and a validator for any schema in it.
    let spec: Value = serde_json::from_str(COMMITTED).unwrap();
    let validator = |schema: &Value| {
        let document = serde_json::json!({"components": spec["components"], "allOf": [schema]});
        jsonschema::options()
            .with_draft(jsonschema::Draft::Draft202012)
            .should_validate_formats(true)
            .build(&document)
            .unwrap()
    };
    let mut examples = Vec::new();
    for (name, schema) in spec["components"]["schemas"].as_object().unwrap() {
        schema_examples(&format!("components.schemas.{name}"), schema, &mut examples);
    }
    let mut problems = Vec::new();
    for (path, item) in spec["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let at = format!("{} {path}", method.to_uppercase());
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let at = format!("{at} parameter {}", parameter["name"]);
                if let Some(example) = parameter.get("example") {
                    examples.push(Illustrated {
                        at: at.clone(),
                        schema: &parameter["schema"],
                        example,
                    });
                }
                schema_examples(&at, &parameter["schema"], &mut examples);
            }
            content_examples(
                &format!("{at} request"),
                &operation["requestBody"]["content"],
                &mut examples,
            );
            for (status, response) in operation["responses"].as_object().unwrap() {
                let at = format!("{at} → {status}");
                let before = examples.len();
                content_examples(&at, &response["content"], &mut examples);
                let problem = &response["content"]["application/problem+json"];
                if !problem.is_null() {
                    let count = problem["examples"].as_object().map_or(0, |e| e.len())
                        + usize::from(problem.get("example").is_some());
                    assert!(count > 0, "{at}: a problem response without an example");
                    problems.extend(
                        examples[before..]
                            .iter()
                            .filter(|e| {
                                e.at.contains("application/problem+json")
                                    && !e.at.contains(" schema")
                            })
                            .map(|e| (status.clone(), e.at.clone(), e.example.clone())),
                    );
                }
            }
        }
    }
    let source = string_literals_of_src();

    // Act + Assert
    let mut failures = Vec::new();
    for Illustrated {
        at,
        schema,
        example,
    } in &examples
    {
        let errors: Vec<String> = validator(schema)
            .iter_errors(example)
            .map(|e| format!("{} {}", e.instance_path(), e))
            .collect();
        if !errors.is_empty() {
            failures.push(format!(
                "{at}: the example breaks its schema: {}",
                errors.join("; ")
            ));
        }
    }
    for (status, at, example) in &problems {
        let status_code = StatusCode::from_u16(status.parse().unwrap()).unwrap();
        let code = example["code"].as_str().unwrap_or_default();
        if example["status"] != status_code.as_u16() {
            failures.push(format!(
                "{at}: the example's status is {}",
                example["status"]
            ));
        }
        if example["title"] != status_code.canonical_reason().unwrap() {
            failures.push(format!("{at}: the example's title is {}", example["title"]));
        }
        if example["type"] != format!("urn:tenantry:problem:{code}") {
            failures.push(format!("{at}: the example's type is {}", example["type"]));
        }
        if !source.contains(&format!("\"{code}\"")) {
            failures.push(format!("{at}: the server has no code {code:?}"));
        }
    }
    assert!(
        examples.len() > 100 && problems.len() > 100,
        "expected the spec's examples, found {} and {} problem examples",
        examples.len(),
        problems.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
