//! Reads and writes Business Central items, customers and sales orders through API v2.0.
//!
//! Business Central's notifications are thin, so [`BusinessCentralClient::fetch`] reads what a
//! notice names: one entity (`GET …/items(<id>)`, `customers(<id>)`, `salesOrders(<id>)`), or, for
//! a `collection` notice, the entities changed since shortly before the notice
//! (`$filter=lastModifiedDateTime gt …`), following `@odata.nextLink` pages. Sales orders are read
//! with `$expand=salesOrderLines`. A deleted entity is not read. The collection named in the
//! resource decides the mapping, and the notice's entity type names the record. Each item becomes
//! a change set keyed by its `number`, with `displayName` as `name`, `unitPrice` as `price`,
//! `inventory` and `displayName2` as `meta_title`, and the item's `lastModifiedDateTime` as its
//! time. Customers and sales orders are mapped in [`documents`].
//!
//! Item writes read the item for its `@odata.etag` and send the PATCH with `If-Match`. A 412 means a
//! user changed the item in between, so the client reads it again and retries, up to
//! [`BusinessCentralConfig::max_conflict_attempts`] times. Retrying is safe because writes carry
//! absolute values. The user's change arrives as its own notification to be decided. A
//! create posts the item with its number, and a create retried after a lost response finds the
//! item by number instead of failing on the duplicate.
//!
//! Requests stay within the documented limits (see [`budget`]) and a 429 becomes
//! [`SystemError::RateLimited`] with the server's `Retry-After`.

mod budget;
mod documents;
mod subscriptions;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fieldsync_core::ingest::parse_offset_time;
use fieldsync_core::ports::{SystemClient, SystemError, WriteReceipt};
use fieldsync_core::{ChangeSet, FieldName, FieldValue, Notice, NoticeKind, OutboundWrite, RecordKey, SystemId, Wire};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, IF_MATCH};
use reqwest::{Method, StatusCode};
use serde_json::value::RawValue;

pub use budget::BudgetConfig;
pub use subscriptions::{Ensured, Subscription};

use crate::http::{build_client, rejected, status_error, unavailable, ConnectorError, UnexpectedResponse};
use crate::json::{decimal_number, string};
use budget::RequestBudget;
use fieldsync_core::Secret;

/// Settings of a [`BusinessCentralClient`].
#[derive(Debug, Clone)]
pub struct BusinessCentralConfig {
    /// The system name used in errors and change sets, as in the rules file.
    pub system: SystemId,
    /// The integration name change sets carry.
    pub integration: String,
    /// The environment's API root, `https://api.businesscentral.dynamics.com/v2.0/<tenant>/<environment>`.
    pub base_url: String,
    /// The company whose items, customers and sales orders are synced.
    pub company_id: String,
    /// An OAuth access token for the API.
    pub access_token: Secret,
    /// Writes attempted per call when the entity keeps changing (HTTP 412).
    pub max_conflict_attempts: u32,
    /// How far before a `collection` notice's time the read of changed items starts, because
    /// the notice's time is that of the batch and not of its oldest change.
    pub collection_lookback: chrono::Duration,
    pub budget: BudgetConfig,
    pub request_timeout: Duration,
}

