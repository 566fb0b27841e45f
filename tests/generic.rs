//! The generic connector end to end: Frappe and Acumatica webhooks through the real receiver
//! handler, and the ERPNext sandbox's rate limit met by the reconciler's writes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use fieldsync_core::formats::generic::GenericFormat;
use fieldsync_core::{ConnectorFile, Secret, SystemId};
use fieldsync_embedded::{EmbeddedQueue, QueueSettings};
use fieldsync_lambda::metrics::MetricsSink;
use fieldsync_lambda::receiver::{handle, Receiver};
use fieldsync_local::{LocalOptions, LocalStack};
use fieldsync_sandbox::erpnext::{ItemEdit, RequestBudget};
use fieldsync_sandbox::storefront::ProductEdit;
use fieldsync_tests::{api_gateway_request, fixture, rules, status_and_body, SETTLE};

const FRAPPE_SIGNATURE: &str = "yOxl4a5eZ6k0VjHXsdoszQ+ZeCpPphOI80Nyg2bk/wU=";

fn connector(name: &str) -> Arc<ConnectorFile> {
    let path = format!("{}/../connectors/{name}", env!("CARGO_MANIFEST_DIR"));
    Arc::new(ConnectorFile::parse(&path, &std::fs::read_to_string(&path).unwrap()).unwrap())
}

fn generic_receiver(queue: Arc<EmbeddedQueue>, connector_name: &str, secret: &str) -> Receiver {
    let format = GenericFormat {
        integration: "demo".into(),
        source: SystemId::new("erp"),
        secrets: vec![Secret::new(secret)],
        connector: connector(connector_name),
    };
    Receiver {
        integration: "demo".into(),
        format: Arc::new(format),
        queue,
        metrics: MetricsSink::Off,
    }
}

#[tokio::test]
async fn frappe_vector_is_accepted_once() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let receiver = generic_receiver(queue.clone(), "erpnext.toml", "frappe_example_secret");
    let body = fixture("frappe-v4.body");
    let headers = [
        ("content-type", "application/json"),
        ("x-frappe-webhook-signature", FRAPPE_SIGNATURE),
    ];

    let response = handle(&receiver, api_gateway_request(&body, &headers, false))
        .await
        .unwrap();
    assert_eq!(status_and_body(&response), (200, r#"{"accepted":1}"#.to_owned()));
    assert_eq!(queue.len(), 1);

    // Frappe retries with the same body, which the queue's deduplication drops.
    let again = handle(&receiver, api_gateway_request(&body, &headers, true))
        .await
        .unwrap();
    assert_eq!(status_and_body(&again).0, 200);
    assert_eq!(queue.len(), 1);
}

#[tokio::test]
async fn frappe_vector_reserialized_body_gets_401() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let receiver = generic_receiver(queue.clone(), "erpnext.toml", "frappe_example_secret");
    let body = fixture("frappe-v4.body");
    let compact = serde_json::to_vec(&serde_json::from_slice::<serde_json::Value>(&body).unwrap()).unwrap();
    assert_ne!(compact, body);

    let response = handle(
        &receiver,
        api_gateway_request(&compact, &[("x-frappe-webhook-signature", FRAPPE_SIGNATURE)], false),
    )
    .await
    .unwrap();
    assert_eq!(status_and_body(&response).0, 401);
    assert!(queue.is_empty());
}

#[tokio::test]
async fn frappe_vector_wrong_secret_gets_401() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let receiver = generic_receiver(queue.clone(), "erpnext.toml", "not_the_frappe_secret");
    let body = fixture("frappe-v4.body");

    let response = handle(
        &receiver,
        api_gateway_request(&body, &[("x-frappe-webhook-signature", FRAPPE_SIGNATURE)], false),
    )
    .await
    .unwrap();
    assert_eq!(status_and_body(&response).0, 401);
    assert!(queue.is_empty());
}

#[tokio::test]
async fn acumatica_pair_enqueues_inserted_row() {
    let queue = Arc::new(EmbeddedQueue::new(QueueSettings::default()));
    let receiver = generic_receiver(queue.clone(), "acumatica.toml", "acu_local_token");
    let path = format!(
        "{}/fixtures/acumatica/stock-item-changed.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let body = std::fs::read(path).unwrap();

    let response = handle(
        &receiver,
        api_gateway_request(&body, &[("x-fieldsync-token", "acu_local_token")], false),
    )
    .await
    .unwrap();
    assert_eq!(status_and_body(&response), (200, r#"{"accepted":1}"#.to_owned()));

    let unsigned = handle(&receiver, api_gateway_request(&body, &[], false)).await.unwrap();
    assert_eq!(status_and_body(&unsigned).0, 401);
    assert_eq!(queue.len(), 1);
}

/// Marketing edits the meta description of many products at once; each flows back to the ERP,
/// whose budget of 2 requests per second rejects some writes with 429 first. The client waits out
/// `Retry-After` and every description arrives, with nothing in the dead-letter queue.
#[tokio::test]
async fn erpnext_rate_limit_backs_off_and_loses_nothing() {
    const ITEMS: usize = 8;
    let mut options = LocalOptions::new(rules());
    options.erp_connector = Some(connector("erpnext.toml"));
    options.erpnext.budget = RequestBudget {
        requests: 2,
        window: Duration::from_secs(1),
    };
    let stack = LocalStack::start(options).await.unwrap();
    let erpnext = stack.erpnext.as_ref().unwrap();
    let skus: Vec<String> = (1..=ITEMS).map(|index| format!("MUG-{index:02}")).collect();

    for sku in &skus {
        erpnext.upsert_item_as_user(
            sku,
            ItemEdit {
                item_name: Some(format!("Mug {sku}")),
                standard_rate: Some("9.50".parse().unwrap()),
                ..ItemEdit::default()
            },
        );
    }
    stack.settle(SETTLE).await.unwrap();
    for sku in &skus {
        assert!(
            stack.storefront.product_by_sku(sku).is_some(),
            "{sku} not on the storefront"
        );
    }

    for sku in &skus {
        stack
            .storefront
            .edit_product_as_user(
                sku,
                ProductEdit {
                    seo_description: Some(format!("About {sku}")),
                    ..ProductEdit::default()
                },
            )
            .unwrap();
    }
    stack.settle(Duration::from_secs(60)).await.unwrap();

    for sku in &skus {
        let item = erpnext.item(sku).unwrap();
        assert_eq!(
            item.custom_meta_description.as_deref(),
            Some(format!("About {sku}").as_str()),
            "{sku}"
        );
    }
    let rate_limited = erpnext.rate_limited_count();
    assert!(rate_limited > 0, "the budget was never exceeded");
    assert_eq!(erpnext.api_write_count(), ITEMS as u64);
    assert_eq!(stack.dead_letters().await, 0);
    println!("{ITEMS} writes, {rate_limited} answered 429 first");
    stack.shutdown().await;
}
