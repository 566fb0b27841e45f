//! Canonical product fields to and from BigCommerce v3 catalog products.
//!
//! `handle` is the product's `custom_url.url` without its slashes: BigCommerce stores the path
//! as `/red-mug/`, and the canonical handle is `red-mug`, as other storefronts name it. Writes
//! send it back as `/red-mug/`.

use std::collections::BTreeMap;

use fieldsync_core::ports::SystemError;
use fieldsync_core::{FieldName, FieldValue, OutboundWrite, SystemId, Wire};
use rust_decimal::Decimal;
use serde_json::value::RawValue;

use crate::http::rejected;
use crate::json::{decimal_number, string};

/// A JSON object body whose members keep their exact text (decimals are never `f64`).
pub(crate) type Body = BTreeMap<&'static str, Box<RawValue>>;

/// The product fields of one write, each present only if the write carries it.
#[derive(Debug, Default)]
pub(crate) struct WriteFields {
    pub(crate) name: Option<String>,
    pub(crate) price: Option<Decimal>,
    pub(crate) inventory: Option<i64>,
    pub(crate) meta_title: Option<String>,
    pub(crate) meta_description: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) handle: Option<String>,
    pub(crate) images: Option<Vec<String>>,
    pub(crate) published: Option<bool>,
}

impl WriteFields {
    /// Reads the write's fields. An unmapped field or a value of the wrong type rejects the whole
    /// write, because dropping it would let fieldsync believe it was written.
    pub(crate) fn from_write(system: &SystemId, write: &OutboundWrite) -> Result<Self, SystemError> {
        let mut fields = Self::default();
        for (name, value) in &write.fields {
            let mismatch = |expected: &str| {
                rejected(
                    system,
                    &write.record,
                    format!("field {name} must be {expected} for BigCommerce, not {value}"),
                )
            };
            match (name.as_str(), value) {
                ("name", FieldValue::Text(text)) => fields.name = Some(text.clone()),
                ("price", FieldValue::Money(amount)) => fields.price = Some(*amount),
                ("inventory", FieldValue::Quantity(units)) => fields.inventory = Some(*units),
                ("meta_title", FieldValue::Text(text)) => fields.meta_title = Some(text.clone()),
                ("meta_description", FieldValue::Text(text)) => fields.meta_description = Some(text.clone()),
                ("description", FieldValue::Text(text)) => fields.description = Some(text.clone()),
                ("handle", FieldValue::Text(text)) => fields.handle = Some(text.clone()),
                ("images", FieldValue::List(urls)) => fields.images = Some(urls.clone()),
                ("published", FieldValue::Bool(flag)) => fields.published = Some(*flag),
                ("name" | "meta_title" | "meta_description" | "description" | "handle", _) => {
                    return Err(mismatch("text"))
                }
                ("price", _) => return Err(mismatch("money")),
                ("inventory", _) => return Err(mismatch("a quantity")),
                ("images", _) => return Err(mismatch("a list")),
                ("published", _) => return Err(mismatch("a bool")),
                (other, _) => {
                    return Err(rejected(
                        system,
                        &write.record,
                        format!("field {other} is not mapped to BigCommerce products"),
                    ))
                }
            }
        }
        Ok(fields)
    }

    /// Adds the members a product PUT or POST takes from these fields. Price and inventory are
    /// not among them: price goes to the product or the variant, and inventory through the
    /// inventory adjustments API.
    pub(crate) fn product_members(&self, body: &mut Body) {
        if let Some(name) = &self.name {
            body.insert("name", string(name));
        }
        if let Some(title) = &self.meta_title {
            body.insert("page_title", string(title));
        }
        if let Some(description) = &self.meta_description {
            body.insert("meta_description", string(description));
        }
        if let Some(description) = &self.description {
            body.insert("description", string(description));
        }
        if let Some(handle) = &self.handle {
            body.insert("custom_url", custom_url(handle));
        }
        if let Some(published) = self.published {
            body.insert("is_visible", boolean(published));
        }
    }
}

