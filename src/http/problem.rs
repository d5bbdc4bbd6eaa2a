//! The middleware that makes every error response a problem document.
//!
//! Handlers' errors arrive as a [`Problem`] in the response extensions and only need the
//! request id added. Everything else with an error status — axum's 404 for unknown routes
//! and 405 for wrong methods, tower-http's 408 timeout and 413 body limit, a caught panic
//! — is converted here, so no client ever sees a plain-text or empty error.

use axum::{
    body::Body,
    extract::Request,
    http::{HeaderValue, StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::error::Problem;

pub const REQUEST_ID_HEADER: &str = "x-request-id";

pub async fn render_problems(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
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
