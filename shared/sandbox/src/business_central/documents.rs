//! Business Central customers and sales orders with their lines: their JSON form and the request
//! bodies that create or change them.

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::value::RawValue;

use super::filter::{Filterable, Kind, Value};
use super::model::{
    invalid, millis, money, parse_object, read_only, text, unknown, weak_etag, BodyError, MAX_DISPLAY_NAME_LEN,
    MAX_NUMBER_LEN,
};
use crate::json_text::decimal_raw;

/// Lengths of the customer table's fields behind the API members.
const MAX_EMAIL_LEN: usize = 80;
const MAX_PHONE_LEN: usize = 30;
const MAX_ADDRESS_LEN: usize = 100;
const MAX_ADDRESS_2_LEN: usize = 50;
const MAX_CITY_LEN: usize = 30;
const MAX_COUNTRY_LEN: usize = 10;
/// The length of a sales header's `External Document No.`.
const MAX_EXTERNAL_DOCUMENT_LEN: usize = 35;

/// A customer of the sandbox company, as the API v2.0 `customers` entity shows it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Customer {
    /// The customer's GUID (`SystemId`).
    pub id: String,
    /// The customer number, upper case like every `Code` field.
    pub number: String,
    pub display_name: String,
    pub email: String,
    pub phone_number: String,
    pub address_line_1: String,
    pub address_line_2: String,
    pub city: String,
    pub state: String,
    pub country: String,
    pub postal_code: String,
    pub last_modified: DateTime<Utc>,
    /// The row version behind the `@odata.etag`.
    pub version: u64,
}

impl Customer {
    /// Returns the weak entity tag that `@odata.etag` carries and `If-Match` must repeat.
    pub fn etag(&self) -> String {
        weak_etag(self.version)
    }
}

impl Filterable for Customer {
    const PROPERTIES: &'static [(&'static str, Kind)] = &[
        ("id", Kind::Guid),
        ("number", Kind::Text),
        ("displayName", Kind::Text),
        ("email", Kind::Text),
        ("phoneNumber", Kind::Text),
        ("lastModifiedDateTime", Kind::DateTime),
    ];

    fn property(&self, name: &str) -> Option<Value> {
        match name {
            "id" => Some(Value::Text(self.id.to_ascii_lowercase())),
            "number" => Some(Value::Text(self.number.clone())),
            "displayName" => Some(Value::Text(self.display_name.clone())),
            "email" => Some(Value::Text(self.email.clone())),
            "phoneNumber" => Some(Value::Text(self.phone_number.clone())),
            "lastModifiedDateTime" => Some(Value::DateTime(self.last_modified)),
            _ => None,
        }
    }
}

/// A change to a customer, as a person makes it in Business Central or as a POST or PATCH body
/// carries it. `None` leaves a value as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CustomerEdit {
    pub number: Option<String>,
    pub display_name: Option<String>,
    pub email: Option<String>,
    pub phone_number: Option<String>,
    pub address_line_1: Option<String>,
    pub address_line_2: Option<String>,
    pub city: Option<String>,
    pub state: Option<String>,
    pub country: Option<String>,
    pub postal_code: Option<String>,
}

