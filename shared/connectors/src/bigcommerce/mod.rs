//! Reads and writes BigCommerce catalog products through the v3 REST API.
//!
//! Requests go to `https://api.bigcommerce.com/stores/{store_hash}/v3/…` with the API account's
//! token in `X-Auth-Token`. BigCommerce webhooks are thin, so [`BigCommerceClient::fetch`] reads
//! the product a notice names (`GET catalog/products/{id}?include=variants,images`) and returns
//! one change set per variant SKU. A product without options has one variant, its base variant,
//! which carries the product's SKU. A change set's external id is `{product_id}:{variant_id}`,
//! which is what a write needs to find the variant again.
//!
//! Writes:
//! - A create first looks the SKU up (`GET catalog/products?sku=…`), so that a create retried
//!   after a lost response updates the product it made. Otherwise it posts a physical product
//!   with weight 0, hidden (`is_visible: false`) unless the write publishes it, and inventory
//!   tracked per product.
//! - An update reads the product for its variants, puts the product-level fields on the product,
//!   and the price on the product for a base variant or on the variant otherwise.
//! - Inventory goes through the inventory adjustments API at the configured location, as an
//!   absolute level by default. With [`InventoryMode::Relative`] and a write that carries the
//!   level the target had before, it sends the difference instead, so that sales the store made
//!   meanwhile are kept. A zero difference sends nothing.
//!
//! Every response reports the store's remaining quota. Once a response reports none left, the
//! next request waits for the reset, at most [`BigCommerceConfig::max_rate_wait`]. A 429 becomes
//! [`SystemError::RateLimited`] with `X-Rate-Limit-Time-Reset-Ms` as the time to retry.

mod fields;
mod rate;

use std::time::{Duration, Instant};

use async_trait::async_trait;
use fieldsync_core::formats::bigcommerce::PRODUCT_RESOURCE_PREFIX;
use fieldsync_core::ingest::parse_offset_time;
use fieldsync_core::ports::{SystemClient, SystemError, WriteReceipt};
use fieldsync_core::{ChangeSet, FieldName, Notice, NoticeKind, OutboundWrite, RecordKey, SystemId, Wire, WriteKind};
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{Method, StatusCode};

use crate::http::{build_client, rejected, status_error, unavailable, ConnectorError, UnexpectedResponse};
use crate::json::string;
use fields::{boolean, images, integer, money, render, variant_fields, Body, WriteFields};
use fieldsync_core::{FieldValue, Secret};
use rate::RateBudget;

/// The adjustment kind inventory writes use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InventoryMode {
    /// Sets the level (`PUT inventory/adjustments/absolute`).
    #[default]
    Absolute,
    /// Sends the difference to the level the target had before
    /// (`POST inventory/adjustments/relative`) when the write carries that level, and sets the
    /// level otherwise.
    Relative,
}

/// Settings of a [`BigCommerceClient`].
#[derive(Debug, Clone)]
pub struct BigCommerceConfig {
    /// The system name used in errors and change sets, as in the rules file.
    pub system: SystemId,
    /// The integration name change sets carry.
    pub integration: String,
    /// The store's API root up to and including the store hash:
    /// `https://api.bigcommerce.com/stores/{store_hash}`.
    pub base_url: String,
    /// The API account's access token, sent as `X-Auth-Token`.
    pub access_token: Secret,
    /// The inventory location that adjustments apply to (1 is a store's default location).
    pub inventory_location_id: u64,
    pub inventory_mode: InventoryMode,
    /// The maximum wait for the quota to refill before a request.
    pub max_rate_wait: Duration,
    pub request_timeout: Duration,
}

