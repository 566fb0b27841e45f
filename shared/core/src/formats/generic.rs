//! A webhook format described by a connector file ([`crate::connector`]), for senders such as
//! ERPNext, Odoo and Acumatica that fieldsync has no dedicated format for.
//!
//! Verification runs on the raw body bytes before any parsing and compares in constant time:
//! an HMAC of the configured signed string, or a shared header value. Normalization reads the
//! topic, the event id and each row's key, change time and fields through JSON pointers.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::change::ChangeSet;
use crate::connector::{
    ConnectorFile, EntityMapping, HmacSpec, RowSource, SignatureEncoding, SignedPart, TimeFormat, TimeSource,
    ValueSource, WebhookAuth,
};
use crate::ids::{RecordKey, SystemId};
use crate::ingest::{InboundRequest, Normalized, Rejection, WebhookFormat};
use crate::secret::Secret;
use crate::signature::hmac_sha256;
use crate::wire::Wire;

/// The generic webhook format for one sender and its connector file.
#[derive(Debug, Clone)]
pub struct GenericFormat {
    pub integration: String,
    pub source: SystemId,
    /// Accepted secrets; more than one during a rotation.
    pub secrets: Vec<Secret>,
    pub connector: Arc<ConnectorFile>,
}

impl WebhookFormat for GenericFormat {
    fn source(&self) -> &SystemId {
        &self.source
    }

    fn verify(&self, request: &InboundRequest) -> Result<(), Rejection> {
        match &self.connector.webhook.auth {
            WebhookAuth::Hmac(spec) => verify_hmac(spec, &self.secrets, request),
            WebhookAuth::HeaderToken { header } => {
                let Some(given) = request.header(header) else {
                    return Err(unauthorized(format!("missing {header} header")));
                };
                let matched = self
                    .secrets
                    .iter()
                    .any(|secret| equal_in_constant_time(secret.expose().as_bytes(), given.trim().as_bytes()));
                if matched {
                    Ok(())
                } else {
                    Err(unauthorized(format!("{header} does not match the shared secret")))
                }
            }
        }
    }

    fn normalize(&self, request: &InboundRequest) -> Result<Normalized, Rejection> {
        let body = Wire::parse(&request.body).map_err(|error| malformed(format!("body is not JSON: {error}")))?;
        if !matches!(body, Wire::Map(_)) {
            return Err(malformed("body is not a JSON object".to_owned()));
        }
        let webhook = &self.connector.webhook;

        let (topic, mapping) = match &webhook.topic {
            None => match webhook.mappings.first() {
                Some(mapping) => (mapping.entity.to_string(), mapping),
                None => return Err(malformed("the connector file maps no entity".to_owned())),
            },
            Some(source) => {
                let topic = read_source(source, request, &body)
                    .ok_or_else(|| malformed(format!("missing topic ({})", describe(source))))?;
                match webhook
                    .mappings
                    .iter()
                    .find(|mapping| mapping.topic.as_deref() == Some(topic.as_str()))
                {
                    Some(mapping) => (topic, mapping),
                    None => return Ok(Normalized::Ignored { topic }),
                }
            }
        };
        let event_id = match &webhook.event_id {
            Some(source) => read_source(source, request, &body)
                .ok_or_else(|| malformed(format!("missing event id ({})", describe(source))))?,
            None => body_hash(&request.body),
        };

        let (rows, deleted) = rows(mapping, &body)?;
        let mut changes = Vec::new();
        for row in rows {
            changes.push(self.change(mapping, row, &event_id, request)?);
        }
        if changes.is_empty() {
            let what = if deleted > 0 {
                format!("{topic}: {deleted} deleted rows")
            } else {
                format!("{topic}: no rows")
            };
            return Ok(Normalized::Ignored { topic: what });
        }
        Ok(Normalized::Changes(changes))
    }
}