impl CustomerEdit {
    /// Reads a customer body; `id` and `lastModifiedDateTime` are read-only and an unknown member
    /// is rejected.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, BodyError> {
        let mut edit = Self::default();
        for (name, raw) in parse_object(body)? {
            let slot = match name.as_str() {
                "number" => (&mut edit.number, MAX_NUMBER_LEN),
                "displayName" => (&mut edit.display_name, MAX_DISPLAY_NAME_LEN),
                "email" => (&mut edit.email, MAX_EMAIL_LEN),
                "phoneNumber" => (&mut edit.phone_number, MAX_PHONE_LEN),
                "addressLine1" => (&mut edit.address_line_1, MAX_ADDRESS_LEN),
                "addressLine2" => (&mut edit.address_line_2, MAX_ADDRESS_2_LEN),
                "city" => (&mut edit.city, MAX_CITY_LEN),
                "state" => (&mut edit.state, MAX_CITY_LEN),
                "country" => (&mut edit.country, MAX_COUNTRY_LEN),
                "postalCode" => (&mut edit.postal_code, MAX_NUMBER_LEN),
                "id" | "lastModifiedDateTime" => return Err(read_only(&name)),
                _ => return Err(unknown(&name, "customer")),
            };
            *slot.0 = Some(text(&name, &raw, slot.1)?);
        }
        if edit.number.as_deref().is_some_and(|number| number.trim().is_empty()) {
            return Err(BodyError {
                code: "BadRequest_RequiredParamNotProvided",
                message: "Field 'number' must not be blank or empty.".to_owned(),
            });
        }
        edit.number = edit.number.map(|number| number.to_uppercase());
        Ok(edit)
    }

    /// Applies the edit and returns whether a value changed. Does not touch the version.
    pub(crate) fn apply(&self, customer: &mut Customer) -> bool {
        let before = customer.clone();
        let pairs = [
            (&self.number, &mut customer.number),
            (&self.display_name, &mut customer.display_name),
            (&self.email, &mut customer.email),
            (&self.phone_number, &mut customer.phone_number),
            (&self.address_line_1, &mut customer.address_line_1),
            (&self.address_line_2, &mut customer.address_line_2),
            (&self.city, &mut customer.city),
            (&self.state, &mut customer.state),
            (&self.country, &mut customer.country),
            (&self.postal_code, &mut customer.postal_code),
        ];
        for (edit, value) in pairs {
            if let Some(edit) = edit {
                value.clone_from(edit);
            }
        }
        *customer != before
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct CustomerJson<'a> {
    #[serde(rename = "@odata.context", skip_serializing_if = "Option::is_none")]
    context: Option<&'a str>,
    #[serde(rename = "@odata.etag")]
    etag: String,
    id: &'a str,
    number: &'a str,
    display_name: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    address_line1: &'a str,
    address_line2: &'a str,
    city: &'a str,
    state: &'a str,
    country: &'a str,
    postal_code: &'a str,
    phone_number: &'a str,
    email: &'a str,
    last_modified_date_time: String,
}

/// Serializes a customer; `context` is the `@odata.context` of a single-entity response.
pub(crate) fn customer_json(customer: &Customer, context: Option<&str>) -> Box<RawValue> {
    let json = CustomerJson {
        context,
        etag: customer.etag(),
        id: &customer.id,
        number: &customer.number,
        display_name: &customer.display_name,
        kind: "Person",
        address_line1: &customer.address_line_1,
        address_line2: &customer.address_line_2,
        city: &customer.city,
        state: &customer.state,
        country: &customer.country,
        postal_code: &customer.postal_code,
        phone_number: &customer.phone_number,
        email: &customer.email,
        last_modified_date_time: millis(customer.last_modified),
    };
    serde_json::value::to_raw_value(&json).unwrap_or_default()
}

/// The status of a sales order, as the API's `status` member writes it.
///
/// NOTE: `Open` and `Released` are values of the base application's Sales Document Status enum.
/// `Draft` and `In Review` are the API's own texts as integrators report them; no reference page
/// opened for this sandbox lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OrderStatus {
    Draft,
    InReview,
    /// The state of a new order: it can still be edited.
    #[default]
    Open,
    /// Released for warehouse handling; the order can no longer be edited until it is reopened.
    Released,
}

impl OrderStatus {
    /// Returns the API's text for the status.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "Draft",
            Self::InReview => "In Review",
            Self::Open => "Open",
            Self::Released => "Released",
        }
    }
}

/// A line of a sales order, as the API v2.0 `salesOrderLines` entity shows it. Only `Item` lines
/// exist in the sandbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesOrderLine {
    pub id: String,
    /// The line number within the order: 10000, 20000, …
    pub sequence: u32,
    pub item_id: String,
    /// The item number.
    pub line_object_number: String,
    pub description: String,
    pub quantity: Decimal,
    pub unit_price: Decimal,
}

/// A sales order of the sandbox company, as the API v2.0 `salesOrders` entity shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SalesOrder {
    pub id: String,
    /// The order number from the sandbox's number series, such as `S-ORD101001`.
    pub number: String,
    /// The sender's reference; fieldsync writes the storefront order id here.
    pub external_document_number: String,
    pub order_date: NaiveDate,
    pub customer_id: String,
    pub customer_number: String,
    pub customer_name: String,
    pub email: String,
    pub status: OrderStatus,
    /// Whether every line has been shipped.
    pub fully_shipped: bool,
    pub lines: Vec<SalesOrderLine>,
    pub last_modified: DateTime<Utc>,
    /// The row version behind the `@odata.etag`.
    pub version: u64,
}

impl SalesOrder {
    /// Returns the weak entity tag that `@odata.etag` carries and `If-Match` must repeat.
    pub fn etag(&self) -> String {
        weak_etag(self.version)
    }

