//! fieldsync's signed JSON webhook format, for ERPs that post events from a script or outbox.
//!
//! A sender signs each delivery so the receiver can check origin and freshness:
//!
//! - `X-Fieldsync-Timestamp`: Unix seconds when the delivery was signed.
//! - `X-Fieldsync-Signature`: one or more `v1=<base64>` entries, separated by spaces or commas
//!   (a header repeated on several lines arrives comma-joined), each the
//!   HMAC-SHA256, keyed with the shared secret, of `<timestamp>.<raw body>`. Several entries let
//!   a sender sign with the old and the new secret during a rotation.
//! - `X-Fieldsync-Event-Id`: the event id, identical on every retry of the event.
//!
//! The body is `{"id", "type", "occurred_at" (RFC 3339), "data"}`. Types `item.created` and
//! `item.updated` carry an item keyed by its `number` (the SKU); `sales_order.created` and
//! `sales_order.updated` carry an order keyed by its `external_id` (`order:<storefront id>`).
//! `customer.*`, `quote.*`, `shipment.*` and `return.*` carry a document keyed by its
//! `external_id` without the `<entity>:` prefix, or by its ERP `number` when fieldsync did not
//! create it (a shipment, say).
//! A NetSuite SuiteScript, a Business Central extension or any script that can compute an HMAC
//! can produce this format.

use std::collections::BTreeMap;

use chrono::Duration;

use crate::change::ChangeSet;
use crate::ids::{FieldName, RecordKey, SystemId};
use crate::ingest::{parse_offset_time, InboundRequest, Normalized, Rejection, WebhookFormat};
use crate::secret::Secret;
use crate::signature;
use crate::wire::Wire;

use super::{canonical_lines, canonical_rows, document_fields, document_key, put};

/// The signed JSON format for one sender.
#[derive(Debug, Clone)]
pub struct SignedJsonFormat {
    pub integration: String,
    pub source: SystemId,
    /// Accepted secrets; more than one during a rotation.
    pub secrets: Vec<Secret>,
    /// How far the signed timestamp may be from the receive time, either way.
    pub tolerance: Duration,
}

impl WebhookFormat for SignedJsonFormat {
    fn source(&self) -> &SystemId {
        &self.source
    }

    fn verify(&self, request: &InboundRequest) -> Result<(), Rejection> {
        let unauthorized = |reason: &str| Rejection::Unauthorized {
            reason: reason.to_owned(),
        };
        let timestamp = request
            .header("x-fieldsync-timestamp")
            .ok_or_else(|| unauthorized("missing X-Fieldsync-Timestamp"))?;
        let seconds: i64 = timestamp
            .trim()
            .parse()
            .map_err(|_| unauthorized("X-Fieldsync-Timestamp is not Unix seconds"))?;
        let skew = request.received_at.timestamp().abs_diff(seconds);
        if skew > self.tolerance.num_seconds().unsigned_abs() {
            return Err(unauthorized("X-Fieldsync-Timestamp is outside the tolerance"));
        }

        let header = request
            .header("x-fieldsync-signature")
            .ok_or_else(|| unauthorized("missing X-Fieldsync-Signature"))?;
        let signed: [&[u8]; 3] = [timestamp.trim().as_bytes(), b".", &request.body];
        let matched = header
            .split([' ', ','])
            .filter_map(|entry| entry.strip_prefix("v1="))
            .any(|candidate| {
                self.secrets
                    .iter()
                    .any(|secret| signature::matches_base64(secret.expose().as_bytes(), &signed, candidate))
            });
        if matched {
            Ok(())
        } else {
            Err(unauthorized("X-Fieldsync-Signature does not match"))
        }
    }

