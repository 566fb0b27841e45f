//! Writes NetSuite inventory items through the REST record service
//! (`/services/rest/record/v1/inventoryItem`), within the account's concurrency limit.
//!
//! A create is an upsert by external id, `PUT …/inventoryItem/eid:<sku>`, so a create retried
//! after a lost response updates the item the first attempt made instead of adding a second
//! one. An update is `PATCH …/inventoryItem/<internal id>`, or `PATCH …/inventoryItem/eid:<sku>`
//! while the internal id is unknown. NetSuite responds to both with 204 and no body. After an
//! upsert the `Location` header names the item, and its last path segment is the internal id
//! returned in the [`WriteReceipt`]. The `fields` module maps canonical fields to item members.
//!
//! NetSuite limits the requests in flight per account, summed over SOAP and REST web services
//! and RESTlets, and rejects a request beyond the limit. Every request therefore first takes a
//! slot of the scope `netsuite:<account>` from a [`ConcurrencyGovernor`] shared by every
//! reconciler, waiting with jittered backoff for at most
//! [`NetSuiteConfig::max_permit_wait`], and frees it when the response has been read. A 429
//! that still arrives, because another integration used the account's capacity, is retried
//! with backoff up to [`NetSuiteConfig::max_throttle_retries`] times, then becomes
//! [`SystemError::RateLimited`]. Other failures are classified by status as in the other
//! connectors.

mod fields;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use fieldsync_core::ports::{ConcurrencyGovernor, Permit, SystemClient, SystemError, WriteReceipt};
use fieldsync_core::{OutboundWrite, RecordKey, Secret, SystemId, Wire, WriteKind};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, LOCATION};
use reqwest::{Method, StatusCode};

use crate::http::{build_client, rejected, status_error, unavailable, ConnectorError, UnexpectedResponse};

/// The host suffix of an account's REST web services domain, `<account>.suitetalk.api.netsuite.com`.
const SUITETALK_HOST_SUFFIX: &str = ".suitetalk.api.netsuite.com";

/// Settings of a [`NetSuiteClient`].
#[derive(Debug, Clone)]
pub struct NetSuiteConfig {
    /// The system name used in errors and change sets, as in the rules file.
    pub system: SystemId,
    /// The integration name change sets carry.
    pub integration: String,
    /// The account's REST domain, `https://<account>.suitetalk.api.netsuite.com`.
    pub base_url: String,
    /// The account id that names the governor scope `netsuite:<account>`.
    pub account_id: String,
    /// An OAuth 2.0 access token, sent as `Authorization: Bearer <token>`.
    pub token: Secret,
    /// The REST record type items are written as.
    pub record_type: String,
    /// The internal id of the price level `price` is written to; `1` is Base Price in a new
    /// account.
    pub price_level_id: String,
    /// Requests fieldsync may have in flight at once on the account, over every reconciler. Set
    /// it to the account's limit minus what other integrations need.
    pub concurrency_limit: u32,
    /// How long a governor slot stays held if its holder stops without releasing it. Longer
    /// than `request_timeout`, so a slot is never taken over while its request runs.
    pub permit_lease: Duration,
    /// How long a write waits for a free governor slot before it fails as rate limited.
    pub max_permit_wait: Duration,
    /// Retries of a request NetSuite rejected with HTTP 429, the first attempt not counted.
    pub max_throttle_retries: u32,
    /// Wait before the first retry after a 429, doubled for each later retry, with jitter.
    pub throttle_backoff: Duration,
    pub request_timeout: Duration,
}

impl NetSuiteConfig {
    /// Builds a configuration for `inventoryItem` records at price level 1. The concurrency
    /// limit is 5, the standard tier's limit without SuiteCloud Plus. A slot lease lasts 60 s,
    /// a write waits up to 10 s for a slot, a 429 is retried 3 times starting at 200 ms, and a
    /// request times out after 30 s. The account id is the first label of a
    /// `suitetalk.api.netsuite.com` host, else the whole host.
    pub fn new(
        system: impl Into<SystemId>,
        integration: impl Into<String>,
        base_url: impl Into<String>,
        token: Secret,
    ) -> Self {
        let base_url = base_url.into();
        let account_id = reqwest::Url::parse(&base_url)
            .ok()
            .and_then(|url| url.host_str().map(str::to_owned))
            .map(|host| {
                host.strip_suffix(SUITETALK_HOST_SUFFIX)
                    .map(str::to_owned)
                    .unwrap_or(host)
            })
            .unwrap_or_default();
        Self {
            system: system.into(),
            integration: integration.into(),
            base_url,
            account_id,
            token,
            record_type: "inventoryItem".to_owned(),
            price_level_id: "1".to_owned(),
            concurrency_limit: 5,
            permit_lease: Duration::from_secs(60),
            max_permit_wait: Duration::from_secs(10),
            max_throttle_retries: 3,
            throttle_backoff: Duration::from_millis(200),
            request_timeout: Duration::from_secs(30),
        }
    }

