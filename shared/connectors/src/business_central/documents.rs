//! Customers and sales orders: how their API v2.0 members map to the canonical fields of the
//! `customer` and `order` entities, and how fieldsync writes them.
//!
//! Customers are keyed by their `number`, which fieldsync sets to the record key (the storefront
//! customer id) when it creates one: `displayName` is `name` and `email` is `email`. Business
//! Central stores the number in upper case, so a key with lower-case letters reads back changed.
//!
//! Sales orders are keyed by `externalDocumentNumber`, where fieldsync writes the record key (the
//! storefront order id) when it creates the order. An order without one was made in Business
//! Central and maps to no record, so it is skipped. `email` is `email`. `customerNumber` is
//! `customer`, the customer's record key, because fieldsync creates customers with that number.
//! The `Item` lines of `salesOrderLines` are `lines` in the canonical shape
//! `{sku, quantity, unit_price}`, with `lineObjectNumber` as the SKU and both numbers as their
//! shortest decimal text. Status mapping: `status` is `fulfilled` when `fullyShipped` is
//! true. Otherwise the change set carries no status, because Draft, In Review, Open and Released
//! all mean the order is still placed. `totalAmountIncludingTax` is not read as `total`, because
//! Business Central computes it from its own prices and taxes, and `total` is the storefront's.

use std::collections::BTreeMap;
use std::str::FromStr;

use fieldsync_core::ports::{SystemError, WriteReceipt};
use fieldsync_core::{FieldName, FieldValue, OutboundWrite, RecordKey, SystemId, Wire, WriteKind};
use reqwest::{Method, StatusCode};
use rust_decimal::Decimal;
use serde_json::value::RawValue;

use super::{parse, render, BusinessCentralClient, Collection};
use crate::http::{rejected, unavailable, UnexpectedResponse};
use crate::json::{decimal_number, string};

/// A request body whose members are already JSON text.
type Body = BTreeMap<&'static str, Box<RawValue>>;

/// Canonical order fields that are not written to a sales order. `total` and `status` are
/// read-only there: Business Central computes the total from the lines, and the status changes
/// through the Release and posting actions. `number`, `financial_status`, `note` and `quote` have
/// no member on the API v2.0 sales order.
const ORDER_FIELDS_NOT_WRITTEN: &[&str] = &["number", "total", "status", "financial_status", "note", "quote"];

/// Reads a customer's record key and canonical fields.
pub(super) fn customer_fields(customer: &Wire) -> Option<(String, BTreeMap<FieldName, Wire>)> {
    let number = customer.get("number").and_then(Wire::as_key)?;
    let mut fields = BTreeMap::new();
    for (member, field) in [("displayName", "name"), ("email", "email")] {
        if let Some(value) = customer.get(member) {
            fields.insert(FieldName::new(field), value.clone());
        }
    }
    Some((number, fields))
}

/// Reads a sales order's record key and canonical fields, or `None` for an order without an
/// external document number.
pub(super) fn order_fields(order: &Wire) -> Option<(String, BTreeMap<FieldName, Wire>)> {
    let Some(key) = order.get("externalDocumentNumber").and_then(Wire::as_key) else {
        tracing::debug!(
            order = order.get("number").and_then(Wire::as_text).unwrap_or("?"),
            "sales order has no external document number, so it maps to no record; skipped"
        );
        return None;
    };
    let mut fields = BTreeMap::new();
    if let Some(email) = order.get("email") {
        fields.insert(FieldName::new("email"), email.clone());
    }
    if let Some(customer) = order.get("customerNumber").and_then(Wire::as_key) {
        fields.insert(FieldName::new("customer"), Wire::Text(customer));
    }
    if let Some(lines) = order.get("salesOrderLines") {
        fields.insert(FieldName::new("lines"), canonical_lines(lines));
    }
    if order.get("fullyShipped") == Some(&Wire::Bool(true)) {
        fields.insert(FieldName::new("status"), Wire::Text("fulfilled".to_owned()));
    }
    Some((key, fields))
}

/// Writes a decimal as its shortest text, the canonical form of decimals inside JSON fields.
fn shortest(wire: &Wire) -> Option<String> {
    let text = match wire {
        Wire::Number(text) | Wire::Text(text) => text,
        _ => return None,
    };
    Decimal::from_str(text.trim())
        .ok()
        .map(|amount| amount.normalize().to_string())
}

