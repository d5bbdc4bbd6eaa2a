//! The OpenAPI document: tenant admins' user interface (Swagger UI at `/docs`).
//!
//! Paths come from the routers themselves (utoipa-axum), so every served route is
//! documented. [`finish`] adds what every operation shares: the security schemes and the
//! problem+json error responses each operation can produce, derived from its shape (a body
//! can be malformed, a path id can be unknown, a secured route can refuse a credential,
//! anything that reaches the database can be 503 with `Retry-After` while it is away).
//! `openapi/openapi.json` is the committed copy; `tenantry openapi` regenerates it and a
//! test fails when it is stale.

use utoipa::{
    OpenApi,
    openapi::{
        self, ContentBuilder, ObjectBuilder, RefOr, ResponseBuilder, Type,
        header::Header,
        security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme},
    },
};

use super::problem::Problem;
use crate::error::FieldError;

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
    components(schemas(Problem, FieldError)),
    tags(
        (name = "auth", description = "Login, token refresh, logout, the caller"),
        (name = "tenant", description = "The caller's tenant"),
        (name = "users", description = "Tenant users and their roles"),
        (name = "api-keys", description = "API keys for tenant apps"),
        (name = "catalog", description = "Products and customers"),
        (name = "orders", description = "Orders: place, read, history, transitions (event-sourced)"),
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
            let secured = operation.security.as_ref().is_some_and(|s| !s.is_empty());
            let has_path_params = operation.parameters.as_ref().is_some_and(|ps| {
                ps.iter()
                    .any(|p| matches!(p.parameter_in, openapi::path::ParameterIn::Path))
            });
            let has_query = operation.parameters.as_ref().is_some_and(|ps| {
                ps.iter()
                    .any(|p| matches!(p.parameter_in, openapi::path::ParameterIn::Query))
            });
            let has_body = operation.request_body.is_some();
            let mut add = |status: &str, code: &str, description: &str| {
                operation
                    .responses
                    .responses
                    .entry(status.to_owned())
                    .or_insert_with(|| problem_response(code, description));
            };
            if has_body {
                add("400", "malformed_json", "The body is not valid JSON");
                add("413", "payload_too_large", "The body is too large");
                add(
                    "415",
                    "unsupported_media_type",
                    "The body is not `application/json`",
                );
                add(
                    "422",
                    "validation_failed",
                    "The body failed validation; `errors` lists each field (a string with a NUL \
                     character, `\\u0000`, is refused in any field). Also `value_out_of_range` \
                     for a number too large to store",
                );
            } else if has_query {
                add(
                    "400",
                    "invalid_query",
                    "A query parameter is malformed (or carries a NUL character)",
                );
            }
            if secured {
                add(
                    "401",
                    "unauthenticated",
                    "Missing, invalid, expired or revoked credential",
                );
                add(
                    "403",
                    "insufficient_scope",
                    "The credential lacks the required scope, or the tenant is suspended (`tenant_suspended`)",
                );
            }
            if has_path_params {
                add("404", "not_found", "No such resource in this tenant");
            }
            add(
                "500",
                "internal_error",
                "Unexpected failure; quote the `request_id`",
            );
            // A write waits for the rows it changes for at most `DATABASE_LOCK_TIMEOUT`.
            if writes && (secured || has_body || has_path_params) {
                let description = "The resource is locked by a concurrent request for longer \
                    than the lock timeout (`lock_timeout`, with `Retry-After`); nothing was \
                    changed";
                add("409", "lock_timeout", description);
            }
            // Everything that reads a credential, a body or an id reaches the database.
            if secured || has_body || has_path_params {
                operation
                    .responses
                    .responses
                    .entry("503".to_owned())
                    .or_insert_with(unavailable_response);
            }
            // An operation's own 409 (a taken slug, an order's state) can be a lock timeout
            // too: say so where the example above did not go.
            if writes
                && let Some(RefOr::T(conflict)) = operation.responses.responses.get_mut("409")
                && !conflict.description.contains("lock_timeout")
            {
                conflict.description = format!(
                    "{} Also `lock_timeout` (with `Retry-After`): the resource was locked by a \
                     concurrent request for too long, and nothing was changed.",
                    conflict.description
                );
            }
        }
    }
    spec
}

/// 503 while the database is unreachable or overloaded, with the `Retry-After` to honour.
fn unavailable_response() -> RefOr<openapi::Response> {
    let mut retry_after = Header::new(
        ObjectBuilder::new()
            .schema_type(Type::Integer)
            .minimum(Some(1)),
    );
    retry_after.description = Some("Seconds to wait before retrying".to_owned());
    problem(
        "service_unavailable",
        "The database is unreachable or overloaded (during an outage this is answered at \
         once), or a statement ran past its limit (`statement_timeout`). Retry after \
         `Retry-After` seconds; a command retried with the same `Idempotency-Key` takes \
         effect at most once",
    )
    .header("Retry-After", retry_after)
    .build()
    .into()
}

fn problem_response(code: &str, description: &str) -> RefOr<openapi::Response> {
    problem(code, description).build().into()
}

/// A problem+json response with an example of `code`.
fn problem(code: &str, description: &str) -> ResponseBuilder {
    let example = serde_json::json!({
        "type": format!("urn:tenantry:problem:{code}"),
        "title": "Error",
        "status": 0,
        "detail": description,
        "code": code,
        "request_id": "0193a4f2-8f7e-7c55-b0e4-4b3f1e9d2a61"
    });
    ResponseBuilder::new().description(description).content(
        "application/problem+json",
        ContentBuilder::new()
            .schema(Some(RefOr::Ref(openapi::Ref::from_schema_name("Problem"))))
            .example(Some(example))
            .build(),
    )
}
