//! The record store on one DynamoDB table. `docs/dynamodb.md` describes the items and the
//! capacity each call uses.

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::client::Waiters;
use aws_sdk_dynamodb::operation::create_table::CreateTableError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, Delete, KeySchemaElement, KeyType, Put, PutRequest,
    ScalarAttributeType, TimeToLiveSpecification, TimeToLiveStatus, TransactWriteItem, WriteRequest,
};
use aws_sdk_dynamodb::Client;
use chrono::Utc;
use fieldsync_core::ports::{RecordStore, StoreError};
use fieldsync_core::{Decision, EntityType, OpenTask, Record, RecordKey, SystemId, Task};
use tracing::debug;

use crate::items::{self, Item, ItemError, DOC, PK, RECORD, REVISION, SK, TTL};
use crate::{boxed, SetupError};

/// Items per BatchWriteItem call, the DynamoDB maximum.
const BATCH_WRITE_MAX_ITEMS: usize = 25;

/// BatchWriteItem calls per chunk before items DynamoDB left unprocessed fail the write.
const BATCH_WRITE_MAX_ATTEMPTS: u32 = 6;

/// Wait before the first retry of unprocessed items. It doubles with each further retry.
const BATCH_WRITE_FIRST_BACKOFF: Duration = Duration::from_millis(50);

/// How long [`DynamoStore::create_table`] waits for a new table to become active.
const TABLE_ACTIVE_TIMEOUT: Duration = Duration::from_secs(120);

