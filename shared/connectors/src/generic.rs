//! A REST client driven by a connector file's `[write.<entity>]` sections.
//!
//! A write becomes one request: the update URL with `{id}` (the record's id in the system when
//! fieldsync has it, else its key), or the create request for a create when the file has one.
//! A create answered 409 (the record already exists, as Frappe answers a duplicate name) is sent
//! again as an update of the record key, so a retried create does not fail. With `etag = true`
//! the client reads the record first and sends its `ETag` in `If-Match`, and reads again on 412.
//!
//! Failures are classified by status: 429 waits for `Retry-After` (at most
//! [`GenericClientConfig::max_rate_limit_waits`] times, each at most
//! [`GenericClientConfig::max_retry_after`]) and then is `RateLimited`; a lasting 412 is
//! `Conflict`; 401 and 403 are `Unavailable` so the write stays queued; other 4xx `Rejected`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use fieldsync_core::connector::{ConnectorFile, MoneyForm, RequestSpec, WriteSpec};
use fieldsync_core::ports::{SystemClient, SystemError, WriteReceipt};
use fieldsync_core::{FieldValue, OutboundWrite, RecordKey, Secret, SystemId, WriteKind};
use reqwest::header::{CONTENT_TYPE, ETAG, IF_MATCH};
use reqwest::{Method, Response, StatusCode};
use serde_json::value::RawValue;

use crate::http::{build_client, rejected, retry_after, status_error, unavailable, ConnectorError};
use crate::json::{decimal_number, string, wire_text};

/// Settings of a [`GenericClient`].
#[derive(Debug, Clone)]
pub struct GenericClientConfig {
    /// The system name used in errors, as in the rules file.
    pub system: SystemId,
    /// The value of `{base_url}` in URL templates.
    pub base_url: String,
    /// The value of `{token}` in the connector file's auth header.
    pub token: Secret,
    pub connector: Arc<ConnectorFile>,
    /// How many 429 responses one write waits out before it returns `RateLimited`.
    pub max_rate_limit_waits: u32,
    /// The longest `Retry-After` the client waits in place; a longer one returns at once, so
    /// the queue redelivers the change later.
    pub max_retry_after: Duration,
    /// Update attempts per write when the record keeps changing (HTTP 412).
    pub max_conflict_attempts: u32,
    pub request_timeout: Duration,
}

impl GenericClientConfig {
    /// Builds a configuration with 3 rate-limit waits of at most 5 s each, 3 conflict attempts
    /// and a 10 s request timeout.
    pub fn new(
        system: impl Into<SystemId>,
        base_url: impl Into<String>,
        token: Secret,
        connector: Arc<ConnectorFile>,
    ) -> Self {
        Self {
            system: system.into(),
            base_url: base_url.into(),
            token,
            connector,
            max_rate_limit_waits: 3,
            max_retry_after: Duration::from_secs(5),
            max_conflict_attempts: 3,
            request_timeout: Duration::from_secs(10),
        }
    }
}

/// A REST client that implements [`SystemClient`] from a connector file.
#[derive(Debug, Clone)]
pub struct GenericClient {
    config: GenericClientConfig,
    base_url: String,
    http: reqwest::Client,
}

impl GenericClient {
    /// Builds a client. Fails if the base URL is not an absolute http(s) URL.
    pub fn new(config: GenericClientConfig) -> Result<Self, ConnectorError> {
        let (_, http) = build_client(&config.base_url, config.request_timeout)?;
        let base_url = config.base_url.trim_end_matches('/').to_owned();
        Ok(Self { config, base_url, http })
    }

    fn system(&self) -> &SystemId {
        &self.config.system
    }

    /// Fills a URL template. Values other than the base URL are percent-encoded as one path
    /// segment, so a key with `/` or spaces stays one segment.
    fn url(&self, template: &str, write: &OutboundWrite, id: &str) -> String {
        template
            .replace("{base_url}", &self.base_url)
            .replace("{id}", &encode_segment(id))
            .replace("{key}", &encode_segment(&write.record.key))
            .replace("{external_id}", &encode_segment(&write.record.external_id()))
    }

