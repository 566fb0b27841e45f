//! Declared lifecycles: the states of a record's status, who may move it between them, and the
//! manual steps a person takes in one of the systems.
//!
//! A status reported by a system is checked against the transitions declared from the stored
//! status. A status listed before the stored one is a late event and never moves the record
//! back, whatever its timestamp, unless a transition declares that move.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::ids::{RecordKey, SystemId};
use crate::record::Record;

/// The states of an entity's status field, in lifecycle order, and the moves between them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    pub states: Vec<String>,
    pub transitions: Vec<Transition>,
}

/// A declared move of the status from `from` (`None`: a new record) to `to`, made by `by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub from: Option<String>,
    pub to: String,
    pub by: SystemId,
    /// A person takes this step in `by`: entering `from` opens a task that closes when `by`
    /// reports the record past `from`.
    pub manual: bool,
    /// The task title, with `{key}`, `{entity}`, `{id.<system>}` and `{<field>}` placeholders.
    pub task: Option<String>,
    /// Systems the record is created in when this transition happens and they lack it.
    pub create_on: Vec<SystemId>,
}

/// The verdict on a status a system reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StatusCheck<'a> {
    /// A declared transition allows the move.
    Allowed(&'a Transition),
    /// The reported status is the stored one.
    Unchanged,
    /// The reported status comes before the stored one: a late event.
    Regression { reason: String },
    /// No declared transition allows the move.
    NotAllowed { reason: String },
}

impl Lifecycle {
    /// Returns the position of `state` in the lifecycle order.
    pub fn position(&self, state: &str) -> Option<usize> {
        self.states.iter().position(|declared| declared == state)
    }

    /// Checks a move of the status from `current` to `next`, reported by `by`.
    pub fn check(&self, current: Option<&str>, next: &str, by: &SystemId) -> StatusCheck<'_> {
        if current == Some(next) {
            return StatusCheck::Unchanged;
        }
        let Some(next_position) = self.position(next) else {
            return StatusCheck::NotAllowed {
                reason: format!("{next:?} is not a declared state ({})", self.states.join(", ")),
            };
        };
        let declared: Vec<&Transition> = self
            .transitions
            .iter()
            .filter(|transition| transition.from.as_deref() == current && transition.to == next)
            .collect();
        if let Some(allowed) = declared.iter().find(|transition| transition.by == *by) {
            return StatusCheck::Allowed(allowed);
        }
        let current_position = current.and_then(|current| self.position(current));
        if let (Some(current), Some(current_position)) = (current, current_position) {
            if next_position < current_position && declared.is_empty() {
                return StatusCheck::Regression {
                    reason: format!("{next:?} comes before the current state {current:?}, so the event is late"),
                };
            }
        }
        let from = current.map_or_else(|| "a new record".to_owned(), |current| format!("{current:?}"));
        let reason = match declared.first() {
            Some(other) => format!("only {} may move {from} to {next:?}, not {by}", other.by),
            None => format!("no transition from {from} to {next:?} is declared"),
        };
        StatusCheck::NotAllowed { reason }
    }

    /// Returns the manual transitions that leave `state`.
    pub fn manual_from<'a>(&'a self, state: &'a str) -> impl Iterator<Item = &'a Transition> + 'a {
        self.transitions
            .iter()
            .filter(move |transition| transition.manual && transition.from.as_deref() == Some(state))
    }
}

/// A manual step a person must take in `system` before the record moves on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    pub title: String,
    /// The system where the step is taken and which reports it done.
    pub system: SystemId,
    /// The state the record waits in.
    pub from: String,
    /// The state the step moves it to.
    pub to: String,
    pub opened_at: DateTime<Utc>,
}

/// An open task with the record it belongs to, as the store lists them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenTask {
    pub record: RecordKey,
    pub task: Task,
}

