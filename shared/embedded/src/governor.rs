//! The concurrency governor in memory, with the lease semantics of the DynamoDB one.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use fieldsync_core::ports::{ConcurrencyGovernor, Permit, StoreError};

/// The slots held: (scope, slot) → (holder, lease end).
type Slots = HashMap<(String, u32), (String, DateTime<Utc>)>;

/// A concurrency governor for the processes of one machine, such as a local run or tests with
/// several clients sharing one governor.
#[derive(Debug, Default)]
pub struct EmbeddedGovernor {
    slots: Mutex<Slots>,
}

impl EmbeddedGovernor {
    /// Creates a governor with no slot held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns how many slots of `scope` are held now, expired leases excluded.
    pub fn held(&self, scope: &str) -> usize {
        let now = Utc::now();
        self.lock()
            .iter()
            .filter(|((slot_scope, _), (_, expires_at))| slot_scope == scope && *expires_at > now)
            .count()
    }

    fn lock(&self) -> MutexGuard<'_, Slots> {
        // A panic while holding the lock leaves plain data behind, so the state is still usable.
        self.slots.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[async_trait]
impl ConcurrencyGovernor for EmbeddedGovernor {
    async fn acquire(
        &self,
        scope: &str,
        limit: u32,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Permit>, StoreError> {
        let now = Utc::now();
        let expires_at = now + chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let mut slots = self.lock();
        for slot in 0..limit {
            let key = (scope.to_owned(), slot);
            let free = slots.get(&key).is_none_or(|(_, held_until)| *held_until <= now);
            if free {
                slots.insert(key, (holder.to_owned(), expires_at));
                return Ok(Some(Permit {
                    scope: scope.to_owned(),
                    slot,
                    holder: holder.to_owned(),
                    expires_at,
                }));
            }
        }
        Ok(None)
    }

    async fn release(&self, permit: &Permit) -> Result<(), StoreError> {
        let mut slots = self.lock();
        let key = (permit.scope.clone(), permit.slot);
        let same_lease = |(holder, expires_at): &(String, DateTime<Utc>)| {
            *holder == permit.holder && *expires_at == permit.expires_at
        };
        if slots.get(&key).is_some_and(same_lease) {
            slots.remove(&key);
        }
        Ok(())
    }
}
