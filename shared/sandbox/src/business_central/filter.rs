//! The subset of OData v4 `$filter` the sandbox evaluates on items, customers and sales orders:
//! comparisons of one property with a literal, joined by `and`.
//!
//! Literals follow OData v4: strings in single quotes (a quote inside is doubled), and
//! date-times, GUIDs and numbers unquoted, such as
//! `number eq 'MUG-RED' and lastModifiedDateTime gt 2025-06-01T08:00:00Z`.

use std::cmp::Ordering;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

/// A comparison operator of `$filter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
}

impl Operator {
    fn parse(text: &str) -> Option<Self> {
        match text {
            "eq" => Some(Self::Eq),
            "ne" => Some(Self::Ne),
            "gt" => Some(Self::Gt),
            "ge" => Some(Self::Ge),
            "lt" => Some(Self::Lt),
            "le" => Some(Self::Le),
            _ => None,
        }
    }

    fn holds(self, ordering: Ordering) -> bool {
        match self {
            Self::Eq => ordering == Ordering::Equal,
            Self::Ne => ordering != Ordering::Equal,
            Self::Gt => ordering == Ordering::Greater,
            Self::Ge => ordering != Ordering::Less,
            Self::Lt => ordering == Ordering::Less,
            Self::Le => ordering != Ordering::Greater,
        }
    }
}

/// The literal type of a filterable property.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A string in single quotes, compared exactly.
    Text,
    /// An unquoted GUID, compared without regard to case.
    Guid,
    /// An unquoted number.
    Decimal,
    /// An unquoted date-time with an offset.
    DateTime,
}

/// A property value of an entity, as a comparison reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Text(String),
    Decimal(Decimal),
    DateTime(DateTime<Utc>),
}

/// An entity whose properties `$filter` can compare.
pub(crate) trait Filterable {
    /// The properties `$filter` accepts, with the type of their literals.
    const PROPERTIES: &'static [(&'static str, Kind)];

    /// Returns the value of one of [`Self::PROPERTIES`]. A GUID is returned in lower case.
    fn property(&self, name: &str) -> Option<Value>;
}

/// One comparison: a property, an operator and a typed literal.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Comparison {
    property: &'static str,
    operator: Operator,
    literal: Value,
}

/// A parsed `$filter`: every comparison must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Filter {
    comparisons: Vec<Comparison>,
}

/// A `$filter` the sandbox cannot read, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid $filter: {0}")]
pub(crate) struct FilterError(String);

impl Filter {
    /// Parses a `$filter` value, as decoded from the query string, against the properties of
    /// the entity `T`.
    pub(crate) fn parse<T: Filterable>(text: &str) -> Result<Self, FilterError> {
        let comparisons = split_and(text)?
            .into_iter()
            .map(parse_comparison::<T>)
            .collect::<Result<_, _>>()?;
        Ok(Self { comparisons })
    }

    /// Tells whether `entity` passes every comparison.
    pub(crate) fn matches<T: Filterable>(&self, entity: &T) -> bool {
        self.comparisons.iter().all(|comparison| {
            let ordering = match (entity.property(comparison.property), &comparison.literal) {
                (Some(Value::Text(value)), Value::Text(literal)) => value.as_str().cmp(literal.as_str()),
                (Some(Value::Decimal(value)), Value::Decimal(literal)) => value.cmp(literal),
                (Some(Value::DateTime(value)), Value::DateTime(literal)) => value.cmp(literal),
                _ => return false,
            };
            comparison.operator.holds(ordering)
        })
    }
}

/// Splits on the ` and ` keyword outside string literals. Brackets around the whole filter or a
/// comparison are removed; `or`, `not` and functions are not supported.
fn split_and(text: &str) -> Result<Vec<&str>, FilterError> {
    let mut parts = Vec::new();
    let mut in_string = false;
    let mut start = 0;
    let bytes = text.as_bytes();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'\'' => in_string = !in_string,
            b' ' if !in_string
                && text[index..]
                    .get(..5)
                    .is_some_and(|word| word.eq_ignore_ascii_case(" and ")) =>
            {
                parts.push(&text[start..index]);
                index += 5;
                start = index;
                continue;
            }
            _ => {}
        }
        index += 1;
    }
    if in_string {
        return Err(FilterError("a string literal is not closed".to_owned()));
    }
    parts.push(&text[start..]);
    Ok(parts.into_iter().map(strip_brackets).collect())
}

fn strip_brackets(text: &str) -> &str {
    let mut text = text.trim();
    while let Some(inner) = text.strip_prefix('(').and_then(|rest| rest.strip_suffix(')')) {
        text = inner.trim();
    }
    text
}

