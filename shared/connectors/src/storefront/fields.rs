//! Canonical product fields read from an outbound write, typed for the storefront.

use fieldsync_core::ports::SystemError;
use fieldsync_core::{FieldValue, OutboundWrite, SystemId};
use rust_decimal::Decimal;

use crate::http::rejected;
use crate::json::wire_text;

/// The product fields of one write, each present only if the write carries it.
#[derive(Debug, Default)]
pub(crate) struct ProductFields {
    pub(crate) title: Option<String>,
    pub(crate) description_html: Option<String>,
    pub(crate) handle: Option<String>,
    pub(crate) published: Option<bool>,
    pub(crate) meta_title: Option<String>,
    pub(crate) meta_description: Option<String>,
    pub(crate) images: Option<Vec<String>>,
    pub(crate) price: Option<Decimal>,
    pub(crate) inventory: Option<i64>,
    /// The `customer_prices` JSON as text, numbers written from their literals.
    pub(crate) customer_prices: Option<String>,
}

impl ProductFields {
    /// Reads the write's fields. An unmapped field or a value of the wrong type rejects the
    /// whole write, because dropping it would let fieldsync believe it was written.
    pub(crate) fn from_write(system: &SystemId, write: &OutboundWrite) -> Result<Self, SystemError> {
        let mut fields = Self::default();
        for (name, value) in &write.fields {
            let mismatch = |expected: &str| {
                rejected(
                    system,
                    &write.record,
                    format!("field {name} must be {expected} for the storefront, not {value}"),
                )
            };
            match (name.as_str(), value) {
                ("name", FieldValue::Text(text)) => fields.title = Some(text.clone()),
                ("description", FieldValue::Text(text)) => fields.description_html = Some(text.clone()),
                ("handle", FieldValue::Text(text)) => fields.handle = Some(text.clone()),
                ("published", FieldValue::Bool(flag)) => fields.published = Some(*flag),
                ("meta_title", FieldValue::Text(text)) => fields.meta_title = Some(text.clone()),
                ("meta_description", FieldValue::Text(text)) => fields.meta_description = Some(text.clone()),
                ("images", FieldValue::List(urls)) => fields.images = Some(urls.clone()),
                ("price", FieldValue::Money(amount)) => fields.price = Some(*amount),
                ("inventory", FieldValue::Quantity(units)) => fields.inventory = Some(*units),
                ("customer_prices", FieldValue::Json(wire)) => {
                    let text = wire_text(wire).ok_or_else(|| mismatch("valid JSON"))?;
                    fields.customer_prices = Some(text);
                }
                ("name" | "description" | "handle" | "meta_title" | "meta_description", _) => {
                    return Err(mismatch("text"))
                }
                ("published", _) => return Err(mismatch("a bool")),
                ("images", _) => return Err(mismatch("a list")),
                ("price", _) => return Err(mismatch("money")),
                ("inventory", _) => return Err(mismatch("a quantity")),
                ("customer_prices", _) => return Err(mismatch("JSON")),
                (other, _) => {
                    return Err(rejected(
                        system,
                        &write.record,
                        format!("field {other} is not mapped to the storefront"),
                    ))
                }
            }
        }
        Ok(fields)
    }

    /// Tells whether `productUpdate` has anything to write.
    pub(crate) fn has_product_update(&self) -> bool {
        self.title.is_some() || self.description_html.is_some() || self.handle.is_some() || self.published.is_some()
    }

    /// Tells whether an update has metafields to set: SEO and customer prices.
    pub(crate) fn has_metafields(&self) -> bool {
        self.meta_title.is_some() || self.meta_description.is_some() || self.customer_prices.is_some()
    }
}