impl BigCommerceConfig {
    /// Builds a configuration with inventory location 1, absolute inventory writes, a 30 s cap
    /// on quota waits and a 10 s request timeout.
    pub fn new(
        system: impl Into<SystemId>,
        integration: impl Into<String>,
        base_url: impl Into<String>,
        access_token: Secret,
    ) -> Self {
        Self {
            system: system.into(),
            integration: integration.into(),
            base_url: base_url.into(),
            access_token,
            inventory_location_id: 1,
            inventory_mode: InventoryMode::Absolute,
            max_rate_wait: Duration::from_secs(30),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A BigCommerce v3 catalog client for products.
#[derive(Debug)]
pub struct BigCommerceClient {
    config: BigCommerceConfig,
    /// `{base_url}/v3/`.
    base: reqwest::Url,
    http: reqwest::Client,
    budget: RateBudget,
}

/// A successful or 404 response, read in full.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
}

/// The product a write goes to, and the variant of the record's SKU.
struct Target {
    product_id: String,
    variant_id: String,
    /// Whether the variant is the product's base variant, whose price is the product's.
    is_base: bool,
    /// The product's image URLs in sort order.
    images: Vec<String>,
}

impl BigCommerceClient {
    /// Builds a client. Fails if the base URL is not an absolute http(s) URL.
    pub fn new(config: BigCommerceConfig) -> Result<Self, ConnectorError> {
        let root = format!("{}/v3/", config.base_url.trim_end_matches('/'));
        let (base, http) = build_client(&root, config.request_timeout)?;
        Ok(Self {
            config,
            base,
            http,
            budget: RateBudget::default(),
        })
    }

    fn system(&self) -> &SystemId {
        &self.config.system
    }

    fn url(&self, relative: &str) -> Result<reqwest::Url, SystemError> {
        self.base
            .join(relative)
            .map_err(|error| unavailable(self.system(), UnexpectedResponse(format!("bad resource path: {error}"))))
    }

    /// Returns the product id of a notice's resource when it is `catalog/products/<digits>`, so
    /// that a forged notice cannot send the token to another path or host.
    fn own_product_id(resource: &str) -> Option<&str> {
        let id = resource.strip_prefix(PRODUCT_RESOURCE_PREFIX)?;
        let digits = !id.is_empty() && id.bytes().all(|byte| byte.is_ascii_digit());
        digits.then_some(id)
    }

    /// Sends one request after any wait the reported quota requires, and reads the whole response.
    async fn send(
        &self,
        record: &RecordKey,
        method: Method,
        url: reqwest::Url,
        body: Option<String>,
    ) -> Result<Reply, SystemError> {
        let wait = self
            .budget
            .wait_before_request(Instant::now(), self.config.max_rate_wait);
        if !wait.is_zero() {
            tracing::debug!(record = %record, wait_ms = wait.as_millis(), "BigCommerce quota used up; waiting for its reset");
            tokio::time::sleep(wait).await;
        }

        let mut request = self
            .http
            .request(method, url)
            .header("X-Auth-Token", self.config.access_token.expose())
            .header(ACCEPT, "application/json");
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|error| unavailable(self.system(), error))?;

        let status = response.status();
        let headers = response.headers().clone();
        self.budget.observe(&headers, Instant::now());
        let body = response
            .bytes()
            .await
            .map_err(|error| unavailable(self.system(), error))?
            .to_vec();
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(Reply { status, body });
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            return Err(SystemError::RateLimited {
                system: self.system().clone(),
                retry_after: rate::reset_after(&headers),
            });
        }
        Err(status_error(
            self.system(),
            record,
            status,
            &headers,
            error_message(&body),
        ))
    }

    /// Reads a product with its variants and images, or `None` when it does not exist.
    async fn get_product(&self, record: &RecordKey, product_id: &str) -> Result<Option<Wire>, SystemError> {
        let mut url = self.url(&format!("{PRODUCT_RESOURCE_PREFIX}{product_id}"))?;
        url.query_pairs_mut().append_pair("include", "variants,images");
        let reply = self.send(record, Method::GET, url, None).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.data(&reply.body).map(Some)
    }

