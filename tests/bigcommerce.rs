//! BigCommerce webhooks through the real receiver handler: Standard Webhooks signatures, the
//! timestamp tolerance, and thin product and SKU payloads queued as notices of the parent product.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use chrono::{TimeZone, Utc};
use fieldsync_core::formats::bigcommerce::BigCommerceFormat;
use fieldsync_core::ports::Queue;
use fieldsync_core::signature::hmac_sha256_base64;
use fieldsync_core::{Notice, NoticeKind, Secret, SystemId};
use fieldsync_embedded::{EmbeddedQueue, QueueSettings};
use fieldsync_lambda::metrics::MetricsSink;
use fieldsync_lambda::receiver::{handle, Receiver};
use fieldsync_pipeline::message::{decode_queued, Queued};
use fieldsync_tests::{api_gateway_request, fixture, status_and_body};

const SECRET: &str = "bc_example_client_secret";
const VECTOR_ID: &str = "msg_example_0001";
const VECTOR_TIMESTAMP: i64 = 1_700_000_000;
const VECTOR_SIGNATURE: &str = "v1,IE6hLYuWaaidICWR3xzTdCnIBRsOKfOfbX1f+vHybNw=";
const SKU_INVENTORY: &str = r#"{"scope":"store/sku/inventory/updated","store_id":"1000001","data":{"type":"sku","id":461,"inventory":{"product_id":206,"method":"absolute","value":5}},"hash":"4b1f","created_at":1700000000,"producer":"stores/abc123"}"#;

/// Builds a receiver whose format's clock reads `now` (Unix seconds), or the system clock for
/// `None`.
fn receiver(queue: Arc<EmbeddedQueue>, now: Option<i64>) -> Receiver {
    let mut format = BigCommerceFormat::new("demo", SystemId::new("storefront"), vec![Secret::new(SECRET)]);
    if let Some(seconds) = now {
        let fixed = Utc.timestamp_opt(seconds, 0).unwrap();
        format = format.with_clock(Arc::new(move || fixed));
    }
    Receiver {
        integration: "demo".into(),
        format: Arc::new(format),
        queue,
        metrics: MetricsSink::Off,
    }
}

fn queue() -> Arc<EmbeddedQueue> {
    Arc::new(EmbeddedQueue::new(QueueSettings::default()))
}

/// Posts `body` with Standard Webhooks headers to the storefront route and returns the status.
async fn post(receiver: &Receiver, body: &[u8], id: &str, timestamp: i64, signature: &str) -> u16 {
    let timestamp = timestamp.to_string();
    let headers = [
        ("content-type", "application/json"),
        ("webhook-id", id),
        ("webhook-timestamp", timestamp.as_str()),
        ("webhook-signature", signature),
    ];
    let response = handle(receiver, api_gateway_request(body, &headers, false))
        .await
        .unwrap();
    status_and_body(&response).0
}

/// Signs `body` as BigCommerce does, at the vector's timestamp.
fn sign(body: &str, id: &str) -> String {
    let timestamp = VECTOR_TIMESTAMP.to_string();
    let signature = hmac_sha256_base64(
        SECRET.as_bytes(),
        &[id.as_bytes(), b".", timestamp.as_bytes(), b".", body.as_bytes()],
    );
    format!("v1,{signature}")
}

async fn queued_notices(queue: &EmbeddedQueue) -> Vec<(String, Notice)> {
    let messages = queue.receive(10).await.unwrap();
    messages
        .into_iter()
        .map(|message| {
            let Queued::Notice { notice } = decode_queued(&message.body).unwrap() else {
                panic!("expected a notice");
            };
            (message.group_id, notice)
        })
        .collect()
}

#[tokio::test]
async fn vector_with_injected_clock_queues_one_notice() {
    let queue = queue();
    let receiver = receiver(queue.clone(), Some(VECTOR_TIMESTAMP + 4));
    let body = fixture("bigcommerce-v3.body");
    let status = post(&receiver, &body, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_SIGNATURE).await;
    assert_eq!(status, 200);

    let notices = queued_notices(&queue).await;
    assert_eq!(notices.len(), 1);
    let notice = &notices[0].1;
    assert_eq!(notice.resource, "catalog/products/111");
    assert_eq!(notice.kind, NoticeKind::Updated);
    assert_eq!(notice.event_id, VECTOR_ID);
    assert_eq!(notice.entity.as_str(), "product");
    assert_eq!(notice.occurred_at, Utc.timestamp_opt(VECTOR_TIMESTAMP, 0).unwrap());
}

