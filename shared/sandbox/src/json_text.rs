//! JSON text helpers: decimals written as exact JSON numbers, and Shopify's escaping.

use std::str::FromStr;

use rust_decimal::Decimal;
use serde::Serializer;
use serde_json::value::RawValue;

/// Rewrites serde_json output the way Shopify's webhook serializer writes strings: `<`, `>` and
/// `&` as `\u003c`, `\u003e`, `\u0026`, and `/` as `\/`. Non-ASCII characters stay raw UTF-8.
///
/// A byte-wise pass is enough because, in serde_json output, these four ASCII characters can only
/// occur inside strings and never inside an escape sequence or a multi-byte UTF-8 character.
pub(crate) fn shopify_escape(json: &[u8]) -> Vec<u8> {
    let mut escaped = Vec::with_capacity(json.len() + json.len() / 8);
    for &byte in json {
        match byte {
            b'<' => escaped.extend_from_slice(br"\u003c"),
            b'>' => escaped.extend_from_slice(br"\u003e"),
            b'&' => escaped.extend_from_slice(br"\u0026"),
            b'/' => escaped.extend_from_slice(br"\/"),
            other => escaped.push(other),
        }
    }
    escaped
}

/// Writes a decimal as a JSON number with exactly its digits, never through `f64`.
pub(crate) fn decimal_raw(amount: &Decimal) -> Box<RawValue> {
    let text = amount.normalize().to_string();
    // A Decimal's text is always a valid JSON number, so the `null` fallback is never taken.
    RawValue::from_string(text).unwrap_or_default()
}

/// Serializes a decimal as a JSON number with exactly its digits (for `serialize_with`).
pub(crate) fn serialize_decimal_number<S: Serializer>(amount: &Decimal, serializer: S) -> Result<S::Ok, S::Error> {
    serde::Serialize::serialize(&decimal_raw(amount), serializer)
}

/// Parses a JSON number's literal text as a decimal.
pub(crate) fn parse_decimal_number(raw: &RawValue) -> Result<Decimal, String> {
    let text = raw.get().trim();
    if !text.starts_with(|c: char| c == '-' || c.is_ascii_digit()) {
        return Err(format!("expected a JSON number, found {}", shorten(text)));
    }
    Decimal::from_str(text)
        .or_else(|_| Decimal::from_scientific(text))
        .map_err(|_| format!("{} is not a decimal number", shorten(text)))
}

/// Parses a decimal given either as a JSON number or as a JSON string of decimal text.
pub(crate) fn parse_decimal_lenient(raw: &RawValue) -> Result<Decimal, String> {
    let text = raw.get().trim();
    if text.starts_with('"') {
        let inner: String = serde_json::from_str(text).map_err(|error| error.to_string())?;
        return Decimal::from_str(inner.trim()).map_err(|_| format!("{} is not a decimal number", shorten(text)));
    }
    parse_decimal_number(raw)
}

fn shorten(text: &str) -> String {
    text.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_matches_shopify_forms() {
        let body = serde_json::to_vec(&serde_json::json!({"html": "<p>Tea & mugs</p>", "name": "Café"})).unwrap();
        let escaped = String::from_utf8(shopify_escape(&body)).unwrap();
        assert_eq!(
            escaped,
            r#"{"html":"\u003cp\u003eTea \u0026 mugs\u003c\/p\u003e","name":"Café"}"#
        );
        let back: serde_json::Value = serde_json::from_str(&escaped).unwrap();
        assert_eq!(back["html"], "<p>Tea & mugs</p>");
    }

    #[test]
    fn decimal_raw_keeps_digits() {
        let amount = Decimal::from_str("19.990").unwrap();
        assert_eq!(decimal_raw(&amount).get(), "19.99");
        assert_eq!(decimal_raw(&Decimal::from_str("0.1").unwrap()).get(), "0.1");
        assert_eq!(decimal_raw(&Decimal::from(20)).get(), "20");
    }

    #[test]
    fn parse_decimal_number_rejects_strings() {
        let raw = RawValue::from_string("\"1.5\"".to_owned()).unwrap();
        assert!(parse_decimal_number(&raw).is_err());
        assert_eq!(parse_decimal_lenient(&raw), Ok(Decimal::from_str("1.5").unwrap()));
        let raw = RawValue::from_string("2.675".to_owned()).unwrap();
        assert_eq!(parse_decimal_number(&raw), Ok(Decimal::from_str("2.675").unwrap()));
    }
}
