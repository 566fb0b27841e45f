//! In-process implementations of the store, queue and concurrency governor ports, for local runs and tests.
//!
//! They keep the semantics the AWS services give fieldsync: the store's writes are conditional on
//! the record revision, as DynamoDB condition expressions are, and the queue is FIFO per message
//! group with a deduplication window, a visibility timeout, receive counts and a dead-letter
//! queue, as SQS FIFO queues are. Time comes from `tokio::time`, so tests can pause and advance it.
//! The concurrency governor frees a slot whose lease has ended, as the DynamoDB one does. Its
//! leases follow the wall clock, not `tokio::time`.

mod governor;
mod queue;
mod store;

pub use governor::EmbeddedGovernor;
pub use queue::{EmbeddedQueue, QueueSettings};
pub use store::EmbeddedStore;
