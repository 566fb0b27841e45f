//! Business Central notifications through the real receiver handler: the handshake, clientState
//! checks with rotation, and never a 4xx response.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use fieldsync_core::formats::business_central::BusinessCentralFormat;
use fieldsync_core::ports::Queue;
use fieldsync_core::{Secret, SystemId};
use fieldsync_embedded::{EmbeddedQueue, QueueSettings};
use fieldsync_lambda::metrics::MetricsSink;
use fieldsync_lambda::receiver::{handle, Receiver};
use fieldsync_pipeline::message::{decode_queued, Queued};
use fieldsync_tests::status_and_body;

const NOTIFICATION: &str = r#"{"value":[{"subscriptionId":"sub-demo-1","clientState":"cs-OLD","expirationDateTime":"2025-06-04T08:00:00Z","resource":"api/v2.0/companies(11111111-2222-3333-4444-555555555555)/items(aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee)","changeType":"updated","lastModifiedDateTime":"2025-06-01T08:00:31.120Z"}]}"#;

fn receiver(queue: Arc<EmbeddedQueue>, client_states: &[&str]) -> Receiver {
    let states = client_states.iter().map(|state| Secret::new(*state)).collect();
    Receiver {
        integration: "demo".into(),
        format: Arc::new(BusinessCentralFormat::new("demo", SystemId::new("erp"), states)),
        queue,
        metrics: MetricsSink::Off,
    }
}

/// Builds the API Gateway HTTP API event of a POST to the ERP route, with the raw query string
/// and the decoded parameters API Gateway puts beside it.
fn request(body: &str, raw_query: &str, parameters: &[(&str, &str)]) -> lambda_http::Request {
    let parameters: serde_json::Map<String, serde_json::Value> = parameters
        .iter()
        .map(|(name, value)| ((*name).to_owned(), serde_json::Value::String((*value).to_owned())))
        .collect();
    let event = serde_json::json!({
        "version": "2.0",
        "routeKey": "POST /webhooks/{integration}/erp",
        "rawPath": "/webhooks/demo/erp",
        "rawQueryString": raw_query,
        "queryStringParameters": parameters,
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
async fn handshake_echoes_decoded_token_as_text() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let request = request(
        "",
        "validationToken=Xk2%2Bab%2F9%3D%3D",
        &[("validationToken", "Xk2+ab/9==")],
    );
    let response = handle(&receiver(queue.clone(), &["cs-NEW"]), request).await.unwrap();
    assert_eq!(status_and_body(&response), (200, "Xk2+ab/9==".to_owned()));
    assert_eq!(response.headers()["content-type"], "text/plain");
    assert!(queue.is_empty());
}

#[tokio::test]
async fn old_client_state_gets_202_and_is_dropped() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let response = handle(&receiver(queue.clone(), &["cs-NEW"]), request(NOTIFICATION, "", &[]))
        .await
        .unwrap();
    assert_eq!(status_and_body(&response).0, 202);
    assert!(queue.is_empty());
}

#[tokio::test]
async fn url_of_another_integration_gets_202_never_404() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let receiver = Receiver {
        integration: "other".into(),
        ..receiver(queue.clone(), &["cs-OLD"])
    };
    let response = handle(&receiver, request(NOTIFICATION, "", &[])).await.unwrap();
    assert_eq!(status_and_body(&response).0, 202);
    assert!(queue.is_empty());
}

#[tokio::test]
async fn malformed_notification_gets_202_never_400() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let response = handle(&receiver(queue.clone(), &["cs-NEW"]), request("{\"value\": ", "", &[]))
        .await
        .unwrap();
    assert_eq!(status_and_body(&response).0, 202);
    assert!(queue.is_empty());
}

/// Business Central's clientState is inside the JSON, so the body is parsed before anything is
/// authenticated: a deeply nested body must neither crash the function nor cost quadratic time.
#[tokio::test]
async fn deeply_nested_body_gets_202() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let body = format!("{{\"value\":{}{}}}", "[".repeat(20_000), "]".repeat(20_000));
    let response = handle(&receiver(queue.clone(), &["cs-NEW"]), request(&body, "", &[]))
        .await
        .unwrap();
    assert_eq!(status_and_body(&response).0, 202);
    assert!(queue.is_empty());
}

