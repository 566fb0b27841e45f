//! The receiver's responses to bad input: nothing is lost and the sender learns whether to retry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use fieldsync_embedded::{EmbeddedQueue, QueueSettings};
use fieldsync_lambda::receiver::handle;
use fieldsync_tests::{
    api_gateway_request, api_gateway_request_for, shopify_receiver, shopify_signature, status_and_body,
    UnavailableQueue,
};

const SECRET: &str = "shpss_receiver_test";
const ORDER: &[u8] = br#"{"id":1,"email":"ada@example.test","updated_at":"2025-06-01T10:00:00Z"}"#;

fn signed_headers<'a>(topic: &'a str, signature: &'a str) -> [(&'a str, &'a str); 3] {
    [
        ("x-shopify-topic", topic),
        ("x-shopify-hmac-sha256", signature),
        ("x-shopify-webhook-id", "delivery-1"),
    ]
}

#[tokio::test]
async fn wrong_signature_gets_401_and_enqueues_nothing() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let receiver = shopify_receiver(queue.clone(), SECRET);
    let signature = shopify_signature("another secret", ORDER);
    let response = handle(
        &receiver,
        api_gateway_request(ORDER, &signed_headers("orders/create", &signature), false),
    )
    .await
    .unwrap();
    assert_eq!(status_and_body(&response).0, 401);
    assert!(queue.is_empty());
}

#[tokio::test]
async fn missing_signature_gets_401() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let receiver = shopify_receiver(queue.clone(), SECRET);
    let response = handle(
        &receiver,
        api_gateway_request(ORDER, &[("x-shopify-topic", "orders/create")], false),
    )
    .await
    .unwrap();
    assert_eq!(status_and_body(&response).0, 401);
}

#[tokio::test]
async fn malformed_body_gets_400() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let receiver = shopify_receiver(queue.clone(), SECRET);
    let body = b"{\"id\": 1, ";
    let signature = shopify_signature(SECRET, body);
    let response = handle(
        &receiver,
        api_gateway_request(body, &signed_headers("orders/create", &signature), false),
    )
    .await
    .unwrap();
    let (status, text) = status_and_body(&response);
    assert_eq!(status, 400);
    assert!(text.contains("not JSON"), "{text}");
    assert!(queue.is_empty());
}

#[tokio::test]
async fn unknown_topic_gets_200_and_is_ignored() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let receiver = shopify_receiver(queue.clone(), SECRET);
    let signature = shopify_signature(SECRET, ORDER);
    let response = handle(
        &receiver,
        api_gateway_request(ORDER, &signed_headers("carts/update", &signature), false),
    )
    .await
    .unwrap();
    assert_eq!(
        status_and_body(&response),
        (200, r#"{"ignored":"carts/update"}"#.to_owned())
    );
    assert!(queue.is_empty());
}

#[tokio::test]
async fn queue_down_gets_503_so_sender_retries() {
    let receiver = shopify_receiver(Arc::new(UnavailableQueue), SECRET);
    let signature = shopify_signature(SECRET, ORDER);
    let response = handle(
        &receiver,
        api_gateway_request(ORDER, &signed_headers("orders/create", &signature), false),
    )
    .await
    .unwrap();
    assert_eq!(status_and_body(&response).0, 503);
}

#[tokio::test]
async fn other_integration_url_gets_404() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let receiver = shopify_receiver(queue.clone(), SECRET);
    let signature = shopify_signature(SECRET, ORDER);
    let headers = signed_headers("orders/create", &signature);
    let response = handle(&receiver, api_gateway_request_for("other", ORDER, &headers, false))
        .await
        .unwrap();
    assert_eq!(status_and_body(&response).0, 404);
    assert!(queue.is_empty());
}