/// Converts `salesOrderLines` into canonical order lines, skipping lines that are not `Item`
/// lines (comments, G/L accounts, resources, charges).
fn canonical_lines(lines: &Wire) -> Wire {
    let rows = lines
        .items()
        .iter()
        .filter(|line| line.get("lineType").and_then(Wire::as_text) == Some("Item"))
        .map(|line| {
            let mut row = BTreeMap::new();
            if let Some(sku) = line.get("lineObjectNumber").and_then(Wire::as_key) {
                row.insert("sku".to_owned(), Wire::Text(sku));
            }
            if let Some(quantity) = line.get("quantity").and_then(shortest) {
                row.insert("quantity".to_owned(), Wire::Number(quantity));
            }
            if let Some(price) = line.get("unitPrice").and_then(shortest) {
                row.insert("unit_price".to_owned(), Wire::Text(price));
            }
            Wire::Map(row)
        })
        .collect();
    Wire::List(rows)
}

/// One order line of a write, read from the canonical `lines` field.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    sku: String,
    quantity: Decimal,
    unit_price: Option<Decimal>,
}

impl Line {
    /// Compares with a line read back: the SKU in upper case as Business Central stores item
    /// numbers, the numbers by value.
    fn same_as(&self, other: &Line) -> bool {
        self.sku.to_uppercase() == other.sku.to_uppercase()
            && self.quantity == other.quantity
            && (self.unit_price.is_none() || self.unit_price == other.unit_price)
    }

    /// Renders the line as a deep-insert member of `salesOrderLines`.
    fn json(&self) -> String {
        let mut body = Body::new();
        body.insert("lineType", string("Item"));
        body.insert("lineObjectNumber", string(&self.sku));
        body.insert("quantity", decimal_number(&self.quantity));
        if let Some(price) = &self.unit_price {
            body.insert("unitPrice", decimal_number(price));
        }
        render(&body)
    }
}

fn decimal(wire: Option<&Wire>) -> Option<Decimal> {
    match wire? {
        Wire::Number(text) | Wire::Text(text) => Decimal::from_str(text.trim()).ok(),
        _ => None,
    }
}

/// Reads canonical lines (`[{sku, quantity, unit_price}]`). The error names the first invalid line.
fn lines_of(wire: &Wire) -> Result<Vec<Line>, String> {
    wire.items()
        .iter()
        .enumerate()
        .map(|(index, row)| {
            let sku = row.get("sku").and_then(Wire::as_key);
            let quantity = decimal(row.get("quantity"));
            let unit_price = decimal(row.get("unit_price"));
            match (sku, quantity) {
                (Some(sku), Some(quantity)) if row.get("unit_price").is_none() || unit_price.is_some() => Ok(Line {
                    sku,
                    quantity,
                    unit_price,
                }),
                _ => Err(format!(
                    "line {} needs a sku, a decimal quantity and a decimal unit_price",
                    index + 1
                )),
            }
        })
        .collect()
}

/// Reads the lines of a sales order read back with `$expand=salesOrderLines`.
fn lines_read(order: &Wire) -> Vec<Line> {
    lines_of(&canonical_lines(order.get("salesOrderLines").unwrap_or(&Wire::Null))).unwrap_or_default()
}

/// Builds a customer POST or PATCH body.
fn customer_body(system: &SystemId, write: &OutboundWrite) -> Result<Body, SystemError> {
    let mut body = Body::new();
    for (name, value) in &write.fields {
        let (member, json) = match (name.as_str(), value) {
            ("name", FieldValue::Text(text)) => ("displayName", string(text)),
            ("email", FieldValue::Text(text)) => ("email", string(text)),
            (other, _) => {
                return Err(rejected(
                    system,
                    &write.record,
                    format!("field {other} cannot be written to a Business Central customer"),
                ))
            }
        };
        body.insert(member, json);
    }
    Ok(body)
}

/// The parts of an order write: header members and, when the write carries `lines`, its lines.
struct OrderWriteParts {
    header: Body,
    lines: Option<Vec<Line>>,
}

/// Builds a sales order's header members (`email`, `customerNumber`) and reads its lines. The
/// fields of [`ORDER_FIELDS_NOT_WRITTEN`] are left out.
fn order_parts(system: &SystemId, write: &OutboundWrite) -> Result<OrderWriteParts, SystemError> {
    let mut header = Body::new();
    let mut lines = None;
    for (name, value) in &write.fields {
        match (name.as_str(), value) {
            ("email", FieldValue::Text(text)) => {
                header.insert("email", string(text));
            }
            ("customer", FieldValue::Text(text)) => {
                header.insert("customerNumber", string(text));
            }
            ("lines", FieldValue::Json(wire)) => {
                let read = lines_of(wire).map_err(|reason| rejected(system, &write.record, reason))?;
                lines = Some(read);
            }
            (field, _) if ORDER_FIELDS_NOT_WRITTEN.contains(&field) => {
                tracing::debug!(record = %write.record, field, "field has no writable sales order member; not sent");
            }
            (other, _) => {
                return Err(rejected(
                    system,
                    &write.record,
                    format!("field {other} cannot be written to a Business Central sales order"),
                ))
            }
        }
    }
    Ok(OrderWriteParts { header, lines })
}

