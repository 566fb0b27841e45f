//! The SQS-triggered reconciler handler.

use aws_lambda_events::event::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use chrono::Utc;
use fieldsync_pipeline::{BatchItem, Reconciler};
use lambda_runtime::{Error, LambdaEvent};
use tracing::info;

use crate::metrics::{reconciler_samples, MetricsSink};

/// Reconciles one SQS batch, publishes its metrics, and reports each failed message, so SQS
/// redelivers only those (`ReportBatchItemFailures`).
pub async fn handle(
    reconciler: &Reconciler,
    metrics: &MetricsSink,
    event: LambdaEvent<SqsEvent>,
) -> Result<SqsBatchResponse, Error> {
    let items: Vec<BatchItem> = event
        .payload
        .records
        .into_iter()
        .map(|record| BatchItem {
            message_id: record.message_id.unwrap_or_default(),
            body: record.body.unwrap_or_default(),
        })
        .collect();

    let report = reconciler.process_batch(&items).await;

    info!(
        messages = items.len(),
        failed = report.failed.len(),
        writes = report.writes,
        conflicts_retried = report.conflicts_retried,
        "batch reconciled"
    );
    metrics.publish(
        &reconciler_samples(&reconciler.rules().integration, &report),
        Utc::now(),
    );
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = report
        .failed
        .into_iter()
        .map(|message_id| {
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = message_id;
            failure
        })
        .collect();
    Ok(response)
}