impl GenericFormat {
    fn change(
        &self,
        mapping: &EntityMapping,
        row: &Wire,
        event_id: &str,
        request: &InboundRequest,
    ) -> Result<ChangeSet, Rejection> {
        let key = row
            .pointer(&mapping.key)
            .and_then(Wire::as_key)
            .ok_or_else(|| malformed(format!("{} row has no key at {:?}", mapping.entity, mapping.key)))?;
        let occurred_at = match &mapping.occurred_at {
            Some(source) => read_time(source, row)?,
            None => request.received_at,
        };
        let mut fields = BTreeMap::new();
        for (field, pointer) in &mapping.fields {
            if let Some(value) = row.pointer(pointer) {
                fields.insert(field.clone(), value.clone());
            }
        }
        Ok(ChangeSet {
            record: RecordKey::new(self.integration.as_str(), mapping.entity.clone(), key),
            source: self.source.clone(),
            event_id: event_id.to_owned(),
            occurred_at,
            received_at: request.received_at,
            external_id: mapping
                .external_id
                .as_ref()
                .and_then(|pointer| row.pointer(pointer))
                .and_then(Wire::as_key),
            fields,
        })
    }
}

fn verify_hmac(spec: &HmacSpec, secrets: &[Secret], request: &InboundRequest) -> Result<(), Rejection> {
    if let Some(check) = &spec.timestamp {
        let stamp = request
            .header(&check.header)
            .ok_or_else(|| unauthorized(format!("missing {} header", check.header)))?;
        let seconds: i64 = stamp
            .trim()
            .parse()
            .map_err(|_| unauthorized(format!("{} is not Unix seconds", check.header)))?;
        if request.received_at.timestamp().abs_diff(seconds) > check.tolerance_secs.unsigned_abs() {
            return Err(unauthorized(format!("{} is outside the tolerance", check.header)));
        }
    }
    let header = request
        .header(&spec.header)
        .ok_or_else(|| unauthorized(format!("missing {} header", spec.header)))?;
    let signed: Vec<&[u8]> = spec
        .signed
        .iter()
        .map(|part| match part {
            SignedPart::Literal(text) => text.as_bytes(),
            SignedPart::Body => request.body.as_slice(),
            SignedPart::Header(name) => request.header(name).map(str::as_bytes).unwrap_or_default(),
        })
        .collect();
    // A header repeated on several lines arrives comma-joined; any entry may match.
    let matched = header
        .split(',')
        .map(str::trim)
        .filter_map(|entry| entry.strip_prefix(spec.prefix.as_str()))
        .filter_map(|encoded| decode(spec.encoding, encoded))
        .any(|given| {
            secrets
                .iter()
                .any(|secret| equal_in_constant_time(&hmac_sha256(secret.expose().as_bytes(), &signed), &given))
        });
    if matched {
        Ok(())
    } else {
        Err(unauthorized(format!("{} does not match the body", spec.header)))
    }
}

fn decode(encoding: SignatureEncoding, text: &str) -> Option<Vec<u8>> {
    match encoding {
        SignatureEncoding::Base64 => BASE64.decode(text).ok(),
        SignatureEncoding::Hex => hex::decode(text).ok(),
    }
}

/// Compares two byte strings in time that depends only on their lengths.
fn equal_in_constant_time(expected: &[u8], given: &[u8]) -> bool {
    expected.len() == given.len() && bool::from(expected.ct_eq(given))
}

/// Returns the rows to read, and how many rows were deletions.
fn rows<'a>(mapping: &EntityMapping, body: &'a Wire) -> Result<(Vec<&'a Wire>, usize), Rejection> {
    match &mapping.rows {
        RowSource::Object(pointer) => {
            let row = body
                .pointer(pointer)
                .filter(|row| matches!(row, Wire::Map(_)))
                .ok_or_else(|| malformed(format!("no JSON object at {pointer:?}")))?;
            Ok((vec![row], 0))
        }
        RowSource::InsertedDeleted { inserted, deleted } => {
            let list = |pointer: &str| -> Result<&'a [Wire], Rejection> {
                match body.pointer(pointer) {
                    None | Some(Wire::Null) => Ok(&[]),
                    Some(Wire::List(items)) => Ok(items),
                    Some(_) => Err(malformed(format!("{pointer:?} is not an array"))),
                }
            };
            let inserted = list(inserted)?;
            let inserted_keys: BTreeSet<String> = inserted
                .iter()
                .filter_map(|row| row.pointer(&mapping.key).and_then(Wire::as_key))
                .collect();
            let deletions = list(deleted)?
                .iter()
                .filter_map(|row| row.pointer(&mapping.key).and_then(Wire::as_key))
                .filter(|key| !inserted_keys.contains(key))
                .count();
            Ok((inserted.iter().collect(), deletions))
        }
    }
}

