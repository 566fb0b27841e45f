//! The pure decision: what one change does to a record, field by field.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::change::ChangeSet;
use crate::ids::{FieldName, RecordKey, SystemId};
use crate::lifecycle::{render_task, Lifecycle, StatusCheck, Task};
use crate::record::{FieldState, OutboundWrite, Record, Seen, Version, WriteKind};
use crate::rules::{CreateRule, EntityRules, FieldRule, ForeignEdit, Rules};
use crate::value::{check_decimal_members, FieldValue};
use crate::wire::Wire;

/// Event ids kept in a record to drop redeliveries atomically with its state (about 80 bytes
/// each). Older duplicates are dropped by the store's delivery marks, which keeps the item small.
const RECENT_EVENTS_KEPT: usize = 256;

/// How much older than the current value a change from another system must be to be stale.
const CROSS_SOURCE_TOLERANCE: Duration = Duration::seconds(1);

/// The reconciler's verdict on one field of one change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The owner changed the value: it becomes current and goes to the `targets`.
    Apply,
    /// As `Apply`, and the record is created in a target that lacked it.
    Create,
    /// The change is older than what is stored for this field.
    Stale,
    /// The source reported back exactly what fieldsync wrote to it.
    Echo,
    /// A system that does not own the field changed it: ignored, or reverted when `targets` is
    /// not empty.
    NotOwner,
    /// The value is what the source or the record already had.
    NoChange,
    /// The value could not be read as the field's type.
    Rejected,
    /// The event was already applied.
    Duplicate,
    /// The event moves the status where no declared transition from the current state leads,
    /// or carries fields of such a move. Nothing is written.
    RejectedTransition,
    /// The event reports a state that comes before the current one, so it is late. Nothing is
    /// written.
    Regression,
}

impl Outcome {
    /// Returns the outcome's name as used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Apply => "apply",
            Outcome::Create => "create",
            Outcome::Stale => "stale",
            Outcome::Echo => "echo",
            Outcome::NotOwner => "not_owner",
            Outcome::NoChange => "no_change",
            Outcome::Rejected => "rejected",
            Outcome::Duplicate => "duplicate",
            Outcome::RejectedTransition => "rejected_transition",
            Outcome::Regression => "regression",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One entry of the per-field decision log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    pub record: RecordKey,
    pub field: FieldName,
    pub source: SystemId,
    pub event_id: String,
    pub event_at: DateTime<Utc>,
    pub decided_at: DateTime<Utc>,
    /// The value the event carried, when it could be read.
    pub value: Option<FieldValue>,
    pub outcome: Outcome,
    /// The systems written to because of this decision.
    pub targets: Vec<SystemId>,
    pub reason: String,
}

/// The result of reconciling one change against a record.
#[derive(Debug, Clone)]
pub struct Reconciliation {
    /// The record to store (with outbox entries for the writes to make).
    pub record: Record,
    pub decisions: Vec<Decision>,
    /// False when nothing needs storing (a duplicate, or an entity without rules).
    pub changed: bool,
}

struct FieldDecision {
    outcome: Outcome,
    reason: String,
    writes: Vec<(SystemId, FieldValue)>,
}

