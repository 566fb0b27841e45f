//! WooCommerce products and variations as the sandbox stores them, their REST JSON, and the
//! checks WooCommerce applies to written values.

use std::str::FromStr;

use chrono::{DateTime, FixedOffset, Utc};
use rust_decimal::Decimal;
use serde_json::{json, Map, Value};

/// The Yoast SEO `meta_data` key of the SEO title.
pub const YOAST_TITLE_KEY: &str = "_yoast_wpseo_title";
/// The Yoast SEO `meta_data` key of the meta description.
pub const YOAST_DESCRIPTION_KEY: &str = "_yoast_wpseo_metadesc";

/// The product statuses the REST API accepts.
const STATUSES: &[&str] = &["draft", "pending", "private", "publish"];

/// A product's `type`. Variations are stored beside products, as WooCommerce stores them as
/// posts of their own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProductType {
    Simple,
    Variable,
    Variation,
}

impl ProductType {
    /// Returns the REST API name of the type.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Simple => "simple",
            Self::Variable => "variable",
            Self::Variation => "variation",
        }
    }
}

/// A product or variation. Prices are decimal strings, as WooCommerce stores and sends them;
/// an empty string means no price.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Product {
    pub id: u64,
    /// The variable product a variation belongs to.
    pub parent_id: Option<u64>,
    pub product_type: ProductType,
    pub sku: String,
    /// Empty for variations, which take their parent's name.
    pub name: String,
    pub slug: String,
    /// `draft`, `pending`, `private` or `publish`.
    pub status: String,
    pub regular_price: String,
    pub sale_price: String,
    pub manage_stock: bool,
    pub stock_quantity: Option<i64>,
    pub description: String,
    pub images: Vec<String>,
    pub meta_title: Option<String>,
    pub meta_description: Option<String>,
    /// The ids of a variable product's variations.
    pub variations: Vec<u64>,
    pub date_created: DateTime<Utc>,
    pub date_modified: DateTime<Utc>,
}

impl Product {
    /// Creates an empty product of `product_type`, published, without price or stock.
    pub(crate) fn new(id: u64, product_type: ProductType, now: DateTime<Utc>) -> Self {
        Self {
            id,
            parent_id: None,
            product_type,
            sku: String::new(),
            name: String::new(),
            slug: String::new(),
            status: "publish".to_owned(),
            regular_price: String::new(),
            sale_price: String::new(),
            manage_stock: false,
            stock_quantity: None,
            description: String::new(),
            images: Vec::new(),
            meta_title: None,
            meta_description: None,
            variations: Vec::new(),
            date_created: now,
            date_modified: now,
        }
    }

    /// Returns the active price: the sale price when set, else the regular price.
    pub fn price(&self) -> &str {
        if self.sale_price.is_empty() {
            &self.regular_price
        } else {
            &self.sale_price
        }
    }
}

/// A change a merchant makes in the WordPress admin. `None` leaves a value as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductEdit {
    pub name: Option<String>,
    /// A decimal string such as `"19.90"`, or `""` to remove the price.
    pub regular_price: Option<String>,
    pub slug: Option<String>,
    pub status: Option<String>,
    /// Sets `manage_stock` to true and the quantity.
    pub stock_quantity: Option<i64>,
    pub description: Option<String>,
    pub meta_title: Option<String>,
    pub meta_description: Option<String>,
}

/// A value the REST API rejects, with WooCommerce's error code and HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

impl ApiError {
    pub(crate) fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    /// Builds the WordPress REST error for an invalid request parameter.
    pub(crate) fn invalid_param(name: &str, reason: &str) -> Self {
        Self::new(
            400,
            "rest_invalid_param",
            format!("Invalid parameter(s): {name} ({reason})"),
        )
    }

    /// Returns the error body, `{"code","message","data":{"status"}}`.
    pub(crate) fn to_json(&self) -> Value {
        json!({"code": self.code, "message": self.message, "data": {"status": self.status}})
    }
}