/// Fills a task title's placeholders from the record: `{key}`, `{entity}`, `{id.<system>}` (the
/// record's id there, else its key) and `{<field>}` (the field's value, else empty).
pub fn render_task(template: &str, record: &Record) -> String {
    let mut title = String::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        title.push_str(&rest[..start]);
        let Some(length) = rest[start..].find('}') else {
            title.push_str(&rest[start..]);
            return title;
        };
        let name = &rest[start + 1..start + length];
        match name {
            "key" => title.push_str(&record.key.key),
            "entity" => title.push_str(record.key.entity.as_str()),
            _ => match name.strip_prefix("id.") {
                Some(system) => {
                    let id = record.ids.get(&SystemId::new(system)).unwrap_or(&record.key.key);
                    title.push_str(id);
                }
                None => {
                    if let Some(value) = record.value(name) {
                        let _ = write!(title, "{value}");
                    }
                }
            },
        }
        rest = &rest[start + length + 1..];
    }
    title.push_str(rest);
    title
}

#[cfg(test)]
mod tests {
    use super::*;

    fn quote_lifecycle() -> Lifecycle {
        let transition = |from: Option<&str>, to: &str, by: &str, manual: bool| Transition {
            from: from.map(str::to_owned),
            to: to.to_owned(),
            by: SystemId::new(by),
            manual,
            task: None,
            create_on: Vec::new(),
        };
        Lifecycle {
            states: vec!["requested".into(), "approved".into(), "converted".into()],
            transitions: vec![
                transition(None, "requested", "storefront", false),
                transition(Some("requested"), "approved", "erp", true),
                transition(Some("approved"), "converted", "storefront", false),
            ],
        }
    }

    #[test]
    fn declared_transition_is_allowed() {
        let lifecycle = quote_lifecycle();
        let check = lifecycle.check(Some("requested"), "approved", &SystemId::new("erp"));
        assert!(matches!(check, StatusCheck::Allowed(transition) if transition.manual));
        let check = lifecycle.check(None, "requested", &SystemId::new("storefront"));
        assert!(matches!(check, StatusCheck::Allowed(_)));
    }

    #[test]
    fn transition_by_other_system_is_not_allowed() {
        let lifecycle = quote_lifecycle();
        let check = lifecycle.check(Some("requested"), "approved", &SystemId::new("storefront"));
        let StatusCheck::NotAllowed { reason } = check else {
            panic!("expected NotAllowed, got {check:?}");
        };
        assert!(reason.contains("only erp may move"), "{reason}");
    }

    #[test]
    fn skipped_state_is_not_allowed() {
        let lifecycle = quote_lifecycle();
        let check = lifecycle.check(Some("requested"), "converted", &SystemId::new("storefront"));
        assert!(matches!(check, StatusCheck::NotAllowed { .. }), "{check:?}");
    }

    #[test]
    fn earlier_state_is_regression() {
        let lifecycle = quote_lifecycle();
        let check = lifecycle.check(Some("converted"), "approved", &SystemId::new("erp"));
        assert!(matches!(check, StatusCheck::Regression { .. }), "{check:?}");
    }

    #[test]
    fn undeclared_state_is_not_allowed() {
        let lifecycle = quote_lifecycle();
        let check = lifecycle.check(Some("requested"), "lost", &SystemId::new("erp"));
        assert!(matches!(check, StatusCheck::NotAllowed { .. }), "{check:?}");
    }

    #[test]
    fn same_state_is_unchanged() {
        let lifecycle = quote_lifecycle();
        let check = lifecycle.check(Some("approved"), "approved", &SystemId::new("storefront"));
        assert_eq!(check, StatusCheck::Unchanged);
    }

    #[test]
    fn render_task_fills_placeholders() {
        let mut record = Record::new(RecordKey::new("demo", "quote", "7001"));
        assert_eq!(render_task("price {entity} {id.erp}", &record), "price quote 7001");
        record.ids.insert(SystemId::new("erp"), "Q-1001".into());
        assert_eq!(
            render_task("price quote {id.erp} ({key})", &record),
            "price quote Q-1001 (7001)"
        );
        assert_eq!(render_task("unclosed {key", &record), "unclosed {key");
    }
}
