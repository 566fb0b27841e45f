//! `fieldsync`: the operator CLI.
//!
//! - `fieldsync demo` runs the whole pipeline in one process against the sandboxes and plays the
//!   product story, printing every field after each step; it exits 0 only if both sandboxes end
//!   in the expected state.
//! - `fieldsync dev` starts the same stack and keeps it running for webhooks sent by hand.

mod demo;
mod table;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use fieldsync_core::Rules;
use fieldsync_local::{LocalOptions, LocalStack};

#[derive(Debug, Parser)]
#[command(
    name = "fieldsync",
    version,
    about = "Field-by-field, two-way sync between an ERP and a storefront"
)]
struct Cli {
    /// Rules file declaring systems, entities and field ownership.
    #[arg(long, env = "FIELDSYNC_RULES_FILE", default_value = "rules.toml", global = true)]
    rules: PathBuf,

    /// Log filter, in `RUST_LOG` syntax.
    #[arg(long, env = "RUST_LOG", default_value = "warn", global = true)]
    log: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Play the product story end to end on the local stack and check the result.
    Demo,
    /// Run the local stack until Ctrl-C, for webhooks sent by hand.
    Dev {
        /// Port of the webhook receiver on 127.0.0.1.
        #[arg(long, default_value_t = 8787)]
        port: u16,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_target(false)
        .init();
    match run(cli).await {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&cli.rules)
        .with_context(|| format!("cannot read rules file {}", cli.rules.display()))?;
    let rules = Rules::parse(&cli.rules.display().to_string(), &text)?;
    match cli.command {
        Command::Demo => demo::run(rules).await,
        Command::Dev { port } => dev(rules, port).await,
    }
}

async fn dev(rules: Rules, port: u16) -> anyhow::Result<ExitCode> {
    let stack = LocalStack::start(LocalOptions {
        receiver_port: port,
        ..LocalOptions::new(rules)
    })
    .await?;
    println!("fieldsync dev stack running (Ctrl-C to stop)");
    println!("  storefront webhooks: POST {}", stack.receivers.url("storefront"));
    println!("  ERP webhooks:        POST {}", stack.receivers.url("erp"));
    println!(
        "  storefront sandbox:  {} (state: GET /_sandbox/state)",
        stack.storefront.base_url()
    );
    println!(
        "  ERP sandbox:         {} (state: GET /_sandbox/state)",
        stack.erp.base_url()
    );
    println!(
        "  storefront webhook secret: {}",
        fieldsync_local::STOREFRONT_WEBHOOK_SECRET
    );
    println!("  ERP webhook secret:        {}", fieldsync_local::ERP_WEBHOOK_SECRET);
    tokio::signal::ctrl_c().await.context("cannot wait for Ctrl-C")?;
    stack.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
