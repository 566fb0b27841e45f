//! Typed configuration, read once from the environment at cold start.
//!
//! | Variable | Used by | Meaning |
//! | --- | --- | --- |
//! | `FIELDSYNC_RULES_PARAMETER` | all, deployed | Parameter Store parameter holding the rules file, read at cold start |
//! | `FIELDSYNC_INTEGRATION` | all, deployed | the stack's integration name, checked against the rules |
//! | `FIELDSYNC_RULES_FILE` | all, local | path of the rules file when no parameter is named (default `rules.toml`) |
//! | `FIELDSYNC_SOURCE_SYSTEM` | receivers | the system this receiver takes webhooks from, as named in the rules |
//! | `FIELDSYNC_WEBHOOK_FORMAT` | receivers | `shopify`, `bigcommerce`, `woocommerce`, `signed-json`, `business-central`, `netsuite` or `generic` |
//! | `FIELDSYNC_CONNECTOR_PARAMETER` | receivers, reconciler, deployed | Parameter Store parameter holding the connector file of a `generic` format or connector |
//! | `FIELDSYNC_CONNECTOR_FILE` | receivers, reconciler, local | path of that connector file when no parameter is named |
//! | `FIELDSYNC_WEBHOOK_SECRETS` | receivers | comma-separated secrets (Business Central: clientState values); two during a rotation |
//! | `FIELDSYNC_SIGNATURE_TOLERANCE_SECS` | receivers | accepted clock skew of signed timestamps (default 300) |
//! | `FIELDSYNC_QUEUE_URL` | receivers, CLI | the SQS FIFO queue |
//! | `FIELDSYNC_DEAD_LETTER_QUEUE_URL` | CLI | its dead-letter queue |
//! | `FIELDSYNC_TABLE_NAME` | reconciler | the DynamoDB table |
//! | `FIELDSYNC_CONNECTIONS` | reconciler | `system=connector` pairs, connector `shopify`, `bigcommerce`, `woocommerce`, `erp-rest`, `business-central`, `netsuite` or `generic` |
//! | `FIELDSYNC_<SYSTEM>_BASE_URL`, `FIELDSYNC_<SYSTEM>_TOKEN` | reconciler | API base URL and token per system (WooCommerce: `consumer_key:consumer_secret`) |
//! | `FIELDSYNC_<SYSTEM>_COMPANY_ID` | reconciler | Business Central company id |
//! | `FIELDSYNC_<SYSTEM>_LOCATION_ID` | reconciler | inventory location: a Shopify global id (default `gid://shopify/Location/1`) or a BigCommerce location id (default 1) |
//! | `FIELDSYNC_<SYSTEM>_CONCURRENCY_LIMIT` | reconciler | NetSuite requests open at once across every reconciler (default 5), held in the table |
//! | `FIELDSYNC_<SYSTEM>_INVENTORY_MODE` | reconciler | BigCommerce inventory writes: `absolute` (default) or `relative` |
//!
//! Deployed functions take no secret from the environment: `FIELDSYNC_<NAME>_ARN` names a
//! Secrets Manager secret read at cold start into `FIELDSYNC_<NAME>`
//! (`FIELDSYNC_WEBHOOK_SECRETS_ARN`, `FIELDSYNC_ERP_TOKEN_ARN`…); see [`crate::cold_start`].

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use chrono::Duration;
use fieldsync_connectors::bigcommerce::{BigCommerceClient, BigCommerceConfig, InventoryMode};
use fieldsync_connectors::business_central::{BusinessCentralClient, BusinessCentralConfig};
use fieldsync_connectors::erp::{ErpClient, ErpClientConfig};
use fieldsync_connectors::generic::{GenericClient, GenericClientConfig};
use fieldsync_connectors::netsuite::{NetSuiteClient, NetSuiteConfig};
use fieldsync_connectors::storefront::{ShopifyClient, ShopifyConfig};
use fieldsync_connectors::woocommerce::{WooCommerceClient, WooCommerceConfig};
use fieldsync_core::formats::bigcommerce::BigCommerceFormat;
use fieldsync_core::formats::business_central::BusinessCentralFormat;
use fieldsync_core::formats::generic::GenericFormat;
use fieldsync_core::formats::netsuite::NetSuiteFormat;
use fieldsync_core::formats::shopify::ShopifyFormat;
use fieldsync_core::formats::signed_json::SignedJsonFormat;
use fieldsync_core::formats::woocommerce::WooCommerceFormat;
use fieldsync_core::ports::{ConcurrencyGovernor, SystemClient};
use fieldsync_core::{ConnectorFile, ConnectorFileError, Rules, RulesError, Secret, SystemId, WebhookFormat};