    /// Returns the sum of quantity times unit price over the lines. The sandbox computes no tax,
    /// so this is also `totalAmountIncludingTax`.
    pub fn total(&self) -> Decimal {
        self.lines.iter().map(|line| line.quantity * line.unit_price).sum()
    }
}

impl Filterable for SalesOrder {
    const PROPERTIES: &'static [(&'static str, Kind)] = &[
        ("id", Kind::Guid),
        ("number", Kind::Text),
        ("externalDocumentNumber", Kind::Text),
        ("customerNumber", Kind::Text),
        ("email", Kind::Text),
        ("status", Kind::Text),
        ("lastModifiedDateTime", Kind::DateTime),
    ];

    fn property(&self, name: &str) -> Option<Value> {
        match name {
            "id" => Some(Value::Text(self.id.to_ascii_lowercase())),
            "number" => Some(Value::Text(self.number.clone())),
            "externalDocumentNumber" => Some(Value::Text(self.external_document_number.clone())),
            "customerNumber" => Some(Value::Text(self.customer_number.clone())),
            "email" => Some(Value::Text(self.email.clone())),
            "status" => Some(Value::Text(self.status.as_str().to_owned())),
            "lastModifiedDateTime" => Some(Value::DateTime(self.last_modified)),
            _ => None,
        }
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct LineJson<'a> {
    id: &'a str,
    document_id: &'a str,
    sequence: u32,
    item_id: &'a str,
    line_type: &'a str,
    line_object_number: &'a str,
    description: &'a str,
    quantity: Box<RawValue>,
    unit_price: Box<RawValue>,
}

/// Serializes one line of `order`.
pub(crate) fn line_json(order: &SalesOrder, line: &SalesOrderLine) -> Box<RawValue> {
    let json = LineJson {
        id: &line.id,
        document_id: &order.id,
        sequence: line.sequence,
        item_id: &line.item_id,
        line_type: "Item",
        line_object_number: &line.line_object_number,
        description: &line.description,
        quantity: decimal_raw(&line.quantity),
        unit_price: decimal_raw(&line.unit_price),
    };
    serde_json::value::to_raw_value(&json).unwrap_or_default()
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SalesOrderJson<'a> {
    #[serde(rename = "@odata.context", skip_serializing_if = "Option::is_none")]
    context: Option<&'a str>,
    #[serde(rename = "@odata.etag")]
    etag: String,
    id: &'a str,
    number: &'a str,
    external_document_number: &'a str,
    order_date: String,
    customer_id: &'a str,
    customer_number: &'a str,
    customer_name: &'a str,
    email: &'a str,
    status: &'a str,
    fully_shipped: bool,
    total_amount_including_tax: Box<RawValue>,
    last_modified_date_time: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sales_order_lines: Option<Vec<Box<RawValue>>>,
}

/// Serializes a sales order, with its lines when `expand_lines` is set (`$expand=salesOrderLines`);
/// `context` is the `@odata.context` of a single-entity response.
pub(crate) fn sales_order_json(order: &SalesOrder, context: Option<&str>, expand_lines: bool) -> Box<RawValue> {
    let json = SalesOrderJson {
        context,
        etag: order.etag(),
        id: &order.id,
        number: &order.number,
        external_document_number: &order.external_document_number,
        order_date: order.order_date.format("%Y-%m-%d").to_string(),
        customer_id: &order.customer_id,
        customer_number: &order.customer_number,
        customer_name: &order.customer_name,
        email: &order.email,
        status: order.status.as_str(),
        fully_shipped: order.fully_shipped,
        total_amount_including_tax: decimal_raw(&order.total()),
        last_modified_date_time: millis(order.last_modified),
        sales_order_lines: expand_lines.then(|| order.lines.iter().map(|line| line_json(order, line)).collect()),
    };
    serde_json::value::to_raw_value(&json).unwrap_or_default()
}

/// The writable members of one line in a deep insert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LineWrite {
    pub(crate) line_object_number: Option<String>,
    pub(crate) item_id: Option<String>,
    pub(crate) description: Option<String>,
    pub(crate) quantity: Option<Decimal>,
    pub(crate) unit_price: Option<Decimal>,
}

