//! NetSuite's signed outbox deliveries, sent by fieldsync's SuiteScripts (`infra/netsuite/`).
//!
//! A user event script records each inventory item change in an outbox custom record, and a
//! map/reduce script posts the undelivered rows in batches:
//!
//! - `X-Fieldsync-Netsuite-Timestamp`: Unix seconds when the batch was signed.
//! - `X-Fieldsync-Netsuite-Signature`: one or more `v1=<base64>` entries, separated by spaces or
//!   commas, each the HMAC-SHA256, keyed with a shared secret, of `<timestamp>.<raw body>`.
//!   Several entries let the script sign with the old and the new secret during a rotation.
//!
//! The body is `{"account", "deliveryId", "events": [...]}`, and each event is
//! `{"eventId", "recordType", "id", "externalId", "type", "occurredAt", "fields"}`. `type` is the
//! user event type (`create`, `edit`, `xedit`, `delete`), `id` the item's internal id and
//! `fields` the item's values under their SuiteScript field ids: `itemid` (the SKU, the record
//! key), `displayname`, `baseprice`, `quantityavailable`, `pagetitle` and `metadescription`.
//!
//! Each `inventoryitem` event becomes one change set. Events of other record types, and
//! `delete` events, are skipped: fieldsync does not delete products, so a person removes the
//! storefront product of a deleted item. A delivery whose events are all skipped is
//! acknowledged as ignored, and the receiver logs it. A skipped event in a delivery that also
//! has changes is not logged. `docs/netsuite.md` describes the format for people installing the
//! scripts.

use std::collections::BTreeMap;

use chrono::Duration;

use crate::change::ChangeSet;
use crate::ids::{RecordKey, SystemId};
use crate::ingest::{parse_offset_time, InboundRequest, Normalized, Rejection, WebhookFormat};
use crate::secret::Secret;
use crate::signature;
use crate::wire::Wire;

use super::put;

/// The header carrying the signing time in Unix seconds.
pub const TIMESTAMP_HEADER: &str = "X-Fieldsync-Netsuite-Timestamp";

/// The header carrying the `v1=<base64>` signature entries.
pub const SIGNATURE_HEADER: &str = "X-Fieldsync-Netsuite-Signature";

/// The record type of the events that become change sets, as `record.Type.INVENTORY_ITEM` names it.
const INVENTORY_ITEM: &str = "inventoryitem";

/// Outbox member → canonical field.
const ITEM_FIELDS: &[(&str, &str)] = &[
    ("displayname", "name"),
    ("baseprice", "price"),
    ("quantityavailable", "inventory"),
    ("pagetitle", "meta_title"),
    ("metadescription", "meta_description"),
];

/// The signed outbox format for one NetSuite account.
#[derive(Debug, Clone)]
pub struct NetSuiteFormat {
    pub integration: String,
    pub source: SystemId,
    /// Accepted secrets; more than one during a rotation.
    pub secrets: Vec<Secret>,
    /// How far the signed timestamp may be from the receive time, either way.
    pub tolerance: Duration,
}

impl NetSuiteFormat {
    /// Builds the format with the 5 minute tolerance the scripts are written for.
    pub fn new(integration: impl Into<String>, source: impl Into<SystemId>, secrets: Vec<Secret>) -> Self {
        Self {
            integration: integration.into(),
            source: source.into(),
            secrets,
            tolerance: Duration::minutes(5),
        }
    }

