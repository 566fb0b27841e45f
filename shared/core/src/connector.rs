//! Connector files: the declarative description of a system that has no format of its own in
//! fieldsync, read by the generic webhook format and the generic REST client.
//!
//! A connector file has two parts. `[webhook]` describes how a webhook is authenticated (an HMAC over
//! a signed string built from the body and headers, or a shared header value), where the topic
//! and the event id are, and how each topic's rows map to an entity's key and fields through
//! JSON pointers. `[write.<entity>]` says how fieldsync writes an entity back: the HTTP method
//! and URL templates, the body as JSON pointers filled from fields, and whether `ETag`/`If-Match`
//! guards updates. `connectors/erpnext.toml` and `connectors/acumatica.toml` are examples.
//!
//! Errors name the file, line and column, as the rules file's errors do.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use chrono::FixedOffset;
use serde::Deserialize;
use toml::Spanned;

use crate::ids::{EntityType, FieldName};

/// A parsed, validated connector file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectorFile {
    /// The connector's name, used in logs, such as `erpnext`.
    pub name: String,
    pub webhook: WebhookSpec,
    /// The header that carries the API token, if the system takes one.
    pub auth: Option<AuthHeader>,
    pub write: BTreeMap<EntityType, WriteSpec>,
}

/// The authentication and reading rules of a connector's webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookSpec {
    pub auth: WebhookAuth,
    /// The location of the topic. `None` when the file maps a single entity for every request.
    pub topic: Option<ValueSource>,
    /// The location of the event id. `None` falls back to a SHA-256 hash of the body, which a sender's
    /// retry of the same body repeats.
    pub event_id: Option<ValueSource>,
    pub mappings: Vec<EntityMapping>,
}

/// The way a sender proves that it sent a webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookAuth {
    /// An HMAC of a signed string, sent in a header.
    Hmac(HmacSpec),
    /// A header whose value must equal the secret, for senders that do not sign (Acumatica push
    /// notifications carry only a header configured on the destination).
    HeaderToken { header: String },
}

/// An HMAC signature scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HmacSpec {
    /// The header that carries the signature.
    pub header: String,
    pub algorithm: HmacAlgorithm,
    pub encoding: SignatureEncoding,
    /// Text before the encoded signature in the header, such as `sha256=`.
    pub prefix: String,
    /// The signed string, in order.
    pub signed: Vec<SignedPart>,
    /// The timestamp header checked against the receive time, if the sender sends one.
    pub timestamp: Option<TimestampCheck>,
}

/// The hash function of an HMAC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Sha256,
}

/// The encoding of the signature bytes in the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignatureEncoding {
    /// Standard alphabet, padded.
    Base64,
    /// Lowercase or uppercase hexadecimal.
    Hex,
}

/// A piece of the signed string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignedPart {
    Literal(String),
    /// The raw body bytes as received.
    Body,
    /// The value of a request header (empty when absent).
    Header(String),
}

/// A timestamp header in Unix seconds, and how far it may be from the receive time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimestampCheck {
    pub header: String,
    pub tolerance_secs: i64,
}

/// The source of a value: a header, or JSON pointers into the body whose values are joined
/// with `:`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ValueSource {
    Header(String),
    Pointers(Vec<String>),
}

/// The mapping of one topic's rows to changes of one entity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntityMapping {
    /// The topic value this mapping applies to; `None` applies to every request.
    pub topic: Option<String>,
    pub entity: EntityType,
    pub rows: RowSource,
    /// Pointer, within a row, to the record key (the SKU for products).
    pub key: String,
    /// Pointer, within a row, to the record's id in the sender.
    pub external_id: Option<String>,
    /// Where, within a row, the change time is. `None` uses the receive time.
    pub occurred_at: Option<TimeSource>,
    /// Canonical field name to pointer within a row.
    pub fields: BTreeMap<FieldName, String>,
}

/// The location of a payload's rows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RowSource {
    /// One object at this pointer (`""` is the whole body).
    Object(String),
    /// A changed row is sent as its old version under `deleted` and its new version under
    /// `inserted`, matched by key. Changes come from the inserted rows; a deleted row with no
    /// inserted row of the same key is a deletion, which fieldsync does not sync.
    InsertedDeleted { inserted: String, deleted: String },
}

/// A timestamp inside a row and its format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeSource {
    pub pointer: String,
    pub format: TimeFormat,
}

