//! The queue message body: one change set, or one thin notice, as JSON.

use fieldsync_core::ports::OutgoingMessage;
use fieldsync_core::{ChangeSet, Notice};
use serde::{Deserialize, Serialize};

/// The content of one queue message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Queued {
    Change(ChangeSet),
    Notice { notice: Notice },
}

/// Builds the FIFO message for a change: grouped by record, deduplicated by event and record.
pub fn encode(change: &ChangeSet) -> Result<OutgoingMessage, serde_json::Error> {
    Ok(OutgoingMessage {
        group_id: change.group_id(),
        dedup_id: change.dedup_id(),
        body: serde_json::to_string(change)?,
    })
}

/// Builds the FIFO message for a notice: grouped by resource, deduplicated by event and resource.
pub fn encode_notice(notice: &Notice) -> Result<OutgoingMessage, serde_json::Error> {
    Ok(OutgoingMessage {
        group_id: notice.group_id(),
        dedup_id: notice.dedup_id(),
        body: serde_json::to_string(&Queued::Notice { notice: notice.clone() })?,
    })
}

/// Reads a message body back into a change.
pub fn decode(body: &str) -> Result<ChangeSet, serde_json::Error> {
    serde_json::from_str(body)
}

/// Reads a message body back into a change or a notice.
pub fn decode_queued(body: &str) -> Result<Queued, serde_json::Error> {
    serde_json::from_str(body)
}