    /// Reads one event into a change set, or `None` for an event fieldsync skips.
    fn change(&self, event: &Wire, request: &InboundRequest) -> Result<Option<ChangeSet>, Rejection> {
        let malformed = |reason: String| Rejection::Malformed { reason };
        // Events of other record types are skipped before any check, so a malformed one does not
        // make the items of the same delivery fail.
        let record_type = event.get("recordType").and_then(Wire::as_text).unwrap_or_default();
        if !record_type.eq_ignore_ascii_case(INVENTORY_ITEM) {
            return Ok(None);
        }
        let event_id = event
            .get("eventId")
            .and_then(Wire::as_key)
            .ok_or_else(|| malformed("item event without \"eventId\"".to_owned()))?;
        match event.get("type").and_then(Wire::as_text) {
            Some("create" | "edit" | "xedit") => {}
            Some(_) => return Ok(None),
            None => return Err(malformed(format!("event {event_id} has no \"type\""))),
        }
        let occurred_at = event
            .get("occurredAt")
            .and_then(Wire::as_text)
            .and_then(parse_offset_time)
            .ok_or_else(|| {
                malformed(format!(
                    "event {event_id} has no valid \"occurredAt\" (RFC 3339 expected)"
                ))
            })?;
        let values = event
            .get("fields")
            .filter(|fields| matches!(fields, Wire::Map(_)))
            .ok_or_else(|| malformed(format!("event {event_id} has no \"fields\" object")))?;
        let sku = values
            .get("itemid")
            .and_then(Wire::as_key)
            .ok_or_else(|| malformed(format!("event {event_id} has no \"fields.itemid\"")))?;

        let mut fields = BTreeMap::new();
        for (member, field) in ITEM_FIELDS {
            put(&mut fields, field, values.get(member));
        }
        Ok(Some(ChangeSet {
            record: RecordKey::new(self.integration.as_str(), "product", sku),
            source: self.source.clone(),
            event_id,
            occurred_at,
            received_at: request.received_at,
            external_id: event.get("id").and_then(Wire::as_key),
            fields,
        }))
    }
}

impl WebhookFormat for NetSuiteFormat {
    fn source(&self) -> &SystemId {
        &self.source
    }

