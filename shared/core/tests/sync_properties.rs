//! Property tests of the decision core against a simulated ERP and storefront.
//!
//! Both systems send full payloads (every field, as Shopify's `products/update` does) for every
//! change, including the changes fieldsync writes to them, so echoes come back for real.
//! Deliveries are reordered and duplicated at random, and people edit fields on both sides.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use fieldsync_core::{reconcile, ChangeSet, FieldName, FieldValue, Outcome, Record, RecordKey, Rules, SystemId, Wire};
use proptest::prelude::*;

const RULES: &str = r#"
integration = "prop"
[systems.erp]
role = "erp"
[systems.storefront]
role = "storefront"
[entities.product]
key = "sku"
[[entities.product.create]]
on = "storefront"
from = ["erp"]
[entities.product.fields.price]
type = "money"
owner = "erp"
sync_to = ["storefront"]
on_foreign_edit = "revert"
[entities.product.fields.meta]
type = "text"
claim_on_edit = "erp"
sync_to = ["storefront", "erp"]
"#;

const FIELDS: [&str; 2] = ["price", "meta"];

#[derive(Debug, Clone)]
enum Step {
    /// A person edits `field` in a system (true: ERP) to a value chosen from a small set, so
    /// repeated values happen.
    Edit { erp: bool, field: usize, value: u8 },
    /// Deliver the pending event at this index (modulo the pending count), possibly keeping a
    /// copy for a duplicate delivery later.
    Deliver { pick: usize, duplicate: bool },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (any::<bool>(), 0..FIELDS.len(), 0u8..4).prop_map(|(erp, field, value)| Step::Edit { erp, field, value }),
        (any::<usize>(), prop::bool::weighted(0.2)).prop_map(|(pick, duplicate)| Step::Deliver { pick, duplicate }),
    ]
}

struct World {
    rules: Rules,
    clock: DateTime<Utc>,
    next_event: u64,
    /// Current field values in each system.
    values: BTreeMap<&'static str, BTreeMap<&'static str, Wire>>,
    /// Time of the latest edit by a person per field: (system, value, at).
    last_edit: BTreeMap<&'static str, (&'static str, Wire, DateTime<Utc>)>,
    pending: Vec<ChangeSet>,
    record: Option<Record>,
    writes: Vec<(SystemId, FieldName, FieldValue)>,
    unneeded_writes: Vec<String>,
    reordered: bool,
}

impl World {
    fn new() -> Self {
        let mut world = World {
            rules: Rules::parse("prop.toml", RULES).unwrap(),
            clock: Utc.with_ymd_and_hms(2025, 6, 1, 8, 0, 0).unwrap(),
            next_event: 0,
            values: BTreeMap::new(),
            last_edit: BTreeMap::new(),
            pending: Vec::new(),
            record: None,
            writes: Vec::new(),
            unneeded_writes: Vec::new(),
            reordered: false,
        };
        // The ERP creates the item first: the storefront does not have it yet.
        world.edit("erp", "price", Wire::Number("10".into()));
        world.edit("erp", "meta", Wire::Text("m-erp".into()));
        world
    }

    fn tick(&mut self) -> DateTime<Utc> {
        self.clock += Duration::seconds(1);
        self.clock
    }

    fn edit(&mut self, system: &'static str, field: &'static str, value: Wire) {
        // Saving a field unchanged is not an edit: platforms send no change for it.
        if self.values.get(system).and_then(|values| values.get(field)) == Some(&value) {
            return;
        }
        let at = self.tick();
        self.values.entry(system).or_default().insert(field, value.clone());
        self.last_edit.insert(field, (system, value, at));
        self.emit(system, at);
    }

    /// Queues a full-payload webhook from `system` describing its current state.
    fn emit(&mut self, system: &'static str, at: DateTime<Utc>) {
        self.next_event += 1;
        let fields = self.values[system]
            .iter()
            .map(|(name, value)| (FieldName::new(*name), value.clone()))
            .collect();
        self.pending.push(ChangeSet {
            record: RecordKey::new("prop", "product", "SKU-1"),
            source: SystemId::new(system),
            event_id: format!("evt-{}", self.next_event),
            occurred_at: at,
            received_at: at,
            external_id: Some(format!("{system}-id")),
            fields,
        });
    }

