//! The ERP's REST edge: bearer authentication, the rate limit, items and sales orders.

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
use serde::Serialize;
use serde_json::json;

use super::model::{external_id, parse_object, FieldError, ItemEdit, OrderEdit, RawObject, Store};
use super::throttle::retry_after_secs;
use super::webhooks::erp_document_json;
use super::Shared;
use crate::documents::{Document, DocumentChange, DocumentKind};

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v1/items/{number}", get(get_item).patch(patch_item))
        .route("/api/v1/sales-orders", post(upsert_order))
        .route("/api/v1/sales-orders/{number}", get(get_order).patch(patch_order))
        .route("/api/v1/{collection}", post(upsert_document))
        .route("/api/v1/{collection}/{number}", get(get_document).patch(patch_document))
        .route("/_sandbox/state", get(state))
        .with_state(shared)
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (
        status,
        Json(json!({"error": {"code": code, "message": message.into()}})),
    )
        .into_response()
}

fn invalid(field_error: &FieldError) -> Response {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        Json(json!({"error": {
            "code": "invalid_field",
            "field": field_error.field,
            "message": field_error.to_string(),
        }})),
    )
        .into_response()
}

/// Checks the bearer token, then the forced 429s and the rate limit, and returns the rejection
/// response if a check fails.
fn rejection(shared: &Shared, headers: &HeaderMap) -> Option<Response> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if bearer != Some(shared.api_token.as_str()) {
        tracing::warn!(sandbox = "erp", "request rejected: missing or invalid bearer token");
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or invalid bearer token",
        ));
    }

    let forced = shared.forced_429.lock().ok().and_then(|mut forced| forced.take());
    let wait = match forced {
        Some(seconds) => Some(seconds),
        None => match shared.bucket.lock() {
            Ok(mut bucket) => bucket.try_take(Instant::now()).err().map(retry_after_secs),
            Err(_) => None,
        },
    };
    if let Some(seconds) = wait {
        let mut response = error(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("rate limit exceeded, retry after {seconds} s"),
        );
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        return Some(response);
    }
    None
}

/// Builds a JSON response with exact money digits and, when given a version, the `ETag`.
fn record_response(status: StatusCode, record: &impl Serialize, version: Option<u64>) -> Response {
    let Ok(body) = serde_json::to_vec(record) else {
        return error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "failed to serialize the record",
        );
    };
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    if let Some(etag) = version.and_then(|version| HeaderValue::from_str(&etag(version)).ok()) {
        headers.insert(header::ETAG, etag);
    }
    response
}

fn etag(version: u64) -> String {
    format!("\"{version}\"")
}

/// Evaluates `If-Match` with strong comparison: a weak tag never matches, `*` matches any
/// existing record, and an absent header passes.
fn if_match_passes(headers: &HeaderMap, version: u64) -> bool {
    let Some(value) = headers.get(header::IF_MATCH).and_then(|value| value.to_str().ok()) else {
        return true;
    };
    let current = etag(version);
    value.split(',').map(str::trim).any(|tag| tag == "*" || tag == current)
}

fn precondition_failed(kind: &str, number: &str, version: u64) -> Response {
    error(
        StatusCode::PRECONDITION_FAILED,
        "precondition_failed",
        format!("{kind} {number} is at version {version}; read it again and retry"),
    )
}

async fn get_item(State(shared): State<Arc<Shared>>, Path(number): Path<String>, headers: HeaderMap) -> Response {
    if let Some(response) = rejection(&shared, &headers) {
        return response;
    }
    match shared.lock_store().items.get(&number) {
        Some(item) => record_response(StatusCode::OK, item, Some(item.version)),
        None => error(StatusCode::NOT_FOUND, "not_found", format!("item {number} not found")),
    }
}

async fn patch_item(
    State(shared): State<Arc<Shared>>,
    Path(number): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = rejection(&shared, &headers) {
        return response;
    }

    let mut store = shared.lock_store();
    let Some(item) = store.items.get_mut(&number) else {
        return error(StatusCode::NOT_FOUND, "not_found", format!("item {number} not found"));
    };
    if !if_match_passes(&headers, item.version) {
        return precondition_failed("item", &number, item.version);
    }
    let edit = match parse_object(&body).and_then(|object| ItemEdit::parse(&object)) {
        Ok(edit) => edit,
        Err(field_error) => return invalid(&field_error),
    };

    shared.api_writes.fetch_add(1, Ordering::SeqCst);
    let now = Utc::now();
    if edit.apply(item) {
        item.version += 1;
        item.last_modified = now;
        shared.emit("item.updated", &*item, now);
    }
    record_response(StatusCode::OK, &*item, Some(item.version))
}

