//! A Shopify-like storefront: a subset of the Admin GraphQL API and Shopify's product webhooks.
//!
//! # Covered
//!
//! - `POST /admin/api/<version>/graphql.json` with `{"query", "variables"}`, authenticated by the
//!   `X-Shopify-Access-Token` header (HTTP 401 with Shopify's error body otherwise). The sandbox
//!   finds the one root field of the operation and binds its arguments to the variables.
//! - Root fields: `productSet` (upsert by `identifier` `customId`, `id` or `handle`, with set
//!   semantics for `variants` and `files`), `productUpdate` (`product:` or the older `input:`
//!   argument, SEO as the `global.title_tag` and `global.description_tag` metafields),
//!   `productVariantsBulkUpdate`, `inventorySetQuantities` (compare-and-set with
//!   `COMPARE_QUANTITY_STALE` and `COMPARE_QUANTITY_REQUIRED`), `metafieldsSet` and the
//!   `productVariants(first:, query:)` query with `sku:`, `id:` and `product_id:` search terms.
//! - Webhook subscriptions: the `webhookSubscriptions` query, `webhookSubscriptionCreate` (topic,
//!   `callbackUrl` or `uri`, JSON format, a user error for a taken topic and address) and
//!   `webhookSubscriptionUpdate`. Once a subscription exists, each event goes to the addresses
//!   subscribed to its topic and nowhere else; before that, to the configured webhook URL.
//!   Addresses must be HTTPS, except `http://127.0.0.1:<port>`, which Shopify does not allow.
//! - Responses carry `extensions.cost` from a calculated-cost leaky bucket: each mutation costs
//!   10 points and `productVariants` requests `2 + first` and pays `2 +` the number returned. A
//!   request the bucket cannot pay gets HTTP 200 with a `THROTTLED` error, as Shopify answers.
//!   Tests can also force HTTP 429 with `Retry-After` for the next requests.
//! - Validation failures come back as `userErrors` (`field`, `message` and, where Shopify's error
//!   type has one, `code`), and a mutation with any user error changes nothing.
//! - Every change, through the API or [`StorefrontHandle::edit_product_as_user`], sends
//!   `products/create` or `products/update` with the REST payload (numeric ids, lowercase
//!   `status`, timestamps with the shop's UTC offset, `variants`, `images` and `metafields`),
//!   serialized like Shopify (`<`, `>`, `&` and `/` escaped, other characters raw UTF-8) and
//!   signed with `X-Shopify-Hmac-Sha256`. Failed deliveries are retried with backoff and keep
//!   their `X-Shopify-Event-Id`; each attempt gets a new `X-Shopify-Webhook-Id`.
//! - A change of a variant's available quantity also sends `inventory_levels/update`, whose
//!   payload names only the inventory item, the location and the quantity, so a receiver reads
//!   the SKU through the `inventoryItem(id:)` query, which the sandbox serves.
//!
//! # Not covered
//!
//! - Selection sets are not read: each root field returns a fixed superset of fields. Fragments,
//!   several root fields in one request, bulk operations, pagination cursors and other root
//!   fields are rejected or not supported.
//! - One location (`gid://shopify/Location/1`) and one quantity: `available` and `on_hand` are the
//!   same number, because the sandbox has no orders or committed stock.
//! - Product options, media processing and collections are not modelled. Subscriptions have no
//!   filters, included fields or metafield namespaces, and cannot be deleted. Images are plain source URLs. Customers, draft orders (quotes), orders,
//!   fulfillments and returns have only the REST-shaped API of the `commerce` module, not
//!   Shopify's GraphQL, and no link to products or inventory.
//! - Real Shopify may send `products/update` for changes that alter nothing, and may not send it
//!   for an inventory change. The sandbox sends `products/update` for inventory and metafield
//!   changes too, and sends no webhook when a call changes no value.
//! - SKUs are not unique, as in Shopify; lookups by SKU return the first match.

