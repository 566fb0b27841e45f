//! Throughput and DynamoDB cost of `Reconciler::process_batch`, on the embedded store and on
//! DynamoDB Local. A plain timing harness (`harness = false`), not a test: nothing here asserts a
//! time.
//!
//! ```text
//! infra/emulators.sh start
//! eval "$(infra/emulators.sh env)"
//! cargo bench -p fieldsync-aws --bench reconcile
//! ```
//!
//! Without `FIELDSYNC_DYNAMODB_ENDPOINT` only the embedded store is measured. `docs/benchmarks.md`
//! records the figures and what they mean.
//!
//! Each run first creates its records with one ERP change each (not timed), then times a stream
//! of changes taken from a work list in batches of 10, as the SQS trigger delivers them. The
//! stream spreads over many records, so a batch rarely contains two changes of one record. It mixes
//! ERP changes of price, stock and name, storefront edits of an ERP-owned price and of a
//! claim-on-edit SEO title, redeliveries, and echoes of the stub's storefront writes. Each change
//! is stamped with the current time when its batch is taken, as if its webhook had just arrived.
//!
//! Calls and capacity are counted by a `RecordStore` decorator. It maps each port call to the
//! DynamoDB calls `DynamoStore` makes for it, and computes capacity units from the sizes of the
//! items written and read: one write unit per started 1 KB of each item written, one read unit
//! per started 4 KB of a strongly consistent read. So the capacity figures are computed, not
//! reported by DynamoDB. After the DynamoDB Local run, the harness writes one record's state item
//! again with `ReturnConsumedCapacity::Total` and prints what DynamoDB Local reports next to the
//! computed figure.

use std::collections::{BTreeMap, VecDeque};
use std::error::Error;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnConsumedCapacity};
use chrono::{SecondsFormat, Utc};
use fieldsync_aws::{local_clients, DynamoStore};
use fieldsync_core::ports::{RecordStore, StoreError, SystemClient, SystemError, WriteReceipt};
use fieldsync_core::{
    ChangeSet, Decision, EntityType, FieldName, FieldValue, OutboundWrite, Record, RecordKey, Rules, SystemId, Wire,
    WriteKind,
};
use fieldsync_embedded::EmbeddedStore;
use fieldsync_pipeline::{BatchItem, Reconciler};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

type BoxResult<T> = Result<T, Box<dyn Error + Send + Sync>>;

const RULES: &str = r#"
integration = "bench"
[systems.erp]
role = "erp"
[systems.storefront]
role = "storefront"

[entities.product]
key = "sku"
[[entities.product.create]]
on = "storefront"
from = ["erp"]
defaults = { published = false }
[entities.product.fields.price]
type = "money"
owner = "erp"
sync_to = ["storefront"]
on_foreign_edit = "revert"
[entities.product.fields.name]
type = "text"
owner = "erp"
sync_to = ["storefront"]
[entities.product.fields.stock]
type = "quantity"
owner = "erp"
sync_to = ["storefront"]
[entities.product.fields.seo_title]
type = "text"
claim_on_edit = "erp"
sync_to = ["storefront", "erp"]
[entities.product.fields.published]
type = "bool"
owner = "storefront"
"#;

/// Messages per `process_batch` call, the SQS trigger's default for FIFO queues.
const BATCH_SIZE: usize = 10;

/// A stream of changes over a number of records.
#[derive(Debug, Clone, Copy)]
struct Workload {
    name: &'static str,
    records: usize,
    /// Changes generated for the timed part, before redeliveries and echoes are added.
    changes: usize,
}

/// About 10 changes per record: a batch rarely contains two changes of one record, and records stay
/// young, with short histories.
const SPREAD: Workload = Workload {
    name: "spread",
    records: 200,
    changes: 2_000,
};

/// About 100 changes per record: batches often contain two changes of one record, and the records'
/// echo ledgers and event id lists fill up to their limits.
const HOT: Workload = Workload {
    name: "hot",
    records: 20,
    changes: 2_000,
};