/// Returns the `id` and `@odata.etag` of an entity read back.
fn id_and_etag(system: &SystemId, entity: &Wire, kind: &str) -> Result<(String, String), SystemError> {
    let id = entity
        .get("id")
        .and_then(Wire::as_key)
        .ok_or_else(|| unavailable(system, UnexpectedResponse(format!("{kind} without id"))))?;
    let etag = entity
        .get("@odata.etag")
        .and_then(Wire::as_text)
        .unwrap_or("*")
        .to_owned();
    Ok((id, etag))
}

impl BusinessCentralClient {
    /// Reads the entity a write targets: by the write's target id when it has one, else by
    /// `lookups`, the property/value pairs tried in order.
    async fn existing(
        &self,
        write: &OutboundWrite,
        collection: Collection,
        lookups: &[(&str, &str)],
    ) -> Result<Option<Wire>, SystemError> {
        if let Some(id) = &write.target_id {
            return self.get_entity(&write.record, self.entity_url(collection, id)?).await;
        }
        for (property, value) in lookups {
            if let Some(found) = self.find_by(&write.record, collection, property, value).await? {
                return Ok(Some(found));
            }
        }
        Ok(None)
    }

    /// Creates an entity and returns its id.
    async fn create(
        &self,
        record: &RecordKey,
        collection: Collection,
        body: String,
    ) -> Result<WriteReceipt, SystemError> {
        let url = self.url(&self.collection_path(collection))?;
        let reply = self.send(record, Method::POST, url, None, Some(body)).await?;
        let created = parse(self.system(), &reply.body)?;
        let target_id = created.get("id").and_then(Wire::as_key);
        tracing::info!(system = %self.system(), record = %record, collection = collection.name(), id = ?target_id, "entity created");
        Ok(WriteReceipt { target_id })
    }

