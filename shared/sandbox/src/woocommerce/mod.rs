//! A WooCommerce stand-in: the REST API v3 products and variations endpoints of one site, and
//! its product webhooks.
//!
//! The sandbox's base URL plays the site root (`https://shop.example`), so the API is under
//! `{base}/wp-json/wc/v3`. Facts about WooCommerce below come from the WooCommerce REST API
//! documentation (`woocommerce/woocommerce-rest-api-docs`, the v3 "Introduction",
//! "Authentication", "Products", "Product variations" and "Webhooks" pages) and from the
//! webhook delivery code of WooCommerce 9 (`includes/class-wc-webhook.php`: `deliver`,
//! `deliver_ping`, `generate_signature`, `build_payload`), read in 2026.
//!
//! # Covered
//!
//! - HTTP basic authentication with the consumer key and secret on every `/wp-json/wc/v3` route,
//!   or `consumer_key`/`consumer_secret` query parameters, as WooCommerce accepts over HTTPS.
//!   Otherwise HTTP 401 with `woocommerce_rest_cannot_view` (reads), `woocommerce_rest_cannot_create`
//!   or `woocommerce_rest_cannot_edit` (writes). Errors are `{"code","message","data":{"status"}}`.
//! - `GET products` with `sku` (exact match, products only, as WooCommerce's filter), `per_page`
//!   (1 to 100, 10 by default) and `page`; `X-WP-Total` and `X-WP-TotalPages` headers.
//! - `POST products` (201), `GET`/`PUT products/{id}` (404 `woocommerce_rest_product_invalid_id`
//!   for an unknown id), and `POST products/batch` with `create` and `update` lists (at most
//!   100 objects, 413 otherwise), whose failed entries carry an inline `error` object.
//! - `GET products/{id}/variations` (paged like products), `GET`/`PUT
//!   products/{id}/variations/{variation_id}`.
//! - Product members `id`, `name`, `slug`, `type` (`simple`, `variable`), `status` (`draft`,
//!   `pending`, `private`, `publish`), `description`, `sku`, `price`, `regular_price`,
//!   `sale_price`, `manage_stock`, `stock_quantity`, `stock_status`, `images[].src`,
//!   `variations` (ids only) and `meta_data` (the Yoast SEO keys `_yoast_wpseo_title` and
//!   `_yoast_wpseo_metadesc`). A SKU is unique across products and variations, and a duplicate
//!   gets 400 `product_invalid_sku`. `date_created` and `date_modified` are in the site's time
//!   zone and `*_gmt` in UTC, all without an offset. Variations carry `parent_id`, one `image`,
//!   and no name or slug.
//! - Prices are strings on the wire. A price sent as a JSON number gets 400 `rest_invalid_param`,
//!   as WordPress's schema check gives for a member typed `string`.
//! - Responses and webhook bodies are written like PHP's `wp_json_encode`: `/` as `\/` and
//!   non-ASCII characters as `\uXXXX`, so a receiver must verify the exact bytes.
//! - Webhooks `product.created` and `product.updated` for every change, whether through the API
//!   (fieldsync's own writes included) or a handle method that plays the merchant. The body is
//!   the product's REST JSON when the delivery is queued: full for a simple product, and for a
//!   variable product the product with variation ids only. A variation change is delivered as
//!   `product.updated` of its parent. Headers: `Content-Type: application/json`, `User-Agent`,
//!   `X-WC-Webhook-Source` (site root with a trailing `/`), `-Topic`, `-Resource`, `-Event`,
//!   `-Signature` (base64 HMAC-SHA256 of the body with the webhook secret), `-ID` and
//!   `-Delivery-ID`.
//! - The ping WooCommerce posts when a webhook is saved: an unsigned
//!   `application/x-www-form-urlencoded` body `webhook_id=<id>` without `X-WC-*` headers.
//!   WooCommerce saves the webhook only if the response is exactly 200.
//! - Forced HTTP 429 responses with `Retry-After`, for tests.
//!
//! # Not covered
//!
//! - OAuth 1.0a, which WooCommerce requires over plain HTTP; the sandbox takes basic
//!   authentication over HTTP because it serves only `127.0.0.1`.
//! - Other resources (orders, customers, coupons, categories, attributes), `DELETE`, batch
//!   `delete`, the `Link` header, `offset`, searches and filters other than `sku`.
//! - Real time zones: the site's zone is a fixed offset, so `date_modified` does not follow
//!   daylight saving time (the default plays America/New_York in winter, UTC-5).
//! - WooCommerce's delivery: it queues deliveries in Action Scheduler, builds the payload when
//!   the action runs, does not retry a failed delivery and disables a webhook after more than
//!   5 consecutive failures. The sandbox delivers at once and retries per [`RetryPolicy`] with
//!   the same `X-WC-Webhook-Delivery-ID`.
//! - Rate limits: WooCommerce core does not limit `wc/v3` requests (hosts and security plugins
//!   may); the only 429s are forced ones, with the error code `woocommerce_rest_too_many_requests`,
//!   which is the sandbox's choice.