impl LineWrite {
    fn parse(raw: &RawValue) -> Result<Self, BodyError> {
        let mut line = Self::default();
        for (name, raw) in parse_object(raw.get().as_bytes())? {
            match name.as_str() {
                "lineType" => {
                    let line_type = text(&name, &raw, usize::MAX)?;
                    if line_type != "Item" {
                        return Err(invalid(format!(
                            "The sandbox supports lineType 'Item' only, not '{line_type}'."
                        )));
                    }
                }
                "lineObjectNumber" => line.line_object_number = Some(text(&name, &raw, MAX_NUMBER_LEN)?.to_uppercase()),
                "itemId" => line.item_id = Some(text(&name, &raw, 36)?.to_ascii_lowercase()),
                "description" => line.description = Some(text(&name, &raw, MAX_DISPLAY_NAME_LEN)?),
                "quantity" => line.quantity = Some(money(&name, &raw)?),
                "unitPrice" => line.unit_price = Some(money(&name, &raw)?),
                "id" | "documentId" | "sequence" => return Err(read_only(&name)),
                _ => return Err(unknown(&name, "salesOrderLine")),
            }
        }
        Ok(line)
    }
}

/// The writable members of a sales order body. `lines` is set only by a deep insert.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OrderWrite {
    pub(crate) external_document_number: Option<String>,
    pub(crate) order_date: Option<NaiveDate>,
    pub(crate) customer_id: Option<String>,
    pub(crate) customer_number: Option<String>,
    pub(crate) email: Option<String>,
    pub(crate) lines: Option<Vec<LineWrite>>,
}

impl OrderWrite {
    /// Reads a sales order body. Computed and status members are read-only, and an unknown member
    /// is rejected.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, BodyError> {
        let mut write = Self::default();
        for (name, raw) in parse_object(body)? {
            match name.as_str() {
                "externalDocumentNumber" => {
                    write.external_document_number = Some(text(&name, &raw, MAX_EXTERNAL_DOCUMENT_LEN)?);
                }
                "orderDate" => {
                    let date = text(&name, &raw, usize::MAX)?;
                    let date = NaiveDate::parse_from_str(&date, "%Y-%m-%d").map_err(|_| {
                        invalid(format!("Cannot convert '{date}' of property 'orderDate' to Edm.Date."))
                    })?;
                    write.order_date = Some(date);
                }
                "customerId" => write.customer_id = Some(text(&name, &raw, 36)?.to_ascii_lowercase()),
                "customerNumber" => write.customer_number = Some(text(&name, &raw, MAX_NUMBER_LEN)?.to_uppercase()),
                "email" => write.email = Some(text(&name, &raw, MAX_EMAIL_LEN)?),
                "salesOrderLines" => {
                    let rows: Vec<Box<RawValue>> = serde_json::from_str(raw.get())
                        .map_err(|_| invalid("The property 'salesOrderLines' must be an array of lines."))?;
                    let lines = rows.iter().map(|row| LineWrite::parse(row)).collect::<Result<_, _>>()?;
                    write.lines = Some(lines);
                }
                "id"
                | "number"
                | "customerName"
                | "status"
                | "fullyShipped"
                | "totalAmountIncludingTax"
                | "lastModifiedDateTime" => return Err(read_only(&name)),
                _ => return Err(unknown(&name, "salesOrder")),
            }
        }
        Ok(write)
    }
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use super::*;

    #[test]
    fn order_write_reads_deep_insert_lines() {
        let body = br#"{"externalDocumentNumber":"5001","customerNumber":"c-1","salesOrderLines":[{"lineType":"Item","lineObjectNumber":"mug-red","quantity":2,"unitPrice":24.10}]}"#;
        let write = OrderWrite::parse(body).unwrap();
        assert_eq!(write.customer_number.as_deref(), Some("C-1"));
        let lines = write.lines.unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].line_object_number.as_deref(), Some("MUG-RED"));
        assert_eq!(lines[0].unit_price, Some(Decimal::from_str("24.10").unwrap()));
    }

    #[test]
    fn order_write_rejects_status() {
        let error = OrderWrite::parse(br#"{"status":"Released"}"#).unwrap_err();
        assert_eq!(error.code, "BadRequest_InvalidOperation");
    }

    #[test]
    fn line_write_rejects_comment_lines() {
        let body = br#"{"salesOrderLines":[{"lineType":"Comment","description":"gift wrap"}]}"#;
        assert!(OrderWrite::parse(body).is_err());
    }

    #[test]
    fn customer_edit_uppercases_number() {
        let edit = CustomerEdit::parse(br#"{"number":"c-1","email":"a@example.com"}"#).unwrap();
        assert_eq!(edit.number.as_deref(), Some("C-1"));
        assert!(CustomerEdit::parse(br#"{"balance":1}"#).is_err());
    }
}
