//! The storefront's products, variants, images and metafields, and the in-memory store.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

use crate::documents::Documents;

/// The only inventory location of the sandbox shop.
pub const LOCATION_GID: &str = "gid://shopify/Location/1";

/// The metafield namespace and key that hold fieldsync's external id of a product.
pub const CUSTOM_ID_NAMESPACE: &str = "fieldsync";
pub const CUSTOM_ID_KEY: &str = "key";

/// Shopify keeps a product's SEO title and description as these `global` metafields.
pub const SEO_NAMESPACE: &str = "global";
pub const SEO_TITLE_KEY: &str = "title_tag";
pub const SEO_DESCRIPTION_KEY: &str = "description_tag";

const FIRST_ID: u64 = 7_000_000_001;

/// A product's publication status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProductStatus {
    Active,
    Draft,
    Archived,
}

impl ProductStatus {
    /// Parses the GraphQL enum value (`ACTIVE`, `DRAFT`, `ARCHIVED`).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "ACTIVE" => Some(Self::Active),
            "DRAFT" => Some(Self::Draft),
            "ARCHIVED" => Some(Self::Archived),
            _ => None,
        }
    }

    /// Returns the GraphQL enum value.
    pub fn as_graphql(self) -> &'static str {
        match self {
            Self::Active => "ACTIVE",
            Self::Draft => "DRAFT",
            Self::Archived => "ARCHIVED",
        }
    }

    /// Returns the lowercase form used in REST webhook payloads.
    pub fn as_rest(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::Draft => "draft",
            Self::Archived => "archived",
        }
    }
}

/// A product with its variants, images and metafields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Product {
    pub id: u64,
    pub title: String,
    /// The description as HTML (`descriptionHtml` in GraphQL, `body_html` in REST).
    pub description_html: String,
    pub handle: String,
    pub status: ProductStatus,
    pub images: Vec<Image>,
    pub metafields: Vec<Metafield>,
    pub variants: Vec<Variant>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Set while the product is active.
    pub published_at: Option<DateTime<Utc>>,
}

/// A product image, referenced by its source URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    pub id: u64,
    pub src: String,
}

/// A typed metafield value owned by a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Metafield {
    pub id: u64,
    pub namespace: String,
    pub key: String,
    /// The metafield type, such as `single_line_text_field` or `json`.
    pub r#type: String,
    pub value: String,
}

/// A product variant with its inventory at the sandbox's one location.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Variant {
    pub id: u64,
    pub sku: String,
    pub price: Decimal,
    pub inventory_item_id: u64,
    /// The `available` quantity at [`LOCATION_GID`].
    pub inventory_quantity: i64,
    pub updated_at: DateTime<Utc>,
}

impl Product {
    /// Returns the product's GraphQL global id.
    pub fn gid(&self) -> String {
        product_gid(self.id)
    }

    /// Returns the value of the metafield `namespace.key`.
    pub fn metafield(&self, namespace: &str, key: &str) -> Option<&str> {
        self.metafields
            .iter()
            .find(|field| field.namespace == namespace && field.key == key)
            .map(|field| field.value.as_str())
    }

    /// Returns the SEO title (`global.title_tag`).
    pub fn seo_title(&self) -> Option<&str> {
        self.metafield(SEO_NAMESPACE, SEO_TITLE_KEY)
    }

    /// Returns the SEO description (`global.description_tag`).
    pub fn seo_description(&self) -> Option<&str> {
        self.metafield(SEO_NAMESPACE, SEO_DESCRIPTION_KEY)
    }

    /// Returns the variant with `sku`.
    pub fn variant_by_sku(&self, sku: &str) -> Option<&Variant> {
        self.variants.iter().find(|variant| variant.sku == sku)
    }
}

pub(crate) fn product_gid(id: u64) -> String {
    format!("gid://shopify/Product/{id}")
}

pub(crate) fn variant_gid(id: u64) -> String {
    format!("gid://shopify/ProductVariant/{id}")
}

