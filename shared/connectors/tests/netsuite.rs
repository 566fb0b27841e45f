//! The NetSuite connector against the NetSuite sandbox: upserts by external id, updates, the
//! concurrency governor and the retry of concurrency rejections.

// Test helpers outside #[test] functions panic on setup failures too.
#![allow(clippy::unwrap_used)]

mod common;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use common::{header, hmac_base64, money, text, write, Receiver};
use fieldsync_connectors::netsuite::{NetSuiteClient, NetSuiteConfig};
use fieldsync_connectors::Secret;
use fieldsync_core::ports::{ConcurrencyGovernor, SystemClient, SystemError};
use fieldsync_core::WriteKind;
use fieldsync_embedded::EmbeddedGovernor;
use fieldsync_sandbox::netsuite::{self as sandbox, ItemEdit, NetSuiteHandle, NetSuiteSandbox};
use rust_decimal::Decimal;

const TOKEN: &str = "netsuite-test-fake-token";
const SECRET: &str = "netsuite-test-fake-secret";
const SANDBOX_LIMIT: u32 = 5;

async fn start(config: sandbox::NetSuiteConfig) -> NetSuiteHandle {
    NetSuiteSandbox::start(sandbox::NetSuiteConfig {
        api_token: TOKEN.to_owned(),
        webhook_secret: SECRET.to_owned(),
        concurrency_limit: SANDBOX_LIMIT,
        ..config
    })
    .await
    .unwrap()
}

fn config(netsuite: &NetSuiteHandle, governor_limit: u32) -> NetSuiteConfig {
    let mut config = NetSuiteConfig::new("erp", "demo", netsuite.base_url(), Secret::new(TOKEN));
    config.account_id = "TSTDRV1234567".to_owned();
    config.concurrency_limit = governor_limit;
    config.throttle_backoff = Duration::from_millis(20);
    config
}

fn client(config: NetSuiteConfig, governor: &Arc<EmbeddedGovernor>) -> NetSuiteClient {
    let governor: Arc<dyn ConcurrencyGovernor> = governor.clone();
    NetSuiteClient::new(config, governor).unwrap()
}

