//! The whole fieldsync pipeline in one process, for the demo, the dev stack and end-to-end tests.
//!
//! [`LocalStack`] starts the two sandboxes (a Shopify-like storefront and an ERP), an HTTP server
//! on 127.0.0.1 that hands each webhook to the same receiver handler the Lambda functions run,
//! the embedded FIFO queue and record store, and a worker that feeds queue batches to the
//! reconciler handler as SQS events. The sandboxes send their webhooks to that server, including
//! the ones caused by fieldsync's own writes, so loop suppression runs for real.
//!
//! With [`LocalOptions::erp_connector`] set, the `erp` system is an ERPNext sandbox instead, read
//! and written through the generic webhook format and REST client of that connector file. With
//! [`LocalOptions::storefront_platform`] set to BigCommerce or WooCommerce, the `storefront`
//! system is that platform's sandbox, and the Shopify-like sandbox runs idle.

mod receivers;
mod worker;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use fieldsync_aws::{DynamoStore, SqsQueue};
use fieldsync_connectors::bigcommerce::{BigCommerceClient, BigCommerceConfig as BigCommerceClientConfig};
use fieldsync_connectors::business_central::{BusinessCentralClient, BusinessCentralConfig};
use fieldsync_connectors::netsuite::{NetSuiteClient, NetSuiteConfig as NetSuiteClientConfig};
use fieldsync_connectors::woocommerce::{WooCommerceClient, WooCommerceConfig as WooCommerceClientConfig};
use fieldsync_core::formats::bigcommerce::BigCommerceFormat;
use fieldsync_core::formats::business_central::BusinessCentralFormat;
use fieldsync_core::formats::generic::GenericFormat;
use fieldsync_core::formats::netsuite::NetSuiteFormat;
use fieldsync_core::formats::shopify::ShopifyFormat;
use fieldsync_core::formats::signed_json::SignedJsonFormat;
use fieldsync_core::formats::woocommerce::WooCommerceFormat;
use fieldsync_core::ports::{ConcurrencyGovernor, Queue, RecordStore, SystemClient};
use fieldsync_core::{ConnectorFile, Decision, Record, RecordKey, Rules, Secret, SystemId};
use fieldsync_embedded::{EmbeddedGovernor, EmbeddedQueue, EmbeddedStore, QueueSettings};
use fieldsync_lambda::config::{Connection, ConnectorKind};
use fieldsync_lambda::metrics::MetricsSink;
use fieldsync_lambda::receiver::Receiver;
use fieldsync_lambda::subscriptions::{ensure_subscriptions, subscribed_collections, Subscriber};
use fieldsync_pipeline::Reconciler;
use fieldsync_sandbox::bigcommerce::{
    BigCommerceConfig as BigCommerceSandboxConfig, BigCommerceHandle, BigCommerceSandbox,
};
use fieldsync_sandbox::business_central::{
    BusinessCentralConfig as BusinessCentralSandboxConfig, BusinessCentralHandle, BusinessCentralSandbox,
};
use fieldsync_sandbox::erp::{ErpConfig, ErpHandle, ErpSandbox};
use fieldsync_sandbox::erpnext::{ErpNextConfig, ErpNextHandle, ErpNextSandbox};
use fieldsync_sandbox::netsuite::{NetSuiteConfig as NetSuiteSandboxConfig, NetSuiteHandle, NetSuiteSandbox};
use fieldsync_sandbox::storefront::{StorefrontConfig, StorefrontHandle, StorefrontSandbox, ThrottleConfig};
use fieldsync_sandbox::woocommerce::{
    WooCommerceConfig as WooCommerceSandboxConfig, WooCommerceHandle, WooCommerceSandbox,
};
use tokio::task::JoinHandle;

pub use receivers::ReceiverServer;
pub use worker::WorkerActivity;