/// Reconciles one change against the stored record, deciding every field it carries.
///
/// NOTE: claim-on-edit fields follow the latest edit when changes arrive in order and settle. The
/// two systems can end with different values when people edit the same field on both while
/// earlier changes are in flight, or when a sender delivers full payloads out of order. The
/// cause is that a payload stamps unchanged fields with its own time. Per-field change times from the
/// sender, or a conditional write at the target, would close this gap.
///
/// New outbound writes are merged into the record's outbox, one entry per target, so a batch of
/// changes to the same record produces at most one call per target.
pub fn reconcile(rules: &Rules, current: Option<Record>, change: &ChangeSet, now: DateTime<Utc>) -> Reconciliation {
    let mut record = current.unwrap_or_else(|| Record::new(change.record.clone()));
    let mut decisions = Vec::new();
    let log = |field: &FieldName, value: Option<FieldValue>, outcome, targets, reason: String| Decision {
        record: change.record.clone(),
        field: field.clone(),
        source: change.source.clone(),
        event_id: change.event_id.clone(),
        event_at: change.occurred_at,
        decided_at: now,
        value,
        outcome,
        targets,
        reason,
    };

    let Some(entity) = rules.entity(&change.record.entity) else {
        for field in change.fields.keys() {
            let reason = format!("no rules for entity {:?}", change.record.entity.as_str());
            decisions.push(log(field, None, Outcome::Rejected, Vec::new(), reason));
        }
        return Reconciliation {
            record,
            decisions,
            changed: false,
        };
    };
    if let Some(applied_at) = record.recent_events.get(&change.event_id) {
        for field in change.fields.keys() {
            let reason = format!("event {} was already applied at {applied_at}", change.event_id);
            decisions.push(log(field, None, Outcome::Duplicate, Vec::new(), reason));
        }
        return Reconciliation {
            record,
            decisions,
            changed: false,
        };
    }

    let retention = rules.echo_window;
    record
        .recent_events
        .retain(|_, applied_at| now - *applied_at <= retention);
    record.recent_events.insert(change.event_id.clone(), now);
    while record.recent_events.len() > RECENT_EVENTS_KEPT {
        let oldest = record.recent_events.iter().min_by_key(|(_, applied_at)| **applied_at);
        let Some(oldest) = oldest.map(|(id, _)| id.clone()) else {
            break;
        };
        record.recent_events.remove(&oldest);
    }

    let mut updates: BTreeMap<SystemId, PlannedWrite> = BTreeMap::new();
    let mut creates = entity.create.clone();
    // Set when the event's status move is rejected, so its other fields are not applied either.
    let mut status_rejected: Option<(Outcome, String)> = None;
    for (field, wire) in ordered_fields(entity, change) {
        let Some(rule) = entity.fields.get(field) else { continue };
        if let Some((outcome, reason)) = &status_rejected {
            let reason = format!("the event's status change was rejected: {reason}");
            decisions.push(log(field, None, *outcome, Vec::new(), reason));
            continue;
        }
        let is_status = Some(field) == entity.status_field.as_ref();
        let lifecycle = entity.lifecycle.as_ref().filter(|_| is_status);
        let value = rule.field_type.parse(wire).and_then(|value| match value {
            Some(FieldValue::Json(json)) if !rule.decimal_members.is_empty() => {
                check_decimal_members(&json, &rule.decimal_members).map(|json| Some(FieldValue::Json(json)))
            }
            other => Ok(other),
        });
        let previous_status = record.status.clone();
        let gate = lifecycle.map(|lifecycle| StatusGate {
            lifecycle,
            tasks: &record.tasks,
        });
        let state = record.fields.entry(field.clone()).or_default();
        // Taken before deciding, because deciding records the new value as written.
        let known_before: BTreeMap<SystemId, FieldValue> = rules
            .systems
            .keys()
            .filter_map(|system| state.known_in(system).map(|value| (system.clone(), value.clone())))
            .collect();
        let status = previous_status.as_deref();
        let Some(decided) = decide_field(rule, state, status, change, value.clone(), now, rules.echo_window, gate)
        else {
            continue;
        };

        if is_status && matches!(decided.outcome, Outcome::Apply) {
            record.status = state.value.as_ref().map(status_text);
            if let (Some(lifecycle), Some(next)) = (lifecycle, record.status.as_deref()) {
                if let StatusCheck::Allowed(transition) = lifecycle.check(status, next, &change.source) {
                    creates.extend(transition.create_on.iter().map(|on| CreateRule {
                        on: on.clone(),
                        from: vec![change.source.clone()],
                        defaults: BTreeMap::new(),
                    }));
                }
            }
        }
        if is_status && matches!(decided.outcome, Outcome::RejectedTransition | Outcome::Regression) {
            status_rejected = Some((decided.outcome, decided.reason.clone()));
        }
        let targets = decided.writes.iter().map(|(target, _)| target.clone()).collect();
        for (target, written) in decided.writes {
            let planned = updates.entry(target.clone()).or_default();
            if let Some(before) = known_before.get(&target) {
                planned.previous.insert(field.clone(), before.clone());
            }
            planned.fields.insert(field.clone(), written);
        }
        decisions.push(log(
            field,
            value.ok().flatten(),
            decided.outcome,
            targets,
            decided.reason,
        ));
    }

    // A change whose every field is stale or invalid may come from an old or foreign copy of
    // the record, so only a change that was acted on updates the source's id.
    let current = decisions
        .iter()
        .any(|decision| !matches!(decision.outcome, Outcome::Stale | Outcome::Rejected));
    if let (true, Some(id)) = (current, &change.external_id) {
        record.ids.insert(change.source.clone(), id.clone());
    }

    if let Some(lifecycle) = &entity.lifecycle {
        update_tasks(lifecycle, &mut record, now);
    }

    for created_on in plan_creates(entity, &creates, &mut record, change, now, rules.echo_window) {
        updates.remove(&created_on);
        for decision in &mut decisions {
            if decision.outcome == Outcome::Apply && decision.targets.contains(&created_on) {
                decision.outcome = Outcome::Create;
            }
        }
    }
    for (target, planned) in updates {
        queue_write(&mut record, target, WriteKind::Update, planned, change.occurred_at);
    }
    Reconciliation {
        record,
        decisions,
        changed: true,
    }
}

