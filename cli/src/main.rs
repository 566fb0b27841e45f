//! `fieldsync`: the operator CLI.
//!
//! - `fieldsync demo` runs the whole pipeline in one process against the sandboxes and plays the
//!   product story, printing every field after each step; it exits 0 only if both sandboxes end
//!   in the expected state.
//!   `--story order-lifecycle` plays a quote through order, shipment and return instead.
//! - `fieldsync demo --pair shopify-generic` plays the product story with an ERPNext-like ERP
//!   reached through the generic connector of `connectors/erpnext.toml`.
//! - `fieldsync demo --pair shopify-businesscentral` plays it with Business Central, its thin
//!   notifications and its subscription renewal.
//! - `fieldsync demo --pair bigcommerce-netsuite` and `--pair woocommerce-netsuite` play it with
//!   NetSuite's signed outbox and REST records, and the storefront's own webhooks and API.
//! - `fieldsync dev` starts the same stack and keeps it running for webhooks sent by hand.
//! - `fieldsync webhooks register --integration NAME` creates or renews Business Central's
//!   subscription and Shopify's webhook subscriptions.
//! - `fieldsync tasks` lists the open manual steps stored in a DynamoDB table.

mod demo;
mod demo_business_central;
mod demo_generic;
mod demo_netsuite;
mod dlq;
mod lifecycle;
mod table;
mod tasks;
mod webhooks;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use fieldsync_core::Rules;
use fieldsync_local::{Backend, LocalOptions, LocalStack, StorefrontPlatform};
use fieldsync_sandbox::business_central::BusinessCentralConfig as BusinessCentralSandboxConfig;

#[derive(Debug, Parser)]
#[command(
    name = "fieldsync",
    version,
    about = "Field-by-field, two-way sync between an ERP and a storefront"
)]
struct Cli {
    /// Rules file declaring systems, entities and field ownership.
    #[arg(long, env = "FIELDSYNC_RULES_FILE", default_value = DEFAULT_RULES, global = true)]
    rules: PathBuf,

    /// Log filter, in `RUST_LOG` syntax.
    #[arg(long, env = "RUST_LOG", default_value = "warn", global = true)]
    log: String,

    /// Store and queue of `demo` and `dev`: the in-process ones, or DynamoDB and SQS on the
    /// emulators that `infra/emulators.sh start` runs.
    #[arg(long, env = "FIELDSYNC_BACKEND", value_enum, default_value_t = BackendKind::Embedded, global = true)]
    backend: BackendKind,

    /// DynamoDB endpoint for `--backend emulators`.
    #[arg(
        long,
        env = "FIELDSYNC_DYNAMODB_ENDPOINT",
        default_value = "http://127.0.0.1:18000",
        global = true
    )]
    dynamodb_endpoint: String,

    /// SQS endpoint for `--backend emulators`.
    #[arg(
        long,
        env = "FIELDSYNC_SQS_ENDPOINT",
        default_value = "http://127.0.0.1:15000",
        global = true
    )]
    sqs_endpoint: String,

    #[command(subcommand)]
    command: Command,
}

/// The rules file `--rules` defaults to.
const DEFAULT_RULES: &str = "rules.toml";

/// Reconciler workers of the NetSuite pairs: more than the account's concurrency limit.
const NETSUITE_PAIR_WORKERS: usize = 8;

/// The rules of the Business Central pair, used when `--rules` is left at its default.
const BUSINESS_CENTRAL_RULES: &str = "examples/rules/shopify-businesscentral.toml";

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum BackendKind {
    Embedded,
    Emulators,
}

/// The stories `demo` can play.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Story {
    /// An ERP item and its marketing fields on the storefront.
    Product,
    /// A quote request through pricing, order, shipment and a return, across both systems.
    OrderLifecycle,
}