/// The demo's fake credentials. Nothing here reaches a real platform.
pub const STOREFRONT_TOKEN: &str = "shpat_local_demo_token";
pub const STOREFRONT_WEBHOOK_SECRET: &str = "shpss_local_demo_secret";
pub const ERP_TOKEN: &str = "erp_local_demo_token";
pub const ERP_WEBHOOK_SECRET: &str = "erp_local_demo_secret";
pub const BUSINESS_CENTRAL_TOKEN: &str = "bc_local_demo_token";
pub const BUSINESS_CENTRAL_CLIENT_STATE: &str = "bc_local_demo_client_state";
pub const ERPNEXT_API_KEY: &str = "erpnext_local_demo_key";
pub const ERPNEXT_API_SECRET: &str = "erpnext_local_demo_secret";
pub const ERPNEXT_WEBHOOK_SECRET: &str = "erpnext_local_demo_webhook_secret";
pub const BIGCOMMERCE_TOKEN: &str = "bc_local_demo_token";
pub const BIGCOMMERCE_CLIENT_SECRET: &str = "bc_local_demo_client_secret";
pub const WOOCOMMERCE_CONSUMER_KEY: &str = "ck_local_demo_key";
pub const WOOCOMMERCE_CONSUMER_SECRET: &str = "cs_local_demo_secret";
pub const WOOCOMMERCE_WEBHOOK_SECRET: &str = "wc_local_demo_webhook_secret";
pub const NETSUITE_TOKEN: &str = "ns_local_demo_token";
pub const NETSUITE_WEBHOOK_SECRET: &str = "ns_local_demo_outbox_secret";

/// The NetSuite connector's default concurrency limit, the sandbox's account limit.
const NETSUITE_CONCURRENCY_LIMIT: u32 = 5;

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
    #[error("emulator set-up failed")]
    Emulator(#[from] fieldsync_aws::SetupError),
    #[error(transparent)]
    Queue(#[from] fieldsync_core::ports::QueueError),
    #[error("the Business Central subscription could not be created")]
    Subscription(#[from] fieldsync_lambda::subscriptions::RenewError),
}

/// The store and queue behind the local stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    /// The in-process store and queue.
    Embedded,
    /// DynamoDB and SQS on emulators (DynamoDB Local and moto, see `infra/emulators.sh`), with a
    /// fresh table and queue pair per run.
    Emulators {
        dynamodb_endpoint: String,
        sqs_endpoint: String,
    },
}

/// The platform behind the `storefront` system.
#[derive(Debug, Clone, Default)]
pub enum StorefrontPlatform {
    /// The Shopify-like sandbox.
    #[default]
    Shopify,
    /// A BigCommerce sandbox; its token and client secret are the demo's.
    BigCommerce(BigCommerceSandboxConfig),
    /// A WooCommerce sandbox; its keys and webhook secret are the demo's.
    WooCommerce(WooCommerceSandboxConfig),
}

/// Options for [`LocalStack::start`].
#[derive(Debug, Clone)]
pub struct LocalOptions {
    pub rules: Rules,
    /// Port of the receiver server on 127.0.0.1; 0 picks a free one.
    pub receiver_port: u16,
    /// Queue settings, such as the receive count after which messages go to the dead-letter queue.
    pub queue: QueueSettings,
    pub backend: Backend,
    /// The connector file of an ERPNext-like `erp` system; `None` uses the signed-JSON ERP.
    pub erp_connector: Option<Arc<ConnectorFile>>,
    /// Settings of the ERPNext sandbox when `erp_connector` is set; its credentials are replaced
    /// with the demo's.
    pub erpnext: ErpNextConfig,
    /// Settings of a Business Central sandbox that is the `erp` system instead, reached through
    /// the Business Central connector and a webhook subscription. Its token is the demo's.
    pub business_central: Option<BusinessCentralSandboxConfig>,
    /// The storefront sandbox's query cost bucket.
    pub storefront_throttle: ThrottleConfig,
    /// The platform behind the `storefront` system.
    pub storefront_platform: StorefrontPlatform,
    /// Settings of a NetSuite sandbox that is the `erp` system instead, delivering its signed
    /// outbox and written through the NetSuite connector. Its token and secret are the demo's.
    pub netsuite: Option<NetSuiteSandboxConfig>,
    /// Requests the NetSuite connector may have open at once, across every reconciler worker.
    pub netsuite_concurrency_limit: u32,
    /// Reconciler workers running at once, like concurrent Lambda instances. Each takes its own
    /// batches, and the queue keeps each message group in order across them.
    pub workers: usize,
    /// Messages per batch a worker takes.
    pub batch_size: usize,
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
            backend: Backend::Embedded,
            erp_connector: None,
            erpnext: ErpNextConfig::default(),
            business_central: None,
            storefront_throttle: ThrottleConfig::default(),
            storefront_platform: StorefrontPlatform::Shopify,
            netsuite: None,
            netsuite_concurrency_limit: NETSUITE_CONCURRENCY_LIMIT,
            workers: 1,
            batch_size: worker::DEFAULT_BATCH_SIZE,
        }
    }
}

