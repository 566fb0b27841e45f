//! The Business Central client against the sandbox for customers and sales orders: creates,
//! retried creates, 412 on a stale etag, and notices read back as canonical change sets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::Router;
use chrono::Utc;
use common::{money, text, write};
use fieldsync_connectors::business_central::{BusinessCentralClient, BusinessCentralConfig, Collection, Ensured};
use fieldsync_connectors::Secret;
use fieldsync_core::formats::business_central::BusinessCentralFormat;
use fieldsync_core::ingest::{InboundRequest, Normalized, WebhookFormat};
use fieldsync_core::ports::SystemClient;
use fieldsync_core::{ChangeSet, FieldName, FieldValue, Notice, NoticeKind, SystemId, Wire, WriteKind};
use fieldsync_sandbox::business_central::{
    BusinessCentralConfig as SandboxConfig, BusinessCentralHandle, BusinessCentralSandbox, CustomerEdit, ItemEdit,
};
use rust_decimal::Decimal;

const TOKEN: &str = "bc-test-fake-token";
const CLIENT_STATE: &str = "cs-test-fake";

fn decimal(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

async fn sandbox() -> BusinessCentralHandle {
    let sandbox = BusinessCentralSandbox::start(SandboxConfig {
        api_token: TOKEN.to_owned(),
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    for (number, price) in [("MUG-RED", "24.10"), ("MUG-BLUE", "19.90")] {
        sandbox.upsert_item_as_user(
            number,
            ItemEdit {
                display_name: Some(format!("Mug {number}")),
                unit_price: Some(decimal(price)),
                ..ItemEdit::default()
            },
        );
    }
    sandbox
}

fn client(base_url: &str, company_id: &str) -> BusinessCentralClient {
    let config = BusinessCentralConfig::new("erp", "demo", base_url, company_id, Secret::new(TOKEN));
    BusinessCentralClient::new(config).unwrap()
}

fn customer_write(kind: WriteKind, target_id: Option<&str>, name: &str) -> fieldsync_core::OutboundWrite {
    write(
        "erp",
        "customer",
        "7001",
        kind,
        target_id,
        vec![("name", text(name)), ("email", text("ada@example.com"))],
    )
}

fn order_write() -> fieldsync_core::OutboundWrite {
    let lines = Wire::parse(
        br#"[{"sku":"MUG-RED","quantity":2,"unit_price":"24.10"},{"sku":"MUG-BLUE","quantity":1,"unit_price":"18.00"}]"#,
    )
    .unwrap();
    write(
        "erp",
        "order",
        "5001",
        WriteKind::Create,
        None,
        vec![
            ("number", text("#1001")),
            ("email", text("ada@example.com")),
            ("customer", text("7001")),
            ("lines", FieldValue::Json(lines)),
            ("total", money("66.20")),
            ("financial_status", text("paid")),
            ("status", text("placed")),
        ],
    )
}

fn notice(resource: String, kind: NoticeKind, entity: &str) -> Notice {
    Notice {
        integration: "demo".to_owned(),
        source: SystemId::new("erp"),
        entity: entity.into(),
        resource,
        kind,
        event_id: "bc:test".to_owned(),
        occurred_at: Utc::now(),
        received_at: Utc::now(),
    }
}

fn field<'a>(change: &'a ChangeSet, name: &str) -> &'a Wire {
    change
        .fields
        .get(&FieldName::new(name))
        .unwrap_or_else(|| panic!("field {name} missing from {change:?}"))
}

#[tokio::test]
async fn customer_then_order_with_two_lines() {
    let sandbox = sandbox().await;
    let client = client(&sandbox.base_url(), sandbox.company_id());

    let customer_receipt = client
        .write(&customer_write(WriteKind::Create, None, "Ada Lovelace"))
        .await
        .unwrap();
    let order_receipt = client.write(&order_write()).await.unwrap();

    let customer = sandbox.customer("7001").unwrap();
    assert_eq!(customer_receipt.target_id.as_deref(), Some(customer.id.as_str()));
    assert_eq!(customer.display_name, "Ada Lovelace");
    assert_eq!(customer.email, "ada@example.com");

    let order = sandbox.sales_order_by_external("5001").unwrap();
    assert_eq!(order_receipt.target_id.as_deref(), Some(order.id.as_str()));
    assert_eq!(order.customer_number, "7001");
    assert_eq!(order.customer_id, customer.id);
    assert_eq!(order.email, "ada@example.com");
    assert_eq!(order.lines.len(), 2);
    assert_eq!(order.lines[0].line_object_number, "MUG-RED");
    assert_eq!(order.lines[0].quantity, decimal("2"));
    assert_eq!(order.lines[0].unit_price.to_string(), "24.10");
    assert_eq!(order.lines[1].line_object_number, "MUG-BLUE");
    assert_eq!(order.lines[1].unit_price.to_string(), "18.00");
    assert_eq!(order.total(), decimal("66.20"));
}

#[tokio::test]
async fn order_without_customer_is_rejected() {
    let sandbox = sandbox().await;
    let client = client(&sandbox.base_url(), sandbox.company_id());
    let mut order = order_write();
    order.fields.remove(&FieldName::new("customer"));

    let error = client.write(&order).await.unwrap_err();

    assert!(!error.is_retryable(), "{error:?}");
    assert!(sandbox.sales_orders().is_empty());
}

#[tokio::test]
async fn retried_create_finds_first_one() {
    let sandbox = sandbox().await;
    let client = client(&sandbox.base_url(), sandbox.company_id());

    let first_customer = client
        .write(&customer_write(WriteKind::Create, None, "Ada Lovelace"))
        .await
        .unwrap();
    let second_customer = client
        .write(&customer_write(WriteKind::Create, None, "Ada Lovelace"))
        .await
        .unwrap();
    let first_order = client.write(&order_write()).await.unwrap();
    let second_order = client.write(&order_write()).await.unwrap();

    assert_eq!(first_customer.target_id, second_customer.target_id);
    assert_eq!(sandbox.customers().len(), 1);
    assert_eq!(first_order.target_id, second_order.target_id);
    assert_eq!(sandbox.sales_orders().len(), 1);
    assert_eq!(sandbox.sales_orders()[0].lines.len(), 2);
}

#[tokio::test]
async fn customer_create_finds_existing_email() {
    let sandbox = sandbox().await;
    let client = client(&sandbox.base_url(), sandbox.company_id());
    let existing = sandbox.upsert_customer_as_user(
        "C00042",
        CustomerEdit {
            display_name: Some("A. Lovelace".to_owned()),
            email: Some("ada@example.com".to_owned()),
            ..CustomerEdit::default()
        },
    );

    let receipt = client
        .write(&customer_write(WriteKind::Create, None, "Ada Lovelace"))
        .await
        .unwrap();

    assert_eq!(receipt.target_id.as_deref(), Some(existing.id.as_str()));
    assert_eq!(sandbox.customers().len(), 1);
    assert_eq!(sandbox.customer("C00042").unwrap().display_name, "Ada Lovelace");
}

#[tokio::test]
async fn changed_lines_of_existing_order_are_rejected() {
    let sandbox = sandbox().await;
    let client = client(&sandbox.base_url(), sandbox.company_id());
    client
        .write(&customer_write(WriteKind::Create, None, "Ada"))
        .await
        .unwrap();
    client.write(&order_write()).await.unwrap();
    let mut update = order_write();
    update.kind = WriteKind::Update;
    update.fields.insert(
        FieldName::new("lines"),
        FieldValue::Json(Wire::parse(br#"[{"sku":"MUG-RED","quantity":5,"unit_price":"24.10"}]"#).unwrap()),
    );

    let error = client.write(&update).await.unwrap_err();

    assert!(!error.is_retryable(), "{error:?}");
    assert!(error.to_string().contains("lines"), "{error}");
    assert_eq!(sandbox.sales_orders()[0].lines.len(), 2);
}

/// The state of a proxy that runs `before_first_patch` once, before it forwards the first PATCH,
/// and records the status of every PATCH.
#[derive(Clone)]
struct Proxy {
    target: String,
    http: reqwest::Client,
    before_first_patch: Arc<dyn Fn() + Send + Sync>,
    patches: Arc<AtomicU32>,
    patch_statuses: Arc<Mutex<Vec<u16>>>,
}

async fn forward(State(proxy): State<Proxy>, request: Request) -> Response {
    let method = request.method().clone();
    let path_and_query = request
        .uri()
        .path_and_query()
        .map(|value| value.as_str().to_owned())
        .unwrap_or_default();
    let headers = request.headers().clone();
    let body = axum::body::to_bytes(request.into_body(), usize::MAX).await.unwrap();
    let is_patch = method == axum::http::Method::PATCH;
    if is_patch && proxy.patches.fetch_add(1, Ordering::SeqCst) == 0 {
        (proxy.before_first_patch)();
    }
    let mut outgoing = proxy
        .http
        .request(method, format!("{}{path_and_query}", proxy.target))
        .body(body.to_vec());
    for name in ["authorization", "if-match", "content-type"] {
        if let Some(value) = headers.get(name) {
            outgoing = outgoing.header(name, value.to_str().unwrap());
        }
    }
    let reply = outgoing.send().await.unwrap();
    let status = reply.status().as_u16();
    if is_patch {
        proxy.patch_statuses.lock().unwrap().push(status);
    }
    let bytes = reply.bytes().await.unwrap();
    Response::builder().status(status).body(Body::from(bytes)).unwrap()
}

async fn start_proxy(proxy: Proxy) -> String {
    let router = Router::new().fallback(forward).with_state(proxy);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    url
}

#[tokio::test]
async fn stale_etag_gets_412_and_is_read_again() {
    let sandbox = Arc::new(sandbox().await);
    let created = BusinessCentralClient::new(BusinessCentralConfig::new(
        "erp",
        "demo",
        sandbox.base_url(),
        sandbox.company_id(),
        Secret::new(TOKEN),
    ))
    .unwrap()
    .write(&customer_write(WriteKind::Create, None, "Ada"))
    .await
    .unwrap();
    let user_edit = {
        let sandbox = Arc::clone(&sandbox);
        move || {
            sandbox.upsert_customer_as_user(
                "7001",
                CustomerEdit {
                    phone_number: Some("+44 20 7946 0000".to_owned()),
                    ..CustomerEdit::default()
                },
            );
        }
    };
    let statuses = Arc::new(Mutex::new(Vec::new()));
    let proxy_url = start_proxy(Proxy {
        target: sandbox.base_url(),
        http: reqwest::Client::new(),
        before_first_patch: Arc::new(user_edit),
        patches: Arc::new(AtomicU32::new(0)),
        patch_statuses: Arc::clone(&statuses),
    })
    .await;
    let client = client(&proxy_url, sandbox.company_id());

    let receipt = client
        .write(&customer_write(
            WriteKind::Update,
            created.target_id.as_deref(),
            "Ada Lovelace",
        ))
        .await
        .unwrap();

    assert_eq!(receipt.target_id, created.target_id);
    assert_eq!(*statuses.lock().unwrap(), vec![412, 200]);
    let customer = sandbox.customer("7001").unwrap();
    assert_eq!(customer.display_name, "Ada Lovelace");
    assert_eq!(customer.phone_number, "+44 20 7946 0000");
}

#[tokio::test]
async fn order_notice_fetch_returns_canonical_lines() {
    let sandbox = sandbox().await;
    let client = client(&sandbox.base_url(), sandbox.company_id());
    client
        .write(&customer_write(WriteKind::Create, None, "Ada"))
        .await
        .unwrap();
    let receipt = client.write(&order_write()).await.unwrap();
    let resource = format!(
        "api/v2.0/companies({})/salesOrders({})",
        sandbox.company_id(),
        receipt.target_id.unwrap()
    );

    let changes = client
        .fetch(&notice(resource.clone(), NoticeKind::Created, "order"))
        .await
        .unwrap();

    assert_eq!(changes.len(), 1);
    let change = &changes[0];
    assert_eq!(change.record.key, "5001");
    assert_eq!(change.record.entity.as_str(), "order");
    assert_eq!(field(change, "customer"), &Wire::Text("7001".to_owned()));
    assert_eq!(field(change, "email"), &Wire::Text("ada@example.com".to_owned()));
    let expected_lines = Wire::parse(
        br#"[{"sku":"MUG-RED","quantity":2,"unit_price":"24.1"},{"sku":"MUG-BLUE","quantity":1,"unit_price":"18"}]"#,
    )
    .unwrap();
    assert_eq!(field(change, "lines"), &expected_lines);
    assert!(!change.fields.contains_key(&FieldName::new("status")));

    let number = sandbox.sales_order_by_external("5001").unwrap().number;
    sandbox.ship_order_as_user(&number).unwrap();
    let shipped = client
        .fetch(&notice(resource.clone(), NoticeKind::Updated, "order"))
        .await
        .unwrap();
    assert_eq!(field(&shipped[0], "status"), &Wire::Text("fulfilled".to_owned()));

    // Query options a forged notice appends are not sent, so the read neither changes nor fails.
    let forged = format!("{resource}?$expand=@127.0.0.1:18999&$select=number");
    let read = client
        .fetch(&notice(forged, NoticeKind::Updated, "order"))
        .await
        .unwrap();
    assert_eq!(field(&read[0], "lines"), &expected_lines);
}

#[tokio::test]
async fn customer_collection_notice_reads_changed_customers() {
    let sandbox = sandbox().await;
    let client = client(&sandbox.base_url(), sandbox.company_id());
    client
        .write(&customer_write(WriteKind::Create, None, "Ada"))
        .await
        .unwrap();
    let resource = client.collection_resource(Collection::Customers);

    let changes = client
        .fetch(&notice(resource, NoticeKind::Collection, "customer"))
        .await
        .unwrap();

    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].record.key, "7001");
    assert_eq!(field(&changes[0], "name"), &Wire::Text("Ada".to_owned()));
}

/// A notification endpoint that returns the validation token of a handshake and records
/// notification bodies.
#[derive(Clone, Default)]
struct Endpoint {
    bodies: Arc<Mutex<Vec<Bytes>>>,
}

async fn endpoint(
    State(endpoint): State<Endpoint>,
    Query(query): Query<std::collections::BTreeMap<String, String>>,
    body: Bytes,
) -> (StatusCode, String) {
    if let Some(token) = query.get("validationToken") {
        return (StatusCode::OK, token.clone());
    }
    endpoint.bodies.lock().unwrap().push(body);
    (StatusCode::ACCEPTED, String::new())
}

#[tokio::test]
async fn sales_order_subscription_notifies_and_fetch_reads_order() {
    let sandbox = sandbox().await;
    let client = client(&sandbox.base_url(), sandbox.company_id());
    let state = Endpoint::default();
    let router = Router::new().route("/bc", post(endpoint)).with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bc", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let ensured = client
        .ensure_collection_subscription(Collection::SalesOrders, &url, CLIENT_STATE)
        .await
        .unwrap();
    assert!(matches!(ensured, Ensured::Created(_)), "{ensured:?}");
    let renewed = client
        .ensure_collection_subscription(Collection::SalesOrders, &url, CLIENT_STATE)
        .await
        .unwrap();
    assert!(matches!(renewed, Ensured::Renewed(_)), "{renewed:?}");
    assert!(client.items_resource().ends_with("/items"));

    client
        .write(&customer_write(WriteKind::Create, None, "Ada"))
        .await
        .unwrap();
    client.write(&order_write()).await.unwrap();
    sandbox.wait_for_deliveries_idle().await;

    // The customer change is not notified: the subscription covers sales orders only.
    let bodies = state.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1);
    let format = BusinessCentralFormat::new("demo", SystemId::new("erp"), vec![Secret::new(CLIENT_STATE)]);
    let request = InboundRequest {
        headers: Default::default(),
        query: Default::default(),
        body: bodies[0].to_vec(),
        received_at: Utc::now(),
    };
    format.verify(&request).unwrap();
    let Normalized::Notices(notices) = format.normalize(&request).unwrap() else {
        panic!("expected notices");
    };
    assert_eq!(notices.len(), 1);
    assert_eq!(notices[0].entity.as_str(), "order");
    assert_eq!(notices[0].kind, NoticeKind::Created);

    let changes = client.fetch(&notices[0]).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].record.key, "5001");
    assert_eq!(field(&changes[0], "lines").items().len(), 2);
}