mod api;
mod commerce;
mod graphql;
mod inputs;
mod model;
mod nodes;
mod operations;
mod throttle;
mod webhooks;

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{FixedOffset, Utc};
use rust_decimal::{Decimal, RoundingStrategy};

pub use model::{
    Image, Metafield, Product, ProductStatus, Variant, CUSTOM_ID_KEY, CUSTOM_ID_NAMESPACE, LOCATION_GID,
    SEO_DESCRIPTION_KEY, SEO_NAMESPACE, SEO_TITLE_KEY,
};
pub use throttle::ThrottleConfig;

use crate::delivery::{Delivery, Dispatcher, OutgoingEvent, RetryPolicy};
use crate::error::SandboxError;
use crate::server::RunningServer;
pub use model::WebhookSubscription;
use model::{set_metafield, ChangeKind, Store};
use operations::{create_product, update_product, ProductPatch, VariantPatch};
use throttle::{CostBucket, Forced429};
use webhooks::{inventory_level_event, product_event, ProductTopic, ShopifySigner};

/// Settings of a storefront sandbox. Secrets are redacted from `Debug` output.
#[derive(Clone)]
pub struct StorefrontConfig {
    /// The value `X-Shopify-Access-Token` must carry.
    pub access_token: String,
    /// The app secret that signs webhooks.
    pub webhook_secret: String,
    /// The URL webhooks are sent to; `None` drops them until [`StorefrontHandle::set_webhook_url`].
    pub webhook_url: Option<String>,
    /// The `X-Shopify-Shop-Domain` of webhooks.
    pub shop_domain: String,
    /// The `X-Shopify-API-Version` of webhooks.
    pub api_version: String,
    pub throttle: ThrottleConfig,
    /// How many requests, from the first, get HTTP 429 before any other check but authentication.
    pub http_429_next_requests: u32,
    /// The `Retry-After` seconds of those forced 429 responses.
    pub http_429_retry_after_secs: u64,
    pub retry: RetryPolicy,
    /// The shop's offset from UTC, used in webhook timestamps.
    pub utc_offset_secs: i32,
}

impl Default for StorefrontConfig {
    fn default() -> Self {
        Self {
            access_token: "shpat_sandbox_fake_token".to_owned(),
            webhook_secret: "sandbox-fake-webhook-secret".to_owned(),
            webhook_url: None,
            shop_domain: "fieldsync-sandbox.myshopify.com".to_owned(),
            api_version: "2025-07".to_owned(),
            throttle: ThrottleConfig::default(),
            http_429_next_requests: 0,
            http_429_retry_after_secs: 1,
            retry: RetryPolicy::default(),
            utc_offset_secs: -4 * 3600,
        }
    }
}

impl fmt::Debug for StorefrontConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorefrontConfig")
            .field("access_token", &"<redacted>")
            .field("webhook_secret", &"<redacted>")
            .field("webhook_url", &self.webhook_url)
            .field("shop_domain", &self.shop_domain)
            .field("api_version", &self.api_version)
            .field("throttle", &self.throttle)
            .field("http_429_next_requests", &self.http_429_next_requests)
            .field("retry", &self.retry)
            .field("utc_offset_secs", &self.utc_offset_secs)
            .finish()
    }
}

/// A product created by a simulated person in the admin, with one variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProduct {
    pub title: String,
    pub sku: String,
    pub price: Decimal,
    pub inventory: i64,
    pub description_html: String,
    pub status: ProductStatus,
    pub images: Vec<String>,
}

/// A metafield value to set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetafieldValue {
    pub namespace: String,
    pub key: String,
    /// The metafield type, such as `json` or `single_line_text_field`.
    pub r#type: String,
    pub value: String,
}