/// The runs on each backend: workload and number of consumers.
const RUNS: [(Workload, usize); 4] = [
    (SPREAD, 1),
    (SPREAD, CONCURRENT_CONSUMERS),
    (HOT, 1),
    (HOT, CONCURRENT_CONSUMERS),
];

/// Timed repetitions of each run on the embedded store, whose runs are short. The median is shown.
const EMBEDDED_REPETITIONS: usize = 5;

/// Share of the deliveries that repeat an earlier change, and how many positions later.
const REDELIVERY_PERCENT: u32 = 5;
const REDELIVERY_LAG: usize = 30;

/// Chance that a storefront write of a price comes back as an echo webhook.
const ECHO_PROBABILITY: f64 = 0.5;

/// Consumers in the concurrent runs. Each takes the records of its own share, as SQS FIFO gives
/// each message group to one consumer at a time.
const CONCURRENT_CONSUMERS: usize = 4;

const DYNAMODB_ENDPOINT_VARIABLE: &str = "FIELDSYNC_DYNAMODB_ENDPOINT";

fn main() -> BoxResult<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run())
}

async fn run() -> BoxResult<()> {
    let rules = Arc::new(Rules::parse("bench-rules.toml", RULES)?);
    println!("Columns after changes/s are per change, that is per delivery processed.");
    println!(
        "{:<15} {:<7} {:>9} {:>8} {:>8} {:>8} {:>10} {:>10} {:>9} {:>7} {:>7} {:>9}",
        "backend",
        "records",
        "consumers",
        "changes",
        "batches",
        "wall s",
        "changes/s",
        "port calls",
        "DDB calls",
        "WCU",
        "RCU",
        "outbound"
    );

    for (workload, consumers) in RUNS {
        // Computing item sizes serializes every record loaded and saved, which would weigh on
        // the embedded store's timing. So the timed repetitions count calls only, and one more
        // run of the same stream computes the capacity.
        let mut timed = Vec::with_capacity(EMBEDDED_REPETITIONS);
        for _ in 0..EMBEDDED_REPETITIONS {
            let store: Arc<dyn RecordStore> = Arc::new(EmbeddedStore::new());
            timed.push(measure(&rules, store, workload, consumers, false).await?);
        }
        timed.sort_by_key(|figures| figures.elapsed);
        let median = &timed[timed.len() / 2];
        let store: Arc<dyn RecordStore> = Arc::new(EmbeddedStore::new());
        let counted = measure(&rules, store, workload, consumers, true).await?;
        median.print("embedded", workload, Some(&counted.counts));
    }

    let Some(endpoint) = dynamodb_local_endpoint()? else {
        println!(
            "DynamoDB Local skipped: {DYNAMODB_ENDPOINT_VARIABLE} is not set. Run `infra/emulators.sh start` and \
             `eval \"$(infra/emulators.sh env)\"` first."
        );
        return Ok(());
    };
    let (client, _) = local_clients(&endpoint, &endpoint);
    for (workload, consumers) in RUNS {
        let table = format!("fieldsync-bench-{:016x}", rand::random::<u64>());
        let dynamo = DynamoStore::new(client.clone(), &table);
        dynamo.create_table().await?;
        let store: Arc<dyn RecordStore> = Arc::new(dynamo);
        // Next to DynamoDB Local's calls, computing item sizes takes little time, so one run
        // gives both the timing and the capacity.
        let figures = measure(&rules, Arc::clone(&store), workload, consumers, true).await?;
        figures.print("DynamoDB Local", workload, None);
        compare_reported_capacity(&client, &table, store.as_ref()).await?;
        client.delete_table().table_name(&table).send().await?;
    }
    Ok(())
}

/// Returns the DynamoDB Local endpoint, or `None` when it is not set. Rejects any endpoint that
/// is not on the loopback interface, because the harness creates and fills tables.
fn dynamodb_local_endpoint() -> BoxResult<Option<String>> {
    let Some(endpoint) = std::env::var(DYNAMODB_ENDPOINT_VARIABLE)
        .ok()
        .filter(|value| !value.is_empty())
    else {
        return Ok(None);
    };
    let host = endpoint
        .strip_prefix("http://")
        .and_then(|rest| rest.split([':', '/']).next());
    if !matches!(host, Some("127.0.0.1" | "localhost")) {
        return Err(format!("{DYNAMODB_ENDPOINT_VARIABLE}={endpoint} is not an emulator on 127.0.0.1").into());
    }
    Ok(Some(endpoint))
}