/// A running local pipeline.
#[derive(Debug)]
pub struct LocalStack {
    pub storefront: StorefrontHandle,
    pub erp: ErpHandle,
    /// The ERPNext sandbox that is the `erp` system when the options name a connector file.
    pub erpnext: Option<ErpNextHandle>,
    /// The Business Central sandbox that is the `erp` system when the options configure one.
    pub business_central: Option<BusinessCentralHandle>,
    /// The BigCommerce sandbox that is the `storefront` system when the options choose it.
    pub bigcommerce: Option<BigCommerceHandle>,
    /// The WooCommerce sandbox that is the `storefront` system when the options choose it.
    pub woocommerce: Option<WooCommerceHandle>,
    /// The NetSuite sandbox that is the `erp` system when the options configure one.
    pub netsuite: Option<NetSuiteHandle>,
    /// Requests the NetSuite connector keeps open at once, across every reconciler worker.
    pub netsuite_concurrency_limit: u32,
    /// The connector client of that sandbox, which also keeps its subscription.
    business_central_client: Option<BusinessCentralClient>,
    pub store: Arc<dyn RecordStore>,
    pub queue: Arc<dyn Queue>,
    backlog: Backlog,
    pub rules: Arc<Rules>,
    pub receivers: ReceiverServer,
    workers: Vec<JoinHandle<()>>,
    activity: Arc<WorkerActivity>,
}

