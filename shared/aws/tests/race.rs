//! Race test of the reconciler: concurrent tasks, each with its own [`Reconciler`], share one
//! record store and apply a shuffled stream of ERP and storefront changes to a few hot records.
//! The same test body runs on the embedded store and on DynamoDB Local.
//!
//! Unlike consumers of an SQS FIFO queue, the tasks hold no lock per record. Several tasks load,
//! decide and save the same record at once, so conditional writes really conflict and the
//! reconciler decides again on fresh state. A message the reconciler reports failed goes back on
//! the shared work list, at most [`MAX_DELIVERIES`] times.
//!
//! The stream has ERP price changes, which sync to the storefront, and storefront edits of the
//! ERP-owned price, which are `not_owner` and reverted. It also has storefront edits of a
//! storefront-owned field, which sync to the ERP, [`DUPLICATE_PERCENT`] % redeliveries with the
//! same event id, and echoes. An echo is the storefront reporting a price fieldsync wrote to it: the outbound stub
//! puts one on the work list for some of its storefront writes, as the storefront's webhook would.
//!
//! The checks:
//! - No update is lost and none regresses. Every stored field (value, version, and the latest
//!   value each system reported) equals what the oracle stores: the same deduplicated changes,
//!   echoes included, applied one at a time in `occurred_at` order with
//!   [`fieldsync_core::reconcile`]. These fields do not depend on the order in which changes are
//!   applied, because a change older than the stored one is stale. Every outbox ends empty, and
//!   the decision log contains exactly one decision other than `duplicate` for every distinct event,
//!   so each change was applied once.
//! - No outbound write is duplicated. A duplicate is a write whose target, record, kind, fields
//!   and `changed_at` equal those of an earlier write, that is the same outbox entry sent twice.
//!   Two writes of the same price in a row are not a duplicate by themselves: after a storefront
//!   edit of the price, the revert writes the ERP's price again. Besides, the number of writes is
//!   at most the number of distinct changes, because every change here reaches at most one
//!   target and adds at most one outbox entry.
//! - The targets end with the stored state: for each record, the last price written to the
//!   storefront and the last SEO title written to the ERP are the stored values.
//!
//! The DynamoDB Local test reads its endpoint from the environment that `infra/emulators.sh env`
//! prints, as `contract.rs` does:
//!
//! ```text
//! infra/emulators.sh start
//! eval "$(infra/emulators.sh env)"
//! cargo test -p fieldsync-aws --test race -- --nocapture
//! ```
//!
//! Set `FIELDSYNC_RACE_SEED` to a number to replay the same generated stream. The interleaving of
//! the tasks still differs from run to run.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io::Write as _;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fieldsync_aws::{local_clients, DynamoStore};
use fieldsync_core::ports::{RecordStore, StoreError, SystemClient, SystemError, WriteReceipt};
use fieldsync_core::{
    reconcile, ChangeSet, Decision, EntityType, FieldName, FieldValue, OutboundWrite, Outcome, Record, RecordKey,
    Rules, SystemId, Wire,
};
use fieldsync_embedded::EmbeddedStore;
use fieldsync_pipeline::{BatchItem, Reconciler};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const RULES: &str = r#"
integration = "race"
[systems.erp]
role = "erp"
[systems.storefront]
role = "storefront"

[entities.product]
key = "sku"
[entities.product.fields.price]
type = "money"
owner = "erp"
sync_to = ["storefront"]
on_foreign_edit = "revert"
[entities.product.fields.seo_title]
type = "text"
owner = "storefront"
sync_to = ["erp"]
"#;

/// Concurrent reconciler tasks.
const TASKS: usize = 8;

/// Hot records the changes are spread over.
const RECORDS: usize = 4;

/// Distinct changes generated up front. Echoes come on top of them.
const GENERATED_CHANGES: usize = 1_900;

/// Share of the generated deliveries that repeat an earlier event id.
const DUPLICATE_PERCENT: usize = 20;

/// Messages per `process_batch` call, drawn uniformly from this range.
const BATCH_SIZES: std::ops::RangeInclusive<usize> = 1..=10;

/// How far a delivery may move ahead of its place in the generated stream, in positions.
const REORDER_WINDOW: usize = 64;

/// How far a redelivery may come after its original, in positions.
const REDELIVERY_WINDOW: usize = 400;