/// Default accepted skew between a signed timestamp and the receive time.
const DEFAULT_TOLERANCE_SECS: i64 = 300;

/// A configuration value that is missing or invalid, named by its variable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("missing environment variable {variable}")]
    Missing { variable: String },
    #[error("invalid environment variable {variable}: {reason}")]
    Invalid { variable: String, reason: String },
    #[error("cannot read rules file {path}")]
    RulesUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Rules(#[from] RulesError),
    #[error("cannot read connector file {path}")]
    ConnectorFileUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    ConnectorFile(#[from] ConnectorFileError),
    #[error("cannot build the connector for system {system}")]
    Connector {
        system: SystemId,
        #[source]
        source: fieldsync_connectors::ConnectorError,
    },
}

/// Reads variables from the process environment, or from a map in tests.
pub trait Environment {
    /// Returns the value of `name`, if set and not empty.
    fn get(&self, name: &str) -> Option<String>;

    /// Returns the names of every variable set.
    fn names(&self) -> Vec<String>;

    /// Returns the value of `name`, or a [`ConfigError::Missing`] naming it.
    fn require(&self, name: &str) -> Result<String, ConfigError> {
        self.get(name).ok_or_else(|| ConfigError::Missing {
            variable: name.to_owned(),
        })
    }
}

/// The process environment.
#[derive(Debug, Clone, Copy)]
pub struct ProcessEnvironment;

impl Environment for ProcessEnvironment {
    fn get(&self, name: &str) -> Option<String> {
        std::env::var(name).ok().filter(|value| !value.is_empty())
    }

    fn names(&self) -> Vec<String> {
        std::env::vars_os()
            .filter_map(|(name, _)| name.into_string().ok())
            .collect()
    }
}

impl Environment for BTreeMap<String, String> {
    fn get(&self, name: &str) -> Option<String> {
        BTreeMap::get(self, name).filter(|value| !value.is_empty()).cloned()
    }

    fn names(&self) -> Vec<String> {
        self.keys().cloned().collect()
    }
}

/// Loads the rules: the text read from `FIELDSYNC_RULES_PARAMETER` at cold start, or else the
/// file named by `FIELDSYNC_RULES_FILE` (default `rules.toml`).
pub fn load_rules(env: &dyn Environment) -> Result<Rules, ConfigError> {
    let rules = if let Some(text) = env.get(crate::cold_start::RULES_TEXT) {
        let name = env
            .get(crate::cold_start::RULES_PARAMETER)
            .unwrap_or_else(|| "rules".to_owned());
        Rules::parse(&name, &text)?
    } else {
        read_rules_file(env)?
    };
    // The deployed URLs and alarms carry the stack's integration name, so rules for another
    // integration would reject every webhook with 404 and publish metrics no alarm watches.
    if let Some(expected) = env.get("FIELDSYNC_INTEGRATION") {
        if expected != rules.integration {
            return Err(ConfigError::Invalid {
                variable: "FIELDSYNC_INTEGRATION".into(),
                reason: format!(
                    "the stack serves {expected:?} but the rules are for {:?}",
                    rules.integration
                ),
            });
        }
    }
    Ok(rules)
}

fn read_rules_file(env: &dyn Environment) -> Result<Rules, ConfigError> {
    let path = PathBuf::from(
        env.get("FIELDSYNC_RULES_FILE")
            .unwrap_or_else(|| "rules.toml".to_owned()),
    );
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::RulesUnreadable {
        path: path.clone(),
        source,
    })?;
    Ok(Rules::parse(&path.display().to_string(), &text)?)
}

