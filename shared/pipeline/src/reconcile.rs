//! Reconciling a batch of queued changes: decide, store conditionally, then write out.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use fieldsync_core::ports::{RecordStore, StoreError, SystemClient, SystemError};
use fieldsync_core::{
    reconcile, refresh_task_titles, ChangeSet, Decision, Notice, NoticeKind, OutboundWrite, Outcome, Record, RecordKey,
    Rules, SystemId,
};
use rand::Rng;
use tracing::{debug, error, info, warn};

use crate::message::{self, Queued};
use crate::report::ErrorChain;

mod parking;
mod reads;

use reads::RecentReads;

/// Conditional-write attempts per record before the batch item fails and SQS redelivers it.
const MAX_CONFLICT_RETRIES: u32 = 8;

/// How long a reconciler may take to send one claimed write before another may send it.
const WRITE_CLAIM: chrono::Duration = chrono::Duration::seconds(60);

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
    /// Conditional saves that lost a race and were redone on fresh state.
    pub conflicts_retried: u32,
    /// Outbound writes the targets accepted.
    pub writes: u32,
    /// Stored per-field decisions, by outcome. Decisions of an attempt that lost a race are
    /// counted once, from the attempt that was stored.
    pub decisions: BTreeMap<Outcome, u32>,
    /// Outbound write attempts by target and result.
    pub outbound: BTreeMap<(SystemId, WriteStatus), u32>,
    /// For each accepted write, its target and the time from the source's change to the
    /// target's response.
    pub lags: Vec<(SystemId, chrono::Duration)>,
}

/// The result of one outbound write attempt, as counted in [`BatchReport::outbound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WriteStatus {
    /// The target accepted the write.
    Ok,
    /// The target refused the write as invalid; it left the outbox.
    Rejected,
    /// The target asked fieldsync to slow down; the write stays in the outbox.
    RateLimited,
    /// The target failed or could not be reached; the write stays in the outbox.
    Failed,
}

impl WriteStatus {
    /// Returns the status's name as used in logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            WriteStatus::Ok => "ok",
            WriteStatus::Rejected => "rejected",
            WriteStatus::RateLimited => "rate_limited",
            WriteStatus::Failed => "failed",
        }
    }
}

impl BatchReport {
    fn count_write(&mut self, target: &SystemId, status: WriteStatus) {
        *self.outbound.entry((target.clone(), status)).or_default() += 1;
    }
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
    #[error("another reconciler is sending writes of {record}")]
    Busy { record: RecordKey },
}

/// The messages of one batch that concern one record, and the changes among them still to
/// decide.
struct RecordGroup<'a> {
    key: RecordKey,
    items: Vec<&'a BatchItem>,
    changes: Vec<ChangeSet>,
}

/// Applies field-ownership rules to queued changes and writes the winners to their targets.
#[derive(Debug, Clone)]
pub struct Reconciler {
    rules: Arc<Rules>,
    store: Arc<dyn RecordStore>,
    systems: BTreeMap<SystemId, Arc<dyn SystemClient>>,
    /// Shared by clones, so every worker of a process sees the reads the others applied.
    recent_reads: Arc<RecentReads>,
}

impl Reconciler {
    /// Builds a reconciler over a store and one client per system named in the rules.
    pub fn new(
        rules: Arc<Rules>,
        store: Arc<dyn RecordStore>,
        systems: BTreeMap<SystemId, Arc<dyn SystemClient>>,
    ) -> Self {
        Self {
            rules,
            store,
            systems,
            recent_reads: Arc::new(RecentReads::default()),
        }
    }

