//! Helpers shared by the connector tests: writes, a webhook receiver and HMAC checks.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use base64::Engine as _;
use chrono::Utc;
use fieldsync_core::{FieldName, FieldValue, OutboundWrite, RecordKey, SystemId, WriteKind};
use hmac::Mac as _;

/// Builds an outbound write for `entity`/`key` with the given fields.
pub fn write(
    target: &str,
    entity: &str,
    key: &str,
    kind: WriteKind,
    target_id: Option<&str>,
    fields: Vec<(&str, FieldValue)>,
) -> OutboundWrite {
    OutboundWrite {
        id: 0,
        claimed_until: None,
        target: SystemId::new(target),
        record: RecordKey::new("demo", entity, key),
        kind,
        target_id: target_id.map(str::to_owned),
        fields: fields
            .into_iter()
            .map(|(name, value)| (FieldName::new(name), value))
            .collect::<BTreeMap<_, _>>(),
        previous: Default::default(),
        changed_at: Utc::now(),
        parked_on: Vec::new(),
    }
}

pub fn money(text: &str) -> FieldValue {
    FieldValue::Money(text.parse().unwrap())
}

pub fn text(value: &str) -> FieldValue {
    FieldValue::Text(value.to_owned())
}

/// One request the receiver got, with the raw body bytes.
#[derive(Debug, Clone)]
pub struct Received {
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// A local webhook endpoint that records requests and fails the first `fail_first` with 500.
#[derive(Debug, Clone)]
pub struct Receiver {
    pub url: String,
    received: Arc<Mutex<Vec<Received>>>,
}

#[derive(Clone)]
struct ReceiverState {
    received: Arc<Mutex<Vec<Received>>>,
    fail_first: Arc<AtomicU32>,
}

impl Receiver {
    pub async fn start(fail_first: u32) -> Self {
        let received = Arc::new(Mutex::new(Vec::new()));
        let state = ReceiverState {
            received: Arc::clone(&received),
            fail_first: Arc::new(AtomicU32::new(fail_first)),
        };
        let router = Router::new().route("/hooks", post(receive)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Self { url, received }
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

async fn receive(State(state): State<ReceiverState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    state.received.lock().unwrap().push(Received {
        headers,
        body: body.to_vec(),
    });
    let failing = state
        .fail_first
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| left.checked_sub(1))
        .is_ok();
    if failing {
        StatusCode::INTERNAL_SERVER_ERROR
    } else {
        StatusCode::OK
    }
}

/// Computes base64 HMAC-SHA256 over the concatenated parts.
pub fn hmac_base64(secret: &str, parts: &[&[u8]]) -> String {
    let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    for part in parts {
        mac.update(part);
    }
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .unwrap_or_else(|| panic!("header {name} missing"))
        .to_str()
        .unwrap()
}
