//! Writes products to a Shopify store through the Admin GraphQL API.
//!
//! Canonical fields and where they go:
//!
//! | field | Shopify |
//! | --- | --- |
//! | `name` | `title` |
//! | `description` | `descriptionHtml` |
//! | `handle` | `handle` |
//! | `published` (bool) | `status` `ACTIVE` / `DRAFT` |
//! | `meta_title`, `meta_description` | the `global.title_tag` / `global.description_tag` metafields: `seo` of `productSet` on a create, `metafieldsSet` on an update |
//! | `images` (list of URLs) | `files` of `productSet` |
//! | `price` (money) | the variant's `price`, as a decimal string |
//! | `inventory` (quantity) | `inventorySetQuantities`, `available` at the configured location |
//! | `customer_prices` (JSON) | metafield `fieldsync.customer_prices` of type `json` |
//!
//! `inventory_levels/update` notices are read with the `inventoryItem` query, which gives the
//! SKU and the available quantity at the configured location.
//!
//! A create is one `productSet` upsert identified by the custom id `fieldsync.key` = the
//! record's external id, so a retried create updates the product the first attempt made. The
//! store needs a metafield definition `fieldsync.key` of type `id` for that lookup.

mod fields;
mod graphql;
mod webhooks;

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use fieldsync_core::ports::{SystemClient, SystemError, WriteReceipt};
use fieldsync_core::{ChangeSet, FieldName, Notice, NoticeKind, OutboundWrite, RecordKey, SystemId, Wire, WriteKind};
use serde_json::{json, Value};

use crate::documents::{document_body, document_method, send_document, Dialect};
use crate::http::{build_client, rejected, status_error, unavailable, ConnectorError, UnexpectedResponse};
use fields::ProductFields;
use fieldsync_core::Secret;
use graphql::{
    metafield_inputs, numeric_id, product_level_input, product_set_input, reject_user_errors, search_value,
    top_level_error, user_errors, FIND_VARIANT, INVENTORY_ITEM, INVENTORY_SET, METAFIELDS_SET, PRODUCT_SET,
    PRODUCT_UPDATE, VARIANTS_BULK_UPDATE,
};
pub use webhooks::Registration;

/// How many times an inventory write re-reads the quantity after a stale compare-and-set.
const INVENTORY_ATTEMPTS: u32 = 3;

/// Settings of a [`ShopifyClient`].
#[derive(Debug, Clone)]
pub struct ShopifyConfig {
    /// The system name used in errors, as in the rules file.
    pub system: SystemId,
    /// The shop's base URL, such as `https://example.myshopify.com`.
    pub base_url: String,
    pub access_token: Secret,
    /// The Admin API version in the endpoint path, such as `2025-07`.
    pub api_version: String,
    /// The location whose `available` quantity `inventory` writes, as a global id.
    pub location_id: String,
    pub request_timeout: Duration,
}