    fn normalize(&self, request: &InboundRequest) -> Result<Normalized, Rejection> {
        let malformed = |reason: String| Rejection::Malformed { reason };
        let body = Wire::parse(&request.body).map_err(|error| malformed(format!("body is not JSON: {error}")))?;
        let kind = body
            .get("type")
            .and_then(Wire::as_text)
            .ok_or_else(|| malformed("missing \"type\"".to_owned()))?;
        let entity = match kind {
            "item.created" | "item.updated" => "product",
            "sales_order.created" | "sales_order.updated" => "order",
            "customer.created" | "customer.updated" => "customer",
            "quote.created" | "quote.updated" => "quote",
            "shipment.created" | "shipment.updated" => "shipment",
            "return.created" | "return.updated" => "return",
            other => {
                return Ok(Normalized::Ignored {
                    topic: other.to_owned(),
                })
            }
        };
        let event_id = body
            .get("id")
            .and_then(Wire::as_key)
            .or_else(|| request.header("x-fieldsync-event-id").map(str::to_owned))
            .ok_or_else(|| malformed("missing event \"id\"".to_owned()))?;
        let occurred_at = body
            .get("occurred_at")
            .and_then(Wire::as_text)
            .and_then(parse_offset_time)
            .ok_or_else(|| malformed("missing or invalid \"occurred_at\" (RFC 3339 expected)".to_owned()))?;
        let data = body.get("data").filter(|data| matches!(data, Wire::Map(_)));
        let data = data.ok_or_else(|| malformed("missing \"data\" object".to_owned()))?;

        let (key, external_id, fields) = match entity {
            "product" => {
                let key = data
                    .get("number")
                    .and_then(Wire::as_key)
                    .ok_or_else(|| malformed("item has no \"number\"".to_owned()))?;
                (key, data.get("id").and_then(Wire::as_key), item_fields(data))
            }
            "customer" | "quote" | "shipment" | "return" => {
                let number = data.get("number").and_then(Wire::as_key);
                let key = document_key(entity, data, number.clone())
                    .ok_or_else(|| malformed(format!("{kind} has no \"number\"")))?;
                let skip = ["number", "last_modified", "version", "sales_order"];
                (key, number, document_fields(data, &skip, &[], "unit_price"))
            }
            _ => {
                let external = data.get("external_id").and_then(Wire::as_key);
                let Some(key) = external
                    .as_deref()
                    .and_then(|id| id.strip_prefix("order:"))
                    .map(str::to_owned)
                else {
                    return Ok(Normalized::Ignored {
                        topic: format!("{kind} without a storefront external_id"),
                    });
                };
                (key, data.get("number").and_then(Wire::as_key), order_fields(data))
            }
        };
        Ok(Normalized::Changes(vec![ChangeSet {
            record: RecordKey::new(self.integration.as_str(), entity, key),
            source: self.source.clone(),
            event_id,
            occurred_at,
            received_at: request.received_at,
            external_id,
            fields,
        }]))
    }
}

fn item_fields(item: &Wire) -> BTreeMap<FieldName, Wire> {
    let mut fields = BTreeMap::new();
    put(&mut fields, "name", item.get("description"));
    put(&mut fields, "price", item.get("unit_price"));
    put(&mut fields, "inventory", item.get("inventory"));
    put(&mut fields, "meta_title", item.get("meta_title"));
    put(&mut fields, "meta_description", item.get("meta_description"));
    if let Some(prices) = item.get("customer_prices") {
        let canonical = canonical_rows(
            prices,
            &[("customer", "customer", false), ("unit_price", "unit_price", true)],
        );
        fields.insert(FieldName::new("customer_prices"), canonical);
    }
    fields
}

