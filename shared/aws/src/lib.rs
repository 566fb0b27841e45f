//! The core's store and queue ports on AWS: [`DynamoStore`] on one DynamoDB table and
//! [`SqsQueue`] on an SQS FIFO queue with its dead-letter queue. [`DynamoGovernor`] keeps
//! concurrency slots on the store's table.
//!
//! Clients come from [`sdk_config`] in deployed code, where the standard environment variables
//! and the Lambda role provide region and credentials, or from [`local_clients`] for tests and
//! local runs against emulators.

mod governor;
mod items;
mod queue;
mod store;

use std::error::Error as StdError;
use std::time::Duration;

use aws_config::BehaviorVersion;
use fieldsync_core::ports::BoxError;

pub use governor::DynamoGovernor;
pub use queue::SqsQueue;
pub use store::DynamoStore;

/// Region of the clients [`local_clients`] builds. Emulators accept any region.
pub const LOCAL_REGION: &str = "us-east-1";

/// Access key id and secret of the clients [`local_clients`] builds. They are fake, and
/// alphanumeric because DynamoDB Local 3.3.0 rejects an access key id such as `fieldsync-test`
/// with `UnrecognizedClientException`.
pub const LOCAL_ACCESS_KEY: &str = "fieldsynctest";

/// How long a local client waits for a TCP connection to an emulator.
const LOCAL_CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long one local client call may take, retries included.
const LOCAL_OPERATION_TIMEOUT: Duration = Duration::from_secs(30);

/// A failed table or queue set-up call ([`DynamoStore::create_table`],
/// [`SqsQueue::create_fifo_pair`]).
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("failed to set up DynamoDB table {table}")]
    Table {
        table: String,
        #[source]
        source: BoxError,
    },
    #[error("failed to set up SQS queue {queue}")]
    Queue {
        queue: String,
        #[source]
        source: BoxError,
    },
}

/// Loads the SDK configuration from the environment: region, credentials and endpoints. Setting
/// `AWS_ENDPOINT_URL_DYNAMODB` or `AWS_ENDPOINT_URL_SQS` sends that service's calls to another
/// endpoint, such as an emulator on 127.0.0.1.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// Builds DynamoDB and SQS clients for emulators on explicit endpoints, with fake static
/// credentials and region `us-east-1`. No credential provider chain runs, so these clients never
/// read `~/.aws` or call an instance metadata service.
pub fn local_clients(dynamodb_endpoint: &str, sqs_endpoint: &str) -> (aws_sdk_dynamodb::Client, aws_sdk_sqs::Client) {
    let dynamodb_config = aws_sdk_dynamodb::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_sdk_dynamodb::config::Region::new(LOCAL_REGION))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new(
            LOCAL_ACCESS_KEY,
            LOCAL_ACCESS_KEY,
            None,
            None,
            "fieldsync-local",
        ))
        .endpoint_url(dynamodb_endpoint)
        .timeout_config(local_timeouts())
        .build();

    let sqs_config = aws_sdk_sqs::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .region(aws_sdk_sqs::config::Region::new(LOCAL_REGION))
        .credentials_provider(aws_sdk_sqs::config::Credentials::new(
            LOCAL_ACCESS_KEY,
            LOCAL_ACCESS_KEY,
            None,
            None,
            "fieldsync-local",
        ))
        .endpoint_url(sqs_endpoint)
        .timeout_config(local_timeouts())
        .build();

    (
        aws_sdk_dynamodb::Client::from_conf(dynamodb_config),
        aws_sdk_sqs::Client::from_conf(sqs_config),
    )
}

fn local_timeouts() -> aws_sdk_dynamodb::config::timeout::TimeoutConfig {
    aws_sdk_dynamodb::config::timeout::TimeoutConfig::builder()
        .connect_timeout(LOCAL_CONNECT_TIMEOUT)
        .operation_timeout(LOCAL_OPERATION_TIMEOUT)
        .build()
}

/// A response that lacks a field the service always sends, or carries it in an unreadable form.
#[derive(Debug, thiserror::Error)]
#[error("the response has {problem} {field}")]
struct InvalidResponse {
    problem: &'static str,
    field: String,
}

impl InvalidResponse {
    fn missing(field: impl Into<String>) -> Self {
        Self {
            problem: "no",
            field: field.into(),
        }
    }

    fn unreadable(field: impl Into<String>) -> Self {
        Self {
            problem: "an unreadable",
            field: field.into(),
        }
    }
}

/// Boxes an SDK or adapter error as the source of a port error.
fn boxed(error: impl StdError + Send + Sync + 'static) -> BoxError {
    Box::new(error)
}