/// The storefront and ERP pairs the product story can run on. Each name starts with the
/// storefront, as the `--pair` values read.
#[allow(clippy::enum_variant_names)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Pair {
    ShopifyErp,
    ShopifyGeneric,
    /// Business Central through its API v2.0 and webhook subscriptions.
    #[value(name = "shopify-businesscentral")]
    ShopifyBusinessCentral,
    /// BigCommerce's thin webhooks and v3 catalog, with NetSuite's signed outbox and REST records.
    #[value(name = "bigcommerce-netsuite")]
    BigCommerceNetSuite,
    /// WooCommerce's webhooks and REST API v3, with NetSuite's signed outbox and REST records.
    #[value(name = "woocommerce-netsuite")]
    WooCommerceNetSuite,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Play a story end to end on the local stack and check the result.
    Demo {
        /// The story to play.
        #[arg(long, value_enum, default_value_t = Story::Product)]
        story: Story,
        /// The storefront and ERP pair of the product story, storefront first.
        #[arg(long, value_enum, default_value_t = Pair::ShopifyErp)]
        pair: Pair,
        /// Connector file of the ERP for `--pair shopify-generic`.
        #[arg(long, default_value = "connectors/erpnext.toml")]
        connector_file: PathBuf,
    },
    /// List the open manual tasks (such as "price and approve quote Q-1001") of the rules
    /// file's integration, from the DynamoDB table the reconciler uses.
    Tasks {
        /// Name of the DynamoDB table.
        #[arg(long, env = "FIELDSYNC_TABLE_NAME")]
        table: String,
    },
    /// Run the local stack until Ctrl-C, for webhooks sent by hand.
    Dev {
        /// Port of the webhook receiver on 127.0.0.1.
        #[arg(long, default_value_t = 8787)]
        port: u16,
        /// The sandboxes behind the two receivers, storefront first. Business Central comes with
        /// its subscription, and with the pair's rules when `--rules` is left at its default.
        #[arg(long, value_enum, default_value_t = Pair::ShopifyErp)]
        pair: Pair,
    },
    /// Inspect or redrive the dead-letter queue of a deployed (or emulated) SQS queue pair.
    Dlq {
        #[command(subcommand)]
        action: dlq::Action,
    },
    /// Create or renew webhook subscriptions where the platform has an API for them (Business
    /// Central, Shopify), with the functions' configuration variables.
    Webhooks {
        #[command(subcommand)]
        action: webhooks::Action,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr, so the demo's tables on stdout stay readable when either is redirected,
    // and carry colour codes only on a terminal.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(&cli.log))
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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
    match &cli.command {
        Command::Dlq { action } => dlq::run(action).await,
        Command::Webhooks { action } => webhooks::run(&local_options(&cli)?.rules, action).await,
        Command::Demo {
            story: Story::OrderLifecycle,
            pair,
            ..
        } => {
            anyhow::ensure!(
                *pair == Pair::ShopifyErp,
                "the order lifecycle story runs on --pair shopify-erp only"
            );
            lifecycle::run(local_options(&cli)?).await
        }
        Command::Tasks { table } => tasks::run(&local_options(&cli)?.rules, table).await,
        Command::Demo {
            pair: Pair::ShopifyErp, ..
        } => demo::run(local_options(&cli)?).await,
        Command::Demo {
            pair: Pair::ShopifyBusinessCentral,
            ..
        } => {
            // The shipped rules send the meta title back to the ERP only in the Business Central
            // example, whose item has a field for it.
            let mut options = if cli.rules == Path::new(DEFAULT_RULES) {
                local_options_with(&cli, Path::new(BUSINESS_CENTRAL_RULES))?
            } else {
                local_options(&cli)?
            };
            options.business_central = Some(BusinessCentralSandboxConfig::default());
            demo_business_central::run(options).await
        }
        Command::Demo {
            pair: Pair::ShopifyGeneric,
            connector_file,
            ..
        } => {
            let text = std::fs::read_to_string(connector_file)
                .with_context(|| format!("cannot read connector file {}", connector_file.display()))?;
            let connector = fieldsync_core::ConnectorFile::parse(&connector_file.display().to_string(), &text)?;
            let options = LocalOptions {
                erp_connector: Some(std::sync::Arc::new(connector)),
                ..local_options(&cli)?
            };
            demo_generic::run(options).await
        }
        Command::Demo {
            pair: pair @ (Pair::BigCommerceNetSuite | Pair::WooCommerceNetSuite),
            ..
        } => demo_netsuite::run(netsuite_options(&cli, *pair)?).await,
        Command::Dev { port, pair } => {
            let options = match pair {
                Pair::ShopifyErp => local_options(&cli)?,
                Pair::ShopifyBusinessCentral => {
                    let mut options = if cli.rules == Path::new(DEFAULT_RULES) {
                        local_options_with(&cli, Path::new(BUSINESS_CENTRAL_RULES))?
                    } else {
                        local_options(&cli)?
                    };
                    options.business_central = Some(BusinessCentralSandboxConfig::default());
                    options
                }
                Pair::BigCommerceNetSuite | Pair::WooCommerceNetSuite => netsuite_options(&cli, *pair)?,
                Pair::ShopifyGeneric => anyhow::bail!(
                    "dev runs --pair shopify-erp, shopify-businesscentral, bigcommerce-netsuite or woocommerce-netsuite"
                ),
            };
            dev(LocalOptions {
                receiver_port: *port,
                ..options
            })
            .await
        }
    }
}

