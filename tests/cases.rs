//! Field failure cases, driven through the real handlers: webhook → receiver → FIFO queue →
//! reconciler → sandbox, with the sandboxes sending their own webhooks back.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;
use std::time::Duration;

use fieldsync_core::{FieldValue, Outcome};
use fieldsync_lambda::receiver::handle;
use fieldsync_sandbox::erp::ItemEdit;
use fieldsync_sandbox::storefront::ProductEdit;
use fieldsync_tests::{
    api_gateway_request, fixture, post_shopify, shopify_receiver, start_stack, status_and_body, SETTLE,
};
use rust_decimal::Decimal;

/// Verification on re-serialized JSON: the escaped body verifies on its raw bytes, also when
/// the Lambda event carries it base64-encoded, and gives exactly one change.
#[tokio::test]
async fn case1_escaped_body_verifies_and_enqueues_once() {
    let stack = start_stack().await;
    let receiver = shopify_receiver(stack.queue.clone(), "shpss_example_secret_0001");
    let body = fixture("shopify-v1.body");
    let headers = [
        ("x-shopify-topic", "orders/create"),
        ("x-shopify-shop-domain", "demo-shop.myshopify.com"),
        ("x-shopify-hmac-sha256", "uBX6jynnkpFFK/LS4S2rS5GyZZaCTfQ58zUM5yZDJKk="),
        ("x-shopify-webhook-id", "case1-delivery"),
    ];

    let response = handle(&receiver, api_gateway_request(&body, &headers, true))
        .await
        .unwrap();
    assert_eq!(status_and_body(&response), (200, r#"{"accepted":1}"#.to_owned()));
    assert_eq!(stack.pending().await, 1);

    stack.settle(SETTLE).await.unwrap();
    let order = stack
        .erp
        .order_by_external_id("order:1001")
        .expect("order created in the ERP");
    assert_eq!(order.note.as_deref(), Some("A & B"));
    stack.shutdown().await;
}

#[tokio::test]
async fn case1_reserialized_signature_is_rejected() {
    let stack = start_stack().await;
    let receiver = shopify_receiver(stack.queue.clone(), "shpss_example_secret_0001");
    let body = fixture("shopify-v1.body");
    let headers = [
        ("x-shopify-topic", "orders/create"),
        ("x-shopify-hmac-sha256", "SFdfwTENIYMC03eWVvyB5qlVMpvdu1bNB/Dhoqbk9Zc="),
    ];

    let response = handle(&receiver, api_gateway_request(&body, &headers, false))
        .await
        .unwrap();
    assert_eq!(status_and_body(&response).0, 401);
    assert_eq!(stack.pending().await, 0);
    stack.shutdown().await;
}

/// Unicode in the body: raw U+2028 and Romanian diacritics stay bytes until verified and reach
/// the stored value and the ERP intact.
#[tokio::test]
async fn case2_unicode_survives_into_stored_value() {
    let stack = start_stack().await;
    let receiver = shopify_receiver(stack.queue.clone(), "shpss_example_secret_0002");
    let body = fixture("shopify-unicode.body");
    let headers = [
        ("x-shopify-topic", "orders/create"),
        ("x-shopify-hmac-sha256", "G8vKieQD4idknBMxoDM96o40CNgenX/WM0kz2RJthzo="),
        ("x-shopify-webhook-id", "case2-delivery"),
    ];

    let response = handle(&receiver, api_gateway_request(&body, &headers, false))
        .await
        .unwrap();
    assert_eq!(status_and_body(&response).0, 200);
    stack.settle(SETTLE).await.unwrap();

    let record = stack.record("order", "2002").await.unwrap().expect("record stored");
    assert_eq!(
        record.value("note"),
        Some(&FieldValue::Text("line\u{2028}break".to_owned()))
    );
    let order = stack
        .erp
        .order_by_external_id("order:2002")
        .expect("order created in the ERP");
    assert_eq!(order.note.as_deref(), Some("line\u{2028}break"));
    stack.shutdown().await;
}

const CASE4_BODY: &str = r##"{"id":5550001,"name":"#1042","email":"ada@example.test","total_price":"42.50","line_items":[{"id":1,"sku":"MUG-RED","quantity":2,"price":"21.25"}]}"##;

/// Duplicate deliveries: two identical POSTs 80 ms apart and a third from a second subscription
/// all get 2xx, and the ERP ends with exactly one order.
#[tokio::test]
async fn case4_duplicate_deliveries_create_one_order() {
    let stack = start_stack().await;
    let body = CASE4_BODY.as_bytes();
    let first_subscription = [
        ("X-Shopify-Webhook-Id", "0b1c2d3e-0000-4000-8000-000000000001"),
        ("X-Shopify-Event-Id", "evt-777"),
    ];
    let second_subscription = [("X-Shopify-Webhook-Id", "0b1c2d3e-0000-4000-8000-000000000002")];

    assert_eq!(
        post_shopify(&stack, "orders/create", body, &first_subscription).await,
        200
    );
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(
        post_shopify(&stack, "orders/create", body, &first_subscription).await,
        200
    );
    assert_eq!(
        post_shopify(&stack, "orders/create", body, &second_subscription).await,
        200
    );
    stack.settle(SETTLE).await.unwrap();

    let orders: Vec<_> = stack
        .erp
        .orders()
        .into_iter()
        .filter(|order| order.external_id == "order:5550001")
        .collect();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].total, Decimal::from_str("42.50").unwrap());
    assert_eq!(orders[0].lines.len(), 1);
    assert_eq!(stack.erp.api_write_count(), 1, "one upsert, no second write");
    stack.shutdown().await;
}