/// Parses the connector file read from `FIELDSYNC_CONNECTOR_PARAMETER` at cold start, or else
/// reads the file named by `FIELDSYNC_CONNECTOR_FILE`.
pub fn load_connector_file(env: &dyn Environment) -> Result<Arc<ConnectorFile>, ConfigError> {
    if let Some(text) = env.get(crate::cold_start::CONNECTOR_TEXT) {
        let name = env
            .get(crate::cold_start::CONNECTOR_PARAMETER)
            .unwrap_or_else(|| "connector".to_owned());
        return Ok(Arc::new(ConnectorFile::parse(&name, &text)?));
    }
    let path = PathBuf::from(env.require("FIELDSYNC_CONNECTOR_FILE")?);
    let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::ConnectorFileUnreadable {
        path: path.clone(),
        source,
    })?;
    Ok(Arc::new(ConnectorFile::parse(&path.display().to_string(), &text)?))
}

/// The webhook format a receiver verifies and reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FormatKind {
    Shopify,
    /// BigCommerce's signed thin webhooks; the secrets are the app's client secrets.
    BigCommerce,
    WooCommerce,
    SignedJson,
    /// Business Central notifications; the webhook secrets are the subscriptions' clientState
    /// values.
    BusinessCentral,
    /// The signed outbox deliveries of fieldsync's NetSuite scripts.
    NetSuite,
    /// Described by the connector file.
    Generic,
}

/// The configuration of a webhook receiver function.
#[derive(Debug, Clone)]
pub struct ReceiverConfig {
    pub integration: String,
    pub system: SystemId,
    pub format: FormatKind,
    pub webhook_secrets: Vec<Secret>,
    pub signature_tolerance_secs: i64,
    /// The connector file of the `generic` format.
    pub connector_file: Option<Arc<ConnectorFile>>,
}

impl ReceiverConfig {
    /// Reads the receiver's variables; the rules give the integration name and the system list.
    pub fn from_env(env: &dyn Environment, rules: &Rules) -> Result<Self, ConfigError> {
        let system = SystemId::new(env.require("FIELDSYNC_SOURCE_SYSTEM")?);
        if !rules.systems.contains_key(&system) {
            let reason = format!("system {system} is not declared in the rules");
            return Err(ConfigError::Invalid {
                variable: "FIELDSYNC_SOURCE_SYSTEM".into(),
                reason,
            });
        }
        let format = match env.require("FIELDSYNC_WEBHOOK_FORMAT")?.as_str() {
            "shopify" => FormatKind::Shopify,
            "bigcommerce" => FormatKind::BigCommerce,
            "woocommerce" => FormatKind::WooCommerce,
            "signed-json" => FormatKind::SignedJson,
            "business-central" => FormatKind::BusinessCentral,
            "netsuite" => FormatKind::NetSuite,
            "generic" => FormatKind::Generic,
            other => {
                let reason = format!(
                    "{other:?} is not a format; expected shopify, bigcommerce, woocommerce, signed-json, \
                     business-central, netsuite or generic"
                );
                return Err(ConfigError::Invalid {
                    variable: "FIELDSYNC_WEBHOOK_FORMAT".into(),
                    reason,
                });
            }
        };
        let webhook_secrets: Vec<Secret> = env
            .require("FIELDSYNC_WEBHOOK_SECRETS")?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(Secret::new)
            .collect();
        let signature_tolerance_secs = match env.get("FIELDSYNC_SIGNATURE_TOLERANCE_SECS") {
            None => DEFAULT_TOLERANCE_SECS,
            Some(text) => text.parse().map_err(|_| ConfigError::Invalid {
                variable: "FIELDSYNC_SIGNATURE_TOLERANCE_SECS".into(),
                reason: format!("{text:?} is not a whole number of seconds"),
            })?,
        };
        let connector_file = match format {
            FormatKind::Generic => Some(load_connector_file(env)?),
            FormatKind::Shopify
            | FormatKind::BigCommerce
            | FormatKind::WooCommerce
            | FormatKind::SignedJson
            | FormatKind::BusinessCentral
            | FormatKind::NetSuite => None,
        };
        Ok(Self {
            integration: rules.integration.clone(),
            system,
            format,
            webhook_secrets,
            signature_tolerance_secs,
            connector_file,
        })
    }

