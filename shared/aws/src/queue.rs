//! The queue port on an SQS FIFO queue and its dead-letter queue.

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_sqs::operation::send_message_batch::SendMessageBatchError;
use aws_sdk_sqs::types::{
    BatchResultErrorEntry, Message, MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use aws_sdk_sqs::Client;
use fieldsync_core::ports::{OutgoingMessage, Queue, QueueError, ReceivedMessage};
use tracing::debug;

use crate::{boxed, InvalidResponse, SetupError};

/// Entries per SendMessageBatch call and messages per ReceiveMessage call, the SQS maximum.
const SQS_BATCH_MAX: usize = 10;

/// Body bytes per SendMessageBatch call: 256 KiB, the SQS limit on a batch's total payload that
/// every queue has accepted. A product with many variants and a long description gives change
/// messages that fill ten entries past it.
const SQS_BATCH_BYTES: usize = 256 * 1024;

/// Long-poll wait of [`Queue::receive`]: an empty queue returns after this many seconds.
const RECEIVE_WAIT_SECS: i32 = 1;

/// The maximum visibility timeout SQS accepts, 12 hours.
const MAX_VISIBILITY_SECS: u64 = 43_200;

/// ReceiveMessage calls one [`Queue::dead_letters`] makes at most.
const PEEK_MAX_CALLS: usize = 100;

/// ReceiveMessage calls one [`Queue::redrive`] makes at most, so one call moves at most
/// 100 × 10 messages.
const REDRIVE_MAX_CALLS: usize = 100;

/// How long a dead letter stays hidden while [`Queue::redrive`] sends it to the main queue.
const REDRIVE_VISIBILITY_SECS: i32 = 30;

/// How long the dead-letter queue that [`SqsQueue::create_fifo_pair`] creates keeps a message:
/// 14 days, the SQS maximum. SQS resets the age of a FIFO message when it moves the message to
/// the dead-letter queue (SQS Developer Guide, "dead-letter queue retention"), and the longer
/// period leaves more time to redrive.
const DEAD_LETTER_RETENTION_SECS: u32 = 1_209_600;

/// An SQS FIFO queue, with the dead-letter queue its redrive policy names.
///
/// [`Queue::receive`] can return several messages of one message group in one call, in group
/// order, as SQS FIFO does. A consumer that handles the messages of a batch one after another
/// keeps each group's order.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: Client,
    queue_url: String,
    dead_letter_url: Option<String>,
}

