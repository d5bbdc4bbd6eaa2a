//! Conditional requests on versioned resources: `ETag` on reads, `If-None-Match` → 304,
//! `If-Match` on writes → 412 when the stored version moved on (optimistic concurrency).
//!
//! The entity tag is the row's `version` column, which every update increments.

use axum::{
    Json,
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use super::error::ApiError;

/// The `If-Match` / `If-None-Match` headers of a request.
#[derive(Debug, Default)]
pub struct Preconditions {
    if_match: Option<String>,
    if_none_match: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for Preconditions {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let get = |name| {
            parts
                .headers
                .get(name)
                .and_then(|v: &HeaderValue| v.to_str().ok())
                .map(str::to_owned)
        };
        Ok(Self {
            if_match: get(header::IF_MATCH),
            if_none_match: get(header::IF_NONE_MATCH),
        })
    }
}

pub fn etag(version: i64) -> String {
    format!("\"{version}\"")
}

fn matches(list: &str, version: i64) -> bool {
    let tag = etag(version);
    list.split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == tag)
}

impl Preconditions {
    /// Refuses a write to a resource whose version no longer matches `If-Match`.
    pub fn check_write(&self, current_version: i64) -> Result<(), ApiError> {
        match &self.if_match {
            Some(list) if !matches(list, current_version) => Err(ApiError::PreconditionFailed),
            _ => Ok(()),
        }
    }

    /// A read response: 304 when the client's copy is current, else the body with its ETag.
    pub fn read_response<T: Serialize>(&self, version: i64, body: T) -> Response {
        if self
            .if_none_match
            .as_deref()
            .is_some_and(|list| matches(list, version))
        {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            set_etag(response.headers_mut(), version);
            return response;
        }
        with_etag(version, body)
    }
}

/// A JSON body with its `ETag`.
pub fn with_etag<T: Serialize>(version: i64, body: T) -> Response {
    let mut response = Json(body).into_response();
    set_etag(response.headers_mut(), version);
    response
}

fn set_etag(headers: &mut HeaderMap, version: i64) {
    if let Ok(value) = HeaderValue::from_str(&etag(version)) {
        headers.insert(header::ETAG, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_accepts_current_star_and_weak_tags_only() {
        let pre = |v: &str| Preconditions {
            if_match: Some(v.into()),
            if_none_match: None,
        };
        assert!(pre("\"3\"").check_write(3).is_ok());
        assert!(pre("*").check_write(3).is_ok());
        assert!(pre("W/\"3\", \"9\"").check_write(3).is_ok());
        assert!(matches!(
            pre("\"2\"").check_write(3),
            Err(ApiError::PreconditionFailed)
        ));
        assert!(Preconditions::default().check_write(3).is_ok());
    }

    #[test]
    fn if_none_match_on_current_version_is_not_modified() {
        let pre = Preconditions {
            if_match: None,
            if_none_match: Some("\"4\"".into()),
        };
        assert_eq!(pre.read_response(4, "x").status(), StatusCode::NOT_MODIFIED);
        assert_eq!(pre.read_response(5, "x").status(), StatusCode::OK);
    }
}