impl LocalStack {
    /// Starts the sandboxes, the receiver server and the reconciler worker.
    pub async fn start(options: LocalOptions) -> Result<Self, LocalError> {
        let rules = Arc::new(options.rules);
        let storefront = StorefrontSandbox::start(StorefrontConfig {
            access_token: STOREFRONT_TOKEN.to_owned(),
            webhook_secret: STOREFRONT_WEBHOOK_SECRET.to_owned(),
            throttle: options.storefront_throttle,
            ..StorefrontConfig::default()
        })
        .await?;
        let erp = ErpSandbox::start(ErpConfig {
            api_token: ERP_TOKEN.to_owned(),
            webhook_secret: ERP_WEBHOOK_SECRET.to_owned(),
            ..ErpConfig::default()
        })
        .await?;
        let erpnext = match &options.erp_connector {
            Some(_) => Some(
                ErpNextSandbox::start(ErpNextConfig {
                    api_key: ERPNEXT_API_KEY.to_owned(),
                    api_secret: ERPNEXT_API_SECRET.to_owned(),
                    webhook_secret: ERPNEXT_WEBHOOK_SECRET.to_owned(),
                    ..options.erpnext.clone()
                })
                .await?,
            ),
            None => None,
        };

        let business_central = match &options.business_central {
            Some(config) => Some(
                BusinessCentralSandbox::start(BusinessCentralSandboxConfig {
                    api_token: BUSINESS_CENTRAL_TOKEN.to_owned(),
                    ..config.clone()
                })
                .await?,
            ),
            None => None,
        };

        let (bigcommerce, woocommerce) = match &options.storefront_platform {
            StorefrontPlatform::Shopify => (None, None),
            StorefrontPlatform::BigCommerce(config) => {
                let config = BigCommerceSandboxConfig {
                    access_token: BIGCOMMERCE_TOKEN.to_owned(),
                    client_secret: BIGCOMMERCE_CLIENT_SECRET.to_owned(),
                    ..config.clone()
                };
                (Some(BigCommerceSandbox::start(config).await?), None)
            }
            StorefrontPlatform::WooCommerce(config) => {
                let config = WooCommerceSandboxConfig {
                    consumer_key: WOOCOMMERCE_CONSUMER_KEY.to_owned(),
                    consumer_secret: WOOCOMMERCE_CONSUMER_SECRET.to_owned(),
                    webhook_secret: WOOCOMMERCE_WEBHOOK_SECRET.to_owned(),
                    ..config.clone()
                };
                (None, Some(WooCommerceSandbox::start(config).await?))
            }
        };

        let netsuite = match &options.netsuite {
            Some(config) => Some(
                NetSuiteSandbox::start(NetSuiteSandboxConfig {
                    api_token: NETSUITE_TOKEN.to_owned(),
                    webhook_secret: NETSUITE_WEBHOOK_SECRET.to_owned(),
                    ..config.clone()
                })
                .await?,
            ),
            None => None,
        };

        let (store, queue, backlog, governor) = open_backend(&options.backend, &options.queue).await?;
        let receivers = receivers_for(
            &rules,
            queue.clone(),
            storefront_format(&rules, &options.storefront_platform),
            erp_format(
                &rules,
                options.erp_connector.clone(),
                business_central.is_some(),
                netsuite.is_some(),
            ),
        );
        let receivers = ReceiverServer::start(options.receiver_port, receivers).await?;
        let storefront_url = Some(receivers.url("storefront"));
        match (&bigcommerce, &woocommerce) {
            (Some(bigcommerce), _) => bigcommerce.set_webhook_url(storefront_url),
            (_, Some(woocommerce)) => woocommerce.set_webhook_url(storefront_url),
            (None, None) => storefront.set_webhook_url(storefront_url),
        }
        match (&erpnext, &netsuite) {
            (Some(erpnext), _) => erpnext.set_webhook_url(Some(receivers.url("erp"))),
            (_, Some(netsuite)) => netsuite.set_webhook_url(Some(receivers.url("erp"))),
            (None, None) => erp.set_webhook_url(Some(receivers.url("erp"))),
        }

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
                location_id: None,
                inventory_mode: Default::default(),
                company_id: None,
                integration: rules.integration.clone(),
                connector_file: None,
                concurrency_limit: None,
                governor: None,
            };
            systems.insert(system, connection.client()?);
        }
        let business_central_client = match &business_central {
            Some(sandbox) => {
                let config = BusinessCentralConfig::new(
                    "erp",
                    rules.integration.clone(),
                    sandbox.base_url(),
                    sandbox.company_id(),
                    Secret::new(BUSINESS_CENTRAL_TOKEN),
                );
                let client = BusinessCentralClient::new(config).map_err(|source| {
                    fieldsync_lambda::config::ConfigError::Connector {
                        system: SystemId::new("erp"),
                        source,
                    }
                })?;
                systems.insert(SystemId::new("erp"), Arc::new(client.clone()));
                Some(client)
            }
            None => None,
        };
        if let (Some(erpnext), Some(connector)) = (&erpnext, &options.erp_connector) {
            let connection = Connection {
                system: SystemId::new("erp"),
                connector: ConnectorKind::Generic,
                base_url: erpnext.base_url(),
                token: Secret::new(format!("{ERPNEXT_API_KEY}:{ERPNEXT_API_SECRET}")),
                location_id: None,
                inventory_mode: Default::default(),
                company_id: None,
                integration: rules.integration.clone(),
                connector_file: Some(connector.clone()),
                concurrency_limit: None,
                governor: None,
            };
            systems.insert(SystemId::new("erp"), connection.client()?);
        }
        if let Some(sandbox) = &netsuite {
            let mut config = NetSuiteClientConfig::new(
                "erp",
                rules.integration.clone(),
                sandbox.base_url(),
                Secret::new(NETSUITE_TOKEN),
            );
            config.concurrency_limit = options.netsuite_concurrency_limit;
            let client =
                NetSuiteClient::new(config, governor.clone()).map_err(|source| connector_error("erp", source))?;
            systems.insert(SystemId::new("erp"), Arc::new(client));
        }
        if let Some(sandbox) = &bigcommerce {
            let config = BigCommerceClientConfig::new(
                "storefront",
                rules.integration.clone(),
                sandbox.base_url(),
                Secret::new(BIGCOMMERCE_TOKEN),
            );
            let client = BigCommerceClient::new(config).map_err(|source| connector_error("storefront", source))?;
            systems.insert(SystemId::new("storefront"), Arc::new(client));
        }
        if let Some(sandbox) = &woocommerce {
            let config = WooCommerceClientConfig::new(
                "storefront",
                rules.integration.clone(),
                sandbox.base_url(),
                Secret::new(WOOCOMMERCE_CONSUMER_KEY),
                Secret::new(WOOCOMMERCE_CONSUMER_SECRET),
            );
            let client = WooCommerceClient::new(config).map_err(|source| connector_error("storefront", source))?;
            systems.insert(SystemId::new("storefront"), Arc::new(client));
        }
        let reconciler = Reconciler::new(rules.clone(), store.clone(), systems);
        let activity = Arc::new(WorkerActivity::default());
        let workers = (0..options.workers.max(1))
            .map(|_| {
                tokio::spawn(worker::run(
                    queue.clone(),
                    backlog.clone(),
                    reconciler.clone(),
                    activity.clone(),
                    options.batch_size.max(1),
                ))
            })
            .collect();
        // Business Central checks the notification URL with a handshake before it creates the
        // subscription, so the receivers must already run.
        if let Some(client) = &business_central_client {
            let erp = SystemId::new("erp");
            let url = receivers.url("erp");
            let subscriber = Subscriber {
                integration: &rules.integration,
                system: &erp,
                notification_url: &url,
                client_state: BUSINESS_CENTRAL_CLIENT_STATE,
            };
            ensure_subscriptions(client, subscriber, &subscribed_collections(&rules), queue.as_ref()).await?;
        }

        Ok(Self {
            storefront,
            erp,
            erpnext,
            business_central,
            bigcommerce,
            woocommerce,
            netsuite,
            netsuite_concurrency_limit: options.netsuite_concurrency_limit,
            business_central_client,
            store,
            queue,
            backlog,
            rules,
            receivers,
            workers,
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
            if let Some(erpnext) = &self.erpnext {
                erpnext.wait_for_deliveries_idle().await;
            }
            if let Some(business_central) = &self.business_central {
                business_central.wait_for_deliveries_idle().await;
            }
            if let Some(bigcommerce) = &self.bigcommerce {
                bigcommerce.wait_for_deliveries_idle().await;
            }
            if let Some(woocommerce) = &self.woocommerce {
                woocommerce.wait_for_deliveries_idle().await;
            }
            if let Some(netsuite) = &self.netsuite {
                netsuite.wait_for_deliveries_idle().await;
            }
            let idle = self.pending().await == 0 && !self.activity.busy() && self.receivers.idle_for() >= quiet;
            if idle && self.activity.idle_for() >= quiet {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Renews the Business Central subscriptions, or creates each again and catches up when it
    /// is gone, as the scheduled renewer does in AWS. Returns what happened to the first
    /// subscription, the items one when the rules sync products.
    pub async fn renew_business_central_subscription(
        &self,
    ) -> Result<Option<fieldsync_connectors::business_central::Ensured>, LocalError> {
        let Some(client) = &self.business_central_client else {
            return Ok(None);
        };
        let erp = SystemId::new("erp");
        let url = self.receivers.url("erp");
        let subscriber = Subscriber {
            integration: &self.rules.integration,
            system: &erp,
            notification_url: &url,
            client_state: BUSINESS_CENTRAL_CLIENT_STATE,
        };
        let results = ensure_subscriptions(
            client,
            subscriber,
            &subscribed_collections(&self.rules),
            self.queue.as_ref(),
        )
        .await?;
        Ok(results.into_iter().map(|(_, ensured)| ensured).next())
    }

    /// Returns how many messages wait or are in flight on the queue.
    pub async fn pending(&self) -> usize {
        self.backlog.depth().await
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
        for worker in &self.workers {
            worker.abort();
        }
        self.receivers.shutdown();
        self.storefront.shutdown().await;
        self.erp.shutdown().await;
        if let Some(business_central) = &self.business_central {
            business_central.shutdown().await;
        }
        if let Some(erpnext) = &self.erpnext {
            erpnext.shutdown().await;
        }
        if let Some(bigcommerce) = &self.bigcommerce {
            bigcommerce.shutdown().await;
        }
        if let Some(woocommerce) = &self.woocommerce {
            woocommerce.shutdown().await;
        }
        if let Some(netsuite) = &self.netsuite {
            netsuite.shutdown().await;
        }
    }
}

/// The queue's backlog as the worker and `settle` read it, which the queue port does not expose.
#[derive(Debug, Clone)]
pub(crate) enum Backlog {
    Embedded(Arc<EmbeddedQueue>),
    Sqs(SqsQueue),
}

impl Backlog {
    /// Returns how many messages wait or are in flight.
    async fn depth(&self) -> usize {
        match self {
            Backlog::Embedded(queue) => queue.len(),
            Backlog::Sqs(queue) => queue.approximate_depth().await.unwrap_or(usize::MAX),
        }
    }

    /// Waits briefly for a message after an empty receive. SQS receives already wait (long
    /// polling), so only a short pause keeps an emulator that returns at once from spinning.
    pub(crate) async fn wait(&self) {
        match self {
            Backlog::Embedded(queue) => queue.wait_for_message(Duration::from_millis(100)).await,
            Backlog::Sqs(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// The store, queue and concurrency governor of a backend, and the queue's backlog.
type OpenedBackend = (
    Arc<dyn RecordStore>,
    Arc<dyn Queue>,
    Backlog,
    Arc<dyn ConcurrencyGovernor>,
);

async fn open_backend(backend: &Backend, settings: &QueueSettings) -> Result<OpenedBackend, LocalError> {
    match backend {
        Backend::Embedded => {
            let queue = Arc::new(EmbeddedQueue::new(settings.clone()));
            Ok((
                Arc::new(EmbeddedStore::new()),
                queue.clone(),
                Backlog::Embedded(queue),
                Arc::new(EmbeddedGovernor::new()),
            ))
        }
        Backend::Emulators {
            dynamodb_endpoint,
            sqs_endpoint,
        } => {
            let (dynamodb, sqs) = fieldsync_aws::local_clients(dynamodb_endpoint, sqs_endpoint);
            let suffix = format!("{}-{}", std::process::id(), chrono::Utc::now().timestamp_millis());
            let store = DynamoStore::new(dynamodb, format!("fieldsync-local-{suffix}"));
            store.create_table().await?;
            let visibility_secs = u32::try_from(settings.visibility_timeout.as_secs().max(1)).unwrap_or(u32::MAX);
            let queue_name = format!("fieldsync-local-{suffix}");
            let queue =
                SqsQueue::create_fifo_pair(sqs, &queue_name, settings.max_receive_count, visibility_secs).await?;
            let governor = Arc::new(store.governor());
            Ok((Arc::new(store), Arc::new(queue.clone()), Backlog::Sqs(queue), governor))
        }
    }
}

/// Wraps a connector's construction error as a configuration error of `system`.
fn connector_error(system: &str, source: fieldsync_connectors::ConnectorError) -> LocalError {
    LocalError::Config(fieldsync_lambda::config::ConfigError::Connector {
        system: SystemId::new(system),
        source,
    })
}

/// Builds the webhook format of the storefront platform, with the demo's secrets.
fn storefront_format(rules: &Rules, platform: &StorefrontPlatform) -> Arc<dyn fieldsync_core::WebhookFormat> {
    let integration = rules.integration.clone();
    let source = SystemId::new("storefront");
    match platform {
        StorefrontPlatform::Shopify => Arc::new(ShopifyFormat {
            integration,
            source,
            secrets: vec![Secret::new(STOREFRONT_WEBHOOK_SECRET)],
        }),
        StorefrontPlatform::BigCommerce(_) => Arc::new(BigCommerceFormat::new(
            integration,
            source,
            vec![Secret::new(BIGCOMMERCE_CLIENT_SECRET)],
        )),
        StorefrontPlatform::WooCommerce(_) => Arc::new(WooCommerceFormat::new(
            integration,
            source,
            vec![Secret::new(WOOCOMMERCE_WEBHOOK_SECRET)],
        )),
    }
}

/// Builds the webhook format of the ERP platform, with the demo's secrets.
fn erp_format(
    rules: &Rules,
    erp_connector: Option<Arc<ConnectorFile>>,
    business_central: bool,
    netsuite: bool,
) -> Arc<dyn fieldsync_core::WebhookFormat> {
    match erp_connector {
        _ if netsuite => Arc::new(NetSuiteFormat::new(
            rules.integration.clone(),
            SystemId::new("erp"),
            vec![Secret::new(NETSUITE_WEBHOOK_SECRET)],
        )),
        _ if business_central => Arc::new(BusinessCentralFormat::new(
            rules.integration.clone(),
            SystemId::new("erp"),
            vec![Secret::new(BUSINESS_CENTRAL_CLIENT_STATE)],
        )),
        Some(connector) => Arc::new(GenericFormat {
            integration: rules.integration.clone(),
            source: SystemId::new("erp"),
            secrets: vec![Secret::new(ERPNEXT_WEBHOOK_SECRET)],
            connector,
        }),
        None => Arc::new(SignedJsonFormat {
            integration: rules.integration.clone(),
            source: SystemId::new("erp"),
            secrets: vec![Secret::new(ERP_WEBHOOK_SECRET)],
            tolerance: chrono::Duration::seconds(300),
        }),
    }
}

/// Builds one receiver per side, as the two Lambda functions are configured.
fn receivers_for(
    rules: &Rules,
    queue: Arc<dyn Queue>,
    storefront: Arc<dyn fieldsync_core::WebhookFormat>,
    erp: Arc<dyn fieldsync_core::WebhookFormat>,
) -> BTreeMap<String, Receiver> {
    BTreeMap::from([
        (
            "storefront".to_owned(),
            Receiver {
                integration: rules.integration.clone(),
                format: storefront,
                queue: queue.clone(),
                metrics: MetricsSink::Off,
            },
        ),
        (
            "erp".to_owned(),
            Receiver {
                integration: rules.integration.clone(),
                format: erp,
                queue,
                metrics: MetricsSink::Off,
            },
        ),
    ])
}
