//! Business Central's HTTP edge: authentication, rate limits, routing of OData paths such as
//! `companies(<id>)/items(<id>)`, and the items and subscriptions handlers.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use axum::Router;
use chrono::Utc;
use serde::Serialize;
use serde_json::value::RawValue;

use super::documents::{customer_json, sales_order_json};
use super::filter::Filter;
use super::filter::Filterable;
use super::model::{item_json, subscription_json, BodyError, Item, ItemWrite, Subscription, SubscriptionWrite};
use super::notify::{handshake, subscribed_collection, ChangeType, Collection, Slot};
use super::sales;
use super::Shared;
use crate::delivery::new_uuid;
use crate::erp::throttle::retry_after_secs;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/api/v2.0/{*path}", any(api))
        .route("/_sandbox/state", get(state))
        .with_state(shared)
}

/// The content type of Business Central's JSON responses.
const ODATA_JSON: &str = "application/json; odata.metadata=minimal";

/// Builds an OData error response: `{"error":{"code","message"}}`.
pub(super) fn odata_error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({"error": {"code": code, "message": message.into()}});
    json_response(status, serde_json::to_vec(&body).unwrap_or_default())
}

pub(super) fn body_error(error: &BodyError) -> Response {
    odata_error(StatusCode::BAD_REQUEST, error.code, error.message.clone())
}

pub(super) fn json_response(status: StatusCode, body: Vec<u8>) -> Response {
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ODATA_JSON));
    response
}

/// Builds a single-entity response with the entity's `ETag` header.
pub(super) fn entity_response(status: StatusCode, json: &RawValue, etag: &str) -> Response {
    let mut response = json_response(status, json.get().as_bytes().to_vec());
    if let Ok(etag) = HeaderValue::from_str(etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}

pub(super) fn not_found(what: &str) -> Response {
    odata_error(
        StatusCode::NOT_FOUND,
        "BadRequest_NotFound",
        format!("The {what} does not exist."),
    )
}

/// The resource an `/api/v2.0` path names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Companies,
    Company(String),
    Items {
        company: String,
    },
    Item {
        company: String,
        item: String,
    },
    /// `customers` or `salesOrders` of a company.
    Documents {
        company: String,
        collection: Collection,
    },
    /// One customer or sales order.
    Document {
        company: String,
        collection: Collection,
        id: String,
    },
    /// The lines of one sales order: `salesOrders({id})/salesOrderLines`.
    OrderLines {
        company: String,
        order: String,
    },
    Subscriptions,
    Subscription(String),
}

/// Splits a path segment such as `items(1f…)` or `subscriptions('ab…')` into its name and key.
fn segment(text: &str) -> (&str, Option<&str>) {
    let Some((name, rest)) = text.split_once('(') else {
        return (text, None);
    };
    let key = rest.strip_suffix(')').unwrap_or(rest);
    let key = key
        .strip_prefix('\'')
        .and_then(|key| key.strip_suffix('\''))
        .unwrap_or(key);
    (name, Some(key))
}

fn parse_target(path: &str) -> Option<Target> {
    let segments: Vec<(&str, Option<&str>)> = path.trim_end_matches('/').split('/').map(segment).collect();
    let owned = |key: &str| key.to_ascii_lowercase();
    match segments.as_slice() {
        [("companies", None)] => Some(Target::Companies),
        [("companies", Some(company))] => Some(Target::Company(owned(company))),
        [("companies", Some(company)), ("items", None)] => Some(Target::Items {
            company: owned(company),
        }),
        [("companies", Some(company)), ("items", Some(item))] => Some(Target::Item {
            company: owned(company),
            item: owned(item),
        }),
        [("companies", Some(company)), (name, None)] => document_collection(name).map(|collection| Target::Documents {
            company: owned(company),
            collection,
        }),
        [("companies", Some(company)), (name, Some(id))] => {
            document_collection(name).map(|collection| Target::Document {
                company: owned(company),
                collection,
                id: owned(id),
            })
        }
        [("companies", Some(company)), ("salesOrders", Some(order)), ("salesOrderLines", None)] => {
            Some(Target::OrderLines {
                company: owned(company),
                order: owned(order),
            })
        }
        [("subscriptions", None)] => Some(Target::Subscriptions),
        [("subscriptions", Some(id))] => Some(Target::Subscription(owned(id))),
        _ => None,
    }
}

