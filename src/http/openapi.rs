//! The OpenAPI document: tenant admins' user interface (Swagger UI at `/docs`).
//!
//! Paths come from the routers themselves (utoipa-axum), so every served route is
//! documented. [`finish`] adds what every operation shares: the security schemes and the
//! problem+json error responses each operation can produce, derived from its shape (a body
//! can be malformed, a path id can be unknown, a secured route can refuse a credential,
//! anything that reaches the database can be 503 with `Retry-After` while it is away).
//! `openapi/openapi.json` is the committed copy; `tenantry openapi` regenerates it and a
//! test fails when it is stale.

use axum::http::StatusCode;
use utoipa::{
    OpenApi,
    openapi::{
        self, ContentBuilder, ObjectBuilder, RefOr, Required, ResponseBuilder, Type,
        example::ExampleBuilder,
        header::Header,
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use super::problem::Problem;
use crate::{catalog::Sku, error::FieldError, orders::queries::Expand, page::Cursor};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "tenantry",
        description = "Multi-tenant SaaS API. Tenant data is isolated by PostgreSQL row-level security.\n\n\
            Authenticate with a JWT from `POST /v1/auth/login` (Authorize → `bearer`) or an API key \
            (Authorize → `api_key`). Operator routes under `/v1/platform` take the operator token \
            (Authorize → `operator`). Every error is `application/problem+json` with a stable `code`.\n\n\
            Every response carries `X-Request-Id`, the id the server gave the request (also the \
            `request_id` of problem bodies, audit events and order events): quote it when asking \
            for support. A client may send its own `X-Request-Id` (1-64 letters, digits, `-`, `_` \
            or `.`) to correlate: it is kept beside the server's id, recorded as \
            `client_request_id`, and echoed in `X-Client-Request-Id`, never used as the \
            server's id.",
        license(name = "Apache-2.0"),
    ),
    components(schemas(Problem, FieldError, Cursor, Expand)),
    tags(
        (name = "auth", description = "Login, token refresh, logout, the caller"),
        (name = "tenant", description = "The caller's tenant"),
        (name = "users", description = "Tenant users and their roles"),
        (name = "api-keys", description = "API keys for tenant apps"),
        (name = "catalog", description = "Products and customers"),
        (name = "orders", description = "Orders: place, read, history, transitions (event-sourced)"),
        (name = "audit", description = "The tenant's audit log: every mutation, hash-chained"),
        (name = "realtime", description = "Committed events as they happen (Server-Sent Events, WebSocket), resumable; messages between a tenant's clients"),
        (name = "webhooks", description = "Outbound webhooks: endpoints, signed deliveries, retries"),
        (name = "platform", description = "Operator API across tenants"),
        (name = "health", description = "Liveness, readiness, metrics"),
    )
)]
pub struct ApiDoc;

impl ApiDoc {
    pub fn base() -> openapi::OpenApi {
        Self::openapi()
    }
}

/// Adds security schemes and the standard problem responses to every operation.
pub fn finish(mut spec: openapi::OpenApi) -> openapi::OpenApi {
    let components = spec.components.get_or_insert_with(Default::default);
    components.add_security_scheme(
        "bearer",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .bearer_format("JWT")
                .description(Some(
                    "Access token from `POST /v1/auth/login`, or an API key (`tnty_…`).",
                ))
                .build(),
        ),
    );
    components.add_security_scheme(
        "api_key",
        SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
            "X-API-Key",
            "An API key (`tnty_…`) from `POST /v1/api-keys`.",
        ))),
    );
    components.add_security_scheme(
        "operator",
        SecurityScheme::Http(
            HttpBuilder::new()
                .scheme(HttpAuthScheme::Bearer)
                .description(Some(
                    "The platform operator token (`TENANTRY_OPERATOR_TOKEN`).",
                ))
                .build(),
        ),
    );

    // Request bodies whose schema requires no field may be left out (read as `{}`).
    let optional_bodies: Vec<String> = components
        .schemas
        .iter()
        .filter(|(_, schema)| match schema {
            RefOr::T(openapi::Schema::Object(object)) => object.required.is_empty(),
            _ => false,
        })
        .map(|(name, _)| format!("#/components/schemas/{name}"))
        .collect();

    forbid_nul_in_request_text(&mut spec);

    for item in spec.paths.paths.values_mut() {
        let operations = [
            (&mut item.get, false),
            (&mut item.post, true),
            (&mut item.put, true),
            (&mut item.patch, true),
            (&mut item.delete, true),
        ];
        for (operation, writes) in operations
            .into_iter()
            .filter_map(|(operation, writes)| operation.as_mut().map(|o| (o, writes)))
        {
            add_standard_responses(operation, writes);
            illustrate_problems(operation);
            state_requirement(operation);
            if let Some(body) = operation.request_body.as_mut() {
                let schema = body
                    .content
                    .get("application/json")
                    .and_then(|c| c.schema.as_ref());
                if let Some(RefOr::Ref(reference)) = schema
                    && optional_bodies.contains(&reference.ref_location)
                {
                    body.required = Some(Required::False);
                    body.description =
                        Some("Optional: an empty body (or none at all) reads as `{}`.".to_owned());
                }
            }
        }
    }
    spec
}

