use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use fieldsync_core::ports::{OutgoingMessage, Queue, QueueError, ReceivedMessage};
use tokio::sync::Notify;
use tokio::time::Instant;

/// Settings of an [`EmbeddedQueue`], with the same meaning as the SQS queue attributes.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// How long a received message stays hidden before it is delivered again.
    pub visibility_timeout: Duration,
    /// How long a deduplication id suppresses identical sends (SQS FIFO uses 5 minutes).
    pub dedup_window: Duration,
    /// Receives after which a message moves to the dead-letter queue (SQS `maxReceiveCount`).
    pub max_receive_count: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            dedup_window: Duration::from_secs(300),
            max_receive_count: 5,
        }
    }
}

/// A FIFO queue in memory with SQS FIFO semantics.
#[derive(Debug)]
pub struct EmbeddedQueue {
    settings: QueueSettings,
    state: Mutex<QueueState>,
    arrived: Notify,
}

#[derive(Debug, Default)]
struct QueueState {
    next_id: u64,
    /// Messages waiting or in flight, in send order.
    messages: VecDeque<Stored>,
    /// Deduplication id → when it was first sent.
    dedup: HashMap<String, Instant>,
    dead_letters: Vec<Stored>,
}

#[derive(Debug, Clone)]
struct Stored {
    message_id: String,
    group_id: String,
    body: String,
    receive_count: u32,
    /// `Some` while in flight: the receipt handle and when the message becomes visible again.
    in_flight: Option<(String, Instant)>,
}

