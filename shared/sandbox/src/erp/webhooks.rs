//! fieldsync's signed-JSON webhooks, as the ERP sends them.
//!
//! Body: `{"id", "type", "occurred_at", "data"}`. Headers: `X-Fieldsync-Event-Id`,
//! `X-Fieldsync-Timestamp` (Unix seconds of the attempt) and `X-Fieldsync-Signature:
//! v1=<base64 HMAC-SHA256 of "<timestamp>.<body>">`.

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::delivery::{hmac_sha256_base64, new_uuid, OutgoingEvent, SignHeaders};
use crate::documents::Document;

#[derive(Serialize)]
struct Envelope<'a> {
    id: &'a str,
    r#type: &'a str,
    occurred_at: String,
    data: &'a RawValue,
}

/// Builds an event of `event_type` (such as `item.updated`) around a record's JSON.
pub(crate) fn erp_event(event_type: &str, data: &impl Serialize, now: DateTime<Utc>) -> Option<OutgoingEvent> {
    let data = serde_json::value::to_raw_value(data).ok()?;
    let event_id = format!("evt_{}", new_uuid().replace('-', ""));
    let envelope = Envelope {
        id: &event_id,
        r#type: event_type,
        occurred_at: now.to_rfc3339_opts(SecondsFormat::Millis, true),
        data: &data,
    };
    let body = serde_json::to_vec(&envelope).ok()?;
    Some(OutgoingEvent {
        topic: event_type.to_owned(),
        event_id,
        triggered_at: now,
        body,
    })
}

/// Builds the JSON form of an ERP document: `number`, `external_id`, its members and
/// `last_modified`.
pub(crate) fn erp_document_json(document: &Document) -> Vec<u8> {
    let number = crate::documents::json_string(&document.id);
    let time = document.updated_at.to_rfc3339_opts(SecondsFormat::Millis, true);
    document.to_json("number", &number, "last_modified", &time)
}

/// Builds the `<kind>.created` or `<kind>.updated` event of a document.
pub(crate) fn document_event(document: &Document, created: bool, now: DateTime<Utc>) -> Option<OutgoingEvent> {
    let data = String::from_utf8(erp_document_json(document)).ok()?;
    let data = RawValue::from_string(data).ok()?;
    let action = if created { "created" } else { "updated" };
    erp_event(&format!("{}.{action}", document.kind), &data, now)
}

/// Signs each attempt with the shared secret and the attempt's timestamp.
pub(crate) struct FieldsyncSigner {
    pub(crate) secret: String,
}

impl SignHeaders for FieldsyncSigner {
    fn headers(&self, event: &OutgoingEvent, _attempt: u32) -> Vec<(String, String)> {
        let timestamp = Utc::now().timestamp().to_string();
        let signature = hmac_sha256_base64(self.secret.as_bytes(), &[timestamp.as_bytes(), b".", &event.body]);
        vec![
            ("Content-Type".to_owned(), "application/json".to_owned()),
            ("X-Fieldsync-Event-Id".to_owned(), event.event_id.clone()),
            ("X-Fieldsync-Timestamp".to_owned(), timestamp),
            ("X-Fieldsync-Signature".to_owned(), format!("v1={signature}")),
        ]
    }
}
