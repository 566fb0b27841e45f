//! Webhook delivery with retries, shared by the sandboxes.
//!
//! Each event is delivered by its own task, so deliveries of different events may arrive in any
//! order, as with Shopify. A failed attempt (connection error, timeout or non-2xx status) is
//! retried with exponential backoff up to [`RetryPolicy::max_attempts`], always with the same
//! body and event id, unless the dispatcher's [`RetryRule`] ends the delivery at that status.
//! Every attempt is recorded as a [`Delivery`].

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::runtime::Handle;
use tokio::sync::watch;

use crate::error::SandboxError;

/// The retry policy of webhook deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts per event, the first included.
    pub max_attempts: u32,
    /// Wait before the first retry; each later retry waits twice as long as the one before.
    pub initial_backoff: Duration,
    /// Upper bound of the wait between attempts.
    pub max_backoff: Duration,
    /// Time allowed for one attempt, from connecting to the response status.
    pub attempt_timeout: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            attempt_timeout: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    fn backoff(&self, failed_attempts: u32) -> Duration {
        let factor = 2u32.saturating_pow(failed_attempts.saturating_sub(1));
        self.initial_backoff.saturating_mul(factor).min(self.max_backoff)
    }
}

/// One attempt to deliver a webhook: the request sent and the receiver's response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The topic or event type, such as `products/update` or `item.updated`.
    pub topic: String,
    /// The event id, identical across the attempts of one event.
    pub event_id: String,
    /// The attempt number, starting at 1.
    pub attempt: u32,
    pub url: String,
    /// The request headers in the order sent.
    pub headers: Vec<(String, String)>,
    /// The exact request body bytes, as signed.
    pub body: Vec<u8>,
    pub outcome: DeliveryOutcome,
}

/// The receiver's response to one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeliveryOutcome {
    /// The receiver responded with this HTTP status.
    Status(u16),
    /// The request failed before a status arrived (connection refused, timeout).
    Failed(String),
}

impl Delivery {
    /// Returns the first header named `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(header, _)| header.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// Tells whether the receiver responded with a 2xx status.
    pub fn succeeded(&self) -> bool {
        matches!(self.outcome, DeliveryOutcome::Status(status) if (200..300).contains(&status))
    }

    /// Returns the body as text (webhook bodies are UTF-8 JSON).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// An event ready to be delivered: the body is final and identical for every attempt.
#[derive(Debug, Clone)]
pub(crate) struct OutgoingEvent {
    pub(crate) topic: String,
    pub(crate) event_id: String,
    pub(crate) triggered_at: DateTime<Utc>,
    pub(crate) body: Vec<u8>,
}

/// The rule that selects the failed attempts a dispatcher retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RetryRule {
    /// Retries every failed attempt: connection errors, timeouts and every non-2xx status.
    AnyFailure,
    /// Retries connection errors, timeouts, 408, 429 and 5xx only. Any other non-2xx status ends
    /// the delivery at once, which is how Business Central treats its subscribers.
    TransientOnly,
}

impl RetryRule {
    fn retries(self, outcome: &DeliveryOutcome) -> bool {
        match (self, outcome) {
            (_, DeliveryOutcome::Failed(_)) | (Self::AnyFailure, DeliveryOutcome::Status(_)) => true,
            (Self::TransientOnly, DeliveryOutcome::Status(status)) => {
                matches!(status, 408 | 429) || (500..600).contains(status)
            }
        }
    }
}

/// The result of a delivery after its last attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FinalOutcome {
    /// An attempt got a 2xx status.
    Delivered,
    /// The receiver responded with a status that the [`RetryRule`] does not retry.
    Rejected(u16),
    /// Every attempt failed with a retryable outcome.
    AttemptsExhausted,
}

/// Counts as one pending delivery until dropped, so [`Dispatcher::wait_idle`] also waits for
/// work that is scheduled but not yet sent, such as a batch waiting for its send delay.
#[derive(Debug)]
pub(crate) struct PendingGuard {
    dispatcher: Arc<Dispatcher>,
}

impl Drop for PendingGuard {
    fn drop(&mut self) {
        self.dispatcher.pending.send_modify(|pending| *pending -= 1);
    }
}

/// Builds the headers of one attempt, including its signature.
pub(crate) trait SignHeaders: Send + Sync + 'static {
    fn headers(&self, event: &OutgoingEvent, attempt: u32) -> Vec<(String, String)>;
}

