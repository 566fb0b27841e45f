//! Normalized changes: what an ingest function puts on the queue for the reconciler.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{FieldName, RecordKey, SystemId};
use crate::wire::Wire;

/// The field values one source reported for one record in one event.
///
/// Values stay in their wire form until the reconciler types them against the rules, so an
/// invalid value is rejected for its field alone while the event's other fields still apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSet {
    pub record: RecordKey,
    pub source: SystemId,
    /// The sender's delivery or event id, used to drop redeliveries.
    pub event_id: String,
    /// When the change happened in the source system (UTC), which orders events.
    pub occurred_at: DateTime<Utc>,
    /// When fieldsync received the webhook.
    pub received_at: DateTime<Utc>,
    /// The record's id in the source system, learned for the id cross-reference.
    pub external_id: Option<String>,
    pub fields: BTreeMap<FieldName, Wire>,
}

impl ChangeSet {
    /// Returns the queue deduplication id: a hash of the event id and the record key, because one
    /// webhook can carry several records (one per variant SKU) that must not dedupe each other.
    /// The hex digest fits SQS's 128-character limit on deduplication ids.
    pub fn dedup_id(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.event_id.as_bytes());
        hasher.update([0]);
        hasher.update(self.record.to_string().as_bytes());
        hex::encode(hasher.finalize())
    }

    /// Returns the queue message group: the record key, so changes to one record stay in order.
    pub fn group_id(&self) -> String {
        self.record.to_string()
    }
}