/// Puts the status field first, so the other fields are decided under the status it sets.
fn ordered_fields<'a>(entity: &EntityRules, change: &'a ChangeSet) -> Vec<(&'a FieldName, &'a Wire)> {
    let mut fields: Vec<_> = change.fields.iter().collect();
    if let Some(status_field) = &entity.status_field {
        fields.sort_by_key(|(name, _)| *name != status_field);
    }
    fields
}

/// The lifecycle that decides a status field in place of its ownership, with the record's open
/// tasks.
#[derive(Clone, Copy)]
struct StatusGate<'a> {
    lifecycle: &'a Lifecycle,
    tasks: &'a [Task],
}

impl StatusGate<'_> {
    /// Returns the rejection of a status move, or `None` when the move may apply. While a manual
    /// task is open, only the system that takes the step may move the record on.
    fn reject(&self, current: Option<&str>, value: &FieldValue, source: &SystemId) -> Option<FieldDecision> {
        let next = status_text(value);
        match self.lifecycle.check(current, &next, source) {
            StatusCheck::Unchanged => None,
            StatusCheck::Regression { reason } => Some(decision(Outcome::Regression, reason)),
            StatusCheck::NotAllowed { reason } => Some(decision(Outcome::RejectedTransition, reason)),
            StatusCheck::Allowed(_) => {
                let blocking = self.tasks.iter().find(|task| task.system != *source);
                blocking.map(|task| {
                    let reason = format!("waiting for the manual step \"{}\" in {}", task.title, task.system);
                    decision(Outcome::RejectedTransition, reason)
                })
            }
        }
    }
}

/// Renders the titles of a record's open tasks again, as after a confirmed write taught the
/// record an id that a title names (`{id.erp}`).
pub fn refresh_task_titles(rules: &Rules, record: &mut Record) {
    if let Some(lifecycle) = rules
        .entity(&record.key.entity)
        .and_then(|entity| entity.lifecycle.as_ref())
    {
        render_task_titles(lifecycle, record);
    }
}

fn render_task_titles(lifecycle: &Lifecycle, record: &mut Record) {
    let titles: Vec<String> = record
        .tasks
        .iter()
        .map(|task| {
            let template = lifecycle
                .manual_from(&task.from)
                .find(|transition| transition.to == task.to)
                .and_then(|transition| transition.task.as_deref())
                .unwrap_or("move {entity} {key} to the next state");
            render_task(template, record)
        })
        .collect();
    for (task, title) in record.tasks.iter_mut().zip(titles) {
        task.title = title;
    }
}

/// Closes the tasks of states the record has left, opens one per manual transition from its
/// current state, and renders every open title again, since the record may know more ids now.
fn update_tasks(lifecycle: &Lifecycle, record: &mut Record, now: DateTime<Utc>) {
    let current = record.status.clone();
    record.tasks.retain(|task| Some(&task.from) == current.as_ref());
    let Some(current) = current else { return };
    for transition in lifecycle.manual_from(&current) {
        let open = record
            .tasks
            .iter()
            .any(|task| task.to == transition.to && task.system == transition.by);
        if !open {
            record.tasks.push(Task {
                title: String::new(),
                system: transition.by.clone(),
                from: current.clone(),
                to: transition.to.clone(),
                opened_at: now,
            });
        }
    }
    render_task_titles(lifecycle, record);
}

