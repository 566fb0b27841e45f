//! The order lifecycle through the real handlers: webhook → receiver → FIFO queue → reconciler
//! → sandbox, with parking, declared transitions, late status events, manual steps and
//! redelivered conversions.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::str::FromStr;

use chrono::{SecondsFormat, Utc};
use fieldsync_core::signature::hmac_sha256_base64;
use fieldsync_core::{Outcome, RecordKey};
use fieldsync_local::{LocalStack, ERP_WEBHOOK_SECRET};
use fieldsync_sandbox::erp::ItemEdit;
use fieldsync_sandbox::storefront::{NewProduct, ProductStatus};
use fieldsync_sandbox::{Delivery, Document, DocumentKind};
use fieldsync_tests::{post_shopify, start_stack, SETTLE};
use rust_decimal::Decimal;

/// Creates item MUG-RED in the ERP and customer "Ada" on the storefront, and waits until both
/// reached the other side. Returns the storefront customer.
async fn item_and_customer(stack: &LocalStack) -> Document {
    stack.erp.upsert_item_as_user(
        "MUG-RED",
        ItemEdit {
            description: Some("Red mug".into()),
            unit_price: Some(Decimal::from_str("12.50").unwrap()),
            ..ItemEdit::default()
        },
    );
    let customer = stack.storefront.create_document_as_user(
        DocumentKind::Customer,
        &[("name", "\"Ada Lovelace\""), ("email", "\"ada@example.test\"")],
    );
    stack.settle(SETTLE).await.unwrap();
    customer
}

/// Requests a quote for ten red mugs as `customer` and waits until the ERP has it.
async fn requested_quote(stack: &LocalStack, customer: &Document) -> Document {
    let customer_id = format!("\"{}\"", customer.id);
    let quote = stack.storefront.create_document_as_user(
        DocumentKind::Quote,
        &[
            ("customer", customer_id.as_str()),
            ("line_items", r#"[{"sku":"MUG-RED","quantity":10}]"#),
            ("status", "\"requested\""),
        ],
    );
    stack.settle(SETTLE).await.unwrap();
    quote
}

fn erp_quote(stack: &LocalStack, quote: &Document) -> Document {
    stack
        .erp
        .document_by_external_id(DocumentKind::Quote, &format!("quote:{}", quote.id))
        .expect("quote created in the ERP")
}

/// Posts an ERP event signed with the demo secret at the current time.
async fn post_erp(stack: &LocalStack, body: &[u8]) -> u16 {
    let timestamp = Utc::now().timestamp().to_string();
    let signature = hmac_sha256_base64(ERP_WEBHOOK_SECRET.as_bytes(), &[timestamp.as_bytes(), b".", body]);
    reqwest::Client::new()
        .post(stack.receivers.url("erp"))
        .header("Content-Type", "application/json")
        .header("X-Fieldsync-Timestamp", timestamp)
        .header("X-Fieldsync-Signature", format!("v1={signature}"))
        .body(body.to_vec())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Returns the first delivery of `topic` from a sandbox's delivery log.
fn first_delivery(deliveries: &[Delivery], topic: &str) -> Delivery {
    deliveries
        .iter()
        .find(|delivery| delivery.topic == topic)
        .cloned()
        .unwrap_or_else(|| panic!("no {topic} delivery"))
}

fn header<'a>(delivery: &'a Delivery, name: &str) -> &'a str {
    delivery
        .headers
        .iter()
        .find(|(header, _)| header.eq_ignore_ascii_case(name))
        .map(|(_, value)| value.as_str())
        .unwrap()
}

