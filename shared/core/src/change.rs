//! Normalized changes: what an ingest function puts on the queue for the reconciler.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{EntityType, FieldName, RecordKey, SystemId};
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

/// A thin notification: the sender reported that a resource changed without sending its values,
/// so the reconciler reads the resource from the source before deciding (Business Central does
/// this for every change).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub integration: String,
    pub source: SystemId,
    pub entity: EntityType,
    /// The resource path as the sender gave it, relative to its API root.
    pub resource: String,
    pub kind: NoticeKind,
    /// Stable across the sender's retries of this notification.
    pub event_id: String,
    /// When the change happened according to the sender (UTC).
    pub occurred_at: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
}

/// The kind of change a [`Notice`] reports about its resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoticeKind {
    Created,
    Updated,
    Deleted,
    /// Many records of the collection changed, so the collection is read for changes since the
    /// notice's time.
    Collection,
}

impl Notice {
    /// Returns the queue deduplication id, a hash of the event id and the resource.
    pub fn dedup_id(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.event_id.as_bytes());
        hasher.update([0]);
        hasher.update(self.resource.as_bytes());
        hex::encode(hasher.finalize())
    }

    /// Returns the queue message group: the resource, so notices of one record stay in order.
    /// The group differs from the record key the fetched changes get, which the notice does not
    /// know, but each resource is one record, so per-record order holds.
    pub fn group_id(&self) -> String {
        let digest = Sha256::digest(format!("{}\u{0}{}", self.source, self.resource).as_bytes());
        format!(
            "{}/{}/notice-{}",
            self.integration,
            self.entity,
            &hex::encode(digest)[..32]
        )
    }
}
