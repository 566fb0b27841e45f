//! Webhook notifications: the validation handshake, changes collected per subscription, and
//! batches sent as `{"value":[…]}`.
//!
//! Business Central sends no signature. Each entry repeats the subscription's `clientState`,
//! which a receiver compares with its own copy to reject forged notifications.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use chrono::{DateTime, TimeDelta, Utc};
use serde::Serialize;

use super::model::{millis, seconds, Subscription};
use super::{Shared, State};
use crate::delivery::{new_uuid, FinalOutcome, OutgoingEvent, PendingGuard, SignHeaders};

/// The kind of an entity change, as a notification's `changeType` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ChangeType {
    Created,
    Updated,
    Deleted,
}

impl ChangeType {
    fn as_str(self) -> &'static str {
        match self {
            Self::Created => "created",
            Self::Updated => "updated",
            Self::Deleted => "deleted",
        }
    }

    /// Folds a later change of the same entity into an earlier one of the same batch: a deletion
    /// wins, and an entity created in the batch stays `created`.
    fn then(self, later: Self) -> Self {
        match (self, later) {
            (_, Self::Deleted) => Self::Deleted,
            (Self::Created, _) => Self::Created,
            (_, later) => later,
        }
    }
}

/// One change of an entity waiting in a subscription's batch.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Change {
    entity_id: String,
    change_type: ChangeType,
    at: DateTime<Utc>,
}

/// A live subscription with the changes collected for its next notification.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) subscription: Subscription,
    pending: Vec<Change>,
    /// Whether a task will send `pending` after the notification delay.
    send_scheduled: bool,
}

impl Slot {
    pub(crate) fn new(subscription: Subscription) -> Self {
        Self {
            subscription,
            pending: Vec::new(),
            send_scheduled: false,
        }
    }
}

/// A collection of the company that can be subscribed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Collection {
    Items,
    Customers,
    SalesOrders,
}

impl Collection {
    const ALL: [Self; 3] = [Self::Items, Self::Customers, Self::SalesOrders];

    /// Returns the collection's name in API paths.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Items => "items",
            Self::Customers => "customers",
            Self::SalesOrders => "salesOrders",
        }
    }
}

/// Returns the collection of `company_id` that `resource` names, as a relative path with or
/// without the leading slash or as an absolute URL, or `None` for any other resource.
pub(crate) fn subscribed_collection(resource: &str, company_id: &str) -> Option<Collection> {
    let path = match (resource.contains("://"), resource.find("/api/")) {
        (true, Some(start)) => &resource[start..],
        _ => resource,
    };
    let path = path.trim_start_matches('/').trim_end_matches('/');
    Collection::ALL.into_iter().find(|collection| {
        path.eq_ignore_ascii_case(&format!("api/v2.0/companies({company_id})/{}", collection.name()))
    })
}

/// Sends the validation handshake: a POST with an empty body to
/// `notification_url?validationToken=<token>`, which must return 200 with exactly the token as
/// its body. Returns the reason when it does not.
pub(crate) async fn handshake(client: &reqwest::Client, notification_url: &str) -> Result<(), String> {
    // Base64 text contains `+`, `/` and `=`, so a receiver that does not decode the query
    // parameter fails here rather than against Business Central.
    let token = base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 24]>());
    let response = client
        .post(notification_url)
        .query(&[("validationToken", token.as_str())])
        .body(Vec::new())
        .send()
        .await
        .map_err(|error| format!("the handshake request to the notificationUrl failed: {error}"))?;
    let status = response.status().as_u16();
    let body = response
        .text()
        .await
        .map_err(|error| format!("reading the handshake response failed: {error}"))?;
    if status != 200 {
        return Err(format!(
            "the notificationUrl answered the handshake with HTTP {status}, expected 200"
        ));
    }
    if body != token {
        return Err("the notificationUrl did not return the validationToken as the response body".to_owned());
    }
    Ok(())
}

/// Headers of a notification: JSON, without a signature.
pub(crate) struct JsonHeaders;

impl SignHeaders for JsonHeaders {
    fn headers(&self, _event: &OutgoingEvent, _attempt: u32) -> Vec<(String, String)> {
        vec![("Content-Type".to_owned(), "application/json".to_owned())]
    }
}

#[derive(Serialize)]
struct NotificationEntry<'a> {
    #[serde(rename = "subscriptionId")]
    subscription_id: &'a str,
    #[serde(rename = "clientState")]
    client_state: &'a str,
    #[serde(rename = "expirationDateTime")]
    expiration: String,
    resource: String,
    #[serde(rename = "changeType")]
    change_type: &'a str,
    #[serde(rename = "lastModifiedDateTime")]
    last_modified: String,
}

#[derive(Serialize)]
struct NotificationBody<'a> {
    value: Vec<NotificationEntry<'a>>,
}

/// Merges the changes of one entity into one entry, in the order entities first changed.
fn merge(changes: Vec<Change>) -> Vec<Change> {
    let mut merged: Vec<Change> = Vec::with_capacity(changes.len());
    let mut positions: HashMap<String, usize> = HashMap::new();
    for change in changes {
        match positions.get(&change.entity_id) {
            Some(&position) => {
                let entry = &mut merged[position];
                entry.change_type = entry.change_type.then(change.change_type);
                entry.at = entry.at.max(change.at);
            }
            None => {
                positions.insert(change.entity_id.clone(), merged.len());
                merged.push(change);
            }
        }
    }
    merged
}