    /// Finds the product that has a variant with `sku`.
    async fn find_by_sku(&self, record: &RecordKey, sku: &str) -> Result<Option<Wire>, SystemError> {
        let mut url = self.url("catalog/products")?;
        url.query_pairs_mut()
            .append_pair("sku", sku)
            .append_pair("include", "variants,images");
        let reply = self.send(record, Method::GET, url, None).await?;
        let data = self.data(&reply.body)?;
        Ok(data.items().first().cloned())
    }

    /// Reads the `data` member of a response envelope.
    fn data(&self, body: &[u8]) -> Result<Wire, SystemError> {
        let wire = Wire::parse(body)
            .map_err(|error| unavailable(self.system(), UnexpectedResponse(format!("body is not JSON: {error}"))))?;
        wire.get("data")
            .cloned()
            .ok_or_else(|| unavailable(self.system(), UnexpectedResponse("response has no data member".into())))
    }

    /// Turns a product into one change set per variant with a SKU.
    fn changes(&self, notice: &Notice, product: &Wire) -> Vec<ChangeSet> {
        let Some(product_id) = product.get("id").and_then(Wire::as_key) else {
            return Vec::new();
        };
        // A product's modification time orders its values unless the notice is newer, because
        // BigCommerce does not change `date_modified` for every inventory change.
        let modified = product
            .get("date_modified")
            .and_then(Wire::as_text)
            .and_then(parse_offset_time);
        let occurred_at = modified.map_or(notice.occurred_at, |modified| modified.max(notice.occurred_at));
        let Some(Wire::List(variants)) = product.get("variants") else {
            return Vec::new();
        };
        variants
            .iter()
            .filter_map(|variant| {
                let sku = variant
                    .get("sku")
                    .and_then(Wire::as_text)
                    .filter(|sku| !sku.is_empty())?;
                let variant_id = variant.get("id").and_then(Wire::as_key)?;
                Some(ChangeSet {
                    record: RecordKey::new(self.config.integration.as_str(), notice.entity.clone(), sku),
                    source: self.system().clone(),
                    event_id: notice.event_id.clone(),
                    occurred_at,
                    received_at: notice.received_at,
                    external_id: Some(format!("{product_id}:{variant_id}")),
                    fields: variant_fields(product, variant),
                })
            })
            .collect()
    }

    /// Finds the write's product and variant: by the target id when the write has one, else by
    /// SKU. `None` when neither exists.
    async fn find_target(&self, write: &OutboundWrite) -> Result<Option<Target>, SystemError> {
        let record = &write.record;
        let product = match write.target_id.as_deref().and_then(|id| id.split(':').next()) {
            Some(product_id) if Self::own_product_id(&format!("{PRODUCT_RESOURCE_PREFIX}{product_id}")).is_some() => {
                self.get_product(record, product_id).await?
            }
            _ => self.find_by_sku(record, &record.key).await?,
        };
        Ok(product.and_then(|product| target_of(&product, &record.key)))
    }

    async fn create(&self, write: &OutboundWrite, fields: &WriteFields) -> Result<Target, SystemError> {
        let record = &write.record;
        let mut body = Body::new();
        fields.product_members(&mut body);
        body.entry("name").or_insert_with(|| string(&record.key));
        body.insert("type", string("physical"));
        body.insert("sku", string(&record.key));
        body.insert("price", money(&fields.price.unwrap_or_default()));
        body.insert("weight", integer(0));
        body.insert("is_visible", boolean(fields.published.unwrap_or(false)));
        body.insert("inventory_tracking", string("product"));
        if let Some(urls) = &fields.images {
            body.insert("images", images(urls));
        }
        let url = self.url("catalog/products")?;
        let reply = self.send(record, Method::POST, url, Some(render(&body))).await?;
        let product = self.data(&reply.body)?;
        target_of(&product, &record.key).ok_or_else(|| {
            unavailable(
                self.system(),
                UnexpectedResponse("created product has no variant".into()),
            )
        })
    }

