//! An ERPNext-like ERP: Frappe's REST resource API for items and Frappe's signed webhooks.
//!
//! # Covered
//!
//! - Token authentication: `Authorization: token <api key>:<api secret>` on every `/api` route,
//!   HTTP 401 with an `AuthenticationError` body otherwise.
//! - Items, named by a naming series (`ITEM-0001`…) with the SKU in `item_code`:
//!   `GET /api/resource/Item/{name}` returns `{"data": {...}}` or 404 (`DoesNotExistError`);
//!   `PUT /api/resource/Item/{name}` changes only the members sent, as Frappe's PUT does;
//!   `POST /api/resource/Item` creates, and returns 409 (`DuplicateEntryError`) when an item
//!   with the same `item_code` exists. Members: `item_code`, `item_name`, `standard_rate` (a
//!   JSON number or a decimal string, read exactly), `custom_meta_title` and
//!   `custom_meta_description` (custom fields carry the `custom_` prefix in Frappe). Unknown
//!   members and invalid values get 417 (`ValidationError`), as Frappe answers validation errors.
//! - Optional `ETag`s ([`ErpNextConfig::etags`]): a quoted version on reads and writes, and a
//!   strong `If-Match` check with 412 on a mismatch. Frappe itself sends no `ETag`, so this is
//!   off unless a test turns it on.
//! - Frappe's site rate limit: a request budget per fixed window. A request over the budget gets
//!   429 `Too Many Requests` with `Retry-After` (the seconds left in the window) and
//!   `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset`.
//! - A webhook for every change, through the API or a simulated user
//!   ([`ErpNextHandle::set_price`] and the like), like a Frappe Webhook on Item with request
//!   structure JSON and security enabled: the body lists `name`, `item_code`, `standard_rate`,
//!   `modified` (naive time, here UTC, with microseconds), `item_name`, `custom_meta_title` and
//!   `custom_meta_description`, serialized as Python's `json.dumps` does (`", "` and `": "`
//!   separators, non-ASCII escaped as `\uXXXX`, money as a float's shortest text such as
//!   `19.9`), signed in `X-Frappe-Webhook-Signature` with the base64 HMAC-SHA256 of the body.
//!   Failed deliveries are retried with the same body, 3 attempts in all as Frappe makes.
//!
//! # Not covered
//!
//! - Frappe measures its rate limit in seconds of request time per window; the sandbox counts
//!   requests.
//! - Only the Item DocType; no list or filter queries, no DELETE, no stock (Bin) or Item Price.
//! - A write that changes no value keeps `modified` and sends no webhook.

mod api;
mod model;
mod webhooks;

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::Utc;
use rust_decimal::Decimal;

pub use model::{Item, ItemEdit};

use crate::delivery::{Delivery, Dispatcher, RetryPolicy};
use crate::error::SandboxError;
use crate::server::RunningServer;
use model::Store;
use webhooks::{item_event, FrappeSigner};

/// The request budget of Frappe's site rate limit: `requests` per fixed `window`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestBudget {
    pub requests: u32,
    pub window: Duration,
}

impl Default for RequestBudget {
    /// Generous enough that tests and demos never meet it unless they lower it.
    fn default() -> Self {
        Self {
            requests: 10_000,
            window: Duration::from_secs(1),
        }
    }
}

/// Settings of an ERPNext sandbox. Secrets are redacted from `Debug` output.
#[derive(Clone)]
pub struct ErpNextConfig {
    pub api_key: String,
    pub api_secret: String,
    /// The Webhook's secret, which keys the HMAC.
    pub webhook_secret: String,
    /// The URL webhooks are sent to; `None` drops them until [`ErpNextHandle::set_webhook_url`].
    pub webhook_url: Option<String>,
    pub budget: RequestBudget,
    /// Send `ETag`s and honour `If-Match`.
    pub etags: bool,
    pub retry: RetryPolicy,
}

impl Default for ErpNextConfig {
    fn default() -> Self {
        Self {
            api_key: "erpnext-sandbox-key".to_owned(),
            api_secret: "erpnext-sandbox-fake-secret".to_owned(),
            webhook_secret: "erpnext-sandbox-fake-webhook-secret".to_owned(),
            webhook_url: None,
            budget: RequestBudget::default(),
            etags: false,
            retry: RetryPolicy {
                max_attempts: 3,
                ..RetryPolicy::default()
            },
        }
    }
}

impl fmt::Debug for ErpNextConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErpNextConfig")
            .field("api_key", &self.api_key)
            .field("api_secret", &"<redacted>")
            .field("webhook_secret", &"<redacted>")
            .field("webhook_url", &self.webhook_url)
            .field("budget", &self.budget)
            .field("etags", &self.etags)
            .finish_non_exhaustive()
    }
}

/// Starts ERPNext sandboxes.
#[derive(Debug)]
pub struct ErpNextSandbox;

