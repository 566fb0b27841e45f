//! The canonical record fieldsync keeps for each synced entity.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{FieldName, RecordKey, SystemId};
use crate::lifecycle::Task;
use crate::value::FieldValue;

/// The canonical state of one record, stored with a revision for conditional writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub key: RecordKey,
    /// Incremented by every stored write. `0` means the record was never stored.
    pub revision: u64,
    /// The value of the entity's status field, which selects state-dependent owners.
    pub status: Option<String>,
    /// The record's id in each system that has it (the id cross-reference).
    pub ids: BTreeMap<SystemId, String>,
    pub fields: BTreeMap<FieldName, FieldState>,
    /// Writes decided but not yet confirmed by the target system. They are stored with the state
    /// that decided them, so a crash between the state write and the outbound call loses nothing.
    pub outbox: Vec<OutboundWrite>,
    /// Event ids already applied, with when they were applied, for dropping late redeliveries.
    pub recent_events: BTreeMap<String, DateTime<Utc>>,
    /// The id the next outbound write gets.
    #[serde(default)]
    pub next_write_id: u64,
    /// The entries of `ids` whose cross-reference the store has already written, so it writes
    /// only new or changed ones.
    #[serde(default)]
    pub indexed_ids: BTreeMap<SystemId, String>,
    /// Manual steps the record waits for, from its entity's lifecycle.
    #[serde(default)]
    pub tasks: Vec<Task>,
    /// The tasks as the store's task list last recorded them, so it rewrites the list only when
    /// they change.
    #[serde(default)]
    pub indexed_tasks: Vec<Task>,
    /// Records with a write parked until this record exists in the write's target. Stored here,
    /// on the record they wait for, so that releasing them reads no other item.
    #[serde(default)]
    pub waiting: Vec<RecordKey>,
}

/// The state of one field of a record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldState {
    /// The owner's latest value.
    pub value: Option<FieldValue>,
    /// When and where `value` changed.
    pub version: Option<Version>,
    /// The system that claimed the field by editing it, for claim-on-edit fields.
    pub claimed_by: Option<SystemId>,
    /// The latest value each system reported, and when it changed there.
    pub observed: BTreeMap<SystemId, Seen>,
    /// The recent values fieldsync wrote to each system, oldest first: the echo ledger.
    pub written: BTreeMap<SystemId, Vec<Seen>>,
}

/// The version of a field value: the UTC instant of the change in its source, and the source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub at: DateTime<Utc>,
    pub source: SystemId,
}

/// A value seen in or sent to a system at an instant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Seen {
    pub value: FieldValue,
    pub at: DateTime<Utc>,
}

/// The kind of call an outbound write needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WriteKind {
    /// Create the record, carrying fieldsync's key as its external id so a retry finds it.
    Create,
    Update,
}

/// Absolute field values to write to one system for one record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundWrite {
    /// Unique within the record, so a write can be confirmed after its entry was re-read.
    #[serde(default)]
    pub id: u64,
    /// Set while one reconciler sends this write, so that no other sends it too. A claim whose
    /// time has passed belongs to a reconciler that stopped, and may be taken over.
    #[serde(default)]
    pub claimed_until: Option<DateTime<Utc>>,
    pub target: SystemId,
    pub record: RecordKey,
    pub kind: WriteKind,
    /// The record's id in the target, when known.
    pub target_id: Option<String>,
    pub fields: BTreeMap<FieldName, FieldValue>,
    /// The value the target had before, for each field of `fields` whose earlier value fieldsync
    /// recorded. A
    /// connector whose target takes deltas (inventory adjustments) sends the difference, so
    /// changes the target made meanwhile, such as sales, are kept.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub previous: BTreeMap<FieldName, FieldValue>,
    /// The source change time of the oldest value in this write, for end-to-end lag.
    pub changed_at: DateTime<Utc>,
    /// Records this write names that the target does not hold yet. While any is listed, the
    /// write and every later write to its target wait in the outbox.
    #[serde(default)]
    pub parked_on: Vec<RecordKey>,
}

impl Record {
    /// Creates an empty, never stored record.
    pub fn new(key: RecordKey) -> Self {
        Self {
            key,
            revision: 0,
            status: None,
            ids: BTreeMap::new(),
            fields: BTreeMap::new(),
            outbox: Vec::new(),
            recent_events: BTreeMap::new(),
            next_write_id: 0,
            indexed_ids: BTreeMap::new(),
            tasks: Vec::new(),
            indexed_tasks: Vec::new(),
            waiting: Vec::new(),
        }
    }