    async fn update(&self, write: &OutboundWrite, fields: &WriteFields, target: &Target) -> Result<(), SystemError> {
        let record = &write.record;
        // NOTE: images are written only with a create. An update accepts the list the product
        // already has, which a create retried after a lost response sends, and rejects any other.
        if fields.images.as_ref().is_some_and(|urls| *urls != target.images) {
            return Err(rejected(
                self.system(),
                record,
                "images can be written to a BigCommerce product only when it is created",
            ));
        }
        let mut body = Body::new();
        fields.product_members(&mut body);
        let variant_price = match fields.price {
            Some(price) if target.is_base => {
                body.insert("price", money(&price));
                None
            }
            other => other,
        };
        if !body.is_empty() {
            let url = self.url(&format!("{PRODUCT_RESOURCE_PREFIX}{}", target.product_id))?;
            let reply = self.send(record, Method::PUT, url, Some(render(&body))).await?;
            self.require_found(record, &reply, "product")?;
        }
        if let Some(price) = variant_price {
            let mut body = Body::new();
            body.insert("price", money(&price));
            let path = format!(
                "{PRODUCT_RESOURCE_PREFIX}{}/variants/{}",
                target.product_id, target.variant_id
            );
            let reply = self
                .send(record, Method::PUT, self.url(&path)?, Some(render(&body)))
                .await?;
            self.require_found(record, &reply, "variant")?;
        }
        Ok(())
    }

    /// Writes an inventory level through the adjustments API, as a difference when the mode and
    /// the write allow it.
    async fn write_inventory(&self, write: &OutboundWrite, target: &Target, level: i64) -> Result<(), SystemError> {
        let previous = match write.previous.get(&FieldName::new("inventory")) {
            Some(FieldValue::Quantity(previous)) if write.kind == WriteKind::Update => Some(*previous),
            _ => None,
        };
        let (path, method, quantity) = match (self.config.inventory_mode, previous) {
            (InventoryMode::Relative, Some(previous)) => {
                let delta = level - previous;
                if delta == 0 {
                    return Ok(());
                }
                ("inventory/adjustments/relative", Method::POST, delta)
            }
            _ => ("inventory/adjustments/absolute", Method::PUT, level),
        };
        let item = format!(
            r#"{{"location_id":{},"variant_id":{},"quantity":{quantity}}}"#,
            self.config.inventory_location_id, target.variant_id
        );
        let body = format!(r#"{{"reason":"fieldsync","items":[{item}]}}"#);
        let reply = self.send(&write.record, method, self.url(path)?, Some(body)).await?;
        self.require_found(&write.record, &reply, "inventory adjustment route")
    }

    /// Rejects a write whose request got 404, which `send` returns as a reply for reads.
    fn require_found(&self, record: &RecordKey, reply: &Reply, resource: &str) -> Result<(), SystemError> {
        if reply.status == StatusCode::NOT_FOUND {
            return Err(rejected(
                self.system(),
                record,
                format!("the BigCommerce {resource} was not found (HTTP 404)"),
            ));
        }
        Ok(())
    }
}

/// Finds the variant with `sku` in a product read with its variants.
fn target_of(product: &Wire, sku: &str) -> Option<Target> {
    let product_id = product.get("id").and_then(Wire::as_key)?;
    let base = product.get("base_variant_id").and_then(Wire::as_key);
    let variant = product
        .get("variants")?
        .items()
        .iter()
        .find(|variant| variant.get("sku").and_then(Wire::as_text) == Some(sku))?;
    let variant_id = variant.get("id").and_then(Wire::as_key)?;
    let images = match variant_fields(product, variant).remove(&FieldName::new("images")) {
        Some(Wire::List(urls)) => urls.iter().filter_map(|url| url.as_text().map(str::to_owned)).collect(),
        _ => Vec::new(),
    };
    Some(Target {
        is_base: base.as_deref() == Some(variant_id.as_str()),
        product_id,
        variant_id,
        images,
    })
}

/// Reads a BigCommerce error body, `{"status":…,"title":…,"errors":{…}}`.
fn error_message(body: &[u8]) -> Option<String> {
    let wire = Wire::parse(body).ok()?;
    let title = wire.get("title").and_then(Wire::as_text)?;
    match wire.get("errors").and_then(crate::json::wire_text) {
        Some(errors) if errors != "{}" && errors != "[]" => Some(format!("{title} {errors}")),
        _ => Some(title.to_owned()),
    }
}

#[async_trait]
impl SystemClient for BigCommerceClient {
    async fn write(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        if write.record.entity.as_str() != "product" {
            return Err(rejected(
                self.system(),
                &write.record,
                format!("{} records are not synced to BigCommerce", write.record.entity),
            ));
        }
        let fields = WriteFields::from_write(self.system(), write)?;
        let target = match self.find_target(write).await? {
            Some(target) => {
                self.update(write, &fields, &target).await?;
                target
            }
            None if write.kind == WriteKind::Create => self.create(write, &fields).await?,
            None => {
                return Err(rejected(
                    self.system(),
                    &write.record,
                    format!("no BigCommerce product has SKU {}", write.record.key),
                ))
            }
        };
        if let Some(level) = fields.inventory {
            self.write_inventory(write, &target, level).await?;
        }
        Ok(WriteReceipt {
            target_id: Some(format!("{}:{}", target.product_id, target.variant_id)),
        })
    }