impl ErpNextSandbox {
    /// Starts an ERPNext sandbox on `127.0.0.1` with an ephemeral port. Must run inside a Tokio
    /// runtime.
    pub async fn start(config: ErpNextConfig) -> Result<ErpNextHandle, SandboxError> {
        let signer = FrappeSigner {
            secret: config.webhook_secret.clone(),
        };
        let dispatcher = Dispatcher::new(
            "erpnext",
            config.webhook_url.clone(),
            config.retry.clone(),
            Box::new(signer),
        )?;
        let shared = Arc::new(Shared {
            token: format!("{}:{}", config.api_key, config.api_secret),
            etags: config.etags,
            store: Mutex::new(Store::default()),
            window: Mutex::new(Window::new(config.budget)),
            api_writes: AtomicU64::new(0),
            rate_limited: AtomicU64::new(0),
            dispatcher,
        });
        let server = RunningServer::start(api::router(Arc::clone(&shared)), "erpnext").await?;
        Ok(ErpNextHandle { shared, server })
    }
}

/// The current window of the request budget.
#[derive(Debug)]
struct Window {
    budget: RequestBudget,
    started: Instant,
    used: u32,
}

impl Window {
    fn new(budget: RequestBudget) -> Self {
        Self {
            budget,
            started: Instant::now(),
            used: 0,
        }
    }

    /// Counts a request, or returns the whole seconds until the window resets (at least 1).
    fn take(&mut self, now: Instant) -> Result<u32, u64> {
        if now.saturating_duration_since(self.started) >= self.budget.window {
            self.started = now;
            self.used = 0;
        }
        if self.used < self.budget.requests {
            self.used += 1;
            return Ok(self.budget.requests - self.used);
        }
        let left = self
            .budget
            .window
            .saturating_sub(now.saturating_duration_since(self.started));
        Err((left.as_secs() + u64::from(left.subsec_nanos() > 0)).max(1))
    }
}

/// State shared by the HTTP handlers and the handle.
struct Shared {
    token: String,
    etags: bool,
    store: Mutex<Store>,
    window: Mutex<Window>,
    api_writes: AtomicU64,
    rate_limited: AtomicU64,
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

    fn emit(&self, item: &Item) {
        self.dispatcher.send(item_event(item));
    }
}

/// A running ERPNext sandbox. Dropping it stops the server without waiting;
/// [`ErpNextHandle::shutdown`] also waits for open requests.
#[derive(Debug)]
pub struct ErpNextHandle {
    shared: Arc<Shared>,
    server: RunningServer,
}

impl ErpNextHandle {
    /// Returns `http://127.0.0.1:<port>`; the API is under `/api/resource`.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Sets where later webhooks go; `None` drops them. Retries keep their original URL.
    pub fn set_webhook_url(&self, url: Option<String>) {
        self.shared.dispatcher.set_url(url);
    }

    /// Creates or edits the item with `item_code` as a person in ERPNext would, and sends the
    /// webhook if a value changed.
    pub fn upsert_item_as_user(&self, item_code: &str, edit: ItemEdit) -> Item {
        let mut store = self.shared.lock_store();
        let now = Utc::now();
        let name = store.name_of(item_code).map(str::to_owned);
        let item = match name.and_then(|name| store.items.get_mut(&name)) {
            Some(item) => {
                if edit.apply(item) {
                    item.touch(now);
                    self.shared.emit(item);
                }
                item.clone()
            }
            None => {
                let mut item = store.new_item(item_code, now);
                edit.apply(&mut item);
                self.shared.emit(&item);
                store.items.insert(item.name.clone(), item.clone());
                item
            }
        };
        item
    }

    /// Sets an item's standard selling rate as a person would. Panics on an invalid decimal,
    /// because callers pass literals.
    pub fn set_price(&self, item_code: &str, rate: &str) -> Item {
        let rate = Decimal::from_str(rate).unwrap_or_else(|_| panic!("invalid decimal literal {rate:?}"));
        self.upsert_item_as_user(
            item_code,
            ItemEdit {
                standard_rate: Some(rate),
                ..ItemEdit::default()
            },
        )
    }

    /// Sets an item's name as a person would.
    pub fn set_item_name(&self, item_code: &str, item_name: &str) -> Item {
        self.upsert_item_as_user(
            item_code,
            ItemEdit {
                item_name: Some(item_name.to_owned()),
                ..ItemEdit::default()
            },
        )
    }

    /// Returns a snapshot of the item with `item_code`.
    pub fn item(&self, item_code: &str) -> Option<Item> {
        let store = self.shared.lock_store();
        let name = store.name_of(item_code)?;
        store.items.get(name).cloned()
    }

    /// Returns a snapshot of every item, by name.
    pub fn items(&self) -> Vec<Item> {
        self.shared.lock_store().items.values().cloned().collect()
    }

    /// Returns how many write requests (PUT, POST) passed authentication, the rate limit and
    /// validation, whether or not they changed a value.
    pub fn api_write_count(&self) -> u64 {
        self.shared.api_writes.load(Ordering::SeqCst)
    }

    /// Returns how many requests got 429 because the budget was spent.
    pub fn rate_limited_count(&self) -> u64 {
        self.shared.rate_limited.load(Ordering::SeqCst)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_spends_budget_then_resets() {
        let start = Instant::now();
        let mut window = Window::new(RequestBudget {
            requests: 2,
            window: Duration::from_secs(2),
        });
        window.started = start;
        assert_eq!(window.take(start), Ok(1));
        assert_eq!(window.take(start), Ok(0));
        assert_eq!(window.take(start + Duration::from_millis(500)), Err(2));
        assert_eq!(window.take(start + Duration::from_secs(2)), Ok(1));
    }
}
