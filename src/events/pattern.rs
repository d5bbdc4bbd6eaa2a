//! Event type patterns, as webhook endpoints subscribe (`event_types`) and realtime
//! subscribers filter (`types`): an exact type (`order.placed`), every type under a prefix
//! (`order.*`), or every type (`*`). One rule and one matcher for both.

use crate::rule::{self, text_schema};

/// One pattern, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventTypePattern(String);

impl EventTypePattern {
    pub const RULE: rule::TextRule = rule::TextRule {
        chars: 1..=64,
        pattern: Some(r"^(\*|[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*(\.\*)?)$"),
        message: "must be an event type such as order.placed, a prefix such as order.*, or *",
        example: "order.*",
        secret: false,
    };

    /// The pattern, or the rule's message.
    pub fn parse(value: &str) -> Result<Self, String> {
        let exact = value.strip_suffix(".*").unwrap_or(value);
        let segment = |s: &str| {
            s.starts_with(|c: char| c.is_ascii_lowercase())
                && s.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        };
        let ok = Self::RULE.fits(value) && (value == "*" || exact.split('.').all(segment));
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(Self::RULE.message.to_owned())
        }
    }

    /// Whether an event of `event_type` matches: `*` every one, `order.*` those that
    /// start with `order.`, anything else exactly.
    pub fn matches(&self, event_type: &str) -> bool {
        matches(&self.0, event_type)
    }

    /// The stream type the pattern is confined to (`order.*` and `order.paid` → `order`);
    /// `None` for `*`.
    pub fn stream_type(&self) -> Option<&str> {
        self.0.split_once('.').map(|(stream, _)| stream)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

text_schema!(EventTypePattern, "EventTypePattern", EventTypePattern::RULE);

/// Whether `pattern` (a pattern as stored) matches `event_type`.
pub fn matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some("") => true,
        Some(prefix) => event_type.starts_with(prefix) && event_type.len() > prefix.len(),
        None => pattern == event_type,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_exact_types_prefixes_and_everything() {
        assert!(matches("order.placed", "order.placed"));
        assert!(!matches("order.placed", "order.paid"));
        assert!(matches("order.*", "order.placed"));
        assert!(matches("order.*", "order.line.added"));
        assert!(!matches("order.*", "orders.placed"));
        assert!(!matches("order.*", "order."));
        assert!(!matches("order.*", "order"));
        assert!(matches("*", "webhook.test"));
        assert!(matches("*", "product.updated"));
        assert!(!matches("order.paid", "order.paid2"));
    }

    #[test]
    fn patterns_must_have_a_known_shape() {
        for good in ["*", "order.*", "order.placed", "a", "a_b.c2.*"] {
            assert!(EventTypePattern::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "order.",
            ".placed",
            "Order.placed",
            "Order.*",
            "order.**",
            "order*",
            "ord*er",
            "*.placed",
            "order..placed",
            "order.pla ced",
            "a b",
            "order.*.x",
            &"x".repeat(65),
        ] {
            assert!(EventTypePattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_pattern_names_the_stream_type_it_is_confined_to() {
        let stream = |p: &str| {
            EventTypePattern::parse(p)
                .unwrap()
                .stream_type()
                .map(str::to_owned)
        };
        assert_eq!(stream("order.*").as_deref(), Some("order"));
        assert_eq!(stream("product.stock_changed").as_deref(), Some("product"));
        assert_eq!(stream("*"), None);
    }

    #[test]
    fn the_schema_admits_only_what_parse_accepts() {
        rule::conformance::schema_admits_only_what_parse_accepts(
            &EventTypePattern::RULE,
            &["*", "order.*", "order.placed", "x.y_z.*", "order.", "A"],
            |value| EventTypePattern::parse(value).is_ok(),
        );
    }
}
