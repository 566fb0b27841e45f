//! The `fieldsync` binary, run as a user runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::{Command, Output};
use std::time::Duration;

use fieldsync_aws::{DynamoStore, SqsQueue};
use fieldsync_core::ports::{OutgoingMessage, Queue, RecordStore};
use fieldsync_core::{Record, RecordKey, SystemId, Task};

const SKIP_VARIABLE: &str = "FIELDSYNC_SKIP_EMULATORS";

fn fieldsync(args: &[&str], env: &[(&str, &str)]) -> Output {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let mut command = Command::new(env!("CARGO_BIN_EXE_fieldsync"));
    command
        .current_dir(root)
        .args(args)
        .env("AWS_EC2_METADATA_DISABLED", "true");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

/// Returns an emulator endpoint from the environment, or `None` when emulator tests are skipped.
fn endpoint(variable: &str) -> Option<String> {
    if std::env::var_os(SKIP_VARIABLE).is_some() {
        eprintln!("skipped: {SKIP_VARIABLE} is set");
        return None;
    }
    let value = std::env::var(variable)
        .unwrap_or_else(|_| panic!("{variable} is not set: run `infra/emulators.sh start` and `eval \"$(infra/emulators.sh env)\"`, or set {SKIP_VARIABLE}=1"));
    assert!(
        value.starts_with("http://127.0.0.1:"),
        "{variable} must point at 127.0.0.1, found {value}"
    );
    Some(value)
}

fn assert_demo_passed(output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for step in ["Step a.", "Step b.", "Step c.", "Step d.", "Step e."] {
        assert!(stdout.contains(step), "missing {step} in:\n{stdout}");
    }
    assert!(stdout.contains("demo passed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn demo_passes_on_embedded_backend() {
    assert_demo_passed(&fieldsync(&["demo"], &[]));
}

#[test]
fn demo_passes_with_generic_erpnext() {
    assert_demo_passed(&fieldsync(&["demo", "--pair", "shopify-generic"], &[]));
}

#[test]
fn demo_passes_with_business_central() {
    let output = fieldsync(&["demo", "--pair", "shopify-businesscentral"], &[]);
    assert_demo_passed(&output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("ok   storefront price after the catch-up"), "{stdout}");
    assert!(
        stdout.contains("ok   sales order lines = \"MUG-RED x2 at 15.50\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok   storefront order status = \"fulfilled\""),
        "{stdout}"
    );
}

/// Checks a NetSuite pair's demo: every step, and the concurrency line of step f.
fn assert_netsuite_demo_passed(output: &Output) {
    assert_demo_passed(output);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains("Step f."), "{stdout}");
    assert!(
        stdout.contains("ok   requests NetSuite rejected for concurrency = \"0\""),
        "{stdout}"
    );
    assert!(
        stdout.contains("ok   open requests within the limit = \"true\""),
        "{stdout}"
    );
}

#[test]
fn demo_passes_with_bigcommerce_netsuite() {
    assert_netsuite_demo_passed(&fieldsync(&["demo", "--pair", "bigcommerce-netsuite"], &[]));
}

#[test]
fn demo_passes_with_woocommerce_netsuite() {
    assert_netsuite_demo_passed(&fieldsync(&["demo", "--pair", "woocommerce-netsuite"], &[]));
}

#[test]
fn demo_netsuite_passes_on_emulators() {
    let (Some(dynamodb), Some(sqs)) = (
        endpoint("FIELDSYNC_DYNAMODB_ENDPOINT"),
        endpoint("FIELDSYNC_SQS_ENDPOINT"),
    ) else {
        return;
    };
    let output = fieldsync(
        &["--backend", "emulators", "demo", "--pair", "woocommerce-netsuite"],
        &[
            ("FIELDSYNC_DYNAMODB_ENDPOINT", &dynamodb),
            ("FIELDSYNC_SQS_ENDPOINT", &sqs),
        ],
    );
    assert_netsuite_demo_passed(&output);
}

#[test]
fn demo_business_central_passes_on_emulators() {
    let (Some(dynamodb), Some(sqs)) = (
        endpoint("FIELDSYNC_DYNAMODB_ENDPOINT"),
        endpoint("FIELDSYNC_SQS_ENDPOINT"),
    ) else {
        return;
    };
    let output = fieldsync(
        &["--backend", "emulators", "demo", "--pair", "shopify-businesscentral"],
        &[
            ("FIELDSYNC_DYNAMODB_ENDPOINT", &dynamodb),
            ("FIELDSYNC_SQS_ENDPOINT", &sqs),
        ],
    );
    assert_demo_passed(&output);
}

#[test]
fn demo_generic_rejects_invalid_connector_file() {
    let path = std::env::temp_dir().join(format!("fieldsync-connector-{}.toml", std::process::id()));
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../connectors/erpnext.toml")).unwrap();
    std::fs::write(
        &path,
        shipped.replace("scheme = \"hmac-sha256\"", "scheme = \"hmac-md5\""),
    )
    .unwrap();
    let output = fieldsync(
        &[
            "demo",
            "--pair",
            "shopify-generic",
            "--connector-file",
            path.to_str().unwrap(),
        ],
        &[],
    );
    let _ = std::fs::remove_file(&path);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("unknown signature scheme \"hmac-md5\""), "{stderr}");
    assert!(stderr.contains(".toml:15:10: "), "{stderr}");
}

#[test]
fn demo_passes_on_emulators() {
    let (Some(dynamodb), Some(sqs)) = (
        endpoint("FIELDSYNC_DYNAMODB_ENDPOINT"),
        endpoint("FIELDSYNC_SQS_ENDPOINT"),
    ) else {
        return;
    };
    let output = fieldsync(
        &["--backend", "emulators", "demo"],
        &[
            ("FIELDSYNC_DYNAMODB_ENDPOINT", &dynamodb),
            ("FIELDSYNC_SQS_ENDPOINT", &sqs),
        ],
    );
    assert_demo_passed(&output);
}

fn assert_lifecycle_demo_passed(output: &Output) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "lifecycle demo failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for step in ["a", "b", "c", "d", "e", "f", "g", "h", "i"] {
        let heading = format!("Step {step}.");
        assert!(stdout.contains(&heading), "missing {heading} in:\n{stdout}");
    }
    assert!(stdout.contains("open task: price and approve quote Q-1001"), "{stdout}");
    assert!(stdout.contains("rejected_transition (storefront)"), "{stdout}");
    assert!(stdout.contains("regression (erp)"), "{stdout}");
    assert!(stdout.contains("demo passed"), "{stdout}");
    assert!(!stdout.contains("FAIL"), "{stdout}");
}

