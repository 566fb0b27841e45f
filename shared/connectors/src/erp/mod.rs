//! Writes items and sales orders to the ERP's REST API.
//!
//! Products (`record.entity` other than `order`) are items, addressed by the record key as item
//! number: `name` → `description`, `price` → `unit_price`, `inventory`, `customer_prices`,
//! `meta_title`, `meta_description`. The client reads the item's `ETag` and sends the PATCH with
//! `If-Match`. A 412 makes it read again and retry, up to
//! [`ErpClientConfig::max_conflict_attempts`] attempts. Retrying is safe because writes carry
//! absolute values. Items are not created through the API,
//! so a create of a missing item is rejected.
//!
//! Orders (`record.entity == "order"`): `number` → `reference`, `email` → `customer_email`,
//! `total`, `financial_status`, `note`, `lines`, sent to `POST /api/v1/sales-orders`, which
//! upserts by `external_id` = the record's external id for both creates and updates. A
//! redelivered write therefore updates the order the first one made.

mod body;

use std::time::Duration;

use async_trait::async_trait;
use fieldsync_core::ports::{SystemClient, SystemError, WriteReceipt};
use fieldsync_core::{OutboundWrite, RecordKey, SystemId};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, ETAG, IF_MATCH};
use reqwest::{Response, StatusCode};
use serde_json::Value;

use crate::documents::{document_body, document_method, send_document, Dialect};
use crate::http::{build_client, rejected, status_error, unavailable, ConnectorError, UnexpectedResponse};
use body::{item_body, order_body, to_bytes};
use fieldsync_core::Secret;

/// Settings of an [`ErpClient`].
#[derive(Debug, Clone)]
pub struct ErpClientConfig {
    /// The system name used in errors, as in the rules file.
    pub system: SystemId,
    /// The ERP's base URL; the API is under `/api/v1`.
    pub base_url: String,
    pub api_token: Secret,
    /// Item writes attempted per call when the item keeps changing (HTTP 412).
    pub max_conflict_attempts: u32,
    pub request_timeout: Duration,
}