    fn request(&self, method: Method, url: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, url);
        match &self.config.connector.auth {
            Some(header) => request.header(
                header.name.as_str(),
                header.value.replace("{token}", self.config.token.expose()),
            ),
            None => request,
        }
    }

    /// Sends a request, waiting out 429 responses whose `Retry-After` is short enough.
    async fn send(
        &self,
        build: impl Fn() -> reqwest::RequestBuilder,
        record: &RecordKey,
    ) -> Result<Response, SystemError> {
        let mut waits = 0;
        loop {
            let response = build()
                .send()
                .await
                .map_err(|error| unavailable(self.system(), error))?;
            if response.status() != StatusCode::TOO_MANY_REQUESTS {
                return Ok(response);
            }
            let wait = retry_after(response.headers()).unwrap_or(Duration::from_secs(1));
            if waits >= self.config.max_rate_limit_waits || wait > self.config.max_retry_after {
                tracing::info!(system = %self.system(), record = %record, waits, retry_after_ms = wait.as_millis(), "rate limited; leaving the write for a later retry");
                return Err(SystemError::RateLimited {
                    system: self.system().clone(),
                    retry_after: Some(wait),
                });
            }
            waits += 1;
            tracing::debug!(system = %self.system(), record = %record, waits, retry_after_ms = wait.as_millis(), "rate limited; waiting");
            tokio::time::sleep(wait).await;
        }
    }

    async fn failure(&self, record: &RecordKey, response: Response) -> SystemError {
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.ok().filter(|text| !text.is_empty());
        let message = text.map(|text| text.chars().take(200).collect());
        status_error(self.system(), record, status, &headers, message)
    }

    async fn create(
        &self,
        request: &RequestSpec,
        spec: &WriteSpec,
        write: &OutboundWrite,
        body: &[u8],
    ) -> Result<Option<WriteReceipt>, SystemError> {
        let record = &write.record;
        let url = self.url(&request.url, write, &record.key);
        let method = method(&request.method);
        let build = || {
            self.request(method.clone(), &url)
                .header(CONTENT_TYPE, "application/json")
                .body(body.to_vec())
        };
        let response = self.send(build, record).await?;
        if response.status() == StatusCode::CONFLICT {
            tracing::info!(system = %self.system(), record = %record, "record exists; updating it instead");
            return Ok(None);
        }
        if !response.status().is_success() {
            return Err(self.failure(record, response).await);
        }
        let created = response.bytes().await.ok();
        let target_id = match &spec.id_pointer {
            Some(pointer) => created
                .and_then(|bytes| fieldsync_core::Wire::parse(&bytes).ok())
                .and_then(|wire| wire.pointer(pointer).and_then(fieldsync_core::Wire::as_key)),
            None => None,
        };
        tracing::info!(system = %self.system(), record = %record, target_id = ?target_id, "record created");
        Ok(Some(WriteReceipt {
            target_id: target_id.or_else(|| Some(record.key.clone())),
        }))
    }

    async fn update(
        &self,
        spec: &WriteSpec,
        write: &OutboundWrite,
        id: &str,
        body: &[u8],
    ) -> Result<WriteReceipt, SystemError> {
        let record = &write.record;
        let url = self.url(&spec.update.url, write, id);
        let method = method(&spec.update.method);

        for attempt in 1..=self.config.max_conflict_attempts.max(1) {
            let etag = if spec.etag {
                let response = self.send(|| self.request(Method::GET, &url), record).await?;
                if !response.status().is_success() {
                    return Err(self.failure(record, response).await);
                }
                response.headers().get(ETAG).cloned()
            } else {
                None
            };
            let build = || {
                let request = self
                    .request(method.clone(), &url)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.to_vec());
                match &etag {
                    Some(etag) => request.header(IF_MATCH, etag.clone()),
                    None => request,
                }
            };
            let response = self.send(build, record).await?;
            if response.status() == StatusCode::PRECONDITION_FAILED && spec.etag {
                tracing::debug!(system = %self.system(), record = %record, attempt, "record changed since read, retrying");
                continue;
            }
            if !response.status().is_success() {
                return Err(self.failure(record, response).await);
            }
            tracing::info!(system = %self.system(), record = %record, fields = write.fields.len(), "record updated");
            return Ok(WriteReceipt {
                target_id: Some(id.to_owned()),
            });
        }
        tracing::warn!(system = %self.system(), record = %record, attempts = self.config.max_conflict_attempts, "record kept changing during the write");
        Err(SystemError::Conflict {
            system: self.system().clone(),
            record: record.clone(),
        })
    }
}