    /// Returns the governor scope of the account, `netsuite:<account>`.
    pub fn governor_scope(&self) -> String {
        format!("netsuite:{}", self.account_id)
    }
}

/// A NetSuite REST web services client for inventory items.
#[derive(Debug, Clone)]
pub struct NetSuiteClient {
    config: NetSuiteConfig,
    base: reqwest::Url,
    http: reqwest::Client,
    governor: Arc<dyn ConcurrencyGovernor>,
    /// Names this client in governor slots, so only it can release them.
    holder: String,
    /// 429 responses received, retried or not.
    throttled: Arc<AtomicU64>,
}

/// A response NetSuite rejected for concurrency or rate, before any retry.
struct Throttled {
    retry_after: Option<Duration>,
}

impl NetSuiteClient {
    /// Builds a client that takes its request slots from `governor`. Fails if the base URL is
    /// not an absolute http(s) URL.
    pub fn new(config: NetSuiteConfig, governor: Arc<dyn ConcurrencyGovernor>) -> Result<Self, ConnectorError> {
        let root = format!("{}/services/rest/record/v1/", config.base_url.trim_end_matches('/'));
        let (base, http) = build_client(&root, config.request_timeout)?;
        let holder = format!("{}-{:016x}", config.system, random_u64());
        Ok(Self {
            config,
            base,
            http,
            governor,
            holder,
            throttled: Arc::new(AtomicU64::new(0)),
        })
    }

    /// Returns how many HTTP 429 responses this client and its clones received.
    pub fn throttled_responses(&self) -> u64 {
        self.throttled.load(Ordering::SeqCst)
    }

    fn system(&self) -> &SystemId {
        &self.config.system
    }

    /// Builds `<root>/<record type>/<id>`, the id percent-encoded as one path segment.
    fn item_url(&self, id: &str) -> Result<reqwest::Url, SystemError> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|()| unavailable(self.system(), UnexpectedResponse("base URL cannot take a path".into())))?
            .pop_if_empty()
            .push(&self.config.record_type)
            .push(id);
        Ok(url)
    }

    /// Waits for a governor slot, at most [`NetSuiteConfig::max_permit_wait`].
    async fn acquire(&self) -> Result<Permit, SystemError> {
        let scope = self.config.governor_scope();
        let started = Instant::now();
        let mut wait = Duration::from_millis(10);
        loop {
            let permit = self
                .governor
                .acquire(
                    &scope,
                    self.config.concurrency_limit,
                    &self.holder,
                    self.config.permit_lease,
                )
                .await
                .map_err(|error| unavailable(self.system(), error))?;
            if let Some(permit) = permit {
                return Ok(permit);
            }
            if started.elapsed() + wait > self.config.max_permit_wait {
                tracing::warn!(
                    system = %self.system(), scope, limit = self.config.concurrency_limit,
                    "no concurrency slot came free in time; the write is retried later"
                );
                return Err(SystemError::RateLimited {
                    system: self.system().clone(),
                    retry_after: Some(wait),
                });
            }
            tokio::time::sleep(jittered(wait)).await;
            wait = (wait * 2).min(Duration::from_millis(500));
        }
    }

    async fn release(&self, permit: &Permit) {
        if let Err(error) = self.governor.release(permit).await {
            // The slot frees itself when its lease ends, so the write still counts as done.
            tracing::warn!(
                system = %self.system(), scope = permit.scope, slot = permit.slot, error = %error,
                "failed to release a concurrency slot; it frees when its lease ends"
            );
        }
    }

    /// Sends one request inside a governor slot and retries it after a 429 with backoff.
    /// Returns the `Location` header of the successful response.
    async fn send(
        &self,
        record: &RecordKey,
        method: Method,
        url: reqwest::Url,
        body: &str,
    ) -> Result<Option<String>, SystemError> {
        let mut retries = 0;
        loop {
            let permit = self.acquire().await?;
            let result = self.request(record, method.clone(), url.clone(), body).await;
            self.release(&permit).await;
            let throttled = match result {
                Ok(Ok(location)) => return Ok(location),
                Ok(Err(throttled)) => throttled,
                Err(error) => return Err(error),
            };
            self.throttled.fetch_add(1, Ordering::SeqCst);
            if retries >= self.config.max_throttle_retries {
                return Err(SystemError::RateLimited {
                    system: self.system().clone(),
                    retry_after: throttled.retry_after,
                });
            }
            retries += 1;
            let backoff = self.config.throttle_backoff * 2u32.saturating_pow(retries - 1);
            let wait = throttled.retry_after.unwrap_or(backoff).max(backoff);
            tracing::debug!(record = %record, retries, wait_ms = wait.as_millis(), "NetSuite rejected the request with 429; retrying");
            tokio::time::sleep(jittered(wait)).await;
        }
    }

    /// Sends one request. A 429 comes back as `Ok(Err(Throttled))` for [`Self::send`] to retry.
    async fn request(
        &self,
        record: &RecordKey,
        method: Method,
        url: reqwest::Url,
        body: &str,
    ) -> Result<Result<Option<String>, Throttled>, SystemError> {
        let response = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, format!("Bearer {}", self.config.token.expose()))
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_owned())
            .send()
            .await
            .map_err(|error| unavailable(self.system(), error))?;
        let status = response.status();
        let headers = response.headers().clone();
        let bytes = response
            .bytes()
            .await
            .map_err(|error| unavailable(self.system(), error))?;
        if status.is_success() {
            let location = headers
                .get(LOCATION)
                .and_then(|value| value.to_str().ok())
                .map(str::to_owned);
            return Ok(Ok(location));
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = crate::http::retry_after(&headers);
            return Ok(Err(Throttled { retry_after }));
        }
        let message = error_message(&bytes);
        Err(status_error(self.system(), record, status, &headers, message))
    }

    async fn upsert(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        let record = &write.record;
        let body = fields::item_body(self.system(), write, &self.config.price_level_id, Some(&record.key))?;
        let url = self.item_url(&format!("eid:{}", record.key))?;
        let location = self.send(record, Method::PUT, url, &body).await?;
        let target_id = location.as_deref().and_then(internal_id);
        if target_id.is_none() {
            tracing::warn!(record = %record, "NetSuite upsert response has no Location with the internal id");
        }
        Ok(WriteReceipt { target_id })
    }

    async fn update(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        let record = &write.record;
        let body = fields::item_body(self.system(), write, &self.config.price_level_id, None)?;
        let id = match &write.target_id {
            Some(id) => id.clone(),
            None => format!("eid:{}", record.key),
        };
        let location = self.send(record, Method::PATCH, self.item_url(&id)?, &body).await?;
        let target_id = write
            .target_id
            .clone()
            .or_else(|| location.as_deref().and_then(internal_id));
        Ok(WriteReceipt { target_id })
    }
}

