//! WooCommerce webhooks through the real receiver handler: signatures on the raw PHP-escaped
//! bytes, the unsigned creation ping, times from `date_modified_gmt`, and variable products as
//! notices.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use fieldsync_core::formats::woocommerce::WooCommerceFormat;
use fieldsync_core::ports::Queue;
use fieldsync_core::{FieldName, NoticeKind, Secret, SystemId, Wire};
use fieldsync_embedded::{EmbeddedQueue, QueueSettings};
use fieldsync_lambda::metrics::MetricsSink;
use fieldsync_lambda::receiver::{handle, Receiver};
use fieldsync_pipeline::message::{decode_queued, Queued};
use fieldsync_sandbox::woocommerce::{ProductEdit, WooCommerceConfig, WooCommerceSandbox};
use fieldsync_sandbox::RetryPolicy;
use fieldsync_tests::{api_gateway_request, fixture, shopify_signature, status_and_body};

const VECTOR_SECRET: &str = "wc_example_secret_A1b2C3";
const VECTOR_SIGNATURE: &str = "gjeVEYbzQoN0FUfEDZkpomjuJA088J25qOOQiBzL/uc=";
const RESERIALIZED_SIGNATURE: &str = "X615xgF0DFG81F02Ozd+mDJhBU40gM4Tm2YMxuNUwrw=";
const SECRET: &str = "wc_test_fake_webhook_secret";

fn receiver(queue: Arc<EmbeddedQueue>, secret: &str) -> Receiver {
    Receiver {
        integration: "demo".into(),
        format: Arc::new(WooCommerceFormat::new(
            "demo",
            SystemId::new("storefront"),
            vec![Secret::new(secret)],
        )),
        queue,
        metrics: MetricsSink::Off,
    }
}

/// Sends `body` as a signed WooCommerce delivery of `topic` and returns the response status.
async fn deliver(receiver: &Receiver, topic: &str, body: &[u8], signature: &str) -> u16 {
    let headers = [
        ("content-type", "application/json"),
        ("x-wc-webhook-topic", topic),
        ("x-wc-webhook-resource", topic.split('.').next().unwrap()),
        ("x-wc-webhook-event", topic.split('.').nth(1).unwrap()),
        ("x-wc-webhook-id", "42"),
        ("x-wc-webhook-delivery-id", "5e9c1ab0d2f84c7b9a3e6f10c2d4b8a1"),
        ("x-wc-webhook-source", "https://shop.example/"),
        ("x-wc-webhook-signature", signature),
    ];
    let response = handle(receiver, api_gateway_request(body, &headers, false))
        .await
        .unwrap();
    status_and_body(&response).0
}

async fn queued(queue: &EmbeddedQueue) -> Vec<Queued> {
    queue
        .receive(10)
        .await
        .unwrap()
        .iter()
        .map(|message| decode_queued(&message.body).unwrap())
        .collect()
}

#[tokio::test]
async fn vector_is_verified_on_raw_bytes() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let body = fixture("woocommerce-v2.body");
    assert!(
        String::from_utf8_lossy(&body).contains(r"https:\/\/shop.example"),
        "the vector keeps PHP's escaped slashes"
    );

    let status = deliver(
        &receiver(queue.clone(), VECTOR_SECRET),
        "product.updated",
        &body,
        VECTOR_SIGNATURE,
    )
    .await;

    // Accepted on the exact bytes. The vector's product has no SKU, fieldsync's product key, so
    // it is acknowledged and logged without a change: keying it by its WooCommerce id could meet
    // an ERP item whose SKU is that number.
    assert_eq!(status, 200);
    assert!(queue.is_empty());

    // The same bytes with a SKU added and signed again are read as a change, with the escaped
    // `\u00e9` decoded and the time taken from the GMT member.
    let with_sku = String::from_utf8(body)
        .unwrap()
        .replacen(r#""id":7001,"#, r#""id":7001,"sku":"CAFE-MUG","#, 1);
    let status = deliver(
        &receiver(queue.clone(), VECTOR_SECRET),
        "product.updated",
        with_sku.as_bytes(),
        &shopify_signature(VECTOR_SECRET, with_sku.as_bytes()),
    )
    .await;
    assert_eq!(status, 200);
    let messages = queued(&queue).await;
    assert_eq!(messages.len(), 1);
    let Queued::Change(change) = &messages[0] else {
        panic!("expected a change");
    };
    assert_eq!(change.record.key, "CAFE-MUG");
    assert_eq!(change.fields[&FieldName::new("name")], Wire::Text("Café mug".into()));
    assert_eq!(change.fields[&FieldName::new("price")], Wire::Text("19.90".into()));
    assert_eq!(change.external_id.as_deref(), Some("7001"));
    assert_eq!(change.occurred_at, Utc.with_ymd_and_hms(2025, 3, 9, 7, 30, 0).unwrap());
}

#[tokio::test]
async fn reserialized_signature_gets_401() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let body = fixture("woocommerce-v2.body");

    let status = deliver(
        &receiver(queue.clone(), VECTOR_SECRET),
        "product.updated",
        &body,
        RESERIALIZED_SIGNATURE,
    )
    .await;

    assert_eq!(status, 401);
    assert!(queue.is_empty());
}

