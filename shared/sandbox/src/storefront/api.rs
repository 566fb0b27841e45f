//! The HTTP edge: authentication, forced 429s, the cost bucket and the GraphQL endpoint.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use chrono::Utc;
use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};

use super::graphql::{parse_root_call, QueryError};
use super::operations::{execute, requested_cost};
use super::throttle::QueryCost;
use super::webhooks::product_payload;
use super::Shared;

const INVALID_TOKEN: &str = "[API] Invalid API key or access token (unrecognized login or wrong password)";

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/admin/api/{version}/graphql.json", post(graphql))
        .route("/admin/api/{version}/{file}", post(super::commerce::create_document))
        .route(
            "/admin/api/{version}/{collection}/{file}",
            put(super::commerce::update_document),
        )
        .route("/_sandbox/state", get(state))
        .with_state(shared)
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct GraphqlRequest {
    query: String,
    variables: Option<BTreeMap<String, Box<RawValue>>>,
    operation_name: Option<IgnoredAny>,
}

async fn graphql(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let token = headers
        .get("X-Shopify-Access-Token")
        .and_then(|value| value.to_str().ok());
    if token != Some(shared.access_token.as_str()) {
        tracing::warn!(sandbox = "storefront", "request rejected: invalid access token");
        return (StatusCode::UNAUTHORIZED, Json(json!({"errors": INVALID_TOKEN}))).into_response();
    }

    let forced = shared.forced_429.lock().ok().and_then(|mut forced| forced.take());
    if let Some(retry_after_secs) = forced {
        return too_many_requests(retry_after_secs);
    }

    let Ok(request) = serde_json::from_slice::<GraphqlRequest>(&body) else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"errors": {"query": "Required parameter missing or invalid"}})),
        )
            .into_response();
    };
    let _ = request.operation_name;
    let variables = request.variables.unwrap_or_default();
    let call = match parse_root_call(&request.query, &variables) {
        Ok(call) => call,
        Err(error) => return with_version(Json(query_error(&error)).into_response(), &version),
    };

    let requested = requested_cost(&call);
    let now = Instant::now();
    let Ok(mut bucket) = shared.bucket.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    if !bucket.try_reserve(requested, now) {
        shared.throttled.fetch_add(1, Ordering::SeqCst);
        let cost = bucket.cost_extension(
            QueryCost {
                requested,
                actual: None,
            },
            now,
        );
        let body = json!({
            "errors": [{
                "message": "Throttled",
                "extensions": {"code": "THROTTLED", "documentation": "https://shopify.dev/api/usage/rate-limits"},
            }],
            "extensions": cost,
        });
        return with_version(Json(body).into_response(), &version);
    }

    let Ok(mut store) = shared.store.lock() else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let executed = match execute(&mut store, &call, Utc::now()) {
        Ok(executed) => executed,
        Err(error) => {
            bucket.refund(requested);
            let body = json!({"errors": [{"message": error.0, "extensions": {"code": "INVALID_VARIABLE"}}]});
            return with_version(Json(body).into_response(), &version);
        }
    };
    bucket.refund(requested.saturating_sub(executed.actual_cost));
    if call.field.is_mutation() {
        shared.api_writes.fetch_add(1, Ordering::SeqCst);
        if let Ok(mut names) = shared.mutations.lock() {
            names.push(call.field.name().to_owned());
        }
    }
    tracing::debug!(
        sandbox = "storefront",
        field = call.field.name(),
        changed_products = executed.changes.len(),
        "GraphQL request served"
    );
    shared.emit(&store, &executed.changes);
    drop(store);

    let cost = bucket.cost_extension(
        QueryCost {
            requested,
            actual: Some(executed.actual_cost),
        },
        Instant::now(),
    );
    drop(bucket);
    let mut data = serde_json::Map::new();
    data.insert(call.response_key, executed.data);
    with_version(
        Json(json!({"data": data, "extensions": cost})).into_response(),
        &version,
    )
}

fn query_error(error: &QueryError) -> Value {
    let code = match error {
        QueryError::Unsupported(_) => "undefinedField",
        QueryError::NoField | QueryError::SeveralFields(_) | QueryError::Syntax(_) => "parseError",
    };
    json!({"errors": [{"message": error.to_string(), "extensions": {"code": code}}]})
}

fn too_many_requests(retry_after_secs: u64) -> Response {
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"errors": "Too many requests. Retry after the number of seconds in Retry-After."})),
    )
        .into_response();
    response
        .headers_mut()
        .insert("Retry-After", HeaderValue::from(retry_after_secs));
    response
}

fn with_version(mut response: Response, version: &str) -> Response {
    if let Ok(value) = HeaderValue::from_str(version) {
        response.headers_mut().insert("X-Shopify-API-Version", value);
    }
    response
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    let products: Vec<Value> = match shared.store.lock() {
        Ok(store) => store
            .products()
            .map(|product| product_payload(product, shared.offset))
            .collect(),
        Err(_) => return StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    };
    Json(json!({
        "products": products,
        "documents": super::commerce::state_documents(&shared),
        "api_write_count": shared.api_writes.load(Ordering::SeqCst),
        "webhook_deliveries": shared.dispatcher.delivery_count(),
    }))
    .into_response()
}