mod api;
mod model;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError, RwLock};

use chrono::{DateTime, FixedOffset, Offset as _, SubsecRound, Utc};

pub use model::{Product, ProductEdit, ProductType, YOAST_DESCRIPTION_KEY, YOAST_TITLE_KEY};

use crate::delivery::{hmac_sha256_base64, new_uuid, Delivery, Dispatcher, OutgoingEvent, RetryPolicy, SignHeaders};
use crate::error::SandboxError;
use crate::server::RunningServer;
use model::{php_json, product_json, ApiError};

/// The user agent WooCommerce deliveries carry, `WooCommerce/<version> Hookshot (WordPress/<version>)`.
const USER_AGENT: &str = "WooCommerce/9.8.0 Hookshot (WordPress/6.8)";

/// The first id the sandbox gives a product or variation.
pub const FIRST_PRODUCT_ID: u64 = 7000;

/// Settings of a WooCommerce sandbox. Secrets are redacted from `Debug` output.
#[derive(Clone)]
pub struct WooCommerceConfig {
    /// The REST API consumer key (`ck_…`).
    pub consumer_key: String,
    /// The REST API consumer secret (`cs_…`).
    pub consumer_secret: String,
    /// The secret webhook signatures are computed with.
    pub webhook_secret: String,
    /// The webhook's id, sent as `X-WC-Webhook-ID` and in the creation ping.
    pub webhook_id: u64,
    /// The site's time zone as a fixed offset from UTC, for the naive local times.
    pub site_time_zone: FixedOffset,
    /// Retries of webhook deliveries.
    pub retry: RetryPolicy,
}

impl Default for WooCommerceConfig {
    fn default() -> Self {
        Self {
            consumer_key: "ck_sandbox_0000000000000000000000000000000000000000".to_owned(),
            consumer_secret: "cs_sandbox_0000000000000000000000000000000000000000".to_owned(),
            webhook_secret: "wc_sandbox_webhook_secret".to_owned(),
            webhook_id: 42,
            site_time_zone: FixedOffset::west_opt(5 * 3600).unwrap_or_else(|| Utc.fix()),
            retry: RetryPolicy::default(),
        }
    }
}

impl fmt::Debug for WooCommerceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WooCommerceConfig")
            .field("consumer_key", &"<redacted>")
            .field("consumer_secret", &"<redacted>")
            .field("webhook_secret", &"<redacted>")
            .field("webhook_id", &self.webhook_id)
            .field("site_time_zone", &self.site_time_zone)
            .field("retry", &self.retry)
            .finish()
    }
}

/// Starts WooCommerce sandboxes.
#[derive(Debug)]
pub struct WooCommerceSandbox;