impl SqsQueue {
    /// Creates a queue adapter. Without `dead_letter_url`, [`Queue::dead_letters`] lists nothing
    /// and [`Queue::redrive`] moves nothing.
    pub fn new(client: Client, queue_url: impl Into<String>, dead_letter_url: Option<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
            dead_letter_url,
        }
    }

    /// Returns the URL of the main queue.
    pub fn queue_url(&self) -> &str {
        &self.queue_url
    }

    /// Returns the URL of the dead-letter queue, when one is configured.
    pub fn dead_letter_url(&self) -> Option<&str> {
        self.dead_letter_url.as_deref()
    }

    /// Returns how many messages wait or are in flight on the main queue. The figure comes from
    /// the approximate counts SQS keeps, which are exact on emulators and may lag on SQS.
    pub async fn approximate_depth(&self) -> Result<usize, QueueError> {
        let attributes = self
            .client
            .get_queue_attributes()
            .queue_url(&self.queue_url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .send()
            .await
            .map_err(|error| QueueError::Unavailable {
                source: Box::new(error),
            })?;
        let count = |name: &QueueAttributeName| {
            attributes
                .attributes()
                .and_then(|attributes| attributes.get(name))
                .and_then(|value| value.parse::<usize>().ok())
                .unwrap_or(0)
        };
        Ok(count(&QueueAttributeName::ApproximateNumberOfMessages)
            + count(&QueueAttributeName::ApproximateNumberOfMessagesNotVisible))
    }

    /// Creates the FIFO queue `<name>.fifo` and its dead-letter queue `<name>-dlq.fifo`, for tests
    /// and local runs. Deduplication uses the ids the sender gives, never the body. A message
    /// moves to the dead-letter queue when it is received more than `max_receive_count` times.
    /// Calling it again with the same arguments returns the existing queues.
    pub async fn create_fifo_pair(
        client: Client,
        name: &str,
        max_receive_count: u32,
        visibility_timeout_secs: u32,
    ) -> Result<SqsQueue, SetupError> {
        let dead_letter_name = format!("{name}-dlq.fifo");
        let dead_letter_url = client
            .create_queue()
            .queue_name(&dead_letter_name)
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
            .attributes(
                QueueAttributeName::MessageRetentionPeriod,
                DEAD_LETTER_RETENTION_SECS.to_string(),
            )
            .send()
            .await
            .map_err(|error| queue_setup_error(&dead_letter_name, error))?
            .queue_url
            .ok_or_else(|| queue_setup_error(&dead_letter_name, InvalidResponse::missing("QueueUrl")))?;

        let attributes = client
            .get_queue_attributes()
            .queue_url(&dead_letter_url)
            .attribute_names(QueueAttributeName::QueueArn)
            .send()
            .await
            .map_err(|error| queue_setup_error(&dead_letter_name, error))?;
        let dead_letter_arn = attributes
            .attributes()
            .and_then(|attributes| attributes.get(&QueueAttributeName::QueueArn))
            .ok_or_else(|| queue_setup_error(&dead_letter_name, InvalidResponse::missing("QueueArn")))?;
        let redrive_policy =
            serde_json::json!({ "deadLetterTargetArn": dead_letter_arn, "maxReceiveCount": max_receive_count });

        let queue_name = format!("{name}.fifo");
        let queue_url = client
            .create_queue()
            .queue_name(&queue_name)
            .attributes(QueueAttributeName::FifoQueue, "true")
            .attributes(QueueAttributeName::ContentBasedDeduplication, "false")
            .attributes(
                QueueAttributeName::VisibilityTimeout,
                visibility_timeout_secs.to_string(),
            )
            .attributes(QueueAttributeName::RedrivePolicy, redrive_policy.to_string())
            .send()
            .await
            .map_err(|error| queue_setup_error(&queue_name, error))?
            .queue_url
            .ok_or_else(|| queue_setup_error(&queue_name, InvalidResponse::missing("QueueUrl")))?;

        debug!(
            queue = queue_name,
            dead_letter_queue = dead_letter_name,
            "created SQS FIFO queue pair"
        );
        Ok(SqsQueue::new(client, queue_url, Some(dead_letter_url)))
    }

    /// Sends up to 10 messages with one SendMessageBatch call. Entries that fail for a reason on
    /// the service's side are sent once more. An entry that fails as the sender's fault, or fails
    /// twice, fails the call, but the other entries stay sent: resending them with the same
    /// deduplication ids within 5 minutes does not enqueue them twice.
    async fn send_batch(&self, queue_url: &str, messages: &[OutgoingMessage]) -> Result<(), QueueError> {
        let mut entries = Vec::with_capacity(messages.len());
        for (index, message) in messages.iter().enumerate() {
            let entry = SendMessageBatchRequestEntry::builder()
                .id(index.to_string())
                .message_body(&message.body)
                .message_group_id(&message.group_id)
                .message_deduplication_id(&message.dedup_id)
                .build()
                .map_err(unavailable)?;
            entries.push(entry);
        }

        for attempt in 1..=2 {
            let output = self
                .client
                .send_message_batch()
                .queue_url(queue_url)
                .set_entries(Some(entries.clone()))
                .send()
                .await
                .map_err(send_batch_error)?;
            let failed = output.failed();
            if failed.is_empty() {
                return Ok(());
            }
            if let Some(rejected) = failed.iter().find(|entry| entry.sender_fault()) {
                return Err(QueueError::Rejected {
                    reason: entry_failure(rejected, messages),
                });
            }
            if attempt == 2 {
                let error = FailedEntries {
                    count: failed.len(),
                    first: entry_failure(&failed[0], messages),
                };
                return Err(QueueError::Unavailable { source: boxed(error) });
            }

            debug!(
                queue_url,
                failed = failed.len(),
                "resending failed SendMessageBatch entries"
            );
            let failed_ids: HashSet<&str> = failed.iter().map(BatchResultErrorEntry::id).collect();
            entries.retain(|entry| failed_ids.contains(entry.id()));
        }
        Ok(())
    }

    /// Receives up to 10 messages from `queue_url`. `visibility_secs` overrides the queue's
    /// visibility timeout for these receipts.
    async fn receive_from(
        &self,
        queue_url: &str,
        max: usize,
        visibility_secs: Option<i32>,
    ) -> Result<Vec<ReceivedMessage>, QueueError> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let max = i32::try_from(max.min(SQS_BATCH_MAX)).unwrap_or(1);
        let output = self
            .client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(max)
            .wait_time_seconds(RECEIVE_WAIT_SECS)
            .set_visibility_timeout(visibility_secs)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .message_system_attribute_names(MessageSystemAttributeName::MessageGroupId)
            .send()
            .await
            .map_err(unavailable)?;
        output
            .messages()
            .iter()
            .map(read_message)
            .collect::<Result<_, _>>()
            .map_err(unavailable)
    }

    async fn delete_from(&self, queue_url: &str, receipt: &str) -> Result<(), QueueError> {
        let deleted = self
            .client
            .delete_message()
            .queue_url(queue_url)
            .receipt_handle(receipt)
            .send()
            .await;
        let Err(error) = deleted else {
            return Ok(());
        };
        match error.as_service_error() {
            Some(service_error) if service_error.is_receipt_handle_is_invalid() => Err(QueueError::Rejected {
                reason: "the receipt handle is invalid".to_owned(),
            }),
            _ => Err(unavailable(error)),
        }
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError> {
        for chunk in batches(messages) {
            self.send_batch(&self.queue_url, chunk).await?;
        }
        Ok(())
    }

    async fn receive(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
        self.receive_from(&self.queue_url, max, None).await
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        self.delete_from(&self.queue_url, receipt).await
    }

    /// Sets the message's visibility timeout to `delay`, rounded up to whole seconds (the SQS unit)
    /// and capped at 12 hours.
    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let changed = self
            .client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt)
            .visibility_timeout(visibility_secs(delay))
            .send()
            .await;
        let Err(error) = changed else {
            return Ok(());
        };
        let reason = match error.as_service_error() {
            Some(service_error) if service_error.is_message_not_inflight() => "the message is not in flight",
            Some(service_error) if service_error.is_receipt_handle_is_invalid() => "the receipt handle is invalid",
            _ => return Err(unavailable(error)),
        };
        Err(QueueError::Rejected {
            reason: reason.to_owned(),
        })
    }

    /// Receives from the dead-letter queue with a visibility timeout of 0, so every message
    /// stays visible, and repeats until a call brings no message not seen before.
    ///
    /// NOTE: SQS FIFO returns the head of each message group first, so a group with more than
    /// 10 dead letters may be listed only in part. The listing also stops after 100 calls.
    async fn dead_letters(&self) -> Result<Vec<ReceivedMessage>, QueueError> {
        let Some(dead_letter_url) = &self.dead_letter_url else {
            return Ok(Vec::new());
        };
        let mut listed = Vec::new();
        let mut seen = HashSet::new();
        for _ in 0..PEEK_MAX_CALLS {
            let received = self.receive_from(dead_letter_url, SQS_BATCH_MAX, Some(0)).await?;
            let listed_before = listed.len();
            for message in received {
                if seen.insert(message.message_id.clone()) {
                    listed.push(message);
                }
            }
            if listed.len() == listed_before {
                break;
            }
        }
        Ok(listed)
    }

    /// Moves dead letters back to the main queue: each one is sent with its message group id and
    /// the deduplication id `redrive-<message id>`, then deleted from the dead-letter queue. A
    /// redrive that fails between the two steps can be repeated within 5 minutes without
    /// enqueueing a message twice. Moves at most 1,000 messages per call.
    async fn redrive(&self) -> Result<usize, QueueError> {
        let Some(dead_letter_url) = &self.dead_letter_url else {
            return Ok(0);
        };
        let mut moved = 0;
        for _ in 0..REDRIVE_MAX_CALLS {
            let received = self
                .receive_from(dead_letter_url, SQS_BATCH_MAX, Some(REDRIVE_VISIBILITY_SECS))
                .await?;
            if received.is_empty() {
                break;
            }
            let resent: Vec<OutgoingMessage> = received
                .iter()
                .map(|message| OutgoingMessage {
                    group_id: message.group_id.clone(),
                    dedup_id: format!("redrive-{}", message.message_id),
                    body: message.body.clone(),
                })
                .collect();
            self.send_batch(&self.queue_url, &resent).await?;
            for message in &received {
                self.delete_from(dead_letter_url, &message.receipt).await?;
            }
            moved += received.len();
            debug!(queue_url = self.queue_url, moved, "redrove dead letters");
        }
        Ok(moved)
    }
}

