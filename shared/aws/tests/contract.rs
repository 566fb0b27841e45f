//! Contract tests: the same store, queue and concurrency governor checks run against the
//! embedded implementations, DynamoDB Local, moto's DynamoDB and moto's SQS.
//!
//! The emulator tests read their endpoints from the environment that `infra/emulators.sh env`
//! prints. Run them with:
//!
//! ```text
//! infra/emulators.sh start
//! eval "$(infra/emulators.sh env)"
//! cargo test -p fieldsync-aws
//! ```
//!
//! Without an endpoint variable the emulator tests fail, unless `FIELDSYNC_SKIP_EMULATORS=1`
//! is set, in which case they print a note and pass. Every test creates its own table or queue
//! pair with a random suffix, so tests run in parallel and against emulators shared with others.

// The checks are helpers outside `#[test]` functions, where clippy's `allow-unwrap-in-tests`
// does not reach. A failed unwrap there fails the test that called it, as intended.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use fieldsync_core::ports::{ConcurrencyGovernor, OutgoingMessage, Queue, RecordStore};

/// Visibility timeout of every test queue. Receives that find nothing wait up to 1 s (the
/// adapter's long poll), so the timeout must be longer than that for a message to stay hidden
/// across one empty receive.
const VISIBILITY_TIMEOUT: Duration = Duration::from_secs(2);

/// Receives after which a test queue moves a message to its dead-letter queue.
const MAX_RECEIVE_COUNT: u32 = 2;

mod checks {
    //! The contract, written once against the ports.

    use chrono::{DateTime, Utc};
    use fieldsync_core::ports::{Queue, ReceivedMessage, RecordStore};
    use fieldsync_core::{
        Decision, EntityType, FieldName, FieldState, FieldValue, OpenTask, Outcome, Record, RecordKey, SystemId, Task,
    };

    use super::*;

    fn product(key: &str) -> Record {
        let mut record = Record::new(RecordKey::new("contract", "product", key));
        let price = FieldState {
            value: Some(FieldValue::Quantity(1250)),
            ..FieldState::default()
        };
        record.fields.insert(FieldName::new("price"), price);
        record
    }

    fn decision(record: &RecordKey, field: &str, decided_at: DateTime<Utc>, event_id: &str) -> Decision {
        Decision {
            record: record.clone(),
            field: FieldName::new(field),
            source: SystemId::new("erp"),
            event_id: event_id.to_owned(),
            event_at: decided_at,
            decided_at,
            value: Some(FieldValue::Text(format!("{field} from {event_id}"))),
            outcome: Outcome::Apply,
            targets: vec![SystemId::new("storefront")],
            reason: "erp owns this field".to_owned(),
        }
    }

    fn message(group: &str, dedup: &str, body: &str) -> OutgoingMessage {
        OutgoingMessage {
            group_id: group.to_owned(),
            dedup_id: dedup.to_owned(),
            body: body.to_owned(),
        }
    }

    fn bodies(messages: &[ReceivedMessage]) -> Vec<&str> {
        messages.iter().map(|message| message.body.as_str()).collect()
    }

    /// Receives until `expected` messages arrived or 10 receives found nothing, deleting each.
    async fn receive_and_delete(queue: &dyn Queue, expected: usize) -> Vec<ReceivedMessage> {
        let mut received = Vec::new();
        let mut empty_receives = 0;
        while received.len() < expected && empty_receives < 10 {
            let batch = queue.receive(10).await.unwrap();
            if batch.is_empty() {
                empty_receives += 1;
            }
            for message in batch {
                queue.delete(&message.receipt).await.unwrap();
                received.push(message);
            }
        }
        received
    }

