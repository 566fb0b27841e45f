//! Starting and stopping an axum server on an ephemeral local port.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Mutex;

use axum::Router;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::error::SandboxError;

/// A server task bound to `127.0.0.1` and the channel that stops it.
#[derive(Debug)]
pub(crate) struct RunningServer {
    address: SocketAddr,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    task: Mutex<Option<JoinHandle<()>>>,
}

impl RunningServer {
    /// Binds an ephemeral port on the loopback interface and serves `router` on it.
    pub(crate) async fn start(router: Router, name: &'static str) -> Result<Self, SandboxError> {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .map_err(|source| SandboxError::Bind { source })?;
        let address = listener.local_addr().map_err(|source| SandboxError::Bind { source })?;
        let (stop, stopped) = oneshot::channel::<()>();

        let task = tokio::spawn(async move {
            let shutdown = async {
                // A dropped sender also stops the server.
                let _ = stopped.await;
            };
            if let Err(error) = axum::serve(listener, router).with_graceful_shutdown(shutdown).await {
                tracing::error!(sandbox = name, error = %error, "sandbox server failed");
            }
        });
        tracing::info!(sandbox = name, %address, "sandbox listening");

        Ok(Self {
            address,
            stop: Mutex::new(Some(stop)),
            task: Mutex::new(Some(task)),
        })
    }

    /// Returns `http://127.0.0.1:<port>`.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.address)
    }

    /// Stops accepting connections and waits for open requests to finish.
    pub(crate) async fn shutdown(&self) {
        let stop = self.stop.lock().ok().and_then(|mut stop| stop.take());
        if let Some(stop) = stop {
            let _ = stop.send(());
        }
        let task = self.task.lock().ok().and_then(|mut task| task.take());
        if let Some(task) = task {
            let _ = task.await;
        }
    }
}
