//! The Business Central sandbox's customers and sales orders over HTTP: deep insert, `$expand`,
//! `$filter`, `If-Match`, and notifications to the subscriptions of each collection.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use fieldsync_sandbox::business_central::{
    BusinessCentralConfig, BusinessCentralHandle, BusinessCentralSandbox, CustomerEdit, ItemEdit, OrderStatus,
};
use rust_decimal::Decimal;
use serde_json::{json, Value};

const TOKEN: &str = "bc-documents-fake-token";

async fn start() -> BusinessCentralHandle {
    let sandbox = BusinessCentralSandbox::start(BusinessCentralConfig {
        api_token: TOKEN.to_owned(),
        ..BusinessCentralConfig::default()
    })
    .await
    .unwrap();
    sandbox.upsert_item_as_user(
        "MUG-RED",
        ItemEdit {
            display_name: Some("Red mug".to_owned()),
            unit_price: Some(Decimal::from_str("24.10").unwrap()),
            ..ItemEdit::default()
        },
    );
    sandbox.upsert_customer_as_user(
        "C-1",
        CustomerEdit {
            display_name: Some("Ada Lovelace".to_owned()),
            email: Some("ada@example.com".to_owned()),
            ..CustomerEdit::default()
        },
    );
    sandbox
}

fn url(sandbox: &BusinessCentralHandle, path: &str) -> String {
    format!("{}/companies({}){path}", sandbox.api_url(), sandbox.company_id())
}

