//! A NetSuite account's REST record service for inventory items, with the account's concurrency
//! limit and fieldsync's signed outbox deliveries.
//!
//! # Covered
//!
//! - OAuth 2.0 bearer authentication on every record route (HTTP 401 with a REST error body
//!   otherwise). Error bodies have NetSuite's REST shape: `type`, `title`, `status` and
//!   `o:errorDetails` entries of `detail` and `o:errorCode` ("Error Handling in REST Web
//!   Services", NetSuite Help Center).
//! - `PUT /services/rest/record/v1/inventoryItem/eid:<external id>` upserts by external id and
//!   responds with 204 and the item's URL in `Location`; `PATCH …/inventoryItem/<internal id>` or
//!   `…/eid:<external id>` updates and responds with 204; `GET` reads one item; an unknown id is 404
//!   ("Using the Upsert Operation", "Creating a Record Instance", NetSuite Help Center). Members:
//!   `itemId`, `displayName`, `pageTitle`, `metaTagHtml` and the `price` sublist, of which the
//!   row at price level [`BASE_PRICE_LEVEL`] is kept as the base price ("Working with the
//!   Pricing Sublist on Item Records"). Money is a JSON number read with its exact digits.
//!   `quantityAvailable` is read-only.
//! - The account's concurrency limit: at most [`NetSuiteConfig::concurrency_limit`] requests
//!   in flight, each held for [`NetSuiteConfig::request_latency`]. A request beyond the limit
//!   gets HTTP 429 with `o:errorCode` [`CONCURRENCY_ERROR_CODE`]. The account limit applies to
//!   SOAP, REST and RESTlet requests together ("Concurrency Governance and Session Management").
//! - The user event script's loop guard: writes through the API come from the token's role in
//!   the REST web services context, so when that role is [`NetSuiteConfig::integration_role`]
//!   they send no outbox event. Edits made through [`NetSuiteHandle::upsert_item_as_user`] do.
//! - Outbox deliveries in the format `docs/netsuite.md` describes, signed per attempt and
//!   retried with backoff under the same `deliveryId`.
//!
//! # Not covered
//!
//! - Records other than inventory items; `POST` create, `DELETE`, queries and SuiteQL.
//! - Multiple currencies, quantity pricing and price levels other than Base Price.
//! - Request-level rate limits other than concurrency, and the SOAP and RESTlet error forms of
//!   a concurrency violation.
//! - Batching: each edit is delivered as a batch of one event, where the map/reduce script
//!   sends every undelivered outbox row of its run.

mod api;
mod model;
mod outbox;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};

pub use api::CONCURRENCY_ERROR_CODE;
pub use model::{Item, ItemEdit};

use crate::delivery::{Delivery, Dispatcher, RetryPolicy};
use crate::error::SandboxError;
use crate::server::RunningServer;
use api::ItemChanges;
use outbox::{item_delivery, OutboxSigner};

/// The internal id of the Base Price level, whose price sublist row contains the base price.
pub const BASE_PRICE_LEVEL: &str = "1";

/// Settings of a NetSuite sandbox. Secrets are redacted from `Debug` output.
#[derive(Clone)]
pub struct NetSuiteConfig {
    /// The bearer token every API request must carry.
    pub api_token: String,
    /// The role the API token acts as.
    pub token_role: String,
    /// The role the user event script skips in the REST web services context.
    pub integration_role: String,
    /// The secret that signs outbox deliveries.
    pub webhook_secret: String,
    /// The URL outbox deliveries are sent to; `None` drops them until
    /// [`NetSuiteHandle::set_webhook_url`].
    pub webhook_url: Option<String>,
    /// The account id sent in each delivery.
    pub account_id: String,
    /// API requests allowed in flight at once.
    pub concurrency_limit: u32,
    /// How long each admitted API request stays in flight before its response is sent.
    pub request_latency: Duration,
    pub retry: RetryPolicy,
}