/// Time between two generated changes, so every change has its own `occurred_at`.
const CHANGE_SPACING: chrono::Duration = chrono::Duration::milliseconds(2);

/// Chance that a storefront write comes back as an echo webhook, and that an echo is delivered twice.
const ECHO_PROBABILITY: f64 = 0.5;
const ECHO_REDELIVERY_PROBABILITY: f64 = 0.2;

/// Deliveries of one message before the test gives up on it.
const MAX_DELIVERIES: u32 = 20;

const SKIP_VARIABLE: &str = "FIELDSYNC_SKIP_EMULATORS";
const SEED_VARIABLE: &str = "FIELDSYNC_RACE_SEED";

fn erp() -> SystemId {
    SystemId::new("erp")
}

fn storefront() -> SystemId {
    SystemId::new("storefront")
}

fn price() -> FieldName {
    FieldName::new("price")
}

fn seo_title() -> FieldName {
    FieldName::new("seo_title")
}

fn record_key(index: usize) -> RecordKey {
    RecordKey::new("race", "product", format!("HOT-{index}"))
}

fn external_id(system: &SystemId, key: &RecordKey) -> String {
    format!("{system}-{}", key.key)
}

fn change(
    key: &RecordKey,
    source: SystemId,
    event_id: String,
    at: DateTime<Utc>,
    field: FieldName,
    wire: Wire,
) -> ChangeSet {
    ChangeSet {
        record: key.clone(),
        external_id: Some(external_id(&source, key)),
        source,
        event_id,
        occurred_at: at,
        received_at: at,
        fields: BTreeMap::from([(field, wire)]),
    }
}

/// Generates the distinct changes in `occurred_at` order, and the order in which they and their
/// redeliveries are delivered, as indexes into the changes.
fn generate(rng: &mut StdRng, base: DateTime<Utc>) -> (Vec<ChangeSet>, Vec<usize>) {
    let mut changes = Vec::with_capacity(GENERATED_CHANGES);
    let mut price_counters = [0u32; RECORDS];
    let mut edit_counters = [0u32; RECORDS];
    for position in 0..GENERATED_CHANGES {
        let record = rng.gen_range(0..RECORDS);
        let key = record_key(record);
        let at = base + CHANGE_SPACING * i32::try_from(position).unwrap();
        let roll = rng.gen_range(0..100);
        // The first change of a record sets its price, so later storefront edits have a price
        // to revert to.
        let generated = if roll < 45 || price_counters[record] == 0 {
            price_counters[record] += 1;
            // Each ERP price of a record is unique: 10.01, 10.02, …
            let amount = 1_000 + price_counters[record];
            let wire = Wire::Number(format!("{}.{:02}", amount / 100, amount % 100));
            change(&key, erp(), format!("erp-{position}"), at, price(), wire)
        } else if roll < 65 {
            edit_counters[record] += 1;
            // Storefront edits of the price never equal an ERP price: 900.01, 900.02, …
            let amount = 90_000 + edit_counters[record];
            let wire = Wire::Number(format!("{}.{:02}", amount / 100, amount % 100));
            change(&key, storefront(), format!("shop-{position}"), at, price(), wire)
        } else {
            let wire = Wire::Text(format!("SEO title {position} of {}", key.key));
            change(&key, storefront(), format!("shop-{position}"), at, seo_title(), wire)
        };
        changes.push(generated);
    }

    // Each delivery gets a sort position: its place plus a random lead within the reorder window,
    // or, for a redelivery, a random lag behind the original.
    let mut deliveries: Vec<(usize, usize)> = (0..changes.len())
        .map(|index| (index + rng.gen_range(0..REORDER_WINDOW), index))
        .collect();
    let redeliveries = changes.len() * DUPLICATE_PERCENT / (100 - DUPLICATE_PERCENT);
    for _ in 0..redeliveries {
        let index = rng.gen_range(0..changes.len());
        deliveries.push((index + rng.gen_range(0..REDELIVERY_WINDOW), index));
    }
    deliveries.sort_unstable();
    (changes, deliveries.into_iter().map(|(_, index)| index).collect())
}

/// One queued message, pointing at a change of the work list.
#[derive(Debug, Clone)]
struct Delivery {
    message_id: String,
    change: usize,
    deliveries: u32,
    /// Conflicting saves of the record while this message was being processed, over all its
    /// deliveries.
    conflicts: u32,
}

