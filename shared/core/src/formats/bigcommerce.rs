//! BigCommerce webhooks: Standard Webhooks signatures and thin catalog payloads.
//!
//! A delivery carries three headers: `webhook-id` (stable across the retries of one delivery),
//! `webhook-timestamp` (Unix seconds) and `webhook-signature`, a space-separated list of
//! `<version>,<base64>` entries. A `v1` entry is the HMAC-SHA256 of
//! `{webhook-id}.{webhook-timestamp}.{raw body}`, keyed with the UTF-8 bytes of the app's client
//! secret. One matching entry is enough, and entries of other versions are skipped.
//!
//! Payloads are thin: `{"scope":"store/product/updated","data":{"type":"product","id":111},
//! "created_at":1700000000,…}`. A SKU scope names the SKU and carries its parent product
//! (`data.inventory.product_id` for inventory scopes, `data.sku.product_id` otherwise). Every
//! product and SKU scope becomes a [`Notice`] whose resource is the parent product,
//! `catalog/products/{id}`, so several events of one product are resolved by one read of it.
//!
//! NOTE: the thin payload shape and the scope names come from BigCommerce's "HTTPS Webhooks
//! Overview" and "Webhook events" pages. Those pages do not describe a delivery signature. The
//! Standard Webhooks scheme here is the one this integration is configured for, so check it
//! against a real store's delivery headers before going live.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Duration, TimeZone, Utc};

use crate::change::{Notice, NoticeKind};
use crate::ids::{EntityType, SystemId};
use crate::ingest::{InboundRequest, Normalized, Rejection, WebhookFormat};
use crate::secret::Secret;
use crate::signature;
use crate::wire::Wire;

/// The resource prefix of a product, relative to `https://api.bigcommerce.com/stores/{hash}/v3/`.
pub const PRODUCT_RESOURCE_PREFIX: &str = "catalog/products/";

/// A source of the current time, injected so that tests can verify fixed vectors.
pub type Clock = Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>;

/// The BigCommerce webhook format for one store.
#[derive(Clone)]
pub struct BigCommerceFormat {
    pub integration: String,
    pub source: SystemId,
    /// The app client secrets that sign deliveries; two during a rotation.
    pub secrets: Vec<Secret>,
    /// How far `webhook-timestamp` may be from the clock's time, in either direction.
    pub tolerance: Duration,
    /// The time the timestamp is compared with.
    pub clock: Clock,
}

impl BigCommerceFormat {
    /// Builds the format with a 5 minute tolerance and the system clock.
    pub fn new(integration: impl Into<String>, source: SystemId, secrets: Vec<Secret>) -> Self {
        Self {
            integration: integration.into(),
            source,
            secrets,
            tolerance: Duration::minutes(5),
            clock: Arc::new(Utc::now),
        }
    }

    /// Replaces the clock, for tests that verify recorded deliveries.
    #[must_use]
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Tells whether any `v1` entry of `header` is the signature of `signed` under any secret.
    fn signature_matches(&self, header: &str, signed: &[&[u8]]) -> bool {
        let candidates = header
            .split_ascii_whitespace()
            .filter_map(|entry| entry.split_once(','))
            .filter(|(version, _)| *version == "v1")
            .map(|(_, candidate)| candidate);
        // Every pair is computed, so the time taken does not tell which entry or secret matched.
        let mut matched = false;
        for candidate in candidates {
            for secret in &self.secrets {
                matched |= signature::matches_base64(secret.expose().as_bytes(), signed, candidate);
            }
        }
        matched
    }
}

impl fmt::Debug for BigCommerceFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BigCommerceFormat")
            .field("integration", &self.integration)
            .field("source", &self.source)
            .field("secrets", &self.secrets)
            .field("tolerance", &self.tolerance)
            .finish_non_exhaustive()
    }
}

/// The kind of a scope and the payload member that names its product.
enum Scope {
    /// A product scope: `data.id` is the product.
    Product(NoticeKind),
    /// A SKU scope: the parent product is a member of `data`.
    Sku,
}

fn scope(name: &str) -> Option<Scope> {
    let scope = match name {
        "store/product/created" => Scope::Product(NoticeKind::Created),
        "store/product/updated" | "store/product/inventory/updated" | "store/product/inventory/order/updated" => {
            Scope::Product(NoticeKind::Updated)
        }
        "store/product/deleted" => Scope::Product(NoticeKind::Deleted),
        "store/sku/created"
        | "store/sku/updated"
        | "store/sku/inventory/updated"
        | "store/sku/inventory/order/updated" => Scope::Sku,
        _ => return None,
    };
    Some(scope)
}