    /// Returns the rules this reconciler applies.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// Processes a batch. Messages are grouped by record and applied in order within a group.
    /// Once one fails, it and every later message of that record are reported failed, so SQS
    /// FIFO redelivers them in order.
    pub async fn process_batch(&self, items: &[BatchItem]) -> BatchReport {
        let mut report = BatchReport::default();
        let mut groups: Vec<RecordGroup<'_>> = Vec::new();
        // Notices of a resource whose read failed: later notices of it in this batch fail too,
        // so SQS FIFO redelivers them in order.
        let mut failed_resources: Vec<String> = Vec::new();
        let mut read_in_batch: BTreeMap<String, Vec<ChangeSet>> = BTreeMap::new();
        // Reads made in this batch: the notice's source and resource, when the read started, and
        // the message that asked for it. Each is remembered once that message succeeded.
        let mut reads_made: Vec<(SystemId, String, chrono::DateTime<Utc>, String)> = Vec::new();
        for item in items {
            let changes = match message::decode_queued(&item.body) {
                Ok(Queued::Change(change)) => vec![change],
                Ok(Queued::Notice { notice }) => {
                    if failed_resources.contains(&notice.group_id()) {
                        report.failed.push(item.message_id.clone());
                        continue;
                    }
                    // A read returns the resource's latest state, so later notices of the same
                    // resource in this batch reuse it instead of reading again.
                    if let Some(read) = read_in_batch.get(&notice.resource) {
                        read.iter()
                            .cloned()
                            .map(|mut change: ChangeSet| {
                                change.event_id.clone_from(&notice.event_id);
                                change
                            })
                            .collect()
                    } else if self.recent_reads.covers(&notice) {
                        debug!(
                            message_id = item.message_id,
                            resource = notice.resource,
                            "notice covered by a read that started after it arrived"
                        );
                        Vec::new()
                    } else {
                        let read_at = Utc::now();
                        match self.resolve(&notice).await {
                            Ok(changes) => {
                                if notice.kind != NoticeKind::Collection {
                                    read_in_batch.insert(notice.resource.clone(), changes.clone());
                                    reads_made.push((
                                        notice.source.clone(),
                                        notice.resource.clone(),
                                        read_at,
                                        item.message_id.clone(),
                                    ));
                                }
                                changes
                            }
                            Err(error) => {
                                if let SystemError::RateLimited { retry_after, .. } = &error {
                                    report.retry_after =
                                        report.retry_after.max(*retry_after).or(Some(Duration::from_secs(1)));
                                }
                                warn!(message_id = item.message_id, resource = notice.resource, error = %ErrorChain(&error), "resource read failed; will retry");
                                failed_resources.push(notice.group_id());
                                report.failed.push(item.message_id.clone());
                                continue;
                            }
                        }
                    }
                }
                Err(source) => {
                    let error = ReconcileError::Undecodable {
                        message_id: item.message_id.clone(),
                        source,
                    };
                    error!(message_id = item.message_id, error = %ErrorChain(&error), "message left for the dead-letter queue");
                    report.failed.push(item.message_id.clone());
                    continue;
                }
            };
            for change in changes {
                let index = match groups.iter().position(|group| group.key == change.record) {
                    Some(index) => index,
                    None => {
                        groups.push(RecordGroup {
                            key: change.record.clone(),
                            items: Vec::new(),
                            changes: Vec::new(),
                        });
                        groups.len() - 1
                    }
                };
                let group = &mut groups[index];
                if !group.items.iter().any(|known| known.message_id == item.message_id) {
                    group.items.push(item);
                }
                // An applied delivery is not decided again, but its record still takes part, so
                // that writes left in the outbox by a failed send go out on this redelivery.
                if self.already_applied(&change).await {
                    info!(message_id = item.message_id, record = %change.record, event_id = change.event_id, "delivery already applied; sending pending writes only");
                } else {
                    group.changes.push(change);
                }
            }
        }

        for group in groups {
            if let Err(error) = self.process_record(&group.key, &group.changes, &mut report).await {
                if let ReconcileError::Write {
                    source: SystemError::RateLimited { retry_after, .. },
                    ..
                } = &error
                {
                    report.retry_after = report.retry_after.max(*retry_after).or(Some(Duration::from_secs(1)));
                }
                warn!(record = %group.key, error = %ErrorChain(&error), messages = group.items.len(), "record not reconciled; will retry");
                for item in &group.items {
                    if !report.failed.contains(&item.message_id) {
                        report.failed.push(item.message_id.clone());
                    }
                }
            }
        }

        // A read's changes were all applied when the message that asked for it succeeded, since
        // a failed record fails every message with a change to it.
        for (source, resource, read_at, message_id) in reads_made {
            if !report.failed.contains(&message_id) {
                self.recent_reads.remember(&source, &resource, read_at);
            }
        }
        report
    }