#[test]
fn lifecycle_demo_passes_on_embedded_backend() {
    assert_lifecycle_demo_passed(&fieldsync(&["demo", "--story", "order-lifecycle"], &[]));
}

#[test]
fn lifecycle_demo_passes_on_emulators() {
    let (Some(dynamodb), Some(sqs)) = (
        endpoint("FIELDSYNC_DYNAMODB_ENDPOINT"),
        endpoint("FIELDSYNC_SQS_ENDPOINT"),
    ) else {
        return;
    };
    let output = fieldsync(
        &["--backend", "emulators", "demo", "--story", "order-lifecycle"],
        &[
            ("FIELDSYNC_DYNAMODB_ENDPOINT", &dynamodb),
            ("FIELDSYNC_SQS_ENDPOINT", &sqs),
        ],
    );
    assert_lifecycle_demo_passed(&output);
}

/// A record saved with an open task in DynamoDB Local is listed by `fieldsync tasks`.
#[tokio::test]
async fn tasks_lists_open_tasks_on_dynamodb() {
    let Some(dynamodb_endpoint) = endpoint("FIELDSYNC_DYNAMODB_ENDPOINT") else {
        return;
    };
    let (dynamodb, _) = fieldsync_aws::local_clients(&dynamodb_endpoint, "http://127.0.0.1:9");
    let table = format!("fieldsync-tasks-test-{}", std::process::id());
    let store = DynamoStore::new(dynamodb, table.clone());
    store.create_table().await.unwrap();
    let mut quote = Record::new(RecordKey::new("demo", "quote", "7001"));
    quote.status = Some("requested".into());
    quote.tasks.push(Task {
        title: "price and approve quote Q-1001".into(),
        system: SystemId::new("erp"),
        from: "requested".into(),
        to: "approved".into(),
        opened_at: chrono::Utc::now(),
    });
    store.save(&quote).await.unwrap();

    let env = [
        ("AWS_ENDPOINT_URL_DYNAMODB", dynamodb_endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", fieldsync_aws::LOCAL_ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", fieldsync_aws::LOCAL_ACCESS_KEY),
        ("AWS_REGION", fieldsync_aws::LOCAL_REGION),
    ];
    let listed = fieldsync(&["tasks", "--table", &table], &env);
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(stdout.contains("1 open task(s) in integration demo"), "{stdout}");
    assert!(
        stdout.contains("price and approve quote Q-1001  in erp  record demo/quote/7001"),
        "{stdout}"
    );
}