impl Default for NetSuiteConfig {
    fn default() -> Self {
        Self {
            api_token: "netsuite-sandbox-fake-token".to_owned(),
            token_role: "1042".to_owned(),
            integration_role: "1042".to_owned(),
            webhook_secret: "netsuite-sandbox-fake-webhook-secret".to_owned(),
            webhook_url: None,
            account_id: "TSTDRV1234567".to_owned(),
            concurrency_limit: 5,
            request_latency: Duration::from_millis(15),
            retry: RetryPolicy::default(),
        }
    }
}

impl fmt::Debug for NetSuiteConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NetSuiteConfig")
            .field("api_token", &"<redacted>")
            .field("token_role", &self.token_role)
            .field("integration_role", &self.integration_role)
            .field("webhook_secret", &"<redacted>")
            .field("webhook_url", &self.webhook_url)
            .field("account_id", &self.account_id)
            .field("concurrency_limit", &self.concurrency_limit)
            .field("request_latency", &self.request_latency)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Starts NetSuite sandboxes.
#[derive(Debug)]
pub struct NetSuiteSandbox;

impl NetSuiteSandbox {
    /// Starts a NetSuite sandbox on `127.0.0.1` with an ephemeral port. Must run inside a Tokio
    /// runtime.
    pub async fn start(config: NetSuiteConfig) -> Result<NetSuiteHandle, SandboxError> {
        let signer = OutboxSigner {
            secret: config.webhook_secret.clone(),
        };
        let dispatcher = Dispatcher::new(
            "netsuite",
            config.webhook_url.clone(),
            config.retry.clone(),
            Box::new(signer),
        )?;
        let shared = Arc::new(Shared {
            config,
            store: Mutex::new(Store::default()),
            base_url: OnceLock::new(),
            in_flight: AtomicU64::new(0),
            max_concurrent: AtomicU64::new(0),
            concurrency_rejections: AtomicU64::new(0),
            api_writes: AtomicU64::new(0),
            dispatcher,
        });
        let server = RunningServer::start(api::router(Arc::clone(&shared)), "netsuite").await?;
        let _ = shared.base_url.set(server.base_url());
        Ok(NetSuiteHandle { shared, server })
    }
}

/// Items by internal id.
#[derive(Debug, Default)]
struct Store {
    items: BTreeMap<String, Item>,
    next_id: u64,
}

impl Store {
    /// Finds an item by internal id, or by external id written as `eid:<external id>`.
    fn find(&self, id: &str) -> Option<&Item> {
        match id.strip_prefix("eid:") {
            Some(external) => self
                .items
                .values()
                .find(|item| item.external_id.as_deref() == Some(external)),
            None => self.items.get(id),
        }
    }

    fn find_mut(&mut self, id: &str) -> Option<&mut Item> {
        let internal_id = self.find(id)?.internal_id.clone();
        self.items.get_mut(&internal_id)
    }

    fn find_by_item_id(&mut self, sku: &str) -> Option<&mut Item> {
        self.items.values_mut().find(|item| item.item_id == sku)
    }

    fn new_item(&mut self, item_id: &str, external_id: Option<String>, now: DateTime<Utc>) -> Item {
        self.next_id += 1;
        Item {
            internal_id: (500 + self.next_id).to_string(),
            item_id: item_id.to_owned(),
            external_id,
            display_name: None,
            base_price: None,
            quantity_available: 0,
            page_title: None,
            meta_tag_html: None,
            last_modified: now,
        }
    }

    /// Creates or updates the item with `external_id`, and returns it with whether it was
    /// created and whether a value changed.
    fn upsert(&mut self, external_id: &str, changes: &ItemChanges, now: DateTime<Utc>) -> (Item, bool, bool) {
        if let Some(item) = self.find_mut(&format!("eid:{external_id}")) {
            let changed = changes.apply(item, now);
            return (item.clone(), false, changed);
        }
        let item_id = changes.item_id.clone().unwrap_or_else(|| external_id.to_owned());
        let mut item = self.new_item(&item_id, Some(external_id.to_owned()), now);
        changes.apply(&mut item, now);
        self.items.insert(item.internal_id.clone(), item.clone());
        (item, true, true)
    }
}

