//! The ERP connector against the ERP sandbox.

// Test helpers outside #[test] functions panic on setup failures too.
#![allow(clippy::unwrap_used)]

mod common;

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::Router;
use common::{header, hmac_base64, money, text, write, Receiver};
use fieldsync_connectors::erp::{ErpClient, ErpClientConfig};
use fieldsync_connectors::Secret;
use fieldsync_core::ports::{SystemClient, SystemError};
use fieldsync_core::{FieldValue, Wire, WriteKind};
use fieldsync_sandbox::erp::{ErpConfig, ErpHandle, ErpSandbox, ItemEdit, RateLimitConfig};
use rust_decimal::Decimal;
use serde_json::Value;

const TOKEN: &str = "erp-test-fake-token";
const SECRET: &str = "erp-test-fake-secret";

async fn sandbox(config: ErpConfig) -> ErpHandle {
    ErpSandbox::start(ErpConfig {
        api_token: TOKEN.to_owned(),
        webhook_secret: SECRET.to_owned(),
        ..config
    })
    .await
    .unwrap()
}

fn client(base_url: &str) -> ErpClient {
    ErpClient::new(ErpClientConfig::new("erp", base_url, Secret::new(TOKEN))).unwrap()
}

fn seed_item(erp: &ErpHandle) {
    erp.upsert_item_as_user(
        "MUG-RED",
        ItemEdit {
            description: Some("Red mug".to_owned()),
            unit_price: Some(Decimal::from_str("19.99").unwrap()),
            inventory: Some(12),
            ..ItemEdit::default()
        },
    );
}