/// SendMessageBatch entries that failed twice on the service's side.
#[derive(Debug, thiserror::Error)]
#[error("SQS failed {count} SendMessageBatch entries twice, the first with {first}")]
struct FailedEntries {
    count: usize,
    first: String,
}

/// Converts a delay to a visibility timeout in whole seconds, rounded up and capped at 12 hours.
fn visibility_secs(delay: Duration) -> i32 {
    let whole_seconds = delay.as_secs() + u64::from(delay.subsec_nanos() > 0);
    i32::try_from(whole_seconds.min(MAX_VISIBILITY_SECS)).unwrap_or(i32::MAX)
}

fn read_message(message: &Message) -> Result<ReceivedMessage, InvalidResponse> {
    let message_id = message
        .message_id()
        .ok_or_else(|| InvalidResponse::missing("MessageId"))?;
    let receipt = message
        .receipt_handle()
        .ok_or_else(|| InvalidResponse::missing("ReceiptHandle"))?;
    let attribute =
        |name: MessageSystemAttributeName| message.attributes().and_then(|attributes| attributes.get(&name));
    let group_id = attribute(MessageSystemAttributeName::MessageGroupId)
        .ok_or_else(|| InvalidResponse::missing("MessageGroupId attribute"))?;
    let receive_count = attribute(MessageSystemAttributeName::ApproximateReceiveCount)
        .ok_or_else(|| InvalidResponse::missing("ApproximateReceiveCount attribute"))?
        .parse()
        .map_err(|_| InvalidResponse::unreadable("ApproximateReceiveCount attribute"))?;
    Ok(ReceivedMessage {
        message_id: message_id.to_owned(),
        receipt: receipt.to_owned(),
        group_id: group_id.clone(),
        body: message.body().unwrap_or_default().to_owned(),
        receive_count,
    })
}

