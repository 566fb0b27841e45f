//! A BigCommerce stand-in: the v3 catalog products of one store, its inventory adjustments,
//! its request quota and its thin, signed webhooks.
//!
//! The handle's base URL plays `https://api.bigcommerce.com/stores/{store_hash}`, so the API is
//! under `{base}/v3`. Facts about BigCommerce below come from its developer documentation as
//! published in 2024-2026: "API rate limits", "HTTPS Webhooks Overview", "Webhook events",
//! the Catalog "Products" and "Product variants" references, and the Inventory "Adjustments"
//! reference ("Absolute Adjustment", "Relative Adjustment").
//!
//! # Covered
//!
//! - `X-Auth-Token` on every `/v3` route: HTTP 401 otherwise, with BigCommerce's error body
//!   `{"status","title","type","errors"}`. A path with another store hash gets 404.
//! - `GET /v3/catalog/products` filters by `sku`, matching the product's or a variant's SKU.
//!   `POST` requires name, type, weight and price (422 otherwise), and a SKU or name already
//!   used gets 409. `GET` and `PUT /v3/catalog/products/{id}`; `include=variants,images` adds the
//!   sub-resources to a read. `GET` and `PUT /v3/catalog/products/{id}/variants/{id}` (price).
//!   Products have `name`, `sku`, `price`, `description`, `page_title`, `meta_description`,
//!   `custom_url`, `is_visible`, `inventory_tracking`, `images` (by `image_url`),
//!   `base_variant_id`, `date_created` and `date_modified`. A variant has `sku`, `price` (null
//!   when it sells at the product's price), `calculated_price` and `inventory_level`. Prices are
//!   JSON numbers read and written with their exact digits; a string price gets 422.
//! - `PUT /v3/inventory/adjustments/absolute` sets levels and
//!   `POST /v3/inventory/adjustments/relative` adds signed differences, items naming the
//!   variant by `variant_id`, `sku` or `product_id` at a `location_id`; 1 to 2,000 items per
//!   request. Both return `{"transaction_id"}`.
//! - A request quota per fixed window (by default 150 requests per 30 s, the Standard and Plus
//!   plans' quota): every `/v3` response carries `X-Rate-Limit-Requests-Quota`,
//!   `X-Rate-Limit-Requests-Left`, `X-Rate-Limit-Time-Window-Ms` and
//!   `X-Rate-Limit-Time-Reset-Ms`, and a request beyond the quota gets 429. Forced 429s serve
//!   tests.
//! - Webhooks for every change, through the API (fieldsync's own writes included) or a handle
//!   method that plays a merchant or an order: `store/product/created`,
//!   `store/product/updated`, `store/sku/updated` (a variant's price),
//!   `store/sku/inventory/updated` and `store/sku/inventory/order/updated`. Payloads are thin
//!   (`scope`, `store_id`, `data` with the type and id, `hash`, `created_at`, `producer`); SKU
//!   payloads name the parent product. Each delivery is signed with Standard Webhooks headers
//!   (see [`BigCommerceConfig::client_secret`]) and retried per [`RetryPolicy`] with the same
//!   `webhook-id`.
//!
//! # Not covered
//!
//! - Product options and modifiers, categories, brands, custom fields, bulk pricing, the batch
//!   product endpoints, `DELETE`, and paging of product lists (one page holds every match).
//! - Inventory locations: every location id applies to the one stock level per variant.
//! - Product members other than the ones above are rejected with 422; BigCommerce accepts many
//!   more.
//! - The webhook `hash` is not BigCommerce's SHA-1, and the hooks API (`/v3/hooks`) is not served:
//!   the receiving URL is set through the handle.
//! - BigCommerce deactivates a hook after repeated failures; the sandbox only stops retrying.
//! - The Standard Webhooks signature: the BigCommerce pages above do not describe how deliveries
//!   are signed, so the sandbox signs them the way this integration is configured to verify.

mod api;
mod model;
mod webhooks;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

pub use model::{NewProduct, NewVariant, Product, ProductEdit, Variant};

use crate::delivery::{Delivery, Dispatcher, RetryPolicy};
use crate::error::SandboxError;
use crate::server::RunningServer;
use webhooks::{Change, StandardWebhooksSigner};

/// A request quota per fixed window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Requests allowed per window.
    pub quota: u32,
    pub window: Duration,
}

impl Default for RateLimit {
    /// Returns the quota of BigCommerce's Standard and Plus plans: 150 requests per 30 s.
    fn default() -> Self {
        Self {
            quota: 150,
            window: Duration::from_secs(30),
        }
    }
}

