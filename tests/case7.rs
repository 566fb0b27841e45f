//! Thin webhooks read back through the platform's API: BigCommerce SKU inventory events and a
//! WooCommerce variable product that lists only its variation ids. The webhooks are the exact
//! signed bytes the sandboxes send. The format turns them into notices, and the reconciler reads
//! each parent product once per batch through the connector. The decision log then shows which
//! fields actually changed.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use fieldsync_connectors::bigcommerce::{BigCommerceClient, BigCommerceConfig};
use fieldsync_connectors::woocommerce::{WooCommerceClient, WooCommerceConfig};
use fieldsync_core::formats::bigcommerce::BigCommerceFormat;
use fieldsync_core::formats::woocommerce::WooCommerceFormat;
use fieldsync_core::ingest::accept;
use fieldsync_core::ports::{RecordStore, SystemClient};
use fieldsync_core::{
    Decision, InboundRequest, Normalized, Outcome, RecordKey, Rules, Secret, SystemId, WebhookFormat,
};
use fieldsync_embedded::EmbeddedStore;
use fieldsync_pipeline::{message, BatchItem, Reconciler};
use fieldsync_sandbox::bigcommerce::{BigCommerceSandbox, NewProduct, NewVariant};
use fieldsync_sandbox::woocommerce::{ProductEdit, WooCommerceSandbox};
use fieldsync_sandbox::{Delivery, RetryPolicy};

/// The storefront owns every field here, so reading a product writes nowhere and the decision
/// log alone shows what changed.
const RULES: &str = r#"
integration = "demo"
[systems.erp]
role = "erp"
[systems.storefront]
role = "storefront"
[entities.product]
key = "sku"
[entities.product.fields.name]
type = "text"
owner = "storefront"
[entities.product.fields.price]
type = "money"
scale = 2
owner = "storefront"
[entities.product.fields.inventory]
type = "quantity"
owner = "storefront"
"#;

/// Delivers once to a closed port: the sandbox still records the exact bytes it signed.
fn record_only() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 1,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(10),
        attempt_timeout: Duration::from_millis(500),
    }
}

/// Verifies and normalizes recorded deliveries into queue messages, as the receiver does.
fn queued(format: &dyn WebhookFormat, deliveries: &[Delivery]) -> Vec<BatchItem> {
    let mut items = Vec::new();
    for delivery in deliveries {
        let request = InboundRequest {
            headers: delivery
                .headers
                .iter()
                .map(|(name, value)| (name.to_ascii_lowercase(), value.clone()))
                .collect(),
            query: BTreeMap::new(),
            body: delivery.body.clone(),
            received_at: Utc::now(),
        };
        let Normalized::Notices(notices) = accept(format, &request).unwrap() else {
            panic!("expected thin notices from {}", delivery.body_text());
        };
        for notice in notices {
            let outgoing = message::encode_notice(&notice).unwrap();
            items.push(BatchItem {
                message_id: format!("m-{}", items.len()),
                body: outgoing.body,
            });
        }
    }
    items
}

fn reconciler(storefront: Arc<dyn SystemClient>) -> (Reconciler, Arc<EmbeddedStore>) {
    let rules = Arc::new(Rules::parse("rules.toml", RULES).unwrap());
    let store = Arc::new(EmbeddedStore::new());
    let systems = BTreeMap::from([(SystemId::new("storefront"), storefront)]);
    (Reconciler::new(rules, store.clone(), systems), store)
}

async fn decisions(store: &EmbeddedStore, sku: &str) -> Vec<Decision> {
    store.decisions(&RecordKey::new("demo", "product", sku)).await.unwrap()
}

fn last_outcome(decisions: &[Decision], field: &str) -> Outcome {
    decisions
        .iter()
        .rev()
        .find(|decision| decision.field.as_str() == field)
        .unwrap()
        .outcome
}

