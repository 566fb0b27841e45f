//! Business Central items and subscriptions, their JSON form and the request bodies that change
//! them.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::{DateTime, SecondsFormat, Utc};
use rust_decimal::Decimal;
use serde::Serialize;
use serde_json::value::RawValue;

use super::filter::{Filterable, Kind, Value};
use crate::json_text::{decimal_raw, parse_decimal_number};

/// The maximum length of an item number, a `Code[20]` field in Business Central.
pub(crate) const MAX_NUMBER_LEN: usize = 20;
/// The maximum length of an item's display name, a `Text[100]` field in Business Central.
pub(crate) const MAX_DISPLAY_NAME_LEN: usize = 100;

/// The length of Business Central's `Description 2` (`displayName2`).
const MAX_DISPLAY_NAME_2_LEN: usize = 50;
/// The maximum length of a subscription's `clientState`, as the subscription docs give it.
pub(crate) const MAX_CLIENT_STATE_LEN: usize = 2048;

/// An item of the sandbox company, as the API v2.0 `items` entity shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    /// The item's GUID (`SystemId`), generated when the item is created.
    pub id: String,
    /// The item number, which fieldsync uses as the SKU.
    pub number: String,
    pub display_name: String,
    /// The item's second description (`Description 2`).
    pub display_name_2: String,
    pub unit_price: Decimal,
    /// Units in stock. The API cannot change it; the warehouse does, through
    /// [`super::BusinessCentralHandle::set_inventory_as_user`].
    pub inventory: Decimal,
    pub last_modified: DateTime<Utc>,
    /// The row version behind the `@odata.etag`; unique across the sandbox and raised by every
    /// change.
    pub version: u64,
}

impl Item {
    /// Returns the weak entity tag that `@odata.etag` carries and `If-Match` must repeat.
    pub fn etag(&self) -> String {
        weak_etag(self.version)
    }
}

impl Filterable for Item {
    const PROPERTIES: &'static [(&'static str, Kind)] = &[
        ("id", Kind::Guid),
        ("number", Kind::Text),
        ("displayName", Kind::Text),
        ("unitPrice", Kind::Decimal),
        ("inventory", Kind::Decimal),
        ("lastModifiedDateTime", Kind::DateTime),
    ];

    fn property(&self, name: &str) -> Option<Value> {
        match name {
            "id" => Some(Value::Text(self.id.to_ascii_lowercase())),
            "number" => Some(Value::Text(self.number.clone())),
            "displayName" => Some(Value::Text(self.display_name.clone())),
            "unitPrice" => Some(Value::Decimal(self.unit_price)),
            "inventory" => Some(Value::Decimal(self.inventory)),
            "lastModifiedDateTime" => Some(Value::DateTime(self.last_modified)),
            _ => None,
        }
    }
}

/// A change to an item, as a person makes it in Business Central. `None` leaves a value as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ItemEdit {
    pub display_name: Option<String>,
    pub display_name_2: Option<String>,
    pub unit_price: Option<Decimal>,
    pub inventory: Option<Decimal>,
}

impl ItemEdit {
    /// Applies the edit and returns whether a value changed. Does not touch the version.
    pub(crate) fn apply(&self, item: &mut Item) -> bool {
        let before = item.clone();
        if let Some(display_name) = &self.display_name {
            item.display_name.clone_from(display_name);
        }
        if let Some(display_name_2) = &self.display_name_2 {
            item.display_name_2.clone_from(display_name_2);
        }
        if let Some(unit_price) = self.unit_price {
            item.unit_price = unit_price;
        }
        if let Some(inventory) = self.inventory {
            item.inventory = inventory;
        }
        *item != before
    }
}

/// A webhook subscription, as the API v2.0 `subscriptions` entity shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// 32 lowercase hex digits, the form Business Central uses.
    pub subscription_id: String,
    pub notification_url: String,
    /// The subscribed collection as the client sent it, such as
    /// `/api/v2.0/companies(<id>)/items`.
    pub resource: String,
    pub client_state: String,
    pub expiration: DateTime<Utc>,
    pub last_modified: DateTime<Utc>,
    pub version: u64,
}

impl Subscription {
    /// Returns the weak entity tag that `@odata.etag` carries and `If-Match` must repeat.
    pub fn etag(&self) -> String {
        weak_etag(self.version)
    }
}

/// Builds a weak entity tag in the shape Business Central uses: base64 text in `W/"…"`.
pub(crate) fn weak_etag(version: u64) -> String {
    let token = base64::engine::general_purpose::STANDARD.encode(format!("'{version};'"));
    format!("W/\"{token}\"")
}

