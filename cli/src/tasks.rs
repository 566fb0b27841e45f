//! `fieldsync tasks`: list the open manual tasks of an integration.
//!
//! Credentials, region and endpoint come from the standard AWS environment (`AWS_PROFILE`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL_DYNAMODB` for an emulator).

use std::process::ExitCode;

use fieldsync_aws::DynamoStore;
use fieldsync_core::ports::RecordStore;
use fieldsync_core::{OpenTask, Rules};

pub(crate) async fn run(rules: &Rules, table: &str) -> anyhow::Result<ExitCode> {
    let client = aws_sdk_dynamodb::Client::new(&fieldsync_aws::sdk_config().await);
    let store = DynamoStore::new(client, table);
    let tasks = store.open_tasks(&rules.integration).await?;
    print_tasks(&rules.integration, &tasks);
    Ok(ExitCode::SUCCESS)
}

/// Prints one line per task: its title, the system where a person takes the step, the record
/// and since when it waits.
pub(crate) fn print_tasks(integration: &str, tasks: &[OpenTask]) {
    println!("{} open task(s) in integration {integration}", tasks.len());
    for open in tasks {
        let task = &open.task;
        println!(
            "  {}  in {}  record {}  ({} → {})  open since {}",
            task.title,
            task.system,
            open.record,
            task.from,
            task.to,
            task.opened_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
}