/// The messages still to process, shared by all tasks in place of the queue.
#[derive(Debug, Default)]
struct WorkList {
    state: Mutex<WorkState>,
}

#[derive(Debug, Default)]
struct WorkState {
    /// Every distinct change, echoes included. Deliveries refer to them by index.
    changes: Vec<ChangeSet>,
    pending: VecDeque<Delivery>,
    /// Messages taken by a task and not yet finished. While any is in flight, more work may come
    /// back (a failed message or an echo), so an idle task waits instead of stopping.
    in_flight: usize,
    finished: Vec<Delivery>,
    abandoned: Vec<Delivery>,
    messages_sent: u64,
}

enum Take {
    Batch(Vec<(Delivery, ChangeSet)>),
    Wait,
    Done,
}

impl WorkList {
    fn lock(&self) -> std::sync::MutexGuard<'_, WorkState> {
        self.state.lock().unwrap()
    }

    fn add_change(&self, change: ChangeSet, deliveries: usize) {
        let mut state = self.lock();
        let index = state.changes.len();
        state.changes.push(change);
        for _ in 0..deliveries {
            state.enqueue(index);
        }
    }

    fn take(&self, max: usize) -> Take {
        let mut state = self.lock();
        if state.pending.is_empty() {
            return if state.in_flight == 0 { Take::Done } else { Take::Wait };
        }
        let count = max.min(state.pending.len());
        let taken: Vec<Delivery> = state.pending.drain(..count).collect();
        state.in_flight += taken.len();
        let batch = taken
            .into_iter()
            .map(|delivery| {
                let change = state.changes[delivery.change].clone();
                (delivery, change)
            })
            .collect();
        Take::Batch(batch)
    }

    fn finish(&self, batch: Vec<(Delivery, ChangeSet)>, failed: &[String], conflicts: &HashMap<RecordKey, u32>) {
        let mut state = self.lock();
        state.in_flight -= batch.len();
        for (mut delivery, change) in batch {
            delivery.conflicts += conflicts.get(&change.record).copied().unwrap_or(0);
            if !failed.contains(&delivery.message_id) {
                state.finished.push(delivery);
            } else if delivery.deliveries >= MAX_DELIVERIES {
                state.abandoned.push(delivery);
            } else {
                delivery.deliveries += 1;
                state.pending.push_back(delivery);
            }
        }
    }
}

impl WorkState {
    fn enqueue(&mut self, change: usize) {
        self.messages_sent += 1;
        self.pending.push_back(Delivery {
            message_id: format!("msg-{}", self.messages_sent),
            change,
            deliveries: 1,
            conflicts: 0,
        });
    }
}

/// An outbound write as the stub received it. `write_id` orders all writes to all systems, and
/// `task` is the tokio task that sent it.
#[derive(Debug, Clone)]
struct SentWrite {
    write_id: usize,
    task: Option<tokio::task::Id>,
    write: OutboundWrite,
}

/// Every write the outbound stubs received, and the randomness that picks echoes.
#[derive(Debug)]
struct Outbound {
    sent: Mutex<(Vec<SentWrite>, StdRng)>,
    work: Arc<WorkList>,
}

/// The stub of one outside system: it records each write and, for the storefront, sometimes
/// reports the written price back as the storefront's webhook would.
#[derive(Debug)]
struct RecordingClient {
    system: SystemId,
    outbound: Arc<Outbound>,
}

#[async_trait]
impl SystemClient for RecordingClient {
    async fn write(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        // A real call takes a while, and other tasks run meanwhile.
        tokio::task::yield_now().await;
        let echo = {
            let mut sent = self.outbound.sent.lock().unwrap();
            let (log, rng) = &mut *sent;
            let write_id = log.len();
            log.push(SentWrite {
                write_id,
                task: tokio::task::try_id(),
                write: write.clone(),
            });
            let echoed = write.fields.get(&price()).filter(|_| rng.gen_bool(ECHO_PROBABILITY));
            match echoed {
                Some(FieldValue::Money(amount)) if self.system == storefront() => {
                    let deliveries = if rng.gen_bool(ECHO_REDELIVERY_PROBABILITY) {
                        2
                    } else {
                        1
                    };
                    let wire = Wire::Number(amount.to_string());
                    let event_id = format!("echo-{write_id}");
                    Some((
                        change(&write.record, storefront(), event_id, Utc::now(), price(), wire),
                        deliveries,
                    ))
                }
                _ => None,
            }
        };
        if let Some((echo, deliveries)) = echo {
            self.outbound.work.add_change(echo, deliveries);
        }
        Ok(WriteReceipt::default())
    }
}