/// The record store on one DynamoDB table with string keys `pk` and `sk`.
///
/// [`RecordStore::save`] first writes one id cross-reference item per entry of `record.ids`,
/// unconditionally and in one BatchWriteItem call, then puts the record state item on the
/// condition that the stored revision is the one the record was loaded with. The cross-references
/// go first because they hold on their own: an external id names the same record whether or not
/// the state write that follows wins its race. So a crash or a lost race between the two writes
/// leaves at most a correct cross-reference behind, never a stored id without one.
///
/// A TransactWriteItems call would write both atomically, but a transaction charges two write
/// capacity units per started 1 KB instead of one. For a record with two ids and a 4.4 KB state
/// item (the estimate in `docs/dynamodb.md`), a save costs 2 + 5 = 7 WCU this way and 14 WCU in
/// a transaction.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// Creates a store on `table`, which must exist (see [`DynamoStore::create_table`]).
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Returns the table name.
    pub fn table(&self) -> &str {
        &self.table
    }

    /// Builds a concurrency governor that keeps its slots on this store's table.
    pub fn governor(&self) -> crate::DynamoGovernor {
        crate::DynamoGovernor::new(self.client.clone(), self.table.as_str())
    }

    /// Creates the table with on-demand billing, waits until it is active and enables TTL on the
    /// `ttl` attribute. Succeeds without changes when the table exists and TTL is on, so tests
    /// and local runs can call it on every start.
    pub async fn create_table(&self) -> Result<(), SetupError> {
        let setup_error = |error| self.setup_error(error);
        let pk_definition = string_attribute_definition(PK).map_err(setup_error)?;
        let sk_definition = string_attribute_definition(SK).map_err(setup_error)?;
        let pk_schema = key_schema_element(PK, KeyType::Hash).map_err(setup_error)?;
        let sk_schema = key_schema_element(SK, KeyType::Range).map_err(setup_error)?;
        let created = self
            .client
            .create_table()
            .table_name(&self.table)
            .attribute_definitions(pk_definition)
            .attribute_definitions(sk_definition)
            .key_schema(pk_schema)
            .key_schema(sk_schema)
            .billing_mode(BillingMode::PayPerRequest)
            .send()
            .await;
        match created {
            Ok(_) => debug!(table = self.table, "created DynamoDB table"),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(CreateTableError::is_resource_in_use_exception) =>
            {
                debug!(table = self.table, "DynamoDB table exists already");
            }
            Err(error) => return Err(self.setup_error(error)),
        }

        self.client
            .wait_until_table_exists()
            .table_name(&self.table)
            .wait(TABLE_ACTIVE_TIMEOUT)
            .await
            .map_err(|error| self.setup_error(error))?;

        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(|error| self.setup_error(error))?;
        let ttl_status = ttl
            .time_to_live_description()
            .and_then(|description| description.time_to_live_status());
        if matches!(ttl_status, Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)) {
            return Ok(());
        }
        let specification = TimeToLiveSpecification::builder()
            .enabled(true)
            .attribute_name(TTL)
            .build()
            .map_err(|error| self.setup_error(error))?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(specification)
            .send()
            .await
            .map_err(|error| self.setup_error(error))?;
        debug!(table = self.table, attribute = TTL, "enabled TTL");
        Ok(())
    }

    /// Claims a webhook delivery id, so that a redelivered webhook is dropped. Returns `true`
    /// for the first claim and `false` while an earlier claim is younger than `ttl`.
    ///
    /// The condition also accepts a claim whose `ttl` has passed, because DynamoDB deletes expired
    /// items only some time after they expire.
    pub async fn claim_delivery(&self, delivery_id: &str, ttl: Duration) -> Result<bool, StoreError> {
        let now = Utc::now();
        let ttl = chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let expires_at = now.checked_add_signed(ttl).unwrap_or(chrono::DateTime::<Utc>::MAX_UTC);

        let mut item = items::key(items::delivery_pk(delivery_id), items::DELIVERY_SK);
        item.insert(TTL.to_owned(), items::epoch_seconds(expires_at));
        let claimed = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#pk) OR #ttl < :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#ttl", TTL)
            .expression_attribute_values(":now", items::epoch_seconds(now))
            .send()
            .await;
        match claimed {
            Ok(_) => Ok(true),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(PutItemError::is_conditional_check_failed_exception) =>
            {
                debug!(delivery_id, "delivery was claimed before");
                Ok(false)
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    /// Reads a delivery mark with a strongly consistent read, treating an expired mark that
    /// DynamoDB has not deleted yet as absent.
    async fn delivery_mark_alive(&self, delivery_id: &str) -> Result<bool, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(items::key(items::delivery_pk(delivery_id), items::DELIVERY_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let now = Utc::now().timestamp();
        let alive = output
            .item()
            .and_then(|item| item.get(TTL))
            .and_then(|ttl| ttl.as_n().ok())
            .and_then(|ttl| ttl.parse::<i64>().ok())
            .is_some_and(|expires_at| expires_at > now);
        Ok(alive)
    }

    /// Writes items with BatchWriteItem, 25 per call, and resends the items DynamoDB leaves
    /// unprocessed with exponential backoff, up to [`BATCH_WRITE_MAX_ATTEMPTS`] calls per chunk.
    async fn batch_put(&self, items: Vec<Item>) -> Result<(), StoreError> {
        let mut requests = Vec::with_capacity(items.len());
        for item in items {
            let put = PutRequest::builder()
                .set_item(Some(item))
                .build()
                .map_err(unavailable)?;
            requests.push(WriteRequest::builder().put_request(put).build());
        }

        for chunk in requests.chunks(BATCH_WRITE_MAX_ITEMS) {
            let mut pending = chunk.to_vec();
            let mut backoff = BATCH_WRITE_FIRST_BACKOFF;
            for attempt in 1..=BATCH_WRITE_MAX_ATTEMPTS {
                let output = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, pending)
                    .send()
                    .await
                    .map_err(unavailable)?;
                pending = output
                    .unprocessed_items()
                    .and_then(|unprocessed| unprocessed.get(&self.table))
                    .cloned()
                    .unwrap_or_default();
                if pending.is_empty() {
                    break;
                }
                if attempt == BATCH_WRITE_MAX_ATTEMPTS {
                    let error = UnprocessedItems {
                        count: pending.len(),
                        attempts: attempt,
                    };
                    return Err(StoreError::Unavailable { source: boxed(error) });
                }
                debug!(
                    table = self.table,
                    unprocessed = pending.len(),
                    attempt,
                    "retrying unprocessed items"
                );
                tokio::time::sleep(backoff).await;
                backoff *= 2;
            }
        }
        Ok(())
    }

    /// Puts the state item and the record's entry of the task list in one transaction, so the
    /// list never shows a task the stored record lacks or misses one it has. Only saves that open
    /// or close a task take this path, because a transaction costs twice the write units.
    async fn save_with_tasks(&self, record: &Record, state: Item, revision: u64) -> Result<u64, StoreError> {
        let state_put = Put::builder().table_name(&self.table).set_item(Some(state));
        let state_put = if record.revision == 0 {
            state_put
                .condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
        } else {
            state_put
                .condition_expression("#revision = :expected")
                .expression_attribute_names("#revision", REVISION)
                .expression_attribute_values(":expected", items::number(record.revision))
        };
        let state_put = state_put.build().map_err(unavailable)?;

        let task_key = items::key(items::tasks_pk(&record.key.integration), &items::record_pk(&record.key));
        let task_write = if record.tasks.is_empty() {
            let delete = Delete::builder()
                .table_name(&self.table)
                .set_key(Some(task_key))
                .build()
                .map_err(unavailable)?;
            TransactWriteItem::builder().delete(delete).build()
        } else {
            let mut task_item = task_key;
            let record_key = serde_json::to_string(&record.key).map_err(|error| corrupt(&record.key, error))?;
            let tasks = serde_json::to_string(&record.tasks).map_err(|error| corrupt(&record.key, error))?;
            task_item.insert(RECORD.to_owned(), AttributeValue::S(record_key));
            task_item.insert(DOC.to_owned(), AttributeValue::S(tasks));
            let put = Put::builder()
                .table_name(&self.table)
                .set_item(Some(task_item))
                .build()
                .map_err(unavailable)?;
            TransactWriteItem::builder().put(put).build()
        };

        let written = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(state_put).build())
            .transact_items(task_write)
            .send()
            .await;
        match written {
            Ok(_) => Ok(revision),
            Err(error) if error.as_service_error().is_some_and(state_condition_failed) => {
                debug!(record = %record.key, revision = record.revision, "conditional write lost to another writer");
                Err(StoreError::Conflict {
                    record: record.key.clone(),
                })
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    fn setup_error(&self, error: impl std::error::Error + Send + Sync + 'static) -> SetupError {
        SetupError::Table {
            table: self.table.clone(),
            source: boxed(error),
        }
    }
}

#[async_trait]
impl RecordStore for DynamoStore {
    async fn load(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(items::key(items::record_pk(key), items::STATE_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = output.item() else {
            return Ok(None);
        };
        read_record(item).map(Some).map_err(|error| corrupt(key, error))
    }

    async fn save(&self, record: &Record) -> Result<u64, StoreError> {
        let revision = record.revision + 1;
        let mut stored = record.clone();
        stored.revision = revision;
        // Only ids whose cross-reference is not written yet cost a write; the stored record then
        // lists every id as written. A lost race below leaves extra cross-references, which are
        // true anyway, and the next save writes them again.
        stored.indexed_ids = record.ids.clone();
        stored.indexed_tasks = record.tasks.clone();
        // serde_json fails here only on a map key that is not a string or on a failing `Serialize`
        // impl. `StoreError` has no variant for an unwritable record, so this reports `Corrupt`.
        let document = serde_json::to_string(&stored).map_err(|error| corrupt(&record.key, error))?;

        let cross_references = cross_reference_items(record).map_err(|error| corrupt(&record.key, error))?;
        if !cross_references.is_empty() {
            self.batch_put(cross_references).await?;
        }

        let mut item = items::key(items::record_pk(&record.key), items::STATE_SK);
        item.insert(REVISION.to_owned(), items::number(revision));
        item.insert(DOC.to_owned(), AttributeValue::S(document));
        if record.tasks != record.indexed_tasks {
            return self.save_with_tasks(record, item, revision).await;
        }
        let put = self.client.put_item().table_name(&self.table).set_item(Some(item));
        let put = if record.revision == 0 {
            put.condition_expression("attribute_not_exists(#pk)")
                .expression_attribute_names("#pk", PK)
        } else {
            put.condition_expression("#revision = :expected")
                .expression_attribute_names("#revision", REVISION)
                .expression_attribute_values(":expected", items::number(record.revision))
        };

        match put.send().await {
            Ok(_) => Ok(revision),
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(PutItemError::is_conditional_check_failed_exception) =>
            {
                debug!(record = %record.key, revision = record.revision, "conditional write lost to another writer");
                Err(StoreError::Conflict {
                    record: record.key.clone(),
                })
            }
            Err(error) => Err(unavailable(error)),
        }
    }

    async fn append_decisions(&self, decisions: &[Decision]) -> Result<(), StoreError> {
        let mut log_items = Vec::with_capacity(decisions.len());
        for (position, decision) in decisions.iter().enumerate() {
            let document = serde_json::to_string(decision).map_err(|error| corrupt(&decision.record, error))?;
            let expires_at = decision.decided_at + items::DECISION_RETENTION;
            let mut item = items::key(items::log_pk(&decision.record), &items::log_sk(decision, position));
            item.insert(DOC.to_owned(), AttributeValue::S(document));
            item.insert(TTL.to_owned(), items::epoch_seconds(expires_at));
            log_items.push(item);
        }
        if log_items.is_empty() {
            return Ok(());
        }
        self.batch_put(log_items).await
    }

    async fn decisions(&self, key: &RecordKey) -> Result<Vec<Decision>, StoreError> {
        let mut decisions = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", AttributeValue::S(items::log_pk(key)))
                .scan_index_forward(true)
                .consistent_read(true)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                decisions.push(items::json_attribute(item, DOC).map_err(|error| corrupt(key, error))?);
            }
            start_key = page.last_evaluated_key().cloned();
            if start_key.is_none() {
                return Ok(decisions);
            }
        }
    }

    async fn mark_delivered(&self, delivery_id: &str, ttl: Duration) -> Result<(), StoreError> {
        // A mark that already exists is as good as a new one, so the claim's result is not needed.
        self.claim_delivery(delivery_id, ttl).await.map(|_| ())
    }

    async fn was_delivered(&self, delivery_id: &str) -> Result<bool, StoreError> {
        self.delivery_mark_alive(delivery_id).await
    }

    async fn find_by_external_id(
        &self,
        integration: &str,
        system: &SystemId,
        entity: &EntityType,
        external_id: &str,
    ) -> Result<Option<RecordKey>, StoreError> {
        let pk = items::xid_pk(integration, system, entity, external_id);
        let output = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(items::key(pk, items::XID_SK)))
            .consistent_read(true)
            .send()
            .await
            .map_err(unavailable)?;
        let Some(item) = output.item() else {
            return Ok(None);
        };
        let record = items::json_attribute(item, RECORD).map_err(|error| StoreError::Unavailable {
            source: boxed(UnreadableCrossReference {
                external_id: external_id.to_owned(),
                source: error,
            }),
        })?;
        Ok(Some(record))
    }

    async fn open_tasks(&self, integration: &str) -> Result<Vec<OpenTask>, StoreError> {
        let mut open = Vec::new();
        let mut start_key = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_values(":pk", AttributeValue::S(items::tasks_pk(integration)))
                .consistent_read(true)
                .set_exclusive_start_key(start_key)
                .send()
                .await
                .map_err(unavailable)?;
            for item in page.items() {
                let record: RecordKey =
                    items::json_attribute(item, RECORD).map_err(|error| task_list_unreadable(integration, error))?;
                let tasks: Vec<Task> =
                    items::json_attribute(item, DOC).map_err(|error| task_list_unreadable(integration, error))?;
                open.extend(tasks.into_iter().map(|task| OpenTask {
                    record: record.clone(),
                    task,
                }));
            }
            start_key = page.last_evaluated_key().cloned();
            if start_key.is_none() {
                return Ok(open);
            }
        }
    }
}

/// Tells whether a transaction failed because the state item's revision condition failed, read
/// from the cancellation reason of its first item, the state put.
fn state_condition_failed(error: &TransactWriteItemsError) -> bool {
    let TransactWriteItemsError::TransactionCanceledException(canceled) = error else {
        return false;
    };
    canceled
        .cancellation_reasons()
        .first()
        .and_then(|reason| reason.code())
        .is_some_and(|code| code == "ConditionalCheckFailed")
}

/// An item of the task list that is not readable.
#[derive(Debug, thiserror::Error)]
#[error("an item of the task list of integration {integration:?} is unreadable")]
struct UnreadableTaskList {
    integration: String,
    #[source]
    source: ItemError,
}

fn task_list_unreadable(integration: &str, error: ItemError) -> StoreError {
    StoreError::Unavailable {
        source: boxed(UnreadableTaskList {
            integration: integration.to_owned(),
            source: error,
        }),
    }
}

/// A cross-reference item that is not readable, so the record it names is unknown.
#[derive(Debug, thiserror::Error)]
#[error("cross-reference item for external id {external_id:?} is unreadable")]
struct UnreadableCrossReference {
    external_id: String,
    #[source]
    source: ItemError,
}

/// Items that BatchWriteItem still left unprocessed after the last retry.
#[derive(Debug, thiserror::Error)]
#[error("DynamoDB left {count} items unprocessed after {attempts} BatchWriteItem calls")]
struct UnprocessedItems {
    count: usize,
    attempts: u32,
}

fn read_record(item: &Item) -> Result<Record, ItemError> {
    let mut record: Record = items::json_attribute(item, DOC)?;
    // The `revision` attribute is the one conditions compare, so it wins over the copy in `doc`.
    record.revision = items::number_attribute(item, REVISION)?;
    Ok(record)
}

fn cross_reference_items(record: &Record) -> Result<Vec<Item>, serde_json::Error> {
    let record_key = serde_json::to_string(&record.key)?;
    let key = &record.key;
    let mut cross_references = Vec::with_capacity(record.ids.len());
    for (system, external_id) in &record.ids {
        if record.indexed_ids.get(system) == Some(external_id) {
            continue;
        }
        let pk = items::xid_pk(&key.integration, system, &key.entity, external_id);
        let mut item = items::key(pk, items::XID_SK);
        item.insert(RECORD.to_owned(), AttributeValue::S(record_key.clone()));
        cross_references.push(item);
    }
    Ok(cross_references)
}

fn string_attribute_definition(name: &str) -> Result<AttributeDefinition, aws_sdk_dynamodb::error::BuildError> {
    AttributeDefinition::builder()
        .attribute_name(name)
        .attribute_type(ScalarAttributeType::S)
        .build()
}

fn key_schema_element(name: &str, key_type: KeyType) -> Result<KeySchemaElement, aws_sdk_dynamodb::error::BuildError> {
    KeySchemaElement::builder()
        .attribute_name(name)
        .key_type(key_type)
        .build()
}

fn unavailable(error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Unavailable { source: boxed(error) }
}

fn corrupt(record: &RecordKey, error: impl std::error::Error + Send + Sync + 'static) -> StoreError {
    StoreError::Corrupt {
        record: record.clone(),
        source: boxed(error),
    }
}
