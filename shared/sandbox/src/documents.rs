//! Business documents both sandboxes keep besides their products: customers, quotes, orders,
//! shipments and returns.
//!
//! A document keeps its members as raw JSON text, so money keeps the digits it was written with
//! (the ERP writes JSON numbers, the storefront decimal strings). Each sandbox names its
//! collections and ids in its own style and validates what its platform would.

use std::collections::BTreeMap;
use std::fmt;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;

/// The kinds of business documents.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DocumentKind {
    Customer,
    Quote,
    Order,
    Shipment,
    Return,
}

impl DocumentKind {
    /// Returns the kind's name, as used in errors and in fieldsync's external ids.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Customer => "customer",
            Self::Quote => "quote",
            Self::Order => "order",
            Self::Shipment => "shipment",
            Self::Return => "return",
        }
    }
}

impl fmt::Display for DocumentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One business document.
#[derive(Debug, Clone)]
pub struct Document {
    pub kind: DocumentKind,
    /// The sandbox's own id, such as `Q-1001` in the ERP or a number on the storefront.
    pub id: String,
    /// The caller's unique key for the document; a second create with it updates this one.
    pub external_id: Option<String>,
    /// Every other member, as JSON text.
    pub members: BTreeMap<String, Box<RawValue>>,
    pub updated_at: DateTime<Utc>,
    /// Incremented by every change.
    pub version: u64,
}

impl Document {
    /// Returns a member that is a JSON string, or the text of a JSON number.
    pub fn text(&self, member: &str) -> Option<String> {
        let raw = self.members.get(member)?.get();
        match serde_json::from_str::<String>(raw) {
            Ok(text) => Some(text),
            Err(_) if raw.starts_with(|c: char| c == '-' || c.is_ascii_digit()) => Some(raw.to_owned()),
            Err(_) => None,
        }
    }

    /// Returns a member's JSON text.
    pub fn raw(&self, member: &str) -> Option<&str> {
        self.members.get(member).map(|raw| raw.get())
    }

    /// Returns the `status` member.
    pub fn status(&self) -> Option<String> {
        self.text("status")
    }

    /// Builds the document's JSON object: the id under `id_member` (as `id_json`, already JSON),
    /// the external id, every member and the time under `time_member`.
    pub(crate) fn to_json(&self, id_member: &str, id_json: &str, time_member: &str, time: &str) -> Vec<u8> {
        let mut out = String::from("{");
        let mut push = |name: &str, json: &str| {
            if out.len() > 1 {
                out.push(',');
            }
            out.push_str(&json_string(name));
            out.push(':');
            out.push_str(json);
        };
        push(id_member, id_json);
        let external = self
            .external_id
            .as_deref()
            .map_or_else(|| "null".to_owned(), json_string);
        push("external_id", &external);
        for (name, raw) in &self.members {
            push(name, raw.get());
        }
        push(time_member, &json_string(time));
        out.push('}');
        out.into_bytes()
    }
}

/// Writes a JSON string literal.
pub(crate) fn json_string(text: &str) -> String {
    serde_json::to_string(text).unwrap_or_else(|_| "\"\"".to_owned())
}

/// Makes a raw JSON member from a string.
pub fn text_member(text: &str) -> Box<RawValue> {
    serde_json::value::to_raw_value(text).unwrap_or_default()
}

/// Makes a raw JSON member from JSON text, such as `115.00` or `[{"sku":"MUG-RED"}]`. Invalid
/// JSON becomes `null`.
pub fn json_member(json: &str) -> Box<RawValue> {
    RawValue::from_string(json.to_owned()).unwrap_or_default()
}

/// Whether a write created a document, changed one, or left it as it was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DocumentChange {
    Created,
    Updated,
    Unchanged,
}

/// The documents of one sandbox, by kind and id.
#[derive(Debug, Default)]
pub(crate) struct Documents {
    by_kind: BTreeMap<DocumentKind, BTreeMap<String, Document>>,
}

impl Documents {
    pub(crate) fn get(&self, kind: DocumentKind, id: &str) -> Option<&Document> {
        self.by_kind.get(&kind)?.get(id)
    }

