//! The one error type of the HTTP API, rendered as `application/problem+json` (RFC 9457).
//!
//! Each variant knows its status and stable machine `code`. A handler returns
//! `Result<_, ApiError>`; the response carries a [`Problem`] in its extensions and
//! [`super::problem::render_problems`] serialises it with the request id — and turns every
//! other error response (unknown route, wrong method, timeout, panic) into a problem too.
//!
//! 5xx bodies say nothing about internals: the cause is logged once, here, inside the
//! request span, and the client gets the request id to quote.

use std::borrow::Cow;

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({
    "type": "urn:tenantry:problem:validation_failed",
    "title": "Unprocessable Content",
    "status": 422,
    "detail": "the request body failed validation",
    "code": "validation_failed",
    "errors": [{"field": "email", "message": "must be a valid email address"}],
    "request_id": "0b5f8f38-5a36-4f57-9d43-51b5e1b8f4a7"
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
    /// The `X-Request-Id` of the request, to quote when asking for support.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// One invalid field of a request.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[schema(example = json!({"field": "items[0].quantity", "message": "must be 1-10000"}))]
pub struct FieldError {
    /// Path of the field in the request, e.g. `email` or `scopes[1]`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
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

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{detail}")]
    BadRequest {
        code: &'static str,
        detail: Cow<'static, str>,
    },
    #[error("authentication required: {0}")]
    Unauthenticated(Cow<'static, str>),
    #[error("invalid credentials")]
    InvalidCredentials,
    #[error("tenant suspended")]
    TenantSuspended,
    #[error("{detail}")]
    Forbidden {
        code: &'static str,
        detail: Cow<'static, str>,
    },
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{detail}")]
    Conflict {
        code: &'static str,
        detail: Cow<'static, str>,
    },
    #[error("the resource changed since the version given in If-Match")]
    PreconditionFailed,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// A well-formed request the current state cannot accept (422 with its own code).
    #[error("{detail}")]
    Unprocessable {
        code: &'static str,
        detail: Cow<'static, str>,
    },
    #[error("service unavailable: {0}")]
    Unavailable(&'static str),
    #[error(transparent)]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn bad_request(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::BadRequest {
            code,
            detail: detail.into(),
        }
    }

    pub fn forbidden(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::Forbidden {
            code,
            detail: detail.into(),
        }
    }

    pub fn unprocessable(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::Unprocessable {
            code,
            detail: detail.into(),
        }
    }

    pub fn conflict(code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self::Conflict {
            code,
            detail: detail.into(),
        }
    }

    /// A single-field validation failure.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Validation(vec![FieldError::new(field, message)])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest { .. } => StatusCode::BAD_REQUEST,
            Self::Unauthenticated(_) | Self::InvalidCredentials => StatusCode::UNAUTHORIZED,
            Self::TenantSuspended | Self::Forbidden { .. } => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PreconditionFailed => StatusCode::PRECONDITION_FAILED,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Validation(_) | Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            Self::BadRequest { code, .. }
            | Self::Forbidden { code, .. }
            | Self::Conflict { code, .. }
            | Self::Unprocessable { code, .. } => code,
            Self::Unauthenticated(_) => "unauthenticated",
            Self::InvalidCredentials => "invalid_credentials",
            Self::TenantSuspended => "tenant_suspended",
            Self::NotFound(_) => "not_found",
            Self::PreconditionFailed => "precondition_failed",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::PayloadTooLarge => "payload_too_large",
            Self::Validation(_) => "validation_failed",
            Self::Unavailable(_) => "service_unavailable",
            Self::Internal(_) => "internal_error",
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let detail = match &self {
            Self::Internal(cause) => {
                // `{:#}` prints the whole context chain; the client sees none of it.
                tracing::error!(error = format!("{cause:#}"), "request failed");
                "an internal error occurred; quote the request_id when reporting it".to_owned()
            }
            Self::Unavailable(what) => {
                tracing::warn!(dependency = what, "dependency unavailable");
                format!("{what} is temporarily unavailable; retry shortly")
            }
            Self::Validation(_) => "the request failed validation; see `errors`".to_owned(),
            other => other.to_string(),
        };
        let mut problem = Problem::new(status, self.code(), detail);
        let unauthenticated = matches!(self, Self::Unauthenticated(_) | Self::InvalidCredentials);
        if let Self::Validation(errors) = self {
            problem.errors = errors;
        }
        let mut response = problem.into_response();
        if unauthenticated {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

/// Database failures: constraint violations become the 409/422 their constraint names say
/// (one declarative table, [`constraint_error`]); an exhausted pool is a 503; anything else
/// is an internal error whose cause is logged, never shown.
impl From<sqlx::Error> for ApiError {
    fn from(error: sqlx::Error) -> Self {
        match &error {
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => {
                tracing::warn!(error = %error, "database unavailable");
                Self::Unavailable("the database")
            }
            // Deadlock or serialization failure: the transaction was rolled back whole, and
            // the same request may simply be retried.
            sqlx::Error::Database(db)
                if matches!(db.code().as_deref(), Some("40P01" | "40001")) =>
            {
                tracing::warn!(error = %error, "transaction aborted by a concurrent one");
                Self::conflict(
                    "concurrent_modification",
                    "the request collided with a concurrent one and changed nothing; retry it",
                )
            }
            sqlx::Error::Database(db) => match db.constraint().and_then(constraint_error) {
                Some(mapped) => mapped,
                None => Self::Internal(anyhow::Error::new(error)),
            },
            _ => Self::Internal(anyhow::Error::new(error)),
        }
    }
}

/// Constraint name → client error. A violation of a constraint not listed here is a bug
/// (the handler should have prevented it) and surfaces as a 500.
fn constraint_error(constraint: &str) -> Option<ApiError> {
    Some(match constraint {
        "tenants_slug_key" => {
            ApiError::conflict("slug_taken", "a tenant with this slug already exists")
        }
        "users_email_key" => ApiError::conflict(
            "email_taken",
            "a user with this email already exists in this tenant",
        ),
        "tenants_slug_format" => {
            ApiError::invalid("slug", "must be 3-63 lowercase letters, digits or hyphens")
        }
        "tenants_name_length" => ApiError::invalid("name", "must be 1-200 characters"),
        "api_keys_name_length" => ApiError::invalid("name", "must be 1-100 characters"),
        "products_sku_key" => ApiError::conflict(
            "sku_taken",
            "a product with this SKU already exists in this tenant",
        ),
        "customers_email_key" => ApiError::conflict(
            "email_taken",
            "a customer with this email already exists in this tenant",
        ),
        // Only a concurrent stock movement gets here: requests are validated first.
        "products_stock_nonnegative" => {
            ApiError::conflict("insufficient_stock", "not enough stock for this change")
        }
        "products_sku_format" => ApiError::invalid(
            "sku",
            "must be 1-64 letters, digits, dots, underscores or hyphens",
        ),
        "products_name_length" | "customers_name_length" => {
            ApiError::invalid("name", "must be 1-200 characters")
        }
        "products_price_nonnegative" => ApiError::invalid("price_cents", "must be zero or more"),
        "products_currency_format" => {
            ApiError::invalid("currency", "must be an ISO 4217 code such as EUR")
        }
        // Two writers appended the same stream version: the later one lost the race.
        "domain_events_pkey" => ApiError::conflict(
            "concurrent_modification",
            "the resource was changed by a concurrent request; reload and retry",
        ),
        _ => return None,
    })
}

impl From<validator::ValidationErrors> for ApiError {
    fn from(errors: validator::ValidationErrors) -> Self {
        let mut fields = Vec::new();
        collect_validation_errors(&errors, "", &mut fields);
        fields.sort_by(|a, b| a.field.cmp(&b.field));
        Self::Validation(fields)
    }
}

fn collect_validation_errors(
    errors: &validator::ValidationErrors,
    prefix: &str,
    out: &mut Vec<FieldError>,
) {
    use validator::ValidationErrorsKind as Kind;
    for (field, kind) in errors.errors() {
        let path = if prefix.is_empty() {
            field.to_string()
        } else {
            format!("{prefix}.{field}")
        };
        match kind {
            Kind::Field(list) => out.extend(list.iter().map(|e| {
                let message = e
                    .message
                    .as_ref()
                    .map(|m| m.to_string())
                    .unwrap_or_else(|| format!("failed check `{}`", e.code));
                FieldError::new(path.clone(), message)
            })),
            Kind::Struct(inner) => collect_validation_errors(inner, &path, out),
            Kind::List(items) => {
                for (index, inner) in items {
                    collect_validation_errors(inner, &format!("{path}[{index}]"), out);
                }
            }
        }
    }
}