    /// Sends a PATCH with `If-Match`. Returns `Ok(None)` on 412, so the caller reads again.
    async fn patch(
        &self,
        record: &RecordKey,
        collection: Collection,
        id: &str,
        etag: &str,
        body: &Body,
    ) -> Result<Option<WriteReceipt>, SystemError> {
        let url = self.url(&format!("{}({id})", self.collection_path(collection)))?;
        match self
            .send(record, Method::PATCH, url, Some(etag), Some(render(body)))
            .await
        {
            Ok(reply) if reply.status == StatusCode::NOT_FOUND => Err(rejected(
                self.system(),
                record,
                format!("{} {id} not found", collection.name()),
            )),
            Ok(_) => Ok(Some(WriteReceipt {
                target_id: Some(id.to_owned()),
            })),
            Err(SystemError::Conflict { .. }) => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Returns the conflict error after the last attempt, or logs that another attempt follows.
    fn conflict_attempt(&self, record: &RecordKey, attempt: u32) -> Result<(), SystemError> {
        if attempt >= self.config.max_conflict_attempts {
            return Err(SystemError::Conflict {
                system: self.system().clone(),
                record: record.clone(),
            });
        }
        tracing::debug!(record = %record, attempt, "entity changed since it was read; reading again");
        Ok(())
    }

    /// Creates or updates a customer. A create first looks the customer up by number (the record
    /// key) and then by email, so a create retried after a lost response finds the first one.
    pub(super) async fn write_customer(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        let record = &write.record;
        let body = customer_body(self.system(), write)?;
        let email = match write.fields.get(&FieldName::new("email")) {
            Some(FieldValue::Text(email)) if !email.is_empty() => Some(email.as_str()),
            _ => None,
        };
        let mut lookups = vec![("number", record.key.as_str())];
        // NOTE: a customer found by email keeps its own number, so its later notices map to the
        // record of that number, not to this one.
        lookups.extend(email.map(|email| ("email", email)));

        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(customer) = self.existing(write, Collection::Customers, &lookups).await? else {
                let mut create = body.clone();
                create.insert("number", string(&record.key));
                return self.create(record, Collection::Customers, render(&create)).await;
            };
            let (id, etag) = id_and_etag(self.system(), &customer, "customer")?;
            if body.is_empty() {
                return Ok(WriteReceipt { target_id: Some(id) });
            }
            if let Some(receipt) = self.patch(record, Collection::Customers, &id, &etag, &body).await? {
                return Ok(receipt);
            }
            self.conflict_attempt(record, attempt)?;
        }
    }

    /// Creates or updates a sales order. A create looks the order up by `externalDocumentNumber`
    /// first, so a create retried after a lost response finds the first one, and otherwise posts
    /// the header with its lines in one deep insert. An update patches the header; lines of an
    /// existing order are not changed, so a write whose lines differ from the order's is rejected.
    pub(super) async fn write_order(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        let record = &write.record;
        let parts = order_parts(self.system(), write)?;
        let lookups = [("externalDocumentNumber", record.key.as_str())];

        let mut attempt = 0;
        loop {
            attempt += 1;
            let Some(order) = self.existing(write, Collection::SalesOrders, &lookups).await? else {
                return self.create_order(write, &parts).await;
            };
            let (id, etag) = id_and_etag(self.system(), &order, "sales order")?;
            if let Some(lines) = &parts.lines {
                let current = lines_read(&order);
                let same = lines.len() == current.len()
                    && lines.iter().zip(&current).all(|(wanted, read)| wanted.same_as(read));
                if !same {
                    return Err(rejected(
                        self.system(),
                        record,
                        format!("the lines of sales order {id} differ from the write's; fieldsync writes lines only when it creates the order"),
                    ));
                }
            }
            if parts.header.is_empty() {
                return Ok(WriteReceipt { target_id: Some(id) });
            }
            if let Some(receipt) = self
                .patch(record, Collection::SalesOrders, &id, &etag, &parts.header)
                .await?
            {
                return Ok(receipt);
            }
            self.conflict_attempt(record, attempt)?;
        }
    }

    async fn create_order(&self, write: &OutboundWrite, parts: &OrderWriteParts) -> Result<WriteReceipt, SystemError> {
        let record = &write.record;
        if !parts.header.contains_key("customerNumber") {
            return Err(rejected(
                self.system(),
                record,
                "a sales order needs a customer; the write carries no customer field",
            ));
        }
        if write.kind == WriteKind::Update {
            tracing::info!(record = %record, "sales order to update not found; creating it");
        }
        let mut body = parts.header.clone();
        body.insert("externalDocumentNumber", string(&record.key));
        let lines: Vec<String> = parts.lines.iter().flatten().map(Line::json).collect();
        let lines = RawValue::from_string(format!("[{}]", lines.join(","))).map_err(|error| {
            rejected(
                self.system(),
                record,
                format!("order lines are not valid JSON: {error}"),
            )
        })?;
        body.insert("salesOrderLines", lines);
        self.create(record, Collection::SalesOrders, render(&body)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn order(json: &str) -> Wire {
        Wire::parse(json.as_bytes()).unwrap()
    }

    #[test]
    fn order_maps_lines_to_canonical_shape() {
        let wire = order(
            r#"{"id":"o1","number":"S-ORD101001","externalDocumentNumber":"5001","email":"a@example.com","customerNumber":"C-1","status":"Open","fullyShipped":false,
            "salesOrderLines":[{"lineType":"Item","lineObjectNumber":"MUG-RED","quantity":2,"unitPrice":24.10},{"lineType":"Comment","description":"gift"}]}"#,
        );
        let (key, fields) = order_fields(&wire).unwrap();
        assert_eq!(key, "5001");
        assert_eq!(fields[&FieldName::new("customer")], Wire::Text("C-1".into()));
        assert_eq!(
            fields[&FieldName::new("lines")],
            order(r#"[{"sku":"MUG-RED","quantity":2,"unit_price":"24.1"}]"#)
        );
        assert!(!fields.contains_key(&FieldName::new("status")));
    }

    #[test]
    fn shipped_order_is_fulfilled() {
        let wire = order(r#"{"externalDocumentNumber":"5001","status":"Released","fullyShipped":true}"#);
        let (_, fields) = order_fields(&wire).unwrap();
        assert_eq!(fields[&FieldName::new("status")], Wire::Text("fulfilled".into()));
    }

    #[test]
    fn order_without_external_number_is_skipped() {
        assert!(order_fields(&order(r#"{"number":"S-ORD1","externalDocumentNumber":""}"#)).is_none());
    }

    #[test]
    fn lines_render_money_as_exact_numbers() {
        let lines = lines_of(&order(r#"[{"sku":"MUG-RED","quantity":2,"unit_price":"24.10"}]"#)).unwrap();
        assert_eq!(
            lines[0].json(),
            r#"{"lineObjectNumber":"MUG-RED","lineType":"Item","quantity":2,"unitPrice":24.10}"#
        );
        assert!(lines_of(&order(r#"[{"sku":"MUG-RED","quantity":"two"}]"#)).is_err());
    }
}
