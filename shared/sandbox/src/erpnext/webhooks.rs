//! Frappe's webhook for Item: a body written as Python's `json.dumps` writes it, signed with
//! `X-Frappe-Webhook-Signature`.

use std::fmt::Write as _;

use chrono::Utc;
use rust_decimal::Decimal;

use super::model::{frappe_time, Item};
use crate::delivery::{hmac_sha256_base64, OutgoingEvent, SignHeaders};

/// Builds the webhook of an item's current state. The body has no event id: a retry sends the
/// same bytes.
pub(crate) fn item_event(item: &Item) -> OutgoingEvent {
    let members: [(&str, String); 7] = [
        ("name", python_string(&item.name)),
        ("item_code", python_string(&item.item_code)),
        ("standard_rate", python_float(&item.standard_rate)),
        ("modified", python_string(&frappe_time(&item.modified))),
        ("item_name", python_string(&item.item_name)),
        ("custom_meta_title", python_optional(item.custom_meta_title.as_deref())),
        (
            "custom_meta_description",
            python_optional(item.custom_meta_description.as_deref()),
        ),
    ];
    let body = members
        .iter()
        .map(|(name, value)| format!("{}: {value}", python_string(name)))
        .collect::<Vec<_>>()
        .join(", ");
    OutgoingEvent {
        topic: "Item".to_owned(),
        event_id: format!("{}@{}", item.name, frappe_time(&item.modified)),
        triggered_at: Utc::now(),
        body: format!("{{{body}}}").into_bytes(),
    }
}

/// Writes a string as `json.dumps` does with its default `ensure_ascii`: `"` and `\` escaped,
/// control characters as short escapes or `\u00XX`, and every non-ASCII character as `\uXXXX`
/// (a surrogate pair above U+FFFF).
fn python_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for character in text.chars() {
        match character {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0c}' => out.push_str("\\f"),
            ' '..='~' => out.push(character),
            other => {
                let mut units = [0u16; 2];
                for unit in other.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
        }
    }
    out.push('"');
    out
}

fn python_optional(text: Option<&str>) -> String {
    text.map_or_else(|| "null".to_owned(), python_string)
}

/// Writes money as Python writes the float Frappe holds: the shortest decimal text with at least
/// one fractional digit (`24.0`, `19.9`).
/// NOTE: Python switches to exponent notation at 1e16 and above; such amounts are written in
/// plain digits here.
fn python_float(amount: &Decimal) -> String {
    let text = amount.normalize().to_string();
    if text.contains('.') {
        text
    } else {
        format!("{text}.0")
    }
}

/// Signs each attempt with the Webhook's secret, as Frappe does when security is enabled.
pub(crate) struct FrappeSigner {
    pub(crate) secret: String,
}

impl SignHeaders for FrappeSigner {
    fn headers(&self, event: &OutgoingEvent, _attempt: u32) -> Vec<(String, String)> {
        let signature = hmac_sha256_base64(self.secret.as_bytes(), &[&event.body]);
        vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-Frappe-Webhook-Signature".to_owned(), signature),
        ]
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    #[test]
    fn body_matches_frappe_vector_layout() {
        let item = Item {
            name: "ITEM-0001".into(),
            item_code: "MUG-RED".into(),
            item_name: "Café mug".into(),
            standard_rate: "19.90".parse().unwrap(),
            custom_meta_title: None,
            custom_meta_description: None,
            modified: Utc.with_ymd_and_hms(2025, 5, 1, 10, 11, 12).unwrap() + chrono::Duration::microseconds(123_456),
            version: 1,
        };
        let body = String::from_utf8(item_event(&item).body).unwrap();
        let vector = include_str!("../../../../tests/fixtures/signatures/frappe-v4.body");
        assert!(
            body.starts_with(vector.trim_end_matches('}')),
            "{body}\n does not start like\n{vector}"
        );
        assert!(
            body.ends_with(r#""custom_meta_title": null, "custom_meta_description": null}"#),
            "{body}"
        );
    }

    #[test]
    fn python_string_escapes_like_json_dumps() {
        assert_eq!(python_string("a\"b\\c\n"), r#""a\"b\\c\n""#);
        assert_eq!(python_string("ă 😀 /"), r#""\u0103 \ud83d\ude00 /""#);
        assert_eq!(python_float(&"24.00".parse().unwrap()), "24.0");
        assert_eq!(python_float(&"12.50".parse().unwrap()), "12.5");
    }
}