impl Shared {
    /// Adds a change of an entity of `collection` to the batch of every subscription to that
    /// collection, and schedules the batch's sending when it is the batch's first change.
    pub(super) fn record_change(
        self: &Arc<Self>,
        state: &mut State,
        collection: Collection,
        entity_id: &str,
        change_type: ChangeType,
        at: DateTime<Utc>,
    ) {
        state.drop_expired(at);
        let company_id = &self.config.company_id;
        for (subscription_id, slot) in &mut state.subscriptions {
            if subscribed_collection(&slot.subscription.resource, company_id) != Some(collection) {
                continue;
            }
            slot.pending.push(Change {
                entity_id: entity_id.to_owned(),
                change_type,
                at,
            });
            if !slot.send_scheduled {
                slot.send_scheduled = true;
                let pending = self.dispatcher.hold_pending();
                let shared = Arc::clone(self);
                let subscription_id = subscription_id.clone();
                self.runtime.spawn(async move {
                    shared.send_batch_later(subscription_id, pending).await;
                });
            }
        }
    }

    /// Waits for the notification delay, then sends the subscription's batch. A receiver that
    /// rejects it with a status that is not retried loses the subscription.
    async fn send_batch_later(self: Arc<Self>, subscription_id: String, _pending: PendingGuard) {
        if !self.config.notification_delay.is_zero() {
            tokio::time::sleep(self.config.notification_delay).await;
        }
        let Some((url, event)) = self.take_batch(&subscription_id, Utc::now()) else {
            return;
        };
        if let FinalOutcome::Rejected(status) = self.dispatcher.deliver_to(&url, &event).await {
            let removed = self.lock_state().subscriptions.remove(&subscription_id).is_some();
            if removed {
                tracing::warn!(
                    sandbox = "business_central", subscription_id = %subscription_id, status,
                    "subscription deleted because the receiver rejected a notification"
                );
            }
        }
    }

    /// Takes the subscription's collected changes and builds their notification, or returns
    /// `None` when the subscription is gone or has nothing to send.
    fn take_batch(&self, subscription_id: &str, now: DateTime<Utc>) -> Option<(String, OutgoingEvent)> {
        let mut state = self.lock_state();
        state.drop_expired(now);
        let slot = state.subscriptions.get_mut(subscription_id)?;
        slot.send_scheduled = false;
        let changes = merge(std::mem::take(&mut slot.pending));
        if changes.is_empty() {
            return None;
        }
        let subscription = &slot.subscription;
        let expiration = seconds(subscription.expiration);
        let entry = |resource: String, change_type: &'static str, at: DateTime<Utc>| NotificationEntry {
            subscription_id: &subscription.subscription_id,
            client_state: &subscription.client_state,
            expiration: expiration.clone(),
            resource,
            change_type,
            last_modified: millis(at),
        };

        // Every change of a slot belongs to its subscription's collection.
        let collection = subscribed_collection(&subscription.resource, &self.config.company_id)?;
        let path = self.collection_resource(collection);
        let entries = if changes.len() > self.config.collection_threshold {
            let earliest = changes.iter().map(|change| change.at).min().unwrap_or(now);
            let latest = changes.iter().map(|change| change.at).max().unwrap_or(now);
            // `gt` one millisecond before the earliest change selects every changed entity.
            let since = millis(earliest - TimeDelta::milliseconds(1));
            let resource = format!("/{path}?$filter=lastModifiedDateTime%20gt%20{since}");
            vec![entry(resource, "collection", latest)]
        } else {
            changes
                .iter()
                .map(|change| {
                    let resource = format!("{path}({})", change.entity_id);
                    entry(resource, change.change_type.as_str(), change.at)
                })
                .collect()
        };

        let mut topics: Vec<&str> = entries.iter().map(|entry| entry.change_type).collect();
        topics.sort_unstable();
        topics.dedup();
        let body = serde_json::to_vec(&NotificationBody { value: entries }).ok()?;
        let event = OutgoingEvent {
            topic: topics.join(","),
            event_id: format!("notification-{}", new_uuid()),
            triggered_at: now,
            body,
        };
        Some((subscription.notification_url.clone(), event))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn change(entity_id: &str, change_type: ChangeType, second: i64) -> Change {
        Change {
            entity_id: entity_id.to_owned(),
            change_type,
            at: DateTime::from_timestamp(1_750_000_000 + second, 0).unwrap(),
        }
    }

    #[test]
    fn merge_keeps_one_entry_per_item() {
        let merged = merge(vec![
            change("a", ChangeType::Created, 0),
            change("b", ChangeType::Updated, 1),
            change("a", ChangeType::Updated, 2),
            change("b", ChangeType::Deleted, 3),
        ]);
        assert_eq!(
            merged,
            vec![change("a", ChangeType::Created, 2), change("b", ChangeType::Deleted, 3)]
        );
    }

    #[test]
    fn subscribed_collection_forms_are_recognized() {
        let company = "11111111-2222-3333-4444-555555555555";
        assert_eq!(
            subscribed_collection(&format!("/api/v2.0/companies({company})/items"), company),
            Some(Collection::Items)
        );
        assert_eq!(
            subscribed_collection(&format!("api/v2.0/companies({company})/salesOrders"), company),
            Some(Collection::SalesOrders)
        );
        assert_eq!(
            subscribed_collection(
                &format!(
                    "https://api.businesscentral.dynamics.com/v2.0/tenant/production/api/v2.0/companies({company})/customers"
                ),
                company
            ),
            Some(Collection::Customers)
        );
        assert_eq!(
            subscribed_collection(&format!("/api/v2.0/companies({company})/vendors"), company),
            None
        );
        assert_eq!(subscribed_collection("/api/v2.0/companies(x)/customers", company), None);
    }
}