    /// Builds the webhook format this receiver verifies and reads.
    pub fn webhook_format(&self) -> Arc<dyn WebhookFormat> {
        match self.format {
            FormatKind::Shopify => Arc::new(ShopifyFormat {
                integration: self.integration.clone(),
                source: self.system.clone(),
                secrets: self.webhook_secrets.clone(),
            }),
            FormatKind::BigCommerce => {
                let mut format = BigCommerceFormat::new(
                    self.integration.clone(),
                    self.system.clone(),
                    self.webhook_secrets.clone(),
                );
                format.tolerance = Duration::seconds(self.signature_tolerance_secs);
                Arc::new(format)
            }
            FormatKind::WooCommerce => Arc::new(WooCommerceFormat::new(
                self.integration.clone(),
                self.system.clone(),
                self.webhook_secrets.clone(),
            )),
            FormatKind::SignedJson => Arc::new(SignedJsonFormat {
                integration: self.integration.clone(),
                source: self.system.clone(),
                secrets: self.webhook_secrets.clone(),
                tolerance: Duration::seconds(self.signature_tolerance_secs),
            }),
            FormatKind::NetSuite => {
                let mut format = NetSuiteFormat::new(
                    self.integration.clone(),
                    self.system.clone(),
                    self.webhook_secrets.clone(),
                );
                format.tolerance = Duration::seconds(self.signature_tolerance_secs);
                Arc::new(format)
            }
            FormatKind::BusinessCentral => Arc::new(BusinessCentralFormat::new(
                self.integration.clone(),
                self.system.clone(),
                self.webhook_secrets.clone(),
            )),
            // `from_env` loads the file for this format; a hand-built config without one gets
            // a file-less format that maps nothing.
            FormatKind::Generic => Arc::new(GenericFormat {
                integration: self.integration.clone(),
                source: self.system.clone(),
                secrets: self.webhook_secrets.clone(),
                connector: self
                    .connector_file
                    .clone()
                    .unwrap_or_else(|| Arc::new(empty_connector())),
            }),
        }
    }
}

/// The outbound connector that serves a system.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectorKind {
    Shopify,
    BigCommerce,
    /// The token is `consumer_key:consumer_secret`.
    WooCommerce,
    ErpRest,
    BusinessCentral,
    /// NetSuite's REST record service, within a concurrency limit held by the governor.
    NetSuite,
    /// A REST API described by the connector file.
    Generic,
}

/// The reconciler's connection to one system.
#[derive(Debug, Clone)]
pub struct Connection {
    pub system: SystemId,
    pub connector: ConnectorKind,
    pub base_url: String,
    pub token: Secret,
    /// The inventory location quantities are written to: a Shopify global id or a BigCommerce
    /// location id.
    pub location_id: Option<String>,
    /// Whether a BigCommerce connection writes inventory as relative adjustments.
    pub inventory_mode: InventoryMode,
    /// The company a Business Central connection syncs.
    pub company_id: Option<String>,
    /// The integration name of the rules, which connectors that read records put on changes.
    pub integration: String,
    /// The connector file of a `generic` connection.
    pub connector_file: Option<Arc<ConnectorFile>>,
    /// Requests a NetSuite connection may have open at once across every reconciler.
    pub concurrency_limit: Option<u32>,
    /// The governor that enforces that limit, shared by every reconciler (the state table in AWS).
    pub governor: Option<Arc<dyn ConcurrencyGovernor>>,
}

