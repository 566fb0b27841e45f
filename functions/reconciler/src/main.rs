//! Reconciles batches from the SQS FIFO queue: applies the field-ownership rules against the
//! DynamoDB record state with conditional writes, writes the winning values to the other systems,
//! and reports failed messages individually. Configuration: see `fieldsync_lambda::config`.

use std::collections::BTreeMap;
use std::sync::Arc;

use fieldsync_aws::DynamoStore;
use fieldsync_lambda::cold_start::{resolve, SecretSources};
use fieldsync_lambda::config::{connections_from_env, load_rules, Environment, ProcessEnvironment};
use fieldsync_lambda::metrics::MetricsSink;
use fieldsync_lambda::reconciler::handle;
use fieldsync_pipeline::Reconciler;
use lambda_runtime::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fieldsync_lambda::init_tracing();
    let sdk = fieldsync_aws::sdk_config().await;
    let env = resolve(&SecretSources::new(&sdk), ProcessEnvironment).await?;
    let rules = Arc::new(load_rules(&env)?);
    let table = env.require("FIELDSYNC_TABLE_NAME")?;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let store = DynamoStore::new(dynamodb, table);

    // Concurrency limits per account (NetSuite) are held in the state table, so every
    // reconciler instance counts the same slots.
    let governor = Arc::new(store.governor());
    let mut systems = BTreeMap::new();
    for mut connection in connections_from_env(&env, &rules)? {
        connection.governor = Some(governor.clone());
        systems.insert(connection.system.clone(), connection.client()?);
    }

    let reconciler = Reconciler::new(rules, Arc::new(store), systems);
    let metrics = MetricsSink::Stdout;

    lambda_runtime::run(service_fn(|event| handle(&reconciler, &metrics, event))).await
}
