//! Shopify webhooks: `X-Shopify-Hmac-Sha256` over the raw body, REST-shaped payloads.
//!
//! Products become one change per variant SKU (the product's natural key); product-level values
//! (title, handle, SEO metafields, images) go on every variant's change. Orders are keyed by the
//! Shopify order id. Times come from the payload's `updated_at` (any offset, stored as UTC), else
//! `X-Shopify-Triggered-At`, because retries resend the original payload hours later.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::change::ChangeSet;
use crate::ids::{FieldName, RecordKey, SystemId};
use crate::ingest::{parse_offset_time, InboundRequest, Normalized, Rejection, WebhookFormat};
use crate::secret::Secret;
use crate::signature;
use crate::wire::Wire;

use super::{canonical_lines, canonical_rows, put};

/// The Shopify webhook format for one shop.
#[derive(Debug, Clone)]
pub struct ShopifyFormat {
    pub integration: String,
    pub source: SystemId,
    /// The app's client secrets; more than one during a rotation.
    pub secrets: Vec<Secret>,
}

impl WebhookFormat for ShopifyFormat {
    fn source(&self) -> &SystemId {
        &self.source
    }

    fn verify(&self, request: &InboundRequest) -> Result<(), Rejection> {
        let Some(signature) = request.header("x-shopify-hmac-sha256") else {
            return Err(Rejection::Unauthorized {
                reason: "missing X-Shopify-Hmac-Sha256 header".to_owned(),
            });
        };
        let body: &[u8] = &request.body;
        if self
            .secrets
            .iter()
            .any(|secret| signature::matches_base64(secret.expose().as_bytes(), &[body], signature))
        {
            Ok(())
        } else {
            Err(Rejection::Unauthorized {
                reason: "X-Shopify-Hmac-Sha256 does not match the body".to_owned(),
            })
        }
    }

    fn normalize(&self, request: &InboundRequest) -> Result<Normalized, Rejection> {
        let Some(topic) = request.header("x-shopify-topic") else {
            return Err(Rejection::Malformed {
                reason: "missing X-Shopify-Topic header".to_owned(),
            });
        };
        let entity = match topic {
            "products/create" | "products/update" => "product",
            "orders/create" | "orders/updated" => "order",
            other => {
                return Ok(Normalized::Ignored {
                    topic: other.to_owned(),
                })
            }
        };
        let body = Wire::parse(&request.body).map_err(|error| Rejection::Malformed {
            reason: format!("body is not JSON: {error}"),
        })?;
        if !matches!(body, Wire::Map(_)) {
            return Err(Rejection::Malformed {
                reason: "body is not a JSON object".to_owned(),
            });
        }
        let Some(id) = body.get("id").and_then(Wire::as_key) else {
            return Err(Rejection::Malformed {
                reason: format!("{topic} payload has no id"),
            });
        };

        let occurred_at = body
            .get("updated_at")
            .and_then(Wire::as_text)
            .and_then(parse_offset_time)
            .or_else(|| request.header("x-shopify-triggered-at").and_then(parse_offset_time))
            .unwrap_or(request.received_at);
        let template = ChangeSet {
            record: RecordKey::new(self.integration.as_str(), entity, id.as_str()),
            source: self.source.clone(),
            event_id: event_id(request, topic),
            occurred_at,
            received_at: request.received_at,
            external_id: Some(id.clone()),
            fields: BTreeMap::new(),
        };
        let changes = match entity {
            "product" => product_changes(&body, &id, template),
            _ => vec![order_change(&body, template)],
        };
        Ok(Normalized::Changes(changes))
    }
}

/// Returns the event id, identical across retries and subscriptions of one event where Shopify
/// sends `X-Shopify-Event-Id`, else the delivery's webhook id, else a hash of topic and body.
fn event_id(request: &InboundRequest, topic: &str) -> String {
    if let Some(id) = request
        .header("x-shopify-event-id")
        .or_else(|| request.header("x-shopify-webhook-id"))
    {
        return id.to_owned();
    }
    let mut hasher = Sha256::new();
    hasher.update(topic.as_bytes());
    hasher.update(&request.body);
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

fn product_changes(product: &Wire, product_id: &str, template: ChangeSet) -> Vec<ChangeSet> {
    let mut shared = BTreeMap::new();
    put(&mut shared, "name", product.get("title"));
    put(&mut shared, "description", product.get("body_html"));
    put(&mut shared, "handle", product.get("handle"));
    if let Some(status) = product.get("status").and_then(Wire::as_text) {
        shared.insert(FieldName::new("published"), Wire::Bool(status == "active"));
    }
    if let Some(images) = product.get("images") {
        let sources = images
            .items()
            .iter()
            .filter_map(|image| image.get("src").cloned())
            .collect();
        shared.insert(FieldName::new("images"), Wire::List(sources));
    }
    for metafield in product.get("metafields").map(Wire::items).unwrap_or_default() {
        let namespace = metafield.get("namespace").and_then(Wire::as_text);
        let key = metafield.get("key").and_then(Wire::as_text);
        let Some(value) = metafield.get("value") else { continue };
        match (namespace, key) {
            (Some("global"), Some("title_tag")) => put(&mut shared, "meta_title", Some(value)),
            (Some("global"), Some("description_tag")) => put(&mut shared, "meta_description", Some(value)),
            (Some("fieldsync"), Some("customer_prices")) => {
                let parsed = value.as_text().and_then(|text| Wire::parse(text.as_bytes()).ok());
                let rows = parsed.unwrap_or_else(|| value.clone());
                let canonical = canonical_rows(
                    &rows,
                    &[("customer", "customer", false), ("unit_price", "unit_price", true)],
                );
                shared.insert(FieldName::new("customer_prices"), canonical);
            }
            _ => {}
        }
    }

    let mut changes = Vec::new();
    for variant in product.get("variants").map(Wire::items).unwrap_or_default() {
        let Some(sku) = variant.get("sku").and_then(Wire::as_key) else {
            continue;
        };
        let mut change = template.clone();
        change.record.entity = "product".into();
        change.record.key = sku;
        change.external_id = variant
            .get("id")
            .and_then(Wire::as_key)
            .map(|variant_id| format!("{product_id}/{variant_id}"));
        change.fields = shared.clone();
        put(&mut change.fields, "price", variant.get("price"));
        put(&mut change.fields, "inventory", variant.get("inventory_quantity"));
        changes.push(change);
    }
    changes
}

fn order_change(order: &Wire, mut change: ChangeSet) -> ChangeSet {
    let fields = &mut change.fields;
    put(fields, "number", order.get("name"));
    put(fields, "email", order.get("email"));
    put(fields, "total", order.get("total_price"));
    put(fields, "financial_status", order.get("financial_status"));
    put(fields, "fulfillment_status", order.get("fulfillment_status"));
    put(fields, "note", order.get("note"));
    if let Some(lines) = order.get("line_items") {
        fields.insert(FieldName::new("lines"), canonical_lines(lines, "price"));
    }
    change
}
