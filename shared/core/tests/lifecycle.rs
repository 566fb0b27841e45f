//! Unit tests of the declared lifecycles in the repository's `rules.toml`: allowed, rejected and
//! late status moves, manual tasks and the creates a transition causes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use fieldsync_core::{
    reconcile, refresh_task_titles, ChangeSet, Decision, FieldName, Outcome, Record, RecordKey, Rules, SystemId, Wire,
    WriteKind,
};

fn rules() -> Rules {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../rules.toml");
    Rules::parse("rules.toml", &std::fs::read_to_string(path).unwrap()).unwrap()
}

fn at(seconds: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2025, 6, 1, 10, 0, 0).unwrap() + Duration::seconds(seconds)
}

fn change(entity: &str, key: &str, source: &str, event: &str, seconds: i64, fields: &[(&str, Wire)]) -> ChangeSet {
    ChangeSet {
        record: RecordKey::new("demo", entity, key),
        source: SystemId::new(source),
        event_id: event.to_owned(),
        occurred_at: at(seconds),
        received_at: at(seconds),
        external_id: None,
        fields: fields
            .iter()
            .map(|(name, wire)| (FieldName::new(*name), wire.clone()))
            .collect::<BTreeMap<_, _>>(),
    }
}

fn text(value: &str) -> Wire {
    Wire::Text(value.to_owned())
}

fn outcome(decisions: &[Decision], field: &str) -> Outcome {
    decisions
        .iter()
        .find(|decision| decision.field.as_str() == field)
        .unwrap_or_else(|| panic!("no decision on {field}: {decisions:?}"))
        .outcome
}

/// Reconciles a change and confirms every outbox write, as a successful flush does, with the
/// target ids `erp` → `Q-1001` style numbers.
fn apply(rules: &Rules, record: Option<Record>, change: &ChangeSet) -> (Record, Vec<Decision>) {
    let mut reconciled = reconcile(rules, record, change, change.occurred_at);
    for write in reconciled.record.outbox.clone() {
        reconciled.record.confirm_write(&write, Some("Q-1001".to_owned()));
    }
    (reconciled.record, reconciled.decisions)
}

fn requested_quote(rules: &Rules) -> Record {
    let request = change(
        "quote",
        "7001",
        "storefront",
        "sf-1",
        0,
        &[("status", text("requested")), ("customer", text("8001"))],
    );
    let reconciled = reconcile(rules, None, &request, at(0));
    let create = &reconciled.record.outbox[0];
    assert_eq!(create.kind, WriteKind::Create);
    assert_eq!(create.target, SystemId::new("erp"));
    let mut record = reconciled.record.clone();
    record.confirm_write(create, Some("Q-1001".to_owned()));
    record
}

#[test]
fn quote_request_creates_erp_quote_and_task() {
    let rules = rules();
    let request = change(
        "quote",
        "7001",
        "storefront",
        "sf-1",
        0,
        &[("status", text("requested"))],
    );
    let reconciled = reconcile(&rules, None, &request, at(0));
    assert_eq!(outcome(&reconciled.decisions, "status"), Outcome::Create);
    assert_eq!(reconciled.record.status.as_deref(), Some("requested"));
    assert_eq!(reconciled.record.tasks.len(), 1);
    let task = &reconciled.record.tasks[0];
    assert_eq!(task.system, SystemId::new("erp"));
    assert_eq!((task.from.as_str(), task.to.as_str()), ("requested", "approved"));
    // The ERP number is unknown until the ERP returns it, so the title names the record key.
    assert_eq!(task.title, "price and approve quote 7001");
}

#[test]
fn task_title_names_erp_number_once_known() {
    let rules = rules();
    let record = requested_quote(&rules);
    let echo = change("quote", "7001", "erp", "erp-1", 1, &[("status", text("requested"))]);
    let (record, _) = apply(&rules, Some(record), &echo);
    assert_eq!(record.tasks[0].title, "price and approve quote Q-1001");
}

#[test]
fn confirmed_create_renames_task() {
    let rules = rules();
    let mut record = requested_quote(&rules);
    assert_eq!(record.tasks[0].title, "price and approve quote 7001");
    refresh_task_titles(&rules, &mut record);
    assert_eq!(record.tasks[0].title, "price and approve quote Q-1001");
}

#[test]
fn manual_step_done_closes_task_and_flows() {
    let rules = rules();
    let record = requested_quote(&rules);
    let approve = change(
        "quote",
        "7001",
        "erp",
        "erp-2",
        5,
        &[("status", text("approved")), ("total", Wire::Number("115.00".into()))],
    );
    let reconciled = reconcile(&rules, Some(record), &approve, at(5));
    assert_eq!(outcome(&reconciled.decisions, "status"), Outcome::Apply);
    assert_eq!(outcome(&reconciled.decisions, "total"), Outcome::Apply);
    assert!(reconciled.record.tasks.is_empty(), "{:?}", reconciled.record.tasks);
    let write = &reconciled.record.outbox[0];
    assert_eq!(write.target, SystemId::new("storefront"));
    assert!(write.fields.contains_key(&FieldName::new("status")));
    assert!(write.fields.contains_key(&FieldName::new("total")));
}