/// Settings of a BigCommerce sandbox. Secrets are redacted from `Debug` output.
#[derive(Clone)]
pub struct BigCommerceConfig {
    /// The token every API request must carry in `X-Auth-Token`.
    pub access_token: String,
    /// The app client secret that signs webhook deliveries.
    pub client_secret: String,
    /// The store hash in `/stores/{store_hash}` and in the payloads' `producer`.
    pub store_hash: String,
    /// The store id in payloads.
    pub store_id: String,
    pub rate_limit: RateLimit,
    /// Retries of webhook deliveries.
    pub retry: RetryPolicy,
}

impl Default for BigCommerceConfig {
    fn default() -> Self {
        Self {
            access_token: "bc-sandbox-fake-token".to_owned(),
            client_secret: "bc-sandbox-fake-client-secret".to_owned(),
            store_hash: "abc123".to_owned(),
            store_id: "1000001".to_owned(),
            rate_limit: RateLimit::default(),
            retry: RetryPolicy::default(),
        }
    }
}

impl fmt::Debug for BigCommerceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BigCommerceConfig")
            .field("access_token", &"<redacted>")
            .field("client_secret", &"<redacted>")
            .field("store_hash", &self.store_hash)
            .field("store_id", &self.store_id)
            .field("rate_limit", &self.rate_limit)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Starts BigCommerce sandboxes.
#[derive(Debug)]
pub struct BigCommerceSandbox;

impl BigCommerceSandbox {
    /// Starts a BigCommerce sandbox on `127.0.0.1` with an ephemeral port. Must run inside a
    /// Tokio runtime.
    pub async fn start(config: BigCommerceConfig) -> Result<BigCommerceHandle, SandboxError> {
        let signer = StandardWebhooksSigner {
            client_secret: config.client_secret.clone(),
        };
        let dispatcher = Dispatcher::new("bigcommerce", None, config.retry.clone(), Box::new(signer))?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            quota: Mutex::new(Quota::new(config.rate_limit)),
            api_requests: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            dispatcher,
            config,
        });
        let server = RunningServer::start(api::router(Arc::clone(&shared)), "bigcommerce").await?;
        Ok(BigCommerceHandle { shared, server })
    }
}

/// The quota of the current window and the 429s forced on upcoming requests.
#[derive(Debug)]
struct Quota {
    limit: RateLimit,
    window_started: Option<Instant>,
    used: u32,
    forced: u32,
}

/// The quota headers of one response.
#[derive(Debug, Clone, Copy)]
struct QuotaReport {
    quota: u32,
    left: u32,
    window_ms: u128,
    reset_ms: u128,
}

impl Quota {
    fn new(limit: RateLimit) -> Self {
        Self {
            limit,
            window_started: None,
            used: 0,
            forced: 0,
        }
    }

    /// Starts a new window when the last one has passed.
    fn roll(&mut self, now: Instant) -> Instant {
        match self.window_started {
            Some(started) if now.saturating_duration_since(started) < self.limit.window => started,
            _ => {
                self.window_started = Some(now);
                self.used = 0;
                now
            }
        }
    }

    fn report(&self, started: Instant, now: Instant, left: u32) -> QuotaReport {
        let elapsed = now.saturating_duration_since(started);
        QuotaReport {
            quota: self.limit.quota,
            left,
            window_ms: self.limit.window.as_millis(),
            reset_ms: self.limit.window.saturating_sub(elapsed).as_millis(),
        }
    }

    /// Counts one request. `Err` means it is rejected with 429.
    fn take(&mut self, now: Instant) -> Result<QuotaReport, QuotaReport> {
        let started = self.roll(now);
        if self.forced > 0 {
            self.forced -= 1;
            return Err(self.report(started, now, 0));
        }
        if self.used >= self.limit.quota {
            return Err(self.report(started, now, 0));
        }
        self.used += 1;
        Ok(self.report(started, now, self.limit.quota - self.used))
    }

    /// Reports the quota without counting a request, for rejected credentials.
    fn peek(&mut self, now: Instant) -> QuotaReport {
        let started = self.roll(now);
        self.report(started, now, self.limit.quota.saturating_sub(self.used))
    }
}

/// The store's catalog and the counters behind its ids.
#[derive(Debug, Default)]
struct State {
    products: BTreeMap<u64, Product>,
    last_product_id: u64,
    last_variant_id: u64,
}

impl State {
    fn next_product_id(&mut self) -> u64 {
        // Ids start where a new store's sample products end, so they look like real ones.
        self.last_product_id = self.last_product_id.max(110) + 1;
        self.last_product_id
    }

    fn next_variant_id(&mut self) -> u64 {
        self.last_variant_id = self.last_variant_id.max(399) + 1;
        self.last_variant_id
    }

    /// Finds the product that has a variant (or base SKU) `sku`.
    fn product_id_by_sku(&self, sku: &str) -> Option<u64> {
        self.products
            .values()
            .find(|product| product.sku == sku || product.variant(sku).is_some())
            .map(|product| product.id)
    }