/// An edit by a simulated person in the admin. `None` leaves a value unchanged; an empty SEO
/// text removes the SEO metafield.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProductEdit {
    pub title: Option<String>,
    pub description_html: Option<String>,
    pub handle: Option<String>,
    pub status: Option<ProductStatus>,
    pub seo_title: Option<String>,
    pub seo_description: Option<String>,
    pub images: Option<Vec<String>>,
    /// The price of the variant with the edited SKU.
    pub price: Option<Decimal>,
    /// The available quantity of the variant with the edited SKU.
    pub inventory: Option<i64>,
    pub metafields: Vec<MetafieldValue>,
}

/// Starts storefront sandboxes.
#[derive(Debug)]
pub struct StorefrontSandbox;

impl StorefrontSandbox {
    /// Starts a storefront sandbox on `127.0.0.1` with an ephemeral port. Must run inside a
    /// Tokio runtime.
    pub async fn start(config: StorefrontConfig) -> Result<StorefrontHandle, SandboxError> {
        let signer = ShopifySigner {
            secret: config.webhook_secret.clone(),
            shop_domain: config.shop_domain.clone(),
            api_version: config.api_version.clone(),
        };
        let dispatcher = Dispatcher::new(
            "storefront",
            config.webhook_url.clone(),
            config.retry.clone(),
            Box::new(signer),
        )?;
        let offset = FixedOffset::east_opt(config.utc_offset_secs)
            .or_else(|| FixedOffset::east_opt(0))
            .ok_or(SandboxError::NoRuntime)?;
        let shared = Arc::new(Shared {
            access_token: config.access_token.clone(),
            offset,
            store: Mutex::new(Store::new()),
            bucket: Mutex::new(CostBucket::new(config.throttle)),
            forced_429: Mutex::new(Forced429 {
                remaining: config.http_429_next_requests,
                retry_after_secs: config.http_429_retry_after_secs,
            }),
            api_writes: AtomicU64::new(0),
            mutations: Mutex::new(Vec::new()),
            throttled: AtomicU64::new(0),
            dispatcher,
        });
        let server = RunningServer::start(api::router(Arc::clone(&shared)), "storefront").await?;
        Ok(StorefrontHandle { shared, server })
    }
}

/// State shared by the HTTP handlers and the handle.
pub(crate) struct Shared {
    access_token: String,
    offset: FixedOffset,
    store: Mutex<Store>,
    bucket: Mutex<CostBucket>,
    forced_429: Mutex<Forced429>,
    api_writes: AtomicU64,
    /// The root field of every mutation counted in `api_writes`, in order.
    mutations: Mutex<Vec<String>>,
    /// GraphQL requests refused with `THROTTLED` because the cost bucket could not pay them.
    throttled: AtomicU64,
    dispatcher: Arc<Dispatcher>,
}

impl Shared {
    /// Sends one webhook per changed product.
    fn emit(&self, store: &Store, changes: &[(ChangeKind, u64)]) {
        for (kind, id) in changes {
            let topic = match kind {
                ChangeKind::Created => ProductTopic::Create,
                ChangeKind::Updated => ProductTopic::Update,
                ChangeKind::InventoryLevel => {
                    let variant = store.find_by_inventory_item(*id).and_then(|(product_id, variant_id)| {
                        let product = store.product(product_id)?;
                        product.variants.iter().find(|variant| variant.id == variant_id)
                    });
                    if let Some(variant) = variant {
                        self.publish(store, inventory_level_event(variant, self.offset, Utc::now()));
                    }
                    continue;
                }
            };
            let Some(product) = store.product(*id) else {
                continue;
            };
            self.publish(store, product_event(topic, product, self.offset, Utc::now()));
        }
    }

    /// Sends an event to each subscription of its topic, or to the configured webhook URL while
    /// the shop has no subscription.
    fn publish(&self, store: &Store, event: OutgoingEvent) {
        match store.subscribers(&event.topic) {
            None => self.dispatcher.send(event),
            Some(urls) => {
                for url in urls {
                    self.dispatcher.send_to(url, event.clone());
                }
            }
        }
    }
}