fn document_collection(name: &str) -> Option<Collection> {
    match name {
        "customers" => Some(Collection::Customers),
        "salesOrders" => Some(Collection::SalesOrders),
        _ => None,
    }
}

/// Counts one request being served until dropped.
struct InFlight<'a> {
    counter: &'a AtomicUsize,
}

impl<'a> InFlight<'a> {
    fn enter(counter: &'a AtomicUsize, max: usize) -> Option<Self> {
        let before = counter.fetch_add(1, Ordering::SeqCst);
        if before >= max {
            counter.fetch_sub(1, Ordering::SeqCst);
            return None;
        }
        Some(Self { counter })
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.counter.fetch_sub(1, Ordering::SeqCst);
    }
}

fn too_many_requests(shared: &Shared, retry_after_secs: u64, message: &str) -> Response {
    shared.throttled.fetch_add(1, Ordering::SeqCst);
    tracing::debug!(sandbox = "business_central", retry_after_secs, "request throttled");
    // NOTE: the error code is an assumption; Microsoft's error code list names none for 429.
    let mut response = odata_error(StatusCode::TOO_MANY_REQUESTS, "Application_TooManyRequests", message);
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(retry_after_secs));
    response
}

fn authenticated(shared: &Shared, headers: &HeaderMap) -> bool {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    bearer == Some(shared.config.api_token.as_str())
}

/// Returns the wait in seconds when a forced 429 is due or the token bucket is empty.
fn rate_limited(shared: &Shared) -> Option<u64> {
    let forced = shared.forced_429.lock().ok().and_then(|mut forced| forced.take());
    forced.or_else(|| {
        let mut bucket = shared.bucket.lock().ok()?;
        bucket.try_take(Instant::now()).err().map(retry_after_secs)
    })
}

