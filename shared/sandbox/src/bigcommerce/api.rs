//! BigCommerce's HTTP edge: `X-Auth-Token`, the request quota and its headers, and the catalog
//! and inventory handlers.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use chrono::Utc;
use serde_json::value::RawValue;

use super::model::{adjustment_items, members, product_json, variant_json, NewProduct, ProductWrite};
use super::webhooks::Change;
use super::{QuotaReport, Shared};
use crate::delivery::new_uuid;
use crate::json_text::parse_decimal_number;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/stores/{store_hash}/v3/{*path}", any(api))
        .route("/_sandbox/state", get(state))
        .with_state(shared)
}

/// Builds BigCommerce's error body: `{"status","title","type","errors"}`.
fn error(status: StatusCode, title: impl Into<String>) -> Response {
    let body = serde_json::json!({
        "status": status.as_u16(),
        "title": title.into(),
        "type": "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes",
        "errors": {},
    });
    json(status, body.to_string())
}

fn json(status: StatusCode, body: String) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// Wraps a resource in BigCommerce's envelope: `{"data":…,"meta":{}}`.
fn data(status: StatusCode, data: &RawValue) -> Response {
    json(status, format!(r#"{{"data":{},"meta":{{}}}}"#, data.get()))
}

fn with_quota(mut response: Response, report: QuotaReport) -> Response {
    let headers = response.headers_mut();
    let values = [
        ("x-rate-limit-requests-quota", report.quota.to_string()),
        ("x-rate-limit-requests-left", report.left.to_string()),
        ("x-rate-limit-time-window-ms", report.window_ms.to_string()),
        ("x-rate-limit-time-reset-ms", report.reset_ms.to_string()),
    ];
    for (name, value) in values {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    }
    response
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    let products: Vec<Box<RawValue>> = shared
        .lock_state()
        .products
        .values()
        .map(|product| product_json(product, true, true))
        .collect();
    let body = serde_json::json!({ "products": products });
    json(StatusCode::OK, body.to_string())
}

async fn api(
    State(shared): State<Arc<Shared>>,
    Path((store_hash, path)): Path<(String, String)>,
    Query(query): Query<BTreeMap<String, String>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.api_requests.fetch_add(1, Ordering::SeqCst);
    let now = Instant::now();
    let token = headers.get("x-auth-token").and_then(|value| value.to_str().ok());
    if token != Some(shared.config.access_token.as_str()) {
        let report = shared.lock_quota().peek(now);
        return with_quota(
            error(StatusCode::UNAUTHORIZED, "The access token is missing or invalid."),
            report,
        );
    }

    let counted = shared.lock_quota().take(now);
    let report = match counted {
        Ok(report) => report,
        Err(report) => {
            shared.throttled.fetch_add(1, Ordering::SeqCst);
            return with_quota(
                error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "Too many requests: the store's quota is used up.",
                ),
                report,
            );
        }
    };
    if store_hash != shared.config.store_hash {
        return with_quota(error(StatusCode::NOT_FOUND, "The store does not exist."), report);
    }

    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let include = query.get("include").map(String::as_str).unwrap_or_default();
    let variants = include.split(',').any(|name| name == "variants");
    let images = include.split(',').any(|name| name == "images");
    let response = match (method, segments.as_slice()) {
        (Method::GET, ["catalog", "products"]) => list_products(&shared, query.get("sku"), variants, images),
        (Method::POST, ["catalog", "products"]) => create_product(&shared, &body),
        (Method::GET, ["catalog", "products", id]) => get_product(&shared, id, variants, images),
        (Method::PUT, ["catalog", "products", id]) => update_product(&shared, id, &body),
        (Method::GET, ["catalog", "products", id, "variants", variant]) => get_variant(&shared, id, variant),
        (Method::PUT, ["catalog", "products", id, "variants", variant]) => update_variant(&shared, id, variant, &body),
        (Method::PUT, ["inventory", "adjustments", "absolute"]) => adjust(&shared, &body, false),
        (Method::POST, ["inventory", "adjustments", "relative"]) => adjust(&shared, &body, true),
        _ => error(StatusCode::NOT_FOUND, "The route does not exist."),
    };
    with_quota(response, report)
}

fn unprocessable(message: impl Into<String>) -> Response {
    error(StatusCode::UNPROCESSABLE_ENTITY, message)
}

fn list_products(shared: &Shared, sku: Option<&String>, variants: bool, images: bool) -> Response {
    let state = shared.lock_state();
    let products: Vec<Box<RawValue>> = state
        .products
        .values()
        .filter(|product| sku.is_none_or(|sku| product.sku == *sku || product.variant(sku).is_some()))
        .map(|product| product_json(product, variants, images))
        .collect();
    let count = products.len();
    let list = serde_json::to_string(&products).unwrap_or_else(|_| "[]".to_owned());
    let meta = format!(
        r#"{{"pagination":{{"total":{count},"count":{count},"per_page":50,"current_page":1,"total_pages":1}}}}"#
    );
    json(StatusCode::OK, format!(r#"{{"data":{list},"meta":{meta}}}"#))
}

fn create_product(shared: &Shared, body: &[u8]) -> Response {
    let write = match ProductWrite::parse(body) {
        Ok(write) => write,
        Err(message) => return unprocessable(message),
    };
    let (Some(name), Some(_), Some(_), Some(price)) = (&write.name, &write.kind, &write.weight, write.price) else {
        return unprocessable("name, type, weight and price are required");
    };

    let sku = write.sku.clone().unwrap_or_default();
    let mut state = shared.lock_state();
    if !sku.is_empty() && state.product_id_by_sku(&sku).is_some() {
        return error(StatusCode::CONFLICT, format!("The SKU {sku} is already used."));
    }
    if state.name_taken(name, None) {
        return error(
            StatusCode::CONFLICT,
            format!("The product name {name:?} is already used."),
        );
    }
    let new = NewProduct {
        name: name.clone(),
        sku,
        price,
        custom_url: write.custom_url.clone(),
        is_visible: write.is_visible.unwrap_or(true),
        ..NewProduct::default()
    };
    let mut product = state.insert(&new, Utc::now());
    write.apply(&mut product);
    state.products.insert(product.id, product.clone());
    drop(state);
    shared.notify(&Change::ProductCreated { product_id: product.id });
    data(StatusCode::OK, &product_json(&product, true, true))
}

fn get_product(shared: &Shared, id: &str, variants: bool, images: bool) -> Response {
    let state = shared.lock_state();
    match id.parse().ok().and_then(|id: u64| state.products.get(&id)) {
        Some(product) => data(StatusCode::OK, &product_json(product, variants, images)),
        None => error(StatusCode::NOT_FOUND, format!("Product {id} does not exist.")),
    }
}

fn update_product(shared: &Shared, id: &str, body: &[u8]) -> Response {
    let write = match ProductWrite::parse(body) {
        Ok(write) => write,
        Err(message) => return unprocessable(message),
    };
    let mut state = shared.lock_state();
    let Some(id) = id.parse().ok().filter(|id: &u64| state.products.contains_key(id)) else {
        return error(StatusCode::NOT_FOUND, format!("Product {id} does not exist."));
    };
    if let Some(name) = &write.name {
        if state.name_taken(name, Some(id)) {
            return error(
                StatusCode::CONFLICT,
                format!("The product name {name:?} is already used."),
            );
        }
    }
    let Some(product) = state.products.get_mut(&id) else {
        return error(StatusCode::NOT_FOUND, format!("Product {id} does not exist."));
    };
    let changed = write.apply(product);
    if changed {
        product.date_modified = Utc::now();
    }
    let json = product_json(product, false, false);
    drop(state);
    if changed {
        shared.notify(&Change::ProductUpdated { product_id: id });
    }
    data(StatusCode::OK, &json)
}

fn get_variant(shared: &Shared, id: &str, variant_id: &str) -> Response {
    let state = shared.lock_state();
    let product = id.parse().ok().and_then(|id: u64| state.products.get(&id));
    let found = product.and_then(|product| {
        let variant = product
            .variants
            .iter()
            .find(|variant| variant.id.to_string() == variant_id)?;
        Some(variant_json(product, variant))
    });
    match found {
        Some(json) => data(StatusCode::OK, &json),
        None => error(
            StatusCode::NOT_FOUND,
            format!("Variant {variant_id} of product {id} does not exist."),
        ),
    }
}

fn update_variant(shared: &Shared, id: &str, variant_id: &str, body: &[u8]) -> Response {
    let members = match members(body) {
        Ok(members) => members,
        Err(message) => return unprocessable(message),
    };
    let mut price = None;
    for (name, raw) in &members {
        match name.as_str() {
            "price" => match parse_decimal_number(raw) {
                Ok(amount) => price = Some(amount),
                Err(message) => return unprocessable(format!("price: {message}")),
            },
            other => return unprocessable(format!("{other} is not a variant member the sandbox accepts")),
        }
    }

    let mut state = shared.lock_state();
    let product = id.parse().ok().and_then(|id: u64| state.products.get_mut(&id));
    let Some(product) = product else {
        return error(StatusCode::NOT_FOUND, format!("Product {id} does not exist."));
    };
    let Some(variant) = product
        .variants
        .iter_mut()
        .find(|variant| variant.id.to_string() == variant_id)
    else {
        return error(StatusCode::NOT_FOUND, format!("Variant {variant_id} does not exist."));
    };
    let changed = price.is_some() && variant.price != price;
    if changed {
        variant.price = price;
        product.date_modified = Utc::now();
    }

    let product_id = product.id;
    let numeric_variant = variant.id;
    let json = product
        .variants
        .iter()
        .find(|variant| variant.id == numeric_variant)
        .map(|variant| variant_json(product, variant))
        .unwrap_or_default();
    drop(state);
    if changed {
        shared.notify(&Change::SkuUpdated {
            product_id,
            variant_id: numeric_variant,
        });
    }
    data(StatusCode::OK, &json)
}

/// Applies an absolute or relative adjustment, all items or none.
fn adjust(shared: &Shared, body: &[u8], relative: bool) -> Response {
    let items = match adjustment_items(body) {
        Ok(items) => items,
        Err(message) => return unprocessable(message),
    };
    // Every item is resolved before any level changes, so an unknown item changes nothing.
    let mut resolved = Vec::with_capacity(items.len());
    {
        let state = shared.lock_state();
        for item in &items {
            let variant_id = state.products.values().find_map(|product| {
                product
                    .variants
                    .iter()
                    .find(|variant| {
                        item.variant_id == Some(variant.id)
                            || item.sku.as_deref() == Some(variant.sku.as_str())
                            || (item.product_id == Some(product.id) && product.base_variant_id == Some(variant.id))
                    })
                    .map(|variant| variant.id)
            });
            match variant_id {
                Some(variant_id) => resolved.push((variant_id, item.quantity)),
                None => {
                    return unprocessable(format!(
                        "no inventory item matches the item at location {}",
                        item.location_id
                    ))
                }
            }
        }
    }
    for (variant_id, quantity) in resolved {
        shared.adjust(variant_id, quantity, relative, false);
    }
    let body = serde_json::json!({ "transaction_id": new_uuid() });
    json(StatusCode::OK, body.to_string())
}