    pub(crate) async fn save_conflicts_on_stale_revision(store: &dyn RecordStore) {
        let record = product("MUG-RED");
        assert_eq!(store.load(&record.key).await.unwrap(), None);

        assert_eq!(store.save(&record).await.unwrap(), 1);
        let second_create = store.save(&record).await.unwrap_err();
        assert!(
            second_create.is_conflict(),
            "expected a conflict, got {second_create:?}"
        );

        let mut loaded = store.load(&record.key).await.unwrap().expect("saved record is missing");
        assert_eq!(loaded.revision, 1);
        assert_eq!(loaded.fields, record.fields);

        loaded.status = Some("active".to_owned());
        assert_eq!(store.save(&loaded).await.unwrap(), 2);
        let stale = store.save(&loaded).await.unwrap_err();
        assert!(stale.is_conflict(), "expected a conflict, got {stale:?}");

        let reloaded = store.load(&record.key).await.unwrap().expect("saved record is missing");
        assert_eq!(reloaded.revision, 2);
        assert_eq!(reloaded.status.as_deref(), Some("active"));
    }

    pub(crate) async fn decisions_round_trip_in_order(store: &dyn RecordStore) {
        let key = RecordKey::new("contract", "product", "MUG-BLUE");
        let other = RecordKey::new("contract", "product", "MUG-GREEN");
        // Decision log items expire 30 days after `decided_at`, and DynamoDB Local deletes
        // expired items, so the entries are dated now.
        let first_instant = Utc::now();
        let later = first_instant + chrono::Duration::nanoseconds(1_500);

        // Two decisions of one instant, in an order that differs from their field names' order.
        let first_batch = vec![
            decision(&key, "title", first_instant, "e1"),
            decision(&other, "title", first_instant, "e1"),
            decision(&key, "price", first_instant, "e1"),
        ];
        store.append_decisions(&first_batch).await.unwrap();
        store
            .append_decisions(&[decision(&key, "price", later, "e2")])
            .await
            .unwrap();
        store.append_decisions(&[]).await.unwrap();

        let expected = vec![
            first_batch[0].clone(),
            first_batch[2].clone(),
            decision(&key, "price", later, "e2"),
        ];
        assert_eq!(store.decisions(&key).await.unwrap(), expected);
        assert_eq!(store.decisions(&other).await.unwrap(), vec![first_batch[1].clone()]);
        let unknown = RecordKey::new("contract", "product", "NO-SUCH-MUG");
        assert!(store.decisions(&unknown).await.unwrap().is_empty());
    }

    pub(crate) async fn decisions_append_beyond_one_batch(store: &dyn RecordStore) {
        let key = RecordKey::new("contract", "product", "MUG-MANY");
        let start = Utc::now();
        let appended: Vec<Decision> = (0..60)
            .map(|index| {
                decision(
                    &key,
                    &format!("field{index}"),
                    start + chrono::Duration::seconds(index / 7),
                    "e1",
                )
            })
            .collect();
        store.append_decisions(&appended).await.unwrap();
        assert_eq!(store.decisions(&key).await.unwrap(), appended);
    }

    /// Checks that a delivery mark reads as applied until its TTL passes, and only for its own id.
    pub(crate) async fn delivery_mark_expires(store: &dyn RecordStore) {
        let id = format!("delivery-{}", std::process::id());
        assert!(!store.was_delivered(&id).await.unwrap());
        store.mark_delivered(&id, Duration::from_secs(3600)).await.unwrap();
        assert!(store.was_delivered(&id).await.unwrap());
        assert!(!store.was_delivered(&format!("{id}-other")).await.unwrap());

        let short = format!("{id}-short");
        store.mark_delivered(&short, Duration::from_secs(1)).await.unwrap();
        assert!(store.was_delivered(&short).await.unwrap());
        tokio::time::sleep(Duration::from_millis(2100)).await;
        assert!(
            !store.was_delivered(&short).await.unwrap(),
            "an expired mark must read as absent"
        );
    }