/// Every string a request body may carry refuses the NUL character (Postgres cannot store
/// it, and `http::extract` refuses it in any string before anything else): where a string
/// schema of a request body has no pattern already excluding it, it gets one that says so.
fn forbid_nul_in_request_text(spec: &mut openapi::OpenApi) {
    let mut pending: Vec<String> = spec
        .paths
        .paths
        .values()
        .flat_map(|item| {
            [&item.get, &item.post, &item.put, &item.patch, &item.delete]
                .into_iter()
                .flatten()
        })
        .filter_map(|operation| operation.request_body.as_ref())
        .filter_map(|body| body.content.get("application/json"))
        .filter_map(|content| match &content.schema {
            Some(RefOr::Ref(reference)) => Some(reference.ref_location.clone()),
            _ => None,
        })
        .collect();
    let Some(components) = spec.components.as_mut() else {
        return;
    };
    let mut done = std::collections::BTreeSet::new();
    while let Some(reference) = pending.pop() {
        let name = reference.rsplit('/').next().unwrap_or_default().to_owned();
        if !done.insert(name.clone()) {
            continue;
        }
        if let Some(schema) = components.schemas.get_mut(&name) {
            forbid_nul(schema, &mut pending);
        }
    }
}

/// No NUL: the pattern a request string gets unless it has one of its own.
const NO_NUL: &str = r"^[^\u0000]*$";

fn forbid_nul(schema: &mut RefOr<openapi::Schema>, references: &mut Vec<String>) {
    use openapi::{Schema, schema::ArrayItems, schema::SchemaType};
    match schema {
        RefOr::Ref(reference) => references.push(reference.ref_location.clone()),
        RefOr::T(Schema::Object(object)) => {
            let is_text = match &object.schema_type {
                SchemaType::Type(Type::String) => true,
                SchemaType::Array(types) => types.contains(&Type::String),
                _ => false,
            };
            let constrained = object.pattern.is_some()
                || object.enum_values.is_some()
                || object.format.as_ref().is_some_and(|f| {
                    !matches!(
                        f,
                        openapi::SchemaFormat::KnownFormat(openapi::KnownFormat::Password)
                    )
                });
            if is_text && !constrained {
                object.pattern = Some(NO_NUL.to_owned());
            }
            for property in object.properties.values_mut() {
                forbid_nul(property, references);
            }
        }
        RefOr::T(Schema::Array(array)) => {
            if let ArrayItems::RefOrSchema(items) = &mut array.items {
                forbid_nul(items, references);
            }
        }
        RefOr::T(Schema::OneOf(one_of)) => {
            for item in &mut one_of.items {
                forbid_nul(item, references);
            }
        }
        RefOr::T(Schema::AllOf(all_of)) => {
            for item in &mut all_of.items {
                forbid_nul(item, references);
            }
        }
        RefOr::T(Schema::AnyOf(any_of)) => {
            for item in &mut any_of.items {
                forbid_nul(item, references);
            }
        }
        _ => {}
    }
}

