//! Reconciling a batch of queued changes: decide, store conditionally, then write out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use fieldsync_core::ports::{RecordStore, StoreError, SystemClient, SystemError};
use fieldsync_core::{reconcile, ChangeSet, Decision, OutboundWrite, Record, RecordKey, Rules, SystemId};
use rand::Rng;
use tracing::{debug, error, info, warn};

use crate::message;

/// Conditional-write attempts per record before the batch item fails and SQS redelivers it.
const MAX_CONFLICT_RETRIES: u32 = 8;

/// How long an applied delivery is remembered: past the longest sender retry window among the
/// supported platforms (Shopify retries for 4 hours, Business Central for 36, BigCommerce for 48).
const DELIVERY_MEMORY: Duration = Duration::from_secs(49 * 3600);

/// One queued message of a batch.
#[derive(Debug, Clone)]
pub struct BatchItem {
    pub message_id: String,
    pub body: String,
}

/// The result of a batch: the messages to retry, and counters.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchReport {
    /// Message ids that failed and must be delivered again.
    pub failed: Vec<String>,
    /// The maximum wait a rate-limited system requested, if any.
    pub retry_after: Option<Duration>,
    pub conflicts_retried: u32,
    pub writes: u32,
}

/// A failure to complete one record's changes.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    #[error("queue message {message_id} is not a change set")]
    Undecodable {
        message_id: String,
        #[source]
        source: serde_json::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("outbound write to {system} for {record} failed")]
    Write {
        system: SystemId,
        record: RecordKey,
        #[source]
        source: SystemError,
    },
    #[error("no connector configured for system {system}")]
    NoConnector { system: SystemId },
}

/// Applies field-ownership rules to queued changes and writes the winners to their targets.
#[derive(Debug, Clone)]
pub struct Reconciler {
    rules: Arc<Rules>,
    store: Arc<dyn RecordStore>,
    systems: BTreeMap<SystemId, Arc<dyn SystemClient>>,
}

impl Reconciler {
    /// Builds a reconciler over a store and one client per system named in the rules.
    pub fn new(
        rules: Arc<Rules>,
        store: Arc<dyn RecordStore>,
        systems: BTreeMap<SystemId, Arc<dyn SystemClient>>,
    ) -> Self {
        Self { rules, store, systems }
    }

    /// Returns the rules this reconciler applies.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Processes a batch. Messages are grouped by record; within a group they are applied in
    /// order, and once one fails, it and every later message of that record are reported failed,
    /// so SQS FIFO redelivers them in order.
    pub async fn process_batch(&self, items: &[BatchItem]) -> BatchReport {
        let mut report = BatchReport::default();
        let mut groups: Vec<(RecordKey, Vec<(&BatchItem, ChangeSet)>)> = Vec::new();
        for item in items {
            let change = match message::decode(&item.body) {
                Ok(change) => change,
                Err(source) => {
                    let error = ReconcileError::Undecodable {
                        message_id: item.message_id.clone(),
                        source,
                    };
                    error!(message_id = item.message_id, error = %error, "message left for the dead-letter queue");
                    report.failed.push(item.message_id.clone());
                    continue;
                }
            };
            if self.already_applied(&change).await {
                info!(message_id = item.message_id, record = %change.record, event_id = change.event_id, "delivery already applied; dropped");
                continue;
            }
            match groups.iter_mut().find(|(key, _)| *key == change.record) {
                Some((_, group)) => group.push((item, change)),
                None => groups.push((change.record.clone(), vec![(item, change)])),
            }
        }

        for (key, group) in groups {
            let changes: Vec<ChangeSet> = group.iter().map(|(_, change)| change.clone()).collect();
            let result = self.process_record(&key, &changes, &mut report).await;
            if result.is_ok() {
                self.remember_applied(&changes).await;
            }
            if let Err(error) = result {
                if let ReconcileError::Write {
                    source: SystemError::RateLimited { retry_after, .. },
                    ..
                } = &error
                {
                    report.retry_after = report.retry_after.max(*retry_after).or(Some(Duration::from_secs(1)));
                }
                warn!(record = %key, error = %error, messages = group.len(), "record not reconciled; will retry");
                report
                    .failed
                    .extend(group.iter().map(|(item, _)| item.message_id.clone()));
            }
        }
        report
    }

    /// Tells whether a change's delivery was applied before. A store failure here is logged and
    /// treated as "not applied": the record's own list of recent events still drops a duplicate.
    async fn already_applied(&self, change: &ChangeSet) -> bool {
        match self.store.was_delivered(&change.dedup_id()).await {
            Ok(applied) => applied,
            Err(error) => {
                warn!(record = %change.record, event_id = change.event_id, error = %error, "delivery lookup failed; deciding anyway");
                false
            }
        }
    }

    /// Marks the deliveries of applied changes, so late redeliveries are dropped early.
    async fn remember_applied(&self, changes: &[ChangeSet]) {
        for change in changes {
            if let Err(error) = self.store.mark_delivered(&change.dedup_id(), DELIVERY_MEMORY).await {
                warn!(record = %change.record, event_id = change.event_id, error = %error, "delivery mark failed");
            }
        }
    }

