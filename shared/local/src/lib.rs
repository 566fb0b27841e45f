//! The whole fieldsync pipeline in one process, for the demo, the dev stack and end-to-end tests.
//!
//! [`LocalStack`] starts the two sandboxes (a Shopify-like storefront and an ERP), an HTTP server
//! on 127.0.0.1 that hands each webhook to the same receiver handler the Lambda functions run,
//! the embedded FIFO queue and record store, and a worker that feeds queue batches to the
//! reconciler handler as SQS events. The sandboxes send their webhooks to that server, including
//! the ones caused by fieldsync's own writes, so loop suppression runs for real.

mod receivers;
mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fieldsync_core::formats::shopify::ShopifyFormat;
use fieldsync_core::formats::signed_json::SignedJsonFormat;
use fieldsync_core::ports::{Queue, RecordStore, SystemClient};
use fieldsync_core::{Decision, Record, RecordKey, Rules, Secret, SystemId};
use fieldsync_embedded::{EmbeddedQueue, EmbeddedStore, QueueSettings};
use fieldsync_lambda::config::{Connection, ConnectorKind};
use fieldsync_lambda::receiver::Receiver;
use fieldsync_pipeline::Reconciler;
use fieldsync_sandbox::erp::{ErpConfig, ErpHandle, ErpSandbox};
use fieldsync_sandbox::storefront::{StorefrontConfig, StorefrontHandle, StorefrontSandbox};
use tokio::task::JoinHandle;

pub use receivers::ReceiverServer;
pub use worker::WorkerActivity;

/// The demo's fake credentials. Nothing here reaches a real platform.
pub const STOREFRONT_TOKEN: &str = "shpat_local_demo_token";
pub const STOREFRONT_WEBHOOK_SECRET: &str = "shpss_local_demo_secret";
pub const ERP_TOKEN: &str = "erp_local_demo_token";
pub const ERP_WEBHOOK_SECRET: &str = "erp_local_demo_secret";

/// How long the local queue hides a message that failed before delivering it again.
const LOCAL_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(1);