/// Out of order: the update arrives before the create; the older create is stale and the end
/// state is `paid`.
#[tokio::test]
async fn case5_late_create_does_not_undo_update() {
    let stack = start_stack().await;
    let updated = br#"{"id":5550002,"updated_at":"2025-06-01T10:00:05+02:00","financial_status":"paid"}"#;
    let created = br#"{"id":5550002,"updated_at":"2025-06-01T10:00:01+02:00","financial_status":"pending"}"#;

    assert_eq!(
        post_shopify(
            &stack,
            "orders/updated",
            updated,
            &[("X-Shopify-Webhook-Id", "case5-a")]
        )
        .await,
        200
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        post_shopify(&stack, "orders/create", created, &[("X-Shopify-Webhook-Id", "case5-b")]).await,
        200
    );
    stack.settle(SETTLE).await.unwrap();

    let record = stack.record("order", "5550002").await.unwrap().unwrap();
    assert_eq!(
        record.value("financial_status"),
        Some(&FieldValue::Text("paid".to_owned()))
    );
    let order = stack.erp.order_by_external_id("order:5550002").unwrap();
    assert_eq!(order.financial_status.as_deref(), Some("paid"));
    let decisions = stack.decisions("order", "5550002").await.unwrap();
    let late = decisions
        .iter()
        .find(|decision| decision.event_id == "case5-b")
        .unwrap();
    assert_eq!(late.outcome, Outcome::Stale);
    stack.shutdown().await;
}

