//! The catalog: what a tenant sells ([`products`]) and to whom ([`customers`])
//! (`catalog:read` to read, `catalog:write` to change).
//!
//! Orders use the catalog inside their own transactions, through the functions it offers
//! them — never through SQL of their own: `products::lock_for_order` locks the products of
//! an order in id order, `products::reserve` and `products::release` move stock for all
//! lines in one statement (the `products_stock_nonnegative` check is the backstop), and
//! `products::load` / `customers::load` fetch what `expand` embeds. A product's price and
//! currency are copied into the order when it is placed. So a product is never removed: a
//! delete only sets `deleted_at`, after which the product is gone from the catalog (not
//! found, absent from lists, its SKU free again) while the orders that bought it still
//! point at its row.
//!
//! Money is an integer amount of the currency's minor units plus an ISO 4217 code
//! ([`money::Currency`]); there are no floats anywhere between the request and the row.

pub mod customers;
pub mod money;
pub mod products;

pub use customers::{Customer, CustomerId};
pub use money::Currency;
pub use products::{Product, ProductId, Sku};

use crate::{error::Error, rule};

/// A product's or customer's display name ([`rule::NAME`]): 1-200 characters after
/// trimming, no control characters (they have no place in a name, and Postgres refuses NUL
/// in text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Name(String);

impl Name {
    pub fn parse(value: &str) -> Result<Self, Error> {
        let name = value.trim();
        if !rule::NAME.fits(name) || !rule::is_printable_text(name) {
            return Err(Error::invalid("name", rule::NAME.message));
        }
        Ok(Self(name.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_trimmed_bounded_and_printable() {
        assert_eq!(Name::parse("  Blue mug ").unwrap().as_str(), "Blue mug");
        assert_eq!(Name::parse(&"é".repeat(200)).unwrap().as_str().len(), 400);
        for bad in ["", "   ", "a\u{0}b", "tab\there", &"n".repeat(201)] {
            assert!(Name::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_name_schema_admits_only_names_parse_accepts() {
        rule::conformance::schema_admits_only_what_parse_accepts(
            &rule::NAME,
            &[
                "Blue mug",
                " padded ",
                "é",
                "\u{3000}x",
                "\u{feff}",
                " ",
                "\t",
                "a\u{85}b",
                "\u{a0}",
                &"n".repeat(200),
                &"n".repeat(201),
            ],
            |value| Name::parse(value).is_ok(),
        );
    }
}
