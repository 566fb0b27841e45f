//! The pure domain core of fieldsync.
//!
//! Records, field-ownership rules, the per-field decision, webhook verification and payload
//! normalization live here as synchronous code with no AWS, Lambda, HTTP or async runtime
//! dependency. Storage, the queue and the outside systems are reached through the traits in
//! [`ports`], which adapter crates implement.

pub mod change;
pub mod connector;
pub mod decide;
pub mod dependency;
pub mod formats;
pub mod ids;
pub mod ingest;
pub mod lifecycle;
pub mod ports;
pub mod record;
pub mod rules;
pub mod secret;
pub mod signature;
pub mod value;
pub mod wire;

pub use change::{ChangeSet, Notice, NoticeKind};
pub use connector::{ConnectorFile, ConnectorFileError};
pub use decide::{reconcile, refresh_task_titles, Decision, Outcome, Reconciliation};
pub use ids::{EntityType, FieldName, RecordKey, SystemId};
pub use ingest::{Handshake, InboundRequest, Normalized, Rejection, WebhookFormat};
pub use lifecycle::{Lifecycle, OpenTask, StatusCheck, Task, Transition};
pub use record::{FieldState, OutboundWrite, Record, Seen, Version, WriteKind};
pub use rules::{Rules, RulesError};
pub use secret::Secret;
pub use value::{FieldType, FieldValue, InvalidValue};
pub use wire::Wire;