/// A failure to start or drive the local stack.
#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("sandbox failed to start")]
    Sandbox(#[from] fieldsync_sandbox::SandboxError),
    #[error("receiver server failed to start on 127.0.0.1:{port}")]
    Bind {
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Config(#[from] fieldsync_lambda::config::ConfigError),
    #[error(transparent)]
    Store(#[from] fieldsync_core::ports::StoreError),
    #[error("the pipeline did not settle within {seconds} s")]
    NotSettled { seconds: u64 },
}

/// Options for [`LocalStack::start`].
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub rules: Rules,
    /// Port of the receiver server on 127.0.0.1; 0 picks a free one.
    pub receiver_port: u16,
    /// Queue settings, such as the receive count after which messages go to the dead-letter queue.
    pub queue: QueueSettings,
}

impl LocalOptions {
    /// Options for `rules` with an ephemeral port and a 1 s visibility timeout.
    pub fn new(rules: Rules) -> Self {
        let queue = QueueSettings {
            visibility_timeout: LOCAL_VISIBILITY_TIMEOUT,
            ..QueueSettings::default()
        };
        Self {
            rules,
            receiver_port: 0,
            queue,
        }
    }
}

/// A running local pipeline.
#[derive(Debug)]
pub struct LocalStack {
    pub storefront: StorefrontHandle,
    pub erp: ErpHandle,
    pub store: Arc<EmbeddedStore>,
    pub queue: Arc<EmbeddedQueue>,
    pub rules: Arc<Rules>,
    pub receivers: ReceiverServer,
    worker: JoinHandle<()>,
    activity: Arc<WorkerActivity>,
}

impl LocalStack {
    /// Starts the sandboxes, the receiver server and the reconciler worker.
    pub async fn start(options: LocalOptions) -> Result<Self, LocalError> {
        let rules = Arc::new(options.rules);
        let storefront = StorefrontSandbox::start(StorefrontConfig {
            access_token: STOREFRONT_TOKEN.to_owned(),
            webhook_secret: STOREFRONT_WEBHOOK_SECRET.to_owned(),
            ..StorefrontConfig::default()
        })
        .await?;
        let erp = ErpSandbox::start(ErpConfig {
            api_token: ERP_TOKEN.to_owned(),
            webhook_secret: ERP_WEBHOOK_SECRET.to_owned(),
            ..ErpConfig::default()
        })
        .await?;

        let store = Arc::new(EmbeddedStore::new());
        let queue = Arc::new(EmbeddedQueue::new(options.queue));
        let receivers = receivers_for(&rules, queue.clone());
        let receivers = ReceiverServer::start(options.receiver_port, receivers).await?;
        storefront.set_webhook_url(Some(receivers.url("storefront")));
        erp.set_webhook_url(Some(receivers.url("erp")));

        let mut systems: BTreeMap<SystemId, Arc<dyn SystemClient>> = BTreeMap::new();
        let connections = [
            (
                SystemId::new("storefront"),
                ConnectorKind::Shopify,
                storefront.base_url(),
                STOREFRONT_TOKEN,
            ),
            (SystemId::new("erp"), ConnectorKind::ErpRest, erp.base_url(), ERP_TOKEN),
        ];
        for (system, connector, base_url, token) in connections {
            let connection = Connection {
                system: system.clone(),
                connector,
                base_url,
                token: Secret::new(token),
            };
            systems.insert(system, connection.client()?);
        }
        let store_port: Arc<dyn RecordStore> = store.clone();
        let reconciler = Reconciler::new(rules.clone(), store_port, systems);
        let activity = Arc::new(WorkerActivity::default());
        let worker = tokio::spawn(worker::run(queue.clone(), reconciler, activity.clone()));

        Ok(Self {
            storefront,
            erp,
            store,
            queue,
            rules,
            receivers,
            worker,
            activity,
        })
    }

    /// Waits until no webhook delivery, queued message or reconciler batch is pending, and
    /// stays so for a short quiet period, since a write can cause a webhook a moment later.
    pub async fn settle(&self, timeout: Duration) -> Result<(), LocalError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let quiet = Duration::from_millis(150);
        loop {
            if tokio::time::Instant::now() > deadline {
                return Err(LocalError::NotSettled {
                    seconds: timeout.as_secs(),
                });
            }
            self.storefront.wait_for_deliveries_idle().await;
            self.erp.wait_for_deliveries_idle().await;
            let idle = self.queue.is_empty() && !self.activity.busy() && self.receivers.idle_for() >= quiet;
            if idle && self.activity.idle_for() >= quiet {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Loads a record of the demo integration.
    pub async fn record(&self, entity: &str, key: &str) -> Result<Option<Record>, LocalError> {
        Ok(self
            .store
            .load(&RecordKey::new(self.rules.integration.as_str(), entity, key))
            .await?)
    }

    /// Returns a record's decision log.
    pub async fn decisions(&self, entity: &str, key: &str) -> Result<Vec<Decision>, LocalError> {
        Ok(self
            .store
            .decisions(&RecordKey::new(self.rules.integration.as_str(), entity, key))
            .await?)
    }

    /// Returns how many messages went to the dead-letter queue.
    pub async fn dead_letters(&self) -> usize {
        self.queue
            .dead_letters()
            .await
            .map(|messages| messages.len())
            .unwrap_or_default()
    }

    /// Stops the worker, the receiver server and the sandboxes.
    pub async fn shutdown(self) {
        self.worker.abort();
        self.receivers.shutdown();
        self.storefront.shutdown().await;
        self.erp.shutdown().await;
    }
}

/// Builds one receiver per side, as the two Lambda functions are configured.
fn receivers_for(rules: &Rules, queue: Arc<EmbeddedQueue>) -> BTreeMap<String, Receiver> {
    let queue: Arc<dyn Queue> = queue;
    let storefront = ShopifyFormat {
        integration: rules.integration.clone(),
        source: SystemId::new("storefront"),
        secrets: vec![Secret::new(STOREFRONT_WEBHOOK_SECRET)],
    };
    let erp = SignedJsonFormat {
        integration: rules.integration.clone(),
        source: SystemId::new("erp"),
        secrets: vec![Secret::new(ERP_WEBHOOK_SECRET)],
        tolerance: chrono::Duration::seconds(300),
    };
    BTreeMap::from([
        (
            "storefront".to_owned(),
            Receiver {
                format: Arc::new(storefront),
                queue: queue.clone(),
            },
        ),
        (
            "erp".to_owned(),
            Receiver {
                format: Arc::new(erp),
                queue,
            },
        ),
    ])
}
