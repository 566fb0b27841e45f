//! Business Central webhooks (API v2.0 subscriptions).
//!
//! A subscription is created with a notification URL and a `clientState`. Business Central first
//! posts to the URL with a `validationToken` query parameter and an empty body, and expects the
//! decoded token back as `200 text/plain`. Notifications carry no signature: each entry of the
//! body's `value` list repeats the subscription's `clientState`, which is the proof of origin and
//! is compared in constant time, old and new accepted during a rotation. Notifications are thin
//! (`resource`, `changeType`, `lastModifiedDateTime`), so they become [`Notice`]s that the
//! reconciler resolves by reading the resource. Any 4xx response makes Business Central delete the
//! subscription, so a rejected notification gets 202 and a log line instead.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::change::{Notice, NoticeKind};
use crate::ids::{EntityType, SystemId};
use crate::ingest::{parse_offset_time, Handshake, InboundRequest, Normalized, Rejection, WebhookFormat};
use crate::secret::Secret;
use crate::wire::Wire;

/// The status Business Central gets for a notification fieldsync drops: a success, because any
/// 4xx deletes the subscription.
const DROPPED_STATUS: u16 = 202;

/// The Business Central notification format for one company's subscriptions.
#[derive(Debug, Clone)]
pub struct BusinessCentralFormat {
    pub integration: String,
    pub source: SystemId,
    /// The `clientState` values of live subscriptions; two during a rotation.
    pub client_states: Vec<Secret>,
    /// API collection name (`items`, `salesOrders`) to entity type in the rules.
    pub entities: BTreeMap<String, EntityType>,
}

impl BusinessCentralFormat {
    /// Builds the format with the standard API v2.0 collections: `items` as products,
    /// `customers`, `salesQuotes` as quotes and `salesOrders` as orders.
    pub fn new(integration: impl Into<String>, source: SystemId, client_states: Vec<Secret>) -> Self {
        let entities = [
            ("items", "product"),
            ("customers", "customer"),
            ("salesQuotes", "quote"),
            ("salesOrders", "order"),
        ]
        .into_iter()
        .map(|(collection, entity)| (collection.to_owned(), EntityType::new(entity)))
        .collect();
        Self {
            integration: integration.into(),
            source,
            client_states,
            entities,
        }
    }

    fn known_client_state(&self, given: &str) -> bool {
        // Every configured value is compared, so the time taken does not tell which one matched.
        let mut matched = false;
        for state in &self.client_states {
            let expected = state.expose().as_bytes();
            matched |= expected.len() == given.len() && bool::from(expected.ct_eq(given.as_bytes()));
        }
        matched
    }
}

/// Reads the `value` entries of a notification body.
fn entries(body: &[u8]) -> Result<Vec<Wire>, Rejection> {
    let wire = Wire::parse(body).map_err(|error| Rejection::Malformed {
        reason: format!("body is not JSON: {error}"),
    })?;
    match wire.get("value") {
        Some(Wire::List(items)) => Ok(items.clone()),
        _ => Err(Rejection::Malformed {
            reason: "body has no value list".to_owned(),
        }),
    }
}

/// Splits a resource path such as `api/v2.0/companies(…)/items(…)` into its last collection name
/// and the record id in its parentheses, if any.
fn last_segment(resource: &str) -> Option<(&str, Option<&str>)> {
    // A collection notice names the collection with a filter: `…/items?$filter=…`.
    let path = resource.split_once('?').map_or(resource, |(path, _)| path);
    let segment = path.trim_end_matches('/').rsplit('/').next()?;
    match segment.split_once('(') {
        Some((name, rest)) => Some((name, rest.strip_suffix(')'))),
        None => Some((segment, None)),
    }
}

impl WebhookFormat for BusinessCentralFormat {
    fn source(&self) -> &SystemId {
        &self.source
    }

    fn handshake(&self, request: &InboundRequest) -> Option<Handshake> {
        request
            .query
            .get("validationToken")
            .map(|token| Handshake { body: token.clone() })
    }