#[tokio::test]
async fn bigcommerce_sku_events_read_parent_once() {
    let shop = BigCommerceSandbox::start(fieldsync_sandbox::bigcommerce::BigCommerceConfig {
        retry: record_only(),
        ..Default::default()
    })
    .await
    .unwrap();
    shop.set_webhook_url(Some("http://127.0.0.1:9/hooks".to_owned()));
    let config = fieldsync_sandbox::bigcommerce::BigCommerceConfig::default();
    let format = BigCommerceFormat::new(
        "demo",
        SystemId::new("storefront"),
        vec![Secret::new(&config.client_secret)],
    );
    let client = BigCommerceClient::new(BigCommerceConfig::new(
        "storefront",
        "demo",
        shop.base_url(),
        Secret::new(&config.access_token),
    ))
    .unwrap();
    let (reconciler, store) = reconciler(Arc::new(client));

    shop.create_product_as_merchant(NewProduct {
        name: "Mug".to_owned(),
        sku: "MUG".to_owned(),
        price: "12.50".parse().unwrap(),
        variants: vec![
            NewVariant {
                sku: "MUG-RED".to_owned(),
                price: None,
                inventory: 10,
            },
            NewVariant {
                sku: "MUG-BLUE".to_owned(),
                price: None,
                inventory: 20,
            },
        ],
        ..NewProduct::default()
    })
    .unwrap();
    shop.adjust_inventory_as_order("MUG-RED", -1).unwrap();
    shop.adjust_inventory_as_order("MUG-BLUE", -2).unwrap();
    shop.wait_for_deliveries_idle().await;

    // Three events of one product (its creation and two SKU stock changes) are one read.
    let batch = queued(&format, &shop.deliveries());
    assert_eq!(batch.len(), 3);
    let requests_before = shop.api_request_count();
    let report = reconciler.process_batch(&batch).await;
    assert!(report.failed.is_empty(), "{report:?}");
    assert_eq!(
        shop.api_request_count() - requests_before,
        1,
        "one GET for three events"
    );
    // The shared read gives every notice the same values, so only the first applies them.
    for sku in ["MUG-RED", "MUG-BLUE"] {
        let applied = decisions(&store, sku)
            .await
            .iter()
            .filter(|decision| decision.field.as_str() == "inventory" && decision.outcome == Outcome::Apply)
            .count();
        assert_eq!(applied, 1, "{sku}");
    }
    let red_record = store
        .load(&RecordKey::new("demo", "product", "MUG-RED"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(red_record.value("inventory").unwrap().to_string(), "9");

    // A later sale of one SKU changes that SKU's stock alone; the other fields are unchanged.
    let delivered = shop.deliveries().len();
    shop.adjust_inventory_as_order("MUG-BLUE", -5).unwrap();
    shop.wait_for_deliveries_idle().await;
    let batch = queued(&format, &shop.deliveries()[delivered..]);
    let report = reconciler.process_batch(&batch).await;
    assert!(report.failed.is_empty(), "{report:?}");
    let blue = decisions(&store, "MUG-BLUE").await;
    let red = decisions(&store, "MUG-RED").await;
    assert_eq!(last_outcome(&blue, "inventory"), Outcome::Apply);
    assert_eq!(last_outcome(&blue, "price"), Outcome::NoChange);
    assert_eq!(last_outcome(&red, "inventory"), Outcome::NoChange);
    let blue_record = store
        .load(&RecordKey::new("demo", "product", "MUG-BLUE"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(blue_record.value("inventory").unwrap().to_string(), "13");
    shop.shutdown().await;
}

#[tokio::test]
async fn woocommerce_variable_product_reads_variations() {
    let config = fieldsync_sandbox::woocommerce::WooCommerceConfig {
        retry: record_only(),
        ..Default::default()
    };
    let shop = WooCommerceSandbox::start(config.clone()).await.unwrap();
    shop.set_webhook_url(Some("http://127.0.0.1:9/hooks".to_owned()));
    let format = WooCommerceFormat::new(
        "demo",
        SystemId::new("storefront"),
        vec![Secret::new(&config.webhook_secret)],
    );
    let client = WooCommerceClient::new(WooCommerceConfig::new(
        "storefront",
        "demo",
        shop.base_url(),
        Secret::new(&config.consumer_key),
        Secret::new(&config.consumer_secret),
    ))
    .unwrap();
    let (reconciler, store) = reconciler(Arc::new(client));

    let product = shop
        .create_variable_product_as_merchant("MUG", "Mug", &[("MUG-7001", "12.00"), ("MUG-7002", "12.00")])
        .unwrap();
    assert_eq!(product.variations, [7001, 7002]);
    shop.wait_for_deliveries_idle().await;
    let report = reconciler.process_batch(&queued(&format, &shop.deliveries())).await;
    assert!(report.failed.is_empty(), "{report:?}");

    // The payload of a variation's change names the variation ids only; the read finds which
    // variation changed, and only its price is applied.
    let delivered = shop.deliveries().len();
    shop.edit_variation_as_merchant(
        "MUG-7002",
        ProductEdit {
            regular_price: Some("13.50".to_owned()),
            ..ProductEdit::default()
        },
    )
    .unwrap();
    shop.wait_for_deliveries_idle().await;
    let update = &shop.deliveries()[delivered..];
    assert!(
        update[0].body_text().contains("\"variations\":[7001,7002]"),
        "{}",
        update[0].body_text()
    );
    let report = reconciler.process_batch(&queued(&format, update)).await;
    assert!(report.failed.is_empty(), "{report:?}");

    let changed = decisions(&store, "MUG-7002").await;
    let unchanged = decisions(&store, "MUG-7001").await;
    assert_eq!(last_outcome(&changed, "price"), Outcome::Apply);
    assert_eq!(last_outcome(&unchanged, "price"), Outcome::NoChange);
    let record = store
        .load(&RecordKey::new("demo", "product", "MUG-7002"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.value("price").unwrap().to_string(), "13.50");
    shop.shutdown().await;
}
