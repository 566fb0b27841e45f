//! Canonical product fields as NetSuite inventory item members in REST record bodies.
//!
//! - `name` → `displayName`.
//! - `meta_title` → `pageTitle`, the item's Store / Page Title.
//! - `meta_description` → `metaTagHtml`, the item's Meta Tag HTML, which NetSuite places in the
//!   web store page's head as written. fieldsync writes one `<meta name="description"
//!   content="…">` element with the text HTML-escaped, and the user event script reads the
//!   `content` of that element back into the outbox event's `metadescription`.
//! - `price` → one row of the `price` sublist (the pricing matrix) at the configured price
//!   level, normally Base Price.
//! - `inventory` is never written: NetSuite owns stock, which changes through transactions
//!   such as inventory adjustments, not through the item record.

use std::collections::BTreeMap;

use fieldsync_core::ports::SystemError;
use fieldsync_core::{FieldValue, OutboundWrite, SystemId};
use serde_json::value::RawValue;

use crate::http::rejected;
use crate::json::{decimal_number, string};

/// Builds the JSON body of an inventory item PATCH or upsert. `item_id` sets `itemId` (the
/// item name/number NetSuite shows), which a create needs and an update leaves alone.
pub(crate) fn item_body(
    system: &SystemId,
    write: &OutboundWrite,
    price_level_id: &str,
    item_id: Option<&str>,
) -> Result<String, SystemError> {
    let mut members: BTreeMap<&'static str, Box<RawValue>> = BTreeMap::new();
    if let Some(item_id) = item_id {
        members.insert("itemId", string(item_id));
    }
    for (name, value) in &write.fields {
        let (member, json) = match (name.as_str(), value) {
            ("name", FieldValue::Text(text)) => ("displayName", string(text)),
            ("meta_title", FieldValue::Text(text)) => ("pageTitle", string(text)),
            ("meta_description", FieldValue::Text(text)) => ("metaTagHtml", string(&description_tag(text))),
            ("price", FieldValue::Money(amount)) => ("price", price_sublist(price_level_id, &decimal_number(amount))),
            (other, _) => {
                return Err(rejected(
                    system,
                    &write.record,
                    format!("field {other} cannot be written to a NetSuite inventory item"),
                ))
            }
        };
        members.insert(member, json);
    }
    let rendered: Vec<String> = members
        .iter()
        .map(|(name, value)| format!("{}:{}", string(name).get(), value.get()))
        .collect();
    Ok(format!("{{{}}}", rendered.join(",")))
}

/// Builds the `price` sublist with one row: the amount at `price_level_id`.
///
/// NOTE: this writes one price level in the account's default currency and leaves quantity
/// pricing and other currencies out. An account with Multiple Currencies or Quantity Pricing
/// enabled needs `currencyPage` and `quantity` in the row, which fieldsync does not send.
fn price_sublist(price_level_id: &str, amount: &RawValue) -> Box<RawValue> {
    let row = format!(
        r#"{{"items":[{{"priceLevel":{{"id":{}}},"price":{}}}]}}"#,
        string(price_level_id).get(),
        amount.get()
    );
    // The parts are JSON values written by serde_json and rust_decimal, so the text is valid
    // JSON and the `null` fallback is never taken.
    RawValue::from_string(row).unwrap_or_default()
}

/// Builds the Meta Tag HTML element that carries a meta description.
pub(crate) fn description_tag(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for character in text.chars() {
        match character {
            '&' => escaped.push_str("&amp;"),
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '"' => escaped.push_str("&quot;"),
            other => escaped.push(other),
        }
    }
    format!(r#"<meta name="description" content="{escaped}">"#)
}

#[cfg(test)]
mod tests {
    use fieldsync_core::{FieldName, RecordKey, WriteKind};

    use super::*;

    fn write(fields: &[(&str, FieldValue)]) -> OutboundWrite {
        OutboundWrite {
            id: 1,
            claimed_until: None,
            target: SystemId::new("erp"),
            record: RecordKey::new("demo", "product", "MUG-RED"),
            kind: WriteKind::Update,
            target_id: None,
            fields: fields
                .iter()
                .map(|(name, value)| (FieldName::new(*name), value.clone()))
                .collect(),
            previous: Default::default(),
            changed_at: chrono::Utc::now(),
            parked_on: Vec::new(),
        }
    }

    #[test]
    fn price_sublist_keeps_exact_digits() {
        let write = write(&[
            ("price", FieldValue::Money("12.50".parse().unwrap())),
            ("name", FieldValue::Text("Red mug".into())),
        ]);
        let body = item_body(&SystemId::new("erp"), &write, "1", None).unwrap();
        assert_eq!(
            body,
            r#"{"displayName":"Red mug","price":{"items":[{"priceLevel":{"id":"1"},"price":12.50}]}}"#
        );
    }

    #[test]
    fn create_body_carries_item_id() {
        let write = write(&[("meta_title", FieldValue::Text("Red".into()))]);
        let body = item_body(&SystemId::new("erp"), &write, "1", Some("MUG-RED")).unwrap();
        assert_eq!(body, r#"{"itemId":"MUG-RED","pageTitle":"Red"}"#);
    }

    #[test]
    fn meta_description_is_an_escaped_meta_element() {
        let write = write(&[("meta_description", FieldValue::Text(r#"Mugs & "cups" <new>"#.into()))]);
        let body = item_body(&SystemId::new("erp"), &write, "1", None).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(
            parsed["metaTagHtml"],
            r#"<meta name="description" content="Mugs &amp; &quot;cups&quot; &lt;new&gt;">"#
        );
    }

    #[test]
    fn inventory_is_rejected() {
        let write = write(&[("inventory", FieldValue::Quantity(4))]);
        let error = item_body(&SystemId::new("erp"), &write, "1", None).unwrap_err();
        assert!(matches!(error, SystemError::Rejected { .. }), "{error:?}");
    }
}
