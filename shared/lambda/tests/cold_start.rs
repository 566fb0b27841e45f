//! Reading secrets and the rules at cold start, against moto's Secrets Manager and Parameter
//! Store on 127.0.0.1.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;

use aws_config::BehaviorVersion;
use fieldsync_core::Secret;
use fieldsync_lambda::cold_start::{resolve, SecretSources};
use fieldsync_lambda::config::{connections_from_env, load_rules, Environment, ReceiverConfig};

/// Builds clients for moto, or returns `None` when emulator tests are skipped on purpose.
fn moto_sources() -> Option<SecretSources> {
    let endpoint = ["FIELDSYNC_MOTO_ENDPOINT", "FIELDSYNC_SQS_ENDPOINT"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()));
    let Some(endpoint) = endpoint else {
        if std::env::var("FIELDSYNC_SKIP_EMULATORS").is_ok_and(|value| value == "1") {
            eprintln!("skipped: no moto endpoint and FIELDSYNC_SKIP_EMULATORS=1");
            return None;
        }
        panic!("FIELDSYNC_SQS_ENDPOINT is not set: run `infra/emulators.sh start` and `eval \"$(infra/emulators.sh env)\"`");
    };
    assert!(
        endpoint.starts_with("http://127.0.0.1:"),
        "{endpoint} is not a local emulator"
    );
    let credentials =
        aws_sdk_secretsmanager::config::Credentials::new("fieldsynctest", "fieldsynctest", None, None, "test");
    let config = aws_config::SdkConfig::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_sdk_secretsmanager::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_secretsmanager::config::SharedCredentialsProvider::new(
            credentials,
        ))
        .endpoint_url(endpoint)
        .build();
    Some(SecretSources::new(&config))
}

fn unique(prefix: &str) -> String {
    format!("{prefix}-{:016x}", rand::random::<u64>())
}

async fn create_secret(sources: &SecretSources, value: &str) -> String {
    let output = sources
        .secrets
        .create_secret()
        .name(unique("fieldsync-test-secret"))
        .secret_string(value)
        .send()
        .await
        .unwrap();
    output.arn().unwrap().to_owned()
}

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect()
}

#[tokio::test]
async fn resolve_reads_secrets_and_rules() {
    let Some(sources) = moto_sources() else { return };
    let webhook_arn = create_secret(&sources, "whsec-old, whsec-new").await;
    let token_arn = create_secret(&sources, "erp-token-1").await;
    let storefront_token_arn = create_secret(&sources, "shpat-1").await;
    let rules_path = format!("{}/../../rules.toml", env!("CARGO_MANIFEST_DIR"));
    let rules_text = std::fs::read_to_string(rules_path).unwrap();
    let parameter = format!("/{}/rules", unique("fieldsync-test"));
    sources
        .parameters
        .put_parameter()
        .name(&parameter)
        .value(&rules_text)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();

    let base = env(&[
        ("FIELDSYNC_RULES_PARAMETER", &parameter),
        ("FIELDSYNC_RULES_FILE", "/nonexistent/rules.toml"),
        ("FIELDSYNC_SOURCE_SYSTEM", "erp"),
        ("FIELDSYNC_WEBHOOK_FORMAT", "signed-json"),
        ("FIELDSYNC_WEBHOOK_SECRETS_ARN", &webhook_arn),
        ("FIELDSYNC_CONNECTIONS", "storefront=shopify,erp=erp-rest"),
        ("FIELDSYNC_STOREFRONT_BASE_URL", "http://127.0.0.1:1"),
        ("FIELDSYNC_STOREFRONT_TOKEN_ARN", &storefront_token_arn),
        ("FIELDSYNC_ERP_BASE_URL", "http://127.0.0.1:2"),
        ("FIELDSYNC_ERP_TOKEN_ARN", &token_arn),
    ]);
    let resolved = resolve(&sources, base).await.unwrap();

    let rules = load_rules(&resolved).unwrap();
    assert_eq!(rules.integration, "demo");
    let receiver = ReceiverConfig::from_env(&resolved, &rules).unwrap();
    assert_eq!(
        receiver.webhook_secrets,
        [Secret::new("whsec-old"), Secret::new("whsec-new")]
    );
    let connections = connections_from_env(&resolved, &rules).unwrap();
    let tokens: Vec<&str> = connections.iter().map(|connection| connection.token.expose()).collect();
    assert_eq!(tokens, ["shpat-1", "erp-token-1"]);
    assert!(resolved.names().contains(&"FIELDSYNC_ERP_TOKEN".to_owned()));
}

