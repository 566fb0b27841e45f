//! Reads and writes WooCommerce products through the REST API v3 (`/wp-json/wc/v3`).
//!
//! Requests authenticate with the REST API consumer key and secret as HTTP basic
//! authentication, which WooCommerce accepts only over HTTPS. So the site root must be an
//! `https` URL, or an `http` URL of a loopback host (the sandbox).
//!
//! [`WooCommerceClient::fetch`] reads what a notice names, which must be `products/<id>`: the
//! product, and for a variable product its variations (`products/<id>/variations`, paged with
//! `per_page` and `page` up to `X-WP-TotalPages`). A simple product becomes one change set keyed
//! by its SKU, and a variable product one change set per variation SKU. Each variation's change
//! set carries the product-level fields (name, description, handle, images, Yoast SEO title and
//! description) and the variation's own price, inventory and status.
//!
//! Writes address the record through its id in WooCommerce, kept as the write's `target_id` and
//! the change sets' `external_id`: `<product id>` for a simple product and
//! `<product id>/<variation id>` for a variation. A write without an id first looks the SKU up
//! (`GET products?sku=`), so a create retried after a lost response updates the product the
//! first attempt made instead of failing on the duplicate SKU. A new product is created as a
//! `draft` unless the write sets `published` to true. Prices are sent as decimal strings at
//! [`WooCommerceConfig::price_scale`] digits, as WooCommerce types them.
//!
//! Failures are classified by status: 429 is `RateLimited` with the server's `Retry-After`,
//! 401 and 403 are `Unavailable` so the write waits for an operator, other 4xx (such as 400
//! `woocommerce_rest_*` or `rest_invalid_param`) are `Rejected`, and 5xx are `Unavailable`.

mod fields;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use fieldsync_core::formats::woocommerce::{modified_gmt, product_fields, stock_fields};
use fieldsync_core::ports::{SystemClient, SystemError, WriteReceipt};
use fieldsync_core::{ChangeSet, FieldName, Notice, NoticeKind, OutboundWrite, RecordKey, SystemId, Wire};
use reqwest::header::{HeaderMap, CONTENT_TYPE};
use reqwest::{Method, StatusCode};
use serde_json::{Map, Value};

use crate::http::{build_client, rejected, status_error, unavailable, ConnectorError, UnexpectedResponse};
use fields::ProductFields;
use fieldsync_core::Secret;

/// The maximum number of variation pages read for one product (10,000 variations at 100 per page), so
/// that a server that keeps reporting more pages cannot keep a fetch running.
const MAX_VARIATION_PAGES: u32 = 100;

/// Settings of a [`WooCommerceClient`].
#[derive(Debug, Clone)]
pub struct WooCommerceConfig {
    /// The system name used in errors and change sets, as in the rules file.
    pub system: SystemId,
    /// The integration name change sets carry.
    pub integration: String,
    /// The site root, such as `https://shop.example`; the API is under `/wp-json/wc/v3`.
    pub base_url: String,
    /// The REST API consumer key (`ck_…`).
    pub consumer_key: Secret,
    /// The REST API consumer secret (`cs_…`).
    pub consumer_secret: Secret,
    /// Fractional digits of the store currency, used to write prices.
    pub price_scale: u32,
    /// Variations per page when reading a variable product (at most 100).
    pub page_size: u32,
    pub request_timeout: Duration,
}