#[allow(clippy::too_many_arguments)]
fn decide_field(
    rule: &FieldRule,
    state: &mut FieldState,
    status: Option<&str>,
    change: &ChangeSet,
    value: Result<Option<FieldValue>, crate::value::InvalidValue>,
    now: DateTime<Utc>,
    echo_window: Duration,
    gate: Option<StatusGate<'_>>,
) -> Option<FieldDecision> {
    let source = &change.source;
    let at = change.occurred_at;
    let value = match value {
        Ok(Some(value)) => value,
        Ok(None) => return None,
        Err(invalid) => return Some(decision(Outcome::Rejected, invalid.to_string())),
    };

    if let Some(seen) = state.observed.get(source).filter(|seen| at < seen.at) {
        return Some(decision(
            Outcome::Stale,
            format!("older than the last change from {source} at {}", seen.at),
        ));
    }
    // The source's value just before this change, as far as fieldsync has seen: its own last
    // report, or a value fieldsync wrote to it since, unless this change predates that write.
    // Even a change older than the current value updates the report, because later full
    // payloads from the source are compared with it.
    let previous = match state.last_written(source) {
        Some(written) if at < written.at => state.observed.get(source).map(|seen| seen.value.clone()),
        _ => state.known_in(source).cloned(),
    };
    state.observed.insert(
        source.clone(),
        Seen {
            value: value.clone(),
            at,
        },
    );
    if let Some(written) = state.last_written(source) {
        if written.value == value && now - written.at <= echo_window {
            return Some(decision(
                Outcome::Echo,
                format!("fieldsync wrote this value to {source} at {}", written.at),
            ));
        }
    }
    if let Some(version) = state.version.as_ref().filter(|version| is_older(at, source, version)) {
        let reason = format!(
            "older than the current value, set by {} at {}",
            version.source, version.at
        );
        return Some(decision(Outcome::Stale, reason));
    }
    if state.is_superseded_echo(source, &value, at) {
        let reason = format!("echo of an earlier write to {source}, since replaced by a newer write");
        return Some(decision(Outcome::Stale, reason));
    }
    if let Some(written) = state
        .last_written(source)
        .filter(|written| at + CROSS_SOURCE_TOLERANCE <= written.at)
    {
        // Unless the source may claim the field, a report older than fieldsync's latest write to
        // it describes a value that write has already replaced.
        if !rule.claims_on_edit(status) {
            let reason = format!("reported before fieldsync's write to {source} at {}", written.at);
            return Some(decision(Outcome::Stale, reason));
        }
    }
    if previous.as_ref() == Some(&value) {
        return Some(decision(
            Outcome::NoChange,
            format!("{source} reported the same value as before"),
        ));
    }

    let owner = rule.owner(status, state.claimed_by.as_ref()).clone();
    let mut reason = format!("{source} owns this field");
    if let Some(gate) = gate {
        if let Some(rejected) = gate.reject(status, &value, source) {
            return Some(rejected);
        }
        reason = match status {
            Some(current) => format!(
                "{source} may move the status from {current:?} to {:?}",
                status_text(&value)
            ),
            None => format!("{source} may start the lifecycle in {:?}", status_text(&value)),
        };
    } else if *source != owner {
        if !rule.claims_on_edit(status) {
            return Some(not_owner(rule, state, source, &owner, now, echo_window));
        }
        state.claimed_by = Some(source.clone());
        reason = format!("{source} edited this field and now owns it (claim on edit, was {owner})");
    }

    if state.value.as_ref() == Some(&value) {
        return Some(decision(Outcome::NoChange, "already the current value".to_owned()));
    }
    state.value = Some(value.clone());
    state.version = Some(Version {
        at,
        source: source.clone(),
    });

    // The source is a target too when fieldsync wrote to it after this change happened there:
    // that write replaced the reported value, which must now be restored.
    let mut writes = Vec::new();
    for target in &rule.sync_to {
        if state.known_in(target) == Some(&value) {
            continue;
        }
        state.record_write(target, value.clone(), now, echo_window);
        writes.push((target.clone(), value.clone()));
    }
    Some(FieldDecision {
        outcome: Outcome::Apply,
        reason,
        writes,
    })
}

