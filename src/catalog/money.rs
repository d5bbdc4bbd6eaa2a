//! Currencies. Amounts are `i64` counts of a currency's minor units (`price_cents`), so the
//! only thing to get right here is the code: an ISO 4217 currency that is in use and has
//! minor units. The list comes from the `iso_currency` crate, not from a table of our own.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sqlx::{
    Decode, Encode, Postgres, Type,
    encode::IsNull,
    error::BoxDynError,
    postgres::{PgArgumentBuffer, PgTypeInfo, PgValueRef},
};
use utoipa::{
    PartialSchema, ToSchema,
    openapi::{
        ObjectBuilder, RefOr, Type as SchemaType, extensions::ExtensionsBuilder, schema::Schema,
    },
};

use crate::{error::Error, rule};

/// An ISO 4217 currency code in upper case, e.g. `EUR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency(iso_currency::Currency);

const CURRENCY_MESSAGE: &str =
    "must be an active ISO 4217 currency code in upper case, such as EUR";

impl Currency {
    /// Accepts an active ISO 4217 code with minor units. Codes are case-sensitive, as the
    /// standard writes them: `usd` is refused rather than guessed at. Superseded codes
    /// (`HRK`) and units without minor units (`XAU`, `XXX`) cannot price a product.
    pub fn parse(value: &str) -> Result<Self, Error> {
        Self::from_code(value).ok_or_else(|| Error::invalid("currency", CURRENCY_MESSAGE))
    }

    fn from_code(code: &str) -> Option<Self> {
        let currency = iso_currency::Currency::from_code(code)?;
        let superseded = currency
            .flags()
            .iter()
            .any(|flag| matches!(flag, iso_currency::Flag::Superseded(_)));
        (currency.exponent().is_some() && !superseded).then_some(Self(currency))
    }

    /// The three-letter code.
    pub fn code(self) -> &'static str {
        self.0.code()
    }

    /// How many decimal places the minor unit is: 2 for EUR (cents), 0 for JPY.
    pub fn minor_unit_exponent(self) -> u16 {
        self.0.exponent().unwrap_or(0)
    }
}

/// Every code [`Currency::parse`] accepts, in order.
pub fn codes() -> Vec<&'static str> {
    use iso_currency::IntoEnumIterator;
    let mut codes: Vec<&str> = iso_currency::Currency::iter()
        .filter_map(|c| Currency::from_code(c.code()))
        .map(Currency::code)
        .collect();
    codes.sort_unstable();
    codes
}

/// The codes `parse` accepts, as an enum: the spec lists exactly what the server takes.
impl PartialSchema for Currency {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(SchemaType::String)
            .enum_values(Some(codes()))
            .description(Some(
                "An active ISO 4217 currency code with minor units, in upper case.",
            ))
            .examples(["EUR"])
            .extensions(Some(
                ExtensionsBuilder::new()
                    .add(rule::MESSAGE_EXTENSION, CURRENCY_MESSAGE)
                    .build(),
            ))
            .into()
    }
}

impl ToSchema for Currency {}

impl std::fmt::Display for Currency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code())
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Self::from_code(&code)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown currency {code:?}")))
    }
}

/// Stored as its code in a `text` column.
impl Type<Postgres> for Currency {
    fn type_info() -> PgTypeInfo {
        <&str as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <&str as Type<Postgres>>::compatible(ty)
    }
}

impl Encode<'_, Postgres> for Currency {
    fn encode_by_ref(&self, buf: &mut PgArgumentBuffer) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Postgres>>::encode(self.code(), buf)
    }
}

impl<'r> Decode<'r, Postgres> for Currency {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        let code = <&str as Decode<Postgres>>::decode(value)?;
        iso_currency::Currency::from_code(code)
            .map(Self)
            .ok_or_else(|| format!("unknown currency {code:?} in the database").into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn active_codes_with_minor_units_are_accepted() {
        for code in ["EUR", "USD", "JPY", "GBP", "CHF", "KWD"] {
            assert_eq!(Currency::parse(code).unwrap().code(), code);
        }
        assert_eq!(Currency::parse("JPY").unwrap().minor_unit_exponent(), 0);
        assert_eq!(Currency::parse("EUR").unwrap().minor_unit_exponent(), 2);
    }

    #[test]
    fn unknown_lowercase_superseded_and_unitless_codes_are_refused() {
        for bad in [
            "", "ABC", "usd", "Eur", "EURO", "EU", " EUR", "HRK", "XAU", "XXX",
        ] {
            assert!(Currency::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_published_codes_are_exactly_those_parse_accepts() {
        let codes = codes();
        assert!(codes.len() > 100, "{codes:?}");
        assert!(codes.iter().all(|c| Currency::parse(c).is_ok()));
        assert!(!codes.contains(&"HRK") && !codes.contains(&"XAU"));
        for letter in 'A'..='Z' {
            for second in 'A'..='Z' {
                for third in 'A'..='Z' {
                    let code = format!("{letter}{second}{third}");
                    assert_eq!(
                        Currency::parse(&code).is_ok(),
                        codes.contains(&code.as_str()),
                        "{code}"
                    );
                }
            }
        }
    }

    #[test]
    fn serialises_as_its_code() {
        let eur = Currency::parse("EUR").unwrap();
        assert_eq!(serde_json::to_value(eur).unwrap(), "EUR");
        assert_eq!(serde_json::from_str::<Currency>("\"EUR\"").unwrap(), eur);
        assert!(serde_json::from_str::<Currency>("\"ABC\"").is_err());
    }
}
