//! WooCommerce's REST edge: authentication, forced 429s, and the products and variations
//! handlers under `/wp-json/wc/v3`.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, Query, State as AxumState};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use serde_json::{json, Map, Value};

use super::model::{check_price, check_status, php_json, slugify, ApiError, Product, ProductType};
use super::model::{YOAST_DESCRIPTION_KEY, YOAST_TITLE_KEY};
use super::{now, Shared, State, Topic};

/// The maximum number of objects one batch request may carry.
const BATCH_LIMIT: usize = 100;
/// The largest `per_page` the REST API accepts.
const MAX_PER_PAGE: usize = 100;
const DEFAULT_PER_PAGE: usize = 10;

type SharedState = AxumState<Arc<Shared>>;
type QueryMap = Query<BTreeMap<String, String>>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/wp-json/wc/v3/products", get(list_products).post(create_product))
        .route("/wp-json/wc/v3/products/batch", post(batch_products))
        .route(
            "/wp-json/wc/v3/products/{id}",
            get(get_product)
                .put(update_product)
                .patch(update_product)
                .post(update_product),
        )
        .route("/wp-json/wc/v3/products/{id}/variations", get(list_variations))
        .route(
            "/wp-json/wc/v3/products/{id}/variations/{variation_id}",
            get(get_variation)
                .put(update_variation)
                .patch(update_variation)
                .post(update_variation),
        )
        .route("/_sandbox/state", get(sandbox_state))
        .with_state(shared)
}

/// Builds a JSON response written the way PHP writes it.
fn json_response(status: StatusCode, value: &Value) -> Response {
    let mut response = (status, php_json(value)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=UTF-8"),
    );
    response
}

fn error_response(error: &ApiError) -> Response {
    let status = StatusCode::from_u16(error.status).unwrap_or(StatusCode::BAD_REQUEST);
    json_response(status, &error.to_json())
}

fn invalid_id() -> ApiError {
    ApiError::new(404, "woocommerce_rest_product_invalid_id", "Invalid ID.")
}

/// Tells whether the request carries the consumer key and secret, by basic authentication or
/// by query parameters.
fn authenticated(shared: &Shared, headers: &HeaderMap, query: &BTreeMap<String, String>) -> bool {
    let basic = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Basic "))
        .and_then(|encoded| BASE64.decode(encoded.trim()).ok())
        .and_then(|decoded| String::from_utf8(decoded).ok());
    let (key, secret) = match &basic {
        Some(credentials) => credentials.split_once(':').unwrap_or((credentials.as_str(), "")),
        None => (
            query.get("consumer_key").map_or("", String::as_str),
            query.get("consumer_secret").map_or("", String::as_str),
        ),
    };
    key == shared.config.consumer_key && secret == shared.config.consumer_secret
}

/// The capability a request needs, which names the 401 error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    View,
    Create,
    Edit,
}

/// Counts the request, then checks forced throttling and credentials, and returns the
/// rejection if a check fails.
fn gate(shared: &Shared, action: Action, headers: &HeaderMap, query: &BTreeMap<String, String>) -> Option<Response> {
    shared.api_requests.fetch_add(1, Ordering::SeqCst);
    let forced = shared
        .forced_429
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |remaining| remaining.checked_sub(1))
        .is_ok();
    if forced {
        tracing::debug!(sandbox = "woocommerce", "request throttled by a forced 429");
        let error = ApiError::new(429, "woocommerce_rest_too_many_requests", "Too many requests.");
        let mut response = error_response(&error);
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return Some(response);
    }
    if authenticated(shared, headers, query) {
        return None;
    }
    tracing::warn!(
        sandbox = "woocommerce",
        "request rejected: missing or invalid consumer key or secret"
    );
    let (code, message) = match action {
        Action::View => ("woocommerce_rest_cannot_view", "Sorry, you cannot list resources."),
        Action::Create => (
            "woocommerce_rest_cannot_create",
            "Sorry, you are not allowed to create resources.",
        ),
        Action::Edit => (
            "woocommerce_rest_cannot_edit",
            "Sorry, you are not allowed to edit this resource.",
        ),
    };
    Some(error_response(&ApiError::new(401, code, message)))
}

/// Parses a request body as a JSON object.
fn object(body: &Bytes) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        _ => Err(ApiError::new(400, "rest_invalid_json", "Invalid JSON body passed.")),
    }
}