impl ErpClientConfig {
    /// Builds a configuration with 3 conflict attempts and a 10 s request timeout.
    pub fn new(system: impl Into<SystemId>, base_url: impl Into<String>, api_token: Secret) -> Self {
        Self {
            system: system.into(),
            base_url: base_url.into(),
            api_token,
            max_conflict_attempts: 3,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// An ERP REST client that implements [`SystemClient`] for items and sales orders.
#[derive(Debug, Clone)]
pub struct ErpClient {
    config: ErpClientConfig,
    base: reqwest::Url,
    http: reqwest::Client,
}

impl ErpClient {
    /// Builds a client. Fails if the base URL is not an absolute http(s) URL.
    pub fn new(config: ErpClientConfig) -> Result<Self, ConnectorError> {
        let (base, http) = build_client(&config.base_url, config.request_timeout)?;
        if base.cannot_be_a_base() {
            return Err(ConnectorError::InvalidBaseUrl { url: config.base_url });
        }
        Ok(Self { config, base, http })
    }

    fn system(&self) -> &SystemId {
        &self.config.system
    }

    /// Builds `<base>/api/v1/<segments…>`, percent-encoding each segment.
    fn url(&self, segments: &[&str]) -> reqwest::Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(["api", "v1"]).extend(segments);
        }
        url
    }

    fn request(&self, method: reqwest::Method, url: reqwest::Url) -> reqwest::RequestBuilder {
        self.http
            .request(method, url)
            .header(AUTHORIZATION, format!("Bearer {}", self.config.api_token.expose()))
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Response, SystemError> {
        request.send().await.map_err(|error| unavailable(self.system(), error))
    }

    /// Turns a non-2xx response into an error, with the ERP's `error.message` if present.
    async fn failure(&self, record: &RecordKey, response: Response) -> SystemError {
        let status = response.status();
        let headers = response.headers().clone();
        let message = response
            .json::<Value>()
            .await
            .ok()
            .and_then(|body| body["error"]["message"].as_str().map(str::to_owned));
        status_error(self.system(), record, status, &headers, message)
    }

    async fn write_item(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        let record = &write.record;
        let body = to_bytes(&item_body(self.system(), write)?);
        let url = self.url(&["items", &record.key]);

        for attempt in 1..=self.config.max_conflict_attempts.max(1) {
            let response = self.send(self.request(reqwest::Method::GET, url.clone())).await?;
            if response.status() == StatusCode::NOT_FOUND {
                return Err(rejected(
                    self.system(),
                    record,
                    format!("item {} not found in the ERP; items are created in the ERP", record.key),
                ));
            }
            if !response.status().is_success() {
                return Err(self.failure(record, response).await);
            }
            let etag = response.headers().get(ETAG).cloned();

            let mut patch = self
                .request(reqwest::Method::PATCH, url.clone())
                .header(CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(etag) = etag {
                patch = patch.header(IF_MATCH, etag);
            }
            let response = self.send(patch).await?;
            if response.status() == StatusCode::PRECONDITION_FAILED {
                tracing::debug!(system = %self.system(), record = %record, attempt, "item changed since read, retrying");
                continue;
            }
            if !response.status().is_success() {
                return Err(self.failure(record, response).await);
            }
            tracing::info!(system = %self.system(), record = %record, fields = write.fields.len(), "item updated");
            return Ok(WriteReceipt {
                target_id: Some(record.key.clone()),
            });
        }
        tracing::warn!(
            system = %self.system(), record = %record, attempts = self.config.max_conflict_attempts,
            "item kept changing during the write"
        );
        Err(SystemError::Conflict {
            system: self.system().clone(),
            record: record.clone(),
        })
    }

    /// Writes a customer, quote, shipment or return: a PATCH of `<collection>/<number>` when the
    /// ERP number is known, else a POST to `<collection>` that upserts by external id.
    async fn write_document(&self, write: &OutboundWrite, collection: &str) -> Result<WriteReceipt, SystemError> {
        let (method, external_id) = document_method(write);
        let body = document_body(self.system(), write, Dialect::Erp, external_id.as_deref())?;
        let url = match &write.target_id {
            Some(number) => self.url(&[collection, number]),
            None => self.url(&[collection]),
        };
        let request = self
            .request(method, url)
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        send_document(self.system(), write, request, "number").await
    }

    async fn write_order(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        let record = &write.record;
        let body = to_bytes(&order_body(self.system(), write)?);
        let request = self
            .request(reqwest::Method::POST, self.url(&["sales-orders"]))
            .header(CONTENT_TYPE, "application/json")
            .body(body);
        let response = self.send(request).await?;
        if !response.status().is_success() {
            return Err(self.failure(record, response).await);
        }
        let created = response.status() == StatusCode::CREATED;
        let order: Value = response
            .json()
            .await
            .map_err(|_| unavailable(self.system(), UnexpectedResponse("order body is not JSON".to_owned())))?;
        let number = order["number"]
            .as_str()
            .ok_or_else(|| unavailable(self.system(), UnexpectedResponse("order has no number".to_owned())))?;
        tracing::info!(system = %self.system(), record = %record, order = number, created, "sales order upserted");
        Ok(WriteReceipt {
            target_id: Some(number.to_owned()),
        })
    }
}

#[async_trait]
impl SystemClient for ErpClient {
    async fn write(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        let result = match write.record.entity.as_str() {
            "order" => self.write_order(write).await,
            "customer" => self.write_document(write, "customers").await,
            "quote" => self.write_document(write, "quotes").await,
            "shipment" => self.write_document(write, "shipments").await,
            "return" => self.write_document(write, "returns").await,
            _ => self.write_item(write).await,
        };
        if let Err(error) = &result {
            tracing::debug!(system = %self.system(), record = %write.record, error = %error, "ERP write failed");
        }
        result
    }
}