fn decimal(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

#[tokio::test]
async fn upsert_by_external_id_twice_keeps_one_item() {
    let netsuite = start(sandbox::NetSuiteConfig::default()).await;
    let receiver = Receiver::start(0).await;
    netsuite.set_webhook_url(Some(receiver.url.clone()));
    let governor = Arc::new(EmbeddedGovernor::new());
    let client = client(config(&netsuite, SANDBOX_LIMIT), &governor);

    let create = write(
        "erp",
        "product",
        "MUG-RED",
        WriteKind::Create,
        None,
        vec![("name", text("Red mug")), ("price", money("12.50"))],
    );
    let first = client.write(&create).await.unwrap();
    let second = client.write(&create).await.unwrap();

    let items = netsuite.items();
    assert_eq!(items.len(), 1);
    let item = &items[0];
    assert_eq!(item.item_id, "MUG-RED");
    assert_eq!(item.external_id.as_deref(), Some("MUG-RED"));
    assert_eq!(item.display_name.as_deref(), Some("Red mug"));
    assert_eq!(item.base_price, Some(decimal("12.50")));
    assert_eq!(first.target_id.as_deref(), Some(item.internal_id.as_str()));
    assert_eq!(second.target_id, first.target_id);
    assert_eq!(netsuite.api_write_count(), 2);

    // The integration role's own writes do not come back through the outbox.
    netsuite.wait_for_deliveries_idle().await;
    assert!(netsuite.deliveries().is_empty());
    assert_eq!(governor.held("netsuite:TSTDRV1234567"), 0);
}

#[tokio::test]
async fn patch_updates_by_internal_id_or_external_id() {
    let netsuite = start(sandbox::NetSuiteConfig::default()).await;
    let governor = Arc::new(EmbeddedGovernor::new());
    let client = client(config(&netsuite, SANDBOX_LIMIT), &governor);
    let made_in_netsuite = netsuite.upsert_item_as_user(
        "MUG-BLUE",
        ItemEdit {
            display_name: Some("Blue mug".to_owned()),
            quantity_available: Some(7),
            ..ItemEdit::default()
        },
    );

    let update = write(
        "erp",
        "product",
        "MUG-BLUE",
        WriteKind::Update,
        Some(&made_in_netsuite.internal_id),
        vec![
            ("meta_title", text("Blue mug | Shop")),
            ("meta_description", text("A blue mug & saucer.")),
            ("price", money("9.90")),
        ],
    );
    let receipt = client.write(&update).await.unwrap();
    assert_eq!(
        receipt.target_id.as_deref(),
        Some(made_in_netsuite.internal_id.as_str())
    );
    let item = netsuite.item("MUG-BLUE").unwrap();
    assert_eq!(item.page_title.as_deref(), Some("Blue mug | Shop"));
    assert_eq!(item.meta_description().as_deref(), Some("A blue mug & saucer."));
    assert_eq!(item.base_price, Some(decimal("9.90")));
    assert_eq!(item.display_name.as_deref(), Some("Blue mug"));
    assert_eq!(item.quantity_available, 7);

    let create = write(
        "erp",
        "product",
        "MUG-GREEN",
        WriteKind::Create,
        None,
        vec![("name", text("Green"))],
    );
    client.write(&create).await.unwrap();
    let by_external_id = write(
        "erp",
        "product",
        "MUG-GREEN",
        WriteKind::Update,
        None,
        vec![("name", text("Green mug"))],
    );
    client.write(&by_external_id).await.unwrap();
    assert_eq!(
        netsuite.item("MUG-GREEN").unwrap().display_name.as_deref(),
        Some("Green mug")
    );
}

#[tokio::test]
async fn update_of_missing_item_is_rejected() {
    let netsuite = start(sandbox::NetSuiteConfig::default()).await;
    let governor = Arc::new(EmbeddedGovernor::new());
    let client = client(config(&netsuite, SANDBOX_LIMIT), &governor);
    let update = write(
        "erp",
        "product",
        "MUG-NONE",
        WriteKind::Update,
        Some("999"),
        vec![("name", text("x"))],
    );
    let error = client.write(&update).await.unwrap_err();
    assert!(matches!(error, SystemError::Rejected { .. }), "{error:?}");
    assert!(error.to_string().contains("NONEXISTENT_ID"), "{error}");
}

#[tokio::test]
async fn wrong_token_stays_retryable() {
    let netsuite = start(sandbox::NetSuiteConfig::default()).await;
    let governor = Arc::new(EmbeddedGovernor::new());
    let mut config = config(&netsuite, SANDBOX_LIMIT);
    config.token = Secret::new("wrong-fake-token");
    let client = client(config, &governor);
    let create = write(
        "erp",
        "product",
        "MUG-RED",
        WriteKind::Create,
        None,
        vec![("name", text("x"))],
    );
    let error = client.write(&create).await.unwrap_err();
    assert!(matches!(error, SystemError::Unavailable { .. }), "{error:?}");
}

/// Sends `writes` creates at once, spread round-robin over `clients`, and returns the results.
async fn write_concurrently(clients: &[NetSuiteClient], writes: usize) -> Vec<Result<(), SystemError>> {
    let mut tasks = Vec::new();
    for index in 0..writes {
        let client = clients[index % clients.len()].clone();
        tasks.push(tokio::spawn(async move {
            let create = write(
                "erp",
                "product",
                &format!("SKU-{index:03}"),
                WriteKind::Create,
                None,
                vec![("name", text(&format!("Item {index}"))), ("price", money("1.05"))],
            );
            client.write(&create).await.map(|_| ())
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

#[tokio::test]
async fn governor_keeps_requests_within_the_account_limit() {
    let netsuite = start(sandbox::NetSuiteConfig::default()).await;
    let governor = Arc::new(EmbeddedGovernor::new());
    let clients: Vec<NetSuiteClient> = (0..4)
        .map(|_| client(config(&netsuite, SANDBOX_LIMIT), &governor))
        .collect();

    let results = write_concurrently(&clients, 40).await;

    for (index, result) in results.iter().enumerate() {
        assert!(result.is_ok(), "write {index} failed: {result:?}");
    }
    assert_eq!(netsuite.items().len(), 40);
    assert_eq!(netsuite.concurrency_rejections(), 0);
    let max = netsuite.max_concurrent_seen();
    println!("max concurrent requests seen by the sandbox: {max} (limit {SANDBOX_LIMIT})");
    assert!(max <= u64::from(SANDBOX_LIMIT), "max {max}");
    assert!(
        max >= 2,
        "the writes never overlapped, so the test proves nothing: max {max}"
    );
    let throttled: u64 = clients.iter().map(NetSuiteClient::throttled_responses).sum();
    assert_eq!(throttled, 0);
    assert_eq!(governor.held("netsuite:TSTDRV1234567"), 0);
}

#[tokio::test]
async fn concurrency_rejections_are_retried_until_every_write_lands() {
    let netsuite = start(sandbox::NetSuiteConfig::default()).await;
    let governor = Arc::new(EmbeddedGovernor::new());
    let clients: Vec<NetSuiteClient> = (0..3)
        .map(|_| {
            let mut config = config(&netsuite, 3 * SANDBOX_LIMIT);
            config.max_throttle_retries = 20;
            client(config, &governor)
        })
        .collect();

    let results = write_concurrently(&clients, 30).await;

    for (index, result) in results.iter().enumerate() {
        assert!(result.is_ok(), "write {index} failed: {result:?}");
    }
    assert_eq!(netsuite.items().len(), 30);
    let rejections = netsuite.concurrency_rejections();
    assert!(
        rejections > 0,
        "the governor limit above the account's never caused a 429"
    );
    let throttled: u64 = clients.iter().map(NetSuiteClient::throttled_responses).sum();
    assert_eq!(throttled, rejections);
}

#[tokio::test]
async fn concurrency_rejections_end_as_rate_limited() {
    let netsuite = start(sandbox::NetSuiteConfig {
        request_latency: Duration::from_secs(1),
        ..sandbox::NetSuiteConfig::default()
    })
    .await;
    let governor = Arc::new(EmbeddedGovernor::new());
    let mut config = config(&netsuite, 2 * SANDBOX_LIMIT);
    config.max_throttle_retries = 0;
    let client = client(config, &governor);

    let results = write_concurrently(std::slice::from_ref(&client), 2 * SANDBOX_LIMIT as usize).await;

    let limited = results
        .iter()
        .filter(|result| matches!(result, Err(SystemError::RateLimited { .. })))
        .count();
    assert_eq!(limited, SANDBOX_LIMIT as usize);
    assert_eq!(
        results.iter().filter(|result| result.is_ok()).count(),
        SANDBOX_LIMIT as usize
    );
}

#[tokio::test]
async fn user_edit_sends_signed_outbox_delivery() {
    let netsuite = start(sandbox::NetSuiteConfig::default()).await;
    let receiver = Receiver::start(1).await;
    netsuite.set_webhook_url(Some(receiver.url.clone()));

    let item = netsuite.upsert_item_as_user(
        "MUG-RED",
        ItemEdit {
            display_name: Some("Red mug".to_owned()),
            base_price: Some(decimal("12.50")),
            quantity_available: Some(40),
            page_title: Some("Red mug | Shop".to_owned()),
            meta_description: Some("A red mug.".to_owned()),
        },
    );
    netsuite.wait_for_deliveries_idle().await;

    let received = receiver.received();
    assert_eq!(received.len(), 2, "the first attempt fails and is retried");
    assert_eq!(received[0].body, received[1].body);
    let delivery = &received[1];
    let timestamp = header(&delivery.headers, "x-fieldsync-netsuite-timestamp");
    let signature = header(&delivery.headers, "x-fieldsync-netsuite-signature");
    let expected = hmac_base64(SECRET, &[timestamp.as_bytes(), b".", &delivery.body]);
    assert_eq!(signature, format!("v1={expected}"));

    let body: serde_json::Value = serde_json::from_slice(&delivery.body).unwrap();
    let event = &body["events"][0];
    assert_eq!(body["account"], "TSTDRV1234567");
    assert_eq!(event["recordType"], "inventoryitem");
    assert_eq!(event["type"], "create");
    assert_eq!(event["id"], item.internal_id.as_str());
    assert_eq!(event["fields"]["itemid"], "MUG-RED");
    assert_eq!(event["fields"]["metadescription"], "A red mug.");
    let text = String::from_utf8(delivery.body.clone()).unwrap();
    assert!(text.contains(r#""baseprice":12.5"#), "{text}");
}

#[tokio::test]
async fn rest_write_by_another_role_sends_outbox_delivery() {
    let netsuite = start(sandbox::NetSuiteConfig {
        token_role: "3".to_owned(),
        ..sandbox::NetSuiteConfig::default()
    })
    .await;
    let receiver = Receiver::start(0).await;
    netsuite.set_webhook_url(Some(receiver.url.clone()));
    let governor = Arc::new(EmbeddedGovernor::new());
    let client = client(config(&netsuite, SANDBOX_LIMIT), &governor);

    let create = write(
        "erp",
        "product",
        "MUG-RED",
        WriteKind::Create,
        None,
        vec![("name", text("Red mug"))],
    );
    client.write(&create).await.unwrap();
    netsuite.wait_for_deliveries_idle().await;

    assert_eq!(receiver.received().len(), 1);
}