impl BusinessCentralConfig {
    /// Builds a configuration with 3 conflict attempts, a 1 hour collection look-back, the
    /// documented request limits and a 10 s request timeout.
    pub fn new(
        system: impl Into<SystemId>,
        integration: impl Into<String>,
        base_url: impl Into<String>,
        company_id: impl Into<String>,
        access_token: Secret,
    ) -> Self {
        Self {
            system: system.into(),
            integration: integration.into(),
            base_url: base_url.into(),
            company_id: company_id.into(),
            access_token,
            max_conflict_attempts: 3,
            collection_lookback: chrono::Duration::hours(1),
            budget: BudgetConfig::default(),
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A collection of a company that fieldsync reads, writes and subscribes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Collection {
    /// `items`, synced as products.
    Items,
    /// `customers`.
    Customers,
    /// `salesOrders`, read with their `salesOrderLines`.
    SalesOrders,
}

impl Collection {
    /// Every collection the client maps.
    pub const ALL: [Self; 3] = [Self::Items, Self::Customers, Self::SalesOrders];

    /// Returns the collection's name in API paths.
    pub fn name(self) -> &'static str {
        match self {
            Self::Items => "items",
            Self::Customers => "customers",
            Self::SalesOrders => "salesOrders",
        }
    }

    /// Returns the entity type the default notification format gives the collection:
    /// `product`, `customer` or `order`.
    pub fn entity(self) -> &'static str {
        match self {
            Self::Items => "product",
            Self::Customers => "customer",
            Self::SalesOrders => "order",
        }
    }

    /// Returns the collection a resource path names, such as `…/salesOrders(<id>)` or
    /// `…/customers?$filter=…`, or `None` for another collection.
    pub fn of_resource(resource: &str) -> Option<Self> {
        let path = resource.split_once('?').map_or(resource, |(path, _)| path);
        let segment = path.trim_end_matches('/').rsplit('/').next()?;
        let name = segment.split_once('(').map_or(segment, |(name, _)| name);
        Self::ALL.into_iter().find(|collection| collection.name() == name)
    }
}

/// A Business Central API v2.0 client for items, customers and sales orders.
#[derive(Debug, Clone)]
pub struct BusinessCentralClient {
    config: BusinessCentralConfig,
    base: reqwest::Url,
    http: reqwest::Client,
    budget: RequestBudget,
}

/// A successful or 404 response, read in full.
struct Reply {
    status: StatusCode,
    body: Vec<u8>,
}

impl BusinessCentralClient {
    /// Builds a client. Fails if the base URL is not an absolute http(s) URL.
    pub fn new(config: BusinessCentralConfig) -> Result<Self, ConnectorError> {
        let root = format!("{}/", config.base_url.trim_end_matches('/'));
        let (base, http) = build_client(&root, config.request_timeout)?;
        let budget = RequestBudget::new(config.budget);
        Ok(Self {
            config,
            base,
            http,
            budget,
        })
    }

    fn system(&self) -> &SystemId {
        &self.config.system
    }

    /// Returns the company's items collection path, relative to the API root.
    fn items_path(&self) -> String {
        self.collection_path(Collection::Items)
    }

    /// Returns a collection path of the company, relative to the API root.
    fn collection_path(&self, collection: Collection) -> String {
        format!("api/v2.0/companies({})/{}", self.config.company_id, collection.name())
    }

    fn url(&self, relative: &str) -> Result<reqwest::Url, SystemError> {
        self.base
            .join(relative.trim_start_matches('/'))
            .map_err(|error| unavailable(self.system(), UnexpectedResponse(format!("bad resource path: {error}"))))
    }

    /// Tells whether a resource a notice names lies inside the configured company's API, so
    /// that a forged notice cannot send the access token to another host, environment or
    /// company: a relative path under `api/v2.0/companies(<id>)/`, without `..` segments.
    fn is_own_resource(&self, resource: &str) -> bool {
        let path = resource.trim_start_matches('/');
        let prefix = format!("api/v2.0/companies({})/", self.config.company_id);
        path.starts_with(&prefix)
            && !path.contains("://")
            && !path
                .split(['/', '?'])
                .any(|segment| segment == ".." || segment.contains('\\'))
            && self.url(path).is_ok_and(|url| same_origin(&url, &self.base))
    }

    /// Sends one request within the budget and reads the whole response.
    async fn send(
        &self,
        record: &RecordKey,
        method: Method,
        url: reqwest::Url,
        if_match: Option<&str>,
        body: Option<String>,
    ) -> Result<Reply, SystemError> {
        let _permit = self
            .budget
            .try_start(Instant::now())
            .map_err(|wait| SystemError::RateLimited {
                system: self.system().clone(),
                retry_after: Some(wait),
            })?;
        let mut request = self
            .http
            .request(method, url)
            .header(AUTHORIZATION, format!("Bearer {}", self.config.access_token.expose()));
        if let Some(etag) = if_match {
            request = request.header(IF_MATCH, etag);
        }
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
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
            return Ok(Reply { status, body });
        }
        let message = error_message(&body);
        Err(status_error(self.system(), record, status, &headers, message))
    }

    /// Reads one entity, or `None` when it does not exist.
    async fn get_entity(&self, record: &RecordKey, url: reqwest::Url) -> Result<Option<Wire>, SystemError> {
        let reply = self.send(record, Method::GET, url, None, None).await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        parse(self.system(), &reply.body).map(Some)
    }

