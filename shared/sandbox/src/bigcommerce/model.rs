//! BigCommerce catalog products and variants, their v3 JSON form, and the edits a merchant or
//! an order makes.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::value::RawValue;

use crate::json_text::{decimal_raw, parse_decimal_number};

/// A catalog product with its variants. A product without options has exactly one variant, its
/// base variant, which carries the product's SKU; a product with options has no base variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: u64,
    pub name: String,
    pub sku: String,
    pub price: Decimal,
    pub description: String,
    /// The SEO title (`page_title`).
    pub page_title: String,
    pub meta_description: String,
    /// The storefront path, such as `/red-mug/`.
    pub custom_url: String,
    pub is_visible: bool,
    /// `none`, `product` or `variant`.
    pub inventory_tracking: String,
    /// Image URLs in sort order.
    pub images: Vec<String>,
    pub base_variant_id: Option<u64>,
    pub variants: Vec<Variant>,
    pub date_created: DateTime<Utc>,
    pub date_modified: DateTime<Utc>,
}

/// A purchasable variant of a product.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Variant {
    pub id: u64,
    pub sku: String,
    /// The variant's own price, or `None` when it sells at the product's price.
    pub price: Option<Decimal>,
    pub inventory_level: i64,
}

impl Product {
    /// Returns the product's stock: the sum of its variants' levels.
    pub fn inventory_level(&self) -> i64 {
        self.variants.iter().map(|variant| variant.inventory_level).sum()
    }

    /// Returns the variant with `sku`.
    pub fn variant(&self, sku: &str) -> Option<&Variant> {
        self.variants.iter().find(|variant| variant.sku == sku)
    }

    /// Returns the price a variant sells at.
    pub fn price_of(&self, variant: &Variant) -> Decimal {
        variant.price.unwrap_or(self.price)
    }
}

/// A product a merchant creates in the control panel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewProduct {
    pub name: String,
    pub sku: String,
    pub price: Decimal,
    /// The stock of the base variant; ignored when `variants` is not empty.
    pub inventory: i64,
    pub description: String,
    pub page_title: String,
    pub meta_description: String,
    /// The storefront path; `/<sku in lower case>/` when `None`.
    pub custom_url: Option<String>,
    pub is_visible: bool,
    pub images: Vec<String>,
    /// Option variants. Empty for a product without options.
    pub variants: Vec<NewVariant>,
}

/// An option variant of a [`NewProduct`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewVariant {
    pub sku: String,
    pub price: Option<Decimal>,
    pub inventory: i64,
}

/// A merchant's edit of one SKU in the control panel; `None` leaves a value unchanged.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductEdit {
    pub name: Option<String>,
    /// The product's price for a base variant's SKU, the variant's own price otherwise.
    pub price: Option<Decimal>,
    pub page_title: Option<String>,
    pub meta_description: Option<String>,
    pub description: Option<String>,
    pub custom_url: Option<String>,
    pub is_visible: Option<bool>,
    /// The SKU's inventory level.
    pub inventory: Option<i64>,
}

#[derive(Serialize)]
struct ProductJson<'a> {
    id: u64,
    name: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    sku: &'a str,
    description: &'a str,
    weight: u8,
    price: Box<RawValue>,
    inventory_level: i64,
    inventory_tracking: &'a str,
    is_visible: bool,
    page_title: &'a str,
    meta_description: &'a str,
    custom_url: CustomUrlJson<'a>,
    base_variant_id: Option<u64>,
    date_created: String,
    date_modified: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    variants: Option<Vec<VariantJson<'a>>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    images: Option<Vec<ImageJson<'a>>>,
}

#[derive(Serialize)]
struct CustomUrlJson<'a> {
    url: &'a str,
    is_customized: bool,
}

#[derive(Serialize)]
struct VariantJson<'a> {
    id: u64,
    product_id: u64,
    sku: &'a str,
    price: Option<Box<RawValue>>,
    calculated_price: Box<RawValue>,
    inventory_level: i64,
}

#[derive(Serialize)]
struct ImageJson<'a> {
    id: u64,
    product_id: u64,
    image_url: &'a str,
    url_standard: &'a str,
    is_thumbnail: bool,
    sort_order: usize,
}