    fn name_taken(&self, name: &str, except: Option<u64>) -> bool {
        self.products
            .values()
            .any(|product| product.name == name && Some(product.id) != except)
    }

    /// Creates a product from a merchant's or the API's values, with its variants.
    fn insert(&mut self, new: &NewProduct, now: DateTime<Utc>) -> Product {
        let id = self.next_product_id();
        let (variants, base_variant_id) = if new.variants.is_empty() {
            let variant_id = self.next_variant_id();
            let base = Variant {
                id: variant_id,
                sku: new.sku.clone(),
                price: None,
                inventory_level: new.inventory,
            };
            (vec![base], Some(variant_id))
        } else {
            let variants = new
                .variants
                .iter()
                .map(|variant| Variant {
                    id: self.next_variant_id(),
                    sku: variant.sku.clone(),
                    price: variant.price,
                    inventory_level: variant.inventory,
                })
                .collect();
            (variants, None)
        };
        let product = Product {
            id,
            name: new.name.clone(),
            sku: new.sku.clone(),
            price: new.price,
            description: new.description.clone(),
            page_title: new.page_title.clone(),
            meta_description: new.meta_description.clone(),
            custom_url: new
                .custom_url
                .clone()
                .unwrap_or_else(|| format!("/{}/", new.sku.to_lowercase())),
            is_visible: new.is_visible,
            inventory_tracking: if new.variants.is_empty() { "product" } else { "variant" }.to_owned(),
            images: new.images.clone(),
            base_variant_id,
            variants,
            date_created: now,
            date_modified: now,
        };
        self.products.insert(id, product.clone());
        product
    }
}

/// State shared by the HTTP handlers and the handle.
struct Shared {
    state: Mutex<State>,
    quota: Mutex<Quota>,
    api_requests: AtomicU64,
    throttled: AtomicU64,
    dispatcher: Arc<Dispatcher>,
    config: BigCommerceConfig,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a handler panicked; the data is still usable for a sandbox.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn lock_quota(&self) -> MutexGuard<'_, Quota> {
        self.quota.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends the webhook of one change.
    fn notify(&self, change: &Change) {
        let event = webhooks::event(change, &self.config.store_id, &self.config.store_hash, Utc::now());
        self.dispatcher.send(event);
    }

    /// Sets or shifts the level of the variant `variant_id` and notifies the SKU inventory
    /// scope. Returns the new level, or `None` when no product has the variant.
    fn adjust(&self, variant_id: u64, quantity: i64, relative: bool, by_order: bool) -> Option<i64> {
        let mut state = self.lock_state();
        let now = Utc::now();
        let product = state
            .products
            .values_mut()
            .find(|product| product.variants.iter().any(|variant| variant.id == variant_id))?;
        let product_id = product.id;
        let variant = product.variants.iter_mut().find(|variant| variant.id == variant_id)?;
        let before = variant.inventory_level;
        variant.inventory_level = if relative { before + quantity } else { quantity };
        let level = variant.inventory_level;
        product.date_modified = now;
        drop(state);

        if level != before || relative {
            let change = if by_order {
                Change::SkuInventoryOrder {
                    product_id,
                    variant_id,
                    value: quantity,
                }
            } else {
                Change::SkuInventory {
                    product_id,
                    variant_id,
                    method: if relative { "relative" } else { "absolute" },
                    value: quantity,
                }
            };
            self.notify(&change);
        }
        Some(level)
    }
}

/// A running BigCommerce sandbox. Dropping it stops the server without waiting;
/// [`BigCommerceHandle::shutdown`] also waits for open requests.
#[derive(Debug)]
pub struct BigCommerceHandle {
    shared: Arc<Shared>,
    server: RunningServer,
}

impl BigCommerceHandle {
    /// Returns `http://127.0.0.1:<port>/stores/<store_hash>`, which plays
    /// `https://api.bigcommerce.com/stores/{store_hash}`.
    pub fn base_url(&self) -> String {
        format!("{}/stores/{}", self.server.base_url(), self.shared.config.store_hash)
    }

    /// Sets the URL webhooks are posted to; `None` stops sending them.
    pub fn set_webhook_url(&self, url: Option<String>) {
        self.shared.dispatcher.set_url(url);
    }

    /// Returns a snapshot of the product that has `sku`, as its own or a variant's SKU.
    pub fn product_by_sku(&self, sku: &str) -> Option<Product> {
        let state = self.shared.lock_state();
        let id = state.product_id_by_sku(sku)?;
        state.products.get(&id).cloned()
    }

