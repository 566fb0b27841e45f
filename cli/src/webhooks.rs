//! `fieldsync webhooks register`: create or renew the webhook subscriptions of an integration
//! where the platform has an API for it.
//!
//! Business Central subscriptions are created through its API and must be renewed within three
//! days. The command renews a live one, or creates it again and queues a catch-up read of what
//! changed while none existed (see `fieldsync_lambda::subscriptions`). For Shopify it subscribes
//! the store to every topic the receiver reads, sent to `FIELDSYNC_STOREFRONT_NOTIFICATION_URL`,
//! and moves a subscription that still sends a topic to an old address.
//!
//! Configuration comes from the same variables the functions read: `FIELDSYNC_CONNECTIONS` and
//! each system's `FIELDSYNC_<SYSTEM>_BASE_URL`, `_TOKEN` and `_COMPANY_ID`, plus
//! `FIELDSYNC_<SYSTEM>_NOTIFICATION_URL` (the stack's webhook URL for that side),
//! `FIELDSYNC_<SYSTEM>_CLIENT_STATE` and `FIELDSYNC_QUEUE_URL`.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use fieldsync_aws::SqsQueue;
use fieldsync_connectors::business_central::Ensured;
use fieldsync_connectors::storefront::{Registration, ShopifyClient, ShopifyConfig};
use fieldsync_core::formats::shopify::SUBSCRIBED_TOPICS;
use fieldsync_core::Rules;
use fieldsync_lambda::config::{connections_from_env, variable_prefix, ConnectorKind, Environment, ProcessEnvironment};
use fieldsync_lambda::renewer::Renewer;
use fieldsync_lambda::subscriptions::ensure_subscriptions;

#[derive(Debug, clap::Subcommand)]
pub(crate) enum Action {
    /// Create or renew the integration's subscriptions.
    Register {
        /// The integration, as named in the rules file.
        #[arg(long)]
        integration: String,
    },
}

pub(crate) async fn run(rules: &Rules, action: &Action) -> anyhow::Result<ExitCode> {
    let Action::Register { integration } = action;
    anyhow::ensure!(
        *integration == rules.integration,
        "the rules file is for integration {:?}, not {integration:?}",
        rules.integration
    );
    let env = ProcessEnvironment;
    for connection in connections_from_env(&env, rules)? {
        match connection.connector {
            ConnectorKind::BusinessCentral => {
                let queue_url = env.require("FIELDSYNC_QUEUE_URL")?;
                let sqs = aws_sdk_sqs::Client::new(&fieldsync_aws::sdk_config().await);
                let queue = Arc::new(SqsQueue::new(sqs, queue_url, None));
                // The scheduled renewer reads the same variables, so both create the same
                // subscription.
                let renewer = Renewer::from_env(&env, rules, queue)?;
                let results = ensure_subscriptions(
                    &renewer.client,
                    renewer.subscriber(),
                    &renewer.collections,
                    renewer.queue.as_ref(),
                )
                .await
                .with_context(|| format!("cannot register the {} subscriptions", connection.system))?;
                for (collection, ensured) in results {
                    match ensured {
                        Ensured::Renewed(subscription) => println!(
                            "{}: renewed Business Central subscription {} to {} until {}",
                            connection.system,
                            subscription.id,
                            collection.name(),
                            expiry(subscription.expires_at)
                        ),
                        Ensured::Created(subscription) => println!(
                            "{}: created Business Central subscription {} to {} until {}; queued a catch-up read of the {}",
                            connection.system,
                            subscription.id,
                            collection.name(),
                            expiry(subscription.expires_at),
                            collection.name()
                        ),
                    }
                }
            }
            ConnectorKind::Shopify => {
                let variable = format!("{}_NOTIFICATION_URL", variable_prefix(&connection.system));
                let address = env.require(&variable)?;
                let mut config = ShopifyConfig::new(
                    connection.system.clone(),
                    connection.base_url.clone(),
                    connection.token.clone(),
                );
                if let Some(location_id) = &connection.location_id {
                    config.location_id = location_id.clone();
                }
                let client = ShopifyClient::new(config)?;
                let registrations = client
                    .ensure_webhooks(&address, SUBSCRIBED_TOPICS)
                    .await
                    .with_context(|| format!("cannot register the {} webhooks", connection.system))?;
                for registration in registrations {
                    let line = match registration {
                        Registration::Kept { topic, id } => format!("kept {topic} ({id})"),
                        Registration::Moved { topic, id, from } => format!("moved {topic} ({id}) from {from}"),
                        Registration::Created { topic, id } => format!("created {topic} ({id})"),
                    };
                    println!("{}: Shopify webhook subscription {line}", connection.system);
                }
            }
            ConnectorKind::ErpRest
            | ConnectorKind::Generic
            | ConnectorKind::BigCommerce
            | ConnectorKind::WooCommerce
            | ConnectorKind::NetSuite => println!(
                "{}: this platform's webhooks are configured in the platform itself (docs/deploy.md)",
                connection.system
            ),
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn expiry(at: Option<chrono::DateTime<chrono::Utc>>) -> String {
    at.map_or_else(|| "an unknown time".to_owned(), |at| at.to_rfc3339())
}
