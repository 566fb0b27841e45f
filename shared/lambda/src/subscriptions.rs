//! Keeping Business Central's webhook subscription alive, from the CLI and from the scheduled
//! renewer function.
//!
//! A subscription lives three days, so it is renewed about twice a day. It can be gone, expired
//! after missed renewals or deleted by Business Central after a 4xx response. Then a new one is
//! created and a `collection` notice covering a subscription's whole lifetime is queued, so the
//! reconciler reads every item changed while no subscription existed.

use chrono::{Duration, Utc};
use fieldsync_connectors::business_central::{BusinessCentralClient, Ensured};
use fieldsync_core::ports::{Queue, QueueError, SystemError};
use fieldsync_core::{EntityType, Notice, NoticeKind, SystemId};
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

/// Renews or creates the subscription of the items collection for `notification_url`, and
/// queues a catch-up when it had to be created. Returns what happened.
pub async fn ensure_items_subscription(
    client: &BusinessCentralClient,
    integration: &str,
    system: &SystemId,
    notification_url: &str,
    client_state: &str,
    queue: &dyn Queue,
) -> Result<Ensured, RenewError> {
    let resource = client.items_resource();
    let ensured = client
        .ensure_subscription(notification_url, &resource, client_state)
        .await?;
    match &ensured {
        Ensured::Renewed(subscription) => {
            info!(subscription = subscription.id, expires_at = ?subscription.expires_at, "subscription renewed");
        }
        Ensured::Created(subscription) => {
            warn!(
                subscription = subscription.id,
                "subscription created; reading changes it may have missed"
            );
            let now = Utc::now();
            let notice = Notice {
                integration: integration.to_owned(),
                source: system.clone(),
                entity: EntityType::new("product"),
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
