//! Unit tests of the per-field decision, one outcome at a time.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use fieldsync_core::{
    reconcile, ChangeSet, FieldName, FieldValue, Outcome, Record, RecordKey, Rules, SystemId, Wire, WriteKind,
};

const RULES: &str = r#"
integration = "demo"
[systems.erp]
role = "erp"
[systems.storefront]
role = "storefront"

[entities.product]
key = "sku"
[[entities.product.create]]
on = "storefront"
from = ["erp"]
defaults = { published = false }
[entities.product.fields.price]
type = "money"
owner = "erp"
sync_to = ["storefront"]
on_foreign_edit = "revert"
[entities.product.fields.name]
type = "text"
owner = "erp"
sync_to = ["storefront"]
[entities.product.fields.meta]
type = "text"
claim_on_edit = "erp"
sync_to = ["storefront", "erp"]
[entities.product.fields.published]
type = "bool"
owner = "storefront"
[entities.product.fields.customer_prices]
type = "json"
decimal_members = ["unit_price"]
owner = "erp"
sync_to = ["storefront"]

[entities.order]
key = "id"
status_field = "status"
[entities.order.fields.status]
type = "text"
owner = "erp"
owner_by_status = { quote_requested = "storefront" }
sync_to = ["storefront", "erp"]
"#;

fn rules() -> Rules {
    Rules::parse("rules.toml", RULES).unwrap()
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 10, 0, 0).unwrap() + Duration::seconds(seconds)
}