fn read_source(source: &ValueSource, request: &InboundRequest, body: &Wire) -> Option<String> {
    match source {
        ValueSource::Header(name) => request
            .header(name)
            .map(str::to_owned)
            .filter(|value| !value.is_empty()),
        ValueSource::Pointers(pointers) => {
            let parts: Option<Vec<String>> = pointers
                .iter()
                .map(|pointer| body.pointer(pointer).and_then(Wire::as_key))
                .collect();
            parts.map(|parts| parts.join(":"))
        }
    }
}

fn describe(source: &ValueSource) -> String {
    match source {
        ValueSource::Header(name) => format!("header {name}"),
        ValueSource::Pointers(pointers) => format!("body at {}", pointers.join(", ")),
    }
}

/// Returns `sha256:<hex>` of the body, the event id of senders that send none.
fn body_hash(body: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(body)))
}

fn read_time(source: &TimeSource, row: &Wire) -> Result<DateTime<Utc>, Rejection> {
    let value = row
        .pointer(&source.pointer)
        .ok_or_else(|| malformed(format!("row has no change time at {:?}", source.pointer)))?;
    parse_time(source.format, value).ok_or_else(|| {
        malformed(format!(
            "invalid change time {} at {:?} for format {:?}",
            value.to_json(),
            source.pointer,
            source.format
        ))
    })
}

/// Parses a change time in `format` into a UTC instant.
pub fn parse_time(format: TimeFormat, value: &Wire) -> Option<DateTime<Utc>> {
    let text = match value {
        Wire::Text(text) => text.trim(),
        Wire::Number(number) => number.as_str(),
        _ => return None,
    };
    match format {
        TimeFormat::Rfc3339 => crate::ingest::parse_offset_time(text),
        TimeFormat::Naive { offset } => {
            let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f"))
                .ok()?;
            offset
                .from_local_datetime(&naive)
                .single()
                .map(|time| time.with_timezone(&Utc))
        }
        TimeFormat::UnixSeconds => Utc.timestamp_opt(text.parse().ok()?, 0).single(),
        TimeFormat::UnixMillis => Utc.timestamp_millis_opt(text.parse().ok()?).single(),
    }
}

fn unauthorized(reason: String) -> Rejection {
    Rejection::Unauthorized { reason }
}