#[tokio::test]
async fn rotation_accepts_old_and_new_client_state() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let receiver = receiver(queue.clone(), &["cs-OLD", "cs-NEW"]);
    let response = handle(&receiver, request(NOTIFICATION, "", &[])).await.unwrap();
    assert_eq!(status_and_body(&response).0, 200);
    let with_new = NOTIFICATION.replace("cs-OLD", "cs-NEW").replace("08:00:31", "08:00:45");
    let response = handle(&receiver, request(&with_new, "", &[])).await.unwrap();
    assert_eq!(status_and_body(&response).0, 200);

    let messages = queue.receive(10).await.unwrap();
    assert_eq!(messages.len(), 2);
    assert_eq!(
        messages[0].group_id, messages[1].group_id,
        "one resource is one message group"
    );
    for message in &messages {
        let Queued::Notice { notice } = decode_queued(&message.body).unwrap() else {
            panic!("expected a notice");
        };
        assert_eq!(notice.entity.as_str(), "product");
        assert!(notice
            .resource
            .ends_with("/items(aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee)"));
    }
}

/// Plays Business Central with a request budget far below its real one, so reading what its
/// notifications name meets 429s. fieldsync retries after `Retry-After` and loses no change.
#[tokio::test]
async fn rate_limited_reads_back_off_and_lose_nothing() {
    use fieldsync_local::{LocalOptions, LocalStack};
    use fieldsync_sandbox::business_central::{BusinessCentralConfig, ItemEdit, RateLimitConfig};

    let rules_path = format!(
        "{}/../examples/rules/shopify-businesscentral.toml",
        env!("CARGO_MANIFEST_DIR")
    );
    let rules = fieldsync_core::Rules::parse(&rules_path, &std::fs::read_to_string(&rules_path).unwrap()).unwrap();
    let mut options = LocalOptions::new(rules);
    // A large receive count keeps throttled messages out of the dead-letter queue, as SQS's
    // redrive policy of 5 receives does at a 180 s visibility timeout.
    options.queue.max_receive_count = 50;
    // The burst covers creating the three subscriptions (a list and a create each) at start.
    options.business_central = Some(BusinessCentralConfig {
        rate_limit: RateLimitConfig {
            burst_requests: 8,
            refill_requests_per_sec: 4.0,
        },
        ..BusinessCentralConfig::default()
    });
    let stack = LocalStack::start(options).await.unwrap();
    let bc = stack.business_central.as_ref().unwrap();

    let skus: Vec<String> = (1..=12).map(|n| format!("CUP-{n:02}")).collect();
    for (n, sku) in skus.iter().enumerate() {
        bc.upsert_item_as_user(
            sku,
            ItemEdit {
                display_name: Some(format!("Cup {n}")),
                unit_price: Some(rust_decimal::Decimal::new(1000 + n as i64, 2)),
                inventory: Some(rust_decimal::Decimal::from(n as i64)),
                ..ItemEdit::default()
            },
        );
    }
    stack.settle(std::time::Duration::from_secs(60)).await.unwrap();

    assert!(bc.throttled_count() > 0, "the budget was never exceeded");
    for (n, sku) in skus.iter().enumerate() {
        let product = stack.storefront.product_by_sku(sku);
        let price = product
            .as_ref()
            .and_then(|product| product.variants.iter().find(|variant| &variant.sku == sku))
            .map(|variant| variant.price.to_string());
        assert_eq!(price, Some(format!("{}.{:02}", 10, n)), "{sku}");
    }
    assert_eq!(stack.dead_letters().await, 0);
    println!(
        "business central rate limit: {} requests, {} answered 429, 12 of 12 items synced",
        bc.api_request_count(),
        bc.throttled_count()
    );
    stack.shutdown().await;
}
