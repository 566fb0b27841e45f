//! Receives ERP webhooks: verifies each signature, enqueues the normalized field changes on the
//! SQS FIFO queue, and responds 2xx only once they are queued. Configuration: see
//! `fieldsync_lambda::config`.

use std::sync::Arc;

use fieldsync_aws::SqsQueue;
use fieldsync_lambda::cold_start::{resolve, SecretSources};
use fieldsync_lambda::config::{load_rules, Environment, ProcessEnvironment, ReceiverConfig};
use fieldsync_lambda::metrics::MetricsSink;
use fieldsync_lambda::receiver::{handle, Receiver};
use lambda_http::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fieldsync_lambda::init_tracing();
    let sdk = fieldsync_aws::sdk_config().await;
    let env = resolve(&SecretSources::new(&sdk), ProcessEnvironment).await?;
    let rules = load_rules(&env)?;
    let config = ReceiverConfig::from_env(&env, &rules)?;
    let queue_url = env.require("FIELDSYNC_QUEUE_URL")?;

    let receiver = Receiver {
        integration: rules.integration.clone(),
        format: config.webhook_format(),
        queue: Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url, None)),
        metrics: MetricsSink::Stdout,
    };

    lambda_http::run(service_fn(|request| handle(&receiver, request))).await
}
