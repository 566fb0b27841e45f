//! Thin BigCommerce webhook payloads, signed with Standard Webhooks headers.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::delivery::{hmac_sha256_base64, new_uuid, OutgoingEvent, SignHeaders};

/// Signs each attempt: `webhook-id` (the event's, equal across retries), `webhook-timestamp`
/// (the attempt's time in Unix seconds) and `webhook-signature` (`v1,` and the base64
/// HMAC-SHA256 of `{id}.{timestamp}.{body}` keyed with the client secret's UTF-8 bytes).
pub(crate) struct StandardWebhooksSigner {
    pub(crate) client_secret: String,
}

impl SignHeaders for StandardWebhooksSigner {
    fn headers(&self, event: &OutgoingEvent, _attempt: u32) -> Vec<(String, String)> {
        let timestamp = Utc::now().timestamp().to_string();
        let signature = hmac_sha256_base64(
            self.client_secret.as_bytes(),
            &[event.event_id.as_bytes(), b".", timestamp.as_bytes(), b".", &event.body],
        );
        vec![
            ("content-type".to_owned(), "application/json".to_owned()),
            ("webhook-id".to_owned(), event.event_id.clone()),
            ("webhook-timestamp".to_owned(), timestamp),
            ("webhook-signature".to_owned(), format!("v1,{signature}")),
        ]
    }
}

/// A change that a webhook reports, as the `scope` and `data` of its payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Change {
    ProductCreated {
        product_id: u64,
    },
    ProductUpdated {
        product_id: u64,
    },
    SkuUpdated {
        product_id: u64,
        variant_id: u64,
    },
    /// An inventory change through the API or the control panel: `method` is `absolute` or
    /// `relative`, and `value` the level or the difference.
    SkuInventory {
        product_id: u64,
        variant_id: u64,
        method: &'static str,
        value: i64,
    },
    /// An inventory change made by an order.
    SkuInventoryOrder {
        product_id: u64,
        variant_id: u64,
        value: i64,
    },
}

impl Change {
    pub(crate) fn scope(&self) -> &'static str {
        match self {
            Change::ProductCreated { .. } => "store/product/created",
            Change::ProductUpdated { .. } => "store/product/updated",
            Change::SkuUpdated { .. } => "store/sku/updated",
            Change::SkuInventory { .. } => "store/sku/inventory/updated",
            Change::SkuInventoryOrder { .. } => "store/sku/inventory/order/updated",
        }
    }

    fn data(&self) -> serde_json::Value {
        match *self {
            Change::ProductCreated { product_id } | Change::ProductUpdated { product_id } => {
                serde_json::json!({"type": "product", "id": product_id})
            }
            Change::SkuUpdated { product_id, variant_id } => serde_json::json!({
                "type": "sku",
                "id": variant_id,
                "sku": {"product_id": product_id, "variant_id": variant_id}
            }),
            Change::SkuInventory {
                product_id,
                variant_id,
                method,
                value,
            } => serde_json::json!({
                "type": "sku",
                "id": variant_id,
                "inventory": {"product_id": product_id, "method": method, "value": value}
            }),
            Change::SkuInventoryOrder {
                product_id,
                variant_id,
                value,
            } => serde_json::json!({
                "type": "sku",
                "id": variant_id,
                "inventory": {"product_id": product_id, "method": "relative", "value": value}
            }),
        }
    }
}

/// Builds the event of one change. BigCommerce's `hash` is a SHA-1 of the payload; the sandbox
/// puts the first 20 bytes of a SHA-256 there, which no receiver checks.
pub(crate) fn event(change: &Change, store_id: &str, store_hash: &str, at: DateTime<Utc>) -> OutgoingEvent {
    let data = change.data();
    let digest = Sha256::digest(format!("{}{data}{}", change.scope(), at.timestamp()).as_bytes());
    let body = serde_json::json!({
        "scope": change.scope(),
        "store_id": store_id,
        "data": data,
        "hash": hex::encode(&digest[..20]),
        "created_at": at.timestamp(),
        "producer": format!("stores/{store_hash}"),
    });
    OutgoingEvent {
        topic: change.scope().to_owned(),
        event_id: format!("msg_{}", new_uuid().replace('-', "")),
        triggered_at: at,
        body: serde_json::to_vec(&body).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sku_inventory_payload_names_parent_product() {
        let change = Change::SkuInventory {
            product_id: 206,
            variant_id: 461,
            method: "absolute",
            value: 5,
        };
        let event = event(&change, "1000001", "abc123", Utc::now());
        let body: serde_json::Value = serde_json::from_slice(&event.body).unwrap();
        assert_eq!(body["scope"], "store/sku/inventory/updated");
        assert_eq!(body["data"]["inventory"]["product_id"], 206);
        assert_eq!(body["producer"], "stores/abc123");
        assert!(event.event_id.starts_with("msg_"));
    }

    #[test]
    fn signature_covers_id_timestamp_and_body() {
        let signer = StandardWebhooksSigner {
            client_secret: "secret".to_owned(),
        };
        let event = event(&Change::ProductUpdated { product_id: 1 }, "1", "h", Utc::now());
        let headers = signer.headers(&event, 1);
        let value = |name: &str| headers.iter().find(|(header, _)| header == name).unwrap().1.clone();
        let timestamp = value("webhook-timestamp");
        let expected = hmac_sha256_base64(
            b"secret",
            &[event.event_id.as_bytes(), b".", timestamp.as_bytes(), b".", &event.body],
        );
        assert_eq!(value("webhook-signature"), format!("v1,{expected}"));
        assert_eq!(value("webhook-id"), event.event_id);
    }
}
