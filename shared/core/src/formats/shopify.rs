//! Shopify webhooks: `X-Shopify-Hmac-Sha256` over the raw body, REST-shaped payloads.
//!
//! Products become one change per variant SKU (the product's natural key); product-level values
//! (title, handle, SEO metafields, images) go on every variant's change. Orders are keyed by the
//! Shopify order id. Times come from the payload's `updated_at` (any offset, stored as UTC), else
//! `X-Shopify-Triggered-At`, because retries resend the original payload hours later.
//!
//! `inventory_levels/update` names an inventory item, not a SKU, so it becomes a thin notice for
//! the item (`inventory_items/<id>`), which the connector reads to find the SKU and quantity.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use crate::change::{ChangeSet, Notice, NoticeKind};
use crate::ids::{FieldName, RecordKey, SystemId};
use crate::ingest::{parse_offset_time, InboundRequest, Normalized, Rejection, WebhookFormat};
use crate::secret::Secret;
use crate::signature;
use crate::wire::Wire;

use super::{canonical_lines, canonical_rows, document_fields, document_key, put};

/// The topics this format reads, which `fieldsync webhooks register` subscribes to.
pub const SUBSCRIBED_TOPICS: &[&str] = &[
    "products/create",
    "products/update",
    "inventory_levels/update",
    "customers/create",
    "customers/update",
    "draft_orders/create",
    "draft_orders/update",
    "orders/create",
    "orders/updated",
    "fulfillments/create",
    "fulfillments/update",
    "returns/request",
    "returns/update",
];

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
        if topic == "inventory_levels/update" {
            return self.inventory_notice(request, topic);
        }
        let entity = match topic {
            "products/create" | "products/update" => "product",
            "orders/create" | "orders/updated" => "order",
            "customers/create" | "customers/update" => "customer",
            "draft_orders/create" | "draft_orders/update" => "quote",
            "fulfillments/create" | "fulfillments/update" => "shipment",
            "returns/request" | "returns/update" => "return",
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

        let occurred_at = occurred_at(&body, request);
        let key = document_key(entity, &body, Some(id.clone())).unwrap_or_else(|| id.clone());
        let template = ChangeSet {
            record: RecordKey::new(self.integration.as_str(), entity, key),
            source: self.source.clone(),
            event_id: event_id(request, topic),
            occurred_at,
            received_at: request.received_at,
            external_id: Some(id.clone()),
            fields: BTreeMap::new(),
        };
        let changes = match entity {
            "product" => product_changes(&body, &id, template),
            "order" => vec![order_change(&body, template)],
            _ => {
                let skip = ["id", "updated_at", "created_at", "admin_graphql_api_id"];
                let renames = [("total_price", "total"), ("line_items", "lines")];
                let fields = document_fields(&body, &skip, &renames, "price");
                vec![ChangeSet { fields, ..template }]
            }
        };
        Ok(Normalized::Changes(changes))
    }
}

impl ShopifyFormat {
    /// Reads `inventory_levels/update` into a notice for its inventory item.
    fn inventory_notice(&self, request: &InboundRequest, topic: &str) -> Result<Normalized, Rejection> {
        let body = Wire::parse(&request.body).map_err(|error| Rejection::Malformed {
            reason: format!("body is not JSON: {error}"),
        })?;
        let Some(item_id) = body.get("inventory_item_id").and_then(Wire::as_key) else {
            return Err(Rejection::Malformed {
                reason: format!("{topic} payload has no inventory_item_id"),
            });
        };
        let occurred_at = occurred_at(&body, request);
        Ok(Normalized::Notices(vec![Notice {
            integration: self.integration.clone(),
            source: self.source.clone(),
            entity: "product".into(),
            resource: format!("inventory_items/{item_id}"),
            kind: NoticeKind::Updated,
            event_id: event_id(request, topic),
            occurred_at,
            received_at: request.received_at,
        }]))
    }
}