#[tokio::test]
async fn wrong_signature_is_401_and_queues_nothing() {
    let queue = queue();
    let receiver = receiver(queue.clone(), Some(VECTOR_TIMESTAMP + 4));
    let body = fixture("bigcommerce-v3.body");
    let wrong = "v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    assert_eq!(post(&receiver, &body, VECTOR_ID, VECTOR_TIMESTAMP, wrong).await, 401);
    assert!(queue.is_empty());
}

#[tokio::test]
async fn stale_timestamp_is_401() {
    let queue = queue();
    let receiver = receiver(queue.clone(), None);
    let body = fixture("bigcommerce-v3.body");
    let status = post(&receiver, &body, VECTOR_ID, VECTOR_TIMESTAMP, VECTOR_SIGNATURE).await;
    assert_eq!(status, 401);
    assert!(queue.is_empty());
}

#[tokio::test]
async fn sku_inventory_queues_parent_product_notice() {
    let queue = queue();
    let receiver = receiver(queue.clone(), Some(VECTOR_TIMESTAMP));
    let status = post(
        &receiver,
        SKU_INVENTORY.as_bytes(),
        "msg_sku_1",
        VECTOR_TIMESTAMP,
        &sign(SKU_INVENTORY, "msg_sku_1"),
    )
    .await;
    assert_eq!(status, 200);
    let notices = queued_notices(&queue).await;
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].1.resource, "catalog/products/206");
    assert_eq!(notices[0].1.event_id, "msg_sku_1");
}

#[tokio::test]
async fn two_sku_events_of_one_product_share_resource() {
    let queue = queue();
    let receiver = receiver(queue.clone(), Some(VECTOR_TIMESTAMP));
    let other_sku = SKU_INVENTORY.replace(r#""id":461"#, r#""id":462"#);
    for (id, body) in [("msg_sku_1", SKU_INVENTORY.to_owned()), ("msg_sku_2", other_sku)] {
        let status = post(&receiver, body.as_bytes(), id, VECTOR_TIMESTAMP, &sign(&body, id)).await;
        assert_eq!(status, 200, "{id}");
    }
    let notices = queued_notices(&queue).await;
    assert_eq!(notices.len(), 2);
    let (first_group, first) = &notices[0];
    let (second_group, second) = &notices[1];
    assert_eq!(first.resource, "catalog/products/206");
    assert_eq!(second.resource, "catalog/products/206");
    assert_eq!(first_group, second_group, "one resource is one message group");
    assert_ne!(first.event_id, second.event_id);
}

#[tokio::test]
async fn unknown_scope_is_acknowledged_and_ignored() {
    let queue = queue();
    let receiver = receiver(queue.clone(), Some(VECTOR_TIMESTAMP));
    let body = r#"{"scope":"store/order/created","store_id":"1000001","data":{"type":"order","id":5001},"hash":"x","created_at":1700000000,"producer":"stores/abc123"}"#;
    let status = post(
        &receiver,
        body.as_bytes(),
        "msg_order_1",
        VECTOR_TIMESTAMP,
        &sign(body, "msg_order_1"),
    )
    .await;
    assert!((200..300).contains(&status), "{status}");
    assert!(queue.is_empty());
}

#[tokio::test]
async fn malformed_body_is_400() {
    let queue = queue();
    let receiver = receiver(queue.clone(), Some(VECTOR_TIMESTAMP));
    let body = r#"{"scope":"store/product/updated","data":"#;
    let status = post(
        &receiver,
        body.as_bytes(),
        "msg_bad_1",
        VECTOR_TIMESTAMP,
        &sign(body, "msg_bad_1"),
    )
    .await;
    assert_eq!(status, 400);
    assert!(queue.is_empty());
}
