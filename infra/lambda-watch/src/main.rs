//! `lambda-watch-stack`: what the three Lambda functions need while `infra/lambda-watch-test.sh`
//! runs them under `cargo lambda watch`.
//!
//! It creates a DynamoDB table and an SQS FIFO queue pair named after its NAME argument on the
//! emulators of `infra/emulators.sh`, starts the storefront and ERP sandboxes on 127.0.0.1 and
//! writes their coordinates to ENV_FILE as `KEY=VALUE` lines. The file appears only when all of it
//! is ready. It then serves until SIGTERM or SIGINT, stops the sandboxes and deletes the table and
//! both queues.
//!
//! Usage: `lambda-watch-stack ENV_FILE NAME`, with `FIELDSYNC_DYNAMODB_ENDPOINT` and
//! `FIELDSYNC_SQS_ENDPOINT` set (`eval "$(infra/emulators.sh env)"` sets both).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use fieldsync_aws::{DynamoStore, SqsQueue};
use fieldsync_sandbox::erp::{ErpConfig, ErpHandle, ErpSandbox};
use fieldsync_sandbox::storefront::{StorefrontConfig, StorefrontHandle, StorefrontSandbox};
use tokio::signal::unix::{signal, SignalKind};

/// Fake API tokens the sandboxes demand and the reconciler sends. Nothing here reaches a real
/// platform.
const STOREFRONT_TOKEN: &str = "shpat_lambda_watch_fake_token";
const ERP_TOKEN: &str = "erp_lambda_watch_fake_token";

/// Receives after which a message moves to the dead-letter queue, as in `template.yaml`.
const MAX_RECEIVE_COUNT: u32 = 5;

/// How long a received message stays hidden. The check receives each message once and never
/// deletes it, so this only has to outlast one run.
const VISIBILITY_TIMEOUT_SECS: u32 = 60;

#[derive(Debug)]
struct Args {
    env_file: PathBuf,
    name: String,
    dynamodb_endpoint: String,
    sqs_endpoint: String,
}

/// The running stack: clients and names for the clean-up, handles for the sandboxes.
#[derive(Debug)]
struct Stack {
    dynamodb: aws_sdk_dynamodb::Client,
    sqs: aws_sdk_sqs::Client,
    table: String,
    queue_url: String,
    dead_letter_url: Option<String>,
    storefront: StorefrontHandle,
    erp: ErpHandle,
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("lambda-watch-stack: error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let args = parse_args()?;
    let mut terminate = signal(SignalKind::terminate()).context("failed to listen for SIGTERM")?;

    let stack = start(&args).await?;
    write_env_file(&args.env_file, &stack)?;
    eprintln!(
        "lambda-watch-stack: table {}, queue {}, storefront {}, ERP {}",
        stack.table,
        stack.queue_url,
        stack.storefront.base_url(),
        stack.erp.base_url()
    );

    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    stop(stack).await
}

fn parse_args() -> anyhow::Result<Args> {
    let mut positional = std::env::args().skip(1);
    let (Some(env_file), Some(name), None) = (positional.next(), positional.next(), positional.next()) else {
        bail!("usage: lambda-watch-stack ENV_FILE NAME");
    };
    let endpoint = |variable: &str| {
        std::env::var(variable)
            .with_context(|| format!("{variable} is not set; run: eval \"$(infra/emulators.sh env)\""))
    };
    Ok(Args {
        env_file: PathBuf::from(env_file),
        name,
        dynamodb_endpoint: endpoint("FIELDSYNC_DYNAMODB_ENDPOINT")?,
        sqs_endpoint: endpoint("FIELDSYNC_SQS_ENDPOINT")?,
    })
}

async fn start(args: &Args) -> anyhow::Result<Stack> {
    let (dynamodb, sqs) = fieldsync_aws::local_clients(&args.dynamodb_endpoint, &args.sqs_endpoint);

    let store = DynamoStore::new(dynamodb.clone(), args.name.clone());
    store.create_table().await?;
    let queue = SqsQueue::create_fifo_pair(sqs.clone(), &args.name, MAX_RECEIVE_COUNT, VISIBILITY_TIMEOUT_SECS).await?;

    let storefront = StorefrontSandbox::start(StorefrontConfig {
        access_token: STOREFRONT_TOKEN.to_owned(),
        ..StorefrontConfig::default()
    })
    .await?;
    let erp = ErpSandbox::start(ErpConfig {
        api_token: ERP_TOKEN.to_owned(),
        ..ErpConfig::default()
    })
    .await?;

    Ok(Stack {
        dynamodb,
        sqs,
        table: args.name.clone(),
        queue_url: queue.queue_url().to_owned(),
        dead_letter_url: queue.dead_letter_url().map(str::to_owned),
        storefront,
        erp,
    })
}

/// Writes the file under a temporary name first and renames it, so a reader never finds a
/// partly written file.
fn write_env_file(path: &Path, stack: &Stack) -> anyhow::Result<()> {
    let lines = [
        ("FIELDSYNC_TABLE_NAME", stack.table.clone()),
        ("FIELDSYNC_QUEUE_URL", stack.queue_url.clone()),
        (
            "FIELDSYNC_DEAD_LETTER_QUEUE_URL",
            stack.dead_letter_url.clone().unwrap_or_default(),
        ),
        ("FIELDSYNC_STOREFRONT_BASE_URL", stack.storefront.base_url()),
        ("FIELDSYNC_STOREFRONT_TOKEN", STOREFRONT_TOKEN.to_owned()),
        ("FIELDSYNC_ERP_BASE_URL", stack.erp.base_url()),
        ("FIELDSYNC_ERP_TOKEN", ERP_TOKEN.to_owned()),
    ];
    let text: String = lines.iter().map(|(name, value)| format!("{name}={value}\n")).collect();
    let partial = path.with_extension("partial");
    std::fs::write(&partial, text).with_context(|| format!("failed to write {}", partial.display()))?;
    std::fs::rename(&partial, path)
        .with_context(|| format!("failed to rename {} to {}", partial.display(), path.display()))
}

/// Stops the sandboxes and deletes what `start` created. Every deletion is tried, and the first
/// failure is returned.
async fn stop(stack: Stack) -> anyhow::Result<()> {
    stack.storefront.shutdown().await;
    stack.erp.shutdown().await;

    let mut result = Ok(());
    if let Err(error) = stack.dynamodb.delete_table().table_name(&stack.table).send().await {
        result = Err(anyhow::Error::new(error).context(format!("failed to delete table {}", stack.table)));
    }
    for url in std::iter::once(&stack.queue_url).chain(&stack.dead_letter_url) {
        if let Err(error) = stack.sqs.delete_queue().queue_url(url).send().await {
            if result.is_ok() {
                result = Err(anyhow::Error::new(error).context(format!("failed to delete queue {url}")));
            }
        }
    }
    result
}