    async fn fetch(&self, notice: &Notice) -> Result<Vec<ChangeSet>, SystemError> {
        let Some(product_id) = Self::own_product_id(&notice.resource) else {
            // Retrying cannot make the resource acceptable, so the notice is dropped here.
            tracing::warn!(
                security = true,
                resource = notice.resource,
                event_id = notice.event_id,
                "notice names a resource that is not a catalog product; dropped without a request"
            );
            return Ok(Vec::new());
        };
        if notice.kind == NoticeKind::Deleted {
            return Ok(Vec::new());
        }
        let placeholder = RecordKey::new(self.config.integration.as_str(), notice.entity.clone(), "?");
        let product = self.get_product(&placeholder, product_id).await?;
        Ok(product
            .map(|product| self.changes(notice, &product))
            .unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_catalog_product_resources_are_read() {
        assert_eq!(BigCommerceClient::own_product_id("catalog/products/206"), Some("206"));
        for forged in [
            "catalog/products/",
            "catalog/products/206/../../customers",
            "catalog/products/206?include=x",
            "https://127.0.0.1/catalog/products/206",
            "/catalog/products/206",
            "orders/5001",
        ] {
            assert_eq!(BigCommerceClient::own_product_id(forged), None, "{forged}");
        }
    }

    #[test]
    fn base_variant_is_recognized() {
        let product = Wire::parse(br#"{"id":206,"base_variant_id":400,"variants":[{"id":400,"sku":"MUG"}]}"#).unwrap();
        let target = target_of(&product, "MUG").unwrap();
        assert!(target.is_base);
        assert_eq!((target.product_id.as_str(), target.variant_id.as_str()), ("206", "400"));
        let options = Wire::parse(
            br#"{"id":207,"base_variant_id":null,"variants":[{"id":401,"sku":"TEE-S"},{"id":402,"sku":"TEE-M"}]}"#,
        )
        .unwrap();
        let target = target_of(&options, "TEE-M").unwrap();
        assert!(!target.is_base);
        assert_eq!(target.variant_id, "402");
        assert!(target_of(&options, "TEE-L").is_none());
    }

    #[test]
    fn error_body_gives_title_and_errors() {
        let body =
            br#"{"status":422,"title":"JSON data is missing or invalid","type":"x","errors":{"price":"required"}}"#;
        assert_eq!(
            error_message(body).as_deref(),
            Some(r#"JSON data is missing or invalid {"price":"required"}"#)
        );
    }
}
