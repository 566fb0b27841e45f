//! HTTP plumbing shared by the clients: building the client and classifying failed responses.

use std::time::Duration;

use fieldsync_core::ports::{BoxError, SystemError};
use fieldsync_core::{RecordKey, SystemId};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;

/// A connector that could not be built from its configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The base URL is not an absolute `http` or `https` URL.
    #[error("invalid base URL {url:?}: expected an absolute http or https URL")]
    InvalidBaseUrl { url: String },
    /// The HTTP client could not be built.
    #[error("failed to build the HTTP client")]
    HttpClient {
        #[source]
        source: reqwest::Error,
    },
}

/// A response status that made a call fail, kept as the source of `SystemError::Unavailable`.
#[derive(Debug, thiserror::Error)]
#[error("HTTP {status}")]
pub(crate) struct StatusError {
    pub(crate) status: StatusCode,
}

/// A response body that did not have the documented shape.
#[derive(Debug, thiserror::Error)]
#[error("unexpected response: {0}")]
pub(crate) struct UnexpectedResponse(pub(crate) String);

pub(crate) fn build_client(
    base_url: &str,
    timeout: Duration,
) -> Result<(reqwest::Url, reqwest::Client), ConnectorError> {
    let url = reqwest::Url::parse(base_url)
        .ok()
        .filter(|url| matches!(url.scheme(), "http" | "https") && url.has_host())
        .ok_or_else(|| ConnectorError::InvalidBaseUrl {
            url: base_url.to_owned(),
        })?;
    let client = reqwest::Client::builder()
        .timeout(timeout)
        .build()
        .map_err(|source| ConnectorError::HttpClient { source })?;
    Ok((url, client))
}

/// Reads `Retry-After` given in seconds. An HTTP-date value is not read.
pub(crate) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

pub(crate) fn unavailable(system: &SystemId, source: impl Into<BoxError>) -> SystemError {
    SystemError::Unavailable {
        system: system.clone(),
        source: source.into(),
    }
}

pub(crate) fn rejected(system: &SystemId, record: &RecordKey, message: impl Into<String>) -> SystemError {
    SystemError::Rejected {
        system: system.clone(),
        record: record.clone(),
        message: message.into(),
    }
}

/// Classifies a failed HTTP response by status: 429 is throttling, 412 a lost conditional write,
/// 5xx (and any other non-4xx status) a failure of the system, and other 4xx an invalid write.
pub(crate) fn status_error(
    system: &SystemId,
    record: &RecordKey,
    status: StatusCode,
    headers: &HeaderMap,
    message: Option<String>,
) -> SystemError {
    match status {
        StatusCode::TOO_MANY_REQUESTS => SystemError::RateLimited {
            system: system.clone(),
            retry_after: retry_after(headers),
        },
        StatusCode::PRECONDITION_FAILED => SystemError::Conflict {
            system: system.clone(),
            record: record.clone(),
        },
        // A refused token or permission is fixed by an operator, not by changing the values, so
        // the write stays queued and its retries end in the dead-letter queue for a redrive
        // instead of being dropped.
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => unavailable(system, StatusError { status }),
        status if status.is_client_error() => {
            let detail = message.map(|message| format!(": {message}")).unwrap_or_default();
            rejected(system, record, format!("HTTP {status}{detail}"))
        }
        status => unavailable(system, StatusError { status }),
    }
}
