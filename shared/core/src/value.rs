//! Typed field values and the field types that parse them from the wire.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::wire::Wire;

/// The declared type of a field, from the rules file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum FieldType {
    Text,
    /// A decimal amount compared and stored at `scale` fractional digits (2 for most currencies).
    Money {
        scale: u32,
    },
    /// A whole number of units, such as stock on hand.
    Quantity,
    Bool,
    /// An ordered list of strings, such as image URLs.
    List,
    /// Any JSON value, compared structurally.
    Json,
}

/// A typed field value. Money is a decimal, never a binary float.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "type", content = "value")]
pub enum FieldValue {
    Text(String),
    Money(#[serde(with = "rust_decimal::serde::str")] Decimal),
    Quantity(i64),
    Bool(bool),
    List(Vec<String>),
    Json(Wire),
}

/// A wire value that could not become a field value, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {expected} value {found}: {reason}")]
pub struct InvalidValue {
    pub expected: &'static str,
    pub found: String,
    pub reason: &'static str,
}

impl FieldType {
    /// Parses a wire value into a typed value. `Ok(None)` means the sender gave no value (JSON
    /// `null`, or an empty string for a number), which is not a change.
    pub fn parse(self, wire: &Wire) -> Result<Option<FieldValue>, InvalidValue> {
        if matches!(wire, Wire::Null) {
            return Ok(None);
        }
        match self {
            FieldType::Text => match wire {
                Wire::Text(text) => Ok(Some(FieldValue::Text(text.clone()))),
                Wire::Number(number) => Ok(Some(FieldValue::Text(number.clone()))),
                other => Err(invalid("text", other, "expected a string")),
            },
            FieldType::Money { scale } => parse_money(wire, scale),
            FieldType::Quantity => parse_quantity(wire),
            FieldType::Bool => match wire {
                Wire::Bool(flag) => Ok(Some(FieldValue::Bool(*flag))),
                Wire::Text(text) if text == "true" || text == "false" => Ok(Some(FieldValue::Bool(text == "true"))),
                other => Err(invalid("bool", other, "expected true or false")),
            },
            FieldType::List => match wire {
                Wire::List(items) => items
                    .iter()
                    .map(|item| {
                        item.as_key()
                            .ok_or_else(|| invalid("list", item, "list items must be strings"))
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|items| Some(FieldValue::List(items))),
                other => Err(invalid("list", other, "expected an array of strings")),
            },
            FieldType::Json => Ok(Some(FieldValue::Json(wire.clone()))),
        }
    }

    /// Brings an already typed value to this type's canonical form (money at its scale).
    pub fn canonical(self, value: FieldValue) -> FieldValue {
        match (self, value) {
            (FieldType::Money { scale }, FieldValue::Money(amount)) => FieldValue::Money(round_money(amount, scale)),
            (_, value) => value,
        }
    }
}

fn parse_money(wire: &Wire, scale: u32) -> Result<Option<FieldValue>, InvalidValue> {
    let text = match wire {
        Wire::Number(number) => number.as_str(),
        Wire::Text(text) if text.trim().is_empty() => return Ok(None),
        Wire::Text(text) => text.trim(),
        other => return Err(invalid("money", other, "expected a decimal number or string")),
    };
    let amount = Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| invalid("money", wire, "not a decimal number"))?;
    Ok(Some(FieldValue::Money(round_money(amount, scale))))
}

fn parse_quantity(wire: &Wire) -> Result<Option<FieldValue>, InvalidValue> {
    let text = match wire {
        Wire::Number(number) => number.as_str(),
        Wire::Text(text) if text.trim().is_empty() => return Ok(None),
        Wire::Text(text) => text.trim(),
        other => return Err(invalid("quantity", other, "expected a whole number")),
    };
    let amount = Decimal::from_str(text).map_err(|_| invalid("quantity", wire, "not a number"))?;
    if !amount.fract().is_zero() {
        return Err(invalid("quantity", wire, "not a whole number"));
    }
    i64::try_from(amount)
        .map(|units| Some(FieldValue::Quantity(units)))
        .map_err(|_| invalid("quantity", wire, "out of range"))
}

/// Checks that every member named in `members`, in any object at any depth of `wire`, is a
/// decimal, and rewrites each to its shortest decimal text so systems that write `17.5` and
/// `"17.50"` give equal values. An empty string or `null` member is left as it is.
pub fn check_decimal_members(wire: &Wire, members: &[String]) -> Result<Wire, InvalidValue> {
    match wire {
        Wire::List(items) => items
            .iter()
            .map(|item| check_decimal_members(item, members))
            .collect::<Result<_, _>>()
            .map(Wire::List),
        Wire::Map(map) => {
            let mut checked = std::collections::BTreeMap::new();
            for (name, value) in map {
                let value = if members.iter().any(|member| member == name) {
                    decimal_member(value)?
                } else {
                    check_decimal_members(value, members)?
                };
                checked.insert(name.clone(), value);
            }
            Ok(Wire::Map(checked))
        }
        other => Ok(other.clone()),
    }
}

fn decimal_member(value: &Wire) -> Result<Wire, InvalidValue> {
    let text = match value {
        Wire::Null => return Ok(Wire::Null),
        Wire::Text(text) if text.trim().is_empty() => return Ok(value.clone()),
        Wire::Number(text) | Wire::Text(text) => text.trim(),
        other => return Err(invalid("money", other, "expected a decimal number or string")),
    };
    let amount = Decimal::from_str(text).map_err(|_| invalid("money", value, "not a decimal number"))?;
    Ok(Wire::Text(amount.normalize().to_string()))
}

/// Rounds half away from zero to `scale` digits and keeps exactly that many, so `19.9` and
/// `19.900` become the same `19.90`.
fn round_money(amount: Decimal, scale: u32) -> Decimal {
    let mut rounded = amount.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(scale);
    rounded
}

fn invalid(expected: &'static str, found: &Wire, reason: &'static str) -> InvalidValue {
    // A number is shown with the sender's digits: through JSON output a long one would read as
    // `1e+29`.
    let mut found = match found {
        Wire::Number(text) => text.clone(),
        other => other.to_json().to_string(),
    };
    if found.len() > 64 {
        let cut = (0..=64).rev().find(|&index| found.is_char_boundary(index)).unwrap_or(0);
        found.truncate(cut);
        found.push('…');
    }
    InvalidValue {
        expected,
        found,
        reason,
    }
}

impl fmt::Display for FieldValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FieldValue::Text(text) => write!(f, "{text:?}"),
            FieldValue::Money(amount) => write!(f, "{amount}"),
            FieldValue::Quantity(units) => write!(f, "{units}"),
            FieldValue::Bool(flag) => write!(f, "{flag}"),
            FieldValue::List(items) => write!(f, "[{}]", items.join(", ")),
            FieldValue::Json(wire) => write!(f, "{}", wire.to_json()),
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn invalid_number_keeps_its_digits() {
        let digits = "123456789012345678901234567890.5";
        let error = super::FieldType::Money { scale: 2 }
            .parse(&super::Wire::Number(digits.to_owned()))
            .unwrap_err();
        assert_eq!(error.found, digits);
        assert_eq!(error.reason, "not a decimal number");
    }