fn text(input: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match input.get(name) {
        None => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.clone())),
        Some(_) => Err(ApiError::invalid_param(name, &format!("{name} is not of type string."))),
    }
}

/// Applies the writable members of a create or update body. Members the schema does not know
/// are ignored, as WooCommerce ignores them.
fn apply_input(product: &mut Product, input: &Map<String, Value>) -> Result<(), ApiError> {
    let variation = product.product_type == ProductType::Variation;
    if !variation {
        if let Some(name) = text(input, "name")? {
            product.name = name;
        }
        if let Some(slug) = text(input, "slug")? {
            product.slug = slugify(&slug);
        }
    }

    if let Some(status) = text(input, "status")? {
        product.status = check_status(&status)?;
    }
    if let Some(description) = text(input, "description")? {
        product.description = description;
    }
    if let Some(sku) = text(input, "sku")? {
        product.sku = sku.trim().to_owned();
    }

    // Prices are typed `string` in the schema, so a JSON number is rejected.
    if let Some(price) = text(input, "regular_price")? {
        product.regular_price = check_price("regular_price", &price)?;
    }
    if let Some(price) = text(input, "sale_price")? {
        product.sale_price = check_price("sale_price", &price)?;
    }
    match input.get("manage_stock") {
        None => {}
        Some(Value::Bool(flag)) => product.manage_stock = *flag,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "manage_stock",
                "manage_stock is not of type boolean.",
            ))
        }
    }
    match input.get("stock_quantity") {
        None => {}
        Some(Value::Null) => product.stock_quantity = None,
        Some(Value::Number(number)) if number.is_i64() => product.stock_quantity = number.as_i64(),
        Some(_) => {
            return Err(ApiError::invalid_param(
                "stock_quantity",
                "stock_quantity is not of type integer.",
            ))
        }
    }

    let images = if variation {
        input.get("image").map(|image| vec![image.clone()])
    } else {
        match input.get("images") {
            None => None,
            Some(Value::Array(images)) => Some(images.clone()),
            Some(_) => return Err(ApiError::invalid_param("images", "images is not of type array.")),
        }
    };
    if let Some(images) = images {
        let mut sources = Vec::new();
        for image in images.iter().filter(|image| !image.is_null()) {
            match image.get("src").and_then(Value::as_str) {
                Some(src) => sources.push(src.to_owned()),
                None => return Err(ApiError::invalid_param("images", "each image needs a src.")),
            }
        }
        product.images = sources;
    }
    apply_meta(product, input)
}

fn apply_meta(product: &mut Product, input: &Map<String, Value>) -> Result<(), ApiError> {
    let Some(entries) = input.get("meta_data") else {
        return Ok(());
    };
    let Some(entries) = entries.as_array() else {
        return Err(ApiError::invalid_param("meta_data", "meta_data is not of type array."));
    };
    for entry in entries {
        let value = entry.get("value").and_then(Value::as_str).map(str::to_owned);
        match entry.get("key").and_then(Value::as_str) {
            Some(YOAST_TITLE_KEY) => product.meta_title = value,
            Some(YOAST_DESCRIPTION_KEY) => product.meta_description = value,
            Some(_) => {}
            None => return Err(ApiError::invalid_param("meta_data", "each entry needs a key.")),
        }
    }
    Ok(())
}

/// Creates a product from a `POST products` body.
fn create(shared: &Shared, state: &mut State, input: &Map<String, Value>) -> Result<Product, ApiError> {
    let product_type = match text(input, "type")?.as_deref() {
        None | Some("simple") => ProductType::Simple,
        Some("variable") => ProductType::Variable,
        Some(_) => {
            return Err(ApiError::invalid_param(
                "type",
                "type is not one of simple and variable.",
            ))
        }
    };
    let mut product = Product::new(0, product_type, now());
    apply_input(&mut product, input)?;
    state.check_sku(&product.sku, None)?;
    if product.slug.is_empty() {
        product.slug = slugify(&product.name);
    }
    product.id = state.take_id();
    state.products.insert(product.id, product.clone());
    shared.notify(state, product.id, Topic::Created);
    Ok(product)
}

/// Applies an update body to the product or variation `id`.
fn update(shared: &Shared, state: &mut State, id: u64, input: &Map<String, Value>) -> Result<Product, ApiError> {
    let mut product = state.products.get(&id).cloned().ok_or_else(invalid_id)?;
    let before = product.clone();
    apply_input(&mut product, input)?;
    state.check_sku(&product.sku, Some(id))?;
    if product != before {
        product.date_modified = now();
        state.products.insert(id, product.clone());
        shared.notify(state, id, Topic::Updated);
    }
    Ok(product)
}

