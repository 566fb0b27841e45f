//! WooCommerce webhooks (REST API v3 payloads): `X-WC-Webhook-Signature` over the raw body.
//!
//! WooCommerce signs the body it sends with `base64(HMAC-SHA256(body, webhook secret))` and names
//! the topic (`product.updated`), resource, event, webhook id and delivery id in `X-WC-Webhook-*`
//! headers. Its body is PHP's `wp_json_encode` output, which escapes `/` as `\/` and non-ASCII
//! characters as `\uXXXX`, so the signature is only ever checked on the bytes received.
//!
//! When a merchant saves a webhook, WooCommerce first posts an unsigned
//! `application/x-www-form-urlencoded` ping with the body `webhook_id=<id>` and refuses to save
//! the webhook unless the response is exactly 200. That ping is accepted without a signature
//! and ignored: nothing is enqueued.
//!
//! Products are keyed by SKU. A simple product's payload is the product as the REST API returns
//! it, so it becomes one [`ChangeSet`]. A variable product's payload lists only the ids of its
//! variations, so it becomes a [`Notice`] for `products/<id>` and the connector reads the
//! product and its variations. WooCommerce builds the payload when the delivery runs, not when
//! the product changed, so it is a hint that may be newer than the event it reports.
//!
//! Times come from `date_modified_gmt`, a naive UTC time. `date_modified` is in the site's time
//! zone without an offset, and on a daylight saving day that local time may not exist or may be
//! ambiguous, so it is never read.
//!
//! `product.deleted` is ignored: fieldsync does not delete records in other systems, and the
//! payload of a deletion carries only the product id.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::change::{ChangeSet, Notice, NoticeKind};
use crate::ids::{EntityType, FieldName, RecordKey, SystemId};
use crate::ingest::{InboundRequest, Normalized, Rejection, WebhookFormat};
use crate::secret::Secret;
use crate::signature::hmac_sha256;
use crate::wire::Wire;

use super::put;

/// The topic reported for the unsigned ping WooCommerce sends when a webhook is saved.
pub const PING_TOPIC: &str = "webhook ping";

/// The Yoast SEO `meta_data` keys read as the canonical meta fields.
pub const YOAST_TITLE_KEY: &str = "_yoast_wpseo_title";
pub const YOAST_DESCRIPTION_KEY: &str = "_yoast_wpseo_metadesc";

/// The WooCommerce webhook format for one site.
#[derive(Debug, Clone)]
pub struct WooCommerceFormat {
    pub integration: String,
    pub source: SystemId,
    /// The webhook secrets; more than one while a rotation is in progress.
    pub secrets: Vec<Secret>,
}

impl WooCommerceFormat {
    /// Builds the format for one site's webhooks.
    pub fn new(integration: impl Into<String>, source: SystemId, secrets: Vec<Secret>) -> Self {
        Self {
            integration: integration.into(),
            source,
            secrets,
        }
    }

    /// Tells whether the base64 signature matches the body under any configured secret. Every
    /// secret is compared, so the time taken does not tell which one matched.
    fn signature_matches(&self, signature: &str, body: &[u8]) -> bool {
        use base64::engine::general_purpose::STANDARD as BASE64;
        use base64::Engine as _;

        let Ok(given) = BASE64.decode(signature.trim()) else {
            return false;
        };
        let mut matched = false;
        for secret in &self.secrets {
            let expected = hmac_sha256(secret.expose().as_bytes(), &[body]);
            matched |= given.len() == expected.len() && bool::from(given.as_slice().ct_eq(&expected));
        }
        matched
    }
}

/// Tells whether a request is the unsigned ping sent when a webhook is saved: no signature
/// header, a form content type or none, and a body of exactly `webhook_id=<digits>`. A missing
/// content type is accepted because a proxy may drop it, and a 401 would stop the merchant from
/// saving the webhook.
pub fn is_creation_ping(request: &InboundRequest) -> bool {
    if request.header("x-wc-webhook-signature").is_some() {
        return false;
    }
    let form = request
        .header("content-type")
        .is_none_or(|value| value.trim().starts_with("application/x-www-form-urlencoded"));
    let digits = request.body.strip_prefix(b"webhook_id=".as_slice());
    form && digits.is_some_and(|digits| (1..=20).contains(&digits.len()) && digits.iter().all(u8::is_ascii_digit))
}

