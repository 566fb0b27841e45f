//! The webhook receiver handler shared by the storefront and ERP functions.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Utc;
use fieldsync_core::ports::Queue;
use fieldsync_core::{InboundRequest, WebhookFormat};
use fieldsync_pipeline::{receive_webhook, WebhookResponse};
use lambda_http::http::header::CONTENT_TYPE;
use lambda_http::{Body, Error, Request, RequestExt, Response};
use tracing::info_span;
use tracing::Instrument as _;

use crate::metrics::{receiver_samples, MetricsSink};

/// The dependencies of a receiver function: the sender's webhook format, the queue, and where
/// its metrics go.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// The integration named in the rules, a dimension of every metric.
    pub integration: String,
    pub format: Arc<dyn WebhookFormat>,
    pub queue: Arc<dyn Queue>,
    pub metrics: MetricsSink,
}

/// Handles one webhook request. Every expected failure is an `Ok` response with its status, so
/// the invocation itself fails only on a bug.
pub async fn handle(receiver: &Receiver, request: Request) -> Result<Response<Body>, Error> {
    // The route is `/webhooks/{integration}/<side>`: a URL naming another integration was
    // registered by mistake, and accepting it would mix two integrations' records.
    let path_integration = request
        .path_parameters_ref()
        .and_then(|parameters| parameters.first("integration"));
    if let Some(name) = path_integration.filter(|name| *name != receiver.integration) {
        tracing::warn!(
            integration = name,
            expected = receiver.integration,
            "webhook for another integration"
        );
        // A sender that punishes 4xx (Business Central deletes the subscription) gets its
        // success status instead, and the log line above.
        let status = match receiver.format.malformed_status() {
            status if status < 400 => status,
            _ => 404,
        };
        let response = Response::builder()
            .status(status)
            .header(CONTENT_TYPE, "application/json")
            .body(Body::Text(
                serde_json::json!({ "error": "unknown integration" }).to_string(),
            ))?;
        return Ok(response);
    }
    let inbound = inbound_request(&request);
    let span = info_span!("webhook", system = %receiver.format.source());

    let answer = receive_webhook(receiver.format.as_ref(), receiver.queue.as_ref(), &inbound)
        .instrument(span)
        .await;

    let samples = receiver_samples(&receiver.integration, receiver.format.source(), answer.received);
    receiver.metrics.publish(&samples, Utc::now());
    into_response(answer)
}

/// Copies headers (names lowercased), query parameters and the raw body bytes. `lambda_http`
/// has already decoded a body the event marked `isBase64Encoded`, and no text conversion happens
/// here, so the signature is checked on the exact bytes sent.
pub fn inbound_request(request: &Request) -> InboundRequest {
    // A header sent on several lines is one comma-separated value (RFC 9110, section 5.3).
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for (name, value) in request.headers() {
        let Ok(value) = value.to_str() else { continue };
        headers
            .entry(name.as_str().to_ascii_lowercase())
            .and_modify(|joined| {
                joined.push_str(", ");
                joined.push_str(value);
            })
            .or_insert_with(|| value.to_owned());
    }
    let query: BTreeMap<String, String> = request
        .query_string_parameters_ref()
        .map(|parameters| {
            parameters
                .iter()
                .map(|(name, value)| (name.to_owned(), value.to_owned()))
                .collect()
        })
        .unwrap_or_default();
    InboundRequest {
        headers,
        query,
        body: request.body().as_ref().to_vec(),
        received_at: Utc::now(),
    }
}

fn into_response(answer: WebhookResponse) -> Result<Response<Body>, Error> {
    let response = Response::builder()
        .status(answer.status)
        .header(CONTENT_TYPE, answer.content_type)
        .body(Body::Text(answer.body))?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_header_lines_are_joined() {
        let request = lambda_http::http::Request::builder()
            .header("X-Fieldsync-Signature", "v1=first")
            .header("x-fieldsync-signature", "v1=second")
            .body(Body::Binary(b"{}".to_vec()))
            .unwrap();
        let inbound = inbound_request(&request);
        assert_eq!(inbound.header("x-fieldsync-signature"), Some("v1=first, v1=second"));
        assert_eq!(inbound.body, b"{}");
    }
}