    /// Finds an item by number.
    async fn find_item(&self, record: &RecordKey, number: &str) -> Result<Option<Wire>, SystemError> {
        self.find_by(record, Collection::Items, "number", number).await
    }

    /// Finds the first entity of `collection` whose text `property` equals `value`. Sales orders
    /// come with their lines.
    async fn find_by(
        &self,
        record: &RecordKey,
        collection: Collection,
        property: &str,
        value: &str,
    ) -> Result<Option<Wire>, SystemError> {
        let mut url = self.url(&self.collection_path(collection))?;
        // OData doubles a single quote inside a string literal.
        let literal = value.replace('\'', "''");
        url.query_pairs_mut()
            .append_pair("$filter", &format!("{property} eq '{literal}'"));
        if collection == Collection::SalesOrders {
            url.query_pairs_mut().append_pair("$expand", ORDER_LINES);
        }
        let reply = self.send(record, Method::GET, url, None, None).await?;
        let page = parse(self.system(), &reply.body)?;
        Ok(page.get("value").and_then(|found| found.items().first().cloned()))
    }

    /// Returns the URL of one entity, with its lines for a sales order.
    fn entity_url(&self, collection: Collection, id: &str) -> Result<reqwest::Url, SystemError> {
        let mut url = self.url(&format!("{}({id})", self.collection_path(collection)))?;
        if collection == Collection::SalesOrders {
            url.query_pairs_mut().append_pair("$expand", ORDER_LINES);
        }
        Ok(url)
    }

    /// Reads every entity the collection filter returns, page by page.
    async fn list_changed(
        &self,
        notice: &Notice,
        collection: Collection,
        since: DateTime<Utc>,
    ) -> Result<Vec<Wire>, SystemError> {
        let placeholder = RecordKey::new(self.config.integration.as_str(), notice.entity.clone(), "collection");
        let mut url = self.url(&notice.resource)?;
        // Business Central names the collection with its own filter, starting just before the
        // earliest change; a catch-up notice names the bare collection.
        if url.query().is_none() {
            url.query_pairs_mut().append_pair(
                "$filter",
                &format!("lastModifiedDateTime gt {}", since.format("%Y-%m-%dT%H:%M:%S%.3fZ")),
            );
        }
        if collection == Collection::SalesOrders {
            url.query_pairs_mut().append_pair("$expand", ORDER_LINES);
        }
        let mut items = Vec::new();
        loop {
            let reply = self.send(&placeholder, Method::GET, url, None, None).await?;
            let page = parse(self.system(), &reply.body)?;
            if let Some(value) = page.get("value") {
                items.extend(value.items().iter().cloned());
            }
            match page.get("@odata.nextLink").and_then(Wire::as_text) {
                Some(next) => {
                    url = reqwest::Url::parse(next).map_err(|error| {
                        unavailable(self.system(), UnexpectedResponse(format!("bad nextLink: {error}")))
                    })?;
                    // The token goes only to the API it was issued for.
                    if !same_origin(&url, &self.base) {
                        return Err(unavailable(
                            self.system(),
                            UnexpectedResponse(format!("nextLink {next} points to another host")),
                        ));
                    }
                }
                None => return Ok(items),
            }
        }
    }

    /// Turns an entity of `collection` into the change set of its record.
    fn change(&self, notice: &Notice, collection: Collection, entity: &Wire) -> Option<ChangeSet> {
        let (key, fields) = match collection {
            Collection::Items => {
                let number = entity.get("number").and_then(Wire::as_key)?;
                let mut fields = BTreeMap::new();
                for (member, field) in ITEM_FIELDS {
                    if let Some(value) = entity.get(member) {
                        fields.insert(FieldName::new(*field), value.clone());
                    }
                }
                (number, fields)
            }
            Collection::Customers => documents::customer_fields(entity)?,
            Collection::SalesOrders => documents::order_fields(entity)?,
        };
        let occurred_at = entity
            .get("lastModifiedDateTime")
            .and_then(Wire::as_text)
            .and_then(parse_offset_time)
            .unwrap_or(notice.occurred_at);
        Some(ChangeSet {
            record: RecordKey::new(self.config.integration.as_str(), notice.entity.clone(), key),
            source: self.system().clone(),
            event_id: notice.event_id.clone(),
            occurred_at,
            received_at: notice.received_at,
            external_id: entity.get("id").and_then(Wire::as_key),
            fields,
        })
    }

