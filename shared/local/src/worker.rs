//! Feeds queue batches to the Lambda reconciler handler as SQS events, as the SQS trigger does.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aws_lambda_events::event::sqs::{SqsEvent, SqsMessage};
use fieldsync_core::ports::Queue;
use fieldsync_lambda::metrics::MetricsSink;
use fieldsync_pipeline::Reconciler;
use lambda_runtime::{Context, LambdaEvent};
use tokio::time::Instant;
use tracing::{error, warn};

use crate::Backlog;

/// Messages per batch, the SQS trigger's default batch size for FIFO queues.
pub(crate) const DEFAULT_BATCH_SIZE: usize = 10;

/// How many workers are processing a batch, and when one last started or finished.
#[derive(Debug)]
pub struct WorkerActivity {
    busy: AtomicUsize,
    last: Mutex<Instant>,
}

impl Default for WorkerActivity {
    fn default() -> Self {
        Self {
            busy: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }
}

impl WorkerActivity {
    /// Tells whether any worker is processing a batch.
    pub fn busy(&self) -> bool {
        self.busy.load(Ordering::SeqCst) > 0
    }

    /// Returns how long ago the last batch finished.
    pub fn idle_for(&self) -> Duration {
        self.last.lock().map(|at| at.elapsed()).unwrap_or_default()
    }

    fn set_busy(&self, busy: bool) {
        if busy {
            self.busy.fetch_add(1, Ordering::SeqCst);
        } else {
            self.busy.fetch_sub(1, Ordering::SeqCst);
        }
        if let Ok(mut at) = self.last.lock() {
            *at = Instant::now();
        }
    }
}

/// Receives batches of up to `batch_size` messages until aborted, like one concurrent Lambda
/// instance of the reconciler. Failed messages are left in flight, so they come back after the
/// visibility timeout and reach the dead-letter queue after the maximum receive count.
pub(crate) async fn run(
    queue: Arc<dyn Queue>,
    backlog: Backlog,
    reconciler: Reconciler,
    activity: Arc<WorkerActivity>,
    batch_size: usize,
) {
    loop {
        // A received message stays in the queue's count until deleted, so a settle check counts it
        // before `busy` is set.
        let received = match queue.receive(batch_size).await {
            Ok(received) => received,
            Err(failure) => {
                error!(error = %failure, "queue receive failed");
                Vec::new()
            }
        };
        if received.is_empty() {
            backlog.wait().await;
            continue;
        }
        activity.set_busy(true);

        let mut event = SqsEvent::default();
        event.records = received
            .iter()
            .map(|message| {
                let mut record = SqsMessage::default();
                record.message_id = Some(message.message_id.clone());
                record.receipt_handle = Some(message.receipt.clone());
                record.body = Some(message.body.clone());
                record.attributes = HashMap::from([
                    ("MessageGroupId".to_owned(), message.group_id.clone()),
                    ("ApproximateReceiveCount".to_owned(), message.receive_count.to_string()),
                ]);
                record
            })
            .collect();

        let failed = match fieldsync_lambda::reconciler::handle(
            &reconciler,
            &MetricsSink::Off,
            LambdaEvent::new(event, Context::default()),
        )
        .await
        {
            Ok(response) => response
                .batch_item_failures
                .into_iter()
                .map(|failure| failure.item_identifier)
                .collect(),
            Err(failure) => {
                error!(error = %failure, "reconciler invocation failed; the whole batch will be retried");
                received
                    .iter()
                    .map(|message| message.message_id.clone())
                    .collect::<Vec<_>>()
            }
        };
        for message in &received {
            if failed.contains(&message.message_id) {
                warn!(
                    message_id = message.message_id,
                    receive_count = message.receive_count,
                    "message failed; it will be retried"
                );
                continue;
            }
            if let Err(failure) = queue.delete(&message.receipt).await {
                error!(message_id = message.message_id, error = %failure, "delete failed; the message will be delivered again");
            }
        }
        activity.set_busy(false);
    }
}
