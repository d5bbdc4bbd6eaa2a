//! Conditional requests on versioned resources: `ETag` on reads, `If-None-Match` → 304,
//! `If-Match` on writes → the [`ExpectedVersion`] the application checks (412 when the
//! stored version moved on).
//!
//! The entity tag is the resource's `version`, which every change increments.

use axum::{
    Json,
    extract::FromRequestParts,
    http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts},
    response::{IntoResponse, Response},
};
use serde::Serialize;

use crate::versioning::ExpectedVersion;

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

/// The versions an `If-Match`/`If-None-Match` list names; `None` for `*` (any version).
/// Weak tags count as their strong form; tags that are not versions this API issued name
/// nothing.
fn versions(list: &str) -> Option<Vec<i64>> {
    let mut versions = Vec::new();
    for tag in list.split(',').map(|t| t.trim().trim_start_matches("W/")) {
        if tag == "*" {
            return None;
        }
        if let Some(version) = tag
            .strip_prefix('"')
            .and_then(|t| t.strip_suffix('"'))
            .and_then(|t| t.parse::<i64>().ok())
            .filter(|v| etag(*v) == tag)
        {
            versions.push(version);
        }
    }
    Some(versions)
}

impl Preconditions {
    /// The version a write expects, from `If-Match`.
    pub fn expected(&self) -> ExpectedVersion {
        match self.if_match.as_deref().map(versions) {
            Some(Some(versions)) => ExpectedVersion::OneOf(versions),
            _ => ExpectedVersion::Any,
        }
    }

    /// A read response: 304 when the client's copy is current, else the body with its ETag.
    pub fn read_response<T: Serialize>(&self, version: i64, body: T) -> Response {
        let current = self
            .if_none_match
            .as_deref()
            .map(versions)
            .is_some_and(|versions| versions.is_none_or(|v| v.contains(&version)));
        if current {
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
        assert!(pre("\"3\"").expected().check(3).is_ok());
        assert!(pre("*").expected().check(3).is_ok());
        assert!(pre("W/\"3\", \"9\"").expected().check(3).is_ok());
        assert!(
            pre("\"2\"")
                .expected()
                .check(3)
                .is_err_and(|e| e.code() == "precondition_failed")
        );
        assert!(
            pre("\"03\"").expected().check(3).is_err(),
            "not a tag we issued"
        );
        assert!(pre("garbage").expected().check(3).is_err());
        assert!(Preconditions::default().expected().check(3).is_ok());
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