impl WooCommerceSandbox {
    /// Starts a WooCommerce sandbox on `127.0.0.1` with an ephemeral port. Must run inside a
    /// Tokio runtime.
    pub async fn start(config: WooCommerceConfig) -> Result<WooCommerceHandle, SandboxError> {
        let site = Arc::new(OnceLock::new());
        let signer = WebhookHeaders {
            secret: config.webhook_secret.clone(),
            webhook_id: config.webhook_id,
            site: Arc::clone(&site),
        };
        let dispatcher = Dispatcher::new("woocommerce", None, config.retry.clone(), Box::new(signer))?;
        let ping_client = reqwest::Client::builder()
            .timeout(config.retry.attempt_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| SandboxError::HttpClient { source })?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                products: BTreeMap::new(),
                next_id: FIRST_PRODUCT_ID,
            }),
            forced_429: AtomicU32::new(0),
            api_requests: AtomicU64::new(0),
            dispatcher,
            webhook_url: RwLock::new(None),
            site,
            config,
        });
        let server = RunningServer::start(api::router(Arc::clone(&shared)), "woocommerce").await?;
        // The site root is known once the port is; it is set before any request can arrive.
        let _ = shared.site.set(format!("{}/", server.base_url()));
        Ok(WooCommerceHandle {
            shared,
            server,
            ping_client,
        })
    }
}

/// Builds the `X-WC-Webhook-*` headers of one delivery attempt.
struct WebhookHeaders {
    secret: String,
    webhook_id: u64,
    site: Arc<OnceLock<String>>,
}

impl SignHeaders for WebhookHeaders {
    fn headers(&self, event: &OutgoingEvent, _attempt: u32) -> Vec<(String, String)> {
        let (resource, action) = event.topic.split_once('.').unwrap_or((event.topic.as_str(), ""));
        let site = self.site.get().cloned().unwrap_or_default();
        [
            ("Content-Type", "application/json".to_owned()),
            ("User-Agent", USER_AGENT.to_owned()),
            ("X-WC-Webhook-Source", site),
            ("X-WC-Webhook-Topic", event.topic.clone()),
            ("X-WC-Webhook-Resource", resource.to_owned()),
            ("X-WC-Webhook-Event", action.to_owned()),
            (
                "X-WC-Webhook-Signature",
                hmac_sha256_base64(self.secret.as_bytes(), &[&event.body]),
            ),
            ("X-WC-Webhook-ID", self.webhook_id.to_string()),
            ("X-WC-Webhook-Delivery-ID", event.event_id.clone()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value))
        .collect()
    }
}

/// The site's products and variations by id.
#[derive(Debug)]
struct State {
    products: BTreeMap<u64, Product>,
    next_id: u64,
}

impl State {
    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }

    fn id_by_sku(&self, sku: &str) -> Option<u64> {
        if sku.is_empty() {
            return None;
        }
        self.products
            .values()
            .find(|product| product.sku == sku)
            .map(|product| product.id)
    }

    /// Checks that `sku` is free or already belongs to `own_id`.
    fn check_sku(&self, sku: &str, own_id: Option<u64>) -> Result<(), ApiError> {
        match self.id_by_sku(sku) {
            Some(id) if Some(id) != own_id => {
                Err(ApiError::new(400, "product_invalid_sku", "Invalid or duplicated SKU."))
            }
            _ => Ok(()),
        }
    }
}

/// The topic of a product webhook.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Topic {
    Created,
    Updated,
}

/// State shared by the HTTP handlers and the handle.
struct Shared {
    state: Mutex<State>,
    forced_429: AtomicU32,
    api_requests: AtomicU64,
    dispatcher: Arc<Dispatcher>,
    /// The webhook delivery URL, also where the creation ping goes.
    webhook_url: RwLock<Option<String>>,
    site: Arc<OnceLock<String>>,
    config: WooCommerceConfig,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

/// WooCommerce stores times to the second.
fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(0)
}

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        // A poisoned lock means a handler panicked; the data is still usable for a sandbox.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn site(&self) -> String {
        self.site.get().cloned().unwrap_or_default()
    }

    /// Returns a product or variation as REST JSON.
    fn json(&self, product: &Product) -> serde_json::Value {
        product_json(product, &self.site(), self.config.site_time_zone)
    }

    /// Queues the webhook of a change to `product_id`, or to its parent for a variation, with the
    /// product's JSON as it is now.
    fn notify(&self, state: &State, product_id: u64, topic: Topic) {
        let Some(product) = state.products.get(&product_id) else {
            return;
        };
        let (product, topic) = match product.parent_id.and_then(|parent| state.products.get(&parent)) {
            Some(parent) => (parent, Topic::Updated),
            None => (product, topic),
        };
        let topic = match topic {
            Topic::Created => "product.created",
            Topic::Updated => "product.updated",
        };
        self.dispatcher.send(OutgoingEvent {
            topic: topic.to_owned(),
            // WooCommerce's delivery id is a 32-character hex hash.
            event_id: new_uuid().replace('-', ""),
            triggered_at: Utc::now(),
            body: php_json(&self.json(product)),
        });
    }
}

