//! Shopify-style product webhooks: the REST payload, its serialization and its headers.

use chrono::{DateTime, FixedOffset, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::model::{Product, Variant};
use crate::delivery::{hmac_sha256_base64, new_uuid, OutgoingEvent, SignHeaders};
use crate::json_text::shopify_escape;

/// The webhook topic of a product change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProductTopic {
    Create,
    Update,
}

impl ProductTopic {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Create => "products/create",
            Self::Update => "products/update",
        }
    }
}

/// Formats a REST timestamp: ISO 8601 in the shop's time zone with its offset, to the second.
pub(crate) fn rest_time(time: DateTime<Utc>, offset: FixedOffset) -> String {
    time.with_timezone(&offset).to_rfc3339_opts(SecondsFormat::Secs, false)
}

/// Builds the REST-shaped product payload of `products/create` and `products/update`, with the
/// product's metafields included as for a subscription that lists their namespaces.
pub(crate) fn product_payload(product: &Product, offset: FixedOffset) -> Value {
    let time = |at: DateTime<Utc>| rest_time(at, offset);
    let variants: Vec<Value> = product
        .variants
        .iter()
        .enumerate()
        .map(|(index, variant)| variant_payload(product, variant, index + 1, offset))
        .collect();
    let images: Vec<Value> = product
        .images
        .iter()
        .enumerate()
        .map(|(index, image)| {
            json!({
                "id": image.id,
                "product_id": product.id,
                "position": index + 1,
                "src": image.src,
                "alt": null,
                "admin_graphql_api_id": format!("gid://shopify/ProductImage/{}", image.id),
            })
        })
        .collect();
    let metafields: Vec<Value> = product
        .metafields
        .iter()
        .map(|field| {
            json!({
                "id": field.id,
                "namespace": field.namespace,
                "key": field.key,
                "value": field.value,
                "type": field.r#type,
                "owner_id": product.id,
                "owner_resource": "product",
            })
        })
        .collect();

    json!({
        "id": product.id,
        "admin_graphql_api_id": product.gid(),
        "title": product.title,
        "body_html": product.description_html,
        "handle": product.handle,
        "status": product.status.as_rest(),
        "vendor": "fieldsync sandbox",
        "product_type": "",
        "tags": "",
        "created_at": time(product.created_at),
        "updated_at": time(product.updated_at),
        "published_at": product.published_at.map(time),
        "variants": variants,
        "images": images,
        "image": images.first().cloned(),
        "metafields": metafields,
    })
}

fn variant_payload(product: &Product, variant: &Variant, position: usize, offset: FixedOffset) -> Value {
    json!({
        "id": variant.id,
        "product_id": product.id,
        "admin_graphql_api_id": super::model::variant_gid(variant.id),
        "title": "Default Title",
        "position": position,
        "sku": variant.sku,
        "price": variant.price.to_string(),
        "inventory_item_id": variant.inventory_item_id,
        "inventory_quantity": variant.inventory_quantity,
        "created_at": rest_time(product.created_at, offset),
        "updated_at": rest_time(variant.updated_at, offset),
    })
}

/// Serializes a payload the way Shopify does (see [`shopify_escape`]).
pub(crate) fn payload_bytes(payload: &Value) -> Vec<u8> {
    // Serializing a `Value` cannot fail: its map keys are strings.
    shopify_escape(&serde_json::to_vec(payload).unwrap_or_default())
}

/// Builds a product event ready to deliver.
pub(crate) fn product_event(
    topic: ProductTopic,
    product: &Product,
    offset: FixedOffset,
    now: DateTime<Utc>,
) -> OutgoingEvent {
    OutgoingEvent {
        topic: topic.as_str().to_owned(),
        event_id: new_uuid(),
        triggered_at: now,
        body: payload_bytes(&product_payload(product, offset)),
    }
}

/// Builds an `inventory_levels/update` event: the item, the location and the available
/// quantity, without the SKU.
pub(crate) fn inventory_level_event(variant: &Variant, offset: FixedOffset, now: DateTime<Utc>) -> OutgoingEvent {
    let location_id = 1;
    let payload = json!({
        "inventory_item_id": variant.inventory_item_id,
        "location_id": location_id,
        "available": variant.inventory_quantity,
        "updated_at": rest_time(variant.updated_at, offset),
        "admin_graphql_api_id": format!(
            "gid://shopify/InventoryLevel/{location_id}?inventory_item_id={}",
            variant.inventory_item_id
        ),
    });
    OutgoingEvent {
        topic: "inventory_levels/update".to_owned(),
        event_id: new_uuid(),
        triggered_at: now,
        body: payload_bytes(&payload),
    }
}

/// Signs deliveries with the app secret and adds Shopify's webhook headers.
pub(crate) struct ShopifySigner {
    pub(crate) secret: String,
    pub(crate) shop_domain: String,
    pub(crate) api_version: String,
}

impl SignHeaders for ShopifySigner {
    fn headers(&self, event: &OutgoingEvent, _attempt: u32) -> Vec<(String, String)> {
        let signature = hmac_sha256_base64(self.secret.as_bytes(), &[&event.body]);
        vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-Shopify-Topic".to_owned(), event.topic.clone()),
            ("X-Shopify-Hmac-Sha256".to_owned(), signature),
            ("X-Shopify-Shop-Domain".to_owned(), self.shop_domain.clone()),
            ("X-Shopify-API-Version".to_owned(), self.api_version.clone()),
            ("X-Shopify-Webhook-Id".to_owned(), new_uuid()),
            ("X-Shopify-Event-Id".to_owned(), event.event_id.clone()),
            (
                "X-Shopify-Triggered-At".to_owned(),
                event.triggered_at.to_rfc3339_opts(SecondsFormat::Millis, true),
            ),
        ]
    }
}
