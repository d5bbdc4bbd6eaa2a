//! Our own extractors, so that every rejection — wrong content type, malformed JSON, a
//! field of the wrong type, a failed validation, a bad path or query parameter — comes back
//! as a problem document naming the offending field.

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request, rejection::BytesRejection},
    http::{header, request::Parts},
};
use serde::de::DeserializeOwned;
use validator::Validate;

use crate::error::{Error, FieldError};

/// A JSON body, deserialised with the path of any failing field, then validated.
pub struct ValidJson<T>(pub T);

impl<S, T> FromRequest<S> for ValidJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Validate,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Error> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<mime_essence::Essence>().ok())
            .is_some_and(|essence| essence.is_json());
        if !is_json {
            return Err(Error::unsupported_media_type());
        }
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection {
                    BytesRejection::FailedToBufferBody(_) => Error::too_large(),
                    other => Error::malformed("unreadable_body", other.body_text()),
                })?;
        let value = parse_json::<T>(&bytes)?;
        value.validate()?;
        Ok(Self(value))
    }
}

/// Deserialises JSON, telling a syntax error (400) from a well-formed body of the wrong
/// shape (422 with the field path).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_data() {
            let field = if path == "." { String::new() } else { path };
            Error::validation(vec![FieldError::new(
                field,
                strip_position(&inner.to_string()),
            )])
        } else {
            Error::malformed(
                "malformed_json",
                format!("the body is not valid JSON: {inner}"),
            )
        }
    })
}

/// serde_json appends " at line 1 column 7"; the field path already says where.
fn strip_position(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_owned(),
        None => message.to_owned(),
    }
}

/// Path parameters. A malformed id cannot name an existing resource, so it is a 404.
pub struct ApiPath<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiPath<T>
where
    S: Send + Sync,
    T: DeserializeOwned + Send,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Error> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|_| Error::not_found("resource"))
    }
}

/// Query parameters, with the failing parameter named in a 400.
pub struct ApiQuery<T>(pub T);

impl<S, T> FromRequestParts<S> for ApiQuery<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Error;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Error> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Self)
            .map_err(|error| {
                let path = error.path().to_string();
                Error::malformed(
                    "invalid_query",
                    format!("invalid query parameter {path}: {}", error.into_inner()),
                )
            })
    }
}

mod mime_essence {
    //! `application/json` or any `application/*+json`, parameters ignored.
    pub struct Essence(String);

    impl std::str::FromStr for Essence {
        type Err = ();
        fn from_str(value: &str) -> Result<Self, ()> {
            let essence = value
                .split(';')
                .next()
                .ok_or(())?
                .trim()
                .to_ascii_lowercase();
            Ok(Self(essence))
        }
    }

    impl Essence {
        pub fn is_json(&self) -> bool {
            self.0 == "application/json"
                || (self.0.starts_with("application/") && self.0.ends_with("+json"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        scopes: Vec<String>,
    }

    #[test]
    fn wrong_type_names_the_field_path() {
        let error = parse_json::<Body>(br#"{"name":"a","scopes":["x",1]}"#)
            .expect_err("expected a validation error");
        let errors = error.fields();
        assert_eq!(error.code(), "validation_failed");
        assert_eq!(errors[0].field, "scopes[1]");
        assert!(!errors[0].message.contains("line"), "{}", errors[0].message);
    }

    #[test]
    fn syntax_error_is_a_bad_request() {
        let error = parse_json::<Body>(b"{\"name\":").unwrap_err();
        assert_eq!(error.code(), "malformed_json");
    }

    #[test]
    fn json_content_types_are_recognised() {
        for (value, json) in [
            ("application/json", true),
            ("application/json; charset=utf-8", true),
            ("application/merge-patch+json", true),
            ("text/plain", false),
            ("application/x-www-form-urlencoded", false),
        ] {
            let essence: mime_essence::Essence = value.parse().unwrap();
            assert_eq!(essence.is_json(), json, "{value}");
        }
    }
}