#[tokio::test]
async fn resolve_rejects_secret_set_twice() {
    let Some(sources) = moto_sources() else { return };
    let arn = create_secret(&sources, "whsec-1").await;
    let base = env(&[
        ("FIELDSYNC_WEBHOOK_SECRETS", "plain"),
        ("FIELDSYNC_WEBHOOK_SECRETS_ARN", &arn),
    ]);
    let error = resolve(&sources, base).await.unwrap_err();
    assert_eq!(
        error.to_string(),
        "invalid environment variable FIELDSYNC_WEBHOOK_SECRETS: set either FIELDSYNC_WEBHOOK_SECRETS or \
         FIELDSYNC_WEBHOOK_SECRETS_ARN, not both"
    );
}

#[tokio::test]
async fn resolve_names_variable_of_missing_secret() {
    let Some(sources) = moto_sources() else { return };
    let arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:fieldsync-absent-AbCdEf";
    let error = resolve(&sources, env(&[("FIELDSYNC_ERP_TOKEN_ARN", arn)]))
        .await
        .unwrap_err();
    let message = error.to_string();
    assert!(
        message.starts_with("invalid environment variable FIELDSYNC_ERP_TOKEN_ARN: cannot read secret"),
        "{message}"
    );
    assert!(message.contains("ResourceNotFound"), "{message}");
}

#[tokio::test]
async fn resolve_reads_connector_file_parameter() {
    let Some(sources) = moto_sources() else { return };
    let connector_path = format!("{}/../../connectors/erpnext.toml", env!("CARGO_MANIFEST_DIR"));
    let connector_text = std::fs::read_to_string(connector_path).unwrap();
    let parameter = format!("/{}/connector", unique("fieldsync-test"));
    sources
        .parameters
        .put_parameter()
        .name(&parameter)
        .value(&connector_text)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .send()
        .await
        .unwrap();
    let rules_path = format!("{}/../../rules.toml", env!("CARGO_MANIFEST_DIR"));

    let base = env(&[
        ("FIELDSYNC_RULES_FILE", &rules_path),
        ("FIELDSYNC_CONNECTOR_PARAMETER", &parameter),
        ("FIELDSYNC_CONNECTOR_FILE", "/nonexistent/connector.toml"),
        ("FIELDSYNC_SOURCE_SYSTEM", "erp"),
        ("FIELDSYNC_WEBHOOK_FORMAT", "generic"),
        ("FIELDSYNC_WEBHOOK_SECRETS", "frappe-secret"),
        ("FIELDSYNC_CONNECTIONS", "erp=generic"),
        ("FIELDSYNC_ERP_BASE_URL", "http://127.0.0.1:2"),
        ("FIELDSYNC_ERP_TOKEN", "key:secret"),
    ]);
    let resolved = resolve(&sources, base).await.unwrap();

    let rules = load_rules(&resolved).unwrap();
    let receiver = ReceiverConfig::from_env(&resolved, &rules).unwrap();
    assert_eq!(receiver.connector_file.unwrap().name, "erpnext");
    let connections = connections_from_env(&resolved, &rules).unwrap();
    assert_eq!(connections[0].connector_file.as_ref().unwrap().name, "erpnext");
}

#[tokio::test]
async fn resolve_names_variable_of_missing_connector_parameter() {
    let Some(sources) = moto_sources() else { return };
    let base = env(&[("FIELDSYNC_CONNECTOR_PARAMETER", "/fieldsync-absent/connector")]);
    let message = resolve(&sources, base).await.unwrap_err().to_string();
    assert!(
        message.starts_with("invalid environment variable FIELDSYNC_CONNECTOR_PARAMETER: cannot read parameter"),
        "{message}"
    );
}