impl Connection {
    /// Builds the outbound client for this connection.
    pub fn client(&self) -> Result<Arc<dyn SystemClient>, ConfigError> {
        let error = |source| ConfigError::Connector {
            system: self.system.clone(),
            source,
        };
        Ok(match self.connector {
            ConnectorKind::Shopify => {
                let mut config = ShopifyConfig::new(self.system.clone(), self.base_url.clone(), self.token.clone());
                if let Some(location_id) = &self.location_id {
                    config.location_id = location_id.clone();
                }
                Arc::new(ShopifyClient::new(config).map_err(error)?)
            }
            ConnectorKind::BigCommerce => {
                let mut config = BigCommerceConfig::new(
                    self.system.clone(),
                    self.integration.clone(),
                    self.base_url.clone(),
                    self.token.clone(),
                );
                if let Some(location_id) = &self.location_id {
                    config.inventory_location_id = location_id.parse().map_err(|_| ConfigError::Invalid {
                        variable: format!("{}_LOCATION_ID", variable_prefix(&self.system)),
                        reason: format!("{location_id:?} is not a BigCommerce location id (a whole number)"),
                    })?;
                }
                config.inventory_mode = self.inventory_mode;
                Arc::new(BigCommerceClient::new(config).map_err(error)?)
            }
            ConnectorKind::WooCommerce => {
                let (key, secret) = self
                    .token
                    .expose()
                    .split_once(':')
                    .ok_or_else(|| ConfigError::Invalid {
                        variable: format!("{}_TOKEN", variable_prefix(&self.system)),
                        reason: "a WooCommerce token is consumer_key:consumer_secret".to_owned(),
                    })?;
                let config = WooCommerceConfig::new(
                    self.system.clone(),
                    self.integration.clone(),
                    self.base_url.clone(),
                    Secret::new(key),
                    Secret::new(secret),
                );
                Arc::new(WooCommerceClient::new(config).map_err(error)?)
            }
            ConnectorKind::ErpRest => {
                let config = ErpClientConfig::new(self.system.clone(), self.base_url.clone(), self.token.clone());
                Arc::new(ErpClient::new(config).map_err(error)?)
            }
            ConnectorKind::BusinessCentral => {
                let company_id = self.company_id.clone().ok_or_else(|| ConfigError::Missing {
                    variable: format!("{}_COMPANY_ID", variable_prefix(&self.system)),
                })?;
                let config = BusinessCentralConfig::new(
                    self.system.clone(),
                    self.integration.clone(),
                    self.base_url.clone(),
                    company_id,
                    self.token.clone(),
                );
                Arc::new(BusinessCentralClient::new(config).map_err(error)?)
            }
            ConnectorKind::NetSuite => {
                let governor = self.governor.clone().ok_or_else(|| ConfigError::Invalid {
                    variable: "FIELDSYNC_CONNECTIONS".to_owned(),
                    reason: format!("the NetSuite connection {} has no concurrency governor", self.system),
                })?;
                let mut config = NetSuiteConfig::new(
                    self.system.clone(),
                    self.integration.clone(),
                    self.base_url.clone(),
                    self.token.clone(),
                );
                if let Some(limit) = self.concurrency_limit {
                    config.concurrency_limit = limit;
                }
                Arc::new(NetSuiteClient::new(config, governor).map_err(error)?)
            }
            ConnectorKind::Generic => {
                let connector = self.connector_file.clone().ok_or_else(|| ConfigError::Missing {
                    variable: "FIELDSYNC_CONNECTOR_FILE".to_owned(),
                })?;
                let config = GenericClientConfig::new(
                    self.system.clone(),
                    self.base_url.clone(),
                    self.token.clone(),
                    connector,
                );
                Arc::new(GenericClient::new(config).map_err(error)?)
            }
        })
    }
}

