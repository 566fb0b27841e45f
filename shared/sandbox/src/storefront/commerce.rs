//! Customers, quotes (Shopify's draft orders), orders, fulfillments and returns: a REST-shaped
//! API, their webhooks, and the edits a simulated customer makes.
//!
//! - `POST /admin/api/<version>/<collection>.json` creates a document, or updates the one with
//!   the same `external_id` when the body has one. `PUT /admin/api/<version>/<collection>/<id>.json`
//!   updates one. Collections: `customers`, `draft_orders`, `orders`, `fulfillments`, `returns`.
//!   A fulfillment's `order` must name an existing order (HTTP 422 otherwise).
//! - Webhooks: `customers/create|update`, `draft_orders/create|update`, `orders/create|updated`,
//!   `fulfillments/create|update`, `returns/request|update`. The payload is the document with a
//!   numeric `id`, its members and `updated_at` in the shop's offset.
//!
//! NOTE: Shopify's REST bodies wrap the object in a singular key (`{"draft_order": {...}}`) and
//! have no `external_id` member, where an app keeps such a key in a metafield. The sandbox takes
//! and sends the bare object with a top-level `external_id`, and fieldsync's connector and
//! webhook format follow the sandbox, not Shopify.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, FixedOffset, Utc};
use serde_json::json;
use serde_json::value::RawValue;

use super::model::Store;
use super::webhooks::rest_time;
use super::{Shared, StorefrontHandle};
use crate::delivery::{new_uuid, OutgoingEvent};
use crate::documents::{json_member, text_member, Document, DocumentChange, DocumentKind};
use crate::error::SandboxError;
use crate::json_text::shopify_escape;

/// Returns the document kind a REST collection holds.
fn collection_kind(collection: &str) -> Option<DocumentKind> {
    match collection {
        "customers" => Some(DocumentKind::Customer),
        "draft_orders" => Some(DocumentKind::Quote),
        "orders" => Some(DocumentKind::Order),
        "fulfillments" => Some(DocumentKind::Shipment),
        "returns" => Some(DocumentKind::Return),
        _ => None,
    }
}

/// Returns the webhook topic of a created or changed document.
fn topic(kind: DocumentKind, created: bool) -> &'static str {
    match (kind, created) {
        (DocumentKind::Customer, true) => "customers/create",
        (DocumentKind::Customer, false) => "customers/update",
        (DocumentKind::Quote, true) => "draft_orders/create",
        (DocumentKind::Quote, false) => "draft_orders/update",
        (DocumentKind::Order, true) => "orders/create",
        (DocumentKind::Order, false) => "orders/updated",
        (DocumentKind::Shipment, true) => "fulfillments/create",
        (DocumentKind::Shipment, false) => "fulfillments/update",
        (DocumentKind::Return, true) => "returns/request",
        (DocumentKind::Return, false) => "returns/update",
    }
}

/// Builds the REST form of a document: numeric `id`, `external_id`, members, `updated_at`.
pub(crate) fn document_json(document: &Document, offset: FixedOffset) -> Vec<u8> {
    let id = if document.id.bytes().all(|byte| byte.is_ascii_digit()) {
        document.id.clone()
    } else {
        crate::documents::json_string(&document.id)
    };
    document.to_json("id", &id, "updated_at", &rest_time(document.updated_at, offset))
}

fn document_event(document: &Document, created: bool, offset: FixedOffset, now: DateTime<Utc>) -> OutgoingEvent {
    OutgoingEvent {
        topic: topic(document.kind, created).to_owned(),
        event_id: new_uuid(),
        triggered_at: now,
        body: shopify_escape(&document_json(document, offset)),
    }
}

impl Shared {
    /// Sends the webhook of a document a write created or changed.
    fn emit_document(&self, store: &Store, document: &Document, change: DocumentChange) {
        let created = match change {
            DocumentChange::Created => true,
            DocumentChange::Updated => false,
            DocumentChange::Unchanged => return,
        };
        self.publish(
            store,
            document_event(document, created, self.offset, document.updated_at),
        );
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        let token = headers
            .get("X-Shopify-Access-Token")
            .and_then(|value| value.to_str().ok());
        token == Some(self.access_token.as_str())
    }