/// Reads `per_page` and `page` and returns one page of `items` with the paging headers.
fn paged(items: Vec<Value>, query: &BTreeMap<String, String>) -> Result<Response, ApiError> {
    let number = |name: &str, default: usize| -> Result<usize, ApiError> {
        match query.get(name) {
            None => Ok(default),
            Some(text) => text
                .parse::<usize>()
                .ok()
                .filter(|value| *value >= 1)
                .ok_or_else(|| ApiError::invalid_param(name, &format!("{name} must be a positive integer."))),
        }
    };
    let per_page = number("per_page", DEFAULT_PER_PAGE)?;
    if per_page > MAX_PER_PAGE {
        return Err(ApiError::invalid_param(
            "per_page",
            "per_page must be between 1 (inclusive) and 100 (inclusive)",
        ));
    }
    let page = number("page", 1)?;

    let total = items.len();
    let total_pages = total.div_ceil(per_page);
    if page > total_pages.max(1) {
        return Err(ApiError::new(
            400,
            "rest_post_invalid_page_number",
            "The page number requested is larger than the number of pages available.",
        ));
    }

    let slice: Vec<Value> = items.into_iter().skip((page - 1) * per_page).take(per_page).collect();
    let mut response = json_response(StatusCode::OK, &Value::Array(slice));
    let headers = response.headers_mut();
    headers.insert("X-WP-Total", HeaderValue::from(total));
    headers.insert("X-WP-TotalPages", HeaderValue::from(total_pages));
    Ok(response)
}

fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(|error| error_response(&error))
}

async fn list_products(AxumState(shared): SharedState, headers: HeaderMap, Query(query): QueryMap) -> Response {
    if let Some(rejection) = gate(&shared, Action::View, &headers, &query) {
        return rejection;
    }
    let state = shared.lock_state();
    let sku = query.get("sku").filter(|sku| !sku.is_empty());
    let items: Vec<Value> = state
        .products
        .values()
        .filter(|product| product.product_type != ProductType::Variation)
        .filter(|product| sku.is_none_or(|sku| product.sku == *sku))
        .map(|product| shared.json(product))
        .collect();
    respond(paged(items, &query))
}

async fn create_product(
    AxumState(shared): SharedState,
    headers: HeaderMap,
    Query(query): QueryMap,
    body: Bytes,
) -> Response {
    if let Some(rejection) = gate(&shared, Action::Create, &headers, &query) {
        return rejection;
    }
    let result = object(&body).and_then(|input| {
        let mut state = shared.lock_state();
        create(&shared, &mut state, &input)
    });
    match result {
        Ok(product) => json_response(StatusCode::CREATED, &shared.json(&product)),
        Err(error) => error_response(&error),
    }
}

/// Parses a product id path segment, or returns the 404 WooCommerce gives for it.
fn parse_id(text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>().map_err(|_| invalid_id())
}

/// Finds a simple or variable product by id.
fn find_product(state: &State, id: u64) -> Result<&Product, ApiError> {
    state
        .products
        .get(&id)
        .filter(|product| product.product_type != ProductType::Variation)
        .ok_or_else(invalid_id)
}

/// Finds a variation of the product `parent_id`.
fn find_variation(state: &State, parent_id: u64, id: u64) -> Result<&Product, ApiError> {
    state
        .products
        .get(&id)
        .filter(|product| product.parent_id == Some(parent_id))
        .ok_or_else(|| ApiError::new(404, "woocommerce_rest_product_variation_invalid_id", "Invalid ID."))
}

async fn get_product(
    AxumState(shared): SharedState,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): QueryMap,
) -> Response {
    if let Some(rejection) = gate(&shared, Action::View, &headers, &query) {
        return rejection;
    }
    let state = shared.lock_state();
    respond(
        parse_id(&id)
            .and_then(|id| find_product(&state, id))
            .map(|product| json_response(StatusCode::OK, &shared.json(product))),
    )
}