impl WebhookFormat for WooCommerceFormat {
    fn source(&self) -> &SystemId {
        &self.source
    }

    fn verify(&self, request: &InboundRequest) -> Result<(), Rejection> {
        // The ping carries no signature and no data; `normalize` ignores it, so accepting it
        // lets nothing through.
        if is_creation_ping(request) {
            return Ok(());
        }
        let Some(signature) = request.header("x-wc-webhook-signature") else {
            return Err(Rejection::Unauthorized {
                reason: "missing X-WC-Webhook-Signature header".to_owned(),
            });
        };
        if self.signature_matches(signature, &request.body) {
            Ok(())
        } else {
            Err(Rejection::Unauthorized {
                reason: "X-WC-Webhook-Signature does not match the body".to_owned(),
            })
        }
    }

    fn normalize(&self, request: &InboundRequest) -> Result<Normalized, Rejection> {
        if is_creation_ping(request) {
            return Ok(Normalized::Ignored {
                topic: PING_TOPIC.to_owned(),
            });
        }
        let Some(topic) = request.header("x-wc-webhook-topic") else {
            return Err(malformed("missing X-WC-Webhook-Topic header"));
        };
        let kind = match topic {
            "product.created" => NoticeKind::Created,
            "product.updated" | "product.restored" => NoticeKind::Updated,
            other => {
                return Ok(Normalized::Ignored {
                    topic: other.to_owned(),
                })
            }
        };
        let product = Wire::parse(&request.body).map_err(|error| malformed(&format!("body is not JSON: {error}")))?;
        if !matches!(product, Wire::Map(_)) {
            return Err(malformed("body is not a JSON object"));
        }
        let Some(id) = product.get("id").and_then(Wire::as_key) else {
            return Err(malformed(&format!("{topic} payload has no id")));
        };
        let occurred_at = modified_gmt(&product).unwrap_or(request.received_at);
        let event_id = event_id(request, topic);

        // A variable product lists its variation ids only, and a variation's own payload lacks
        // the product-level fields, so both are read back through the parent product.
        let product_type = product.get("type").and_then(Wire::as_text);
        let parent = match product_type {
            Some("variable") => Some(id.clone()),
            Some("variation") => Some(
                product
                    .get("parent_id")
                    .and_then(Wire::as_key)
                    .filter(|parent| parent != "0")
                    .ok_or_else(|| malformed(&format!("variation {id} has no parent_id")))?,
            ),
            _ => None,
        };
        if let Some(parent) = parent {
            return Ok(Normalized::Notices(vec![Notice {
                integration: self.integration.clone(),
                source: self.source.clone(),
                entity: EntityType::new("product"),
                resource: format!("products/{parent}"),
                kind,
                event_id,
                occurred_at,
                received_at: request.received_at,
            }]));
        }

        // The SKU is the record key. A product without one cannot be matched to an ERP item, and
        // keying it by its WooCommerce id could meet an item whose SKU is that number.
        let Some(key) = product.get("sku").and_then(Wire::as_key) else {
            return Ok(Normalized::Ignored {
                topic: format!("{topic} of product {id} without a SKU"),
            });
        };
        let mut fields = product_fields(&product);
        fields.extend(stock_fields(&product));
        Ok(Normalized::Changes(vec![ChangeSet {
            record: RecordKey::new(self.integration.as_str(), "product", key),
            source: self.source.clone(),
            event_id,
            occurred_at,
            received_at: request.received_at,
            external_id: Some(id),
            fields,
        }]))
    }
}

fn malformed(reason: &str) -> Rejection {
    Rejection::Malformed {
        reason: reason.to_owned(),
    }
}