    /// Creates or updates a document, after the checks the shop makes.
    fn write_document(
        &self,
        kind: DocumentKind,
        id: Option<&str>,
        mut members: BTreeMap<String, Box<RawValue>>,
    ) -> Result<(Document, DocumentChange), Rejected> {
        let mut store = self.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if kind == DocumentKind::Shipment {
            let order = members
                .get("order")
                .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
            if let Some(order) = order.filter(|order| store.documents.get(DocumentKind::Order, order).is_none()) {
                return Err(Rejected::Invalid {
                    field: "order",
                    message: format!("order {order} not found"),
                });
            }
        }
        let now = Utc::now();
        let written = match id {
            Some(id) => store
                .documents
                .patch(kind, id, members, now)
                .ok_or(Rejected::NotFound)?,
            None => {
                let external_id = match members.remove("external_id") {
                    Some(raw) => Some(
                        serde_json::from_str::<String>(raw.get()).map_err(|_| Rejected::Invalid {
                            field: "external_id",
                            message: "expected a string".to_owned(),
                        })?,
                    ),
                    None => None,
                };
                let id = store.allocate_id().to_string();
                store.documents.upsert(kind, external_id, members, now, || id)
            }
        };
        self.api_writes.fetch_add(1, Ordering::SeqCst);
        self.emit_document(&store, &written.0, written.1);
        Ok(written)
    }
}

/// A document request the shop rejects.
#[derive(Debug)]
enum Rejected {
    /// No document has the id in the path (HTTP 404).
    NotFound,
    /// The body is not a JSON object (HTTP 400).
    NotAnObject,
    /// A member is invalid (HTTP 422 with Shopify's `errors` map).
    Invalid { field: &'static str, message: String },
}

impl IntoResponse for Rejected {
    fn into_response(self) -> Response {
        match self {
            Rejected::NotFound => (StatusCode::NOT_FOUND, Json(json!({"errors": "Not Found"}))).into_response(),
            Rejected::NotAnObject => (
                StatusCode::BAD_REQUEST,
                Json(json!({"errors": "expected a JSON object"})),
            )
                .into_response(),
            Rejected::Invalid { field, message } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                Json(json!({"errors": {field: [message]}})),
            )
                .into_response(),
        }
    }
}

fn invalid_token() -> Response {
    tracing::warn!(sandbox = "storefront", "request rejected: invalid access token");
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"})),
    )
        .into_response()
}

fn members_of(body: &[u8]) -> Result<BTreeMap<String, Box<RawValue>>, Rejected> {
    let mut members: BTreeMap<String, Box<RawValue>> =
        serde_json::from_slice(body).map_err(|_| Rejected::NotAnObject)?;
    members.remove("id");
    members.remove("updated_at");
    Ok(members)
}

fn document_response(status: StatusCode, document: &Document, offset: FixedOffset) -> Response {
    let mut response = (status, document_json(document, offset)).into_response();
    response
        .headers_mut()
        .insert("Content-Type", HeaderValue::from_static("application/json"));
    response
}