/// Returns when the change happened: the payload's `updated_at`, else `X-Shopify-Triggered-At`,
/// else the receive time.
fn occurred_at(body: &Wire, request: &InboundRequest) -> chrono::DateTime<chrono::Utc> {
    body.get("updated_at")
        .and_then(Wire::as_text)
        .and_then(parse_offset_time)
        .or_else(|| request.header("x-shopify-triggered-at").and_then(parse_offset_time))
        .unwrap_or(request.received_at)
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
    put(fields, "status", order.get("status"));
    put(fields, "quote", order.get("quote"));
    // Shopify sends the customer as an object with its `id`; the sandbox sends the id alone.
    let customer = order.get("customer");
    let customer_id =
        customer.and_then(|customer| customer.get("id").and_then(Wire::as_key).or_else(|| customer.as_key()));
    if let Some(customer) = customer_id {
        fields.insert(FieldName::new("customer"), Wire::Text(customer));
    }
    if let Some(lines) = order.get("line_items") {
        fields.insert(FieldName::new("lines"), canonical_lines(lines, "price"));
    }
    change
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    const V1_BODY: &[u8] = include_bytes!("../../../../tests/fixtures/signatures/shopify-v1.body");
    const UNICODE_BODY: &[u8] = include_bytes!("../../../../tests/fixtures/signatures/shopify-unicode.body");

    fn format(secret: &str) -> ShopifyFormat {
        ShopifyFormat {
            integration: "demo".into(),
            source: "storefront".into(),
            secrets: vec![Secret::new(secret)],
        }
    }

    fn request(body: &[u8], signature: &str, topic: &str) -> InboundRequest {
        let headers = [
            ("x-shopify-hmac-sha256", signature),
            ("x-shopify-topic", topic),
            ("x-shopify-webhook-id", "d-1"),
        ];
        InboundRequest {
            headers: headers
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            query: BTreeMap::new(),
            body: body.to_vec(),
            received_at: Utc.with_ymd_and_hms(2025, 6, 1, 8, 0, 0).unwrap(),
        }
    }

    #[test]
    fn vector_v1_verifies_on_raw_bytes() {
        let format = format("shpss_example_secret_0001");
        let valid = request(V1_BODY, "uBX6jynnkpFFK/LS4S2rS5GyZZaCTfQ58zUM5yZDJKk=", "orders/create");
        assert_eq!(format.verify(&valid), Ok(()));
    }

    #[test]
    fn vector_v1_reserialized_signature_is_rejected() {
        let format = format("shpss_example_secret_0001");
        let reserialized = request(V1_BODY, "SFdfwTENIYMC03eWVvyB5qlVMpvdu1bNB/Dhoqbk9Zc=", "orders/create");
        assert!(matches!(
            format.verify(&reserialized),
            Err(Rejection::Unauthorized { .. })
        ));
    }

    #[test]
    fn vector_v1_compact_body_does_not_match_header() {
        // Parsing and writing the body back compactly changes its bytes, so the header no
        // longer matches: what a receiver that verifies re-serialized JSON gets wrong.
        let compact = serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(V1_BODY).unwrap()).unwrap();
        assert_ne!(compact, V1_BODY);
        let format = format("shpss_example_secret_0001");
        let resent = request(
            &compact,
            "uBX6jynnkpFFK/LS4S2rS5GyZZaCTfQ58zUM5yZDJKk=",
            "orders/create",
        );
        assert!(format.verify(&resent).is_err());
    }

    #[test]
    fn vector_unicode_verifies() {
        let format = format("shpss_example_secret_0002");
        let valid = request(
            UNICODE_BODY,
            "G8vKieQD4idknBMxoDM96o40CNgenX/WM0kz2RJthzo=",
            "orders/create",
        );
        assert_eq!(format.verify(&valid), Ok(()));
    }

    #[test]
    fn wrong_secret_is_rejected() {
        let format = format("shpss_other");
        let valid = request(V1_BODY, "uBX6jynnkpFFK/LS4S2rS5GyZZaCTfQ58zUM5yZDJKk=", "orders/create");
        assert!(format.verify(&valid).is_err());
    }

    #[test]
    fn order_normalizes_to_one_change_in_utc() {
        let Normalized::Changes(changes) = format("x").normalize(&request(V1_BODY, "", "orders/create")).unwrap()
        else {
            panic!("expected changes");
        };
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].record.key, "1001");
        assert_eq!(
            changes[0].occurred_at,
            Utc.with_ymd_and_hms(2025, 4, 22, 19, 30, 0).unwrap()
        );
        assert_eq!(changes[0].fields[&FieldName::new("note")], Wire::Text("A & B".into()));
    }

    #[test]
    fn unicode_note_survives_normalization() {
        let Normalized::Changes(changes) = format("x")
            .normalize(&request(UNICODE_BODY, "", "orders/create"))
            .unwrap()
        else {
            panic!("expected changes");
        };
        assert_eq!(
            changes[0].fields[&FieldName::new("note")],
            Wire::Text("line\u{2028}break".into())
        );
    }

    #[test]
    fn product_gives_one_change_per_variant_sku() {
        let body = br#"{"id":7,"title":"Mug","status":"draft","updated_at":"2025-06-01T10:00:00Z","variants":[{"id":1,"sku":"A","price":"1.00"},{"id":2,"sku":"B","price":"2.00"},{"id":3,"sku":""}],"metafields":[{"namespace":"global","key":"title_tag","value":"T"}]}"#;
        let Normalized::Changes(changes) = format("x").normalize(&request(body, "", "products/update")).unwrap() else {
            panic!("expected changes");
        };
        let keys: Vec<&str> = changes.iter().map(|change| change.record.key.as_str()).collect();
        assert_eq!(keys, ["A", "B"]);
        assert_eq!(changes[1].external_id.as_deref(), Some("7/2"));
        assert_eq!(changes[1].fields[&FieldName::new("price")], Wire::Text("2.00".into()));
        assert_eq!(changes[1].fields[&FieldName::new("meta_title")], Wire::Text("T".into()));
        assert_eq!(changes[1].fields[&FieldName::new("published")], Wire::Bool(false));
    }

    #[test]
    fn unknown_topic_is_ignored() {
        let normalized = format("x").normalize(&request(b"{}", "", "carts/update")).unwrap();
        assert_eq!(
            normalized,
            Normalized::Ignored {
                topic: "carts/update".into()
            }
        );
    }

    #[test]
    fn inventory_level_becomes_item_notice() {
        let body = br#"{"inventory_item_id":808950810,"location_id":905684977,"available":6,"updated_at":"2025-06-01T12:00:03+02:00"}"#;
        let normalized = format("x")
            .normalize(&request(body, "", "inventory_levels/update"))
            .unwrap();
        let Normalized::Notices(notices) = normalized else {
            panic!("expected a notice, got {normalized:?}");
        };
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].resource, "inventory_items/808950810");
        assert_eq!(notices[0].entity.as_str(), "product");
        assert_eq!(notices[0].kind, NoticeKind::Updated);
        assert_eq!(notices[0].occurred_at.to_rfc3339(), "2025-06-01T10:00:03+00:00");
    }

    #[test]
    fn inventory_level_without_item_is_malformed() {
        let result = format("x").normalize(&request(br#"{"available":6}"#, "", "inventory_levels/update"));
        assert!(matches!(result, Err(Rejection::Malformed { .. })));
    }

    #[test]
    fn malformed_body_is_rejected() {
        let result = format("x").normalize(&request(b"{\"id\":", "", "orders/create"));
        assert!(matches!(result, Err(Rejection::Malformed { .. })));
    }

    #[test]
    fn draft_order_becomes_quote_change() {
        let body = br#"{"id":7000000007,"external_id":null,"customer":"7000000001","line_items":[{"sku":"MUG-RED","quantity":10,"price":"11.50"}],"status":"approved","total_price":"115.00","updated_at":"2025-06-01T10:00:00-04:00"}"#;
        let Normalized::Changes(changes) = format("s")
            .normalize(&request(body, "", "draft_orders/update"))
            .unwrap()
        else {
            panic!("expected changes");
        };
        let change = &changes[0];
        assert_eq!(change.record.to_string(), "demo/quote/7000000007");
        assert_eq!(change.external_id.as_deref(), Some("7000000007"));
        assert_eq!(change.fields[&FieldName::new("total")], Wire::Text("115.00".into()));
        assert_eq!(
            change.fields[&FieldName::new("customer")],
            Wire::Text("7000000001".into())
        );
        let lines = &change.fields[&FieldName::new("lines")];
        assert_eq!(lines.pointer("/0/unit_price"), Some(&Wire::Text("11.5".into())));
        assert!(!change.fields.contains_key(&FieldName::new("updated_at")));
    }

    #[test]
    fn fulfillment_is_keyed_by_fieldsync_external_id() {
        let body = br#"{"id":7000000009,"external_id":"shipment:SH-1001","order":"7000000008","status":"shipped"}"#;
        let Normalized::Changes(changes) = format("s")
            .normalize(&request(body, "", "fulfillments/create"))
            .unwrap()
        else {
            panic!("expected changes");
        };
        assert_eq!(changes[0].record.to_string(), "demo/shipment/SH-1001");
        assert_eq!(changes[0].external_id.as_deref(), Some("7000000009"));
        assert!(!changes[0].fields.contains_key(&FieldName::new("external_id")));
    }

    #[test]
    fn order_customer_object_gives_its_id() {
        let body = br#"{"id":5001,"customer":{"id":8001,"email":"ada@example.test"}}"#;
        let Normalized::Changes(changes) = format("s").normalize(&request(body, "", "orders/create")).unwrap() else {
            panic!("expected changes");
        };
        assert_eq!(
            changes[0].fields[&FieldName::new("customer")],
            Wire::Text("8001".into())
        );
    }
}
