//! The REST record service edge: bearer authentication, the account's concurrency limit and
//! inventory item reads and writes.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::Utc;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::json;
use serde_json::value::RawValue;

use super::model::Item;
use super::Shared;
use crate::json_text::parse_decimal_number;

/// The error code of a request beyond the account's concurrency limit.
///
/// NOTE: NetSuite documents the RESTlet (`SSS_REQUEST_LIMIT_EXCEEDED`, HTTP 400) and SOAP
/// (`WS_REQUEST_BLOCKED`) codes of a concurrency violation; this REST code and status are the
/// sandbox's assumption. The connector retries any 429 whatever its code.
pub const CONCURRENCY_ERROR_CODE: &str = "CONCURRENCY_LIMIT_EXCEEDED";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/services/rest/record/v1/{record_type}/{id}",
            get(get_item).put(upsert_item).patch(patch_item),
        )
        .route("/_sandbox/state", get(state))
        .with_state(shared)
}

/// Builds a REST web services error body: `type`, `title`, `status` and one `o:errorDetails`
/// entry.
fn error(status: StatusCode, code: &str, detail: impl Into<String>) -> Response {
    let body = json!({
        "type": status_type(status),
        "title": status.canonical_reason().unwrap_or("Error"),
        "status": status.as_u16(),
        "o:errorDetails": [{"detail": detail.into(), "o:errorCode": code}],
    });
    (status, Json(body)).into_response()
}

/// Returns the specification section that defines a status, for the `type` member.
fn status_type(status: StatusCode) -> &'static str {
    match status.as_u16() {
        401 => "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.2",
        404 => "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.5",
        429 => "https://www.rfc-editor.org/rfc/rfc6585.html#section-4",
        _ => "https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1",
    }
}

/// Counts one request in flight until dropped.
struct InFlight {
    shared: Arc<Shared>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.shared.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Checks the bearer token, then takes a place within the concurrency limit, and keeps the
/// request in flight for the configured latency so that concurrent requests overlap as real ones do.
async fn admit(shared: &Arc<Shared>, headers: &HeaderMap) -> Result<InFlight, Box<Response>> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    if bearer != Some(shared.config.api_token.as_str()) {
        tracing::warn!(
            sandbox = "netsuite",
            "request rejected: missing or invalid bearer token"
        );
        return Err(Box::new(error(
            StatusCode::UNAUTHORIZED,
            "INVALID_LOGIN",
            "The bearer token is missing or invalid.",
        )));
    }

    let running = shared.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
    let guard = InFlight {
        shared: Arc::clone(shared),
    };
    if running > u64::from(shared.config.concurrency_limit) {
        drop(guard);
        shared.concurrency_rejections.fetch_add(1, Ordering::SeqCst);
        return Err(Box::new(error(
            StatusCode::TOO_MANY_REQUESTS,
            CONCURRENCY_ERROR_CODE,
            format!(
                "The request exceeds the account's concurrency limit of {}.",
                shared.config.concurrency_limit
            ),
        )));
    }
    shared.max_concurrent.fetch_max(running, Ordering::SeqCst);
    tokio::time::sleep(shared.config.request_latency).await;
    Ok(guard)
}

/// Checks that the path names the inventory item record type.
fn inventory_item(record_type: &str) -> Result<(), Box<Response>> {
    if record_type.eq_ignore_ascii_case("inventoryitem") {
        Ok(())
    } else {
        Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "NONEXISTENT_ID",
            format!("The sandbox has no record type {record_type}."),
        )))
    }
}

