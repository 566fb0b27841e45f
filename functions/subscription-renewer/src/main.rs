//! Renews the Business Central webhook subscription on a schedule, twice a day for a
//! subscription that lives three days, and creates it again with a catch-up read when it is
//! gone. Configuration: see `fieldsync_lambda::config` and `fieldsync_lambda::renewer`.

use std::sync::Arc;

use fieldsync_aws::SqsQueue;
use fieldsync_lambda::cold_start::{resolve, SecretSources};
use fieldsync_lambda::config::{load_rules, Environment, ProcessEnvironment};
use fieldsync_lambda::renewer::{handle, Renewer};
use lambda_runtime::{service_fn, Error};

#[tokio::main]
async fn main() -> Result<(), Error> {
    fieldsync_lambda::init_tracing();
    let sdk = fieldsync_aws::sdk_config().await;
    let env = resolve(&SecretSources::new(&sdk), ProcessEnvironment).await?;
    let rules = load_rules(&env)?;
    let queue_url = env.require("FIELDSYNC_QUEUE_URL")?;
    let queue = Arc::new(SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url, None));
    let renewer = Renewer::from_env(&env, &rules, queue)?;

    lambda_runtime::run(service_fn(|event| handle(&renewer, event))).await
}
