//! Concurrency test of the DynamoDB governor: separate clients, as separate reconciler
//! instances would be, share one table's slots and never exceed the limit together.
//!
//! The test reads its endpoint from the environment that `infra/emulators.sh env` prints, as
//! `contract.rs` does:
//!
//! ```text
//! infra/emulators.sh start
//! eval "$(infra/emulators.sh env)"
//! cargo test -p fieldsync-aws --test governor -- --nocapture
//! ```
//!
//! Without `FIELDSYNC_DYNAMODB_ENDPOINT` the test fails, unless `FIELDSYNC_SKIP_EMULATORS=1` is
//! set, in which case it prints a note and passes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fieldsync_aws::{local_clients, DynamoGovernor, DynamoStore};
use fieldsync_core::ports::ConcurrencyGovernor;

const SKIP_VARIABLE: &str = "FIELDSYNC_SKIP_EMULATORS";
const ENDPOINT_VARIABLE: &str = "FIELDSYNC_DYNAMODB_ENDPOINT";

const TASKS: usize = 24;
const LIMIT: u32 = 5;
const SCOPE: &str = "netsuite:TSTDRV1234567";

/// Returns the DynamoDB Local endpoint, `None` when emulator tests are skipped, and panics when
/// it is not set and skipping was not requested.
fn endpoint() -> Option<String> {
    if let Some(endpoint) = std::env::var(ENDPOINT_VARIABLE).ok().filter(|value| !value.is_empty()) {
        let host = endpoint
            .strip_prefix("http://")
            .and_then(|rest| rest.split([':', '/']).next());
        assert!(
            matches!(host, Some("127.0.0.1" | "localhost")),
            "{endpoint} is not an emulator on 127.0.0.1; the governor test only runs against local emulators"
        );
        return Some(endpoint);
    }
    if std::env::var(SKIP_VARIABLE).is_ok_and(|value| value == "1") {
        eprintln!("skipped: {ENDPOINT_VARIABLE} is not set and {SKIP_VARIABLE}=1");
        return None;
    }
    panic!(
        "{ENDPOINT_VARIABLE} is not set: run `infra/emulators.sh start` and `eval \"$(infra/emulators.sh env)\"`, \
         or set {SKIP_VARIABLE}=1 to skip the emulator tests"
    );
}

/// Builds a governor with its own SDK client, as each reconciler instance has.
fn governor(endpoint: &str, table: &str) -> DynamoGovernor {
    let (dynamodb, _) = local_clients(endpoint, endpoint);
    DynamoGovernor::new(dynamodb, table)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn separate_clients_never_exceed_the_limit() {
    let Some(endpoint) = endpoint() else { return };
    let table = format!("fieldsync-governor-{:016x}", rand::random::<u64>());
    let (dynamodb, _) = local_clients(&endpoint, &endpoint);
    DynamoStore::new(dynamodb, table.as_str())
        .create_table()
        .await
        .expect("creating the test table failed");

    let in_flight = Arc::new(AtomicUsize::new(0));
    let max_in_flight = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for task in 0..TASKS {
        let governor = governor(&endpoint, &table);
        let (in_flight, max_in_flight, finished) = (in_flight.clone(), max_in_flight.clone(), finished.clone());
        tasks.push(tokio::spawn(async move {
            let holder = format!("reconciler-{task}");
            let mut backoff = Duration::from_millis(5);
            let permit = loop {
                if let Some(permit) = governor
                    .acquire(SCOPE, LIMIT, &holder, Duration::from_secs(30))
                    .await
                    .unwrap()
                {
                    break permit;
                }
                assert!(
                    started.elapsed() < Duration::from_secs(60),
                    "task {task} never got a slot"
                );
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(50));
            };
            let running = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
            max_in_flight.fetch_max(running, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            in_flight.fetch_sub(1, Ordering::SeqCst);
            governor.release(&permit).await.unwrap();
            finished.fetch_add(1, Ordering::SeqCst);
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }

    let max = max_in_flight.load(Ordering::SeqCst);
    println!(
        "DynamoDB Local governor: {TASKS} tasks, limit {LIMIT}, max {max} in flight, {:?} in total",
        started.elapsed()
    );
    assert_eq!(finished.load(Ordering::SeqCst), TASKS);
    assert!(max <= LIMIT as usize, "{max} permits were held at once, limit {LIMIT}");
    assert!(
        max >= 2,
        "the tasks never overlapped, so the test proves nothing: max {max}"
    );

    // Every slot was released, so the whole limit is free again.
    let check = governor(&endpoint, &table);
    let mut permits = Vec::new();
    for slot in 0..LIMIT {
        let permit = check
            .acquire(SCOPE, LIMIT, "check", Duration::from_secs(30))
            .await
            .unwrap();
        permits.push(permit.unwrap_or_else(|| panic!("slot {slot} of {LIMIT} was still held")));
    }
    assert_eq!(
        check
            .acquire(SCOPE, LIMIT, "check", Duration::from_secs(30))
            .await
            .unwrap(),
        None
    );
}

#[tokio::test]
async fn crashed_holder_frees_its_slot_after_the_lease() {
    let Some(endpoint) = endpoint() else { return };
    let table = format!("fieldsync-governor-{:016x}", rand::random::<u64>());
    let (dynamodb, _) = local_clients(&endpoint, &endpoint);
    let store = DynamoStore::new(dynamodb, table.as_str());
    store.create_table().await.expect("creating the test table failed");

    // A reconciler that stops while holding every slot never releases them.
    let crashed = store.governor();
    for _ in 0..LIMIT {
        let permit = crashed
            .acquire(SCOPE, LIMIT, "crashed", Duration::from_millis(300))
            .await
            .unwrap();
        assert!(permit.is_some());
    }
    let survivor = governor(&endpoint, &table);
    let blocked = survivor
        .acquire(SCOPE, LIMIT, "survivor", Duration::from_secs(30))
        .await
        .unwrap();
    assert_eq!(blocked, None, "a slot was granted while every lease was alive");

    tokio::time::sleep(Duration::from_millis(500)).await;
    let acquired = survivor
        .acquire(SCOPE, LIMIT, "survivor", Duration::from_secs(30))
        .await
        .unwrap();
    let acquired = acquired.expect("no slot came free after the leases ended");
    assert_eq!(acquired.holder, "survivor");
}