async fn get_item(
    State(shared): State<Arc<Shared>>,
    Path((record_type, id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    let _in_flight = match admit(&shared, &headers).await {
        Ok(guard) => guard,
        Err(response) => return *response,
    };
    if let Err(response) = inventory_item(&record_type) {
        return *response;
    }
    let store = shared.lock_store();
    match store.find(&id) {
        Some(item) => Json(item_json(item)).into_response(),
        None => not_found(&id),
    }
}

/// `PUT …/inventoryItem/eid:<external id>`: creates the item, or updates the one with that
/// external id, and responds with 204 and the item's URL in `Location`.
async fn upsert_item(
    State(shared): State<Arc<Shared>>,
    Path((record_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _in_flight = match admit(&shared, &headers).await {
        Ok(guard) => guard,
        Err(response) => return *response,
    };
    if let Err(response) = inventory_item(&record_type) {
        return *response;
    }
    let Some(external_id) = id.strip_prefix("eid:").filter(|external| !external.is_empty()) else {
        return error(
            StatusCode::BAD_REQUEST,
            "INVALID_REQUEST",
            "PUT is an upsert and needs an external id: …/inventoryItem/eid:<external id>.",
        );
    };
    let changes = match parse_changes(&body) {
        Ok(changes) => changes,
        Err(response) => return *response,
    };

    let now = Utc::now();
    let mut store = shared.lock_store();
    let (item, created, changed) = store.upsert(external_id, &changes, now);
    drop(store);
    shared.api_writes.fetch_add(1, Ordering::SeqCst);
    if changed {
        shared.after_api_write(&item, if created { "create" } else { "edit" }, now);
    }
    let location = format!(
        "{}/services/rest/record/v1/inventoryItem/{}",
        shared.base_url(),
        item.internal_id
    );
    (StatusCode::NO_CONTENT, [(header::LOCATION, location)]).into_response()
}

/// `PATCH …/inventoryItem/<internal id>` or `…/eid:<external id>`: updates the given members and
/// responds with 204.
async fn patch_item(
    State(shared): State<Arc<Shared>>,
    Path((record_type, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let _in_flight = match admit(&shared, &headers).await {
        Ok(guard) => guard,
        Err(response) => return *response,
    };
    if let Err(response) = inventory_item(&record_type) {
        return *response;
    }
    let changes = match parse_changes(&body) {
        Ok(changes) => changes,
        Err(response) => return *response,
    };
    let now = Utc::now();
    let mut store = shared.lock_store();
    let Some(item) = store.find_mut(&id) else {
        return not_found(&id);
    };
    let changed = changes.apply(item, now);
    let item = item.clone();
    drop(store);
    shared.api_writes.fetch_add(1, Ordering::SeqCst);
    if changed {
        shared.after_api_write(&item, "edit", now);
    }
    StatusCode::NO_CONTENT.into_response()
}

fn not_found(id: &str) -> Response {
    error(
        StatusCode::NOT_FOUND,
        "NONEXISTENT_ID",
        format!("The record instance does not exist. Invalid id: {id}."),
    )
}

/// The members of a write request the sandbox accepts.
#[derive(Debug, Default)]
pub(crate) struct ItemChanges {
    pub(crate) item_id: Option<String>,
    pub(crate) display_name: Option<String>,
    pub(crate) page_title: Option<String>,
    pub(crate) meta_tag_html: Option<String>,
    pub(crate) base_price: Option<Decimal>,
}

impl ItemChanges {
    /// Applies the changes and returns whether a value changed.
    pub(crate) fn apply(&self, item: &mut Item, now: chrono::DateTime<Utc>) -> bool {
        let before = item.clone();
        if let Some(item_id) = &self.item_id {
            item.item_id = item_id.clone();
        }
        if let Some(name) = &self.display_name {
            item.display_name = Some(name.clone());
        }
        if let Some(title) = &self.page_title {
            item.page_title = Some(title.clone());
        }
        if let Some(html) = &self.meta_tag_html {
            item.meta_tag_html = Some(html.clone());
        }
        if let Some(price) = self.base_price {
            item.base_price = Some(price);
        }
        let changed = *item != before;
        if changed {
            item.last_modified = now;
        }
        changed
    }
}

#[derive(Deserialize)]
struct PriceSublist {
    items: Vec<PriceRow>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PriceRow {
    price_level: Reference,
    price: Box<RawValue>,
}

#[derive(Deserialize)]
struct Reference {
    id: String,
}

/// Reads a write body. Money must be a JSON number, read with its exact digits.
fn parse_changes(body: &[u8]) -> Result<ItemChanges, Box<Response>> {
    let invalid = |detail: String| Box::new(error(StatusCode::BAD_REQUEST, "USER_ERROR", detail));
    let members: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(body).map_err(|parse| invalid(format!("Invalid JSON object: {parse}.")))?;
    let text = |name: &str, raw: &RawValue| {
        serde_json::from_str::<String>(raw.get()).map_err(|_| invalid(format!("{name} must be a string.")))
    };
    let mut changes = ItemChanges::default();
    for (name, raw) in &members {
        match name.as_str() {
            "itemId" => changes.item_id = Some(text(name, raw)?),
            "displayName" => changes.display_name = Some(text(name, raw)?),
            "pageTitle" => changes.page_title = Some(text(name, raw)?),
            "metaTagHtml" => changes.meta_tag_html = Some(text(name, raw)?),
            "price" => {
                let sublist: PriceSublist = serde_json::from_str(raw.get())
                    .map_err(|parse| invalid(format!("price must be a sublist of rows: {parse}.")))?;
                for row in sublist.items {
                    if row.price_level.id == super::BASE_PRICE_LEVEL {
                        let amount =
                            parse_decimal_number(&row.price).map_err(|reason| invalid(format!("price: {reason}.")))?;
                        changes.base_price = Some(amount);
                    }
                }
            }
            "quantityAvailable" => return Err(invalid("quantityAvailable is read-only.".to_owned())),
            other => return Err(invalid(format!("The sandbox does not support the field {other}."))),
        }
    }
    Ok(changes)
}

/// Builds the GET form of an item, with the price sublist's Base Price row.
fn item_json(item: &Item) -> serde_json::Value {
    let price = item.base_price.map(|amount| {
        let raw = crate::json_text::decimal_raw(&amount);
        json!({"items": [{"priceLevel": {"id": super::BASE_PRICE_LEVEL}, "price": raw}]})
    });
    json!({
        "id": item.internal_id,
        "itemId": item.item_id,
        "externalId": item.external_id,
        "displayName": item.display_name,
        "pageTitle": item.page_title,
        "metaTagHtml": item.meta_tag_html,
        "quantityAvailable": item.quantity_available,
        "price": price,
        "lastModifiedDate": item.last_modified.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    })
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    let items: Vec<serde_json::Value> = shared.lock_store().items.values().map(item_json).collect();
    Json(json!({
        "items": items,
        "max_concurrent_seen": shared.max_concurrent.load(Ordering::SeqCst),
        "concurrency_rejections": shared.concurrency_rejections.load(Ordering::SeqCst),
        "webhook_deliveries": shared.dispatcher.deliveries().len(),
    }))
    .into_response()
}
