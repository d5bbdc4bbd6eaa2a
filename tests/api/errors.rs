//! The error contract: whatever a client sends, the answer is never a 5xx, and every 4xx
//! is an `application/problem+json` document with a stable `code` and the `request_id`.

use futures::{StreamExt, stream};
use reqwest::{Method, StatusCode, header::CONTENT_TYPE};
use serde_json::{Map, Value, json};
use uuid::Uuid;

use crate::helpers::{
    OPERATOR_TOKEN, PASSWORD, TestApp, expect_json, expect_problem, spawn_app, spawn_app_with,
};

/// How many fuzz requests are in flight at once.
const CONCURRENCY: usize = 16;

// ---------------------------------------------------------------------------------------
// Fuzzing every documented operation
// ---------------------------------------------------------------------------------------

/// One documented operation, read from the OpenAPI document.
struct Operation {
    method: Method,
    template: String,
    /// Declared request-body properties and their JSON types (empty without a body).
    body_fields: Vec<(String, String)>,
}

/// A request body as the fuzzer sends it.
#[derive(Clone)]
struct FuzzBody {
    label: &'static str,
    content_type: &'static str,
    bytes: Vec<u8>,
}

#[derive(Clone, Copy)]
enum Credential {
    None,
    Tenant,
    Operator,
}

struct FuzzCase {
    method: Method,
    path: String,
    credential: Credential,
    bearer: Option<String>,
    body: Option<FuzzBody>,
}

impl FuzzCase {
    fn describe(&self) -> String {
        let credential = match self.credential {
            Credential::None => "no credential",
            Credential::Tenant => "tenant owner token",
            Credential::Operator => "operator token",
        };
        let body = self.body.as_ref().map_or("no body", |b| b.label);
        let mut path = self.path.clone();
        if path.len() > 120 {
            path.truncate(120);
            path.push('…');
        }
        format!("{} {path} [{credential}; {body}]", self.method)
    }
}

/// Every operation of the OpenAPI document, with the fields of its JSON request body.
fn documented_operations() -> Vec<Operation> {
    let spec: Value = serde_json::from_str(
        &tenantry::http::openapi()
            .to_json()
            .expect("the spec serialises"),
    )
    .expect("the spec is JSON");
    let schemas = &spec["components"]["schemas"];
    let mut operations = Vec::new();
    for (template, item) in spec["paths"].as_object().expect("the spec has paths") {
        for (name, method) in [
            ("get", Method::GET),
            ("post", Method::POST),
            ("put", Method::PUT),
            ("patch", Method::PATCH),
            ("delete", Method::DELETE),
        ] {
            let Some(operation) = item.get(name) else {
                continue;
            };
            let schema = &operation["requestBody"]["content"]["application/json"]["schema"];
            let schema = match schema["$ref"].as_str() {
                Some(reference) => &schemas[reference.trim_start_matches("#/components/schemas/")],
                None => schema,
            };
            let body_fields = schema["properties"]
                .as_object()
                .map(|properties| {
                    properties
                        .iter()
                        .map(|(field, property)| (field.clone(), declared_type(property)))
                        .collect()
                })
                .unwrap_or_default();
            operations.push(Operation {
                method,
                template: template.clone(),
                body_fields,
            });
        }
    }
    operations
}

/// The JSON type a property declares (`type` may be a string or, for nullable fields,
/// a list such as `["string", "null"]`).
fn declared_type(property: &Value) -> String {
    match &property["type"] {
        Value::String(t) => t.clone(),
        Value::Array(types) => types
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap_or("object")
            .to_owned(),
        _ if property.get("$ref").is_some() || property.get("oneOf").is_some() => {
            "string".to_owned()
        }
        _ => "object".to_owned(),
    }
}

/// A value of a different JSON type than the one declared.
fn wrong_value_for(declared: &str) -> Value {
    match declared {
        "string" => json!(1),
        "array" => json!("x"),
        "integer" | "number" | "boolean" => json!("x"),
        _ => json!([]),
    }
}

