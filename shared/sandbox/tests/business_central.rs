#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Black-box tests of the Business Central sandbox over HTTP, with a small receiver on
//! `127.0.0.1` playing the subscriber.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use chrono::{DateTime, Utc};
use fieldsync_sandbox::business_central::{
    BusinessCentralConfig, BusinessCentralHandle, BusinessCentralSandbox, ItemEdit, RateLimitConfig,
};
use fieldsync_sandbox::RetryPolicy;
use rust_decimal::Decimal;
use serde_json::{json, Value};

const TOKEN: &str = "bc-sandbox-fake-token";

fn dec(text: &str) -> Decimal {
    Decimal::from_str(text).unwrap()
}

fn quick_retries() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 3,
        initial_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(20),
        attempt_timeout: Duration::from_secs(2),
    }
}

async fn start(config: BusinessCentralConfig) -> BusinessCentralHandle {
    BusinessCentralSandbox::start(BusinessCentralConfig {
        retry: quick_retries(),
        ..config
    })
    .await
    .unwrap()
}

/// The test receiver's response to the validation handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandshakeMode {
    Echo,
    WrongToken,
    ServerError,
    SlowEcho,
}

/// A subscriber on 127.0.0.1 that responds to handshakes and records notification bodies.
#[derive(Debug)]
struct Receiver {
    url: String,
    handshake_mode: Mutex<HandshakeMode>,
    handshakes: AtomicUsize,
    notification_status: AtomicU16,
    notifications: Mutex<Vec<Value>>,
}

impl Receiver {
    fn set_handshake(&self, mode: HandshakeMode) {
        *self.handshake_mode.lock().unwrap() = mode;
    }

    fn notifications(&self) -> Vec<Value> {
        self.notifications.lock().unwrap().clone()
    }

    /// Returns every notification entry received, in order.
    fn entries(&self) -> Vec<Value> {
        self.notifications()
            .iter()
            .flat_map(|body| body["value"].as_array().unwrap().clone())
            .collect()
    }
}

async fn receive(
    State(receiver): State<Arc<Receiver>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    if let Some(token) = query.get("validationToken") {
        receiver.handshakes.fetch_add(1, Ordering::SeqCst);
        assert!(body.is_empty(), "a handshake has an empty body");
        let mode = *receiver.handshake_mode.lock().unwrap();
        return match mode {
            HandshakeMode::Echo => ([(header::CONTENT_TYPE, "text/plain")], token.clone()).into_response(),
            HandshakeMode::SlowEcho => {
                tokio::time::sleep(Duration::from_millis(400)).await;
                ([(header::CONTENT_TYPE, "text/plain")], token.clone()).into_response()
            }
            HandshakeMode::WrongToken => "not-the-token".into_response(),
            HandshakeMode::ServerError => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        };
    }
    let body: Value = serde_json::from_slice(&body).unwrap();
    receiver.notifications.lock().unwrap().push(body);
    let status = receiver.notification_status.load(Ordering::SeqCst);
    StatusCode::from_u16(status).unwrap().into_response()
}

async fn start_receiver() -> Arc<Receiver> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let receiver = Arc::new(Receiver {
        url: format!("http://{address}/hooks/bc"),
        handshake_mode: Mutex::new(HandshakeMode::Echo),
        handshakes: AtomicUsize::new(0),
        notification_status: AtomicU16::new(202),
        notifications: Mutex::new(Vec::new()),
    });
    let app = Router::new()
        .route("/hooks/bc", post(receive))
        .with_state(Arc::clone(&receiver));
    tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    receiver
}

fn client() -> reqwest::Client {
    reqwest::Client::new()
}

fn items_url(sandbox: &BusinessCentralHandle) -> String {
    format!("{}/companies({})/items", sandbox.api_url(), sandbox.company_id())
}