/// The results of one timed run.
struct Figures {
    consumers: usize,
    deliveries: u64,
    batches: u64,
    elapsed: Duration,
    outbound_writes: u64,
    counts: CountSnapshot,
}

impl Figures {
    /// Prints one row, with the capacity figures of `capacity` when given (a run of the same
    /// stream that computed item sizes) and of this run otherwise.
    fn print(&self, backend: &str, workload: Workload, capacity: Option<&CountSnapshot>) {
        let capacity = capacity.unwrap_or(&self.counts);
        let per_change = |total: u64| total as f64 / self.deliveries as f64;
        let per_counted_change = |total: u64| total as f64 / capacity.deliveries as f64;
        println!(
            "{:<15} {:<7} {:>9} {:>8} {:>8} {:>8.2} {:>10.0} {:>10.2} {:>9.2} {:>7.2} {:>7.2} {:>9.2}",
            backend,
            workload.records,
            self.consumers,
            self.deliveries,
            self.batches,
            self.elapsed.as_secs_f64(),
            self.deliveries as f64 / self.elapsed.as_secs_f64(),
            per_change(self.counts.port_calls),
            per_change(self.counts.dynamodb_calls),
            per_counted_change(capacity.write_units),
            per_counted_change(capacity.read_units),
            per_change(self.outbound_writes),
        );
        println!(
            "{:<15} {} workload; conflicts {}; port calls: was_delivered {}, load {}, save {}, append_decisions {}, \
             mark_delivered {}; cross-reference WCU per change {:.2}; largest state item {} bytes",
            "",
            workload.name,
            self.counts.conflicts,
            self.counts.mark_checks,
            self.counts.loads,
            self.counts.saves,
            self.counts.appends,
            self.counts.marks,
            per_counted_change(capacity.cross_reference_write_units),
            capacity.largest_state_item
        );
    }
}

/// Creates the records (not timed), then times the stream through `consumers` reconcilers.
/// Capacity units are computed only when `compute_sizes` is set.
async fn measure(
    rules: &Arc<Rules>,
    store: Arc<dyn RecordStore>,
    workload: Workload,
    consumers: usize,
    compute_sizes: bool,
) -> BoxResult<Figures> {
    let counting = Arc::new(CountingStore::new(store, compute_sizes));
    let queues = Arc::new(Queues::new(consumers));
    let outbound: Arc<dyn SystemClient> = Arc::new(StubSystem {
        queues: Arc::clone(&queues),
        rng: Mutex::new(StdRng::seed_from_u64(7)),
    });
    let systems: BTreeMap<SystemId, Arc<dyn SystemClient>> = BTreeMap::from([
        (SystemId::new("erp"), Arc::clone(&outbound)),
        (SystemId::new("storefront"), outbound),
    ]);
    let counted: Arc<dyn RecordStore> = counting.clone();
    let reconciler = Reconciler::new(Arc::clone(rules), counted, systems);

    for record in 0..workload.records {
        queues.push(record, creation(record));
    }
    drain(&reconciler, &queues, consumers).await?;

    let mut rng = StdRng::seed_from_u64(42);
    for (record, template, redelivery) in stream(&mut rng, workload) {
        if redelivery {
            queues.push_redelivery(record, template);
        } else {
            queues.push(record, template);
        }
    }
    counting.reset();
    let started = Instant::now();
    let (batches, deliveries, outbound_writes) = drain(&reconciler, &queues, consumers).await?;
    let elapsed = started.elapsed();

    let mut counts = counting.snapshot();
    counts.deliveries = deliveries;
    Ok(Figures {
        consumers,
        deliveries,
        batches,
        elapsed,
        outbound_writes,
        counts,
    })
}