#[async_trait]
impl SystemClient for GenericClient {
    async fn write(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        let record = &write.record;
        let Some(spec) = self.config.connector.write.get(&record.entity) else {
            return Err(rejected(
                self.system(),
                record,
                format!(
                    "connector file {} has no [write.{}] section",
                    self.config.connector.name, record.entity
                ),
            ));
        };
        let body = request_body(self.system(), spec, write)?;

        if let (WriteKind::Create, Some(create)) = (write.kind, &spec.create) {
            if let Some(receipt) = self.create(create, spec, write, &body).await? {
                return Ok(receipt);
            }
            return self.update(spec, write, &record.key, &body).await;
        }
        let id = write.target_id.clone().unwrap_or_else(|| record.key.clone());
        self.update(spec, write, &id, &body).await
    }
}

fn method(name: &str) -> Method {
    // The connector file accepts only POST, PUT and PATCH, which always parse.
    Method::from_bytes(name.as_bytes()).unwrap_or(Method::PUT)
}

/// A JSON object under construction whose leaves are already JSON text.
#[derive(Debug, Default)]
struct Tree(BTreeMap<String, Node>);

#[derive(Debug)]
enum Node {
    Leaf(Box<RawValue>),
    Object(Tree),
}

impl Tree {
    /// Puts `value` at a JSON pointer, creating objects on the way. A pointer through an
    /// existing leaf replaces it, which the connector file's validation makes rare.
    fn insert(&mut self, pointer: &str, value: Box<RawValue>) {
        let tokens: Vec<String> = pointer
            .trim_start_matches('/')
            .split('/')
            .map(|token| token.replace("~1", "/").replace("~0", "~"))
            .collect();
        let mut tree = self;
        for (index, token) in tokens.iter().enumerate() {
            if index + 1 == tokens.len() {
                tree.0.insert(token.clone(), Node::Leaf(value));
                return;
            }
            let node = tree
                .0
                .entry(token.clone())
                .or_insert_with(|| Node::Object(Tree::default()));
            if let Node::Leaf(_) = node {
                *node = Node::Object(Tree::default());
            }
            let Node::Object(next) = node else { return };
            tree = next;
        }
    }

    fn write(&self, out: &mut String) {
        out.push('{');
        for (index, (name, node)) in self.0.iter().enumerate() {
            if index > 0 {
                out.push(',');
            }
            out.push_str(string(name).get());
            out.push(':');
            match node {
                Node::Leaf(raw) => out.push_str(raw.get()),
                Node::Object(tree) => tree.write(out),
            }
        }
        out.push('}');
    }
}

/// Builds the request body: every field of the write at its mapped pointer, and the constants.
fn request_body(system: &SystemId, spec: &WriteSpec, write: &OutboundWrite) -> Result<Vec<u8>, SystemError> {
    let mut tree = Tree::default();
    for (field, value) in &write.fields {
        let Some((pointer, _)) = spec.body.iter().find(|(_, mapped)| mapped == field) else {
            return Err(rejected(
                system,
                &write.record,
                format!(
                    "field {field} is not mapped in the connector file's [write.{}.body]",
                    write.record.entity
                ),
            ));
        };
        tree.insert(pointer, json_value(system, write, value, spec.money)?);
    }
    for (pointer, template) in &spec.constants {
        let text = template
            .replace("{key}", &write.record.key)
            .replace("{external_id}", &write.record.external_id());
        tree.insert(pointer, string(&text));
    }
    let mut out = String::new();
    tree.write(&mut out);
    Ok(out.into_bytes())
}