/// Writes a time as BigCommerce does: RFC 3339 with whole seconds and a `+00:00` offset.
fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Writes a product as the v3 catalog returns it, with the sub-resources `include` names.
pub(crate) fn product_json(product: &Product, variants: bool, images: bool) -> Box<RawValue> {
    let json = ProductJson {
        id: product.id,
        name: &product.name,
        kind: "physical",
        sku: &product.sku,
        description: &product.description,
        weight: 0,
        price: decimal_raw(&product.price),
        inventory_level: product.inventory_level(),
        inventory_tracking: &product.inventory_tracking,
        is_visible: product.is_visible,
        page_title: &product.page_title,
        meta_description: &product.meta_description,
        custom_url: CustomUrlJson {
            url: &product.custom_url,
            is_customized: true,
        },
        base_variant_id: product.base_variant_id,
        date_created: time(product.date_created),
        date_modified: time(product.date_modified),
        variants: variants.then(|| {
            product
                .variants
                .iter()
                .map(|variant| VariantJson {
                    id: variant.id,
                    product_id: product.id,
                    sku: &variant.sku,
                    price: variant.price.as_ref().map(decimal_raw),
                    calculated_price: decimal_raw(&product.price_of(variant)),
                    inventory_level: variant.inventory_level,
                })
                .collect()
        }),
        images: images.then(|| {
            product
                .images
                .iter()
                .enumerate()
                .map(|(index, url)| ImageJson {
                    id: product.id * 1000 + index as u64,
                    product_id: product.id,
                    image_url: url,
                    url_standard: url,
                    is_thumbnail: index == 0,
                    sort_order: index,
                })
                .collect()
        }),
    };
    serde_json::value::to_raw_value(&json).unwrap_or_default()
}

/// Writes one variant as `catalog/products/{id}/variants/{id}` returns it.
pub(crate) fn variant_json(product: &Product, variant: &Variant) -> Box<RawValue> {
    let json = VariantJson {
        id: variant.id,
        product_id: product.id,
        sku: &variant.sku,
        price: variant.price.as_ref().map(decimal_raw),
        calculated_price: decimal_raw(&product.price_of(variant)),
        inventory_level: variant.inventory_level,
    };
    serde_json::value::to_raw_value(&json).unwrap_or_default()
}

/// A product body the API accepts on POST or PUT, each member present only if sent.
#[derive(Debug, Default)]
pub(crate) struct ProductWrite {
    pub(crate) name: Option<String>,
    pub(crate) kind: Option<String>,
    pub(crate) sku: Option<String>,
    pub(crate) price: Option<Decimal>,
    pub(crate) weight: Option<Decimal>,
    pub(crate) description: Option<String>,
    pub(crate) page_title: Option<String>,
    pub(crate) meta_description: Option<String>,
    pub(crate) custom_url: Option<String>,
    pub(crate) is_visible: Option<bool>,
    pub(crate) inventory_tracking: Option<String>,
    pub(crate) images: Option<Vec<String>>,
}

/// Parses a JSON object body into its members, keeping each member's exact text.
pub(crate) fn members(body: &[u8]) -> Result<BTreeMap<String, Box<RawValue>>, String> {
    serde_json::from_slice(body).map_err(|error| format!("the body is not a JSON object: {error}"))
}

fn text(name: &str, raw: &RawValue) -> Result<String, String> {
    serde_json::from_str(raw.get()).map_err(|_| format!("{name} must be a string"))
}

fn flag(name: &str, raw: &RawValue) -> Result<bool, String> {
    serde_json::from_str(raw.get()).map_err(|_| format!("{name} must be true or false"))
}

fn number(name: &str, raw: &RawValue) -> Result<Decimal, String> {
    parse_decimal_number(raw).map_err(|error| format!("{name}: {error}"))
}