    fn verify(&self, request: &InboundRequest) -> Result<(), Rejection> {
        let unauthorized = |reason: String| Rejection::Unauthorized { reason };
        let timestamp = request
            .header(TIMESTAMP_HEADER)
            .map(str::trim)
            .ok_or_else(|| unauthorized(format!("missing {TIMESTAMP_HEADER}")))?;
        let seconds: i64 = timestamp
            .parse()
            .map_err(|_| unauthorized(format!("{TIMESTAMP_HEADER} is not Unix seconds")))?;
        let skew = request.received_at.timestamp().abs_diff(seconds);
        if skew > self.tolerance.num_seconds().unsigned_abs() {
            return Err(unauthorized(format!("{TIMESTAMP_HEADER} is outside the tolerance")));
        }

        let header = request
            .header(SIGNATURE_HEADER)
            .ok_or_else(|| unauthorized(format!("missing {SIGNATURE_HEADER}")))?;
        let signed: [&[u8]; 3] = [timestamp.as_bytes(), b".", &request.body];
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
            Err(unauthorized(format!("{SIGNATURE_HEADER} does not match")))
        }
    }

    fn normalize(&self, request: &InboundRequest) -> Result<Normalized, Rejection> {
        let malformed = |reason: String| Rejection::Malformed { reason };
        let body = Wire::parse(&request.body).map_err(|error| malformed(format!("body is not JSON: {error}")))?;
        let events = match body.get("events") {
            Some(events @ Wire::List(_)) => events.items(),
            _ => return Err(malformed("missing \"events\" list".to_owned())),
        };

        let mut changes = Vec::new();
        for event in events {
            if let Some(change) = self.change(event, request)? {
                changes.push(change);
            }
        }
        if changes.is_empty() {
            return Ok(Normalized::Ignored {
                topic: "netsuite outbox without inventory item changes".to_owned(),
            });
        }
        Ok(Normalized::Changes(changes))
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone, Utc};

    use super::*;
    use crate::ids::FieldName;

    const SECRET: &str = "netsuite_fake_secret";
    const NOW: i64 = 1_750_000_000;

    fn format() -> NetSuiteFormat {
        NetSuiteFormat::new(
            "demo",
            "erp",
            vec![Secret::new("netsuite_old_secret"), Secret::new(SECRET)],
        )
    }

    fn signed(body: &[u8], timestamp: i64, secret: &str) -> InboundRequest {
        let stamp = timestamp.to_string();
        let signature = signature::hmac_sha256_base64(secret.as_bytes(), &[stamp.as_bytes(), b".", body]);
        let headers = [
            ("x-fieldsync-netsuite-timestamp", stamp),
            ("x-fieldsync-netsuite-signature", format!("v1=AAAA v1={signature}")),
        ];
        InboundRequest {
            headers: headers
                .into_iter()
                .map(|(name, value)| (name.to_owned(), value))
                .collect(),
            query: BTreeMap::new(),
            body: body.to_vec(),
            received_at: Utc.timestamp_opt(NOW, 0).unwrap(),
        }
    }

    const BATCH: &[u8] = br#"{"account":"TSTDRV123","deliveryId":"dlv-1","events":[
        {"eventId":"ns-1","recordType":"inventoryitem","id":"501","externalId":"MUG-RED","type":"edit","occurredAt":"2025-06-01T10:00:00Z","fields":{"itemid":"MUG-RED","displayname":"Red mug","baseprice":12.50,"quantityavailable":40,"pagetitle":"Red mug | Shop","metadescription":"A red mug."}},
        {"eventId":"ns-2","recordType":"inventoryitem","id":"502","type":"create","occurredAt":"2025-06-01T10:00:01Z","fields":{"itemid":"MUG-BLUE","baseprice":"9.90"}},
        {"eventId":"ns-3","recordType":"inventoryitem","id":"503","type":"delete","occurredAt":"2025-06-01T10:00:02Z","fields":{"itemid":"MUG-OLD"}},
        {"eventId":"ns-4","recordType":"customer","id":"77","type":"edit","occurredAt":"2025-06-01T10:00:03Z","fields":{}}
    ]}"#;

    fn changes(body: &[u8]) -> Vec<ChangeSet> {
        match format().normalize(&signed(body, NOW, SECRET)).unwrap() {
            Normalized::Changes(changes) => changes,
            other => panic!("expected changes, got {other:?}"),
        }
    }

    #[test]
    fn any_entry_with_any_secret_verifies() {
        assert_eq!(format().verify(&signed(BATCH, NOW, SECRET)), Ok(()));
        assert_eq!(format().verify(&signed(BATCH, NOW, "netsuite_old_secret")), Ok(()));
    }

    #[test]
    fn comma_joined_entries_verify() {
        let mut request = signed(BATCH, NOW, SECRET);
        let header = request.headers.get_mut("x-fieldsync-netsuite-signature").unwrap();
        *header = header.replace(' ', ", ");
        assert_eq!(format().verify(&request), Ok(()));
    }

    #[test]
    fn wrong_secret_is_unauthorized() {
        let result = format().verify(&signed(BATCH, NOW, "wrong_secret"));
        assert!(matches!(result, Err(Rejection::Unauthorized { .. })), "{result:?}");
    }

    #[test]
    fn changed_body_is_unauthorized() {
        let mut request = signed(BATCH, NOW, SECRET);
        let text = String::from_utf8(request.body.clone()).unwrap();
        request.body = text.replacen("12.50", "1.25", 1).into_bytes();
        assert!(matches!(format().verify(&request), Err(Rejection::Unauthorized { .. })));
    }

    #[test]
    fn missing_headers_are_unauthorized() {
        for header in ["x-fieldsync-netsuite-timestamp", "x-fieldsync-netsuite-signature"] {
            let mut request = signed(BATCH, NOW, SECRET);
            request.headers.remove(header);
            assert!(
                matches!(format().verify(&request), Err(Rejection::Unauthorized { .. })),
                "without {header}"
            );
        }
    }

    #[test]
    fn timestamp_outside_tolerance_is_unauthorized() {
        let late = signed(BATCH, NOW - 301, SECRET);
        assert!(matches!(format().verify(&late), Err(Rejection::Unauthorized { .. })));
        let early = signed(BATCH, NOW + 301, SECRET);
        assert!(matches!(format().verify(&early), Err(Rejection::Unauthorized { .. })));
        assert_eq!(format().verify(&signed(BATCH, NOW - 300, SECRET)), Ok(()));
    }

    #[test]
    fn item_events_become_changes_keyed_by_itemid() {
        let changes = changes(BATCH);
        let keys: Vec<String> = changes.iter().map(|change| change.record.to_string()).collect();
        assert_eq!(keys, ["demo/product/MUG-RED", "demo/product/MUG-BLUE"]);

        let red = &changes[0];
        assert_eq!(red.event_id, "ns-1");
        assert_eq!(red.source, SystemId::new("erp"));
        assert_eq!(red.external_id.as_deref(), Some("501"));
        assert_eq!(red.occurred_at, Utc.with_ymd_and_hms(2025, 6, 1, 10, 0, 0).unwrap());
        assert_eq!(red.received_at, Utc.timestamp_opt(NOW, 0).unwrap());
        let field = |name: &str| red.fields.get(&FieldName::new(name)).cloned();
        assert_eq!(field("name"), Some(Wire::Text("Red mug".into())));
        assert_eq!(field("price"), Some(Wire::Number("12.50".into())));
        assert_eq!(field("inventory"), Some(Wire::Number("40".into())));
        assert_eq!(field("meta_title"), Some(Wire::Text("Red mug | Shop".into())));
        assert_eq!(field("meta_description"), Some(Wire::Text("A red mug.".into())));
        assert_eq!(red.fields.len(), 5);
    }

    #[test]
    fn price_given_as_text_stays_text() {
        let blue = &changes(BATCH)[1];
        assert_eq!(blue.fields[&FieldName::new("price")], Wire::Text("9.90".into()));
        assert!(!blue.fields.contains_key(&FieldName::new("name")));
    }

    #[test]
    fn events_of_one_delivery_dedupe_apart() {
        let changes = changes(BATCH);
        assert_ne!(changes[0].dedup_id(), changes[1].dedup_id());
    }

    #[test]
    fn only_skipped_events_are_ignored() {
        let body = br#"{"account":"A","deliveryId":"d","events":[{"eventId":"ns-3","recordType":"inventoryitem","id":"503","type":"delete","occurredAt":"2025-06-01T10:00:02Z","fields":{"itemid":"MUG-OLD"}},{"eventId":"ns-4","recordType":"salesorder","id":"9","type":"create","occurredAt":"2025-06-01T10:00:02Z","fields":{}}]}"#;
        let normalized = format().normalize(&signed(body, NOW, SECRET)).unwrap();
        assert!(matches!(normalized, Normalized::Ignored { .. }), "{normalized:?}");
    }

    #[test]
    fn other_record_type_needs_no_event_id() {
        let body = br#"{"events":[{"recordType":"customer","id":"9","type":"edit"},{"eventId":"e","recordType":"inventoryitem","id":"1","type":"edit","occurredAt":"2025-06-01T10:00:00Z","fields":{"itemid":"A"}}]}"#;
        assert_eq!(changes(body).len(), 1);
    }

    #[test]
    fn record_type_compares_case_insensitively() {
        let body = br#"{"events":[{"eventId":"e","recordType":"inventoryItem","id":"1","type":"xedit","occurredAt":"2025-06-01T10:00:00Z","fields":{"itemid":"A","pagetitle":"A"}}]}"#;
        assert_eq!(changes(body)[0].record.key, "A");
    }

    #[test]
    fn malformed_bodies_are_rejected() {
        let cases: [(&str, &[u8]); 6] = [
            ("not JSON", b"{\"events\": "),
            ("no events", br#"{"account":"A"}"#),
            ("no eventId", br#"{"events":[{"recordType":"inventoryitem","type":"edit","occurredAt":"2025-06-01T10:00:00Z","fields":{"itemid":"A"}}]}"#),
            ("no occurredAt", br#"{"events":[{"eventId":"e","recordType":"inventoryitem","type":"edit","fields":{"itemid":"A"}}]}"#),
            ("no itemid", br#"{"events":[{"eventId":"e","recordType":"inventoryitem","type":"edit","occurredAt":"2025-06-01T10:00:00Z","fields":{"displayname":"A"}}]}"#),
            ("no type", br#"{"events":[{"eventId":"e","recordType":"inventoryitem","occurredAt":"2025-06-01T10:00:00Z","fields":{"itemid":"A"}}]}"#),
        ];
        for (case, body) in cases {
            let result = format().normalize(&signed(body, NOW, SECRET));
            assert!(matches!(result, Err(Rejection::Malformed { .. })), "{case}: {result:?}");
        }
    }
}
