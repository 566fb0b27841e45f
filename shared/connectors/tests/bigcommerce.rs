//! The BigCommerce connector against the BigCommerce sandbox.

// Test helpers outside #[test] functions panic on setup failures too.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use common::{money, text, write, Receiver};
use fieldsync_connectors::bigcommerce::{BigCommerceClient, BigCommerceConfig, InventoryMode};
use fieldsync_connectors::Secret;
use fieldsync_core::formats::bigcommerce::BigCommerceFormat;
use fieldsync_core::ports::{SystemClient, SystemError};
use fieldsync_core::{
    FieldName, FieldValue, InboundRequest, Normalized, Notice, NoticeKind, OutboundWrite, SystemId, WebhookFormat,
    Wire, WriteKind,
};
use fieldsync_sandbox::bigcommerce::{
    self as sandbox, BigCommerceHandle, BigCommerceSandbox, NewProduct, NewVariant, ProductEdit, RateLimit,
};

const TOKEN: &str = "bc_test_fake_token";
const CLIENT_SECRET: &str = "bc_test_fake_client_secret";

async fn store(rate_limit: RateLimit) -> BigCommerceHandle {
    BigCommerceSandbox::start(sandbox::BigCommerceConfig {
        access_token: TOKEN.to_owned(),
        client_secret: CLIENT_SECRET.to_owned(),
        rate_limit,
        ..sandbox::BigCommerceConfig::default()
    })
    .await
    .unwrap()
}

fn config(store: &BigCommerceHandle) -> BigCommerceConfig {
    BigCommerceConfig::new("storefront", "demo", store.base_url(), Secret::new(TOKEN))
}

fn client(store: &BigCommerceHandle) -> BigCommerceClient {
    BigCommerceClient::new(config(store)).unwrap()
}

/// Builds a product write. Every test builds its writes here, so a new `OutboundWrite` field
/// is one change.
fn product_write(kind: WriteKind, sku: &str, fields: Vec<(&str, FieldValue)>) -> OutboundWrite {
    write("storefront", "product", sku, kind, None, fields)
}

fn tee() -> NewProduct {
    NewProduct {
        name: "Tee".to_owned(),
        sku: "TEE".to_owned(),
        price: "20.00".parse().unwrap(),
        page_title: "Tee | Shop".to_owned(),
        meta_description: "A soft tee".to_owned(),
        is_visible: true,
        images: vec!["https://cdn.example.com/tee.png".to_owned()],
        variants: vec![
            NewVariant {
                sku: "TEE-S".to_owned(),
                price: None,
                inventory: 4,
            },
            NewVariant {
                sku: "TEE-M".to_owned(),
                price: Some("22.50".parse().unwrap()),
                inventory: 6,
            },
        ],
        ..NewProduct::default()
    }
}

fn mug(inventory: i64) -> NewProduct {
    NewProduct {
        name: "Mug".to_owned(),
        sku: "MUG".to_owned(),
        price: "9.90".parse().unwrap(),
        inventory,
        ..NewProduct::default()
    }
}

fn notice(resource: String) -> Notice {
    Notice {
        integration: "demo".to_owned(),
        source: SystemId::new("storefront"),
        entity: "product".into(),
        resource,
        kind: NoticeKind::Updated,
        event_id: "msg_test".to_owned(),
        occurred_at: Utc::now(),
        received_at: Utc::now(),
    }
}

/// Verifies and normalizes a recorded delivery the way the receiver does.
fn received_notices(format: &BigCommerceFormat, received: &common::Received) -> Vec<Notice> {
    let headers = received
        .headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap().to_owned()))
        .collect();
    let request = InboundRequest {
        headers,
        query: BTreeMap::new(),
        body: received.body.clone(),
        received_at: Utc::now(),
    };
    format.verify(&request).unwrap();
    match format.normalize(&request).unwrap() {
        Normalized::Notices(notices) => notices,
        other => panic!("expected notices, got {other:?}"),
    }
}

fn field<'a>(change: &'a fieldsync_core::ChangeSet, name: &str) -> &'a Wire {
    change
        .fields
        .get(&FieldName::new(name))
        .unwrap_or_else(|| panic!("field {name} missing"))
}