fn parse_comparison<T: Filterable>(text: &str) -> Result<Comparison, FilterError> {
    let mut words = text.splitn(3, ' ');
    let (Some(property), Some(operator), Some(literal)) = (words.next(), words.next(), words.next()) else {
        return Err(FilterError(format!(
            "expected '<property> <operator> <value>', found '{text}'"
        )));
    };
    let operator = Operator::parse(operator).ok_or_else(|| {
        FilterError(format!(
            "unsupported operator '{operator}'; use eq, ne, gt, ge, lt or le"
        ))
    })?;
    let literal = literal.trim();
    let Some((property, kind)) = T::PROPERTIES.iter().find(|(name, _)| *name == property) else {
        let names: Vec<&str> = T::PROPERTIES.iter().map(|(name, _)| *name).collect();
        return Err(FilterError(format!(
            "property '{property}' cannot be filtered; use {}",
            names.join(", ")
        )));
    };
    let literal = match kind {
        Kind::Text => Value::Text(string(literal)?),
        Kind::Guid => Value::Text(guid(literal)?),
        Kind::Decimal => Value::Decimal(decimal(literal)?),
        Kind::DateTime => Value::DateTime(date_time(literal)?),
    };
    Ok(Comparison {
        property,
        operator,
        literal,
    })
}

fn string(literal: &str) -> Result<String, FilterError> {
    let inner = literal
        .strip_prefix('\'')
        .and_then(|rest| rest.strip_suffix('\''))
        .ok_or_else(|| FilterError(format!("expected a string in single quotes, found {literal}")))?;
    let unescaped = inner.replace("''", "'");
    if inner.replace("''", "").contains('\'') {
        return Err(FilterError(format!(
            "unexpected text after the string literal in {literal}; only 'and' is supported"
        )));
    }
    Ok(unescaped)
}

fn guid(literal: &str) -> Result<String, FilterError> {
    let valid = literal.len() == 36
        && literal.char_indices().all(|(index, c)| {
            if matches!(index, 8 | 13 | 18 | 23) {
                c == '-'
            } else {
                c.is_ascii_hexdigit()
            }
        });
    if !valid {
        return Err(FilterError(format!("expected an unquoted GUID, found {literal}")));
    }
    Ok(literal.to_ascii_lowercase())
}

fn decimal(literal: &str) -> Result<Decimal, FilterError> {
    Decimal::from_str(literal).map_err(|_| FilterError(format!("expected a number, found {literal}")))
}

fn date_time(literal: &str) -> Result<DateTime<Utc>, FilterError> {
    DateTime::parse_from_rfc3339(literal)
        .map(|time| time.with_timezone(&Utc))
        .map_err(|_| {
            FilterError(format!(
                "expected an unquoted date-time such as 2025-06-01T08:00:00Z, found {literal}"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::business_central::model::Item;
    use chrono::TimeZone;

    fn item(number: &str, minute: u32) -> Item {
        Item {
            id: "0a1b2c3d-0000-4000-8000-000000000001".to_owned(),
            number: number.to_owned(),
            display_name: "Mug, red".to_owned(),
            display_name_2: String::new(),
            unit_price: Decimal::from_str("24.00").unwrap(),
            inventory: Decimal::from(3),
            last_modified: Utc.with_ymd_and_hms(2025, 6, 1, 8, minute, 0).unwrap(),
            version: 1,
        }
    }

    #[test]
    fn number_eq_matches_exactly() {
        let filter = Filter::parse::<Item>("number eq 'MUG-RED'").unwrap();
        assert!(filter.matches(&item("MUG-RED", 0)));
        assert!(!filter.matches(&item("MUG-BLUE", 0)));
    }

    #[test]
    fn doubled_quote_is_one_quote() {
        let filter = Filter::parse::<Item>("number eq 'O''BRIEN'").unwrap();
        assert!(filter.matches(&item("O'BRIEN", 0)));
    }

    #[test]
    fn datetime_gt_and_number() {
        let filter = Filter::parse::<Item>("lastModifiedDateTime gt 2025-06-01T08:00:00Z and (number ne 'X')").unwrap();
        assert!(!filter.matches(&item("A", 0)));
        assert!(filter.matches(&item("A", 1)));
        assert!(!filter.matches(&item("X", 1)));
    }

    #[test]
    fn and_inside_string_is_literal() {
        let filter = Filter::parse::<Item>("displayName eq 'Cup and saucer'").unwrap();
        assert!(!filter.matches(&item("A", 0)));
    }

    #[test]
    fn quoted_datetime_is_rejected() {
        assert!(Filter::parse::<Item>("lastModifiedDateTime gt '2025-06-01T08:00:00Z'").is_err());
    }

    #[test]
    fn unknown_property_is_rejected() {
        assert!(Filter::parse::<Item>("colour eq 'red'").is_err());
        assert!(Filter::parse::<Item>("number eq 'A' or number eq 'B'").is_err());
    }
}