    /// Reads the records a notice reports changed from its source, as change sets. A deleted
    /// record cannot be read and is only logged, because fieldsync does not delete records in
    /// the other system.
    async fn resolve(&self, notice: &Notice) -> Result<Vec<ChangeSet>, SystemError> {
        if notice.kind == NoticeKind::Deleted {
            info!(resource = notice.resource, source = %notice.source, "record deleted in its source; deletions are not synced");
            return Ok(Vec::new());
        }
        let Some(client) = self.systems.get(&notice.source) else {
            return Err(SystemError::Unavailable {
                system: notice.source.clone(),
                source: "no connector is configured to read this system".into(),
            });
        };
        let changes = client.fetch(notice).await?;
        debug!(resource = notice.resource, changes = changes.len(), "notice resolved");
        Ok(changes)
    }

    /// Tells whether a change's delivery was applied before. A store failure here is logged and
    /// treated as "not applied": the record's own list of recent events still drops a duplicate.
    async fn already_applied(&self, change: &ChangeSet) -> bool {
        match self.store.was_delivered(&change.dedup_id()).await {
            Ok(applied) => applied,
            Err(error) => {
                warn!(record = %change.record, event_id = change.event_id, error = %ErrorChain(&error), "delivery lookup failed; deciding anyway");
                false
            }
        }
    }