/// `POST /admin/api/<version>/<collection>.json`.
pub(crate) async fn create_document(
    State(shared): State<Arc<Shared>>,
    Path((_version, file)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !shared.authorized(&headers) {
        return invalid_token();
    }
    let Some(kind) = file.strip_suffix(".json").and_then(collection_kind) else {
        return (StatusCode::NOT_FOUND, Json(json!({"errors": "Not Found"}))).into_response();
    };
    let members = match members_of(&body) {
        Ok(members) => members,
        Err(rejected) => return rejected.into_response(),
    };
    match shared.write_document(kind, None, members) {
        Ok((document, DocumentChange::Created)) => document_response(StatusCode::CREATED, &document, shared.offset),
        Ok((document, _)) => document_response(StatusCode::OK, &document, shared.offset),
        Err(rejected) => rejected.into_response(),
    }
}

/// `PUT /admin/api/<version>/<collection>/<id>.json`.
pub(crate) async fn update_document(
    State(shared): State<Arc<Shared>>,
    Path((_version, collection, file)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !shared.authorized(&headers) {
        return invalid_token();
    }
    let (Some(kind), Some(id)) = (collection_kind(&collection), file.strip_suffix(".json")) else {
        return (StatusCode::NOT_FOUND, Json(json!({"errors": "Not Found"}))).into_response();
    };
    let members = match members_of(&body) {
        Ok(members) => members,
        Err(rejected) => return rejected.into_response(),
    };
    match shared.write_document(kind, Some(id), members) {
        Ok((document, _)) => document_response(StatusCode::OK, &document, shared.offset),
        Err(rejected) => rejected.into_response(),
    }
}

/// Returns the REST form of every document, for `GET /_sandbox/state`.
pub(crate) fn state_documents(shared: &Shared) -> Vec<serde_json::Value> {
    let store = shared.store.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let kinds = [
        DocumentKind::Customer,
        DocumentKind::Quote,
        DocumentKind::Order,
        DocumentKind::Shipment,
        DocumentKind::Return,
    ];
    kinds
        .into_iter()
        .flat_map(|kind| store.documents.all(kind))
        .filter_map(|document| serde_json::from_slice(&document_json(&document, shared.offset)).ok())
        .collect()
}

impl StorefrontHandle {
    /// Creates a document as a customer or shop staff would, and sends its create webhook.
    /// Members are JSON text, such as `"\"requested\""` or `[{"sku":"MUG-RED","quantity":2}]`.
    pub fn create_document_as_user(&self, kind: DocumentKind, members: &[(&str, &str)]) -> Document {
        let members = members
            .iter()
            .map(|(name, json)| ((*name).to_owned(), json_member(json)))
            .collect();
        let mut store = self
            .shared
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = store.allocate_id().to_string();
        let (document, change) = store.documents.upsert(kind, None, members, Utc::now(), || id);
        self.shared.emit_document(&store, &document, change);
        document
    }

    /// Changes members of a document as a customer or shop staff would, and sends its update
    /// webhook if a value changed.
    pub fn edit_document_as_user(
        &self,
        kind: DocumentKind,
        id: &str,
        members: &[(&str, &str)],
    ) -> Result<Document, SandboxError> {
        let members = members
            .iter()
            .map(|(name, json)| ((*name).to_owned(), json_member(json)))
            .collect();
        let mut store = self
            .shared
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (document, change) =
            store
                .documents
                .patch(kind, id, members, Utc::now())
                .ok_or_else(|| SandboxError::NotFound {
                    kind: kind.as_str(),
                    id: id.to_owned(),
                })?;
        self.shared.emit_document(&store, &document, change);
        Ok(document)
    }

    /// Converts a quote into an order as the customer does at checkout: marks the draft order
    /// `converted` and creates an order in status `placed` with the quote's customer, lines and
    /// total, sending `draft_orders/update` and `orders/create`. Returns the order.
    pub fn convert_quote_to_order(&self, quote_id: &str) -> Result<Document, SandboxError> {
        let quote = self.edit_document_as_user(DocumentKind::Quote, quote_id, &[("status", "\"converted\"")])?;
        let mut members: BTreeMap<String, Box<RawValue>> = BTreeMap::new();
        for name in ["customer", "line_items", "total_price"] {
            if let Some(raw) = quote.members.get(name) {
                members.insert(name.to_owned(), raw.clone());
            }
        }
        members.insert("quote".to_owned(), text_member(quote_id));
        members.insert("status".to_owned(), text_member("placed"));
        let mut store = self
            .shared
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let id = store.allocate_id().to_string();
        members.insert(
            "name".to_owned(),
            text_member(&format!("#{}", 1000 + store.documents.count(DocumentKind::Order) + 1)),
        );
        let (order, change) = store
            .documents
            .upsert(DocumentKind::Order, None, members, Utc::now(), || id);
        self.shared.emit_document(&store, &order, change);
        Ok(order)
    }

    /// Returns a snapshot of a document by its storefront id.
    pub fn document(&self, kind: DocumentKind, id: &str) -> Option<Document> {
        let store = self
            .shared
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        store.documents.get(kind, id).cloned()
    }

    /// Returns a snapshot of the document created with `external_id`.
    pub fn document_by_external_id(&self, kind: DocumentKind, external_id: &str) -> Option<Document> {
        let store = self
            .shared
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        store.documents.by_external_id(kind, external_id).cloned()
    }

    /// Returns a snapshot of every document of a kind, by id.
    pub fn documents(&self, kind: DocumentKind) -> Vec<Document> {
        let store = self
            .shared
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        store.documents.all(kind)
    }
}
