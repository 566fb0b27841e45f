//! JSON values as received, with numbers kept as their exact source text.
//!
//! `serde_json::Value` stores numbers as `f64` or integers, so `19.99` in a webhook body would pass
//! through binary floating point before it became money. [`Wire`] reads the body through
//! `serde_json::value::RawValue` and keeps each number's digits, so a decimal parse reads exactly
//! what the sender wrote.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// The deepest nesting of arrays and objects [`Wire::parse`] accepts. Webhook payloads of the
/// platforms fieldsync reads nest fewer than ten levels.
pub const MAX_DEPTH: usize = 64;

/// Returns the deepest nesting of arrays and objects in a JSON text, ignoring brackets inside
/// strings. Malformed text gives some depth, and the parser then rejects it.
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest) = (0_usize, 0_usize);
    let (mut in_string, mut escaped) = (false, false);
    for byte in bytes {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                (false, _) => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// A JSON value whose numbers keep their literal text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wire {
    Null,
    Bool(bool),
    /// A JSON number exactly as written, such as `19.990` or `-3`.
    Number(String),
    Text(String),
    List(Vec<Wire>),
    Map(BTreeMap<String, Wire>),
}

impl Wire {
    /// Parses a JSON document without converting its numbers to binary floating point. A document
    /// nested deeper than [`MAX_DEPTH`] is rejected before parsing: each level is parsed again
    /// from its raw text by a recursive call, so unbounded nesting from an unauthenticated sender
    /// would cost quadratic time and overflow the stack.
    pub fn parse(bytes: &[u8]) -> Result<Wire, serde_json::Error> {
        let depth = nesting_depth(bytes);
        if depth > MAX_DEPTH {
            return Err(serde::de::Error::custom(format!(
                "JSON nested {depth} levels deep; at most {MAX_DEPTH} are accepted"
            )));
        }
        let raw: Box<RawValue> = serde_json::from_slice(bytes)?;
        Self::from_raw(&raw)
    }

    fn from_raw(raw: &RawValue) -> Result<Wire, serde_json::Error> {
        let text = raw.get();
        match text.as_bytes().first() {
            Some(b'{') => {
                let members: BTreeMap<String, Box<RawValue>> = serde_json::from_str(text)?;
                let mut map = BTreeMap::new();
                for (name, member) in members {
                    map.insert(name, Self::from_raw(&member)?);
                }
                Ok(Wire::Map(map))
            }
            Some(b'[') => {
                let items: Vec<Box<RawValue>> = serde_json::from_str(text)?;
                items
                    .iter()
                    .map(|item| Self::from_raw(item))
                    .collect::<Result<_, _>>()
                    .map(Wire::List)
            }
            Some(b'"') => Ok(Wire::Text(serde_json::from_str(text)?)),
            Some(b't' | b'f') => Ok(Wire::Bool(serde_json::from_str(text)?)),
            Some(b'n') => Ok(Wire::Null),
            _ => Ok(Wire::Number(text.to_owned())),
        }
    }

    /// Returns the member `name` of an object, or `None` for other values and missing members.
    pub fn get(&self, name: &str) -> Option<&Wire> {
        match self {
            Wire::Map(map) => map.get(name),
            _ => None,
        }
    }

    /// Follows a JSON pointer (RFC 6901), such as `/variants/0/price`.
    pub fn pointer(&self, pointer: &str) -> Option<&Wire> {
        if pointer.is_empty() {
            return Some(self);
        }
        let mut current = self;
        for token in pointer.strip_prefix('/')?.split('/') {
            let token = token.replace("~1", "/").replace("~0", "~");
            current = match current {
                Wire::Map(map) => map.get(&token)?,
                Wire::List(items) => items.get(token.parse::<usize>().ok()?)?,
                _ => return None,
            };
        }
        Some(current)
    }

    /// Returns the text of a string, or the literal of a number, as used for ids and keys.
    pub fn as_key(&self) -> Option<String> {
        match self {
            Wire::Text(text) if !text.is_empty() => Some(text.clone()),
            Wire::Number(number) => Some(number.clone()),
            _ => None,
        }
    }

    /// Returns the string value, or `None` for any other kind.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Wire::Text(text) => Some(text),
            _ => None,
        }
    }

    /// Returns the items of a list, or an empty slice for any other kind.
    pub fn items(&self) -> &[Wire] {
        match self {
            Wire::List(items) => items,
            _ => &[],
        }
    }

    /// Converts to a `serde_json::Value` for output, writing numbers from their exact text.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Wire::Null => serde_json::Value::Null,
            Wire::Bool(flag) => serde_json::Value::Bool(*flag),
            Wire::Number(text) => serde_json::from_str(text).unwrap_or(serde_json::Value::String(text.clone())),
            Wire::Text(text) => serde_json::Value::String(text.clone()),
            Wire::List(items) => serde_json::Value::Array(items.iter().map(Wire::to_json).collect()),
            Wire::Map(map) => serde_json::Value::Object(
                map.iter()
                    .map(|(name, value)| (name.clone(), value.to_json()))
                    .collect(),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_nesting_is_rejected_quickly() {
        let body = format!("{{\"value\":{}{}}}", "[".repeat(20_000), "]".repeat(20_000));
        let error = Wire::parse(body.as_bytes()).unwrap_err();
        assert!(error.to_string().contains("20001 levels deep"), "{error}");
    }

    #[test]
    fn nesting_at_the_limit_parses() {
        let body = format!("{}1{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert!(Wire::parse(body.as_bytes()).is_ok());
    }

    #[test]
    fn brackets_in_strings_do_not_count() {
        let body = format!(r#"{{"note":"{}\"{}"}}"#, "[".repeat(500), "{".repeat(500));
        assert!(Wire::parse(body.as_bytes()).is_ok());
        assert_eq!(nesting_depth(body.as_bytes()), 1);
    }

    #[test]
    fn parse_keeps_number_text() {
        let wire = Wire::parse(br#"{"price":19.990,"qty":-3,"big":12345678901234567890.123456789}"#).unwrap();
        assert_eq!(wire.get("price"), Some(&Wire::Number("19.990".into())));
        assert_eq!(wire.get("qty"), Some(&Wire::Number("-3".into())));
        assert_eq!(
            wire.get("big"),
            Some(&Wire::Number("12345678901234567890.123456789".into()))
        );
    }

    #[test]
    fn parse_decodes_escapes_and_keeps_unicode() {
        let wire = Wire::parse("{\"a\":\"\\u003cb\\u003e \\/ \u{2028} â\"}".as_bytes()).unwrap();
        assert_eq!(wire.get("a").and_then(Wire::as_text), Some("<b> / \u{2028} â"));
    }

    #[test]
    fn pointer_walks_maps_and_lists() {
        let wire = Wire::parse(br#"{"variants":[{"sku":"A"},{"sku":"B/1"}]}"#).unwrap();
        assert_eq!(wire.pointer("/variants/1/sku").and_then(Wire::as_text), Some("B/1"));
        assert_eq!(wire.pointer("/variants/2/sku"), None);
    }

    #[test]
    fn parse_rejects_malformed_json() {
        assert!(Wire::parse(b"{\"a\":").is_err());
        assert!(Wire::parse(b"").is_err());
    }
}
