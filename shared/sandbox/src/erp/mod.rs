//! A generic REST ERP that sends fieldsync's signed-JSON webhooks.
//!
//! # Covered
//!
//! - Bearer authentication (`Authorization: Bearer <token>`, HTTP 401 with a JSON error body
//!   otherwise) on every `/api/v1` route.
//! - Items: `GET /api/v1/items/{number}` returns 200 with a quoted-version `ETag`, or 404.
//!   `PATCH /api/v1/items/{number}` applies a partial JSON body. It honours an optional
//!   `If-Match` (412 on mismatch, strong comparison, `*` allowed), returns 404 for an unknown
//!   item, and 422 for unknown, read-only or mistyped fields. Money (`unit_price`, `customer_prices[].unit_price`)
//!   is a JSON number read from and written to its exact digits, never through `f64`, and a
//!   string is rejected.
//! - Sales orders: `POST /api/v1/sales-orders` upserts by `external_id` (201 with `Location` when
//!   created, 200 with the given fields applied when the external id exists);
//!   `GET` and `PATCH /api/v1/sales-orders/{number}` like items. `total` must be a JSON number;
//!   line `unit_price` may also be a decimal string. Besides the documented order fields, an
//!   order has an optional `reference` (the customer's own order number).
//! - Customers, quotes, shipments and returns: `POST /api/v1/{customers,quotes,shipments,returns}`
//!   upserts by `external_id`, and `GET` and `PATCH /api/v1/<collection>/{number}` read and
//!   change one, with members kept as the JSON text they were sent in. A quote, return or sales
//!   order whose `customer` names no customer created with external id `customer:<value>`, or a
//!   return whose `order` names no sales order `order:<value>`, is rejected with 422. Sales
//!   orders also carry `customer`, `quote` and `status`. Handle methods play the ERP's people:
//!   [`ErpHandle::price_and_approve_quote`], [`ErpHandle::fulfil_order`] and
//!   [`ErpHandle::edit_document_as_user`].
//! - A request token bucket answered with HTTP 429 and `Retry-After` in whole seconds, and
//!   forced 429s for tests.
//! - A webhook for every change, through the API or a simulated user: `item.created`,
//!   `item.updated`, `sales_order.created`, `sales_order.updated`, `<kind>.created` and
//!   `<kind>.updated` for customers, quotes, shipments and returns, in fieldsync's signed-JSON
//!   format (see the `webhooks` module), retried with backoff under the same event id. The
//!   timestamp and signature are computed again for each attempt.
//!
//! # Not covered
//!
//! - Items cannot be created or deleted through the API; they come from
//!   [`ErpHandle::upsert_item_as_user`]. Orders cannot be deleted.
//! - No listing or search endpoints, paging, field selection or `If-None-Match`.
//! - A write that changes no value keeps the version and sends no webhook.

mod api;
mod model;
pub(crate) mod throttle;
mod webhooks;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::Serialize;

pub use model::{CustomerPrice, Item, ItemEdit, OrderEdit, OrderLine, SalesOrder};
pub use throttle::RateLimitConfig;

use crate::delivery::{Delivery, Dispatcher, RetryPolicy};
use crate::error::SandboxError;
use crate::server::RunningServer;
use model::Store;
use throttle::TokenBucket;
use webhooks::{document_event, erp_event, FieldsyncSigner};

use crate::documents::{json_member, text_member, Document, DocumentChange, DocumentKind};

/// Settings of an ERP sandbox. Secrets are redacted from `Debug` output.
#[derive(Clone)]
pub struct ErpConfig {
    /// The bearer token every API request must carry.
    pub api_token: String,
    /// The shared secret that signs webhooks.
    pub webhook_secret: String,
    /// The URL webhooks are sent to; `None` drops them until [`ErpHandle::set_webhook_url`].
    pub webhook_url: Option<String>,
    pub rate_limit: RateLimitConfig,
    pub retry: RetryPolicy,
}

impl Default for ErpConfig {
    fn default() -> Self {
        Self {
            api_token: "erp-sandbox-fake-token".to_owned(),
            webhook_secret: "erp-sandbox-fake-webhook-secret".to_owned(),
            webhook_url: None,
            rate_limit: RateLimitConfig::default(),
            retry: RetryPolicy::default(),
        }
    }
}

impl fmt::Debug for ErpConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErpConfig")
            .field("api_token", &"<redacted>")
            .field("webhook_secret", &"<redacted>")
            .field("webhook_url", &self.webhook_url)
            .field("rate_limit", &self.rate_limit)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Starts ERP sandboxes.
#[derive(Debug)]
pub struct ErpSandbox;