/// A task's view of the shared store that counts conflicting saves per record, so the task can
/// tell how often each change of a batch was decided again.
#[derive(Debug)]
struct ConflictCounter {
    inner: Arc<dyn RecordStore>,
    conflicts: Mutex<HashMap<RecordKey, u32>>,
}

impl ConflictCounter {
    fn take(&self) -> HashMap<RecordKey, u32> {
        std::mem::take(&mut *self.conflicts.lock().unwrap())
    }
}

#[async_trait]
impl RecordStore for ConflictCounter {
    async fn load(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        self.inner.load(key).await
    }

    async fn save(&self, record: &Record) -> Result<u64, StoreError> {
        let saved = self.inner.save(record).await;
        if saved.as_ref().is_err_and(StoreError::is_conflict) {
            *self.conflicts.lock().unwrap().entry(record.key.clone()).or_default() += 1;
        }
        saved
    }

    async fn append_decisions(&self, decisions: &[Decision]) -> Result<(), StoreError> {
        self.inner.append_decisions(decisions).await
    }

    async fn decisions(&self, key: &RecordKey) -> Result<Vec<Decision>, StoreError> {
        self.inner.decisions(key).await
    }

    async fn mark_delivered(&self, delivery_id: &str, ttl: Duration) -> Result<(), StoreError> {
        self.inner.mark_delivered(delivery_id, ttl).await
    }

    async fn was_delivered(&self, delivery_id: &str) -> Result<bool, StoreError> {
        self.inner.was_delivered(delivery_id).await
    }

    async fn find_by_external_id(
        &self,
        integration: &str,
        system: &SystemId,
        entity: &EntityType,
        external_id: &str,
    ) -> Result<Option<RecordKey>, StoreError> {
        self.inner
            .find_by_external_id(integration, system, entity, external_id)
            .await
    }

    async fn open_tasks(&self, integration: &str) -> Result<Vec<fieldsync_core::OpenTask>, StoreError> {
        self.inner.open_tasks(integration).await
    }
}

#[derive(Debug, Default)]
struct TaskTotals {
    batches: u32,
    conflicts_retried: u32,
}

async fn run_task(reconciler: Reconciler, counter: Arc<ConflictCounter>, work: Arc<WorkList>, seed: u64) -> TaskTotals {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut totals = TaskTotals::default();
    loop {
        let batch = match work.take(rng.gen_range(BATCH_SIZES)) {
            Take::Batch(batch) => batch,
            Take::Wait => {
                tokio::time::sleep(Duration::from_millis(1)).await;
                continue;
            }
            Take::Done => return totals,
        };
        let items: Vec<BatchItem> = batch
            .iter()
            .map(|(delivery, change)| BatchItem {
                message_id: delivery.message_id.clone(),
                body: serde_json::to_string(change).unwrap(),
            })
            .collect();

        let report = reconciler.process_batch(&items).await;

        totals.batches += 1;
        totals.conflicts_retried += report.conflicts_retried;
        work.finish(batch, &report.failed, &counter.take());
    }
}

/// Applies the distinct changes one at a time in `occurred_at` order, confirming every outbound
/// write at once, and returns the records.
fn oracle(rules: &Rules, changes: &[ChangeSet]) -> BTreeMap<RecordKey, Record> {
    let mut ordered: Vec<&ChangeSet> = changes.iter().collect();
    ordered.sort_by_key(|change| change.occurred_at);
    let mut records: BTreeMap<RecordKey, Record> = BTreeMap::new();
    for change in ordered {
        let current = records.remove(&change.record);
        let mut reconciled = reconcile(rules, current, change, change.occurred_at);
        for write in reconciled.record.outbox.clone() {
            reconciled.record.confirm_write(&write, None);
        }
        records.insert(change.record.clone(), reconciled.record);
    }
    records
}

fn seed() -> u64 {
    match std::env::var(SEED_VARIABLE) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{SEED_VARIABLE}={text:?} is not a whole number")),
        Err(_) => rand::random(),
    }
}

