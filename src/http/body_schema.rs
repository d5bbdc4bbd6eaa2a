//! Request bodies checked against the OpenAPI document's own schemas.
//!
//! Every JSON body is checked against the schema its operation publishes (a JSON Schema
//! 2020-12 validator compiled once from the served document) before it is deserialised,
//! so the spec is what the server enforces — lengths, patterns, enums, ranges, required
//! fields, unknown fields — and a client learns of every broken rule at once: each one a
//! [`FieldError`] naming its field (`items[1].quantity`) in words a person can act on
//! ("must be an integer", "is required"), never a Rust type name, and never echoing the
//! value (it may be a password). A schema may carry its own message under
//! [`rule::MESSAGE_EXTENSION`], used for any rule of that schema a value breaks.

use std::{collections::HashMap, sync::OnceLock};

use jsonschema::{
    JsonType, ValidationError, Validator,
    error::{TypeKind, ValidationErrorKind},
};
use serde_json::{Value, json};

use crate::{
    error::{Error, FieldError},
    rule,
};

/// The request-body schemas of the served document, compiled once.
static BODY_SCHEMAS: OnceLock<BodySchemas> = OnceLock::new();

/// Compiles the request-body schemas of `spec` (the document the server serves) now, so
/// that a schema the validator cannot read stops start-up rather than a request.
pub fn prepare(spec: &utoipa::openapi::OpenApi) {
    BODY_SCHEMAS.get_or_init(|| compile_spec(spec));
}

fn compile_spec(spec: &utoipa::openapi::OpenApi) -> BodySchemas {
    BodySchemas::compile(&serde_json::to_value(spec).unwrap_or_default())
}

/// Checks `body` against the component schema `name` (the body type's schema name).
pub fn check(name: &str, body: &Value) -> Result<(), Error> {
    BODY_SCHEMAS
        .get_or_init(|| compile_spec(&super::openapi()))
        .check(name, body)
}

struct BodySchemas {
    /// The document's components, where a failing keyword's schema is looked up for its
    /// message.
    document: Value,
    /// A validator per request-body schema, by component name.
    validators: HashMap<String, Validator>,
}

impl BodySchemas {
    /// A validator for each component schema some operation takes as its JSON body.
    /// Panics on a schema the validator cannot compile: the document is the code's own.
    fn compile(spec: &Value) -> Self {
        let document = json!({ "components": { "schemas": spec["components"]["schemas"] } });
        let mut validators = HashMap::new();
        let operations = spec["paths"]
            .as_object()
            .into_iter()
            .flat_map(|paths| paths.values())
            .filter_map(Value::as_object)
            .flat_map(|item| item.values());
        for operation in operations {
            let reference =
                &operation["requestBody"]["content"]["application/json"]["schema"]["$ref"];
            let Some(name) = reference.as_str().and_then(|r| r.rsplit('/').next()) else {
                continue;
            };
            if validators.contains_key(name) {
                continue;
            }
            // Only the schemas this body reaches: a validator compiles what it is given.
            let reached = reachable(&spec["components"]["schemas"], name);
            let root = json!({
                "$ref": format!("#/components/schemas/{name}"),
                "components": {"schemas": reached},
            });
            let validator = jsonschema::options()
                .with_draft(jsonschema::Draft::Draft202012)
                .should_validate_formats(true)
                .build(&root)
                .unwrap_or_else(|error| panic!("the schema of {name} does not compile: {error}"));
            validators.insert(name.to_owned(), validator);
        }
        Self {
            document,
            validators,
        }
    }

    fn check(&self, name: &str, body: &Value) -> Result<(), Error> {
        let Some(validator) = self.validators.get(name) else {
            return Err(Error::internal(anyhow::anyhow!(
                "no request-body schema named {name} in the OpenAPI document"
            )));
        };
        if validator.is_valid(body) {
            return Ok(());
        }
        let mut fields = Vec::new();
        for error in validator.iter_errors(body) {
            self.describe(&error, body, &mut fields);
        }
        Err(Error::validation(one_story_per_field(fields)))
    }