    /// Creates a product as a merchant does in the control panel, and notifies
    /// `store/product/created`. A SKU or name already used is rejected, as BigCommerce does.
    pub fn create_product_as_merchant(&self, new: NewProduct) -> Result<Product, SandboxError> {
        let invalid = |message: String| SandboxError::InvalidEdit {
            kind: "product",
            id: new.sku.clone(),
            message,
        };
        let mut state = self.shared.lock_state();
        let skus = std::iter::once(new.sku.as_str()).chain(new.variants.iter().map(|variant| variant.sku.as_str()));
        for sku in skus {
            if state.product_id_by_sku(sku).is_some() {
                return Err(invalid(format!("SKU {sku} is already used")));
            }
        }
        if state.name_taken(&new.name, None) {
            return Err(invalid(format!("the name {:?} is already used", new.name)));
        }
        let product = state.insert(&new, Utc::now());
        drop(state);
        self.shared.notify(&Change::ProductCreated { product_id: product.id });
        Ok(product)
    }

    /// Edits one SKU as a merchant does in the control panel. Product-level values notify
    /// `store/product/updated`, a variant's own price `store/sku/updated`, and the inventory
    /// `store/sku/inventory/updated`; only values that change notify.
    pub fn edit_product_as_merchant(&self, sku: &str, edit: ProductEdit) -> Result<Product, SandboxError> {
        let not_found = || SandboxError::NotFound {
            kind: "SKU",
            id: sku.to_owned(),
        };
        let mut state = self.shared.lock_state();
        let id = state.product_id_by_sku(sku).ok_or_else(not_found)?;
        if let Some(name) = &edit.name {
            if state.name_taken(name, Some(id)) {
                return Err(SandboxError::InvalidEdit {
                    kind: "product",
                    id: sku.to_owned(),
                    message: format!("the name {name:?} is already used"),
                });
            }
        }
        let product = state.products.get_mut(&id).ok_or_else(not_found)?;
        let variant_id = product.variant(sku).map(|variant| variant.id).ok_or_else(not_found)?;
        let is_base = product.base_variant_id == Some(variant_id);
        let before = product.clone();

        let product_price = edit.price.filter(|_| is_base);
        let product_level = model::ProductWrite {
            name: edit.name.clone(),
            price: product_price,
            description: edit.description.clone(),
            page_title: edit.page_title.clone(),
            meta_description: edit.meta_description.clone(),
            custom_url: edit.custom_url.clone(),
            is_visible: edit.is_visible,
            ..model::ProductWrite::default()
        };
        let product_changed = product_level.apply(product);
        let mut variant_changed = false;
        if let (Some(price), false) = (edit.price, is_base) {
            if let Some(variant) = product.variants.iter_mut().find(|variant| variant.id == variant_id) {
                variant_changed = variant.price != Some(price);
                variant.price = Some(price);
            }
        }
        if product_changed || variant_changed {
            product.date_modified = Utc::now();
        }
        let product_id = product.id;
        drop(state);

        if product_changed {
            self.shared.notify(&Change::ProductUpdated { product_id });
        }
        if variant_changed {
            self.shared.notify(&Change::SkuUpdated { product_id, variant_id });
        }
        if let Some(level) = edit.inventory {
            let current = before.variant(sku).map(|variant| variant.inventory_level);
            if current != Some(level) {
                self.shared.adjust(variant_id, level, false, false);
            }
        }
        self.product_by_sku(sku).ok_or_else(not_found)
    }

    /// Changes the stock of `sku` by `delta` as an order on the storefront does (negative for a
    /// sale), and notifies `store/sku/inventory/order/updated`.
    pub fn adjust_inventory_as_order(&self, sku: &str, delta: i64) -> Result<Product, SandboxError> {
        let not_found = || SandboxError::NotFound {
            kind: "SKU",
            id: sku.to_owned(),
        };
        let variant_id = self
            .product_by_sku(sku)
            .and_then(|product| product.variant(sku).map(|variant| variant.id))
            .ok_or_else(not_found)?;
        self.shared
            .adjust(variant_id, delta, true, true)
            .ok_or_else(not_found)?;
        self.product_by_sku(sku).ok_or_else(not_found)
    }

    /// Rejects the next `requests` API requests with HTTP 429.
    pub fn force_rate_limit(&self, requests: u32) {
        self.shared.lock_quota().forced = requests;
    }

    /// Returns how many requests reached a `/v3` route, rejected ones included.
    pub fn api_request_count(&self) -> u64 {
        self.shared.api_requests.load(Ordering::SeqCst)
    }

    /// Returns how many requests got HTTP 429.
    pub fn throttled_count(&self) -> u64 {
        self.shared.throttled.load(Ordering::SeqCst)
    }

    /// Returns every webhook delivery attempt so far, oldest first.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.dispatcher.deliveries()
    }

    /// Waits until no webhook is waiting for delivery or retrying.
    pub async fn wait_for_deliveries_idle(&self) {
        self.shared.dispatcher.wait_idle().await;
    }

    /// Stops the server and waits for open requests to finish. Pending webhooks still run.
    pub async fn shutdown(&self) {
        self.server.shutdown().await;
    }
}