fn decimal(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

#[tokio::test]
async fn item_update_patches_present_fields() {
    let erp = sandbox(ErpConfig::default()).await;
    seed_item(&erp);
    let update = write(
        "erp",
        "product",
        "MUG-RED",
        WriteKind::Update,
        None,
        vec![
            ("price", money("0.30")),
            ("meta_title", text("Red mug | Shop")),
            (
                "customer_prices",
                FieldValue::Json(Wire::parse(br#"[{"customer":"C-100","unit_price":17.5}]"#).unwrap()),
            ),
        ],
    );

    let receipt = client(&erp.base_url()).write(&update).await.unwrap();

    assert_eq!(receipt.target_id.as_deref(), Some("MUG-RED"));
    let item = erp.item("MUG-RED").unwrap();
    assert_eq!(item.unit_price, decimal("0.30"));
    assert_eq!(item.meta_title.as_deref(), Some("Red mug | Shop"));
    assert_eq!(item.customer_prices[0].unit_price, decimal("17.5"));
    assert_eq!(item.description, "Red mug");
    assert_eq!(item.inventory, 12);
    assert_eq!(item.version, 2);
    assert_eq!(erp.api_write_count(), 1);
}

#[tokio::test]
async fn missing_item_is_rejected() {
    let erp = sandbox(ErpConfig::default()).await;
    let update = write(
        "erp",
        "product",
        "NOPE",
        WriteKind::Create,
        None,
        vec![("price", money("1.00"))],
    );

    let error = client(&erp.base_url()).write(&update).await.unwrap_err();

    assert!(
        matches!(error, SystemError::Rejected { ref message, .. } if message.contains("not found")),
        "{error:?}"
    );
}

#[tokio::test]
async fn wrong_token_is_retryable_until_an_operator_fixes_it() {
    let erp = sandbox(ErpConfig::default()).await;
    seed_item(&erp);
    let client = ErpClient::new(ErpClientConfig::new("erp", erp.base_url(), Secret::new("wrong"))).unwrap();

    let error = client
        .write(&write(
            "erp",
            "product",
            "MUG-RED",
            WriteKind::Update,
            None,
            vec![("price", money("1.00"))],
        ))
        .await
        .unwrap_err();

    // The write stays queued; its retries reach the dead-letter queue for a redrive once the
    // token is fixed.
    assert!(matches!(error, SystemError::Unavailable { .. }), "{error:?}");
    assert!(error.is_retryable());
    assert!(format!("{:?}", error).contains("401"), "{error:?}");
}

/// A proxy in front of the ERP that edits the item as a user just before forwarding the first
/// `edits_before_patch` PATCH requests, so those PATCHes carry a stale `If-Match`.
#[derive(Clone)]
struct RacingProxy {
    erp: Arc<ErpHandle>,
    edits_left: Arc<AtomicU32>,
    patches: Arc<AtomicU32>,
}

impl RacingProxy {
    async fn start(erp: Arc<ErpHandle>, edits_before_patch: u32) -> (String, Self) {
        let proxy = Self {
            erp,
            edits_left: Arc::new(AtomicU32::new(edits_before_patch)),
            patches: Arc::new(AtomicU32::new(0)),
        };
        let router = Router::new().fallback(forward).with_state(proxy.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (url, proxy)
    }
}

async fn forward(State(proxy): State<RacingProxy>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let headers: HeaderMap = request.headers().clone();
    let body: Bytes = axum::body::to_bytes(request.into_body(), usize::MAX).await.unwrap();

    if method == Method::PATCH {
        proxy.patches.fetch_add(1, Ordering::SeqCst);
        let racing = proxy
            .edits_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1))
            .is_ok();
        if racing {
            let inventory = proxy.erp.item("MUG-RED").unwrap().inventory + 1;
            proxy.erp.upsert_item_as_user(
                "MUG-RED",
                ItemEdit {
                    inventory: Some(inventory),
                    ..ItemEdit::default()
                },
            );
        }
    }

    let mut outgoing = reqwest::Client::new()
        .request(method, format!("{}{path}", proxy.erp.base_url()))
        .body(body.to_vec());
    for name in ["authorization", "if-match", "content-type"] {
        if let Some(value) = headers.get(name) {
            outgoing = outgoing.header(name, value.to_str().unwrap());
        }
    }
    let response = outgoing.send().await.unwrap();
    let mut builder = Response::builder().status(StatusCode::from_u16(response.status().as_u16()).unwrap());
    for name in ["etag", "content-type", "retry-after"] {
        if let Some(value) = response.headers().get(name) {
            builder = builder.header(name, value.to_str().unwrap());
        }
    }
    builder.body(Body::from(response.bytes().await.unwrap())).unwrap()
}

#[tokio::test]
async fn stale_if_match_is_retried() {
    let erp = Arc::new(sandbox(ErpConfig::default()).await);
    seed_item(&erp);
    let (proxy_url, proxy) = RacingProxy::start(Arc::clone(&erp), 1).await;
    let update = write(
        "erp",
        "product",
        "MUG-RED",
        WriteKind::Update,
        None,
        vec![("price", money("24.00"))],
    );

    client(&proxy_url).write(&update).await.unwrap();

    assert_eq!(proxy.patches.load(Ordering::SeqCst), 2);
    let item = erp.item("MUG-RED").unwrap();
    assert_eq!(item.unit_price, decimal("24.00"));
    assert_eq!(item.inventory, 13, "the user's concurrent edit is kept");
    assert_eq!(item.version, 3);
}

#[tokio::test]
async fn endless_conflicts_end_in_conflict() {
    let erp = Arc::new(sandbox(ErpConfig::default()).await);
    seed_item(&erp);
    let (proxy_url, proxy) = RacingProxy::start(Arc::clone(&erp), u32::MAX).await;
    let update = write(
        "erp",
        "product",
        "MUG-RED",
        WriteKind::Update,
        None,
        vec![("price", money("24.00"))],
    );

    let error = client(&proxy_url).write(&update).await.unwrap_err();

    assert!(matches!(error, SystemError::Conflict { .. }), "{error:?}");
    assert_eq!(proxy.patches.load(Ordering::SeqCst), 3);
    assert_eq!(erp.item("MUG-RED").unwrap().unit_price, decimal("19.99"));
}

#[tokio::test]
async fn order_upsert_is_idempotent() {
    let erp = sandbox(ErpConfig::default()).await;
    let client = client(&erp.base_url());
    let lines = Wire::parse(br#"[{"sku":"MUG-RED","quantity":2,"unit_price":"21.25"}]"#).unwrap();
    let create = write(
        "erp",
        "order",
        "5550001",
        WriteKind::Create,
        None,
        vec![
            ("number", text("#1001")),
            ("email", text("ana@example.com")),
            ("total", money("42.50")),
            ("financial_status", text("pending")),
            ("lines", FieldValue::Json(lines)),
        ],
    );
    let update = write(
        "erp",
        "order",
        "5550001",
        WriteKind::Update,
        None,
        vec![("financial_status", text("paid")), ("note", text("Gift wrap"))],
    );

    let first = client.write(&create).await.unwrap();
    let again = client.write(&create).await.unwrap();
    let updated = client.write(&update).await.unwrap();

    assert_eq!(first, again);
    assert_eq!(first, updated);
    let orders = erp.orders();
    assert_eq!(orders.len(), 1);
    let order = &orders[0];
    assert_eq!(first.target_id.as_deref(), Some(order.number.as_str()));
    assert_eq!(order.external_id, "order:5550001");
    assert_eq!(order.reference.as_deref(), Some("#1001"));
    assert_eq!(order.total, decimal("42.50"));
    assert_eq!(order.financial_status.as_deref(), Some("paid"));
    assert_eq!(order.note.as_deref(), Some("Gift wrap"));
    assert_eq!(order.lines[0].unit_price, decimal("21.25"));
    assert_eq!(order.version, 2, "the repeated create changed nothing");
}

#[tokio::test]
async fn rate_limit_is_rate_limited_with_retry_after() {
    let erp = sandbox(ErpConfig {
        rate_limit: RateLimitConfig {
            burst_requests: 1,
            refill_requests_per_sec: 0.25,
        },
        ..ErpConfig::default()
    })
    .await;
    seed_item(&erp);

    let error = client(&erp.base_url())
        .write(&write(
            "erp",
            "product",
            "MUG-RED",
            WriteKind::Update,
            None,
            vec![("price", money("1.00"))],
        ))
        .await
        .unwrap_err();

    assert!(
        matches!(error, SystemError::RateLimited { retry_after: Some(wait), .. } if wait == Duration::from_secs(4)),
        "{error:?}"
    );
    assert_eq!(erp.item("MUG-RED").unwrap().unit_price, decimal("19.99"));
}

#[tokio::test]
async fn forced_429_is_rate_limited() {
    let erp = sandbox(ErpConfig::default()).await;
    seed_item(&erp);
    erp.force_http_429(1, 9);

    let error = client(&erp.base_url())
        .write(&write(
            "erp",
            "product",
            "MUG-RED",
            WriteKind::Update,
            None,
            vec![("price", money("1.00"))],
        ))
        .await
        .unwrap_err();

    assert!(
        matches!(error, SystemError::RateLimited { retry_after: Some(wait), .. } if wait == Duration::from_secs(9)),
        "{error:?}"
    );
}

#[tokio::test]
async fn webhooks_are_signed_with_exact_money() {
    let receiver = Receiver::start(1).await;
    let erp = sandbox(ErpConfig {
        webhook_url: Some(receiver.url.clone()),
        ..ErpConfig::default()
    })
    .await;
    seed_item(&erp);
    client(&erp.base_url())
        .write(&write(
            "erp",
            "product",
            "MUG-RED",
            WriteKind::Update,
            None,
            vec![("price", money("0.10"))],
        ))
        .await
        .unwrap();
    erp.wait_for_deliveries_idle().await;

    let received = receiver.received();
    assert_eq!(
        received.len(),
        3,
        "item.created failed once and was retried, then item.updated"
    );
    for request in &received {
        let timestamp = header(&request.headers, "X-Fieldsync-Timestamp");
        let expected = format!(
            "v1={}",
            hmac_base64(SECRET, &[timestamp.as_bytes(), b".", &request.body])
        );
        assert_eq!(header(&request.headers, "X-Fieldsync-Signature"), expected);
        let payload: Value = serde_json::from_slice(&request.body).unwrap();
        assert_eq!(payload["id"], header(&request.headers, "X-Fieldsync-Event-Id"));
        assert!(payload["occurred_at"].as_str().unwrap().ends_with('Z'));
    }
    let of_type = |event_type: &str| -> Vec<&common::Received> {
        received
            .iter()
            .filter(|request| std::str::from_utf8(&request.body).unwrap().contains(event_type))
            .collect()
    };
    let created = of_type(r#""type":"item.created""#);
    assert_eq!(created.len(), 2);
    assert_eq!(
        header(&created[0].headers, "X-Fieldsync-Event-Id"),
        header(&created[1].headers, "X-Fieldsync-Event-Id")
    );
    assert_eq!(created[0].body, created[1].body);
    let updated = of_type(r#""type":"item.updated""#);
    assert_eq!(updated.len(), 1);
    let update = std::str::from_utf8(&updated[0].body).unwrap();
    assert!(update.contains(r#""unit_price":0.1,"#), "{update}");
    assert!(update.contains(r#""version":2"#), "{update}");
}