/// Reads `FIELDSYNC_CONNECTIONS` and each system's URL and token.
pub fn connections_from_env(env: &dyn Environment, rules: &Rules) -> Result<Vec<Connection>, ConfigError> {
    let variable = "FIELDSYNC_CONNECTIONS";
    let mut connections = Vec::new();
    for pair in env
        .require(variable)?
        .split(',')
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
    {
        let invalid = |reason: String| ConfigError::Invalid {
            variable: variable.into(),
            reason,
        };
        let (system, connector) = pair
            .split_once('=')
            .ok_or_else(|| invalid(format!("{pair:?} is not system=connector")))?;
        let system = SystemId::new(system.trim());
        if !rules.systems.contains_key(&system) {
            return Err(invalid(format!("system {system} is not declared in the rules")));
        }
        let connector = match connector.trim() {
            "shopify" => ConnectorKind::Shopify,
            "bigcommerce" => ConnectorKind::BigCommerce,
            "woocommerce" => ConnectorKind::WooCommerce,
            "erp-rest" => ConnectorKind::ErpRest,
            "business-central" => ConnectorKind::BusinessCentral,
            "netsuite" => ConnectorKind::NetSuite,
            "generic" => ConnectorKind::Generic,
            other => {
                return Err(invalid(format!(
                    "{other:?} is not a connector; expected shopify, bigcommerce, woocommerce, erp-rest, \
                     business-central, netsuite or generic"
                )))
            }
        };
        let prefix = variable_prefix(&system);
        let base_url = env.require(&format!("{prefix}_BASE_URL"))?;
        let token = Secret::new(env.require(&format!("{prefix}_TOKEN"))?);
        let location_id = env.get(&format!("{prefix}_LOCATION_ID"));
        let company_id = env.get(&format!("{prefix}_COMPANY_ID"));
        let concurrency_limit = match env.get(&format!("{prefix}_CONCURRENCY_LIMIT")) {
            None => None,
            Some(text) => {
                Some(
                    text.parse::<u32>()
                        .ok()
                        .filter(|limit| *limit > 0)
                        .ok_or_else(|| ConfigError::Invalid {
                            variable: format!("{prefix}_CONCURRENCY_LIMIT"),
                            reason: format!("{text:?} is not a positive whole number"),
                        })?,
                )
            }
        };
        let inventory_mode = match env.get(&format!("{prefix}_INVENTORY_MODE")).as_deref() {
            None | Some("absolute") => InventoryMode::Absolute,
            Some("relative") => InventoryMode::Relative,
            Some(other) => {
                return Err(ConfigError::Invalid {
                    variable: format!("{prefix}_INVENTORY_MODE"),
                    reason: format!("{other:?} is not an inventory mode; expected absolute or relative"),
                })
            }
        };
        let connector_file = match connector {
            ConnectorKind::Generic => Some(load_connector_file(env)?),
            ConnectorKind::Shopify
            | ConnectorKind::BigCommerce
            | ConnectorKind::WooCommerce
            | ConnectorKind::ErpRest
            | ConnectorKind::BusinessCentral
            | ConnectorKind::NetSuite => None,
        };
        connections.push(Connection {
            system,
            connector,
            base_url,
            token,
            location_id,
            inventory_mode,
            company_id,
            integration: rules.integration.clone(),
            connector_file,
            concurrency_limit,
            governor: None,
        });
    }
    Ok(connections)
}

/// Returns the prefix of a system's variables: `FIELDSYNC_` and its name in capitals.
pub fn variable_prefix(system: &SystemId) -> String {
    format!("FIELDSYNC_{}", system.as_str().to_ascii_uppercase().replace('-', "_"))
}

