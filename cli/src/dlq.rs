//! `fieldsync dlq`: list or redrive the dead-letter queue of the changes queue.
//!
//! Credentials, region and endpoint come from the standard AWS environment (`AWS_PROFILE`,
//! `AWS_REGION`, `AWS_ENDPOINT_URL_SQS` for an emulator).

use std::process::ExitCode;

use clap::Subcommand;
use fieldsync_aws::SqsQueue;
use fieldsync_core::ports::Queue;
use fieldsync_core::ChangeSet;

#[derive(Debug, Subcommand)]
pub(crate) enum Action {
    /// List the messages in the dead-letter queue without removing them.
    List(QueueUrls),
    /// Move every dead-letter message back to the changes queue, in group order.
    Redrive(QueueUrls),
}

#[derive(Debug, clap::Args)]
pub(crate) struct QueueUrls {
    /// URL of the SQS FIFO changes queue.
    #[arg(long, env = "FIELDSYNC_QUEUE_URL")]
    queue_url: String,

    /// URL of its dead-letter queue.
    #[arg(long, env = "FIELDSYNC_DEAD_LETTER_QUEUE_URL")]
    dead_letter_queue_url: String,
}

pub(crate) async fn run(action: &Action) -> anyhow::Result<ExitCode> {
    let (Action::List(urls) | Action::Redrive(urls)) = action;
    let client = aws_sdk_sqs::Client::new(&fieldsync_aws::sdk_config().await);
    let queue = SqsQueue::new(client, urls.queue_url.clone(), Some(urls.dead_letter_queue_url.clone()));

    match action {
        Action::List(_) => {
            let messages = queue.dead_letters().await?;
            println!("{} message(s) in the dead-letter queue", messages.len());
            for message in messages {
                let summary = match serde_json::from_str::<ChangeSet>(&message.body) {
                    Ok(change) => format!("{} from {} (event {})", change.record, change.source, change.event_id),
                    Err(_) => "unreadable body".to_owned(),
                };
                println!(
                    "  {}  receives={}  {summary}",
                    message.message_id, message.receive_count
                );
            }
        }
        Action::Redrive(_) => {
            let moved = queue.redrive().await?;
            println!("moved {moved} message(s) back to the changes queue");
        }
    }
    Ok(ExitCode::SUCCESS)
}