/// A running WooCommerce sandbox. Dropping it stops the server without waiting;
/// [`WooCommerceHandle::shutdown`] also waits for open requests.
#[derive(Debug)]
pub struct WooCommerceHandle {
    shared: Arc<Shared>,
    server: RunningServer,
    ping_client: reqwest::Client,
}

impl WooCommerceHandle {
    /// Returns `http://127.0.0.1:<port>`, which plays the site root.
    pub fn base_url(&self) -> String {
        self.server.base_url()
    }

    /// Returns `<base_url>/wp-json/wc/v3`.
    pub fn api_url(&self) -> String {
        format!("{}/wp-json/wc/v3", self.base_url())
    }

    /// Returns the webhook's id.
    pub fn webhook_id(&self) -> u64 {
        self.shared.config.webhook_id
    }

    /// Sets the webhook delivery URL, or removes the webhook with `None`.
    pub fn set_webhook_url(&self, url: Option<String>) {
        if let Ok(mut current) = self.shared.webhook_url.write() {
            current.clone_from(&url);
        }
        self.shared.dispatcher.set_url(url);
    }

    /// Posts the unsigned ping WooCommerce sends when a webhook is saved to the webhook URL, and
    /// returns the status the receiver responded with, or `None` if no URL is set or the request
    /// failed. WooCommerce saves the webhook only on exactly 200.
    pub async fn send_creation_ping(&self) -> Option<u16> {
        let url = self.shared.webhook_url.read().ok().and_then(|url| url.clone())?;
        let response = self
            .ping_client
            .post(url)
            .header("Content-Type", "application/x-www-form-urlencoded")
            .header("User-Agent", USER_AGENT)
            .body(format!("webhook_id={}", self.shared.config.webhook_id))
            .send()
            .await;
        match response {
            Ok(response) => Some(response.status().as_u16()),
            Err(error) => {
                tracing::warn!(sandbox = "woocommerce", error = %error, "webhook creation ping failed");
                None
            }
        }
    }

    /// Rejects the next `requests` API requests with HTTP 429 and `Retry-After: 1`.
    pub fn force_rate_limit(&self, requests: u32) {
        self.shared.forced_429.store(requests, Ordering::SeqCst);
    }

    /// Returns how many requests reached a `/wp-json/wc/v3` route, rejected ones included.
    pub fn api_request_count(&self) -> u64 {
        self.shared.api_requests.load(Ordering::SeqCst)
    }

    /// Returns a snapshot of the product or variation with `sku`.
    pub fn product_by_sku(&self, sku: &str) -> Option<Product> {
        let state = self.shared.lock_state();
        let id = state.id_by_sku(sku)?;
        state.products.get(&id).cloned()
    }

    /// Returns a snapshot of the product or variation `id`.
    pub fn product(&self, id: u64) -> Option<Product> {
        self.shared.lock_state().products.get(&id).cloned()
    }

    /// Creates a published simple product as a merchant would in the admin, and notifies
    /// `product.created`.
    pub fn create_product_as_merchant(&self, sku: &str, edit: ProductEdit) -> Result<Product, SandboxError> {
        let mut state = self.shared.lock_state();
        state
            .check_sku(sku, None)
            .map_err(|error| invalid("product", sku, error))?;
        let id = state.take_id();
        let mut product = Product::new(id, ProductType::Simple, now());
        product.sku = sku.to_owned();
        edit.apply(&mut product)
            .map_err(|error| invalid("product", sku, error))?;
        if product.slug.is_empty() {
            product.slug = model::slugify(&product.name);
        }
        state.products.insert(id, product.clone());
        self.shared.notify(&state, id, Topic::Created);
        Ok(product)
    }