fn malformed(reason: String) -> Rejection {
    Rejection::Malformed { reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::FieldName;

    const FRAPPE_BODY: &[u8] = include_bytes!("../../../../tests/fixtures/signatures/frappe-v4.body");
    const FRAPPE_SIGNATURE: &str = "yOxl4a5eZ6k0VjHXsdoszQ+ZeCpPphOI80Nyg2bk/wU=";
    const ACUMATICA_BODY: &[u8] = include_bytes!("../../../../tests/fixtures/acumatica/stock-item-changed.json");

    fn connector(name: &str) -> Arc<ConnectorFile> {
        let path = format!("{}/../../connectors/{name}", env!("CARGO_MANIFEST_DIR"));
        let text = std::fs::read_to_string(&path).unwrap();
        Arc::new(ConnectorFile::parse(name, &text).unwrap())
    }

    fn format(name: &str, secret: &str) -> GenericFormat {
        GenericFormat {
            integration: "demo".into(),
            source: "erp".into(),
            secrets: vec![Secret::new("old_secret"), Secret::new(secret)],
            connector: connector(name),
        }
    }

    fn request(body: &[u8], headers: &[(&str, &str)]) -> InboundRequest {
        InboundRequest {
            headers: headers
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), (*value).to_owned()))
                .collect(),
            query: BTreeMap::new(),
            body: body.to_vec(),
            received_at: Utc.with_ymd_and_hms(2025, 5, 1, 10, 12, 0).unwrap(),
        }
    }

    fn changes(normalized: Normalized) -> Vec<ChangeSet> {
        match normalized {
            Normalized::Changes(changes) => changes,
            other => panic!("expected changes, got {other:?}"),
        }
    }

    #[test]
    fn frappe_vector_verifies_on_raw_bytes() {
        let format = format("erpnext.toml", "frappe_example_secret");
        let valid = request(FRAPPE_BODY, &[("X-Frappe-Webhook-Signature", FRAPPE_SIGNATURE)]);
        assert_eq!(format.verify(&valid), Ok(()));
    }

    #[test]
    fn frappe_vector_reserialized_body_is_rejected() {
        let compact = serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(FRAPPE_BODY).unwrap()).unwrap();
        assert_ne!(compact, FRAPPE_BODY);
        let format = format("erpnext.toml", "frappe_example_secret");
        let resent = request(&compact, &[("X-Frappe-Webhook-Signature", FRAPPE_SIGNATURE)]);
        assert!(matches!(format.verify(&resent), Err(Rejection::Unauthorized { .. })));
    }

    #[test]
    fn frappe_vector_wrong_secret_is_rejected() {
        let format = format("erpnext.toml", "another_secret");
        let valid = request(FRAPPE_BODY, &[("X-Frappe-Webhook-Signature", FRAPPE_SIGNATURE)]);
        assert!(matches!(format.verify(&valid), Err(Rejection::Unauthorized { .. })));
    }

    #[test]
    fn frappe_missing_header_is_rejected() {
        let format = format("erpnext.toml", "frappe_example_secret");
        assert!(matches!(
            format.verify(&request(FRAPPE_BODY, &[])),
            Err(Rejection::Unauthorized { .. })
        ));
    }

    #[test]
    fn frappe_item_normalizes_with_exact_money() {
        let format = format("erpnext.toml", "frappe_example_secret");
        let changes = changes(format.normalize(&request(FRAPPE_BODY, &[])).unwrap());
        assert_eq!(changes.len(), 1);
        let change = &changes[0];
        assert_eq!(change.record, RecordKey::new("demo", "product", "MUG-RED"));
        assert_eq!(change.external_id.as_deref(), Some("ITEM-0001"));
        assert_eq!(
            change.occurred_at,
            Utc.with_ymd_and_hms(2025, 5, 1, 10, 11, 12).unwrap() + chrono::Duration::microseconds(123_456)
        );
        assert_eq!(change.fields[&FieldName::new("price")], Wire::Number("19.9".into()));
        assert_eq!(change.fields[&FieldName::new("name")], Wire::Text("Café mug".into()));
        assert!(change.event_id.starts_with("sha256:"), "{}", change.event_id);
    }

    #[test]
    fn frappe_retry_keeps_event_id() {
        let format = format("erpnext.toml", "frappe_example_secret");
        let first = changes(format.normalize(&request(FRAPPE_BODY, &[])).unwrap());
        let again = changes(format.normalize(&request(FRAPPE_BODY, &[])).unwrap());
        assert_eq!(first[0].dedup_id(), again[0].dedup_id());
    }

    #[test]
    fn acumatica_token_header_is_compared() {
        let format = format("acumatica.toml", "acu_example_token");
        let valid = request(ACUMATICA_BODY, &[("X-Fieldsync-Token", "acu_example_token")]);
        assert_eq!(format.verify(&valid), Ok(()));
        let wrong = request(ACUMATICA_BODY, &[("X-Fieldsync-Token", "acu_example_tokem")]);
        assert!(matches!(format.verify(&wrong), Err(Rejection::Unauthorized { .. })));
        assert!(format.verify(&request(ACUMATICA_BODY, &[])).is_err());
    }

    #[test]
    fn acumatica_pair_gives_inserted_row_only() {
        let format = format("acumatica.toml", "acu_example_token");
        let changes = changes(format.normalize(&request(ACUMATICA_BODY, &[])).unwrap());
        let keys: Vec<&str> = changes.iter().map(|change| change.record.key.as_str()).collect();
        assert_eq!(keys, ["MUG-RED"]);
        let change = &changes[0];
        assert_eq!(change.fields[&FieldName::new("price")], Wire::Number("24.00".into()));
        assert_eq!(change.event_id, "FS-StockItems:8f1c2a44-5b7e-4d0f-9a51-3e2b6c7d8e90");
        assert_eq!(
            change.occurred_at,
            Utc.with_ymd_and_hms(2025, 6, 2, 9, 15, 30).unwrap() + chrono::Duration::milliseconds(120)
        );
    }

    #[test]
    fn acumatica_deletion_only_is_ignored() {
        let body = br#"{"Inserted":[],"Deleted":[{"InventoryID":"MUG-OLD","Description":"Old mug"}],"Query":"FS-StockItems","CompanyId":"Demo","Id":"d-1","TimeStamp":1}"#;
        let normalized = format("acumatica.toml", "t").normalize(&request(body, &[])).unwrap();
        assert_eq!(
            normalized,
            Normalized::Ignored {
                topic: "FS-StockItems: 1 deleted rows".into()
            }
        );
    }

    #[test]
    fn acumatica_unknown_query_is_ignored() {
        let body = br#"{"Inserted":[],"Deleted":[],"Query":"Customers","Id":"d-2"}"#;
        let normalized = format("acumatica.toml", "t").normalize(&request(body, &[])).unwrap();
        assert_eq!(
            normalized,
            Normalized::Ignored {
                topic: "Customers".into()
            }
        );
    }

    #[test]
    fn row_without_key_is_malformed() {
        let body = br#"{"name":"ITEM-9","standard_rate":1,"modified":"2025-05-01 10:00:00"}"#;
        let result = format("erpnext.toml", "x").normalize(&request(body, &[]));
        assert!(matches!(result, Err(Rejection::Malformed { .. })), "{result:?}");
    }

    #[test]
    fn invalid_change_time_is_malformed() {
        let body = br#"{"item_code":"A","modified":"yesterday"}"#;
        let result = format("erpnext.toml", "x").normalize(&request(body, &[]));
        let Err(Rejection::Malformed { reason }) = result else {
            panic!("expected malformed, got {result:?}");
        };
        assert!(reason.contains("yesterday"), "{reason}");
    }

    #[test]
    fn timestamped_hex_scheme_checks_tolerance() {
        let text = r#"connector = "odoo-like"
[webhook.signature]
scheme = "hmac-sha256"
header = "X-Signature"
encoding = "hex"
prefix = "sha256="
signed = "{header:X-Timestamp}.{body}"
timestamp_header = "X-Timestamp"
tolerance_secs = 60
[[webhook.entities]]
entity = "product"
key = "/sku"
occurred_at = { pointer = "/ts", format = "unix" }
fields = {}
"#;
        let format = GenericFormat {
            integration: "demo".into(),
            source: "erp".into(),
            secrets: vec![Secret::new("k")],
            connector: Arc::new(ConnectorFile::parse("odoo.toml", text).unwrap()),
        };
        let body = br#"{"sku":"A","ts":1746094320}"#;
        let sign = |stamp: i64| {
            let stamp = stamp.to_string();
            let mac = hmac_sha256(b"k", &[stamp.as_bytes(), b".", body]);
            (stamp, format!("sha256={}", hex::encode(mac)))
        };
        let now = Utc.with_ymd_and_hms(2025, 5, 1, 10, 12, 0).unwrap().timestamp();
        let (stamp, signature) = sign(now - 60);
        let fresh = request(body, &[("X-Timestamp", &stamp), ("X-Signature", &signature)]);
        assert_eq!(format.verify(&fresh), Ok(()));
        let (stamp, signature) = sign(now - 61);
        let late = request(body, &[("X-Timestamp", &stamp), ("X-Signature", &signature)]);
        assert!(matches!(format.verify(&late), Err(Rejection::Unauthorized { .. })));
        let changes = changes(format.normalize(&fresh).unwrap());
        assert_eq!(changes[0].occurred_at.timestamp(), 1_746_094_320);
    }

    #[test]
    fn naive_time_reads_at_offset() {
        let offset = chrono::FixedOffset::east_opt(2 * 3600).unwrap();
        let time = parse_time(TimeFormat::Naive { offset }, &Wire::Text("2025-06-01T12:00:00".into()));
        assert_eq!(time, Some(Utc.with_ymd_and_hms(2025, 6, 1, 10, 0, 0).unwrap()));
        assert_eq!(
            parse_time(TimeFormat::UnixMillis, &Wire::Number("1000".into())).map(|t| t.timestamp()),
            Some(1)
        );
    }
}
