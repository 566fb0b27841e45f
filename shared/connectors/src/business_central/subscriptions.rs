//! Business Central webhook subscriptions: create, renew, list.
//!
//! A subscription covers one collection (`items`, `customers` or `salesOrders`) and expires three
//! days after it was created or last renewed, and Business Central
//! deletes it early after a 4xx response from the receiver. [`ensure_subscription`] renews fieldsync's
//! subscription when it exists and creates it again when it is gone. The caller then catches up
//! on what changed while it was missing, because Business Central keeps no backlog.

use chrono::{DateTime, Utc};
use fieldsync_core::ingest::parse_offset_time;
use fieldsync_core::ports::SystemError;
use fieldsync_core::{RecordKey, Wire};
use reqwest::{Method, StatusCode};

use super::{parse, render, BusinessCentralClient, Collection};
use crate::json::string;

/// A subscription as Business Central reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub id: String,
    pub notification_url: String,
    pub resource: String,
    pub expires_at: Option<DateTime<Utc>>,
    etag: String,
}

/// The outcome of [`ensure_subscription`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ensured {
    /// The subscription existed and now expires later.
    Renewed(Subscription),
    /// No live subscription existed, so one was created. Changes made while none existed were
    /// not notified and must be read.
    Created(Subscription),
}

impl BusinessCentralClient {
    fn subscription_record(&self) -> RecordKey {
        RecordKey::new(self.config.integration.as_str(), "subscription", "business-central")
    }

    /// Lists the environment's subscriptions visible to this user.
    pub async fn subscriptions(&self) -> Result<Vec<Subscription>, SystemError> {
        let url = self.url("api/v2.0/subscriptions")?;
        let reply = self
            .send(&self.subscription_record(), Method::GET, url, None, None)
            .await?;
        let page = parse(self.system(), &reply.body)?;
        Ok(page
            .get("value")
            .map(|value| value.items().iter().filter_map(subscription).collect())
            .unwrap_or_default())
    }

    /// Creates a subscription. Business Central checks the URL first with a handshake, so the
    /// receiver must already respond to it.
    pub async fn create_subscription(
        &self,
        notification_url: &str,
        resource: &str,
        client_state: &str,
    ) -> Result<Subscription, SystemError> {
        let body = format!(
            "{{\"notificationUrl\":{},\"resource\":{},\"clientState\":{}}}",
            string(notification_url).get(),
            string(resource).get(),
            string(client_state).get()
        );
        let url = self.url("api/v2.0/subscriptions")?;
        let record = self.subscription_record();
        let reply = self.send(&record, Method::POST, url, None, Some(body)).await?;
        let created = parse(self.system(), &reply.body)?;
        subscription(&created).ok_or_else(|| unexpected(self, "created subscription without id"))
    }

    /// Renews a subscription for another three days. Returns `None` when it no longer exists.
    pub async fn renew_subscription(&self, current: &Subscription) -> Result<Option<Subscription>, SystemError> {
        let url = self.url(&format!("api/v2.0/subscriptions('{}')", current.id))?;
        let body = render(&std::collections::BTreeMap::from([
            ("notificationUrl", string(&current.notification_url)),
            ("resource", string(&current.resource)),
        ]));
        let record = self.subscription_record();
        let reply = self
            .send(&record, Method::PATCH, url, Some(&current.etag), Some(body))
            .await?;
        if reply.status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let renewed = parse(self.system(), &reply.body)?;
        Ok(subscription(&renewed))
    }

    /// Renews the subscription of `resource` that notifies `notification_url`, or creates it when
    /// it is missing or its renewal finds it gone.
    pub async fn ensure_subscription(
        &self,
        notification_url: &str,
        resource: &str,
        client_state: &str,
    ) -> Result<Ensured, SystemError> {
        let existing = self
            .subscriptions()
            .await?
            .into_iter()
            .find(|found| found.notification_url == notification_url && same_resource(&found.resource, resource));
        if let Some(existing) = existing {
            if let Some(renewed) = self.renew_subscription(&existing).await? {
                return Ok(Ensured::Renewed(renewed));
            }
        }
        let created = self
            .create_subscription(notification_url, resource, client_state)
            .await?;
        Ok(Ensured::Created(created))
    }

    /// Returns the items collection of the configured company, the resource to subscribe to,
    /// with the leading slash of Business Central's own examples.
    pub fn items_resource(&self) -> String {
        self.collection_resource(Collection::Items)
    }

    /// Returns a collection of the configured company as the resource to subscribe to, with the
    /// leading slash of Business Central's own examples.
    pub fn collection_resource(&self, collection: Collection) -> String {
        format!("/{}", self.collection_path(collection))
    }

    /// Renews the subscription to `collection` that notifies `notification_url`, or creates it
    /// when it is missing. Business Central subscribes to one collection per subscription, so
    /// items, customers and sales orders each need their own.
    pub async fn ensure_collection_subscription(
        &self,
        collection: Collection,
        notification_url: &str,
        client_state: &str,
    ) -> Result<Ensured, SystemError> {
        let resource = self.collection_resource(collection);
        self.ensure_subscription(notification_url, &resource, client_state)
            .await
    }
}

/// Compares resource paths with or without their leading slash.
fn same_resource(left: &str, right: &str) -> bool {
    left.trim_start_matches('/') == right.trim_start_matches('/')
}

fn subscription(wire: &Wire) -> Option<Subscription> {
    let text = |name: &str| wire.get(name).and_then(Wire::as_text).map(str::to_owned);
    Some(Subscription {
        id: text("subscriptionId")?,
        notification_url: text("notificationUrl").unwrap_or_default(),
        resource: text("resource").unwrap_or_default(),
        expires_at: text("expirationDateTime").as_deref().and_then(parse_offset_time),
        etag: text("@odata.etag").unwrap_or_else(|| "*".to_owned()),
    })
}

fn unexpected(client: &BusinessCentralClient, message: &str) -> SystemError {
    crate::http::unavailable(client.system(), crate::http::UnexpectedResponse(message.to_owned()))
}