async fn send(method: reqwest::Method, url: &str, if_match: Option<&str>, body: Option<Value>) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, url).bearer_auth(TOKEN);
    if let Some(tag) = if_match {
        request = request.header("If-Match", tag);
    }
    if let Some(body) = body {
        request = request
            .header("Content-Type", "application/json")
            .body(body.to_string());
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

fn order_body() -> Value {
    json!({
        "externalDocumentNumber": "5001",
        "customerNumber": "C-1",
        "salesOrderLines": [
            {"lineType": "Item", "lineObjectNumber": "MUG-RED", "quantity": 2, "unitPrice": 22.5},
            {"lineType": "Item", "lineObjectNumber": "mug-red", "quantity": 1}
        ]
    })
}

#[tokio::test]
async fn deep_insert_creates_order_with_lines() {
    let sandbox = start().await;

    let (status, created) = send(
        reqwest::Method::POST,
        &url(&sandbox, "/salesOrders"),
        None,
        Some(order_body()),
    )
    .await;

    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert_eq!(created["customerNumber"], "C-1");
    assert_eq!(created["email"], "ada@example.com");
    assert_eq!(created["status"], "Open");
    assert!(created.get("salesOrderLines").is_none(), "lines only with $expand");
    let id = created["id"].as_str().unwrap();

    let (status, read) = send(
        reqwest::Method::GET,
        &url(&sandbox, &format!("/salesOrders({id})?$expand=salesOrderLines")),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let lines = read["salesOrderLines"].as_array().unwrap();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["sequence"], 10000);
    assert_eq!(lines[0]["lineObjectNumber"], "MUG-RED");
    assert_eq!(lines[1]["description"], "Red mug");
    let order = sandbox.sales_order_by_external("5001").unwrap();
    assert_eq!(order.lines[0].unit_price.to_string(), "22.5");
    assert_eq!(
        order.lines[1].unit_price.to_string(),
        "24.10",
        "an unpriced line takes the item's price"
    );
    assert_eq!(order.total().to_string(), "69.10");
}

#[tokio::test]
async fn deep_insert_with_unknown_item_creates_nothing() {
    let sandbox = start().await;
    let mut body = order_body();
    body["salesOrderLines"][1]["lineObjectNumber"] = json!("NOPE");

    let (status, error) = send(reqwest::Method::POST, &url(&sandbox, "/salesOrders"), None, Some(body)).await;

    assert_eq!(status, StatusCode::BAD_REQUEST, "{error}");
    assert!(sandbox.sales_orders().is_empty());
}

#[tokio::test]
async fn filter_finds_order_and_customer() {
    let sandbox = start().await;
    send(
        reqwest::Method::POST,
        &url(&sandbox, "/salesOrders"),
        None,
        Some(order_body()),
    )
    .await;

    let (status, page) = send(
        reqwest::Method::GET,
        &url(
            &sandbox,
            "/salesOrders?$filter=externalDocumentNumber%20eq%20'5001'&$expand=salesOrderLines",
        ),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{page}");
    assert_eq!(page["value"].as_array().unwrap().len(), 1);
    assert_eq!(page["value"][0]["salesOrderLines"].as_array().unwrap().len(), 2);

    let (_, none) = send(
        reqwest::Method::GET,
        &url(&sandbox, "/salesOrders?$filter=externalDocumentNumber%20eq%20'5002'"),
        None,
        None,
    )
    .await;
    assert!(none["value"].as_array().unwrap().is_empty());

    let (_, customers) = send(
        reqwest::Method::GET,
        &url(&sandbox, "/customers?$filter=email%20eq%20'ada@example.com'"),
        None,
        None,
    )
    .await;
    assert_eq!(customers["value"][0]["number"], "C-1");

    let (status, _) = send(
        reqwest::Method::GET,
        &url(&sandbox, "/customers?$expand=salesOrderLines"),
        None,
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn order_patch_checks_if_match_and_status() {
    let sandbox = start().await;
    let (_, created) = send(
        reqwest::Method::POST,
        &url(&sandbox, "/salesOrders"),
        None,
        Some(order_body()),
    )
    .await;
    let order_url = url(&sandbox, &format!("/salesOrders({})", created["id"].as_str().unwrap()));
    let etag = created["@odata.etag"].as_str().unwrap().to_owned();

    let (missing, _) = send(
        reqwest::Method::PATCH,
        &order_url,
        None,
        Some(json!({"email": "b@example.com"})),
    )
    .await;
    let (with_lines, _) = send(
        reqwest::Method::PATCH,
        &order_url,
        Some(&etag),
        Some(json!({"salesOrderLines": []})),
    )
    .await;
    let (status, patched) = send(
        reqwest::Method::PATCH,
        &order_url,
        Some(&etag),
        Some(json!({"email": "b@example.com"})),
    )
    .await;
    let (stale, _) = send(
        reqwest::Method::PATCH,
        &order_url,
        Some(&etag),
        Some(json!({"email": "c@example.com"})),
    )
    .await;

    assert_eq!(missing, StatusCode::BAD_REQUEST);
    assert_eq!(with_lines, StatusCode::BAD_REQUEST);
    assert_eq!(status, StatusCode::OK, "{patched}");
    assert_eq!(stale, StatusCode::PRECONDITION_FAILED);

    let number = created["number"].as_str().unwrap();
    sandbox.release_order_as_user(number).unwrap();
    let current = sandbox.sales_order(number).unwrap();
    assert_eq!(current.status, OrderStatus::Released);
    let (released, error) = send(
        reqwest::Method::PATCH,
        &order_url,
        Some(&current.etag()),
        Some(json!({"email": "d@example.com"})),
    )
    .await;
    assert_eq!(released, StatusCode::BAD_REQUEST, "{error}");
    assert_eq!(sandbox.sales_order(number).unwrap().email, "b@example.com");
}

async fn record(
    State(bodies): State<Arc<Mutex<Vec<Value>>>>,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> (StatusCode, String) {
    if let Some(token) = query.get("validationToken") {
        return (StatusCode::OK, token.clone());
    }
    bodies.lock().unwrap().push(serde_json::from_slice(&body).unwrap());
    (StatusCode::ACCEPTED, String::new())
}

#[tokio::test]
async fn each_subscription_gets_its_collection_only() {
    let sandbox = start().await;
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = format!("http://{}/hook", listener.local_addr().unwrap());
    let app = Router::new()
        .route("/hook", post(record))
        .with_state(Arc::clone(&bodies));
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let subscribe =
        json!({"notificationUrl": hook, "resource": sandbox.sales_orders_resource(), "clientState": "cs-orders"});
    let (status, _) = send(
        reqwest::Method::POST,
        &format!("{}/subscriptions", sandbox.api_url()),
        None,
        Some(subscribe),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);

    sandbox.upsert_customer_as_user(
        "C-1",
        CustomerEdit {
            phone_number: Some("+44 20 7946 0000".to_owned()),
            ..CustomerEdit::default()
        },
    );
    let (_, created) = send(
        reqwest::Method::POST,
        &url(&sandbox, "/salesOrders"),
        None,
        Some(order_body()),
    )
    .await;
    sandbox.wait_for_deliveries_idle().await;

    let entries: Vec<Value> = bodies
        .lock()
        .unwrap()
        .iter()
        .flat_map(|body| body["value"].as_array().unwrap().clone())
        .collect();
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["changeType"], "created");
    assert_eq!(entries[0]["clientState"], "cs-orders");
    let resource = entries[0]["resource"].as_str().unwrap();
    assert_eq!(
        resource,
        format!(
            "api/v2.0/companies({})/salesOrders({})",
            sandbox.company_id(),
            created["id"].as_str().unwrap()
        )
    );
}
