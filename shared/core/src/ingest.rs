//! The webhook receiver's work on a request before any I/O: verify, then normalize.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};

use crate::change::ChangeSet;

/// A webhook request as received: headers (names lowercased), query parameters and the raw body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundRequest {
    pub headers: BTreeMap<String, String>,
    pub query: BTreeMap<String, String>,
    pub body: Vec<u8>,
    pub received_at: DateTime<Utc>,
}

impl InboundRequest {
    /// Returns a header value by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(&name.to_ascii_lowercase()).map(String::as_str)
    }
}

/// The result of normalizing a verified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Normalized {
    /// Field changes to enqueue, one per record the payload touches.
    Changes(Vec<ChangeSet>),
    /// Thin notifications whose records are read from the sender before deciding.
    Notices(Vec<crate::change::Notice>),
    /// A topic fieldsync does not sync: acknowledged so the sender stops retrying, and logged.
    Ignored { topic: String },
}

/// The response to a subscription handshake, sent as `200 text/plain` before any other check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    pub body: String,
}

/// The reason a request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    /// The signature is missing or wrong, or the timestamp is outside the tolerance.
    #[error("unauthorized: {reason}")]
    Unauthorized { reason: String },
    /// The body or a required header cannot be read.
    #[error("malformed: {reason}")]
    Malformed { reason: String },
}

impl Rejection {
    /// Returns a short, bounded label for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Rejection::Unauthorized { .. } => "unauthorized",
            Rejection::Malformed { .. } => "malformed",
        }
    }
}

/// A platform's webhook format: how its signature is checked and its payloads read.
pub trait WebhookFormat: Send + Sync + std::fmt::Debug {
    /// Returns the system this format receives from, as named in the rules.
    fn source(&self) -> &crate::ids::SystemId;

    /// Checks the signature on the raw bytes. Called before anything parses the body.
    fn verify(&self, request: &InboundRequest) -> Result<(), Rejection>;

    /// Reads a verified request into field changes.
    fn normalize(&self, request: &InboundRequest) -> Result<Normalized, Rejection>;

    /// Returns the HTTP status for a request whose signature failed. 401 unless the sender
    /// punishes 4xx responses (Business Central deletes the subscription).
    fn unauthorized_status(&self) -> u16 {
        401
    }

    /// Returns the HTTP status for a request that cannot be read. 400 unless the sender punishes
    /// 4xx responses.
    fn malformed_status(&self) -> u16 {
        400
    }

    /// Returns the response to a subscription handshake, which some senders make on the
    /// notification URL before the first notification. Checked before the signature.
    fn handshake(&self, _request: &InboundRequest) -> Option<Handshake> {
        None
    }
}

/// Verifies, then normalizes. The body is not parsed unless the signature matched.
pub fn accept(format: &dyn WebhookFormat, request: &InboundRequest) -> Result<Normalized, Rejection> {
    format.verify(request)?;
    format.normalize(request)
}

/// Parses an RFC 3339 timestamp with any offset into a UTC instant.
pub fn parse_offset_time(text: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(text)
        .ok()
        .map(|time| time.with_timezone(&Utc))
}