#[tokio::test]
async fn parked_order_released_when_customer_arrives() {
    let stack = start_stack().await;
    item_and_customer(&stack).await;

    // The storefront's order webhook overtakes the one of its new customer 8001.
    let order = br##"{"id":5551001,"name":"#1001","email":"grace@example.test","total_price":"25.00","customer":{"id":8001},"status":"placed","line_items":[{"sku":"MUG-RED","quantity":2,"price":"12.50"}]}"##;
    assert_eq!(
        post_shopify(
            &stack,
            "orders/create",
            order,
            &[("X-Shopify-Webhook-Id", "parked-order")]
        )
        .await,
        200
    );
    stack.settle(SETTLE).await.unwrap();

    assert!(
        stack.erp.order_by_external_id("order:5551001").is_none(),
        "the order waits"
    );
    let parked = stack.record("order", "5551001").await.unwrap().unwrap();
    let customer_key = RecordKey::new("demo", "customer", "8001");
    assert_eq!(parked.outbox.len(), 1);
    assert_eq!(parked.outbox[0].parked_on, vec![customer_key.clone()]);
    let waited_for = stack.record("customer", "8001").await.unwrap().unwrap();
    assert_eq!(waited_for.waiting, vec![parked.key.clone()]);
    assert_eq!(stack.dead_letters().await, 0, "a parked write is not a failure");

    let customer = br#"{"id":8001,"name":"Grace Hopper","email":"grace@example.test"}"#;
    assert_eq!(
        post_shopify(
            &stack,
            "customers/create",
            customer,
            &[("X-Shopify-Webhook-Id", "late-customer")]
        )
        .await,
        200
    );
    stack.settle(SETTLE).await.unwrap();

    let erp_customer = stack
        .erp
        .document_by_external_id(DocumentKind::Customer, "customer:8001")
        .expect("customer created in the ERP");
    assert_eq!(erp_customer.text("name").as_deref(), Some("Grace Hopper"));
    let erp_order = stack
        .erp
        .order_by_external_id("order:5551001")
        .expect("order released to the ERP");
    assert_eq!(erp_order.customer.as_deref(), Some("8001"));
    assert_eq!(erp_order.lines.len(), 1);
    let released = stack.record("order", "5551001").await.unwrap().unwrap();
    assert!(released.outbox.is_empty(), "{:?}", released.outbox);
    let customer_record = stack.record("customer", "8001").await.unwrap().unwrap();
    assert!(customer_record.waiting.is_empty());
    stack.shutdown().await;
}

/// A product fieldsync has seen only on the storefront is not in the ERP yet, so an order with
/// it waits until the ERP creates the item. Lines keep their order, and a SKU fieldsync has never
/// seen does not hold the order back.
#[tokio::test]
async fn parked_order_released_when_product_arrives() {
    let stack = start_stack().await;
    let customer = item_and_customer(&stack).await;
    stack
        .storefront
        .create_product_as_user(NewProduct {
            title: "Green mug".into(),
            sku: "MUG-GREEN".into(),
            price: Decimal::from_str("13.00").unwrap(),
            inventory: 5,
            description_html: String::new(),
            status: ProductStatus::Draft,
            images: Vec::new(),
        })
        .unwrap();
    stack.settle(SETTLE).await.unwrap();

    let order = format!(
        r#"{{"id":5551002,"customer":{{"id":{}}},"status":"placed","line_items":[{{"sku":"MUG-GREEN","quantity":1,"price":"13.00"}},{{"sku":"MUG-RED","quantity":2,"price":"12.50"}},{{"sku":"MUG-BLUE","quantity":3,"price":"9.00"}}]}}"#,
        customer.id
    );
    let headers = [("X-Shopify-Webhook-Id", "order-with-new-product")];
    assert_eq!(
        post_shopify(&stack, "orders/create", order.as_bytes(), &headers).await,
        200
    );
    stack.settle(SETTLE).await.unwrap();

    assert!(
        stack.erp.order_by_external_id("order:5551002").is_none(),
        "the order waits"
    );
    let parked = stack.record("order", "5551002").await.unwrap().unwrap();
    assert_eq!(
        parked.outbox[0].parked_on,
        vec![RecordKey::new("demo", "product", "MUG-GREEN")]
    );

    stack.erp.upsert_item_as_user(
        "MUG-GREEN",
        ItemEdit {
            description: Some("Green mug".into()),
            unit_price: Some(Decimal::from_str("13.00").unwrap()),
            ..ItemEdit::default()
        },
    );
    stack.settle(SETTLE).await.unwrap();

    let erp_order = stack
        .erp
        .order_by_external_id("order:5551002")
        .expect("order released to the ERP");
    let skus: Vec<&str> = erp_order.lines.iter().map(|line| line.sku.as_str()).collect();
    assert_eq!(skus, ["MUG-GREEN", "MUG-RED", "MUG-BLUE"]);
    let product = stack.record("product", "MUG-GREEN").await.unwrap().unwrap();
    assert!(product.waiting.is_empty());
    assert_eq!(stack.dead_letters().await, 0);
    stack.shutdown().await;
}

