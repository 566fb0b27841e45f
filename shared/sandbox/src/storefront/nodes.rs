//! GraphQL output objects. Each root field returns a fixed superset of the fields a client may
//! select, because the sandbox does not read selection sets.

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use super::model::{inventory_item_gid, metafield_gid, variant_gid, Metafield, Product, Variant, LOCATION_GID};

/// Formats a GraphQL `DateTime`, which Shopify returns in UTC.
pub(crate) fn graphql_time(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

pub(crate) fn product_node(product: &Product) -> Value {
    let variants: Vec<Value> = product
        .variants
        .iter()
        .map(|variant| variant_node(product, variant))
        .collect();
    let metafields: Vec<Value> = product.metafields.iter().map(metafield_node).collect();
    let images: Vec<Value> = product
        .images
        .iter()
        .map(|image| json!({"id": format!("gid://shopify/ProductImage/{}", image.id), "url": image.src}))
        .collect();
    json!({
        "id": product.gid(),
        "legacyResourceId": product.id.to_string(),
        "title": product.title,
        "descriptionHtml": product.description_html,
        "handle": product.handle,
        "status": product.status.as_graphql(),
        "createdAt": graphql_time(product.created_at),
        "updatedAt": graphql_time(product.updated_at),
        "publishedAt": product.published_at.map(graphql_time),
        "seo": {"title": product.seo_title(), "description": product.seo_description()},
        "images": {"nodes": images},
        "metafields": {"nodes": metafields},
        "variants": {"nodes": variants},
    })
}

pub(crate) fn variant_node(product: &Product, variant: &Variant) -> Value {
    json!({
        "id": variant_gid(variant.id),
        "legacyResourceId": variant.id.to_string(),
        "sku": variant.sku,
        "price": variant.price.to_string(),
        "inventoryQuantity": variant.inventory_quantity,
        "updatedAt": graphql_time(variant.updated_at),
        "inventoryItem": {
            "id": inventory_item_gid(variant.inventory_item_id),
            "sku": variant.sku,
            "inventoryLevels": {"nodes": [{
                "location": {"id": LOCATION_GID},
                "quantities": [{"name": "available", "quantity": variant.inventory_quantity}],
            }]},
        },
        "product": {"id": product.gid(), "legacyResourceId": product.id.to_string()},
    })
}

pub(crate) fn metafield_node(metafield: &Metafield) -> Value {
    json!({
        "id": metafield_gid(metafield.id),
        "namespace": metafield.namespace,
        "key": metafield.key,
        "type": metafield.r#type,
        "value": metafield.value,
    })
}

/// Builds one entry of `userErrors`. `code` is `None` for mutations whose error type has no code.
pub(crate) fn user_error(field: &[&str], message: impl Into<String>, code: Option<&str>) -> Value {
    let mut error = json!({"field": field, "message": message.into()});
    if let Some(code) = code {
        error["code"] = json!(code);
    }
    error
}
