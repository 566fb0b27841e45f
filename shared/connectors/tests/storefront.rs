//! The Shopify connector against the storefront sandbox.

// Test helpers outside #[test] functions panic on setup failures too.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::Utc;

use common::{header, hmac_base64, money, text, write, Receiver};
use fieldsync_connectors::storefront::{Registration, ShopifyClient, ShopifyConfig};
use fieldsync_connectors::Secret;
use fieldsync_core::formats::shopify::ShopifyFormat;
use fieldsync_core::ingest::accept;
use fieldsync_core::ports::{SystemClient, SystemError};
use fieldsync_core::{FieldName, FieldValue, InboundRequest, Normalized, Notice, NoticeKind, Wire, WriteKind};
use fieldsync_sandbox::storefront::{
    ProductEdit, ProductStatus, StorefrontConfig, StorefrontHandle, StorefrontSandbox, ThrottleConfig,
};
use serde_json::{json, Value};

const TOKEN: &str = "shpat_test_fake_token";
const SECRET: &str = "test-fake-app-secret";

async fn sandbox(config: StorefrontConfig) -> StorefrontHandle {
    StorefrontSandbox::start(StorefrontConfig {
        access_token: TOKEN.to_owned(),
        webhook_secret: SECRET.to_owned(),
        ..config
    })
    .await
    .unwrap()
}

fn client(shop: &StorefrontHandle) -> ShopifyClient {
    ShopifyClient::new(ShopifyConfig::new("storefront", shop.base_url(), Secret::new(TOKEN))).unwrap()
}