/// Sync loop: the storefront's webhook that carries back the price fieldsync wrote is an echo
/// (19.99 and "19.990" compare equal) and causes no write, while an unrelated field in the same
/// webhook still flows to the ERP.
#[tokio::test]
async fn case6_echo_is_suppressed_and_other_fields_flow() {
    let stack = start_stack().await;
    stack.erp.upsert_item_as_user(
        "MUG-RED",
        ItemEdit {
            description: Some("Red mug".into()),
            unit_price: Some(Decimal::from_str("19.99").unwrap()),
            inventory: Some(5),
            ..ItemEdit::default()
        },
    );
    stack.settle(SETTLE).await.unwrap();
    let product = stack
        .storefront
        .product_by_sku("MUG-RED")
        .expect("created on the storefront");
    assert_eq!(product.variants[0].price.to_string(), "19.99");

    // The storefront sends products/update with the price unchanged and a new meta description.
    let writes_before = (stack.storefront.api_write_count(), stack.erp.api_write_count());
    stack
        .storefront
        .edit_product_as_user(
            "MUG-RED",
            ProductEdit {
                seo_description: Some("Glazed red mug".into()),
                ..ProductEdit::default()
            },
        )
        .unwrap();
    stack.settle(SETTLE).await.unwrap();
    assert_eq!(
        stack.storefront.api_write_count(),
        writes_before.0,
        "no write back to the storefront"
    );
    assert_eq!(
        stack.erp.api_write_count(),
        writes_before.1 + 1,
        "only the meta description goes to the ERP"
    );
    assert_eq!(
        stack.erp.item("MUG-RED").unwrap().meta_description.as_deref(),
        Some("Glazed red mug")
    );
    assert_eq!(stack.erp.item("MUG-RED").unwrap().unit_price.to_string(), "19.99");

    // A hand-made echo with the price written as "19.990" two seconds later is still an echo.
    let product = stack.storefront.product_by_sku("MUG-RED").unwrap();
    let variant = &product.variants[0];
    let body = format!(
        r#"{{"id":{},"title":"Red mug","updated_at":"{}","variants":[{{"id":{},"sku":"MUG-RED","price":"19.990"}}]}}"#,
        product.id,
        (chrono::Utc::now() + chrono::Duration::seconds(2)).to_rfc3339(),
        variant.id
    );
    let writes_before = (stack.storefront.api_write_count(), stack.erp.api_write_count());
    assert_eq!(
        post_shopify(
            &stack,
            "products/update",
            body.as_bytes(),
            &[("X-Shopify-Webhook-Id", "case6-echo")]
        )
        .await,
        200
    );
    stack.settle(SETTLE).await.unwrap();
    assert_eq!(
        (stack.storefront.api_write_count(), stack.erp.api_write_count()),
        writes_before
    );
    let decisions = stack.decisions("product", "MUG-RED").await.unwrap();
    let price = decisions
        .iter()
        .rev()
        .find(|d| d.event_id == "case6-echo" && d.field.as_str() == "price")
        .unwrap();
    assert!(matches!(price.outcome, Outcome::Echo | Outcome::NoChange), "{price:?}");
    assert!(stack.queue.dead_letters().await.unwrap().is_empty());
    stack.shutdown().await;
}

/// Shopify's calculated-cost bucket made small: the ERP creates a dozen items at once, and the
/// storefront refuses part of the writes with `THROTTLED`. The reconciler retries them after the
/// wait the bucket reports until every product exists, with nothing in the dead-letter queue.
#[tokio::test]
async fn storefront_throttling_backs_off_and_loses_nothing() {
    use fieldsync_local::{LocalOptions, LocalStack};
    use fieldsync_sandbox::erp::ItemEdit;
    use fieldsync_sandbox::storefront::ThrottleConfig;

    let mut options = LocalOptions::new(fieldsync_tests::rules());
    options.queue.max_receive_count = 50;
    options.storefront_throttle = ThrottleConfig {
        bucket_size_points: 40.0,
        restore_rate_points_per_sec: 40.0,
    };
    let stack = LocalStack::start(options).await.unwrap();

    let skus: Vec<String> = (1..=12).map(|n| format!("PLATE-{n:02}")).collect();
    for (n, sku) in skus.iter().enumerate() {
        stack.erp.upsert_item_as_user(
            sku,
            ItemEdit {
                description: Some(format!("Plate {n}")),
                unit_price: Some(rust_decimal::Decimal::new(500 + n as i64, 2)),
                inventory: Some(n as i64),
                ..ItemEdit::default()
            },
        );
    }
    stack.settle(std::time::Duration::from_secs(90)).await.unwrap();

    assert!(stack.storefront.throttled_count() > 0, "the bucket never ran dry");
    for (n, sku) in skus.iter().enumerate() {
        let price = stack
            .storefront
            .product_by_sku(sku)
            .and_then(|product| product.variants.into_iter().find(|variant| &variant.sku == sku))
            .map(|variant| variant.price.to_string());
        assert_eq!(price, Some(format!("5.{n:02}")), "{sku}");
    }
    assert_eq!(stack.dead_letters().await, 0);
    println!(
        "storefront throttling: {} requests throttled, 12 of 12 products created",
        stack.storefront.throttled_count()
    );
    stack.shutdown().await;
}
