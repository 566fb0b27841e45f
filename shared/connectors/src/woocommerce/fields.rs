//! Canonical product fields of an outbound write, as WooCommerce REST API v3 request members.

use fieldsync_core::formats::woocommerce::{YOAST_DESCRIPTION_KEY, YOAST_TITLE_KEY};
use fieldsync_core::ports::SystemError;
use fieldsync_core::{FieldValue, OutboundWrite, SystemId};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

use crate::http::rejected;

/// The product fields of one write, each present only if the write carries it.
#[derive(Debug, Default)]
pub(crate) struct ProductFields {
    name: Option<String>,
    description: Option<String>,
    handle: Option<String>,
    published: Option<bool>,
    meta_title: Option<String>,
    meta_description: Option<String>,
    images: Option<Vec<String>>,
    price: Option<Decimal>,
    inventory: Option<i64>,
}

impl ProductFields {
    /// Reads the write's fields. An unmapped field or a value of the wrong type rejects the
    /// whole write, because dropping it would let fieldsync believe it was written.
    pub(crate) fn from_write(system: &SystemId, write: &OutboundWrite) -> Result<Self, SystemError> {
        let mut fields = Self::default();
        for (name, value) in &write.fields {
            match (name.as_str(), value) {
                ("name", FieldValue::Text(text)) => fields.name = Some(text.clone()),
                ("description", FieldValue::Text(text)) => fields.description = Some(text.clone()),
                ("handle", FieldValue::Text(text)) => fields.handle = Some(text.clone()),
                ("published", FieldValue::Bool(flag)) => fields.published = Some(*flag),
                ("meta_title", FieldValue::Text(text)) => fields.meta_title = Some(text.clone()),
                ("meta_description", FieldValue::Text(text)) => fields.meta_description = Some(text.clone()),
                ("images", FieldValue::List(urls)) => fields.images = Some(urls.clone()),
                ("price", FieldValue::Money(amount)) => fields.price = Some(*amount),
                ("inventory", FieldValue::Quantity(units)) => fields.inventory = Some(*units),
                (
                    "name" | "description" | "handle" | "published" | "meta_title" | "meta_description" | "images"
                    | "price" | "inventory",
                    _,
                ) => {
                    return Err(rejected(
                        system,
                        &write.record,
                        format!("field {name} has the wrong type for WooCommerce: {value}"),
                    ))
                }
                (other, _) => {
                    return Err(rejected(
                        system,
                        &write.record,
                        format!("field {other} is not mapped to WooCommerce"),
                    ))
                }
            }
        }
        Ok(fields)
    }

    /// Builds the members a simple or variable product takes. `create` adds the default status
    /// `draft` when the write does not say the product is published.
    pub(crate) fn product_body(&self, price_scale: u32, create: bool) -> Map<String, Value> {
        let mut body = self.parent_body();
        self.put_stock(&mut body, price_scale);
        if let Some(description) = &self.description {
            body.insert("description".to_owned(), json!(description));
        }
        match self.published {
            Some(published) => {
                body.insert("status".to_owned(), json!(if published { "publish" } else { "draft" }));
            }
            None if create => {
                body.insert("status".to_owned(), json!("draft"));
            }
            None => {}
        }
        body
    }

    /// Builds the members of a variation: price, stock, description and status. A variation
    /// that is not published is `private`, WooCommerce's disabled variation.
    pub(crate) fn variation_body(&self, price_scale: u32) -> Map<String, Value> {
        let mut body = Map::new();
        self.put_stock(&mut body, price_scale);
        if let Some(description) = &self.description {
            body.insert("description".to_owned(), json!(description));
        }
        if let Some(published) = self.published {
            body.insert(
                "status".to_owned(),
                json!(if published { "publish" } else { "private" }),
            );
        }
        body
    }