async fn get_json(url: &str) -> (StatusCode, Value) {
    let response = client().get(url).bearer_auth(TOKEN).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn send_json(
    method: reqwest::Method,
    url: &str,
    if_match: Option<&str>,
    body: &str,
) -> (StatusCode, reqwest::header::HeaderMap, String) {
    let mut request = client()
        .request(method, url)
        .bearer_auth(TOKEN)
        .header("Content-Type", "application/json")
        .body(body.to_owned());
    if let Some(tag) = if_match {
        request = request.header("If-Match", tag);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn error_code(body: &str) -> String {
    let json: Value = serde_json::from_str(body).unwrap();
    json["error"]["code"].as_str().unwrap().to_owned()
}

async fn subscribe(sandbox: &BusinessCentralHandle, receiver: &Receiver) -> Value {
    let body = json!({
        "notificationUrl": receiver.url,
        "resource": sandbox.items_resource(),
        "clientState": "cs-secret-1",
    });
    let url = format!("{}/subscriptions", sandbox.api_url());
    let (status, _, text) = send_json(reqwest::Method::POST, &url, None, &body.to_string()).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    serde_json::from_str(&text).unwrap()
}

fn subscription_url(sandbox: &BusinessCentralHandle, id: &str) -> String {
    format!("{}/subscriptions('{id}')", sandbox.api_url())
}

#[tokio::test]
async fn item_patch_checks_if_match() {
    let sandbox = start(BusinessCentralConfig::default()).await;
    let item = sandbox.upsert_item_as_user(
        "MUG-RED",
        ItemEdit {
            display_name: Some("Mug, red".to_owned()),
            unit_price: Some(dec("24.00")),
            ..ItemEdit::default()
        },
    );
    let url = format!("{}({})", items_url(&sandbox), item.id);

    let (status, read) = get_json(&url).await;
    assert_eq!(status, StatusCode::OK);
    let etag = read["@odata.etag"].as_str().unwrap().to_owned();
    assert!(etag.starts_with("W/\""));
    assert_eq!(read["number"], "MUG-RED");
    assert_eq!(read["id"], item.id.as_str());

    let (status, _, body) = send_json(reqwest::Method::PATCH, &url, None, r#"{"unitPrice": 25.10}"#).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "BadRequest_InvalidToken");

    let (status, _, body) = send_json(
        reqwest::Method::PATCH,
        &url,
        Some("W/\"stale\""),
        r#"{"unitPrice": 25.10}"#,
    )
    .await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);
    assert_eq!(error_code(&body), "Request_EntityChanged");

    let (status, headers, body) = send_json(reqwest::Method::PATCH, &url, Some(&etag), r#"{"unitPrice": 25.10}"#).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(body.contains(r#""unitPrice":25.1"#), "{body}");
    let updated: Value = serde_json::from_str(&body).unwrap();
    let new_etag = updated["@odata.etag"].as_str().unwrap();
    assert_ne!(new_etag, etag);
    assert_eq!(headers["etag"].to_str().unwrap(), new_etag);
    assert_eq!(sandbox.item("MUG-RED").unwrap().unit_price, dec("25.10"));

    let (status, _, _) = send_json(reqwest::Method::PATCH, &url, Some(&etag), r#"{"unitPrice": 26}"#).await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);

    let (status, _, _) = send_json(reqwest::Method::PATCH, &url, Some("*"), r#"{"displayName": "Red mug"}"#).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn item_patch_rejects_bad_members() {
    let sandbox = start(BusinessCentralConfig::default()).await;
    let item = sandbox.upsert_item_as_user("MUG-RED", ItemEdit::default());
    let url = format!("{}({})", items_url(&sandbox), item.id);
    let cases = [
        (r#"{"inventory": 5}"#, "BadRequest_InvalidOperation"),
        (
            r#"{"lastModifiedDateTime": "2025-06-01T08:00:00Z"}"#,
            "BadRequest_InvalidOperation",
        ),
        (r#"{"unitPrice": "24.00"}"#, "BadRequest"),
        (r#"{"colour": "red"}"#, "BadRequest"),
        ("not json", "BadRequest"),
    ];
    for (body, code) in cases {
        let (status, _, text) = send_json(reqwest::Method::PATCH, &url, Some("*"), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(error_code(&text), code, "{body}");
    }
    assert_eq!(sandbox.item("MUG-RED").unwrap(), item);

    sandbox.set_inventory_as_user("MUG-RED", dec("12")).unwrap();
    let (_, read) = get_json(&url).await;
    assert_eq!(read["inventory"], json!(12));
}

#[tokio::test]
async fn item_get_unknown_is_404() {
    let sandbox = start(BusinessCentralConfig::default()).await;
    let url = format!("{}(0a1b2c3d-0000-4000-8000-000000000001)", items_url(&sandbox));
    let (status, body) = get_json(&url).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "BadRequest_NotFound");
}

#[tokio::test]
async fn item_post_creates_and_rejects_duplicate() {
    let sandbox = start(BusinessCentralConfig::default()).await;
    let body = r#"{"number": "MUG-BLUE", "displayName": "Mug, blue", "unitPrice": 19.990}"#;
    let (status, headers, text) = send_json(reqwest::Method::POST, &items_url(&sandbox), None, body).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    let id = created["id"].as_str().unwrap();
    assert_eq!(id.len(), 36);
    assert!(headers["location"].to_str().unwrap().ends_with(&format!("items({id})")));
    assert!(text.contains(r#""unitPrice":19.99"#), "{text}");
    let modified = DateTime::parse_from_rfc3339(created["lastModifiedDateTime"].as_str().unwrap()).unwrap();
    assert_eq!(modified.offset().local_minus_utc(), 0);
    assert!(created["lastModifiedDateTime"].as_str().unwrap().ends_with('Z'));

    let (status, _, text) = send_json(reqwest::Method::POST, &items_url(&sandbox), None, body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&text), "Internal_EntityWithSameKeyExists");

    let (status, _, _) = send_json(
        reqwest::Method::POST,
        &items_url(&sandbox),
        None,
        r#"{"displayName": "x"}"#,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let body = r#"{"number": "mug-green"}"#;
    let (status, _, text) = send_json(reqwest::Method::POST, &items_url(&sandbox), None, body).await;
    assert_eq!(status, StatusCode::CREATED, "{text}");
    let created: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(created["number"], "MUG-GREEN", "Code fields are stored in upper case");
    assert!(sandbox.item("mug-green").is_some());
}

#[tokio::test]
async fn items_filter_and_paging() {
    let sandbox = start(BusinessCentralConfig {
        page_size: 2,
        ..BusinessCentralConfig::default()
    })
    .await;
    for number in ["E-5", "A-1", "C-3", "B-2", "D-4"] {
        sandbox.upsert_item_as_user(number, ItemEdit::default());
    }

    let mut numbers = Vec::new();
    let mut next = Some(items_url(&sandbox));
    let mut pages = 0;
    while let Some(url) = next {
        let (status, page) = get_json(&url).await;
        assert_eq!(status, StatusCode::OK);
        let value = page["value"].as_array().unwrap();
        assert!(value.len() <= 2);
        numbers.extend(value.iter().map(|item| item["number"].as_str().unwrap().to_owned()));
        next = page["@odata.nextLink"].as_str().map(str::to_owned);
        if let Some(link) = &next {
            assert!(link.starts_with("http://127.0.0.1:"), "{link}");
            assert!(link.contains("$skiptoken="), "{link}");
        }
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(numbers, ["A-1", "B-2", "C-3", "D-4", "E-5"]);

    let url = format!("{}?$filter=number eq 'C-3'", items_url(&sandbox));
    let (_, page) = get_json(&url).await;
    assert_eq!(page["value"].as_array().unwrap().len(), 1);
    assert_eq!(page["value"][0]["number"], "C-3");
    assert!(page.get("@odata.nextLink").is_none());

    tokio::time::sleep(Duration::from_millis(5)).await;
    let since = Utc::now();
    tokio::time::sleep(Duration::from_millis(5)).await;
    for number in ["B-2", "D-4", "E-5"] {
        sandbox.set_price_as_user(number, dec("9.99")).unwrap();
    }
    let since = since.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    let url = format!("{}?$filter=lastModifiedDateTime gt {since}", items_url(&sandbox));
    let (_, first) = get_json(&url).await;
    let link = first["@odata.nextLink"].as_str().unwrap();
    let (_, second) = get_json(link).await;
    let changed: Vec<&str> = first["value"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second["value"].as_array().unwrap())
        .map(|item| item["number"].as_str().unwrap())
        .collect();
    assert_eq!(changed, ["B-2", "D-4", "E-5"]);

    let url = format!("{}?$filter=lastModifiedDateTime gt '{since}'", items_url(&sandbox));
    let (status, _) = get_json(&url).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn missing_token_is_401() {
    let sandbox = start(BusinessCentralConfig::default()).await;
    let response = client().get(items_url(&sandbox)).send().await.unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "Authentication_InvalidCredentials");

    let response = client()
        .get(items_url(&sandbox))
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    let state: Value = client()
        .get(format!("{}/_sandbox/state", sandbox.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(state["api_request_count"], 2);
}

#[tokio::test]
async fn rate_limit_answers_429_with_retry_after() {
    let sandbox = start(BusinessCentralConfig {
        rate_limit: RateLimitConfig {
            burst_requests: 2,
            refill_requests_per_sec: 0.25,
        },
        ..BusinessCentralConfig::default()
    })
    .await;
    for _ in 0..2 {
        let (status, _) = get_json(&items_url(&sandbox)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let response = client()
        .get(items_url(&sandbox))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=4).contains(&retry_after), "{retry_after}");
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["code"].is_string());
    assert_eq!(sandbox.throttled_count(), 1);
    assert_eq!(sandbox.api_request_count(), 3);
}

#[tokio::test]
async fn forced_429_sets_retry_after() {
    let sandbox = start(BusinessCentralConfig::default()).await;
    sandbox.force_http_429(1, 7);
    let response = client()
        .get(items_url(&sandbox))
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "7");
    let (status, _) = get_json(&items_url(&sandbox)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(sandbox.throttled_count(), 1);
}

#[tokio::test]
async fn concurrency_cap_answers_429() {
    let receiver = start_receiver().await;
    receiver.set_handshake(HandshakeMode::SlowEcho);
    let sandbox = start(BusinessCentralConfig {
        max_concurrent_requests: 1,
        ..BusinessCentralConfig::default()
    })
    .await;
    let slow = subscribe(&sandbox, &receiver);
    let other = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        client()
            .get(items_url(&sandbox))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
    };
    let (subscription, response) = tokio::join!(slow, other);
    assert!(subscription["subscriptionId"].is_string());
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    let (status, _) = get_json(&items_url(&sandbox)).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn subscription_handshake_succeeds() {
    let receiver = start_receiver().await;
    let sandbox = start(BusinessCentralConfig::default()).await;
    let before = Utc::now();
    let subscription = subscribe(&sandbox, &receiver).await;

    assert_eq!(receiver.handshakes.load(Ordering::SeqCst), 1);
    let id = subscription["subscriptionId"].as_str().unwrap();
    assert_eq!(id.len(), 32);
    assert_eq!(subscription["notificationUrl"], receiver.url.as_str());
    assert_eq!(subscription["resource"], sandbox.items_resource().as_str());
    assert_eq!(subscription["clientState"], "cs-secret-1");
    assert!(subscription["@odata.etag"].as_str().unwrap().starts_with("W/\""));
    let expiration: DateTime<Utc> = subscription["expirationDateTime"].as_str().unwrap().parse().unwrap();
    let lifetime = expiration - before;
    assert!(lifetime > chrono::TimeDelta::hours(71), "{lifetime}");
    assert!(lifetime <= chrono::TimeDelta::hours(72), "{lifetime}");

    let (status, read) = get_json(&subscription_url(&sandbox, id)).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(read["subscriptionId"], id);
    let (_, list) = get_json(&format!("{}/subscriptions", sandbox.api_url())).await;
    assert_eq!(list["value"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn subscription_handshake_failure_is_400() {
    let receiver = start_receiver().await;
    let sandbox = start(BusinessCentralConfig {
        handshake_timeout: Duration::from_millis(200),
        ..BusinessCentralConfig::default()
    })
    .await;
    let body = json!({"notificationUrl": receiver.url, "resource": sandbox.items_resource(), "clientState": "x"});
    let url = format!("{}/subscriptions", sandbox.api_url());
    for mode in [
        HandshakeMode::WrongToken,
        HandshakeMode::ServerError,
        HandshakeMode::SlowEcho,
    ] {
        receiver.set_handshake(mode);
        let (status, _, text) = send_json(reqwest::Method::POST, &url, None, &body.to_string()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{mode:?}: {text}");
        assert!(error_code(&text).starts_with("BadRequest"), "{text}");
    }
    assert!(sandbox.subscriptions().is_empty());

    let unsupported = json!({"notificationUrl": receiver.url, "resource": "/api/v2.0/companies(x)/customers"});
    let (status, _, _) = send_json(reqwest::Method::POST, &url, None, &unsupported.to_string()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn subscription_renewal_extends_expiration() {
    let receiver = start_receiver().await;
    let sandbox = start(BusinessCentralConfig {
        subscription_lifetime: Duration::from_secs(60),
        ..BusinessCentralConfig::default()
    })
    .await;
    let subscription = subscribe(&sandbox, &receiver).await;
    let id = subscription["subscriptionId"].as_str().unwrap();
    let etag = subscription["@odata.etag"].as_str().unwrap();
    let url = subscription_url(&sandbox, id);
    tokio::time::sleep(Duration::from_millis(1100)).await;

    let (status, _, text) = send_json(reqwest::Method::PATCH, &url, None, "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&text), "BadRequest_InvalidToken");

    let (status, _, text) = send_json(reqwest::Method::PATCH, &url, Some(etag), "{}").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let renewed: Value = serde_json::from_str(&text).unwrap();
    assert!(renewed["expirationDateTime"].as_str().unwrap() > subscription["expirationDateTime"].as_str().unwrap());
    assert_ne!(renewed["@odata.etag"], subscription["@odata.etag"]);
    assert_eq!(receiver.handshakes.load(Ordering::SeqCst), 2);

    let (status, _, _) = send_json(reqwest::Method::PATCH, &url, Some(etag), "{}").await;
    assert_eq!(status, StatusCode::PRECONDITION_FAILED);

    receiver.set_handshake(HandshakeMode::WrongToken);
    let new_etag = renewed["@odata.etag"].as_str().unwrap();
    let (status, _, _) = send_json(reqwest::Method::PATCH, &url, Some(new_etag), "{}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        sandbox.subscription(id).unwrap().etag(),
        new_etag,
        "a failed renewal changes nothing"
    );

    let (status, _, _) = send_json(reqwest::Method::DELETE, &url, None, "").await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, _) = get_json(&url).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn expired_subscription_is_gone() {
    let receiver = start_receiver().await;
    let sandbox = start(BusinessCentralConfig::default()).await;
    let subscription = subscribe(&sandbox, &receiver).await;
    let id = subscription["subscriptionId"].as_str().unwrap();
    sandbox.expire_subscription(id).unwrap();

    let url = subscription_url(&sandbox, id);
    let (status, _) = get_json(&url).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _, _) = send_json(reqwest::Method::PATCH, &url, Some("*"), "{}").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    sandbox.upsert_item_as_user("MUG-RED", ItemEdit::default());
    sandbox.wait_for_deliveries_idle().await;
    assert!(sandbox.deliveries().is_empty());
    assert!(receiver.notifications().is_empty());
}

#[tokio::test]
async fn api_patch_is_notified() {
    let receiver = start_receiver().await;
    let sandbox = start(BusinessCentralConfig::default()).await;
    let item = sandbox.upsert_item_as_user("MUG-RED", ItemEdit::default());
    let subscription = subscribe(&sandbox, &receiver).await;

    let url = format!("{}({})", items_url(&sandbox), item.id);
    let (status, _, _) = send_json(reqwest::Method::PATCH, &url, Some(&item.etag()), r#"{"unitPrice": 30}"#).await;
    assert_eq!(status, StatusCode::OK);
    sandbox.wait_for_deliveries_idle().await;

    let entries = receiver.entries();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["subscriptionId"], subscription["subscriptionId"]);
    assert_eq!(entry["clientState"], "cs-secret-1");
    assert_eq!(entry["changeType"], "updated");
    assert_eq!(entry["expirationDateTime"], subscription["expirationDateTime"]);
    assert_eq!(
        entry["resource"],
        format!("api/v2.0/companies({})/items({})", sandbox.company_id(), item.id).as_str()
    );
    let modified = entry["lastModifiedDateTime"].as_str().unwrap();
    assert_eq!(
        modified,
        sandbox
            .item("MUG-RED")
            .unwrap()
            .last_modified
            .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
    );

    let deliveries = sandbox.deliveries();
    assert_eq!(deliveries.len(), 1);
    assert!(deliveries[0].succeeded());
    assert_eq!(deliveries[0].header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn user_edits_are_notified() {
    let receiver = start_receiver().await;
    let sandbox = start(BusinessCentralConfig::default()).await;
    subscribe(&sandbox, &receiver).await;

    let created = sandbox.upsert_item_as_user("MUG-RED", ItemEdit::default());
    sandbox.wait_for_deliveries_idle().await;
    sandbox.set_price_as_user("MUG-RED", dec("24.00")).unwrap();
    sandbox.wait_for_deliveries_idle().await;
    sandbox.delete_item_as_user("MUG-RED").unwrap();
    sandbox.wait_for_deliveries_idle().await;

    let entries = receiver.entries();
    let kinds: Vec<&str> = entries
        .iter()
        .map(|entry| entry["changeType"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["created", "updated", "deleted"]);
    for entry in &entries {
        assert!(entry["resource"]
            .as_str()
            .unwrap()
            .ends_with(&format!("items({})", created.id)));
    }
    assert!(sandbox.set_price_as_user("MUG-RED", dec("1")).is_err());
}

#[tokio::test]
async fn batch_over_threshold_is_collection() {
    let receiver = start_receiver().await;
    let sandbox = start(BusinessCentralConfig {
        collection_threshold: 2,
        notification_delay: Duration::from_millis(300),
        ..BusinessCentralConfig::default()
    })
    .await;
    subscribe(&sandbox, &receiver).await;
    sandbox.upsert_item_as_user("OLD-1", ItemEdit::default());
    sandbox.wait_for_deliveries_idle().await;
    assert_eq!(receiver.entries().len(), 1);

    tokio::time::sleep(Duration::from_millis(5)).await;
    for number in ["A-1", "B-2", "C-3"] {
        sandbox.upsert_item_as_user(number, ItemEdit::default());
    }
    sandbox.set_price_as_user("A-1", dec("2")).unwrap();
    sandbox.wait_for_deliveries_idle().await;

    let bodies = receiver.notifications();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    let entries = bodies[1]["value"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0]["changeType"], "collection");
    let resource = entries[0]["resource"].as_str().unwrap();
    let prefix = format!("{}?$filter=lastModifiedDateTime%20gt%20", sandbox.items_resource());
    assert!(resource.starts_with(&prefix), "{resource}");

    let (status, page) = get_json(&format!("{}{resource}", sandbox.base_url())).await;
    assert_eq!(status, StatusCode::OK);
    let numbers: Vec<&str> = page["value"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| item["number"].as_str().unwrap())
        .collect();
    assert_eq!(numbers, ["A-1", "B-2", "C-3"]);

    sandbox.upsert_item_as_user("D-4", ItemEdit::default());
    sandbox.set_price_as_user("D-4", dec("3")).unwrap();
    sandbox.wait_for_deliveries_idle().await;
    let last = receiver.notifications().pop().unwrap();
    assert_eq!(last["value"].as_array().unwrap().len(), 1);
    assert_eq!(last["value"][0]["changeType"], "created");
}

#[tokio::test]
async fn rejected_notification_deletes_subscription() {
    let receiver = start_receiver().await;
    let sandbox = start(BusinessCentralConfig::default()).await;
    let subscription = subscribe(&sandbox, &receiver).await;
    let id = subscription["subscriptionId"].as_str().unwrap();

    receiver.notification_status.store(503, Ordering::SeqCst);
    sandbox.upsert_item_as_user("MUG-RED", ItemEdit::default());
    sandbox.wait_for_deliveries_idle().await;
    assert_eq!(sandbox.deliveries().len(), 3, "5xx is retried up to max_attempts");
    assert!(sandbox.subscription(id).is_some(), "5xx keeps the subscription");

    receiver.notification_status.store(401, Ordering::SeqCst);
    sandbox.set_price_as_user("MUG-RED", dec("5")).unwrap();
    sandbox.wait_for_deliveries_idle().await;
    assert_eq!(sandbox.deliveries().len(), 4, "4xx is not retried");
    assert!(sandbox.subscription(id).is_none());
    let (status, _) = get_json(&subscription_url(&sandbox, id)).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    receiver.notification_status.store(202, Ordering::SeqCst);
    sandbox.set_price_as_user("MUG-RED", dec("6")).unwrap();
    sandbox.wait_for_deliveries_idle().await;
    assert_eq!(sandbox.deliveries().len(), 4);
}
