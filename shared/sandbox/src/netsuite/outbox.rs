//! The outbox deliveries fieldsync's SuiteScripts send: a signed JSON batch of item events.
//!
//! Body: `{"account", "deliveryId", "events": [{"eventId", "recordType", "id", "externalId",
//! "type", "occurredAt", "fields"}]}`. Headers: `X-Fieldsync-Netsuite-Timestamp` (Unix seconds of
//! the attempt) and `X-Fieldsync-Netsuite-Signature: v1=<base64 HMAC-SHA256 of
//! "<timestamp>.<body>">`, computed again for each attempt as the map/reduce script does when it
//! retries a row.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

use super::model::Item;
use crate::delivery::{hmac_sha256_base64, new_uuid, OutgoingEvent, SignHeaders};
use crate::json_text::decimal_raw;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Batch<'a> {
    account: &'a str,
    delivery_id: &'a str,
    events: Vec<Event<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    event_id: String,
    record_type: &'static str,
    id: &'a str,
    external_id: Option<&'a str>,
    r#type: &'a str,
    occurred_at: String,
    fields: Fields<'a>,
}

/// The item's values under their SuiteScript field ids; empty values are left out, as the user
/// event script leaves them out.
#[derive(Serialize)]
struct Fields<'a> {
    itemid: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    displayname: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    baseprice: Option<Box<RawValue>>,
    quantityavailable: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pagetitle: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    metadescription: Option<String>,
}

/// Builds a one-event outbox delivery for an item that a person created (`create`) or edited
/// (`edit`).
pub(crate) fn item_delivery(account: &str, item: &Item, event_type: &str, now: DateTime<Utc>) -> Option<OutgoingEvent> {
    let delivery_id = format!("dlv_{}", new_uuid().replace('-', ""));
    let event = Event {
        event_id: format!("ns_{}", new_uuid().replace('-', "")),
        record_type: "inventoryitem",
        id: &item.internal_id,
        external_id: item.external_id.as_deref(),
        r#type: event_type,
        occurred_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
        fields: Fields {
            itemid: &item.item_id,
            displayname: item.display_name.as_deref(),
            baseprice: item.base_price.as_ref().map(decimal_raw),
            quantityavailable: item.quantity_available,
            pagetitle: item.page_title.as_deref(),
            metadescription: item.meta_description(),
        },
    };
    let batch = Batch {
        account,
        delivery_id: &delivery_id,
        events: vec![event],
    };
    let body = serde_json::to_vec(&batch).ok()?;
    Some(OutgoingEvent {
        topic: format!("inventoryitem.{event_type}"),
        event_id: delivery_id,
        triggered_at: now,
        body,
    })
}

/// Signs each attempt with the shared secret and the attempt's timestamp.
pub(crate) struct OutboxSigner {
    pub(crate) secret: String,
}

impl SignHeaders for OutboxSigner {
    fn headers(&self, event: &OutgoingEvent, _attempt: u32) -> Vec<(String, String)> {
        let timestamp = Utc::now().timestamp().to_string();
        let signature = hmac_sha256_base64(self.secret.as_bytes(), &[timestamp.as_bytes(), b".", &event.body]);
        vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-Fieldsync-Netsuite-Timestamp".to_owned(), timestamp),
            ("X-Fieldsync-Netsuite-Signature".to_owned(), format!("v1={signature}")),
        ]
    }
}
