//! Parking: a write that names records its target lacks (an order's customer, say) waits in the
//! outbox until the target has them, and is released when they arrive there.
//!
//! Parking registers the dependent record in the `waiting` list of each record it waits for, and
//! releasing reads only the records on that list, so neither step scans the store.

use fieldsync_core::dependency::{missing_in_target, referenced_records};
use fieldsync_core::{OutboundWrite, Record, RecordKey, SystemId};
use tracing::info;

use super::{BatchReport, ReconcileError, Reconciler, MAX_CONFLICT_RETRIES};

impl Reconciler {
    /// Parks `next` when its target lacks a record the write names. Returns `true` when the
    /// write was parked or `record` was re-read after a lost race, so the caller picks again.
    /// Each send of a write with reference fields reads every record it names, one load each.
    pub(super) async fn park_if_missing(
        &self,
        record: &mut Record,
        next: &OutboundWrite,
        report: &mut BatchReport,
    ) -> Result<bool, ReconcileError> {
        let mut missing = Vec::new();
        for key in referenced_records(&self.rules, next) {
            if self.wait_for(&key, &record.key, &next.target).await? {
                missing.push(key);
            }
        }
        if missing.is_empty() {
            return Ok(false);
        }

        let mut parked = record.clone();
        let Some(entry) = parked.outbox.iter_mut().find(|write| write.id == next.id) else {
            return Ok(false);
        };
        entry.parked_on.clone_from(&missing);
        match self.store.save(&parked).await {
            Ok(revision) => {
                parked.revision = revision;
                *record = parked;
            }
            Err(error) if error.is_conflict() => {
                report.conflicts_retried += 1;
                *record = self.reload(&record.key).await?;
                return Ok(true);
            }
            Err(error) => return Err(error.into()),
        }
        let waiting_on: Vec<String> = missing.iter().map(ToString::to_string).collect();
        info!(record = %record.key, system = %next.target, waiting_on = ?waiting_on, "write parked until the target has the records it names");

        // A referenced record may have reached the target after `wait_for` read it and before
        // the park was stored, and then found nothing parked to release. Reading it again
        // catches that case.
        let mut still_missing = Vec::new();
        for key in &missing {
            let referenced = self.store.load(key).await?;
            if missing_in_target(&self.rules, key, referenced.as_ref(), &next.target) {
                still_missing.push(key.clone());
            }
        }
        if still_missing.len() < missing.len() {
            self.set_parked_on(record, next.id, still_missing, report).await?;
        }
        Ok(true)
    }