    /// One failure as field errors: where it is, and what the rule it broke asks for.
    fn describe(&self, error: &ValidationError<'_>, body: &Value, out: &mut Vec<Failure>) {
        let mut push = |field: String, message: String, mistyped: bool| {
            out.push(Failure {
                error: FieldError::new(field, message),
                mistyped,
            });
        };
        let field = field_path(error.instance_path().as_str(), body);
        let own_message = || {
            let keyword = error.schema_path().as_str();
            let schema = keyword.rsplit_once('/').map_or("", |(parent, _)| parent);
            self.document
                .pointer(schema)
                .and_then(|s| s[rule::MESSAGE_EXTENSION].as_str())
                .map(str::to_owned)
        };
        let message = match error.kind() {
            ValidationErrorKind::Required { property } => {
                let name = property.as_str().unwrap_or_default();
                push(join(&field, name), "is required".to_owned(), false);
                return;
            }
            ValidationErrorKind::AdditionalProperties { unexpected }
            | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
                for name in unexpected {
                    push(
                        join(&field, name),
                        "is not a field of this request".to_owned(),
                        false,
                    );
                }
                return;
            }
            // `oneOf`/`anyOf` is how an optional reference is written (`null` or the
            // referenced schema): report what the non-null alternative says.
            ValidationErrorKind::OneOfNotValid { context }
            | ValidationErrorKind::AnyOf { context } => {
                let inner: Vec<&ValidationError<'_>> = context
                    .iter()
                    .filter(|errors| !only_not_null(errors))
                    .flatten()
                    .collect();
                if inner.is_empty() {
                    push(field, "has an invalid value".to_owned(), false);
                }
                for error in inner {
                    self.describe(error, body, out);
                }
                return;
            }
            ValidationErrorKind::Type { kind } => {
                push(field, must_be_of(kind), true);
                return;
            }
            ValidationErrorKind::MinLength { limit } => own_message()
                .unwrap_or_else(|| format!("must be at least {}", plural(*limit, "character"))),
            ValidationErrorKind::MaxLength { limit } => own_message()
                .unwrap_or_else(|| format!("must be at most {}", plural(*limit, "character"))),
            ValidationErrorKind::Pattern { pattern } => {
                own_message().unwrap_or_else(|| format!("must match the pattern {pattern}"))
            }
            ValidationErrorKind::Enum { options } => {
                own_message().unwrap_or_else(|| match options.as_array() {
                    Some(options) if options.len() <= 12 => format!(
                        "must be one of: {}",
                        options
                            .iter()
                            .map(|o| o.as_str().map_or_else(|| o.to_string(), str::to_owned))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    _ => "is not one of the allowed values".to_owned(),
                })
            }
            ValidationErrorKind::Minimum { limit } => {
                own_message().unwrap_or_else(|| format!("must be at least {limit}"))
            }
            ValidationErrorKind::Maximum { limit } => {
                own_message().unwrap_or_else(|| format!("must be at most {limit}"))
            }
            ValidationErrorKind::ExclusiveMinimum { limit } => {
                own_message().unwrap_or_else(|| format!("must be greater than {limit}"))
            }
            ValidationErrorKind::ExclusiveMaximum { limit } => {
                own_message().unwrap_or_else(|| format!("must be less than {limit}"))
            }
            ValidationErrorKind::MinItems { limit } => own_message()
                .unwrap_or_else(|| format!("must list at least {}", plural(*limit, "item"))),
            ValidationErrorKind::MaxItems { limit } => own_message()
                .unwrap_or_else(|| format!("must list at most {}", plural(*limit, "item"))),
            ValidationErrorKind::UniqueItems => "must not list an item twice".to_owned(),
            ValidationErrorKind::Format { format } => {
                own_message().unwrap_or_else(|| format_rule(format))
            }
            _ => own_message().unwrap_or_else(|| "has an invalid value".to_owned()),
        };
        push(field, message, false);
    }
}

/// One broken rule, and whether it is the value's type that is wrong.
struct Failure {
    error: FieldError,
    mistyped: bool,
}

/// Sorted by field, without repeats; where a value is of the wrong type, that is all that
/// is said of its field (a number is not "too long" and not "one of the allowed values").
fn one_story_per_field(failures: Vec<Failure>) -> Vec<FieldError> {
    let mistyped: Vec<String> = failures
        .iter()
        .filter(|f| f.mistyped)
        .map(|f| f.error.field.clone())
        .collect();
    let mut fields: Vec<FieldError> = failures
        .into_iter()
        .filter(|f| f.mistyped || !mistyped.contains(&f.error.field))
        .map(|f| f.error)
        .collect();
    fields.sort_by(|a, b| a.field.cmp(&b.field));
    fields.dedup();
    fields
}

