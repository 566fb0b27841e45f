//! GraphQL input objects as the sandbox reads them from bound arguments.
//!
//! Unknown input fields are rejected, as GraphQL rejects fields its input type does not declare.
//! Fields that Shopify declares but the sandbox does not model are accepted and ignored where a
//! connector might reasonably send them (`productOptions`, `optionValues`, `vendor`, …).

use std::collections::BTreeMap;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::de::{DeserializeOwned, IgnoredAny};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json_text::parse_decimal_lenient;

/// A variable or argument value that does not fit its input type; a top-level GraphQL error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub(crate) struct InvalidInput(pub(crate) String);

/// Reads an optional argument into its input type.
pub(crate) fn argument<T: DeserializeOwned>(
    arguments: &BTreeMap<String, Box<RawValue>>,
    name: &str,
) -> Result<Option<T>, InvalidInput> {
    match arguments.get(name) {
        None => Ok(None),
        Some(raw) if raw.get() == "null" => Ok(None),
        Some(raw) => serde_json::from_str(raw.get())
            .map(Some)
            .map_err(|error| InvalidInput(format!("argument '{name}' has an invalid value: {error}"))),
    }
}

/// Reads a required argument into its input type.
pub(crate) fn required_argument<T: DeserializeOwned>(
    arguments: &BTreeMap<String, Box<RawValue>>,
    name: &str,
) -> Result<T, InvalidInput> {
    argument(arguments, name)?.ok_or_else(|| InvalidInput(format!("argument '{name}' is required")))
}

/// Parses a `Money` input (a decimal string, or a number's literal text) at two decimal places,
/// rounding half away from zero.
pub(crate) fn money(raw: &RawValue) -> Result<Decimal, String> {
    let mut amount = parse_decimal_lenient(raw)?.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    amount.rescale(2);
    Ok(amount)
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ProductSetInput {
    pub(crate) id: Option<String>,
    pub(crate) title: Option<String>,
    pub(crate) description_html: Option<String>,
    pub(crate) handle: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) seo: Option<SeoInput>,
    pub(crate) metafields: Option<Vec<MetafieldInput>>,
    pub(crate) files: Option<Vec<FileSetInput>>,
    pub(crate) variants: Option<Vec<VariantSetInput>>,
    #[serde(rename = "productOptions")]
    _product_options: Option<IgnoredAny>,
    #[serde(rename = "vendor")]
    _vendor: Option<IgnoredAny>,
    #[serde(rename = "productType")]
    _product_type: Option<IgnoredAny>,
    #[serde(rename = "tags")]
    _tags: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ProductSetIdentifiers {
    pub(crate) id: Option<String>,
    pub(crate) handle: Option<String>,
    pub(crate) custom_id: Option<UniqueMetafieldValueInput>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct UniqueMetafieldValueInput {
    pub(crate) namespace: Option<String>,
    pub(crate) key: String,
    pub(crate) value: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ProductUpdateInput {
    pub(crate) id: Option<String>,
    pub(crate) title: Option<String>,
    pub(crate) description_html: Option<String>,
    pub(crate) handle: Option<String>,
    pub(crate) status: Option<String>,
    pub(crate) seo: Option<SeoInput>,
    pub(crate) metafields: Option<Vec<MetafieldInput>>,
    #[serde(rename = "vendor")]
    _vendor: Option<IgnoredAny>,
    #[serde(rename = "productType")]
    _product_type: Option<IgnoredAny>,
    #[serde(rename = "tags")]
    _tags: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SeoInput {
    pub(crate) title: Option<String>,
    pub(crate) description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MetafieldInput {
    #[serde(rename = "id")]
    _id: Option<IgnoredAny>,
    pub(crate) namespace: Option<String>,
    pub(crate) key: Option<String>,
    pub(crate) r#type: Option<String>,
    pub(crate) value: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct FileSetInput {
    pub(crate) original_source: String,
    #[serde(rename = "alt")]
    _alt: Option<IgnoredAny>,
    #[serde(rename = "contentType")]
    _content_type: Option<IgnoredAny>,
    #[serde(rename = "filename")]
    _filename: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct VariantSetInput {
    pub(crate) id: Option<String>,
    pub(crate) sku: Option<String>,
    pub(crate) price: Option<Box<RawValue>>,
    pub(crate) inventory_item: Option<InventoryItemInput>,
    pub(crate) inventory_quantities: Option<Vec<SetInventoryInput>>,
    #[serde(rename = "optionValues")]
    _option_values: Option<IgnoredAny>,
    #[serde(rename = "compareAtPrice")]
    _compare_at_price: Option<IgnoredAny>,
    #[serde(rename = "barcode")]
    _barcode: Option<IgnoredAny>,
    #[serde(rename = "taxable")]
    _taxable: Option<IgnoredAny>,
    #[serde(rename = "inventoryPolicy")]
    _inventory_policy: Option<IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct InventoryItemInput {
    pub(crate) sku: Option<String>,
    #[serde(rename = "tracked")]
    _tracked: Option<IgnoredAny>,
    #[serde(rename = "cost")]
    _cost: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct SetInventoryInput {
    pub(crate) location_id: String,
    pub(crate) name: String,
    pub(crate) quantity: i64,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct VariantsBulkInput {
    pub(crate) id: String,
    pub(crate) price: Option<Box<RawValue>>,
    pub(crate) inventory_item: Option<InventoryItemInput>,
    #[serde(rename = "compareAtPrice")]
    _compare_at_price: Option<IgnoredAny>,
    #[serde(rename = "barcode")]
    _barcode: Option<IgnoredAny>,
    #[serde(rename = "taxable")]
    _taxable: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct InventorySetQuantitiesInput {
    pub(crate) name: String,
    pub(crate) reason: String,
    #[serde(default)]
    pub(crate) ignore_compare_quantity: bool,
    pub(crate) reference_document_uri: Option<String>,
    pub(crate) quantities: Vec<InventoryQuantityInput>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct InventoryQuantityInput {
    pub(crate) inventory_item_id: String,
    pub(crate) location_id: String,
    pub(crate) quantity: i64,
    pub(crate) compare_quantity: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct MetafieldsSetInput {
    pub(crate) owner_id: String,
    pub(crate) namespace: Option<String>,
    pub(crate) key: String,
    pub(crate) r#type: Option<String>,
    pub(crate) value: String,
    #[serde(rename = "compareDigest")]
    _compare_digest: Option<IgnoredAny>,
}

/// The `webhookSubscription` argument of `webhookSubscriptionCreate` and `…Update`. API versions
/// before 2025-10 name the address `callbackUrl`; later ones also take `uri`.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct WebhookSubscriptionInput {
    pub(crate) callback_url: Option<String>,
    pub(crate) uri: Option<String>,
    pub(crate) format: Option<String>,
    /// Accepted and ignored: the sandbox's product payloads carry every metafield.
    #[serde(rename = "metafieldNamespaces")]
    _metafield_namespaces: Option<IgnoredAny>,
}

impl WebhookSubscriptionInput {
    /// Returns the address, from `uri` or `callbackUrl`.
    pub(crate) fn address(&self) -> Option<&str> {
        self.uri.as_deref().or(self.callback_url.as_deref())
    }
}