/// Writes a time in UTC with milliseconds, as Business Central writes `lastModifiedDateTime`.
pub(crate) fn millis(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Writes a time in UTC with whole seconds, as Business Central writes `expirationDateTime`.
pub(crate) fn seconds(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

#[derive(Serialize)]
struct ItemJson<'a> {
    #[serde(rename = "@odata.context", skip_serializing_if = "Option::is_none")]
    context: Option<&'a str>,
    #[serde(rename = "@odata.etag")]
    etag: String,
    id: &'a str,
    number: &'a str,
    #[serde(rename = "displayName")]
    display_name: &'a str,
    #[serde(rename = "displayName2")]
    display_name_2: &'a str,
    #[serde(rename = "unitPrice")]
    unit_price: Box<RawValue>,
    inventory: Box<RawValue>,
    #[serde(rename = "lastModifiedDateTime")]
    last_modified: String,
}

/// Serializes an item with exact money digits; `context` is the `@odata.context` of a
/// single-entity response.
pub(crate) fn item_json(item: &Item, context: Option<&str>) -> Box<RawValue> {
    let json = ItemJson {
        context,
        etag: item.etag(),
        id: &item.id,
        number: &item.number,
        display_name: &item.display_name,
        display_name_2: &item.display_name_2,
        unit_price: decimal_raw(&item.unit_price),
        inventory: decimal_raw(&item.inventory),
        last_modified: millis(item.last_modified),
    };
    // The struct contains only strings and valid JSON numbers, so serializing cannot fail.
    serde_json::value::to_raw_value(&json).unwrap_or_default()
}

/// The `userId` every subscription shows: the sandbox has one API user.
const SANDBOX_USER_ID: &str = "00000000-0000-0000-0000-000000000001";

#[derive(Serialize)]
struct SubscriptionJson<'a> {
    #[serde(rename = "@odata.context", skip_serializing_if = "Option::is_none")]
    context: Option<&'a str>,
    #[serde(rename = "@odata.etag")]
    etag: String,
    #[serde(rename = "subscriptionId")]
    subscription_id: &'a str,
    #[serde(rename = "notificationUrl")]
    notification_url: &'a str,
    resource: &'a str,
    #[serde(rename = "userId")]
    user_id: &'a str,
    #[serde(rename = "lastModifiedDateTime")]
    last_modified: String,
    #[serde(rename = "clientState")]
    client_state: &'a str,
    #[serde(rename = "expirationDateTime")]
    expiration: String,
}

/// Serializes a subscription; `context` is the `@odata.context` of a single-entity response.
pub(crate) fn subscription_json(subscription: &Subscription, context: Option<&str>) -> Box<RawValue> {
    let json = SubscriptionJson {
        context,
        etag: subscription.etag(),
        subscription_id: &subscription.subscription_id,
        notification_url: &subscription.notification_url,
        resource: &subscription.resource,
        user_id: SANDBOX_USER_ID,
        last_modified: millis(subscription.last_modified),
        client_state: &subscription.client_state,
        expiration: seconds(subscription.expiration),
    };
    serde_json::value::to_raw_value(&json).unwrap_or_default()
}

/// A request body member that is missing, unknown, read-only or of the wrong type (HTTP 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub(crate) struct BodyError {
    /// The OData error code, such as `BadRequest_InvalidOperation` for a read-only property.
    pub(crate) code: &'static str,
    pub(crate) message: String,
}

pub(crate) fn invalid(message: impl Into<String>) -> BodyError {
    BodyError {
        code: "BadRequest",
        message: message.into(),
    }
}

/// A JSON object body with each member kept as raw text, so numbers are read exactly.
pub(crate) type RawObject = BTreeMap<String, Box<RawValue>>;

/// Reads a JSON object body. OData annotations such as `@odata.etag` are dropped, because
/// Business Central takes the concurrency token from `If-Match` only.
pub(crate) fn parse_object(body: &[u8]) -> Result<RawObject, BodyError> {
    let mut object: RawObject =
        serde_json::from_slice(body).map_err(|error| invalid(format!("Invalid Request Body: {error}")))?;
    object.retain(|name, _| !name.starts_with("@odata."));
    Ok(object)
}

pub(crate) fn text(name: &str, raw: &RawValue, max_len: usize) -> Result<String, BodyError> {
    let value: String = serde_json::from_str(raw.get())
        .map_err(|_| invalid(format!("Cannot convert the value of property '{name}' to a string.")))?;
    if value.chars().count() > max_len {
        return Err(BodyError {
            code: "Application_StringExceededLength",
            message: format!(
                "The length of the string for '{name}' is {}, but it must be less than or equal to {max_len} characters.",
                value.chars().count()
            ),
        });
    }
    Ok(value)
}

pub(crate) fn money(name: &str, raw: &RawValue) -> Result<Decimal, BodyError> {
    let amount = parse_decimal_number(raw).map_err(|reason| {
        invalid(format!(
            "Cannot convert the value of property '{name}' to Edm.Decimal: {reason}"
        ))
    })?;
    // NOTE: assumes the item table's Unit Price rejects negative values, as its page does.
    if amount.is_sign_negative() {
        return Err(BodyError {
            code: "Application_FieldValidationException",
            message: format!("'{name}' must not be negative."),
        });
    }
    Ok(amount)
}

