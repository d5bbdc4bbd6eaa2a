//! Our own extractors, so that every rejection — wrong content type, malformed JSON, a
//! field of the wrong type, a failed validation, a bad path or query parameter — comes back
//! as a problem document naming the offending field.
//!
//! They are also where NUL characters stop. Postgres cannot store U+0000 in `text` or
//! `jsonb` and fails the statement, so no input may carry one past this module: a JSON
//! body with a NUL in any string is a 422 naming each field, before any handler runs; a
//! query parameter with one is a 400; a path parameter with one names no resource (404).

use axum::{
    body::Bytes,
    extract::{FromRequest, FromRequestParts, Request, rejection::BytesRejection},
    http::{header, request::Parts},
};
use serde::de::DeserializeOwned;
use serde_json::Value;
use utoipa::ToSchema;

use super::body_schema;
use crate::error::{Error, FieldError};

/// A JSON body, checked against its OpenAPI schema (every broken rule reported at once,
/// [`body_schema`]) and deserialised. `T`'s schema name is the component its operation
/// publishes as the request body.
///
/// An empty body reads as `{}`, whatever its `Content-Type` (or none): an action that takes
/// no fields (`confirm`, `ship`) can be sent bare, and a command missing its body is told
/// which fields are required. A body that is not empty must be JSON (415 otherwise).
pub struct ValidJson<T>(pub T);

impl<S, T> FromRequest<S> for ValidJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned + ToSchema,
{
    type Rejection = Error;

    async fn from_request(request: Request, state: &S) -> Result<Self, Error> {
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<mime_essence::Essence>().ok())
            .is_some_and(|essence| essence.is_json());
        let bytes =
            Bytes::from_request(request, state)
                .await
                .map_err(|rejection| match rejection {
                    BytesRejection::FailedToBufferBody(_) => Error::too_large(),
                    other => Error::malformed("unreadable_body", other.body_text()),
                })?;
        let value = if bytes.is_empty() {
            Value::Object(Default::default())
        } else if !is_json {
            return Err(Error::unsupported_media_type());
        } else {
            parse_json::<Value>(&bytes)?
        };
        body_schema::check(&T::name(), &value)?;
        deserialize(value).map(Self)
    }
}

/// Deserialises a body that passed its schema. JSON Schema counts `2.0` as the integer 2,
/// so integral numbers written with a fraction or an exponent are read as integers first.
fn deserialize<T: DeserializeOwned>(mut value: Value) -> Result<T, Error> {
    integral_numbers_as_integers(&mut value);
    serde_path_to_error::deserialize(value).map_err(|error| {
        let path = error.path().to_string();
        field_error(&path, &error.into_inner().to_string())
    })
}

fn integral_numbers_as_integers(value: &mut Value) {
    match value {
        Value::Number(number) => {
            if let Some(float) = number.as_f64().filter(|_| number.is_f64())
                && float.fract() == 0.0
                && float.abs() < 9.0e15
            {
                // Exact: every integer below 2^53 is a float exactly.
                *number = serde_json::Number::from(float as i64);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(integral_numbers_as_integers),
        Value::Object(members) => members.values_mut().for_each(integral_numbers_as_integers),
        _ => {}
    }
}

/// Deserialises JSON, telling a syntax error (400) from a well-formed body of the wrong
/// shape (422 naming the field). A NUL character in any string (or member name) is a 422
/// naming every such field, whatever the body's type would accept.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    if has_nul_escape(bytes) {
        refuse_nul(bytes)?;
    }
    let deserializer = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        if inner.is_data() {
            field_error(&path, &strip_position(&inner.to_string()))
        } else {
            Error::malformed(
                "malformed_json",
                format!(
                    "the body is not valid JSON: {}",
                    strip_position(&inner.to_string())
                ),
            )
        }
    })
}

/// A deserialisation failure as a 422 naming its field, in words rather than serde's (which
/// speak of Rust types: "expected i64").
fn field_error(path: &str, message: &str) -> Error {
    let path = if path == "." { "" } else { path };
    let (field, message) = serde_message(message);
    let field = match field {
        Some(name) if path.is_empty() => name,
        Some(name) => format!("{path}.{name}"),
        None => path.to_owned(),
    };
    Error::validation(vec![FieldError::new(field, message)])
}