fn json_value(
    system: &SystemId,
    write: &OutboundWrite,
    value: &FieldValue,
    money: MoneyForm,
) -> Result<Box<RawValue>, SystemError> {
    let raw = match value {
        FieldValue::Text(text) => string(text),
        FieldValue::Money(amount) => match money {
            MoneyForm::Number => decimal_number(amount),
            MoneyForm::String => string(&amount.to_string()),
        },
        FieldValue::Quantity(units) => RawValue::from_string(units.to_string()).unwrap_or_default(),
        FieldValue::Bool(flag) => RawValue::from_string(flag.to_string()).unwrap_or_default(),
        FieldValue::List(items) => serde_json::value::to_raw_value(items).unwrap_or_default(),
        FieldValue::Json(wire) => wire_text(wire)
            .and_then(|text| RawValue::from_string(text).ok())
            .ok_or_else(|| {
                rejected(
                    system,
                    &write.record,
                    "a JSON field holds a number that is not valid JSON",
                )
            })?,
    };
    Ok(raw)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
fn encode_segment(text: &str) -> String {
    let mut encoded = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

#[cfg(test)]
mod tests {
    use std::str::FromStr;

    use chrono::Utc;
    use fieldsync_core::FieldName;
    use rust_decimal::Decimal;

    use super::*;

    fn connector(money: &str) -> ConnectorFile {
        let text = format!(
            r#"connector = "test"
[webhook.signature]
scheme = "header-token"
header = "X-Token"
[[webhook.entities]]
entity = "product"
key = "/sku"
fields = {{}}
[write.product]
update = {{ method = "PUT", url = "{{base_url}}/items/{{id}}" }}
money = "{money}"
body = {{ "/price/value" = "price", "/name" = "name", "/tags" = "images" }}
constants = {{ "/sku/value" = "{{key}}" }}
"#
        );
        ConnectorFile::parse("test.toml", &text).unwrap()
    }

    fn write(fields: Vec<(&str, FieldValue)>) -> OutboundWrite {
        OutboundWrite {
            id: 0,
            claimed_until: None,
            target: SystemId::new("erp"),
            record: RecordKey::new("demo", "product", "MUG/RED"),
            kind: WriteKind::Update,
            target_id: None,
            fields: fields
                .into_iter()
                .map(|(name, value)| (FieldName::new(name), value))
                .collect(),
            previous: Default::default(),
            changed_at: Utc::now(),
            parked_on: Vec::new(),
        }
    }

    #[test]
    fn body_nests_pointers_and_keeps_money_digits() {
        let connector = connector("number");
        let spec = &connector.write[&"product".into()];
        let write = write(vec![
            ("price", FieldValue::Money(Decimal::from_str("24.00").unwrap())),
            ("name", FieldValue::Text("Café \"mug\"".to_owned())),
            ("images", FieldValue::List(vec!["a.jpg".to_owned()])),
        ]);
        let body = String::from_utf8(request_body(&"erp".into(), spec, &write).unwrap()).unwrap();
        assert_eq!(
            body,
            r#"{"name":"Café \"mug\"","price":{"value":24.00},"sku":{"value":"MUG/RED"},"tags":["a.jpg"]}"#
        );
    }

    #[test]
    fn body_writes_money_as_string_when_configured() {
        let connector = connector("string");
        let spec = &connector.write[&"product".into()];
        let write = write(vec![("price", FieldValue::Money(Decimal::from_str("19.90").unwrap()))]);
        let body = String::from_utf8(request_body(&"erp".into(), spec, &write).unwrap()).unwrap();
        assert_eq!(body, r#"{"price":{"value":"19.90"},"sku":{"value":"MUG/RED"}}"#);
    }

    #[test]
    fn unmapped_field_is_rejected() {
        let connector = connector("number");
        let spec = &connector.write[&"product".into()];
        let error = request_body(
            &"erp".into(),
            spec,
            &write(vec![("colour", FieldValue::Text("red".into()))]),
        )
        .unwrap_err();
        assert!(!error.is_retryable());
        assert!(error.to_string().contains("colour"), "{error}");
    }

    #[test]
    fn segment_encoding_keeps_one_segment() {
        assert_eq!(encode_segment("MUG/RED 1"), "MUG%2FRED%201");
        assert_eq!(encode_segment("ITEM-0001"), "ITEM-0001");
    }
}
