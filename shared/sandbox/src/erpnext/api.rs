//! The REST edge: token authentication, the request budget and the Item resource.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde_json::json;

use super::model::{item_code, Item, ItemEdit};
use super::Shared;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/resource/Item", post(create_item))
        .route("/api/resource/Item/{name}", get(get_item).put(update_item))
        .route("/_sandbox/state", get(state))
        .with_state(shared)
}

/// A Frappe error body: the exception type and a message.
fn error(status: StatusCode, exc_type: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"exc_type": exc_type, "exception": format!("frappe.exceptions.{exc_type}"), "_server_messages": message.into()})),
    )
        .into_response()
}

/// Checks the token, then the request budget, and returns the rejection response if a check
/// fails.
fn rejection(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("token "));
    if token != Some(shared.token.as_str()) {
        tracing::warn!(sandbox = "erpnext", "request rejected: missing or invalid API token");
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "AuthenticationError",
            "missing or invalid API key and secret",
        ));
    }

    let limit = shared
        .window
        .lock()
        .ok()
        .map(|window| window.budget.requests)
        .unwrap_or(0);
    let taken = match shared.window.lock() {
        Ok(mut window) => window.take(Instant::now()),
        Err(_) => Ok(0),
    };
    let Err(reset_secs) = taken else {
        return None;
    };
    shared.rate_limited.fetch_add(1, Ordering::SeqCst);
    let mut response = (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests").into_response();
    let headers = response.headers_mut();
    headers.insert(header::RETRY_AFTER, HeaderValue::from(reset_secs));
    headers.insert("X-RateLimit-Reset", HeaderValue::from(reset_secs));
    headers.insert("X-RateLimit-Limit", HeaderValue::from(limit));
    headers.insert("X-RateLimit-Remaining", HeaderValue::from(0));
    Some(response)
}

fn item_response(shared: &Shared, item: &Item) -> Response {
    let mut response = Json(json!({ "data": item })).into_response();
    if shared.etags {
        if let Ok(etag) = HeaderValue::from_str(&etag(item.version)) {
            response.headers_mut().insert(header::ETAG, etag);
        }
    }
    response
}

fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// Evaluates `If-Match` with strong comparison when `ETag`s are on; an absent header passes.
fn if_match_passes(shared: &Shared, headers: &HeaderMap, version: u64) -> bool {
    if !shared.etags {
        return true;
    }
    let Some(value) = headers.get(header::IF_MATCH).and_then(|value| value.to_str().ok()) else {
        return true;
    };
    let current = etag(version);
    value.split(',').map(str::trim).any(|tag| tag == "*" || tag == current)
}

fn not_found(name: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "DoesNotExistError",
        format!("Item {name} not found"),
    )
}

async fn get_item(State(shared): State<Arc<Shared>>, Path(name): Path<String>, headers: HeaderMap) -> Response {
    if let Some(response) = rejection(&shared, &headers) {
        return response;
    }
    let store = shared.lock_store();
    match store.items.get(&name) {
        Some(item) => item_response(&shared, item),
        None => not_found(&name),
    }
}

async fn update_item(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = rejection(&shared, &headers) {
        return response;
    }
    let mut store = shared.lock_store();
    let Some(item) = store.items.get_mut(&name) else {
        return not_found(&name);
    };
    if !if_match_passes(&shared, &headers, item.version) {
        return error(
            StatusCode::PRECONDITION_FAILED,
            "TimestampMismatchError",
            format!("Item {name} changed since it was read; read it again and retry"),
        );
    }
    // An unchanged item_code may be sent along; renaming the SKU is not allowed.
    let edit = match ItemEdit::parse(&body, &["item_code"]) {
        Ok(edit) => edit,
        Err(message) => return error(StatusCode::EXPECTATION_FAILED, "ValidationError", message),
    };
    if let Ok(code) = item_code(&body) {
        if code != item.item_code {
            return error(
                StatusCode::EXPECTATION_FAILED,
                "ValidationError",
                "item_code cannot be changed",
            );
        }
    }

    shared.api_writes.fetch_add(1, Ordering::SeqCst);
    if edit.apply(item) {
        item.touch(Utc::now());
        shared.emit(item);
    }
    item_response(&shared, item)
}

async fn create_item(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(response) = rejection(&shared, &headers) {
        return response;
    }
    let parsed = item_code(&body).and_then(|code| Ok((code, ItemEdit::parse(&body, &["item_code"])?)));
    let (code, edit) = match parsed {
        Ok(parsed) => parsed,
        Err(message) => return error(StatusCode::EXPECTATION_FAILED, "ValidationError", message),
    };

    let mut store = shared.lock_store();
    if store.name_of(&code).is_some() {
        return error(
            StatusCode::CONFLICT,
            "DuplicateEntryError",
            format!("Item {code} already exists"),
        );
    }
    shared.api_writes.fetch_add(1, Ordering::SeqCst);
    let mut item = store.new_item(&code, Utc::now());
    edit.apply(&mut item);
    shared.emit(&item);
    let response = item_response(&shared, &item);
    store.items.insert(item.name.clone(), item);
    response
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    let store = shared.lock_store();
    let items: Vec<&Item> = store.items.values().collect();
    Json(json!({
        "items": items,
        "api_write_count": shared.api_writes.load(Ordering::SeqCst),
        "rate_limited_count": shared.rate_limited.load(Ordering::SeqCst),
        "webhook_deliveries": shared.dispatcher.delivery_count(),
    }))
    .into_response()
}