/// Formats of a change time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeFormat {
    /// RFC 3339 with an offset.
    Rfc3339,
    /// A date and time without an offset (`T` or a space between them, optional fraction),
    /// read at a fixed UTC offset.
    Naive { offset: FixedOffset },
    /// Unix seconds, as a number or a string.
    UnixSeconds,
    /// Unix milliseconds, as a number or a string.
    UnixMillis,
}

/// The header that carries the API token: `value` is a template with `{token}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthHeader {
    pub name: String,
    pub value: String,
}

/// The requests that write one entity back to the system.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WriteSpec {
    pub update: RequestSpec,
    /// The create request; without it a create is sent as an update of the record key.
    pub create: Option<RequestSpec>,
    /// Read the record before an update and send its `ETag` in `If-Match`.
    pub etag: bool,
    pub money: MoneyForm,
    /// Body members: JSON pointer in the request body to the canonical field written there.
    pub body: Vec<(String, FieldName)>,
    /// Body members sent with every create and update: JSON pointer to a text template.
    pub constants: Vec<(String, String)>,
    /// Pointer in a create's response to the new record's id.
    pub id_pointer: Option<String>,
}

/// A request: method and URL template. The URL's placeholders are `{base_url}`, `{id}` (the
/// record's id in the system when known, else its key), `{key}` and `{external_id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    pub method: String,
    pub url: String,
}

/// The form of money in request bodies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoneyForm {
    /// A JSON number with the decimal's exact digits.
    Number,
    /// A JSON string of the decimal.
    String,
}

