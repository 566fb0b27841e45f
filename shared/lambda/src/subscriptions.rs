//! Keeping Business Central's webhook subscriptions alive, from the CLI and from the scheduled
//! renewer function.
//!
//! Business Central subscribes to one collection per subscription, so an integration that syncs
//! products, customers and orders keeps three: `items`, `customers` and `salesOrders`, one for
//! each of those entities its rules declare. A subscription lives three days, so it is renewed
//! about twice a day. It can be gone, expired after missed renewals or deleted by Business
//! Central after a 4xx response. Then a new one is created and a `collection` notice covering a
//! subscription's whole lifetime is queued, so the reconciler reads every record of that
//! collection changed while no subscription existed.

use chrono::{Duration, Utc};
use fieldsync_connectors::business_central::{BusinessCentralClient, Collection, Ensured};
use fieldsync_core::ports::{Queue, QueueError, SystemError};
use fieldsync_core::{EntityType, Notice, NoticeKind, Rules, SystemId};
use fieldsync_pipeline::message::encode_notice;
use tracing::{info, warn};

/// How far back a catch-up reads: the longest a subscription can live, so nothing changed since
/// the last renewal that might have succeeded is missed.
const CATCH_UP_WINDOW: Duration = Duration::days(3);

/// A failed renewal.
#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("Business Central refused the subscription call")]
    System(#[from] SystemError),
    #[error("the catch-up notice could not be queued")]
    Queue(#[from] QueueError),
    #[error("the catch-up notice could not be encoded")]
    Encode(#[from] serde_json::Error),
}

/// Returns the collections whose entities the rules declare, items first.
pub fn subscribed_collections(rules: &Rules) -> Vec<Collection> {
    Collection::ALL
        .into_iter()
        .filter(|collection| rules.entity(&EntityType::new(collection.entity())).is_some())
        .collect()
}

/// The notification address and identity of a Business Central subscription.
#[derive(Debug, Clone, Copy)]
pub struct Subscriber<'a> {
    pub integration: &'a str,
    pub system: &'a SystemId,
    pub notification_url: &'a str,
    pub client_state: &'a str,
}

/// Renews or creates the subscription of each collection for the subscriber's URL, and queues a
/// catch-up for each one that had to be created. Returns what happened, per collection.
pub async fn ensure_subscriptions(
    client: &BusinessCentralClient,
    subscriber: Subscriber<'_>,
    collections: &[Collection],
    queue: &dyn Queue,
) -> Result<Vec<(Collection, Ensured)>, RenewError> {
    let mut results = Vec::new();
    for collection in collections {
        let ensured = ensure_subscription(client, subscriber, *collection, queue).await?;
        results.push((*collection, ensured));
    }
    Ok(results)
}

/// Renews or creates the subscription of the items collection, as [`ensure_subscriptions`] does.
pub async fn ensure_items_subscription(
    client: &BusinessCentralClient,
    integration: &str,
    system: &SystemId,
    notification_url: &str,
    client_state: &str,
    queue: &dyn Queue,
) -> Result<Ensured, RenewError> {
    let subscriber = Subscriber {
        integration,
        system,
        notification_url,
        client_state,
    };
    ensure_subscription(client, subscriber, Collection::Items, queue).await
}

async fn ensure_subscription(
    client: &BusinessCentralClient,
    subscriber: Subscriber<'_>,
    collection: Collection,
    queue: &dyn Queue,
) -> Result<Ensured, RenewError> {
    let resource = client.collection_resource(collection);
    let ensured = client
        .ensure_collection_subscription(collection, subscriber.notification_url, subscriber.client_state)
        .await?;
    match &ensured {
        Ensured::Renewed(subscription) => {
            info!(
                subscription = subscription.id,
                collection = collection.name(),
                expires_at = ?subscription.expires_at,
                "subscription renewed"
            );
        }
        Ensured::Created(subscription) => {
            warn!(
                subscription = subscription.id,
                collection = collection.name(),
                "subscription created; reading changes it may have missed"
            );
            let now = Utc::now();
            let notice = Notice {
                integration: subscriber.integration.to_owned(),
                source: subscriber.system.clone(),
                entity: EntityType::new(collection.entity()),
                resource: resource.clone(),
                kind: NoticeKind::Collection,
                event_id: format!("catch-up:{}", subscription.id),
                occurred_at: now - CATCH_UP_WINDOW,
                received_at: now,
            };
            queue.send(&[encode_notice(&notice)?]).await?;
        }
    }
    Ok(ensured)
}