    fn deliver(&mut self, pick: usize, duplicate: bool) {
        if self.pending.is_empty() {
            return;
        }
        let index = pick % self.pending.len();
        self.reordered |= index != 0;
        let change = if duplicate {
            self.pending[index].clone()
        } else {
            self.pending.remove(index)
        };
        let now = self.tick();
        let reconciled = reconcile(&self.rules, self.record.take(), &change, now);
        let mut record = reconciled.record;
        if std::env::var_os("FIELDSYNC_TRACE").is_some() {
            eprintln!(
                "deliver {} from {} at {}: {:?}",
                change.event_id,
                change.source,
                change.occurred_at.format("%M:%S"),
                change.fields
            );
            for decision in &reconciled.decisions {
                eprintln!(
                    "  {} {} -> {:?} {}",
                    decision.field, decision.outcome, decision.targets, decision.reason
                );
            }
        }
        for decision in &reconciled.decisions {
            let writes_allowed = matches!(decision.outcome, Outcome::Apply | Outcome::Create | Outcome::NotOwner);
            assert!(writes_allowed || decision.targets.is_empty(), "{decision:?} wrote");
        }

        // The outbound writes land at once, and each target sends a webhook about them.
        for write in std::mem::take(&mut record.outbox) {
            let target: &'static str = if write.target.as_str() == "erp" {
                "erp"
            } else {
                "storefront"
            };
            for (field, value) in &write.fields {
                let wire = to_wire(value);
                let field: &'static str = FIELDS.iter().find(|name| **name == field.as_str()).unwrap();
                if self
                    .values
                    .get(target)
                    .and_then(|values| values.get(field))
                    .map(|current| same(current, value))
                    == Some(true)
                {
                    self.unneeded_writes.push(format!("{target}.{field} already {value}"));
                }
                self.values.entry(target).or_default().insert(field, wire);
                self.writes
                    .push((write.target.clone(), FieldName::new(field), value.clone()));
            }
            record.ids.insert(write.target.clone(), format!("{target}-id"));
            let at = self.tick();
            self.emit(target, at);
        }
        self.record = Some(record);
    }

    fn settle(&mut self) {
        let mut rounds = 0;
        while !self.pending.is_empty() {
            self.deliver(0, false);
            rounds += 1;
            assert!(rounds < 10_000, "deliveries never settled");
        }
    }
}

fn to_wire(value: &FieldValue) -> Wire {
    match value {
        FieldValue::Money(amount) => Wire::Text(amount.to_string()),
        FieldValue::Text(text) => Wire::Text(text.clone()),
        other => panic!("unexpected value {other:?}"),
    }
}

fn same(wire: &Wire, value: &FieldValue) -> bool {
    let field_type = match value {
        FieldValue::Money(_) => fieldsync_core::FieldType::Money { scale: 2 },
        _ => fieldsync_core::FieldType::Text,
    };
    field_type.parse(wire).ok().flatten().as_ref() == Some(value)
}

fn run(steps: &[Step]) -> World {
    let mut world = World::new();
    for step in steps {
        run_step(&mut world, step);
    }
    world.settle();
    world
}

fn run_step(world: &mut World, step: &Step) {
    {
        match step {
            Step::Edit { erp, field, value } => {
                let system = if *erp { "erp" } else { "storefront" };
                if !world.values.contains_key(system) {
                    return;
                }
                let wire = match FIELDS[*field] {
                    "price" => Wire::Number(format!("{}.5", 10 + value)),
                    _ => Wire::Text(format!("m-{system}-{value}")),
                };
                world.edit(system, FIELDS[*field], wire);
            }
            Step::Deliver { pick, duplicate } => world.deliver(*pick, *duplicate),
        }
    }
}

/// How much a run guarantees for the claim-on-edit field.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Claims {
    /// Both systems and the record hold the value of the latest edit by a person.
    LatestEditWins,
    /// Nothing is checked. A full payload carries unchanged fields with the event's time, so a
    /// reordered, older payload can make an unchanged value look newer than a real edit made
    /// elsewhere, and the two systems can end apart.
    Unchecked,
}

/// Checks that both systems and the record contain the ERP's latest price, and the claim-on-edit
/// field as far as `claims` requires.
fn check_converged(world: &World, claims: Claims) {
    let record = world.record.as_ref().expect("record exists");
    for field in FIELDS {
        if field == "meta" && claims == Claims::Unchecked {
            continue;
        }
        let erp = &world.values["erp"][field];
        let storefront = world.values.get("storefront").and_then(|values| values.get(field));
        let canonical = record.value(field).expect("field has a value");
        let expected = match field {
            // The ERP owns the price, so its latest value wins everywhere.
            "price" => erp.clone(),
            // The latest edit by a person wins, on either system.
            _ => world.last_edit[field].1.clone(),
        };
        assert!(
            same(&expected, canonical),
            "{field}: record {canonical} but owner's latest is {expected:?}"
        );
        assert!(same(erp, canonical), "{field}: ERP has {erp:?}, record {canonical}");
        let storefront = storefront.expect("storefront has the product");
        assert!(
            same(storefront, canonical),
            "{field}: storefront has {storefront:?}, record {canonical}"
        );
    }
    assert!(record.outbox.is_empty());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// With reordering, duplicates and echoes, the ERP-owned price converges everywhere to the
    /// ERP's latest value, and a repeated full payload from either side afterwards writes nothing.
    #[test]
    fn reordered_deliveries_converge(steps in prop::collection::vec(step(), 0..60)) {
        let mut world = run(&steps);
        check_converged(&world, Claims::Unchecked);

        let writes_before = world.writes.len();
        world.emit("erp", world.clock);
        world.emit("storefront", world.clock);
        world.settle();
        prop_assert_eq!(world.writes.len(), writes_before, "a repeated full payload caused a write");
    }

    /// When every change settles before the next edit, with duplicates and echoes, no system
    /// ever receives a value it already has.
    #[test]
    fn settled_edits_write_only_changes(steps in prop::collection::vec(step(), 0..40)) {
        let mut world = World::new();
        world.settle();
        for step in &steps {
            if let Step::Edit { erp, field, value } = step {
                run_step(&mut world, &Step::Edit { erp: *erp, field: *field, value: *value });
                world.deliver(0, true);
                world.settle();
            }
        }
        check_converged(&world, Claims::LatestEditWins);
        prop_assert!(world.unneeded_writes.is_empty(), "unneeded writes: {:?}", world.unneeded_writes);
    }

}