    /// Returns the current value of a field.
    pub fn value(&self, field: &str) -> Option<&FieldValue> {
        self.fields
            .get(&FieldName::new(field))
            .and_then(|state| state.value.as_ref())
    }

    /// Records that `target` confirmed `write`: drops it from the outbox and learns the id.
    pub fn confirm_write(&mut self, write: &OutboundWrite, target_id: Option<String>) {
        if let Some(position) = self.outbox.iter().position(|pending| pending.id == write.id) {
            self.outbox.remove(position);
        }
        if let Some(id) = target_id {
            self.ids.insert(write.target.clone(), id);
        }
    }
}

/// Writes kept per system and field in the echo ledger, besides the echo window's limit on age.
/// A late report of an older write is recognized as an echo only while that write is kept. So
/// this bounds the writes in flight to one field of one system before an echo looks like an edit.
const WRITES_KEPT: usize = 32;

impl Record {
    /// Returns the next write to send: the oldest pending write of a target whose oldest write is
    /// neither parked nor claimed by another reconciler at `now`. Writes to one target go out in
    /// order.
    pub fn next_sendable(&self, now: DateTime<Utc>) -> Option<&OutboundWrite> {
        let mut seen_targets = Vec::new();
        for write in &self.outbox {
            if seen_targets.contains(&&write.target) {
                continue;
            }
            seen_targets.push(&write.target);
            if write.parked_on.is_empty() && write.claimed_until.is_none_or(|until| until <= now) {
                return Some(write);
            }
        }
        None
    }

    /// Tells whether a pending write has a live claim, that is, another reconciler is sending it.
    pub fn has_live_claim(&self, now: DateTime<Utc>) -> bool {
        self.outbox
            .iter()
            .any(|write| write.claimed_until.is_some_and(|until| until > now))
    }

    /// Drops a write the target rejected from the echo ledger, so that fieldsync does not take
    /// its values for what the target holds.
    pub fn forget_write(&mut self, write: &OutboundWrite) {
        for (field, value) in &write.fields {
            let Some(writes) = self
                .fields
                .get_mut(field)
                .and_then(|state| state.written.get_mut(&write.target))
            else {
                continue;
            };
            if let Some(position) = writes.iter().rposition(|seen| seen.value == *value) {
                writes.remove(position);
            }
        }
    }
}

impl FieldState {
    /// Returns the last value fieldsync wrote to `system`.
    pub fn last_written(&self, system: &SystemId) -> Option<&Seen> {
        self.written.get(system).and_then(|writes| writes.last())
    }

    /// Adds a write to the echo ledger, dropping writes older than `window` and keeping at most
    /// the newest [`WRITES_KEPT`].
    pub fn record_write(&mut self, system: &SystemId, value: FieldValue, at: DateTime<Utc>, window: Duration) {
        let writes = self.written.entry(system.clone()).or_default();
        writes.retain(|seen| at - seen.at <= window);
        writes.push(Seen { value, at });
        if writes.len() > WRITES_KEPT {
            writes.remove(0);
        }
    }

    /// Tells whether `value`, reported by `system` as of `at`, is the echo of an earlier write
    /// that fieldsync has since replaced with a newer one: the report predates the newest write.
    pub fn is_superseded_echo(&self, system: &SystemId, value: &FieldValue, at: DateTime<Utc>) -> bool {
        let Some(writes) = self.written.get(system) else {
            return false;
        };
        let newest_at = writes.last().map(|seen| seen.at);
        newest_at.is_some_and(|newest_at| at < newest_at)
            && writes
                .iter()
                .rev()
                .skip(1)
                .any(|seen| seen.value == *value && seen.at <= at)
    }

    /// Returns the latest value known to be in `system`, whether it reported it or fieldsync
    /// wrote it there.
    pub fn known_in(&self, system: &SystemId) -> Option<&FieldValue> {
        let observed = self.observed.get(system);
        let written = self.last_written(system);
        match (observed, written) {
            (Some(observed), Some(written)) if written.at >= observed.at => Some(&written.value),
            (Some(observed), _) => Some(&observed.value),
            (None, Some(written)) => Some(&written.value),
            (None, None) => None,
        }
    }
}
