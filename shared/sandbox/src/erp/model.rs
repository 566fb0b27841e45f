//! The ERP's items and sales orders, their JSON form and partial updates.

use std::collections::BTreeMap;

use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};
use serde_json::value::RawValue;

use crate::documents::{DocumentKind, Documents};
use crate::json_text::{parse_decimal_lenient, parse_decimal_number, serialize_decimal_number};

/// An item (product) of the ERP. Money is written to JSON as numbers with exact digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Item {
    /// The ERP's internal id, such as `ITEM-0001`.
    pub id: String,
    /// The item number, which fieldsync uses as the SKU.
    pub number: String,
    pub description: String,
    #[serde(serialize_with = "serialize_decimal_number")]
    pub unit_price: Decimal,
    pub inventory: i64,
    pub customer_prices: Vec<CustomerPrice>,
    pub meta_title: Option<String>,
    pub meta_description: Option<String>,
    #[serde(serialize_with = "serialize_time")]
    pub last_modified: DateTime<Utc>,
    /// Incremented by every change; the `ETag` is this number in quotes.
    pub version: u64,
}

/// A price agreed with one customer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CustomerPrice {
    pub customer: String,
    #[serde(serialize_with = "serialize_decimal_number")]
    pub unit_price: Decimal,
}

/// A sales order, found by its ERP `number` or by the caller's `external_id`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SalesOrder {
    /// The ERP's order number, such as `SO-1001`.
    pub number: String,
    /// The caller's unique key for the order; a second POST with it updates this order.
    pub external_id: String,
    /// The customer's own order reference, such as the storefront's order name.
    pub reference: Option<String>,
    pub customer_email: Option<String>,
    #[serde(serialize_with = "serialize_decimal_number")]
    pub total: Decimal,
    pub financial_status: Option<String>,
    pub note: Option<String>,
    pub lines: Vec<OrderLine>,
    /// The customer's external id without its `customer:` prefix (fieldsync's record key).
    pub customer: Option<String>,
    /// The quote the order came from, as the storefront names it.
    pub quote: Option<String>,
    /// `placed` or `fulfilled`.
    pub status: Option<String>,
    #[serde(serialize_with = "serialize_time")]
    pub last_modified: DateTime<Utc>,
    pub version: u64,
}

/// One line of a sales order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderLine {
    pub sku: String,
    pub quantity: i64,
    #[serde(serialize_with = "serialize_decimal_number")]
    pub unit_price: Decimal,
}

/// Writes timestamps as RFC 3339 in UTC with milliseconds, so two changes within one second
/// still get different `last_modified` values.
fn serialize_time<S: Serializer>(time: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&time.to_rfc3339_opts(SecondsFormat::Millis, true))
}

/// A partial update of an item. `None` leaves a value unchanged; `Some(None)` clears a nullable
/// value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemEdit {
    pub description: Option<String>,
    pub unit_price: Option<Decimal>,
    pub inventory: Option<i64>,
    pub customer_prices: Option<Vec<CustomerPrice>>,
    pub meta_title: Option<Option<String>>,
    pub meta_description: Option<Option<String>>,
}

/// A partial update of a sales order, with the same conventions as [`ItemEdit`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrderEdit {
    pub reference: Option<Option<String>>,
    pub customer_email: Option<Option<String>>,
    pub total: Option<Decimal>,
    pub financial_status: Option<Option<String>>,
    pub note: Option<Option<String>>,
    pub lines: Option<Vec<OrderLine>>,
    pub customer: Option<Option<String>>,
    pub quote: Option<Option<String>>,
    pub status: Option<Option<String>>,
}

/// A request body field that is unknown, read-only or of the wrong type (HTTP 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field '{field}': {message}")]
pub(crate) struct FieldError {
    pub(crate) field: String,
    pub(crate) message: String,
}

