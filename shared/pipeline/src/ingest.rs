//! Receiving one webhook: verify, normalize, enqueue, then respond.

use fieldsync_core::ingest::accept;
use fieldsync_core::ports::Queue;
use fieldsync_core::{InboundRequest, Normalized, Rejection, WebhookFormat};
use tracing::{error, info, warn};

use crate::message;
use crate::report::ErrorChain;

/// The HTTP response to a webhook, independent of the server that sends it, and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookResponse {
    pub status: u16,
    pub content_type: &'static str,
    pub body: String,
    pub received: Received,
}

/// The outcome of one webhook request, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// Verified, and this many change sets were enqueued.
    Enqueued { changes: usize },
    /// Verified, but its topic is not synced.
    Ignored,
    /// The signature was missing or wrong.
    RejectedSignature,
    /// The body or a required header could not be read.
    RejectedMalformed,
    /// The queue refused the changes; the sender was asked to retry.
    EnqueueFailed,
}

impl WebhookResponse {
    fn json(status: u16, body: serde_json::Value, received: Received) -> Self {
        Self {
            status,
            content_type: "application/json",
            body: body.to_string(),
            received,
        }
    }
}

/// Handles one webhook. Responds 2xx only once every change is on the queue, so a sender whose
/// delivery was not enqueued retries it.
pub async fn receive_webhook(
    format: &dyn WebhookFormat,
    queue: &dyn Queue,
    request: &InboundRequest,
) -> WebhookResponse {
    let source = format.source().as_str();
    if let Some(handshake) = format.handshake(request) {
        info!(source, "subscription handshake: token returned");
        return WebhookResponse {
            status: 200,
            content_type: "text/plain",
            body: handshake.body,
            received: Received::Ignored,
        };
    }
    let encoded = match accept(format, request) {
        Ok(Normalized::Changes(changes)) => changes
            .iter()
            .map(|change| {
                (
                    message::encode(change),
                    change.record.to_string(),
                    change.event_id.clone(),
                )
            })
            .collect::<Vec<_>>(),
        Ok(Normalized::Notices(notices)) => notices
            .iter()
            .map(|notice| {
                (
                    message::encode_notice(notice),
                    notice.resource.clone(),
                    notice.event_id.clone(),
                )
            })
            .collect(),
        Ok(Normalized::Ignored { topic }) => {
            info!(source, topic, "webhook topic not synced, ignored");
            return WebhookResponse::json(200, serde_json::json!({ "ignored": topic }), Received::Ignored);
        }
        Err(rejection) => return reject(format, source, &rejection),
    };

    let mut messages = Vec::with_capacity(encoded.len());
    for (result, record, _) in &encoded {
        match result {
            Ok(message) => messages.push(message.clone()),
            Err(error) => {
                error!(source, record, error = %ErrorChain(error), "change could not be encoded");
                let body = serde_json::json!({ "error": "internal error" });
                return WebhookResponse::json(500, body, Received::EnqueueFailed);
            }
        }
    }
    if let Err(error) = queue.send(&messages).await {
        error!(source, error = %ErrorChain(&error), "enqueue failed; the sender will retry");
        let body = serde_json::json!({ "error": "queue unavailable, retry later" });
        return WebhookResponse::json(503, body, Received::EnqueueFailed);
    }

    for (_, record, event_id) in &encoded {
        info!(source, record, event_id, "change enqueued");
    }
    let received = Received::Enqueued { changes: encoded.len() };
    WebhookResponse::json(200, serde_json::json!({ "accepted": encoded.len() }), received)
}

fn reject(format: &dyn WebhookFormat, source: &str, rejection: &Rejection) -> WebhookResponse {
    warn!(source, reason = %rejection, kind = rejection.kind(), "webhook rejected");
    match rejection {
        Rejection::Unauthorized { .. } => {
            let status = format.unauthorized_status();
            let body = if status < 300 { "ignored" } else { "invalid signature" };
            WebhookResponse::json(
                status,
                serde_json::json!({ "error": body }),
                Received::RejectedSignature,
            )
        }
        Rejection::Malformed { reason } => {
            let body = serde_json::json!({ "error": reason });
            WebhookResponse::json(format.malformed_status(), body, Received::RejectedMalformed)
        }
    }
}