pub(crate) fn inventory_item_gid(id: u64) -> String {
    format!("gid://shopify/InventoryItem/{id}")
}

pub(crate) fn metafield_gid(id: u64) -> String {
    format!("gid://shopify/Metafield/{id}")
}

/// Returns the numeric id of a global id of `kind` (`gid://shopify/<kind>/<n>`).
pub(crate) fn parse_gid(gid: &str, kind: &str) -> Option<u64> {
    gid.strip_prefix("gid://shopify/")?
        .strip_prefix(kind)?
        .strip_prefix('/')?
        .parse()
        .ok()
}

/// Whether a change created a product, updated one, or changed the available quantity of an
/// inventory item, which selects the webhook topic. The id beside it is the product's, or the
/// inventory item's for `InventoryLevel`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeKind {
    Created,
    Updated,
    InventoryLevel,
}

/// All products of the sandbox shop.
#[derive(Debug)]
pub(crate) struct Store {
    products: BTreeMap<u64, Product>,
    /// Customers, quotes, orders, fulfillments and returns, by their numeric ids as text.
    pub(crate) documents: Documents,
    /// Webhook subscriptions made through the API. While there are none, every event goes to
    /// the sandbox's configured webhook URL.
    pub(crate) subscriptions: Vec<WebhookSubscription>,
    next_id: u64,
}

/// A webhook subscription: a topic, in GraphQL's form such as `PRODUCTS_UPDATE`, and the URL its
/// events are sent to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct WebhookSubscription {
    pub id: u64,
    pub topic: String,
    pub callback_url: String,
}

impl WebhookSubscription {
    /// Returns the subscription's global id.
    pub fn gid(&self) -> String {
        format!("gid://shopify/WebhookSubscription/{}", self.id)
    }
}

impl Store {
    pub(crate) fn new() -> Self {
        Self {
            products: BTreeMap::new(),
            documents: Documents::default(),
            subscriptions: Vec::new(),
            next_id: FIRST_ID,
        }
    }

    /// Returns the URLs an event of `topic` (REST form, such as `products/update`) goes to: the
    /// callback URLs subscribed to it, or `None` while no subscription exists at all.
    pub(crate) fn subscribers(&self, topic: &str) -> Option<Vec<String>> {
        if self.subscriptions.is_empty() {
            return None;
        }
        let graphql_topic = topic.to_ascii_uppercase().replace('/', "_");
        Some(
            self.subscriptions
                .iter()
                .filter(|subscription| subscription.topic == graphql_topic)
                .map(|subscription| subscription.callback_url.clone())
                .collect(),
        )
    }

    /// Allocates an id, unique across all kinds of objects like Shopify's.
    pub(crate) fn allocate_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    pub(crate) fn products(&self) -> impl Iterator<Item = &Product> {
        self.products.values()
    }

    pub(crate) fn product(&self, id: u64) -> Option<&Product> {
        self.products.get(&id)
    }

    pub(crate) fn product_mut(&mut self, id: u64) -> Option<&mut Product> {
        self.products.get_mut(&id)
    }

    pub(crate) fn insert(&mut self, product: Product) {
        self.products.insert(product.id, product);
    }

    /// Finds the product whose metafield `namespace.key` has `value` (a custom id lookup).
    pub(crate) fn find_by_metafield(&self, namespace: &str, key: &str, value: &str) -> Option<u64> {
        self.products()
            .find(|product| product.metafield(namespace, key) == Some(value))
            .map(|product| product.id)
    }

    pub(crate) fn find_by_handle(&self, handle: &str) -> Option<u64> {
        self.products()
            .find(|product| product.handle == handle)
            .map(|product| product.id)
    }

    /// Finds the first variant with `sku`. Shopify does not keep SKUs unique, nor does the sandbox.
    pub(crate) fn find_by_sku(&self, sku: &str) -> Option<(&Product, &Variant)> {
        self.products()
            .find_map(|product| product.variant_by_sku(sku).map(|variant| (product, variant)))
    }