#[tokio::test]
async fn events_of_one_product_coalesce_into_one_read() {
    let store = store(RateLimit::default()).await;
    let receiver = Receiver::start(0).await;
    store.set_webhook_url(Some(receiver.url.clone()));
    let created = store.create_product_as_merchant(tee()).unwrap();
    store.wait_for_deliveries_idle().await;

    let edit_name = ProductEdit {
        name: Some("Soft tee".to_owned()),
        ..ProductEdit::default()
    };
    store.edit_product_as_merchant("TEE-S", edit_name).unwrap();
    let edit_price = ProductEdit {
        price: Some("23.00".parse().unwrap()),
        ..ProductEdit::default()
    };
    store.edit_product_as_merchant("TEE-M", edit_price).unwrap();
    store.adjust_inventory_as_order("TEE-M", -2).unwrap();
    store.wait_for_deliveries_idle().await;

    let format = BigCommerceFormat::new("demo", SystemId::new("storefront"), vec![Secret::new(CLIENT_SECRET)]);
    let received = receiver.received();
    assert_eq!(
        received.len(),
        4,
        "created, product updated, sku updated, sku inventory"
    );
    let notices: Vec<Notice> = received[1..]
        .iter()
        .flat_map(|received| received_notices(&format, received))
        .collect();
    assert_eq!(notices.len(), 3);
    let resource = format!("catalog/products/{}", created.id);
    for notice in &notices {
        assert_eq!(notice.resource, resource);
        assert_eq!(notice.group_id(), notices[0].group_id());
    }
    let event_ids: std::collections::BTreeSet<&str> = notices.iter().map(|notice| notice.event_id.as_str()).collect();
    assert_eq!(event_ids.len(), 3, "every delivery has its own webhook-id");

    let before = store.api_request_count();
    let changes = client(&store).fetch(&notices[2]).await.unwrap();
    assert_eq!(store.api_request_count() - before, 1, "one GET reads every variant");
    assert_eq!(changes.len(), 2);
    let small = changes.iter().find(|change| change.record.key == "TEE-S").unwrap();
    let medium = changes.iter().find(|change| change.record.key == "TEE-M").unwrap();
    assert_eq!(field(small, "name"), &Wire::Text("Soft tee".into()));
    assert_eq!(field(small, "price"), &Wire::Number("20".into()));
    assert_eq!(field(small, "inventory"), &Wire::Number("4".into()));
    assert_eq!(field(medium, "price"), &Wire::Number("23".into()));
    assert_eq!(field(medium, "inventory"), &Wire::Number("4".into()));
    assert_eq!(field(medium, "meta_title"), &Wire::Text("Tee | Shop".into()));
    assert_eq!(field(medium, "meta_description"), &Wire::Text("A soft tee".into()));
    assert_eq!(field(medium, "handle"), &Wire::Text("tee".into()));
    assert_eq!(field(medium, "published"), &Wire::Bool(true));
    assert_eq!(
        field(medium, "images"),
        &Wire::List(vec![Wire::Text("https://cdn.example.com/tee.png".into())])
    );
    let variant_id = created.variant("TEE-M").unwrap().id;
    assert_eq!(
        medium.external_id.as_deref(),
        Some(format!("{}:{variant_id}", created.id).as_str())
    );
    store.shutdown().await;
}

#[tokio::test]
async fn deleted_and_forged_notices_send_no_request() {
    let store = store(RateLimit::default()).await;
    let client = client(&store);
    for resource in [
        "catalog/products/111/../../customers",
        "https://127.0.0.1:1/catalog/products/111",
        "orders/5001",
    ] {
        assert!(client.fetch(&notice(resource.to_owned())).await.unwrap().is_empty());
    }
    let mut deleted = notice("catalog/products/111".to_owned());
    deleted.kind = NoticeKind::Deleted;
    assert!(client.fetch(&deleted).await.unwrap().is_empty());
    assert_eq!(store.api_request_count(), 0);
    store.shutdown().await;
}

#[tokio::test]
async fn create_writes_hidden_product_with_every_field() {
    let store = store(RateLimit::default()).await;
    let write = product_write(
        WriteKind::Create,
        "MUG-RED",
        vec![
            ("name", text("Red mug")),
            ("price", money("19.99")),
            ("inventory", FieldValue::Quantity(12)),
            ("meta_title", text("Red mug | Shop")),
            ("meta_description", text("A red mug")),
            ("description", text("<p>Red & bold</p>")),
            ("handle", text("red-mug")),
            (
                "images",
                FieldValue::List(vec!["https://cdn.example.com/mug-red.png".to_owned()]),
            ),
        ],
    );
    let client = client(&store);
    let receipt = client.write(&write).await.unwrap();

    let product = store.product_by_sku("MUG-RED").unwrap();
    assert_eq!(product.name, "Red mug");
    assert_eq!(product.price.to_string(), "19.99");
    assert_eq!(product.inventory_level(), 12);
    assert_eq!(product.page_title, "Red mug | Shop");
    assert_eq!(product.meta_description, "A red mug");
    assert_eq!(product.description, "<p>Red & bold</p>");
    assert_eq!(product.custom_url, "/red-mug/");
    assert_eq!(product.images, vec!["https://cdn.example.com/mug-red.png".to_owned()]);
    assert!(!product.is_visible, "a create without published stays hidden");
    assert_eq!(product.inventory_tracking, "product");
    let base = product.base_variant_id.unwrap();
    assert_eq!(receipt.target_id, Some(format!("{}:{base}", product.id)));

    // A create retried after a lost response finds the product instead of failing on the SKU.
    let again = client.write(&write).await.unwrap();
    assert_eq!(again.target_id, receipt.target_id);
    store.shutdown().await;
}