fn not_owner(
    rule: &FieldRule,
    state: &mut FieldState,
    source: &SystemId,
    owner: &SystemId,
    now: DateTime<Utc>,
    echo_window: Duration,
) -> FieldDecision {
    let current = match (rule.on_foreign_edit, state.value.clone()) {
        (ForeignEdit::Revert, Some(current)) => current,
        _ => {
            return decision(
                Outcome::NotOwner,
                format!("{owner} owns this field, so the edit from {source} is ignored"),
            )
        }
    };
    state.record_write(source, current.clone(), now, echo_window);
    FieldDecision {
        outcome: Outcome::NotOwner,
        reason: format!("{owner} owns this field, so {owner}'s value is written back to {source}"),
        writes: vec![(source.clone(), current)],
    }
}

/// Tells whether a change at `at` from `source` is older than `version`. Between different
/// sources, a change less than [`CROSS_SOURCE_TOLERANCE`] older is not called older: clocks of
/// two systems differ, and some platforms stamp whole seconds (Shopify's `updated_at`) while
/// others stamp milliseconds, so such a difference does not order the two changes.
fn is_older(at: DateTime<Utc>, source: &SystemId, version: &Version) -> bool {
    if *source == version.source {
        at < version.at
    } else {
        at + CROSS_SOURCE_TOLERANCE <= version.at
    }
}

fn decision(outcome: Outcome, reason: String) -> FieldDecision {
    FieldDecision {
        outcome,
        reason,
        writes: Vec::new(),
    }
}

fn status_text(value: &FieldValue) -> String {
    match value {
        FieldValue::Text(text) => text.clone(),
        other => other.to_string(),
    }
}

/// Queues a create in every system a create rule names that lacks the record, carrying every
/// field that syncs there plus the rule's defaults. Returns the systems a create was queued for.
fn plan_creates(
    entity: &EntityRules,
    create: &[CreateRule],
    record: &mut Record,
    change: &ChangeSet,
    now: DateTime<Utc>,
    echo_window: Duration,
) -> Vec<SystemId> {
    let mut created = Vec::new();
    for rule in create {
        let target = &rule.on;
        let pending = record
            .outbox
            .iter()
            .any(|write| &write.target == target && write.kind == WriteKind::Create);
        if *target == change.source || !rule.from.contains(&change.source) || record.ids.contains_key(target) || pending
        {
            continue;
        }

        let mut fields = BTreeMap::new();
        for (name, field_rule) in &entity.fields {
            let state = record.fields.entry(name.clone()).or_default();
            let value = match &state.value {
                Some(value) if field_rule.sync_to.contains(target) => value.clone(),
                _ => match rule.defaults.get(name) {
                    Some(default) => default.clone(),
                    None => continue,
                },
            };
            state.record_write(target, value.clone(), now, echo_window);
            fields.insert(name.clone(), value);
        }
        let planned = PlannedWrite {
            fields,
            previous: BTreeMap::new(),
        };
        queue_write(record, target.clone(), WriteKind::Create, planned, change.occurred_at);
        created.push(target.clone());
    }
    created
}

/// The field values one change sends to one target, with the values the target held before.
#[derive(Debug, Default)]
struct PlannedWrite {
    fields: BTreeMap<FieldName, FieldValue>,
    previous: BTreeMap<FieldName, FieldValue>,
}

/// Adds field values to the pending write for `target`, or queues a new one.
fn queue_write(
    record: &mut Record,
    target: SystemId,
    kind: WriteKind,
    planned: PlannedWrite,
    changed_at: DateTime<Utc>,
) {
    let PlannedWrite { fields, previous } = planned;
    if fields.is_empty() {
        return;
    }
    // A claimed write may be on its way already, so new values join only an unclaimed one.
    let unclaimed = record
        .outbox
        .iter_mut()
        .find(|write| write.target == target && write.claimed_until.is_none());
    if let Some(pending) = unclaimed {
        // The pending write has not gone out, so the target still has the earliest previous
        // value. A value joining the write keeps the one already there.
        for (name, value) in previous {
            if !pending.fields.contains_key(&name) {
                pending.previous.insert(name, value);
            }
        }
        pending.fields.extend(fields);
        pending.changed_at = pending.changed_at.min(changed_at);
        return;
    }
    let target_id = record.ids.get(&target).cloned();
    let id = record.next_write_id;
    record.next_write_id += 1;
    record.outbox.push(OutboundWrite {
        id,
        claimed_until: None,
        target,
        record: record.key.clone(),
        kind,
        target_id,
        fields,
        previous,
        changed_at,
        parked_on: Vec::new(),
    });
}
