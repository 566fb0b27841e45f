//! Writes that name other records: an order names its customer and the products of its lines.
//! Such a write waits (is parked) until its target has every record it names.

use crate::ids::RecordKey;
use crate::record::{OutboundWrite, Record};
use crate::rules::Rules;
use crate::value::FieldValue;
use crate::wire::Wire;
use crate::SystemId;

/// Returns the records a write names through its reference fields, without repeats, in the
/// order the write's fields and list elements name them.
pub fn referenced_records(rules: &Rules, write: &OutboundWrite) -> Vec<RecordKey> {
    let Some(entity) = rules.entity(&write.record.entity) else {
        return Vec::new();
    };
    let mut keys: Vec<RecordKey> = Vec::new();
    for (name, value) in &write.fields {
        let Some(reference) = entity.fields.get(name).and_then(|rule| rule.references.as_ref()) else {
            continue;
        };
        let named: Vec<String> = match (value, &reference.member) {
            (FieldValue::Text(key), None) if !key.is_empty() => vec![key.clone()],
            (FieldValue::Json(list), Some(member)) => list
                .items()
                .iter()
                .filter_map(|element| element.get(member).and_then(Wire::as_key))
                .collect(),
            _ => Vec::new(),
        };
        for key in named {
            let key = RecordKey::new(write.record.integration.as_str(), reference.entity.clone(), key);
            if !keys.contains(&key) {
                keys.push(key);
            }
        }
    }
    keys
}

/// Tells whether `target` still lacks the referenced record `key`, stored as `referenced`.
///
/// A record with an id in `target` is there. A stored record without one is not there yet. A
/// record fieldsync has never stored counts as missing only when fieldsync creates that entity
/// in `target`: otherwise the target keeps such records itself (the ERP's items, say), and the
/// write goes out for the target to accept or reject.
pub fn missing_in_target(rules: &Rules, key: &RecordKey, referenced: Option<&Record>, target: &SystemId) -> bool {
    match referenced {
        Some(record) => !record.ids.contains_key(target),
        None => rules
            .entity(&key.entity)
            .is_some_and(|entity| entity.creates_in(target)),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::Utc;

    use super::*;
    use crate::record::WriteKind;
    use crate::FieldName;

    const RULES: &str = r#"
integration = "demo"
[systems.erp]
role = "erp"
[systems.storefront]
role = "storefront"
[entities.customer]
key = "id"
[[entities.customer.create]]
on = "erp"
from = ["storefront"]
[entities.customer.fields.name]
type = "text"
owner = "storefront"
[entities.product]
key = "sku"
[entities.product.fields.name]
type = "text"
owner = "erp"
[entities.order]
key = "id"
[entities.order.fields.customer]
type = "text"
owner = "storefront"
references = "customer"
[entities.order.fields.lines]
type = "json"
owner = "storefront"
references = "product"
reference_member = "sku"
"#;

    fn order_write() -> OutboundWrite {
        let lines = Wire::parse(br#"[{"sku":"MUG-RED"},{"sku":"MUG-BLUE"},{"sku":"MUG-RED"}]"#).unwrap();
        OutboundWrite {
            id: 0,
            claimed_until: None,
            target: SystemId::new("erp"),
            record: RecordKey::new("demo", "order", "5001"),
            kind: WriteKind::Create,
            target_id: None,
            fields: BTreeMap::from([
                (FieldName::new("customer"), FieldValue::Text("8001".into())),
                (FieldName::new("lines"), FieldValue::Json(lines)),
            ]),
            previous: Default::default(),
            changed_at: Utc::now(),
            parked_on: Vec::new(),
        }
    }

    #[test]
    fn referenced_records_lists_each_once() {
        let rules = Rules::parse("rules.toml", RULES).unwrap();
        let keys: Vec<String> = referenced_records(&rules, &order_write())
            .into_iter()
            .map(|key| key.to_string())
            .collect();
        assert_eq!(
            keys,
            ["demo/customer/8001", "demo/product/MUG-RED", "demo/product/MUG-BLUE"]
        );
    }

    #[test]
    fn unstored_record_missing_only_where_created() {
        let rules = Rules::parse("rules.toml", RULES).unwrap();
        let erp = SystemId::new("erp");
        let customer = RecordKey::new("demo", "customer", "8001");
        let product = RecordKey::new("demo", "product", "MUG-RED");
        assert!(missing_in_target(&rules, &customer, None, &erp));
        assert!(!missing_in_target(&rules, &product, None, &erp));

        let mut stored = Record::new(product.clone());
        assert!(missing_in_target(&rules, &product, Some(&stored), &erp));
        stored.ids.insert(erp.clone(), "ITEM-0001".into());
        assert!(!missing_in_target(&rules, &product, Some(&stored), &erp));
    }
}