    pub(crate) async fn external_id_finds_record(store: &dyn RecordStore) {
        let mut record = product("MUG-YELLOW");
        record.ids.insert(SystemId::new("erp"), "ITEM-0042".to_owned());
        record
            .ids
            .insert(SystemId::new("storefront"), "gid://shop/Product/42#1".to_owned());
        store.save(&record).await.unwrap();

        let product_entity = EntityType::new("product");
        for (system, external_id) in &record.ids {
            let found = store
                .find_by_external_id("contract", system, &product_entity, external_id)
                .await
                .unwrap();
            assert_eq!(found.as_ref(), Some(&record.key), "lookup of {system} id {external_id}");
        }
        let erp = SystemId::new("erp");
        let unknown_id = store
            .find_by_external_id("contract", &erp, &product_entity, "ITEM-0043")
            .await
            .unwrap();
        assert_eq!(unknown_id, None);
        let other_entity = store
            .find_by_external_id("contract", &erp, &EntityType::new("order"), "ITEM-0042")
            .await
            .unwrap();
        assert_eq!(other_entity, None);
        let other_integration = store
            .find_by_external_id("other", &erp, &product_entity, "ITEM-0042")
            .await
            .unwrap();
        assert_eq!(other_integration, None);

        // A changed id gets its cross-reference on the next save, as a reloaded record has it.
        let mut reloaded = store.load(&record.key).await.unwrap().unwrap();
        reloaded.ids.insert(erp.clone(), "ITEM-0044".to_owned());
        store.save(&reloaded).await.unwrap();
        let changed = store
            .find_by_external_id("contract", &erp, &product_entity, "ITEM-0044")
            .await
            .unwrap();
        assert_eq!(changed.as_ref(), Some(&record.key));
    }

    /// Checks that the task list follows the stored records: a save that opens a task lists it, a
    /// lost race lists nothing new, and a save that closes it removes it. The waiting list of a
    /// record, which releases parked writes, round-trips with the record.
    pub(crate) async fn task_list_follows_records(store: &dyn RecordStore) {
        let integration = format!("tasks-{}", std::process::id());
        let mut quote = Record::new(RecordKey::new(integration.as_str(), "quote", "7001"));
        let task = Task {
            title: "price and approve quote Q-1001".to_owned(),
            system: SystemId::new("erp"),
            from: "requested".to_owned(),
            to: "approved".to_owned(),
            opened_at: Utc::now(),
        };
        quote.tasks.push(task.clone());
        quote
            .waiting
            .push(RecordKey::new(integration.as_str(), "order", "5001"));
        assert!(store.open_tasks(&integration).await.unwrap().is_empty());
        store.save(&quote).await.unwrap();

        let listed = store.open_tasks(&integration).await.unwrap();
        let expected = vec![OpenTask {
            record: quote.key.clone(),
            task: task.clone(),
        }];
        assert_eq!(listed, expected);
        assert!(store.open_tasks("other").await.unwrap().is_empty());
        let mut loaded = store.load(&quote.key).await.unwrap().unwrap();
        assert_eq!(loaded.waiting, quote.waiting);
        assert_eq!(loaded.indexed_tasks, loaded.tasks);

        // A save that loses its race changes neither the record nor the task list.
        let mut stale = quote.clone();
        stale.tasks.clear();
        assert!(store.save(&stale).await.unwrap_err().is_conflict());
        assert_eq!(store.open_tasks(&integration).await.unwrap(), expected);

        loaded.tasks.clear();
        store.save(&loaded).await.unwrap();
        assert!(store.open_tasks(&integration).await.unwrap().is_empty());
    }

