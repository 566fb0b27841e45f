//! The scheduled handler that keeps Business Central's webhook subscription alive.

use std::sync::Arc;

use fieldsync_connectors::business_central::{BusinessCentralClient, BusinessCentralConfig, Collection, Ensured};
use fieldsync_core::ports::Queue;
use fieldsync_core::{Secret, SystemId};
use lambda_runtime::{Error, LambdaEvent};
use serde_json::{json, Value};

use crate::config::{connections_from_env, variable_prefix, ConfigError, ConnectorKind, Environment};
use crate::subscriptions::{ensure_subscriptions, subscribed_collections, Subscriber};

/// The renewer's dependencies: the client, the URL Business Central notifies, the clientState
/// new subscriptions get, and the queue for a catch-up.
#[derive(Debug)]
pub struct Renewer {
    pub integration: String,
    pub system: SystemId,
    pub client: BusinessCentralClient,
    pub notification_url: String,
    pub client_state: Secret,
    pub queue: Arc<dyn Queue>,
    /// The collections to keep subscriptions for: those whose entities the rules declare.
    pub collections: Vec<Collection>,
}

impl Renewer {
    /// Reads the Business Central connection from `FIELDSYNC_CONNECTIONS` and the variables
    /// `FIELDSYNC_<SYSTEM>_NOTIFICATION_URL` and `FIELDSYNC_<SYSTEM>_CLIENT_STATE`. During a
    /// rotation the client state contains two comma-separated values, and new subscriptions get
    /// the last one.
    pub fn from_env(
        env: &dyn Environment,
        rules: &fieldsync_core::Rules,
        queue: Arc<dyn Queue>,
    ) -> Result<Self, ConfigError> {
        let connection = connections_from_env(env, rules)?
            .into_iter()
            .find(|connection| connection.connector == ConnectorKind::BusinessCentral)
            .ok_or_else(|| ConfigError::Invalid {
                variable: "FIELDSYNC_CONNECTIONS".into(),
                reason: "no system uses the business-central connector".into(),
            })?;
        let prefix = variable_prefix(&connection.system);
        let company_id = env.require(&format!("{prefix}_COMPANY_ID"))?;
        let notification_url = env.require(&format!("{prefix}_NOTIFICATION_URL"))?;
        let states = env.require(&format!("{prefix}_CLIENT_STATE"))?;
        let client_state = states
            .rsplit(',')
            .map(str::trim)
            .find(|state| !state.is_empty())
            .map(Secret::new)
            .ok_or_else(|| ConfigError::Missing {
                variable: format!("{prefix}_CLIENT_STATE"),
            })?;
        let config = BusinessCentralConfig::new(
            connection.system.clone(),
            rules.integration.clone(),
            connection.base_url.clone(),
            company_id,
            connection.token.clone(),
        );
        let client = BusinessCentralClient::new(config).map_err(|source| ConfigError::Connector {
            system: connection.system.clone(),
            source,
        })?;
        Ok(Self {
            integration: rules.integration.clone(),
            system: connection.system,
            client,
            notification_url,
            client_state,
            queue,
            collections: subscribed_collections(rules),
        })
    }

    /// Returns where the subscriptions send their notifications.
    pub fn subscriber(&self) -> Subscriber<'_> {
        Subscriber {
            integration: &self.integration,
            system: &self.system,
            notification_url: &self.notification_url,
            client_state: self.client_state.expose(),
        }
    }
}

/// Renews each subscription, or creates it again and queues a catch-up. A failure fails the
/// invocation, so the schedule's next run, or EventBridge's retry, tries again.
pub async fn handle(renewer: &Renewer, _event: LambdaEvent<Value>) -> Result<Value, Error> {
    let results = ensure_subscriptions(
        &renewer.client,
        renewer.subscriber(),
        &renewer.collections,
        renewer.queue.as_ref(),
    )
    .await?;
    let report: serde_json::Map<String, Value> = results
        .into_iter()
        .map(|(collection, ensured)| {
            let outcome = match ensured {
                Ensured::Renewed(subscription) => json!({ "renewed": subscription.id }),
                Ensured::Created(subscription) => json!({ "created": subscription.id, "catch_up": true }),
            };
            (collection.name().to_owned(), outcome)
        })
        .collect();
    Ok(Value::Object(report))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use fieldsync_core::ports::{OutgoingMessage, QueueError, ReceivedMessage};

    use super::*;

    #[derive(Debug)]
    struct NoQueue;

    #[async_trait::async_trait]
    impl Queue for NoQueue {
        async fn send(&self, _: &[OutgoingMessage]) -> Result<(), QueueError> {
            Ok(())
        }
        async fn receive(&self, _: usize) -> Result<Vec<ReceivedMessage>, QueueError> {
            Ok(Vec::new())
        }
        async fn delete(&self, _: &str) -> Result<(), QueueError> {
            Ok(())
        }
        async fn retry_later(&self, _: &str, _: std::time::Duration) -> Result<(), QueueError> {
            Ok(())
        }
        async fn dead_letters(&self) -> Result<Vec<ReceivedMessage>, QueueError> {
            Ok(Vec::new())
        }
        async fn redrive(&self) -> Result<usize, QueueError> {
            Ok(0)
        }
    }

    #[test]
    fn new_subscriptions_get_last_client_state_of_rotation() {
        let rules = fieldsync_core::Rules::parse(
            "rules.toml",
            "integration = \"demo\"\n[systems.erp]\nrole = \"erp\"\n[systems.storefront]\nrole = \"storefront\"\n",
        )
        .unwrap();
        let env: BTreeMap<String, String> = [
            ("FIELDSYNC_CONNECTIONS", "erp=business-central"),
            ("FIELDSYNC_ERP_BASE_URL", "http://127.0.0.1:9"),
            ("FIELDSYNC_ERP_TOKEN", "t"),
            ("FIELDSYNC_ERP_COMPANY_ID", "c"),
            (
                "FIELDSYNC_ERP_NOTIFICATION_URL",
                "https://example.test/webhooks/demo/erp",
            ),
            ("FIELDSYNC_ERP_CLIENT_STATE", "cs-old, cs-new"),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
        let renewer = Renewer::from_env(&env, &rules, Arc::new(NoQueue)).unwrap();
        assert_eq!(renewer.client_state.expose(), "cs-new");
        assert_eq!(renewer.system.as_str(), "erp");
        assert!(renewer.collections.is_empty(), "the rules declare no entity");
    }
}