async fn update_product(
    AxumState(shared): SharedState,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): QueryMap,
    body: Bytes,
) -> Response {
    if let Some(rejection) = gate(&shared, Action::Edit, &headers, &query) {
        return rejection;
    }
    let mut state = shared.lock_state();
    let result = parse_id(&id).and_then(|id| {
        find_product(&state, id)?;
        let input = object(&body)?;
        update(&shared, &mut state, id, &input)
    });
    respond(result.map(|product| json_response(StatusCode::OK, &shared.json(&product))))
}

async fn list_variations(
    AxumState(shared): SharedState,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): QueryMap,
) -> Response {
    if let Some(rejection) = gate(&shared, Action::View, &headers, &query) {
        return rejection;
    }
    let state = shared.lock_state();
    let result = parse_id(&id).and_then(|id| {
        let parent = find_product(&state, id)?;
        let items = parent
            .variations
            .iter()
            .filter_map(|variation_id| state.products.get(variation_id))
            .map(|variation| shared.json(variation))
            .collect();
        paged(items, &query)
    });
    respond(result)
}

async fn get_variation(
    AxumState(shared): SharedState,
    headers: HeaderMap,
    Path((id, variation_id)): Path<(String, String)>,
    Query(query): QueryMap,
) -> Response {
    if let Some(rejection) = gate(&shared, Action::View, &headers, &query) {
        return rejection;
    }
    let state = shared.lock_state();
    let result = parse_id(&id).and_then(|id| {
        let variation = find_variation(&state, id, parse_id(&variation_id)?)?;
        Ok(json_response(StatusCode::OK, &shared.json(variation)))
    });
    respond(result)
}

async fn update_variation(
    AxumState(shared): SharedState,
    headers: HeaderMap,
    Path((id, variation_id)): Path<(String, String)>,
    Query(query): QueryMap,
    body: Bytes,
) -> Response {
    if let Some(rejection) = gate(&shared, Action::Edit, &headers, &query) {
        return rejection;
    }
    let mut state = shared.lock_state();
    let result = parse_id(&id).and_then(|id| {
        let variation_id = find_variation(&state, id, parse_id(&variation_id)?)?.id;
        let input = object(&body)?;
        update(&shared, &mut state, variation_id, &input)
    });
    respond(result.map(|variation| json_response(StatusCode::OK, &shared.json(&variation))))
}

/// Returns a batch entry's result: the product's JSON, or its id with an inline error.
fn batch_entry(shared: &Shared, id: u64, result: Result<Product, ApiError>) -> Value {
    match result {
        Ok(product) => shared.json(&product),
        Err(error) => json!({"id": id, "error": error.to_json()}),
    }
}

async fn batch_products(
    AxumState(shared): SharedState,
    headers: HeaderMap,
    Query(query): QueryMap,
    body: Bytes,
) -> Response {
    if let Some(rejection) = gate(&shared, Action::Edit, &headers, &query) {
        return rejection;
    }
    let input = match object(&body) {
        Ok(input) => input,
        Err(error) => return error_response(&error),
    };
    let list = |name: &str| input.get(name).and_then(Value::as_array).cloned().unwrap_or_default();
    let (creates, updates) = (list("create"), list("update"));
    if creates.len() + updates.len() > BATCH_LIMIT {
        return error_response(&ApiError::new(
            413,
            "woocommerce_rest_request_entity_too_large",
            format!("Unable to accept more than {BATCH_LIMIT} items for this request."),
        ));
    }
    let mut state = shared.lock_state();
    let mut created = Vec::new();
    for entry in &creates {
        let result = match entry.as_object() {
            Some(fields) => create(&shared, &mut state, fields),
            None => Err(ApiError::new(400, "rest_invalid_json", "Invalid JSON body passed.")),
        };
        created.push(batch_entry(&shared, 0, result));
    }
    let mut updated = Vec::new();
    for entry in &updates {
        let id = entry.get("id").and_then(Value::as_u64).unwrap_or(0);
        let result = match entry.as_object() {
            Some(fields) => find_product(&state, id)
                .map(|_| ())
                .and_then(|()| update(&shared, &mut state, id, fields)),
            None => Err(invalid_id()),
        };
        updated.push(batch_entry(&shared, id, result));
    }
    json_response(StatusCode::OK, &json!({"create": created, "update": updated}))
}

/// Serves a read-only view of every product and variation, without authentication.
async fn sandbox_state(AxumState(shared): SharedState) -> Response {
    let state = shared.lock_state();
    let products: Vec<Value> = state.products.values().map(|product| shared.json(product)).collect();
    json_response(StatusCode::OK, &json!({"products": products}))
}