#[tokio::test]
async fn disallowed_transition_rejected_without_write() {
    let stack = start_stack().await;
    let customer = item_and_customer(&stack).await;
    let quote = requested_quote(&stack, &customer).await;
    let writes_before = stack.erp.api_write_count();

    // The customer tries to convert a quote sales has not approved yet.
    stack
        .storefront
        .edit_document_as_user(DocumentKind::Quote, &quote.id, &[("status", "\"converted\"")])
        .unwrap();
    stack.settle(SETTLE).await.unwrap();

    assert_eq!(stack.erp.api_write_count(), writes_before, "no write to the ERP");
    assert_eq!(erp_quote(&stack, &quote).status().as_deref(), Some("requested"));
    let record = stack.record("quote", &quote.id).await.unwrap().unwrap();
    assert_eq!(record.status.as_deref(), Some("requested"));
    let decisions = stack.decisions("quote", &quote.id).await.unwrap();
    let rejected = decisions
        .iter()
        .rev()
        .find(|decision| decision.field.as_str() == "status")
        .unwrap();
    assert_eq!(rejected.outcome, Outcome::RejectedTransition);
    assert!(
        rejected.reason.contains("\"requested\" to \"converted\""),
        "{}",
        rejected.reason
    );
    assert!(rejected.targets.is_empty());
    stack.shutdown().await;
}

#[tokio::test]
async fn status_regression_is_dropped() {
    let stack = start_stack().await;
    let customer = item_and_customer(&stack).await;
    let customer_id = format!("\"{}\"", customer.id);
    let order = stack.storefront.create_document_as_user(
        DocumentKind::Order,
        &[
            ("name", "\"#1002\""),
            ("customer", customer_id.as_str()),
            ("line_items", r#"[{"sku":"MUG-RED","quantity":1,"price":"12.50"}]"#),
            ("total_price", "\"12.50\""),
            ("status", "\"placed\""),
        ],
    );
    stack.settle(SETTLE).await.unwrap();
    let sales_order = stack
        .erp
        .order_by_external_id(&format!("order:{}", order.id))
        .expect("order created in the ERP");
    let shipment = stack.erp.fulfil_order(&sales_order.number, "DHL", "JD0001").unwrap();
    stack.settle(SETTLE).await.unwrap();
    stack
        .erp
        .edit_document_as_user(DocumentKind::Shipment, &shipment.id, &[("status", "\"delivered\"")])
        .unwrap();
    stack.settle(SETTLE).await.unwrap();
    let external_id = format!("shipment:{}", shipment.id);
    let fulfillment = stack
        .storefront
        .document_by_external_id(DocumentKind::Shipment, &external_id)
        .expect("fulfillment created on the storefront");
    assert_eq!(fulfillment.status().as_deref(), Some("delivered"));

    // The "shipped" event arrives again under a new event id and a later time, as a sender's
    // replay after an outage would send it.
    let shipped = first_delivery(&stack.erp.deliveries(), "shipment.created");
    let mut event: serde_json::Value = serde_json::from_slice(&shipped.body).unwrap();
    event["id"] = "evt_replayed_shipped".into();
    event["occurred_at"] = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true).into();
    let writes_before = (stack.storefront.api_write_count(), stack.erp.api_write_count());
    assert_eq!(post_erp(&stack, &serde_json::to_vec(&event).unwrap()).await, 200);
    stack.settle(SETTLE).await.unwrap();

    let writes_after = (stack.storefront.api_write_count(), stack.erp.api_write_count());
    assert_eq!(writes_after, writes_before, "no write on either side");
    let fulfillment = stack
        .storefront
        .document_by_external_id(DocumentKind::Shipment, &external_id)
        .unwrap();
    assert_eq!(fulfillment.status().as_deref(), Some("delivered"));
    let record = stack.record("shipment", &shipment.id).await.unwrap().unwrap();
    assert_eq!(record.status.as_deref(), Some("delivered"));
    let decisions = stack.decisions("shipment", &shipment.id).await.unwrap();
    let late = decisions
        .iter()
        .find(|decision| decision.event_id == "evt_replayed_shipped" && decision.field.as_str() == "status")
        .unwrap();
    assert_eq!(late.outcome, Outcome::Regression);
    stack.shutdown().await;
}