/// The problem responses every operation of its shape can produce: a body can be
/// malformed, a path id unknown, a credential refused, and anything that reaches the
/// database can be 503 while it is away.
fn add_standard_responses(operation: &mut openapi::path::Operation, writes: bool) {
    let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
    // Tenant credentials (not the operator's) are held to their plan's rate limits.
    let rate_limited = operation.security.as_ref().is_some_and(|requirements| {
        requirements
            .iter()
            .filter_map(|r| serde_json::to_value(r).ok())
            .any(|r| r.get("bearer").is_some() || r.get("api_key").is_some())
    });
    let has_path_params = operation.parameters.as_ref().is_some_and(|ps| {
        ps.iter()
            .any(|p| matches!(p.parameter_in, openapi::path::ParameterIn::Path))
    });
    let has_query = operation.parameters.as_ref().is_some_and(|ps| {
        ps.iter()
            .any(|p| matches!(p.parameter_in, openapi::path::ParameterIn::Query))
    });
    let has_body = operation.request_body.is_some();
    // A status already documented gains the code in its description ("Or …").
    let mut add = |status: u16, code: &str, description: &str| match operation
        .responses
        .responses
        .get_mut(&status.to_string())
    {
        Some(RefOr::T(response)) if !response.description.contains(&format!("`{code}`")) => {
            response.description = format!(
                "{} Or `{code}`: {}.",
                response.description.trim_end_matches('.'),
                lowercase_first(description)
            );
        }
        Some(_) => {}
        None => {
            let response = problem(format!("{description} (`{code}`)")).build();
            operation
                .responses
                .responses
                .insert(status.to_string(), response.into());
        }
    };
    if has_body {
        add(400, "malformed_json", "The body is not valid JSON");
        add(413, "payload_too_large", "The body is too large");
        add(
            415,
            "unsupported_media_type",
            "The body is not `application/json`",
        );
        add(
            422,
            "validation_failed",
            "The body breaks its schema; the problem's errors list every field and the rule \
             it breaks, all at once (a string with a NUL character, `\\u0000`, is refused in \
             any field)",
        );
    }
    if has_body {
        add(
            422,
            "value_out_of_range",
            "A number is too large to store, or would make one",
        );
    }
    if has_query {
        add(
            400,
            "invalid_query",
            "A query parameter is malformed (or carries a NUL character)",
        );
    }
    if operation
        .parameters
        .as_ref()
        .is_some_and(|ps| ps.iter().any(|p| p.name == "Idempotency-Key"))
    {
        add(
            400,
            "invalid_idempotency_key",
            "The `Idempotency-Key` header is not 1-255 printable ASCII characters",
        );
        add(
            422,
            "idempotency_key_reused",
            "This `Idempotency-Key` was used with another request",
        );
    }
    if secured {
        add(
            401,
            "unauthenticated",
            "Missing, invalid, expired or revoked credential",
        );
        add(
            403,
            "insufficient_scope",
            "The credential lacks the scope this operation requires",
        );
        add(
            403,
            "tenant_suspended",
            "The tenant is suspended: every credential of it is refused",
        );
    }
    if has_path_params {
        add(404, "not_found", "No such resource in this tenant");
    }
    if rate_limited {
        add(
            429,
            "rate_limited",
            "Over the rate limit of the credential or of its tenant (the plan's \
             `requests_per_second` and `request_burst`); nothing was done. Retry after \
             `Retry-After` seconds; `RateLimit-Policy` and `RateLimit` say where the \
             limits stand",
        );
    }
    add(
        500,
        "internal_error",
        "Unexpected failure; quote the request id when reporting it",
    );
    // A write waits for the rows it changes for at most `DATABASE_LOCK_TIMEOUT`.
    if writes && (secured || has_body || has_path_params) {
        add(
            409,
            "lock_timeout",
            "The resource was locked by a concurrent request for longer than the lock \
             timeout; nothing was changed (retry after `Retry-After`)",
        );
    }
    // Everything that reads a credential, a body or an id reaches the database.
    if secured || has_body || has_path_params {
        operation
            .responses
            .responses
            .entry("503".to_owned())
            .or_insert_with(unavailable_response);
    }
    // Every 429 (a rate or a quota) says when to try again.
    if let Some(RefOr::T(response)) = operation.responses.responses.get_mut("429") {
        response
            .headers
            .entry("Retry-After".to_owned())
            .or_insert_with(retry_after_header);
    }
}

/// "The body is …" → "the body is …".
fn lowercase_first(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|c| c.to_lowercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Gives every problem response that lacks one an example of each code its description
/// names (`sku_taken`, `lock_timeout`), with the response's own status — so Swagger UI
/// shows a 409 as a 409, never the `Problem` schema's generic example.
fn illustrate_problems(operation: &mut openapi::path::Operation) {
    for (status, response) in operation.responses.responses.iter_mut() {
        let (Ok(status), RefOr::T(response)) = (status.parse::<u16>(), response) else {
            continue;
        };
        let description = response.description.clone();
        let Some(content) = response.content.get_mut(PROBLEM_JSON) else {
            continue;
        };
        if content.example.is_some() || !content.examples.is_empty() {
            continue;
        }
        let mut codes = codes_in(&description);
        if codes.is_empty() {
            codes.push(default_code(status).to_owned());
        }
        if let [code] = codes.as_slice() {
            content.example = Some(problem_example(status, code, &description));
        } else {
            for code in codes {
                let example = ExampleBuilder::new()
                    .summary(format!("{status} {code}"))
                    .value(Some(problem_example(status, &code, &description)))
                    .build();
                content.examples.insert(code, RefOr::T(example));
            }
        }
    }
}

/// The backticked codes a response description names (`insufficient_stock`), in order.
pub fn codes_in(description: &str) -> Vec<String> {
    let mut codes: Vec<String> = Vec::new();
    for (index, part) in description.split('`').enumerate() {
        let is_code = index % 2 == 1
            && part.starts_with(|c: char| c.is_ascii_lowercase())
            && part
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && !part.ends_with('_');
        if is_code && !codes.iter().any(|c| c == part) {
            codes.push(part.to_owned());
        }
    }
    codes
}

/// The code of a status whose description names none.
fn default_code(status: u16) -> &'static str {
    match status {
        400 => "malformed_request",
        401 => "unauthenticated",
        403 => "forbidden",
        404 => "not_found",
        409 => "conflict",
        412 => "precondition_failed",
        422 => "validation_failed",
        429 => "rate_limited",
        503 => "service_unavailable",
        _ => "internal_error",
    }
}