/// Builds a connector file with no mapping, for a generic format built without `from_env`.
fn empty_connector() -> ConnectorFile {
    ConnectorFile {
        name: "none".to_owned(),
        webhook: fieldsync_core::connector::WebhookSpec {
            auth: fieldsync_core::connector::WebhookAuth::HeaderToken {
                header: "X-Fieldsync-Token".to_owned(),
            },
            topic: None,
            event_id: None,
            mappings: Vec::new(),
        },
        auth: None,
        write: BTreeMap::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> Rules {
        let text =
            "integration = \"demo\"\n[systems.erp]\nrole = \"erp\"\n[systems.storefront]\nrole = \"storefront\"\n";
        Rules::parse("rules.toml", text).unwrap()
    }

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect()
    }

    #[test]
    fn receiver_config_names_missing_variable() {
        let error = ReceiverConfig::from_env(&env(&[("FIELDSYNC_SOURCE_SYSTEM", "erp")]), &rules()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "missing environment variable FIELDSYNC_WEBHOOK_FORMAT"
        );
    }

    #[test]
    fn receiver_config_rejects_unknown_system() {
        let vars = env(&[
            ("FIELDSYNC_SOURCE_SYSTEM", "pim"),
            ("FIELDSYNC_WEBHOOK_FORMAT", "shopify"),
            ("FIELDSYNC_WEBHOOK_SECRETS", "a"),
        ]);
        let error = ReceiverConfig::from_env(&vars, &rules()).unwrap_err();
        assert!(error.to_string().contains("FIELDSYNC_SOURCE_SYSTEM"), "{error}");
    }

    #[test]
    fn receiver_config_splits_rotating_secrets() {
        let vars = env(&[
            ("FIELDSYNC_SOURCE_SYSTEM", "erp"),
            ("FIELDSYNC_WEBHOOK_FORMAT", "signed-json"),
            ("FIELDSYNC_WEBHOOK_SECRETS", "old, new"),
        ]);
        let config = ReceiverConfig::from_env(&vars, &rules()).unwrap();
        assert_eq!(config.webhook_secrets, [Secret::new("old"), Secret::new("new")]);
        assert_eq!(config.signature_tolerance_secs, 300);
        assert!(!format!("{config:?}").contains("old"));
    }

    #[test]
    fn rules_for_another_integration_are_rejected() {
        let path = format!("{}/../../rules.toml", env!("CARGO_MANIFEST_DIR"));
        let vars = env(&[("FIELDSYNC_RULES_FILE", &path), ("FIELDSYNC_INTEGRATION", "acme")]);
        let error = load_rules(&vars).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid environment variable FIELDSYNC_INTEGRATION: the stack serves \"acme\" but the rules are for \"demo\""
        );
    }

    #[test]
    fn generic_receiver_reads_connector_file() {
        let path = format!("{}/../../connectors/erpnext.toml", env!("CARGO_MANIFEST_DIR"));
        let vars = env(&[
            ("FIELDSYNC_SOURCE_SYSTEM", "erp"),
            ("FIELDSYNC_WEBHOOK_FORMAT", "generic"),
            ("FIELDSYNC_WEBHOOK_SECRETS", "s"),
            ("FIELDSYNC_CONNECTOR_FILE", &path),
        ]);
        let config = ReceiverConfig::from_env(&vars, &rules()).unwrap();
        assert_eq!(config.format, FormatKind::Generic);
        assert_eq!(
            config.connector_file.as_ref().map(|file| file.name.as_str()),
            Some("erpnext")
        );
    }

    #[test]
    fn generic_receiver_needs_connector_file() {
        let vars = env(&[
            ("FIELDSYNC_SOURCE_SYSTEM", "erp"),
            ("FIELDSYNC_WEBHOOK_FORMAT", "generic"),
            ("FIELDSYNC_WEBHOOK_SECRETS", "s"),
        ]);
        let error = ReceiverConfig::from_env(&vars, &rules()).unwrap_err();
        assert_eq!(
            error.to_string(),
            "missing environment variable FIELDSYNC_CONNECTOR_FILE"
        );
    }

    #[test]
    fn connections_read_url_and_token() {
        let vars = env(&[
            ("FIELDSYNC_CONNECTIONS", "storefront=shopify,erp=erp-rest"),
            ("FIELDSYNC_STOREFRONT_BASE_URL", "http://127.0.0.1:1"),
            ("FIELDSYNC_STOREFRONT_TOKEN", "t1"),
            ("FIELDSYNC_ERP_BASE_URL", "http://127.0.0.1:2"),
        ]);
        let error = connections_from_env(&vars, &rules()).unwrap_err();
        assert_eq!(error.to_string(), "missing environment variable FIELDSYNC_ERP_TOKEN");
    }

    #[test]
    fn storefront_platforms_build_their_formats() {
        for (name, kind) in [
            ("bigcommerce", FormatKind::BigCommerce),
            ("woocommerce", FormatKind::WooCommerce),
        ] {
            let vars = env(&[
                ("FIELDSYNC_SOURCE_SYSTEM", "storefront"),
                ("FIELDSYNC_WEBHOOK_FORMAT", name),
                ("FIELDSYNC_WEBHOOK_SECRETS", "s"),
            ]);
            let config = ReceiverConfig::from_env(&vars, &rules()).unwrap();
            assert_eq!(config.format, kind);
            assert_eq!(config.webhook_format().source().as_str(), "storefront");
        }
    }

    #[test]
    fn storefront_connections_build_clients() {
        let vars = env(&[
            ("FIELDSYNC_CONNECTIONS", "storefront=bigcommerce,erp=woocommerce"),
            (
                "FIELDSYNC_STOREFRONT_BASE_URL",
                "https://api.bigcommerce.com/stores/abc123",
            ),
            ("FIELDSYNC_STOREFRONT_TOKEN", "bc-token"),
            ("FIELDSYNC_STOREFRONT_LOCATION_ID", "2"),
            ("FIELDSYNC_STOREFRONT_INVENTORY_MODE", "relative"),
            ("FIELDSYNC_ERP_BASE_URL", "https://shop.example.com"),
            ("FIELDSYNC_ERP_TOKEN", "ck_1:cs_1"),
        ]);
        let connections = connections_from_env(&vars, &rules()).unwrap();
        assert_eq!(connections[0].connector, ConnectorKind::BigCommerce);
        assert_eq!(connections[0].inventory_mode, InventoryMode::Relative);
        for connection in &connections {
            connection.client().unwrap();
        }
    }

    #[test]
    fn woocommerce_token_needs_key_and_secret() {
        let vars = env(&[
            ("FIELDSYNC_CONNECTIONS", "storefront=woocommerce"),
            ("FIELDSYNC_STOREFRONT_BASE_URL", "https://shop.example.com"),
            ("FIELDSYNC_STOREFRONT_TOKEN", "ck_only"),
        ]);
        let connections = connections_from_env(&vars, &rules()).unwrap();
        let error = connections[0].client().unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid environment variable FIELDSYNC_STOREFRONT_TOKEN: a WooCommerce token is consumer_key:consumer_secret"
        );
    }

    #[test]
    fn unknown_inventory_mode_is_rejected() {
        let vars = env(&[
            ("FIELDSYNC_CONNECTIONS", "storefront=bigcommerce"),
            (
                "FIELDSYNC_STOREFRONT_BASE_URL",
                "https://api.bigcommerce.com/stores/abc123",
            ),
            ("FIELDSYNC_STOREFRONT_TOKEN", "bc-token"),
            ("FIELDSYNC_STOREFRONT_INVENTORY_MODE", "delta"),
        ]);
        let error = connections_from_env(&vars, &rules()).unwrap_err();
        assert!(
            error.to_string().contains("FIELDSYNC_STOREFRONT_INVENTORY_MODE"),
            "{error}"
        );
    }

    #[test]
    fn netsuite_connection_needs_governor() {
        let vars = env(&[
            ("FIELDSYNC_CONNECTIONS", "erp=netsuite"),
            ("FIELDSYNC_ERP_BASE_URL", "https://1234567.suitetalk.api.netsuite.com"),
            ("FIELDSYNC_ERP_TOKEN", "ns-token"),
            ("FIELDSYNC_ERP_CONCURRENCY_LIMIT", "3"),
        ]);
        let mut connections = connections_from_env(&vars, &rules()).unwrap();
        assert_eq!(connections[0].concurrency_limit, Some(3));
        let error = connections[0].client().unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid environment variable FIELDSYNC_CONNECTIONS: the NetSuite connection erp has no concurrency governor"
        );

        connections[0].governor = Some(Arc::new(fieldsync_embedded::EmbeddedGovernor::new()));
        connections[0].client().unwrap();
    }

    #[test]
    fn netsuite_receiver_builds_its_format() {
        let vars = env(&[
            ("FIELDSYNC_SOURCE_SYSTEM", "erp"),
            ("FIELDSYNC_WEBHOOK_FORMAT", "netsuite"),
            ("FIELDSYNC_WEBHOOK_SECRETS", "s"),
        ]);
        let config = ReceiverConfig::from_env(&vars, &rules()).unwrap();
        assert_eq!(config.format, FormatKind::NetSuite);
        assert_eq!(config.webhook_format().source().as_str(), "erp");
    }

    #[test]
    fn zero_concurrency_limit_is_rejected() {
        let vars = env(&[
            ("FIELDSYNC_CONNECTIONS", "erp=netsuite"),
            ("FIELDSYNC_ERP_BASE_URL", "https://1234567.suitetalk.api.netsuite.com"),
            ("FIELDSYNC_ERP_TOKEN", "ns-token"),
            ("FIELDSYNC_ERP_CONCURRENCY_LIMIT", "0"),
        ]);
        let error = connections_from_env(&vars, &rules()).unwrap_err();
        assert!(error.to_string().contains("FIELDSYNC_ERP_CONCURRENCY_LIMIT"), "{error}");
    }
}