/// Runs `consumers` tasks until every queue is empty. Returns batches, deliveries and outbound
/// writes.
async fn drain(reconciler: &Reconciler, queues: &Arc<Queues>, consumers: usize) -> BoxResult<(u64, u64, u64)> {
    let mut tasks = Vec::with_capacity(consumers);
    for consumer in 0..consumers {
        let reconciler = reconciler.clone();
        let queues = Arc::clone(queues);
        tasks.push(tokio::spawn(
            async move { consume(&reconciler, &queues, consumer).await },
        ));
    }
    let mut totals = (0, 0, 0);
    for task in tasks {
        let (batches, deliveries, writes) = task.await??;
        totals.0 += batches;
        totals.1 += deliveries;
        totals.2 += writes;
    }
    Ok(totals)
}

async fn consume(reconciler: &Reconciler, queues: &Queues, consumer: usize) -> BoxResult<(u64, u64, u64)> {
    let mut totals = (0, 0, 0);
    loop {
        let batch = queues.take(consumer, BATCH_SIZE)?;
        if batch.is_empty() {
            return Ok(totals);
        }
        let report = reconciler.process_batch(&batch).await;
        if !report.failed.is_empty() {
            return Err(format!("{} messages failed, such as {}", report.failed.len(), report.failed[0]).into());
        }
        totals.0 += 1;
        totals.1 += batch.len() as u64;
        totals.2 += u64::from(report.writes);
    }
}

/// A change before its webhook arrives: everything but the times, which are set when it is
/// delivered. A redelivery shares its original's `Arc`, so it carries the same times.
type Template = Arc<Mutex<ChangeSet>>;

/// One queue per consumer. Record `r` belongs to consumer `r % consumers`.
struct Queues {
    queues: Vec<Mutex<VecDeque<(Template, bool)>>>,
    next_message: AtomicU64,
}

impl Queues {
    fn new(consumers: usize) -> Self {
        Self {
            queues: (0..consumers).map(|_| Mutex::default()).collect(),
            next_message: AtomicU64::new(0),
        }
    }

    fn queue(&self, record: usize) -> MutexGuard<'_, VecDeque<(Template, bool)>> {
        let queue = &self.queues[record % self.queues.len()];
        queue.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends a delivery. The flag is true when the change still needs its times set.
    fn push(&self, record: usize, template: Template) {
        self.queue(record).push_back((template, true));
    }

    fn push_redelivery(&self, record: usize, template: Template) {
        self.queue(record).push_back((template, false));
    }

    fn take(&self, consumer: usize, max: usize) -> BoxResult<Vec<BatchItem>> {
        let taken: Vec<(Template, bool)> = {
            let mut queue = self.queues[consumer]
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let count = max.min(queue.len());
            queue.drain(..count).collect()
        };
        let mut batch = Vec::with_capacity(taken.len());
        for (template, first_delivery) in taken {
            let mut change = template.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if first_delivery {
                change.occurred_at = Utc::now();
                change.received_at = change.occurred_at;
            }
            let id = self.next_message.fetch_add(1, Ordering::Relaxed);
            batch.push(BatchItem {
                message_id: format!("msg-{id}"),
                body: serde_json::to_string(&*change)?,
            });
        }
        Ok(batch)
    }
}

fn record_key(record: usize) -> RecordKey {
    RecordKey::new("bench", "product", format!("SKU-{record:04}"))
}

fn template(record: usize, source: &str, event_id: String, fields: Vec<(&str, Wire)>) -> Template {
    let key = record_key(record);
    let now = Utc::now();
    Arc::new(Mutex::new(ChangeSet {
        external_id: Some(format!("{source}-{}", key.key)),
        record: key,
        source: SystemId::new(source),
        event_id,
        occurred_at: now,
        received_at: now,
        fields: fields
            .into_iter()
            .map(|(name, wire)| (FieldName::new(name), wire))
            .collect(),
    }))
}

fn money(cents: u64) -> Wire {
    Wire::Number(format!("{}.{:02}", cents / 100, cents % 100))
}

fn creation(record: usize) -> Template {
    let fields = vec![
        ("price", money(1_000 + record as u64)),
        ("name", Wire::Text(format!("Product {record}"))),
        ("stock", Wire::Number("100".to_owned())),
        ("seo_title", Wire::Text(format!("Buy product {record}"))),
    ];
    template(record, "erp", format!("create-{record}"), fields)
}

