//! The WooCommerce connector against the WooCommerce sandbox.

// Test helpers outside #[test] functions panic on setup failures too.
#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use chrono::{NaiveDateTime, Utc};
use common::{header, hmac_base64, money, text, write, Receiver};
use fieldsync_connectors::woocommerce::{WooCommerceClient, WooCommerceConfig as ClientConfig};
use fieldsync_connectors::Secret;
use fieldsync_core::ports::{SystemClient, SystemError};
use fieldsync_core::{EntityType, FieldName, FieldValue, Notice, NoticeKind, SystemId, Wire, WriteKind};
use fieldsync_sandbox::woocommerce::{ProductEdit, WooCommerceConfig, WooCommerceHandle, WooCommerceSandbox};
use serde_json::Value;

const KEY: &str = "ck_test_fake_key";
const SECRET: &str = "cs_test_fake_secret";
const WEBHOOK_SECRET: &str = "wc_test_fake_webhook_secret";

async fn sandbox() -> WooCommerceHandle {
    WooCommerceSandbox::start(WooCommerceConfig {
        consumer_key: KEY.to_owned(),
        consumer_secret: SECRET.to_owned(),
        webhook_secret: WEBHOOK_SECRET.to_owned(),
        ..WooCommerceConfig::default()
    })
    .await
    .unwrap()
}

fn client_config(shop: &WooCommerceHandle) -> ClientConfig {
    ClientConfig::new(
        "storefront",
        "demo",
        shop.base_url(),
        Secret::new(KEY),
        Secret::new(SECRET),
    )
}

fn client(shop: &WooCommerceHandle) -> WooCommerceClient {
    WooCommerceClient::new(client_config(shop)).unwrap()
}

fn notice(resource: &str, kind: NoticeKind) -> Notice {
    Notice {
        integration: "demo".into(),
        source: SystemId::new("storefront"),
        entity: EntityType::new("product"),
        resource: resource.to_owned(),
        kind,
        event_id: "delivery-1".into(),
        occurred_at: Utc::now(),
        received_at: Utc::now(),
    }
}