/// The path parameter substitutions: a valid but unknown id, then increasingly hostile text.
fn path_values() -> Vec<String> {
    vec![
        Uuid::new_v4().to_string(),
        "not-a-uuid".to_owned(),
        "%00".to_owned(),
        "x".repeat(2048),
        "..%2F..%2Fetc".to_owned(),
        "ünïcødé".to_owned(),
    ]
}

fn concrete_paths(template: &str) -> Vec<String> {
    if !template.contains('{') {
        return vec![template.to_owned()];
    }
    path_values()
        .into_iter()
        .map(|value| {
            template
                .split('/')
                .map(|segment| {
                    if segment.starts_with('{') && segment.ends_with('}') {
                        value.as_str()
                    } else {
                        segment
                    }
                })
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect()
}

fn nested_arrays(depth: usize) -> Vec<u8> {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth)).into_bytes()
}

/// 2 KB of random bytes (almost surely not UTF-8, let alone JSON).
fn random_bytes() -> Vec<u8> {
    (0..128).flat_map(|_| Uuid::new_v4().into_bytes()).collect()
}

fn json_body(label: &'static str, bytes: impl Into<Vec<u8>>) -> FuzzBody {
    FuzzBody {
        label,
        content_type: "application/json",
        bytes: bytes.into(),
    }
}