fn order_fields(order: &Wire) -> BTreeMap<FieldName, Wire> {
    let mut fields = BTreeMap::new();
    put(&mut fields, "email", order.get("customer_email"));
    put(&mut fields, "total", order.get("total"));
    put(&mut fields, "financial_status", order.get("financial_status"));
    put(&mut fields, "note", order.get("note"));
    put(&mut fields, "status", order.get("status"));
    put(&mut fields, "quote", order.get("quote"));
    put(&mut fields, "customer", order.get("customer"));
    if let Some(lines) = order.get("lines") {
        fields.insert(FieldName::new("lines"), canonical_lines(lines, "unit_price"));
    }
    fields
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;

    const SECRET: &str = "erp_secret";

    fn format() -> SignedJsonFormat {
        SignedJsonFormat {
            integration: "demo".into(),
            source: "erp".into(),
            secrets: vec![Secret::new("old_secret"), Secret::new(SECRET)],
            tolerance: Duration::seconds(300),
        }
    }

    fn signed(body: &[u8], timestamp: i64, secret: &str) -> InboundRequest {
        let stamp = timestamp.to_string();
        let signature = signature::hmac_sha256_base64(secret.as_bytes(), &[stamp.as_bytes(), b".", body]);
        let headers = [
            ("x-fieldsync-timestamp", stamp.clone()),
            ("x-fieldsync-signature", format!("v1=AAAA v1={signature}")),
        ];
        InboundRequest {
            headers: headers
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
            query: BTreeMap::new(),
            body: body.to_vec(),
            received_at: Utc.timestamp_opt(1_750_000_000, 0).unwrap(),
        }
    }

    const ITEM: &[u8] = br#"{"id":"evt-1","type":"item.updated","occurred_at":"2025-06-01T12:00:00+02:00","data":{"number":"MUG-RED","id":"ITEM-1","unit_price":19.990,"customer_prices":[{"customer":"C-1","unit_price":17.5}]}}"#;

    #[test]
    fn any_entry_with_any_secret_verifies() {
        assert_eq!(format().verify(&signed(ITEM, 1_750_000_000, SECRET)), Ok(()));
        assert_eq!(format().verify(&signed(ITEM, 1_750_000_000, "old_secret")), Ok(()));
    }

    #[test]
    fn comma_joined_entries_verify() {
        let mut request = signed(ITEM, 1_750_000_000, SECRET);
        let header = request.headers.get_mut("x-fieldsync-signature").unwrap();
        *header = header.replace(' ', ", ");
        assert_eq!(format().verify(&request), Ok(()));
    }

    #[test]
    fn wrong_secret_is_unauthorized() {
        assert!(matches!(
            format().verify(&signed(ITEM, 1_750_000_000, "nope")),
            Err(Rejection::Unauthorized { .. })
        ));
    }

    #[test]
    fn timestamp_outside_tolerance_is_unauthorized() {
        let late = signed(ITEM, 1_750_000_000 - 301, SECRET);
        assert!(matches!(format().verify(&late), Err(Rejection::Unauthorized { .. })));
        assert_eq!(format().verify(&signed(ITEM, 1_750_000_000 - 300, SECRET)), Ok(()));
    }

    #[test]
    fn extreme_timestamp_is_unauthorized_not_wrapped() {
        // `now - i64::MIN + now` would wrap to a small skew without the unsigned difference.
        let forged = signed(ITEM, i64::MIN + 1_750_000_000, SECRET);
        assert!(matches!(format().verify(&forged), Err(Rejection::Unauthorized { .. })));
        let minimum = signed(ITEM, i64::MIN, SECRET);
        assert!(matches!(format().verify(&minimum), Err(Rejection::Unauthorized { .. })));
    }

    #[test]
    fn item_keeps_exact_money_text() {
        let Normalized::Changes(changes) = format().normalize(&signed(ITEM, 0, SECRET)).unwrap() else {
            panic!("expected changes");
        };
        let change = &changes[0];
        assert_eq!(change.record.key, "MUG-RED");
        assert_eq!(change.event_id, "evt-1");
        assert_eq!(change.occurred_at, Utc.with_ymd_and_hms(2025, 6, 1, 10, 0, 0).unwrap());
        assert_eq!(change.fields[&FieldName::new("price")], Wire::Number("19.990".into()));
        let prices = &change.fields[&FieldName::new("customer_prices")];
        assert_eq!(prices.pointer("/0/unit_price"), Some(&Wire::Text("17.5".into())));
    }

    #[test]
    fn missing_occurred_at_is_malformed() {
        let body = br#"{"id":"evt-1","type":"item.updated","data":{"number":"A"}}"#;
        assert!(matches!(
            format().normalize(&signed(body, 0, SECRET)),
            Err(Rejection::Malformed { .. })
        ));
    }

    #[test]
    fn unknown_type_is_ignored() {
        let body = br#"{"id":"evt-1","type":"vendor.updated","occurred_at":"2025-06-01T12:00:00Z","data":{}}"#;
        let normalized = format().normalize(&signed(body, 0, SECRET)).unwrap();
        assert_eq!(
            normalized,
            Normalized::Ignored {
                topic: "vendor.updated".into()
            }
        );
    }

    #[test]
    fn quote_is_keyed_by_external_id() {
        let body = br#"{"id":"evt-2","type":"quote.updated","occurred_at":"2025-06-01T12:00:00Z","data":{"number":"Q-1001","external_id":"quote:7001","status":"approved","total":115.00,"last_modified":"2025-06-01T12:00:00.000Z"}}"#;
        let Normalized::Changes(changes) = format().normalize(&signed(body, 0, SECRET)).unwrap() else {
            panic!("expected changes");
        };
        let change = &changes[0];
        assert_eq!(change.record.to_string(), "demo/quote/7001");
        assert_eq!(change.external_id.as_deref(), Some("Q-1001"));
        assert_eq!(change.fields[&FieldName::new("total")], Wire::Number("115.00".into()));
        assert_eq!(change.fields[&FieldName::new("status")], Wire::Text("approved".into()));
        assert!(!change.fields.contains_key(&FieldName::new("last_modified")));
    }

    #[test]
    fn erp_made_shipment_is_keyed_by_number() {
        let body = br#"{"id":"evt-3","type":"shipment.created","occurred_at":"2025-06-01T12:00:00Z","data":{"number":"SH-1001","external_id":null,"order":"5001","sales_order":"SO-1001","status":"shipped"}}"#;
        let Normalized::Changes(changes) = format().normalize(&signed(body, 0, SECRET)).unwrap() else {
            panic!("expected changes");
        };
        assert_eq!(changes[0].record.to_string(), "demo/shipment/SH-1001");
        assert_eq!(changes[0].fields[&FieldName::new("order")], Wire::Text("5001".into()));
        assert!(!changes[0].fields.contains_key(&FieldName::new("sales_order")));
    }
}
