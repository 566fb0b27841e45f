//! In-process implementations of the store and queue ports, for local runs and tests.
//!
//! They keep the semantics the AWS services give fieldsync: the store's writes are conditional on
//! the record revision, as DynamoDB condition expressions are, and the queue is FIFO per message
//! group with a deduplication window, a visibility timeout, receive counts and a dead-letter
//! queue, as SQS FIFO queues are. Time comes from `tokio::time`, so tests can pause and advance it.

mod queue;
mod store;

pub use queue::{EmbeddedQueue, QueueSettings};
pub use store::EmbeddedStore;