/// Returns the products the sandbox holds, variations included, from its state view.
async fn state_products(shop: &WooCommerceHandle) -> Vec<Value> {
    let state: Value = reqwest::get(format!("{}/_sandbox/state", shop.base_url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    state["products"].as_array().unwrap().clone()
}

#[tokio::test]
async fn create_posts_draft_with_string_prices() {
    let shop = sandbox().await;
    let hook = Receiver::start(0).await;
    shop.set_webhook_url(Some(hook.url.clone()));
    let create = write(
        "storefront",
        "product",
        "MUG-RED",
        WriteKind::Create,
        None,
        vec![
            ("name", text("Café mug")),
            ("price", money("19.9")),
            ("inventory", FieldValue::Quantity(5)),
            ("meta_title", text("Mug | Shop")),
            ("images", FieldValue::List(vec!["https://cdn.example/mug.jpg".into()])),
        ],
    );

    let receipt = client(&shop).write(&create).await.unwrap();

    let product = shop.product_by_sku("MUG-RED").unwrap();
    assert_eq!(receipt.target_id, Some(product.id.to_string()));
    assert_eq!(product.status, "draft");
    assert_eq!(product.regular_price, "19.90");
    assert_eq!(product.name, "Café mug");
    assert!(product.manage_stock);
    assert_eq!(product.stock_quantity, Some(5));
    assert_eq!(product.meta_title.as_deref(), Some("Mug | Shop"));
    assert_eq!(product.images, vec!["https://cdn.example/mug.jpg".to_owned()]);

    shop.wait_for_deliveries_idle().await;
    let received = hook.received();
    assert_eq!(received.len(), 1);
    let delivery = &received[0];
    assert_eq!(header(&delivery.headers, "x-wc-webhook-topic"), "product.created");
    assert_eq!(header(&delivery.headers, "x-wc-webhook-resource"), "product");
    assert_eq!(header(&delivery.headers, "x-wc-webhook-event"), "created");
    assert_eq!(header(&delivery.headers, "x-wc-webhook-id"), "42");
    assert_eq!(
        header(&delivery.headers, "x-wc-webhook-source"),
        format!("{}/", shop.base_url())
    );
    assert_eq!(header(&delivery.headers, "x-wc-webhook-delivery-id").len(), 32);
    assert_eq!(
        header(&delivery.headers, "x-wc-webhook-signature"),
        hmac_base64(WEBHOOK_SECRET, &[&delivery.body])
    );
    let body = String::from_utf8(delivery.body.clone()).unwrap();
    assert!(body.contains(r#""name":"Caf\u00e9 mug""#), "{body}");
    assert!(body.contains(r#"https:\/\/cdn.example\/mug.jpg"#), "{body}");
    assert!(body.contains(r#""regular_price":"19.90""#), "{body}");
}

#[tokio::test]
async fn retried_create_finds_first_product() {
    let shop = sandbox().await;
    let client = client(&shop);
    let create = write(
        "storefront",
        "product",
        "MUG-BLUE",
        WriteKind::Create,
        None,
        vec![("name", text("Blue mug")), ("price", money("5"))],
    );

    let first = client.write(&create).await.unwrap();
    // The response to the first create was lost, so the reconciler sends the same create again.
    let second = client.write(&create).await.unwrap();

    assert_eq!(first.target_id, second.target_id);
    assert_eq!(state_products(&shop).await.len(), 1);
    assert_eq!(shop.product_by_sku("MUG-BLUE").unwrap().regular_price, "5.00");
}

#[tokio::test]
async fn update_puts_changed_fields() {
    let shop = sandbox().await;
    let product = shop
        .create_product_as_merchant(
            "MUG-GREEN",
            ProductEdit {
                name: Some("Green mug".into()),
                regular_price: Some("8.00".into()),
                ..ProductEdit::default()
            },
        )
        .unwrap();
    let update = write(
        "storefront",
        "product",
        "MUG-GREEN",
        WriteKind::Update,
        Some(&product.id.to_string()),
        vec![
            ("price", money("9.50")),
            ("published", FieldValue::Bool(false)),
            ("meta_description", text("A green mug")),
            ("handle", text("green-mug-large")),
        ],
    );

    let receipt = client(&shop).write(&update).await.unwrap();

    assert_eq!(receipt.target_id, Some(product.id.to_string()));
    let updated = shop.product_by_sku("MUG-GREEN").unwrap();
    assert_eq!(updated.regular_price, "9.50");
    assert_eq!(updated.status, "draft");
    assert_eq!(updated.slug, "green-mug-large");
    assert_eq!(updated.meta_description.as_deref(), Some("A green mug"));
    assert_eq!(updated.name, "Green mug", "fields absent from the write stay");
}

#[tokio::test]
async fn update_of_variation_writes_variation_and_parent() {
    let shop = sandbox().await;
    shop.create_variable_product_as_merchant("TEE", "Tee", &[("TEE-S", "10.00"), ("TEE-M", "12.00")])
        .unwrap();
    let update = write(
        "storefront",
        "product",
        "TEE-M",
        WriteKind::Update,
        Some("7000/7002"),
        vec![("price", money("12.5")), ("name", text("Organic tee"))],
    );

    let receipt = client(&shop).write(&update).await.unwrap();

    assert_eq!(receipt.target_id.as_deref(), Some("7000/7002"));
    assert_eq!(shop.product_by_sku("TEE-M").unwrap().regular_price, "12.50");
    assert_eq!(shop.product_by_sku("TEE").unwrap().name, "Organic tee");
    assert_eq!(shop.product_by_sku("TEE-S").unwrap().regular_price, "10.00");
}

#[tokio::test]
async fn fetch_of_variable_product_reads_variations() {
    let shop = sandbox().await;
    let hook = Receiver::start(0).await;
    shop.set_webhook_url(Some(hook.url.clone()));
    let parent = shop
        .create_variable_product_as_merchant("TEE", "Tee", &[("TEE-S", "10.00"), ("TEE-M", "12.00")])
        .unwrap();
    assert_eq!(parent.id, 7000);
    assert_eq!(parent.variations, vec![7001, 7002]);
    shop.edit_variation_as_merchant(
        "TEE-M",
        ProductEdit {
            regular_price: Some("13.50".into()),
            stock_quantity: Some(3),
            ..ProductEdit::default()
        },
    )
    .unwrap();
    shop.wait_for_deliveries_idle().await;

    // The webhook of the variation edit is the parent's, with variation ids only.
    let received = hook.received();
    let last = received.last().unwrap();
    assert_eq!(header(&last.headers, "x-wc-webhook-topic"), "product.updated");
    let payload: Value = serde_json::from_slice(&last.body).unwrap();
    assert_eq!(payload["id"], 7000);
    assert_eq!(payload["type"], "variable");
    assert_eq!(payload["variations"], serde_json::json!([7001, 7002]));

    // One variation per page makes the client follow X-WP-TotalPages.
    let client = WooCommerceClient::new(ClientConfig {
        page_size: 1,
        ..client_config(&shop)
    })
    .unwrap();
    let changes = client
        .fetch(&notice("products/7000", NoticeKind::Updated))
        .await
        .unwrap();

    let keys: Vec<&str> = changes.iter().map(|change| change.record.key.as_str()).collect();
    assert_eq!(keys, ["TEE-S", "TEE-M"]);
    let medium = &changes[1];
    let field = |name: &str| medium.fields.get(&FieldName::new(name)).cloned();
    assert_eq!(field("price"), Some(Wire::Text("13.50".into())));
    assert_eq!(field("inventory"), Some(Wire::Number("3".into())));
    assert_eq!(field("name"), Some(Wire::Text("Tee".into())));
    assert_eq!(field("published"), Some(Wire::Bool(true)));
    assert_eq!(medium.external_id.as_deref(), Some("7000/7002"));
    assert_eq!(medium.event_id, "delivery-1");
    assert_eq!(
        changes[0].fields.get(&FieldName::new("price")),
        Some(&Wire::Text("10.00".into()))
    );
    assert!(!changes[0].fields.contains_key(&FieldName::new("inventory")));
}

#[tokio::test]
async fn fetch_of_simple_product_gives_one_change() {
    let shop = sandbox().await;
    let product = shop
        .create_product_as_merchant(
            "MUG-RED",
            ProductEdit {
                name: Some("Red mug".into()),
                regular_price: Some("4.00".into()),
                ..ProductEdit::default()
            },
        )
        .unwrap();

    let changes = client(&shop)
        .fetch(&notice(&format!("products/{}", product.id), NoticeKind::Updated))
        .await
        .unwrap();

    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].record.key, "MUG-RED");
    assert_eq!(changes[0].external_id, Some(product.id.to_string()));
    assert_eq!(changes[0].occurred_at, product.date_modified);
}

#[tokio::test]
async fn forged_or_deleted_resources_are_not_read() {
    let shop = sandbox().await;
    let client = client(&shop);
    for resource in ["orders/1", "products/1/../../users", "http://127.0.0.1:9/products/1"] {
        let changes = client.fetch(&notice(resource, NoticeKind::Updated)).await.unwrap();
        assert!(changes.is_empty(), "{resource}");
    }
    let changes = client
        .fetch(&notice("products/7000", NoticeKind::Deleted))
        .await
        .unwrap();
    assert!(changes.is_empty());
    assert_eq!(shop.api_request_count(), 0);
}

#[tokio::test]
async fn rate_limit_is_rate_limited_with_retry_after() {
    let shop = sandbox().await;
    shop.force_rate_limit(1);
    let create = write(
        "storefront",
        "product",
        "MUG-RED",
        WriteKind::Create,
        None,
        vec![("price", money("1.00"))],
    );
    let client = client(&shop);

    let error = client.write(&create).await.unwrap_err();

    assert!(
        matches!(error, SystemError::RateLimited { retry_after: Some(wait), .. } if wait == Duration::from_secs(1)),
        "{error:?}"
    );
    assert!(error.is_retryable());
    assert!(client.write(&create).await.is_ok(), "the next request goes through");
    assert!(shop.product_by_sku("MUG-RED").is_some());
}

#[tokio::test]
async fn wrong_credentials_are_retryable() {
    let shop = sandbox().await;
    let client = WooCommerceClient::new(ClientConfig {
        consumer_secret: Secret::new("cs_wrong"),
        ..client_config(&shop)
    })
    .unwrap();
    let create = write("storefront", "product", "X", WriteKind::Create, None, vec![]);

    let error = client.write(&create).await.unwrap_err();

    assert!(matches!(error, SystemError::Unavailable { .. }), "{error:?}");
    let response = reqwest::get(format!("{}/products", shop.api_url())).await.unwrap();
    assert_eq!(response.status(), 401);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "woocommerce_rest_cannot_view");
    assert_eq!(body["data"]["status"], 401);
}

#[tokio::test]
async fn numeric_price_is_rejected_by_woocommerce() {
    let shop = sandbox().await;
    let response = reqwest::Client::new()
        .post(format!("{}/products", shop.api_url()))
        .basic_auth(KEY, Some(SECRET))
        .json(&serde_json::json!({"sku": "N-1", "regular_price": 19.9}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], "rest_invalid_param");
    assert!(shop.product_by_sku("N-1").is_none());
}

#[tokio::test]
async fn missing_product_is_rejected() {
    let shop = sandbox().await;
    let update = write(
        "storefront",
        "product",
        "GONE",
        WriteKind::Update,
        Some("99999"),
        vec![("price", money("1"))],
    );

    let error = client(&shop).write(&update).await.unwrap_err();

    assert!(matches!(error, SystemError::Rejected { .. }), "{error:?}");
    assert!(!error.is_retryable());
}

#[tokio::test]
async fn creation_ping_is_unsigned_form() {
    let shop = sandbox().await;
    let hook = Receiver::start(0).await;
    shop.set_webhook_url(Some(hook.url.clone()));

    assert_eq!(shop.send_creation_ping().await, Some(200));

    let received = hook.received();
    assert_eq!(received.len(), 1);
    assert_eq!(received[0].body, b"webhook_id=42");
    assert_eq!(
        header(&received[0].headers, "content-type"),
        "application/x-www-form-urlencoded"
    );
    assert!(received[0].headers.get("x-wc-webhook-signature").is_none());
    assert!(shop.deliveries().is_empty(), "the ping is not a delivery");
}

#[tokio::test]
async fn local_time_differs_from_gmt_by_site_offset() {
    let shop = sandbox().await;
    let product = shop.create_product_as_merchant("T-1", ProductEdit::default()).unwrap();
    let response = reqwest::Client::new()
        .get(format!("{}/products/{}", shop.api_url(), product.id))
        .basic_auth(KEY, Some(SECRET))
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    let read = |name: &str| NaiveDateTime::parse_from_str(body[name].as_str().unwrap(), "%Y-%m-%dT%H:%M:%S").unwrap();
    assert_eq!(
        read("date_modified_gmt") - read("date_modified"),
        chrono::Duration::hours(5)
    );
    assert_eq!(read("date_modified_gmt").and_utc(), product.date_modified);
}

#[tokio::test]
async fn batch_reports_errors_inline() {
    let shop = sandbox().await;
    let http = reqwest::Client::new();
    let batch = serde_json::json!({
        "create": [
            {"sku": "B-1", "name": "One", "regular_price": "1.00"},
            {"sku": "B-2", "name": "Two", "regular_price": 2},
        ],
        "update": [{"id": 99999, "name": "Gone"}],
    });

    let response = http
        .post(format!("{}/products/batch", shop.api_url()))
        .basic_auth(KEY, Some(SECRET))
        .json(&batch)
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["create"][0]["sku"], "B-1");
    assert_eq!(body["create"][1]["error"]["code"], "rest_invalid_param");
    assert_eq!(
        body["update"][0]["error"]["code"],
        "woocommerce_rest_product_invalid_id"
    );
    assert!(shop.product_by_sku("B-1").is_some());
    assert!(shop.product_by_sku("B-2").is_none());

    let too_many: Vec<Value> = (0..101)
        .map(|index| serde_json::json!({"sku": format!("M-{index}")}))
        .collect();
    let response = http
        .post(format!("{}/products/batch", shop.api_url()))
        .basic_auth(KEY, Some(SECRET))
        .json(&serde_json::json!({ "create": too_many }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
}

#[tokio::test]
async fn list_filters_by_sku_and_pages() {
    let shop = sandbox().await;
    for sku in ["P-1", "P-2", "P-3"] {
        shop.create_product_as_merchant(sku, ProductEdit::default()).unwrap();
    }
    let http = reqwest::Client::new();
    let list = |query: &str| {
        http.get(format!("{}/products?{query}", shop.api_url()))
            .basic_auth(KEY, Some(SECRET))
            .send()
    };

    let response = list("per_page=2&page=2").await.unwrap();
    assert_eq!(response.headers()["x-wp-total"], "3");
    assert_eq!(response.headers()["x-wp-totalpages"], "2");
    let page: Value = response.json().await.unwrap();
    assert_eq!(page.as_array().unwrap().len(), 1);

    let found: Value = list("sku=P-2").await.unwrap().json().await.unwrap();
    assert_eq!(found.as_array().unwrap().len(), 1);
    assert_eq!(found[0]["sku"], "P-2");

    assert_eq!(list("per_page=101").await.unwrap().status(), 400);
}