    pub(crate) async fn governor_limits_held_slots(governor: &dyn ConcurrencyGovernor) {
        let lease = Duration::from_secs(60);
        let first = governor.acquire("contract:limit", 2, "holder-a", lease).await.unwrap();
        let second = governor.acquire("contract:limit", 2, "holder-b", lease).await.unwrap();
        let first = first.expect("first slot was not granted");
        let second = second.expect("second slot was not granted");
        assert_ne!(first.slot, second.slot);
        let third = governor.acquire("contract:limit", 2, "holder-c", lease).await.unwrap();
        assert_eq!(third, None, "a third slot was granted beyond the limit of 2");
        let other_scope = governor.acquire("contract:other", 2, "holder-c", lease).await.unwrap();
        assert!(other_scope.is_some(), "scopes share slots");

        governor.release(&first).await.unwrap();
        let after_release = governor.acquire("contract:limit", 2, "holder-c", lease).await.unwrap();
        assert_eq!(after_release.map(|permit| permit.slot), Some(first.slot));
    }

    pub(crate) async fn governor_takes_over_expired_lease(governor: &dyn ConcurrencyGovernor) {
        let short = Duration::from_millis(200);
        let stale = governor.acquire("contract:lease", 1, "stopped", short).await.unwrap();
        let stale = stale.expect("the slot was not granted");
        let blocked = governor
            .acquire("contract:lease", 1, "waiting", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(blocked, None, "a held lease was taken over");

        tokio::time::sleep(Duration::from_millis(400)).await;
        let acquired = governor
            .acquire("contract:lease", 1, "waiting", Duration::from_secs(60))
            .await
            .unwrap();
        assert!(acquired.is_some(), "the expired lease was not taken over");

        // The stopped holder's late release must not free the new holder's slot.
        governor.release(&stale).await.unwrap();
        let third = governor
            .acquire("contract:lease", 1, "third", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(third, None, "a stale release freed another holder's slot");
    }

    pub(crate) async fn dedup_drops_repeated_id(queue: &dyn Queue) {
        queue
            .send(&[message("g1", "d1", "first"), message("g1", "d1", "repeat in batch")])
            .await
            .unwrap();
        queue
            .send(&[message("g1", "d1", "repeat in later send")])
            .await
            .unwrap();
        queue.send(&[]).await.unwrap();

        let received = receive_and_delete(queue, 2).await;
        assert_eq!(bodies(&received), ["first"]);
    }

    /// Sends ten 30 KB changes, such as the variants of a product with a long description, which
    /// are more than one SQS batch may carry, and checks that all arrive in order.
    pub(crate) async fn large_messages_all_arrive(queue: &dyn Queue) {
        let sent: Vec<OutgoingMessage> = (0..10)
            .map(|index| message("g1", &format!("d{index}"), &format!("{index:02}{}", "x".repeat(30_000))))
            .collect();
        queue.send(&sent).await.unwrap();

        let received = receive_and_delete(queue, sent.len()).await;
        let expected: Vec<&str> = sent.iter().map(|message| message.body.as_str()).collect();
        assert_eq!(bodies(&received), expected);
    }

    pub(crate) async fn group_delivers_in_order(queue: &dyn Queue) {
        let sent: Vec<OutgoingMessage> = (0..12)
            .map(|index| message("g1", &format!("d{index}"), &format!("m{index}")))
            .collect();
        queue.send(&sent).await.unwrap();

        let received = receive_and_delete(queue, sent.len()).await;
        let expected: Vec<&str> = sent.iter().map(|message| message.body.as_str()).collect();
        assert_eq!(bodies(&received), expected);
    }

    pub(crate) async fn group_blocks_while_in_flight(queue: &dyn Queue) {
        queue
            .send(&[message("g1", "d1", "a"), message("g1", "d2", "b")])
            .await
            .unwrap();
        let first = queue.receive(1).await.unwrap();
        assert_eq!(bodies(&first), ["a"]);

        queue.send(&[message("g2", "d3", "c")]).await.unwrap();
        let while_in_flight = queue.receive(10).await.unwrap();
        assert_eq!(bodies(&while_in_flight), ["c"]);
        queue.delete(&while_in_flight[0].receipt).await.unwrap();

        queue.delete(&first[0].receipt).await.unwrap();
        let after_delete = queue.receive(10).await.unwrap();
        assert_eq!(bodies(&after_delete), ["b"]);
    }

    pub(crate) async fn visibility_timeout_redelivers(queue: &dyn Queue) {
        queue.send(&[message("g1", "d1", "a")]).await.unwrap();
        let first = queue.receive(1).await.unwrap();
        assert_eq!(first.len(), 1);
        assert_eq!(first[0].receive_count, 1);
        assert_eq!(first[0].group_id, "g1");
        assert!(
            queue.receive(1).await.unwrap().is_empty(),
            "message was delivered while in flight"
        );

        tokio::time::sleep(VISIBILITY_TIMEOUT + Duration::from_millis(200)).await;
        let again = queue.receive(1).await.unwrap();
        assert_eq!(
            again.len(),
            1,
            "message was not delivered again after its visibility timeout"
        );
        assert_eq!(again[0].message_id, first[0].message_id);
        assert_eq!(again[0].receive_count, 2);
        assert_eq!(again[0].body, "a");
    }

    pub(crate) async fn dead_letter_after_max_receives_and_redrive(queue: &dyn Queue) {
        queue.send(&[message("g1", "d1", "poison")]).await.unwrap();
        for expected_count in 1..=MAX_RECEIVE_COUNT {
            let received = queue.receive(1).await.unwrap();
            assert_eq!(received.len(), 1, "receive {expected_count} returned nothing");
            assert_eq!(received[0].receive_count, expected_count);
            queue.retry_later(&received[0].receipt, Duration::ZERO).await.unwrap();
        }
        assert!(
            queue.receive(1).await.unwrap().is_empty(),
            "message was delivered beyond maxReceiveCount"
        );

        let dead = queue.dead_letters().await.unwrap();
        assert_eq!(bodies(&dead), ["poison"]);
        assert_eq!(dead[0].group_id, "g1");
        assert_eq!(
            queue.dead_letters().await.unwrap().len(),
            1,
            "listing dead letters removed them"
        );

        assert_eq!(queue.redrive().await.unwrap(), 1);
        assert!(queue.dead_letters().await.unwrap().is_empty());
        let redriven = queue.receive(1).await.unwrap();
        assert_eq!(bodies(&redriven), ["poison"]);
        assert_eq!(redriven[0].group_id, "g1");
        assert_eq!(redriven[0].receive_count, 1);
        queue.delete(&redriven[0].receipt).await.unwrap();
        assert_eq!(queue.redrive().await.unwrap(), 0);
    }
}

mod backends {
    //! Builds a fresh store or queue per test on each backend.

    use fieldsync_aws::{local_clients, DynamoGovernor, DynamoStore, SqsQueue};
    use fieldsync_embedded::{EmbeddedGovernor, EmbeddedQueue, EmbeddedStore, QueueSettings};

    use super::*;

    const SKIP_VARIABLE: &str = "FIELDSYNC_SKIP_EMULATORS";

    /// Returns the first endpoint set among `variables`, `None` when emulator tests are skipped,
    /// and panics when none is set and skipping was not requested.
    fn endpoint(variables: &[&str]) -> Option<String> {
        let found = variables
            .iter()
            .find_map(|name| std::env::var(name).ok().filter(|value| !value.is_empty()));
        if let Some(endpoint) = found {
            // The tests create and fill tables and queues, so they only ever talk to a local emulator.
            let host = endpoint
                .strip_prefix("http://")
                .and_then(|rest| rest.split([':', '/']).next());
            assert!(
                matches!(host, Some("127.0.0.1" | "localhost")),
                "{endpoint} is not an emulator on 127.0.0.1; the contract tests only run against local emulators"
            );
            return Some(endpoint);
        }
        if std::env::var(SKIP_VARIABLE).is_ok_and(|value| value == "1") {
            eprintln!("skipped: {} is not set and {SKIP_VARIABLE}=1", variables.join(" or "));
            return None;
        }
        panic!(
            "{} is not set: run `infra/emulators.sh start` and `eval \"$(infra/emulators.sh env)\"`, \
             or set {SKIP_VARIABLE}=1 to skip the emulator tests",
            variables.join(" or ")
        );
    }

    fn unique_name(prefix: &str) -> String {
        format!("fieldsync-contract-{prefix}-{:016x}", rand::random::<u64>())
    }

    async fn dynamo_store(variables: &[&str]) -> Option<(DynamoStore, aws_sdk_dynamodb::Client)> {
        let endpoint = endpoint(variables)?;
        let (dynamodb, _) = local_clients(&endpoint, &endpoint);
        let store = DynamoStore::new(dynamodb.clone(), unique_name("table"));
        store.create_table().await.expect("creating the test table failed");
        Some((store, dynamodb))
    }

    async fn sqs_queue(variables: &[&str]) -> Option<SqsQueue> {
        let endpoint = endpoint(variables)?;
        let (_, sqs) = local_clients(&endpoint, &endpoint);
        let queue = SqsQueue::create_fifo_pair(sqs, &unique_name("queue"), MAX_RECEIVE_COUNT, 2)
            .await
            .expect("creating the test queues failed");
        Some(queue)
    }

    pub(crate) async fn embedded_store() -> Option<EmbeddedStore> {
        Some(EmbeddedStore::new())
    }

    pub(crate) async fn embedded_governor() -> Option<EmbeddedGovernor> {
        Some(EmbeddedGovernor::new())
    }

    async fn dynamo_governor(variables: &[&str]) -> Option<DynamoGovernor> {
        let (store, client) = dynamo_store(variables).await?;
        Some(DynamoGovernor::new(client, store.table()))
    }

    pub(crate) async fn dynamodb_local_governor() -> Option<DynamoGovernor> {
        dynamo_governor(DYNAMODB_LOCAL_VARIABLES).await
    }

    pub(crate) async fn moto_dynamodb_governor() -> Option<DynamoGovernor> {
        dynamo_governor(MOTO_DYNAMODB_VARIABLES).await
    }

    pub(crate) async fn embedded_queue() -> Option<EmbeddedQueue> {
        let settings = QueueSettings {
            visibility_timeout: VISIBILITY_TIMEOUT,
            dedup_window: Duration::from_secs(300),
            max_receive_count: MAX_RECEIVE_COUNT,
        };
        Some(EmbeddedQueue::new(settings))
    }

    const DYNAMODB_LOCAL_VARIABLES: &[&str] = &["FIELDSYNC_DYNAMODB_ENDPOINT"];
    const MOTO_DYNAMODB_VARIABLES: &[&str] = &["FIELDSYNC_MOTO_ENDPOINT", "FIELDSYNC_MOTO_DYNAMODB_ENDPOINT"];
    const MOTO_SQS_VARIABLES: &[&str] = &["FIELDSYNC_MOTO_ENDPOINT", "FIELDSYNC_SQS_ENDPOINT"];

    pub(crate) async fn dynamodb_local_store() -> Option<DynamoStore> {
        dynamo_store(DYNAMODB_LOCAL_VARIABLES).await.map(|(store, _)| store)
    }

    pub(crate) async fn moto_dynamodb_store() -> Option<DynamoStore> {
        dynamo_store(MOTO_DYNAMODB_VARIABLES).await.map(|(store, _)| store)
    }

    pub(crate) async fn dynamodb_local_store_and_client() -> Option<(DynamoStore, aws_sdk_dynamodb::Client)> {
        dynamo_store(DYNAMODB_LOCAL_VARIABLES).await
    }

    pub(crate) async fn moto_dynamodb_store_and_client() -> Option<(DynamoStore, aws_sdk_dynamodb::Client)> {
        dynamo_store(MOTO_DYNAMODB_VARIABLES).await
    }

    pub(crate) async fn moto_sqs_queue() -> Option<SqsQueue> {
        sqs_queue(MOTO_SQS_VARIABLES).await
    }
}

/// Runs every store check against the store that `$setup` builds.
macro_rules! store_contract {
    ($backend:ident, $setup:path) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn save_conflicts_on_stale_revision() {
                let Some(store) = $setup().await else { return };
                checks::save_conflicts_on_stale_revision(&store as &dyn RecordStore).await;
            }

            #[tokio::test]
            async fn decisions_round_trip_in_order() {
                let Some(store) = $setup().await else { return };
                checks::decisions_round_trip_in_order(&store as &dyn RecordStore).await;
            }

            #[tokio::test]
            async fn decisions_append_beyond_one_batch() {
                let Some(store) = $setup().await else { return };
                checks::decisions_append_beyond_one_batch(&store as &dyn RecordStore).await;
            }

            #[tokio::test]
            async fn external_id_finds_record() {
                let Some(store) = $setup().await else { return };
                checks::external_id_finds_record(&store as &dyn RecordStore).await;
            }

            #[tokio::test]
            async fn delivery_mark_expires() {
                let Some(store) = $setup().await else { return };
                checks::delivery_mark_expires(&store as &dyn RecordStore).await;
            }

            #[tokio::test]
            async fn task_list_follows_records() {
                let Some(store) = $setup().await else { return };
                checks::task_list_follows_records(&store as &dyn RecordStore).await;
            }
        }
    };
}