    pub(crate) fn all(&self, kind: DocumentKind) -> Vec<Document> {
        self.by_kind
            .get(&kind)
            .map(|documents| documents.values().cloned().collect())
            .unwrap_or_default()
    }

    pub(crate) fn count(&self, kind: DocumentKind) -> usize {
        self.by_kind.get(&kind).map_or(0, BTreeMap::len)
    }

    pub(crate) fn by_external_id(&self, kind: DocumentKind, external_id: &str) -> Option<&Document> {
        self.by_kind
            .get(&kind)?
            .values()
            .find(|document| document.external_id.as_deref() == Some(external_id))
    }

    /// Creates a document with `id`, or, when `external_id` names an existing one, applies the
    /// members to it.
    pub(crate) fn upsert(
        &mut self,
        kind: DocumentKind,
        external_id: Option<String>,
        members: BTreeMap<String, Box<RawValue>>,
        now: DateTime<Utc>,
        new_id: impl FnOnce() -> String,
    ) -> (Document, DocumentChange) {
        let existing = external_id
            .as_deref()
            .and_then(|external_id| self.by_external_id(kind, external_id))
            .map(|document| document.id.clone());
        if let Some(id) = existing {
            let updated = self.patch(kind, &id, members.clone(), now);
            if let Some(updated) = updated {
                return updated;
            }
        }
        let document = Document {
            kind,
            id: new_id(),
            external_id,
            members,
            updated_at: now,
            version: 1,
        };
        self.by_kind
            .entry(kind)
            .or_default()
            .insert(document.id.clone(), document.clone());
        (document, DocumentChange::Created)
    }

    /// Applies members to the document `id`, or returns `None` if there is none.
    pub(crate) fn patch(
        &mut self,
        kind: DocumentKind,
        id: &str,
        members: BTreeMap<String, Box<RawValue>>,
        now: DateTime<Utc>,
    ) -> Option<(Document, DocumentChange)> {
        let document = self.by_kind.get_mut(&kind)?.get_mut(id)?;
        let mut changed = false;
        for (name, value) in members {
            if document.members.get(&name).map(|raw| raw.get()) != Some(value.get()) {
                document.members.insert(name, value);
                changed = true;
            }
        }
        if !changed {
            return Some((document.clone(), DocumentChange::Unchanged));
        }
        document.version += 1;
        document.updated_at = now;
        Some((document.clone(), DocumentChange::Updated))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(pairs: &[(&str, &str)]) -> BTreeMap<String, Box<RawValue>> {
        pairs
            .iter()
            .map(|(name, json)| ((*name).to_owned(), json_member(json)))
            .collect()
    }

    #[test]
    fn upsert_by_external_id_updates_once() {
        let mut documents = Documents::default();
        let now = Utc::now();
        let first = members(&[("status", "\"requested\""), ("total", "115.00")]);
        let (created, change) = documents.upsert(DocumentKind::Quote, Some("quote:7001".into()), first, now, || {
            "Q-1001".into()
        });
        assert_eq!(change, DocumentChange::Created);
        assert_eq!(created.raw("total"), Some("115.00"));

        let again = members(&[("status", "\"requested\"")]);
        let (same, change) = documents.upsert(DocumentKind::Quote, Some("quote:7001".into()), again, now, || {
            "Q-1002".into()
        });
        assert_eq!(change, DocumentChange::Unchanged);
        assert_eq!(same.id, "Q-1001");
        assert_eq!(documents.count(DocumentKind::Quote), 1);
    }

    #[test]
    fn to_json_keeps_member_text() {
        let mut documents = Documents::default();
        let (document, _) = documents.upsert(
            DocumentKind::Return,
            None,
            members(&[("refund", "21.250")]),
            Utc::now(),
            || "RMA-1".into(),
        );
        let json = String::from_utf8(document.to_json("number", "\"RMA-1\"", "last_modified", "t")).unwrap();
        assert_eq!(
            json,
            r#"{"number":"RMA-1","external_id":null,"refund":21.250,"last_modified":"t"}"#
        );
    }
}
