//! The application's errors in GraphQL's words: the message, and under `extensions` the
//! same stable `code` a REST problem document carries (`not_found`, `insufficient_stock`,
//! `quota_exceeded`, `rate_limited`, …), with its per-field `errors`, its details (a
//! quota's `limit_name`, `limit`, `used`) and `retry_after_seconds` when retrying later
//! may succeed.
//!
//! Resolvers convert explicitly, through [`to_graphql`] (or [`super::context::Caller`],
//! which does it for them): `async-graphql` would turn any displayable error into a
//! message without a code.

use async_graphql::{ErrorExtensionValues, ErrorExtensions};

use crate::error::Error;

/// What resolvers return.
pub type GqlResult<T> = Result<T, async_graphql::Error>;

/// An application error as a GraphQL error, with its code in `extensions`.
pub fn to_graphql(error: Error) -> async_graphql::Error {
    error.log();
    let message = match error.fields() {
        [] => error.message().to_owned(),
        fields => {
            let each: Vec<String> = fields
                .iter()
                .map(|f| format!("`{}` {}", f.field, f.message))
                .collect();
            format!("{}: {}", error.message(), each.join("; "))
        }
    };
    async_graphql::Error::new(message).extend_with(|_, extensions| describe(&error, extensions))
}

/// A refusal made before any resolver runs (a query too deep, a budget spent), in the same
/// shape.
pub fn to_server_error(error: &Error) -> async_graphql::ServerError {
    let mut server = async_graphql::ServerError::new(error.message(), None);
    let mut extensions = ErrorExtensionValues::default();
    describe(error, &mut extensions);
    server.extensions = Some(extensions);
    server
}

fn describe(error: &Error, extensions: &mut ErrorExtensionValues) {
    extensions.set("code", error.code());
    if !error.fields().is_empty() {
        let fields = serde_json::to_value(error.fields()).unwrap_or_default();
        if let Ok(value) = async_graphql::Value::from_json(fields) {
            extensions.set("errors", value);
        }
    }
    for (name, value) in error.details() {
        if let Ok(value) = async_graphql::Value::from_json(value.clone()) {
            extensions.set(name, value);
        }
    }
    if let Some(after) = error.retry_after() {
        extensions.set("retry_after_seconds", after.as_secs().max(1));
    }
}

/// An id argument as the typed id it names. Not a UUID: `invalid_id` (it names nothing).
pub fn parse_id<T: std::str::FromStr>(id: &async_graphql::ID, argument: &str) -> GqlResult<T> {
    id.parse().map_err(|_| {
        to_graphql(Error::invalid(
            argument,
            "must be an id this API issued (a UUID)",
        ))
    })
}