pub(crate) fn read_only(name: &str) -> BodyError {
    BodyError {
        code: "BadRequest_InvalidOperation",
        message: format!("The property '{name}' is read-only."),
    }
}

pub(crate) fn unknown(name: &str, entity: &str) -> BodyError {
    invalid(format!(
        "The property '{name}' does not exist on type 'Microsoft.NAV.{entity}'. Make sure to only use property names that are defined by the type."
    ))
}

/// The writable members of an item body (POST or PATCH).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ItemWrite {
    pub(crate) number: Option<String>,
    pub(crate) display_name: Option<String>,
    pub(crate) display_name_2: Option<String>,
    pub(crate) unit_price: Option<Decimal>,
}

impl ItemWrite {
    /// Reads an item body. `inventory`, `id` and `lastModifiedDateTime` are read-only, and an
    /// unknown member is rejected.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, BodyError> {
        let mut write = Self::default();
        for (name, raw) in parse_object(body)? {
            match name.as_str() {
                "number" => write.number = Some(text(&name, &raw, MAX_NUMBER_LEN)?),
                "displayName" => write.display_name = Some(text(&name, &raw, MAX_DISPLAY_NAME_LEN)?),
                "displayName2" => write.display_name_2 = Some(text(&name, &raw, MAX_DISPLAY_NAME_2_LEN)?),
                "unitPrice" => write.unit_price = Some(money(&name, &raw)?),
                "id" | "inventory" | "lastModifiedDateTime" => return Err(read_only(&name)),
                _ => return Err(unknown(&name, "item")),
            }
        }
        if write.number.as_deref().is_some_and(|number| number.trim().is_empty()) {
            return Err(BodyError {
                code: "BadRequest_RequiredParamNotProvided",
                message: "Field 'number' must not be blank or empty.".to_owned(),
            });
        }
        Ok(write)
    }

    /// Applies the write and returns whether a value changed. Does not touch the version.
    pub(crate) fn apply(&self, item: &mut Item) -> bool {
        let before = item.clone();
        if let Some(number) = &self.number {
            item.number.clone_from(number);
        }
        if let Some(display_name) = &self.display_name {
            item.display_name.clone_from(display_name);
        }
        if let Some(display_name_2) = &self.display_name_2 {
            item.display_name_2.clone_from(display_name_2);
        }
        if let Some(unit_price) = self.unit_price {
            item.unit_price = unit_price;
        }
        *item != before
    }
}

/// The members of a subscription body (POST or PATCH).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SubscriptionWrite {
    pub(crate) notification_url: Option<String>,
    pub(crate) resource: Option<String>,
    pub(crate) client_state: Option<String>,
}

impl SubscriptionWrite {
    /// Reads a subscription body; an unknown or read-only member is rejected.
    pub(crate) fn parse(body: &[u8]) -> Result<Self, BodyError> {
        let mut write = Self::default();
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(write);
        }
        for (name, raw) in parse_object(body)? {
            match name.as_str() {
                "notificationUrl" => write.notification_url = Some(text(&name, &raw, usize::MAX)?),
                "resource" => write.resource = Some(text(&name, &raw, usize::MAX)?),
                "clientState" => write.client_state = Some(text(&name, &raw, MAX_CLIENT_STATE_LEN)?),
                "subscriptionId" | "userId" | "lastModifiedDateTime" | "expirationDateTime" | "timestamp" => {
                    return Err(read_only(&name))
                }
                _ => return Err(unknown(&name, "subscriptions")),
            }
        }
        if let Some(url) = &write.notification_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(format!(
                    "The notificationUrl '{url}' is not an absolute http or https URL."
                )));
            }
        }
        Ok(write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[test]
    fn item_write_reads_exact_money() {
        let write = ItemWrite::parse(br#"{"unitPrice": 24.10, "@odata.etag": "W/\"x\""}"#).unwrap();
        assert_eq!(write.unit_price, Some(Decimal::from_str("24.10").unwrap()));
    }

    #[test]
    fn item_write_rejects_string_money() {
        let error = ItemWrite::parse(br#"{"unitPrice": "24.10"}"#).unwrap_err();
        assert_eq!(error.code, "BadRequest");
    }

    #[test]
    fn item_write_rejects_inventory() {
        let error = ItemWrite::parse(br#"{"inventory": 5}"#).unwrap_err();
        assert_eq!(error.code, "BadRequest_InvalidOperation");
    }

    #[test]
    fn item_write_rejects_unknown_member() {
        assert!(ItemWrite::parse(br#"{"colour": "red"}"#).is_err());
    }

    #[test]
    fn etag_is_weak_and_changes_with_version() {
        let first = weak_etag(1);
        assert!(first.starts_with("W/\"") && first.ends_with('"'));
        assert_ne!(first, weak_etag(2));
    }

    #[test]
    fn subscription_write_rejects_relative_url() {
        assert!(SubscriptionWrite::parse(br#"{"notificationUrl": "hooks/bc"}"#).is_err());
    }
}
