//! Receiving one webhook: verify, normalize, enqueue, then respond.

use fieldsync_core::ingest::accept;
use fieldsync_core::ports::Queue;
use fieldsync_core::{InboundRequest, Normalized, Rejection, WebhookFormat};
use tracing::{error, info, warn};

use crate::message;

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
    let changes = match accept(format, request) {
        Ok(Normalized::Changes(changes)) => changes,
        Ok(Normalized::Ignored { topic }) => {
            info!(source, topic, "webhook topic not synced, ignored");
            return WebhookResponse::json(200, serde_json::json!({ "ignored": topic }), Received::Ignored);
        }
        Err(rejection) => return reject(format, source, &rejection),
    };

    let mut messages = Vec::with_capacity(changes.len());
    for change in &changes {
        match message::encode(change) {
            Ok(encoded) => messages.push(encoded),
            Err(error) => {
                error!(source, record = %change.record, error = %error, "change could not be encoded");
                let body = serde_json::json!({ "error": "internal error" });
                return WebhookResponse::json(500, body, Received::EnqueueFailed);
            }
        }
    }
    if let Err(error) = queue.send(&messages).await {
        error!(source, error = %error, "enqueue failed; the sender will retry");
        let body = serde_json::json!({ "error": "queue unavailable, retry later" });
        return WebhookResponse::json(503, body, Received::EnqueueFailed);
    }

    for change in &changes {
        info!(source, record = %change.record, event_id = change.event_id, fields = change.fields.len(), "change enqueued");
    }
    let received = Received::Enqueued { changes: changes.len() };
    WebhookResponse::json(200, serde_json::json!({ "accepted": changes.len() }), received)
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
            WebhookResponse::json(400, serde_json::json!({ "error": reason }), Received::RejectedMalformed)
        }
    }
}