#[tokio::test]
async fn create_published_product_is_visible() {
    let store = store(RateLimit::default()).await;
    let write = product_write(
        WriteKind::Create,
        "MUG-BLUE",
        vec![("name", text("Blue mug")), ("published", FieldValue::Bool(true))],
    );
    client(&store).write(&write).await.unwrap();
    assert!(store.product_by_sku("MUG-BLUE").unwrap().is_visible);
    store.shutdown().await;
}

#[tokio::test]
async fn update_puts_price_on_product_or_variant() {
    let store = store(RateLimit::default()).await;
    let tee = store.create_product_as_merchant(tee()).unwrap();
    store.create_product_as_merchant(mug(3)).unwrap();
    let client = client(&store);

    let variant_price = product_write(
        WriteKind::Update,
        "TEE-S",
        vec![("price", money("21.00")), ("meta_title", text("Tee, new"))],
    );
    let receipt = client.write(&variant_price).await.unwrap();
    let variant_id = tee.variant("TEE-S").unwrap().id;
    assert_eq!(receipt.target_id, Some(format!("{}:{variant_id}", tee.id)));
    let product = store.product_by_sku("TEE-S").unwrap();
    assert_eq!(product.variant("TEE-S").unwrap().price.unwrap().to_string(), "21.00");
    assert_eq!(product.price.to_string(), "20.00", "the product price stays");
    assert_eq!(product.page_title, "Tee, new");

    let base_price = product_write(
        WriteKind::Update,
        "MUG",
        vec![("price", money("11.50")), ("published", FieldValue::Bool(false))],
    );
    client.write(&base_price).await.unwrap();
    let mug = store.product_by_sku("MUG").unwrap();
    assert_eq!(mug.price.to_string(), "11.50");
    assert_eq!(
        mug.variants[0].price, None,
        "a base variant sells at the product's price"
    );
    assert!(!mug.is_visible);

    let missing = product_write(WriteKind::Update, "NOPE", vec![("price", money("1.00"))]);
    let error = client.write(&missing).await.unwrap_err();
    assert!(!error.is_retryable(), "{error}");
    store.shutdown().await;
}

#[tokio::test]
async fn absolute_inventory_sets_level() {
    let store = store(RateLimit::default()).await;
    store.create_product_as_merchant(mug(10)).unwrap();
    store.adjust_inventory_as_order("MUG", -3).unwrap();
    let mut write = product_write(WriteKind::Update, "MUG", vec![("inventory", FieldValue::Quantity(15))]);
    write
        .previous
        .insert(FieldName::new("inventory"), FieldValue::Quantity(10));
    client(&store).write(&write).await.unwrap();
    assert_eq!(store.product_by_sku("MUG").unwrap().inventory_level(), 15);
    store.shutdown().await;
}

#[tokio::test]
async fn relative_inventory_keeps_sales_made_meanwhile() {
    let store = store(RateLimit::default()).await;
    store.create_product_as_merchant(mug(10)).unwrap();
    store.adjust_inventory_as_order("MUG", -3).unwrap();
    let client = BigCommerceClient::new(BigCommerceConfig {
        inventory_mode: InventoryMode::Relative,
        ..config(&store)
    })
    .unwrap();

    let mut write = product_write(WriteKind::Update, "MUG", vec![("inventory", FieldValue::Quantity(15))]);
    write
        .previous
        .insert(FieldName::new("inventory"), FieldValue::Quantity(10));
    client.write(&write).await.unwrap();
    assert_eq!(
        store.product_by_sku("MUG").unwrap().inventory_level(),
        12,
        "+5 applied to 7 keeps the 3 sold"
    );

    let before = store.api_request_count();
    let mut unchanged = product_write(WriteKind::Update, "MUG", vec![("inventory", FieldValue::Quantity(15))]);
    unchanged
        .previous
        .insert(FieldName::new("inventory"), FieldValue::Quantity(15));
    client.write(&unchanged).await.unwrap();
    assert_eq!(
        store.api_request_count() - before,
        1,
        "only the product read, no adjustment"
    );

    let without_previous = product_write(WriteKind::Update, "MUG", vec![("inventory", FieldValue::Quantity(20))]);
    client.write(&without_previous).await.unwrap();
    assert_eq!(store.product_by_sku("MUG").unwrap().inventory_level(), 20);
    store.shutdown().await;
}