/// The component schemas `name` reaches through `$ref`s, itself included.
fn reachable(schemas: &Value, name: &str) -> serde_json::Map<String, Value> {
    fn refs(value: &Value, out: &mut Vec<String>) {
        match value {
            Value::Object(members) => {
                if let Some(target) = members.get("$ref").and_then(Value::as_str)
                    && let Some(name) = target.strip_prefix("#/components/schemas/")
                {
                    out.push(name.to_owned());
                }
                members.values().for_each(|v| refs(v, out));
            }
            Value::Array(items) => items.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }
    let mut reached = serde_json::Map::new();
    let mut pending = vec![name.to_owned()];
    while let Some(next) = pending.pop() {
        if reached.contains_key(&next) {
            continue;
        }
        let schema = schemas[&next].clone();
        refs(&schema, &mut pending);
        reached.insert(next, schema);
    }
    reached
}

/// Whether a `oneOf` alternative failed only because the value is not `null`: the
/// alternative that makes a field optional, which says nothing about the value.
fn only_not_null(errors: &[ValidationError<'_>]) -> bool {
    errors.iter().all(|e| {
        matches!(
            e.kind(),
            ValidationErrorKind::Type {
                kind: TypeKind::Single(JsonType::Null)
            }
        )
    })
}

/// "must be an integer", "must be a string or null".
fn must_be_of(kind: &TypeKind) -> String {
    let nouns: Vec<&str> = match kind {
        TypeKind::Single(single) => vec![type_noun(*single)],
        TypeKind::Multiple(set) => set.iter().map(type_noun).collect(),
    };
    format!("must be {}", nouns.join(" or "))
}

fn type_noun(kind: JsonType) -> &'static str {
    match kind {
        JsonType::Null => "null",
        JsonType::Boolean => "a boolean",
        JsonType::Integer => "an integer",
        JsonType::Number => "a number",
        JsonType::String => "a string",
        JsonType::Array => "an array",
        JsonType::Object => "an object",
    }
}

fn format_rule(format: &str) -> String {
    match format {
        "uuid" => "must be a UUID".to_owned(),
        "date-time" => "must be an RFC 3339 date-time, such as 2027-01-01T00:00:00Z".to_owned(),
        "email" => "must be a valid email address".to_owned(),
        other => format!("must be a valid {other}"),
    }
}

fn plural(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// A JSON pointer into the body (`/items/1/quantity`) as a field path
/// (`items[1].quantity`): array indexes in brackets, member names joined by dots.
pub fn field_path(pointer: &str, body: &Value) -> String {
    let mut path = String::new();
    let mut at = Some(body);
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        match at {
            Some(Value::Array(items)) => {
                path.push_str(&format!("[{token}]"));
                at = token.parse::<usize>().ok().and_then(|i| items.get(i));
            }
            _ => {
                path = join(&path, &token);
                at = at.and_then(|v| v.get(&token));
            }
        }
    }
    path
}

fn join(path: &str, name: &str) -> String {
    if path.is_empty() {
        name.to_owned()
    } else {
        format!("{path}.{name}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointers_become_field_paths_with_indexes_in_brackets() {
        let body = json!({"items": [{"q": 1}, {"q": 2}], "a": {"0": {"b": 1}}});
        assert_eq!(field_path("", &body), "");
        assert_eq!(field_path("/items/1/q", &body), "items[1].q");
        assert_eq!(field_path("/a/0/b", &body), "a.0.b");
    }

    fn schemas() -> BodySchemas {
        let spec = json!({
            "paths": {"/x": {"post": {"requestBody": {"content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/Create"}}}}}}},
            "components": {"schemas": {
                "Create": {
                    "type": "object",
                    "required": ["sku", "quantity", "items"],
                    "additionalProperties": false,
                    "properties": {
                        "sku": {"$ref": "#/components/schemas/Sku"},
                        "quantity": {"type": "integer", "minimum": 1},
                        "when": {"type": ["string", "null"], "format": "date-time"},
                        "plan": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/Plan"}]},
                        "items": {"type": "array", "minItems": 1, "items": {"type": "string", "maxLength": 3}}
                    }
                },
                "Sku": {"type": "string", "maxLength": 4, "pattern": "^[A-Z]+$",
                        "x-message": "must be 1-4 capital letters"},
                "Plan": {"type": "string", "enum": ["free", "pro"]}
            }}
        });
        BodySchemas::compile(&spec)
    }

    fn failures(body: Value) -> Vec<(String, String)> {
        match schemas().check("Create", &body) {
            Ok(()) => Vec::new(),
            Err(error) => error
                .fields()
                .iter()
                .map(|f| (f.field.clone(), f.message.clone()))
                .collect(),
        }
    }

    #[test]
    fn every_broken_rule_is_reported_at_once_in_words() {
        let got = failures(json!({
            "sku": "abcdef", "quantity": "2", "when": "yesterday", "plan": "gold",
            "items": ["ok", "long", 3], "extra": true
        }));
        let expected = [
            ("extra", "is not a field of this request"),
            ("items[1]", "must be at most 3 characters"),
            ("items[2]", "must be a string"),
            ("plan", "must be one of: free, pro"),
            ("quantity", "must be an integer"),
            ("sku", "must be 1-4 capital letters"),
            (
                "when",
                "must be an RFC 3339 date-time, such as 2027-01-01T00:00:00Z",
            ),
        ];
        let expected: Vec<(String, String)> = expected
            .iter()
            .map(|(f, m)| ((*f).to_owned(), (*m).to_owned()))
            .collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn missing_fields_are_named_and_a_valid_body_passes() {
        assert_eq!(
            failures(json!({"items": []})),
            vec![
                ("items".to_owned(), "must list at least 1 item".to_owned()),
                ("quantity".to_owned(), "is required".to_owned()),
                ("sku".to_owned(), "is required".to_owned()),
            ]
        );
        assert_eq!(
            failures(json!({"sku": "AB", "quantity": 1, "items": ["a"], "plan": null})),
            vec![]
        );
    }

    #[test]
    fn a_message_never_repeats_the_value() {
        let got = failures(json!({"sku": "secret-value", "quantity": 0, "items": ["x"]}));
        assert!(got.iter().all(|(_, m)| !m.contains("secret")), "{got:?}");
    }
}