/// Reads a serde error message: the member it names, if it names one (a missing or unknown
/// field), and what the value must be, without the value itself.
pub fn serde_message(message: &str) -> (Option<String>, String) {
    let quoted = |text: &str| {
        let start = text.find('`')? + 1;
        let end = start + text[start..].find('`')?;
        Some(text[start..end].to_owned())
    };
    if let Some(rest) = message.strip_prefix("missing field ") {
        return (quoted(rest), "is required".to_owned());
    }
    if let Some(rest) = message.strip_prefix("unknown field ") {
        return (quoted(rest), "is not a field of this request".to_owned());
    }
    if message.contains("UUID") || message.contains("uuid") {
        return (None, "must be a UUID".to_owned());
    }
    let expected = message
        .rsplit_once(", expected ")
        .map(|(_, expected)| expected.trim());
    let rule = match expected {
        Some(e) if is_integer_type(e) => "must be an integer".to_owned(),
        Some("a string" | "string") => "must be a string".to_owned(),
        Some("a boolean") => "must be a boolean".to_owned(),
        Some("a sequence") => "must be an array".to_owned(),
        Some(e) if e.starts_with("struct ") || e == "a map" => "must be an object".to_owned(),
        Some(e) if e.starts_with("one of ") => format!("must be {e}"),
        Some(e) if e.starts_with("a ") || e.starts_with("an ") => format!("must be {e}"),
        _ => "has an invalid value".to_owned(),
    };
    (None, rule)
}

fn is_integer_type(expected: &str) -> bool {
    matches!(
        expected,
        "i8" | "i16" | "i32" | "i64" | "u8" | "u16" | "u32" | "u64" | "usize" | "isize"
    ) || expected.contains("integer")
}

const NUL_MESSAGE: &str = "must not contain the NUL character (U+0000)";

/// Whether the raw body has a `\u0000` escape — the only way JSON text can carry a NUL (a
/// raw control character in a string is a syntax error). The fast path: a body without
/// one costs a single SIMD scan. An escape counts only after an even number of
/// backslashes: `\\u0000` is an escaped backslash followed by the letters `u0000`.
fn has_nul_escape(bytes: &[u8]) -> bool {
    memchr::memmem::find_iter(bytes, br"\u0000").any(|at| {
        let backslashes = bytes[..at]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        backslashes % 2 == 0
    })
}

/// The slow path, for a body that has a NUL escape: every string (and member name) with a
/// NUL, by path (`items[0].name`), as one validation error. A body that is not JSON is
/// left for the typed parse to refuse with its own error.
fn refuse_nul(bytes: &[u8]) -> Result<(), Error> {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
        return Ok(());
    };
    let mut fields = Vec::new();
    collect_nul_fields(&value, "", &mut fields);
    if fields.is_empty() {
        return Ok(());
    }
    fields.sort_by(|a, b| a.field.cmp(&b.field));
    Err(Error::validation(fields))
}