#[tokio::test]
async fn forced_429_is_rate_limited_with_reset_time() {
    let store = store(RateLimit::default()).await;
    store.create_product_as_merchant(mug(1)).unwrap();
    store.force_rate_limit(1);
    let write = product_write(WriteKind::Update, "MUG", vec![("price", money("8.00"))]);
    let error = client(&store).write(&write).await.unwrap_err();
    let SystemError::RateLimited { retry_after, .. } = error else {
        panic!("expected RateLimited, got {error}");
    };
    let retry_after = retry_after.unwrap();
    assert!(retry_after <= Duration::from_secs(30), "{retry_after:?}");
    assert_eq!(store.throttled_count(), 1);
    store.shutdown().await;
}

#[tokio::test]
async fn wrong_token_is_retryable_and_conflict_is_rejected() {
    let store = store(RateLimit::default()).await;
    store.create_product_as_merchant(mug(1)).unwrap();
    let wrong = BigCommerceClient::new(BigCommerceConfig::new(
        "storefront",
        "demo",
        store.base_url(),
        Secret::new("bc_wrong_fake_token"),
    ))
    .unwrap();
    let write = product_write(WriteKind::Update, "MUG", vec![("price", money("8.00"))]);
    let error = wrong.write(&write).await.unwrap_err();
    assert!(matches!(error, SystemError::Unavailable { .. }), "{error}");
    assert!(error.is_retryable());

    // BigCommerce product names are unique, so a second "Mug" gets 409.
    let duplicate = product_write(WriteKind::Create, "MUG-2", vec![("name", text("Mug"))]);
    let error = client(&store).write(&duplicate).await.unwrap_err();
    assert!(matches!(error, SystemError::Rejected { .. }), "{error}");
    store.shutdown().await;
}

/// Drives a store with a quota of 4 requests per second with 6 writers at once. The client
/// waits for the reset that responses report, a 429 is retried after its reset time as the
/// reconciler's queue does, and every price lands.
#[tokio::test]
async fn quota_waits_and_every_write_lands() {
    let store = store(RateLimit {
        quota: 4,
        window: Duration::from_secs(1),
    })
    .await;
    let skus: Vec<String> = (1..=6).map(|n| format!("CUP-{n}")).collect();
    for (n, sku) in skus.iter().enumerate() {
        let product = NewProduct {
            name: format!("Cup {n}"),
            sku: sku.clone(),
            price: "1.00".parse().unwrap(),
            ..NewProduct::default()
        };
        store.create_product_as_merchant(product).unwrap();
    }

    let client = Arc::new(client(&store));
    let mut tasks = Vec::new();
    for (n, sku) in skus.iter().enumerate() {
        let client = Arc::clone(&client);
        let write = product_write(WriteKind::Update, sku, vec![("price", money(&format!("{}.25", n + 2)))]);
        tasks.push(tokio::spawn(async move {
            let mut rate_limited = 0;
            loop {
                match client.write(&write).await {
                    Ok(_) => return rate_limited,
                    Err(SystemError::RateLimited { retry_after, .. }) => {
                        rate_limited += 1;
                        assert!(rate_limited < 20, "write never landed");
                        tokio::time::sleep(retry_after.unwrap_or(Duration::from_millis(200))).await;
                    }
                    Err(error) => panic!("write failed: {error}"),
                }
            }
        }));
    }

    let mut rate_limited = 0;
    for task in tasks {
        rate_limited += task.await.unwrap();
    }
    for (n, sku) in skus.iter().enumerate() {
        let price = store.product_by_sku(sku).unwrap().price.to_string();
        assert_eq!(price, format!("{}.25", n + 2), "{sku}");
    }
    // Each write reads the product and puts it: 12 requests need at least 3 windows of 4.
    assert!(store.api_request_count() >= 12);
    println!(
        "bigcommerce quota: {} requests, {} answered 429, {rate_limited} writes retried, 6 of 6 landed",
        store.api_request_count(),
        store.throttled_count()
    );
    store.shutdown().await;
}

