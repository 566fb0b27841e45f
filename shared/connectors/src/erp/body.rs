//! Request bodies for the ERP, built from exact values: money is a JSON number written from its
//! decimal digits.

use std::collections::BTreeMap;

use fieldsync_core::ports::SystemError;
use fieldsync_core::{FieldValue, OutboundWrite, SystemId};
use serde_json::value::RawValue;

use crate::http::rejected;
use crate::json::{decimal_number, null, string, wire_text};

/// A JSON object whose members are already JSON text.
pub(crate) type Body = BTreeMap<&'static str, Box<RawValue>>;

/// Builds the item PATCH body from a product write.
pub(crate) fn item_body(system: &SystemId, write: &OutboundWrite) -> Result<Body, SystemError> {
    let mut body = Body::new();
    for (name, value) in &write.fields {
        let (member, json) = match (name.as_str(), value) {
            ("name", FieldValue::Text(text)) => ("description", string(text)),
            ("price", FieldValue::Money(amount)) => ("unit_price", decimal_number(amount)),
            ("inventory", FieldValue::Quantity(units)) => ("inventory", raw_integer(*units)),
            ("customer_prices", FieldValue::Json(wire)) => ("customer_prices", json_text(system, write, wire)?),
            ("meta_title", FieldValue::Text(text)) => ("meta_title", nullable(text)),
            ("meta_description", FieldValue::Text(text)) => ("meta_description", nullable(text)),
            (field @ ("name" | "price" | "inventory" | "customer_prices" | "meta_title" | "meta_description"), _) => {
                return Err(mismatch(system, write, field, value))
            }
            (other, _) => return Err(unmapped(system, write, other)),
        };
        body.insert(member, json);
    }
    Ok(body)
}

/// Builds the sales-order upsert body from an order write, keyed by the record's external id.
pub(crate) fn order_body(system: &SystemId, write: &OutboundWrite) -> Result<Body, SystemError> {
    let mut body = Body::new();
    body.insert("external_id", string(&write.record.external_id()));
    for (name, value) in &write.fields {
        let (member, json) = match (name.as_str(), value) {
            ("number", FieldValue::Text(text)) => ("reference", string(text)),
            ("email", FieldValue::Text(text)) => ("customer_email", nullable(text)),
            ("total", FieldValue::Money(amount)) => ("total", decimal_number(amount)),
            ("financial_status", FieldValue::Text(text)) => ("financial_status", nullable(text)),
            ("note", FieldValue::Text(text)) => ("note", nullable(text)),
            ("lines", FieldValue::Json(wire)) => ("lines", json_text(system, write, wire)?),
            ("customer", FieldValue::Text(text)) => ("customer", nullable(text)),
            ("quote", FieldValue::Text(text)) => ("quote", nullable(text)),
            ("status", FieldValue::Text(text)) => ("status", nullable(text)),
            (
                field @ ("number" | "email" | "total" | "financial_status" | "note" | "lines" | "customer" | "quote"
                | "status"),
                _,
            ) => return Err(mismatch(system, write, field, value)),
            (other, _) => return Err(unmapped(system, write, other)),
        };
        body.insert(member, json);
    }
    Ok(body)
}

/// Serializes a body. Every member is already valid JSON text, so serialization does not fail.
pub(crate) fn to_bytes(body: &Body) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_default()
}

/// Writes empty text as `null`, because the ERP's optional text fields are nullable.
fn nullable(text: &str) -> Box<RawValue> {
    if text.is_empty() {
        null()
    } else {
        string(text)
    }
}

fn raw_integer(units: i64) -> Box<RawValue> {
    RawValue::from_string(units.to_string()).unwrap_or_default()
}

fn json_text(
    system: &SystemId,
    write: &OutboundWrite,
    wire: &fieldsync_core::Wire,
) -> Result<Box<RawValue>, SystemError> {
    wire_text(wire)
        .and_then(|text| RawValue::from_string(text).ok())
        .ok_or_else(|| {
            rejected(
                system,
                &write.record,
                "a JSON field holds a number that is not valid JSON",
            )
        })
}

fn mismatch(system: &SystemId, write: &OutboundWrite, field: &str, value: &FieldValue) -> SystemError {
    rejected(
        system,
        &write.record,
        format!("field {field} has a value of the wrong type for the ERP: {value}"),
    )
}

fn unmapped(system: &SystemId, write: &OutboundWrite, field: &str) -> SystemError {
    rejected(
        system,
        &write.record,
        format!("field {field} is not mapped to the ERP's {}", write.record.entity),
    )
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::str::FromStr;

    use chrono::Utc;
    use fieldsync_core::{FieldName, RecordKey, Wire, WriteKind};
    use rust_decimal::Decimal;

    use super::*;

    fn write(entity: &str, fields: Vec<(&str, FieldValue)>) -> OutboundWrite {
        OutboundWrite {
            id: 0,
            claimed_until: None,
            target: SystemId::new("erp"),
            record: RecordKey::new("shop", entity, "MUG-RED"),
            kind: WriteKind::Update,
            target_id: None,
            fields: fields
                .into_iter()
                .map(|(name, value)| (FieldName::new(name), value))
                .collect::<BTreeMap<_, _>>(),
            previous: Default::default(),
            changed_at: Utc::now(),
            parked_on: Vec::new(),
        }
    }

    #[test]
    fn item_body_writes_exact_money() {
        let write = write(
            "product",
            vec![
                ("price", FieldValue::Money(Decimal::from_str("19.90").unwrap())),
                ("meta_title", FieldValue::Text(String::new())),
                (
                    "customer_prices",
                    FieldValue::Json(Wire::parse(br#"[{"customer":"C-1","unit_price":17.50}]"#).unwrap()),
                ),
            ],
        );
        let body = String::from_utf8(to_bytes(&item_body(&SystemId::new("erp"), &write).unwrap())).unwrap();
        assert_eq!(
            body,
            r#"{"customer_prices":[{"customer":"C-1","unit_price":17.50}],"meta_title":null,"unit_price":19.90}"#
        );
    }

    #[test]
    fn item_body_rejects_unmapped_field() {
        let write = write("product", vec![("colour", FieldValue::Text("red".to_owned()))]);
        let error = item_body(&SystemId::new("erp"), &write).unwrap_err();
        assert!(!error.is_retryable());
        assert!(error.to_string().contains("colour"));
    }

    #[test]
    fn order_body_carries_external_id() {
        let write = write("order", vec![("email", FieldValue::Text("a@example.com".to_owned()))]);
        let body = String::from_utf8(to_bytes(&order_body(&SystemId::new("erp"), &write).unwrap())).unwrap();
        assert_eq!(
            body,
            r#"{"customer_email":"a@example.com","external_id":"order:MUG-RED"}"#
        );
    }
}