    /// Tells whether `target` lacks the record `key`, and if so adds `dependent` to that record's
    /// waiting list, storing an empty record for it when fieldsync has none yet.
    async fn wait_for(
        &self,
        key: &RecordKey,
        dependent: &RecordKey,
        target: &SystemId,
    ) -> Result<bool, ReconcileError> {
        for _ in 0..=MAX_CONFLICT_RETRIES {
            let referenced = self.store.load(key).await?;
            if !missing_in_target(&self.rules, key, referenced.as_ref(), target) {
                return Ok(false);
            }
            let mut referenced = referenced.unwrap_or_else(|| Record::new(key.clone()));
            if referenced.waiting.contains(dependent) {
                return Ok(true);
            }
            referenced.waiting.push(dependent.clone());
            match self.store.save(&referenced).await {
                Ok(_) => return Ok(true),
                Err(error) if error.is_conflict() => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(fieldsync_core::ports::StoreError::Conflict { record: key.clone() }.into())
    }

    /// Releases the records waiting for `record` whose parked writes it was holding back, and
    /// sends their writes. A record leaves the waiting list once nothing of it waits for
    /// `record` any more and its writes went out.
    pub(super) async fn release_waiting(
        &self,
        record: &mut Record,
        report: &mut BatchReport,
    ) -> Result<(), ReconcileError> {
        if record.waiting.is_empty() {
            return Ok(());
        }
        let mut released = Vec::new();
        for dependent in record.waiting.clone() {
            if self.release_dependent(&dependent, record, report).await? {
                released.push(dependent);
            }
        }
        if released.is_empty() {
            return Ok(());
        }

        for _ in 0..=MAX_CONFLICT_RETRIES {
            record.waiting.retain(|key| !released.contains(key));
            match self.store.save(record).await {
                Ok(revision) => {
                    record.revision = revision;
                    return Ok(());
                }
                Err(error) if error.is_conflict() => {
                    report.conflicts_retried += 1;
                    *record = self.reload(&record.key).await?;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(fieldsync_core::ports::StoreError::Conflict {
            record: record.key.clone(),
        }
        .into())
    }

    /// Unparks the writes of `dependent` that wait for `arrived` in a target that now has it,
    /// then sends the dependent's writes. Returns whether no write of `dependent` still waits
    /// for `arrived`.
    async fn release_dependent(
        &self,
        dependent: &RecordKey,
        arrived: &Record,
        report: &mut BatchReport,
    ) -> Result<bool, ReconcileError> {
        for _ in 0..=MAX_CONFLICT_RETRIES {
            let Some(mut waiting) = self.store.load(dependent).await? else {
                return Ok(true);
            };
            let mut changed = false;
            let mut still_waiting = false;
            for index in 0..waiting.outbox.len() {
                let write = &waiting.outbox[index];
                if !write.parked_on.contains(&arrived.key) {
                    continue;
                }
                if !arrived.ids.contains_key(&write.target) {
                    still_waiting = true;
                    continue;
                }
                let (target, parked_on) = (write.target.clone(), write.parked_on.clone());
                let mut remaining = Vec::new();
                for key in parked_on.iter().filter(|key| **key != arrived.key) {
                    let referenced = self.store.load(key).await?;
                    if missing_in_target(&self.rules, key, referenced.as_ref(), &target) {
                        remaining.push(key.clone());
                    }
                }
                waiting.outbox[index].parked_on = remaining;
                changed = true;
            }
            if changed {
                match self.store.save(&waiting).await {
                    Ok(revision) => waiting.revision = revision,
                    Err(error) if error.is_conflict() => {
                        report.conflicts_retried += 1;
                        continue;
                    }
                    Err(error) => return Err(error.into()),
                }
                info!(record = %waiting.key, arrived = %arrived.key, "parked write released");
            }
            if !still_waiting {
                Box::pin(self.flush(waiting, report)).await?;
            }
            return Ok(!still_waiting);
        }
        Err(fieldsync_core::ports::StoreError::Conflict {
            record: dependent.clone(),
        }
        .into())
    }

    /// Stores a new `parked_on` list for the write `write_id`, re-reading after a lost race.
    async fn set_parked_on(
        &self,
        record: &mut Record,
        write_id: u64,
        parked_on: Vec<RecordKey>,
        report: &mut BatchReport,
    ) -> Result<(), ReconcileError> {
        for _ in 0..=MAX_CONFLICT_RETRIES {
            let mut updated = record.clone();
            if let Some(entry) = updated.outbox.iter_mut().find(|write| write.id == write_id) {
                entry.parked_on.clone_from(&parked_on);
            }
            match self.store.save(&updated).await {
                Ok(revision) => {
                    updated.revision = revision;
                    *record = updated;
                    return Ok(());
                }
                Err(error) if error.is_conflict() => {
                    report.conflicts_retried += 1;
                    *record = self.reload(&record.key).await?;
                }
                Err(error) => return Err(error.into()),
            }
        }
        Err(fieldsync_core::ports::StoreError::Conflict {
            record: record.key.clone(),
        }
        .into())
    }

    async fn reload(&self, key: &RecordKey) -> Result<Record, ReconcileError> {
        Ok(self.store.load(key).await?.unwrap_or_else(|| Record::new(key.clone())))
    }
}
