//! Inventory items as the sandbox keeps them, and the edits a person makes in the UI.

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

/// An inventory item.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Item {
    /// NetSuite's internal id, assigned on create.
    pub internal_id: String,
    /// The item name/number (`itemid`), fieldsync's SKU.
    pub item_id: String,
    pub external_id: Option<String>,
    pub display_name: Option<String>,
    /// The Base Price row of the pricing sublist.
    #[serde(serialize_with = "serialize_price")]
    pub base_price: Option<Decimal>,
    /// Read-only through the API; only [`ItemEdit`] changes it, as a stock transaction would.
    pub quantity_available: i64,
    /// Store / Page Title.
    pub page_title: Option<String>,
    /// Meta Tag HTML, the markup NetSuite places in the web store page's head.
    pub meta_tag_html: Option<String>,
    pub last_modified: DateTime<Utc>,
}

impl Item {
    /// Returns the `content` of a `<meta name="description">` element in the Meta Tag HTML,
    /// unescaped, as the user event script reads it.
    pub fn meta_description(&self) -> Option<String> {
        self.meta_tag_html.as_deref().and_then(description_content)
    }
}

/// Writes the price as a JSON number with exactly its digits, or `null`.
fn serialize_price<S: serde::Serializer>(price: &Option<Decimal>, serializer: S) -> Result<S::Ok, S::Error> {
    match price {
        Some(amount) => crate::json_text::serialize_decimal_number(amount, serializer),
        None => serializer.serialize_none(),
    }
}

/// A change a person makes to an item in the NetSuite UI. `None` leaves a value as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemEdit {
    pub display_name: Option<String>,
    pub base_price: Option<Decimal>,
    pub quantity_available: Option<i64>,
    pub page_title: Option<String>,
    /// Written into Meta Tag HTML as a `<meta name="description">` element.
    pub meta_description: Option<String>,
}

impl ItemEdit {
    /// Applies the edit and returns whether a value changed.
    pub(crate) fn apply(&self, item: &mut Item) -> bool {
        let before = item.clone();
        if let Some(name) = &self.display_name {
            item.display_name = Some(name.clone());
        }
        if let Some(price) = self.base_price {
            item.base_price = Some(price);
        }
        if let Some(quantity) = self.quantity_available {
            item.quantity_available = quantity;
        }
        if let Some(title) = &self.page_title {
            item.page_title = Some(title.clone());
        }
        if let Some(description) = &self.meta_description {
            item.meta_tag_html = Some(description_tag(description));
        }
        *item != before
    }
}

/// Builds a `<meta name="description">` element with the text HTML-escaped.
pub(crate) fn description_tag(text: &str) -> String {
    let escaped = text
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;");
    format!(r#"<meta name="description" content="{escaped}">"#)
}

/// Reads the `content` attribute of the first `<meta name="description" content="…">` element.
/// Only that attribute order and double quotes are read, as fieldsync and the scripts write it.
pub(crate) fn description_content(html: &str) -> Option<String> {
    let start = html.find(r#"<meta name="description" content=""#)?;
    let rest = &html[start + r#"<meta name="description" content=""#.len()..];
    let end = rest.find('"')?;
    let content = rest[..end]
        .replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&");
    Some(content)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn description_round_trips_through_meta_html() {
        let text = r#"Mugs & "cups" <new>"#;
        assert_eq!(description_content(&description_tag(text)).as_deref(), Some(text));
        assert_eq!(description_content("<meta name=\"keywords\" content=\"a\">"), None);
    }
}