/// Sends events to the configured webhook URL and records every attempt.
pub(crate) struct Dispatcher {
    client: reqwest::Client,
    runtime: Handle,
    url: RwLock<Option<String>>,
    policy: RetryPolicy,
    signer: Box<dyn SignHeaders>,
    rule: RetryRule,
    log: Mutex<Vec<Delivery>>,
    pending: watch::Sender<usize>,
    sandbox: &'static str,
}

impl std::fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dispatcher")
            .field("sandbox", &self.sandbox)
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    pub(crate) fn new(
        sandbox: &'static str,
        url: Option<String>,
        policy: RetryPolicy,
        signer: Box<dyn SignHeaders>,
    ) -> Result<Arc<Self>, SandboxError> {
        Self::with_rule(sandbox, url, policy, signer, RetryRule::AnyFailure)
    }

    /// Builds a dispatcher that retries the failures `rule` names.
    pub(crate) fn with_rule(
        sandbox: &'static str,
        url: Option<String>,
        policy: RetryPolicy,
        signer: Box<dyn SignHeaders>,
        rule: RetryRule,
    ) -> Result<Arc<Self>, SandboxError> {
        let runtime = Handle::try_current().map_err(|_| SandboxError::NoRuntime)?;
        let client = reqwest::Client::builder()
            .timeout(policy.attempt_timeout)
            .build()
            .map_err(|source| SandboxError::HttpClient { source })?;
        let (pending, _) = watch::channel(0);
        Ok(Arc::new(Self {
            client,
            runtime,
            url: RwLock::new(url),
            policy,
            signer,
            rule,
            log: Mutex::new(Vec::new()),
            pending,
            sandbox,
        }))
    }

    pub(crate) fn set_url(&self, url: Option<String>) {
        if let Ok(mut current) = self.url.write() {
            *current = url;
        }
    }

    /// Queues an event for delivery to the URL configured now; retries keep that URL, as
    /// Shopify's do. Without a URL the event is dropped.
    pub(crate) fn send(self: &Arc<Self>, event: OutgoingEvent) {
        let url = self.url.read().ok().and_then(|url| url.clone());
        let Some(url) = url else {
            tracing::debug!(sandbox = self.sandbox, topic = %event.topic, "no webhook URL set, event not delivered");
            return;
        };
        self.send_to(url, event);
    }

    /// Queues an event for delivery to `url`, with retries like [`Dispatcher::send`].
    pub(crate) fn send_to(self: &Arc<Self>, url: String, event: OutgoingEvent) {
        self.pending.send_modify(|pending| *pending += 1);
        let dispatcher = Arc::clone(self);
        self.runtime.spawn(async move {
            dispatcher.deliver(&url, &event).await;
            dispatcher.pending.send_modify(|pending| *pending -= 1);
        });
    }

    /// Delivers `event` to `url` with retries and returns how the delivery ended. The delivery
    /// counts as pending until it ends.
    pub(crate) async fn deliver_to(self: &Arc<Self>, url: &str, event: &OutgoingEvent) -> FinalOutcome {
        let _pending = self.hold_pending();
        self.deliver(url, event).await
    }

    /// Counts one pending delivery until the returned guard is dropped.
    pub(crate) fn hold_pending(self: &Arc<Self>) -> PendingGuard {
        self.pending.send_modify(|pending| *pending += 1);
        PendingGuard {
            dispatcher: Arc::clone(self),
        }
    }

    async fn deliver(&self, url: &str, event: &OutgoingEvent) -> FinalOutcome {
        for attempt in 1..=self.policy.max_attempts {
            let headers = self.signer.headers(event, attempt);
            let outcome = self.attempt(url, &headers, &event.body).await;
            let succeeded = matches!(outcome, DeliveryOutcome::Status(status) if (200..300).contains(&status));
            let rejected_status = match outcome {
                DeliveryOutcome::Status(status) if !succeeded && !self.rule.retries(&outcome) => Some(status),
                _ => None,
            };
            match &outcome {
                DeliveryOutcome::Status(status) => tracing::debug!(
                    sandbox = self.sandbox, topic = %event.topic, event_id = %event.event_id, attempt, status,
                    "webhook delivered"
                ),
                DeliveryOutcome::Failed(error) => tracing::debug!(
                    sandbox = self.sandbox, topic = %event.topic, event_id = %event.event_id, attempt, error = %error,
                    "webhook delivery failed"
                ),
            }
            self.record(Delivery {
                topic: event.topic.clone(),
                event_id: event.event_id.clone(),
                attempt,
                url: url.to_owned(),
                headers,
                body: event.body.clone(),
                outcome,
            });
            if succeeded {
                return FinalOutcome::Delivered;
            }
            if let Some(status) = rejected_status {
                tracing::warn!(
                    sandbox = self.sandbox, topic = %event.topic, event_id = %event.event_id, attempt, status,
                    "webhook rejected with a status that is not retried"
                );
                return FinalOutcome::Rejected(status);
            }
            if attempt < self.policy.max_attempts {
                tokio::time::sleep(self.policy.backoff(attempt)).await;
            }
        }
        tracing::warn!(
            sandbox = self.sandbox, topic = %event.topic, event_id = %event.event_id,
            attempts = self.policy.max_attempts, "webhook dropped after the last attempt failed"
        );
        FinalOutcome::AttemptsExhausted
    }

    async fn attempt(&self, url: &str, headers: &[(String, String)], body: &[u8]) -> DeliveryOutcome {
        let mut request = self.client.post(url).body(body.to_vec());
        for (name, value) in headers {
            request = request.header(name.as_str(), value.as_str());
        }
        match request.send().await {
            Ok(response) => DeliveryOutcome::Status(response.status().as_u16()),
            Err(error) => DeliveryOutcome::Failed(error.to_string()),
        }
    }

    fn record(&self, delivery: Delivery) {
        if let Ok(mut log) = self.log.lock() {
            log.push(delivery);
        }
    }

    pub(crate) fn deliveries(&self) -> Vec<Delivery> {
        self.log.lock().map(|log| log.clone()).unwrap_or_default()
    }

    pub(crate) fn delivery_count(&self) -> usize {
        self.log.lock().map(|log| log.len()).unwrap_or_default()
    }

    /// Waits until no event is waiting for delivery or retry.
    pub(crate) async fn wait_idle(&self) {
        let mut pending = self.pending.subscribe();
        // The sender lives as long as `self`, so waiting cannot fail.
        let _ = pending.wait_for(|pending| *pending == 0).await;
    }
}