/// Generates the timed stream in delivery order: (record, change, whether it is a redelivery).
fn stream(rng: &mut StdRng, workload: Workload) -> Vec<(usize, Template, bool)> {
    let mut deliveries: Vec<(usize, usize, Template, bool)> = Vec::with_capacity(workload.changes * 2);
    for position in 0..workload.changes {
        let record = rng.gen_range(0..workload.records);
        let roll = rng.gen_range(0..100);
        let cents = rng.gen_range(500..50_000);
        let (source, fields) = match roll {
            0..=44 => ("erp", vec![("price", money(cents))]),
            45..=64 => ("erp", vec![("stock", Wire::Number(rng.gen_range(0..500).to_string()))]),
            65..=69 => (
                "erp",
                vec![
                    ("price", money(cents)),
                    ("name", Wire::Text(format!("Product {record} v{position}"))),
                ],
            ),
            70..=87 => (
                "storefront",
                vec![("seo_title", Wire::Text(format!("SEO {record} v{position}")))],
            ),
            _ => ("storefront", vec![("price", money(cents))]),
        };
        let change = template(record, source, format!("{source}-{position}"), fields);
        deliveries.push((position * 2, record, Arc::clone(&change), false));
        if rng.gen_range(0..100) < REDELIVERY_PERCENT {
            let slot = position * 2 + 2 * rng.gen_range(1..=REDELIVERY_LAG) + 1;
            deliveries.push((slot, record, change, true));
        }
    }
    deliveries.sort_by_key(|(slot, _, _, _)| *slot);
    deliveries
        .into_iter()
        .map(|(_, record, change, redelivery)| (record, change, redelivery))
        .collect()
}

/// The outbound stub for both systems: it accepts every write, returns an id for a create, and
/// puts an echo of some storefront price writes on the queue, as the storefront's webhook would.
struct StubSystem {
    queues: Arc<Queues>,
    rng: Mutex<StdRng>,
}

impl std::fmt::Debug for StubSystem {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("StubSystem")
    }
}

#[async_trait]
impl SystemClient for StubSystem {
    async fn write(&self, write: &OutboundWrite) -> Result<WriteReceipt, SystemError> {
        let echo = write.target.as_str() == "storefront"
            && self
                .rng
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .gen_bool(ECHO_PROBABILITY);
        if let (true, Some(FieldValue::Money(amount))) = (echo, write.fields.get(&FieldName::new("price"))) {
            let record = write
                .record
                .key
                .strip_prefix("SKU-")
                .and_then(|number| number.parse::<usize>().ok())
                .unwrap_or(0);
            let event_id = format!("echo-{}", self.queues.next_message.fetch_add(1, Ordering::Relaxed));
            let fields = vec![("price", Wire::Number(amount.to_string()))];
            self.queues
                .push(record, template(record, "storefront", event_id, fields));
        }
        let target_id = (write.kind == WriteKind::Create).then(|| format!("{}-{}", write.target, write.record.key));
        Ok(WriteReceipt { target_id })
    }
}

/// A `RecordStore` decorator that counts port calls, the DynamoDB calls `DynamoStore` makes for
/// them, and the capacity units those calls consume, computed from item sizes.
#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn RecordStore>,
    compute_sizes: bool,
    counts: Mutex<CountSnapshot>,
}

#[derive(Debug, Clone, Default)]
struct CountSnapshot {
    /// Deliveries processed while counting, set by the caller at the end of a run.
    deliveries: u64,
    port_calls: u64,
    dynamodb_calls: u64,
    write_units: u64,
    /// The part of `write_units` spent on id cross-reference items, written when an id is new.
    cross_reference_write_units: u64,
    read_units: u64,
    conflicts: u64,
    loads: u64,
    saves: u64,
    appends: u64,
    marks: u64,
    mark_checks: u64,
    largest_state_item: usize,
}

impl CountingStore {
    fn new(inner: Arc<dyn RecordStore>, compute_sizes: bool) -> Self {
        Self {
            inner,
            compute_sizes,
            counts: Mutex::default(),
        }
    }