impl ProductWrite {
    /// Reads a product body. Members the sandbox does not model are rejected, so that a
    /// connector sending them learns it here instead of from a real store.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, String> {
        let mut write = Self::default();
        for (name, raw) in members(body)? {
            match name.as_str() {
                "name" => write.name = Some(text(&name, &raw)?),
                "type" => write.kind = Some(text(&name, &raw)?),
                "sku" => write.sku = Some(text(&name, &raw)?),
                "price" => write.price = Some(number(&name, &raw)?),
                "weight" => write.weight = Some(number(&name, &raw)?),
                "description" => write.description = Some(text(&name, &raw)?),
                "page_title" => write.page_title = Some(text(&name, &raw)?),
                "meta_description" => write.meta_description = Some(text(&name, &raw)?),
                "is_visible" => write.is_visible = Some(flag(&name, &raw)?),
                "inventory_tracking" => write.inventory_tracking = Some(text(&name, &raw)?),
                "custom_url" => {
                    let url = members(raw.get().as_bytes())
                        .ok()
                        .and_then(|url| url.get("url").map(|url| text("custom_url.url", url)))
                        .ok_or_else(|| "custom_url must be an object with a url".to_owned())??;
                    write.custom_url = Some(url);
                }
                "images" => {
                    let images: Vec<BTreeMap<String, Box<RawValue>>> =
                        serde_json::from_str(raw.get()).map_err(|_| "images must be a list of objects".to_owned())?;
                    let urls = images
                        .iter()
                        .map(|image| {
                            image
                                .get("image_url")
                                .ok_or_else(|| "every image needs an image_url".to_owned())
                                .and_then(|url| text("image_url", url))
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    write.images = Some(urls);
                }
                other => return Err(format!("{other} is not a product member the sandbox accepts")),
            }
        }
        if let Some(kind) = &write.kind {
            if kind != "physical" && kind != "digital" {
                return Err(format!("type {kind:?} must be physical or digital"));
            }
        }
        if let Some(tracking) = &write.inventory_tracking {
            if !matches!(tracking.as_str(), "none" | "product" | "variant") {
                return Err(format!(
                    "inventory_tracking {tracking:?} must be none, product or variant"
                ));
            }
        }
        Ok(write)
    }

    /// Applies the members to `product` and returns whether a value changed.
    pub(crate) fn apply(&self, product: &mut Product) -> bool {
        let before = product.clone();
        if let Some(name) = &self.name {
            product.name.clone_from(name);
        }
        if let Some(price) = self.price {
            product.price = price;
        }
        if let Some(description) = &self.description {
            product.description.clone_from(description);
        }
        if let Some(title) = &self.page_title {
            product.page_title.clone_from(title);
        }
        if let Some(description) = &self.meta_description {
            product.meta_description.clone_from(description);
        }
        if let Some(url) = &self.custom_url {
            product.custom_url.clone_from(url);
        }
        if let Some(visible) = self.is_visible {
            product.is_visible = visible;
        }

        if let Some(tracking) = &self.inventory_tracking {
            product.inventory_tracking.clone_from(tracking);
        }
        if let Some(images) = &self.images {
            product.images.clone_from(images);
        }
        if let Some(sku) = &self.sku {
            if let Some(base) = product.base_variant_id {
                if let Some(variant) = product.variants.iter_mut().find(|variant| variant.id == base) {
                    variant.sku.clone_from(sku);
                }
            }
            product.sku.clone_from(sku);
        }
        *product != before
    }
}

/// One item of an inventory adjustment.
#[derive(Debug)]
pub(crate) struct AdjustmentItem {
    pub(crate) location_id: u64,
    pub(crate) variant_id: Option<u64>,
    pub(crate) sku: Option<String>,
    pub(crate) product_id: Option<u64>,
    pub(crate) quantity: i64,
}

/// Reads `{"reason":…,"items":[{"location_id","variant_id"|"sku"|"product_id","quantity"}]}`.
pub(crate) fn adjustment_items(body: &[u8]) -> Result<Vec<AdjustmentItem>, String> {
    let members = members(body)?;
    let items = members.get("items").ok_or_else(|| "items is required".to_owned())?;
    let items: Vec<BTreeMap<String, Box<RawValue>>> =
        serde_json::from_str(items.get()).map_err(|_| "items must be a list of objects".to_owned())?;
    if items.is_empty() || items.len() > 2000 {
        return Err("items must hold 1 to 2000 entries".to_owned());
    }
    items
        .iter()
        .map(|item| {
            let whole = |name: &str| -> Result<Option<i64>, String> {
                item.get(name)
                    .map(|raw| serde_json::from_str::<i64>(raw.get()).map_err(|_| format!("{name} must be an integer")))
                    .transpose()
            };
            let unsigned = |name: &str| -> Result<Option<u64>, String> {
                whole(name)?
                    .map(|value| u64::try_from(value).map_err(|_| format!("{name} must not be negative")))
                    .transpose()
            };
            let location_id = unsigned("location_id")?.ok_or_else(|| "location_id is required".to_owned())?;
            let quantity = whole("quantity")?.ok_or_else(|| "quantity is required".to_owned())?;
            let sku = item.get("sku").map(|raw| text("sku", raw)).transpose()?;
            let variant_id = unsigned("variant_id")?;
            let product_id = unsigned("product_id")?;
            if sku.is_none() && variant_id.is_none() && product_id.is_none() {
                return Err("one of sku, variant_id or product_id is required".to_owned());
            }
            Ok(AdjustmentItem {
                location_id,
                variant_id,
                sku,
                product_id,
                quantity,
            })
        })
        .collect()
}