/// Checks a price string: empty, or a non-negative decimal.
pub(crate) fn check_price(name: &str, text: &str) -> Result<String, ApiError> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(String::new());
    }
    match Decimal::from_str(text) {
        Ok(amount) if !amount.is_sign_negative() => Ok(text.to_owned()),
        _ => Err(ApiError::invalid_param(name, "not a decimal amount")),
    }
}

/// Checks a product status.
pub(crate) fn check_status(status: &str) -> Result<String, ApiError> {
    if STATUSES.contains(&status) {
        Ok(status.to_owned())
    } else {
        Err(ApiError::invalid_param(
            "status",
            "status is not one of draft, pending, private and publish",
        ))
    }
}

/// Derives a slug from a name the way WordPress does for plain ASCII: lower case, words joined
/// by hyphens.
pub(crate) fn slugify(name: &str) -> String {
    let mut slug = String::new();
    for character in name.chars() {
        if character.is_ascii_alphanumeric() {
            slug.push(character.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

impl ProductEdit {
    /// Applies the edit, checking values as the admin screens do, and returns whether anything
    /// changed.
    pub(crate) fn apply(&self, product: &mut Product) -> Result<bool, ApiError> {
        let before = product.clone();

        let variation = product.product_type == ProductType::Variation;
        if variation
            && (self.name.is_some()
                || self.slug.is_some()
                || self.meta_title.is_some()
                || self.meta_description.is_some())
        {
            return Err(ApiError::invalid_param(
                "name",
                "a variation takes name, slug and SEO fields from its product",
            ));
        }

        if let Some(name) = &self.name {
            product.name.clone_from(name);
        }
        if let Some(price) = &self.regular_price {
            product.regular_price = check_price("regular_price", price)?;
        }
        if let Some(slug) = &self.slug {
            product.slug = slugify(slug);
        }
        if let Some(status) = &self.status {
            product.status = check_status(status)?;
        }
        if let Some(quantity) = self.stock_quantity {
            product.manage_stock = true;
            product.stock_quantity = Some(quantity);
        }
        if let Some(description) = &self.description {
            product.description.clone_from(description);
        }

        if let Some(title) = &self.meta_title {
            product.meta_title = Some(title.clone());
        }
        if let Some(description) = &self.meta_description {
            product.meta_description = Some(description.clone());
        }
        Ok(*product != before)
    }
}

/// Formats a time as WooCommerce does: ISO 8601 to the second, without an offset.
fn naive_time(time: DateTime<Utc>, offset: FixedOffset) -> String {
    time.with_timezone(&offset).format("%Y-%m-%dT%H:%M:%S").to_string()
}

/// Formats a time in UTC, as the `*_gmt` members carry it.
fn gmt_time(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%dT%H:%M:%S").to_string()
}

fn stock_status(product: &Product) -> &'static str {
    match (product.manage_stock, product.stock_quantity) {
        (true, Some(quantity)) if quantity <= 0 => "outofstock",
        _ => "instock",
    }
}

fn meta_data(product: &Product) -> Vec<Value> {
    let mut entries = Vec::new();
    if let Some(title) = &product.meta_title {
        entries.push(json!({"id": product.id * 10 + 1, "key": YOAST_TITLE_KEY, "value": title}));
    }
    if let Some(description) = &product.meta_description {
        entries.push(json!({"id": product.id * 10 + 2, "key": YOAST_DESCRIPTION_KEY, "value": description}));
    }
    entries
}

/// Builds a product's REST JSON. `date_modified` is in the site's time zone and
/// `date_modified_gmt` in UTC, both without an offset, as WooCommerce writes them.
pub(crate) fn product_json(product: &Product, site: &str, offset: FixedOffset) -> Value {
    let images: Vec<Value> = product
        .images
        .iter()
        .enumerate()
        .map(|(index, src)| json!({"id": product.id * 100 + index as u64 + 1, "src": src, "name": "", "alt": ""}))
        .collect();

    let mut object = Map::new();
    let mut set = |name: &str, value: Value| {
        object.insert(name.to_owned(), value);
    };
    set("id", json!(product.id));
    if product.product_type != ProductType::Variation {
        set("name", json!(product.name));
        set("slug", json!(product.slug));
        set("type", json!(product.product_type.as_str()));
    }
    set("permalink", json!(format!("{site}product/{}/", product.slug)));
    set("date_created", json!(naive_time(product.date_created, offset)));
    set("date_created_gmt", json!(gmt_time(product.date_created)));
    set("date_modified", json!(naive_time(product.date_modified, offset)));
    set("date_modified_gmt", json!(gmt_time(product.date_modified)));

    set("status", json!(product.status));
    set("description", json!(product.description));
    set("sku", json!(product.sku));
    set("price", json!(product.price()));
    set("regular_price", json!(product.regular_price));
    set("sale_price", json!(product.sale_price));
    set("manage_stock", json!(product.manage_stock));
    set("stock_quantity", json!(product.stock_quantity));
    set("stock_status", json!(stock_status(product)));

    match product.product_type {
        ProductType::Variation => {
            set("parent_id", json!(product.parent_id));
            set("image", images.into_iter().next().unwrap_or(Value::Null));
        }
        _ => {
            set("images", Value::Array(images));
            set("variations", json!(product.variations));
        }
    }
    set("meta_data", Value::Array(meta_data(product)));
    Value::Object(object)
}

/// Writes JSON the way PHP's `wp_json_encode` does with its default flags: `/` as `\/` and every
/// non-ASCII character as a `\uXXXX` escape (UTF-16 surrogate pairs beyond the BMP).
///
/// A character-wise pass over serde_json output is enough because `/` and non-ASCII characters
/// occur there only inside strings, never inside an escape sequence.
pub(crate) fn php_json(value: &Value) -> Vec<u8> {
    let text = value.to_string();
    let mut escaped = String::with_capacity(text.len() + text.len() / 8);
    for character in text.chars() {
        match character {
            '/' => escaped.push_str("\\/"),
            character if !character.is_ascii() => {
                let mut units = [0u16; 2];
                for unit in character.encode_utf16(&mut units) {
                    escaped.push_str(&format!("\\u{unit:04x}"));
                }
            }
            character => escaped.push(character),
        }
    }
    escaped.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn php_json_escapes_slash_and_non_ascii() {
        let body = php_json(&json!({"name": "Café 😀", "url": "https://a/b"}));
        assert_eq!(
            String::from_utf8(body.clone()).unwrap(),
            r#"{"name":"Caf\u00e9 \ud83d\ude00","url":"https:\/\/a\/b"}"#
        );
        let back: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(back["name"], "Café 😀");
    }

    #[test]
    fn price_must_be_a_decimal() {
        assert_eq!(check_price("regular_price", " 19.90 "), Ok("19.90".to_owned()));
        assert_eq!(check_price("regular_price", ""), Ok(String::new()));
        assert!(check_price("regular_price", "1..2").is_err());
        assert!(check_price("regular_price", "-1").is_err());
    }

    #[test]
    fn slug_joins_words_with_hyphens() {
        assert_eq!(slugify("Red Mug, large!"), "red-mug-large");
    }

    #[test]
    fn json_times_are_local_and_gmt() {
        let at = DateTime::parse_from_rfc3339("2025-03-09T07:30:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut product = Product::new(9002, ProductType::Simple, at);
        product.date_modified = at;
        let json = product_json(&product, "http://127.0.0.1/", FixedOffset::west_opt(5 * 3600).unwrap());
        assert_eq!(json["date_modified"], "2025-03-09T02:30:00");
        assert_eq!(json["date_modified_gmt"], "2025-03-09T07:30:00");
    }
}