impl ShopifyConfig {
    /// Builds a configuration with API version `2025-07`, location `gid://shopify/Location/1`
    /// and a 10 s request timeout.
    pub fn new(system: impl Into<SystemId>, base_url: impl Into<String>, access_token: Secret) -> Self {
        Self {
            system: system.into(),
            base_url: base_url.into(),
            access_token,
            api_version: "2025-07".to_owned(),
            location_id: "gid://shopify/Location/1".to_owned(),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A Shopify Admin GraphQL client that implements [`SystemClient`] for products.
#[derive(Debug, Clone)]
pub struct ShopifyClient {
    config: ShopifyConfig,
    endpoint: reqwest::Url,
    http: reqwest::Client,
}

/// The ids of the variant a write targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct VariantIds {
    product: u64,
    variant: u64,
}

impl VariantIds {
    fn parse(target_id: &str) -> Option<Self> {
        let (product, variant) = target_id.split_once('/')?;
        Some(Self {
            product: product.parse().ok()?,
            variant: variant.parse().ok()?,
        })
    }

    fn receipt(self) -> WriteReceipt {
        WriteReceipt {
            target_id: Some(format!("{}/{}", self.product, self.variant)),
        }
    }
}

/// A variant as read before an inventory write.
#[derive(Debug, Clone)]
struct VariantState {
    ids: VariantIds,
    inventory_item_id: String,
    quantity: i64,
}

impl ShopifyClient {
    /// Builds a client. Fails if the base URL is not an absolute http(s) URL.
    pub fn new(config: ShopifyConfig) -> Result<Self, ConnectorError> {
        let (base, http) = build_client(&config.base_url, config.request_timeout)?;
        let endpoint = base
            .join(&format!("admin/api/{}/graphql.json", config.api_version))
            .map_err(|_| ConnectorError::InvalidBaseUrl {
                url: config.base_url.clone(),
            })?;
        Ok(Self { config, endpoint, http })
    }

    fn system(&self) -> &SystemId {
        &self.config.system
    }

    /// Sends one GraphQL request and returns its `data`, classifying every failure.
    async fn graphql(&self, record: &RecordKey, query: &str, variables: Value) -> Result<Value, SystemError> {
        let response = self
            .http
            .post(self.endpoint.clone())
            .header("X-Shopify-Access-Token", self.config.access_token.expose())
            .json(&json!({"query": query, "variables": variables}))
            .send()
            .await
            .map_err(|error| unavailable(self.system(), error))?;

        let status = response.status();
        let headers = response.headers().clone();
        let body: Option<Value> = response.json().await.ok();
        if !status.is_success() {
            let message = body
                .as_ref()
                .and_then(|body| body.get("errors"))
                .map(|errors| errors.as_str().map_or_else(|| errors.to_string(), str::to_owned));
            return Err(status_error(self.system(), record, status, &headers, message));
        }
        let body = body.ok_or_else(|| unavailable(self.system(), UnexpectedResponse("body is not JSON".to_owned())))?;
        if let Some(error) = top_level_error(self.system(), record, &body) {
            return Err(error);
        }
        match body.get("data") {
            Some(data) if data.is_object() => Ok(data.clone()),
            _ => Err(unavailable(
                self.system(),
                UnexpectedResponse("response has no data".to_owned()),
            )),
        }
    }

    /// Writes a customer, quote, order, fulfillment or return through the REST-shaped API: a PUT
    /// of `<collection>/<id>.json` when the storefront id is known, else a POST that upserts by
    /// external id.
    async fn write_document(&self, write: &OutboundWrite, collection: &str) -> Result<WriteReceipt, SystemError> {
        let (method, external_id) = document_method(write);
        let body = document_body(self.system(), write, Dialect::Storefront, external_id.as_deref())?;
        let (method, file) = match &write.target_id {
            Some(id) => (reqwest::Method::PUT, format!("{collection}/{id}.json")),
            None => (method, format!("{collection}.json")),
        };
        let url = self.endpoint.join(&file).map_err(|_| {
            unavailable(
                self.system(),
                UnexpectedResponse(format!("invalid document path {file}")),
            )
        })?;
        let request = self
            .http
            .request(method, url)
            .header("X-Shopify-Access-Token", self.config.access_token.expose())
            .header("Content-Type", "application/json")
            .body(body);
        send_document(self.system(), write, request, "id").await
    }

    async fn create(&self, write: &OutboundWrite, fields: &ProductFields) -> Result<WriteReceipt, SystemError> {
        let record = &write.record;
        let external_id = record.external_id();
        let variables = json!({
            "identifier": {"customId": {"namespace": graphql::KEY_NAMESPACE, "key": graphql::KEY_KEY, "value": external_id}},
            "input": product_set_input(fields, &external_id, &record.key, &self.config.location_id),
        });
        let data = self.graphql(record, PRODUCT_SET, variables).await?;
        reject_user_errors(self.system(), record, &data, "productSet")?;

        let product = &data["productSet"]["product"];
        let product_id = product["id"].as_str().and_then(numeric_id);
        let variant_id = product["variants"]["nodes"].as_array().and_then(|nodes| {
            nodes
                .iter()
                .find(|node| node["sku"].as_str() == Some(record.key.as_str()))
                .and_then(|node| node["id"].as_str())
                .and_then(numeric_id)
        });
        match (product_id, variant_id) {
            (Some(product), Some(variant)) => {
                tracing::info!(system = %self.system(), record = %record, product, variant, "product upserted");
                Ok(VariantIds { product, variant }.receipt())
            }
            _ => Err(unavailable(
                self.system(),
                UnexpectedResponse("productSet returned no product or no variant with the SKU".to_owned()),
            )),
        }
    }

    async fn update(&self, write: &OutboundWrite, fields: &ProductFields) -> Result<WriteReceipt, SystemError> {
        let record = &write.record;
        let mut known_state = None;
        let ids = match write.target_id.as_deref() {
            Some(target_id) => VariantIds::parse(target_id).ok_or_else(|| {
                rejected(
                    self.system(),
                    record,
                    format!("target id {target_id:?} is not <product id>/<variant id>"),
                )
            })?,
            None => {
                let state = self
                    .find_variant(record, &format!("sku:{}", search_value(&record.key)))
                    .await?;
                let ids = state.ids;
                known_state = Some(state);
                ids
            }
        };

        let product_gid = format!("gid://shopify/Product/{}", ids.product);
        if fields.has_product_update() {
            let mut product = product_level_input(fields);
            product.remove("seo");
            product.remove("metafields");
            product.insert("id".to_owned(), json!(product_gid));
            let data = self
                .graphql(record, PRODUCT_UPDATE, json!({"product": product}))
                .await?;
            reject_user_errors(self.system(), record, &data, "productUpdate")?;
        }
        if fields.has_metafields() {
            let metafields = metafield_inputs(fields, &product_gid);
            let data = self
                .graphql(record, METAFIELDS_SET, json!({"metafields": metafields}))
                .await?;
            reject_user_errors(self.system(), record, &data, "metafieldsSet")?;
        }
        if let Some(images) = &fields.images {
            self.set_images(record, ids, images).await?;
        }
        if let Some(price) = fields.price {
            let variables = json!({
                "productId": format!("gid://shopify/Product/{}", ids.product),
                "variants": [{"id": format!("gid://shopify/ProductVariant/{}", ids.variant), "price": price.to_string()}],
            });
            let data = self.graphql(record, VARIANTS_BULK_UPDATE, variables).await?;
            reject_user_errors(self.system(), record, &data, "productVariantsBulkUpdate")?;
        }
        if let Some(quantity) = fields.inventory {
            self.set_inventory(record, ids, quantity, known_state).await?;
        }
        tracing::info!(system = %self.system(), record = %record, fields = write.fields.len(), "product updated");
        Ok(ids.receipt())
    }

    /// Replaces the product's images through `productSet` identified by the product id, which
    /// leaves the fields it does not list unchanged.
    async fn set_images(&self, record: &RecordKey, ids: VariantIds, images: &[String]) -> Result<(), SystemError> {
        let files: Vec<Value> = images
            .iter()
            .map(|url| json!({"originalSource": url, "contentType": "IMAGE"}))
            .collect();
        let variables = json!({
            "identifier": {"id": format!("gid://shopify/Product/{}", ids.product)},
            "input": {"files": files},
        });
        let data = self.graphql(record, PRODUCT_SET, variables).await?;
        reject_user_errors(self.system(), record, &data, "productSet")
    }

    /// Sets the available quantity with compare-and-set, reading the current quantity first.
    /// A stale compare re-reads and tries again, because the write carries an absolute value.
    async fn set_inventory(
        &self,
        record: &RecordKey,
        ids: VariantIds,
        quantity: i64,
        mut known_state: Option<VariantState>,
    ) -> Result<(), SystemError> {
        for attempt in 1..=INVENTORY_ATTEMPTS {
            let state = match known_state.take() {
                Some(state) => state,
                None => self.find_variant(record, &format!("id:{}", ids.variant)).await?,
            };
            if state.quantity == quantity {
                return Ok(());
            }
            let variables = json!({"input": {
                "name": "available",
                "reason": "correction",
                "referenceDocumentUri": format!("fieldsync://record/{}", record.external_id()),
                "quantities": [{
                    "inventoryItemId": state.inventory_item_id,
                    "locationId": self.config.location_id,
                    "quantity": quantity,
                    "compareQuantity": state.quantity,
                }],
            }});
            let data = self.graphql(record, INVENTORY_SET, variables).await?;
            let errors = user_errors(&data, "inventorySetQuantities");
            if errors.is_empty() {
                return Ok(());
            }
            if errors
                .iter()
                .any(|error| error.code.as_deref() == Some("COMPARE_QUANTITY_STALE"))
            {
                tracing::debug!(system = %self.system(), record = %record, attempt, "inventory changed since read, retrying");
                continue;
            }
            reject_user_errors(self.system(), record, &data, "inventorySetQuantities")?;
        }
        tracing::warn!(system = %self.system(), record = %record, attempts = INVENTORY_ATTEMPTS, "inventory kept changing during the write");
        Err(SystemError::Conflict {
            system: self.system().clone(),
            record: record.clone(),
        })
    }

    /// Finds one variant with a search query such as `sku:"MUG-RED"` or `id:12`.
    async fn find_variant(&self, record: &RecordKey, query: &str) -> Result<VariantState, SystemError> {
        let data = self.graphql(record, FIND_VARIANT, json!({"query": query})).await?;
        let node = data["productVariants"]["nodes"]
            .as_array()
            .and_then(|nodes| nodes.first())
            .ok_or_else(|| {
                rejected(
                    self.system(),
                    record,
                    format!("no variant matches {query} in the storefront"),
                )
            })?;
        let product = node["product"]["id"].as_str().and_then(numeric_id);
        let variant = node["id"].as_str().and_then(numeric_id);
        let inventory_item_id = node["inventoryItem"]["id"].as_str();
        let quantity = node["inventoryQuantity"].as_i64();
        match (product, variant, inventory_item_id, quantity) {
            (Some(product), Some(variant), Some(item), Some(quantity)) => Ok(VariantState {
                ids: VariantIds { product, variant },
                inventory_item_id: item.to_owned(),
                quantity,
            }),
            _ => Err(unavailable(
                self.system(),
                UnexpectedResponse("productVariants node lacks ids or quantity".to_owned()),
            )),
        }
    }
}

#[async_trait]
impl SystemClient for ShopifyClient {
    async fn write(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        let collection = match write.record.entity.as_str() {
            "customer" => Some("customers"),
            "quote" => Some("draft_orders"),
            "order" => Some("orders"),
            "shipment" => Some("fulfillments"),
            "return" => Some("returns"),
            _ => None,
        };
        if let Some(collection) = collection {
            return self.write_document(write, collection).await;
        }
        let fields = ProductFields::from_write(self.system(), write)?;
        let result = match write.kind {
            WriteKind::Create => self.create(write, &fields).await,
            WriteKind::Update => self.update(write, &fields).await,
        };
        if let Err(error) = &result {
            tracing::debug!(system = %self.system(), record = %write.record, error = %error, "storefront write failed");
        }
        result
    }

    async fn fetch(&self, notice: &Notice) -> Result<Vec<ChangeSet>, SystemError> {
        let item_id = notice
            .resource
            .strip_prefix("inventory_items/")
            .filter(|id| !id.is_empty() && id.bytes().all(|byte| byte.is_ascii_digit()));
        let Some(item_id) = item_id else {
            // Retrying cannot make the resource readable, so the notice is dropped here.
            tracing::warn!(
                system = %self.system(),
                resource = notice.resource,
                event_id = notice.event_id,
                "notice names no inventory item; dropped without a request"
            );
            return Ok(Vec::new());
        };
        if notice.kind == NoticeKind::Deleted {
            return Ok(Vec::new());
        }
        let placeholder = RecordKey::new(notice.integration.as_str(), notice.entity.clone(), "?");
        let variables = json!({
            "id": format!("gid://shopify/InventoryItem/{item_id}"),
            "locationId": self.config.location_id,
        });
        let data = self.graphql(&placeholder, INVENTORY_ITEM, variables).await?;
        Ok(inventory_change(notice, &data).into_iter().collect())
    }
}

/// Reads the `inventoryItem` response into a change of the variant's available quantity at the
/// configured location. An item that is gone, has no SKU or no level there gives nothing.
fn inventory_change(notice: &Notice, data: &Value) -> Option<ChangeSet> {
    let item = data.get("inventoryItem").filter(|item| !item.is_null())?;
    let sku = item["variant"]["sku"]
        .as_str()
        .or_else(|| item["sku"].as_str())
        .filter(|sku| !sku.is_empty())?;
    let available = item["inventoryLevel"]["quantities"]
        .as_array()?
        .iter()
        .find(|quantity| quantity["name"] == "available")?["quantity"]
        .as_i64()?;
    let product = item["variant"]["product"]["id"].as_str().and_then(numeric_id);
    let variant = item["variant"]["id"].as_str().and_then(numeric_id);
    let external_id = product
        .zip(variant)
        .map(|(product, variant)| format!("{product}/{variant}"));
    Some(ChangeSet {
        record: RecordKey::new(notice.integration.as_str(), notice.entity.clone(), sku),
        source: notice.source.clone(),
        event_id: notice.event_id.clone(),
        occurred_at: notice.occurred_at,
        received_at: notice.received_at,
        external_id,
        fields: BTreeMap::from([(FieldName::new("inventory"), Wire::Number(available.to_string()))]),
    })
}