    /// Creates a published variable product with one variation per `(sku, regular_price)`, as a
    /// merchant would, and notifies `product.created`. Ids are given in order, so the first
    /// product of a new sandbox is 7000 and its variations 7001, 7002 and so on.
    pub fn create_variable_product_as_merchant(
        &self,
        sku: &str,
        name: &str,
        variations: &[(&str, &str)],
    ) -> Result<Product, SandboxError> {
        let mut state = self.shared.lock_state();
        for candidate in std::iter::once(sku).chain(variations.iter().map(|(sku, _)| *sku)) {
            state
                .check_sku(candidate, None)
                .map_err(|error| invalid("product", candidate, error))?;
        }

        let at = now();
        let id = state.take_id();
        let mut parent = Product::new(id, ProductType::Variable, at);
        parent.sku = sku.to_owned();
        parent.name = name.to_owned();
        parent.slug = model::slugify(name);

        let mut children = Vec::new();
        for (variation_sku, price) in variations {
            let variation_id = state.take_id();
            let mut variation = Product::new(variation_id, ProductType::Variation, at);
            variation.parent_id = Some(id);
            variation.sku = (*variation_sku).to_owned();
            variation.slug.clone_from(&parent.slug);
            variation.regular_price = model::check_price("regular_price", price)
                .map_err(|error| invalid("variation", variation_sku, error))?;
            parent.variations.push(variation_id);
            children.push(variation);
        }

        for variation in children {
            state.products.insert(variation.id, variation);
        }
        state.products.insert(id, parent.clone());
        self.shared.notify(&state, id, Topic::Created);
        Ok(parent)
    }

    /// Edits the simple or variable product `sku` as a merchant would, and notifies
    /// `product.updated` if a value changed.
    pub fn edit_product_as_merchant(&self, sku: &str, edit: ProductEdit) -> Result<Product, SandboxError> {
        self.edit_as_merchant("product", sku, edit, |product| {
            product.product_type != ProductType::Variation
        })
    }

    /// Edits the variation `sku` as a merchant would (price, stock, status, description), and
    /// notifies `product.updated` of its product if a value changed.
    pub fn edit_variation_as_merchant(&self, sku: &str, edit: ProductEdit) -> Result<Product, SandboxError> {
        self.edit_as_merchant("variation", sku, edit, |product| {
            product.product_type == ProductType::Variation
        })
    }

    fn edit_as_merchant(
        &self,
        kind: &'static str,
        sku: &str,
        edit: ProductEdit,
        is_kind: impl Fn(&Product) -> bool,
    ) -> Result<Product, SandboxError> {
        let mut state = self.shared.lock_state();
        let not_found = || SandboxError::NotFound {
            kind,
            id: sku.to_owned(),
        };
        let id = state.id_by_sku(sku).ok_or_else(not_found)?;
        let mut product = state.products.get(&id).cloned().ok_or_else(not_found)?;
        if !is_kind(&product) {
            return Err(not_found());
        }
        if edit.apply(&mut product).map_err(|error| invalid(kind, sku, error))? {
            product.date_modified = now();
            state.products.insert(id, product.clone());
            self.shared.notify(&state, id, Topic::Updated);
        }
        Ok(product)
    }

    /// Returns every webhook delivery attempt so far, oldest first. Creation pings are not
    /// included.
    pub fn deliveries(&self) -> Vec<Delivery> {
        self.shared.dispatcher.deliveries()
    }

    /// Waits until no webhook is waiting for delivery or retry.
    pub async fn wait_for_deliveries_idle(&self) {
        self.shared.dispatcher.wait_idle().await;
    }

    /// Stops the server and waits for open requests to finish. Pending deliveries still run.
    pub async fn shutdown(&self) {
        self.server.shutdown().await;
    }
}

fn invalid(kind: &'static str, id: &str, error: ApiError) -> SandboxError {
    SandboxError::InvalidEdit {
        kind,
        id: id.to_owned(),
        message: format!("{}: {}", error.code, error.message),
    }
}