/// Prints a line with `println!`, which the test harness shows with `--nocapture`, and also
/// writes it to the process's standard error, which the harness does not capture.
fn report_line(line: &str) {
    println!("{line}");
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

async fn race(backend: &str, store: Arc<dyn RecordStore>) {
    let seed = seed();
    let rules = Arc::new(Rules::parse("race-rules.toml", RULES).unwrap());
    let mut rng = StdRng::seed_from_u64(seed);
    let (generated, delivery_order) = generate(&mut rng, Utc::now());
    let generated_count = generated.len();

    let work = Arc::new(WorkList::default());
    {
        let mut state = work.lock();
        state.changes = generated;
        for index in delivery_order {
            state.enqueue(index);
        }
    }
    let outbound = Arc::new(Outbound {
        sent: Mutex::new((Vec::new(), StdRng::seed_from_u64(rng.gen()))),
        work: Arc::clone(&work),
    });
    let systems: BTreeMap<SystemId, Arc<dyn SystemClient>> = [erp(), storefront()]
        .into_iter()
        .map(|system| {
            let client: Arc<dyn SystemClient> = Arc::new(RecordingClient {
                system: system.clone(),
                outbound: Arc::clone(&outbound),
            });
            (system, client)
        })
        .collect();

    let started = Instant::now();
    let mut tasks = Vec::with_capacity(TASKS);
    for _ in 0..TASKS {
        let counter = Arc::new(ConflictCounter {
            inner: Arc::clone(&store),
            conflicts: Mutex::default(),
        });
        let counted_store: Arc<dyn RecordStore> = counter.clone();
        let reconciler = Reconciler::new(Arc::clone(&rules), counted_store, systems.clone());
        tasks.push(tokio::spawn(run_task(
            reconciler,
            counter,
            Arc::clone(&work),
            rng.gen(),
        )));
    }
    let mut totals = TaskTotals::default();
    for task in tasks {
        let task_totals = task.await.expect("reconciler task panicked");
        totals.batches += task_totals.batches;
        totals.conflicts_retried += task_totals.conflicts_retried;
    }
    let elapsed = started.elapsed();

    let state = std::mem::take(&mut *work.lock());
    let sent = std::mem::take(&mut outbound.sent.lock().unwrap().0);
    let max_conflicts = state
        .finished
        .iter()
        .map(|delivery| delivery.conflicts)
        .max()
        .unwrap_or(0);
    let max_deliveries = state
        .finished
        .iter()
        .map(|delivery| delivery.deliveries)
        .max()
        .unwrap_or(0);
    let redelivered = state.finished.iter().filter(|delivery| delivery.deliveries > 1).count();

    let mut outcomes: BTreeMap<&str, usize> = BTreeMap::new();
    let mut decisions_by_record = BTreeMap::new();
    for index in 0..RECORDS {
        let key = record_key(index);
        let decisions = store.decisions(&key).await.unwrap();
        for decision in &decisions {
            *outcomes.entry(decision.outcome.as_str()).or_default() += 1;
        }
        decisions_by_record.insert(key, decisions);
    }

    report_line(&format!(
        "race on {backend}: seed {seed}, {TASKS} tasks, {RECORDS} records, {} distinct changes \
         ({generated_count} generated, {} echoes), {} deliveries in {} batches, {} writes, {:.2} s",
        state.changes.len(),
        state.changes.len() - generated_count,
        state.messages_sent,
        totals.batches,
        sent.len(),
        elapsed.as_secs_f64(),
    ));
    report_line(&format!(
        "race on {backend}: {} conflicts retried (BatchReport::conflicts_retried, summed); \
         max retries per change {max_conflicts} (conflicting saves of its record while its batch ran, \
         over all its deliveries); {redelivered} messages redelivered after failing, max {max_deliveries} \
         deliveries of one message",
        totals.conflicts_retried,
    ));
    report_line(&format!("race on {backend}: decisions by outcome {outcomes:?}"));

    assert!(
        state.abandoned.is_empty(),
        "{backend}: {} messages still failed after {MAX_DELIVERIES} deliveries, such as {:?}",
        state.abandoned.len(),
        state.abandoned.first()
    );
    let not_decided_once = events_not_decided_once(&state.changes, &decisions_by_record);
    report_line(&format!(
        "race on {backend}: {} events not decided exactly once",
        not_decided_once.len()
    ));
    check_records(backend, &rules, &state.changes, store.as_ref()).await;
    check_writes(backend, &state.changes, &sent, store.as_ref()).await;
    // A record keeps its newest 256 event ids and the store marks a delivery right after its
    // state is saved, so a redelivery is dropped whichever of the two it meets first.
    assert!(
        not_decided_once.is_empty(),
        "{backend}: {} events have not exactly one decision other than duplicate, the first: {}",
        not_decided_once.len(),
        not_decided_once.first().map_or("", String::as_str)
    );
}

/// Compares the stored records with the oracle's.
async fn check_records(backend: &str, rules: &Rules, changes: &[ChangeSet], store: &dyn RecordStore) {
    let expected = oracle(rules, changes);
    assert_eq!(
        expected.len(),
        RECORDS,
        "the oracle has a record that was never changed"
    );
    for (key, oracle_record) in &expected {
        let stored = store.load(key).await.unwrap().expect("record was never stored");
        assert!(
            stored.outbox.is_empty(),
            "{backend}: {key} has unsent writes {:?}",
            stored.outbox
        );
        assert_eq!(stored.ids, oracle_record.ids, "{backend}: ids of {key}");
        assert_eq!(stored.status, oracle_record.status, "{backend}: status of {key}");
        // The record keeps only its latest event ids, so which ones depends on the order in which
        // the changes were applied. Each kept id must belong to a change of this record.
        assert_eq!(
            stored.recent_events.len(),
            oracle_record.recent_events.len(),
            "{backend}: number of event ids kept in {key}"
        );
        for event_id in stored.recent_events.keys() {
            assert!(
                changes
                    .iter()
                    .any(|change| change.record == *key && change.event_id == *event_id),
                "{backend}: {key} keeps event id {event_id}, which is no change of that record"
            );
        }

        let fields: Vec<&FieldName> = oracle_record.fields.keys().collect();
        assert_eq!(
            stored.fields.keys().collect::<Vec<_>>(),
            fields,
            "{backend}: fields of {key}"
        );
        for (field, expected_state) in &oracle_record.fields {
            let state = &stored.fields[field];
            assert_eq!(state.value, expected_state.value, "{backend}: value of {key} {field}");
            assert_eq!(
                state.version, expected_state.version,
                "{backend}: version of {key} {field}"
            );
            assert_eq!(
                state.observed, expected_state.observed,
                "{backend}: values reported for {key} {field}"
            );
            assert_eq!(
                state.claimed_by, expected_state.claimed_by,
                "{backend}: claim of {key} {field}"
            );
        }
    }
}

/// Lists the events that the decision log does not show decided exactly once, that is with
/// exactly one decision other than `duplicate`, with their decisions.
fn events_not_decided_once(
    changes: &[ChangeSet],
    decisions_by_record: &BTreeMap<RecordKey, Vec<Decision>>,
) -> Vec<String> {
    let mut decided: HashMap<(&RecordKey, &str), Vec<&Decision>> = HashMap::new();
    for decisions in decisions_by_record.values() {
        for decision in decisions
            .iter()
            .filter(|decision| decision.outcome != Outcome::Duplicate)
        {
            decided
                .entry((&decision.record, decision.event_id.as_str()))
                .or_default()
                .push(decision);
        }
    }
    let mut problems = Vec::new();
    for change in changes {
        let decisions = decided
            .get(&(&change.record, change.event_id.as_str()))
            .map_or(&[][..], Vec::as_slice);
        if decisions.len() == 1 {
            continue;
        }
        let summary: Vec<String> = decisions
            .iter()
            .map(|decision| format!("{} at {}: {}", decision.outcome, decision.decided_at, decision.reason))
            .collect();
        problems.push(format!("event {} of {}: {summary:?}", change.event_id, change.record));
    }
    problems
}

/// Checks that no outbound write was sent twice and that the last write of each field carries
/// the stored value.
async fn check_writes(backend: &str, changes: &[ChangeSet], sent: &[SentWrite], store: &dyn RecordStore) {
    let mut first_sent: HashMap<String, &SentWrite> = HashMap::new();
    let mut duplicates = Vec::new();
    let mut duplicates_from_other_tasks = 0;
    for sent_write in sent {
        let write = &sent_write.write;
        let identity = format!(
            "{} {} {:?} {:?} {}",
            write.target, write.record, write.kind, write.fields, write.changed_at
        );
        if let Some(first) = first_sent.insert(identity.clone(), sent_write) {
            if first.task != sent_write.task {
                duplicates_from_other_tasks += 1;
            }
            duplicates.push(format!(
                "write {} (task {:?}) repeats write {} (task {:?}): {identity}",
                sent_write.write_id, sent_write.task, first.write_id, first.task
            ));
        }
    }

    let mut stale_targets = Vec::new();
    for index in 0..RECORDS {
        let key = record_key(index);
        let stored = store.load(&key).await.unwrap().expect("record was never stored");
        for (target, field) in [(storefront(), price()), (erp(), seo_title())] {
            let last_written = sent
                .iter()
                .rev()
                .filter(|sent_write| sent_write.write.record == key && sent_write.write.target == target)
                .find_map(|sent_write| sent_write.write.fields.get(&field));
            let Some(last_written) = last_written else { continue };
            if Some(last_written) != stored.value(field.as_str()) {
                stale_targets.push(format!(
                    "{key}: last {field} written to {target} is {last_written}, stored is {:?}",
                    stored.value(field.as_str())
                ));
            }
        }
    }

    // All three figures are printed before the first assertion, so a failure shows them all.
    report_line(&format!(
        "race on {backend}: {} writes repeat an earlier write ({duplicates_from_other_tasks} of them sent \
         by another task than the first), {} writes for {} distinct changes, {} targets whose last write \
         is not the stored value",
        duplicates.len(),
        sent.len(),
        changes.len(),
        stale_targets.len()
    ));
    // The reconciler claims each outbox entry with a conditional save before sending it and
    // sends one target's entries in order, so no entry goes out twice and no older value
    // follows a newer one.
    for stale_target in &stale_targets {
        report_line(&format!("race on {backend}: {stale_target}"));
    }
    assert!(
        duplicates.is_empty(),
        "{backend}: {} outbound writes repeat an earlier write, the first: {}",
        duplicates.len(),
        duplicates.first().map_or("", String::as_str)
    );
    assert!(
        sent.len() <= changes.len(),
        "{backend}: {} outbound writes for {} distinct changes",
        sent.len(),
        changes.len()
    );
    assert!(
        stale_targets.is_empty(),
        "{backend}: the last write to a target is not the stored value: {stale_targets:?}"
    );
}

/// Returns the DynamoDB Local endpoint, `None` when emulator tests are skipped, and panics when
/// it is not set and skipping was not requested.
fn dynamodb_local_endpoint() -> Option<String> {
    const VARIABLE: &str = "FIELDSYNC_DYNAMODB_ENDPOINT";
    if let Some(endpoint) = std::env::var(VARIABLE).ok().filter(|value| !value.is_empty()) {
        // The test creates and fills a table, so it only ever talks to a local emulator.
        let host = endpoint
            .strip_prefix("http://")
            .and_then(|rest| rest.split([':', '/']).next());
        assert!(
            matches!(host, Some("127.0.0.1" | "localhost")),
            "{endpoint} is not an emulator on 127.0.0.1; the race test only runs against local emulators"
        );
        return Some(endpoint);
    }
    if std::env::var(SKIP_VARIABLE).is_ok_and(|value| value == "1") {
        eprintln!("skipped: {VARIABLE} is not set and {SKIP_VARIABLE}=1");
        return None;
    }
    panic!(
        "{VARIABLE} is not set: run `infra/emulators.sh start` and `eval \"$(infra/emulators.sh env)\"`, \
         or set {SKIP_VARIABLE}=1 to skip the emulator tests"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_embedded_store() {
    race("the embedded store", Arc::new(EmbeddedStore::new())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn race_dynamodb_local() {
    let Some(endpoint) = dynamodb_local_endpoint() else {
        return;
    };
    let (client, _) = local_clients(&endpoint, &endpoint);
    let table = format!("fieldsync-race-{:016x}", rand::random::<u64>());
    let store = DynamoStore::new(client.clone(), &table);
    store.create_table().await.expect("creating the test table failed");

    race("DynamoDB Local", Arc::new(store)).await;

    // Only a passing run gets here, so a failed run leaves its table for inspection until the
    // emulator stops.
    client.delete_table().table_name(&table).send().await.unwrap();
}