/// Reads a catalog id: a JSON number or string of ASCII digits, so that it can be put in a
/// resource path as it is.
fn catalog_id(wire: Option<&Wire>) -> Option<String> {
    let id = wire?.as_key()?;
    let digits = !id.is_empty() && id.bytes().all(|byte| byte.is_ascii_digit());
    digits.then_some(id)
}

/// Reads `created_at`, Unix seconds.
fn created_at(body: &Wire) -> Option<DateTime<Utc>> {
    let seconds: i64 = body.get("created_at")?.as_key()?.parse().ok()?;
    Utc.timestamp_opt(seconds, 0).single()
}

impl WebhookFormat for BigCommerceFormat {
    fn source(&self) -> &SystemId {
        &self.source
    }

    fn verify(&self, request: &InboundRequest) -> Result<(), Rejection> {
        let unauthorized = |reason: &str| Rejection::Unauthorized {
            reason: reason.to_owned(),
        };
        let id = request
            .header("webhook-id")
            .ok_or_else(|| unauthorized("missing webhook-id header"))?;
        let timestamp = request
            .header("webhook-timestamp")
            .ok_or_else(|| unauthorized("missing webhook-timestamp header"))?;
        let header = request
            .header("webhook-signature")
            .ok_or_else(|| unauthorized("missing webhook-signature header"))?;

        let seconds: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| unauthorized("webhook-timestamp is not Unix seconds"))?;
        let skew = (self.clock)().timestamp().abs_diff(seconds);
        if skew > self.tolerance.num_seconds().unsigned_abs() {
            return Err(unauthorized("webhook-timestamp is outside the tolerance"));
        }