/// Runs every queue check against the queue that `$setup` builds. `$test` is the test attribute,
/// so the embedded queue can run on paused time, where sleeping advances the clock at once.
macro_rules! queue_contract {
    ($backend:ident, $setup:path, $test:meta) => {
        mod $backend {
            use super::*;

            #[$test]
            async fn dedup_drops_repeated_id() {
                let Some(queue) = $setup().await else { return };
                checks::dedup_drops_repeated_id(&queue as &dyn Queue).await;
            }

            #[$test]
            async fn group_delivers_in_order() {
                let Some(queue) = $setup().await else { return };
                checks::group_delivers_in_order(&queue as &dyn Queue).await;
            }

            #[$test]
            async fn large_messages_all_arrive() {
                let Some(queue) = $setup().await else { return };
                checks::large_messages_all_arrive(&queue as &dyn Queue).await;
            }

            #[$test]
            async fn group_blocks_while_in_flight() {
                let Some(queue) = $setup().await else { return };
                checks::group_blocks_while_in_flight(&queue as &dyn Queue).await;
            }

            #[$test]
            async fn visibility_timeout_redelivers() {
                let Some(queue) = $setup().await else { return };
                checks::visibility_timeout_redelivers(&queue as &dyn Queue).await;
            }

            #[$test]
            async fn dead_letter_after_max_receives_and_redrive() {
                let Some(queue) = $setup().await else { return };
                checks::dead_letter_after_max_receives_and_redrive(&queue as &dyn Queue).await;
            }
        }
    };
}

