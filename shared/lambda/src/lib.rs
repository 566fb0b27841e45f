//! The Lambda handlers of fieldsync: the webhook receiver (`lambda_http`) and the SQS-triggered
//! reconciler (`lambda_runtime`), plus the typed configuration each function reads once at start.
//!
//! The handlers only translate between Lambda's event types and the pipeline in
//! `fieldsync-pipeline`, so the local runner and the tests drive exactly the code that runs in AWS.

pub mod cold_start;
pub mod config;
pub mod metrics;
pub mod receiver;
pub mod reconciler;
pub mod renewer;
pub mod subscriptions;

/// Installs the tracing subscriber: JSON lines for CloudWatch, level from `RUST_LOG` (default
/// `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(false)
        .without_time()
        .init();
}