    async fn write_item(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        let record = &write.record;
        let body = item_body(self.system(), write)?;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let existing = match &write.target_id {
                Some(id) => {
                    self.get_entity(record, self.url(&format!("{}({id})", self.items_path()))?)
                        .await?
                }
                None => self.find_item(record, &record.key).await?,
            };
            let Some(item) = existing else {
                return self.create_item(write, &body).await;
            };
            let id = item
                .get("id")
                .and_then(Wire::as_key)
                .ok_or_else(|| unavailable(self.system(), UnexpectedResponse("item without id".into())))?;
            let etag = item
                .get("@odata.etag")
                .and_then(Wire::as_text)
                .unwrap_or("*")
                .to_owned();
            let url = self.url(&format!("{}({id})", self.items_path()))?;
            match self
                .send(record, Method::PATCH, url, Some(&etag), Some(render(&body)))
                .await
            {
                Ok(reply) if reply.status == StatusCode::NOT_FOUND => {
                    return Err(rejected(self.system(), record, format!("item {id} not found")))
                }
                Ok(_) => return Ok(WriteReceipt { target_id: Some(id) }),
                Err(SystemError::Conflict { .. }) if attempt < self.config.max_conflict_attempts => {
                    tracing::debug!(record = %record, attempt, "item changed since it was read; reading again");
                }
                Err(error) => return Err(error),
            }
        }
    }

    async fn create_item(
        &self,
        write: &OutboundWrite,
        body: &BTreeMap<&'static str, Box<RawValue>>,
    ) -> Result<WriteReceipt, SystemError> {
        let mut body = body.clone();
        body.insert("number", string(&write.record.key));
        let url = self.url(&self.items_path())?;
        let reply = self
            .send(&write.record, Method::POST, url, None, Some(render(&body)))
            .await?;
        let item = parse(self.system(), &reply.body)?;
        Ok(WriteReceipt {
            target_id: item.get("id").and_then(Wire::as_key),
        })
    }
}

/// The navigation property that carries a sales order's lines.
const ORDER_LINES: &str = "salesOrderLines";

/// Item members read into canonical fields.
const ITEM_FIELDS: &[(&str, &str)] = &[
    ("displayName", "name"),
    ("unitPrice", "price"),
    ("inventory", "inventory"),
    ("displayName2", "meta_title"),
];

/// Builds an item PATCH or POST body. `inventory` is read-only in the API: stock changes through
/// item journals, which fieldsync does not post.
fn item_body(system: &SystemId, write: &OutboundWrite) -> Result<BTreeMap<&'static str, Box<RawValue>>, SystemError> {
    let mut body = BTreeMap::new();
    for (name, value) in &write.fields {
        let (member, json) = match (name.as_str(), value) {
            ("name", FieldValue::Text(text)) => ("displayName", string(text)),
            ("price", FieldValue::Money(amount)) => ("unitPrice", decimal_number(amount)),
            ("meta_title", FieldValue::Text(text)) => ("displayName2", string(text)),
            (other, _) => {
                return Err(rejected(
                    system,
                    &write.record,
                    format!("field {other} cannot be written to a Business Central item"),
                ))
            }
        };
        body.insert(member, json);
    }
    Ok(body)
}

fn render(body: &BTreeMap<&'static str, Box<RawValue>>) -> String {
    let members: Vec<String> = body
        .iter()
        .map(|(name, value)| format!("{}:{}", string(name).get(), value.get()))
        .collect();
    format!("{{{}}}", members.join(","))
}

/// Tells whether two URLs share scheme, host and port.
fn same_origin(left: &reqwest::Url, right: &reqwest::Url) -> bool {
    left.scheme() == right.scheme()
        && left.host_str() == right.host_str()
        && left.port_or_known_default() == right.port_or_known_default()
}

fn parse(system: &SystemId, body: &[u8]) -> Result<Wire, SystemError> {
    Wire::parse(body).map_err(|error| unavailable(system, UnexpectedResponse(format!("body is not JSON: {error}"))))
}

/// Reads the message of an OData error body, `{"error":{"code":…,"message":…}}`.
fn error_message(body: &[u8]) -> Option<String> {
    let wire = Wire::parse(body).ok()?;
    let error = wire.get("error")?;
    let code = error.get("code").and_then(Wire::as_text).unwrap_or_default();
    let message = error.get("message").and_then(Wire::as_text).unwrap_or_default();
    Some(format!("{code}: {message}"))
}

