//! An HTTP server on 127.0.0.1 that passes each webhook to the Lambda receiver handler.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{to_bytes, Body as AxumBody};
use axum::extract::{Path, Request, State};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use fieldsync_lambda::receiver::{handle, Receiver};
use lambda_http::RequestExt as _;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::error;

use crate::LocalError;

/// Bodies above this size are refused, as API Gateway refuses payloads over 10 MB.
const MAX_BODY_BYTES: usize = 10 * 1024 * 1024;

/// The running receiver server.
#[derive(Debug)]
pub struct ReceiverServer {
    base_url: String,
    task: JoinHandle<()>,
    last_request: Arc<Mutex<Instant>>,
}

#[derive(Clone)]
struct ServerState {
    receivers: Arc<BTreeMap<String, Receiver>>,
    last_request: Arc<Mutex<Instant>>,
}

impl ReceiverServer {
    /// Serves `POST /webhooks/<side>` for each named receiver on 127.0.0.1:`port`, and the
    /// deployed shape `POST /webhooks/<integration>/<side>`, whose integration the receiver
    /// checks as it does behind API Gateway.
    pub async fn start(port: u16, receivers: BTreeMap<String, Receiver>) -> Result<Self, LocalError> {
        let listener = TcpListener::bind(("127.0.0.1", port))
            .await
            .map_err(|source| LocalError::Bind { port, source })?;
        let address = listener
            .local_addr()
            .map_err(|source| LocalError::Bind { port, source })?;
        let last_request = Arc::new(Mutex::new(Instant::now()));
        let state = ServerState {
            receivers: Arc::new(receivers),
            last_request: last_request.clone(),
        };
        let app = Router::new()
            .route("/webhooks/{side}", post(receive))
            .route("/webhooks/{integration}/{side}", post(receive_deployed_path))
            .with_state(state);
        let task = tokio::spawn(async move {
            if let Err(error) = axum::serve(listener, app).await {
                error!(error = %error, "receiver server stopped");
            }
        });
        Ok(Self {
            base_url: format!("http://{address}"),
            task,
            last_request,
        })
    }

    /// Returns the webhook URL of one side, such as `http://127.0.0.1:8080/webhooks/erp`.
    pub fn url(&self, side: &str) -> String {
        format!("{}/webhooks/{side}", self.base_url)
    }

    /// Returns how long ago the last webhook arrived.
    pub fn idle_for(&self) -> Duration {
        self.last_request.lock().map(|at| at.elapsed()).unwrap_or_default()
    }

    /// Stops serving.
    pub fn shutdown(&self) {
        self.task.abort();
    }
}

async fn receive(State(state): State<ServerState>, Path(side): Path<String>, request: Request) -> Response {
    serve(&state, &side, None, request).await
}

async fn receive_deployed_path(
    State(state): State<ServerState>,
    Path((integration, side)): Path<(String, String)>,
    request: Request,
) -> Response {
    serve(&state, &side, Some(integration), request).await
}

/// Hands one request to the receiver of `side` as a Lambda HTTP event, with the integration
/// path parameter when the URL named one.
async fn serve(state: &ServerState, side: &str, integration: Option<String>, request: Request) -> Response {
    if let Ok(mut at) = state.last_request.lock() {
        *at = Instant::now();
    }
    let Some(receiver) = state.receivers.get(side) else {
        return (axum::http::StatusCode::NOT_FOUND, format!("no receiver for {side:?}")).into_response();
    };

    let (parts, body) = request.into_parts();
    let Ok(bytes) = to_bytes(body, MAX_BODY_BYTES).await else {
        return (axum::http::StatusCode::PAYLOAD_TOO_LARGE, "body too large").into_response();
    };
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .map(|query| {
            query
                .split('&')
                .filter_map(|pair| pair.split_once('=').or(Some((pair, ""))))
                .map(|(name, value)| (percent_decode(name), percent_decode(value)))
                .collect()
        })
        .unwrap_or_default();
    let mut lambda_request = lambda_http::Request::new(lambda_http::Body::Binary(bytes.to_vec()));
    *lambda_request.method_mut() = parts.method;
    *lambda_request.uri_mut() = parts.uri;
    *lambda_request.headers_mut() = parts.headers;
    let mut lambda_request = lambda_request.with_query_string_parameters(query);
    if let Some(integration) = integration {
        let parameters = HashMap::from([("integration".to_owned(), integration)]);
        lambda_request = lambda_request.with_path_parameters(parameters);
    }

    let response = match handle(receiver, lambda_request).await {
        Ok(response) => response,
        Err(failure) => {
            error!(side, error = %failure, "receiver handler failed");
            return (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response();
        }
    };
    let (parts, body) = response.into_parts();
    Response::from_parts(parts, AxumBody::from(body.as_ref().to_vec()))
}

/// Decodes `%XX` escapes and keeps `+` as it is. Query strings of webhook URLs carry tokens, not
/// form data: a Business Central validation token sent with a raw `+` must be echoed with it,
/// and a space in a token would be sent as `%20`.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = match bytes.get(index..index + 3) {
            Some([b'%', high, low]) => hex_value(*high).zip(hex_value(*low)),
            _ => None,
        };
        match escaped {
            Some((high, low)) => {
                decoded.push(high * 16 + low);
                index += 3;
            }
            None => {
                decoded.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}

fn hex_value(digit: u8) -> Option<u8> {
    char::from(digit)
        .to_digit(16)
        .and_then(|value| u8::try_from(value).ok())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use fieldsync_core::formats::signed_json::SignedJsonFormat;
    use fieldsync_core::{Secret, SystemId};
    use fieldsync_embedded::{EmbeddedQueue, QueueSettings};
    use fieldsync_lambda::metrics::MetricsSink;

    use super::*;

    #[tokio::test]
    async fn deployed_path_checks_the_integration() {
        let receiver = Receiver {
            integration: "demo".to_owned(),
            format: Arc::new(SignedJsonFormat {
                integration: "demo".to_owned(),
                source: SystemId::new("erp"),
                secrets: vec![Secret::new("s")],
                tolerance: chrono::Duration::seconds(300),
            }),
            queue: Arc::new(EmbeddedQueue::new(QueueSettings::default())),
            metrics: MetricsSink::Off,
        };
        let server = ReceiverServer::start(0, BTreeMap::from([("erp".to_owned(), receiver)]))
            .await
            .unwrap();
        let client = reqwest::Client::new();
        let status = |path: &'static str| {
            let request = client.post(format!("{}{path}", server.base_url)).body("{}");
            async move { request.send().await.unwrap().status().as_u16() }
        };

        // The signature is missing, so a URL that reaches the receiver gets 401.
        assert_eq!(status("/webhooks/erp").await, 401);
        assert_eq!(status("/webhooks/demo/erp").await, 401);
        assert_eq!(status("/webhooks/acme/erp").await, 404, "another integration");
        assert_eq!(status("/webhooks/demo/pim").await, 404, "no such side");
        server.shutdown();
    }

    #[test]
    fn percent_decode_keeps_plus_signs() {
        assert_eq!(percent_decode("Xk2%2Bab%2F9%3D%3D"), "Xk2+ab/9==");
        assert_eq!(percent_decode("Xk2+ab/9=="), "Xk2+ab/9==");
        assert_eq!(percent_decode("a%20b"), "a b");
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%é"), "%é");
    }
}