/// A running storefront sandbox. Dropping it stops the server without waiting;
/// [`StorefrontHandle::shutdown`] also waits for open requests.
#[derive(Debug)]
pub struct StorefrontHandle {
    shared: Arc<Shared>,
    server: RunningServer,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("offset", &self.offset)
            .finish_non_exhaustive()
    }
}

impl StorefrontHandle {
    /// Returns `http://127.0.0.1:<port>`, the shop's base URL.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Returns the GraphQL endpoint URL for `api_version`, such as `2025-07`.
    pub fn graphql_url(&self, api_version: &str) -> String {
        format!("{}/admin/api/{api_version}/graphql.json", self.base_url())
    }

    /// Sets where later webhooks go; `None` drops them. Retries keep their original URL.
    pub fn set_webhook_url(&self, url: Option<String>) {
        self.shared.dispatcher.set_url(url);
    }

    /// Rejects the next `requests` GraphQL requests with HTTP 429 and `Retry-After`.
    pub fn force_http_429(&self, requests: u32, retry_after_secs: u64) {
        if let Ok(mut forced) = self.shared.forced_429.lock() {
            *forced = Forced429 {
                remaining: requests,
                retry_after_secs,
            };
        }
    }

    /// Empties the cost bucket, so the next request is throttled until points are restored.
    pub fn drain_throttle_bucket(&self) {
        if let Ok(mut bucket) = self.shared.bucket.lock() {
            bucket.drain(Instant::now());
        }
    }

    /// Creates a product as a person in the admin would, and sends `products/create`.
    pub fn create_product_as_user(&self, new: NewProduct) -> Result<Product, SandboxError> {
        let patch = ProductPatch {
            title: Some(new.title),
            description_html: Some(new.description_html),
            status: Some(new.status),
            images: Some(new.images),
            variants: Some(vec![VariantPatch {
                id: None,
                sku: Some(new.sku),
                price: Some(round_price(new.price)),
                quantity: Some(new.inventory),
            }]),
            ..ProductPatch::default()
        };
        let mut store = self.lock_store()?;
        let id = create_product(&mut store, patch, Utc::now());
        self.shared.emit(&store, &[(ChangeKind::Created, id)]);
        store.product(id).cloned().ok_or(SandboxError::NotFound {
            kind: "product",
            id: id.to_string(),
        })
    }

    /// Edits the product that has a variant with `sku`, as a person in the admin would, and
    /// sends `products/update` if a value changed.
    pub fn edit_product_as_user(&self, sku: &str, edit: ProductEdit) -> Result<Product, SandboxError> {
        let mut store = self.lock_store()?;
        let not_found = || SandboxError::NotFound {
            kind: "variant with SKU",
            id: sku.to_owned(),
        };
        let id = store
            .find_by_sku(sku)
            .map(|(product, _)| product.id)
            .ok_or_else(not_found)?;
        if edit.title.as_deref().is_some_and(|title| title.trim().is_empty()) {
            return Err(SandboxError::InvalidEdit {
                kind: "product",
                id: sku.to_owned(),
                message: "title can't be blank".to_owned(),
            });
        }
        let handle = edit
            .handle
            .as_deref()
            .map(|handle| store.unique_handle(handle, Some(id)));

        let inventory_before = store
            .find_by_sku(sku)
            .map(|(_, variant)| (variant.inventory_item_id, variant.inventory_quantity));
        let changed = update_product(&mut store, id, Utc::now(), |product, allocate| {
            apply_edit(product, edit, handle, sku, allocate);
        });
        if changed {
            let mut changes = vec![(ChangeKind::Updated, id)];
            let inventory_after = store.find_by_sku(sku).map(|(_, variant)| variant.inventory_quantity);
            if let Some((item_id, before)) = inventory_before {
                if inventory_after.is_some_and(|after| after != before) {
                    changes.push((ChangeKind::InventoryLevel, item_id));
                }
            }
            self.shared.emit(&store, &changes);
        }
        store.product(id).cloned().ok_or_else(not_found)
    }