impl ErpSandbox {
    /// Starts an ERP sandbox on `127.0.0.1` with an ephemeral port. Must run inside a Tokio
    /// runtime.
    pub async fn start(config: ErpConfig) -> Result<ErpHandle, SandboxError> {
        let signer = FieldsyncSigner {
            secret: config.webhook_secret.clone(),
        };
        let dispatcher = Dispatcher::new(
            "erp",
            config.webhook_url.clone(),
            config.retry.clone(),
            Box::new(signer),
        )?;
        let shared = Arc::new(Shared {
            api_token: config.api_token.clone(),
            store: Mutex::new(Store::new()),
            bucket: Mutex::new(TokenBucket::new(config.rate_limit)),
            forced_429: Mutex::new(Forced429::default()),
            api_writes: AtomicU64::new(0),
            dispatcher,
        });
        let server = RunningServer::start(api::router(Arc::clone(&shared)), "erp").await?;
        Ok(ErpHandle { shared, server })
    }
}

/// The number of upcoming requests to reject with HTTP 429, for tests.
#[derive(Debug, Default)]
struct Forced429 {
    remaining: u32,
    retry_after_secs: u64,
}

impl Forced429 {
    fn take(&mut self) -> Option<u64> {
        if self.remaining == 0 {
            return None;
        }
        self.remaining -= 1;
        Some(self.retry_after_secs)
    }
}

/// State shared by the HTTP handlers and the handle.
struct Shared {
    api_token: String,
    store: Mutex<Store>,
    bucket: Mutex<TokenBucket>,
    forced_429: Mutex<Forced429>,
    api_writes: AtomicU64,
    dispatcher: Arc<Dispatcher>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    fn lock_store(&self) -> MutexGuard<'_, Store> {
        // A poisoned lock means a handler panicked; the data is still usable for a sandbox.
        self.store.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn emit(&self, event_type: &str, record: &impl Serialize, now: DateTime<Utc>) {
        match erp_event(event_type, record, now) {
            Some(event) => self.dispatcher.send(event),
            None => tracing::error!(sandbox = "erp", event_type, "failed to serialize a webhook event"),
        }
    }

    /// Sends `<kind>.created` or `<kind>.updated` for a document a write created or changed.
    fn emit_document(&self, document: &Document, change: DocumentChange) {
        let created = match change {
            DocumentChange::Created => true,
            DocumentChange::Updated => false,
            DocumentChange::Unchanged => return,
        };
        match document_event(document, created, document.updated_at) {
            Some(event) => self.dispatcher.send(event),
            None => tracing::error!(sandbox = "erp", kind = %document.kind, "failed to serialize a webhook event"),
        }
    }
}

/// A running ERP sandbox. Dropping it stops the server without waiting;
/// [`ErpHandle::shutdown`] also waits for open requests.
#[derive(Debug)]
pub struct ErpHandle {
    shared: Arc<Shared>,
    server: RunningServer,
}

impl ErpHandle {
    /// Returns `http://127.0.0.1:<port>`; the API is under `/api/v1`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Sets where later webhooks go; `None` drops them. Retries keep their original URL.
    pub fn set_webhook_url(&self, url: Option<String>) {
        self.shared.dispatcher.set_url(url);
    }

    /// Rejects the next `requests` API requests with HTTP 429 and `Retry-After`.
    pub fn force_http_429(&self, requests: u32, retry_after_secs: u64) {
        if let Ok(mut forced) = self.shared.forced_429.lock() {
            *forced = Forced429 {
                remaining: requests,
                retry_after_secs,
            };
        }
    }

    /// Creates or edits an item as a person in the ERP would, and sends `item.created` or, if a
    /// value changed, `item.updated`.
    pub fn upsert_item_as_user(&self, number: &str, edit: ItemEdit) -> Item {
        let mut store = self.shared.lock_store();
        let now = Utc::now();
        if let Some(item) = store.items.get_mut(number) {
            if edit.apply(item) {
                item.version += 1;
                item.last_modified = now;
                self.shared.emit("item.updated", &*item, now);
            }
            return item.clone();
        }
        let mut item = store.new_item(number, now);
        edit.apply(&mut item);
        self.shared.emit("item.created", &item, now);
        store.items.insert(number.to_owned(), item.clone());
        item
    }

    /// Edits a sales order as a person in the ERP would, and sends `sales_order.updated` if a
    /// value changed.
    pub fn edit_order_as_user(&self, number: &str, edit: OrderEdit) -> Result<SalesOrder, SandboxError> {
        let mut store = self.shared.lock_store();
        let order = store.orders.get_mut(number).ok_or_else(|| SandboxError::NotFound {
            kind: "sales order",
            id: number.to_owned(),
        })?;
        let now = Utc::now();
        if edit.apply(order) {
            order.version += 1;
            order.last_modified = now;
            self.shared.emit("sales_order.updated", &*order, now);
        }
        Ok(order.clone())
    }