#[test]
fn disallowed_transition_is_rejected_without_write() {
    let rules = rules();
    let record = requested_quote(&rules);
    let convert = change(
        "quote",
        "7001",
        "storefront",
        "sf-2",
        5,
        &[("status", text("converted")), ("customer", text("8002"))],
    );
    let reconciled = reconcile(&rules, Some(record), &convert, at(5));
    assert_eq!(outcome(&reconciled.decisions, "status"), Outcome::RejectedTransition);
    assert_eq!(outcome(&reconciled.decisions, "customer"), Outcome::RejectedTransition);
    let reason = &reconciled.decisions[0].reason;
    assert!(
        reason.contains("no transition from \"requested\" to \"converted\""),
        "{reason}"
    );
    assert_eq!(reconciled.record.status.as_deref(), Some("requested"));
    assert!(reconciled.record.outbox.is_empty());
    assert_eq!(reconciled.record.tasks.len(), 1, "the manual step stays open");
}

#[test]
fn manual_step_by_other_system_is_rejected() {
    let rules = rules();
    let record = requested_quote(&rules);
    let approve = change(
        "quote",
        "7001",
        "storefront",
        "sf-3",
        5,
        &[("status", text("approved"))],
    );
    let reconciled = reconcile(&rules, Some(record), &approve, at(5));
    assert_eq!(outcome(&reconciled.decisions, "status"), Outcome::RejectedTransition);
    assert!(reconciled.decisions[0].reason.contains("only erp may move"));
    assert!(reconciled.record.outbox.is_empty());
}

#[test]
fn late_status_is_regression_despite_newer_time() {
    let rules = rules();
    let shipped = change(
        "shipment",
        "SH-1001",
        "erp",
        "erp-1",
        0,
        &[("status", text("shipped")), ("carrier", text("DHL"))],
    );
    let (record, _) = apply(&rules, None, &shipped);
    let delivered = change(
        "shipment",
        "SH-1001",
        "erp",
        "erp-2",
        10,
        &[("status", text("delivered"))],
    );
    let (record, decisions) = apply(&rules, Some(record), &delivered);
    assert_eq!(outcome(&decisions, "status"), Outcome::Apply);

    // A retry of the first event, stamped later by the sender, carries "shipped" again.
    let late = change(
        "shipment",
        "SH-1001",
        "erp",
        "erp-1-retry",
        20,
        &[("status", text("shipped")), ("carrier", text("UPS"))],
    );
    let reconciled = reconcile(&rules, Some(record), &late, at(20));
    assert_eq!(outcome(&reconciled.decisions, "status"), Outcome::Regression);
    assert_eq!(outcome(&reconciled.decisions, "carrier"), Outcome::Regression);
    assert_eq!(reconciled.record.status.as_deref(), Some("delivered"));
    assert!(reconciled.record.outbox.is_empty());
}

#[test]
fn transition_creates_record_on_target() {
    let rules = rules();
    let shipped = change(
        "shipment",
        "SH-1001",
        "erp",
        "erp-1",
        0,
        &[("status", text("shipped")), ("order", text("5001"))],
    );
    let reconciled = reconcile(&rules, None, &shipped, at(0));
    let create = &reconciled.record.outbox[0];
    assert_eq!((create.kind, create.target.as_str()), (WriteKind::Create, "storefront"));
    assert_eq!(create.fields.len(), 2);
}

#[test]
fn unknown_state_in_transition_names_position() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../rules.toml")).unwrap();
    let text = text.replace(
        "{ from = \"approved\", to = \"converted\", by = \"storefront\" }",
        "{ from = \"aproved\", to = \"converted\", by = \"storefront\" }",
    );
    let error = Rules::parse("rules.toml", &text).unwrap_err();
    assert!(error.message.contains("unknown state \"aproved\""), "{error}");
    let line = text.lines().position(|line| line.contains("\"aproved\"")).unwrap() + 1;
    assert_eq!(error.line, line, "{error}");
}

#[test]
fn owner_by_status_must_name_declared_state() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../rules.toml")).unwrap();
    let text = text.replace(
        "owner_by_status = { approved = \"erp\", converted = \"erp\" }",
        "owner_by_status = { approved = \"erp\", ordered = \"erp\" }",
    );
    let error = Rules::parse("rules.toml", &text).unwrap_err();
    assert!(error.message.contains("unknown state \"ordered\""), "{error}");
}

#[test]
fn open_task_blocks_other_systems_moves() {
    let rules_text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../rules.toml")).unwrap();
    // A storefront cancellation would be allowed from "requested", were it not for the open
    // manual step of the ERP.
    let rules_text = rules_text.replace(
        "states = [\"requested\", \"approved\", \"converted\"]",
        "states = [\"requested\", \"approved\", \"converted\", \"cancelled\"]",
    );
    let rules_text = rules_text.replace(
        "    { from = \"approved\", to = \"converted\", by = \"storefront\" },\n",
        "    { from = \"approved\", to = \"converted\", by = \"storefront\" },\n    { from = \"requested\", to = \"cancelled\", by = \"storefront\" },\n",
    );
    let rules = Rules::parse("rules.toml", &rules_text).unwrap();

    let record = requested_quote(&rules);
    let cancel = change(
        "quote",
        "7001",
        "storefront",
        "sf-4",
        5,
        &[("status", text("cancelled"))],
    );
    let reconciled = reconcile(&rules, Some(record), &cancel, at(5));

    assert_eq!(outcome(&reconciled.decisions, "status"), Outcome::RejectedTransition);
    let reason = &reconciled.decisions[0].reason;
    assert!(
        reason.starts_with("waiting for the manual step \"price and approve quote ") && reason.ends_with("\" in erp"),
        "{reason}"
    );
    assert_eq!(reconciled.record.status.as_deref(), Some("requested"));
    assert!(reconciled.record.outbox.is_empty());
}
