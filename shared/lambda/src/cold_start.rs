//! Secrets and the rules file, read once at cold start from Secrets Manager and Systems Manager
//! Parameter Store, so that no secret is a template parameter or an environment value.
//!
//! Every variable `FIELDSYNC_<NAME>_ARN` names a Secrets Manager secret whose string becomes the
//! value of `FIELDSYNC_<NAME>`: `FIELDSYNC_WEBHOOK_SECRETS_ARN` for a receiver's webhook secrets,
//! `FIELDSYNC_ERP_TOKEN_ARN` for the ERP's API token, and so on. `FIELDSYNC_RULES_PARAMETER`
//! names a parameter whose value is the rules file, and `FIELDSYNC_CONNECTOR_PARAMETER` one whose
//! value is the connector file of a `generic` format or connector. The functions read the result through
//! [`Environment`], exactly as they read plain variables in local runs.

use std::collections::BTreeMap;

use crate::config::{ConfigError, Environment};

/// The variable naming the Parameter Store parameter that contains the rules file.
pub const RULES_PARAMETER: &str = "FIELDSYNC_RULES_PARAMETER";

/// The variable the rules file's text is published under after [`resolve`].
pub const RULES_TEXT: &str = "FIELDSYNC_RULES_TEXT";

/// The variable naming the Parameter Store parameter that contains the connector file.
pub const CONNECTOR_PARAMETER: &str = "FIELDSYNC_CONNECTOR_PARAMETER";

/// The variable the connector file's text is published under after [`resolve`].
pub const CONNECTOR_TEXT: &str = "FIELDSYNC_CONNECTOR_TEXT";

/// The clients cold start reads from.
#[derive(Debug, Clone)]
pub struct SecretSources {
    pub secrets: aws_sdk_secretsmanager::Client,
    pub parameters: aws_sdk_ssm::Client,
}

impl SecretSources {
    /// Builds the clients from the SDK configuration of the function's role and region.
    pub fn new(config: &aws_config::SdkConfig) -> Self {
        Self {
            secrets: aws_sdk_secretsmanager::Client::new(config),
            parameters: aws_sdk_ssm::Client::new(config),
        }
    }
}

/// Plain variables with the values read at cold start laid over them.
#[derive(Debug, Clone)]
pub struct ResolvedEnvironment<E> {
    base: E,
    resolved: BTreeMap<String, String>,
}

impl<E: Environment> Environment for ResolvedEnvironment<E> {
    fn get(&self, name: &str) -> Option<String> {
        self.resolved.get(name).cloned().or_else(|| self.base.get(name))
    }

    fn names(&self) -> Vec<String> {
        let mut names = self.base.names();
        names.extend(self.resolved.keys().cloned());
        names.sort();
        names.dedup();
        names
    }
}

/// Reads every secret and the rules and connector parameters that `base` names. A variable set both directly
/// and through its `_ARN` companion is an error, because one of the two would be ignored.
pub async fn resolve<E: Environment>(sources: &SecretSources, base: E) -> Result<ResolvedEnvironment<E>, ConfigError> {
    let mut resolved = BTreeMap::new();
    for arn_variable in base.names() {
        let Some(target) = arn_variable
            .strip_suffix("_ARN")
            .filter(|name| name.starts_with("FIELDSYNC_"))
        else {
            continue;
        };
        let Some(arn) = base.get(&arn_variable) else { continue };
        if base.get(target).is_some() {
            return Err(ConfigError::Invalid {
                variable: target.to_owned(),
                reason: format!("set either {target} or {arn_variable}, not both"),
            });
        }
        let value = read_secret(sources, &arn_variable, &arn).await?;
        resolved.insert(target.to_owned(), value);
    }
    for (variable, text_variable) in [(RULES_PARAMETER, RULES_TEXT), (CONNECTOR_PARAMETER, CONNECTOR_TEXT)] {
        if let Some(name) = base.get(variable) {
            let text = read_parameter(sources, variable, &name).await?;
            resolved.insert(text_variable.to_owned(), text);
        }
    }
    Ok(ResolvedEnvironment { base, resolved })
}

async fn read_secret(sources: &SecretSources, variable: &str, arn: &str) -> Result<String, ConfigError> {
    let unreadable = |reason: String| ConfigError::Invalid {
        variable: variable.to_owned(),
        reason,
    };
    let output = sources
        .secrets
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|error| unreadable(format!("cannot read secret {arn}: {}", error_chain(&error))))?;
    let value = output
        .secret_string()
        .map(str::trim)
        .filter(|value| !value.is_empty())
        .ok_or_else(|| unreadable(format!("secret {arn} has no text value")))?;
    Ok(value.to_owned())
}

async fn read_parameter(sources: &SecretSources, variable: &str, name: &str) -> Result<String, ConfigError> {
    let unreadable = |reason: String| ConfigError::Invalid {
        variable: variable.to_owned(),
        reason,
    };
    let output = sources
        .parameters
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|error| unreadable(format!("cannot read parameter {name}: {}", error_chain(&error))))?;
    output
        .parameter()
        .and_then(|parameter| parameter.value())
        .map(str::to_owned)
        .ok_or_else(|| unreadable(format!("parameter {name} has no value")))
}

/// Joins an error and its sources, because the SDK's top-level message ("service error") alone
/// does not say what went wrong.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