fn create_fields() -> Vec<(&'static str, FieldValue)> {
    vec![
        ("name", text("Red mug")),
        ("description", text("<p>Red & bold</p>")),
        ("published", FieldValue::Bool(true)),
        ("meta_title", text("Red mug | Shop")),
        ("price", money("19.99")),
        ("inventory", FieldValue::Quantity(12)),
        (
            "images",
            FieldValue::List(vec!["https://cdn.example.com/mug-red.png".to_owned()]),
        ),
        (
            "customer_prices",
            FieldValue::Json(Wire::parse(br#"[{"customer":"C-100","unit_price":17.50}]"#).unwrap()),
        ),
    ]
}

/// Posts a raw GraphQL request to the sandbox.
async fn graphql(shop: &StorefrontHandle, query: &str, variables: Value) -> Value {
    reqwest::Client::new()
        .post(shop.graphql_url("2025-07"))
        .header("X-Shopify-Access-Token", TOKEN)
        .json(&json!({"query": query, "variables": variables}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn create_twice_makes_one_product() {
    let shop = sandbox(StorefrontConfig::default()).await;
    let client = client(&shop);
    let create = write(
        "storefront",
        "product",
        "MUG-RED",
        WriteKind::Create,
        None,
        create_fields(),
    );

    let first = client.write(&create).await.unwrap();
    let second = client.write(&create).await.unwrap();

    assert_eq!(first, second);
    let products = shop.products();
    assert_eq!(products.len(), 1);
    let product = &products[0];
    let variant = product.variant_by_sku("MUG-RED").unwrap();
    assert_eq!(
        first.target_id.as_deref(),
        Some(format!("{}/{}", product.id, variant.id).as_str())
    );
    assert_eq!(product.title, "Red mug");
    assert_eq!(product.description_html, "<p>Red & bold</p>");
    assert_eq!(product.status, ProductStatus::Active);
    assert_eq!(product.seo_title(), Some("Red mug | Shop"));
    assert_eq!(product.metafield("fieldsync", "key"), Some("product:MUG-RED"));
    assert_eq!(
        product.metafield("fieldsync", "customer_prices"),
        Some(r#"[{"customer":"C-100","unit_price":17.50}]"#)
    );
    assert_eq!(product.images.len(), 1);
    assert_eq!(variant.price.to_string(), "19.99");
    assert_eq!(variant.inventory_quantity, 12);
    assert_eq!(shop.api_write_count(), 2);
}

#[tokio::test]
async fn update_writes_only_needed_mutations() {
    let shop = sandbox(StorefrontConfig::default()).await;
    let client = client(&shop);
    let created = client
        .write(&write(
            "storefront",
            "product",
            "MUG-RED",
            WriteKind::Create,
            None,
            create_fields(),
        ))
        .await
        .unwrap();
    let writes_after_create = shop.api_write_count();

    let update = write(
        "storefront",
        "product",
        "MUG-RED",
        WriteKind::Update,
        created.target_id.as_deref(),
        vec![("price", money("21.50")), ("meta_description", text("A red mug"))],
    );
    let receipt = client.write(&update).await.unwrap();

    assert_eq!(receipt, created);
    assert_eq!(shop.api_write_count() - writes_after_create, 2);
    let mutations = shop.mutation_names();
    assert_eq!(
        mutations[mutations.len() - 2..],
        ["metafieldsSet", "productVariantsBulkUpdate"]
    );
    let product = shop.product_by_sku("MUG-RED").unwrap();
    assert_eq!(product.variants[0].price.to_string(), "21.50");
    assert_eq!(product.seo_description(), Some("A red mug"));
    assert_eq!(product.seo_title(), Some("Red mug | Shop"));
}

#[tokio::test]
async fn seo_update_goes_through_metafields_set() {
    let shop = sandbox(StorefrontConfig::default()).await;
    let client = client(&shop);
    let created = client
        .write(&write(
            "storefront",
            "product",
            "MUG-RED",
            WriteKind::Create,
            None,
            create_fields(),
        ))
        .await
        .unwrap();
    let update = write(
        "storefront",
        "product",
        "MUG-RED",
        WriteKind::Update,
        created.target_id.as_deref(),
        vec![
            ("name", text("Red stoneware mug")),
            ("meta_title", text("Stoneware | Shop")),
            ("meta_description", text("Glazed by hand")),
        ],
    );
    client.write(&update).await.unwrap();

    assert_eq!(shop.mutation_names(), ["productSet", "productUpdate", "metafieldsSet"]);
    let product = shop.product_by_sku("MUG-RED").unwrap();
    assert_eq!(product.title, "Red stoneware mug");
    assert_eq!(product.seo_title(), Some("Stoneware | Shop"));
    assert_eq!(product.seo_description(), Some("Glazed by hand"));
}

#[tokio::test]
async fn update_without_target_id_finds_sku() {
    let shop = sandbox(StorefrontConfig::default()).await;
    let client = client(&shop);
    let created = client
        .write(&write(
            "storefront",
            "product",
            "MUG-RED",
            WriteKind::Create,
            None,
            create_fields(),
        ))
        .await
        .unwrap();

    let update = write(
        "storefront",
        "product",
        "MUG-RED",
        WriteKind::Update,
        None,
        vec![("name", text("Crimson mug")), ("published", FieldValue::Bool(false))],
    );
    let receipt = client.write(&update).await.unwrap();

    assert_eq!(receipt, created);
    let product = shop.product_by_sku("MUG-RED").unwrap();
    assert_eq!(product.title, "Crimson mug");
    assert_eq!(product.status, ProductStatus::Draft);
    assert_eq!(product.published_at, None);
}

#[tokio::test]
async fn update_of_missing_sku_is_rejected() {
    let shop = sandbox(StorefrontConfig::default()).await;
    let update = write(
        "storefront",
        "product",
        "NOPE",
        WriteKind::Update,
        None,
        vec![("price", money("1.00"))],
    );

    let error = client(&shop).write(&update).await.unwrap_err();

    assert!(matches!(error, SystemError::Rejected { .. }), "{error:?}");
}

#[tokio::test]
async fn inventory_reads_then_compares_and_sets() {
    let shop = sandbox(StorefrontConfig::default()).await;
    let client = client(&shop);
    let created = client
        .write(&write(
            "storefront",
            "product",
            "MUG-RED",
            WriteKind::Create,
            None,
            create_fields(),
        ))
        .await
        .unwrap();
    shop.edit_product_as_user(
        "MUG-RED",
        ProductEdit {
            inventory: Some(5),
            ..ProductEdit::default()
        },
    )
    .unwrap();
    let writes_before = shop.api_write_count();

    let update = write(
        "storefront",
        "product",
        "MUG-RED",
        WriteKind::Update,
        created.target_id.as_deref(),
        vec![("inventory", FieldValue::Quantity(20))],
    );
    client.write(&update).await.unwrap();
    assert_eq!(
        shop.product_by_sku("MUG-RED").unwrap().variants[0].inventory_quantity,
        20
    );
    assert_eq!(shop.api_write_count() - writes_before, 1);

    client.write(&update).await.unwrap();
    assert_eq!(
        shop.api_write_count() - writes_before,
        1,
        "an unchanged quantity needs no write"
    );
}

#[tokio::test]
async fn inventory_stale_compare_is_user_error() {
    let shop = sandbox(StorefrontConfig::default()).await;
    client(&shop)
        .write(&write(
            "storefront",
            "product",
            "MUG-RED",
            WriteKind::Create,
            None,
            create_fields(),
        ))
        .await
        .unwrap();
    let item_id = format!(
        "gid://shopify/InventoryItem/{}",
        shop.product_by_sku("MUG-RED").unwrap().variants[0].inventory_item_id
    );
    let query = "mutation($input: InventorySetQuantitiesInput!) { inventorySetQuantities(input: $input) { userErrors { field message code } } }";
    let input = |compare: i64| {
        json!({"input": {"name": "available", "reason": "correction", "quantities": [
            {"inventoryItemId": item_id, "locationId": "gid://shopify/Location/1", "quantity": 3, "compareQuantity": compare}
        ]}})
    };

    let stale = graphql(&shop, query, input(11)).await;
    let fresh = graphql(&shop, query, input(12)).await;

    assert_eq!(
        stale["data"]["inventorySetQuantities"]["userErrors"][0]["code"],
        "COMPARE_QUANTITY_STALE"
    );
    assert_eq!(fresh["data"]["inventorySetQuantities"]["userErrors"], json!([]));
    assert_eq!(
        shop.product_by_sku("MUG-RED").unwrap().variants[0].inventory_quantity,
        3
    );
}

#[tokio::test]
async fn throttled_response_is_rate_limited() {
    let shop = sandbox(StorefrontConfig {
        throttle: ThrottleConfig {
            bucket_size_points: 1000.0,
            restore_rate_points_per_sec: 50.0,
        },
        ..StorefrontConfig::default()
    })
    .await;
    let client = client(&shop);
    shop.drain_throttle_bucket();

    let error = client
        .write(&write(
            "storefront",
            "product",
            "MUG-RED",
            WriteKind::Create,
            None,
            create_fields(),
        ))
        .await
        .unwrap_err();

    let SystemError::RateLimited { retry_after, .. } = error else {
        panic!("expected RateLimited, got {error:?}");
    };
    let retry_after = retry_after.expect("retry_after from throttleStatus");
    assert!(
        retry_after > Duration::ZERO && retry_after <= Duration::from_millis(200),
        "{retry_after:?}"
    );
    assert_eq!(shop.api_write_count(), 0);

    tokio::time::sleep(retry_after + Duration::from_millis(50)).await;
    client
        .write(&write(
            "storefront",
            "product",
            "MUG-RED",
            WriteKind::Create,
            None,
            create_fields(),
        ))
        .await
        .unwrap();
}

#[tokio::test]
async fn http_429_is_rate_limited_with_retry_after() {
    let shop = sandbox(StorefrontConfig {
        http_429_next_requests: 1,
        http_429_retry_after_secs: 7,
        ..StorefrontConfig::default()
    })
    .await;

    let error = client(&shop)
        .write(&write(
            "storefront",
            "product",
            "MUG-RED",
            WriteKind::Create,
            None,
            create_fields(),
        ))
        .await
        .unwrap_err();

    assert!(
        matches!(error, SystemError::RateLimited { retry_after: Some(wait), .. } if wait == Duration::from_secs(7)),
        "{error:?}"
    );
    assert!(error.is_retryable());
}

#[tokio::test]
async fn wrong_token_is_retryable_until_an_operator_fixes_it() {
    let shop = sandbox(StorefrontConfig::default()).await;
    let client = ShopifyClient::new(ShopifyConfig::new("storefront", shop.base_url(), Secret::new("wrong"))).unwrap();

    let error = client
        .write(&write(
            "storefront",
            "product",
            "MUG-RED",
            WriteKind::Create,
            None,
            create_fields(),
        ))
        .await
        .unwrap_err();

    // The write stays queued; its retries reach the dead-letter queue for a redrive once the
    // token is fixed.
    assert!(matches!(error, SystemError::Unavailable { .. }), "{error:?}");
    assert!(error.is_retryable());
    assert!(format!("{:?}", error).contains("401"), "{error:?}");
}

#[tokio::test]
async fn blank_title_on_create_is_rejected() {
    let shop = sandbox(StorefrontConfig::default()).await;
    let create = write(
        "storefront",
        "product",
        "MUG-RED",
        WriteKind::Create,
        None,
        vec![("price", money("1.00"))],
    );

    let error = client(&shop).write(&create).await.unwrap_err();

    assert!(
        matches!(error, SystemError::Rejected { ref message, .. } if message.contains("BLANK")),
        "{error:?}"
    );
    assert!(shop.products().is_empty());
}

#[tokio::test]
async fn webhooks_are_signed_and_escaped() {
    let receiver = Receiver::start(0).await;
    let shop = sandbox(StorefrontConfig {
        webhook_url: Some(receiver.url.clone()),
        ..StorefrontConfig::default()
    })
    .await;
    client(&shop)
        .write(&write(
            "storefront",
            "product",
            "MUG-RED",
            WriteKind::Create,
            None,
            create_fields(),
        ))
        .await
        .unwrap();
    shop.edit_product_as_user(
        "MUG-RED",
        ProductEdit {
            title: Some("Café mug".to_owned()),
            ..ProductEdit::default()
        },
    )
    .unwrap();
    shop.wait_for_deliveries_idle().await;

    let received = receiver.received();
    assert_eq!(received.len(), 2);
    let topics: Vec<&str> = received
        .iter()
        .map(|request| header(&request.headers, "X-Shopify-Topic"))
        .collect();
    assert!(topics.contains(&"products/create"));
    assert!(topics.contains(&"products/update"));
    for request in &received {
        assert_eq!(
            header(&request.headers, "X-Shopify-Hmac-Sha256"),
            hmac_base64(SECRET, &[&request.body])
        );
        assert_eq!(
            header(&request.headers, "X-Shopify-Shop-Domain"),
            "fieldsync-sandbox.myshopify.com"
        );
        assert_eq!(header(&request.headers, "X-Shopify-API-Version"), "2025-07");
        assert!(!header(&request.headers, "X-Shopify-Webhook-Id").is_empty());
        assert!(!header(&request.headers, "X-Shopify-Event-Id").is_empty());
        assert!(!header(&request.headers, "X-Shopify-Triggered-At").is_empty());
        let body = std::str::from_utf8(&request.body).unwrap();
        assert!(
            body.contains(r#"\u003cp\u003eRed \u0026 bold\u003c\/p\u003e"#),
            "{body}"
        );
        assert!(body.contains(r#"https:\/\/cdn.example.com\/mug-red.png"#), "{body}");
        assert!(!body.contains('<'), "{body}");
    }
    let update = received
        .iter()
        .find(|request| header(&request.headers, "X-Shopify-Topic") == "products/update")
        .unwrap();
    let body = std::str::from_utf8(&update.body).unwrap();
    assert!(
        body.contains("\"title\":\"Café mug\""),
        "non-ASCII stays raw UTF-8: {body}"
    );
    let payload: Value = serde_json::from_slice(&update.body).unwrap();
    assert_eq!(payload["status"], "active");
    assert_eq!(payload["variants"][0]["price"], "19.99");
    assert_eq!(payload["variants"][0]["sku"], "MUG-RED");
    assert_eq!(payload["variants"][0]["inventory_quantity"], 12);
    assert!(payload["updated_at"].as_str().unwrap().ends_with("-04:00"));
    let metafields = payload["metafields"].as_array().unwrap();
    assert!(metafields
        .iter()
        .any(|field| field["namespace"] == "global" && field["key"] == "title_tag"));
}

#[tokio::test]
async fn webhook_retries_keep_event_id() {
    let receiver = Receiver::start(2).await;
    let shop = sandbox(StorefrontConfig {
        webhook_url: Some(receiver.url.clone()),
        ..StorefrontConfig::default()
    })
    .await;
    client(&shop)
        .write(&write(
            "storefront",
            "product",
            "MUG-RED",
            WriteKind::Create,
            None,
            create_fields(),
        ))
        .await
        .unwrap();
    shop.wait_for_deliveries_idle().await;

    let deliveries = shop.deliveries();
    assert_eq!(deliveries.len(), 3);
    assert!(deliveries
        .iter()
        .all(|delivery| delivery.event_id == deliveries[0].event_id));
    assert!(deliveries.iter().all(|delivery| delivery.body == deliveries[0].body));
    assert!(!deliveries[0].succeeded());
    assert!(deliveries[2].succeeded());
    let webhook_ids: std::collections::BTreeSet<&str> = deliveries
        .iter()
        .map(|delivery| delivery.header("X-Shopify-Webhook-Id").unwrap())
        .collect();
    assert_eq!(webhook_ids.len(), 3);
}

#[tokio::test]
async fn inventory_level_webhook_is_read_by_item() {
    let receiver = Receiver::start(0).await;
    let shop = sandbox(StorefrontConfig {
        webhook_url: Some(receiver.url.clone()),
        ..StorefrontConfig::default()
    })
    .await;
    let client = client(&shop);
    client
        .write(&write(
            "storefront",
            "product",
            "MUG-RED",
            WriteKind::Create,
            None,
            create_fields(),
        ))
        .await
        .unwrap();
    shop.edit_product_as_user(
        "MUG-RED",
        ProductEdit {
            inventory: Some(9),
            ..ProductEdit::default()
        },
    )
    .unwrap();
    shop.wait_for_deliveries_idle().await;

    let received = receiver.received();
    let inventory_hook = received
        .iter()
        .find(|request| header(&request.headers, "x-shopify-topic") == "inventory_levels/update")
        .expect("an inventory_levels/update delivery");
    let body = String::from_utf8(inventory_hook.body.clone()).unwrap();
    assert!(!body.contains("MUG-RED"), "the payload names no SKU: {body}");

    let format = ShopifyFormat {
        integration: "demo".into(),
        source: "storefront".into(),
        secrets: vec![Secret::new(SECRET)],
    };
    let request = InboundRequest {
        headers: inventory_hook
            .headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap().to_owned()))
            .collect(),
        query: BTreeMap::new(),
        body: inventory_hook.body.clone(),
        received_at: Utc::now(),
    };
    let Normalized::Notices(notices) = accept(&format, &request).unwrap() else {
        panic!("expected a notice");
    };
    let changes = client.fetch(&notices[0]).await.unwrap();

    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].record.key, "MUG-RED");
    assert_eq!(
        changes[0].fields[&FieldName::new("inventory")],
        Wire::Number("9".into())
    );
    let variant = &shop.product_by_sku("MUG-RED").unwrap().variants[0];
    assert_eq!(
        changes[0].external_id.as_deref(),
        Some(format!("{}/{}", shop.product_by_sku("MUG-RED").unwrap().id, variant.id).as_str())
    );
}

#[tokio::test]
async fn unknown_inventory_item_reads_nothing() {
    let shop = sandbox(StorefrontConfig::default()).await;
    let notice = Notice {
        integration: "demo".into(),
        source: "storefront".into(),
        entity: "product".into(),
        resource: "inventory_items/424242".into(),
        kind: NoticeKind::Updated,
        event_id: "evt-1".into(),
        occurred_at: Utc::now(),
        received_at: Utc::now(),
    };
    assert!(client(&shop).fetch(&notice).await.unwrap().is_empty());
    let elsewhere = Notice {
        resource: "https://attacker.example/inventory_items/1".into(),
        ..notice
    };
    assert!(client(&shop).fetch(&elsewhere).await.unwrap().is_empty());
}

#[tokio::test]
async fn ensure_webhooks_creates_then_keeps_then_moves() {
    let old_receiver = Receiver::start(0).await;
    let receiver = Receiver::start(0).await;
    let shop = sandbox(StorefrontConfig::default()).await;
    let client = client(&shop);
    let topics = ["products/update", "inventory_levels/update"];

    let first = client.ensure_webhooks(&old_receiver.url, &topics).await.unwrap();
    assert!(first
        .iter()
        .all(|registration| matches!(registration, Registration::Created { .. })));
    let again = client.ensure_webhooks(&old_receiver.url, &topics).await.unwrap();
    assert!(again
        .iter()
        .all(|registration| matches!(registration, Registration::Kept { .. })));
    let moved = client.ensure_webhooks(&receiver.url, &topics).await.unwrap();
    assert!(moved
        .iter()
        .all(|registration| matches!(registration, Registration::Moved { .. })));

    let subscriptions = shop.webhook_subscriptions();
    assert_eq!(subscriptions.len(), 2);
    assert!(subscriptions
        .iter()
        .all(|subscription| subscription.callback_url == receiver.url));
    let topics: Vec<&str> = subscriptions
        .iter()
        .map(|subscription| subscription.topic.as_str())
        .collect();
    assert_eq!(topics, ["PRODUCTS_UPDATE", "INVENTORY_LEVELS_UPDATE"]);

    // Events go to the subscribed address only, and only for subscribed topics: a create sends
    // products/create, which nothing subscribes to.
    client
        .write(&write(
            "storefront",
            "product",
            "MUG-RED",
            WriteKind::Create,
            None,
            create_fields(),
        ))
        .await
        .unwrap();
    shop.edit_product_as_user(
        "MUG-RED",
        ProductEdit {
            title: Some("Blue mug".to_owned()),
            inventory: Some(3),
            ..ProductEdit::default()
        },
    )
    .unwrap();
    shop.wait_for_deliveries_idle().await;
    let delivered: Vec<String> = receiver
        .received()
        .iter()
        .map(|request| header(&request.headers, "x-shopify-topic").to_owned())
        .collect();
    assert_eq!(delivered, ["products/update", "inventory_levels/update"]);
    assert!(old_receiver.received().is_empty());
}

#[tokio::test]
async fn ensure_webhooks_rejects_plain_http_address() {
    let shop = sandbox(StorefrontConfig::default()).await;
    let error = client(&shop)
        .ensure_webhooks("http://hooks.example.com/fieldsync", &["products/update"])
        .await
        .unwrap_err();
    assert!(
        matches!(error, SystemError::Rejected { ref message, .. } if message.contains("http://")),
        "{error:?}"
    );
}