fn change(source: &str, event: &str, seconds: i64, fields: &[(&str, Wire)]) -> ChangeSet {
    ChangeSet {
        record: RecordKey::new("demo", "product", "MUG-RED"),
        source: SystemId::new(source),
        event_id: event.to_owned(),
        occurred_at: at(seconds),
        received_at: at(seconds),
        external_id: Some(format!("{source}-id")),
        fields: fields
            .iter()
            .map(|(name, wire)| (FieldName::new(*name), wire.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn number(text: &str) -> Wire {
    Wire::Number(text.to_owned())
}

fn text(value: &str) -> Wire {
    Wire::Text(value.to_owned())
}

fn outcome(decisions: &[fieldsync_core::Decision], field: &str) -> Outcome {
    decisions
        .iter()
        .find(|decision| decision.field.as_str() == field)
        .unwrap()
        .outcome
}

/// Applies a change and marks every outbox write as confirmed, as a successful flush does.
fn apply(
    rules: &Rules,
    record: Option<Record>,
    change: &ChangeSet,
    now: i64,
) -> (Record, Vec<fieldsync_core::Decision>) {
    let mut reconciled = reconcile(rules, record, change, at(now));
    for write in reconciled.record.outbox.clone() {
        reconciled
            .record
            .confirm_write(&write, Some(format!("{}-id", write.target)));
    }
    (reconciled.record, reconciled.decisions)
}

#[test]
fn first_erp_change_creates_with_defaults() {
    let reconciled = reconcile(
        &rules(),
        None,
        &change("erp", "e1", 0, &[("price", number("19.99")), ("name", text("Mug"))]),
        at(1),
    );
    assert_eq!(outcome(&reconciled.decisions, "price"), Outcome::Create);
    let write = &reconciled.record.outbox[0];
    assert_eq!(write.kind, WriteKind::Create);
    assert_eq!(write.target, SystemId::new("storefront"));
    assert_eq!(write.fields[&FieldName::new("published")], FieldValue::Bool(false));
    assert_eq!(write.fields[&FieldName::new("name")], FieldValue::Text("Mug".into()));
}

#[test]
fn owner_change_applies_and_propagates() {
    let rules = rules();
    let (record, _) = apply(&rules, None, &change("erp", "e1", 0, &[("price", number("19.99"))]), 1);
    let reconciled = reconcile(
        &rules,
        Some(record),
        &change("erp", "e2", 10, &[("price", number("21"))]),
        at(11),
    );
    assert_eq!(outcome(&reconciled.decisions, "price"), Outcome::Apply);
    assert_eq!(reconciled.record.outbox.len(), 1);
    assert_eq!(reconciled.record.outbox[0].kind, WriteKind::Update);
    assert_eq!(reconciled.record.outbox[0].target_id.as_deref(), Some("storefront-id"));
}

#[test]
fn update_carries_previous_target_value() {
    let rules = rules();
    let money = |text: &str| FieldValue::Money(text.parse().unwrap());
    let (record, _) = apply(&rules, None, &change("erp", "e1", 0, &[("price", number("19.99"))]), 1);
    let reconciled = reconcile(
        &rules,
        Some(record),
        &change("erp", "e2", 10, &[("price", number("21"))]),
        at(11),
    );
    let write = &reconciled.record.outbox[0];
    assert_eq!(write.previous.get(&FieldName::new("price")), Some(&money("19.99")));

    // A later change joining the unsent write keeps the value the target still holds.
    let joined = reconcile(
        &rules,
        Some(reconciled.record),
        &change("erp", "e3", 20, &[("price", number("22"))]),
        at(21),
    );
    let write = &joined.record.outbox[0];
    assert_eq!(write.fields[&FieldName::new("price")], money("22"));
    assert_eq!(write.previous.get(&FieldName::new("price")), Some(&money("19.99")));
}

#[test]
fn create_has_no_previous_values() {
    let reconciled = reconcile(
        &rules(),
        None,
        &change("erp", "e1", 0, &[("price", number("5"))]),
        at(1),
    );
    assert!(reconciled.record.outbox[0].previous.is_empty());
}

#[test]
fn older_change_is_stale() {
    let rules = rules();
    let (record, _) = apply(&rules, None, &change("erp", "e2", 10, &[("price", number("21"))]), 11);
    let reconciled = reconcile(
        &rules,
        Some(record),
        &change("erp", "e1", 5, &[("price", number("19"))]),
        at(12),
    );
    assert_eq!(outcome(&reconciled.decisions, "price"), Outcome::Stale);
    assert!(reconciled.record.outbox.is_empty());
    assert_eq!(
        reconciled.record.value("price"),
        Some(&FieldValue::Money("21.00".parse().unwrap()))
    );
}

#[test]
fn returned_write_is_echo_at_currency_scale() {
    let rules = rules();
    let (record, _) = apply(&rules, None, &change("erp", "e1", 0, &[("price", number("19.99"))]), 1);
    let reconciled = reconcile(
        &rules,
        Some(record),
        &change("storefront", "s1", 2, &[("price", text("19.990"))]),
        at(3),
    );
    assert_eq!(outcome(&reconciled.decisions, "price"), Outcome::Echo);
    assert!(reconciled.record.outbox.is_empty());
}

#[test]
fn foreign_edit_is_reverted_when_rule_says_so() {
    let rules = rules();
    let (record, _) = apply(
        &rules,
        None,
        &change("erp", "e1", 0, &[("price", number("19.99")), ("name", text("Mug"))]),
        1,
    );
    let edit = change(
        "storefront",
        "s1",
        30,
        &[("price", text("9.99")), ("name", text("Cup"))],
    );
    let reconciled = reconcile(&rules, Some(record), &edit, at(31));
    assert_eq!(outcome(&reconciled.decisions, "price"), Outcome::NotOwner);
    assert_eq!(outcome(&reconciled.decisions, "name"), Outcome::NotOwner);
    let write = &reconciled.record.outbox[0];
    assert_eq!(write.target, SystemId::new("storefront"));
    assert_eq!(
        write.fields.len(),
        1,
        "only the revert field is written back: {write:?}"
    );
    assert_eq!(
        write.fields[&FieldName::new("price")],
        FieldValue::Money("19.99".parse().unwrap())
    );
}

#[test]
fn claim_on_edit_moves_ownership() {
    let rules = rules();
    let (record, _) = apply(&rules, None, &change("erp", "e1", 0, &[("meta", text("from erp"))]), 1);
    let (record, decisions) = apply(
        &rules,
        Some(record),
        &change("storefront", "s1", 30, &[("meta", text("marketing"))]),
        31,
    );
    assert_eq!(outcome(&decisions, "meta"), Outcome::Apply);
    assert_eq!(
        record.fields[&FieldName::new("meta")].claimed_by,
        Some(SystemId::new("storefront"))
    );
    // A full payload the ERP sent before fieldsync's write reached it still has the old value.
    let reconciled = reconcile(
        &rules,
        Some(record.clone()),
        &change("erp", "e2", 30, &[("meta", text("from erp"))]),
        at(32),
    );
    assert_eq!(
        outcome(&reconciled.decisions, "meta"),
        Outcome::NoChange,
        "the ERP's unchanged value claims nothing"
    );
    // A later edit in the ERP claims the field back.
    let reconciled = reconcile(
        &rules,
        Some(record),
        &change("erp", "e3", 40, &[("meta", text("erp again"))]),
        at(41),
    );
    assert_eq!(outcome(&reconciled.decisions, "meta"), Outcome::Apply);
    assert_eq!(
        reconciled.record.fields[&FieldName::new("meta")].claimed_by,
        Some(SystemId::new("erp"))
    );
}

#[test]
fn same_value_again_is_no_change() {
    let rules = rules();
    let (record, _) = apply(&rules, None, &change("erp", "e1", 0, &[("price", number("19.99"))]), 1);
    let reconciled = reconcile(
        &rules,
        Some(record),
        &change("erp", "e2", 10, &[("price", number("19.99"))]),
        at(11),
    );
    assert_eq!(outcome(&reconciled.decisions, "price"), Outcome::NoChange);
    assert!(reconciled.record.outbox.is_empty());
}

#[test]
fn invalid_money_is_rejected_and_others_apply() {
    let rules = rules();
    let (record, _) = apply(
        &rules,
        None,
        &change("erp", "e1", 0, &[("price", number("19.99")), ("name", text("Mug"))]),
        1,
    );
    let bad = change("erp", "e2", 10, &[("price", text("1..23")), ("name", text("Mug XL"))]);
    let reconciled = reconcile(&rules, Some(record), &bad, at(11));
    let rejected = reconciled
        .decisions
        .iter()
        .find(|decision| decision.field.as_str() == "price")
        .unwrap();
    assert_eq!(rejected.outcome, Outcome::Rejected);
    assert!(rejected.reason.contains("not a decimal number"), "{}", rejected.reason);
    assert_eq!(outcome(&reconciled.decisions, "name"), Outcome::Apply);
    assert_eq!(
        reconciled.record.value("price"),
        Some(&FieldValue::Money("19.99".parse().unwrap()))
    );
}

#[test]
fn empty_money_string_is_absent() {
    let reconciled = reconcile(
        &rules(),
        None,
        &change("erp", "e1", 0, &[("price", text("")), ("name", text("Mug"))]),
        at(1),
    );
    assert!(reconciled
        .decisions
        .iter()
        .all(|decision| decision.field.as_str() != "price"));
}

#[test]
fn repeated_event_is_duplicate() {
    let rules = rules();
    let first = change("erp", "e1", 0, &[("price", number("19.99"))]);
    let (record, _) = apply(&rules, None, &first, 1);
    let reconciled = reconcile(&rules, Some(record), &first, at(5000));
    assert_eq!(outcome(&reconciled.decisions, "price"), Outcome::Duplicate);
    assert!(!reconciled.changed);
}

#[test]
fn status_selects_owner() {
    let rules = rules();
    let mut request = change("storefront", "s1", 0, &[("status", text("quote_requested"))]);
    request.record = RecordKey::new("demo", "order", "Q-1");
    let (record, decisions) = apply(&rules, None, &request, 1);
    assert_eq!(
        outcome(&decisions, "status"),
        Outcome::NotOwner,
        "the ERP owns the status until it is a quote request"
    );
    assert_eq!(record.status, None);

    let mut quoted = change("erp", "e1", 10, &[("status", text("quote_requested"))]);
    quoted.record = request.record.clone();
    let (record, _) = apply(&rules, Some(record), &quoted, 11);
    assert_eq!(record.status.as_deref(), Some("quote_requested"));
    let mut edit = change("storefront", "s2", 20, &[("status", text("quote_accepted"))]);
    edit.record = request.record.clone();
    let (record, decisions) = apply(&rules, Some(record), &edit, 21);
    assert_eq!(
        outcome(&decisions, "status"),
        Outcome::Apply,
        "in quote_requested the storefront owns the status"
    );
    assert_eq!(record.status.as_deref(), Some("quote_accepted"));
}

#[test]
fn stale_change_keeps_known_id() {
    let rules = rules();
    let (record, _) = apply(
        &rules,
        None,
        &change("erp", "e1", 10, &[("price", number("19.99"))]),
        11,
    );
    let mut old_copy = change("storefront", "s1", 0, &[("price", text("5.00"))]);
    old_copy.external_id = Some("999/1".into());
    let reconciled = reconcile(&rules, Some(record), &old_copy, at(12));
    assert_eq!(outcome(&reconciled.decisions, "price"), Outcome::Stale);
    assert_eq!(reconciled.record.ids[&SystemId::new("storefront")], "storefront-id");
}

#[test]
fn rejected_write_leaves_echo_ledger() {
    let rules = rules();
    let (record, _) = apply(&rules, None, &change("erp", "e1", 0, &[("price", number("19.99"))]), 1);
    let mut reconciled = reconcile(
        &rules,
        Some(record),
        &change("erp", "e2", 10, &[("price", number("21"))]),
        at(11),
    );
    let write = reconciled.record.outbox[0].clone();
    reconciled.record.forget_write(&write);
    reconciled.record.confirm_write(&write, None);
    // The storefront never got 21.00, so its report of 21.00 would not be an echo.
    let state = &reconciled.record.fields[&FieldName::new("price")];
    assert_eq!(
        state.last_written(&SystemId::new("storefront")).unwrap().value,
        FieldValue::Money("19.99".parse().unwrap())
    );
}

#[test]
fn invalid_money_in_json_is_rejected() {
    let rules = rules();
    let prices =
        |price: &str| Wire::parse(format!(r#"[{{"customer":"C-1","unit_price":{price}}}]"#).as_bytes()).unwrap();
    let (record, _) = apply(
        &rules,
        None,
        &change("erp", "e1", 0, &[("customer_prices", prices("17.50"))]),
        1,
    );
    let stored = record.value("customer_prices").unwrap().clone();
    assert_eq!(
        stored,
        FieldValue::Json(Wire::parse(br#"[{"customer":"C-1","unit_price":"17.5"}]"#).unwrap())
    );

    let bad = change(
        "erp",
        "e2",
        10,
        &[("customer_prices", prices("\"1..2\"")), ("name", text("Mug"))],
    );
    let reconciled = reconcile(&rules, Some(record), &bad, at(11));
    let rejected = reconciled
        .decisions
        .iter()
        .find(|decision| decision.field.as_str() == "customer_prices")
        .unwrap();
    assert_eq!(rejected.outcome, Outcome::Rejected);
    assert!(rejected.reason.contains("1..2"), "{}", rejected.reason);
    assert_eq!(outcome(&reconciled.decisions, "name"), Outcome::Apply);
    assert_eq!(reconciled.record.value("customer_prices"), Some(&stored));
}

#[test]
fn decimal_members_need_json_type() {
    let text = RULES.replace(
        "type = \"bool\"\nowner = \"storefront\"",
        "type = \"bool\"\ndecimal_members = [\"x\"]\nowner = \"storefront\"",
    );
    let error = Rules::parse("rules.toml", &text).unwrap_err();
    assert!(error.message.contains("only to json fields"), "{error}");
}