/// Options for a NetSuite pair: its storefront sandbox, the NetSuite sandbox, and the rules.
fn netsuite_options(cli: &Cli, pair: Pair) -> anyhow::Result<LocalOptions> {
    let storefront_platform = match pair {
        Pair::BigCommerceNetSuite => StorefrontPlatform::BigCommerce(Default::default()),
        Pair::WooCommerceNetSuite => StorefrontPlatform::WooCommerce(Default::default()),
        other => anyhow::bail!("{other:?} is not a NetSuite pair"),
    };
    // Several workers with small batches play concurrent reconciler instances, so NetSuite
    // writes overlap and the shared concurrency governor has something to hold back.
    Ok(LocalOptions {
        storefront_platform,
        netsuite: Some(Default::default()),
        workers: NETSUITE_PAIR_WORKERS,
        batch_size: 2,
        ..local_options(cli)?
    })
}

/// Reads the rules file and picks the backend for `demo` and `dev`.
fn local_options(cli: &Cli) -> anyhow::Result<LocalOptions> {
    local_options_with(cli, &cli.rules)
}

fn local_options_with(cli: &Cli, rules_file: &Path) -> anyhow::Result<LocalOptions> {
    let text = std::fs::read_to_string(rules_file)
        .with_context(|| format!("cannot read rules file {}", rules_file.display()))?;
    let rules = Rules::parse(&rules_file.display().to_string(), &text)?;
    let backend = match cli.backend {
        BackendKind::Embedded => Backend::Embedded,
        BackendKind::Emulators => Backend::Emulators {
            dynamodb_endpoint: cli.dynamodb_endpoint.clone(),
            sqs_endpoint: cli.sqs_endpoint.clone(),
        },
    };
    Ok(LocalOptions {
        backend,
        ..LocalOptions::new(rules)
    })
}

/// Prints the address and webhook secret of the sandbox behind each receiver.
fn print_sandboxes(stack: &LocalStack) {
    let state = "state: GET /_sandbox/state";
    match (&stack.bigcommerce, &stack.woocommerce) {
        (Some(shop), _) => {
            // The API base ends in /stores/<hash>; the sandbox state is served at the root.
            let api = shop.base_url();
            let root = api.split("/stores/").next().unwrap_or(&api).to_owned();
            println!("  BigCommerce sandbox: {api} (state: GET {root}/_sandbox/state)");
            println!(
                "  BigCommerce client secret: {}",
                fieldsync_local::BIGCOMMERCE_CLIENT_SECRET
            );
        }
        (_, Some(shop)) => {
            println!("  WooCommerce sandbox: {} ({state})", shop.base_url());
            println!(
                "  WooCommerce webhook secret: {}",
                fieldsync_local::WOOCOMMERCE_WEBHOOK_SECRET
            );
        }
        (None, None) => {
            println!("  storefront sandbox:  {} ({state})", stack.storefront.base_url());
            println!(
                "  storefront webhook secret: {}",
                fieldsync_local::STOREFRONT_WEBHOOK_SECRET
            );
        }
    }
    match (&stack.business_central, &stack.netsuite) {
        (Some(business_central), _) => {
            println!(
                "  Business Central sandbox: {} (company {}, {state})",
                business_central.base_url(),
                business_central.company_id()
            );
            println!(
                "  Business Central clientState: {} (the erp receiver takes its notifications)",
                fieldsync_local::BUSINESS_CENTRAL_CLIENT_STATE
            );
        }
        (_, Some(netsuite)) => {
            println!("  NetSuite sandbox:    {} ({state})", netsuite.base_url());
            println!(
                "  NetSuite outbox secret:    {}",
                fieldsync_local::NETSUITE_WEBHOOK_SECRET
            );
        }
        (None, None) => {
            println!("  ERP sandbox:         {} ({state})", stack.erp.base_url());
            println!("  ERP webhook secret:        {}", fieldsync_local::ERP_WEBHOOK_SECRET);
        }
    }
}

async fn dev(options: LocalOptions) -> anyhow::Result<ExitCode> {
    let stack = LocalStack::start(options).await?;
    println!("fieldsync dev stack running (Ctrl-C to stop)");
    println!("  storefront webhooks: POST {}", stack.receivers.url("storefront"));
    println!("  ERP webhooks:        POST {}", stack.receivers.url("erp"));
    print_sandboxes(&stack);
    tokio::signal::ctrl_c().await.context("cannot wait for Ctrl-C")?;
    stack.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