#[async_trait]
impl SystemClient for NetSuiteClient {
    async fn write(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        if write.record.entity.as_str() != "product" {
            return Err(rejected(
                self.system(),
                &write.record,
                format!("{} records are not synced to NetSuite", write.record.entity),
            ));
        }
        match write.kind {
            WriteKind::Create => self.upsert(write).await,
            WriteKind::Update => self.update(write).await,
        }
    }
}

/// Reads the internal id from a record URL such as `…/record/v1/inventoryItem/647`.
fn internal_id(location: &str) -> Option<String> {
    let url = reqwest::Url::parse(location).ok()?;
    let id = url.path_segments()?.next_back()?;
    (!id.is_empty() && !id.starts_with("eid:")).then(|| id.to_owned())
}

/// Reads `o:errorCode: detail` of the first entry of a REST error body's `o:errorDetails`.
fn error_message(body: &[u8]) -> Option<String> {
    let wire = Wire::parse(body).ok()?;
    let detail = wire.get("o:errorDetails")?.items().first()?.clone();
    let code = detail.get("o:errorCode").and_then(Wire::as_text).unwrap_or_default();
    let text = detail.get("detail").and_then(Wire::as_text).unwrap_or_default();
    Some(format!("{code}: {text}"))
}

/// Returns a random number for holder names and jitter, without a random number crate: each
/// `RandomState` is seeded with fresh random keys, and a counter separates calls.
fn random_u64() -> u64 {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(CALLS.fetch_add(1, Ordering::Relaxed));
    hasher.finish()
}

/// Returns a wait between half and all of `wait`, so clients that failed together retry apart.
fn jittered(wait: Duration) -> Duration {
    let fraction = 0.5 + (random_u64() % 1_000) as f64 / 2_000.0;
    wait.mul_f64(fraction)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_id_comes_from_the_suitetalk_host() {
        let config = NetSuiteConfig::new(
            "erp",
            "demo",
            "https://tstdrv123456.suitetalk.api.netsuite.com",
            Secret::new("fake"),
        );
        assert_eq!(config.account_id, "tstdrv123456");
        assert_eq!(config.governor_scope(), "netsuite:tstdrv123456");
    }

    #[test]
    fn internal_id_is_the_last_location_segment() {
        let location = "https://tstdrv123456.suitetalk.api.netsuite.com/services/rest/record/v1/inventoryItem/647";
        assert_eq!(internal_id(location).as_deref(), Some("647"));
        assert_eq!(internal_id("not a url"), None);
    }

    #[test]
    fn error_message_reads_the_first_detail() {
        let body = br#"{"type":"https://www.rfc-editor.org/rfc/rfc9110.html#section-15.5.1","title":"Bad Request","status":400,"o:errorDetails":[{"detail":"Invalid field value.","o:errorCode":"INVALID_VALUE"}]}"#;
        assert_eq!(
            error_message(body).as_deref(),
            Some("INVALID_VALUE: Invalid field value.")
        );
    }

    #[test]
    fn jitter_stays_between_half_and_all() {
        for _ in 0..100 {
            let wait = jittered(Duration::from_millis(100));
            assert!(
                wait >= Duration::from_millis(50) && wait <= Duration::from_millis(100),
                "{wait:?}"
            );
        }
    }
}
