//! NetSuite outbox deliveries through the real receiver handler: signature, freshness, malformed
//! bodies and skipped record types.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use fieldsync_core::formats::netsuite::NetSuiteFormat;
use fieldsync_core::ports::Queue;
use fieldsync_core::signature::hmac_sha256_base64;
use fieldsync_core::{Secret, SystemId, Wire};
use fieldsync_embedded::{EmbeddedQueue, QueueSettings};
use fieldsync_lambda::metrics::MetricsSink;
use fieldsync_lambda::receiver::{handle, Receiver};
use fieldsync_pipeline::message::Queued;
use fieldsync_tests::status_and_body;

const SECRET: &str = "netsuite-receiver-fake-secret";

const BATCH: &str = r#"{"account":"TSTDRV1234567","deliveryId":"dlv-1","events":[{"eventId":"ns-1","recordType":"inventoryitem","id":"501","externalId":"MUG-RED","type":"edit","occurredAt":"2025-06-01T10:00:00Z","fields":{"itemid":"MUG-RED","displayname":"Red mug","baseprice":12.50,"quantityavailable":40,"pagetitle":"Red mug | Shop","metadescription":"A red mug."}},{"eventId":"ns-2","recordType":"inventoryitem","id":"502","type":"create","occurredAt":"2025-06-01T10:00:01Z","fields":{"itemid":"MUG-BLUE","baseprice":"9.90"}}]}"#;

fn receiver(queue: Arc<EmbeddedQueue>) -> Receiver {
    Receiver {
        integration: "demo".into(),
        format: Arc::new(NetSuiteFormat::new(
            "demo",
            SystemId::new("erp"),
            vec![Secret::new(SECRET)],
        )),
        queue,
        metrics: MetricsSink::Off,
    }
}

fn signature(secret: &str, timestamp: i64, body: &str) -> String {
    let stamp = timestamp.to_string();
    hmac_sha256_base64(secret.as_bytes(), &[stamp.as_bytes(), b".", body.as_bytes()])
}

/// Builds the API Gateway HTTP API event of a signed POST to the ERP route.
fn request(body: &str, timestamp: i64, secret: &str) -> lambda_http::Request {
    let event = serde_json::json!({
        "version": "2.0",
        "routeKey": "POST /webhooks/{integration}/erp",
        "rawPath": "/webhooks/demo/erp",
        "rawQueryString": "",
        "headers": {
            "content-type": "application/json",
            "x-fieldsync-netsuite-timestamp": timestamp.to_string(),
            "x-fieldsync-netsuite-signature": format!("v1={}", signature(secret, timestamp, body)),
        },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api-id",
            "domainName": "example.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "example",
            "http": { "method": "POST", "path": "/webhooks/demo/erp", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "SuiteScript-Call" },
            "requestId": "request-1",
            "routeKey": "POST /webhooks/{integration}/erp",
            "stage": "$default",
            "time": "01/Jun/2025:10:00:02 +0000",
            "timeEpoch": 1748772002000_u64
        },
        "pathParameters": { "integration": "demo" },
        "body": body,
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn queue() -> Arc<EmbeddedQueue> {
    Arc::new(EmbeddedQueue::new(QueueSettings::default()))
}

#[tokio::test]
async fn valid_delivery_queues_one_change_per_event() {
    let queue = queue();
    let response = handle(&receiver(queue.clone()), request(BATCH, now(), SECRET))
        .await
        .unwrap();
    assert_eq!(status_and_body(&response).0, 200);

    let messages = queue.receive(10).await.unwrap();
    assert_eq!(messages.len(), 2);
    let mut changes: Vec<_> = messages
        .iter()
        .map(|message| match serde_json::from_str::<Queued>(&message.body).unwrap() {
            Queued::Change(change) => change,
            Queued::Notice { .. } => panic!("expected a change"),
        })
        .collect();
    changes.sort_by(|a, b| a.event_id.cmp(&b.event_id));
    assert_eq!(changes[0].record.to_string(), "demo/product/MUG-RED");
    assert_eq!(changes[0].external_id.as_deref(), Some("501"));
    assert_eq!(
        changes[0].fields[&fieldsync_core::FieldName::new("price")],
        Wire::Number("12.50".into())
    );
    assert_eq!(changes[1].record.to_string(), "demo/product/MUG-BLUE");
    assert_eq!(changes[1].event_id, "ns-2");
}

#[tokio::test]
async fn wrong_signature_gets_401() {
    let queue = queue();
    let response = handle(&receiver(queue.clone()), request(BATCH, now(), "wrong-fake-secret"))
        .await
        .unwrap();
    assert_eq!(status_and_body(&response).0, 401);
    assert!(queue.is_empty());
}

#[tokio::test]
async fn stale_timestamp_gets_401() {
    let queue = queue();
    let response = handle(&receiver(queue.clone()), request(BATCH, now() - 301, SECRET))
        .await
        .unwrap();
    assert_eq!(status_and_body(&response).0, 401);
    assert!(queue.is_empty());
}

#[tokio::test]
async fn malformed_body_gets_400() {
    let queue = queue();
    for body in ["{\"events\": ", r#"{"account":"TSTDRV1234567"}"#] {
        let response = handle(&receiver(queue.clone()), request(body, now(), SECRET))
            .await
            .unwrap();
        assert_eq!(status_and_body(&response).0, 400, "{body}");
    }
    assert!(queue.is_empty());
}

#[tokio::test]
async fn unknown_record_type_is_acknowledged_and_ignored() {
    let queue = queue();
    let body = r#"{"account":"TSTDRV1234567","deliveryId":"dlv-2","events":[{"eventId":"ns-9","recordType":"customer","id":"77","type":"edit","occurredAt":"2025-06-01T10:00:00Z","fields":{"entityid":"C-77"}}]}"#;
    let response = handle(&receiver(queue.clone()), request(body, now(), SECRET))
        .await
        .unwrap();
    let (status, _) = status_and_body(&response);
    assert!((200..300).contains(&status), "status {status}");
    assert!(queue.is_empty());
}