    /// Finds the product and variant owning an inventory item.
    pub(crate) fn find_by_inventory_item(&self, inventory_item_id: u64) -> Option<(u64, u64)> {
        self.products().find_map(|product| {
            product
                .variants
                .iter()
                .find(|variant| variant.inventory_item_id == inventory_item_id)
                .map(|variant| (product.id, variant.id))
        })
    }

    /// Returns a handle derived from `requested` that no other product uses, suffixing `-1`, `-2`, …
    /// as Shopify does.
    pub(crate) fn unique_handle(&self, requested: &str, owner: Option<u64>) -> String {
        let base = handleize(requested);
        let is_taken = |handle: &str| {
            self.products()
                .any(|product| product.handle == handle && Some(product.id) != owner)
        };
        if !is_taken(&base) {
            return base;
        }
        (1..)
            .map(|suffix| format!("{base}-{suffix}"))
            .find(|candidate| !is_taken(candidate))
            .unwrap_or(base)
    }
}

/// Lowercases and replaces every run of characters other than letters and digits by `-`.
pub(crate) fn handleize(text: &str) -> String {
    let mut handle = String::new();
    for character in text.chars().flat_map(char::to_lowercase) {
        if character.is_alphanumeric() {
            handle.push(character);
        } else if !handle.ends_with('-') && !handle.is_empty() {
            handle.push('-');
        }
    }
    while handle.ends_with('-') {
        handle.pop();
    }
    if handle.is_empty() {
        handle.push_str("product");
    }
    handle
}

/// Sets the metafield `namespace.key`, or removes it when `value` is empty. Returns whether the
/// product changed.
pub(crate) fn set_metafield(
    product: &mut Product,
    namespace: &str,
    key: &str,
    field_type: &str,
    value: &str,
    new_id: impl FnOnce() -> u64,
) -> bool {
    let position = product
        .metafields
        .iter()
        .position(|field| field.namespace == namespace && field.key == key);
    match position {
        Some(index) if value.is_empty() => {
            product.metafields.remove(index);
            true
        }
        Some(index) => {
            let field = &mut product.metafields[index];
            let changed = field.value != value || field.r#type != field_type;
            field.value = value.to_owned();
            field.r#type = field_type.to_owned();
            changed
        }
        None if value.is_empty() => false,
        None => {
            product.metafields.push(Metafield {
                id: new_id(),
                namespace: namespace.to_owned(),
                key: key.to_owned(),
                r#type: field_type.to_owned(),
                value: value.to_owned(),
            });
            true
        }
    }
}

/// Stamps `updated_at` on a changed product and on each of its variants that changed, and keeps
/// `published_at` in step with the status.
pub(crate) fn stamp_changes(product: &mut Product, before: Option<&Product>, now: DateTime<Utc>) {
    product.updated_at = now;
    for variant in &mut product.variants {
        let previous = before.and_then(|before| before.variants.iter().find(|old| old.id == variant.id));
        if previous != Some(variant) {
            variant.updated_at = now;
        }
    }
    match (product.status, product.published_at) {
        (ProductStatus::Active, None) => product.published_at = Some(now),
        (ProductStatus::Active, Some(_)) => {}
        (_, _) => product.published_at = None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handleize_collapses_separators() {
        assert_eq!(handleize("Red Mug  (12 oz)"), "red-mug-12-oz");
        assert_eq!(handleize("Café Crème"), "café-crème");
        assert_eq!(handleize("!!"), "product");
    }

    #[test]
    fn parse_gid_checks_kind() {
        assert_eq!(parse_gid("gid://shopify/Product/12", "Product"), Some(12));
        assert_eq!(parse_gid("gid://shopify/ProductVariant/12", "Product"), None);
        assert_eq!(parse_gid("gid://shopify/Product/x", "Product"), None);
    }
}