impl EmbeddedQueue {
    /// Creates an empty queue.
    pub fn new(settings: QueueSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(QueueState::default()),
            arrived: Notify::new(),
        }
    }

    /// Returns how many messages are waiting or in flight (not counting dead letters).
    pub fn len(&self) -> usize {
        self.lock().messages.len()
    }

    /// Tells whether no message is waiting or in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Waits until a message is sent or `timeout` passes, whichever comes first.
    pub async fn wait_for_message(&self, timeout: Duration) {
        let _ = tokio::time::timeout(timeout, self.arrived.notified()).await;
    }

    fn lock(&self) -> MutexGuard<'_, QueueState> {
        // A panic while holding the lock leaves plain data behind, so the state is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn send(&self, messages: &[OutgoingMessage]) -> Result<(), QueueError> {
        let now = Instant::now();
        let mut state = self.lock();
        let window = self.settings.dedup_window;
        state.dedup.retain(|_, sent_at| now.duration_since(*sent_at) < window);
        for message in messages {
            if state.dedup.contains_key(&message.dedup_id) {
                continue;
            }
            state.dedup.insert(message.dedup_id.clone(), now);
            state.next_id += 1;
            let stored = Stored {
                message_id: format!("msg-{}", state.next_id),
                group_id: message.group_id.clone(),
                body: message.body.clone(),
                receive_count: 0,
                in_flight: None,
            };
            state.messages.push_back(stored);
        }
        drop(state);
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn receive(&self, max: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
        let now = Instant::now();
        let mut state = self.lock();
        for message in &mut state.messages {
            if message
                .in_flight
                .as_ref()
                .is_some_and(|(_, visible_at)| *visible_at <= now)
            {
                message.in_flight = None;
            }
        }

        // A message that has been received `max_receive_count` times moves to the dead-letter
        // queue instead of being delivered again.
        let max_receives = self.settings.max_receive_count;
        let (dead, alive): (Vec<Stored>, Vec<Stored>) = std::mem::take(&mut state.messages)
            .into_iter()
            .partition(|message| message.in_flight.is_none() && message.receive_count >= max_receives);
        state.dead_letters.extend(dead);
        state.messages = alive.into();

        // A group with a message in flight delivers nothing more until that message is deleted
        // or becomes visible again, which keeps each group's messages in order.
        let mut blocked: HashSet<String> = state
            .messages
            .iter()
            .filter(|message| message.in_flight.is_some())
            .map(|m| m.group_id.clone())
            .collect();
        let mut received = Vec::new();
        let visible_at = now + self.settings.visibility_timeout;
        let mut next_receipt = state.next_id;
        for message in &mut state.messages {
            if received.len() >= max {
                break;
            }
            if message.in_flight.is_some() || blocked.contains(&message.group_id) {
                blocked.insert(message.group_id.clone());
                continue;
            }
            next_receipt += 1;
            let receipt = format!("{}#{next_receipt}", message.message_id);
            message.receive_count += 1;
            message.in_flight = Some((receipt.clone(), visible_at));
            received.push(ReceivedMessage {
                message_id: message.message_id.clone(),
                receipt,
                group_id: message.group_id.clone(),
                body: message.body.clone(),
                receive_count: message.receive_count,
            });
        }
        state.next_id = next_receipt;
        Ok(received)
    }

    async fn delete(&self, receipt: &str) -> Result<(), QueueError> {
        let mut state = self.lock();
        state
            .messages
            .retain(|message| message.in_flight.as_ref().is_none_or(|(handle, _)| handle != receipt));
        Ok(())
    }

    async fn retry_later(&self, receipt: &str, delay: Duration) -> Result<(), QueueError> {
        let visible_at = Instant::now() + delay;
        let mut state = self.lock();
        for message in &mut state.messages {
            if let Some((handle, at)) = &mut message.in_flight {
                if handle == receipt {
                    *at = visible_at;
                }
            }
        }
        Ok(())
    }

    async fn dead_letters(&self) -> Result<Vec<ReceivedMessage>, QueueError> {
        let state = self.lock();
        let listed = state.dead_letters.iter().map(|message| ReceivedMessage {
            message_id: message.message_id.clone(),
            receipt: String::new(),
            group_id: message.group_id.clone(),
            body: message.body.clone(),
            receive_count: message.receive_count,
        });
        Ok(listed.collect())
    }

    async fn redrive(&self) -> Result<usize, QueueError> {
        let mut state = self.lock();
        let moved = std::mem::take(&mut state.dead_letters);
        let count = moved.len();
        for mut message in moved {
            message.receive_count = 0;
            message.in_flight = None;
            state.messages.push_back(message);
        }
        drop(state);
        self.arrived.notify_waiters();
        Ok(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(group: &str, dedup: &str, body: &str) -> OutgoingMessage {
        OutgoingMessage {
            group_id: group.into(),
            dedup_id: dedup.into(),
            body: body.into(),
        }
    }

    fn settings() -> QueueSettings {
        QueueSettings {
            visibility_timeout: Duration::from_secs(30),
            dedup_window: Duration::from_secs(300),
            max_receive_count: 2,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn dedup_window_drops_repeats() {
        let queue = EmbeddedQueue::new(settings());
        queue
            .send(&[message("g", "d1", "a"), message("g", "d1", "a")])
            .await
            .unwrap();
        assert_eq!(queue.len(), 1);
        tokio::time::advance(Duration::from_secs(301)).await;
        queue.send(&[message("g", "d1", "a")]).await.unwrap();
        assert_eq!(queue.len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn group_blocks_while_in_flight() {
        let queue = EmbeddedQueue::new(settings());
        queue
            .send(&[
                message("g1", "1", "a"),
                message("g1", "2", "b"),
                message("g2", "3", "c"),
            ])
            .await
            .unwrap();
        let first = queue.receive(1).await.unwrap();
        assert_eq!(first[0].body, "a");
        let next = queue.receive(10).await.unwrap();
        let bodies: Vec<&str> = next.iter().map(|m| m.body.as_str()).collect();
        assert_eq!(bodies, ["c"]);
        queue.delete(&first[0].receipt).await.unwrap();
        let after = queue.receive(10).await.unwrap();
        assert_eq!(after[0].body, "b");
    }

    #[tokio::test(start_paused = true)]
    async fn visibility_timeout_redelivers() {
        let queue = EmbeddedQueue::new(settings());
        queue.send(&[message("g", "1", "a")]).await.unwrap();
        let first = queue.receive(1).await.unwrap();
        assert!(queue.receive(1).await.unwrap().is_empty());
        tokio::time::advance(Duration::from_secs(31)).await;
        let again = queue.receive(1).await.unwrap();
        assert_eq!(again[0].message_id, first[0].message_id);
        assert_eq!(again[0].receive_count, 2);
    }

    #[tokio::test(start_paused = true)]
    async fn max_receives_moves_to_dead_letters() {
        let queue = EmbeddedQueue::new(settings());
        queue.send(&[message("g", "1", "a")]).await.unwrap();
        for _ in 0..2 {
            let received = queue.receive(1).await.unwrap();
            queue.retry_later(&received[0].receipt, Duration::ZERO).await.unwrap();
        }
        assert!(queue.receive(1).await.unwrap().is_empty());
        assert_eq!(queue.dead_letters().await.unwrap().len(), 1);
        assert_eq!(queue.redrive().await.unwrap(), 1);
        assert_eq!(queue.receive(1).await.unwrap()[0].body, "a");
    }
}