    /// Marks the deliveries of applied changes, so late redeliveries are dropped early.
    async fn remember_applied(&self, changes: &[ChangeSet]) {
        for change in changes {
            if let Err(error) = self.store.mark_delivered(&change.dedup_id(), DELIVERY_MEMORY).await {
                warn!(record = %change.record, event_id = change.event_id, error = %ErrorChain(&error), "delivery mark failed");
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
        for decision in &decisions {
            *report.decisions.entry(decision.outcome).or_default() += 1;
        }
        if let Err(error) = self.store.append_decisions(&decisions).await {
            // The record state is stored; only the audit trail of this batch is missing.
            error!(record = %key, error = %ErrorChain(&error), entries = decisions.len(), "decision log append failed");
        }
        // The state now contains these events, so redeliveries can be dropped before the flush,
        // whose outbox survives a failure here.
        self.remember_applied(changes).await;
        match self.flush(record, report).await {
            // Only redeliveries came, so this call only helps pending writes along. The live
            // claim's holder sends them, or its message is redelivered after the claim expires.
            Err(ReconcileError::Busy { .. }) if changes.is_empty() => Ok(()),
            other => other,
        }
    }

    /// Sends every pending outbound write of a record, confirming each in the store.
    ///
    /// Each write is claimed with a conditional save before it is sent, so two reconcilers that
    /// handle one record at once (after a visibility timeout, say) never send the same write, and
    /// writes to one target go out in order. A write claimed by another live reconciler makes this
    /// call fail, so the message is retried and nothing that reconciler missed stays unsent.
    async fn flush(&self, mut record: Record, report: &mut BatchReport) -> Result<(), ReconcileError> {
        loop {
            let now = Utc::now();
            let Some(next) = record.next_sendable(now).cloned() else {
                if record.has_live_claim(now) {
                    return Err(ReconcileError::Busy {
                        record: record.key.clone(),
                    });
                }
                return self.release_waiting(&mut record, report).await;
            };
            if self.park_if_missing(&mut record, &next, report).await? {
                continue;
            }
            let Some(claimed) = self.claim(&mut record, &next, report).await? else {
                continue;
            };
            let client = self
                .systems
                .get(&claimed.target)
                .ok_or_else(|| ReconcileError::NoConnector {
                    system: claimed.target.clone(),
                })?;
            let mut write = claimed.clone();
            write.target_id = write.target_id.or_else(|| record.ids.get(&write.target).cloned());

            let mut rejected = false;
            let target_id = match client.write(&write).await {
                Ok(receipt) => {
                    report.writes += 1;
                    report.count_write(&write.target, WriteStatus::Ok);
                    let lag = Utc::now() - write.changed_at;
                    report.lags.push((write.target.clone(), lag));
                    let lag_ms = lag.num_milliseconds();
                    info!(record = %record.key, system = %write.target, kind = ?write.kind, fields = write.fields.len(), lag_ms, "write applied");
                    receipt.target_id
                }
                Err(error) if !error.is_retryable() => {
                    // Retrying the same values cannot succeed, so the write leaves the outbox and a
                    // person must act on this log line.
                    error!(record = %record.key, system = %write.target, error = %ErrorChain(&error), "write rejected by the target; dropped");
                    report.count_write(&write.target, WriteStatus::Rejected);
                    rejected = true;
                    None
                }
                Err(source) => {
                    let status = match source {
                        SystemError::RateLimited { .. } => WriteStatus::RateLimited,
                        _ => WriteStatus::Failed,
                    };
                    report.count_write(&write.target, status);
                    self.release(record, &claimed).await;
                    return Err(ReconcileError::Write {
                        system: write.target.clone(),
                        record: write.record.clone(),
                        source,
                    });
                }
            };
            record = self.confirm(record, &claimed, target_id, rejected, report).await?;
        }
    }

    /// Claims `next` in the stored record. Returns the claimed write, or `None` after a lost race,
    /// with `record` re-read so the caller picks again.
    async fn claim(
        &self,
        record: &mut Record,
        next: &OutboundWrite,
        report: &mut BatchReport,
    ) -> Result<Option<OutboundWrite>, ReconcileError> {
        let mut claimed = record.clone();
        let Some(entry) = claimed.outbox.iter_mut().find(|write| write.id == next.id) else {
            return Ok(None);
        };
        entry.claimed_until = Some(Utc::now() + WRITE_CLAIM);
        let write = entry.clone();
        match self.store.save(&claimed).await {
            Ok(revision) => {
                claimed.revision = revision;
                *record = claimed;
                Ok(Some(write))
            }
            Err(error) if error.is_conflict() => {
                report.conflicts_retried += 1;
                *record = self
                    .store
                    .load(&record.key)
                    .await?
                    .unwrap_or_else(|| Record::new(record.key.clone()));
                Ok(None)
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Gives up a claim after a failed send, so the retry need not wait for the claim to expire.
    /// A failure here only delays that retry, so it is logged and not returned.
    async fn release(&self, mut record: Record, claimed: &OutboundWrite) {
        for _ in 0..MAX_CONFLICT_RETRIES {
            if let Some(entry) = record.outbox.iter_mut().find(|write| write.id == claimed.id) {
                entry.claimed_until = None;
            }
            match self.store.save(&record).await {
                Ok(_) => return,
                Err(error) if error.is_conflict() => match self.store.load(&record.key).await {
                    Ok(Some(fresh)) => record = fresh,
                    Ok(None) | Err(_) => break,
                },
                Err(error) => {
                    warn!(record = %record.key, error = %ErrorChain(&error), "write claim not released; it expires by itself");
                    return;
                }
            }
        }
        warn!(record = %record.key, "write claim not released; it expires by itself");
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
            refresh_task_titles(&self.rules, &mut record);
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