    /// Returns a snapshot of the product that has a variant with `sku`.
    pub fn product_by_sku(&self, sku: &str) -> Option<Product> {
        let store = self.shared.store.lock().ok()?;
        store.find_by_sku(sku).map(|(product, _)| product.clone())
    }

    /// Returns a snapshot of every product, in id order.
    pub fn products(&self) -> Vec<Product> {
        self.shared
            .store
            .lock()
            .map(|store| store.products().cloned().collect())
            .unwrap_or_default()
    }

    /// Returns how many GraphQL mutations ran (authenticated, not throttled), whether or not
    /// they returned user errors or changed anything.
    pub fn api_write_count(&self) -> u64 {
        self.shared.api_writes.load(Ordering::SeqCst)
    }

    /// Returns the root field of every GraphQL mutation that ran, in order, such as
    /// `["productSet", "metafieldsSet"]`.
    pub fn mutation_names(&self) -> Vec<String> {
        self.shared
            .mutations
            .lock()
            .map(|names| names.clone())
            .unwrap_or_default()
    }

    /// Returns the webhook subscriptions made through the API.
    pub fn webhook_subscriptions(&self) -> Vec<WebhookSubscription> {
        self.shared
            .store
            .lock()
            .map(|store| store.subscriptions.clone())
            .unwrap_or_default()
    }

    /// Returns how many GraphQL requests the cost bucket refused with `THROTTLED`.
    pub fn throttled_count(&self) -> u64 {
        self.shared.throttled.load(Ordering::SeqCst)
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

    fn lock_store(&self) -> Result<std::sync::MutexGuard<'_, Store>, SandboxError> {
        // A poisoned lock means a handler panicked; the data is still usable for a sandbox.
        Ok(self
            .shared
            .store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner))
    }
}

fn apply_edit(
    product: &mut Product,
    edit: ProductEdit,
    handle: Option<String>,
    sku: &str,
    allocate: &mut dyn FnMut() -> u64,
) {
    if let Some(title) = edit.title {
        product.title = title;
    }
    if let Some(description) = edit.description_html {
        product.description_html = description;
    }
    if let Some(handle) = handle {
        product.handle = handle;
    }
    if let Some(status) = edit.status {
        product.status = status;
    }
    if let Some(title) = edit.seo_title {
        set_metafield(
            product,
            SEO_NAMESPACE,
            SEO_TITLE_KEY,
            "single_line_text_field",
            &title,
            &mut *allocate,
        );
    }
    if let Some(description) = edit.seo_description {
        set_metafield(
            product,
            SEO_NAMESPACE,
            SEO_DESCRIPTION_KEY,
            "multi_line_text_field",
            &description,
            &mut *allocate,
        );
    }
    for field in edit.metafields {
        set_metafield(
            product,
            &field.namespace,
            &field.key,
            &field.r#type,
            &field.value,
            &mut *allocate,
        );
    }
    if let Some(images) = edit.images {
        let current: Vec<&str> = product.images.iter().map(|image| image.src.as_str()).collect();
        if current != images.iter().map(String::as_str).collect::<Vec<_>>() {
            product.images = images.into_iter().map(|src| Image { id: allocate(), src }).collect();
        }
    }
    if let Some(variant) = product.variants.iter_mut().find(|variant| variant.sku == sku) {
        if let Some(price) = edit.price {
            variant.price = round_price(price);
        }
        if let Some(quantity) = edit.inventory {
            variant.inventory_quantity = quantity;
        }
    }
}

/// Rounds a price to cents, as the admin does.
fn round_price(price: Decimal) -> Decimal {
    let mut rounded = price.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero);
    rounded.rescale(2);
    rounded
}