async fn upsert_order(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(response) = rejection(&shared, &headers) {
        return response;
    }
    let parsed = parse_object(&body).and_then(|object| {
        let external_id = external_id(&object)?;
        let edit = OrderEdit::parse(&object, &["external_id"])?;
        Ok((external_id, edit))
    });
    let (external_id, edit) = match parsed {
        Ok(parsed) => parsed,
        Err(field_error) => return invalid(&field_error),
    };

    let mut store = shared.lock_store();
    let customer = edit.customer.clone().flatten();
    if let Err(field_error) = store.check_references(customer.as_deref(), None) {
        return invalid(&field_error);
    }
    shared.api_writes.fetch_add(1, Ordering::SeqCst);
    let now = Utc::now();
    if let Some(number) = store
        .order_by_external_id(&external_id)
        .map(|order| order.number.clone())
    {
        let Some(order) = store.orders.get_mut(&number) else {
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                "order index is inconsistent",
            );
        };
        if edit.apply(order) {
            order.version += 1;
            order.last_modified = now;
            shared.emit("sales_order.updated", &*order, now);
        }
        return record_response(StatusCode::OK, &*order, Some(order.version));
    }

    let mut order = store.new_order(&external_id, now);
    edit.apply(&mut order);
    shared.emit("sales_order.created", &order, now);
    let mut response = record_response(StatusCode::CREATED, &order, Some(order.version));
    if let Ok(location) = HeaderValue::from_str(&format!("/api/v1/sales-orders/{}", order.number)) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    store.orders.insert(order.number.clone(), order);
    response
}

async fn get_order(State(shared): State<Arc<Shared>>, Path(number): Path<String>, headers: HeaderMap) -> Response {
    if let Some(response) = rejection(&shared, &headers) {
        return response;
    }
    match shared.lock_store().orders.get(&number) {
        Some(order) => record_response(StatusCode::OK, order, Some(order.version)),
        None => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("sales order {number} not found"),
        ),
    }
}

async fn patch_order(
    State(shared): State<Arc<Shared>>,
    Path(number): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = rejection(&shared, &headers) {
        return response;
    }

    let mut store = shared.lock_store();
    let Some(order) = store.orders.get_mut(&number) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("sales order {number} not found"),
        );
    };
    if !if_match_passes(&headers, order.version) {
        return precondition_failed("sales order", &number, order.version);
    }
    let edit = match parse_object(&body).and_then(|object| OrderEdit::parse(&object, &[])) {
        Ok(edit) => edit,
        Err(field_error) => return invalid(&field_error),
    };
    let customer = edit.customer.clone().flatten();
    if let Err(field_error) = store.check_references(customer.as_deref(), None) {
        return invalid(&field_error);
    }
    let Some(order) = store.orders.get_mut(&number) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("sales order {number} not found"),
        );
    };

    shared.api_writes.fetch_add(1, Ordering::SeqCst);
    let now = Utc::now();
    if edit.apply(order) {
        order.version += 1;
        order.last_modified = now;
        shared.emit("sales_order.updated", &*order, now);
    }
    record_response(StatusCode::OK, &*order, Some(order.version))
}

/// Returns the document kind an API collection holds, such as `quotes`.
fn collection_kind(collection: &str) -> Option<DocumentKind> {
    match collection {
        "customers" => Some(DocumentKind::Customer),
        "quotes" => Some(DocumentKind::Quote),
        "shipments" => Some(DocumentKind::Shipment),
        "returns" => Some(DocumentKind::Return),
        _ => None,
    }
}

fn unknown_collection(collection: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("no collection {collection}; expected customers, quotes, shipments or returns"),
    )
}

/// Reads a document body: a JSON object whose members are kept as JSON text, without the
/// read-only `number`, `last_modified` and `version`.
fn document_members(body: &[u8]) -> Result<RawObject, FieldError> {
    let object = parse_object(body)?;
    if let Some(name) = ["number", "last_modified", "version"]
        .into_iter()
        .find(|name| object.contains_key(*name))
    {
        return Err(FieldError {
            field: name.to_owned(),
            message: "is read-only".to_owned(),
        });
    }
    Ok(object)
}

