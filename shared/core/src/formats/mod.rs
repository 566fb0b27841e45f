//! Webhook formats: signature schemes and payload mappings, one module per sender.

pub mod bigcommerce;
pub mod business_central;
pub mod generic;
pub mod netsuite;
pub mod shopify;
pub mod signed_json;
pub mod woocommerce;

use std::collections::BTreeMap;
use std::str::FromStr;

use rust_decimal::Decimal;

use crate::ids::FieldName;
use crate::wire::Wire;

/// Copies `wire` into `fields` under `name` when the payload has the member.
fn put(fields: &mut BTreeMap<FieldName, Wire>, name: &str, wire: Option<&Wire>) {
    if let Some(wire) = wire {
        fields.insert(FieldName::new(name), wire.clone());
    }
}

/// Rewrites a decimal given as a number or a string into its shortest decimal text, so two
/// systems that write `21.25` and `"21.250"` give equal JSON values. Other values pass through.
fn canonical_decimal(wire: &Wire) -> Wire {
    let text = match wire {
        Wire::Number(text) | Wire::Text(text) => text,
        other => return other.clone(),
    };
    match Decimal::from_str(text.trim()) {
        Ok(amount) => Wire::Text(amount.normalize().to_string()),
        Err(_) => wire.clone(),
    }
}

/// Builds a list of objects that keeps only `members`, renamed from the sender's names, with
/// decimals in canonical form: `[(sender name, canonical name, is decimal)]`.
fn canonical_rows(rows: &Wire, members: &[(&str, &str, bool)]) -> Wire {
    let items = rows
        .items()
        .iter()
        .map(|row| {
            let mut map = BTreeMap::new();
            for (from, to, decimal) in members {
                if let Some(value) = row.get(from) {
                    let value = if *decimal {
                        canonical_decimal(value)
                    } else {
                        value.clone()
                    };
                    map.insert((*to).to_owned(), value);
                }
            }
            Wire::Map(map)
        })
        .collect();
    Wire::List(items)
}

/// Order line items in the canonical shape both sides compare: sku, quantity (a JSON number),
/// unit price (a decimal string).
fn canonical_lines(rows: &Wire, price_member: &str) -> Wire {
    let members = [
        ("sku", "sku", false),
        ("quantity", "quantity", true),
        (price_member, "unit_price", true),
    ];
    let mut lines = canonical_rows(rows, &members);
    if let Wire::List(items) = &mut lines {
        for item in items {
            if let Wire::Map(map) = item {
                if let Some(Wire::Text(quantity)) = map.get("quantity").cloned() {
                    map.insert("quantity".to_owned(), Wire::Number(quantity));
                }
            }
        }
    }
    lines
}

/// Returns the record key of a business document: fieldsync's external id without its
/// `<entity>:` prefix when the document carries one, else the sender's own id.
fn document_key(entity: &str, document: &Wire, own_id: Option<String>) -> Option<String> {
    let prefix = format!("{entity}:");
    document
        .get("external_id")
        .and_then(Wire::as_text)
        .and_then(|external_id| external_id.strip_prefix(prefix.as_str()))
        .map(str::to_owned)
        .or(own_id)
}

/// Copies a business document's members into fields, skipping the sender's bookkeeping
/// members, renaming per `renames` (sender name → canonical name), reading `customer` and
/// `order` as keys and order lines in their canonical shape (prices under `price_member`).
fn document_fields(
    document: &Wire,
    skip: &[&str],
    renames: &[(&str, &str)],
    price_member: &str,
) -> BTreeMap<FieldName, Wire> {
    let mut fields = BTreeMap::new();
    let Wire::Map(members) = document else {
        return fields;
    };
    for (name, value) in members {
        if skip.contains(&name.as_str()) || name == "external_id" {
            continue;
        }
        let canonical = renames
            .iter()
            .find(|(from, _)| *from == name)
            .map_or(name.as_str(), |(_, to)| *to);
        let value = match canonical {
            "lines" => canonical_lines(value, price_member),
            "customer" | "order" => value.as_key().map_or(Wire::Null, Wire::Text),
            _ => value.clone(),
        };
        fields.insert(FieldName::new(canonical), value);
    }
    fields
}