impl WooCommerceConfig {
    /// Builds a configuration with 2 price digits, pages of 100 variations and a 10 s request
    /// timeout.
    pub fn new(
        system: impl Into<SystemId>,
        integration: impl Into<String>,
        base_url: impl Into<String>,
        consumer_key: Secret,
        consumer_secret: Secret,
    ) -> Self {
        Self {
            system: system.into(),
            integration: integration.into(),
            base_url: base_url.into(),
            consumer_key,
            consumer_secret,
            price_scale: 2,
            page_size: 100,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A WooCommerce REST API v3 client for products and variations.
#[derive(Debug, Clone)]
pub struct WooCommerceClient {
    config: WooCommerceConfig,
    /// `<site root>/wp-json/wc/v3/`.
    api: reqwest::Url,
    http: reqwest::Client,
}

/// A response read in full. Only successes and 404s are returned as replies.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

/// The WooCommerce object a write goes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Product(u64),
    Variation { product: u64, variation: u64 },
}

impl Target {
    /// Reads a `target_id`: `<product id>` or `<product id>/<variation id>`.
    fn parse(text: &str) -> Option<Self> {
        match text.split_once('/') {
            Some((product, variation)) => Some(Self::Variation {
                product: product.parse().ok()?,
                variation: variation.parse().ok()?,
            }),
            None => text.parse().ok().map(Self::Product),
        }
    }

    fn id(self) -> String {
        match self {
            Self::Product(id) => id.to_string(),
            Self::Variation { product, variation } => format!("{product}/{variation}"),
        }
    }
}

/// Tells whether a URL's host is a loopback address, where basic authentication over plain
/// HTTP does not leave the machine.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let address = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || address
            .parse::<std::net::IpAddr>()
            .is_ok_and(|address| address.is_loopback())
}

impl WooCommerceClient {
    /// Builds a client. Fails if the site root is not an absolute `https` URL, or an `http` URL
    /// of a loopback host.
    pub fn new(config: WooCommerceConfig) -> Result<Self, ConnectorError> {
        let root = format!("{}/wp-json/wc/v3/", config.base_url.trim_end_matches('/'));
        let (api, http) = build_client(&root, config.request_timeout)?;
        if api.scheme() != "https" && !is_loopback(&api) {
            return Err(ConnectorError::InvalidBaseUrl {
                url: config.base_url.clone(),
            });
        }
        Ok(Self { config, api, http })
    }

    fn system(&self) -> &SystemId {
        &self.config.system
    }

    fn url(&self, relative: &str) -> Result<reqwest::Url, SystemError> {
        self.api.join(relative).map_err(|error| {
            unavailable(
                self.system(),
                UnexpectedResponse(format!("bad API path {relative}: {error}")),
            )
        })
    }

    /// Sends one request and reads the whole response. Failed statuses other than 404 become
    /// errors classified by status.
    async fn send(
        &self,
        record: &RecordKey,
        method: Method,
        url: reqwest::Url,
        body: Option<&Map<String, Value>>,
    ) -> Result<Reply, SystemError> {
        let mut request = self.http.request(method, url).basic_auth(
            self.config.consumer_key.expose(),
            Some(self.config.consumer_secret.expose()),
        );
        if let Some(body) = body {
            let text = serde_json::to_string(body)
                .map_err(|error| unavailable(self.system(), UnexpectedResponse(error.to_string())))?;
            request = request.header(CONTENT_TYPE, "application/json").body(text);
        }
        let response = request
            .send()
            .await
            .map_err(|error| unavailable(self.system(), error))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .bytes()
            .await
            .map_err(|error| unavailable(self.system(), error))?
            .to_vec();
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(Reply { status, headers, body });
        }
        let message = error_message(&body);
        Err(status_error(self.system(), record, status, &headers, message))
    }

    /// Reads one JSON document, or `None` on 404.
    async fn get(&self, record: &RecordKey, url: reqwest::Url) -> Result<Option<Wire>, SystemError> {
        let reply = self.send(record, Method::GET, url, None).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.parse(&reply.body).map(Some)
    }

    fn parse(&self, body: &[u8]) -> Result<Wire, SystemError> {
        Wire::parse(body)
            .map_err(|error| unavailable(self.system(), UnexpectedResponse(format!("body is not JSON: {error}"))))
    }