#[test]
fn invalid_rules_file_names_position() {
    let dir = std::env::temp_dir().join(format!("fieldsync-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("rules.toml");
    std::fs::write(&path, "integration = \"demo\"\n[systems.erp]\nrole = \"ledger\"\n").unwrap();
    let output = fieldsync(&["--rules", path.to_str().unwrap(), "demo"], &[]);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("rules.toml:3:8: unknown role \"ledger\""), "{stderr}");
}

/// A message that failed its receives sits in the dead-letter queue; `dlq list` shows it and
/// `dlq redrive` puts it back on the changes queue.
#[tokio::test]
async fn dlq_list_and_redrive_on_moto() {
    let Some(sqs_endpoint) = endpoint("FIELDSYNC_SQS_ENDPOINT") else {
        return;
    };
    let (_, sqs) = fieldsync_aws::local_clients("http://127.0.0.1:9", &sqs_endpoint);
    let name = format!("fieldsync-dlq-test-{}", std::process::id());
    let queue = SqsQueue::create_fifo_pair(sqs, &name, 1, 1).await.unwrap();
    let message = OutgoingMessage {
        group_id: "demo/product/MUG-RED".into(),
        dedup_id: "d-1".into(),
        body: "{}".into(),
    };
    queue.send(&[message]).await.unwrap();
    let received = queue.receive(1).await.unwrap();
    queue.retry_later(&received[0].receipt, Duration::ZERO).await.unwrap();
    // The next receive finds the message over its receive count and moves it to the DLQ.
    assert!(queue.receive(1).await.unwrap().is_empty());

    let env = [
        ("AWS_ENDPOINT_URL_SQS", sqs_endpoint.as_str()),
        ("AWS_ACCESS_KEY_ID", fieldsync_aws::LOCAL_ACCESS_KEY),
        ("AWS_SECRET_ACCESS_KEY", fieldsync_aws::LOCAL_ACCESS_KEY),
        ("AWS_REGION", fieldsync_aws::LOCAL_REGION),
        ("FIELDSYNC_QUEUE_URL", queue.queue_url()),
        ("FIELDSYNC_DEAD_LETTER_QUEUE_URL", queue.dead_letter_url().unwrap()),
    ];
    let listed = fieldsync(&["dlq", "list"], &env);
    let stdout = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&listed.stderr)
    );
    assert!(stdout.contains("1 message(s) in the dead-letter queue"), "{stdout}");

    let redriven = fieldsync(&["dlq", "redrive"], &env);
    assert!(String::from_utf8_lossy(&redriven.stdout).contains("moved 1 message(s)"));
    let back = queue.receive(1).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].group_id, "demo/product/MUG-RED");
}