    /// Decides every change of one record, stores the result with one conditional write, and
    /// flushes the record's outbox.
    async fn process_record(
        &self,
        key: &RecordKey,
        changes: &[ChangeSet],
        report: &mut BatchReport,
    ) -> Result<(), ReconcileError> {
        let mut attempt = 0;
        let (record, decisions) = loop {
            let now = Utc::now();
            let mut record = self.store.load(key).await?;
            let mut decisions = Vec::new();
            let mut changed = false;
            for change in changes {
                let reconciled = reconcile(&self.rules, record.take(), change, now);
                decisions.extend(reconciled.decisions);
                changed |= reconciled.changed;
                record = Some(reconciled.record);
            }
            let mut record = record.unwrap_or_else(|| Record::new(key.clone()));
            if !changed {
                break (record, decisions);
            }
            match self.store.save(&record).await {
                Ok(revision) => {
                    record.revision = revision;
                    break (record, decisions);
                }
                Err(error) if error.is_conflict() && attempt < MAX_CONFLICT_RETRIES => {
                    attempt += 1;
                    report.conflicts_retried += 1;
                    debug!(record = %key, attempt, "conditional write lost a race; deciding again on fresh state");
                    backoff(attempt).await;
                }
                Err(error) => return Err(error.into()),
            }
        };

        log_decisions(&decisions);
        if let Err(error) = self.store.append_decisions(&decisions).await {
            // The record state is stored; only the audit trail of this batch is missing.
            error!(record = %key, error = %error, entries = decisions.len(), "decision log append failed");
        }
        self.flush(record, report).await
    }

    /// Sends every pending outbound write of a record, confirming each in the store.
    async fn flush(&self, mut record: Record, report: &mut BatchReport) -> Result<(), ReconcileError> {
        while let Some(pending) = record.outbox.first().cloned() {
            let client = self
                .systems
                .get(&pending.target)
                .ok_or_else(|| ReconcileError::NoConnector {
                    system: pending.target.clone(),
                })?;
            let mut write = pending.clone();
            write.target_id = write.target_id.or_else(|| record.ids.get(&write.target).cloned());

            let mut rejected = false;
            let target_id = match client.write(&write).await {
                Ok(receipt) => {
                    report.writes += 1;
                    let lag_ms = (Utc::now() - write.changed_at).num_milliseconds();
                    info!(record = %record.key, system = %write.target, kind = ?write.kind, fields = write.fields.len(), lag_ms, "write applied");
                    receipt.target_id
                }
                Err(error) if !error.is_retryable() => {
                    // Retrying the same values cannot succeed, so the write leaves the outbox and a
                    // person must act on this log line.
                    error!(record = %record.key, system = %write.target, error = %error, "write rejected by the target; dropped");
                    rejected = true;
                    None
                }
                Err(source) => {
                    return Err(ReconcileError::Write {
                        system: write.target.clone(),
                        record: record.key.clone(),
                        source,
                    });
                }
            };
            record = self.confirm(record, &pending, target_id, rejected, report).await?;
        }
        Ok(())
    }

    /// Removes a sent write from the stored outbox, and a `rejected` one from the echo ledger
    /// too, re-reading the record after a lost race.
    async fn confirm(
        &self,
        mut record: Record,
        sent: &OutboundWrite,
        target_id: Option<String>,
        rejected: bool,
        report: &mut BatchReport,
    ) -> Result<Record, ReconcileError> {
        let mut attempt = 0;
        loop {
            if rejected {
                record.forget_write(sent);
            }
            record.confirm_write(sent, target_id.clone());
            match self.store.save(&record).await {
                Ok(revision) => {
                    record.revision = revision;
                    return Ok(record);
                }
                Err(error) if error.is_conflict() && attempt < MAX_CONFLICT_RETRIES => {
                    attempt += 1;
                    report.conflicts_retried += 1;
                    backoff(attempt).await;
                    record = self
                        .store
                        .load(&record.key)
                        .await?
                        .unwrap_or_else(|| Record::new(record.key.clone()));
                }
                Err(error) => return Err(error.into()),
            }
        }
    }
}

fn log_decisions(decisions: &[Decision]) {
    for decision in decisions {
        info!(
            record = %decision.record,
            field = %decision.field,
            system = %decision.source,
            event_id = decision.event_id,
            outcome = decision.outcome.as_str(),
            targets = ?decision.targets,
            reason = decision.reason,
            "decision"
        );
    }
}

/// Sleeps a jittered, exponentially growing delay: up to 10 ms, 20 ms, 40 ms… capped at 640 ms.
async fn backoff(attempt: u32) {
    let ceiling_ms = 10u64 << attempt.min(6);
    let delay = rand::thread_rng().gen_range(1..=ceiling_ms);
    tokio::time::sleep(Duration::from_millis(delay)).await;
}
