//! Rules for text inputs, each declared once.
//!
//! A [`TextRule`] is the length, the pattern and the message of one kind of input (a SKU, a
//! slug, a display name, an email address, a chosen password). The domain type that holds
//! such an input checks it in its `parse`, which every transport calls; the same rule is
//! its OpenAPI schema ([`TextRule::schema`]), which the HTTP edge checks request bodies
//! against before any handler runs. So the spec states what the server enforces, and a
//! client learns of every broken rule at once, in the rule's own words.
//!
//! Patterns are ECMA-262 regular expressions (JSON Schema's dialect), kept to the subset
//! every reader of the spec understands: classes, groups, `\s`, `\uXXXX` escapes; no
//! look-around and no Unicode property classes. Where `parse` is written as code rather than
//! as the pattern, a unit test beside it checks the two agree: whatever the schema admits,
//! `parse` accepts.

use std::ops::RangeInclusive;

use utoipa::openapi::{
    KnownFormat, ObjectBuilder, SchemaFormat, Type, extensions::ExtensionsBuilder, schema::Object,
};

/// The extension under which a schema carries the message a client gets when a value
/// breaks it (`x-message`), in place of a generic "must be at most 64 characters".
pub const MESSAGE_EXTENSION: &str = "x-message";

/// One kind of text input: its bounds in characters (Unicode scalar values, as JSON
/// Schema counts them), an optional pattern, and what to tell a client who breaks it.
#[derive(Debug, Clone)]
pub struct TextRule {
    pub chars: RangeInclusive<usize>,
    pub pattern: Option<&'static str>,
    /// Completes "`field`: …", e.g. "must be 1-64 letters, digits, dots, underscores or
    /// hyphens".
    pub message: &'static str,
    pub example: &'static str,
    /// A secret (a password): published with `format: password`, so forms mask it.
    pub secret: bool,
}

impl TextRule {
    /// Whether `value`'s length is within the bounds (the pattern is the caller's to check).
    pub fn fits(&self, value: &str) -> bool {
        self.chars.contains(&value.chars().count())
    }

    /// The rule as an OpenAPI (JSON Schema) string schema.
    pub fn schema(&self) -> Object {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(*self.chars.start()))
            .max_length(Some(*self.chars.end()))
            .pattern(self.pattern)
            .format(
                self.secret
                    .then_some(SchemaFormat::KnownFormat(KnownFormat::Password)),
            )
            .description(Some(capitalised(self.message)))
            .examples([self.example])
            .extensions(Some(
                ExtensionsBuilder::new()
                    .add(MESSAGE_EXTENSION, self.message)
                    .build(),
            ))
            .build()
    }
}

/// "must be 1-200 characters" → "Must be 1-200 characters.", for a description.
fn capitalised(message: &str) -> String {
    let mut chars = message.chars();
    let first = chars.next().map(|c| c.to_uppercase().to_string());
    format!("{}{}.", first.unwrap_or_default(), chars.as_str())
}

/// Text of printable characters, not all whitespace: no control characters (Unicode `Cc`,
/// U+0000-U+001F and U+007F-U+009F), and at least one character that is not whitespace.
/// [`is_printable_text`] is the same rule as code.
pub const PRINTABLE_TEXT: &str = r"^[^\u0000-\u001F\u007F-\u009F]*[^\s\u0000-\u001F\u007F-\u009F][^\u0000-\u001F\u007F-\u009F]*$";

/// A display name (a product's, a customer's, a tenant's): 1-200 characters once trimmed,
/// no control characters.
pub const NAME: TextRule = TextRule {
    chars: 1..=200,
    pattern: Some(PRINTABLE_TEXT),
    message: "must be 1-200 characters, not all whitespace, without control characters",
    example: "Blue mug, 330 ml",
    secret: false,
};

/// Whether `value` has no control characters (Unicode `Cc`, what `char::is_control` means:
/// U+0000-U+001F, U+007F-U+009F) and one character that is not whitespace:
/// [`PRINTABLE_TEXT`] as code.
pub fn is_printable_text(value: &str) -> bool {
    !value.chars().any(char::is_control) && value.chars().any(|c| !c.is_whitespace())
}

/// Publishes a type's [`TextRule`] as its OpenAPI schema, under a component name:
/// `text_schema!(Sku, "Sku", Sku::RULE)`. Request fields that take such text name the type
/// (`#[schema(value_type = Sku)]`) and so reference the one schema.
macro_rules! text_schema {
    ($type:ty, $name:literal, $rule:expr) => {
        impl utoipa::PartialSchema for $type {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                $rule.schema().into()
            }
        }

        impl utoipa::ToSchema for $type {
            fn name() -> std::borrow::Cow<'static, str> {
                std::borrow::Cow::Borrowed($name)
            }
        }
    };
}
pub(crate) use text_schema;

/// The schema of a display name ([`NAME`]), for request fields that take one.
pub struct DisplayName;
text_schema!(DisplayName, "DisplayName", NAME);

#[cfg(test)]
pub(crate) mod conformance {
    //! Checks that a rule's schema admits nothing its `parse` refuses.

    use super::TextRule;

    /// Strings the schema admits are accepted by `parse`: tried on `samples` (edge cases a
    /// person thought of) and on random strings of mostly relevant characters.
    pub fn schema_admits_only_what_parse_accepts(
        rule: &TextRule,
        samples: &[&str],
        parse: impl Fn(&str) -> bool,
    ) {
        let schema = serde_json::to_value(rule.schema()).unwrap();
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        let check = |value: &str| {
            let admitted = validator.is_valid(&serde_json::Value::from(value));
            assert!(
                !admitted || parse(value),
                "the schema admits {value:?} but parse refuses it"
            );
            admitted
        };
        let admitted = samples.iter().filter(|s| check(s)).count();
        assert!(
            admitted > 0,
            "no sample was admitted: the samples test nothing"
        );
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        let strings = "[a-zA-Z0-9 ._@+-]{0,8}[\\s\\PC\\p{Cc}]{0,3}[a-zA-Z0-9._-]{0,70}";
        runner
            .run(&proptest::string::string_regex(strings).unwrap(), |value| {
                check(&value);
                Ok(())
            })
            .unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rule_publishes_its_bounds_pattern_and_message() {
        let schema = serde_json::to_value(NAME.schema()).unwrap();
        assert_eq!(schema["type"], "string");
        assert_eq!(schema["minLength"], 1);
        assert_eq!(schema["maxLength"], 200);
        assert_eq!(schema["pattern"], NAME.pattern.unwrap());
        assert_eq!(schema[MESSAGE_EXTENSION], NAME.message);
        assert!(
            schema["description"]
                .as_str()
                .unwrap()
                .starts_with("Must be 1-200")
        );
    }
}
