//! Conditional requests on versioned resources: `ETag` on reads, `If-None-Match` → 304,
//! `If-Match` on writes → the [`ExpectedVersion`] the application checks (412 when the
//! stored version moved on).
//!
//! The entity tag is the resource's `version`, which every change increments; this API
//! only issues strong tags (`"3"`). As RFC 9110 (§13.1.1, §13.1.2) requires, `If-Match`
//! compares strongly — a weak tag (`W/"3"`) never matches, so a write sent with one is
//! refused with 412 — and `If-None-Match` compares weakly, so a cache holding `W/"3"` still
//! gets its 304.

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

/// How entity tags are compared (RFC 9110 §8.8.3.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparison {
    /// Both tags strong and equal: a weak tag matches nothing (`If-Match`).
    Strong,
    /// Equal once any `W/` is dropped (`If-None-Match`).
    Weak,
}

/// The versions an `If-Match`/`If-None-Match` list names; `None` for `*` (any version).
/// Under strong comparison a weak tag names nothing; under weak comparison it counts as its
/// strong form. Tags that are not versions this API issued name nothing.
fn versions(list: &str, comparison: Comparison) -> Option<Vec<i64>> {
    let mut versions = Vec::new();
    for tag in list.split(',').map(str::trim) {
        if tag == "*" {
            return None;
        }
        let tag = match (tag.strip_prefix("W/"), comparison) {
            (Some(_), Comparison::Strong) => continue,
            (Some(strong), Comparison::Weak) => strong,
            (None, _) => tag,
        };
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
    /// The version a write expects, from `If-Match` (strong comparison: a weak tag names
    /// no version, so a list of weak tags only is never met).
    pub fn expected(&self) -> ExpectedVersion {
        match self
            .if_match
            .as_deref()
            .map(|list| versions(list, Comparison::Strong))
        {
            Some(Some(versions)) => ExpectedVersion::OneOf(versions),
            _ => ExpectedVersion::Any,
        }
    }

    /// A read response: 304 when the client's copy is current, else the body with its ETag.
    pub fn read_response<T: Serialize>(&self, version: i64, body: T) -> Response {
        self.not_modified(version)
            .unwrap_or_else(|| with_etag(version, body))
    }

    /// [`Preconditions::read_response`] for a body already serialised (a cached one).
    pub fn cached_response(&self, version: i64, json: bytes::Bytes) -> Response {
        self.not_modified(version).unwrap_or_else(|| {
            let mut response = (
                [(
                    header::CONTENT_TYPE,
                    HeaderValue::from_static("application/json"),
                )],
                json,
            )
                .into_response();
            set_etag(response.headers_mut(), version);
            response
        })
    }

    /// 304 when `If-None-Match` names `version`.
    fn not_modified(&self, version: i64) -> Option<Response> {
        let current = self
            .if_none_match
            .as_deref()
            .map(|list| versions(list, Comparison::Weak))
            .is_some_and(|versions| versions.is_none_or(|v| v.contains(&version)));
        current.then(|| {
            let mut response = StatusCode::NOT_MODIFIED.into_response();
            set_etag(response.headers_mut(), version);
            response
        })
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

    fn if_match(value: &str) -> Preconditions {
        Preconditions {
            if_match: Some(value.into()),
            if_none_match: None,
        }
    }

    fn if_none_match(value: &str) -> Preconditions {
        Preconditions {
            if_match: None,
            if_none_match: Some(value.into()),
        }
    }

    #[test]
    fn if_match_accepts_the_current_tag_and_star_only() {
        assert!(if_match("\"3\"").expected().check(3).is_ok());
        assert!(if_match("*").expected().check(3).is_ok());
        assert!(if_match("\"9\", \"3\"").expected().check(3).is_ok());
        assert!(
            if_match("\"2\"")
                .expected()
                .check(3)
                .is_err_and(|e| e.code() == "precondition_failed")
        );
        assert!(
            if_match("\"03\"").expected().check(3).is_err(),
            "not a tag we issued"
        );
        assert!(if_match("garbage").expected().check(3).is_err());
        assert!(Preconditions::default().expected().check(3).is_ok());
    }

    #[test]
    fn if_match_compares_strongly_so_a_weak_tag_never_matches() {
        for weak in ["W/\"3\"", "W/\"3\", \"9\"", " W/\"3\" ", "W/\"*\""] {
            assert!(
                if_match(weak)
                    .expected()
                    .check(3)
                    .is_err_and(|e| e.code() == "precondition_failed"),
                "If-Match: {weak} must not match version 3"
            );
        }
        assert!(
            if_match("W/\"3\", \"3\"").expected().check(3).is_ok(),
            "a strong tag beside a weak one still matches"
        );
    }

    #[test]
    fn if_none_match_compares_weakly_so_a_weak_tag_of_the_current_version_is_not_modified() {
        for current in ["\"4\"", "W/\"4\"", "\"1\", W/\"4\"", "*"] {
            assert_eq!(
                if_none_match(current).read_response(4, "x").status(),
                StatusCode::NOT_MODIFIED,
                "If-None-Match: {current} names version 4"
            );
        }
        assert_eq!(
            if_none_match("W/\"3\"").read_response(4, "x").status(),
            StatusCode::OK
        );
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