#[async_trait]
impl SystemClient for BusinessCentralClient {
    async fn write(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        match write.record.entity.as_str() {
            "product" => self.write_item(write).await,
            "customer" => self.write_customer(write).await,
            "order" => self.write_order(write).await,
            other => Err(rejected(
                self.system(),
                &write.record,
                format!("{other} records are not synced to Business Central"),
            )),
        }
    }

    async fn fetch(&self, notice: &Notice) -> Result<Vec<ChangeSet>, SystemError> {
        if !self.is_own_resource(&notice.resource) {
            // Retrying cannot make the resource acceptable, so the notice is dropped here.
            tracing::warn!(
                security = true,
                resource = notice.resource,
                event_id = notice.event_id,
                "notice names a resource outside the configured company; dropped without a request"
            );
            return Ok(Vec::new());
        }
        let Some(collection) = Collection::of_resource(&notice.resource) else {
            tracing::warn!(
                resource = notice.resource,
                event_id = notice.event_id,
                "notice names a collection the client does not map; dropped without a request"
            );
            return Ok(Vec::new());
        };
        let entities = match notice.kind {
            NoticeKind::Deleted => return Ok(Vec::new()),
            NoticeKind::Collection => {
                let since = notice.occurred_at - self.config.collection_lookback;
                self.list_changed(notice, collection, since).await?
            }
            NoticeKind::Created | NoticeKind::Updated => {
                let placeholder = RecordKey::new(self.config.integration.as_str(), notice.entity.clone(), "?");
                // A single record is read with fieldsync's own query options only: options a
                // forged notice appends would change the read or make it fail on every retry.
                let mut url = self.url(&notice.resource)?;
                url.set_query(None);
                if collection == Collection::SalesOrders {
                    url.query_pairs_mut().append_pair("$expand", ORDER_LINES);
                }
                self.get_entity(&placeholder, url).await?.into_iter().collect()
            }
        };
        Ok(entities
            .iter()
            .filter_map(|entity| self.change(notice, collection, entity))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> BusinessCentralClient {
        let config = BusinessCentralConfig::new(
            "erp",
            "demo",
            "https://api.businesscentral.dynamics.com/v2.0/tenant/production",
            "11111111-2222-3333-4444-555555555555",
            Secret::new("token"),
        );
        BusinessCentralClient::new(config).unwrap()
    }

    #[test]
    fn money_goes_to_business_central_as_a_number() {
        let write = OutboundWrite {
            id: 1,
            claimed_until: None,
            target: SystemId::new("erp"),
            record: RecordKey::new("demo", "product", "MUG-RED"),
            kind: fieldsync_core::WriteKind::Update,
            target_id: None,
            fields: BTreeMap::from([
                (FieldName::new("price"), FieldValue::Money("5.00".parse().unwrap())),
                (FieldName::new("name"), FieldValue::Text("Red mug".into())),
            ]),
            previous: Default::default(),
            changed_at: chrono::Utc::now(),
            parked_on: Vec::new(),
        };
        let body = render(&item_body(&SystemId::new("erp"), &write).unwrap());
        assert_eq!(body, r#"{"displayName":"Red mug","unitPrice":5.00}"#);
    }

    #[test]
    fn only_resources_of_the_company_are_read() {
        let client = client();
        let own = "api/v2.0/companies(11111111-2222-3333-4444-555555555555)/items(aaaa)";
        assert!(client.is_own_resource(own));
        assert!(client.is_own_resource(&format!("/{own}")));
        let collection = "/api/v2.0/companies(11111111-2222-3333-4444-555555555555)/items?$filter=x";
        assert!(client.is_own_resource(collection));
        for forged in [
            "http://127.0.0.1:18999/steal/items(aaaa)",
            "//127.0.0.1:18999/api/v2.0/companies(11111111-2222-3333-4444-555555555555)/items(a)",
            "api/v2.0/companies(99999999-2222-3333-4444-555555555555)/items(aaaa)",
            "api/v2.0/companies(11111111-2222-3333-4444-555555555555)/../../other/items(a)",
            "api/v2.0/companies(11111111-2222-3333-4444-555555555555)/https://127.0.0.1/x",
        ] {
            assert!(!client.is_own_resource(forged), "{forged}");
        }
    }
}