    fn verify(&self, request: &InboundRequest) -> Result<(), Rejection> {
        let entries = entries(&request.body)?;
        for entry in &entries {
            let given = entry.get("clientState").and_then(Wire::as_text).unwrap_or_default();
            if !self.known_client_state(given) {
                let subscription = entry.get("subscriptionId").and_then(Wire::as_text).unwrap_or("?");
                return Err(Rejection::Unauthorized {
                    reason: format!("clientState of subscription {subscription} is not a configured value"),
                });
            }
        }
        Ok(())
    }

    fn normalize(&self, request: &InboundRequest) -> Result<Normalized, Rejection> {
        let mut notices = Vec::new();
        let mut ignored = Vec::new();
        for entry in entries(&request.body)? {
            let text = |name: &str| entry.get(name).and_then(Wire::as_text);
            let (Some(resource), Some(change_type)) = (text("resource"), text("changeType")) else {
                return Err(Rejection::Malformed {
                    reason: "notification lacks resource or changeType".to_owned(),
                });
            };
            let kind = match change_type {
                "created" => NoticeKind::Created,
                "updated" => NoticeKind::Updated,
                "deleted" => NoticeKind::Deleted,
                "collection" => NoticeKind::Collection,
                other => {
                    return Err(Rejection::Malformed {
                        reason: format!("unknown changeType {other:?}"),
                    })
                }
            };
            let Some((collection, _)) = last_segment(resource) else {
                return Err(Rejection::Malformed {
                    reason: format!("unreadable resource {resource:?}"),
                });
            };
            let Some(entity) = self.entities.get(collection) else {
                ignored.push(collection.to_owned());
                continue;
            };
            let occurred_at: DateTime<Utc> = text("lastModifiedDateTime")
                .and_then(parse_offset_time)
                .unwrap_or(request.received_at);
            notices.push(Notice {
                integration: self.integration.clone(),
                source: self.source.clone(),
                entity: entity.clone(),
                resource: resource.to_owned(),
                kind,
                event_id: event_id(&entry),
                occurred_at,
                received_at: request.received_at,
            });
        }
        if notices.is_empty() {
            let topic = ignored
                .first()
                .cloned()
                .unwrap_or_else(|| "empty notification".to_owned());
            return Ok(Normalized::Ignored { topic });
        }
        Ok(Normalized::Notices(notices))
    }

    fn unauthorized_status(&self) -> u16 {
        DROPPED_STATUS
    }

    fn malformed_status(&self) -> u16 {
        DROPPED_STATUS
    }
}