/// States in each secured operation's description what it requires, from its security
/// requirements (Swagger UI shows scopes for OAuth2 schemes only).
fn state_requirement(operation: &mut openapi::path::Operation) {
    let Some(security) = operation.security.as_ref().filter(|s| !s.is_empty()) else {
        return;
    };
    let requirements: Vec<serde_json::Map<String, serde_json::Value>> = security
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .filter_map(|v| v.as_object().cloned())
        .collect();
    let schemes: Vec<&str> = requirements
        .iter()
        .flat_map(|r| r.keys().map(String::as_str))
        .collect();
    let mut scopes: Vec<&str> = requirements
        .iter()
        .flat_map(|r| r.values())
        .filter_map(|v| v.as_array())
        .flatten()
        .filter_map(|v| v.as_str())
        .collect();
    scopes.sort_unstable();
    scopes.dedup();
    let line = if schemes == ["operator"] {
        "**Requires** the operator token.".to_owned()
    } else {
        let credential = if schemes.contains(&"api_key") {
            "an access token or an API key"
        } else {
            "an access token"
        };
        match scopes.as_slice() {
            [] => format!("**Requires** {credential}, of any scope."),
            [scope] => format!("**Requires** {credential} with the scope `{scope}`."),
            many => format!(
                "**Requires** {credential} with the scopes {}.",
                many.iter()
                    .map(|s| format!("`{s}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    };
    operation.description = Some(match operation.description.take() {
        Some(description) if !description.is_empty() => format!("{line}\n\n{description}"),
        _ => line,
    });
}

/// 503 while the database is unreachable or overloaded, with the `Retry-After` to honour.
fn unavailable_response() -> RefOr<openapi::Response> {
    problem(
        "The database is unreachable or overloaded (`service_unavailable`; during an outage \
         this is answered at once), or a statement ran past its limit \
         (`statement_timeout`). Retry after `Retry-After` seconds; a command retried with \
         the same `Idempotency-Key` takes effect at most once"
            .to_owned(),
    )
    .header("Retry-After", retry_after_header())
    .build()
    .into()
}

/// `Retry-After`: whole seconds.
fn retry_after_header() -> Header {
    let mut retry_after = Header::new(
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1)),
    );
    retry_after.description = Some("Seconds to wait before retrying".to_owned());
    retry_after
}

const PROBLEM_JSON: &str = "application/problem+json";

/// A problem+json response; [`illustrate_problems`] adds the examples of the codes its
/// description names.
fn problem(description: String) -> ResponseBuilder {
    ResponseBuilder::new().description(description).content(
        PROBLEM_JSON,
        ContentBuilder::new()
            .schema(Some(RefOr::Ref(openapi::Ref::from_schema_name("Problem"))))
            .build(),
    )
}

/// What a problem of `code` at `status` looks like on the wire; its detail is the part of
/// the response's description that speaks of `code`.
fn problem_example(status: u16, code: &str, description: &str) -> serde_json::Value {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let marked = format!("`{code}`");
    let about = description
        .split(" Or ")
        .flat_map(|part| part.split("; "))
        .flat_map(|part| part.split(". "))
        .find(|part| part.contains(&marked))
        .unwrap_or(description);
    let detail = about
        .replace(&format!(" ({marked})"), "")
        .replace(&format!("{marked}: "), "")
        .replace(&format!("({marked}) "), "")
        .trim()
        .trim_end_matches('.')
        .to_owned();
    let mut problem = Problem::new(status, code, lowercase_first(&detail));
    if code == "validation_failed" {
        problem.errors = vec![FieldError::new("sku", Sku::RULE.message)];
        problem.detail = format!("the request failed validation: `sku` {}", Sku::RULE.message);
    }
    problem.request_id = Some("0193a4f2-8f7e-7c55-b0e4-4b3f1e9d2a61".to_owned());
    problem.trace_id = Some("4bf92f3577b34da6a3ce929d0e0e4736".to_owned());
    serde_json::to_value(problem).unwrap_or_default()
}