store_contract!(embedded_store, backends::embedded_store);
store_contract!(dynamodb_local_store, backends::dynamodb_local_store);
store_contract!(moto_dynamodb_store, backends::moto_dynamodb_store);
queue_contract!(
    embedded_queue,
    backends::embedded_queue,
    tokio::test(start_paused = true)
);
queue_contract!(moto_sqs_queue, backends::moto_sqs_queue, tokio::test);

/// Runs every concurrency governor check against the governor that `$setup` builds.
macro_rules! governor_contract {
    ($backend:ident, $setup:path) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn governor_limits_held_slots() {
                let Some(governor) = $setup().await else { return };
                checks::governor_limits_held_slots(&governor as &dyn ConcurrencyGovernor).await;
            }

            #[tokio::test]
            async fn governor_takes_over_expired_lease() {
                let Some(governor) = $setup().await else { return };
                checks::governor_takes_over_expired_lease(&governor as &dyn ConcurrencyGovernor).await;
            }
        }
    };
}

governor_contract!(embedded_governor, backends::embedded_governor);
governor_contract!(dynamodb_local_governor, backends::dynamodb_local_governor);
governor_contract!(moto_dynamodb_governor, backends::moto_dynamodb_governor);

/// Checks of the DynamoDB store beyond the port: table set-up, delivery claims and unreadable items.
macro_rules! dynamo_extras {
    ($backend:ident, $setup:path) => {
        mod $backend {
            use aws_sdk_dynamodb::types::AttributeValue;
            use fieldsync_core::ports::StoreError;
            use fieldsync_core::{Record, RecordKey};

            use super::*;

            #[tokio::test]
            async fn create_table_twice_succeeds() {
                let Some((store, _)) = $setup().await else { return };
                store.create_table().await.expect("second create_table failed");
            }

            #[tokio::test]
            async fn claim_delivery_once_per_id() {
                let Some((store, _)) = $setup().await else { return };
                let ttl = Duration::from_secs(3600);
                assert!(store.claim_delivery("delivery-1", ttl).await.unwrap());
                assert!(!store.claim_delivery("delivery-1", ttl).await.unwrap());
                assert!(store.claim_delivery("delivery-2", ttl).await.unwrap());
            }

            #[tokio::test]
            async fn claim_delivery_after_expiry() {
                let Some((store, _)) = $setup().await else { return };
                assert!(store.claim_delivery("delivery-1", Duration::ZERO).await.unwrap());
                tokio::time::sleep(Duration::from_millis(1_100)).await;
                assert!(store
                    .claim_delivery("delivery-1", Duration::from_secs(3600))
                    .await
                    .unwrap());
            }

            #[tokio::test]
            async fn load_reports_unreadable_item() {
                let Some((store, client)) = $setup().await else {
                    return;
                };
                let key = RecordKey::new("contract", "product", "MUG-BROKEN");
                let cases = [
                    ("doc is not JSON", Some("1"), "not json"),
                    ("revision is missing", None, "{}"),
                    ("revision is negative", Some("-1"), "{}"),
                ];
                for (case, revision, doc) in cases {
                    let mut put = client
                        .put_item()
                        .table_name(store.table())
                        .item(
                            "pk",
                            AttributeValue::S("REC#contract#product#MUG-BROKEN".to_owned()),
                        )
                        .item("sk", AttributeValue::S("STATE".to_owned()))
                        .item("doc", AttributeValue::S(doc.to_owned()));
                    if let Some(revision) = revision {
                        put = put.item("revision", AttributeValue::N(revision.to_owned()));
                    }
                    put.send().await.unwrap();

                    let error = store.load(&key).await.unwrap_err();
                    assert!(
                        matches!(error, StoreError::Corrupt { .. }),
                        "{case}: expected Corrupt, got {error:?}"
                    );
                }
            }

            #[tokio::test]
            async fn stored_revision_attribute_wins_over_doc() {
                let Some((store, client)) = $setup().await else {
                    return;
                };
                let record = Record::new(RecordKey::new("contract", "product", "MUG-REVISION"));
                store.save(&record).await.unwrap();
                client
                    .update_item()
                    .table_name(store.table())
                    .key(
                        "pk",
                        AttributeValue::S("REC#contract#product#MUG-REVISION".to_owned()),
                    )
                    .key("sk", AttributeValue::S("STATE".to_owned()))
                    .update_expression("SET revision = :revision")
                    .expression_attribute_values(":revision", AttributeValue::N("5".to_owned()))
                    .send()
                    .await
                    .unwrap();

                let loaded = store
                    .load(&record.key)
                    .await
                    .unwrap()
                    .expect("saved record is missing");
                assert_eq!(loaded.revision, 5);
                assert_eq!(store.save(&loaded).await.unwrap(), 6);
            }
        }
    };
}

dynamo_extras!(dynamodb_local_extras, backends::dynamodb_local_store_and_client);
dynamo_extras!(moto_dynamodb_extras, backends::moto_dynamodb_store_and_client);