/// One writer against a quota of 3 requests per second: once a response reports no request
/// left, the client waits for the reported reset, so no request meets a 429.
#[tokio::test]
async fn sequential_writes_wait_for_reset_without_429() {
    let store = store(RateLimit {
        quota: 3,
        window: Duration::from_secs(1),
    })
    .await;
    store.create_product_as_merchant(mug(1)).unwrap();
    let client = client(&store);
    let started = std::time::Instant::now();
    for n in 1..=4 {
        let write = product_write(WriteKind::Update, "MUG", vec![("price", money(&format!("{n}.50")))]);
        client.write(&write).await.unwrap();
    }
    assert_eq!(store.product_by_sku("MUG").unwrap().price.to_string(), "4.50");
    assert_eq!(store.throttled_count(), 0);
    assert_eq!(store.api_request_count(), 8);
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "8 requests need 3 windows of 3"
    );
    store.shutdown().await;
}

#[tokio::test]
async fn sandbox_rejects_missing_token_with_error_body() {
    let store = store(RateLimit::default()).await;
    let response = reqwest::Client::new()
        .get(format!("{}/v3/catalog/products", store.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().contains_key("x-rate-limit-requests-left"));
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["status"], 401);
    assert!(body["title"].is_string());
    assert!(body["errors"].is_object());
    store.shutdown().await;
}

#[tokio::test]
async fn sandbox_reports_quota_and_rejects_beyond_it() {
    let store = store(RateLimit {
        quota: 2,
        window: Duration::from_secs(30),
    })
    .await;
    let http = reqwest::Client::new();
    let url = format!("{}/v3/catalog/products", store.base_url());
    let mut statuses = Vec::new();
    let mut left = Vec::new();
    for _ in 0..3 {
        let response = http.get(&url).header("X-Auth-Token", TOKEN).send().await.unwrap();
        statuses.push(response.status().as_u16());
        let header = |name: &str| response.headers()[name].to_str().unwrap().to_owned();
        left.push(header("x-rate-limit-requests-left"));
        assert_eq!(header("x-rate-limit-requests-quota"), "2");
        assert_eq!(header("x-rate-limit-time-window-ms"), "30000");
        let reset: u64 = header("x-rate-limit-time-reset-ms").parse().unwrap();
        assert!(reset <= 30_000, "{reset}");
    }
    assert_eq!(statuses, vec![200, 200, 429]);
    assert_eq!(left, vec!["1", "0", "0"]);
    assert_eq!(store.throttled_count(), 1);
    store.shutdown().await;
}

#[tokio::test]
async fn sandbox_retries_webhook_with_same_id() {
    let store = store(RateLimit::default()).await;
    let receiver = Receiver::start(1).await;
    store.set_webhook_url(Some(receiver.url.clone()));
    store.create_product_as_merchant(mug(5)).unwrap();
    store.wait_for_deliveries_idle().await;

    let deliveries = store.deliveries();
    assert_eq!(deliveries.len(), 2, "one failed attempt, one retry");
    assert_eq!(deliveries[0].topic, "store/product/created");
    assert!(!deliveries[0].succeeded());
    assert!(deliveries[1].succeeded());
    assert_eq!(deliveries[0].header("webhook-id"), deliveries[1].header("webhook-id"));
    assert_eq!(deliveries[0].body, deliveries[1].body);
    let format = BigCommerceFormat::new("demo", SystemId::new("storefront"), vec![Secret::new(CLIENT_SECRET)]);
    let notices = received_notices(&format, &receiver.received()[1]);
    assert_eq!(notices[0].kind, NoticeKind::Created);
    store.shutdown().await;
}

#[tokio::test]
async fn api_writes_send_their_scopes() {
    let store = store(RateLimit::default()).await;
    store.create_product_as_merchant(tee()).unwrap();
    let receiver = Receiver::start(0).await;
    store.set_webhook_url(Some(receiver.url.clone()));
    let write = product_write(
        WriteKind::Update,
        "TEE-M",
        vec![
            ("name", text("Tee two")),
            ("price", money("24.00")),
            ("inventory", FieldValue::Quantity(9)),
        ],
    );
    client(&store).write(&write).await.unwrap();
    store.wait_for_deliveries_idle().await;

    let mut scopes: Vec<String> = store.deliveries().into_iter().map(|delivery| delivery.topic).collect();
    scopes.sort();
    assert_eq!(
        scopes,
        vec![
            "store/product/updated".to_owned(),
            "store/sku/inventory/updated".to_owned(),
            "store/sku/updated".to_owned(),
        ]
    );
    store.shutdown().await;
}
