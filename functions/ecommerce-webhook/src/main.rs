//! Receives storefront (eCommerce) webhooks: verifies each signature, enqueues the normalized field changes on the
//! SQS FIFO queue, and responds 2xx only once they are queued. Configuration: see
//! `fieldsync_lambda::config`.

use std::sync::Arc;

use fieldsync_aws::SqsQueue;
use fieldsync_lambda::config::{load_rules, Environment, ProcessEnvironment, ReceiverConfig};
use fieldsync_lambda::receiver::{handle, Receiver};
use lambda_http::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fieldsync_lambda::init_tracing();
    let env = ProcessEnvironment;
    let rules = load_rules(&env)?;
    let config = ReceiverConfig::from_env(&env, &rules)?;
    let queue_url = env.require("FIELDSYNC_QUEUE_URL")?;

    let sqs = aws_sdk_sqs::Client::new(&fieldsync_aws::sdk_config().await);
    let receiver = Receiver {
        format: config.webhook_format(),
        queue: Arc::new(SqsQueue::new(sqs, queue_url, None)),
    };

    lambda_http::run(service_fn(|request| handle(&receiver, request))).await
}
