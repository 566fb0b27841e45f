//! Names of systems, entities, fields and records.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Wraps a name as given in the configuration or a payload.
            pub fn new(name: impl Into<String>) -> Self {
                Self(name.into())
            }

            /// Returns the name as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl From<&str> for $name {
            fn from(name: &str) -> Self {
                Self(name.to_owned())
            }
        }
    };
}

name_type!(
    /// A connected system as named in the rules file, such as `erp` or `storefront`.
    SystemId
);
name_type!(
    /// An entity type as named in the rules file, such as `product` or `order`.
    EntityType
);
name_type!(
    /// A canonical field name as declared in the rules file, such as `price`.
    FieldName
);

/// The identity of one canonical record: integration, entity type and natural key (the SKU for
/// products).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordKey {
    pub integration: String,
    pub entity: EntityType,
    pub key: String,
}

impl RecordKey {
    /// Builds a record key.
    pub fn new(integration: impl Into<String>, entity: impl Into<EntityType>, key: impl Into<String>) -> Self {
        Self {
            integration: integration.into(),
            entity: entity.into(),
            key: key.into(),
        }
    }

    /// Returns the key fieldsync gives outside systems as the external id of records it creates.
    pub fn external_id(&self) -> String {
        format!("{}:{}", self.entity, self.key)
    }
}

impl From<String> for EntityType {
    fn from(name: String) -> Self {
        Self(name)
    }
}

impl fmt::Display for RecordKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.integration, self.entity, self.key)
    }
}
