//! Webhook subscriptions of a Shopify store, kept in line with the topics fieldsync reads.
//!
//! Subscriptions made through the Admin API belong to the shop and the app. Subscriptions declared
//! in the app's configuration file are not listed by the `webhookSubscriptions` query, so they are
//! left alone. Both kinds sign with the app's client secret.

use fieldsync_core::ports::SystemError;
use fieldsync_core::RecordKey;
use serde_json::{json, Value};

use super::graphql::{
    reject_user_errors, WEBHOOK_SUBSCRIPTIONS, WEBHOOK_SUBSCRIPTION_CREATE, WEBHOOK_SUBSCRIPTION_UPDATE,
};
use super::ShopifyClient;

/// The metafield namespaces whose values fieldsync reads from product payloads.
const METAFIELD_NAMESPACES: [&str; 2] = ["global", "fieldsync"];

/// The outcome of registering one topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registration {
    /// A subscription already sent the topic to the address.
    Kept {
        topic: String,
        id: String,
    },
    /// A subscription of the topic sent it elsewhere and now sends it to the address.
    Moved {
        topic: String,
        id: String,
        from: String,
    },
    Created {
        topic: String,
        id: String,
    },
}

impl ShopifyClient {
    /// Makes sure each REST topic (such as `products/update`) is sent to `address`: keeps a
    /// subscription that already does, moves the shop's one subscription of a topic that sends it
    /// elsewhere, and creates the missing ones. Running it twice changes nothing the second time.
    pub async fn ensure_webhooks(&self, address: &str, topics: &[&str]) -> Result<Vec<Registration>, SystemError> {
        let record = RecordKey::new("webhooks", "subscription", address);
        let data = self.graphql(&record, WEBHOOK_SUBSCRIPTIONS, json!({})).await?;
        let existing: Vec<(String, String, String)> = data["webhookSubscriptions"]["nodes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|node| {
                let id = node["id"].as_str()?.to_owned();
                let topic = node["topic"].as_str()?.to_owned();
                let url = node["endpoint"]["callbackUrl"].as_str().unwrap_or_default().to_owned();
                Some((id, topic, url))
            })
            .collect();

        let mut registrations = Vec::new();
        for rest_topic in topics {
            let topic = graphql_topic(rest_topic);
            let of_topic: Vec<&(String, String, String)> = existing
                .iter()
                .filter(|(_, subscribed, _)| *subscribed == topic)
                .collect();
            if let Some((id, _, _)) = of_topic.iter().find(|(_, _, url)| url == address) {
                registrations.push(Registration::Kept { topic, id: id.clone() });
                continue;
            }
            // A single subscription of the topic elsewhere is an old address of this integration.
            // With several, the others may serve other purposes, so a new one is added instead.
            if let [(id, _, from)] = of_topic.as_slice() {
                let variables = json!({"id": id, "webhookSubscription": {"callbackUrl": address}});
                let data = self.graphql(&record, WEBHOOK_SUBSCRIPTION_UPDATE, variables).await?;
                reject_user_errors(&self.config.system, &record, &data, "webhookSubscriptionUpdate")?;
                registrations.push(Registration::Moved {
                    topic,
                    id: id.clone(),
                    from: from.clone(),
                });
                continue;
            }
            // Product payloads carry only the metafields of the listed namespaces: the SEO title
            // and description live in `global`, customer prices in `fieldsync`.
            let variables = json!({
                "topic": topic,
                "webhookSubscription": {
                    "callbackUrl": address,
                    "format": "JSON",
                    "metafieldNamespaces": METAFIELD_NAMESPACES,
                },
            });
            let data = self.graphql(&record, WEBHOOK_SUBSCRIPTION_CREATE, variables).await?;
            reject_user_errors(&self.config.system, &record, &data, "webhookSubscriptionCreate")?;
            let id = created_id(&data).unwrap_or_default();
            registrations.push(Registration::Created { topic, id });
        }
        Ok(registrations)
    }
}

/// Converts a REST topic such as `inventory_levels/update` into GraphQL's `INVENTORY_LEVELS_UPDATE`.
pub(crate) fn graphql_topic(rest_topic: &str) -> String {
    rest_topic.to_ascii_uppercase().replace('/', "_")
}

fn created_id(data: &Value) -> Option<String> {
    data["webhookSubscriptionCreate"]["webhookSubscription"]["id"]
        .as_str()
        .map(str::to_owned)
}

#[cfg(test)]
mod tests {
    use super::graphql_topic;

    #[test]
    fn rest_topic_becomes_graphql_enum() {
        assert_eq!(graphql_topic("inventory_levels/update"), "INVENTORY_LEVELS_UPDATE");
        assert_eq!(graphql_topic("orders/updated"), "ORDERS_UPDATED");
    }
}