    /// Reads every variation of a variable product, page by page.
    async fn variations(&self, record: &RecordKey, product_id: u64) -> Result<Vec<Wire>, SystemError> {
        let mut variations = Vec::new();
        for page in 1..=MAX_VARIATION_PAGES {
            let mut url = self.url(&format!("products/{product_id}/variations"))?;
            url.query_pairs_mut()
                .append_pair("per_page", &self.config.page_size.to_string())
                .append_pair("page", &page.to_string());
            let reply = self.send(record, Method::GET, url, None).await?;
            if reply.status == StatusCode::NOT_FOUND {
                return Ok(Vec::new());
            }
            let items = self.parse(&reply.body)?;
            let items = items.items();
            variations.extend(items.iter().cloned());
            let total_pages = reply
                .headers
                .get("x-wp-totalpages")
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.trim().parse::<u32>().ok())
                .unwrap_or(page);
            if items.is_empty() || page >= total_pages {
                return Ok(variations);
            }
        }
        tracing::warn!(
            product_id,
            pages = MAX_VARIATION_PAGES,
            "stopped reading variations at the page limit; later variations are not read"
        );
        Ok(variations)
    }

    /// Builds one change set from a product or variation and the product-level fields.
    fn change(
        &self,
        notice: &Notice,
        key: String,
        external_id: String,
        fields: BTreeMap<FieldName, Wire>,
        objects: &[&Wire],
    ) -> ChangeSet {
        // The values are as of the read, which is after every object's last change, so the
        // latest change time is the closest known time for all of them.
        let occurred_at = objects
            .iter()
            .filter_map(|object| modified_gmt(object))
            .max()
            .unwrap_or(notice.occurred_at);
        ChangeSet {
            record: RecordKey::new(self.config.integration.as_str(), notice.entity.clone(), key),
            source: self.system().clone(),
            event_id: notice.event_id.clone(),
            occurred_at,
            received_at: notice.received_at,
            external_id: Some(external_id),
            fields,
        }
    }

    /// Finds a simple or variable product by SKU.
    async fn find_by_sku(&self, record: &RecordKey) -> Result<Option<u64>, SystemError> {
        let mut url = self.url("products")?;
        url.query_pairs_mut().append_pair("sku", &record.key);
        let reply = self.send(record, Method::GET, url, None).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let products = self.parse(&reply.body)?;
        let found = products
            .items()
            .iter()
            .find(|product| product.get("sku").and_then(Wire::as_text) == Some(record.key.as_str()))
            .and_then(|product| product.get("id"))
            .and_then(Wire::as_key)
            .and_then(|id| id.parse::<u64>().ok());
        Ok(found)
    }

    /// Sends a PUT and fails with `Rejected` when the product or variation is gone.
    async fn put(&self, record: &RecordKey, path: &str, body: &Map<String, Value>) -> Result<(), SystemError> {
        let reply = self.send(record, Method::PUT, self.url(path)?, Some(body)).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Err(rejected(
                self.system(),
                record,
                format!("{path} not found in WooCommerce"),
            ));
        }
        Ok(())
    }

    async fn create(&self, write: &OutboundWrite, fields: &ProductFields) -> Result<WriteReceipt, SystemError> {
        let mut body = fields.product_body(self.config.price_scale, true);
        body.insert("type".to_owned(), Value::from("simple"));
        body.insert("sku".to_owned(), Value::from(write.record.key.as_str()));
        let reply = self
            .send(&write.record, Method::POST, self.url("products")?, Some(&body))
            .await?;
        let product = self.parse(&reply.body)?;
        let id = product.get("id").and_then(Wire::as_key).ok_or_else(|| {
            unavailable(
                self.system(),
                UnexpectedResponse("created product has no id".to_owned()),
            )
        })?;
        Ok(WriteReceipt { target_id: Some(id) })
    }
}

/// Reads `code: message` from a WooCommerce error body, `{"code","message","data":{"status"}}`.
fn error_message(body: &[u8]) -> Option<String> {
    let wire = Wire::parse(body).ok()?;
    let code = wire.get("code").and_then(Wire::as_text)?;
    let message = wire.get("message").and_then(Wire::as_text).unwrap_or_default();
    Some(format!("{code}: {message}"))
}

/// Reads the product id of a notice resource, which must be exactly `products/<id>`.
fn product_id(resource: &str) -> Option<u64> {
    let id = resource.trim_start_matches('/').strip_prefix("products/")?;
    if id.is_empty() || !id.bytes().all(|byte| byte.is_ascii_digit()) {
        return None;
    }
    id.parse().ok()
}

#[async_trait]
impl SystemClient for WooCommerceClient {
    async fn write(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        let record = &write.record;
        if record.entity.as_str() != "product" {
            return Err(rejected(
                self.system(),
                record,
                format!("{} records are not synced to WooCommerce", record.entity),
            ));
        }
        let fields = ProductFields::from_write(self.system(), write)?;
        let target = match write.target_id.as_deref() {
            Some(id) => Some(Target::parse(id).ok_or_else(|| {
                rejected(
                    self.system(),
                    record,
                    format!("target id {id:?} is not <product> or <product>/<variation>"),
                )
            })?),
            // NOTE: the lookup finds simple and variable products. A variation whose id
            // fieldsync never learned is not found, so its create is rejected as a duplicate SKU.
            None => self.find_by_sku(record).await?.map(Target::Product),
        };
        let Some(target) = target else {
            return self.create(write, &fields).await;
        };
        match target {
            Target::Product(id) => {
                let body = fields.product_body(self.config.price_scale, false);
                self.put(record, &format!("products/{id}"), &body).await?;
            }
            Target::Variation { product, variation } => {
                let parent = fields.parent_body();
                if !parent.is_empty() {
                    self.put(record, &format!("products/{product}"), &parent).await?;
                }
                let body = fields.variation_body(self.config.price_scale);
                if !body.is_empty() {
                    self.put(record, &format!("products/{product}/variations/{variation}"), &body)
                        .await?;
                }
            }
        }
        Ok(WriteReceipt {
            target_id: Some(target.id()),
        })
    }