/// Writes `custom_url` for a handle: `{"url":"/<handle>/","is_customized":true}`.
fn custom_url(handle: &str) -> Box<RawValue> {
    let url = format!("/{}/", handle.trim_matches('/'));
    raw(format!(r#"{{"url":{},"is_customized":true}}"#, string(&url).get()))
}

/// Writes the `images` member of a product create: one entry per URL, the first as thumbnail.
pub(crate) fn images(urls: &[String]) -> Box<RawValue> {
    let entries: Vec<String> = urls
        .iter()
        .enumerate()
        .map(|(index, url)| {
            format!(
                r#"{{"image_url":{},"is_thumbnail":{},"sort_order":{index}}}"#,
                string(url).get(),
                index == 0
            )
        })
        .collect();
    raw(format!("[{}]", entries.join(",")))
}

pub(crate) fn boolean(flag: bool) -> Box<RawValue> {
    raw(flag.to_string())
}

pub(crate) fn integer(number: i64) -> Box<RawValue> {
    raw(number.to_string())
}

pub(crate) fn money(amount: &Decimal) -> Box<RawValue> {
    decimal_number(amount)
}

/// Wraps JSON text built here from valid parts. Invalid text would become `null`, which the
/// API rejects, so a bug here cannot write a wrong value.
fn raw(text: String) -> Box<RawValue> {
    RawValue::from_string(text).unwrap_or_default()
}

/// Renders a body as a JSON object.
pub(crate) fn render(body: &Body) -> String {
    let members: Vec<String> = body
        .iter()
        .map(|(name, value)| format!("{}:{}", string(name).get(), value.get()))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// Reads the canonical fields of one variant of a product read with `include=variants,images`.
pub(crate) fn variant_fields(product: &Wire, variant: &Wire) -> BTreeMap<FieldName, Wire> {
    let mut fields = BTreeMap::new();
    let mut put = |name: &str, wire: Option<&Wire>| {
        if let Some(wire) = wire {
            fields.insert(FieldName::new(name), wire.clone());
        }
    };

    put("name", product.get("name"));
    // A variant without a price of its own (null) sells at the product's price.
    let price = variant
        .get("price")
        .filter(|price| !matches!(price, Wire::Null))
        .or_else(|| product.get("price"));
    put("price", price);
    put("inventory", variant.get("inventory_level"));
    put("meta_title", product.get("page_title"));
    put("meta_description", product.get("meta_description"));
    put("description", product.get("description"));
    put("published", product.get("is_visible"));

    let handle = product
        .pointer("/custom_url/url")
        .and_then(Wire::as_text)
        .map(|url| Wire::Text(url.trim_matches('/').to_owned()));
    put("handle", handle.as_ref());
    if let Some(Wire::List(images)) = product.get("images") {
        let urls = images
            .iter()
            .filter_map(|image| {
                image
                    .get("url_standard")
                    .or_else(|| image.get("image_url"))
                    .and_then(Wire::as_text)
            })
            .map(|url| Wire::Text(url.to_owned()))
            .collect();
        fields.insert(FieldName::new("images"), Wire::List(urls));
    }
    fields
}

#[cfg(test)]
mod tests {
    use fieldsync_core::{RecordKey, WriteKind};

    use super::*;

    #[test]
    fn variant_without_price_uses_product_price() {
        let product = Wire::parse(
            br#"{"name":"Mug","price":12.50,"page_title":"Mug","custom_url":{"url":"/mug/"},"is_visible":false,"images":[{"url_standard":"https://cdn.example/mug.jpg"}]}"#,
        )
        .unwrap();
        let variant = Wire::parse(br#"{"sku":"MUG","price":null,"inventory_level":4}"#).unwrap();
        let fields = variant_fields(&product, &variant);
        assert_eq!(fields[&FieldName::new("price")], Wire::Number("12.50".into()));
        assert_eq!(fields[&FieldName::new("handle")], Wire::Text("mug".into()));
        assert_eq!(fields[&FieldName::new("inventory")], Wire::Number("4".into()));
        assert_eq!(fields[&FieldName::new("published")], Wire::Bool(false));
        assert_eq!(
            fields[&FieldName::new("images")],
            Wire::List(vec![Wire::Text("https://cdn.example/mug.jpg".into())])
        );
    }

    #[test]
    fn product_body_keeps_money_digits_and_slashes_handle() {
        let write = OutboundWrite {
            id: 1,
            claimed_until: None,
            target: SystemId::new("storefront"),
            record: RecordKey::new("demo", "product", "MUG"),
            kind: WriteKind::Update,
            target_id: None,
            fields: BTreeMap::from([
                (FieldName::new("handle"), FieldValue::Text("red-mug".into())),
                (FieldName::new("published"), FieldValue::Bool(true)),
            ]),
            previous: BTreeMap::new(),
            changed_at: chrono::Utc::now(),
            parked_on: Vec::new(),
        };
        let fields = WriteFields::from_write(&SystemId::new("storefront"), &write).unwrap();
        let mut body = Body::new();
        fields.product_members(&mut body);
        body.insert("price", money(&"19.990".parse().unwrap()));
        assert_eq!(
            render(&body),
            r#"{"custom_url":{"url":"/red-mug/","is_customized":true},"is_visible":true,"price":19.990}"#
        );
    }
}