fn collect_nul_fields(value: &serde_json::Value, path: &str, out: &mut Vec<FieldError>) {
    use serde_json::Value;
    match value {
        Value::String(text) if text.contains('\0') => out.push(FieldError::new(path, NUL_MESSAGE)),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                collect_nul_fields(item, &format!("{path}[{index}]"), out);
            }
        }
        Value::Object(members) => {
            for (name, member) in members {
                if name.contains('\0') {
                    // Named by where it is: the name itself is what cannot be shown.
                    out.push(FieldError::new(
                        path,
                        "member names must not contain the NUL character (U+0000)",
                    ));
                    continue;
                }
                let child = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                collect_nul_fields(member, &child, out);
            }
        }
        _ => {}
    }
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
        // A path is percent-encoded, so a NUL can only arrive as `%00`.
        if parts.uri.path().contains("%00") {
            return Err(Error::not_found("resource"));
        }
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
        // A query is percent-encoded, so a NUL can only arrive as `%00`; only then is it
        // worth decoding twice.
        if query.contains("%00")
            && let Some((name, _)) = form_urlencoded::parse(query.as_bytes())
                .find(|(name, value)| name.contains('\0') || value.contains('\0'))
        {
            let name = name.replace('\0', "\u{FFFD}");
            return Err(Error::malformed(
                "invalid_query",
                format!("invalid query parameter {name}: {NUL_MESSAGE}"),
            ));
        }
        let deserializer =
            serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(Self)
            .map_err(|error| {
                let path = error.path().to_string();
                let message = error.into_inner().to_string();
                let (named, rule) = match message.as_str() {
                    "invalid digit found in string" | "cannot parse integer from empty string" => {
                        (None, "must be an integer".to_owned())
                    }
                    "number too large to fit in target type"
                    | "number too small to fit in target type" => {
                        (None, "is out of range".to_owned())
                    }
                    other if other.starts_with("unknown variant ") => (
                        None,
                        other.split_once(", expected ").map_or_else(
                            || "has an invalid value".to_owned(),
                            |(_, e)| format!("must be {e}"),
                        ),
                    ),
                    other => serde_message(other),
                };
                let name = named.unwrap_or(path);
                Error::malformed(
                    "invalid_query",
                    format!("invalid query parameter {name}: {rule}"),
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
    fn a_nul_anywhere_names_each_field_and_an_escaped_backslash_is_not_a_nul() {
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Order {
            items: Vec<Line>,
            note: Option<String>,
        }
        #[derive(Debug, serde::Deserialize)]
        #[allow(dead_code)]
        struct Line {
            name: String,
        }
        let fields = |body: &str| -> Vec<String> {
            match parse_json::<Order>(body.as_bytes()) {
                Ok(_) => Vec::new(),
                Err(error) if error.code() == "validation_failed" => {
                    error.fields().iter().map(|f| f.field.clone()).collect()
                }
                Err(error) => vec![format!("<{}>", error.code())],
            }
        };
        for (body, expected) in [
            (r#"{"items":[{"name":"a"}],"note":"x\u0000"}"#, vec!["note"]),
            (
                r#"{"items":[{"name":"a"},{"name":"\u0000b"}],"note":"\u0000"}"#,
                vec!["items[1].name", "note"],
            ),
            // Refused even where the type has no such field, or wants another type.
            (
                r#"{"items":[],"extra":{"deep":["\u0000"]}}"#,
                vec!["extra.deep[0]"],
            ),
            (r#"{"items":[{"name":1}],"note":"\u0000"}"#, vec!["note"]),
            (r#"{"items":[],"bad\u0000key":1}"#, vec![""]),
            // `\\u0000` is a backslash and the text `u0000`; `\\\u0000` is a backslash
            // then a NUL.
            (r#"{"items":[{"name":"\\u0000"}]}"#, vec![]),
            (r#"{"items":[{"name":"\\\u0000"}]}"#, vec!["items[0].name"]),
            (r#"{"items":[{"name":"\\\\u0000"}]}"#, vec![]),
            // Not JSON: a syntax error, as without the NUL.
            (r#"{"items":[{"name":"\u0000"}"#, vec!["<malformed_json>"]),
        ] {
            assert_eq!(fields(body), expected, "{body}");
        }
        let error = parse_json::<Order>(br#"{"items":[],"note":"\u0000"}"#).unwrap_err();
        assert_eq!(error.kind(), crate::error::ErrorKind::Invalid);
        assert!(error.fields()[0].message.contains("NUL"));
    }

    #[test]
    fn a_body_without_a_nul_escape_takes_the_fast_path() {
        assert!(!has_nul_escape(br#"{"name":"plain \u00e9 text","n":0}"#));
        assert!(!has_nul_escape(br#"{"name":"\\u0000"}"#));
        assert!(has_nul_escape(br#"{"name":"\u0000"}"#));
        assert!(has_nul_escape(br#"\u0000"#));
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
