//! The rules file: systems, entities, and who owns each field.
//!
//! A field has exactly one of `owner` (a fixed owning system) or `claim_on_edit` (an initial
//! owner, replaced by whichever system edits the field next). `owner_by_status` overrides either
//! while the record's status matches one of its keys. `sync_to` lists the systems that receive the
//! owner's changes; the owner itself is skipped. `on_foreign_edit = "revert"` writes the owner's
//! value back over an edit made by another system, and `"ignore"` (the default) only logs it.

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use chrono::Duration;
use serde::Deserialize;
use toml::Spanned;

use crate::ids::{EntityType, FieldName, SystemId};
use crate::lifecycle::{Lifecycle, Transition};
use crate::value::{FieldType, FieldValue};
use crate::wire::Wire;

/// How long a value fieldsync wrote is taken as the likely cause of an identical webhook, when no
/// `echo_window_secs` is set. BigCommerce retries deliveries for up to 48 hours.
const DEFAULT_ECHO_WINDOW_SECS: u64 = 48 * 3600;

/// Validated rules for one integration.
#[derive(Debug, Clone)]
pub struct Rules {
    pub integration: String,
    pub systems: BTreeMap<SystemId, SystemConfig>,
    pub entities: BTreeMap<EntityType, EntityRules>,
    pub echo_window: Duration,
}

/// A connected system and its role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemConfig {
    pub role: Role,
}

/// A system's role in the business. Roles are descriptive: ownership comes from the field rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Erp,
    Storefront,
    Pim,
    Logistics,
    Marketplace,
}

/// The rules for one entity type.
#[derive(Debug, Clone)]
pub struct EntityRules {
    /// A description of the natural key, such as `sku`.
    pub key: String,
    /// The field whose value is the record's status, for `owner_by_status`.
    pub status_field: Option<FieldName>,
    pub create: Vec<CreateRule>,
    pub fields: BTreeMap<FieldName, FieldRule>,
    /// The declared states and transitions of `status_field`, if the entity has a lifecycle.
    pub lifecycle: Option<Lifecycle>,
}

impl EntityRules {
    /// Tells whether fieldsync creates records of this entity in `system`, through a create rule
    /// or a lifecycle transition.
    pub fn creates_in(&self, system: &SystemId) -> bool {
        let by_rule = self.create.iter().any(|rule| rule.on == *system);
        let by_transition = self
            .lifecycle
            .as_ref()
            .is_some_and(|lifecycle| lifecycle.transitions.iter().any(|t| t.create_on.contains(system)));
        by_rule || by_transition
    }
}

/// Create the record in `on` when a change from one of `from` arrives and `on` lacks it.
#[derive(Debug, Clone)]
pub struct CreateRule {
    pub on: SystemId,
    pub from: Vec<SystemId>,
    /// Values for fields the source does not provide, such as `published = false`.
    pub defaults: BTreeMap<FieldName, FieldValue>,
}

/// Ownership and propagation of one field.
#[derive(Debug, Clone)]
pub struct FieldRule {
    pub field_type: FieldType,
    pub ownership: Ownership,
    pub owner_by_status: BTreeMap<String, SystemId>,
    pub sync_to: Vec<SystemId>,
    pub on_foreign_edit: ForeignEdit,
    /// For `json` fields: object members, at any depth, that hold money and must be decimals,
    /// such as `unit_price` in a customer price list.
    pub decimal_members: Vec<String>,
    /// The record this field names by its key, which a target must hold before a write that
    /// carries the field is sent there.
    pub references: Option<Reference>,
}

/// A field whose value is the key of another entity's record: the whole text, or for a `json`
/// list the `member` of each element (such as the `sku` of each order line).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub entity: EntityType,
    pub member: Option<String>,
}

/// The owner of a field when no status rule applies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    Fixed(SystemId),
    ClaimOnEdit { initial: SystemId },
}

/// The action taken when a system that does not own a field edits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForeignEdit {
    Ignore,
    Revert,
}

impl FieldRule {
    /// Returns the owning system for a record in `status`, given who claimed the field.
    pub fn owner<'a>(&'a self, status: Option<&str>, claimed_by: Option<&'a SystemId>) -> &'a SystemId {
        if let Some(owner) = status.and_then(|status| self.owner_by_status.get(status)) {
            return owner;
        }
        match &self.ownership {
            Ownership::Fixed(owner) => owner,
            Ownership::ClaimOnEdit { initial } => claimed_by.unwrap_or(initial),
        }
    }