fn field_error(field: &str, message: impl Into<String>) -> FieldError {
    FieldError {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// A JSON object body with each member kept as raw text, so numbers are read exactly.
pub(crate) type RawObject = BTreeMap<String, Box<RawValue>>;

pub(crate) fn parse_object(body: &[u8]) -> Result<RawObject, FieldError> {
    serde_json::from_slice(body).map_err(|error| field_error("(body)", format!("expected a JSON object: {error}")))
}

fn text(field: &str, raw: &RawValue) -> Result<String, FieldError> {
    serde_json::from_str(raw.get()).map_err(|_| field_error(field, "expected a string"))
}

fn nullable_text(field: &str, raw: &RawValue) -> Result<Option<String>, FieldError> {
    serde_json::from_str(raw.get()).map_err(|_| field_error(field, "expected a string or null"))
}

fn money(field: &str, raw: &RawValue) -> Result<Decimal, FieldError> {
    let amount = parse_decimal_number(raw).map_err(|message| field_error(field, message))?;
    if amount.is_sign_negative() {
        return Err(field_error(field, "must not be negative"));
    }
    Ok(amount)
}

fn integer(field: &str, raw: &RawValue) -> Result<i64, FieldError> {
    serde_json::from_str(raw.get()).map_err(|_| field_error(field, "expected a whole number"))
}

fn customer_prices(raw: &RawValue) -> Result<Vec<CustomerPrice>, FieldError> {
    let entries: Vec<RawObject> =
        serde_json::from_str(raw.get()).map_err(|_| field_error("customer_prices", "expected an array of objects"))?;
    entries
        .iter()
        .map(|entry| {
            let customer = entry
                .get("customer")
                .ok_or_else(|| field_error("customer_prices.customer", "is required"))
                .and_then(|raw| text("customer_prices.customer", raw))?;
            let unit_price = entry
                .get("unit_price")
                .ok_or_else(|| field_error("customer_prices.unit_price", "is required"))
                .and_then(|raw| money("customer_prices.unit_price", raw))?;
            Ok(CustomerPrice { customer, unit_price })
        })
        .collect()
}

/// Parses order lines. `unit_price` may be a JSON number or a decimal string, because storefront
/// order lines carry prices as strings.
fn order_lines(raw: &RawValue) -> Result<Vec<OrderLine>, FieldError> {
    let entries: Vec<RawObject> =
        serde_json::from_str(raw.get()).map_err(|_| field_error("lines", "expected an array of objects"))?;
    entries
        .iter()
        .map(|entry| {
            let sku = entry
                .get("sku")
                .ok_or_else(|| field_error("lines.sku", "is required"))
                .and_then(|raw| text("lines.sku", raw))?;
            let quantity = entry
                .get("quantity")
                .ok_or_else(|| field_error("lines.quantity", "is required"))
                .and_then(|raw| integer("lines.quantity", raw))?;
            let unit_price = match entry.get("unit_price") {
                Some(raw) => parse_decimal_lenient(raw).map_err(|message| field_error("lines.unit_price", message))?,
                None => Decimal::ZERO,
            };
            Ok(OrderLine {
                sku,
                quantity,
                unit_price,
            })
        })
        .collect()
}

impl ItemEdit {
    /// Reads a PATCH body. Unknown and read-only fields are rejected.
    pub(crate) fn parse(body: &RawObject) -> Result<Self, FieldError> {
        let mut edit = Self::default();
        for (name, raw) in body {
            match name.as_str() {
                "description" => edit.description = Some(text(name, raw)?),
                "unit_price" => edit.unit_price = Some(money(name, raw)?),
                "inventory" => edit.inventory = Some(integer(name, raw)?),
                "customer_prices" => edit.customer_prices = Some(customer_prices(raw)?),
                "meta_title" => edit.meta_title = Some(nullable_text(name, raw)?),
                "meta_description" => edit.meta_description = Some(nullable_text(name, raw)?),
                "id" | "number" | "last_modified" | "version" => return Err(field_error(name, "is read-only")),
                _ => return Err(field_error(name, "is not a field of items")),
            }
        }
        Ok(edit)
    }

    /// Applies the edit and returns whether a value changed. Does not touch the version.
    pub(crate) fn apply(self, item: &mut Item) -> bool {
        let before = item.clone();
        if let Some(description) = self.description {
            item.description = description;
        }
        if let Some(unit_price) = self.unit_price {
            item.unit_price = unit_price;
        }
        if let Some(inventory) = self.inventory {
            item.inventory = inventory;
        }
        if let Some(prices) = self.customer_prices {
            item.customer_prices = prices;
        }
        if let Some(meta_title) = self.meta_title {
            item.meta_title = meta_title;
        }
        if let Some(meta_description) = self.meta_description {
            item.meta_description = meta_description;
        }
        *item != before
    }
}

impl OrderEdit {
    /// Reads a POST or PATCH body, skipping `skip` (the `external_id` of a POST).
    pub(crate) fn parse(body: &RawObject, skip: &[&str]) -> Result<Self, FieldError> {
        let mut edit = Self::default();
        for (name, raw) in body {
            match name.as_str() {
                _ if skip.contains(&name.as_str()) => {}
                "reference" => edit.reference = Some(nullable_text(name, raw)?),
                "customer_email" => edit.customer_email = Some(nullable_text(name, raw)?),
                "total" => edit.total = Some(money(name, raw)?),
                "financial_status" => edit.financial_status = Some(nullable_text(name, raw)?),
                "note" => edit.note = Some(nullable_text(name, raw)?),
                "lines" => edit.lines = Some(order_lines(raw)?),
                "customer" => edit.customer = Some(nullable_text(name, raw)?),
                "quote" => edit.quote = Some(nullable_text(name, raw)?),
                "status" => edit.status = Some(nullable_text(name, raw)?),
                "number" | "external_id" | "last_modified" | "version" => {
                    return Err(field_error(name, "is read-only"))
                }
                _ => return Err(field_error(name, "is not a field of sales orders")),
            }
        }
        Ok(edit)
    }

    /// Applies the edit and returns whether a value changed. Does not touch the version.
    pub(crate) fn apply(self, order: &mut SalesOrder) -> bool {
        let before = order.clone();
        if let Some(reference) = self.reference {
            order.reference = reference;
        }
        if let Some(email) = self.customer_email {
            order.customer_email = email;
        }
        if let Some(total) = self.total {
            order.total = total;
        }
        if let Some(status) = self.financial_status {
            order.financial_status = status;
        }
        if let Some(note) = self.note {
            order.note = note;
        }
        if let Some(lines) = self.lines {
            order.lines = lines;
        }
        if let Some(customer) = self.customer {
            order.customer = customer;
        }
        if let Some(quote) = self.quote {
            order.quote = quote;
        }
        if let Some(status) = self.status {
            order.status = status;
        }
        *order != before
    }
}

/// Reads the `external_id` a sales order POST must carry.
pub(crate) fn external_id(body: &RawObject) -> Result<String, FieldError> {
    let raw = body
        .get("external_id")
        .ok_or_else(|| field_error("external_id", "is required"))?;
    let external_id = text("external_id", raw)?;
    if external_id.trim().is_empty() {
        return Err(field_error("external_id", "must not be empty"));
    }
    Ok(external_id)
}

/// All items, sales orders and other documents of the ERP.
#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) items: BTreeMap<String, Item>,
    pub(crate) orders: BTreeMap<String, SalesOrder>,
    pub(crate) documents: Documents,
    next_item: u32,
    next_order: u32,
}

impl Store {
    pub(crate) fn new() -> Self {
        Self {
            next_item: 1,
            next_order: 1001,
            ..Self::default()
        }
    }

    /// Creates an empty item with the next id.
    pub(crate) fn new_item(&mut self, number: &str, now: DateTime<Utc>) -> Item {
        let id = format!("ITEM-{:04}", self.next_item);
        self.next_item += 1;
        Item {
            id,
            number: number.to_owned(),
            description: number.to_owned(),
            unit_price: Decimal::ZERO,
            inventory: 0,
            customer_prices: Vec::new(),
            meta_title: None,
            meta_description: None,
            last_modified: now,
            version: 1,
        }
    }

    /// Creates an empty sales order with the next number.
    pub(crate) fn new_order(&mut self, external_id: &str, now: DateTime<Utc>) -> SalesOrder {
        let number = format!("SO-{}", self.next_order);
        self.next_order += 1;
        SalesOrder {
            number,
            external_id: external_id.to_owned(),
            reference: None,
            customer_email: None,
            total: Decimal::ZERO,
            financial_status: None,
            note: None,
            lines: Vec::new(),
            customer: None,
            quote: None,
            status: None,
            last_modified: now,
            version: 1,
        }
    }

    pub(crate) fn order_by_external_id(&self, external_id: &str) -> Option<&SalesOrder> {
        self.orders.values().find(|order| order.external_id == external_id)
    }

    /// Returns the next number of a document kind: `CUST-1001`, `Q-1001`, `SH-1001`, `RMA-1001`.
    pub(crate) fn next_document_number(&self, kind: DocumentKind) -> String {
        let prefix = match kind {
            DocumentKind::Customer => "CUST",
            DocumentKind::Quote => "Q",
            DocumentKind::Order => "SO",
            DocumentKind::Shipment => "SH",
            DocumentKind::Return => "RMA",
        };
        format!("{prefix}-{}", 1001 + self.documents.count(kind))
    }

    /// Checks the records a document or order names, as the ERP's own validation would: its
    /// `customer` must be a customer created with external id `customer:<value>`, and a
    /// return's `order` a sales order with external id `order:<value>`.
    pub(crate) fn check_references(&self, customer: Option<&str>, order: Option<&str>) -> Result<(), FieldError> {
        if let Some(customer) = customer {
            let external_id = format!("customer:{customer}");
            if self
                .documents
                .by_external_id(DocumentKind::Customer, &external_id)
                .is_none()
            {
                return Err(field_error("customer", format!("customer {external_id} not found")));
            }
        }
        if let Some(order) = order {
            if self.order_by_external_id(&format!("order:{order}")).is_none() {
                return Err(field_error("order", format!("sales order order:{order} not found")));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn item_json_writes_money_as_exact_numbers() {
        let mut store = Store::new();
        let now = DateTime::parse_from_rfc3339("2025-06-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let mut item = store.new_item("MUG-RED", now);
        item.unit_price = Decimal::from_str("19.99").unwrap();
        item.customer_prices.push(CustomerPrice {
            customer: "C-100".to_owned(),
            unit_price: Decimal::from_str("17.50").unwrap(),
        });
        let json = serde_json::to_string(&item).unwrap();
        assert!(json.contains(r#""unit_price":19.99,"#), "{json}");
        assert!(json.contains(r#"{"customer":"C-100","unit_price":17.5}"#), "{json}");
        assert!(json.contains(r#""last_modified":"2025-06-01T10:00:00.000Z""#), "{json}");
        assert!(json.starts_with(r#"{"id":"ITEM-0001","number":"MUG-RED""#), "{json}");
    }

    #[test]
    fn item_edit_rejects_invalid_fields() {
        let body = parse_object(br#"{"unit_price":"19.99"}"#).unwrap();
        assert_eq!(ItemEdit::parse(&body).unwrap_err().field, "unit_price");
        let body = parse_object(br#"{"version":4}"#).unwrap();
        assert_eq!(ItemEdit::parse(&body).unwrap_err().message, "is read-only");
        let body = parse_object(br#"{"unit_price":0.30000000000000004,"meta_title":null}"#).unwrap();
        let edit = ItemEdit::parse(&body).unwrap();
        assert_eq!(edit.unit_price, Some(Decimal::from_str("0.30000000000000004").unwrap()));
        assert_eq!(edit.meta_title, Some(None));
    }

    #[test]
    fn order_lines_accept_string_prices() {
        let body = parse_object(br#"{"lines":[{"sku":"MUG-RED","quantity":2,"unit_price":"21.25"}]}"#).unwrap();
        let edit = OrderEdit::parse(&body, &[]).unwrap();
        assert_eq!(edit.lines.unwrap()[0].unit_price, Decimal::from_str("21.25").unwrap());
    }
}
