//! Business documents (customers, quotes, orders, shipments, returns) as both platforms take
//! them: a JSON object of members, upserted by fieldsync's external id when the target's id is
//! unknown and updated by that id otherwise.

use std::collections::BTreeMap;

use fieldsync_core::ports::{SystemError, WriteReceipt};
use fieldsync_core::{FieldValue, OutboundWrite, SystemId, Wire};
use reqwest::{Method, StatusCode};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::http::{rejected, status_error, unavailable, UnexpectedResponse};
use crate::json::{decimal_number, null, string, wire_text};

/// The money format and member names of a platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dialect {
    /// The ERP: money as JSON numbers, members under their canonical names.
    Erp,
    /// The storefront: money as decimal strings, `total` as `total_price`, `lines` as
    /// `line_items` with each line's `unit_price` as `price`.
    Storefront,
}

/// Builds a document body from a write's fields, with `external_id` when given.
pub(crate) fn document_body(
    system: &SystemId,
    write: &OutboundWrite,
    dialect: Dialect,
    external_id: Option<&str>,
) -> Result<Vec<u8>, SystemError> {
    let mut body: BTreeMap<String, Box<RawValue>> = BTreeMap::new();
    if let Some(external_id) = external_id {
        body.insert("external_id".to_owned(), string(external_id));
    }
    for (name, value) in &write.fields {
        let member = match (dialect, name.as_str()) {
            (Dialect::Storefront, "total") => "total_price",
            (Dialect::Storefront, "lines") => "line_items",
            (_, other) => other,
        };
        let json = match value {
            FieldValue::Text(text) => string(text),
            FieldValue::Money(amount) if dialect == Dialect::Erp => decimal_number(amount),
            FieldValue::Money(amount) => string(&amount.to_string()),
            FieldValue::Quantity(units) => RawValue::from_string(units.to_string()).unwrap_or_default(),
            FieldValue::Bool(flag) => RawValue::from_string(flag.to_string()).unwrap_or_default(),
            FieldValue::List(items) => serde_json::value::to_raw_value(items).unwrap_or_else(|_| null()),
            FieldValue::Json(wire) => {
                let wire = if dialect == Dialect::Storefront && name.as_str() == "lines" {
                    rename_line_prices(wire)
                } else {
                    wire.clone()
                };
                wire_text(&wire)
                    .and_then(|text| RawValue::from_string(text).ok())
                    .ok_or_else(|| {
                        rejected(
                            system,
                            &write.record,
                            "a JSON field holds a number that is not valid JSON",
                        )
                    })?
            }
        };
        body.insert(member.to_owned(), json);
    }
    // Every member is valid JSON text, so serialization does not fail.
    Ok(serde_json::to_vec(&body).unwrap_or_default())
}

/// Renames each line's `unit_price` to `price`, the storefront's name.
fn rename_line_prices(lines: &Wire) -> Wire {
    let renamed = lines
        .items()
        .iter()
        .map(|line| match line {
            Wire::Map(members) => Wire::Map(
                members
                    .iter()
                    .map(|(name, value)| {
                        let name = if name == "unit_price" { "price" } else { name.as_str() };
                        (name.to_owned(), value.clone())
                    })
                    .collect(),
            ),
            other => other.clone(),
        })
        .collect();
    Wire::List(renamed)
}

/// Sends a document request and reads the target's id of the document from `id_member`.
pub(crate) async fn send_document(
    system: &SystemId,
    write: &OutboundWrite,
    request: reqwest::RequestBuilder,
    id_member: &str,
) -> Result<WriteReceipt, SystemError> {
    let response = request.send().await.map_err(|error| unavailable(system, error))?;
    let status = response.status();
    let headers = response.headers().clone();
    let body: Option<Value> = response.json().await.ok();
    if !status.is_success() {
        let message = body.as_ref().map(|body| {
            body.pointer("/error/message")
                .and_then(Value::as_str)
                .map_or_else(|| body.to_string(), str::to_owned)
        });
        let status = if status == StatusCode::NOT_FOUND {
            // The document is gone from the target, so resending the same write cannot succeed.
            StatusCode::UNPROCESSABLE_ENTITY
        } else {
            status
        };
        return Err(status_error(system, &write.record, status, &headers, message));
    }
    let id = body.as_ref().and_then(|body| match body.get(id_member) {
        Some(Value::String(id)) => Some(id.clone()),
        Some(Value::Number(id)) => Some(id.to_string()),
        _ => None,
    });
    let id = id.ok_or_else(|| unavailable(system, UnexpectedResponse(format!("document has no {id_member}"))))?;
    tracing::info!(system = %system, record = %write.record, id, "document written");
    Ok(WriteReceipt { target_id: Some(id) })
}

/// Returns the method for a document write: an update by the target's id when it is known,
/// else a create that carries fieldsync's external id.
pub(crate) fn document_method(write: &OutboundWrite) -> (Method, Option<String>) {
    match &write.target_id {
        Some(_) => (Method::PATCH, None),
        None => (Method::POST, Some(write.record.external_id())),
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use chrono::Utc;
    use fieldsync_core::{FieldName, RecordKey, WriteKind};
    use rust_decimal::Decimal;

    use super::*;

    fn quote_write() -> OutboundWrite {
        let lines = Wire::parse(br#"[{"sku":"MUG-RED","quantity":10,"unit_price":"11.50"}]"#).unwrap();
        OutboundWrite {
            id: 0,
            claimed_until: None,
            target: SystemId::new("storefront"),
            record: RecordKey::new("demo", "quote", "7001"),
            kind: WriteKind::Update,
            target_id: Some("7001".into()),
            fields: BTreeMap::from([
                (
                    FieldName::new("total"),
                    FieldValue::Money(Decimal::from_str("115.00").unwrap()),
                ),
                (FieldName::new("lines"), FieldValue::Json(lines)),
                (FieldName::new("status"), FieldValue::Text("approved".into())),
            ]),
            previous: Default::default(),
            changed_at: Utc::now(),
            parked_on: Vec::new(),
        }
    }

    #[test]
    fn storefront_body_renames_and_quotes_money() {
        let body = document_body(&SystemId::new("storefront"), &quote_write(), Dialect::Storefront, None).unwrap();
        assert_eq!(
            String::from_utf8(body).unwrap(),
            r#"{"line_items":[{"price":"11.50","quantity":10,"sku":"MUG-RED"}],"status":"approved","total_price":"115.00"}"#
        );
    }

    #[test]
    fn erp_body_writes_money_as_number() {
        let body = document_body(&SystemId::new("erp"), &quote_write(), Dialect::Erp, Some("quote:7001")).unwrap();
        let body = String::from_utf8(body).unwrap();
        assert!(body.contains(r#""total":115.00"#), "{body}");
        assert!(body.contains(r#""external_id":"quote:7001""#), "{body}");
    }
}