/// Describes a failed entry by the message's deduplication id and group, and the SQS error code.
fn entry_failure(entry: &BatchResultErrorEntry, messages: &[OutgoingMessage]) -> String {
    let message = entry.id().parse::<usize>().ok().and_then(|index| messages.get(index));
    let detail = entry.message().unwrap_or("no detail");
    match message {
        Some(message) => format!(
            "message with deduplication id {:?} in group {:?}: {} ({detail})",
            message.dedup_id,
            message.group_id,
            entry.code()
        ),
        None => format!("entry {:?}: {} ({detail})", entry.id(), entry.code()),
    }
}

/// Classifies a failed SendMessageBatch call: a malformed batch is rejected, anything else may
/// succeed later.
fn send_batch_error(
    error: aws_sdk_sqs::error::SdkError<SendMessageBatchError, aws_sdk_sqs::config::http::HttpResponse>,
) -> QueueError {
    let malformed = error.as_service_error().filter(|service_error| {
        service_error.is_batch_entry_ids_not_distinct()
            || service_error.is_batch_request_too_long()
            || service_error.is_empty_batch_request()
            || service_error.is_invalid_batch_entry_id()
            || service_error.is_too_many_entries_in_batch_request()
    });
    match malformed {
        Some(service_error) => QueueError::Rejected {
            reason: service_error.to_string(),
        },
        None => unavailable(error),
    }
}

fn queue_setup_error(queue: &str, error: impl std::error::Error + Send + Sync + 'static) -> SetupError {
    SetupError::Queue {
        queue: queue.to_owned(),
        source: boxed(error),
    }
}

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> QueueError {
    QueueError::Unavailable { source: boxed(error) }
}