#[tokio::test]
async fn creation_ping_gets_200_and_queues_nothing() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let headers = [
        ("content-type", "application/x-www-form-urlencoded"),
        ("user-agent", "WooCommerce/9.8.0 Hookshot (WordPress/6.8)"),
    ];

    let response = handle(
        &receiver(queue.clone(), SECRET),
        api_gateway_request(b"webhook_id=42", &headers, false),
    )
    .await
    .unwrap();

    assert_eq!(
        status_and_body(&response).0,
        200,
        "WooCommerce saves the webhook only on 200"
    );
    assert!(queue.is_empty());
}

#[tokio::test]
async fn dst_day_time_comes_from_gmt() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    // 02:30 local did not exist in New York on 2025-03-09; the GMT member is the instant. The
    // case's payload plus a SKU, without which the product is acknowledged and skipped.
    let body = br#"{"id":9002,"sku":"MUG-DST","date_modified":"2025-03-09T02:30:00","date_modified_gmt":"2025-03-09T07:30:00"}"#;

    let status = deliver(
        &receiver(queue.clone(), SECRET),
        "product.updated",
        body,
        &shopify_signature(SECRET, body),
    )
    .await;

    assert_eq!(status, 200);
    let messages = queued(&queue).await;
    let Queued::Change(change) = &messages[0] else {
        panic!("expected a change");
    };
    assert_eq!(change.occurred_at, Utc.with_ymd_and_hms(2025, 3, 9, 7, 30, 0).unwrap());
}

#[tokio::test]
async fn variable_product_becomes_notice() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let body = br#"{"id":7000,"type":"variable","variations":[7001,7002],"date_modified_gmt":"2025-06-02T09:00:00"}"#;

    let status = deliver(
        &receiver(queue.clone(), SECRET),
        "product.updated",
        body,
        &shopify_signature(SECRET, body),
    )
    .await;

    assert_eq!(status, 200);
    let messages = queued(&queue).await;
    assert_eq!(messages.len(), 1);
    let Queued::Notice { notice } = &messages[0] else {
        panic!("expected a notice");
    };
    assert_eq!(notice.resource, "products/7000");
    assert_eq!(notice.kind, NoticeKind::Updated);
    assert_eq!(notice.occurred_at, Utc.with_ymd_and_hms(2025, 6, 2, 9, 0, 0).unwrap());
}

#[tokio::test]
async fn unknown_topic_is_acknowledged_and_ignored() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let body = br#"{"id":55,"code":"SPRING"}"#;
    let receiver = receiver(queue.clone(), SECRET);

    for topic in ["coupon.created", "order.updated", "product.deleted"] {
        let status = deliver(&receiver, topic, body, &shopify_signature(SECRET, body)).await;
        assert_eq!(status, 200, "{topic}");
    }
    assert!(queue.is_empty());
}

#[tokio::test]
async fn malformed_json_gets_400() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let body = br#"{"id":7001,"name":"#;

    let status = deliver(
        &receiver(queue.clone(), SECRET),
        "product.updated",
        body,
        &shopify_signature(SECRET, body),
    )
    .await;

    assert_eq!(status, 400);
    assert!(queue.is_empty());
}

/// Feeds the sandbox's own signed delivery, bytes and headers as sent, through the receiver.
#[tokio::test]
async fn sandbox_delivery_passes_the_receiver() {
    let shop = WooCommerceSandbox::start(WooCommerceConfig {
        webhook_secret: SECRET.to_owned(),
        retry: RetryPolicy {
            max_attempts: 1,
            attempt_timeout: Duration::from_secs(1),
            ..RetryPolicy::default()
        },
        ..WooCommerceConfig::default()
    })
    .await
    .unwrap();
    // Nothing listens on the discard port, so the attempt fails and is only recorded.
    shop.set_webhook_url(Some("http://127.0.0.1:9/webhooks/demo/storefront".to_owned()));
    shop.create_product_as_merchant(
        "MUG-CAFE",
        ProductEdit {
            name: Some("Café mug".into()),
            regular_price: Some("19.90".into()),
            stock_quantity: Some(4),
            ..ProductEdit::default()
        },
    )
    .unwrap();
    shop.wait_for_deliveries_idle().await;
    let delivery = shop.deliveries().pop().unwrap();
    assert!(delivery.body_text().contains(r"Caf\u00e9"), "{}", delivery.body_text());

    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let headers: Vec<(String, String)> = delivery
        .headers
        .iter()
        .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
        .collect();
    let headers: Vec<(&str, &str)> = headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect();
    let response = handle(
        &receiver(queue.clone(), SECRET),
        api_gateway_request(&delivery.body, &headers, false),
    )
    .await
    .unwrap();

    assert_eq!(status_and_body(&response).0, 200);
    let messages = queued(&queue).await;
    let Queued::Change(change) = &messages[0] else {
        panic!("expected a change");
    };
    assert_eq!(change.record.key, "MUG-CAFE");
    assert_eq!(change.fields[&FieldName::new("name")], Wire::Text("Café mug".into()));
    assert_eq!(change.fields[&FieldName::new("inventory")], Wire::Number("4".into()));
    assert_eq!(change.event_id, delivery.event_id);
    shop.shutdown().await;
}
