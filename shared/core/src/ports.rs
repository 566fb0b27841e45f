//! The traits adapters implement: the record store, the queue and each outside system.

use std::error::Error as StdError;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;

use crate::change::{ChangeSet, Notice};
use crate::decide::Decision;
use crate::ids::{EntityType, RecordKey, SystemId};
use crate::lifecycle::OpenTask;
use crate::record::{OutboundWrite, Record};

/// An adapter's underlying error, kept as the source of a port error.
pub type BoxError = Box<dyn StdError + Send + Sync + 'static>;

/// Durable record state with optimistic concurrency.
#[async_trait]
pub trait RecordStore: Send + Sync + fmt::Debug {
    /// Loads a record, or `None` if it was never stored.
    async fn load(&self, key: &RecordKey) -> Result<Option<Record>, StoreError>;

    /// Stores `record` only if the stored revision still equals `record.revision` (`0`: only if
    /// absent), and returns the new revision. A lost race is [`StoreError::Conflict`].
    async fn save(&self, record: &Record) -> Result<u64, StoreError>;

    /// Appends entries to the per-field decision log.
    async fn append_decisions(&self, decisions: &[Decision]) -> Result<(), StoreError>;

    /// Returns a record's decision log, oldest first.
    async fn decisions(&self, key: &RecordKey) -> Result<Vec<Decision>, StoreError>;

    /// Records that a delivery was applied, so that a redelivery within `ttl` is dropped before
    /// its record is even loaded.
    async fn mark_delivered(&self, delivery_id: &str, ttl: Duration) -> Result<(), StoreError>;

    /// Tells whether a delivery was applied less than its `ttl` ago.
    async fn was_delivered(&self, delivery_id: &str) -> Result<bool, StoreError>;

    /// Finds the record that has `external_id` in `system` (the id cross-reference).
    async fn find_by_external_id(
        &self,
        integration: &str,
        system: &SystemId,
        entity: &EntityType,
        external_id: &str,
    ) -> Result<Option<RecordKey>, StoreError>;

    /// Lists the open manual tasks of every record of an integration, as the records last
    /// stored them ([`Record::tasks`]), ordered by record key.
    async fn open_tasks(&self, integration: &str) -> Result<Vec<OpenTask>, StoreError>;
}

/// A failed store call.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Another writer changed the record since it was loaded: reload and decide again.
    #[error("record {record} changed since it was loaded")]
    Conflict { record: RecordKey },
    /// The store could not be reached or failed; retrying later may succeed.
    #[error("record store unavailable")]
    Unavailable {
        #[source]
        source: BoxError,
    },
    /// A stored item could not be read back as a record.
    #[error("stored record {record} is unreadable")]
    Corrupt {
        record: RecordKey,
        #[source]
        source: BoxError,
    },
}

impl StoreError {
    /// Tells whether the error is a lost conditional write.
    pub fn is_conflict(&self) -> bool {
        matches!(self, StoreError::Conflict { .. })
    }
}

/// A message to put on the FIFO queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Messages of one group are delivered in order, one in flight at a time.
    pub group_id: String,
    /// A second message with the same id within the deduplication window is dropped.
    pub dedup_id: String,
    pub body: String,
}

/// A message taken from the queue, invisible to other consumers until its visibility timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    pub message_id: String,
    /// The handle that deletes this receipt of the message.
    pub receipt: String,
    pub group_id: String,
    pub body: String,
    /// How many times the message was received, this time included.
    pub receive_count: u32,
}

/// A FIFO queue with per-group order, deduplication and a dead-letter queue.
#[async_trait]
pub trait Queue: Send + Sync + fmt::Debug {
    /// Enqueues messages, all or none being accepted.
    async fn send(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError>;

    /// Receives up to `max` messages, never two of one group at once.
    async fn receive(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError>;

    /// Deletes a processed message.
    async fn delete(&self, receipt: &str) -> Result<(), QueueError>;

    /// Makes a received message visible again after `delay` (SQS `ChangeMessageVisibility`), so
    /// a failed message is retried sooner than its visibility timeout.
    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError>;

    /// Lists the messages in the dead-letter queue without removing them.
    async fn dead_letters(&self) -> Result<Vec<ReceivedMessage>, QueueError>;

    /// Moves every dead-letter message back to the main queue and returns how many moved.
    async fn redrive(&self) -> Result<usize, QueueError>;
}

/// A failed queue call.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue unavailable")]
    Unavailable {
        #[source]
        source: BoxError,
    },
    #[error("message rejected by the queue: {reason}")]
    Rejected { reason: String },
}

/// The result of a successful outbound write.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct WriteReceipt {
    /// The record's id in the target system, when the call returned it (always after a create).
    pub target_id: Option<String>,
}

/// An outside system fieldsync writes winning values to.
#[async_trait]
pub trait SystemClient: Send + Sync + fmt::Debug {
    /// Writes absolute field values. A `Create` carries the record's external id
    /// ([`RecordKey::external_id`]) so that a retried create finds the first one.
    async fn write(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError>;

    /// Reads the records a thin notice reports changed and returns their current values as
    /// change sets keyed by natural key. Systems that send full payloads need not read.
    async fn fetch(&self, notice: &Notice) -> Result<Vec<ChangeSet>, SystemError> {
        Err(SystemError::Unavailable {
            system: notice.source.clone(),
            source: "this connector cannot read records for thin notifications".into(),
        })
    }
}

/// A failed outbound write.
#[derive(Debug, thiserror::Error)]
pub enum SystemError {
    /// The system asked fieldsync to slow down.
    #[error("{system} rate limit reached")]
    RateLimited {
        system: SystemId,
        retry_after: Option<Duration>,
    },
    /// The record changed in the system since it was read (HTTP 412 on `If-Match`).
    #[error("{system} rejected a stale write to {record}")]
    Conflict { system: SystemId, record: RecordKey },
    /// The system failed or could not be reached; retrying later may succeed.
    #[error("{system} unavailable")]
    Unavailable {
        system: SystemId,
        #[source]
        source: BoxError,
    },
    /// The system rejected the write as invalid; retrying the same write will fail again.
    #[error("{system} rejected the write to {record}: {message}")]
    Rejected {
        system: SystemId,
        record: RecordKey,
        message: String,
    },
}

impl SystemError {
    /// Tells whether retrying the same write later may succeed.
    pub fn is_retryable(&self) -> bool {
        !matches!(self, SystemError::Rejected { .. })
    }
}

/// A slot of a [`ConcurrencyGovernor`] scope, held until released or until its lease ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permit {
    /// The resource whose concurrent requests are limited, such as `netsuite:<account>`.
    pub scope: String,
    /// The slot number, from 0 to the scope's limit minus one.
    pub slot: u32,
    /// The process or task that holds the slot; only it can release the slot.
    pub holder: String,
    /// When the lease ends: from then on another holder may take the slot.
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

/// Limits how many requests to one outside system run at once across every process, for systems
/// that count concurrent requests per account rather than requests per second.
#[async_trait]
pub trait ConcurrencyGovernor: Send + Sync + fmt::Debug {
    /// Takes a free slot of `scope` for `lease`, or returns `None` when `limit` slots are held.
    /// A slot whose lease has ended counts as free, so a process that stopped without releasing
    /// its slot blocks it for at most `lease`. The call does not wait for a slot.
    async fn acquire(
        &self,
        scope: &str,
        limit: u32,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Permit>, StoreError>;

    /// Frees the permit's slot if its holder still holds it. Releasing a slot whose lease ended
    /// and that another holder took since leaves that holder's slot alone.
    async fn release(&self, permit: &Permit) -> Result<(), StoreError>;
}