/// State shared by the HTTP handlers and the handle.
struct Shared {
    config: NetSuiteConfig,
    store: Mutex<Store>,
    base_url: OnceLock<String>,
    in_flight: AtomicU64,
    max_concurrent: AtomicU64,
    concurrency_rejections: AtomicU64,
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

    fn base_url(&self) -> &str {
        self.base_url.get().map_or("", String::as_str)
    }

    /// Runs the user event script's decision for a write through the REST API: a change by the
    /// integration role is fieldsync's own and is not sent back.
    fn after_api_write(&self, item: &Item, event_type: &str, now: DateTime<Utc>) {
        if self.config.token_role == self.config.integration_role {
            tracing::debug!(
                sandbox = "netsuite",
                item = item.item_id,
                "REST write by the integration role; no outbox event"
            );
            return;
        }
        self.emit(item, event_type, now);
    }

    fn emit(&self, item: &Item, event_type: &str, now: DateTime<Utc>) {
        match item_delivery(&self.config.account_id, item, event_type, now) {
            Some(delivery) => self.dispatcher.send(delivery),
            None => tracing::error!(
                sandbox = "netsuite",
                item = item.item_id,
                "failed to serialize an outbox delivery"
            ),
        }
    }
}

/// A running NetSuite sandbox. Dropping it stops the server without waiting;
/// [`NetSuiteHandle::shutdown`] also waits for open requests.
#[derive(Debug)]
pub struct NetSuiteHandle {
    shared: Arc<Shared>,
    server: RunningServer,
}

impl NetSuiteHandle {
    /// Returns `http://127.0.0.1:<port>`, the account's REST domain; records are under
    /// `/services/rest/record/v1`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Sets where later outbox deliveries go; `None` drops them. Retries keep their URL.
    pub fn set_webhook_url(&self, url: Option<String>) {
        self.shared.dispatcher.set_url(url);
    }

    /// Creates or edits the item `sku` as a person in the NetSuite UI would. The user event
    /// script records a `create` or, if a value changed, an `edit` event, and the outbox sends
    /// it as a signed delivery.
    pub fn upsert_item_as_user(&self, sku: &str, edit: ItemEdit) -> Item {
        let now = Utc::now();
        let mut store = self.shared.lock_store();
        if let Some(item) = store.find_by_item_id(sku) {
            if edit.apply(item) {
                item.last_modified = now;
                let item = item.clone();
                drop(store);
                self.shared.emit(&item, "edit", now);
                return item;
            }
            return item.clone();
        }
        let mut item = store.new_item(sku, None, now);
        edit.apply(&mut item);
        store.items.insert(item.internal_id.clone(), item.clone());
        drop(store);
        self.shared.emit(&item, "create", now);
        item
    }

    /// Returns a snapshot of the item whose item name/number is `sku`.
    pub fn item(&self, sku: &str) -> Option<Item> {
        self.shared
            .lock_store()
            .items
            .values()
            .find(|item| item.item_id == sku)
            .cloned()
    }

    /// Returns a snapshot of every item, by internal id.
    pub fn items(&self) -> Vec<Item> {
        self.shared.lock_store().items.values().cloned().collect()
    }

    /// Returns the most API requests that were in flight at once.
    pub fn max_concurrent_seen(&self) -> u64 {
        self.shared.max_concurrent.load(Ordering::SeqCst)
    }

    /// Returns how many API requests were rejected with HTTP 429 for exceeding the concurrency
    /// limit.
    pub fn concurrency_rejections(&self) -> u64 {
        self.shared.concurrency_rejections.load(Ordering::SeqCst)
    }

    /// Returns how many write requests (PUT, PATCH) were accepted, whether or not they changed
    /// a value.
    pub fn api_write_count(&self) -> u64 {
        self.shared.api_writes.load(Ordering::SeqCst)
    }

    /// Returns every outbox delivery attempt so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.dispatcher.deliveries()
    }

    /// Waits until no outbox delivery is waiting for delivery or retry.
    pub async fn wait_for_deliveries_idle(&self) {
        self.shared.dispatcher.wait_idle().await;
    }

    /// Stops the server and waits for open requests to finish. Pending deliveries still run.
    pub async fn shutdown(&self) {
        self.server.shutdown().await;
    }
}