    /// Tells whether a system other than the owner takes ownership by editing the field, outside
    /// any status rule.
    pub fn claims_on_edit(&self, status: Option<&str>) -> bool {
        let by_status = status.is_some_and(|status| self.owner_by_status.contains_key(status));
        !by_status && matches!(self.ownership, Ownership::ClaimOnEdit { .. })
    }
}

/// A rules file that failed to load, with the position of the problem.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct RulesError {
    pub file: String,
    pub line: usize,
    pub column: usize,
    pub message: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}: {}", self.file, self.line, self.column, self.message)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    integration: String,
    echo_window_secs: Option<u64>,
    systems: BTreeMap<String, Spanned<RawSystem>>,
    #[serde(default)]
    entities: BTreeMap<String, Spanned<RawEntity>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSystem {
    role: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntity {
    key: String,
    status_field: Option<Spanned<String>>,
    #[serde(default)]
    create: Vec<RawCreate>,
    fields: BTreeMap<String, Spanned<RawField>>,
    lifecycle: Option<Spanned<RawLifecycle>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLifecycle {
    states: Vec<Spanned<String>>,
    #[serde(default)]
    transitions: Vec<Spanned<RawTransition>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTransition {
    from: Option<Spanned<String>>,
    to: Spanned<String>,
    by: Spanned<String>,
    #[serde(default)]
    manual: bool,
    task: Option<String>,
    #[serde(default)]
    create_on: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCreate {
    on: Spanned<String>,
    from: Vec<Spanned<String>>,
    #[serde(default)]
    defaults: BTreeMap<String, Spanned<toml::Value>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawField {
    #[serde(rename = "type")]
    field_type: Spanned<String>,
    scale: Option<u32>,
    owner: Option<Spanned<String>>,
    claim_on_edit: Option<Spanned<String>>,
    #[serde(default)]
    owner_by_status: BTreeMap<String, Spanned<String>>,
    #[serde(default)]
    sync_to: Vec<Spanned<String>>,
    on_foreign_edit: Option<Spanned<String>>,
    #[serde(default)]
    decimal_members: Vec<String>,
    references: Option<Spanned<String>>,
    reference_member: Option<String>,
}

impl Rules {
    /// Parses and validates a rules file. `file` names it in error messages.
    pub fn parse(file: &str, text: &str) -> Result<Rules, RulesError> {
        let error_at = |span: Range<usize>, message: String| {
            let (line, column) = line_and_column(text, span.start);
            RulesError {
                file: file.to_owned(),
                line,
                column,
                message,
            }
        };
        let raw: RawRules = toml::from_str(text).map_err(|error| {
            let span = error.span().unwrap_or(0..0);
            error_at(span, error.message().to_owned())
        })?;

        let mut systems = BTreeMap::new();
        for (name, system) in &raw.systems {
            let role = match system.get_ref().role.get_ref().as_str() {
                "erp" => Role::Erp,
                "storefront" => Role::Storefront,
                "pim" => Role::Pim,
                "logistics" => Role::Logistics,
                "marketplace" => Role::Marketplace,
                other => {
                    return Err(error_at(
                        system.get_ref().role.span(),
                        format!("unknown role {other:?}; expected erp, storefront, pim, logistics or marketplace"),
                    ))
                }
            };
            systems.insert(SystemId::new(name.as_str()), SystemConfig { role });
        }
        let system = |name: &Spanned<String>| -> Result<SystemId, RulesError> {
            let id = SystemId::new(name.get_ref().as_str());
            if systems.contains_key(&id) {
                return Ok(id);
            }
            let declared: Vec<&str> = systems.keys().map(SystemId::as_str).collect();
            Err(error_at(
                name.span(),
                format!(
                    "unknown system {:?}; declared systems: {}",
                    name.get_ref(),
                    declared.join(", ")
                ),
            ))
        };

        let mut entities = BTreeMap::new();
        for (entity_name, entity) in &raw.entities {
            let entity_span = entity.span();
            let entity = entity.get_ref();
            let mut fields = BTreeMap::new();
            for (field_name, field) in &entity.fields {
                let span = field.span();
                let field = field.get_ref();
                let field_type = match (field.field_type.get_ref().as_str(), field.scale) {
                    ("text", None) => FieldType::Text,
                    ("money", scale) => FieldType::Money {
                        scale: scale.unwrap_or(2),
                    },
                    ("quantity", None) => FieldType::Quantity,
                    ("bool", None) => FieldType::Bool,
                    ("list", None) => FieldType::List,
                    ("json", None) => FieldType::Json,
                    ("text" | "quantity" | "bool" | "list" | "json", Some(_)) => {
                        return Err(error_at(span, "`scale` applies only to money fields".to_owned()))
                    }
                    (other, _) => {
                        return Err(error_at(
                            field.field_type.span(),
                            format!("unknown field type {other:?}; expected text, money, quantity, bool, list or json"),
                        ))
                    }
                };
                let lifecycle_status = entity.lifecycle.is_some()
                    && entity.status_field.as_ref().map(Spanned::get_ref) == Some(field_name);
                let ownership = match (&field.owner, &field.claim_on_edit) {
                    (Some(owner), None) => Ownership::Fixed(system(owner)?),
                    (None, Some(initial)) => Ownership::ClaimOnEdit {
                        initial: system(initial)?,
                    },
                    // The lifecycle's transitions decide who may change this field, so the
                    // ownership is never consulted; the first transition's system fills it.
                    (None, None) if lifecycle_status => match entity
                        .lifecycle
                        .as_ref()
                        .and_then(|raw| raw.get_ref().transitions.first())
                    {
                        Some(first) => Ownership::Fixed(system(&first.get_ref().by)?),
                        None => return Err(error_at(span, "a lifecycle needs at least one transition".to_owned())),
                    },
                    _ => {
                        return Err(error_at(
                            span,
                            format!("field {field_name:?} needs exactly one of `owner` or `claim_on_edit`"),
                        ))
                    }
                };
                if let Some(raw_lifecycle) = &entity.lifecycle {
                    let states = &raw_lifecycle.get_ref().states;
                    for (state, owner) in &field.owner_by_status {
                        if !states.iter().any(|declared| declared.get_ref() == state) {
                            let declared: Vec<&str> = states.iter().map(|state| state.get_ref().as_str()).collect();
                            return Err(error_at(
                                owner.span(),
                                format!(
                                    "owner_by_status names unknown state {state:?}; declared states: {}",
                                    declared.join(", ")
                                ),
                            ));
                        }
                    }
                }
                let owner_by_status = field
                    .owner_by_status
                    .iter()
                    .map(|(status, owner)| Ok((status.clone(), system(owner)?)))
                    .collect::<Result<_, RulesError>>()?;
                let sync_to = field.sync_to.iter().map(system).collect::<Result<_, _>>()?;
                let on_foreign_edit = match field
                    .on_foreign_edit
                    .as_ref()
                    .map(|value| (value.get_ref().as_str(), value))
                {
                    None | Some(("ignore", _)) => ForeignEdit::Ignore,
                    Some(("revert", _)) => ForeignEdit::Revert,
                    Some((other, value)) => {
                        return Err(error_at(
                            value.span(),
                            format!("unknown on_foreign_edit {other:?}; expected ignore or revert"),
                        ))
                    }
                };
                if !field.decimal_members.is_empty() && field_type != FieldType::Json {
                    return Err(error_at(
                        span,
                        "`decimal_members` applies only to json fields".to_owned(),
                    ));
                }
                let references = match (&field.references, &field.reference_member) {
                    (Some(entity_name), member) if raw.entities.contains_key(entity_name.get_ref()) => {
                        if member.is_some() != (field_type == FieldType::Json) {
                            return Err(error_at(
                                span,
                                "a json field names its references with `reference_member`, and only a json field may"
                                    .to_owned(),
                            ));
                        }
                        Some(Reference {
                            entity: EntityType::new(entity_name.get_ref().as_str()),
                            member: member.clone(),
                        })
                    }
                    (Some(entity_name), _) => {
                        let declared: Vec<&str> = raw.entities.keys().map(String::as_str).collect();
                        return Err(error_at(
                            entity_name.span(),
                            format!(
                                "references names unknown entity {:?}; declared entities: {}",
                                entity_name.get_ref(),
                                declared.join(", ")
                            ),
                        ));
                    }
                    (None, Some(_)) => return Err(error_at(span, "`reference_member` needs `references`".to_owned())),
                    (None, None) => None,
                };
                fields.insert(
                    FieldName::new(field_name.as_str()),
                    FieldRule {
                        field_type,
                        ownership,
                        owner_by_status,
                        sync_to,
                        on_foreign_edit,
                        decimal_members: field.decimal_members.clone(),
                        references,
                    },
                );
            }

            let status_field = match &entity.status_field {
                Some(name) if !entity.fields.contains_key(name.get_ref()) => {
                    return Err(error_at(
                        name.span(),
                        format!("status_field {:?} is not a declared field", name.get_ref()),
                    ))
                }
                Some(name) => Some(FieldName::new(name.get_ref().as_str())),
                None => None,
            };
            if status_field.is_none() && fields.values().any(|rule: &FieldRule| !rule.owner_by_status.is_empty()) {
                return Err(error_at(
                    entity_span,
                    "owner_by_status needs the entity's status_field".to_owned(),
                ));
            }

            let lifecycle = match &entity.lifecycle {
                Some(raw_lifecycle) => {
                    if status_field.is_none() {
                        return Err(error_at(
                            raw_lifecycle.span(),
                            "a lifecycle needs the entity's status_field".to_owned(),
                        ));
                    }
                    Some(parse_lifecycle(raw_lifecycle, &system, &error_at)?)
                }
                None => None,
            };

            let mut create = Vec::new();
            for rule in &entity.create {
                let mut defaults = BTreeMap::new();
                for (name, value) in &rule.defaults {
                    let field = FieldName::new(name.as_str());
                    let Some(field_rule) = fields.get(&field) else {
                        return Err(error_at(value.span(), format!("default for undeclared field {name:?}")));
                    };
                    let wire = toml_to_wire(value.get_ref());
                    match field_rule.field_type.parse(&wire) {
                        Ok(Some(typed)) => defaults.insert(field, typed),
                        Ok(None) => None,
                        Err(invalid) => return Err(error_at(value.span(), format!("default for {name:?}: {invalid}"))),
                    };
                }
                create.push(CreateRule {
                    on: system(&rule.on)?,
                    from: rule.from.iter().map(system).collect::<Result<_, _>>()?,
                    defaults,
                });
            }

            entities.insert(
                EntityType::new(entity_name.as_str()),
                EntityRules {
                    key: entity.key.clone(),
                    status_field,
                    create,
                    fields,
                    lifecycle,
                },
            );
        }

        let echo_window_secs = raw.echo_window_secs.unwrap_or(DEFAULT_ECHO_WINDOW_SECS);
        Ok(Rules {
            integration: raw.integration,
            systems,
            entities,
            echo_window: Duration::seconds(i64::try_from(echo_window_secs).unwrap_or(i64::MAX / 1000)),
        })
    }

    /// Returns the rules of an entity type, if declared.
    pub fn entity(&self, entity: &EntityType) -> Option<&EntityRules> {
        self.entities.get(entity)
    }
}

/// Parses a lifecycle: its states are unique, its transitions name declared states and systems,
/// and only a manual transition has a `task`.
fn parse_lifecycle(
    raw: &Spanned<RawLifecycle>,
    system: &dyn Fn(&Spanned<String>) -> Result<SystemId, RulesError>,
    error_at: &dyn Fn(Range<usize>, String) -> RulesError,
) -> Result<Lifecycle, RulesError> {
    if raw.get_ref().transitions.is_empty() {
        return Err(error_at(
            raw.span(),
            "a lifecycle needs at least one transition".to_owned(),
        ));
    }
    let raw = raw.get_ref();
    let mut states: Vec<String> = Vec::new();
    for state in &raw.states {
        if states.contains(state.get_ref()) {
            return Err(error_at(
                state.span(),
                format!("state {:?} is listed twice", state.get_ref()),
            ));
        }
        states.push(state.get_ref().clone());
    }
    let known = |name: &Spanned<String>| -> Result<String, RulesError> {
        if states.contains(name.get_ref()) {
            return Ok(name.get_ref().clone());
        }
        Err(error_at(
            name.span(),
            format!(
                "unknown state {:?}; declared states: {}",
                name.get_ref(),
                states.join(", ")
            ),
        ))
    };

    let mut transitions = Vec::new();
    for transition in &raw.transitions {
        let span = transition.span();
        let transition = transition.get_ref();
        if transition.task.is_some() && !transition.manual {
            return Err(error_at(span, "`task` applies only to a manual transition".to_owned()));
        }
        transitions.push(Transition {
            from: transition.from.as_ref().map(known).transpose()?,
            to: known(&transition.to)?,
            by: system(&transition.by)?,
            manual: transition.manual,
            task: transition.task.clone(),
            create_on: transition.create_on.iter().map(system).collect::<Result<_, _>>()?,
        });
    }
    Ok(Lifecycle { states, transitions })
}

fn toml_to_wire(value: &toml::Value) -> Wire {
    match value {
        toml::Value::String(text) => Wire::Text(text.clone()),
        toml::Value::Integer(number) => Wire::Number(number.to_string()),
        toml::Value::Float(number) => Wire::Number(number.to_string()),
        toml::Value::Boolean(flag) => Wire::Bool(*flag),
        toml::Value::Datetime(datetime) => Wire::Text(datetime.to_string()),
        toml::Value::Array(items) => Wire::List(items.iter().map(toml_to_wire).collect()),
        toml::Value::Table(table) => Wire::Map(
            table
                .iter()
                .map(|(key, value)| (key.clone(), toml_to_wire(value)))
                .collect(),
        ),
    }
}

/// Converts a byte offset to a 1-based line and column (in characters).
fn line_and_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |last| last.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
integration = "demo"

[systems.erp]
role = "erp"

[systems.storefront]
role = "storefront"

[entities.product]
key = "sku"

[entities.product.fields.price]
type = "money"
owner = "erp"
sync_to = ["storefront"]
on_foreign_edit = "revert"
"#;

    #[test]
    fn parse_accepts_minimal_rules() {
        let rules = Rules::parse("rules.toml", MINIMAL).unwrap();
        let product = rules.entity(&EntityType::new("product")).unwrap();
        let price = &product.fields[&FieldName::new("price")];
        assert_eq!(price.field_type, FieldType::Money { scale: 2 });
        assert_eq!(price.on_foreign_edit, ForeignEdit::Revert);
        assert_eq!(price.owner(None, None), &SystemId::new("erp"));
    }

    #[test]
    fn unknown_system_names_line_and_column() {
        let text = MINIMAL.replace("sync_to = [\"storefront\"]", "sync_to = [\"storefrnt\"]");
        let error = Rules::parse("rules.toml", &text).unwrap_err();
        assert_eq!((error.line, error.column), (16, 12));
        assert!(error.message.contains("unknown system \"storefrnt\""), "{error}");
        assert!(error.to_string().starts_with("rules.toml:16:12: "), "{error}");
    }

    #[test]
    fn syntax_error_names_position() {
        let error = Rules::parse("bad.toml", "integration = \"demo\"\n[systems.erp\n").unwrap_err();
        assert_eq!(error.file, "bad.toml");
        assert_eq!(error.line, 2);
    }

    #[test]
    fn field_needs_exactly_one_owner_kind() {
        let text = MINIMAL.replace("owner = \"erp\"", "owner = \"erp\"\nclaim_on_edit = \"erp\"");
        let error = Rules::parse("rules.toml", &text).unwrap_err();
        assert!(error.message.contains("exactly one of"), "{error}");
        assert_eq!(error.line, 13);
    }

    #[test]
    fn unknown_key_is_rejected() {
        let text = MINIMAL.replace("on_foreign_edit", "on_foriegn_edit");
        let error = Rules::parse("rules.toml", &text).unwrap_err();
        assert!(error.message.contains("on_foriegn_edit"), "{error}");
    }

    #[test]
    fn default_value_is_typed() {
        let text = format!(
            "{MINIMAL}\n[[entities.product.create]]\non = \"storefront\"\nfrom = [\"erp\"]\ndefaults = {{ price = \"abc\" }}\n"
        );
        let error = Rules::parse("rules.toml", &text).unwrap_err();
        assert!(error.message.contains("not a decimal number"), "{error}");
    }

    #[test]
    fn status_owner_overrides_fixed_owner() {
        let text = r#"
integration = "demo"
[systems.erp]
role = "erp"
[systems.storefront]
role = "storefront"
[entities.order]
key = "order number"
status_field = "status"
[entities.order.fields.status]
type = "text"
owner = "erp"
owner_by_status = { quote_requested = "storefront" }
"#;
        let rules = Rules::parse("rules.toml", text).unwrap();
        let status = &rules.entity(&EntityType::new("order")).unwrap().fields[&FieldName::new("status")];
        assert_eq!(
            status.owner(Some("quote_requested"), None),
            &SystemId::new("storefront")
        );
        assert_eq!(status.owner(Some("approved"), None), &SystemId::new("erp"));
    }
}