    use super::*;

    fn money(text: &str) -> Decimal {
        Decimal::from_str(text).unwrap()
    }

    #[test]
    fn money_accepts_number_and_string() {
        let money2 = FieldType::Money { scale: 2 };
        assert_eq!(
            money2.parse(&Wire::Number("5".into())),
            Ok(Some(FieldValue::Money(money("5.00"))))
        );
        assert_eq!(
            money2.parse(&Wire::Text("4.50".into())),
            Ok(Some(FieldValue::Money(money("4.50"))))
        );
    }

    #[test]
    fn money_empty_string_is_absent() {
        assert_eq!(
            FieldType::Money { scale: 2 }.parse(&Wire::Text(String::new())),
            Ok(None)
        );
    }

    #[test]
    fn money_rejects_malformed_decimal() {
        let error = FieldType::Money { scale: 2 }
            .parse(&Wire::Text("1..23".into()))
            .unwrap_err();
        assert_eq!(error.reason, "not a decimal number");
        assert!(error.to_string().contains("1..23"));
    }

    #[test]
    fn money_compares_at_currency_scale() {
        let money2 = FieldType::Money { scale: 2 };
        let a = money2.parse(&Wire::Number("19.99".into())).unwrap();
        let b = money2.parse(&Wire::Text("19.990".into())).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.unwrap().to_string(), "19.99");
    }

    #[test]
    fn money_avoids_float_rounding_traps() {
        let money2 = FieldType::Money { scale: 2 };
        assert_eq!(
            money2.parse(&Wire::Number("2.675".into())),
            Ok(Some(FieldValue::Money(money("2.68"))))
        );
        let Some(FieldValue::Money(amount)) = money2.parse(&Wire::Number("19.99".into())).unwrap() else {
            panic!("expected money");
        };
        assert_eq!(amount * Decimal::from(100), money("1999"));
    }

    #[test]
    fn quantity_rejects_fractions() {
        assert_eq!(
            FieldType::Quantity.parse(&Wire::Number("12".into())),
            Ok(Some(FieldValue::Quantity(12)))
        );
        assert!(FieldType::Quantity.parse(&Wire::Number("1.5".into())).is_err());
    }

    #[test]
    fn value_round_trips_through_json() {
        let value = FieldValue::Money(money("19.90"));
        let json = serde_json::to_string(&value).unwrap();
        assert_eq!(json, r#"{"type":"money","value":"19.90"}"#);
        assert_eq!(serde_json::from_str::<FieldValue>(&json).unwrap(), value);
    }
}