/// Returns a random id in the textual form of a version 4 UUID.
pub(crate) fn new_uuid() -> String {
    let bits: u128 = rand::random();
    let bits = (bits & !(0xF << 76) | (0x4 << 76)) & !(0x3 << 62) | (0x2 << 62);
    let hex = format!("{bits:032x}");
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// Computes the base64 HMAC-SHA256 of `message` with `secret`.
pub(crate) fn hmac_sha256_base64(secret: &[u8], message: &[&[u8]]) -> String {
    use base64::Engine as _;
    use hmac::Mac as _;

    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match hmac::Hmac::<sha2::Sha256>::new_from_slice(secret) {
        Ok(mac) => mac,
        Err(_) => return String::new(),
    };
    for part in message {
        mac.update(part);
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuid_has_version_4_form() {
        let id = new_uuid();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert!(matches!(&id[19..20], "8" | "9" | "a" | "b"));
        assert_ne!(new_uuid(), id);
    }

    #[test]
    fn transient_rule_retries_only_transient_failures() {
        let rule = RetryRule::TransientOnly;
        for status in [408, 429, 500, 503, 599] {
            assert!(rule.retries(&DeliveryOutcome::Status(status)), "{status}");
        }
        for status in [400, 401, 404, 410, 301] {
            assert!(!rule.retries(&DeliveryOutcome::Status(status)), "{status}");
        }
        assert!(rule.retries(&DeliveryOutcome::Failed("timed out".to_owned())));
        assert!(RetryRule::AnyFailure.retries(&DeliveryOutcome::Status(404)));
    }

    #[test]
    fn backoff_doubles_up_to_max() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.backoff(1), Duration::from_millis(50));
        assert_eq!(policy.backoff(2), Duration::from_millis(100));
        assert_eq!(policy.backoff(20), Duration::from_secs(2));
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let signature = hmac_sha256_base64(b"Jefe", &[b"what do ya want ", b"for nothing?"]);
        use base64::Engine as _;
        let bytes = base64::engine::general_purpose::STANDARD.decode(signature).unwrap();
        assert_eq!(
            hex::encode(bytes),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
