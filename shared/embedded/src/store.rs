use std::collections::{BTreeMap, HashMap};
use std::sync::{Mutex, MutexGuard};

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fieldsync_core::ports::{RecordStore, StoreError};
use fieldsync_core::{Decision, EntityType, OpenTask, Record, RecordKey, SystemId, Task};

/// A record store in memory with conditional writes on the record revision.
#[derive(Debug, Default)]
pub struct EmbeddedStore {
    state: Mutex<StoreState>,
}

#[derive(Debug, Default)]
struct StoreState {
    records: HashMap<RecordKey, Record>,
    decisions: HashMap<RecordKey, Vec<Decision>>,
    /// (integration, system, entity, external id) → record key.
    external_ids: HashMap<(String, SystemId, EntityType, String), RecordKey>,
    conflicts: u64,
    /// Delivery id → when its mark expires.
    deliveries: HashMap<String, DateTime<Utc>>,
    /// Open tasks by record, kept apart from the records as the DynamoDB store keeps its list.
    tasks: BTreeMap<RecordKey, Vec<Task>>,
}

impl EmbeddedStore {
    /// Creates an empty store.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns how many conditional writes failed, for tests and benchmarks.
    pub fn conflicts(&self) -> u64 {
        self.lock().conflicts
    }

    /// Returns every stored record, sorted by key.
    pub fn records(&self) -> Vec<Record> {
        let mut records: Vec<Record> = self.lock().records.values().cloned().collect();
        records.sort_by(|a, b| a.key.cmp(&b.key));
        records
    }

    fn lock(&self) -> MutexGuard<'_, StoreState> {
        // A panic while holding the lock leaves plain data behind, so the state is still usable.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl RecordStore for EmbeddedStore {
    async fn load(&self, key: &RecordKey) -> Result<Option<Record>, StoreError> {
        Ok(self.lock().records.get(key).cloned())
    }

    async fn save(&self, record: &Record) -> Result<u64, StoreError> {
        let mut state = self.lock();
        let stored_revision = state.records.get(&record.key).map_or(0, |stored| stored.revision);
        if stored_revision != record.revision {
            state.conflicts += 1;
            return Err(StoreError::Conflict {
                record: record.key.clone(),
            });
        }
        let mut stored = record.clone();
        stored.revision += 1;
        // As the DynamoDB store does, the stored record lists every id as cross-referenced.
        stored.indexed_ids = stored.ids.clone();
        stored.indexed_tasks = stored.tasks.clone();
        if stored.tasks.is_empty() {
            state.tasks.remove(&stored.key);
        } else {
            state.tasks.insert(stored.key.clone(), stored.tasks.clone());
        }
        for (system, id) in &stored.ids {
            let index_key = (
                stored.key.integration.clone(),
                system.clone(),
                stored.key.entity.clone(),
                id.clone(),
            );
            state.external_ids.insert(index_key, stored.key.clone());
        }
        let revision = stored.revision;
        state.records.insert(stored.key.clone(), stored);
        Ok(revision)
    }

    async fn append_decisions(&self, decisions: &[Decision]) -> Result<(), StoreError> {
        let mut state = self.lock();
        for decision in decisions {
            state
                .decisions
                .entry(decision.record.clone())
                .or_default()
                .push(decision.clone());
        }
        Ok(())
    }

    async fn decisions(&self, key: &RecordKey) -> Result<Vec<Decision>, StoreError> {
        Ok(self.lock().decisions.get(key).cloned().unwrap_or_default())
    }

    async fn mark_delivered(&self, delivery_id: &str, ttl: Duration) -> Result<(), StoreError> {
        let expires_at = Utc::now() + chrono::Duration::from_std(ttl).unwrap_or(chrono::Duration::MAX);
        let mut state = self.lock();
        let now = Utc::now();
        state.deliveries.retain(|_, expires| *expires > now);
        state.deliveries.insert(delivery_id.to_owned(), expires_at);
        Ok(())
    }

    async fn was_delivered(&self, delivery_id: &str) -> Result<bool, StoreError> {
        Ok(self
            .lock()
            .deliveries
            .get(delivery_id)
            .is_some_and(|expires| *expires > Utc::now()))
    }

    async fn find_by_external_id(
        &self,
        integration: &str,
        system: &SystemId,
        entity: &EntityType,
        external_id: &str,
    ) -> Result<Option<RecordKey>, StoreError> {
        let index_key = (
            integration.to_owned(),
            system.clone(),
            entity.clone(),
            external_id.to_owned(),
        );
        Ok(self.lock().external_ids.get(&index_key).cloned())
    }

    async fn open_tasks(&self, integration: &str) -> Result<Vec<OpenTask>, StoreError> {
        let state = self.lock();
        let open = state
            .tasks
            .iter()
            .filter(|(record, _)| record.integration == integration)
            .flat_map(|(record, tasks)| {
                tasks.iter().map(|task| OpenTask {
                    record: record.clone(),
                    task: task.clone(),
                })
            })
            .collect();
        Ok(open)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn save_rejects_stale_revision() {
        let store = EmbeddedStore::new();
        let record = Record::new(RecordKey::new("demo", "product", "MUG-RED"));
        assert_eq!(store.save(&record).await.unwrap(), 1);
        let error = store.save(&record).await.unwrap_err();
        assert!(error.is_conflict());
        let mut fresh = store.load(&record.key).await.unwrap().unwrap();
        assert_eq!(fresh.revision, 1);
        fresh.status = Some("active".into());
        assert_eq!(store.save(&fresh).await.unwrap(), 2);
        assert_eq!(store.conflicts(), 1);
    }

    #[tokio::test]
    async fn save_indexes_external_ids() {
        let store = EmbeddedStore::new();
        let mut record = Record::new(RecordKey::new("demo", "product", "MUG-RED"));
        record.ids.insert(SystemId::new("storefront"), "1/2".into());
        store.save(&record).await.unwrap();
        let found = store
            .find_by_external_id("demo", &SystemId::new("storefront"), &EntityType::new("product"), "1/2")
            .await;
        assert_eq!(found.unwrap(), Some(record.key));
    }
}