    /// Changes members of a document as a person in the ERP would, and sends `<kind>.updated`
    /// if a value changed. Members are JSON text, such as `"\"approved\""` or `115.00`.
    pub fn edit_document_as_user(
        &self,
        kind: DocumentKind,
        number: &str,
        members: &[(&str, &str)],
    ) -> Result<Document, SandboxError> {
        let members = members
            .iter()
            .map(|(name, json)| ((*name).to_owned(), json_member(json)))
            .collect();
        let mut store = self.shared.lock_store();
        let (document, change) = store
            .documents
            .patch(kind, number, members, Utc::now())
            .ok_or_else(|| SandboxError::NotFound {
                kind: kind.as_str(),
                id: number.to_owned(),
            })?;
        self.shared.emit_document(&document, change);
        Ok(document)
    }

    /// Prices a requested quote and approves it, as sales does by hand: sets `total` and the
    /// status `approved`, and sends `quote.updated`.
    pub fn price_and_approve_quote(&self, number: &str, total: Decimal) -> Result<Document, SandboxError> {
        let total = total.to_string();
        self.edit_document_as_user(
            DocumentKind::Quote,
            number,
            &[("total", total.as_str()), ("status", "\"approved\"")],
        )
    }

    /// Fulfils a sales order as the warehouse does: sets its status `fulfilled` (sending
    /// `sales_order.updated`) and creates a shipment in status `shipped` that names the order
    /// by the storefront's key (sending `shipment.created`). Returns the shipment.
    pub fn fulfil_order(&self, number: &str, carrier: &str, tracking: &str) -> Result<Document, SandboxError> {
        let mut store = self.shared.lock_store();
        let now = Utc::now();
        let order = store.orders.get_mut(number).ok_or_else(|| SandboxError::NotFound {
            kind: "sales order",
            id: number.to_owned(),
        })?;

        if order.status.as_deref() != Some("fulfilled") {
            order.status = Some("fulfilled".to_owned());
            order.version += 1;
            order.last_modified = now;
            self.shared.emit("sales_order.updated", &*order, now);
        }

        let order_key = order
            .external_id
            .strip_prefix("order:")
            .unwrap_or(&order.external_id)
            .to_owned();
        let members = [
            ("order", text_member(&order_key)),
            ("sales_order", text_member(number)),
            ("carrier", text_member(carrier)),
            ("tracking", text_member(tracking)),
            ("status", text_member("shipped")),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect();

        let shipment_number = store.next_document_number(DocumentKind::Shipment);
        let (shipment, change) = store
            .documents
            .upsert(DocumentKind::Shipment, None, members, now, || shipment_number);
        self.shared.emit_document(&shipment, change);
        Ok(shipment)
    }

    /// Returns a snapshot of a document by its ERP number.
    pub fn document(&self, kind: DocumentKind, number: &str) -> Option<Document> {
        self.shared.lock_store().documents.get(kind, number).cloned()
    }

    /// Returns a snapshot of the document created with `external_id`.
    pub fn document_by_external_id(&self, kind: DocumentKind, external_id: &str) -> Option<Document> {
        self.shared
            .lock_store()
            .documents
            .by_external_id(kind, external_id)
            .cloned()
    }

    /// Returns a snapshot of every document of a kind, by number.
    pub fn documents(&self, kind: DocumentKind) -> Vec<Document> {
        self.shared.lock_store().documents.all(kind)
    }

    /// Returns a snapshot of the item `number`.
    pub fn item(&self, number: &str) -> Option<Item> {
        self.shared.lock_store().items.get(number).cloned()
    }

    /// Returns a snapshot of every item, by number.
    pub fn items(&self) -> Vec<Item> {
        self.shared.lock_store().items.values().cloned().collect()
    }

    /// Returns a snapshot of the sales order `number`.
    pub fn order(&self, number: &str) -> Option<SalesOrder> {
        self.shared.lock_store().orders.get(number).cloned()
    }

    /// Returns a snapshot of the sales order with `external_id`.
    pub fn order_by_external_id(&self, external_id: &str) -> Option<SalesOrder> {
        self.shared.lock_store().order_by_external_id(external_id).cloned()
    }

    /// Returns a snapshot of every sales order, by number.
    pub fn orders(&self) -> Vec<SalesOrder> {
        self.shared.lock_store().orders.values().cloned().collect()
    }

    /// Returns how many write requests (PATCH, POST) passed authentication, the rate limit, the
    /// `If-Match` check and validation, whether or not they changed a value.
    pub fn api_write_count(&self) -> u64 {
        self.shared.api_writes.load(Ordering::SeqCst)
    }

    /// Returns every webhook delivery attempt so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.dispatcher.deliveries()
    }

    /// Waits until no webhook is waiting for delivery or retry.
    pub async fn wait_for_deliveries_idle(&self) {
        self.shared.dispatcher.wait_idle().await;
    }

    /// Stops the server and waits for open requests to finish. Pending webhooks still run.
    pub async fn shutdown(&self) {
        self.server.shutdown().await;
    }
}
