//! Keys and attributes of the items [`crate::DynamoStore`] writes. `docs/dynamodb.md` describes
//! the table design.
//!
//! Each key joins its parts with `#`. Integration, entity and system names come from the rules
//! file, and the free-form part (record key, external id, delivery id) always comes last, so a
//! `#` inside that last part cannot make two keys equal.
//!
//! NOTE: nothing rejects a `#` inside an integration, entity or system name, where it could make
//! the keys of two records equal.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, SecondsFormat, Utc};
use fieldsync_core::{Decision, EntityType, RecordKey, SystemId};

pub(crate) const PK: &str = "pk";
pub(crate) const SK: &str = "sk";
pub(crate) const REVISION: &str = "revision";
pub(crate) const DOC: &str = "doc";
pub(crate) const RECORD: &str = "record";
pub(crate) const TTL: &str = "ttl";

pub(crate) const STATE_SK: &str = "STATE";
pub(crate) const XID_SK: &str = "XID";
pub(crate) const DELIVERY_SK: &str = "DLV";

/// How long decision log items live before DynamoDB's TTL deletes them.
pub(crate) const DECISION_RETENTION: chrono::Duration = chrono::Duration::days(30);

pub(crate) type Item = HashMap<String, AttributeValue>;

/// A stored item that lacks an attribute or carries it in an unexpected form.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ItemError {
    #[error("item has no {attribute} attribute of type {expected}")]
    Missing {
        attribute: &'static str,
        expected: &'static str,
    },
    #[error("attribute {attribute} is not an unsigned integer: {value:?}")]
    InvalidNumber { attribute: &'static str, value: String },
    #[error("attribute {attribute} is not the expected JSON document")]
    InvalidJson {
        attribute: &'static str,
        #[source]
        source: serde_json::Error,
    },
}

pub(crate) fn record_pk(key: &RecordKey) -> String {
    format!("REC#{}#{}#{}", key.integration, key.entity, key.key)
}

pub(crate) fn xid_pk(integration: &str, system: &SystemId, entity: &EntityType, external_id: &str) -> String {
    format!("XID#{integration}#{system}#{entity}#{external_id}")
}

pub(crate) fn log_pk(key: &RecordKey) -> String {
    format!("LOG#{}#{}#{}", key.integration, key.entity, key.key)
}

/// Builds the sort key of a decision log item: the decision time with nanoseconds, the position
/// of the decision in its `append_decisions` call, and the field. The time has a fixed width
/// (`SecondsFormat::Nanos` always prints nine digits), so sort keys order by time. The position
/// comes before the field so that decisions of one instant keep the order they were appended in.
///
/// NOTE: two `append_decisions` calls with the same `decided_at` write the same sort key for the
/// same field at the same position, and the second entry replaces the first.
pub(crate) fn log_sk(decision: &Decision, position: usize) -> String {
    let decided_at = decision.decided_at.to_rfc3339_opts(SecondsFormat::Nanos, true);
    format!("{decided_at}#{position:06}#{}", decision.field)
}

/// Builds the partition key of an integration's task list. Each record with open tasks has one
/// item there, sorted by its record key.
pub(crate) fn tasks_pk(integration: &str) -> String {
    format!("TASKS#{integration}")
}

pub(crate) fn delivery_pk(delivery_id: &str) -> String {
    format!("DLV#{delivery_id}")
}

/// Builds the partition key of a concurrency governor scope. Each slot of the scope is one item
/// there, under [`governor_sk`].
pub(crate) fn governor_pk(scope: &str) -> String {
    format!("GOV#{scope}")
}

pub(crate) fn governor_sk(slot: u32) -> String {
    format!("SLOT#{slot}")
}

pub(crate) fn key(pk: String, sk: &str) -> Item {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(pk)),
        (SK.to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

/// Returns the instant as whole seconds since the Unix epoch, the format DynamoDB's TTL reads.
pub(crate) fn epoch_seconds(at: DateTime<Utc>) -> AttributeValue {
    AttributeValue::N(at.timestamp().to_string())
}

pub(crate) fn number(value: u64) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(crate) fn string_attribute<'a>(item: &'a Item, attribute: &'static str) -> Result<&'a str, ItemError> {
    match item.get(attribute) {
        Some(AttributeValue::S(value)) => Ok(value),
        _ => Err(ItemError::Missing {
            attribute,
            expected: "S",
        }),
    }
}

pub(crate) fn number_attribute(item: &Item, attribute: &'static str) -> Result<u64, ItemError> {
    let Some(AttributeValue::N(value)) = item.get(attribute) else {
        return Err(ItemError::Missing {
            attribute,
            expected: "N",
        });
    };
    value.parse().map_err(|_| ItemError::InvalidNumber {
        attribute,
        value: value.clone(),
    })
}

pub(crate) fn json_attribute<T: serde::de::DeserializeOwned>(
    item: &Item,
    attribute: &'static str,
) -> Result<T, ItemError> {
    let text = string_attribute(item, attribute)?;
    serde_json::from_str(text).map_err(|source| ItemError::InvalidJson { attribute, source })
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use fieldsync_core::decide::Outcome;
    use fieldsync_core::FieldName;

    use super::*;

    fn decision_at(decided_at: DateTime<Utc>, field: &str) -> Decision {
        Decision {
            record: RecordKey::new("demo", "product", "MUG"),
            field: FieldName::new(field),
            source: SystemId::new("erp"),
            event_id: "e1".into(),
            event_at: decided_at,
            decided_at,
            value: None,
            outcome: Outcome::Apply,
            targets: Vec::new(),
            reason: String::new(),
        }
    }

    #[test]
    fn log_sk_orders_by_time_then_position() {
        let whole_second = Utc.with_ymd_and_hms(2025, 3, 1, 12, 0, 0).unwrap();
        let later = whole_second + chrono::Duration::nanoseconds(1);
        let first = log_sk(&decision_at(whole_second, "title"), 1);
        let second = log_sk(&decision_at(whole_second, "price"), 2);
        let third = log_sk(&decision_at(later, "a"), 0);
        assert_eq!(first, "2025-03-01T12:00:00.000000000Z#000001#title");
        assert!(first < second);
        assert!(second < third);
    }

    #[test]
    fn keys_put_free_form_part_last() {
        let key = RecordKey::new("demo", "product", "MUG#RED");
        assert_eq!(record_pk(&key), "REC#demo#product#MUG#RED");
        assert_eq!(log_pk(&key), "LOG#demo#product#MUG#RED");
        let xid = xid_pk(
            "demo",
            &SystemId::new("storefront"),
            &EntityType::new("product"),
            "gid://1",
        );
        assert_eq!(xid, "XID#demo#storefront#product#gid://1");
    }

    #[test]
    fn number_attribute_rejects_negative() {
        let item = HashMap::from([(REVISION.to_owned(), AttributeValue::N("-1".into()))]);
        assert!(matches!(
            number_attribute(&item, REVISION),
            Err(ItemError::InvalidNumber { .. })
        ));
    }
}