/// A connector file that failed to load, with the position of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct ConnectorFileError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for ConnectorFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    connector: String,
    webhook: RawWebhook,
    auth_header: Option<RawAuthHeader>,
    #[serde(default)]
    write: BTreeMap<String, Spanned<RawWrite>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWebhook {
    signature: Spanned<RawSignature>,
    topic: Option<Spanned<RawSource>>,
    event_id: Option<Spanned<RawSource>>,
    entities: Vec<Spanned<RawMapping>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSignature {
    scheme: Spanned<String>,
    header: String,
    encoding: Option<Spanned<String>>,
    #[serde(default)]
    prefix: String,
    signed: Option<Spanned<String>>,
    timestamp_header: Option<String>,
    tolerance_secs: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSource {
    header: Option<String>,
    pointer: Option<Spanned<String>>,
    #[serde(default)]
    pointers: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    topic: Option<String>,
    entity: String,
    row: Option<Spanned<String>>,
    inserted: Option<Spanned<String>>,
    deleted: Option<Spanned<String>>,
    key: Spanned<String>,
    external_id: Option<Spanned<String>>,
    occurred_at: Option<Spanned<RawTime>>,
    fields: BTreeMap<String, Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTime {
    pointer: Spanned<String>,
    format: Spanned<String>,
    utc_offset: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAuthHeader {
    name: String,
    value: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWrite {
    update: RawRequest,
    create: Option<RawRequest>,
    #[serde(default)]
    etag: bool,
    money: Option<Spanned<String>>,
    body: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    constants: BTreeMap<String, Spanned<String>>,
    id_pointer: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRequest {
    method: Spanned<String>,
    url: Spanned<String>,
}

/// Placeholders a request URL may use.
const URL_PLACEHOLDERS: [&str; 4] = ["base_url", "id", "key", "external_id"];

impl ConnectorFile {
    /// Parses and validates a connector file. `file` names it in error messages.
    pub fn parse(file: &str, text: &str) -> Result<ConnectorFile, ConnectorFileError> {
        let error_at = |span: Range<usize>, message: String| {
            let (line, column) = line_and_column(text, span.start);
            ConnectorFileError {
                file: file.to_owned(),
                line,
                column,
                message,
            }
        };
        let raw: RawFile = toml::from_str(text).map_err(|error| {
            let span = error.span().unwrap_or(0..0);
            error_at(span, error.message().to_owned())
        })?;

        let auth = webhook_auth(&raw.webhook.signature, &error_at)?;
        let topic = raw
            .webhook
            .topic
            .as_ref()
            .map(|source| value_source(source, &error_at))
            .transpose()?;
        let event_id = raw
            .webhook
            .event_id
            .as_ref()
            .map(|source| value_source(source, &error_at))
            .transpose()?;
        let mut mappings = Vec::new();
        for mapping in &raw.webhook.entities {
            mappings.push(entity_mapping(mapping, &error_at)?);
        }
        if topic.is_none() && mappings.len() != 1 {
            return Err(error_at(
                raw.webhook.signature.span(),
                format!(
                    "[webhook] maps {} entities but has no [webhook.topic] to choose between them",
                    mappings.len()
                ),
            ));
        }
        if let (Some(_), Some(mapping)) = (
            &topic,
            raw.webhook.entities.iter().find(|m| m.get_ref().topic.is_none()),
        ) {
            return Err(error_at(
                mapping.span(),
                "each [[webhook.entities]] needs a `topic` when [webhook.topic] is set".to_owned(),
            ));
        }

        let auth_header = match raw.auth_header {
            Some(header) => {
                check_placeholders(&header.value, &["token"], &error_at)?;
                Some(AuthHeader {
                    name: header.name,
                    value: header.value.into_inner(),
                })
            }
            None => None,
        };

        let mut write = BTreeMap::new();
        for (entity, spec) in &raw.write {
            write.insert(EntityType::new(entity.as_str()), write_spec(spec.get_ref(), &error_at)?);
        }

        Ok(ConnectorFile {
            name: raw.connector,
            webhook: WebhookSpec {
                auth,
                topic,
                event_id,
                mappings,
            },
            auth: auth_header,
            write,
        })
    }
}

type ErrorAt<'a> = dyn Fn(Range<usize>, String) -> ConnectorFileError + 'a;

fn webhook_auth(raw: &Spanned<RawSignature>, error_at: &ErrorAt<'_>) -> Result<WebhookAuth, ConnectorFileError> {
    let signature = raw.get_ref();
    match signature.scheme.get_ref().as_str() {
        "header-token" => Ok(WebhookAuth::HeaderToken {
            header: signature.header.clone(),
        }),
        "hmac-sha256" => {
            let encoding = match signature
                .encoding
                .as_ref()
                .map(|value| (value.get_ref().as_str(), value))
            {
                None | Some(("base64", _)) => SignatureEncoding::Base64,
                Some(("hex", _)) => SignatureEncoding::Hex,
                Some((other, value)) => {
                    return Err(error_at(
                        value.span(),
                        format!("unknown encoding {other:?}; expected base64 or hex"),
                    ))
                }
            };
            let signed = match &signature.signed {
                Some(template) => signed_parts(template, error_at)?,
                None => vec![SignedPart::Body],
            };
            let timestamp = match (&signature.timestamp_header, signature.tolerance_secs) {
                (Some(header), tolerance) => Some(TimestampCheck {
                    header: header.clone(),
                    tolerance_secs: tolerance.unwrap_or(300),
                }),
                (None, Some(_)) => {
                    return Err(error_at(
                        raw.span(),
                        "`tolerance_secs` needs `timestamp_header`".to_owned(),
                    ))
                }
                (None, None) => None,
            };
            Ok(WebhookAuth::Hmac(HmacSpec {
                header: signature.header.clone(),
                algorithm: HmacAlgorithm::Sha256,
                encoding,
                prefix: signature.prefix.clone(),
                signed,
                timestamp,
            }))
        }
        other => Err(error_at(
            signature.scheme.span(),
            format!("unknown signature scheme {other:?}; expected hmac-sha256 or header-token"),
        )),
    }
}

/// Splits a signed-string template such as `{header:X-Timestamp}.{body}` into its parts.
fn signed_parts(template: &Spanned<String>, error_at: &ErrorAt<'_>) -> Result<Vec<SignedPart>, ConnectorFileError> {
    let mut parts = Vec::new();
    let mut rest = template.get_ref().as_str();
    while let Some(open) = rest.find('{') {
        if open > 0 {
            parts.push(SignedPart::Literal(rest[..open].to_owned()));
        }
        let Some(close) = rest[open..].find('}') else {
            return Err(error_at(template.span(), "unclosed `{` in `signed`".to_owned()));
        };
        let name = &rest[open + 1..open + close];
        match name.split_once(':') {
            None if name == "body" => parts.push(SignedPart::Body),
            Some(("header", header)) if !header.is_empty() => parts.push(SignedPart::Header(header.to_owned())),
            _ => {
                return Err(error_at(
                    template.span(),
                    format!("unknown placeholder {{{name}}} in `signed`; expected {{body}} or {{header:NAME}}"),
                ))
            }
        }
        rest = &rest[open + close + 1..];
    }
    if !rest.is_empty() {
        parts.push(SignedPart::Literal(rest.to_owned()));
    }
    if !parts.contains(&SignedPart::Body) {
        return Err(error_at(
            template.span(),
            "`signed` must contain {body}, or the signature would not cover the payload".to_owned(),
        ));
    }
    Ok(parts)
}

fn value_source(raw: &Spanned<RawSource>, error_at: &ErrorAt<'_>) -> Result<ValueSource, ConnectorFileError> {
    let source = raw.get_ref();
    let mut pointers: Vec<&Spanned<String>> = source.pointer.iter().collect();
    pointers.extend(source.pointers.iter());
    match (&source.header, pointers.is_empty()) {
        (Some(header), true) => Ok(ValueSource::Header(header.clone())),
        (None, false) => {
            for pointer in &pointers {
                check_pointer(pointer, error_at)?;
            }
            Ok(ValueSource::Pointers(
                pointers.iter().map(|pointer| pointer.get_ref().clone()).collect(),
            ))
        }
        _ => Err(error_at(
            raw.span(),
            "set exactly one of `header`, or `pointer`/`pointers`".to_owned(),
        )),
    }
}

fn entity_mapping(raw: &Spanned<RawMapping>, error_at: &ErrorAt<'_>) -> Result<EntityMapping, ConnectorFileError> {
    let mapping = raw.get_ref();
    let rows = match (&mapping.row, &mapping.inserted, &mapping.deleted) {
        (row, None, None) => {
            let pointer = row.as_ref().map(|row| row.get_ref().clone()).unwrap_or_default();
            if let Some(row) = row {
                check_pointer(row, error_at)?;
            }
            RowSource::Object(pointer)
        }
        (None, Some(inserted), Some(deleted)) => {
            check_pointer(inserted, error_at)?;
            check_pointer(deleted, error_at)?;
            RowSource::InsertedDeleted {
                inserted: inserted.get_ref().clone(),
                deleted: deleted.get_ref().clone(),
            }
        }
        _ => {
            return Err(error_at(
                raw.span(),
                "set either `row`, or both `inserted` and `deleted`".to_owned(),
            ))
        }
    };
    check_pointer(&mapping.key, error_at)?;
    if let Some(external_id) = &mapping.external_id {
        check_pointer(external_id, error_at)?;
    }
    let occurred_at = mapping
        .occurred_at
        .as_ref()
        .map(|time| time_source(time.get_ref(), error_at))
        .transpose()?;
    let mut fields = BTreeMap::new();
    for (field, pointer) in &mapping.fields {
        check_pointer(pointer, error_at)?;
        fields.insert(FieldName::new(field.as_str()), pointer.get_ref().clone());
    }
    Ok(EntityMapping {
        topic: mapping.topic.clone(),
        entity: EntityType::new(mapping.entity.as_str()),
        rows,
        key: mapping.key.get_ref().clone(),
        external_id: mapping.external_id.as_ref().map(|pointer| pointer.get_ref().clone()),
        occurred_at,
        fields,
    })
}

fn time_source(raw: &RawTime, error_at: &ErrorAt<'_>) -> Result<TimeSource, ConnectorFileError> {
    check_pointer(&raw.pointer, error_at)?;
    let offset = match &raw.utc_offset {
        Some(text) => Some(parse_offset(text.get_ref()).ok_or_else(|| {
            error_at(
                text.span(),
                format!("invalid utc_offset {:?}; expected +HH:MM or -HH:MM", text.get_ref()),
            )
        })?),
        None => None,
    };
    let format = match raw.format.get_ref().as_str() {
        "naive" => TimeFormat::Naive {
            offset: offset.unwrap_or_else(utc),
        },
        "rfc3339" | "unix" | "unix-ms" if offset.is_some() => {
            return Err(error_at(
                raw.format.span(),
                "`utc_offset` applies only to the naive format".to_owned(),
            ))
        }
        "rfc3339" => TimeFormat::Rfc3339,
        "unix" => TimeFormat::UnixSeconds,
        "unix-ms" => TimeFormat::UnixMillis,
        other => {
            return Err(error_at(
                raw.format.span(),
                format!("unknown time format {other:?}; expected rfc3339, naive, unix or unix-ms"),
            ))
        }
    };
    Ok(TimeSource {
        pointer: raw.pointer.get_ref().clone(),
        format,
    })
}

fn write_spec(raw: &RawWrite, error_at: &ErrorAt<'_>) -> Result<WriteSpec, ConnectorFileError> {
    let request = |raw: &RawRequest| -> Result<RequestSpec, ConnectorFileError> {
        let method = raw.method.get_ref().to_ascii_uppercase();
        if !matches!(method.as_str(), "POST" | "PUT" | "PATCH") {
            return Err(error_at(
                raw.method.span(),
                format!(
                    "unsupported method {:?}; expected POST, PUT or PATCH",
                    raw.method.get_ref()
                ),
            ));
        }
        check_placeholders(&raw.url, &URL_PLACEHOLDERS, error_at)?;
        Ok(RequestSpec {
            method,
            url: raw.url.get_ref().clone(),
        })
    };
    let money = match raw.money.as_ref().map(|value| (value.get_ref().as_str(), value)) {
        None | Some(("number", _)) => MoneyForm::Number,
        Some(("string", _)) => MoneyForm::String,
        Some((other, value)) => {
            return Err(error_at(
                value.span(),
                format!("unknown money form {other:?}; expected number or string"),
            ))
        }
    };
    let mut body = Vec::new();
    for (pointer, field) in &raw.body {
        check_body_pointer(pointer, field.span(), error_at)?;
        body.push((pointer.clone(), FieldName::new(field.get_ref().as_str())));
    }
    let mut constants = Vec::new();
    for (pointer, template) in &raw.constants {
        check_body_pointer(pointer, template.span(), error_at)?;
        check_placeholders(template, &["key", "external_id"], error_at)?;
        constants.push((pointer.clone(), template.get_ref().clone()));
    }
    if let Some(pointer) = &raw.id_pointer {
        check_pointer(pointer, error_at)?;
    }
    Ok(WriteSpec {
        update: request(&raw.update)?,
        create: raw.create.as_ref().map(request).transpose()?,
        etag: raw.etag,
        money,
        body,
        constants,
        id_pointer: raw.id_pointer.as_ref().map(|pointer| pointer.get_ref().clone()),
    })
}

/// Checks that a JSON pointer is empty or starts with `/` (RFC 6901).
fn check_pointer(pointer: &Spanned<String>, error_at: &ErrorAt<'_>) -> Result<(), ConnectorFileError> {
    let text = pointer.get_ref();
    if text.is_empty() || text.starts_with('/') {
        return Ok(());
    }
    Err(error_at(
        pointer.span(),
        format!("invalid JSON pointer {text:?}; a pointer is empty or starts with /"),
    ))
}

/// Checks a body member's pointer, which names a member and so cannot be empty.
fn check_body_pointer(pointer: &str, span: Range<usize>, error_at: &ErrorAt<'_>) -> Result<(), ConnectorFileError> {
    if pointer.len() > 1 && pointer.starts_with('/') && !pointer.ends_with('/') {
        return Ok(());
    }
    Err(error_at(
        span,
        format!("invalid body pointer {pointer:?}; expected a JSON pointer such as \"/item_name\""),
    ))
}

/// Checks that every `{name}` in a template is one of `allowed`.
fn check_placeholders(
    template: &Spanned<String>,
    allowed: &[&str],
    error_at: &ErrorAt<'_>,
) -> Result<(), ConnectorFileError> {
    let mut rest = template.get_ref().as_str();
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            return Err(error_at(template.span(), "unclosed `{` in template".to_owned()));
        };
        let name = &rest[open + 1..open + close];
        if !allowed.contains(&name) {
            return Err(error_at(
                template.span(),
                format!("unknown placeholder {{{name}}}; expected one of {}", allowed.join(", ")),
            ));
        }
        rest = &rest[open + close + 1..];
    }
    Ok(())
}

fn utc() -> FixedOffset {
    // Zero seconds east is always in range.
    FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!("offset 0 is valid"))
}

/// Parses `+HH:MM` or `-HH:MM`.
fn parse_offset(text: &str) -> Option<FixedOffset> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let seconds = hours.parse::<i32>().ok()? * 3600 + minutes.parse::<i32>().ok()? * 60;
    FixedOffset::east_opt(sign * seconds)
}

/// Converts a byte offset to a 1-based line and column (in characters).
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |last| last.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"connector = "test"

[webhook.signature]
scheme = "hmac-sha256"
header = "X-Signature"
signed = "{header:X-Timestamp}.{body}"
timestamp_header = "X-Timestamp"

[[webhook.entities]]
entity = "product"
key = "/sku"
occurred_at = { pointer = "/modified", format = "naive", utc_offset = "+02:00" }
fields = { price = "/price" }

[write.product]
update = { method = "PUT", url = "{base_url}/items/{id}" }
body = { "/price" = "price" }
"#;

    fn parse(text: &str) -> Result<ConnectorFile, ConnectorFileError> {
        ConnectorFile::parse("test.toml", text)
    }

    #[test]
    fn minimal_file_parses() {
        let file = parse(MINIMAL).unwrap();
        let WebhookAuth::Hmac(hmac) = &file.webhook.auth else {
            panic!("expected an HMAC scheme");
        };
        assert_eq!(
            hmac.signed,
            [
                SignedPart::Header("X-Timestamp".into()),
                SignedPart::Literal(".".into()),
                SignedPart::Body
            ]
        );
        assert_eq!(hmac.timestamp.as_ref().map(|check| check.tolerance_secs), Some(300));
        let mapping = &file.webhook.mappings[0];
        assert_eq!(
            mapping.occurred_at.as_ref().map(|time| time.format),
            Some(TimeFormat::Naive {
                offset: FixedOffset::east_opt(7200).unwrap()
            })
        );
        assert_eq!(file.write[&EntityType::new("product")].money, MoneyForm::Number);
    }

    #[test]
    fn unknown_scheme_names_line_and_column() {
        let error = parse(&MINIMAL.replace("hmac-sha256", "hmac-md5")).unwrap_err();
        assert_eq!((error.line, error.column), (4, 10));
        assert!(
            error
                .to_string()
                .starts_with("test.toml:4:10: unknown signature scheme"),
            "{error}"
        );
    }

    #[test]
    fn signed_without_body_is_rejected() {
        let error = parse(&MINIMAL.replace("{header:X-Timestamp}.{body}", "{header:X-Timestamp}")).unwrap_err();
        assert_eq!(error.line, 6);
        assert!(error.message.contains("must contain {body}"), "{error}");
    }

    #[test]
    fn unknown_signed_placeholder_is_rejected() {
        let error = parse(&MINIMAL.replace("{header:X-Timestamp}.", "{timestamp}.")).unwrap_err();
        assert!(error.message.contains("{timestamp}"), "{error}");
    }

    #[test]
    fn pointer_without_slash_names_position() {
        let error = parse(&MINIMAL.replace("key = \"/sku\"", "key = \"sku\"")).unwrap_err();
        assert_eq!((error.line, error.column), (11, 7));
        assert!(error.message.contains("invalid JSON pointer \"sku\""), "{error}");
    }

    #[test]
    fn unknown_url_placeholder_is_rejected() {
        let error = parse(&MINIMAL.replace("{base_url}/items/{id}", "{base_url}/items/{sku}")).unwrap_err();
        assert_eq!(error.line, 16);
        assert!(error.message.contains("unknown placeholder {sku}"), "{error}");
    }

    #[test]
    fn invalid_offset_is_rejected() {
        let error = parse(&MINIMAL.replace("+02:00", "CEST")).unwrap_err();
        assert_eq!(error.line, 12);
        assert!(error.message.contains("utc_offset"), "{error}");
    }

    #[test]
    fn unknown_key_is_rejected() {
        let error = parse(&MINIMAL.replace("timestamp_header", "timestamp_headr")).unwrap_err();
        assert!(error.message.contains("timestamp_headr"), "{error}");
        assert_eq!(error.line, 7);
    }

    #[test]
    fn several_entities_need_a_topic() {
        let text = MINIMAL.replace(
            "[write.product]",
            "[[webhook.entities]]\nentity = \"order\"\nkey = \"/id\"\nfields = {}\n\n[write.product]",
        );
        let error = parse(&text).unwrap_err();
        assert!(error.message.contains("no [webhook.topic]"), "{error}");
    }

    #[test]
    fn inserted_needs_deleted() {
        let text = MINIMAL.replace("key = \"/sku\"", "inserted = \"/Inserted\"\nkey = \"/sku\"");
        let error = parse(&text).unwrap_err();
        assert!(error.message.contains("both `inserted` and `deleted`"), "{error}");
    }

    #[test]
    fn shipped_examples_parse() {
        for name in ["erpnext.toml", "acumatica.toml"] {
            let path = format!("{}/../../connectors/{name}", env!("CARGO_MANIFEST_DIR"));
            let text = std::fs::read_to_string(&path).unwrap();
            if let Err(error) = ConnectorFile::parse(name, &text) {
                panic!("{error}");
            }
        }
    }
}