/// Registers against a Business Central sandbox whose notification URL is the local stack's
/// receiver, which responds to the handshake: a live subscription is renewed, and an expired one is
/// created again with a catch-up notice on the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhooks_register_renews_or_recreates_business_central() {
    let Some(sqs_endpoint) = endpoint("FIELDSYNC_SQS_ENDPOINT") else {
        return;
    };
    let (_, sqs) = fieldsync_aws::local_clients("http://127.0.0.1:9", &sqs_endpoint);
    let name = format!("fieldsync-webhooks-test-{}", std::process::id());
    let queue = SqsQueue::create_fifo_pair(sqs, &name, 5, 30).await.unwrap();

    let rules_file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/rules/shopify-businesscentral.toml"
    );
    let rules = fieldsync_core::Rules::parse(rules_file, &std::fs::read_to_string(rules_file).unwrap()).unwrap();
    let mut options = fieldsync_local::LocalOptions::new(rules);
    options.business_central = Some(fieldsync_sandbox::business_central::BusinessCentralConfig::default());
    let stack = fieldsync_local::LocalStack::start(options).await.unwrap();
    let bc = stack.business_central.as_ref().unwrap();

    let env: Vec<(String, String)> = [
        ("AWS_ENDPOINT_URL_SQS", sqs_endpoint.clone()),
        ("AWS_ACCESS_KEY_ID", fieldsync_aws::LOCAL_ACCESS_KEY.to_owned()),
        ("AWS_SECRET_ACCESS_KEY", fieldsync_aws::LOCAL_ACCESS_KEY.to_owned()),
        ("AWS_REGION", fieldsync_aws::LOCAL_REGION.to_owned()),
        ("FIELDSYNC_RULES_FILE", rules_file.to_owned()),
        ("FIELDSYNC_CONNECTIONS", "erp=business-central".to_owned()),
        ("FIELDSYNC_ERP_BASE_URL", bc.base_url()),
        (
            "FIELDSYNC_ERP_TOKEN",
            fieldsync_local::BUSINESS_CENTRAL_TOKEN.to_owned(),
        ),
        ("FIELDSYNC_ERP_COMPANY_ID", bc.company_id().to_owned()),
        ("FIELDSYNC_ERP_NOTIFICATION_URL", stack.receivers.url("erp")),
        (
            "FIELDSYNC_ERP_CLIENT_STATE",
            fieldsync_local::BUSINESS_CENTRAL_CLIENT_STATE.to_owned(),
        ),
        ("FIELDSYNC_QUEUE_URL", queue.queue_url().to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    let register = || {
        let env = env.clone();
        tokio::task::spawn_blocking(move || {
            let pairs: Vec<(&str, &str)> = env
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            fieldsync(&["webhooks", "register", "--integration", "demo"], &pairs)
        })
    };

    let renewed = register().await.unwrap();
    let stdout = String::from_utf8_lossy(&renewed.stdout);
    assert!(
        renewed.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&renewed.stderr)
    );
    // One subscription per collection the rules sync: items, customers and sales orders.
    for collection in ["items", "customers", "salesOrders"] {
        assert!(
            stdout.contains("erp: renewed Business Central subscription")
                && stdout.contains(&format!(" to {collection} ")),
            "{stdout}"
        );
    }
    assert_eq!(bc.subscriptions().len(), 3);

    for subscription in bc.subscriptions() {
        bc.expire_subscription(&subscription.subscription_id).unwrap();
    }
    let created = register().await.unwrap();
    let stdout = String::from_utf8_lossy(&created.stdout);
    assert!(
        created.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert!(
        stdout.contains("erp: created Business Central subscription"),
        "{stdout}"
    );
    assert_eq!(bc.subscriptions().len(), 3);
    let queued = queue.receive(10).await.unwrap();
    assert_eq!(queued.len(), 3, "one catch-up notice per collection");
    for message in &queued {
        assert!(message.body.contains("\"kind\":\"collection\""), "{}", message.body);
    }
    for entity in ["product", "customer", "order"] {
        assert!(
            queued
                .iter()
                .any(|message| message.body.contains(&format!("\"entity\":\"{entity}\""))),
            "no catch-up for {entity}"
        );
    }
    stack.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn webhooks_register_subscribes_shopify_topics() {
    let shop =
        fieldsync_sandbox::storefront::StorefrontSandbox::start(fieldsync_sandbox::storefront::StorefrontConfig {
            access_token: "shpat_cli_test_token".to_owned(),
            ..fieldsync_sandbox::storefront::StorefrontConfig::default()
        })
        .await
        .unwrap();
    let rules_file = concat!(env!("CARGO_MANIFEST_DIR"), "/../rules.toml");
    let address = "https://hooks.example.com/webhooks/demo/storefront";
    let env: Vec<(String, String)> = [
        ("FIELDSYNC_RULES_FILE", rules_file.to_owned()),
        ("FIELDSYNC_CONNECTIONS", "storefront=shopify".to_owned()),
        ("FIELDSYNC_STOREFRONT_BASE_URL", shop.base_url()),
        ("FIELDSYNC_STOREFRONT_TOKEN", "shpat_cli_test_token".to_owned()),
        ("FIELDSYNC_STOREFRONT_NOTIFICATION_URL", address.to_owned()),
    ]
    .into_iter()
    .map(|(name, value)| (name.to_owned(), value))
    .collect();
    let register = || {
        let env = env.clone();
        tokio::task::spawn_blocking(move || {
            let pairs: Vec<(&str, &str)> = env
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str()))
                .collect();
            fieldsync(&["webhooks", "register", "--integration", "demo"], &pairs)
        })
    };

    let first = register().await.unwrap();
    let stdout = String::from_utf8_lossy(&first.stdout);
    assert!(
        first.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&first.stderr)
    );
    assert!(
        stdout.contains("storefront: Shopify webhook subscription created INVENTORY_LEVELS_UPDATE"),
        "{stdout}"
    );
    let subscriptions = shop.webhook_subscriptions();
    assert_eq!(
        subscriptions.len(),
        fieldsync_core::formats::shopify::SUBSCRIBED_TOPICS.len()
    );
    assert!(subscriptions
        .iter()
        .all(|subscription| subscription.callback_url == address));

    let second = register().await.unwrap();
    let stdout = String::from_utf8_lossy(&second.stdout);
    assert!(second.status.success(), "{stdout}");
    assert!(!stdout.contains("created"), "{stdout}");
    assert!(stdout.contains("kept PRODUCTS_UPDATE"), "{stdout}");
    assert_eq!(shop.webhook_subscriptions(), subscriptions);
    shop.shutdown().await;
}