/// Checks the customer and order a document names, as the ERP would before storing it.
fn check_document(store: &Store, members: &RawObject) -> Result<(), FieldError> {
    let text = |name: &str| {
        members
            .get(name)
            .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
    };
    store.check_references(text("customer").as_deref(), text("order").as_deref())
}

async fn upsert_document(
    State(shared): State<Arc<Shared>>,
    Path(collection): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = rejection(&shared, &headers) {
        return response;
    }
    let Some(kind) = collection_kind(&collection) else {
        return unknown_collection(&collection);
    };
    let parsed = document_members(&body).and_then(|mut members| {
        let external_id = members.remove("external_id").ok_or_else(|| FieldError {
            field: "external_id".to_owned(),
            message: "is required".to_owned(),
        })?;
        let external_id: String = serde_json::from_str(external_id.get()).map_err(|_| FieldError {
            field: "external_id".to_owned(),
            message: "expected a string".to_owned(),
        })?;
        Ok((external_id, members))
    });
    let (external_id, members) = match parsed {
        Ok(parsed) => parsed,
        Err(field_error) => return invalid(&field_error),
    };

    let mut store = shared.lock_store();
    if let Err(field_error) = check_document(&store, &members) {
        return invalid(&field_error);
    }
    shared.api_writes.fetch_add(1, Ordering::SeqCst);
    let number = store.next_document_number(kind);
    let (document, change) = store
        .documents
        .upsert(kind, Some(external_id), members, Utc::now(), || number);
    shared.emit_document(&document, change);
    let status = if change == DocumentChange::Created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    document_response(status, &document)
}

async fn get_document(
    State(shared): State<Arc<Shared>>,
    Path((collection, number)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Some(response) = rejection(&shared, &headers) {
        return response;
    }
    let Some(kind) = collection_kind(&collection) else {
        return unknown_collection(&collection);
    };
    match shared.lock_store().documents.get(kind, &number) {
        Some(document) => document_response(StatusCode::OK, document),
        None => error(StatusCode::NOT_FOUND, "not_found", format!("{kind} {number} not found")),
    }
}

async fn patch_document(
    State(shared): State<Arc<Shared>>,
    Path((collection, number)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(response) = rejection(&shared, &headers) {
        return response;
    }
    let Some(kind) = collection_kind(&collection) else {
        return unknown_collection(&collection);
    };
    let members = match document_members(&body) {
        Ok(members) => members,
        Err(field_error) => return invalid(&field_error),
    };
    let mut store = shared.lock_store();
    if let Err(field_error) = check_document(&store, &members) {
        return invalid(&field_error);
    }
    let Some((document, change)) = store.documents.patch(kind, &number, members, Utc::now()) else {
        return error(StatusCode::NOT_FOUND, "not_found", format!("{kind} {number} not found"));
    };
    shared.api_writes.fetch_add(1, Ordering::SeqCst);
    shared.emit_document(&document, change);
    document_response(StatusCode::OK, &document)
}

fn document_response(status: StatusCode, document: &Document) -> Response {
    let mut response = (status, erp_document_json(document)).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    #[derive(Serialize)]
    struct SandboxState<'a> {
        items: Vec<&'a super::Item>,
        sales_orders: Vec<&'a super::SalesOrder>,
        documents: Vec<Box<serde_json::value::RawValue>>,
        api_write_count: u64,
        webhook_deliveries: usize,
    }
    let store = shared.lock_store();
    let kinds = [
        DocumentKind::Customer,
        DocumentKind::Quote,
        DocumentKind::Shipment,
        DocumentKind::Return,
    ];
    let documents = kinds
        .into_iter()
        .flat_map(|kind| store.documents.all(kind))
        .filter_map(|document| String::from_utf8(erp_document_json(&document)).ok())
        .filter_map(|json| serde_json::value::RawValue::from_string(json).ok())
        .collect();
    let state = SandboxState {
        items: store.items.values().collect(),
        sales_orders: store.orders.values().collect(),
        documents,
        api_write_count: shared.api_writes.load(Ordering::SeqCst),
        webhook_deliveries: shared.dispatcher.delivery_count(),
    };
    record_response(StatusCode::OK, &state, None)
}