/// Derives an id that is equal across Business Central's retries of one notification, which
/// carries no id of its own.
fn event_id(entry: &Wire) -> String {
    let mut hasher = Sha256::new();
    for name in ["subscriptionId", "resource", "changeType", "lastModifiedDateTime"] {
        hasher.update(entry.get(name).and_then(Wire::as_text).unwrap_or_default().as_bytes());
        hasher.update([0]);
    }
    format!("bc:{}", hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTIFICATION: &str = r#"{"value":[{"subscriptionId":"sub-demo-1","clientState":"cs-OLD","expirationDateTime":"2025-06-04T08:00:00Z","resource":"api/v2.0/companies(11111111-2222-3333-4444-555555555555)/items(aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee)","changeType":"updated","lastModifiedDateTime":"2025-06-01T08:00:31.120Z"}]}"#;

    fn format(states: &[&str]) -> BusinessCentralFormat {
        let states = states.iter().map(|state| Secret::new(*state)).collect();
        BusinessCentralFormat::new("demo", SystemId::new("erp"), states)
    }

    fn request(body: &str, query: &[(&str, &str)]) -> InboundRequest {
        InboundRequest {
            headers: BTreeMap::new(),
            query: query
                .iter()
                .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
                .collect(),
            body: body.as_bytes().to_vec(),
            received_at: Utc::now(),
        }
    }

    #[test]
    fn handshake_returns_decoded_token() {
        let handshake = format(&["cs-NEW"]).handshake(&request("", &[("validationToken", "Xk2+ab/9==")]));
        assert_eq!(
            handshake,
            Some(Handshake {
                body: "Xk2+ab/9==".to_owned()
            })
        );
    }

    #[test]
    fn old_client_state_rejected_after_rotation() {
        let error = format(&["cs-NEW"]).verify(&request(NOTIFICATION, &[])).unwrap_err();
        assert_eq!(error.kind(), "unauthorized");
        assert_eq!(format(&["cs-NEW"]).unauthorized_status(), 202);
    }

    #[test]
    fn both_client_states_accepted_during_rotation() {
        assert!(format(&["cs-OLD", "cs-NEW"])
            .verify(&request(NOTIFICATION, &[]))
            .is_ok());
    }

    #[test]
    fn notification_becomes_item_notice() {
        let Normalized::Notices(notices) = format(&["cs-OLD"]).normalize(&request(NOTIFICATION, &[])).unwrap() else {
            panic!("expected notices");
        };
        assert_eq!(notices.len(), 1);
        let notice = &notices[0];
        assert_eq!(notice.entity, EntityType::new("product"));
        assert_eq!(notice.kind, NoticeKind::Updated);
        assert_eq!(notice.occurred_at.to_rfc3339(), "2025-06-01T08:00:31.120+00:00");
        assert!(notice.event_id.starts_with("bc:"));
    }

    #[test]
    fn unknown_collection_is_ignored() {
        let body = NOTIFICATION.replace("/items(", "/vendors(");
        let normalized = format(&["cs-OLD"]).normalize(&request(&body, &[])).unwrap();
        assert_eq!(
            normalized,
            Normalized::Ignored {
                topic: "vendors".to_owned()
            }
        );
    }

    #[test]
    fn collection_resource_has_no_id() {
        assert_eq!(last_segment("api/v2.0/companies(1)/items"), Some(("items", None)));
        assert_eq!(
            last_segment("api/v2.0/companies(1)/items(abc)"),
            Some(("items", Some("abc")))
        );
    }

    #[test]
    fn customer_and_sales_order_notifications_become_notices() {
        let body = r#"{"value":[
            {"subscriptionId":"sub-c","clientState":"cs-OLD","resource":"api/v2.0/companies(11111111-2222-3333-4444-555555555555)/customers(c1)","changeType":"created","lastModifiedDateTime":"2025-06-01T08:00:00Z"},
            {"subscriptionId":"sub-o","clientState":"cs-OLD","resource":"api/v2.0/companies(11111111-2222-3333-4444-555555555555)/salesOrders(o1)","changeType":"updated","lastModifiedDateTime":"2025-06-01T08:00:01Z"}
        ]}"#;
        let Normalized::Notices(notices) = format(&["cs-OLD"]).normalize(&request(body, &[])).unwrap() else {
            panic!("expected notices");
        };
        assert_eq!(notices.len(), 2);
        assert_eq!(notices[0].entity, EntityType::new("customer"));
        assert_eq!(notices[0].kind, NoticeKind::Created);
        assert!(notices[0].resource.ends_with("/customers(c1)"));
        assert_eq!(notices[1].entity, EntityType::new("order"));
        assert_eq!(notices[1].kind, NoticeKind::Updated);
        assert!(notices[1].resource.ends_with("/salesOrders(o1)"));
        assert_ne!(notices[0].event_id, notices[1].event_id);
    }

    #[test]
    fn sales_order_collection_notice_keeps_filter() {
        let body = r#"{"value":[{"subscriptionId":"sub-o","clientState":"cs-OLD","resource":"/api/v2.0/companies(11111111-2222-3333-4444-555555555555)/salesOrders?$filter=lastModifiedDateTime%20gt%202025-06-01T07:59:59.999Z","changeType":"collection","lastModifiedDateTime":"2025-06-01T08:00:02Z"}]}"#;
        let Normalized::Notices(notices) = format(&["cs-OLD"]).normalize(&request(body, &[])).unwrap() else {
            panic!("expected notices");
        };
        assert_eq!(notices[0].entity, EntityType::new("order"));
        assert_eq!(notices[0].kind, NoticeKind::Collection);
        assert!(notices[0].resource.contains("salesOrders?$filter="));
    }

    #[test]
    fn collection_left_out_of_configuration_is_ignored() {
        let mut format = format(&["cs-OLD"]);
        format.entities.remove("salesOrders");
        let body = NOTIFICATION.replace("/items(", "/salesOrders(");
        assert_eq!(
            format.normalize(&request(&body, &[])).unwrap(),
            Normalized::Ignored {
                topic: "salesOrders".to_owned()
            }
        );
    }
}
