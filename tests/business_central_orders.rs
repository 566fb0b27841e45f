//! Business Central notifications of customers and sales orders through the real receiver
//! handler: each becomes a queued notice of the `customer` or `order` entity.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use fieldsync_core::formats::business_central::BusinessCentralFormat;
use fieldsync_core::ports::Queue;
use fieldsync_core::{NoticeKind, Secret, SystemId};
use fieldsync_embedded::{EmbeddedQueue, QueueSettings};
use fieldsync_lambda::metrics::MetricsSink;
use fieldsync_lambda::receiver::{handle, Receiver};
use fieldsync_pipeline::message::{decode_queued, Queued};
use fieldsync_tests::status_and_body;

const COMPANY: &str = "11111111-2222-3333-4444-555555555555";

fn receiver(queue: Arc<EmbeddedQueue>) -> Receiver {
    Receiver {
        integration: "demo".into(),
        format: Arc::new(BusinessCentralFormat::new(
            "demo",
            SystemId::new("erp"),
            vec![Secret::new("cs-orders")],
        )),
        queue,
        metrics: MetricsSink::Off,
    }
}

/// Builds one notification entry in the shape Business Central posts.
fn entry(subscription: &str, resource: &str, change_type: &str, time: &str) -> serde_json::Value {
    serde_json::json!({
        "subscriptionId": subscription,
        "clientState": "cs-orders",
        "expirationDateTime": "2025-06-04T08:00:00Z",
        "resource": resource,
        "changeType": change_type,
        "lastModifiedDateTime": time,
    })
}

/// Builds the API Gateway HTTP API event of a POST to the ERP route.
fn request(body: &str) -> lambda_http::Request {
    let event = serde_json::json!({
        "version": "2.0",
        "routeKey": "POST /webhooks/{integration}/erp",
        "rawPath": "/webhooks/demo/erp",
        "rawQueryString": "",
        "headers": { "content-type": "application/json" },
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api-id",
            "domainName": "example.execute-api.us-east-1.amazonaws.com",
            "domainPrefix": "example",
            "http": { "method": "POST", "path": "/webhooks/demo/erp", "protocol": "HTTP/1.1", "sourceIp": "192.0.2.1", "userAgent": "BusinessCentral" },
            "requestId": "request-1",
            "routeKey": "POST /webhooks/{integration}/erp",
            "stage": "$default",
            "time": "01/Jun/2025:08:00:31 +0000",
            "timeEpoch": 1748764831000_u64
        },
        "pathParameters": { "integration": "demo" },
        "body": body,
        "isBase64Encoded": false
    });
    lambda_http::request::from_str(&event.to_string()).unwrap()
}

#[tokio::test]
async fn sales_order_notification_queues_order_notice() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let resource = format!("api/v2.0/companies({COMPANY})/salesOrders(0b7f4a7e-1c2d-4e5f-8a9b-0c1d2e3f4a5b)");
    let body = serde_json::json!({
        "value": [entry("sub-orders", &resource, "created", "2025-06-01T08:00:31.120Z")]
    });

    let response = handle(&receiver(queue.clone()), request(&body.to_string()))
        .await
        .unwrap();

    assert_eq!(status_and_body(&response).0, 200);
    let messages = queue.receive(10).await.unwrap();
    assert_eq!(messages.len(), 1);
    let Queued::Notice { notice } = decode_queued(&messages[0].body).unwrap() else {
        panic!("expected a notice");
    };
    assert_eq!(notice.entity.as_str(), "order");
    assert_eq!(notice.kind, NoticeKind::Created);
    assert_eq!(notice.resource, resource);
    assert_eq!(notice.source, SystemId::new("erp"));
    assert_eq!(notice.occurred_at.to_rfc3339(), "2025-06-01T08:00:31.120+00:00");
}

#[tokio::test]
async fn mixed_batch_queues_customer_and_order_only() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let body = serde_json::json!({
        "value": [
            entry(
                "sub-customers",
                &format!("api/v2.0/companies({COMPANY})/customers(c0ffee00-0000-4000-8000-000000000001)"),
                "updated",
                "2025-06-01T08:00:30Z",
            ),
            entry(
                "sub-orders",
                &format!("/api/v2.0/companies({COMPANY})/salesOrders?$filter=lastModifiedDateTime%20gt%202025-06-01T07:59:59.999Z"),
                "collection",
                "2025-06-01T08:00:31Z",
            ),
            entry(
                "sub-vendors",
                &format!("api/v2.0/companies({COMPANY})/vendors(v1)"),
                "updated",
                "2025-06-01T08:00:32Z",
            ),
        ]
    });

    let response = handle(&receiver(queue.clone()), request(&body.to_string()))
        .await
        .unwrap();

    assert_eq!(status_and_body(&response).0, 200);
    let messages = queue.receive(10).await.unwrap();
    let mut notices: Vec<(String, NoticeKind)> = messages
        .iter()
        .map(|message| match decode_queued(&message.body).unwrap() {
            Queued::Notice { notice } => (notice.entity.as_str().to_owned(), notice.kind),
            other => panic!("expected a notice, got {other:?}"),
        })
        .collect();
    notices.sort_by(|left, right| left.0.cmp(&right.0));
    assert_eq!(
        notices,
        vec![
            ("customer".to_owned(), NoticeKind::Updated),
            ("order".to_owned(), NoticeKind::Collection),
        ]
    );
}