/// Returns the event id: `X-WC-Webhook-Delivery-ID`, else a hash of topic and body.
fn event_id(request: &InboundRequest, topic: &str) -> String {
    if let Some(id) = request
        .header("x-wc-webhook-delivery-id")
        .filter(|id| !id.trim().is_empty())
    {
        return id.trim().to_owned();
    }
    let mut hasher = Sha256::new();
    hasher.update(topic.as_bytes());
    hasher.update([0]);
    hasher.update(&request.body);
    format!("sha256:{}", hex::encode(hasher.finalize()))
}

/// Parses a WooCommerce `*_gmt` time, `2025-03-09T07:30:00` (naive, UTC), optionally with
/// fractional seconds. A time with a zone (`…Z` or `…+00:00`), which some plugins write, is read
/// with its zone.
pub fn parse_gmt(text: &str) -> Option<DateTime<Utc>> {
    let text = text.trim();
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .ok()
        .map(|naive| naive.and_utc())
        .or_else(|| crate::ingest::parse_offset_time(text))
}

/// Returns a product's or variation's `date_modified_gmt` as a UTC instant.
pub fn modified_gmt(object: &Wire) -> Option<DateTime<Utc>> {
    object
        .get("date_modified_gmt")
        .and_then(Wire::as_text)
        .and_then(parse_gmt)
}

/// Reads the product-level canonical fields of a product: name, description, handle (`slug`),
/// images (`images[].src`) and the Yoast SEO title and description from `meta_data`. Price,
/// stock and status are read by [`stock_fields`], because a variation has its own.
pub fn product_fields(product: &Wire) -> BTreeMap<FieldName, Wire> {
    let mut fields = BTreeMap::new();
    put(&mut fields, "name", product.get("name"));
    put(&mut fields, "description", product.get("description"));
    put(&mut fields, "handle", product.get("slug"));
    if let Some(images) = product.get("images") {
        let sources = images
            .items()
            .iter()
            .filter_map(|image| image.get("src").cloned())
            .collect();
        fields.insert(FieldName::new("images"), Wire::List(sources));
    }
    for entry in product.get("meta_data").map(Wire::items).unwrap_or_default() {
        let field = match entry.get("key").and_then(Wire::as_text) {
            Some(YOAST_TITLE_KEY) => "meta_title",
            Some(YOAST_DESCRIPTION_KEY) => "meta_description",
            _ => continue,
        };
        put(&mut fields, field, entry.get("value"));
    }
    fields
}