    async fn fetch(&self, notice: &Notice) -> Result<Vec<ChangeSet>, SystemError> {
        let Some(id) = product_id(&notice.resource) else {
            // Retrying cannot make the resource acceptable, so the notice is dropped here.
            tracing::warn!(
                security = true,
                resource = notice.resource,
                event_id = notice.event_id,
                "notice names a resource other than products/<id>; dropped without a request"
            );
            return Ok(Vec::new());
        };
        if notice.kind == NoticeKind::Deleted {
            return Ok(Vec::new());
        }
        let placeholder = RecordKey::new(self.config.integration.as_str(), notice.entity.clone(), id.to_string());
        let Some(product) = self.get(&placeholder, self.url(&format!("products/{id}"))?).await? else {
            return Ok(Vec::new());
        };
        let shared = product_fields(&product);

        if product.get("type").and_then(Wire::as_text) != Some("variable") {
            // The SKU is the record key. A product without one cannot be matched to an ERP item,
            // because its WooCommerce id could equal another item's SKU.
            let Some(key) = product.get("sku").and_then(Wire::as_key) else {
                tracing::info!(product_id = id, "product without SKU skipped");
                return Ok(Vec::new());
            };
            let mut fields = shared;
            fields.extend(stock_fields(&product));
            return Ok(vec![self.change(notice, key, id.to_string(), fields, &[&product])]);
        }

        let mut changes = Vec::new();
        for variation in self.variations(&placeholder, id).await? {
            let Some(variation_id) = variation.get("id").and_then(Wire::as_key) else {
                continue;
            };
            let Some(sku) = variation.get("sku").and_then(Wire::as_key) else {
                tracing::debug!(product_id = id, variation_id, "variation without SKU skipped");
                continue;
            };
            let mut fields = shared.clone();
            fields.extend(stock_fields(&variation));
            let external_id = format!("{id}/{variation_id}");
            changes.push(self.change(notice, sku, external_id, fields, &[&product, &variation]));
        }
        Ok(changes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(base_url: &str) -> WooCommerceConfig {
        WooCommerceConfig::new(
            "storefront",
            "demo",
            base_url,
            Secret::new("ck_test"),
            Secret::new("cs_test"),
        )
    }

    #[test]
    fn basic_auth_needs_https_outside_loopback() {
        assert!(WooCommerceClient::new(config("https://shop.example")).is_ok());
        assert!(WooCommerceClient::new(config("http://127.0.0.1:8080")).is_ok());
        assert!(WooCommerceClient::new(config("http://localhost:8080/")).is_ok());
        assert!(WooCommerceClient::new(config("http://shop.example")).is_err());
        assert!(WooCommerceClient::new(config("ftp://shop.example")).is_err());
    }

    #[test]
    fn only_product_resources_are_read() {
        assert_eq!(product_id("products/7000"), Some(7000));
        assert_eq!(product_id("/products/7000"), Some(7000));
        for forged in [
            "products/7000/../../users",
            "products/",
            "orders/1",
            "http://127.0.0.1:9/products/1",
            "products/1?x=y",
            "products/-1",
        ] {
            assert_eq!(product_id(forged), None, "{forged}");
        }
    }

    #[test]
    fn target_id_names_product_or_variation() {
        assert_eq!(Target::parse("7000"), Some(Target::Product(7000)));
        assert_eq!(
            Target::parse("7000/7002"),
            Some(Target::Variation {
                product: 7000,
                variation: 7002
            })
        );
        assert_eq!(Target::parse("abc"), None);
        assert_eq!(Target::parse("7000/7002").map(Target::id).as_deref(), Some("7000/7002"));
    }
}