/// The bodies every operation is sent.
fn bodies_for(operation: &Operation) -> Vec<FuzzBody> {
    let mut wrong_types = Map::new();
    for (field, value) in [
        ("email", json!(1)),
        ("role", json!([])),
        ("name", json!({})),
        ("scopes", json!("x")),
        ("slug", Value::Null),
        ("password", json!(true)),
        ("tenant", json!([1])),
        ("owner_email", json!({})),
        ("owner_password", json!(12)),
        ("plan", json!(7)),
        ("status", json!({"a": 1})),
        ("refresh_token", json!(false)),
        ("expires_at", json!([])),
    ] {
        wrong_types.insert(field.to_owned(), value);
    }
    let declared_wrong: Map<String, Value> = operation
        .body_fields
        .iter()
        .map(|(field, declared)| (field.clone(), wrong_value_for(declared)))
        .collect();

    let mut bodies = vec![
        json_body("empty body declared as JSON", Vec::new()),
        json_body("`{`", "{"),
        json_body("`[]`", "[]"),
        json_body("`null`", "null"),
        json_body("`\"str\"`", "\"str\""),
        json_body("an unknown field", r#"{"unknown_field":1}"#),
        json_body("200 nested arrays", nested_arrays(200)),
        json_body("20000 nested arrays", nested_arrays(20_000)),
        json_body("wrong types for every known field", Value::Object(wrong_types).to_string()),
        json_body("2 KB of random bytes", random_bytes()),
        FuzzBody {
            label: "a valid-looking body as text/plain",
            content_type: "text/plain",
            bytes: json!({"email": "someone@example.test", "role": "member", "name": "Valid", "scopes": ["users:read"]})
                .to_string()
                .into_bytes(),
        },
    ];
    if !declared_wrong.is_empty() {
        bodies.push(json_body(
            "wrong types for every declared field",
            Value::Object(declared_wrong).to_string(),
        ));
    }
    let with_nul: Map<String, Value> = operation
        .body_fields
        .iter()
        .filter(|(_, declared)| declared == "string")
        .map(|(field, _)| (field.clone(), json!("nul\u{0}byte")))
        .collect();
    if !with_nul.is_empty() {
        bodies.push(json_body(
            "a NUL in every declared string field",
            Value::Object(with_nul).to_string(),
        ));
    }
    bodies
}

const ODD_QUERIES: [&str; 4] = ["?limit=-1", "?limit=abc", "?cursor=%%%", "?limit=100000"];

/// Sends one case; `Some(failure)` when the answer breaks the error contract.
async fn check(app: &TestApp, case: FuzzCase) -> Option<String> {
    let mut request = app.client.request(case.method.clone(), app.url(&case.path));
    if let Some(token) = &case.bearer {
        request = request.bearer_auth(token);
    }
    if let Some(body) = &case.body {
        request = request
            .header(CONTENT_TYPE, body.content_type)
            .body(body.bytes.clone());
    }
    let response = match request.send().await {
        Ok(response) => response,
        Err(error) => return Some(format!("{}: no answer: {error}", case.describe())),
    };
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // An event stream that opened is a success that never ends: nothing more to read.
    if status.is_success() && content_type.starts_with("text/event-stream") {
        return None;
    }
    let text = response.text().await.unwrap_or_default();
    if status.is_server_error() {
        return Some(format!(
            "{}: expected no 5xx, got {status}: {text}",
            case.describe()
        ));
    }
    if !status.is_client_error() {
        return None;
    }
    if content_type != "application/problem+json" {
        return Some(format!(
            "{}: {status} has content type {content_type:?}, expected application/problem+json",
            case.describe()
        ));
    }
    let problem: Value = match serde_json::from_str(&text) {
        Ok(problem) => problem,
        Err(error) => {
            return Some(format!(
                "{}: {status} body is not JSON ({error}): {text}",
                case.describe()
            ));
        }
    };
    let non_empty = |field: &str| problem[field].as_str().is_some_and(|v| !v.is_empty());
    if !non_empty("code") || !non_empty("request_id") {
        return Some(format!(
            "{}: {status} problem lacks a code or request_id: {problem}",
            case.describe()
        ));
    }
    if problem["status"] != status.as_u16() {
        return Some(format!(
            "{}: problem status {} differs from response status {status}",
            case.describe(),
            problem["status"]
        ));
    }
    None
}

#[tokio::test]
async fn no_request_to_any_documented_route_gets_a_5xx_and_every_4xx_is_a_problem() {
    // Arrange: a tenant owner, a spare session of theirs for logout (which ends the
    // session it is called with), and every documented operation with hostile inputs.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let spare_session =
        app.login(&tenant.slug, &tenant.owner_email, PASSWORD).await["access_token"]
            .as_str()
            .expect("login returns an access token")
            .to_owned();
    let operations = documented_operations();
    assert!(
        operations.len() >= 20,
        "expected the spec to document at least 20 operations, found {}",
        operations.len()
    );

    let mut cases = Vec::new();
    for operation in &operations {
        let tenant_token = if operation.template == "/v1/auth/logout" {
            &spare_session
        } else {
            &tenant.token
        };
        let mut credentials = vec![
            (Credential::Tenant, Some(tenant_token.clone())),
            (Credential::None, None),
        ];
        if operation.template.starts_with("/v1/platform") {
            credentials.push((Credential::Operator, Some(OPERATOR_TOKEN.to_owned())));
        }
        let bodies = bodies_for(operation);
        for path in concrete_paths(&operation.template) {
            for (credential, bearer) in &credentials {
                let case = |path: String, body: Option<FuzzBody>| FuzzCase {
                    method: operation.method.clone(),
                    path,
                    credential: *credential,
                    bearer: bearer.clone(),
                    body,
                };
                cases.push(case(path.clone(), None));
                for body in &bodies {
                    cases.push(case(path.clone(), Some(body.clone())));
                }
                for query in ODD_QUERIES {
                    cases.push(case(format!("{path}{query}"), None));
                }
            }
        }
    }
    let total = cases.len();

    // Act
    let failures: Vec<String> = stream::iter(cases)
        .map(|case| check(&app, case))
        .buffer_unordered(CONCURRENCY)
        .filter_map(|f| async { f })
        .collect()
        .await;

    // Assert
    assert!(
        failures.is_empty(),
        "{} of {total} fuzz requests broke the error contract:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // The owner's session survived the onslaught, so the tenant-authenticated cases above
    // reached the handlers rather than stopping at a dead credential.
    expect_json(app.get("/v1/me", &tenant.token).await, StatusCode::OK).await;
}

// ---------------------------------------------------------------------------------------
// Each error kind, exactly
// ---------------------------------------------------------------------------------------

struct Probe {
    what: &'static str,
    method: Method,
    path: String,
    bearer: Option<String>,
    /// (content type, body); an empty content type sends the body without the header.
    body: Option<(&'static str, String)>,
    status: StatusCode,
    code: &'static str,
}

#[tokio::test]
async fn each_error_kind_has_its_documented_status_and_code() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let owner = Some(tenant.token.clone());
    let valid_user = json!({"email": "valid@example.test", "role": "member"}).to_string();
    let probe = |what,
                 method: Method,
                 path: &str,
                 bearer: &Option<String>,
                 body: Option<(&'static str, &str)>,
                 status,
                 code| Probe {
        what,
        method,
        path: path.to_owned(),
        bearer: bearer.clone(),
        body: body.map(|(ct, b)| (ct, b.to_owned())),
        status,
        code,
    };
    let none = None;
    let probes = [
        probe(
            "unknown route",
            Method::GET,
            "/v1/nope",
            &owner,
            None,
            StatusCode::NOT_FOUND,
            "route_not_found",
        ),
        probe(
            "unknown route below a resource",
            Method::GET,
            "/v1/users/x/y",
            &owner,
            None,
            StatusCode::NOT_FOUND,
            "route_not_found",
        ),
        probe(
            "wrong method",
            Method::PUT,
            "/v1/users",
            &owner,
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        probe(
            "wrong method on the profile",
            Method::DELETE,
            "/v1/tenant",
            &owner,
            None,
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
        ),
        probe(
            "malformed JSON",
            Method::POST,
            "/v1/users",
            &owner,
            Some(("application/json", r#"{"email":"#)),
            StatusCode::BAD_REQUEST,
            "malformed_json",
        ),
        probe(
            "text/plain body",
            Method::POST,
            "/v1/users",
            &owner,
            Some(("text/plain", &valid_user)),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        probe(
            "form body",
            Method::POST,
            "/v1/users",
            &owner,
            Some((
                "application/x-www-form-urlencoded",
                "email=a%40b.test&role=member",
            )),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        probe(
            "body without content type",
            Method::POST,
            "/v1/users",
            &owner,
            Some(("", &valid_user)),
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
        ),
        probe(
            "no body at all, where fields are required",
            Method::POST,
            "/v1/users",
            &owner,
            None,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        probe(
            "validation failure",
            Method::POST,
            "/v1/users",
            &owner,
            Some(("application/json", r#"{"email":"nope","role":"member"}"#)),
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        ),
        probe(
            "malformed id in the path",
            Method::GET,
            "/v1/users/not-a-uuid",
            &owner,
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        probe(
            "unknown id in the path",
            Method::GET,
            &format!("/v1/users/{}", Uuid::new_v4()),
            &owner,
            None,
            StatusCode::NOT_FOUND,
            "not_found",
        ),
        probe(
            "non-numeric limit",
            Method::GET,
            "/v1/users?limit=abc",
            &owner,
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        probe(
            "negative limit",
            Method::GET,
            "/v1/users?limit=-1",
            &owner,
            None,
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        probe(
            "zero limit",
            Method::GET,
            "/v1/users?limit=0",
            &owner,
            None,
            StatusCode::BAD_REQUEST,
            "invalid_limit",
        ),
        probe(
            "limit above the maximum",
            Method::GET,
            "/v1/users?limit=100000",
            &owner,
            None,
            StatusCode::BAD_REQUEST,
            "invalid_limit",
        ),
        probe(
            "garbage cursor",
            Method::GET,
            "/v1/users?cursor=%25%25%25",
            &owner,
            None,
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        probe(
            "well-formed but foreign cursor",
            Method::GET,
            "/v1/api-keys?cursor=AAAA",
            &owner,
            None,
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        probe(
            "no credential",
            Method::GET,
            "/v1/users",
            &none,
            None,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        ),
        probe(
            "garbage credential",
            Method::GET,
            "/v1/users",
            &Some("not-a-token".to_owned()),
            None,
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
        ),
    ];

    // Act
    let mut failures = Vec::new();
    for probe in probes {
        let mut request = app
            .client
            .request(probe.method.clone(), app.url(&probe.path));
        if let Some(token) = &probe.bearer {
            request = request.bearer_auth(token);
        }
        if let Some((content_type, body)) = &probe.body {
            if !content_type.is_empty() {
                request = request.header(CONTENT_TYPE, *content_type);
            }
            request = request.body(body.clone());
        }
        let response = request.send().await.expect("the server answers");
        let status = response.status();
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let problem: Value = response.json().await.unwrap_or(Value::Null);
        let as_expected = status == probe.status
            && content_type == "application/problem+json"
            && problem["code"] == probe.code
            && problem["status"] == probe.status.as_u16()
            && problem["request_id"]
                .as_str()
                .is_some_and(|id| !id.is_empty());
        if !as_expected {
            failures.push(format!(
                "{} ({} {}): expected {} `{}` as problem+json with a request_id, got {status} ({content_type}) {problem}",
                probe.what, probe.method, probe.path, probe.status, probe.code
            ));
        }
    }

    // Assert
    assert!(
        failures.is_empty(),
        "error kinds off contract:\n{}",
        failures.join("\n")
    );
}

#[tokio::test]
async fn a_body_over_the_configured_limit_is_refused_with_413() {
    // Arrange: a 1 KiB limit, and bodies on either side of it.
    let app = spawn_app_with(&[("TENANTRY_MAX_BODY_BYTES", "1024")]).await;
    let tenant = app.create_tenant().await;
    let oversized =
        json!({"email": format!("{}@example.test", "a".repeat(2048)), "role": "member"});
    let under_limit = json!({"email": format!("{}@example", "a".repeat(900)), "role": "member"});
    assert!(
        under_limit.to_string().len() < 1024,
        "the under-limit body is under 1 KiB"
    );

    // Act
    let too_large = app
        .post("/v1/users", &tenant.token, oversized.clone())
        .await;
    let too_large_anonymous = app
        .request(
            Method::POST,
            "/v1/auth/login",
            None,
            Some(&json!({"tenant": "x".repeat(2048), "email": "a@b.test", "password": "p"})),
        )
        .await;
    let within_limit = app.post("/v1/users", &tenant.token, under_limit).await;

    // Assert
    expect_problem(
        too_large,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    expect_problem(
        too_large_anonymous,
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
    )
    .await;
    // Under the limit the body is read and judged on its content (an invalid email).
    expect_problem(
        within_limit,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    )
    .await;
}

#[tokio::test]
async fn a_validation_failure_lists_each_offending_field() {
    // Arrange
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;

    // Act
    let bad_email = app
        .post(
            "/v1/users",
            &tenant.token,
            json!({"email": "nope", "role": "member"}),
        )
        .await;
    let bad_role = app
        .post(
            "/v1/users",
            &tenant.token,
            json!({"email": "ok@example.test", "role": "emperor"}),
        )
        .await;
    let wrong_scope_type = app
        .post(
            "/v1/api-keys",
            &tenant.token,
            json!({"name": "k", "scopes": ["users:read", 1]}),
        )
        .await;
    let empty_scopes = app
        .post(
            "/v1/api-keys",
            &tenant.token,
            json!({"name": "k", "scopes": []}),
        )
        .await;

    // Assert
    let field_of = |problem: &Value| -> Vec<String> {
        problem["errors"]
            .as_array()
            .map(|errors| {
                errors
                    .iter()
                    .filter_map(|e| e["field"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    for (response, field) in [
        (bad_email, "email"),
        (bad_role, "role"),
        (wrong_scope_type, "scopes[1]"),
        (empty_scopes, "scopes"),
    ] {
        let problem = expect_problem(
            response,
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_failed",
        )
        .await;
        assert_eq!(
            field_of(&problem),
            vec![field.to_owned()],
            "expected exactly one error, for `{field}`: {problem}"
        );
        assert!(
            problem["errors"][0]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "the error for `{field}` explains itself: {problem}"
        );
    }
}

// ---------------------------------------------------------------------------------------
// NUL characters: Postgres refuses them in text, so the edge refuses them first
// ---------------------------------------------------------------------------------------

/// One request whose body carries a NUL (`\u0000`) in string fields.
struct NulCase {
    what: &'static str,
    method: Method,
    path: String,
    bearer: Option<String>,
    body: Value,
    /// The field paths the 422 must name, in order.
    fields: &'static [&'static str],
}

/// The `field` of each entry of a problem's `errors`.
fn error_fields(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["field"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn a_nul_character_in_any_string_field_is_refused_with_422_naming_each_field_and_changes_nothing()
 {
    // Arrange: a tenant with an API key, a customer, a product, a pending order (to cancel)
    // and a confirmed one (to pay).
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let owner = Some(tenant.token.clone());
    let operator = Some(OPERATOR_TOKEN.to_owned());
    let customer = app.create_customer(&tenant).await;
    let product = app.create_product(&tenant).await;
    let pending = crate::helpers::place_ok(&app, &tenant, &customer, &[(&product, 1)]).await;
    let confirmed = crate::helpers::place_ok(&app, &tenant, &customer, &[(&product, 1)]).await;
    let confirmed_id = crate::helpers::id(&confirmed);
    expect_json(
        crate::helpers::command(&app, &tenant, confirmed_id, "confirm", json!({})).await,
        StatusCode::OK,
    )
    .await;
    let total = confirmed["total_cents"].as_i64().unwrap();
    let new_slug = crate::helpers::unique("nul");
    let nul = "x\u{0}y";
    let case = |what, method, path: String, bearer: &Option<String>, body, fields| NulCase {
        what,
        method,
        path,
        bearer: bearer.clone(),
        body,
        fields,
    };
    let cases = [
        case(
            "login tenant",
            Method::POST,
            "/v1/auth/login".to_owned(),
            &None,
            json!({"tenant": nul, "email": tenant.owner_email, "password": PASSWORD}),
            &["tenant"],
        ),
        case(
            "tenant name on create",
            Method::POST,
            crate::helpers::TENANTS.to_owned(),
            &operator,
            json!({"slug": new_slug, "name": nul, "owner_email": "owner@nul.test", "owner_password": PASSWORD}),
            &["name"],
        ),
        case(
            "tenant name on update (operator)",
            Method::PATCH,
            crate::helpers::tenant_path(tenant.id),
            &operator,
            json!({"name": nul}),
            &["name"],
        ),
        case(
            "tenant name on update (tenant)",
            Method::PATCH,
            "/v1/tenant".to_owned(),
            &owner,
            json!({"name": nul}),
            &["name"],
        ),
        case(
            "API key name",
            Method::POST,
            "/v1/api-keys".to_owned(),
            &owner,
            json!({"name": nul, "scopes": ["tenant:read"]}),
            &["name"],
        ),
        case(
            "cancel reason",
            Method::POST,
            format!("/v1/orders/{}/cancel", crate::helpers::id(&pending)),
            &owner,
            json!({"reason": nul}),
            &["reason"],
        ),
        case(
            "pay reference",
            Method::POST,
            format!("/v1/orders/{confirmed_id}/pay"),
            &owner,
            json!({"amount_cents": total, "reference": nul}),
            &["reference"],
        ),
        case(
            "product name",
            Method::POST,
            "/v1/products".to_owned(),
            &owner,
            json!({"sku": "NUL-1", "name": nul, "price_cents": 1, "currency": "EUR", "stock": 1}),
            &["name"],
        ),
        case(
            "customer name",
            Method::POST,
            "/v1/customers".to_owned(),
            &owner,
            json!({"email": "nul@example.test", "name": nul}),
            &["name"],
        ),
        case(
            "several fields, nested in arrays and objects",
            Method::POST,
            "/v1/api-keys".to_owned(),
            &owner,
            json!({"name": "\u{0}", "scopes": ["tenant:read", "users:read\u{0}"]}),
            &["name", "scopes[1]"],
        ),
        case(
            "a nested order line",
            Method::POST,
            "/v1/orders".to_owned(),
            &owner,
            json!({"customer_id": crate::helpers::id(&customer), "items": [{"product_id": crate::helpers::id(&product), "quantity": 1}, {"product_id": nul, "quantity": 1}]}),
            &["items[1].product_id"],
        ),
    ];
    let before = crate::helpers::snapshot(&app, tenant.id).await;

    // Act
    let mut failures = Vec::new();
    for case in cases {
        let response = app
            .request(
                case.method.clone(),
                &case.path,
                case.bearer.as_deref(),
                Some(&case.body),
            )
            .await;
        let status = response.status();
        let problem: Value = response.json().await.unwrap_or(Value::Null);
        let named = error_fields(&problem);
        let explained = problem["errors"]
            .as_array()
            .is_some_and(|errors| errors.iter().all(|e| e["message"].is_string()));
        if status != StatusCode::UNPROCESSABLE_ENTITY
            || problem["code"] != "validation_failed"
            || named != case.fields
            || !explained
        {
            failures.push(format!(
                "{} ({} {}): expected 422 `validation_failed` naming {:?}, got {status} {problem}",
                case.what, case.method, case.path, case.fields
            ));
        }
    }

    // Assert
    assert!(
        failures.is_empty(),
        "NUL characters not refused at the edge:\n{}",
        failures.join("\n")
    );
    assert_eq!(
        crate::helpers::snapshot(&app, tenant.id).await,
        before,
        "refused requests changed nothing in the tenant"
    );
    let mut db = app.owner_connection().await;
    let created: i64 = sqlx::query_scalar("select count(*) from tenants where slug = $1")
        .bind(&new_slug)
        .fetch_one(&mut db)
        .await
        .unwrap();
    assert_eq!(created, 0, "no tenant was created with a NUL in its name");
}

#[tokio::test]
async fn an_escaped_backslash_before_u0000_is_text_not_a_nul() {
    // Arrange: `\\u0000` in JSON is a backslash followed by the letters `u0000`.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let name = r"back\u0000slash \\";

    // Act
    let response = app
        .client
        .post(app.url("/v1/api-keys"))
        .bearer_auth(&tenant.token)
        .header(CONTENT_TYPE, "application/json")
        .body(r#"{"name": "back\\u0000slash \\\\", "scopes": ["tenant:read"]}"#)
        .send()
        .await
        .unwrap();

    // Assert
    let created = expect_json(response, StatusCode::CREATED).await;
    assert_eq!(
        created["name"], name,
        "the name is stored as sent: {created}"
    );
}

#[tokio::test]
async fn a_nul_in_a_query_or_path_parameter_is_refused_before_it_reaches_sql() {
    // Arrange: every parameter a list or a read takes, with a percent-encoded NUL.
    let app = spawn_app().await;
    let tenant = app.create_tenant().await;
    let cases = [
        (
            "/v1/orders?status=pending%00",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/orders?expand=customer%00",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/orders?cursor=AZN6Xnwaez6aUi8NPEtaaQ%00",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/orders?created_from=2026-01-01T00:00:00Z%00",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/products?cursor=%00",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/users?limit=1%00",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        ("/v1/orders?%00=1", StatusCode::BAD_REQUEST, "invalid_query"),
        ("/v1/products/%00", StatusCode::NOT_FOUND, "not_found"),
        ("/v1/orders/%00/events", StatusCode::NOT_FOUND, "not_found"),
    ];
    let operator_cases = [
        (
            "/v1/platform/tenants?cursor=%00",
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "/v1/platform/tenants/%00",
            StatusCode::NOT_FOUND,
            "not_found",
        ),
    ];

    // Act + Assert
    for (path, status, code) in cases {
        let problem = expect_problem(app.get(path, &tenant.token).await, status, code).await;
        assert!(problem["detail"].is_string(), "{path}: {problem}");
    }
    for (path, status, code) in operator_cases {
        expect_problem(app.get(path, OPERATOR_TOKEN).await, status, code).await;
    }
}