/// Splits messages into SendMessageBatch calls of at most [`SQS_BATCH_MAX`] entries and
/// [`SQS_BATCH_BYTES`] body bytes, in order. A message larger than the byte limit goes alone.
fn batches(messages: &[OutgoingMessage]) -> Vec<&[OutgoingMessage]> {
    let mut batches = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (index, message) in messages.iter().enumerate() {
        let size = message.body.len();
        let full = index - start == SQS_BATCH_MAX || bytes + size > SQS_BATCH_BYTES;
        if index > start && full {
            batches.push(&messages[start..index]);
            (start, bytes) = (index, 0);
        }
        bytes += size;
    }
    if start < messages.len() {
        batches.push(&messages[start..]);
    }
    batches
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(sizes: &[usize]) -> Vec<OutgoingMessage> {
        sizes
            .iter()
            .enumerate()
            .map(|(index, size)| OutgoingMessage {
                group_id: "g".to_owned(),
                dedup_id: index.to_string(),
                body: "x".repeat(*size),
            })
            .collect()
    }

    fn lengths(batches: &[&[OutgoingMessage]]) -> Vec<usize> {
        batches.iter().map(|batch| batch.len()).collect()
    }

    #[test]
    fn batches_hold_ten_entries() {
        let small = messages(&[10; 23]);
        assert_eq!(lengths(&batches(&small)), [10, 10, 3]);
    }

    #[test]
    fn batches_stay_under_the_byte_limit() {
        // Ten 30 KB messages are 300 KB, over the 256 KiB a batch may carry.
        let large = messages(&[30_000; 10]);
        let split = batches(&large);
        assert_eq!(lengths(&split), [8, 2]);
        for batch in &split {
            assert!(batch.iter().map(|message| message.body.len()).sum::<usize>() <= SQS_BATCH_BYTES);
        }
    }

    #[test]
    fn oversized_message_goes_alone() {
        let mixed = messages(&[100, SQS_BATCH_BYTES + 1, 100]);
        assert_eq!(lengths(&batches(&mixed)), [1, 1, 1]);
        assert!(batches(&[]).is_empty());
    }

    fn sqs_message(attributes: &[(MessageSystemAttributeName, &str)]) -> Message {
        let mut message = Message::builder()
            .message_id("m-1")
            .receipt_handle("r-1")
            .body("payload");
        for (name, value) in attributes {
            message = message.attributes(name.clone(), *value);
        }
        message.build()
    }

    #[test]
    fn visibility_secs_rounds_up_and_caps() {
        assert_eq!(visibility_secs(Duration::ZERO), 0);
        assert_eq!(visibility_secs(Duration::from_millis(200)), 1);
        assert_eq!(visibility_secs(Duration::from_secs(2)), 2);
        assert_eq!(visibility_secs(Duration::from_secs(100_000)), 43_200);
    }

    #[test]
    fn read_message_takes_system_attributes() {
        let message = sqs_message(&[
            (MessageSystemAttributeName::MessageGroupId, "g1"),
            (MessageSystemAttributeName::ApproximateReceiveCount, "3"),
        ]);
        let received = read_message(&message).unwrap();
        assert_eq!(received.message_id, "m-1");
        assert_eq!(received.receipt, "r-1");
        assert_eq!(received.group_id, "g1");
        assert_eq!(received.body, "payload");
        assert_eq!(received.receive_count, 3);
    }

    #[test]
    fn read_message_rejects_missing_or_unreadable_count() {
        let missing = sqs_message(&[(MessageSystemAttributeName::MessageGroupId, "g1")]);
        assert!(read_message(&missing).is_err());
        let unreadable = sqs_message(&[
            (MessageSystemAttributeName::MessageGroupId, "g1"),
            (MessageSystemAttributeName::ApproximateReceiveCount, "many"),
        ]);
        assert!(read_message(&unreadable).is_err());
        let no_group = sqs_message(&[(MessageSystemAttributeName::ApproximateReceiveCount, "1")]);
        assert!(read_message(&no_group).is_err());
    }
}