    /// Builds the members a variation takes from its product: name, slug, images and the Yoast
    /// SEO meta data.
    pub(crate) fn parent_body(&self) -> Map<String, Value> {
        let mut body = Map::new();
        if let Some(name) = &self.name {
            body.insert("name".to_owned(), json!(name));
        }
        if let Some(handle) = &self.handle {
            body.insert("slug".to_owned(), json!(handle));
        }
        if let Some(images) = &self.images {
            let images: Vec<Value> = images.iter().map(|src| json!({ "src": src })).collect();
            body.insert("images".to_owned(), Value::Array(images));
        }
        let mut meta = Vec::new();
        if let Some(title) = &self.meta_title {
            meta.push(json!({"key": YOAST_TITLE_KEY, "value": title}));
        }
        if let Some(description) = &self.meta_description {
            meta.push(json!({"key": YOAST_DESCRIPTION_KEY, "value": description}));
        }
        if !meta.is_empty() {
            body.insert("meta_data".to_owned(), Value::Array(meta));
        }
        body
    }

    fn put_stock(&self, body: &mut Map<String, Value>, price_scale: u32) {
        if let Some(price) = self.price {
            body.insert("regular_price".to_owned(), json!(price_text(price, price_scale)));
        }
        if let Some(units) = self.inventory {
            body.insert("manage_stock".to_owned(), json!(true));
            body.insert("stock_quantity".to_owned(), json!(units));
        }
    }
}

/// Writes a price as WooCommerce takes it: a decimal string with the currency's digits, such as
/// `"19.90"`.
pub(crate) fn price_text(amount: Decimal, scale: u32) -> String {
    let mut amount = amount;
    amount.rescale(scale);
    amount.to_string()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::str::FromStr;

    use fieldsync_core::{FieldName, RecordKey, WriteKind};

    use super::*;

    fn write(fields: &[(&str, FieldValue)]) -> OutboundWrite {
        OutboundWrite {
            id: 1,
            claimed_until: None,
            target: SystemId::new("storefront"),
            record: RecordKey::new("demo", "product", "MUG-RED"),
            kind: WriteKind::Create,
            target_id: None,
            fields: fields
                .iter()
                .map(|(name, value)| (FieldName::new(*name), value.clone()))
                .collect::<BTreeMap<_, _>>(),
            previous: Default::default(),
            changed_at: chrono::Utc::now(),
            parked_on: Vec::new(),
        }
    }

    #[test]
    fn price_is_a_string_at_scale() {
        assert_eq!(price_text(Decimal::from_str("19.9").unwrap(), 2), "19.90");
        assert_eq!(price_text(Decimal::from(5), 2), "5.00");
        assert_eq!(price_text(Decimal::from_str("1000").unwrap(), 0), "1000");
    }

    #[test]
    fn create_body_defaults_to_draft() {
        let write = write(&[
            ("name", FieldValue::Text("Red mug".into())),
            ("price", FieldValue::Money(Decimal::from_str("19.90").unwrap())),
            ("inventory", FieldValue::Quantity(4)),
            ("meta_title", FieldValue::Text("Mug | Shop".into())),
        ]);
        let fields = ProductFields::from_write(&SystemId::new("storefront"), &write).unwrap();
        let body = Value::Object(fields.product_body(2, true));
        assert_eq!(body["status"], "draft");
        assert_eq!(body["regular_price"], "19.90");
        assert_eq!(body["manage_stock"], true);
        assert_eq!(body["stock_quantity"], 4);
        assert_eq!(body["meta_data"][0]["key"], YOAST_TITLE_KEY);
    }

    #[test]
    fn unmapped_field_rejects_write() {
        let write = write(&[("customer_prices", FieldValue::Text("x".into()))]);
        assert!(ProductFields::from_write(&SystemId::new("storefront"), &write).is_err());
        let write = self::write(&[("price", FieldValue::Text("1".into()))]);
        assert!(ProductFields::from_write(&SystemId::new("storefront"), &write).is_err());
    }
}