/// Reads the canonical fields a simple product and a variation both carry: price from
/// `regular_price` (absent when the string is empty), inventory from `stock_quantity` when
/// `manage_stock` is true, and published from `status == "publish"`. Values stay in their wire
/// form, string or number, until the reconciler types them.
pub fn stock_fields(object: &Wire) -> BTreeMap<FieldName, Wire> {
    let mut fields = BTreeMap::new();
    match object.get("regular_price") {
        Some(Wire::Text(text)) if text.trim().is_empty() => {}
        price => put(&mut fields, "price", price),
    }
    if object.get("manage_stock") == Some(&Wire::Bool(true)) {
        put(&mut fields, "inventory", object.get("stock_quantity"));
    }
    if let Some(status) = object.get("status").and_then(Wire::as_text) {
        fields.insert(FieldName::new("published"), Wire::Bool(status == "publish"));
    }
    fields
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    const V2_BODY: &[u8] = include_bytes!("../../../../tests/fixtures/signatures/woocommerce-v2.body");
    const V2_SECRET: &str = "wc_example_secret_A1b2C3";
    const V2_SIGNATURE: &str = "gjeVEYbzQoN0FUfEDZkpomjuJA088J25qOOQiBzL/uc=";
    const V2_RESERIALIZED_SIGNATURE: &str = "X615xgF0DFG81F02Ozd+mDJhBU40gM4Tm2YMxuNUwrw=";

    fn format(secrets: &[&str]) -> WooCommerceFormat {
        let secrets = secrets.iter().map(|secret| Secret::new(*secret)).collect();
        WooCommerceFormat::new("demo", SystemId::new("storefront"), secrets)
    }

    fn request(body: &[u8], headers: &[(&str, &str)]) -> InboundRequest {
        InboundRequest {
            headers: headers
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), (*value).to_owned()))
                .collect(),
            query: BTreeMap::new(),
            body: body.to_vec(),
            received_at: Utc.with_ymd_and_hms(2025, 6, 2, 9, 30, 0).unwrap(),
        }
    }

    fn product_request(body: &[u8], topic: &str) -> InboundRequest {
        request(
            body,
            &[
                ("content-type", "application/json"),
                ("x-wc-webhook-topic", topic),
                ("x-wc-webhook-delivery-id", "d-1"),
            ],
        )
    }

    fn changes(normalized: Normalized) -> Vec<ChangeSet> {
        match normalized {
            Normalized::Changes(changes) => changes,
            other => panic!("expected changes, got {other:?}"),
        }
    }

    #[test]
    fn vector_v2_verifies_on_raw_bytes() {
        let valid = request(V2_BODY, &[("x-wc-webhook-signature", V2_SIGNATURE)]);
        assert_eq!(format(&[V2_SECRET]).verify(&valid), Ok(()));
    }

    #[test]
    fn vector_v2_reserialized_signature_is_rejected() {
        let reserialized = request(V2_BODY, &[("x-wc-webhook-signature", V2_RESERIALIZED_SIGNATURE)]);
        let result = format(&[V2_SECRET]).verify(&reserialized);
        assert!(matches!(result, Err(Rejection::Unauthorized { .. })), "{result:?}");
    }

    #[test]
    fn vector_v2_reserialized_body_does_not_match() {
        // Writing the parsed body back drops the `\/` and `\u00e9` escapes, so its bytes differ.
        let value: serde_json::Value = serde_json::from_slice(V2_BODY).unwrap();
        let compact = serde_json::to_vec(&value).unwrap();
        assert_ne!(compact, V2_BODY);
        let signed_original = request(&compact, &[("x-wc-webhook-signature", V2_SIGNATURE)]);
        assert!(format(&[V2_SECRET]).verify(&signed_original).is_err());
    }

    #[test]
    fn rotation_accepts_either_secret() {
        let valid = request(V2_BODY, &[("x-wc-webhook-signature", V2_SIGNATURE)]);
        assert_eq!(format(&["wc_new_secret", V2_SECRET]).verify(&valid), Ok(()));
        assert!(format(&["wc_new_secret"]).verify(&valid).is_err());
    }

    #[test]
    fn missing_or_garbled_signature_is_rejected() {
        let json = request(V2_BODY, &[("content-type", "application/json")]);
        assert!(matches!(
            format(&[V2_SECRET]).verify(&json),
            Err(Rejection::Unauthorized { .. })
        ));
        let garbled = request(V2_BODY, &[("x-wc-webhook-signature", "not base64!")]);
        assert!(format(&[V2_SECRET]).verify(&garbled).is_err());
    }

    #[test]
    fn vector_v2_name_keeps_non_ascii() {
        // The vector's product has no SKU, so the receiver acknowledges it without a change. Its
        // values are still read from the raw bytes, as those of a product with a SKU would be.
        let normalized = format(&[V2_SECRET])
            .normalize(&product_request(V2_BODY, "product.updated"))
            .unwrap();
        assert_eq!(
            normalized,
            Normalized::Ignored {
                topic: "product.updated of product 7001 without a SKU".into()
            }
        );
        let fields = product_fields(&Wire::parse(V2_BODY).unwrap());
        assert_eq!(fields[&FieldName::new("name")], Wire::Text("Café mug".into()));
    }

    #[test]
    fn product_without_sku_is_ignored() {
        let body = br#"{"id":7001,"type":"simple","name":"Gift card","sku":"","regular_price":"25.00"}"#;
        let normalized = format(&["s"])
            .normalize(&product_request(body, "product.updated"))
            .unwrap();
        assert!(matches!(normalized, Normalized::Ignored { .. }), "{normalized:?}");
    }

    #[test]
    fn variation_payload_becomes_parent_notice() {
        let body = br#"{"id":7005,"type":"variation","parent_id":7000,"sku":"MUG-LATE","regular_price":"9.00"}"#;
        let normalized = format(&["s"])
            .normalize(&product_request(body, "product.updated"))
            .unwrap();
        let Normalized::Notices(notices) = normalized else {
            panic!("expected a notice, got {normalized:?}");
        };
        assert_eq!(notices[0].resource, "products/7000");
        let orphan = br#"{"id":7005,"type":"variation","parent_id":0,"sku":"MUG-LATE"}"#;
        let result = format(&["s"]).normalize(&product_request(orphan, "product.updated"));
        assert!(matches!(result, Err(Rejection::Malformed { .. })), "{result:?}");
    }

    #[test]
    fn gmt_time_with_zone_is_read() {
        assert_eq!(
            parse_gmt("2025-06-01T10:00:00Z"),
            Some(Utc.with_ymd_and_hms(2025, 6, 1, 10, 0, 0).unwrap())
        );
        assert_eq!(parse_gmt("yesterday"), None);
    }

    #[test]
    fn creation_ping_is_verified_and_ignored() {
        let format = format(&[V2_SECRET]);
        for headers in [
            [("content-type", "application/x-www-form-urlencoded; charset=UTF-8")].as_slice(),
            [("user-agent", "WooCommerce/9.8.0 Hookshot (WordPress/6.8)")].as_slice(),
        ] {
            let ping = request(b"webhook_id=42", headers);
            assert_eq!(format.verify(&ping), Ok(()));
            assert_eq!(
                format.normalize(&ping).unwrap(),
                Normalized::Ignored {
                    topic: PING_TOPIC.to_owned()
                }
            );
        }
    }

    #[test]
    fn ping_shaped_json_still_needs_signature() {
        let json = request(b"webhook_id=42", &[("content-type", "application/json")]);
        assert!(format(&[V2_SECRET]).verify(&json).is_err());
        let longer = request(
            b"webhook_id=42&x=1",
            &[("content-type", "application/x-www-form-urlencoded")],
        );
        assert!(format(&[V2_SECRET]).verify(&longer).is_err());
    }

    #[test]
    fn dst_day_time_comes_from_gmt_member() {
        let body = br#"{"id":9002,"sku":"MUG-DST","date_modified":"2025-03-09T02:30:00","date_modified_gmt":"2025-03-09T07:30:00"}"#;
        let changes = changes(
            format(&["s"])
                .normalize(&product_request(body, "product.updated"))
                .unwrap(),
        );
        assert_eq!(
            changes[0].occurred_at,
            Utc.with_ymd_and_hms(2025, 3, 9, 7, 30, 0).unwrap()
        );
    }

    #[test]
    fn missing_gmt_time_falls_back_to_receipt() {
        let body = br#"{"id":9003,"sku":"A","date_modified":"2025-03-09T02:30:00"}"#;
        let changes = changes(
            format(&["s"])
                .normalize(&product_request(body, "product.updated"))
                .unwrap(),
        );
        assert_eq!(
            changes[0].occurred_at,
            Utc.with_ymd_and_hms(2025, 6, 2, 9, 30, 0).unwrap()
        );
    }

    #[test]
    fn simple_product_maps_canonical_fields() {
        let body = br#"{"id":7010,"type":"simple","sku":"MUG-RED","name":"Red mug","slug":"red-mug","status":"draft","regular_price":"12.50","sale_price":"","price":"12.50","manage_stock":true,"stock_quantity":7,"description":"<p>Mug<\/p>","images":[{"id":1,"src":"https:\/\/shop.example\/a.jpg"}],"meta_data":[{"id":5,"key":"_yoast_wpseo_title","value":"Red mug | Shop"},{"id":6,"key":"_yoast_wpseo_metadesc","value":"A red mug"},{"id":7,"key":"_other","value":"x"}],"date_modified_gmt":"2025-06-01T10:00:00"}"#;
        let changes = changes(
            format(&["s"])
                .normalize(&product_request(body, "product.created"))
                .unwrap(),
        );
        let change = &changes[0];
        let field = |name: &str| change.fields.get(&FieldName::new(name)).cloned();
        assert_eq!(change.record.to_string(), "demo/product/MUG-RED");
        assert_eq!(field("name"), Some(Wire::Text("Red mug".into())));
        assert_eq!(field("price"), Some(Wire::Text("12.50".into())));
        assert_eq!(field("inventory"), Some(Wire::Number("7".into())));
        assert_eq!(field("handle"), Some(Wire::Text("red-mug".into())));
        assert_eq!(field("published"), Some(Wire::Bool(false)));
        assert_eq!(field("description"), Some(Wire::Text("<p>Mug</p>".into())));
        assert_eq!(
            field("images"),
            Some(Wire::List(vec![Wire::Text("https://shop.example/a.jpg".into())]))
        );
        assert_eq!(field("meta_title"), Some(Wire::Text("Red mug | Shop".into())));
        assert_eq!(field("meta_description"), Some(Wire::Text("A red mug".into())));
        assert_eq!(field("sale_price"), None);
        assert_eq!(change.occurred_at, Utc.with_ymd_and_hms(2025, 6, 1, 10, 0, 0).unwrap());
    }

    #[test]
    fn empty_price_and_unmanaged_stock_are_absent() {
        let body = br#"{"id":7011,"sku":"B","regular_price":"","manage_stock":false,"stock_quantity":null}"#;
        let changes = changes(
            format(&["s"])
                .normalize(&product_request(body, "product.updated"))
                .unwrap(),
        );
        assert!(!changes[0].fields.contains_key(&FieldName::new("price")));
        assert!(!changes[0].fields.contains_key(&FieldName::new("inventory")));
    }

    #[test]
    fn numeric_price_stays_a_wire_number() {
        let body = br#"{"id":7012,"sku":"C","regular_price":5}"#;
        let changes = changes(
            format(&["s"])
                .normalize(&product_request(body, "product.updated"))
                .unwrap(),
        );
        assert_eq!(changes[0].fields[&FieldName::new("price")], Wire::Number("5".into()));
    }

    #[test]
    fn variable_product_becomes_notice() {
        let body =
            br#"{"id":7000,"type":"variable","variations":[7001,7002],"date_modified_gmt":"2025-06-02T09:00:00"}"#;
        let Normalized::Notices(notices) = format(&["s"])
            .normalize(&product_request(body, "product.updated"))
            .unwrap()
        else {
            panic!("expected a notice");
        };
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].resource, "products/7000");
        assert_eq!(notices[0].kind, NoticeKind::Updated);
        assert_eq!(notices[0].entity.as_str(), "product");
        assert_eq!(
            notices[0].occurred_at,
            Utc.with_ymd_and_hms(2025, 6, 2, 9, 0, 0).unwrap()
        );
    }

    #[test]
    fn deleted_and_unknown_topics_are_ignored() {
        for topic in ["product.deleted", "order.created", "coupon.updated"] {
            let normalized = format(&["s"])
                .normalize(&product_request(b"{\"id\":1}", topic))
                .unwrap();
            assert_eq!(
                normalized,
                Normalized::Ignored {
                    topic: topic.to_owned()
                }
            );
        }
    }

    #[test]
    fn malformed_body_is_rejected() {
        for body in [b"{\"id\":".as_slice(), b"[1]", b"{\"name\":\"x\"}"] {
            let result = format(&["s"]).normalize(&product_request(body, "product.updated"));
            assert!(matches!(result, Err(Rejection::Malformed { .. })), "{result:?}");
        }
    }

    #[test]
    fn event_id_falls_back_to_hash() {
        let body = br#"{"id":7013,"sku":"D"}"#;
        let without_delivery_id = request(body, &[("x-wc-webhook-topic", "product.updated")]);
        let first = changes(format(&["s"]).normalize(&without_delivery_id).unwrap());
        let again = changes(format(&["s"]).normalize(&without_delivery_id).unwrap());
        assert!(first[0].event_id.starts_with("sha256:"));
        assert_eq!(first[0].event_id, again[0].event_id);
    }
}