    fn counts(&self) -> MutexGuard<'_, CountSnapshot> {
        self.counts.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn reset(&self) {
        *self.counts() = CountSnapshot::default();
    }

    fn snapshot(&self) -> CountSnapshot {
        self.counts().clone()
    }
}

#[async_trait]
impl RecordStore for CountingStore {
    async fn load(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        let loaded = self.inner.load(key).await?;
        let item_bytes = match &loaded {
            Some(record) if self.compute_sizes => item_size::state(record, record.revision),
            _ => 0,
        };
        let mut counts = self.counts();
        counts.port_calls += 1;
        counts.loads += 1;
        counts.dynamodb_calls += 1;
        counts.read_units += item_size::read_units(item_bytes);
        Ok(loaded)
    }

    async fn save(&self, record: &Record) -> Result<u64, StoreError> {
        let saved = self.inner.save(record).await;
        let mut write_units = 0;
        let mut cross_reference_units = 0;
        let mut state_bytes = 0;
        if self.compute_sizes {
            state_bytes = item_size::state(record, record.revision + 1);
            // A put whose condition fails consumes its write units too.
            write_units += item_size::write_units(state_bytes);
            for (system, external_id) in &record.ids {
                if record.indexed_ids.get(system) == Some(external_id) {
                    continue;
                }
                cross_reference_units +=
                    item_size::write_units(item_size::cross_reference(record, system, external_id));
            }
        }
        let mut counts = self.counts();
        counts.port_calls += 1;
        counts.saves += 1;
        // One BatchWriteItem of the cross-references not written yet, if any, then the PutItem.
        let new_ids = record
            .ids
            .iter()
            .any(|(system, id)| record.indexed_ids.get(system) != Some(id));
        counts.dynamodb_calls += if new_ids { 2 } else { 1 };
        counts.write_units += write_units + cross_reference_units;
        counts.cross_reference_write_units += cross_reference_units;
        counts.largest_state_item = counts.largest_state_item.max(state_bytes);
        if saved.as_ref().is_err_and(StoreError::is_conflict) {
            counts.conflicts += 1;
        }
        saved
    }

    async fn append_decisions(&self, decisions: &[Decision]) -> Result<(), StoreError> {
        self.inner.append_decisions(decisions).await?;
        let mut counts = self.counts();
        counts.port_calls += 1;
        counts.appends += 1;
        counts.dynamodb_calls += decisions.len().div_ceil(25) as u64;
        if self.compute_sizes {
            for (position, decision) in decisions.iter().enumerate() {
                counts.write_units += item_size::write_units(item_size::decision(decision, position));
            }
        }
        Ok(())
    }

    async fn decisions(&self, key: &RecordKey) -> Result<Vec<Decision>, StoreError> {
        self.inner.decisions(key).await
    }

    async fn mark_delivered(&self, delivery_id: &str, ttl: Duration) -> Result<(), StoreError> {
        self.inner.mark_delivered(delivery_id, ttl).await?;
        let mut counts = self.counts();
        counts.port_calls += 1;
        counts.marks += 1;
        counts.dynamodb_calls += 1;
        counts.write_units += item_size::write_units(item_size::delivery_mark(delivery_id));
        Ok(())
    }

