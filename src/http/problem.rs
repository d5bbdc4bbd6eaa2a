//! Errors as HTTP answers: every one is an `application/problem+json` document (RFC 9457).
//!
//! A handler returns the application's [`Error`]; [`IntoResponse`] turns it into a
//! [`Problem`] with the status its kind maps to ([`status`]) and leaves the problem in the
//! response extensions. [`render_problems`] then writes the body with the request id — and
//! converts every other error response (axum's 404 for unknown routes and 405 for wrong
//! methods, tower-http's 408 timeout and 413 body limit, a caught panic), so no client ever
//! sees a plain-text or empty error.
//!
//! 5xx bodies say nothing about internals: the cause is logged once, here, inside the
//! request span, and the client gets the request id to quote.

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

use super::middleware::RequestIds;
use crate::error::{Error, ErrorKind, FieldError};

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:tenantry:problem:validation_failed",
    "title": "Unprocessable Entity",
    "status": 422,
    "detail": "the request failed validation: `email` must be a valid email address",
    "code": "validation_failed",
    "errors": [{"field": "email", "message": "must be a valid email address"}],
    "request_id": "0b5f8f38-5a36-4f57-9d43-51b5e1b8f4a7",
    "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"
}))]
pub struct Problem {
    /// `urn:tenantry:problem:<code>`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The HTTP status phrase.
    pub title: String,
    pub status: u16,
    /// Human-readable explanation of this occurrence.
    pub detail: String,
    /// Stable machine-readable code; switch on this, not on `detail`.
    pub code: String,
    /// Per-field failures (422 only).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
    /// The id the server gave the request (also its `X-Request-Id` response header), to
    /// quote when asking for support.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The W3C trace id of the request (32 hex digits): the caller's, when it sent a
    /// `traceparent`, else the server's. With traces exported, it finds the request's
    /// trace; it is also in every log line of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace_id: Option<String>,
    /// Members particular to the code: `quota_exceeded` has `limit_name`, `limit`, `used`
    /// and `resets_at`.
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub details: serde_json::Map<String, serde_json::Value>,
}

impl Problem {
    pub fn new(status: StatusCode, code: &str, detail: impl Into<String>) -> Self {
        Self {
            type_: format!("urn:tenantry:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail: detail.into(),
            code: code.to_owned(),
            errors: Vec::new(),
            request_id: None,
            trace_id: None,
            details: serde_json::Map::new(),
        }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
}

impl IntoResponse for Problem {
    /// The body is written by the problem middleware, which knows the request id.
    fn into_response(self) -> Response {
        let mut response = self.status().into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        response.extensions_mut().insert(self);
        response
    }
}

/// The HTTP status of each kind of error.
pub fn status(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Malformed => StatusCode::BAD_REQUEST,
        ErrorKind::Invalid => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::VersionMismatch => StatusCode::PRECONDITION_FAILED,
        ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl IntoResponse for Error {
    fn into_response(self) -> Response {
        self.log();
        // Say it in HTTP's terms where the application's words are transport-neutral.
        let detail: String = match self.kind() {
            ErrorKind::Invalid if !self.fields().is_empty() => {
                validation_detail(self.code(), self.fields())
            }
            ErrorKind::VersionMismatch => {
                "If-Match names no current version of the resource: it changed since, or the tag \
                 was weak (W/\"…\"), which If-Match never matches (it compares strongly); send \
                 the ETag exactly as given"
                    .to_owned()
            }
            _ => self.message().to_owned(),
        };
        let mut problem = Problem::new(status(self.kind()), self.code(), detail);
        problem.errors = self.fields().to_vec();
        problem.details = self.details().clone();
        let mut response = problem.into_response();
        let headers = response.headers_mut();
        if self.kind() == ErrorKind::Unauthenticated {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if let Some(after) = self.retry_after() {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
        }
        response
    }
}

/// "the request failed validation: `sku` must be …; `quantity` is required" — every field
/// in the detail too, for clients that show only the detail. (A refusal of well-formed
/// input, such as an unknown customer, "cannot be carried out" instead.)
fn validation_detail(code: &str, fields: &[FieldError]) -> String {
    let each: Vec<String> = fields
        .iter()
        .map(|f| match f.field.as_str() {
            "" => format!("the body {}", f.message),
            field => format!("`{field}` {}", f.message),
        })
        .collect();
    let what = if code == "validation_failed" {
        "the request failed validation"
    } else {
        "the request cannot be carried out"
    };
    format!("{what}: {}", each.join("; "))
}

pub async fn render_problems(request: Request, next: Next) -> Response {
    let request_id = request
        .extensions()
        .get::<RequestIds>()
        .map(|ids| ids.id.clone());
    let response = next.run(request).await;

    let (mut parts, body) = response.into_parts();
    let mut problem = match parts.extensions.remove::<Problem>() {
        Some(problem) => problem,
        None if parts.status.is_client_error() || parts.status.is_server_error() => {
            if is_problem(&parts.headers) {
                return Response::from_parts(parts, body);
            }
            problem_for_status(parts.status)
        }
        None => return Response::from_parts(parts, body),
    };
    problem.request_id = request_id;
    problem.trace_id = crate::observability::current_trace_id();
    let json = serde_json::to_vec(&problem).unwrap_or_default();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, Body::from(json))
}

fn is_problem(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"))
}

/// A problem for an error response that a framework layer produced.
fn problem_for_status(status: StatusCode) -> Problem {
    let (code, detail) = match status {
        StatusCode::NOT_FOUND => ("route_not_found", "no route matches this path"),
        StatusCode::METHOD_NOT_ALLOWED => (
            "method_not_allowed",
            "this route does not accept this method",
        ),
        StatusCode::REQUEST_TIMEOUT => ("request_timeout", "the request took too long"),
        StatusCode::PAYLOAD_TOO_LARGE => ("payload_too_large", "the request body is too large"),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => (
            "unsupported_media_type",
            "send the body as application/json",
        ),
        StatusCode::INTERNAL_SERVER_ERROR => (
            "internal_error",
            "an internal error occurred; quote the request_id when reporting it",
        ),
        s if s.is_server_error() => ("server_error", "the server could not handle the request"),
        _ => ("bad_request", "the request could not be handled"),
    };
    Problem::new(status, code, detail)
}

/// The response for a panic caught by `CatchPanicLayer`: logged, never shown.
pub fn panic_response(payload: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic");
    tracing::error!(panic = message, "handler panicked");
    problem_for_status(StatusCode::INTERNAL_SERVER_ERROR).into_response()
}
