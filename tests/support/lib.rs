//! Helpers for the end-to-end tests: the local stack, signed requests and Lambda events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use fieldsync_core::formats::shopify::ShopifyFormat;
use fieldsync_core::ports::{OutgoingMessage, Queue, QueueError, ReceivedMessage};
use fieldsync_core::{Rules, Secret, SystemId};
use fieldsync_lambda::metrics::MetricsSink;
use fieldsync_lambda::receiver::Receiver;
use fieldsync_local::{LocalOptions, LocalStack};

/// How long a test waits for the pipeline to settle.
pub const SETTLE: Duration = Duration::from_secs(20);

/// Reads a signature vector body from `tests/fixtures/signatures/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/fixtures/signatures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|error| panic!("cannot read {path}: {error}"))
}

/// Loads the repository's `rules.toml`, the demo integration's rules.
pub fn rules() -> Rules {
    let path = format!("{}/../rules.toml", env!("CARGO_MANIFEST_DIR"));
    Rules::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// Starts the local stack: sandboxes, receivers, embedded queue and store, reconciler worker.
pub async fn start_stack() -> LocalStack {
    LocalStack::start(LocalOptions::new(rules())).await.unwrap()
}

/// A storefront receiver with its own secret that enqueues on `queue`, as the
/// `ecommerce-webhook` function is configured.
pub fn shopify_receiver(queue: Arc<dyn Queue>, secret: &str) -> Receiver {
    let format = ShopifyFormat {
        integration: "demo".into(),
        source: SystemId::new("storefront"),
        secrets: vec![Secret::new(secret)],
    };
    Receiver {
        integration: "demo".into(),
        format: Arc::new(format),
        queue,
        metrics: MetricsSink::Off,
    }
}

/// Builds an API Gateway HTTP API (payload 2.0) event for the demo integration's storefront
/// route, as Lambda delivers it, and reads it with `lambda_http` the way the runtime does.
pub fn api_gateway_request(body: &[u8], headers: &[(&str, &str)], base64_encoded: bool) -> lambda_http::Request {
    api_gateway_request_for("demo", body, headers, base64_encoded)
}

/// As [`api_gateway_request`], on the storefront route of the named integration.
pub fn api_gateway_request_for(
    integration: &str,
    body: &[u8],
    headers: &[(&str, &str)],
    base64_encoded: bool,
) -> lambda_http::Request {
    let headers: serde_json::Map<String, serde_json::Value> = headers
        .iter()
        .map(|(name, value)| ((*name).to_owned(), serde_json::Value::String((*value).to_owned())))
        .collect();
    let body = if base64_encoded {
        BASE64.encode(body)
    } else {
        String::from_utf8(body.to_vec()).unwrap()
    };
    let path = format!("/webhooks/{integration}/storefront");
    let event = serde_json::json!({
        "version": "2.0",
        "routeKey": "POST /webhooks/{integration}/storefront",
        "rawPath": path,
        "rawQueryString": "",
        "headers": headers,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api-id",
            "domainName": "example.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "example",
            "http": { "method": "POST", "path": path, "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "Shopify-Captain-Hook" },
            "requestId": "request-1",
            "routeKey": "POST /webhooks/{integration}/storefront",
            "stage": "$default",
            "time": "01/Jun/2025:10:00:00 +0000",
            "timeEpoch": 1748772000000_u64
        },
        "pathParameters": { "integration": integration },
        "body": body,
        "isBase64Encoded": base64_encoded
    });
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

/// Returns the status and body of a Lambda HTTP response.
pub fn status_and_body(response: &lambda_http::Response<lambda_http::Body>) -> (u16, String) {
    (
        response.status().as_u16(),
        String::from_utf8_lossy(response.body().as_ref()).into_owned(),
    )
}

/// Signs a body the way Shopify does: base64 HMAC-SHA256 of the raw bytes.
pub fn shopify_signature(secret: &str, body: &[u8]) -> String {
    fieldsync_core::signature::hmac_sha256_base64(secret.as_bytes(), &[body])
}

/// Posts a Shopify-style webhook to the stack's storefront receiver, signed with the demo secret.
pub async fn post_shopify(stack: &LocalStack, topic: &str, body: &[u8], extra_headers: &[(&str, &str)]) -> u16 {
    let signature = shopify_signature(fieldsync_local::STOREFRONT_WEBHOOK_SECRET, body);
    let mut request = reqwest::Client::new()
        .post(stack.receivers.url("storefront"))
        .header("X-Shopify-Topic", topic)
        .header("X-Shopify-Hmac-Sha256", signature)
        .header("X-Shopify-Shop-Domain", "demo-shop.myshopify.com")
        .body(body.to_vec());
    for (name, value) in extra_headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap().status().as_u16()
}

/// A queue that is down, as SQS is during an outage or a throttling burst.
#[derive(Debug)]
pub struct UnavailableQueue;

#[async_trait::async_trait]
impl Queue for UnavailableQueue {
    async fn send(&self, _: &[OutgoingMessage]) -> Result<(), QueueError> {
        Err(QueueError::Unavailable {
            source: "connection refused".into(),
        })
    }
    async fn receive(&self, _: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
        Ok(Vec::new())
    }
    async fn delete(&self, _: &str) -> Result<(), QueueError> {
        Ok(())
    }
    async fn retry_later(&self, _: &str, _: std::time::Duration) -> Result<(), QueueError> {
        Ok(())
    }
    async fn dead_letters(&self) -> Result<Vec<ReceivedMessage>, QueueError> {
        Ok(Vec::new())
    }
    async fn redrive(&self) -> Result<usize, QueueError> {
        Ok(0)
    }
}