    async fn was_delivered(&self, delivery_id: &str) -> Result<bool, StoreError> {
        let delivered = self.inner.was_delivered(delivery_id).await?;
        let mut counts = self.counts();
        counts.port_calls += 1;
        counts.mark_checks += 1;
        counts.dynamodb_calls += 1;
        counts.read_units += item_size::read_units(item_size::delivery_mark(delivery_id));
        Ok(delivered)
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

/// Item sizes as DynamoDB counts them: the UTF-8 length of each attribute name plus the size of
/// its value (the UTF-8 length of a string, about one byte per two digits plus one for a
/// number). The key formats and attributes are those `docs/dynamodb.md` describes for
/// `DynamoStore`.
mod item_size {
    use super::*;

    /// An epoch-seconds `ttl` value has 10 digits.
    const TTL_DIGITS: usize = 10;

    fn string(name: &str, value: &str) -> usize {
        name.len() + value.len()
    }

    fn number(name: &str, digits: usize) -> usize {
        name.len() + digits.div_ceil(2) + 1
    }

    pub(super) fn write_units(bytes: usize) -> u64 {
        bytes.div_ceil(1024).max(1) as u64
    }

    /// Strongly consistent reads: one unit per started 4 KB, at least one even for no item.
    pub(super) fn read_units(bytes: usize) -> u64 {
        bytes.div_ceil(4096).max(1) as u64
    }

    /// The state item of `record` as stored with `revision`.
    pub(super) fn state(record: &Record, revision: u64) -> usize {
        let mut stored = record.clone();
        stored.revision = revision;
        let doc = serde_json::to_string(&stored).map_or(0, |doc| doc.len());
        let key = &record.key;
        let pk = format!("REC#{}#{}#{}", key.integration, key.entity, key.key);
        string("pk", &pk) + string("sk", "STATE") + number("revision", revision.to_string().len()) + "doc".len() + doc
    }

    pub(super) fn cross_reference(record: &Record, system: &SystemId, external_id: &str) -> usize {
        let key = &record.key;
        let pk = format!("XID#{}#{system}#{}#{external_id}", key.integration, key.entity);
        let record_key = serde_json::to_string(key).map_or(0, |json| json.len());
        string("pk", &pk) + string("sk", "XID") + "record".len() + record_key
    }

    pub(super) fn decision(decision: &Decision, position: usize) -> usize {
        let key = &decision.record;
        let pk = format!("LOG#{}#{}#{}", key.integration, key.entity, key.key);
        let decided_at = decision.decided_at.to_rfc3339_opts(SecondsFormat::Nanos, true);
        let sk = format!("{decided_at}#{position:06}#{}", decision.field);
        let doc = serde_json::to_string(decision).map_or(0, |doc| doc.len());
        string("pk", &pk) + string("sk", &sk) + "doc".len() + doc + number("ttl", TTL_DIGITS)
    }

    pub(super) fn delivery_mark(delivery_id: &str) -> usize {
        string("pk", &format!("DLV#{delivery_id}")) + string("sk", "DLV") + number("ttl", TTL_DIGITS)
    }
}

/// Writes the state item of the first record again with `ReturnConsumedCapacity::Total`, and
/// prints the capacity DynamoDB Local reports next to the computed write units.
async fn compare_reported_capacity(
    client: &aws_sdk_dynamodb::Client,
    table: &str,
    store: &dyn RecordStore,
) -> BoxResult<()> {
    let key = record_key(0);
    let Some(record) = store.load(&key).await? else {
        return Err(format!("record {key} was not stored").into());
    };
    let pk = format!("REC#{}#{}#{}", key.integration, key.entity, key.key);
    let item = client
        .get_item()
        .table_name(table)
        .key("pk", AttributeValue::S(pk.clone()))
        .key("sk", AttributeValue::S("STATE".to_owned()))
        .consistent_read(true)
        .return_consumed_capacity(ReturnConsumedCapacity::Total)
        .send()
        .await?;
    let read_reported = item.consumed_capacity().and_then(|capacity| capacity.capacity_units());
    let Some(stored_item) = item.item().cloned() else {
        return Err(format!("no state item for {key}").into());
    };
    let put = client
        .put_item()
        .table_name(table)
        .set_item(Some(stored_item))
        .return_consumed_capacity(ReturnConsumedCapacity::Total)
        .send()
        .await?;
    let write_reported = put.consumed_capacity().and_then(|capacity| capacity.capacity_units());
    let bytes = item_size::state(&record, record.revision);
    println!(
        "state item of {key}: computed {bytes} bytes, {} WCU and {} RCU; DynamoDB Local reported {} WCU for a \
         PutItem and {} RCU for a GetItem",
        item_size::write_units(bytes),
        item_size::read_units(bytes),
        reported(write_reported),
        reported(read_reported),
    );
    Ok(())
}

fn reported(units: Option<f64>) -> String {
    units.map_or_else(|| "nothing".to_owned(), |units| units.to_string())
}