#[tokio::test]
async fn manual_step_blocks_until_done() {
    let stack = start_stack().await;
    let customer = item_and_customer(&stack).await;
    let quote = requested_quote(&stack, &customer).await;
    let number = erp_quote(&stack, &quote).id;

    let tasks = stack.store.open_tasks("demo").await.unwrap();
    assert_eq!(tasks.len(), 1, "{tasks:?}");
    assert_eq!(tasks[0].task.title, format!("price and approve quote {number}"));
    assert_eq!(tasks[0].task.system.as_str(), "erp");

    // The storefront cannot take the ERP's step, nor skip it.
    for status in ["\"approved\"", "\"converted\""] {
        stack
            .storefront
            .edit_document_as_user(DocumentKind::Quote, &quote.id, &[("status", status)])
            .unwrap();
        stack.settle(SETTLE).await.unwrap();
        let record = stack.record("quote", &quote.id).await.unwrap().unwrap();
        assert_eq!(record.status.as_deref(), Some("requested"), "after {status}");
        assert_eq!(stack.store.open_tasks("demo").await.unwrap().len(), 1, "after {status}");
    }
    assert_eq!(erp_quote(&stack, &quote).status().as_deref(), Some("requested"));

    stack
        .erp
        .price_and_approve_quote(&number, Decimal::from_str("115.00").unwrap())
        .unwrap();
    stack.settle(SETTLE).await.unwrap();

    assert!(stack.store.open_tasks("demo").await.unwrap().is_empty());
    let draft = stack.storefront.document(DocumentKind::Quote, &quote.id).unwrap();
    assert_eq!(draft.status().as_deref(), Some("approved"));
    assert_eq!(draft.text("total_price").as_deref(), Some("115.00"));
    stack.shutdown().await;
}

#[tokio::test]
async fn convert_delivered_thrice_creates_one_order() {
    let stack = start_stack().await;
    let customer = item_and_customer(&stack).await;
    let quote = requested_quote(&stack, &customer).await;
    let number = erp_quote(&stack, &quote).id;
    stack
        .erp
        .price_and_approve_quote(&number, Decimal::from_str("115.00").unwrap())
        .unwrap();
    stack.settle(SETTLE).await.unwrap();

    let order = stack.storefront.convert_quote_to_order(&quote.id).unwrap();
    stack.settle(SETTLE).await.unwrap();
    let writes_before = stack.erp.api_write_count();

    // The same delivery again, then the event from a second subscription with its own
    // delivery id and no event id.
    let created = first_delivery(&stack.storefront.deliveries(), "orders/create");
    let webhook_id = header(&created, "X-Shopify-Webhook-Id");
    let event_id = header(&created, "X-Shopify-Event-Id");
    let same = [("X-Shopify-Webhook-Id", webhook_id), ("X-Shopify-Event-Id", event_id)];
    assert_eq!(post_shopify(&stack, "orders/create", &created.body, &same).await, 200);
    let other = [("X-Shopify-Webhook-Id", "second-subscription-delivery")];
    assert_eq!(post_shopify(&stack, "orders/create", &created.body, &other).await, 200);
    stack.settle(SETTLE).await.unwrap();

    let orders: Vec<_> = stack
        .erp
        .orders()
        .into_iter()
        .filter(|sales_order| sales_order.external_id == format!("order:{}", order.id))
        .collect();
    assert_eq!(orders.len(), 1);
    assert_eq!(orders[0].quote.as_deref(), Some(quote.id.as_str()));
    assert_eq!(orders[0].total, Decimal::from_str("115.00").unwrap());
    assert_eq!(stack.erp.orders().len(), 1);
    assert_eq!(
        stack.erp.api_write_count(),
        writes_before,
        "no write for the redeliveries"
    );
    assert_eq!(erp_quote(&stack, &quote).status().as_deref(), Some("converted"));
    stack.shutdown().await;
}
