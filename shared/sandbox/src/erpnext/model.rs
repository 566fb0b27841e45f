//! ERPNext items, their JSON form and partial updates.

use std::collections::BTreeMap;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use crate::json_text::{parse_decimal_lenient, serialize_decimal_number};

/// An Item document. Money is written to JSON as a number with exact digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// The document name from the naming series, such as `ITEM-0001`.
    pub name: String,
    /// The item code, which fieldsync uses as the SKU.
    pub item_code: String,
    pub item_name: String,
    #[serde(serialize_with = "serialize_decimal_number")]
    pub standard_rate: Decimal,
    pub custom_meta_title: Option<String>,
    pub custom_meta_description: Option<String>,
    /// The last change, as Frappe writes it: naive, with microseconds.
    #[serde(serialize_with = "serialize_modified")]
    pub modified: DateTime<Utc>,
    /// Incremented by every change; the `ETag` is this number in quotes.
    #[serde(skip)]
    pub version: u64,
}

impl Item {
    pub(crate) fn touch(&mut self, now: DateTime<Utc>) {
        self.version += 1;
        self.modified = now;
    }
}

/// Writes a time as Frappe does: `YYYY-MM-DD HH:MM:SS.ffffff` without an offset.
pub(crate) fn frappe_time(time: &DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S%.6f").to_string()
}

fn serialize_modified<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&frappe_time(time))
}

/// A partial update of an item. `None` leaves a value unchanged; `Some(None)` clears a custom
/// field.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemEdit {
    pub item_name: Option<String>,
    pub standard_rate: Option<Decimal>,
    pub custom_meta_title: Option<Option<String>>,
    pub custom_meta_description: Option<Option<String>>,
}

impl ItemEdit {
    /// Applies the edit and returns whether a value changed.
    pub fn apply(&self, item: &mut Item) -> bool {
        let before = item.clone();
        if let Some(name) = &self.item_name {
            item.item_name.clone_from(name);
        }
        if let Some(rate) = self.standard_rate {
            item.standard_rate = rate;
        }
        if let Some(title) = &self.custom_meta_title {
            item.custom_meta_title.clone_from(title);
        }
        if let Some(description) = &self.custom_meta_description {
            item.custom_meta_description.clone_from(description);
        }
        *item != before
    }

    /// Reads a request body. `allowed_extra` lists members accepted and left to the caller.
    pub(crate) fn parse(body: &[u8], allowed_extra: &[&str]) -> Result<ItemEdit, String> {
        let object: BTreeMap<String, Box<RawValue>> =
            serde_json::from_slice(body).map_err(|error| format!("expected a JSON object: {error}"))?;
        let mut edit = ItemEdit::default();
        for (member, raw) in &object {
            match member.as_str() {
                "item_name" => edit.item_name = Some(text(member, raw)?),
                "standard_rate" => {
                    let rate = parse_decimal_lenient(raw).map_err(|message| format!("{member}: {message}"))?;
                    if rate.is_sign_negative() {
                        return Err(format!("{member}: must not be negative"));
                    }
                    edit.standard_rate = Some(rate);
                }
                "custom_meta_title" => edit.custom_meta_title = Some(nullable_text(member, raw)?),
                "custom_meta_description" => edit.custom_meta_description = Some(nullable_text(member, raw)?),
                other if allowed_extra.contains(&other) => {}
                other => return Err(format!("unknown field {other:?} for Item")),
            }
        }
        Ok(edit)
    }
}

fn text(member: &str, raw: &RawValue) -> Result<String, String> {
    serde_json::from_str(raw.get()).map_err(|_| format!("{member}: expected a string"))
}

fn nullable_text(member: &str, raw: &RawValue) -> Result<Option<String>, String> {
    let value: Option<String> = serde_json::from_str(raw.get()).map_err(|_| format!("{member}: expected a string"))?;
    Ok(value.filter(|text| !text.is_empty()))
}

/// Reads the `item_code` of a create body.
pub(crate) fn item_code(body: &[u8]) -> Result<String, String> {
    let object: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(body).map_err(|error| format!("expected a JSON object: {error}"))?;
    let raw = object.get("item_code").ok_or("item_code is required")?;
    let code = text("item_code", raw)?;
    if code.trim().is_empty() {
        return Err("item_code is required".to_owned());
    }
    Ok(code)
}

/// Items by document name, and the naming series counter.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) items: BTreeMap<String, Item>,
    next_number: u32,
}

impl Store {
    /// Returns the document name of the item with `item_code`.
    pub(crate) fn name_of(&self, item_code: &str) -> Option<&str> {
        self.items
            .values()
            .find(|item| item.item_code == item_code)
            .map(|item| item.name.as_str())
    }

    /// Builds a new, not yet stored item with the next name of the series.
    pub(crate) fn new_item(&mut self, item_code: &str, now: DateTime<Utc>) -> Item {
        self.next_number += 1;
        Item {
            name: format!("ITEM-{:04}", self.next_number),
            item_code: item_code.to_owned(),
            item_name: item_code.to_owned(),
            standard_rate: Decimal::from_str("0").unwrap_or_default(),
            custom_meta_title: None,
            custom_meta_description: None,
            modified: now,
            version: 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_reads_rate_exactly_and_rejects_unknown() {
        let edit = ItemEdit::parse(br#"{"standard_rate": 19.90, "custom_meta_description": ""}"#, &[]).unwrap();
        assert_eq!(edit.standard_rate, Some(Decimal::from_str("19.90").unwrap()));
        assert_eq!(edit.custom_meta_description, Some(None));
        assert!(ItemEdit::parse(br#"{"colour": "red"}"#, &[])
            .unwrap_err()
            .contains("colour"));
        assert!(ItemEdit::parse(br#"{"standard_rate": "abc"}"#, &[]).is_err());
    }
}