/// Returns `http://<Host>`, the base URL the client used, for `@odata.nextLink` and
/// `@odata.context`.
fn base_url(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|value| value.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

/// The parts of a request every `/api/v2.0` handler may need.
pub(super) struct ApiRequest {
    pub(super) base: String,
    pub(super) query: BTreeMap<String, String>,
    pub(super) headers: HeaderMap,
    pub(super) body: Bytes,
}

async fn api(
    State(shared): State<Arc<Shared>>,
    method: Method,
    Path(path): Path<String>,
    query: Result<Query<BTreeMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    shared.api_requests.fetch_add(1, Ordering::SeqCst);
    if !authenticated(&shared, &headers) {
        tracing::warn!(
            sandbox = "business_central",
            "request rejected: missing or invalid bearer token"
        );
        return odata_error(
            StatusCode::UNAUTHORIZED,
            "Authentication_InvalidCredentials",
            "The server has rejected the client credentials.",
        );
    }
    let Some(_in_flight) = InFlight::enter(&shared.in_flight, shared.config.max_concurrent_requests) else {
        return too_many_requests(&shared, 1, "Too many concurrent requests. Retry the request later.");
    };
    if let Some(seconds) = rate_limited(&shared) {
        let message = format!("The request limit was exceeded. Retry after {seconds} seconds.");
        return too_many_requests(&shared, seconds, &message);
    }

    let Ok(Query(query)) = query else {
        return odata_error(StatusCode::BAD_REQUEST, "BadRequest", "The query string is malformed.");
    };
    if let Some(option) = query
        .keys()
        .find(|name| name.starts_with('$') && !matches!(name.as_str(), "$filter" | "$skiptoken" | "$expand"))
    {
        return odata_error(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("The query option {option} is not supported by the sandbox; use $filter or $expand."),
        );
    }
    let Some(target) = parse_target(&path) else {
        return odata_error(
            StatusCode::NOT_FOUND,
            "BadRequest_ResourceNotFound",
            format!("Resource not found for the segment '{path}'."),
        );
    };
    let request = ApiRequest {
        base: base_url(&headers),
        query,
        headers,
        body,
    };
    route(&shared, method, target, request).await
}

async fn route(shared: &Arc<Shared>, method: Method, target: Target, request: ApiRequest) -> Response {
    let company_id = shared.config.company_id.to_ascii_lowercase();
    if let Some(rejection) = sales::check_expand(target_expands(&target), &request) {
        return rejection;
    }
    match (&target, &method) {
        (Target::Companies, &Method::GET) => companies(shared, &request, None),
        (Target::Company(company), &Method::GET) => companies(shared, &request, Some(company)),
        (Target::Items { company } | Target::Item { company, .. }, _) if *company != company_id => not_found("company"),
        (Target::Items { .. }, &Method::GET) => list_items(shared, &request),
        (Target::Items { .. }, &Method::POST) => create_item(shared, &request),
        (Target::Item { item, .. }, &Method::GET) => get_item(shared, item, &request),
        (Target::Item { item, .. }, &Method::PATCH) => patch_item(shared, item, &request),
        (Target::Item { item, .. }, &Method::DELETE) => delete_item(shared, item, &request),
        (
            Target::Documents { company, .. } | Target::Document { company, .. } | Target::OrderLines { company, .. },
            _,
        ) if *company != company_id => not_found("company"),
        (Target::Documents { collection, .. }, _) => sales::route_collection(shared, &method, *collection, &request),
        (Target::Document { collection, id, .. }, _) => sales::route_entity(shared, &method, *collection, id, &request),
        (Target::OrderLines { order, .. }, &Method::GET) => sales::list_order_lines(shared, order, &request),
        (Target::Subscriptions, &Method::GET) => list_subscriptions(shared, &request),
        (Target::Subscriptions, &Method::POST) => create_subscription(shared, &request).await,
        (Target::Subscription(id), &Method::GET) => get_subscription(shared, id, &request),
        (Target::Subscription(id), &Method::PATCH) => renew_subscription(shared, id, &request).await,
        (Target::Subscription(id), &Method::DELETE) => delete_subscription(shared, id, &request),
        _ => odata_error(
            StatusCode::METHOD_NOT_ALLOWED,
            "BadRequest_MethodNotAllowed",
            format!("'{method}' requests are not allowed for this resource."),
        ),
    }
}

/// Tells whether a target takes `$expand=salesOrderLines`.
fn target_expands(target: &Target) -> bool {
    matches!(
        target,
        Target::Documents {
            collection: Collection::SalesOrders,
            ..
        } | Target::Document {
            collection: Collection::SalesOrders,
            ..
        }
    )
}

/// The outcome of evaluating `If-Match` against an entity's tag.
pub(super) enum Precondition {
    Passed,
    Missing,
    Failed,
}

/// Evaluates `If-Match`: `*` or the exact current tag passes.
pub(super) fn if_match(headers: &HeaderMap, etag: &str) -> Precondition {
    let Some(value) = headers.get(header::IF_MATCH).and_then(|value| value.to_str().ok()) else {
        return Precondition::Missing;
    };
    if value.split(',').map(str::trim).any(|tag| tag == "*" || tag == etag) {
        Precondition::Passed
    } else {
        Precondition::Failed
    }
}

fn missing_if_match() -> Response {
    odata_error(
        StatusCode::BAD_REQUEST,
        "BadRequest_InvalidToken",
        "Could not validate the client concurrency token required by the service. Provide the entity's @odata.etag in If-Match.",
    )
}

pub(super) fn entity_changed() -> Response {
    odata_error(
        StatusCode::PRECONDITION_FAILED,
        "Request_EntityChanged",
        "Another user has already changed the record. Read it again and retry with its new @odata.etag.",
    )
}

/// Checks a required `If-Match` and returns the rejection when it does not pass.
pub(super) fn require_if_match(headers: &HeaderMap, etag: &str) -> Option<Response> {
    match if_match(headers, etag) {
        Precondition::Passed => None,
        Precondition::Missing => Some(missing_if_match()),
        Precondition::Failed => Some(entity_changed()),
    }
}

fn companies(shared: &Shared, request: &ApiRequest, id: Option<&String>) -> Response {
    let company = serde_json::json!({
        "id": shared.config.company_id,
        "systemVersion": "sandbox",
        "name": shared.config.company_name,
        "displayName": shared.config.company_name,
    });
    let metadata = format!("{}/api/v2.0/$metadata#companies", request.base);
    match id {
        None => json_response(
            StatusCode::OK,
            serde_json::to_vec(&serde_json::json!({"@odata.context": metadata, "value": [company]}))
                .unwrap_or_default(),
        ),
        Some(id) if id.eq_ignore_ascii_case(&shared.config.company_id) => {
            json_response(StatusCode::OK, serde_json::to_vec(&company).unwrap_or_default())
        }
        Some(_) => not_found("company"),
    }
}

fn items_url(shared: &Shared, request: &ApiRequest) -> String {
    format!(
        "{}/api/v2.0/companies({})/items",
        request.base, shared.config.company_id
    )
}

fn item_context(shared: &Shared, request: &ApiRequest) -> String {
    format!(
        "{}/api/v2.0/$metadata#companies({})/items/$entity",
        request.base, shared.config.company_id
    )
}

fn item_response(shared: &Shared, request: &ApiRequest, status: StatusCode, item: &Item) -> Response {
    let context = item_context(shared, request);
    entity_response(status, &item_json(item, Some(&context)), &item.etag())
}

#[derive(Serialize)]
struct Page {
    #[serde(rename = "@odata.context")]
    context: String,
    value: Vec<Box<RawValue>>,
    #[serde(rename = "@odata.nextLink", skip_serializing_if = "Option::is_none")]
    next_link: Option<String>,
}

fn list_items(shared: &Shared, request: &ApiRequest) -> Response {
    let state = shared.lock_state();
    let items: Vec<&Item> = state.items.values().collect();
    list_page(
        shared,
        request,
        Collection::Items,
        items,
        |item| &item.number,
        |item| item_json(item, None),
    )
}

/// Lists entities of a collection by `number`, filtered, one page at a time. `$skiptoken` is the
/// number of the last entity of the previous page, so a page never repeats or skips an entity
/// that existed before it.
pub(super) fn list_page<T: Filterable>(
    shared: &Shared,
    request: &ApiRequest,
    collection: Collection,
    entities: Vec<&T>,
    number: impl Fn(&T) -> &str,
    json: impl Fn(&T) -> Box<RawValue>,
) -> Response {
    let filter_text = request.query.get("$filter");
    let filter = match filter_text.map(|text| Filter::parse::<T>(text)).transpose() {
        Ok(filter) => filter.unwrap_or_default(),
        Err(error) => return odata_error(StatusCode::BAD_REQUEST, "BadRequest", error.to_string()),
    };
    let after = request.query.get("$skiptoken");

    let mut matching: Vec<&T> = entities
        .into_iter()
        .filter(|entity| filter.matches(*entity))
        .filter(|entity| after.is_none_or(|after| number(entity) > after.as_str()))
        .collect();
    matching.sort_by(|left, right| number(left).cmp(number(right)));

    let page_size = shared.config.page_size.max(1);
    let path = shared.collection_resource(collection);
    let next_link = matching.get(page_size).and(matching.get(page_size - 1)).map(|last| {
        let mut query = String::new();
        for option in ["$filter", "$expand"] {
            if let Some(text) = request.query.get(option) {
                query.push_str(&format!("{option}={}&", percent_encode(text)));
            }
        }
        format!(
            "{}/{path}?{query}$skiptoken={}",
            request.base,
            percent_encode(number(last))
        )
    });
    let page = Page {
        context: format!(
            "{}/api/v2.0/$metadata#companies({})/{}",
            request.base,
            shared.config.company_id,
            collection.name()
        ),
        value: matching.iter().take(page_size).map(|entity| json(entity)).collect(),
        next_link,
    };
    json_response(StatusCode::OK, serde_json::to_vec(&page).unwrap_or_default())
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub(super) fn percent_encode(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn get_item(shared: &Shared, id: &str, request: &ApiRequest) -> Response {
    let item = shared.lock_state().items.get(id).cloned();
    match item {
        Some(item) => item_response(shared, request, StatusCode::OK, &item),
        None => not_found("item"),
    }
}

/// Business Central stores `Code` fields such as the item number in upper case.
pub(super) fn code(number: &str) -> String {
    number.to_uppercase()
}

fn duplicate_number(number: &str) -> Response {
    odata_error(
        StatusCode::BAD_REQUEST,
        "Internal_EntityWithSameKeyExists",
        format!("The item already exists. Identification fields and values: No.='{number}'"),
    )
}

fn create_item(shared: &Arc<Shared>, request: &ApiRequest) -> Response {
    let mut write = match ItemWrite::parse(&request.body) {
        Ok(write) => write,
        Err(error) => return body_error(&error),
    };
    let Some(number) = write.number.as_deref().map(code) else {
        return odata_error(
            StatusCode::BAD_REQUEST,
            "BadRequest_RequiredParamNotProvided",
            "Field 'number' must not be blank or empty.",
        );
    };
    write.number = Some(number.clone());

    let mut state = shared.lock_state();
    if state.item_id_by_number(&number).is_some() {
        return duplicate_number(&number);
    }
    let now = Utc::now();
    let mut item = Shared::new_item(&mut state, &number, now);
    write.apply(&mut item);
    state.items.insert(item.id.clone(), item.clone());
    shared.record_change(&mut state, Collection::Items, &item.id, ChangeType::Created, now);
    drop(state);

    let mut response = item_response(shared, request, StatusCode::CREATED, &item);
    let location = format!("{}({})", items_url(shared, request), item.id);
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, location);
    }
    response
}

fn patch_item(shared: &Arc<Shared>, id: &str, request: &ApiRequest) -> Response {
    let mut state = shared.lock_state();
    let Some(mut item) = state.items.get(id).cloned() else {
        return not_found("item");
    };
    if let Some(rejection) = require_if_match(&request.headers, &item.etag()) {
        return rejection;
    }
    let mut write = match ItemWrite::parse(&request.body) {
        Ok(write) => write,
        Err(error) => return body_error(&error),
    };
    if let Some(number) = write.number.as_deref().map(code) {
        if state.item_id_by_number(&number).is_some_and(|other| other != item.id) {
            return duplicate_number(&number);
        }
        write.number = Some(number);
    }

    let now = Utc::now();
    if write.apply(&mut item) {
        item.version = state.next_version();
        item.last_modified = now;
        state.items.insert(item.id.clone(), item.clone());
        shared.record_change(&mut state, Collection::Items, &item.id, ChangeType::Updated, now);
    }
    drop(state);
    item_response(shared, request, StatusCode::OK, &item)
}

fn delete_item(shared: &Arc<Shared>, id: &str, request: &ApiRequest) -> Response {
    let mut state = shared.lock_state();
    let Some(item) = state.items.get(id) else {
        return not_found("item");
    };
    if let Precondition::Failed = if_match(&request.headers, &item.etag()) {
        return entity_changed();
    }
    state.items.remove(id);
    shared.record_change(&mut state, Collection::Items, id, ChangeType::Deleted, Utc::now());
    StatusCode::NO_CONTENT.into_response()
}

fn subscription_context(request: &ApiRequest) -> String {
    format!("{}/api/v2.0/$metadata#subscriptions/$entity", request.base)
}

fn subscription_response(request: &ApiRequest, status: StatusCode, subscription: &Subscription) -> Response {
    let context = subscription_context(request);
    entity_response(
        status,
        &subscription_json(subscription, Some(&context)),
        &subscription.etag(),
    )
}

fn unsupported_resource(shared: &Shared, resource: &str) -> Response {
    odata_error(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        format!(
            "The resource '{resource}' cannot be subscribed to; the sandbox supports /{}, /{} and /{} only.",
            shared.collection_resource(Collection::Items),
            shared.collection_resource(Collection::Customers),
            shared.collection_resource(Collection::SalesOrders)
        ),
    )
}

fn handshake_failed(reason: &str) -> Response {
    // NOTE: the status and code of a failed handshake are assumptions; Microsoft documents only
    // that the subscription is not created.
    odata_error(
        StatusCode::BAD_REQUEST,
        "BadRequest",
        format!("The subscription could not be validated: {reason}."),
    )
}

async fn create_subscription(shared: &Arc<Shared>, request: &ApiRequest) -> Response {
    let write = match SubscriptionWrite::parse(&request.body) {
        Ok(write) => write,
        Err(error) => return body_error(&error),
    };
    let (Some(notification_url), Some(resource)) = (write.notification_url, write.resource) else {
        return odata_error(
            StatusCode::BAD_REQUEST,
            "BadRequest_RequiredParamNotProvided",
            "Fields 'notificationUrl' and 'resource' must not be blank or empty.",
        );
    };
    if subscribed_collection(&resource, &shared.config.company_id).is_none() {
        return unsupported_resource(shared, &resource);
    }

    if let Err(reason) = handshake(&shared.handshake_client, &notification_url).await {
        tracing::info!(sandbox = "business_central", reason = %reason, "subscription handshake failed");
        return handshake_failed(&reason);
    }

    let now = Utc::now();
    let mut state = shared.lock_state();
    let subscription = Subscription {
        subscription_id: new_uuid().replace('-', ""),
        notification_url,
        resource,
        client_state: write.client_state.unwrap_or_default(),
        expiration: now + shared.config.subscription_lifetime,
        last_modified: now,
        version: state.next_version(),
    };
    state
        .subscriptions
        .insert(subscription.subscription_id.clone(), Slot::new(subscription.clone()));
    drop(state);
    tracing::info!(sandbox = "business_central", subscription_id = %subscription.subscription_id, "subscription created");
    subscription_response(request, StatusCode::CREATED, &subscription)
}

fn live_subscription(shared: &Shared, id: &str) -> Option<Subscription> {
    let mut state = shared.lock_state();
    state.drop_expired(Utc::now());
    state.subscriptions.get(id).map(|slot| slot.subscription.clone())
}

fn list_subscriptions(shared: &Shared, request: &ApiRequest) -> Response {
    let mut state = shared.lock_state();
    state.drop_expired(Utc::now());
    let collection = Page {
        context: format!("{}/api/v2.0/$metadata#subscriptions", request.base),
        value: state
            .subscriptions
            .values()
            .map(|slot| subscription_json(&slot.subscription, None))
            .collect(),
        next_link: None,
    };
    json_response(StatusCode::OK, serde_json::to_vec(&collection).unwrap_or_default())
}

fn get_subscription(shared: &Shared, id: &str, request: &ApiRequest) -> Response {
    match live_subscription(shared, id) {
        Some(subscription) => subscription_response(request, StatusCode::OK, &subscription),
        None => not_found("subscription"),
    }
}

/// Renews a subscription: runs the handshake again and, if it passes, applies the body and
/// restarts the lifetime.
async fn renew_subscription(shared: &Arc<Shared>, id: &str, request: &ApiRequest) -> Response {
    let Some(current) = live_subscription(shared, id) else {
        return not_found("subscription");
    };
    if let Some(rejection) = require_if_match(&request.headers, &current.etag()) {
        return rejection;
    }
    let write = match SubscriptionWrite::parse(&request.body) {
        Ok(write) => write,
        Err(error) => return body_error(&error),
    };
    let notification_url = write.notification_url.unwrap_or(current.notification_url);
    let resource = write.resource.unwrap_or(current.resource);
    if subscribed_collection(&resource, &shared.config.company_id).is_none() {
        return unsupported_resource(shared, &resource);
    }

    if let Err(reason) = handshake(&shared.handshake_client, &notification_url).await {
        tracing::info!(sandbox = "business_central", subscription_id = %id, reason = %reason, "renewal handshake failed");
        return handshake_failed(&reason);
    }

    let now = Utc::now();
    let mut state = shared.lock_state();
    state.drop_expired(now);
    let version = state.next_version();
    let Some(slot) = state.subscriptions.get_mut(id) else {
        return not_found("subscription");
    };
    // Another request may have renewed or changed the subscription during the handshake.
    if slot.subscription.version != current.version {
        return entity_changed();
    }
    let subscription = &mut slot.subscription;
    subscription.notification_url = notification_url;
    subscription.resource = resource;
    if let Some(client_state) = write.client_state {
        subscription.client_state = client_state;
    }
    subscription.expiration = now + shared.config.subscription_lifetime;
    subscription.last_modified = now;
    subscription.version = version;
    let renewed = subscription.clone();
    drop(state);
    tracing::info!(sandbox = "business_central", subscription_id = %id, "subscription renewed");
    subscription_response(request, StatusCode::OK, &renewed)
}

fn delete_subscription(shared: &Shared, id: &str, request: &ApiRequest) -> Response {
    let Some(current) = live_subscription(shared, id) else {
        return not_found("subscription");
    };
    if let Precondition::Failed = if_match(&request.headers, &current.etag()) {
        return entity_changed();
    }
    shared.lock_state().subscriptions.remove(id);
    tracing::info!(sandbox = "business_central", subscription_id = %id, "subscription deleted");
    StatusCode::NO_CONTENT.into_response()
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    #[derive(Serialize)]
    struct SandboxState {
        company_id: String,
        items: Vec<Box<RawValue>>,
        customers: Vec<Box<RawValue>>,
        #[serde(rename = "salesOrders")]
        sales_orders: Vec<Box<RawValue>>,
        subscriptions: Vec<serde_json::Value>,
        api_request_count: u64,
        throttled_count: u64,
        notification_deliveries: usize,
    }
    let mut state = shared.lock_state();
    state.drop_expired(Utc::now());
    let mut items: Vec<&Item> = state.items.values().collect();
    items.sort_by(|left, right| left.number.cmp(&right.number));
    let subscriptions = state
        .subscriptions
        .values()
        .filter_map(|slot| {
            let mut json: serde_json::Value =
                serde_json::from_str(subscription_json(&slot.subscription, None).get()).ok()?;
            // The client state is the receiver's shared secret, so the state view hides it.
            json["clientState"] = serde_json::Value::from("<redacted>");
            Some(json)
        })
        .collect();
    let view = SandboxState {
        company_id: shared.config.company_id.clone(),
        items: items.into_iter().map(|item| item_json(item, None)).collect(),
        customers: state
            .customers
            .values()
            .map(|customer| customer_json(customer, None))
            .collect(),
        sales_orders: state
            .sales_orders
            .values()
            .map(|order| sales_order_json(order, None, true))
            .collect(),
        subscriptions,
        api_request_count: shared.api_requests.load(Ordering::SeqCst),
        throttled_count: shared.throttled.load(Ordering::SeqCst),
        notification_deliveries: shared.dispatcher.delivery_count(),
    };
    json_response(StatusCode::OK, serde_json::to_vec(&view).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_parses_odata_keys() {
        let company = "11111111-2222-3333-4444-555555555555";
        assert_eq!(
            parse_target(&format!("companies({company})/items")),
            Some(Target::Items {
                company: company.to_owned()
            })
        );
        assert_eq!(
            parse_target("subscriptions('ABC123')"),
            Some(Target::Subscription("abc123".to_owned()))
        );
        assert_eq!(
            parse_target("subscriptions(abc123)"),
            Some(Target::Subscription("abc123".to_owned()))
        );
        assert_eq!(parse_target("customers"), None);
        assert_eq!(
            parse_target(&format!("companies({company})/salesOrders(ABC)/salesOrderLines")),
            Some(Target::OrderLines {
                company: company.to_owned(),
                order: "abc".to_owned()
            })
        );
        assert_eq!(parse_target(&format!("companies({company})/vendors")), None);
    }

    #[test]
    fn percent_encode_keeps_unreserved() {
        assert_eq!(percent_encode("number eq 'A&B'"), "number%20eq%20%27A%26B%27");
        assert_eq!(percent_encode("MUG-RED_1.x~"), "MUG-RED_1.x~");
    }
}