        let signed: [&[u8]; 5] = [id.as_bytes(), b".", timestamp.as_bytes(), b".", &request.body];
        if self.signature_matches(header, &signed) {
            Ok(())
        } else {
            Err(unauthorized("no v1 entry of webhook-signature matches"))
        }
    }

    fn normalize(&self, request: &InboundRequest) -> Result<Normalized, Rejection> {
        let malformed = |reason: String| Rejection::Malformed { reason };
        let body = Wire::parse(&request.body).map_err(|error| malformed(format!("body is not JSON: {error}")))?;
        let name = body
            .get("scope")
            .and_then(Wire::as_text)
            .ok_or_else(|| malformed("missing \"scope\"".to_owned()))?;
        let data = body
            .get("data")
            .filter(|data| matches!(data, Wire::Map(_)))
            .ok_or_else(|| malformed("missing \"data\" object".to_owned()))?;
        let Some(scope) = scope(name) else {
            return Ok(Normalized::Ignored { topic: name.to_owned() });
        };

        let (kind, product_id) = match scope {
            Scope::Product(kind) => (kind, catalog_id(data.get("id"))),
            Scope::Sku => {
                let parent = data
                    .pointer("/inventory/product_id")
                    .or_else(|| data.pointer("/sku/product_id"))
                    .or_else(|| data.get("product_id"));
                (NoticeKind::Updated, catalog_id(parent))
            }
        };
        let product_id = product_id.ok_or_else(|| malformed(format!("{name} payload names no numeric product id")))?;
        let event_id = request
            .header("webhook-id")
            .ok_or_else(|| malformed("missing webhook-id header".to_owned()))?;

        Ok(Normalized::Notices(vec![Notice {
            integration: self.integration.clone(),
            source: self.source.clone(),
            entity: EntityType::new("product"),
            resource: format!("{PRODUCT_RESOURCE_PREFIX}{product_id}"),
            kind,
            event_id: event_id.to_owned(),
            occurred_at: created_at(&body).unwrap_or(request.received_at),
            received_at: request.received_at,
        }]))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    const SECRET: &str = "bc_example_client_secret";
    const VECTOR_SIGNATURE: &str = "v1,IE6hLYuWaaidICWR3xzTdCnIBRsOKfOfbX1f+vHybNw=";

    fn vector_body() -> Vec<u8> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/signatures/bigcommerce-v3.body"
        );
        std::fs::read(path).unwrap()
    }

    fn format_at(seconds: i64) -> BigCommerceFormat {
        let now = Utc.timestamp_opt(seconds, 0).unwrap();
        BigCommerceFormat::new("demo", SystemId::new("storefront"), vec![Secret::new(SECRET)])
            .with_clock(Arc::new(move || now))
    }

    fn request(body: &[u8], id: &str, timestamp: &str, signature: &str) -> InboundRequest {
        let headers = [
            ("webhook-id", id),
            ("webhook-timestamp", timestamp),
            ("webhook-signature", signature),
        ];
        InboundRequest {
            headers: headers
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect(),
            query: BTreeMap::new(),
            body: body.to_vec(),
            received_at: Utc.timestamp_opt(1_700_000_003, 0).unwrap(),
        }
    }

    fn vector_request(signature: &str) -> InboundRequest {
        request(&vector_body(), "msg_example_0001", "1700000000", signature)
    }

    /// Signs `body` as BigCommerce does, for payloads other than the vector.
    fn signed(body: &str, id: &str) -> InboundRequest {
        let signature =
            signature::hmac_sha256_base64(SECRET.as_bytes(), &[id.as_bytes(), b".1700000000.", body.as_bytes()]);
        request(body.as_bytes(), id, "1700000000", &format!("v1,{signature}"))
    }

    fn notices(normalized: Normalized) -> Vec<Notice> {
        match normalized {
            Normalized::Notices(notices) => notices,
            other => panic!("expected notices, got {other:?}"),
        }
    }

    #[test]
    fn vector_verifies_with_clock_near_timestamp() {
        assert_eq!(
            format_at(1_700_000_004).verify(&vector_request(VECTOR_SIGNATURE)),
            Ok(())
        );
    }

    #[test]
    fn vector_is_stale_at_current_time() {
        let format = BigCommerceFormat::new("demo", SystemId::new("storefront"), vec![Secret::new(SECRET)]);
        let error = format.verify(&vector_request(VECTOR_SIGNATURE)).unwrap_err();
        assert_eq!(error.kind(), "unauthorized");
    }

    #[test]
    fn tolerance_applies_in_both_directions() {
        let request = vector_request(VECTOR_SIGNATURE);
        assert_eq!(format_at(1_700_000_300).verify(&request), Ok(()));
        assert_eq!(format_at(1_699_999_700).verify(&request), Ok(()));
        assert!(format_at(1_700_000_301).verify(&request).is_err());
        assert!(format_at(1_699_999_699).verify(&request).is_err());
    }

    #[test]
    fn vector_verifies_as_second_of_several_entries() {
        let header = format!("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA= {VECTOR_SIGNATURE} v1a,ignored");
        assert_eq!(format_at(1_700_000_004).verify(&vector_request(&header)), Ok(()));
    }

    #[test]
    fn other_version_prefix_is_ignored() {
        let header = VECTOR_SIGNATURE.replacen("v1,", "v2,", 1);
        assert!(format_at(1_700_000_004).verify(&vector_request(&header)).is_err());
    }

    #[test]
    fn changed_body_byte_is_unauthorized() {
        let mut body = vector_body();
        let position = body.iter().position(|byte| *byte == b'1').unwrap();
        body[position] = b'2';
        let request = request(&body, "msg_example_0001", "1700000000", VECTOR_SIGNATURE);
        let error = format_at(1_700_000_004).verify(&request).unwrap_err();
        assert_eq!(error.kind(), "unauthorized");
    }

    #[test]
    fn rotated_secret_still_verifies() {
        let mut format = format_at(1_700_000_004);
        format.secrets.insert(0, Secret::new("bc_new_client_secret"));
        assert_eq!(format.verify(&vector_request(VECTOR_SIGNATURE)), Ok(()));
    }

    #[test]
    fn missing_headers_are_unauthorized() {
        for header in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let mut request = vector_request(VECTOR_SIGNATURE);
            request.headers.remove(header);
            let error = format_at(1_700_000_004).verify(&request).unwrap_err();
            assert_eq!(error.kind(), "unauthorized", "{header}");
        }
    }

    #[test]
    fn product_update_becomes_product_notice() {
        let normalized = format_at(1_700_000_004)
            .normalize(&vector_request(VECTOR_SIGNATURE))
            .unwrap();
        let notices = notices(normalized);
        assert_eq!(notices.len(), 1);
        let notice = &notices[0];
        assert_eq!(notice.resource, "catalog/products/111");
        assert_eq!(notice.kind, NoticeKind::Updated);
        assert_eq!(notice.entity, EntityType::new("product"));
        assert_eq!(notice.event_id, "msg_example_0001");
        assert_eq!(notice.occurred_at, Utc.timestamp_opt(1_700_000_000, 0).unwrap());
        assert_eq!(notice.source, SystemId::new("storefront"));
    }

    #[test]
    fn sku_inventory_names_parent_product() {
        let body = r#"{"scope":"store/sku/inventory/updated","store_id":"1000001","data":{"type":"sku","id":461,"inventory":{"product_id":206,"method":"absolute","value":5}},"hash":"x","created_at":1700000000,"producer":"stores/abc123"}"#;
        let notices = notices(format_at(1_700_000_000).normalize(&signed(body, "msg_1")).unwrap());
        assert_eq!(notices[0].resource, "catalog/products/206");
        assert_eq!(notices[0].kind, NoticeKind::Updated);
    }

    #[test]
    fn sku_update_names_parent_product() {
        let body = r#"{"scope":"store/sku/updated","data":{"type":"sku","id":461,"sku":{"product_id":206,"variant_id":509}},"created_at":1700000000}"#;
        let notices = notices(format_at(1_700_000_000).normalize(&signed(body, "msg_2")).unwrap());
        assert_eq!(notices[0].resource, "catalog/products/206");
    }

    #[test]
    fn events_of_one_product_share_resource() {
        let format = format_at(1_700_000_000);
        let bodies = [
            r#"{"scope":"store/product/updated","data":{"type":"product","id":206},"created_at":1700000000}"#,
            r#"{"scope":"store/product/inventory/order/updated","data":{"type":"product","id":206,"inventory":{"product_id":206,"method":"relative","value":-1}},"created_at":1700000001}"#,
            r#"{"scope":"store/sku/inventory/updated","data":{"type":"sku","id":461,"inventory":{"product_id":206,"method":"absolute","value":5}},"created_at":1700000002}"#,
        ];
        let resources: Vec<String> = bodies
            .iter()
            .enumerate()
            .map(|(n, body)| {
                notices(format.normalize(&signed(body, &format!("msg_{n}"))).unwrap())[0]
                    .resource
                    .clone()
            })
            .collect();
        assert_eq!(resources, vec!["catalog/products/206"; 3]);
    }

    #[test]
    fn product_deleted_is_deleted_notice() {
        let body = r#"{"scope":"store/product/deleted","data":{"type":"product","id":111},"created_at":1700000000}"#;
        let notices = notices(format_at(1_700_000_000).normalize(&signed(body, "msg_3")).unwrap());
        assert_eq!(notices[0].kind, NoticeKind::Deleted);
    }

    #[test]
    fn product_created_is_created_notice() {
        let body = r#"{"scope":"store/product/created","data":{"type":"product","id":112},"created_at":1700000000}"#;
        let notices = notices(format_at(1_700_000_000).normalize(&signed(body, "msg_4")).unwrap());
        assert_eq!(notices[0].kind, NoticeKind::Created);
    }

    #[test]
    fn unknown_scope_is_ignored() {
        let body = r#"{"scope":"store/order/created","data":{"type":"order","id":5001},"created_at":1700000000}"#;
        let normalized = format_at(1_700_000_000).normalize(&signed(body, "msg_5")).unwrap();
        assert_eq!(
            normalized,
            Normalized::Ignored {
                topic: "store/order/created".to_owned()
            }
        );
    }

    #[test]
    fn unexpected_bodies_are_malformed() {
        for body in [
            "not json",
            r#"{"data":{"type":"product","id":1}}"#,
            r#"{"scope":"store/product/updated"}"#,
            r#"{"scope":"store/product/updated","data":{"type":"product","id":"../1"}}"#,
            r#"{"scope":"store/sku/updated","data":{"type":"sku","id":461}}"#,
        ] {
            let error = format_at(1_700_000_000).normalize(&signed(body, "msg_6")).unwrap_err();
            assert_eq!(error.kind(), "malformed", "{body}");
        }
    }

    #[test]
    fn debug_output_hides_secrets() {
        let text = format!("{:?}", format_at(0));
        assert!(!text.contains(SECRET));
    }
}
