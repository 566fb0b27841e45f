//! The queue message body: one change set as JSON.

use fieldsync_core::ports::OutgoingMessage;
use fieldsync_core::ChangeSet;

/// Builds the FIFO message for a change: grouped by record, deduplicated by event and record.
pub fn encode(change: &ChangeSet) -> Result<OutgoingMessage, serde_json::Error> {
    Ok(OutgoingMessage {
        group_id: change.group_id(),
        dedup_id: change.dedup_id(),
        body: serde_json::to_string(change)?,
    })
}

/// Reads a message body back into a change.
pub fn decode(body: &str) -> Result<ChangeSet, serde_json::Error> {
    serde_json::from_str(body)
}
