//! The two steps of fieldsync, written against the core's ports so the Lambda functions and the
//! local runner share them: receiving a webhook, and reconciling a batch of queued changes.

pub mod ingest;
pub mod message;
pub mod reconcile;
mod report;

pub use ingest::{receive_webhook, Received, WebhookResponse};
pub use reconcile::{BatchItem, BatchReport, Reconciler, WriteStatus};
pub use report::ErrorChain;
